//! dms-core's preflight checks against the lab: each problem built in a database of its own, asserted by check
//! id, status and the exact (quoted) object names; a clean pair passes; and the built `dms-migrate`
//! binary's exit codes, JSON shape, text grouping and password handling.
//!
//! The lab source is plain PostgreSQL 15 (wal_level=logical) with superuser `postgres`: the privilege
//! checks run as a non-superuser migration role each test creates (and drops).

use std::process::Output;

use dms_core::pg::checks::{
    self, ids, run_source_checks, run_target_checks, Check, CheckConfig, CheckStatus,
};
use integration_tests::lab::connect;
use integration_tests::lab::{self, Lab, TestDatabases};
use serde_json::Value;
use tokio_postgres::Client;

/// A lab URL with another user and password.
fn url_as(admin_url: &str, user: &str, password: Option<&str>) -> String {
    let (_, rest) = admin_url.split_once('@').expect("lab URL has user@host");
    match password {
        Some(p) => format!("postgres://{user}:{p}@{rest}"),
        None => format!("postgres://{user}@{rest}"),
    }
}

/// A non-superuser login role, cluster-wide (one per test: names carry the pid and the test).
struct Role {
    name: String,
    password: String,
}

impl Role {
    /// On both clusters (roles are per cluster).
    async fn create(lab: &Lab, test: &str) -> Role {
        let role = Role {
            name: format!("pf_{test}_{}", std::process::id()),
            password: format!("pw-{test}-Secret9"),
        };
        for key in ["SOURCE_URL", "TARGET_URL"] {
            connect(&lab.var(key))
                .await
                .batch_execute(&format!(
                    "DROP ROLE IF EXISTS {n}; CREATE ROLE {n} LOGIN PASSWORD '{p}'",
                    n = role.name,
                    p = role.password
                ))
                .await
                .expect("create role");
        }
        role
    }

    async fn drop(self, lab: &Lab, dbs: &TestDatabases) {
        for key in ["SOURCE_URL", "TARGET_URL"] {
            let admin = connect(&lab.var(key)).await;
            // Its database first: the role holds privileges there. One statement each: DROP DATABASE
            // may not run inside the implicit transaction of a multi-statement batch.
            for statement in [
                format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", dbs.name),
                format!(
                    "REVOKE SET ON PARAMETER session_replication_role FROM {}",
                    self.name
                ),
                format!("DROP ROLE IF EXISTS {}", self.name),
            ] {
                admin.batch_execute(&statement).await.expect("drop role");
            }
        }
    }
}

fn find<'a>(checks: &'a [Check], id: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no check {id} in {checks:#?}"))
}

fn assert_check(checks: &[Check], id: &str, status: CheckStatus, objects: &[&str]) {
    let check = find(checks, id);
    assert_eq!(check.status, status, "{id}: {check:#?}");
    assert_eq!(check.objects, objects, "{id}: {check:#?}");
    if status != CheckStatus::Pass {
        assert!(!check.fix.is_empty(), "{id} has no fix: {check:#?}");
    }
}

async fn source_checks(url: &str, config: &CheckConfig) -> Vec<Check> {
    run_source_checks(&connect(url).await, config)
        .await
        .expect("source checks run")
        .checks
}

/// Source and target checks together, as preflight runs them.
async fn all_checks(source_url: &str, target_url: &str, config: &CheckConfig) -> Vec<Check> {
    let report = run_source_checks(&connect(source_url).await, config)
        .await
        .expect("source checks run");
    let target = run_target_checks(&connect(target_url).await, Some(&report.facts), config)
        .await
        .expect("target checks run");
    report.checks.into_iter().chain(target).collect()
}

/// Schema with the names that need quoting: mixed case, a space, a reserved word.
const AWKWARD_SCHEMA: &str = r#"
    CREATE SCHEMA "Mixed Case";
    CREATE TABLE "Mixed Case"."Order Items" (id bigint PRIMARY KEY, "Grand Total" numeric(12, 2) NOT NULL);
    CREATE TABLE public."select" (id int PRIMARY KEY, "from" date);
"#;

