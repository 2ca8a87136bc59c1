//! The lab as the tests see it: the KEY=VALUE file `scripts/lab.sh up` writes. A test that needs the lab
//! skips (saying so) when it is down, and fails when `LAB_REQUIRED=1`, which CI sets.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Lab {
    vars: HashMap<String, String>,
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

fn lab_required() -> bool {
    std::env::var("LAB_REQUIRED").is_ok_and(|v| v == "1")
}

/// Skips (returns None) or panics, as `LAB_REQUIRED` says.
pub fn unavailable(why: &str) -> Option<Lab> {
    if lab_required() {
        panic!("LAB_REQUIRED=1 but the lab is not usable: {why}. Run `make lab-up`.");
    }
    eprintln!("skipping: the lab is not usable ({why}); run `make lab-up`");
    None
}

impl Lab {
    /// The running lab, or None (test skipped) when it is down and not required.
    pub async fn get() -> Option<Lab> {
        let path = std::env::var_os("LAB_ENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join(".lab/env"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            return unavailable(&format!("{} does not exist", path.display()));
        };
        let vars = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let lab = Lab { vars };
        for url in [lab.var("SOURCE_URL"), lab.var("TARGET_URL")] {
            if let Err(e) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                return unavailable(&format!(
                    "PostgreSQL at {} refused: {e}",
                    url.split('@').next_back().unwrap_or("")
                ));
            }
        }
        if reqwest::get(format!("{}/moto-api/", lab.var("MOTO_URL")))
            .await
            .is_err()
        {
            return unavailable("moto does not answer");
        }
        Some(lab)
    }

    pub fn var(&self, key: &str) -> String {
        self.vars
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("{key} missing from the lab env file; re-run `make lab-up`"))
    }

    /// `admin_url` (a lab URL that logs in as the lab's admin) logging in as `role` with `password`.
    pub fn login_url(&self, admin_url: &str, role: &str, password: &str) -> String {
        let admin = format!(
            "{}:{}@",
            self.var("LAB_ADMIN_USER"),
            self.var("LAB_ADMIN_PASSWORD")
        );
        admin_url.replacen(&admin, &format!("{role}:{password}@"), 1)
    }

    /// The AWS environment a Lambda or client needs to reach moto.
    pub fn aws_env(&self) -> Vec<(String, String)> {
        [
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ]
        .into_iter()
        .map(|k| (k.to_string(), self.var(k)))
        .collect()
    }

    pub async fn aws_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(self.var("AWS_ENDPOINT_URL"))
            .region(aws_config::Region::new(self.var("AWS_REGION")))
            .credentials_provider(aws_sdk_sns::config::Credentials::new(
                self.var("AWS_ACCESS_KEY_ID"),
                self.var("AWS_SECRET_ACCESS_KEY"),
                None,
                None,
                "lab",
            ))
            .load()
            .await
    }

    /// A database of its own on both clusters (sqlx-style), dropped when the returned value is dropped
    /// together with the roles a test made for it (named `<purpose>_<database>`),
    /// unless the test failed or `LAB_KEEP_DATABASES=1` (kept to look at). Databases of earlier runs whose process is gone
    /// (a killed run never drops its own) are dropped first, so a day of runs does not fill the disk.
    pub async fn fresh_databases(&self, test: &str) -> TestDatabases {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t_{}_{}_{}",
            test,
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let admin_urls = [self.var("SOURCE_URL"), self.var("TARGET_URL")];
        let mut urls = Vec::new();
        for admin_url in &admin_urls {
            let (client, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
                .await
                .expect("lab admin connect");
            tokio::spawn(conn);
            let leftovers: Vec<String> = client
                .query(
                    "SELECT datname FROM pg_database WHERE datname LIKE 't\\_%'",
                    &[],
                )
                .await
                .expect("list test databases")
                .iter()
                .map(|row| row.get(0))
                .filter(|db: &String| left_by_a_finished_run(db))
                .collect();
            for db in leftovers {
                drop_database(admin_url, &db).await;
            }
            let leftover_roles: Vec<String> = client
                .query(
                    "SELECT rolname FROM pg_roles WHERE rolname LIKE '%\\_t\\_%'",
                    &[],
                )
                .await
                .expect("list test roles")
                .iter()
                .map(|row| row.get(0))
                .filter(|role: &String| {
                    role.split_once("_t_")
                        .is_some_and(|(_, db)| left_by_a_finished_run(&format!("t_{db}")))
                })
                .collect();
            for role in leftover_roles {
                let _ = client
                    .batch_execute(&format!("DROP ROLE IF EXISTS \"{role}\""))
                    .await;
            }
            client
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await
                .expect("drop");
            client
                .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .await
                .expect("create database");
            urls.push(admin_url.replacen("/postgres?", &format!("/{name}?"), 1));
        }
        TestDatabases {
            name,
            source_url: urls[0].clone(),
            target_url: urls[1].clone(),
            admin_urls,
        }
    }

    /// Drops a test's databases on both clusters (for tests whose data is too big to leave behind).
    pub async fn drop_databases(&self, dbs: &TestDatabases) {
        for key in ["SOURCE_URL", "TARGET_URL"] {
            let (client, conn) = tokio_postgres::connect(&self.var(key), tokio_postgres::NoTls)
                .await
                .expect("lab admin connect");
            tokio::spawn(conn);
            client
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    dbs.name
                ))
                .await
                .expect("drop");
        }
    }
}

