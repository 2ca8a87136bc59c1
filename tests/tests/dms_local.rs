//! dms-local, the project's DMS stand-in, against the lab: data moves for real through PostgreSQL logical
//! replication, task and table states follow DMS's rules, faults reach the SDK as DMS's errors, and a
//! client nobody here wrote (boto3) reads it.

use std::time::Duration;

use dms_core::aws::dms::{Dms, DmsModify, StartType};
use dms_core::ErrorName;
use integration_tests::dms_local::{
    all_public_tables, full_load_done, wait_for, wait_for_latency_metrics, wait_for_task, DmsLocal,
};
use integration_tests::lab::{workspace_root, Lab};
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(90);

async fn sql(url: &str, statements: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("lab connect");
    tokio::spawn(connection);
    client.batch_execute(statements).await.expect("lab SQL");
}

async fn count(url: &str, table: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("lab connect");
    tokio::spawn(connection);
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count")
        .get(0)
}

const SCHEMA: &str = "CREATE TABLE public.orders (id int PRIMARY KEY, note text);
                      CREATE TABLE public.customers (id int PRIMARY KEY, name text);";
const ROWS: &str = "INSERT INTO public.orders SELECT g, 'order ' || g FROM generate_series(1, 250) g;
                    INSERT INTO public.customers SELECT g, 'customer ' || g FROM generate_series(1, 40) g;";

#[tokio::test]
async fn full_load_only_moves_rows_and_ends_stopped_full_load_only_finished() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("dmsl_full").await;
    sql(&dbs.source_url, &format!("{SCHEMA}{ROWS}")).await;
    sql(&dbs.target_url, SCHEMA).await;
    let local = DmsLocal::start(&lab).await;
    let ids = local
        .register_lab_task(&lab, &dbs, "full-load", &all_public_tables())
        .await;
    let dms = local.dms_client().await;

    let ready = dms.describe_task(&ids.task_arn).await.expect("describe");
    assert_eq!(
        (ready.status.as_str(), ready.started_at_epoch_seconds),
        ("ready", None)
    );
    dms.start_task(&ids.task_arn, StartType::StartReplication)
        .await
        .expect("start-replication on a new task");
    let done = wait_for_task(&dms, &ids.task_arn, "the full load to finish", LIMIT, |t| {
        t.status.as_str() == "stopped"
    })
    .await;
    assert_eq!(
        done.stop_reason.as_deref(),
        Some("Stop Reason FULL_LOAD_ONLY_FINISHED")
    );
    let stats = done.stats.expect("task stats");
    assert_eq!(
        (stats.full_load_progress_percent, stats.tables_loaded),
        (100, 2)
    );
    assert!(stats.full_load_finish_epoch_seconds.is_some());
    assert_eq!(count(&dbs.target_url, "public.orders").await, 250);
    assert_eq!(count(&dbs.target_url, "public.customers").await, 40);

    let tables = dms
        .table_statistics(&ids.task_arn)
        .await
        .expect("table stats");
    let orders = tables.iter().find(|t| t.table == "orders").expect("orders");
    assert_eq!(
        (orders.state.as_str(), orders.full_load_rows),
        ("Table completed", 250)
    );

    // A finished task cannot be started again from scratch: DMS's rule.
    let again = dms
        .start_task(&ids.task_arn, StartType::StartReplication)
        .await
        .expect_err("start-replication twice");
    assert_eq!(again.name, ErrorName::DmsInvalidState, "{}", again.message);

    // The subscription and its slot are gone once the full-load-only task finished.
    let (target, conn) = tokio_postgres::connect(&dbs.target_url, tokio_postgres::NoTls)
        .await
        .expect("target");
    tokio::spawn(conn);
    let subscriptions: i64 = target
        .query_one(
            "SELECT count(*) FROM pg_subscription WHERE subname LIKE 'dms_local_%' AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .await
        .expect("pg_subscription")
        .get(0);
    assert_eq!(subscriptions, 0);
}

