//! The way back's preflight checks (`fallback.*`, docs/fallback.md) on the lab, through the built
//! `dms-migrate preflight`: a migration role with every prerequisite passes them (the lab target runs
//! with wal_level = logical, as PlanetScale must); a role without REPLICATION on the target, without
//! write privileges on the source or without `SET session_replication_role` there fails the check that
//! names it, with its fix; `--no-fallback` leaves them out; no probe slot is ever left on the target.
//! The wal_level failure cannot be produced per test (a server setting): its verdict is unit-tested in
//! `crates/dms-core/src/pg/checks/fallback.rs`.

use dms_core::pg::checks::ids;
use integration_tests::lab::connect;
use integration_tests::lab::{self, Lab, TestDatabases};
use serde_json::Value;
use tokio_postgres::Client;

/// A lab URL logging in as `user` (the password comes from PGPASSWORD).
fn url_as(admin_url: &str, user: &str) -> String {
    let (_, rest) = admin_url.split_once('@').expect("lab URL has user@host");
    format!("postgres://{user}@{rest}")
}

const PASSWORD: &str = "Fallback-Check-7";

const SCHEMA: &str = r#"
    CREATE SCHEMA "Mixed Case";
    CREATE TABLE "Mixed Case"."Order Items" (id bigint PRIMARY KEY, qty int NOT NULL);
    CREATE TABLE public.customers (id int PRIMARY KEY, name text);
"#;

/// The migration role of one test, on both clusters, named `<purpose>_<database>` so the lab drops it with
/// the database. What it may do on each side is the test's to grant.
struct Setup {
    dbs: TestDatabases,
    role: String,
    source_admin: Client,
    target_admin: Client,
}

impl Setup {
    async fn new(lab: &Lab, test: &str) -> Setup {
        let dbs = lab.fresh_databases(test).await;
        let role = format!("fb_{}", dbs.name);
        let (source_admin, target_admin) = (
            connect(&dbs.source_url).await,
            connect(&dbs.target_url).await,
        );
        for admin in [&source_admin, &target_admin] {
            admin
                .batch_execute(&format!(
                    "{SCHEMA}
                     CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}';
                     GRANT USAGE, CREATE ON SCHEMA public TO {role};
                     GRANT USAGE ON SCHEMA \"Mixed Case\" TO {role};
                     GRANT SELECT ON ALL TABLES IN SCHEMA public, \"Mixed Case\" TO {role};"
                ))
                .await
                .expect("schema and role");
        }
        Setup {
            dbs,
            role,
            source_admin,
            target_admin,
        }
    }

    /// `dms-migrate preflight --format json` as the role: exit code and the checks by id.
    fn preflight(&self, extra: &[&str]) -> (i32, Vec<Value>) {
        let source = url_as(&self.dbs.source_url, &self.role);
        let target = url_as(&self.dbs.target_url, &self.role);
        let out = lab::dms_migrate()
            .args([
                "preflight",
                "--format",
                "json",
                "--source",
                &source,
                "--target",
                &target,
            ])
            .args(extra)
            .env("PGPASSWORD", PASSWORD)
            .output()
            .expect("run dms-migrate");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "preflight printed no JSON ({e}): {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let checks = json["checks"].as_array().expect("checks").clone();
        (out.status.code().unwrap_or(-1), checks)
    }

    /// Revokes the parameter privilege a test granted (it would keep the role from being dropped).
    async fn finish(self) {
        for admin in [&self.source_admin, &self.target_admin] {
            admin
                .batch_execute(&format!(
                    "REVOKE SET ON PARAMETER session_replication_role FROM {}",
                    self.role
                ))
                .await
                .expect("revoke");
        }
    }
}

fn check<'a>(checks: &'a [Value], id: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {checks:#?}"))
}

/// No probe slot outlives its preflight: only temporary ones of a preflight still running may exist.
async fn assert_no_probe_slot_left(target_admin: &Client) {
    let left: Vec<String> = target_admin
        .query(
            "SELECT slot_name::text FROM pg_replication_slots
             WHERE slot_name LIKE 'dms\\_migrate\\_preflight\\_%' AND NOT temporary",
            &[],
        )
        .await
        .expect("slots")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(left.is_empty(), "probe slots left on the target: {left:?}");
}