/// `t_<test>_<pid>_<n>` whose process no longer runs. A database named otherwise, or whose process is
/// alive (another test binary of the same run), is never touched.
fn left_by_a_finished_run(database: &str) -> bool {
    let mut parts = database.rsplitn(3, '_');
    let (Some(_counter), Some(pid), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    pid.parse::<u32>()
        .is_ok_and(|pid| pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists())
}

/// Drops `database` and what would keep PostgreSQL from dropping it: subscriptions (detached from their
/// remote slot first, so the drop does not wait on the other cluster) and logical slots (their walsenders
/// ended first). Best effort and bounded: a failure is reported, never a panic.
async fn drop_database(admin_url: &str, database: &str) {
    let Ok((admin, conn)) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await else {
        eprintln!("could not connect to drop test database {database}");
        return;
    };
    tokio::spawn(conn);
    let database_url = admin_url.replacen("/postgres?", &format!("/{database}?"), 1);
    if let Ok((db, conn)) = tokio_postgres::connect(&database_url, tokio_postgres::NoTls).await {
        tokio::spawn(conn);
        let subscriptions = db
            .query(
                "SELECT quote_ident(subname) FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid \
                 WHERE d.datname = current_database()",
                &[],
            )
            .await
            .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>())
            .unwrap_or_default();
        for sub in subscriptions {
            let _ = db
                .batch_execute(&format!(
                    "ALTER SUBSCRIPTION {sub} DISABLE; ALTER SUBSCRIPTION {sub} SET (slot_name = NONE); \
                     DROP SUBSCRIPTION {sub};"
                ))
                .await;
        }
    }
    let mut last_error = String::new();
    for _ in 0..10 {
        let _ = admin
            .query(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
                 WHERE database = $1 AND active_pid IS NOT NULL",
                &[&database],
            )
            .await;
        let _ = admin
            .query(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE database = $1 AND NOT active",
                &[&database],
            )
            .await;
        match admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
            ))
            .await
        {
            Ok(()) => {
                drop_roles_of(&admin, database).await;
                return;
            }
            Err(e) => last_error = e.to_string(),
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    eprintln!("test database {database} was left behind: {last_error}");
}

pub struct TestDatabases {
    pub name: String,
    pub source_url: String,
    pub target_url: String,
    admin_urls: [String; 2],
}

impl Drop for TestDatabases {
    /// On its own thread and runtime: Drop cannot await, and the test's runtime may be shutting down.
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var("LAB_KEEP_DATABASES").is_ok_and(|v| v == "1") {
            eprintln!(
                "keeping database {} on both clusters to look at; the next lab test run drops it",
                self.name
            );
            return;
        }
        let name = self.name.clone();
        let admin_urls = self.admin_urls.clone();
        let dropped = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                for url in &admin_urls {
                    drop_database(url, &name).await;
                }
            });
        })
        .join();
        if dropped.is_err() {
            eprintln!("dropping test database {} panicked", self.name);
        }
    }
}

/// Roles a test made for its database, named `<purpose>_<database>` (an application role, say): once the
/// database is gone nothing of theirs is left, and a lab that keeps them freezes them all at the next
/// cutover test. Best effort, like the database drop.
async fn drop_roles_of(admin: &tokio_postgres::Client, database: &str) {
    let roles = admin
        .query(
            "SELECT rolname FROM pg_roles WHERE right(rolname, length($1) + 1) = '_' || $1",
            &[&database],
        )
        .await
        .map(|rows| {
            rows.iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for role in roles {
        if let Err(e) = admin
            .batch_execute(&format!("DROP ROLE IF EXISTS \"{role}\""))
            .await
        {
            eprintln!("test role {role} was left behind: {e}");
        }
    }
}

/// Where cargo put the debug binaries (`make test` builds them before running the tests).
pub fn binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let path = target.join("debug").join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace --bins` (make test does)",
        path.display()
    );
    path
}

/// The built `dms-migrate`, with no PG* variable or password file of the machine's user able to answer:
/// what a test gives it on the command line is all it has.
/// A connection to a lab database, its driver task spawned; panics naming the failure (tests only).
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("lab connect: {e}"));
    tokio::spawn(connection);
    client
}

pub fn dms_migrate() -> std::process::Command {
    let mut command = std::process::Command::new(binary("dms-migrate"));
    command
        .env_remove("PGSOURCE")
        .env_remove("PGTARGET")
        .env_remove("PGPASSWORD")
        .env_remove("PGPASSFILE")
        .env("HOME", std::env::temp_dir());
    command
}