#[tokio::test]
async fn full_load_and_cdc_replicates_changes_and_pushes_latency_to_cloudwatch() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("dmsl_cdc").await;
    sql(&dbs.source_url, &format!("{SCHEMA}{ROWS}")).await;
    sql(&dbs.target_url, SCHEMA).await;
    let local = DmsLocal::start(&lab).await;
    let ids = local
        .register_lab_task(&lab, &dbs, "full-load-and-cdc", &all_public_tables())
        .await;
    let dms = local.dms_client().await;
    dms.start_task(&ids.task_arn, StartType::StartReplication)
        .await
        .expect("start");
    let loaded = wait_for_task(&dms, &ids.task_arn, "the full load", LIMIT, full_load_done).await;
    assert_eq!(
        loaded.status.as_str(),
        "running",
        "CDC keeps the task running"
    );
    assert_eq!(loaded.stop_reason, None);

    sql(
        &dbs.source_url,
        "INSERT INTO public.orders VALUES (1001, 'after the load'); UPDATE public.customers SET name = 'x' WHERE id = 1;",
    )
    .await;
    wait_for("the CDC insert on the target", LIMIT, || async {
        (count(&dbs.target_url, "public.orders").await == 251).then_some(())
    })
    .await;

    let instance = dms
        .describe_instance(&ids.instance_arn)
        .await
        .expect("instance");
    assert_eq!(instance.identifier, "lab-instance", "stored lowercase");
    wait_for_latency_metrics(&lab, &ids.task_arn, LIMIT).await;

    // Stop during CDC, then resume-processing continues from the slot: nothing is copied twice.
    local
        .sdk()
        .await
        .stop_replication_task()
        .replication_task_arn(&ids.task_arn)
        .send()
        .await
        .expect("stop");
    let stopped = wait_for_task(&dms, &ids.task_arn, "the stop", LIMIT, |t| {
        t.status.as_str() == "stopped"
    })
    .await;
    assert_eq!(stopped.stop_reason.as_deref(), Some("Stop Reason NORMAL"));
    sql(
        &dbs.source_url,
        "INSERT INTO public.orders VALUES (1002, 'while stopped');",
    )
    .await;
    dms.start_task(&ids.task_arn, StartType::ResumeProcessing)
        .await
        .expect("resume");
    wait_for("the change made while stopped", LIMIT, || async {
        (count(&dbs.target_url, "public.orders").await == 252).then_some(())
    })
    .await;
    let tables = dms.table_statistics(&ids.task_arn).await.expect("stats");
    let orders = tables.iter().find(|t| t.table == "orders").expect("orders");
    assert_eq!(orders.full_load_rows, 250);
}

#[tokio::test]
async fn a_table_whose_copy_fails_shows_table_error() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("dmsl_tblerr").await;
    sql(
        &dbs.source_url,
        "CREATE TABLE public.good (id int PRIMARY KEY); CREATE TABLE public.bad (id int PRIMARY KEY, v text);
         INSERT INTO public.good SELECT generate_series(1, 10); INSERT INTO public.bad VALUES (1, 'a');",
    )
    .await;
    // The target lacks column v: the initial copy of `bad` fails and is retried (docs/lab.md).
    sql(
        &dbs.target_url,
        "CREATE TABLE public.good (id int PRIMARY KEY); CREATE TABLE public.bad (id int PRIMARY KEY);",
    )
    .await;
    let local = DmsLocal::start(&lab).await;
    let ids = local
        .register_lab_task(&lab, &dbs, "full-load", &all_public_tables())
        .await;
    let dms = local.dms_client().await;
    dms.start_task(&ids.task_arn, StartType::StartReplication)
        .await
        .expect("start");
    let tables = wait_for("Table error on public.bad", LIMIT, || async {
        let tables = dms.table_statistics(&ids.task_arn).await.expect("stats");
        tables
            .iter()
            .any(|t| t.table == "bad" && t.state == "Table error")
            .then_some(tables)
    })
    .await;
    let good = tables.iter().find(|t| t.table == "good").expect("good");
    assert_eq!(good.state, "Table completed");
    let done = wait_for_task(&dms, &ids.task_arn, "the load to end", LIMIT, |t| {
        t.status.as_str() == "stopped"
    })
    .await;
    assert_eq!(done.stats.expect("stats").tables_errored, 1);
}

