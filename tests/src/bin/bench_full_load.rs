//! Bench row: dms-local's full load of one table with skewed keys (half the rows dense, half spread 1,000
//! apart), copied as one segment and as the segments `dms-migrate plan` writes for it (its table mappings
//! and task settings, `--max-segment-rows` an eighth of the rows), side by side in the same run. dms-local
//! is not DMS: the row reports the ratio, with no goal. Each run is a full-load-only task timed from
//! StartReplicationTask to `stopped`, into an emptied target table, and checked for every row. Rows:
//! `BENCH_FULL_LOAD_ROWS` (default 5,000,000). Run: `make bench` (the lab must be up).

use std::time::{Duration, Instant};

use dms_core::aws::dms::{Dms, StartType};
use integration_tests::bench::{connect, dms_migrate, seconds};
use integration_tests::dms_local::{all_public_tables, wait_for, DmsLocal};
use integration_tests::lab::{Lab, TestDatabases};
use serde_json::{json, Value};

const DEFAULT_ROWS: i64 = 5_000_000;
const LOAD_LIMIT: Duration = Duration::from_secs(3600);
const TABLE: &str = "CREATE TABLE public.skewed (id bigint PRIMARY KEY, payload text NOT NULL);";

/// A full-load-only task with these mappings and settings, started and timed until it stops.
async fn timed_load(
    lab: &Lab,
    dbs: &TestDatabases,
    local: &DmsLocal,
    mappings: &Value,
    settings: &Value,
    rows: i64,
) -> Duration {
    let target = connect(&dbs.target_url).await;
    target
        .batch_execute("TRUNCATE public.skewed")
        .await
        .expect("empty the target");
    let ids = local
        .register_lab_task_with_settings(lab, dbs, "full-load", mappings, settings)
        .await;
    let dms = local.dms_client().await;
    let started = Instant::now();
    dms.start_task(&ids.task_arn, StartType::StartReplication)
        .await
        .expect("start");
    let task = wait_for("the full load", LOAD_LIMIT, || async {
        let task = dms.describe_task(&ids.task_arn).await.expect("describe");
        (task.status.as_str() == "stopped" || task.status.as_str() == "failed").then_some(task)
    })
    .await;
    let took = started.elapsed();
    assert_eq!(
        task.stop_reason.as_deref(),
        Some("Stop Reason FULL_LOAD_ONLY_FINISHED"),
        "{:?}",
        task.last_failure_message
    );
    let loaded: i64 = target
        .query_one("SELECT count(*) FROM public.skewed", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(loaded, rows, "every row loaded once");
    took
}

#[tokio::main]
async fn main() {
    let rows: i64 = std::env::var("BENCH_FULL_LOAD_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_ROWS);
    let Some(lab) = Lab::get().await else {
        eprintln!("bench_full_load: the lab is down (make lab-up)");
        std::process::exit(2);
    };
    let dbs = lab.fresh_databases("bench_full_load").await;
    let half = rows / 2;
    connect(&dbs.source_url)
        .await
        .batch_execute(&format!(
            "{TABLE}
             INSERT INTO public.skewed SELECT g, md5(g::text) FROM generate_series(1, {half}) g;
             INSERT INTO public.skewed SELECT {half} + g::bigint * 1000, md5(g::text) FROM generate_series(1, {rows} - {half}) g;
             ANALYZE public.skewed;"
        ))
        .await
        .expect("generate the source");
    connect(&dbs.target_url)
        .await
        .batch_execute(TABLE)
        .await
        .expect("the target table");

    let (binary, build) = dms_migrate();
    let out = std::process::Command::new(binary)
        .args(["plan", "--source", &dbs.source_url, "--format", "json"])
        .args(["--max-segment-rows", &(rows / 8).max(1).to_string()])
        .output()
        .expect("dms-migrate plan runs");
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "plan is JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let segments = plan["tableMappings"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            r.pointer("/parallel-load/boundaries")
                .and_then(Value::as_array)
        })
        .map(|b| b.len() + 1)
        .sum::<usize>()
        .max(1);
    let subtasks = plan["taskSettings"]["FullLoadSettings"]["MaxFullLoadSubTasks"].clone();

    let local = DmsLocal::start(&lab).await;
    let one = timed_load(&lab, &dbs, &local, &all_public_tables(), &json!({}), rows).await;
    let planned = timed_load(
        &lab,
        &dbs,
        &local,
        &plan["tableMappings"],
        &plan["taskSettings"],
        rows,
    )
    .await;
    println!(
        "full load of {rows} rows with skewed keys in dms-local (debug dms-local, plan by the {build} dms-migrate):"
    );
    println!(
        "  1 segment:                                  {}",
        seconds(one)
    );
    println!(
        "  the plan's {segments} segments (MaxFullLoadSubTasks {subtasks}): {}",
        seconds(planned)
    );
    println!(
        "  ratio 1 segment / plan: {:.2} (dms-local is not DMS: no goal)",
        one.as_secs_f64() / planned.as_secs_f64()
    );
}
