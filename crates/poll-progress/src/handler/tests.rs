use std::sync::Mutex;

use dms_core::aws::dms::{InstanceInfo, TableStat, TaskInfo};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};
use test_doubles::{FakeDms, StateFixture, TASK_ARN};

use super::*;

const INSTANCE_ARN: &str = "arn:aws:dms:us-east-1:123456789012:rep:INSTANCEARNID";
const NOW: i64 = 2_000_000;

/// DMS with the lab's instance and this task; each test adds the table statistics it needs.
fn dms(task: TaskInfo) -> FakeDms {
    FakeDms::default().task(task).instance(InstanceInfo {
        arn: INSTANCE_ARN.into(),
        identifier: "Lab-Instance".into(),
        ..InstanceInfo::default()
    })
}

#[derive(Default)]
struct FakeMetrics {
    latency: CdcLatency,
    asked: Mutex<Vec<TaskMetricsKey>>,
}

impl Metrics for FakeMetrics {
    async fn cdc_latency(&self, key: &TaskMetricsKey, now: i64) -> Result<CdcLatency, StepError> {
        assert_eq!(now, NOW);
        self.asked.lock().unwrap().push(key.clone());
        Ok(self.latency)
    }
}

/// Outside Step Functions: no history to count.
struct NoHistory;

impl History for NoHistory {
    async fn events_so_far(&self, _execution_arn: &str) -> Result<Option<u64>, StepError> {
        Ok(None)
    }
}

/// An execution whose history already holds this many events.
struct SpentHistory(u64);

impl History for SpentHistory {
    async fn events_so_far(&self, execution_arn: &str) -> Result<Option<u64>, StepError> {
        assert_eq!(
            execution_arn, "exec-1",
            "the execution's own history is read"
        );
        Ok(Some(self.0))
    }
}

fn task(status: &str, stop: Option<&str>, migration: &str) -> TaskInfo {
    TaskInfo {
        arn: TASK_ARN.into(),
        status: status.into(),
        stop_reason: stop.map(str::to_string),
        migration_type: migration.into(),
        instance_arn: INSTANCE_ARN.into(),
        ..TaskInfo::default()
    }
}

fn table(name: &str, state: &str) -> TableStat {
    TableStat {
        schema: "public".into(),
        table: name.into(),
        state: state.into(),
        full_load_rows: 5,
        ..TableStat::default()
    }
}

fn state(options: Value) -> Value {
    StateFixture::default()
        .with("replicationInstanceArn", INSTANCE_ARN)
        .with("options", options)
        .execution("exec-1", NOW - 60)
        .state()
}

fn envelope(state: Value) -> Value {
    LambdaEvent::new(json!({ "state": state }), Context::default()).payload
}

const GOOD: CdcLatency = CdcLatency {
    source_seconds: Some(0.0),
    target_seconds: Some(1.0),
};

#[tokio::test]
async fn a_full_load_only_task_that_finished_succeeds_without_reading_metrics() {
    let deps = Deps {
        history: NoHistory,
        dms: dms(task(
            "stopped",
            Some("Stop Reason FULL_LOAD_ONLY_FINISHED"),
            "full-load",
        ))
        .tables(vec![
            table("a", "Table completed"),
            table("b", "Table completed"),
        ]),
        metrics: FakeMetrics::default(),
    };
    let out = handle(envelope(state(json!({}))), &deps, NOW)
        .await
        .unwrap();
    assert_eq!(out["results"]["progress"]["phase"], json!("succeeded"));
    assert_eq!(out["results"]["progress"]["fullLoadRows"], json!(10));
    assert_eq!(out["monitor"]["polls"], json!(1));
    assert!(deps.metrics.asked.lock().unwrap().is_empty());
}

#[tokio::test]
async fn cdc_readiness_takes_consecutive_polls_and_uses_the_instance_identifier() {
    let deps = Deps {
        history: NoHistory,
        dms: dms(task("running", None, "cdc")).tables(vec![table("a", "Table completed")]),
        metrics: FakeMetrics {
            latency: GOOD,
            ..FakeMetrics::default()
        },
    };
    let mut current = state(json!({"readyAfterConsecutivePolls": 2, "pollIntervalSeconds": 1}));
    let out = handle(envelope(current.clone()), &deps, NOW).await.unwrap();
    assert_eq!(out["results"]["progress"]["phase"], json!("catching-up"));
    current = out;
    let out = handle(envelope(current), &deps, NOW).await.unwrap();
    assert_eq!(
        out["results"]["progress"]["phase"],
        json!("ready-for-cutover")
    );
    assert_eq!(out["monitor"]["consecutiveReadyPolls"], json!(2));
    assert_eq!(
        out["results"]["progress"]["cdcLatencyTargetSeconds"],
        json!(1.0)
    );
    let asked = deps.metrics.asked.lock().unwrap();
    assert_eq!(
        asked[0],
        TaskMetricsKey {
            instance_identifier: "lab-instance".into(),
            task_resource_id: "TASK1".into()
        }
    );
}

