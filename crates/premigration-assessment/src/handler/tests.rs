use std::sync::Mutex;

use dms_core::aws::assessment_runs::{IndividualResult, RunInfo};
use dms_core::aws::dms::EndpointInfo;
use dms_core::pg::PgConnectOptions;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;
use test_doubles::{FakeDms, StateFixture, SOURCE_ARN, TARGET_ARN, TASK_ARN};

use super::*;

const RUN_ARN: &str = "arn:aws:dms:us-east-1:123456789012:assessment-run:RUN1";
const EXEC: &str = "arn:aws:states:us-east-1:123456789012:execution:m:run-1";

/// DMS with this task and both endpoints, each with a secret of its own.
fn dms(task: TaskInfo) -> FakeDms {
    let endpoint = |arn: &str| EndpointInfo {
        arn: arn.into(),
        server: Some("db.example.com".into()),
        port: Some(5432),
        database: Some("app".into()),
        username: Some("dms".into()),
        secret_id: Some(format!("secret-of-{arn}")),
        ..EndpointInfo::default()
    };
    FakeDms::default()
        .task(task)
        .endpoint(endpoint(SOURCE_ARN))
        .endpoint(endpoint(TARGET_ARN))
}

#[derive(Default)]
struct FakeAssessments {
    run: Option<RunInfo>,
    individual: Vec<IndividualResult>,
    started: Mutex<Vec<RunRequest>>,
}

impl Assessments for FakeAssessments {
    async fn applicable_assessments(&self, _t: &str) -> Result<Vec<String>, StepError> {
        Ok(vec![
            "postgres-check-pk".into(),
            "postgres-check-dbversion".into(),
        ])
    }
    async fn start_assessment_run(&self, request: &RunRequest) -> Result<RunInfo, StepError> {
        self.started.lock().unwrap().push(request.clone());
        Ok(RunInfo {
            arn: RUN_ARN.into(),
            status: "provisioning".into(),
            last_failure_message: None,
        })
    }
    async fn describe_assessment_run(&self, run_arn: &str) -> Result<Option<RunInfo>, StepError> {
        assert_eq!(run_arn, RUN_ARN);
        Ok(self.run.clone())
    }
    async fn individual_assessments(&self, _r: &str) -> Result<Vec<IndividualResult>, StepError> {
        Ok(self.individual.clone())
    }
}

struct FakeSecrets;

