//! Bench row: the application's write outage at cutover, at demo.rows 200,000 and 2,000,000 (the sample
//! shop of tests/fixtures/demo_*.sql: about 610,000 and 6,100,000 rows), for both orders in the same run:
//! - the step-by-step order the ready-for-cutover email gave before `dms-migrate cutover` (writes stopped,
//!   then `cutover-check` for the drain, `sequences sync`, the task stopped, `constraints apply`,
//!   `verify`): everything after the stop counts, and most of it grows with the data;
//! - `dms-migrate cutover --freeze`: only the freeze counts, everything that grows runs before it.
//!
//! Each measurement has a database pair, a dms-local task (the stack's `BatchApplyEnabled: true`) whose
//! full load is done, and an application role committing an order every 50 ms until it is stopped (the
//! step-by-step order) or frozen (ours). The outage is timed from the application's last commit on the
//! source to the end of the last step before the switch. Goal: ours at most 10 s at both sizes and
//! growing at most 30% from the small to the large one. Run: `make bench` (the lab must be up; builds the
//! release `dms-migrate` first; the debug dms-local moves the rows).

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dms_core::aws::dms::{Dms, StartType};
use integration_tests::bench::{connect, dms_migrate, seconds};
use integration_tests::dms_local::{wait_for, DmsLocal};
use integration_tests::lab::{workspace_root, Lab, TestDatabases};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_postgres::NoTls;

const SIZES: [u32; 2] = [200_000, 2_000_000];
const GOAL: Duration = Duration::from_secs(10);
const GOAL_GROWTH: f64 = 0.30;
const APP_PASSWORD: &str = "bench-app";
/// Writes before the cutover starts, so CDC has something to carry.
const WARM_UP: Duration = Duration::from_secs(5);
const FULL_LOAD_LIMIT: Duration = Duration::from_secs(1800);

#[derive(Clone, Copy, PartialEq)]
enum Order {
    StepByStep,
    Ours,
}

struct Setup {
    dbs: TestDatabases,
    dms: DmsLocal,
    task_arn: String,
    deferred: String,
    app_url: String,
    aws_env: Vec<(String, String)>,
}

