//! The sample shop the cutover and rollback benches measure on: tests/fixtures/demo_*.sql at a given
//! demo.rows, migrated by a dms-local task, with an application role writing orders.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dms_core::aws::dms::{Dms, StartType};
use serde_json::json;
use tokio_postgres::NoTls;

use crate::bench::{connect, dms_migrate};
use crate::dms_local::{full_load_done, wait_for_task, DmsLocal};
use crate::lab::{workspace_root, Lab, TestDatabases};

pub const APP_PASSWORD: &str = "bench-app";
const FULL_LOAD_LIMIT: Duration = Duration::from_secs(1800);

pub struct Shop {
    pub dbs: TestDatabases,
    pub dms: DmsLocal,
    pub task_arn: String,
    pub deferred: String,
    pub app_url: String,
    pub aws_env: Vec<(String, String)>,
}

/// Fresh databases with the sample shop at demo.rows `rows` on the source, an application role that may
/// insert orders, `schema apply`, and a running full-load-and-cdc task in dms-local (the stack's
/// `BatchApplyEnabled: true`) whose full load is done.
pub async fn shop(lab: &Lab, name: &str, rows: u32) -> Shop {
    let dbs = lab.fresh_databases(name).await;
    let fixture = |name: &str| {
        std::fs::read_to_string(workspace_root().join("tests/fixtures").join(name))
            .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
    };
    let role = format!("{}_app", dbs.name);
    let source = connect(&dbs.source_url).await;
    source
        .batch_execute(&format!(
            "{}\nSET demo.rows = '{rows}';\n{}\nANALYZE;
             DROP ROLE IF EXISTS \"{role}\";
             CREATE ROLE \"{role}\" LOGIN PASSWORD '{APP_PASSWORD}';
             GRANT USAGE ON SCHEMA app TO \"{role}\";
             GRANT SELECT, INSERT ON app.orders TO \"{role}\";
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA app TO \"{role}\";",
            fixture("demo_schema.sql"),
            fixture("demo_data.sql")
        ))
        .await
        .expect("the sample shop on the source");
    let deferred = std::env::temp_dir()
        .join(format!("{}.deferred.sql", dbs.name))
        .display()
        .to_string();
    let (binary, _) = dms_migrate();
    let applied = std::process::Command::new(&binary)
        .args(["schema", "apply", "--source", &dbs.source_url])
        .args(["--target", &dbs.target_url, "--deferred-file", &deferred])
        .output()
        .expect("schema apply");
    assert!(
        applied.status.success(),
        "schema apply: {}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let dms = DmsLocal::start(lab).await;
    let instance_arn = dms.register_instance("Bench-Instance").await;
    let source_arn = dms
        .register_endpoint(&DmsLocal::lab_endpoint_spec(lab, &dbs, "source"))
        .await;
    let target_arn = dms
        .register_endpoint(&DmsLocal::lab_endpoint_spec(lab, &dbs, "target"))
        .await;
    let settings = json!({"TargetMetadata": {"BatchApplyEnabled": true, "LobMaxSize": 32}});
    let task_arn = dms
        .try_control(
            "tasks",
            &json!({"identifier": format!("task-{}", dbs.name.replace('_', "-")),
                "instanceArn": instance_arn, "sourceEndpointArn": source_arn,
                "targetEndpointArn": target_arn, "migrationType": "full-load-and-cdc",
                "tableMappings": shop_mappings(), "settings": settings.to_string()}),
        )
        .await
        .expect("the task registers")["arn"]
        .as_str()
        .expect("a task ARN")
        .to_string();
    let client = dms.dms_client().await;
    client
        .start_task(&task_arn, StartType::StartReplication)
        .await
        .expect("start");
    wait_for_task(
        &client,
        &task_arn,
        "the full load",
        FULL_LOAD_LIMIT,
        |task| task.status.as_str() == "running" && full_load_done(task),
    )
    .await;
    let app_url = lab.login_url(&dbs.source_url, &role, APP_PASSWORD);
    Shop {
        dbs,
        dms,
        task_arn,
        deferred,
        app_url,
        aws_env: lab.aws_env(),
    }
}

/// The application: an order every 50 ms until `stop`; the instant of its last commit.
pub fn order_writer(
    url: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Option<Instant>> {
    tokio::spawn(async move {
        let mut last = None;
        let mut client: Option<tokio_postgres::Client> = None;
        // Bounded: 20 minutes of attempts.
        for _ in 0..24_000 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            if client.as_ref().is_none_or(|c| c.is_closed()) {
                client = match tokio_postgres::connect(&url, NoTls).await {
                    Ok((c, connection)) => {
                        tokio::spawn(connection);
                        Some(c)
                    }
                    Err(_) => None,
                };
            }
            let Some(c) = client.as_ref() else { continue };
            let wrote = c
                .execute(
                    "INSERT INTO app.orders (customer_id, placed_at) VALUES (1, now())",
                    &[],
                )
                .await;
            match wrote {
                Ok(_) => last = Some(Instant::now()),
                Err(_) => client = None,
            }
        }
        last
    })
}

impl Shop {
    /// The release (else debug) `dms-migrate` with PGSOURCE/PGTARGET, the lab's AWS and dms-local.
    pub fn cli(&self, args: &[&str]) -> tokio::process::Command {
        self.command(args, false)
    }

    /// The same with the sides swapped (PGSOURCE the target, PGTARGET the source): after a switch back,
    /// what `sequences sync` and `verify` compare.
    pub fn cli_swapped(&self, args: &[&str]) -> tokio::process::Command {
        self.command(args, true)
    }

    fn command(&self, args: &[&str], swapped: bool) -> tokio::process::Command {
        let (binary, _) = dms_migrate();
        let (source, target) = if swapped {
            (&self.dbs.target_url, &self.dbs.source_url)
        } else {
            (&self.dbs.source_url, &self.dbs.target_url)
        };
        let mut command = tokio::process::Command::new(binary);
        command
            .args(args)
            .env("PGSOURCE", source)
            .env("PGTARGET", target)
            .envs(self.aws_env.iter().cloned())
            .envs(self.dms.env())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        command
    }

    /// Runs it to the end; panics unless it exits 0.
    pub async fn run_ok(&self, args: &[&str]) {
        run_to_success(self.cli(args), args).await;
    }

    /// `run_ok` with the sides swapped.
    pub async fn run_swapped_ok(&self, args: &[&str]) {
        run_to_success(self.cli_swapped(args), args).await;
    }

    /// The application's role on the target too, allowed what it may on the source; its URL there.
    pub async fn app_on_target(&self, lab: &Lab) -> String {
        let role = format!("{}_app", self.dbs.name);
        connect(&self.dbs.target_url)
            .await
            .batch_execute(&format!(
                "DROP ROLE IF EXISTS \"{role}\";
                 CREATE ROLE \"{role}\" LOGIN PASSWORD '{APP_PASSWORD}';
                 GRANT USAGE ON SCHEMA app TO \"{role}\";
                 GRANT SELECT, INSERT ON app.orders TO \"{role}\";
                 GRANT USAGE ON ALL SEQUENCES IN SCHEMA app TO \"{role}\";"
            ))
            .await
            .expect("the application's role on the target");
        lab.login_url(&self.dbs.target_url, &role, APP_PASSWORD)
    }

    /// The lab's side of deleting the stack: dms-local first (it drops its subscriptions on exit), then
    /// the databases and the application's role on both clusters.
    pub async fn remove(self, lab: &Lab) {
        let name = self.dbs.name.clone();
        drop(self);
        tokio::time::sleep(Duration::from_secs(1)).await;
        for key in ["SOURCE_URL", "TARGET_URL"] {
            let admin = connect(&lab.var(key)).await;
            // Two calls: DROP DATABASE cannot run inside the implicit transaction of a multi-statement batch.
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
            let _ = admin
                .batch_execute(&format!("DROP ROLE IF EXISTS \"{name}_app\""))
                .await;
        }
    }
}

async fn run_to_success(mut command: tokio::process::Command, args: &[&str]) {
    let out = command.output().await.expect("run dms-migrate");
    assert!(
        out.status.success(),
        "dms-migrate {}: exit {:?}\n{}{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The task's table mappings: the shop's three schemas (the way back's reverse task maps the same).
pub fn shop_mappings() -> serde_json::Value {
    let rules: Vec<_> = ["app", "Billing", "audit"]
        .iter()
        .enumerate()
        .map(|(i, schema)| {
            json!({"rule-type": "selection", "rule-id": (i + 1).to_string(),
                "rule-name": format!("schema-{i}"), "rule-action": "include",
                "object-locator": {"schema-name": schema, "table-name": "%"}})
        })
        .collect();
    json!({ "rules": rules })
}