impl SecretStore for FakeSecrets {
    async fn secret_string(&self, _id: &str) -> Result<String, StepError> {
        Ok(r#"{"username":"migrator","password":"hunter2"}"#.into())
    }
}

/// Answers for each side: the checks, or the error connecting raised; and, when asked for the way back's
/// checks, those of that side.
struct FakeChecks {
    source: Result<Vec<Check>, StepError>,
    target: Result<Vec<Check>, StepError>,
    source_fallback: Vec<Check>,
    target_fallback: Vec<Check>,
    target_saw_source: Mutex<Option<bool>>,
    /// The `fallback` flag each side was asked with (source, target).
    asked_fallback: Mutex<(Option<bool>, Option<bool>)>,
}

impl SqlChecks for FakeChecks {
    type Facts = ();
    async fn source(
        &self,
        _o: &PgConnectOptions,
        _c: &CheckConfig,
        fallback: bool,
    ) -> Result<(Vec<Check>, ()), StepError> {
        self.asked_fallback.lock().unwrap().0 = Some(fallback);
        let mut found = self.source.clone()?;
        if fallback {
            found.extend(self.source_fallback.clone());
        }
        Ok((found, ()))
    }
    async fn target(
        &self,
        _o: &PgConnectOptions,
        source: Option<&()>,
        _c: &CheckConfig,
        fallback: bool,
    ) -> Result<Vec<Check>, StepError> {
        *self.target_saw_source.lock().unwrap() = Some(source.is_some());
        self.asked_fallback.lock().unwrap().1 = Some(fallback);
        let mut found = self.target.clone()?;
        if fallback {
            found.extend(self.target_fallback.clone());
        }
        Ok(found)
    }
}

fn ok_checks() -> FakeChecks {
    FakeChecks {
        source: Ok(vec![
            Check::pass(ids::SOURCE_VERSION, "15"),
            Check::new(
                ids::SOURCE_PRIMARY_KEYS,
                CheckStatus::Warn,
                "1 table has no primary key",
                vec!["public.events".into()],
                "ALTER TABLE public.events REPLICA IDENTITY FULL;",
            ),
        ]),
        target: Ok(vec![Check::pass(ids::TARGET_VERSION, "17")]),
        source_fallback: vec![
            Check::pass(ids::FALLBACK_SOURCE_PRIVILEGES, "writable"),
            Check::pass(ids::FALLBACK_SOURCE_SESSION_REPLICATION_ROLE, "settable"),
        ],
        target_fallback: vec![
            Check::pass(ids::FALLBACK_TARGET_WAL_LEVEL, "logical"),
            Check::new(
                ids::FALLBACK_TARGET_SLOT,
                CheckStatus::Fail,
                "\"mig\" may not create a test_decoding logical slot: the user lacks the REPLICATION attribute",
                vec!["\"mig\"".into()],
                "ALTER ROLE \"mig\" WITH REPLICATION;",
            ),
            Check::pass(ids::FALLBACK_TARGET_REPLICATION_CAPACITY, "room"),
            Check::pass(ids::FALLBACK_TARGET_WAL_KEEP_SIZE, "4096 MB"),
        ],
        target_saw_source: Mutex::new(None),
        asked_fallback: Mutex::new((None, None)),
    }
}

fn task(status: &str, started: bool) -> TaskInfo {
    TaskInfo {
        arn: TASK_ARN.into(),
        identifier: "orders-task".into(),
        status: status.into(),
        migration_type: "full-load-and-cdc".into(),
        source_endpoint_arn: SOURCE_ARN.into(),
        target_endpoint_arn: TARGET_ARN.into(),
        started_at_epoch_seconds: started.then_some(1_000.0),
        ..TaskInfo::default()
    }
}

type TestDeps = Deps<FakeDms, FakeAssessments, FakeSecrets, FakeChecks>;

fn deps(task: TaskInfo, assessments: FakeAssessments, databases: FakeChecks) -> TestDeps {
    Deps {
        dms: dms(task),
        assessments,
        secrets: FakeSecrets,
        databases,
        run_setup: Some(RunSetup {
            role_arn: "arn:aws:iam::123456789012:role/assess".into(),
            bucket: "assess-bucket".into(),
        }),
        fallback: false,
    }
}

fn input(action: &str, options: Value, assessment: Option<Value>) -> Value {
    let mut state = StateFixture::default()
        .with("options", options)
        .execution(EXEC, 1_000)
        .state();
    if let Some(a) = assessment {
        state["results"]["assessment"] = a;
    }
    LambdaEvent::new(
        json!({"state": state, "action": action}),
        Context::default(),
    )
    .payload
}

fn running(polls: u32) -> Value {
    json!({"status": "running", "runArn": RUN_ARN, "polls": polls,
           "counts": {"pass": 2, "warn": 1, "fail": 0},
           "failures": [], "warnings": [{"id": "source.primary_keys", "summary": "1 table has no primary key", "fix": "x", "objects": ["public.events"], "objectsTotal": 1}]})
}

#[tokio::test]
async fn a_missing_or_unknown_action_is_payload_invalid() {
    let d = deps(
        task("ready", false),
        FakeAssessments::default(),
        ok_checks(),
    );
    for action in ["", "stop"] {
        let err = handle(input(action, json!({}), None), &d, 5)
            .await
            .unwrap_err();
        assert_eq!(err.name, ErrorName::PayloadInvalid, "{action}");
    }
    let mut no_action = input("start", json!({}), None);
    no_action.as_object_mut().unwrap().remove("action");
    let err = handle(no_action, &d, 5).await.unwrap_err();
    assert_eq!(err.name, ErrorName::PayloadInvalid);
}

#[tokio::test]
async fn a_task_that_ran_before_is_skipped_with_the_reason_unless_reloaded() {
    let d = deps(
        task("stopped", true),
        FakeAssessments::default(),
        ok_checks(),
    );
    let out = handle(input("start", json!({}), None), &d, 5)
        .await
        .unwrap();
    let a = &out["results"]["assessment"];
    assert_eq!(a["status"], json!("skipped"));
    assert!(
        a["reason"]
            .as_str()
            .unwrap()
            .contains("orders-task has run before"),
        "{a}"
    );
    assert!(d.assessments.started.lock().unwrap().is_empty());

    let out = handle(input("start", json!({"startMode": "reload"}), None), &d, 5)
        .await
        .unwrap();
    assert_eq!(out["results"]["assessment"]["status"], json!("running"));
}

#[tokio::test]
async fn start_runs_both_sides_and_starts_the_applicable_assessments() {
    let d = deps(
        task("ready", false),
        FakeAssessments::default(),
        ok_checks(),
    );
    let out = handle(input("start", json!({}), None), &d, 1_700)
        .await
        .unwrap();
    let a = &out["results"]["assessment"];
    assert_eq!(a["status"], json!("running"));
    assert_eq!(a["runArn"], json!(RUN_ARN));
    assert_eq!(
        a["counts"],
        json!({"pass": 2, "warn": 1, "fail": 0, "notRun": 0})
    );
    assert_eq!(a["warnings"][0]["id"], json!("source.primary_keys"));
    assert_eq!(a["warnings"][0]["objects"], json!(["public.events"]));
    assert_eq!(
        a["sourceChecks"],
        json!({"ran": 2, "total": 2, "where": "premigration-assessment, outside any VPC"}),
        "the email says the source checks ran, and from where"
    );
    assert_eq!(*d.databases.target_saw_source.lock().unwrap(), Some(true));
    let started = d.assessments.started.lock().unwrap();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].task_arn, TASK_ARN);
    assert_eq!(started[0].result_location_bucket, "assess-bucket");
    assert_eq!(started[0].run_name, "dms-migrate-1700");
    assert_eq!(
        started[0].include_only,
        vec!["postgres-check-pk", "postgres-check-dbversion"]
    );
    assert!(!out.to_string().contains("hunter2"));
}