async fn setup(lab: &Lab, rows: u32) -> Setup {
    let dbs = lab.fresh_databases("bench_cutover").await;
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
    let rules: Vec<_> = ["app", "Billing", "audit"]
        .iter()
        .enumerate()
        .map(|(i, schema)| {
            json!({"rule-type": "selection", "rule-id": (i + 1).to_string(),
                "rule-name": format!("schema-{i}"), "rule-action": "include",
                "object-locator": {"schema-name": schema, "table-name": "%"}})
        })
        .collect();
    let settings = json!({"TargetMetadata": {"BatchApplyEnabled": true, "LobMaxSize": 32}});
    let task_arn = dms
        .try_control(
            "tasks",
            &json!({"identifier": format!("task-{}", dbs.name.replace('_', "-")),
                "instanceArn": instance_arn, "sourceEndpointArn": source_arn,
                "targetEndpointArn": target_arn, "migrationType": "full-load-and-cdc",
                "tableMappings": json!({"rules": rules}), "settings": settings.to_string()}),
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
    wait_for("the full load", FULL_LOAD_LIMIT, || async {
        let task = client.describe_task(&task_arn).await.expect("describe");
        (task.status.as_str() == "running"
            && task
                .stats
                .as_ref()
                .is_some_and(|s| s.full_load_progress_percent == 100))
        .then_some(())
    })
    .await;
    let admin = format!(
        "{}:{}@",
        lab.var("LAB_ADMIN_USER"),
        lab.var("LAB_ADMIN_PASSWORD")
    );
    let app_url = dbs
        .source_url
        .replacen(&admin, &format!("{role}:{APP_PASSWORD}@"), 1);
    Setup {
        dbs,
        dms,
        task_arn,
        deferred,
        app_url,
        aws_env: lab.aws_env(),
    }
}

/// The application: an order every 50 ms until `stop`; the instant of its last commit.
fn writer(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Option<Instant>> {
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

fn cli(setup: &Setup, args: &[&str]) -> tokio::process::Command {
    let (binary, _) = dms_migrate();
    let mut command = tokio::process::Command::new(binary);
    command
        .args(args)
        .env("PGSOURCE", &setup.dbs.source_url)
        .env("PGTARGET", &setup.dbs.target_url)
        .envs(setup.aws_env.iter().cloned())
        .envs(setup.dms.env())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    command
}

async fn run_ok(setup: &Setup, args: &[&str]) {
    let out = cli(setup, args).output().await.expect("run dms-migrate");
    assert!(
        out.status.success(),
        "dms-migrate {}: exit {:?}\n{}{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The outage of one order on a fresh setup of `rows`.
async fn measure(lab: &Lab, rows: u32, order: Order) -> Duration {
    let setup = setup(lab, rows).await;
    let stop = Arc::new(AtomicBool::new(false));
    let app = writer(setup.app_url.clone(), Arc::clone(&stop));
    tokio::time::sleep(WARM_UP).await;
    let task = setup.task_arn.as_str();
    let outage = match order {
        Order::StepByStep => {
            // Before the stop, as the email said: sequences ahead while the application writes.
            run_ok(&setup, &["sequences", "sync", "--rate-window", "5"]).await;
            stop.store(true, Ordering::SeqCst);
            let last = app.await.ok().flatten().expect("the application committed");
            run_ok(
                &setup,
                &[
                    "cutover-check",
                    "--task-arn",
                    task,
                    "--latency-target",
                    "30",
                ],
            )
            .await;
            run_ok(&setup, &["sequences", "sync"]).await;
            let dms = setup.dms.dms_client().await;
            dms.stop_task(task).await.expect("StopReplicationTask");
            wait_for("the task to stop", Duration::from_secs(120), || async {
                (setup.dms.task_status(task).await == "stopped").then_some(())
            })
            .await;
            run_ok(&setup, &["constraints", "apply", "--file", &setup.deferred]).await;
            run_ok(&setup, &["verify"]).await;
            last.elapsed()
        }
        Order::Ours => {
            let mut child = cli(
                &setup,
                &[
                    "cutover",
                    "--task-arn",
                    task,
                    "--freeze",
                    "--rate-window",
                    "5",
                    "--deferred-file",
                    &setup.deferred,
                ],
            )
            .spawn()
            .expect("run dms-migrate cutover");
            let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
            let mut switched = None;
            let mut text = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("SWITCH NOW") {
                    switched = Some(Instant::now());
                }
                text.push_str(&line);
                text.push('\n');
            }
            let status = child.wait().await.expect("wait");
            stop.store(true, Ordering::SeqCst);
            let last = app.await.ok().flatten().expect("the application committed");
            let switched =
                switched.unwrap_or_else(|| panic!("cutover did not switch ({status}):\n{text}"));
            // Where the outage went: the command's own lines for the phases in the freeze.
            for line in text.lines().filter(|l| l.contains("(outage)  ")) {
                println!(
                    "      {}",
                    line.trim().chars().take(150).collect::<String>()
                );
            }
            switched.saturating_duration_since(last)
        }
    };
    // Lab cleanup: the task's subscription first (dms-local drops it on exit), then the databases.
    let name = setup.dbs.name.clone();
    drop(setup);
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
    outage
}

#[tokio::main]
async fn main() {
    let Some(lab) = Lab::get().await else {
        println!("bench_cutover: the lab is not running; `make bench` starts it");
        std::process::exit(2);
    };
    let (_, build) = dms_migrate();
    println!(
        "Bench: the write outage at cutover ({build} dms-migrate), demo.rows 200,000 and 2,000,000"
    );
    let mut ours = Vec::new();
    for rows in SIZES {
        let step = measure(&lab, rows, Order::StepByStep).await;
        let one = measure(&lab, rows, Order::Ours).await;
        println!(
            "  demo.rows {rows:>9}: step by step (stop, drain, sequences, stop task, constraints apply, verify) {:>10}   dms-migrate cutover --freeze {:>10}",
            seconds(step),
            seconds(one)
        );
        ours.push(one);
    }
    let growth = ours[1].as_secs_f64() / ours[0].as_secs_f64().max(0.001) - 1.0;
    let worst = ours.iter().max().copied().unwrap_or_default();
    let met = worst <= GOAL && growth <= GOAL_GROWTH;
    println!(
        "  ours: worst {} (goal <= {} s), growth {:+.0}% from the small to the large size (goal <= {:.0}%): {}",
        seconds(worst),
        GOAL.as_secs(),
        growth * 100.0,
        GOAL_GROWTH * 100.0,
        if met { "goal met" } else { "GOAL MISSED" }
    );
}