#[tokio::test]
async fn full_load_complete_is_announced_once() {
    let deps = Deps {
        history: NoHistory,
        dms: dms(task("running", None, "full-load-and-cdc"))
            .tables(vec![table("a", "Table completed")]),
        metrics: FakeMetrics {
            latency: GOOD,
            ..FakeMetrics::default()
        },
    };
    let out = handle(envelope(state(json!({}))), &deps, NOW)
        .await
        .unwrap();
    assert_eq!(
        out["results"]["progress"]["phase"],
        json!("full-load-complete")
    );
    assert_eq!(out["monitor"]["fullLoadAnnounced"], json!(true));
    let out = handle(envelope(out), &deps, NOW).await.unwrap();
    assert_eq!(out["results"]["progress"]["phase"], json!("catching-up"));
}

#[tokio::test]
async fn table_errors_and_task_failures_are_data_not_errors() {
    let deps = Deps {
        history: NoHistory,
        dms: dms(task("running", None, "full-load-and-cdc")).tables(vec![
            table("good", "Table completed"),
            table("bad", "Table error"),
        ]),
        metrics: FakeMetrics::default(),
    };
    let out = handle(envelope(state(json!({}))), &deps, NOW)
        .await
        .unwrap();
    assert_eq!(out["results"]["progress"]["phase"], json!("failed"));
    assert_eq!(
        out["results"]["progress"]["errorTables"],
        json!(["public.bad"])
    );

    let mut failed = task(
        "failed",
        Some("Stop Reason FATAL_ERROR"),
        "full-load-and-cdc",
    );
    failed.last_failure_message = Some("ERROR: relation \"public.x\" does not exist".into());
    let deps = Deps {
        history: NoHistory,
        dms: dms(failed).tables(vec![]),
        metrics: FakeMetrics::default(),
    };
    let out = handle(envelope(state(json!({}))), &deps, NOW)
        .await
        .unwrap();
    assert_eq!(out["results"]["progress"]["phase"], json!("failed"));
    assert_eq!(
        out["results"]["progress"]["lastFailureMessage"],
        json!("ERROR: relation \"public.x\" does not exist")
    );
}

#[tokio::test]
async fn the_poll_budget_ends_monitoring() {
    let deps = Deps {
        history: NoHistory,
        dms: dms(task("running", None, "full-load-and-cdc")).tables(vec![table("a", "Full load")]),
        metrics: FakeMetrics::default(),
    };
    let out = handle(envelope(state(json!({"maxPolls": 2}))), &deps, NOW)
        .await
        .unwrap();
    assert_eq!(out["results"]["progress"]["phase"], json!("loading"));
    let out = handle(envelope(out), &deps, NOW).await.unwrap();
    assert_eq!(
        out["results"]["progress"]["phase"],
        json!("monitoring-ended")
    );
    let reason = out["results"]["progress"]["reason"].as_str().unwrap();
    assert!(reason.contains("maxPolls"), "{reason}");
}

#[tokio::test]
async fn statistics_not_ready_yet_are_no_tables_but_other_errors_keep_their_names() {
    let deps = Deps {
        history: NoHistory,
        dms: dms(task("starting", None, "full-load-and-cdc"))
            .table_statistics_fail(StepError::new(ErrorName::DmsInvalidState, "not started")),
        metrics: FakeMetrics::default(),
    };
    let out = handle(envelope(state(json!({}))), &deps, NOW)
        .await
        .unwrap();
    assert_eq!(out["results"]["progress"]["phase"], json!("loading"));

    for name in [ErrorName::AwsThrottled, ErrorName::AwsNotFound] {
        let deps = Deps {
            history: NoHistory,
            dms: FakeDms::default()
                .describe_task_fails(StepError::new(name, format!("{TASK_ARN}: {name}"))),
            metrics: FakeMetrics::default(),
        };
        let err = handle(envelope(state(json!({}))), &deps, NOW)
            .await
            .unwrap_err();
        assert_eq!(err.name, name);
    }
    let err = handle(json!({"state": 1}), &deps, NOW).await.unwrap_err();
    assert_eq!(err.name, ErrorName::PayloadInvalid);
}

/// Retries late in a long run spent history events the poll count does not see: monitoring ends with its
/// email while the worst case of the rest still fits under 25,000 events, well before maxPolls.
#[tokio::test]
async fn a_history_near_its_limit_ends_monitoring_before_max_polls() {
    let deps = |events| Deps {
        history: SpentHistory(events),
        dms: dms(task("running", None, "full-load-and-cdc")).tables(vec![table("a", "Full load")]),
        metrics: FakeMetrics::default(),
    };
    let out = handle(envelope(state(json!({}))), &deps(20_000), NOW)
        .await
        .unwrap();
    assert_eq!(out["results"]["progress"]["phase"], json!("loading"));
    let out = handle(envelope(out), &deps(24_700), NOW).await.unwrap();
    assert_eq!(
        out["results"]["progress"]["phase"],
        json!("monitoring-ended")
    );
    let reason = out["results"]["progress"]["reason"].as_str().unwrap();
    assert!(reason.contains("24700 events"), "{reason}");
    assert_eq!(out["monitor"]["polls"], json!(2), "far below maxPolls");
}