#[tokio::test]
async fn a_role_with_every_prerequisite_passes_the_way_back_checks() {
    let Some(lab) = Lab::get().await else { return };
    let setup = Setup::new(&lab, "fb_pass").await;
    let role = &setup.role;
    setup
        .source_admin
        .batch_execute(&format!(
            "GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public, \"Mixed Case\" TO {role};
             GRANT SET ON PARAMETER session_replication_role TO {role};"
        ))
        .await
        .expect("source grants");
    setup
        .target_admin
        .batch_execute(&format!("ALTER ROLE {role} WITH REPLICATION"))
        .await
        .expect("target replication");

    let (_, checks) = setup.preflight(&[]);
    let ids_seen: Vec<&str> = checks.iter().filter_map(|c| c["id"].as_str()).collect();
    let expected: Vec<&str> = ids::SOURCE
        .iter()
        .chain(ids::TARGET.iter())
        .chain(ids::FALLBACK.iter())
        .copied()
        .collect();
    assert_eq!(ids_seen, expected, "every check, the way back's last");
    for id in [
        ids::FALLBACK_TARGET_WAL_LEVEL,
        ids::FALLBACK_TARGET_SLOT,
        ids::FALLBACK_TARGET_REPLICATION_CAPACITY,
        ids::FALLBACK_SOURCE_PRIVILEGES,
        ids::FALLBACK_SOURCE_SESSION_REPLICATION_ROLE,
    ] {
        assert_eq!(
            check(&checks, id)["status"],
            "pass",
            "{:#}",
            check(&checks, id)
        );
    }
    assert!(check(&checks, ids::FALLBACK_TARGET_SLOT)["summary"]
        .as_str()
        .is_some_and(|s| s.contains("created and dropped a test_decoding logical slot")));
    // The lab keeps PostgreSQL's default max_slot_wal_keep_size, -1: no limit, which the check warns about.
    let keep = check(&checks, ids::FALLBACK_TARGET_WAL_KEEP_SIZE);
    assert_eq!(keep["status"], "warn", "{keep:#}");
    assert!(
        keep["summary"]
            .as_str()
            .is_some_and(|s| s.contains("-1 (no limit)")),
        "{keep:#}"
    );
    assert_no_probe_slot_left(&setup.target_admin).await;
    setup.finish().await;
}

#[tokio::test]
async fn each_missing_prerequisite_fails_its_check_with_the_fix() {
    let Some(lab) = Lab::get().await else { return };
    let setup = Setup::new(&lab, "fb_fail").await;
    let role = setup.role.clone();
    // Aurora: may read but not write the mapped tables, nor SET session_replication_role. PlanetScale:
    // no REPLICATION attribute.
    let (code, checks) = setup.preflight(&[]);
    assert_eq!(code, 1, "{checks:#?}");

    let slot = check(&checks, ids::FALLBACK_TARGET_SLOT);
    assert_eq!(slot["status"], "fail", "{slot:#}");
    assert_eq!(slot["objects"], serde_json::json!([role]));
    assert!(
        slot["fix"]
            .as_str()
            .is_some_and(|f| f.starts_with(&format!("ALTER ROLE {role} WITH REPLICATION;"))),
        "{slot:#}"
    );
    assert!(
        slot["summary"]
            .as_str()
            .is_some_and(|s| s.contains("REPLICATION attribute")),
        "{slot:#}"
    );

    let privileges = check(&checks, ids::FALLBACK_SOURCE_PRIVILEGES);
    assert_eq!(privileges["status"], "fail", "{privileges:#}");
    assert_eq!(
        privileges["objects"],
        serde_json::json!(["\"Mixed Case\".\"Order Items\"", "public.customers"])
    );
    assert!(privileges["summary"].as_str().is_some_and(|s| s
        .starts_with("Aurora as the way back's DMS target: ")
        && s.contains("INSERT")));
    assert!(privileges["fix"]
        .as_str()
        .is_some_and(|f| f.contains(&format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"Mixed Case\" TO {role};"
    ))));

    let replica = check(&checks, ids::FALLBACK_SOURCE_SESSION_REPLICATION_ROLE);
    assert_eq!(replica["status"], "fail", "{replica:#}");
    assert!(replica["fix"]
        .as_str()
        .is_some_and(|f| f.starts_with(&format!(
            "GRANT SET ON PARAMETER session_replication_role TO {role};"
        ))));

    // What the role lacks elsewhere does not touch the settings checks.
    assert_eq!(
        check(&checks, ids::FALLBACK_TARGET_WAL_LEVEL)["status"],
        "pass"
    );
    assert_eq!(
        check(&checks, ids::FALLBACK_TARGET_REPLICATION_CAPACITY)["status"],
        "pass"
    );
    assert_no_probe_slot_left(&setup.target_admin).await;

    // Granting exactly what each fix says turns each into a pass.
    setup
        .target_admin
        .batch_execute(&format!("ALTER ROLE {role} WITH REPLICATION"))
        .await
        .expect("replication");
    setup
        .source_admin
        .batch_execute(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"Mixed Case\" TO {role};
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
             GRANT SET ON PARAMETER session_replication_role TO {role};"
        ))
        .await
        .expect("grants");
    let (_, checks) = setup.preflight(&[]);
    for id in [
        ids::FALLBACK_TARGET_SLOT,
        ids::FALLBACK_SOURCE_PRIVILEGES,
        ids::FALLBACK_SOURCE_SESSION_REPLICATION_ROLE,
    ] {
        assert_eq!(
            check(&checks, id)["status"],
            "pass",
            "{:#}",
            check(&checks, id)
        );
    }

    // --no-fallback: the way back's checks are left out, the others are all there.
    let (_, checks) = setup.preflight(&["--no-fallback"]);
    assert_eq!(checks.len(), ids::SOURCE.len() + ids::TARGET.len());
    assert!(
        checks
            .iter()
            .all(|c| !c["id"].as_str().unwrap_or("").starts_with("fallback.")),
        "{checks:#?}"
    );
    setup.finish().await;
}

