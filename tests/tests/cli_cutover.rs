//! The built `dms-migrate cutover-check` and `dms-migrate cleanup` against the lab: a real CDC task in
//! `dms-local` (logical replication between the lab clusters, CDC latency pushed to moto's CloudWatch),
//! each test with its own databases, dms-local and task. The sentinel table is created here with dms-core's DDL
//! (`schema apply` creates it in real use), before the task starts so the task replicates it.

use std::time::Duration;

use aws_sdk_databasemigration::types::StartReplicationTaskTypeValue;
use dms_core::aws::metrics::{CloudWatchMetrics, Metrics, TaskMetricsKey};
use dms_core::rules::{sentinel, way_back};
use integration_tests::dms_local::{all_public_tables, wait_for, DmsLocal, LabTask};
use integration_tests::lab::connect;
use integration_tests::lab::{self, binary, workspace_root, Lab, TestDatabases};
use serde_json::Value;

const SCHEMA: &str = "CREATE TABLE public.orders (id bigserial PRIMARY KEY, note text NOT NULL);";

struct Rig {
    lab: Lab,
    dms: DmsLocal,
    task: LabTask,
    /// Last: dropped once dms-local has dropped its subscriptions.
    dbs: TestDatabases,
}

async fn count(url: &str, sql: &str) -> i64 {
    connect(url)
        .await
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// Fresh databases with `SCHEMA` (plus the sentinel table when `with_sentinel`) on both sides, and a
/// registered task of `migration_type` over schema public; the task is not started.
async fn rig(name: &str, migration_type: &str, with_sentinel: bool) -> Option<Rig> {
    let lab = Lab::get().await?;
    let dbs = lab.fresh_databases(name).await;
    let mut ddl = SCHEMA.to_string();
    if with_sentinel {
        ddl.push_str(&format!("{};", sentinel::create_sql("public")));
    }
    for url in [&dbs.source_url, &dbs.target_url] {
        connect(url)
            .await
            .batch_execute(&ddl)
            .await
            .expect("schema");
    }
    let dms = DmsLocal::start(&lab).await;
    let task = dms
        .register_lab_task(&lab, &dbs, migration_type, &all_public_tables())
        .await;
    Some(Rig {
        lab,
        dbs,
        dms,
        task,
    })
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Rig {
    async fn status(&self) -> String {
        self.dms.task_status(&self.task.task_arn).await
    }

    async fn wait_status(&self, wanted: &str) {
        wait_for(
            &format!("the task to be {wanted}"),
            Duration::from_secs(60),
            || async { (self.status().await == wanted).then_some(()) },
        )
        .await;
    }

    async fn start(&self) {
        self.dms
            .sdk()
            .await
            .start_replication_task()
            .replication_task_arn(&self.task.task_arn)
            .start_replication_task_type(StartReplicationTaskTypeValue::StartReplication)
            .send()
            .await
            .expect("StartReplicationTask");
        self.wait_status("running").await;
    }

    async fn stop(&self) {
        self.dms
            .sdk()
            .await
            .stop_replication_task()
            .replication_task_arn(&self.task.task_arn)
            .send()
            .await
            .expect("StopReplicationTask");
        self.wait_status("stopped").await;
    }

    fn replication_name(&self) -> String {
        let id = self.task.task_arn.rsplit(':').next().expect("an ARN");
        format!("dms_local_{}", id.to_ascii_lowercase())
    }

    /// Until moto's CloudWatch holds both latency metrics of the task (dms-local pushes them once CDC runs).
    async fn wait_for_latency(&self) {
        let metrics = CloudWatchMetrics::new(aws_sdk_cloudwatch::Client::new(
            &self.lab.aws_config().await,
        ));
        let key = TaskMetricsKey {
            instance_identifier: "lab-instance".to_string(),
            task_resource_id: self
                .task
                .task_arn
                .rsplit(':')
                .next()
                .expect("an ARN")
                .to_string(),
        };
        wait_for(
            "CDC latency in CloudWatch",
            Duration::from_secs(60),
            || async {
                let now = dms_core::clock::now_epoch_seconds();
                let latency = metrics.cdc_latency(&key, now).await.expect("GetMetricData");
                (latency.source_seconds.is_some() && latency.target_seconds.is_some()).then_some(())
            },
        )
        .await;
    }

    async fn slot(&self) -> Option<bool> {
        connect(&self.dbs.source_url)
            .await
            .query_opt(
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.replication_name()],
            )
            .await
            .expect("read slots")
            .map(|r| r.get(0))
    }

    async fn publications(&self) -> i64 {
        count(
            &self.dbs.source_url,
            &format!(
                "SELECT count(*) FROM pg_publication WHERE pubname = '{}'",
                self.replication_name()
            ),
        )
        .await
    }

    /// The built binary with the lab's AWS environment and dms-local's endpoint; no PG* variable or
    /// password file of the machine can answer.
    async fn cli(&self, args: &[&str]) -> Run {
        let output = tokio::process::Command::new(binary("dms-migrate"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::temp_dir())
            .envs(self.lab.aws_env())
            .envs(self.dms.env())
            .output()
            .await
            .expect("run dms-migrate");
        let run = Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        // Only the subcommand: the arguments hold the lab's connection URLs, password included.
        eprintln!(
            "dms-migrate {}\n--- exit {}\n{}{}",
            args.first().copied().unwrap_or_default(),
            run.code,
            run.stdout,
            run.stderr
        );
        run
    }

    async fn cutover_check(&self, extra: &[&str]) -> Run {
        let mut args = vec![
            "cutover-check",
            "--source",
            &self.dbs.source_url,
            "--target",
            &self.dbs.target_url,
            "--task-arn",
            &self.task.task_arn,
            // The lab machine is busy compiling and testing in parallel: a generous target.
            "--latency-target",
            "15",
        ];
        args.extend_from_slice(extra);
        self.cli(&args).await
    }

    async fn cleanup(&self, extra: &[&str]) -> Run {
        let mut args = vec![
            "cleanup",
            "--source",
            &self.dbs.source_url,
            "--target",
            &self.dbs.target_url,
        ];
        args.extend_from_slice(extra);
        self.cli(&args).await
    }
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("JSON ({e}): {}", run.stdout))
}

/// `id` → (status, summary) of a cutover-check JSON report.
fn line(report: &Value, id: &str) -> (String, String) {
    let check = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {report}"));
    (
        check["status"].as_str().unwrap_or_default().to_string(),
        check["summary"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn green_on_running_cdc_then_not_ready_once_stopped_and_cleanup_only_after_the_stop() {
    let Some(rig) = rig("co_green", "cdc", true).await else {
        return;
    };
    rig.start().await;
    connect(&rig.dbs.source_url)
        .await
        .batch_execute("INSERT INTO public.orders (note) VALUES ('a'), ('b'), ('c')")
        .await
        .expect("writes");
    wait_for(
        "the rows on the target",
        Duration::from_secs(60),
        || async {
            (count(&rig.dbs.target_url, "SELECT count(*) FROM public.orders").await == 3)
                .then_some(())
        },
    )
    .await;
    // Sequences are not replicated: until they are moved ahead, the target would reuse ids.
    rig.wait_for_latency().await;
    let behind = rig.cutover_check(&["--format", "json"]).await;
    assert_eq!(behind.code, 1, "{}", behind.stderr);
    let (status, summary) = line(&json(&behind), "cutover.sequences");
    assert_eq!(status, "fail");
    assert!(summary.contains("public.orders_id_seq"), "{summary}");
    connect(&rig.dbs.target_url)
        .await
        .batch_execute("SELECT setval('public.orders_id_seq', 1003)")
        .await
        .expect("setval");

    let green = rig.cutover_check(&["--format", "json"]).await;
    assert_eq!(green.code, 0, "{}", green.stderr);
    let report = json(&green);
    assert_eq!(report["ready"], Value::Bool(true), "{report}");
    let ids: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "cutover.task",
            "cutover.table_errors",
            "cutover.cdc_latency",
            "cutover.sentinel",
            "cutover.sequences",
            "cutover.transactions",
            "cutover.way_back"
        ]
    );
    let (status, summary) = line(&report, "cutover.way_back");
    assert_eq!(status, "pass", "{summary}");

    // A way back's slot already on the target (an earlier cutover's, or a leftover) is reported with the
    // WAL it holds, and fails the check: cutover would stop at it.
    let target = connect(&rig.dbs.target_url).await;
    target
        .batch_execute(&format!(
            "SELECT pg_create_logical_replication_slot('{}', 'test_decoding')",
            way_back::SLOT
        ))
        .await
        .expect("a way back slot on the target");
    let armed = rig.cutover_check(&["--format", "json"]).await;
    target
        .batch_execute(&format!(
            "SELECT pg_drop_replication_slot('{}')",
            way_back::SLOT
        ))
        .await
        .expect("the slot dropped");
    assert_eq!(armed.code, 1, "{}", armed.stderr);
    let (status, summary) = line(&json(&armed), "cutover.way_back");
    assert_eq!(status, "fail");
    assert!(
        summary.starts_with("ARMED") && summary.contains("of WAL") && summary.contains("NOT read"),
        "{summary}"
    );
    let (_, sentinel_summary) = line(&report, "cutover.sentinel");
    assert!(
        sentinel_summary.contains("reached the target in"),
        "{sentinel_summary}"
    );
    // The round trip cleans up after itself, on both sides: it waits for the delete to replicate too, so
    // a task stopped right after it leaves no sentinel row on the target (verify would report it).
    let sentinel_rows = format!("SELECT count(*) FROM {}", sentinel::qualified("public"));
    assert_eq!(count(&rig.dbs.source_url, &sentinel_rows).await, 0);
    assert_eq!(count(&rig.dbs.target_url, &sentinel_rows).await, 0);

    // Writes stopped: running it again proves the drain, in text this time.
    let drained = rig.cutover_check(&[]).await;
    assert_eq!(drained.code, 0, "{}", drained.stderr);
    assert_eq!(
        drained.stdout.matches("\n  ok    ").count(),
        7,
        "{}",
        drained.stdout
    );
    assert!(
        drained.stdout.contains("READY for cutover"),
        "{}",
        drained.stdout
    );

    // Cleanup refuses while the task runs, and never drops an active slot even without --task-arn.
    let refused = rig
        .cleanup(&["--task-arn", &rig.task.task_arn, "--yes"])
        .await;
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused
            .stdout
            .contains("REFUSED: the DMS task is `running`: stop it first"),
        "{}",
        refused.stdout
    );
    let kept = rig.cleanup(&["--yes"]).await;
    assert_eq!(kept.code, 1, "{}", kept.stderr);
    assert!(
        kept.stdout.contains("ACTIVE (read by pid"),
        "{}",
        kept.stdout
    );
    assert_eq!(rig.slot().await, Some(true));
    assert_eq!(rig.publications().await, 1);
    assert_eq!(
        count(
            &rig.dbs.source_url,
            &format!(
                "SELECT count(*) FROM to_regclass('{}')",
                sentinel::qualified("public")
            )
        )
        .await,
        1
    );

    rig.stop().await;
    let stopped = rig.cutover_check(&["--format", "json"]).await;
    assert_eq!(stopped.code, 1, "{}", stopped.stderr);
    let report = json(&stopped);
    let (status, summary) = line(&report, "cutover.task");
    assert_eq!(status, "fail");
    assert!(summary.starts_with("the task is stopped"), "{summary}");

    // The walsender leaves shortly after the stop.
    wait_for(
        "the slot to be inactive",
        Duration::from_secs(30),
        || async { (rig.slot().await == Some(false)).then_some(()) },
    )
    .await;
    let report_only = rig.cleanup(&["--task-arn", &rig.task.task_arn]).await;
    assert_eq!(report_only.code, 0, "{}", report_only.stderr);
    let slot_line = format!(
        "would drop  source  replication slot {}",
        rig.replication_name()
    );
    let publication_line = format!("would drop  source  publication {}", rig.replication_name());
    for expected in [
        slot_line.as_str(),
        publication_line.as_str(),
        "would drop  source  table public.dms_migrate_sentinel",
        "would drop  target  table public.dms_migrate_sentinel",
        "nothing was dropped",
        "stack-cleanup",
    ] {
        assert!(
            report_only.stdout.contains(expected),
            "{expected}:\n{}",
            report_only.stdout
        );
    }
    assert_eq!(
        rig.slot().await,
        Some(false),
        "nothing dropped without --yes"
    );

    let dropped = rig
        .cleanup(&[
            "--task-arn",
            &rig.task.task_arn,
            "--yes",
            "--format",
            "json",
        ])
        .await;
    assert_eq!(dropped.code, 0, "{}", dropped.stderr);
    let objects = json(&dropped)["objects"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(objects.len(), 4, "{objects:?}");
    assert!(
        objects.iter().all(|o| o["action"] == "dropped"),
        "{objects:?}"
    );
    assert_eq!(rig.slot().await, None);
    assert_eq!(rig.publications().await, 0);
    for url in [&rig.dbs.source_url, &rig.dbs.target_url] {
        let exists = format!(
            "SELECT count(*) FROM pg_class WHERE relname = '{}'",
            sentinel::TABLE
        );
        assert_eq!(count(url, &exists).await, 0);
    }

    let again = rig.cleanup(&["--yes"]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stdout.starts_with("Nothing left to clean up"),
        "{}",
        again.stdout
    );

    // The stopped subscription's slot is gone: detach it so dms-local's own shutdown drop succeeds.
    connect(&rig.dbs.target_url)
        .await
        .batch_execute(&format!(
            "ALTER SUBSCRIPTION {} SET (slot_name = NONE)",
            rig.replication_name()
        ))
        .await
        .expect("detach the subscription");
}

#[tokio::test]
async fn a_table_in_error_is_not_ready_naming_the_table() {
    let Some(rig) = rig("co_tblerr", "full-load-and-cdc", true).await else {
        return;
    };
    // The target's orders lacks `note`: its initial copy keeps failing, and DMS marks it `Table error`.
    let source = connect(&rig.dbs.source_url).await;
    source
        .batch_execute(
            "INSERT INTO public.orders (note) SELECT 'n' || g FROM generate_series(1, 20) g",
        )
        .await
        .expect("seed");
    connect(&rig.dbs.target_url)
        .await
        .batch_execute("ALTER TABLE public.orders DROP COLUMN note")
        .await
        .expect("break the target");
    rig.start().await;
    let dms = rig.dms.dms_client().await;
    wait_for("orders in Table error", Duration::from_secs(90), || async {
        use dms_core::aws::dms::Dms;
        let tables = dms.table_statistics(&rig.task.task_arn).await.ok()?;
        tables
            .iter()
            .any(|t| t.table == "orders" && t.state == "Table error")
            .then_some(())
    })
    .await;
    let run = rig.cutover_check(&[]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("FAIL  table errors  1 table(s) in `Table error`: public.orders"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("Reload table data"), "{}", run.stdout);
}

#[tokio::test]
async fn a_missing_sentinel_says_to_run_schema_apply_and_long_transactions_are_not_ready() {
    let Some(rig) = rig("co_nosent", "cdc", false).await else {
        return;
    };
    // A never-started task: every line is still evaluated and says why it is not ready.
    let holder = connect(&rig.dbs.source_url).await;
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    holder
        .batch_execute("BEGIN; INSERT INTO public.orders (note) VALUES ('held')")
        .await
        .expect("open a transaction");
    // Other tests share the cluster: the line is asserted on this session's pid, not on a count.
    let holds = |report: &Value| {
        let objects = report["checks"][5]["objects"].to_string();
        objects.contains(&format!("pid {pid} "))
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let run = rig
        .cutover_check(&["--format", "json", "--long-transaction-seconds", "2"])
        .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report = json(&run);
    assert_eq!(report["ready"], Value::Bool(false));
    let (status, summary) = line(&report, "cutover.sentinel");
    assert_eq!(status, "fail");
    assert!(
        summary.contains("no dms_migrate_sentinel table on the source"),
        "{summary}"
    );
    let fix = report["checks"][3]["fix"].as_str().unwrap_or_default();
    assert!(fix.contains("dms-migrate schema apply"), "{fix}");
    let (status, summary) = line(&report, "cutover.transactions");
    assert_eq!(status, "fail");
    assert!(summary.contains("open longer than 2 s"), "{summary}");
    assert!(holds(&report), "{report}");
    let (status, summary) = line(&report, "cutover.task");
    assert_eq!(status, "fail");
    assert!(summary.starts_with("the task is ready"), "{summary}");

    // Committed, the transaction no longer holds anything back.
    holder.batch_execute("COMMIT").await.expect("commit");
    let run = rig
        .cutover_check(&["--format", "json", "--long-transaction-seconds", "2"])
        .await;
    assert!(!holds(&json(&run)), "{}", run.stdout);

    // Cleanup knows DMS's slot names (`<16 characters>_<database oid>_<uuid>`) and leaves other slots
    // alone unless named with --slot.
    let source = connect(&rig.dbs.source_url).await;
    let dms_slot: String = source
        .query_one(
            "SELECT 'abcdefghij012345_' || lpad(oid::text, 8, '0') || '_0a1b2c3d_0a1b_0a1b_0a1b_0a1b2c3d4e5f'
             FROM pg_database WHERE datname = current_database()",
            &[],
        )
        .await
        .expect("slot name")
        .get(0);
    let other_slot = format!("{}_other", rig.dbs.name);
    for slot in [&dms_slot, &other_slot] {
        source
            .execute(
                "SELECT pg_create_logical_replication_slot($1, 'test_decoding')",
                &[slot],
            )
            .await
            .expect("create slot");
    }
    let slot_exists = |name: String| {
        let url = rig.dbs.source_url.clone();
        async move {
            count(
                &url,
                &format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{name}'"),
            )
            .await
        }
    };
    let cleaned = rig.cleanup(&["--yes", "--format", "json"]).await;
    assert_eq!(cleaned.code, 0, "{}", cleaned.stderr);
    let objects = json(&cleaned)["objects"].clone();
    assert_eq!(objects.as_array().map(Vec::len), Some(1), "{objects}");
    assert_eq!(objects[0]["name"], Value::String(dms_slot.clone()));
    assert_eq!(objects[0]["action"], "dropped");
    assert_eq!(slot_exists(dms_slot).await, 0);
    assert_eq!(slot_exists(other_slot.clone()).await, 1);
    let named = rig.cleanup(&["--yes", "--slot", &other_slot]).await;
    assert_eq!(named.code, 0, "{}", named.stderr);
    assert!(
        named.stdout.contains(&format!(
            "dropped     source  replication slot {other_slot}"
        )),
        "{}",
        named.stdout
    );
    assert_eq!(slot_exists(other_slot).await, 0);

    // A malformed ARN is "could not run", naming the flag.
    let bad = rig
        .cli(&[
            "cutover-check",
            "--source",
            &rig.dbs.source_url,
            "--target",
            &rig.dbs.target_url,
            "--task-arn",
            "task:nope",
        ])
        .await;
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("--task-arn `task:nope`"),
        "{}",
        bad.stderr
    );
}

/// The harder sample schema (mixed-case and reserved-word schemas, a partitioned table, a table without a
/// primary key, an FK cycle, identity columns) from `schema apply` to `cleanup`: the table mappings select
/// its three schemas, the sentinel sits where `schema apply` put it, and the task replicates a change to
/// the partitioned and the key-less tables before cutover-check goes green.
#[tokio::test]
async fn the_hard_schema_goes_from_schema_apply_through_cutover_check_to_cleanup() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("cutover_hard").await;
    let hard = std::fs::read_to_string(workspace_root().join("tests/fixtures/hard_schema.sql"))
        .expect("the hard sample schema");
    connect(&dbs.source_url)
        .await
        .batch_execute(&hard)
        .await
        .expect("hard schema on the source");
    let deferred = std::env::temp_dir().join(format!("cutover-hard-{}.sql", std::process::id()));
    let applied = lab::dms_migrate()
        .args(["schema", "apply", "--source", &dbs.source_url])
        .args([
            "--target",
            &dbs.target_url,
            "--schemas",
            "Sales,order,inventory",
        ])
        .arg("--deferred-file")
        .arg(&deferred)
        .output()
        .expect("run schema apply");
    assert!(
        applied.status.success(),
        "schema apply: {}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let dms = DmsLocal::start(&lab).await;
    let rules: Vec<Value> = ["Sales", "order", "inventory"]
        .iter()
        .enumerate()
        .map(|(i, schema)| {
            serde_json::json!({"rule-type": "selection", "rule-id": (i + 1).to_string(),
                "rule-name": format!("schema-{i}"),
                "object-locator": {"schema-name": schema, "table-name": "%"}, "rule-action": "include"})
        })
        .collect();
    let mappings = serde_json::json!({ "rules": rules });
    let task = dms
        .register_lab_task(&lab, &dbs, "full-load-and-cdc", &mappings)
        .await;
    let rig = Rig {
        lab,
        dbs,
        dms,
        task,
    };
    rig.start().await;
    rig.wait_for_latency().await;

    // A change to a partition through its root and to the table without a key, while CDC runs.
    let source = connect(&rig.dbs.source_url).await;
    let line_count = r#"SELECT count(*) FROM "order"."Line""#;
    let log_count = "SELECT count(*) FROM inventory.stock_log";
    let (lines, logs) = (
        count(&rig.dbs.source_url, line_count).await,
        count(&rig.dbs.source_url, log_count).await,
    );
    source
        .batch_execute(
            r#"INSERT INTO "order"."Line" ("order", "Placed On", sku, quantity)
                   VALUES (900, '2025-09-01', 'A-1', 1);
               INSERT INTO inventory.stock_log SELECT * FROM inventory.stock_log LIMIT 1;"#,
        )
        .await
        .expect("writes on the source");
    wait_for(
        "the partitioned and the key-less tables' new rows on the target",
        Duration::from_secs(60),
        || async {
            let arrived = count(&rig.dbs.target_url, line_count).await == lines + 1
                && count(&rig.dbs.target_url, log_count).await == logs + 1;
            arrived.then_some(())
        },
    )
    .await;

    let synced = rig
        .cli(&[
            "sequences",
            "sync",
            "--source",
            &rig.dbs.source_url,
            "--target",
            &rig.dbs.target_url,
        ])
        .await;
    assert_eq!(synced.code, 0, "{}", synced.stderr);
    let ready = rig.cutover_check(&["--format", "json"]).await;
    let report = json(&ready);
    assert_eq!(ready.code, 0, "{report}");
    let (status, summary) = line(&report, "cutover.sentinel");
    assert_eq!(status, "pass");
    assert!(
        summary.contains(r#""Sales".dms_migrate_sentinel"#),
        "{summary}"
    );

    rig.stop().await;
    // The source's walsender lets go of the slot a moment after the task reports stopped; until then
    // cleanup keeps it (tested above).
    wait_for(
        "the slot to be inactive",
        Duration::from_secs(30),
        || async { (rig.slot().await == Some(false)).then_some(()) },
    )
    .await;
    let cleaned = rig
        .cleanup(&["--task-arn", &rig.task.task_arn, "--yes"])
        .await;
    assert_eq!(cleaned.code, 0, "{}", cleaned.stderr);
    assert_eq!(rig.slot().await, None, "the slot is dropped");
    assert_eq!(rig.publications().await, 0);
    let sentinels = format!(
        "SELECT count(*) FROM pg_class WHERE relname = '{}'",
        sentinel::TABLE
    );
    assert_eq!(count(&rig.dbs.source_url, &sentinels).await, 0);
    assert_eq!(count(&rig.dbs.target_url, &sentinels).await, 0);
    let again = rig
        .cleanup(&["--task-arn", &rig.task.task_arn, "--yes"])
        .await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    let _ = std::fs::remove_file(&deferred);
}