#[tokio::test]
async fn paused_table_sync_lets_a_test_stop_mid_full_load() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("dmsl_pause").await;
    sql(&dbs.source_url, &format!("{SCHEMA}{ROWS}")).await;
    sql(&dbs.target_url, SCHEMA).await;
    let local = DmsLocal::start(&lab).await;
    let ids = local
        .register_lab_task(&lab, &dbs, "full-load-and-cdc", &all_public_tables())
        .await;
    let dms = local.dms_client().await;
    local
        .fault(json!({"taskArn": ids.task_arn, "pauseTableSync": true}))
        .await;
    dms.start_task(&ids.task_arn, StartType::StartReplication)
        .await
        .expect("start");
    wait_for_task(&dms, &ids.task_arn, "running", LIMIT, |t| {
        t.status.as_str() == "running"
    })
    .await;
    dms.sdk()
        .stop_replication_task()
        .replication_task_arn(&ids.task_arn)
        .send()
        .await
        .expect("stop");
    let stopped = wait_for_task(&dms, &ids.task_arn, "stopped", LIMIT, |t| {
        t.status.as_str() == "stopped"
    })
    .await;
    let stats = stopped.stats.expect("stats");
    assert!(stats.full_load_progress_percent < 100, "{stats:?}");
    assert_eq!(stats.full_load_finish_epoch_seconds, None);
    assert_eq!(count(&dbs.target_url, "public.orders").await, 0);

    let again = dms
        .start_task(&ids.task_arn, StartType::StartReplication)
        .await
        .expect_err("start-replication after a run");
    assert_eq!(again.name, ErrorName::DmsInvalidState);

    local
        .fault(json!({"taskArn": ids.task_arn, "pauseTableSync": false}))
        .await;
    dms.start_task(&ids.task_arn, StartType::ResumeProcessing)
        .await
        .expect("resume");
    wait_for_task(
        &dms,
        &ids.task_arn,
        "the load after resume",
        LIMIT,
        full_load_done,
    )
    .await;
    assert_eq!(count(&dbs.target_url, "public.orders").await, 250);
}

#[tokio::test]
async fn faults_and_unknown_arns_reach_the_sdk_as_dms_errors() {
    let Some(lab) = Lab::get().await else { return };
    let local = DmsLocal::start(&lab).await;
    let dms = local.dms_client().await;
    let missing = "arn:aws:dms:us-east-1:123456789012:task:NOSUCHTASK0000000000000000";

    let err = dms.describe_task(missing).await.expect_err("unknown task");
    assert_eq!(err.name, ErrorName::AwsNotFound, "{}", err.message);
    assert!(
        err.message.contains("ResourceNotFoundFault"),
        "{}",
        err.message
    );
    let err = dms
        .start_task(missing, StartType::StartReplication)
        .await
        .expect_err("unknown task");
    assert_eq!(err.name, ErrorName::AwsNotFound);

    // The SDK's standard retry makes 3 attempts: 3 throttles exhaust them.
    local
        .fault(json!({"operation": "DescribeTableStatistics", "throttle": 3}))
        .await;
    let err = dms.table_statistics(missing).await.expect_err("throttled");
    assert_eq!(err.name, ErrorName::AwsThrottled, "{}", err.message);
    assert!(
        err.message.contains("ThrottlingException"),
        "{}",
        err.message
    );
    let err = dms
        .table_statistics(missing)
        .await
        .expect_err("not throttled now");
    assert_eq!(err.name, ErrorName::AwsNotFound);

    let raw = local
        .sdk()
        .await
        .describe_replication_tasks()
        .filters(
            aws_sdk_databasemigration::types::Filter::builder()
                .name("replication-task-arm")
                .values("x")
                .build()
                .expect("filter"),
        )
        .send()
        .await
        .expect_err("unknown filter name");
    use aws_sdk_databasemigration::error::ProvideErrorMetadata;
    assert_eq!(raw.code(), Some("InvalidParameterValueException"));
}