/// `fallback status` reports the armed slot and its WAL; `fallback end` drops it, says how much WAL it held,
/// and is idempotent (status then says not armed);
/// `cleanup` reports that slot on the target beside the source's leftovers (both directions); a malformed
/// `--task-arn` is refused before anything is touched.
#[tokio::test]
async fn fallback_end_drops_the_way_back_slot_and_cleanup_sees_it_on_the_target() {
    let Some(lab) = Lab::get().await else {
        return;
    };
    let dbs = lab.fresh_databases("fallback_end").await;
    let slot = format!("wb_{}", dbs.name);
    let target = connect(&dbs.target_url).await;
    target
        .batch_execute(&format!(
            "SELECT pg_create_logical_replication_slot('{slot}', 'test_decoding');
             CREATE TABLE public.after_switch (id int PRIMARY KEY);
             INSERT INTO public.after_switch SELECT generate_series(1, 1000);"
        ))
        .await
        .expect("a way back's slot with changes behind it");
    let slot_count = || async {
        target
            .query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .expect("count slots")
            .get::<_, i64>(0)
    };

    let fallback = |command: &str, extra: &[&str]| {
        lab::dms_migrate()
            .args([
                "fallback",
                command,
                "--target",
                &dbs.target_url,
                "--way-back-slot",
                &slot,
            ])
            .args(extra)
            .output()
            .expect("dms-migrate fallback")
    };

    let cleanup = lab::dms_migrate()
        .args([
            "cleanup",
            "--source",
            &dbs.source_url,
            "--target",
            &dbs.target_url,
        ])
        .args(["--way-back-slot", &slot])
        .output()
        .expect("cleanup");
    let report = String::from_utf8_lossy(&cleanup.stdout);
    assert_eq!(cleanup.status.code(), Some(0), "{report}");
    assert!(
        report
            .lines()
            .any(|l| l.contains("would drop") && l.contains("target") && l.contains(&slot)),
        "{report}"
    );
    assert_eq!(slot_count().await, 1, "cleanup without --yes only reports");

    let status = fallback("status", &[]);
    let said = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(0), "{said}");
    assert!(
        said.starts_with("ARMED") && said.contains("test_decoding") && said.contains("NOT read"),
        "{said}"
    );

    let refused = fallback("end", &["--task-arn", "not-an-arn"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--task-arn"));
    assert_eq!(slot_count().await, 1, "nothing touched on bad input");

    let end = fallback("end", &[]);
    let said = String::from_utf8_lossy(&end.stdout);
    assert_eq!(end.status.code(), Some(0), "{said}");
    assert!(
        said.contains("The way back is ended") && said.contains("of WAL"),
        "{said}"
    );
    assert_eq!(slot_count().await, 0);

    let again = fallback("end", &[]);
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stdout).contains("already ended"));
    let gone = fallback("status", &[]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stdout).starts_with("NOT ARMED"));
}