#[tokio::test]
async fn an_unreachable_source_is_not_run_never_a_pass_and_points_to_the_fix() {
    let mut checks = ok_checks();
    checks.source = Err(StepError::new(
        ErrorName::PostgresUnreachable,
        "connection timed out",
    ));
    let d = deps(task("ready", false), FakeAssessments::default(), checks);
    let out = handle(input("start", json!({}), None), &d, 5)
        .await
        .unwrap();
    let a = &out["results"]["assessment"];
    assert_eq!(a["status"], json!("running"));
    assert_eq!(a["counts"]["fail"], json!(0));
    assert_eq!(a["counts"]["warn"], json!(0));
    assert_eq!(a["counts"]["notRun"], json!(ids::SOURCE.len()));
    assert_eq!(
        a["counts"]["pass"],
        json!(1),
        "only the target's check passed"
    );
    assert_eq!(a["warnings"], json!([]));
    assert_eq!(a["sourceChecks"]["ran"], json!(0));
    assert_eq!(a["sourceChecks"]["total"], json!(ids::SOURCE.len()));
    assert_eq!(a["notRun"][0]["id"], json!("source.version"));
    assert!(a["notRun"][0]["fix"]
        .as_str()
        .unwrap()
        .contains("dms-migrate preflight"));
    assert!(a["notRun"][0]["summary"]
        .as_str()
        .unwrap()
        .contains("connection timed out"));
    assert_eq!(*d.databases.target_saw_source.lock().unwrap(), Some(false));
}

/// Without a DMS run the verdict is final at once: checks that could not run make it `warnings` (an
/// email), never `passed` (no email at all).
#[tokio::test]
async fn checks_not_run_alone_make_the_verdict_warnings_not_passed() {
    let mut checks = ok_checks();
    checks.source = Err(StepError::new(
        ErrorName::PostgresUnreachable,
        "connection timed out",
    ));
    let mut d = deps(task("ready", false), FakeAssessments::default(), checks);
    d.run_setup = None;
    let out = handle(input("start", json!({}), None), &d, 5)
        .await
        .unwrap();
    let a = &out["results"]["assessment"];
    assert_eq!(a["counts"]["fail"], json!(0));
    assert_eq!(a["status"], json!("warnings"), "{a}");
}

#[tokio::test]
async fn a_target_login_failure_warns_but_a_query_failure_is_an_error() {
    let mut checks = ok_checks();
    checks.target = Err(StepError::new(
        ErrorName::PostgresAuthFailed,
        "password authentication failed",
    ));
    let d = deps(task("ready", false), FakeAssessments::default(), checks);
    let out = handle(input("start", json!({}), None), &d, 5)
        .await
        .unwrap();
    assert_eq!(out["results"]["assessment"]["counts"]["warn"], json!(1));
    assert_eq!(
        out["results"]["assessment"]["counts"]["notRun"],
        json!(ids::TARGET.len())
    );

    let mut checks = ok_checks();
    checks.target = Err(StepError::new(
        ErrorName::PostgresQueryFailed,
        "permission denied",
    ));
    let d = deps(task("ready", false), FakeAssessments::default(), checks);
    let err = handle(input("start", json!({}), None), &d, 5)
        .await
        .unwrap_err();
    assert_eq!(err.name, ErrorName::PostgresQueryFailed);
}