#[tokio::test]
async fn task_faults_fail_and_hold_the_task() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("dmsl_faults").await;
    sql(&dbs.source_url, SCHEMA).await;
    sql(&dbs.target_url, SCHEMA).await;
    let local = DmsLocal::start(&lab).await;
    let ids = local
        .register_lab_task(&lab, &dbs, "cdc", &all_public_tables())
        .await;
    let dms = local.dms_client().await;

    local
        .fault(json!({"taskArn": ids.task_arn, "holdStatus": "modifying"}))
        .await;
    assert_eq!(
        dms.describe_task(&ids.task_arn)
            .await
            .expect("d")
            .status
            .as_str(),
        "modifying"
    );
    let err = dms
        .start_task(&ids.task_arn, StartType::StartReplication)
        .await
        .expect_err("modifying refuses");
    assert_eq!(err.name, ErrorName::DmsInvalidState);
    local
        .fault(json!({"taskArn": ids.task_arn, "holdStatus": null}))
        .await;
    dms.start_task(&ids.task_arn, StartType::StartReplication)
        .await
        .expect("start");
    wait_for_task(&dms, &ids.task_arn, "running", LIMIT, |t| {
        t.status.as_str() == "running"
    })
    .await;
    local
        .fault(json!({"taskArn": ids.task_arn, "failTask": "ERROR: out of disk on the replication instance"}))
        .await;
    let failed = dms.describe_task(&ids.task_arn).await.expect("describe");
    assert_eq!(failed.status.as_str(), "failed");
    assert_eq!(
        failed.last_failure_message.as_deref(),
        Some("ERROR: out of disk on the replication instance")
    );
}

#[tokio::test]
async fn test_connection_really_connects() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("dmsl_conn").await;
    let local = DmsLocal::start(&lab).await;
    let instance = local.register_instance("conn-instance").await;
    let good = local
        .register_endpoint(&DmsLocal::lab_endpoint_spec(&lab, &dbs, "source"))
        .await;
    let mut spec = DmsLocal::lab_endpoint_spec(&lab, &dbs, "target");
    spec["password"] = json!("wrong-password");
    spec["identifier"] = json!("bad-password");
    let bad = local.register_endpoint(&spec).await;
    let dms = local.dms_client().await;
    for endpoint in [&good, &bad] {
        dms.test_connection(&instance, endpoint)
            .await
            .expect("test starts");
    }
    let outcome = |endpoint: String| {
        let dms = dms.clone();
        let instance = instance.clone();
        async move {
            wait_for("the connection test", LIMIT, || async {
                dms.describe_connection(&instance, &endpoint)
                    .await
                    .expect("describe connections")
                    .filter(|c| c.status.as_str() != "testing")
            })
            .await
        }
    };
    assert_eq!(outcome(good.clone()).await.status.as_str(), "successful");
    let failed = outcome(bad.clone()).await;
    assert_eq!(failed.status.as_str(), "failed");
    let message = failed.last_failure_message.expect("a failure message");
    assert!(
        message.contains("password authentication failed"),
        "{message}"
    );
    assert!(!message.contains("wrong-password"), "{message}");
}