/// Grants a migration role what DMS needs, on both sides.
async fn grant_migration_rights(source: &Client, target: &Client, role: &str) {
    source
        .batch_execute(&format!(
            "ALTER ROLE {role} WITH REPLICATION;
             GRANT USAGE, CREATE ON SCHEMA public TO {role};
             GRANT USAGE ON SCHEMA \"Mixed Case\" TO {role};
             GRANT SELECT ON ALL TABLES IN SCHEMA public, \"Mixed Case\" TO {role};"
        ))
        .await
        .expect("source grants");
    target
        .batch_execute(&format!(
            "GRANT USAGE, CREATE ON SCHEMA public TO {role};
             GRANT USAGE ON SCHEMA \"Mixed Case\" TO {role};
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public, \"Mixed Case\" TO {role};
             GRANT SET ON PARAMETER session_replication_role TO {role};"
        ))
        .await
        .expect("target grants");
}

/// Checks whose state is cluster-wide (other tests may hold slots or transactions at the same moment).
const CLUSTER_WIDE: [&str; 3] = [
    ids::SOURCE_LEFTOVER_SLOTS,
    ids::SOURCE_LONG_TRANSACTIONS,
    ids::SOURCE_PREPARED_TRANSACTIONS,
];

/// The checks read bare names and quote them in Rust: every key word of this server and a set of awkward
/// names must come out exactly as the server's own `quote_ident` writes them. Words quoted here that this
/// server leaves bare must be key words of a newer PostgreSQL only.
#[tokio::test]
async fn rust_quoting_is_the_servers_quote_ident() {
    let Some(lab) = Lab::get().await else { return };
    let client = connect(&lab.var("SOURCE_URL")).await;
    let odd = [
        "orders",
        "Orders",
        "line items",
        "a\"b",
        "1st",
        "price$",
        "café",
        "_x1",
        "x-y",
        "ÅB",
        "",
        "with space ",
        "tab\tname",
    ];
    let rows = client
        .query(
            "SELECT w, quote_ident(w) FROM (SELECT word FROM pg_get_keywords() UNION ALL SELECT unnest($1::text[])) AS k(w)",
            &[&odd.to_vec()],
        )
        .await
        .expect("keywords");
    assert!(
        rows.len() > 400,
        "pg_get_keywords returned {} rows",
        rows.len()
    );
    let newer_only = [
        "json",
        "json_array",
        "json_arrayagg",
        "json_exists",
        "json_object",
        "json_objectagg",
        "json_query",
        "json_scalar",
        "json_serialize",
        "json_table",
        "json_value",
        "merge_action",
        "system_user",
    ];
    let mut differ = Vec::new();
    for row in &rows {
        let (word, server): (&str, &str) = (row.get(0), row.get(1));
        let ours = dms_core::rules::sql_ident::quote_if_needed(word);
        if ours != server && !(newer_only.contains(&word) && ours == format!("\"{word}\"")) {
            differ.push(format!("{word}: server {server}, ours {ours}"));
        }
    }
    assert!(differ.is_empty(), "quoting differs: {differ:?}");
}

#[tokio::test]
async fn a_clean_pair_passes_for_a_non_superuser_migration_role() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("pf_clean").await;
    let (source, target) = (
        connect(&dbs.source_url).await,
        connect(&dbs.target_url).await,
    );
    for side in [&source, &target] {
        side.batch_execute(AWKWARD_SCHEMA).await.expect("schema");
    }
    let role = Role::create(&lab, "clean").await;
    grant_migration_rights(&source, &target, &role.name).await;

    let checks = all_checks(
        &url_as(&dbs.source_url, &role.name, Some(&role.password)),
        &url_as(&dbs.target_url, &role.name, Some(&role.password)),
        &CheckConfig::default(),
    )
    .await;
    let ids_seen: Vec<&str> = checks.iter().map(|c| c.id.as_str()).collect();
    let expected: Vec<&str> = ids::SOURCE
        .iter()
        .chain(ids::TARGET.iter())
        .copied()
        .collect();
    assert_eq!(ids_seen, expected, "every check, in order");
    for check in &checks {
        if CLUSTER_WIDE.contains(&check.id.as_str()) {
            assert_ne!(check.status, CheckStatus::Fail, "{check:#?}");
        } else {
            assert_eq!(check.status, CheckStatus::Pass, "{check:#?}");
        }
    }
    assert!(find(&checks, ids::SOURCE_REPLICATION_ROLE)
        .summary
        .contains("REPLICATION attribute"));
    assert!(find(&checks, ids::TARGET_SCHEMA_PRESENT)
        .summary
        .contains("all 2 mapped tables"));
    role.drop(&lab, &dbs).await;
}

