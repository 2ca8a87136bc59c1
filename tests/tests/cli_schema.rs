//! `dms-migrate schema apply` and `constraints apply`, the built binary against the lab: the demo and
//! the hard schema round-trip (pre-load objects before the load, deferred ones after it, identity back to
//! ALWAYS), refusals (non-empty target, missing extension, old pg_dump), dry run, violations named with a
//! sample key, and a rerun that resumes after a partly applied file with an INVALID index.

use std::path::{Path, PathBuf};
use std::process::Output;

use integration_tests::lab::connect;
use integration_tests::lab::{self, workspace_root, Lab};
use serde_json::Value;
use tokio_postgres::Client;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(workspace_root().join("tests/fixtures").join(name)).unwrap()
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cli-schema-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn dms_migrate(args: &[&str]) -> Output {
    lab::dms_migrate()
        .args(args)
        .output()
        .expect("run dms-migrate")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            stdout(o),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn schema_apply(source: &str, target: &str, file: &Path, extra: &[&str]) -> Output {
    let file = file.to_str().unwrap();
    let mut args = vec![
        "schema",
        "apply",
        "--source",
        source,
        "--target",
        target,
        "--deferred-file",
        file,
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    dms_migrate(&args)
}

fn constraints_apply(target: &str, file: &Path) -> Output {
    dms_migrate(&[
        "constraints",
        "apply",
        "--target",
        target,
        "--file",
        file.to_str().unwrap(),
        "--format",
        "json",
    ])
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

const USER_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema', 'public') AND n.nspname NOT LIKE 'pg\\_%'";

/// Constraints of one contype (p, f, u, c) in the user schemas, and how many are validated.
async fn constraints(client: &Client, contype: &str) -> (i64, i64) {
    let row = client
        .query_one(
            &format!(
                "SELECT count(*), count(*) FILTER (WHERE con.convalidated) FROM pg_constraint con
                 JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE con.contype = $1::text::\"char\" AND {USER_SCHEMAS}"
            ),
            &[&contype],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// Indexes that back no constraint, and how many are valid.
async fn secondary_indexes(client: &Client) -> (i64, i64) {
    let row = client
        .query_one(
            &format!(
                "SELECT count(*), count(*) FILTER (WHERE x.indisvalid) FROM pg_index x
                 JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_namespace n ON n.oid = i.relnamespace
                 WHERE {USER_SCHEMAS}
                   AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = x.indexrelid)"
            ),
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

async fn user_triggers(client: &Client) -> i64 {
    count(
        client,
        &format!(
            "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT t.tgisinternal AND {USER_SCHEMAS}"
        ),
    )
    .await
}

async fn identity(client: &Client, table: &str, column: &str) -> String {
    client
        .query_one(
            "SELECT attidentity::text FROM pg_attribute WHERE attrelid = $1::text::regclass AND attname = $2",
            &[&table, &column],
        )
        .await
        .unwrap()
        .get(0)
}

/// (kind, name) of every item line of a deferred file.
fn deferred_items(file: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("-- dms-migrate-item "))
        .map(|meta| {
            let v: Value = serde_json::from_str(meta).unwrap();
            (
                v["kind"].as_str().unwrap().to_string(),
                v["name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn item<'a>(report: &'a Value, name_suffix: &str) -> &'a Value {
    report["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"].as_str().unwrap().ends_with(name_suffix))
        .unwrap_or_else(|| panic!("no item {name_suffix} in {report:#}"))
}

async fn demo_source(url: &str) -> Client {
    let source = connect(url).await;
    source
        .batch_execute(&fixture("demo_schema.sql"))
        .await
        .unwrap();
    source
        .batch_execute(&format!(
            "SET demo.rows = '1000';\n{}",
            fixture("demo_data.sql")
        ))
        .await
        .unwrap();
    source
}

#[tokio::test]
async fn demo_schema_applies_before_the_load_and_constraints_after() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("sch_demo").await;
    let dir = scratch("demo");
    let file = dir.join("deferred.sql");
    let source = demo_source(&dbs.source_url).await;
    let target = connect(&dbs.target_url).await;

    // Dry run: the plan, nothing changed anywhere.
    let dry = schema_apply(&dbs.source_url, &dbs.target_url, &file, &["--dry-run"]);
    assert_exit(&dry, 0);
    let plan = json(&dry);
    assert_eq!(plan["status"], "dry-run");
    assert_eq!(plan["pre_load"]["table"], 7, "{plan:#}");
    assert_eq!(plan["pre_load"]["primary key"], 7, "{plan:#}");
    assert_eq!(plan["deferred"]["foreign key"], 5, "{plan:#}");
    assert_eq!(plan["deferred"]["unique constraint"], 1, "{plan:#}");
    assert!(!file.exists());
    assert_eq!(
        count(
            &target,
            "SELECT count(*) FROM pg_namespace WHERE nspname IN ('app', 'Billing', 'audit')"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &source,
            "SELECT count(*) FROM pg_class WHERE relname = 'dms_migrate_sentinel'"
        )
        .await,
        0
    );
    let text = dms_migrate(&[
        "schema",
        "apply",
        "--source",
        &dbs.source_url,
        "--target",
        &dbs.target_url,
        "--dry-run",
        "--deferred-file",
        file.to_str().unwrap(),
    ]);
    assert_exit(&text, 0);
    assert!(
        stdout(&text).contains("CREATE TABLE app.orders"),
        "{}",
        stdout(&text)
    );
    assert!(!file.exists());

    // Apply: pre-load objects present, deferred ones absent and listed in the file.
    let applied = schema_apply(&dbs.source_url, &dbs.target_url, &file, &[]);
    assert_exit(&applied, 0);
    let report = json(&applied);
    assert_eq!(report["status"], "applied");
    let sentinel = report["sentinel"].as_str().unwrap().to_string();
    assert_eq!(sentinel, "\"Billing\".dms_migrate_sentinel");
    for side in [&source, &target] {
        assert_eq!(
            count(
                side,
                &format!("SELECT count(*) FROM pg_class WHERE oid = to_regclass('{sentinel}')")
            )
            .await,
            1
        );
    }
    assert_eq!(
        constraints(&target, "p").await.0,
        8,
        "7 tables + the sentinel"
    );
    assert_eq!(constraints(&target, "f").await.0, 0);
    assert_eq!(constraints(&target, "u").await.0, 0);
    assert_eq!(secondary_indexes(&target).await.0, 0);
    assert_eq!(user_triggers(&target).await, 0);
    assert_eq!(
        count(
            &target,
            "SELECT count(*) FROM pg_sequences WHERE schemaname IN ('app', 'Billing', 'audit')"
        )
        .await,
        7
    );
    assert_eq!(
        count(
            &target,
            "SELECT count(*) FROM pg_views WHERE schemaname = 'app'"
        )
        .await,
        1
    );
    assert_eq!(
        identity(&target, "\"Billing\".\"Invoices\"", "id").await,
        "d"
    );
    let items = deferred_items(&file);
    for expected in [
        ("foreign-key", "orders_customer_id_fkey"),
        ("unique-constraint", "customers_email_key"),
        ("index", "orders_placed_at_idx"),
        ("index", "Invoices_order_id_idx"),
        ("trigger", "orders_touch_updated_at"),
        ("identity-always", "id"),
    ] {
        assert!(
            items.contains(&(expected.0.to_string(), expected.1.to_string())),
            "{expected:?} not in {items:?}"
        );
    }
    assert_eq!(items.len(), 5 + 1 + 5 + 2 + 1, "{items:?}");

    // The load (DMS inserts the source's values, identity columns included) ...
    target
        .batch_execute(&format!(
            "SET demo.rows = '1000';\n{}",
            fixture("demo_data.sql")
        ))
        .await
        .unwrap();
    target
        .batch_execute("INSERT INTO \"Billing\".\"Invoices\" (id, order_id, \"amountCents\", issued_at) VALUES (9001, 900, 1, now())")
        .await
        .expect("BY DEFAULT accepts an explicit identity value");

    // ... after which a second schema apply is refused, naming the tables holding rows.
    let refused = schema_apply(&dbs.source_url, &dbs.target_url, &file, &[]);
    assert_exit(&refused, 1);
    let refusal = json(&refused);
    assert_eq!(refusal["status"], "refused");
    assert!(
        refusal["objects"]
            .as_array()
            .unwrap()
            .contains(&Value::from("app.customers")),
        "{refusal:#}"
    );
    let forced = schema_apply(
        &dbs.source_url,
        &dbs.target_url,
        &dir.join("other.sql"),
        &["--allow-non-empty"],
    );
    assert_exit(&forced, 2);
    assert!(String::from_utf8_lossy(&forced.stderr).contains("nothing was applied"));

    // constraints apply: everything present and valid, identity ALWAYS again.
    let done = constraints_apply(&dbs.target_url, &file);
    assert_exit(&done, 0);
    let report = json(&done);
    assert_eq!(report["summary"]["applied"], 14, "{report:#}");
    assert_eq!(constraints(&target, "f").await, (5, 5));
    assert_eq!(constraints(&target, "u").await, (1, 1));
    assert_eq!(secondary_indexes(&target).await, (5, 5));
    assert_eq!(user_triggers(&target).await, 2);
    assert_eq!(
        identity(&target, "\"Billing\".\"Invoices\"", "id").await,
        "a"
    );

    // Running it again changes nothing.
    let again = json(&constraints_apply(&dbs.target_url, &file));
    assert_eq!(again["summary"]["skipped"], 14, "{again:#}");
    assert_eq!(again["summary"]["applied"], 0, "{again:#}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn hard_schema_round_trips() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("sch_hard").await;
    let dir = scratch("hard");
    let file = dir.join("deferred.sql");
    let hard = fixture("hard_schema.sql");
    let source = connect(&dbs.source_url).await;
    source.batch_execute(&hard).await.unwrap();
    let target = connect(&dbs.target_url).await;

    let applied = schema_apply(
        &dbs.source_url,
        &dbs.target_url,
        &file,
        &["--schemas", "Sales,order,inventory"],
    );
    assert_exit(&applied, 0);
    assert_eq!(json(&applied)["sentinel"], "\"Sales\".dms_migrate_sentinel");
    for (table, column) in [
        ("\"Sales\".\"Customer Accounts\"", "Id"),
        ("\"Sales\".addresses", "id"),
    ] {
        assert_eq!(identity(&target, table, column).await, "d", "{table}");
    }
    // Partitions attached, with their primary keys attached to the parent's.
    assert_eq!(
        count(
            &target,
            "SELECT count(*) FROM pg_inherits WHERE inhparent = '\"order\".\"Line\"'::regclass"
        )
        .await,
        2
    );
    assert_eq!(count(&target, "SELECT count(*) FROM pg_inherits WHERE inhparent = '\"order\".\"Line_pkey\"'::regclass").await, 2);
    assert_eq!(
        count(&target, "SELECT count(*) FROM pg_class WHERE oid = 'inventory.stock_log'::regclass AND relreplident = 'f'").await,
        1
    );
    assert_eq!(constraints(&target, "c").await.0, 0, "checks are deferred");
    assert_eq!(constraints(&target, "f").await.0, 0);

    // The load: the same rows, the identity values generated as on the source.
    let (_, rows) = hard.split_once("\nBEGIN;").unwrap();
    target
        .batch_execute(&format!("BEGIN;{rows}"))
        .await
        .unwrap();

    // A row the check rejects: named with its key, the rest applied; fixed, a rerun validates it.
    target
        .batch_execute("INSERT INTO inventory.\"Items\" (sku, \"onHand\") VALUES ('Z-9', -5)")
        .await
        .unwrap();
    let first = constraints_apply(&dbs.target_url, &file);
    assert_exit(&first, 1);
    let report = json(&first);
    assert_eq!(report["summary"]["failed"], 1, "{report:#}");
    let check = item(&report, "Items_onHand_check\"");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains(r#"sample offending key: {"sku":"Z-9"}"#),
        "{check:#}"
    );
    target
        .batch_execute("DELETE FROM inventory.\"Items\" WHERE sku = 'Z-9'")
        .await
        .unwrap();
    let done = constraints_apply(&dbs.target_url, &file);
    assert_exit(&done, 0);
    let report = json(&done);
    assert_eq!(report["summary"]["applied"], 1, "{report:#}");
    assert_eq!(constraints(&target, "f").await, (2, 2), "the FK cycle");
    assert_eq!(constraints(&target, "u").await, (1, 1));
    assert_eq!(constraints(&target, "c").await, (2, 2));
    assert_eq!(
        count(&target, "SELECT count(*) FROM pg_index WHERE indexrelid = '\"order\".\"Line_sku_idx\"'::regclass AND indisvalid").await,
        1,
        "the partitioned index is complete"
    );
    assert_eq!(user_triggers(&target).await, 1);
    for (table, column) in [
        ("\"Sales\".\"Customer Accounts\"", "Id"),
        ("\"Sales\".addresses", "id"),
    ] {
        assert_eq!(identity(&target, table, column).await, "a", "{table}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn violations_are_named_and_a_rerun_resumes() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("sch_resume").await;
    let dir = scratch("resume");
    let file = dir.join("deferred.sql");
    demo_source(&dbs.source_url).await;
    let target = connect(&dbs.target_url).await;
    assert_exit(
        &schema_apply(&dbs.source_url, &dbs.target_url, &file, &[]),
        0,
    );
    target
        .batch_execute(&format!(
            "SET demo.rows = '1000';\n{}\n\
             INSERT INTO app.orders (id, customer_id, placed_at) VALUES (424242, 999999, now());\n\
             UPDATE app.customers SET email = 'customer1@example.com' WHERE id = 2;",
            fixture("demo_data.sql")
        ))
        .await
        .unwrap();
    // An index build an interruption left INVALID, under a deferred index's name.
    let failed_build = target
        .batch_execute(
            "CREATE UNIQUE INDEX CONCURRENTLY orders_placed_at_idx ON app.orders (status)",
        )
        .await;
    assert!(failed_build.is_err());

    let first = constraints_apply(&dbs.target_url, &file);
    assert_exit(&first, 1);
    let report = json(&first);
    let rebuilt = item(&report, "orders_placed_at_idx");
    assert_eq!(rebuilt["status"], "applied", "{rebuilt:#}");
    assert!(
        rebuilt["detail"].as_str().unwrap().contains("INVALID"),
        "{rebuilt:#}"
    );
    assert_eq!(
        count(&target, "SELECT count(*) FROM pg_index WHERE indexrelid = 'app.orders_placed_at_idx'::regclass AND indisvalid AND NOT indisunique").await,
        1
    );
    let fk = item(&report, "orders_customer_id_fkey");
    assert_eq!(fk["status"], "failed");
    assert!(
        fk["detail"]
            .as_str()
            .unwrap()
            .contains("Key (customer_id)=(999999)"),
        "{fk:#}"
    );
    let unique = item(&report, "customers_email_key");
    assert_eq!(unique["status"], "failed");
    assert!(
        unique["detail"]
            .as_str()
            .unwrap()
            .contains("Key (email)=(customer1@example.com) is duplicated"),
        "{unique:#}"
    );
    assert_eq!(report["summary"]["failed"], 2, "{report:#}");
    assert_eq!(
        report["summary"]["applied"], 12,
        "everything else applied: {report:#}"
    );
    // What the interruption left: an INVALID index and a NOT VALID foreign key.
    assert_eq!(
        count(&target, "SELECT count(*) FROM pg_index WHERE indexrelid = 'app.customers_email_key'::regclass AND NOT indisvalid").await,
        1
    );
    assert_eq!(constraints(&target, "f").await, (5, 4));

    target
        .batch_execute(
            "DELETE FROM app.orders WHERE id = 424242;
             UPDATE app.customers SET email = 'customer2@example.com' WHERE id = 2;",
        )
        .await
        .unwrap();
    let second = constraints_apply(&dbs.target_url, &file);
    assert_exit(&second, 0);
    let report = json(&second);
    assert_eq!(report["summary"]["applied"], 2, "{report:#}");
    assert_eq!(report["summary"]["skipped"], 12, "{report:#}");
    assert!(item(&report, "customers_email_key")["detail"]
        .as_str()
        .unwrap()
        .contains("INVALID"));
    assert_eq!(constraints(&target, "f").await, (5, 5));
    assert_eq!(constraints(&target, "u").await, (1, 1));
    let _ = std::fs::remove_dir_all(dir);
}

/// A stand-in pg_dump: prints `version`, or `dump` for a dump, and records its arguments and whether
/// it got a password in its environment.
fn fake_pg_dump(dir: &Path, version: &str, dump: &str) -> PathBuf {
    let dump_file = dir.join("dump.sql");
    std::fs::write(&dump_file, dump).unwrap();
    let script = dir.join("pg_dump");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'pg_dump (PostgreSQL) {version}'; exit 0; fi\n\
             echo \"$@\" > '{d}/args'\n[ -n \"$PGPASSWORD\" ] && echo yes > '{d}/had-password'\ncat '{f}'\n",
            d = dir.display(),
            f = dump_file.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

#[tokio::test]
async fn missing_extension_and_old_pg_dump_are_refused() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("sch_refuse").await;
    let dir = scratch("refuse");
    let file = dir.join("deferred.sql");
    let target = connect(&dbs.target_url).await;
    let dump = "--\n-- Name: app; Type: SCHEMA; Schema: -; Owner: -\n--\n\nCREATE SCHEMA app;\n\n\
                --\n-- Name: no_such_extension; Type: EXTENSION; Schema: -; Owner: -\n--\n\n\
                CREATE EXTENSION IF NOT EXISTS no_such_extension WITH SCHEMA app;\n\n\
                --\n-- Name: t; Type: TABLE; Schema: app; Owner: -\n--\n\nCREATE TABLE app.t (\n    id integer NOT NULL\n);\n";

    let fake = fake_pg_dump(&dir, "15.4", dump);
    let out = schema_apply(
        &dbs.source_url,
        &dbs.target_url,
        &file,
        &["--pg-dump", fake.to_str().unwrap()],
    );
    assert_exit(&out, 1);
    let report = json(&out);
    assert_eq!(
        report["objects"],
        serde_json::json!(["no_such_extension"]),
        "{report:#}"
    );
    assert_eq!(
        count(
            &target,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'app'"
        )
        .await,
        0
    );
    assert!(!file.exists());
    // The connection reached pg_dump through its environment, never its command line.
    let args = std::fs::read_to_string(dir.join("args")).unwrap();
    assert!(
        args.contains("--schema-only") && args.contains("--no-owner"),
        "{args}"
    );
    assert!(!args.contains("lab-admin"), "{args}");
    assert!(dir.join("had-password").exists());

    let old = fake_pg_dump(&dir, "9.6.24", dump);
    let out = schema_apply(
        &dbs.source_url,
        &dbs.target_url,
        &file,
        &["--pg-dump", old.to_str().unwrap()],
    );
    assert_exit(&out, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("postgresql-client-15"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Constraints a partitioned table shares with its partitions: a CHECK each partition inherits, a
/// foreign key referencing the partitioned table (PostgreSQL keeps a copy per partition), a unique
/// constraint; all end valid, and a rerun skips them.
#[tokio::test]
async fn partitioned_table_constraints_end_valid() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("sch_part").await;
    let dir = scratch("part");
    let file = dir.join("deferred.sql");
    connect(&dbs.source_url)
        .await
        .batch_execute(
            "CREATE SCHEMA s;
             CREATE TABLE s.p (id int, d date, CONSTRAINT d_recent CHECK (d > '2000-01-01'),
                               PRIMARY KEY (id, d)) PARTITION BY RANGE (d);
             CREATE TABLE s.p1 PARTITION OF s.p FOR VALUES FROM ('2000-01-01') TO ('2030-01-01');
             ALTER TABLE s.p ADD CONSTRAINT p_u UNIQUE (d, id);
             CREATE TABLE s.c (id int PRIMARY KEY, pid int, pd date, FOREIGN KEY (pid, pd) REFERENCES s.p);",
        )
        .await
        .unwrap();
    assert_exit(
        &schema_apply(&dbs.source_url, &dbs.target_url, &file, &[]),
        0,
    );
    let target = connect(&dbs.target_url).await;
    target
        .batch_execute("INSERT INTO s.p VALUES (1, '2020-01-01'); INSERT INTO s.c VALUES (1, 1, '2020-01-01');")
        .await
        .unwrap();
    let done = constraints_apply(&dbs.target_url, &file);
    assert_exit(&done, 0);
    assert_eq!(json(&done)["summary"]["failed"], 0);
    let (fks, valid_fks) = constraints(&target, "f").await;
    assert!(
        fks >= 1 && fks == valid_fks,
        "{fks} foreign keys, {valid_fks} valid"
    );
    assert_eq!(constraints(&target, "c").await, (2, 2));
    assert_eq!(constraints(&target, "u").await, (2, 2));
    let again = json(&constraints_apply(&dbs.target_url, &file));
    assert_eq!(again["summary"]["applied"], 0, "{again:#}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_file_schema_apply_did_not_write_is_refused() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("sch_badfile").await;
    let dir = scratch("badfile");
    let target = connect(&dbs.target_url).await;
    target
        .batch_execute("CREATE TABLE x (id int PRIMARY KEY)")
        .await
        .unwrap();

    // A hand-written SQL file: refused before anything runs, naming what a deferred file looks like.
    let hand_written = dir.join("by-hand.sql");
    std::fs::write(&hand_written, "DROP TABLE x;\n").unwrap();
    let refused = constraints_apply(&dbs.target_url, &hand_written);
    assert_exit(&refused, 2);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("is not a deferred file written by `dms-migrate schema apply`")
            && stderr.contains("line 1 is `DROP TABLE x;`")
            && stderr.contains("-- dms-migrate-item {json}"),
        "{stderr}"
    );
    assert!(stdout(&refused).is_empty(), "{}", stdout(&refused));
    assert_eq!(
        count(&target, "SELECT count(*) FROM x").await,
        0,
        "x still exists"
    );

    // A deferred file with SQL pasted above its items: refused too, naming the line.
    let pasted = dir.join("pasted.sql");
    std::fs::write(
        &pasted,
        "-- Objects deferred until after the DMS full load, written by `dms-migrate schema apply`.\n\
         DROP TABLE x;\n",
    )
    .unwrap();
    let refused = constraints_apply(&dbs.target_url, &pasted);
    assert_exit(&refused, 2);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("line 2 holds SQL outside any item (`DROP TABLE x;`)"),
        "{stderr}"
    );

    // A schema with nothing to defer: schema apply writes the header and no item, and that stays valid.
    let source = connect(&dbs.source_url).await;
    source
        .batch_execute("CREATE SCHEMA plain; CREATE TABLE plain.t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let empty = dir.join("deferred.sql");
    let applied = schema_apply(
        &dbs.source_url,
        &dbs.target_url,
        &empty,
        &["--schemas", "plain"],
    );
    assert_exit(&applied, 0);
    assert!(
        deferred_items(&empty).is_empty(),
        "{}",
        std::fs::read_to_string(&empty).unwrap()
    );
    let done = constraints_apply(&dbs.target_url, &empty);
    assert_exit(&done, 0);
    assert_eq!(
        json(&done)["summary"],
        serde_json::json!({"applied": 0, "skipped": 0, "failed": 0})
    );
    let _ = std::fs::remove_dir_all(dir);
}