#[tokio::test]
async fn assessment_runs_probe_the_source() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("dmsl_assess").await;
    sql(
        &dbs.source_url,
        "CREATE TABLE public.keyed (id int PRIMARY KEY); CREATE TABLE public.heap (v text);",
    )
    .await;
    let local = DmsLocal::start(&lab).await;
    let ids = local
        .register_lab_task(&lab, &dbs, "full-load-and-cdc", &all_public_tables())
        .await;
    let sdk = local.sdk().await;
    let applicable = sdk
        .describe_applicable_individual_assessments()
        .replication_task_arn(&ids.task_arn)
        .send()
        .await
        .expect("applicable");
    let names = applicable.individual_assessment_names();
    assert!(names.iter().any(|n| n == "postgres-check-pk"), "{names:?}");
    assert!(
        names.iter().any(|n| n == "postgres-check-wallevel"),
        "{names:?}"
    );

    let run_status = |name: &'static str| {
        let sdk = sdk.clone();
        let task_arn = ids.task_arn.clone();
        async move {
            let started = sdk
                .start_replication_task_assessment_run()
                .replication_task_arn(&task_arn)
                .service_access_role_arn("arn:aws:iam::123456789012:role/dms-assessment")
                .result_location_bucket("assessment-bucket")
                .assessment_run_name(name)
                .send()
                .await
                .expect("start run");
            let run_arn = started
                .replication_task_assessment_run()
                .and_then(|r| r.replication_task_assessment_run_arn())
                .expect("run ARN")
                .to_string();
            wait_for("the assessment run to end", LIMIT, || async {
                let runs = sdk
                    .describe_replication_task_assessment_runs()
                    .filters(
                        aws_sdk_databasemigration::types::Filter::builder()
                            .name("replication-task-assessment-run-arn")
                            .values(&run_arn)
                            .build()
                            .expect("filter"),
                    )
                    .send()
                    .await
                    .expect("describe runs");
                let status = runs.replication_task_assessment_runs()[0]
                    .status()
                    .unwrap_or_default()
                    .to_string();
                (!matches!(status.as_str(), "provisioning" | "starting" | "running"))
                    .then_some((run_arn.clone(), status))
            })
            .await
        }
    };
    let (run_arn, status) = run_status("first").await;
    assert_eq!(status, "warning", "public.heap has no primary key");
    let individual = sdk
        .describe_replication_task_individual_assessments()
        .filters(
            aws_sdk_databasemigration::types::Filter::builder()
                .name("replication-task-assessment-run-arn")
                .values(&run_arn)
                .build()
                .expect("filter"),
        )
        .send()
        .await
        .expect("individual");
    let pk = individual
        .replication_task_individual_assessments()
        .iter()
        .find(|a| a.individual_assessment_name() == Some("postgres-check-pk"))
        .expect("the pk assessment");
    assert_eq!(pk.status(), Some("warning"));

    local
        .fault(json!({"operation": "StartReplicationTaskAssessmentRun", "assessmentError": true}))
        .await;
    let (_, status) = run_status("second").await;
    assert_eq!(status, "error-executing");
}