#[tokio::test]
async fn tables_without_a_usable_key_fail_with_quoted_names() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("pf_pk").await;
    let source = connect(&dbs.source_url).await;
    source
        .batch_execute(
            r#"CREATE SCHEMA "Mixed Case";
               CREATE TABLE "Mixed Case"."Order Items" (id int, note text);
               CREATE TABLE public."select" (id int);
               CREATE TABLE public.full_identity (id int);
               ALTER TABLE public.full_identity REPLICA IDENTITY FULL;
               CREATE TABLE public.keyed_but_nothing (id int PRIMARY KEY);
               ALTER TABLE public.keyed_but_nothing REPLICA IDENTITY NOTHING;
               CREATE TABLE public.fine (id int PRIMARY KEY);"#,
        )
        .await
        .expect("schema");
    let checks = source_checks(&dbs.source_url, &CheckConfig::default()).await;
    assert_check(
        &checks,
        ids::SOURCE_PRIMARY_KEYS,
        CheckStatus::Fail,
        &[
            "\"Mixed Case\".\"Order Items\"",
            "public.keyed_but_nothing",
            "public.\"select\"",
        ],
    );
    let fix = &find(&checks, ids::SOURCE_PRIMARY_KEYS).fix;
    assert!(fix.contains("ALTER TABLE \"Mixed Case\".\"Order Items\" REPLICA IDENTITY FULL;"));
    assert!(fix.contains("ALTER TABLE public.keyed_but_nothing REPLICA IDENTITY DEFAULT;"));

    // A full-load-only task loses nothing: the same tables only warn.
    let full_load = CheckConfig {
        cdc: false,
        ..CheckConfig::default()
    };
    let checks = source_checks(&dbs.source_url, &full_load).await;
    assert_eq!(
        find(&checks, ids::SOURCE_PRIMARY_KEYS).status,
        CheckStatus::Warn
    );
}

#[tokio::test]
async fn column_and_table_shapes_are_reported() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("pf_shapes").await;
    let source = connect(&dbs.source_url).await;
    source
        .batch_execute(
            r#"CREATE SCHEMA "Mixed Case";
               CREATE DOMAIN public.money_amount AS numeric;
               CREATE TABLE "Mixed Case"."Doc Store" (
                   id int PRIMARY KEY, "Body" jsonb, blob bytea, label varchar, short varchar(20),
                   tags text[], "Price" numeric, fixed numeric(10, 2), via_domain public.money_amount);
               CREATE UNLOGGED TABLE public."table" (id int PRIMARY KEY);
               CREATE TABLE public.events (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
               CREATE TABLE public.events_2024 PARTITION OF public.events
                   FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
               CREATE TABLE public.events_2025 PARTITION OF public.events
                   FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');"#,
        )
        .await
        .expect("schema");
    let checks = source_checks(&dbs.source_url, &CheckConfig::default()).await;
    assert_check(
        &checks,
        ids::SOURCE_LOB_COLUMNS,
        CheckStatus::Warn,
        &[
            "\"Mixed Case\".\"Doc Store\".\"Body\"",
            "\"Mixed Case\".\"Doc Store\".blob",
            "\"Mixed Case\".\"Doc Store\".label",
            "\"Mixed Case\".\"Doc Store\".tags",
        ],
    );
    assert!(find(&checks, ids::SOURCE_LOB_COLUMNS).fix.contains(
        "SELECT max(octet_length(\"Body\"::text)) AS \"Body\", max(octet_length(blob::text)) AS blob, max(octet_length(label::text)) AS label, max(octet_length(tags::text)) AS tags FROM \"Mixed Case\".\"Doc Store\";"
    ));
    assert_check(
        &checks,
        ids::SOURCE_UNBOUNDED_NUMERIC,
        CheckStatus::Warn,
        &[
            "\"Mixed Case\".\"Doc Store\".\"Price\"",
            "\"Mixed Case\".\"Doc Store\".via_domain",
        ],
    );
    assert_check(
        &checks,
        ids::SOURCE_UNLOGGED_TABLES,
        CheckStatus::Fail,
        &["public.\"table\""],
    );
    assert_eq!(
        find(&checks, ids::SOURCE_UNLOGGED_TABLES).fix,
        "ALTER TABLE public.\"table\" SET LOGGED;  -- or exclude it from the table mappings"
    );
    assert_check(
        &checks,
        ids::SOURCE_PARTITIONED_TABLES,
        CheckStatus::Warn,
        &["public.events"],
    );
    assert!(find(&checks, ids::SOURCE_PARTITIONED_TABLES)
        .summary
        .contains("2 partitions"));
    // Partitions have the root's primary key: nothing for source.primary_keys.
    assert_check(&checks, ids::SOURCE_PRIMARY_KEYS, CheckStatus::Pass, &[]);
}