#[tokio::test]
async fn without_role_or_bucket_the_run_is_skipped_with_a_warning_and_the_result_is_final() {
    let mut d = deps(
        task("ready", false),
        FakeAssessments::default(),
        ok_checks(),
    );
    d.run_setup = None;
    let out = handle(input("start", json!({}), None), &d, 5)
        .await
        .unwrap();
    let a = &out["results"]["assessment"];
    assert_eq!(a["status"], json!("warnings"));
    assert!(a.get("runArn").is_none());
    assert!(a["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w["id"] == json!(RUN_CHECK_ID)));
    assert!(d.assessments.started.lock().unwrap().is_empty());
}

fn with_run(status: &str, individual: &[(&str, &str)]) -> FakeAssessments {
    FakeAssessments {
        run: Some(RunInfo {
            arn: RUN_ARN.into(),
            status: status.into(),
            last_failure_message: Some("source unreachable".into()),
        }),
        individual: individual
            .iter()
            .map(|(n, s)| IndividualResult {
                name: n.to_string(),
                status: s.to_string(),
            })
            .collect(),
        ..FakeAssessments::default()
    }
}

#[tokio::test]
async fn a_run_in_progress_keeps_polling_until_the_bound() {
    for status in ["provisioning", "starting", "running"] {
        let d = deps(task("ready", false), with_run(status, &[]), ok_checks());
        let out = handle(input("poll", json!({}), Some(running(3))), &d, 5)
            .await
            .unwrap();
        let a = &out["results"]["assessment"];
        assert_eq!(a["status"], json!("running"), "{status}");
        assert_eq!(a["polls"], json!(4));
    }
    let d = deps(task("ready", false), with_run("running", &[]), ok_checks());
    let out = handle(
        input("poll", json!({}), Some(running(MAX_POLLS - 1))),
        &d,
        5,
    )
    .await
    .unwrap();
    let a = &out["results"]["assessment"];
    assert_eq!(a["status"], json!("failed"));
    assert!(
        a["reason"].as_str().unwrap().contains("never finished"),
        "{a}"
    );
}

#[tokio::test]
async fn a_finished_run_merges_individual_results_with_the_sql_checks() {
    let d = deps(
        task("ready", false),
        with_run(
            "warning",
            &[
                ("postgres-check-dbversion", "passed"),
                ("postgres-check-pk", "warning"),
            ],
        ),
        ok_checks(),
    );
    let out = handle(input("poll", json!({}), Some(running(1))), &d, 5)
        .await
        .unwrap();
    let a = &out["results"]["assessment"];
    assert_eq!(a["status"], json!("warnings"));
    assert_eq!(
        a["counts"],
        json!({"pass": 3, "warn": 2, "fail": 0, "notRun": 0})
    );
    let ids: Vec<&str> = a["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["source.primary_keys", "dms.postgres-check-pk"]);

    let d = deps(
        task("ready", false),
        with_run("failed", &[("postgres-check-table-with-array", "failed")]),
        ok_checks(),
    );
    let out = handle(input("poll", json!({}), Some(running(1))), &d, 5)
        .await
        .unwrap();
    let a = &out["results"]["assessment"];
    assert_eq!(a["status"], json!("failed"));
    assert_eq!(
        a["failures"][0]["id"],
        json!("dms.postgres-check-table-with-array")
    );
    assert!(a["failures"][0]["fix"]
        .as_str()
        .unwrap()
        .contains("s3://assess-bucket"));
}

#[tokio::test]
async fn every_error_status_ends_the_loop_as_failed_with_the_reason() {
    for status in [
        "error-provisioning",
        "error-executing",
        "invalid state",
        "cancelling",
        "deleting",
        "something-new",
    ] {
        let d = deps(task("ready", false), with_run(status, &[]), ok_checks());
        let out = handle(input("poll", json!({}), Some(running(1))), &d, 5)
            .await
            .unwrap();
        let a = &out["results"]["assessment"];
        assert_eq!(a["status"], json!("failed"), "{status}");
        assert_eq!(a["failures"][0]["id"], json!(RUN_CHECK_ID));
        assert!(
            a["reason"].as_str().unwrap().contains("source unreachable"),
            "{a}"
        );
    }
    let d = deps(
        task("ready", false),
        FakeAssessments::default(),
        ok_checks(),
    );
    let out = handle(input("poll", json!({}), Some(running(1))), &d, 5)
        .await
        .unwrap();
    assert_eq!(out["results"]["assessment"]["status"], json!("failed"));
}

#[tokio::test]
async fn a_poll_without_a_running_assessment_is_rejected_or_left_alone() {
    let d = deps(
        task("ready", false),
        FakeAssessments::default(),
        ok_checks(),
    );
    let err = handle(input("poll", json!({}), None), &d, 5)
        .await
        .unwrap_err();
    assert_eq!(err.name, ErrorName::PayloadInvalid);
    let out = handle(
        input(
            "poll",
            json!({}),
            Some(json!({"status": "skipped", "reason": "r"})),
        ),
        &d,
        5,
    )
    .await
    .unwrap();
    assert_eq!(out["results"]["assessment"]["status"], json!("skipped"));
}

#[test]
fn enable_fallback_is_true_or_false_and_unset_is_false() {
    assert_eq!(fallback_enabled(Some("true")), Ok(true));
    assert_eq!(fallback_enabled(Some("false")), Ok(false));
    assert_eq!(fallback_enabled(None), Ok(false));
    assert_eq!(fallback_enabled(Some("")), Ok(false));
    let err = fallback_enabled(Some("yes")).unwrap_err();
    assert!(err.contains("`yes`"), "{err}");
}

#[tokio::test]
async fn without_the_way_back_no_fallback_check_is_asked_for_or_reported() {
    let d = deps(
        task("ready", false),
        FakeAssessments::default(),
        ok_checks(),
    );
    let out = handle(input("start", json!({}), None), &d, 5)
        .await
        .unwrap();
    assert_eq!(
        *d.databases.asked_fallback.lock().unwrap(),
        (Some(false), Some(false))
    );
    assert!(!out.to_string().contains("fallback."), "{out}");
}

/// With the way back enabled each side is asked for its own `fallback.*` checks; a failed one is reported
/// as a warning naming it (it blocks the way back, not the migration) with the way to go without.
#[tokio::test]
async fn with_the_way_back_a_failed_fallback_check_warns_and_does_not_block_the_migration() {
    let mut d = deps(
        task("ready", false),
        FakeAssessments::default(),
        ok_checks(),
    );
    d.fallback = true;
    d.run_setup = None;
    let out = handle(input("start", json!({}), None), &d, 5)
        .await
        .unwrap();
    assert_eq!(
        *d.databases.asked_fallback.lock().unwrap(),
        (Some(true), Some(true))
    );
    let a = &out["results"]["assessment"];
    // version (source), version (target), and five of the way back's six.
    assert_eq!(
        a["counts"],
        json!({"pass": 7, "warn": 3, "fail": 0, "notRun": 0}),
        "{a}"
    );
    assert_eq!(a["status"], json!("warnings"), "{a}");
    let slot = a["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == json!(ids::FALLBACK_TARGET_SLOT))
        .unwrap_or_else(|| panic!("fallback.target_slot is not reported: {a}"));
    let summary = slot["summary"].as_str().unwrap();
    assert!(summary.contains("the way back cannot be armed"), "{slot}");
    assert!(
        summary.contains("lacks the REPLICATION attribute"),
        "{slot}"
    );
    let fix = slot["fix"].as_str().unwrap();
    assert!(
        fix.starts_with("ALTER ROLE \"mig\" WITH REPLICATION;"),
        "{slot}"
    );
    assert!(fix.contains("EnableFallback = false"), "{slot}");
    assert_eq!(
        a["sourceChecks"]["total"],
        json!(2),
        "only source.* are counted there"
    );
}

/// A source that cannot be reached has the way back's Aurora checks `not_run` with its own; a
/// source-checks function that ignores the flag (an older one) has them `not_run`, never passed.
#[tokio::test]
async fn the_way_backs_checks_of_a_side_not_read_are_not_run() {
    let mut checks = ok_checks();
    checks.source = Err(StepError::new(
        ErrorName::PostgresUnreachable,
        "connection timed out",
    ));
    let mut d = deps(task("ready", false), FakeAssessments::default(), checks);
    d.fallback = true;
    let out = handle(input("start", json!({}), None), &d, 5)
        .await
        .unwrap();
    let a = &out["results"]["assessment"];
    assert_eq!(
        a["counts"]["notRun"],
        json!(ids::SOURCE.len() + ids::FALLBACK_SOURCE.len()),
        "{a}"
    );

    let mut older = ok_checks();
    older.source_fallback = Vec::new();
    let mut d = deps(task("ready", false), FakeAssessments::default(), older);
    d.fallback = true;
    let out = handle(input("start", json!({}), None), &d, 5)
        .await
        .unwrap();
    let a = &out["results"]["assessment"];
    let not_run: Vec<&str> = a["notRun"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(not_run, ids::FALLBACK_SOURCE.to_vec(), "{a}");
    assert!(a["notRun"][0]["summary"]
        .as_str()
        .unwrap()
        .contains("did not answer the way back's checks"));
}