/// boto3's `dms` client (botocore's own model of the protocol) reads what the Rust SDK reads.
#[tokio::test]
async fn boto3_describes_tasks_and_table_statistics() {
    let Some(lab) = Lab::get().await else { return };
    let python = workspace_root().join(".tools/py/bin/python");
    assert!(
        python.exists(),
        "{} is missing; `make deps` creates it",
        python.display()
    );
    let dbs = lab.fresh_databases("dmsl_boto").await;
    sql(&dbs.source_url, &format!("{SCHEMA}{ROWS}")).await;
    sql(&dbs.target_url, SCHEMA).await;
    let local = DmsLocal::start(&lab).await;
    let ids = local
        .register_lab_task(&lab, &dbs, "full-load", &all_public_tables())
        .await;
    let dms = local.dms_client().await;
    dms.start_task(&ids.task_arn, StartType::StartReplication)
        .await
        .expect("start");
    wait_for_task(&dms, &ids.task_arn, "the load", LIMIT, |t| {
        t.status.as_str() == "stopped"
    })
    .await;

    const SCRIPT: &str = r#"
import json, sys, boto3
dms = boto3.client("dms", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
tasks = dms.describe_replication_tasks(Filters=[{"Name": "replication-task-arn", "Values": [sys.argv[2]]}])
stats = dms.describe_table_statistics(ReplicationTaskArn=sys.argv[2], MaxRecords=10)
task = tasks["ReplicationTasks"][0]
print(json.dumps({
    "status": task["Status"], "stopReason": task["StopReason"],
    "started": task["ReplicationTaskStartDate"].isoformat(),
    "percent": task["ReplicationTaskStats"]["FullLoadProgressPercent"],
    "tables": sorted([t["TableName"], t["TableState"], t["FullLoadRows"]] for t in stats["TableStatistics"]),
}))
"#;
    let output = std::process::Command::new(&python)
        .args(["-c", SCRIPT, &local.endpoint_url(), &ids.task_arn])
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "boto3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).expect("JSON from the script");
    assert_eq!(seen["status"], json!("stopped"));
    assert_eq!(
        seen["stopReason"],
        json!("Stop Reason FULL_LOAD_ONLY_FINISHED")
    );
    assert_eq!(seen["percent"], json!(100));
    assert_eq!(
        seen["tables"],
        json!([
            ["customers", "Table completed", 40],
            ["orders", "Table completed", 250]
        ])
    );
}

/// What `dms-migrate constraints apply` adds during CDC (a unique constraint beside the key, a foreign key)
/// fails tables when the task applies changes in batches, as the stack's task does; dms-local models it
/// (stricter than DMS, see its README) so advice to do so is caught. A plain index is harmless, and without
/// batch apply the same unique constraint leaves the table alone.
#[tokio::test]
async fn with_batch_apply_a_unique_constraint_or_foreign_key_added_during_cdc_fails_the_table() {
    let Some(lab) = Lab::get().await else { return };
    for batch_apply in [true, false] {
        let dbs = lab
            .fresh_databases(if batch_apply {
                "dmsl_batch_on"
            } else {
                "dmsl_batch_off"
            })
            .await;
        sql(&dbs.source_url, &format!("{SCHEMA}{ROWS}")).await;
        sql(&dbs.target_url, SCHEMA).await;
        let local = DmsLocal::start(&lab).await;
        let settings = json!({"TargetMetadata": {"BatchApplyEnabled": batch_apply}});
        let task_arn = local
            .register_lab_task_with_settings(
                &lab,
                &dbs,
                "full-load-and-cdc",
                &all_public_tables(),
                &settings,
            )
            .await
            .task_arn;
        let dms = local.dms_client().await;
        dms.start_task(&task_arn, StartType::StartReplication)
            .await
            .expect("start");
        wait_for_task(
            &dms,
            &task_arn,
            "the full load to finish",
            LIMIT,
            full_load_done,
        )
        .await;

        // A plain (non-unique) index is safe under batch apply.
        sql(
            &dbs.target_url,
            "CREATE INDEX orders_note ON public.orders (note);",
        )
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let tables = dms.table_statistics(&task_arn).await.expect("stats");
        assert!(
            tables.iter().all(|t| t.state == "Table completed"),
            "batch apply {batch_apply}: {tables:?}"
        );

        sql(
            &dbs.target_url,
            "ALTER TABLE public.customers ADD CONSTRAINT customers_name_key UNIQUE (name);
             ALTER TABLE public.orders ADD COLUMN customer_id int REFERENCES public.customers (id);",
        )
        .await;
        if batch_apply {
            let tables = wait_for("both tables in error", LIMIT, || async {
                let tables = dms.table_statistics(&task_arn).await.expect("stats");
                tables
                    .iter()
                    .all(|t| t.state == "Table error")
                    .then_some(tables)
            })
            .await;
            assert_eq!(tables.len(), 2, "{tables:?}");
        } else {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let tables = dms.table_statistics(&task_arn).await.expect("stats");
            assert!(
                tables.iter().all(|t| t.state == "Table completed"),
                "without batch apply nothing fails: {tables:?}"
            );
        }
        let described = local
            .sdk()
            .await
            .describe_replication_tasks()
            .filters(
                aws_sdk_databasemigration::types::Filter::builder()
                    .name("replication-task-arn")
                    .values(&task_arn)
                    .build()
                    .expect("a filter"),
            )
            .send()
            .await
            .expect("describe");
        let text = described.replication_tasks()[0]
            .replication_task_settings()
            .unwrap_or_default()
            .to_string();
        assert!(
            text.contains("BatchApplyEnabled"),
            "settings are returned: {text}"
        );
    }
}

/// ModifyReplicationTask as DMS allows it: refused while the task runs ("The task must be stopped before
/// you can modify it"), accepted once stopped (the task reports `modifying`, then `stopped` again), and a
/// task resumed with `BatchApplyEnabled` switched off keeps replicating into a table that gained a unique
/// constraint beside its key, from the position it stopped at.
#[tokio::test]
async fn modify_is_refused_while_running_and_turning_batch_apply_off_lets_a_unique_constraint_live()
{
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("dmsl_modify").await;
    sql(&dbs.source_url, &format!("{SCHEMA}{ROWS}")).await;
    sql(&dbs.target_url, SCHEMA).await;
    let local = DmsLocal::start(&lab).await;
    let settings = json!({"TargetMetadata": {"BatchApplyEnabled": true, "LobMaxSize": 32}});
    let task_arn = local
        .register_lab_task_with_settings(
            &lab,
            &dbs,
            "full-load-and-cdc",
            &all_public_tables(),
            &settings,
        )
        .await
        .task_arn;
    let dms = local.dms_client().await;
    dms.start_task(&task_arn, StartType::StartReplication)
        .await
        .expect("start");
    wait_for_task(&dms, &task_arn, "the full load to finish", LIMIT, |t| {
        t.status.as_str() == "running" && full_load_done(t)
    })
    .await;

    let off = json!({"TargetMetadata": {"BatchApplyEnabled": false, "LobMaxSize": 32}}).to_string();
    let refused = dms
        .modify_task(&task_arn, None, &off)
        .await
        .expect_err("DMS refuses to modify a running task");
    assert_eq!(refused.name, ErrorName::DmsInvalidState, "{refused:?}");
    assert!(
        refused.message.contains("must be stopped"),
        "{}",
        refused.message
    );

    dms.stop_task(&task_arn).await.expect("stop");
    wait_for_task(&dms, &task_arn, "the task to stop", LIMIT, |t| {
        t.status.as_str() == "stopped"
    })
    .await;
    // Rows written while the task is stopped must arrive after the resume (the slot keeps the position).
    sql(
        &dbs.source_url,
        "INSERT INTO public.customers VALUES (1001, 'while stopped');",
    )
    .await;
    dms.modify_task(&task_arn, None, &off)
        .await
        .expect("a stopped task may be modified");
    assert_eq!(
        dms.describe_task(&task_arn)
            .await
            .expect("describe")
            .status
            .as_str(),
        "modifying"
    );
    let refused = dms
        .start_task(&task_arn, StartType::ResumeProcessing)
        .await
        .expect_err("no start while modifying");
    assert_eq!(refused.name, ErrorName::DmsInvalidState, "{refused:?}");
    wait_for_task(&dms, &task_arn, "the modification to finish", LIMIT, |t| {
        t.status.as_str() == "stopped"
    })
    .await;
    let stored = dms
        .task_documents(&task_arn)
        .await
        .expect("settings")
        .settings
        .unwrap_or_default();
    assert!(
        stored.contains("\"BatchApplyEnabled\":false"),
        "the new settings are described: {stored}"
    );

    sql(
        &dbs.target_url,
        "ALTER TABLE public.customers ADD CONSTRAINT customers_name_key UNIQUE (name);",
    )
    .await;
    dms.start_task(&task_arn, StartType::ResumeProcessing)
        .await
        .expect("resume");
    wait_for_task(&dms, &task_arn, "the task to run again", LIMIT, |t| {
        t.status.as_str() == "running"
    })
    .await;
    sql(
        &dbs.source_url,
        "INSERT INTO public.customers VALUES (1002, 'after resume');",
    )
    .await;
    wait_for("both new rows on the target", LIMIT, || async {
        (count(&dbs.target_url, "public.customers").await == 42).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tables = dms.table_statistics(&task_arn).await.expect("stats");
    assert!(
        tables.iter().all(|t| t.state == "Table completed"),
        "transactional apply leaves a table with a unique constraint alone: {tables:?}"
    );
    assert_eq!(
        count(&dbs.target_url, "public.orders").await,
        250,
        "nothing copied twice"
    );
}

/// ModifyReplicationTask as https://docs.aws.amazon.com/dms/latest/APIReference/API_ModifyReplicationTask.html
/// describes it: a task that is not running takes new table mappings and settings (start-task sends the
/// whole settings document, the plan's keys laid over the task's); a mapping that selects nothing is
/// refused; a running task is
/// refused with InvalidResourceStateFault ("The task must be stopped before you can modify it").
#[tokio::test]
async fn modify_replication_task_applies_a_plan_only_while_the_task_is_not_running() {
    use aws_sdk_databasemigration::error::ProvideErrorMetadata;
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("dmsl_modify").await;
    sql(&dbs.source_url, &format!("{SCHEMA}{ROWS}")).await;
    sql(&dbs.target_url, SCHEMA).await;
    let local = DmsLocal::start(&lab).await;
    let ids = local
        .register_lab_task(&lab, &dbs, "full-load-and-cdc", &all_public_tables())
        .await;
    let sdk = local.sdk().await;
    let plan_mappings = json!({"rules": [
        {"rule-type": "selection", "rule-id": "1", "rule-name": "include-1",
         "object-locator": {"schema-name": "public", "table-name": "%"}, "rule-action": "include"},
        {"rule-type": "table-settings", "rule-id": "2", "rule-name": "parallel-load-2",
         "object-locator": {"schema-name": "public", "table-name": "orders"},
         "parallel-load": {"type": "ranges", "columns": ["id"], "boundaries": [["100"], ["200"]]}}
    ]});
    let modified = sdk
        .modify_replication_task()
        .replication_task_arn(&ids.task_arn)
        .table_mappings(plan_mappings.to_string())
        .replication_task_settings(
            json!({"FullLoadSettings": {"MaxFullLoadSubTasks": 20}, "TargetMetadata": {"LobMaxSize": 8}})
                .to_string(),
        )
        .send()
        .await
        .expect("a ready task is modified");
    let task = modified.replication_task().expect("the task");
    let mappings: Value = serde_json::from_str(task.table_mappings().unwrap_or("")).unwrap();
    assert_eq!(mappings, plan_mappings);
    let settings: Value =
        serde_json::from_str(task.replication_task_settings().unwrap_or("")).unwrap();
    assert_eq!(settings["FullLoadSettings"]["MaxFullLoadSubTasks"], 20);
    assert_eq!(settings["TargetMetadata"]["LobMaxSize"], 8);

    let selects_nothing = json!({"rules": [
        {"rule-type": "selection", "rule-id": "1", "rule-name": "1",
         "object-locator": {"schema-name": "public", "table-name": "%"}, "rule-action": "exclude"}]});
    let err = sdk
        .modify_replication_task()
        .replication_task_arn(&ids.task_arn)
        .table_mappings(selects_nothing.to_string())
        .send()
        .await
        .expect_err("a mapping that selects nothing");
    assert_eq!(
        err.code(),
        Some("InvalidParameterValueException"),
        "{err:?}"
    );

    let dms = local.dms_client().await;
    wait_for_task(
        &dms,
        &ids.task_arn,
        "the modification to apply",
        LIMIT,
        |t| t.status.as_str() != "modifying",
    )
    .await;
    dms.start_task(&ids.task_arn, StartType::StartReplication)
        .await
        .expect("start");
    wait_for_task(&dms, &ids.task_arn, "the task to run", LIMIT, |t| {
        t.status.as_str() == "running"
    })
    .await;
    let err = sdk
        .modify_replication_task()
        .replication_task_arn(&ids.task_arn)
        .table_mappings(plan_mappings.to_string())
        .send()
        .await
        .expect_err("a running task");
    assert_eq!(err.code(), Some("InvalidResourceStateFault"), "{err:?}");
    assert!(
        err.message().unwrap_or("").contains("must be stopped"),
        "{err:?}"
    );
}