#[tokio::test]
async fn a_role_without_rights_fails_select_replication_and_heartbeat() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("pf_rights").await;
    let source = connect(&dbs.source_url).await;
    source
        .batch_execute(
            r#"CREATE SCHEMA "My Schema";
               CREATE TABLE "My Schema"."Secret Table" (id int PRIMARY KEY);
               CREATE TABLE public.open_table (id int PRIMARY KEY);"#,
        )
        .await
        .expect("schema");
    let role = Role::create(&lab, "rights").await;
    source
        .batch_execute(&format!(
            "GRANT SELECT ON public.open_table TO {}",
            role.name
        ))
        .await
        .expect("grant");
    let checks = source_checks(
        &url_as(&dbs.source_url, &role.name, Some(&role.password)),
        &CheckConfig::default(),
    )
    .await;
    assert_check(
        &checks,
        ids::SOURCE_SELECT_PRIVILEGES,
        CheckStatus::Fail,
        &["\"My Schema\".\"Secret Table\""],
    );
    assert_eq!(
        find(&checks, ids::SOURCE_SELECT_PRIVILEGES).fix,
        format!(
            "GRANT USAGE ON SCHEMA \"My Schema\" TO {r};\nGRANT SELECT ON ALL TABLES IN SCHEMA \"My Schema\" TO {r};",
            r = role.name
        )
    );
    assert_check(
        &checks,
        ids::SOURCE_REPLICATION_ROLE,
        CheckStatus::Fail,
        &[role.name.as_str()],
    );
    assert_eq!(
        find(&checks, ids::SOURCE_REPLICATION_ROLE).fix,
        format!("ALTER ROLE {} WITH REPLICATION;", role.name)
    );
    // PostgreSQL 15 no longer lets every role create in public.
    assert_check(
        &checks,
        ids::SOURCE_HEARTBEAT_SCHEMA,
        CheckStatus::Fail,
        &["public"],
    );
    role.drop(&lab, &dbs).await;
}

#[tokio::test]
async fn leftover_slots_and_long_transactions_warn() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("pf_slots").await;
    let source = connect(&dbs.source_url).await;
    let slot = format!("pf_leftover_{}", std::process::id());
    source
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'test_decoding')",
            &[&slot],
        )
        .await
        .expect("create slot");
    // A transaction holding an xid in another session.
    let holder = connect(&dbs.source_url).await;
    holder
        .batch_execute("BEGIN; CREATE TABLE held (id int)")
        .await
        .expect("open transaction");
    let holder_pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let config = CheckConfig {
        long_transaction_seconds: 0,
        ..CheckConfig::default()
    };
    let checks = source_checks(&dbs.source_url, &config).await;
    source
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await
        .expect("drop slot");
    holder.batch_execute("ROLLBACK").await.expect("rollback");

    let leftover = find(&checks, ids::SOURCE_LEFTOVER_SLOTS);
    assert_eq!(leftover.status, CheckStatus::Warn);
    assert!(leftover.objects.contains(&slot), "{leftover:#?}");
    assert!(leftover
        .fix
        .contains(&format!("SELECT pg_drop_replication_slot('{slot}');")));
    let long = find(&checks, ids::SOURCE_LONG_TRANSACTIONS);
    assert_eq!(long.status, CheckStatus::Warn);
    assert!(
        long.objects
            .iter()
            .any(|o| o.starts_with(&format!("pid {holder_pid} ("))),
        "{long:#?}"
    );
    assert!(long
        .fix
        .contains(&format!("SELECT pg_terminate_backend({holder_pid});")));
}

/// Each row probe holds a lock until the check's statement ends, so only the first candidates (in name
/// order) are probed; beyond them a non-empty file counts, which the summary says. A table whose rows were
/// deleted keeps its file: probed, it is empty; judged by size, it is reported.
#[tokio::test]
async fn not_empty_probes_are_capped_and_the_rest_judged_by_size() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("pf_probes").await;
    let target = connect(&dbs.target_url).await;
    target
        .batch_execute(
            "CREATE TABLE a_emptied (id int PRIMARY KEY); INSERT INTO a_emptied VALUES (1); DELETE FROM a_emptied;
             CREATE TABLE b_full (id int PRIMARY KEY); INSERT INTO b_full VALUES (1);
             CREATE TABLE c_full (id int PRIMARY KEY); INSERT INTO c_full VALUES (1);
             CREATE TABLE d_emptied (id int PRIMARY KEY); INSERT INTO d_emptied VALUES (1); DELETE FROM d_emptied;
             CREATE TABLE e_never (id int PRIMARY KEY);",
        )
        .await
        .expect("target tables");
    let not_empty = |checks: Vec<Check>| find(&checks, ids::TARGET_NOT_EMPTY).clone();

    let all_probed = not_empty(
        run_target_checks(&target, None, &CheckConfig::default())
            .await
            .expect("target checks run"),
    );
    assert_eq!(all_probed.status, CheckStatus::Warn);
    assert_eq!(all_probed.objects, ["public.b_full", "public.c_full"]);
    assert!(!all_probed.summary.contains("file size"), "{all_probed:#?}");

    let two_probes = CheckConfig {
        not_empty_probes: 2,
        ..CheckConfig::default()
    };
    let capped = not_empty(
        run_target_checks(&target, None, &two_probes)
            .await
            .expect("target checks run"),
    );
    assert_eq!(
        capped.objects,
        ["public.b_full", "public.c_full", "public.d_emptied"]
    );
    assert!(
        capped
            .summary
            .contains("beyond the first 2 probed, 2 tables are counted by file size"),
        "{capped:#?}"
    );
}

#[tokio::test]
async fn target_problems_are_named() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("pf_target").await;
    let (source, target) = (
        connect(&dbs.source_url).await,
        connect(&dbs.target_url).await,
    );
    source
        .batch_execute(
            r#"CREATE EXTENSION pgcrypto;
               CREATE SCHEMA "Mixed Case";
               CREATE TABLE "Mixed Case"."Order Items" (id bigint PRIMARY KEY, "Grand Total" numeric(12, 2));
               CREATE TABLE public.customers (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text);
               CREATE TABLE public.orders (id int PRIMARY KEY,
                   customer_id int CONSTRAINT "Orders Customer" REFERENCES public.customers);
               CREATE TABLE public."absent table" (id int PRIMARY KEY);"#,
        )
        .await
        .expect("source schema");
    target
        .batch_execute(
            r#"CREATE SCHEMA "Mixed Case";
               CREATE TABLE "Mixed Case"."Order Items" (id int PRIMARY KEY, "Grand Total" numeric(12, 2));
               CREATE TABLE public.customers (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                   email text CONSTRAINT "Email Unique" UNIQUE);
               CREATE TABLE public.orders (id int PRIMARY KEY, customer_id int);
               INSERT INTO public.orders VALUES (1, NULL);"#,
        )
        .await
        .expect("target schema");
    let checks = all_checks(&dbs.source_url, &dbs.target_url, &CheckConfig::default()).await;
    assert_check(
        &checks,
        ids::TARGET_SCHEMA_PRESENT,
        CheckStatus::Fail,
        &["public.\"absent table\""],
    );
    assert_check(
        &checks,
        ids::TARGET_SCHEMA_MATCHES,
        CheckStatus::Fail,
        &["\"Mixed Case\".\"Order Items\".id"],
    );
    let matches = find(&checks, ids::TARGET_SCHEMA_MATCHES);
    assert!(matches
        .fix
        .contains("ALTER TABLE \"Mixed Case\".\"Order Items\" ALTER COLUMN id TYPE bigint;"));
    assert!(
        matches.summary.contains("1 deferred object"),
        "the foreign key is to apply after the load: {matches:#?}"
    );
    assert_check(
        &checks,
        ids::TARGET_NOT_EMPTY,
        CheckStatus::Warn,
        &["public.orders"],
    );
    assert_check(
        &checks,
        ids::TARGET_GENERATED_ALWAYS,
        CheckStatus::Fail,
        &["public.customers.id"],
    );
    assert!(find(&checks, ids::TARGET_GENERATED_ALWAYS)
        .fix
        .starts_with("ALTER TABLE public.customers ALTER COLUMN id SET GENERATED BY DEFAULT;"));
    assert_check(
        &checks,
        ids::TARGET_UNIQUE_WITH_PK,
        CheckStatus::Warn,
        &["public.customers.\"Email Unique\""],
    );
    assert_check(
        &checks,
        ids::TARGET_EXTENSIONS,
        CheckStatus::Warn,
        &["pgcrypto"],
    );

    // With the table created and the column fixed, only the deferred foreign key remains: a pass that
    // lists it as to apply after the load.
    target
        .batch_execute(
            r#"CREATE TABLE public."absent table" (id int PRIMARY KEY);
               ALTER TABLE "Mixed Case"."Order Items" ALTER COLUMN id TYPE bigint;"#,
        )
        .await
        .expect("fix target");
    let checks = all_checks(&dbs.source_url, &dbs.target_url, &CheckConfig::default()).await;
    assert_check(
        &checks,
        ids::TARGET_SCHEMA_MATCHES,
        CheckStatus::Pass,
        &["public.orders.\"Orders Customer\""],
    );
}

#[tokio::test]
async fn a_target_role_without_rights_fails_privileges_and_session_replication_role() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("pf_trights").await;
    let (source, target) = (
        connect(&dbs.source_url).await,
        connect(&dbs.target_url).await,
    );
    for side in [&source, &target] {
        side.batch_execute(AWKWARD_SCHEMA).await.expect("schema");
    }
    let role = Role::create(&lab, "trights").await;
    target
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA \"Mixed Case\" TO {r}; GRANT SELECT ON ALL TABLES IN SCHEMA public, \"Mixed Case\" TO {r};",
            r = role.name
        ))
        .await
        .expect("partial grants");
    let report = run_source_checks(&source, &CheckConfig::default())
        .await
        .expect("source");
    let checks = run_target_checks(
        &connect(&url_as(&dbs.target_url, &role.name, Some(&role.password))).await,
        Some(&report.facts),
        &CheckConfig::default(),
    )
    .await
    .expect("target");
    assert_check(
        &checks,
        ids::TARGET_PRIVILEGES,
        CheckStatus::Fail,
        &[
            "\"Mixed Case\".\"Order Items\"",
            "public.\"select\"",
            "public",
        ],
    );
    let privileges = find(&checks, ids::TARGET_PRIVILEGES);
    assert!(privileges.fix.contains(&format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"Mixed Case\" TO {};",
        role.name
    )));
    assert_check(
        &checks,
        ids::TARGET_SESSION_REPLICATION_ROLE,
        CheckStatus::Fail,
        &[role.name.as_str()],
    );
    assert_eq!(
        find(&checks, ids::TARGET_SESSION_REPLICATION_ROLE).fix,
        format!(
            "GRANT SET ON PARAMETER session_replication_role TO {};  -- as a superuser or the provider's admin role",
            role.name
        )
    );
    // Without the source, the comparisons say they did not run (what the Lambda reports when it cannot
    // reach the source).
    let alone = run_target_checks(&target, None, &CheckConfig::default())
        .await
        .expect("target alone");
    assert_eq!(
        find(&alone, ids::TARGET_SCHEMA_PRESENT).status,
        CheckStatus::Warn
    );
    assert_eq!(checks::counts(&alone).fail, 0);
    role.drop(&lab, &dbs).await;
}

// ---- the built binary ----------------------------------------------------------------------------

fn dms_migrate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = lab::dms_migrate();
    command.args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run dms-migrate")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn cli_exit_codes_json_shape_and_text_grouping() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("pf_cli").await;
    let (source, target) = (
        connect(&dbs.source_url).await,
        connect(&dbs.target_url).await,
    );
    for side in [&source, &target] {
        side.batch_execute(AWKWARD_SCHEMA).await.expect("schema");
    }
    let role = Role::create(&lab, "cli").await;
    grant_migration_rights(&source, &target, &role.name).await;
    // The way back's checks run by default (tests/tests/fallback_preflight.rs): Aurora as the reverse
    // task's target, PlanetScale as its REPLICATION source.
    source
        .batch_execute(&format!(
            "GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public, \"Mixed Case\" TO {n};
             GRANT SET ON PARAMETER session_replication_role TO {n};",
            n = role.name
        ))
        .await
        .expect("source grants for the way back");
    target
        .batch_execute(&format!("ALTER ROLE {} WITH REPLICATION", role.name))
        .await
        .expect("target REPLICATION for the way back");
    let source_url = url_as(&dbs.source_url, &role.name, None);
    let target_url = url_as(&dbs.target_url, &role.name, None);

    // Clean: exit 0; the password from PGPASSWORD; URLs from PGSOURCE/PGTARGET.
    let out = dms_migrate(
        &["preflight", "--format", "json"],
        &[
            ("PGSOURCE", &source_url),
            ("PGTARGET", &target_url),
            ("PGPASSWORD", &role.password),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let checks = json["checks"].as_array().expect("checks array");
    assert_eq!(
        checks.len(),
        ids::SOURCE.len() + ids::TARGET.len() + ids::FALLBACK.len()
    );
    for check in checks {
        let keys: Vec<&str> = check
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 5, "{check}");
        for key in ["id", "status", "summary", "objects", "fix"] {
            assert!(keys.contains(&key), "{check}");
        }
    }
    let count = |status: &str| checks.iter().filter(|c| c["status"] == status).count();
    assert_eq!(json["summary"]["fail"], 0);
    assert_eq!(json["summary"]["pass"], count("pass"));
    assert_eq!(json["summary"]["warn"], count("warn"));

    // A problem: a table without a key. Exit 1; the password from a pgpass file this time.
    source
        .batch_execute(
            "CREATE TABLE public.\"No Key\" (v int); GRANT SELECT ON public.\"No Key\" TO PUBLIC",
        )
        .await
        .expect("no-key table");
    target
        .batch_execute("CREATE TABLE public.\"No Key\" (v int)")
        .await
        .expect("no-key table on target");
    let pgpass = std::env::temp_dir().join(format!("pf-pgpass-{}", std::process::id()));
    std::fs::write(&pgpass, format!("*:*:*:{}:{}\n", role.name, role.password)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let pgpass_path = pgpass.display().to_string();
    let out = dms_migrate(
        &[
            "preflight",
            "--source",
            &source_url,
            "--target",
            &target_url,
        ],
        &[("PGPASSFILE", &pgpass_path)],
    );
    std::fs::remove_file(&pgpass).ok();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let failed = stdout.find("FAILED (").expect("a FAILED group");
    let passed = stdout.find("PASSED (").expect("a PASSED group");
    assert!(failed < passed, "{stdout}");
    assert!(stdout.contains("  source.primary_keys"), "{stdout}");
    assert!(
        stdout.contains("        ALTER TABLE public.\"No Key\" REPLICA IDENTITY FULL;"),
        "the fix under the failure: {stdout}"
    );
    assert!(!stdout.contains(&role.password) && !text(&out.stderr).contains(&role.password));

    // Could not run: wrong password (with the password in the URL, which must not be echoed), and no
    // server listening.
    let wrong = url_as(&dbs.source_url, &role.name, Some("Wrong-Pass-77"));
    // The URL's password wins over PGPASSWORD (which serves the target here).
    let out = dms_migrate(
        &["preflight", "--source", &wrong, "--target", &target_url],
        &[("PGPASSWORD", &role.password)],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("Postgres.AuthFailed"), "{stderr}");
    assert!(!stderr.contains("Wrong-Pass-77") && !text(&out.stdout).contains("Wrong-Pass-77"));
    let out = dms_migrate(
        &[
            "preflight",
            "--source",
            "postgres://nobody:Secret-Pw-1@127.0.0.1:1/x?sslmode=disable&connect_timeout=2",
            "--target",
            &target_url,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("Postgres.Unreachable"),
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&out.stderr).contains("Secret-Pw-1"));
    let out = dms_migrate(&["preflight", "--target", &target_url], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--source URL or set PGSOURCE"));

    let help = text(&dms_migrate(&["preflight", "--help"], &[]).stdout);
    assert!(
        help.contains("Exit codes:") && help.contains("2  the command could not run"),
        "{help}"
    );
    role.drop(&lab, &dbs).await;
}
