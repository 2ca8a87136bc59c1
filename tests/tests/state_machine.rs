//! The real statemachine.asl.json in moto's Step Functions interpreter, calling the built Lambda binaries
//! (through the lab's router and the rig's proxy, tests/src/rig.rs) against dms-local, the lab's PostgreSQL
//! and moto. Each test asserts the path taken (history) and the emails sent, read back through SQS after
//! the execution ended plus a few quiet seconds, so a second failure email would be seen.
//!
//! Choice branches, each taken by at least one test:
//! - ConnectivityResult: ok → PremigrationAssessmentStart (full_load_and_cdc_runs_to_ready_for_cutover);
//!   not ok + autofixEligible → SgAutofix (a_blocked_source_is_opened_by_sg_autofix_and_the_run_continues);
//!   not ok → NotifyConnectivityFailed (a_blocked_source_with_autofix_off_fails_with_one_email_naming_the_fix);
//!   ok missing → UnexpectedConnectivityResult (connectivity_failures_of_the_machine_itself_are_caught).
//! - AssessmentStatus: running → WaitForAssessment (full_load_and_cdc_runs_to_ready_for_cutover); passed →
//!   StartTask (a_passed_assessment_goes_straight_to_the_task: the shared lab's checks always warn, so that
//!   answer is made clean); warnings → NotifyAssessmentWarnings (full_load_only_succeeds_...); skipped →
//!   NotifyAssessmentSkipped (a_second_execution_skips_the_assessment_and_resumes_the_task); failed →
//!   NotifyAssessmentFailed (a_blocking_assessment_stops_before_the_task_starts); missing and unknown →
//!   UnexpectedAssessmentStatus (assessment_step_failures_are_caught).
//! - ProgressPhase: recovering → NotifyTaskRecovering
//!   (a_recoverable_error_sends_one_email_and_the_run_continues_to_cutover);
//!   loading / catching-up → WaitBeforePoll, full-load-complete → NotifyFullLoadComplete,
//!   ready-for-cutover → NotifyReadyForCutover (full_load_and_cdc_runs_to_ready_for_cutover); succeeded →
//!   NotifySucceeded (full_load_only_succeeds_...); failed → NotifyTaskFailed
//!   (a_table_error_during_the_load_fails_naming_the_table); monitoring-ended → NotifyMonitoringEnded
//!   (max_polls_three_ends_monitoring_with_one_email); missing and unknown → UnexpectedProgressPhase
//!   (running_task_failures_are_caught).
//!
//! Catches (each Task's `States.ALL` → Caught<Task> → NotifyFailure → Failed, exactly one `failed` email):
//! - NotifyStarted: a_bad_payload_fails_at_the_first_step_with_one_email_naming_the_field
//! - ConnectivityCheck: a_lambda_timeout_sends_one_failure_email_naming_the_step
//! - SgAutofix: sg_autofix_that_finds_no_group_is_caught_once
//! - NotifySgFixed: a_failing_sg_fixed_email_is_caught_once
//! - NotifyConnectivityFailed, and NotifyFailure's own Catch → FailedWithoutEmail:
//!   connectivity_failures_of_the_machine_itself_are_caught
//! - PremigrationAssessmentStart, PremigrationAssessmentPoll: assessment_step_failures_are_caught
//! - NotifyAssessmentWarnings: full_load_only_succeeds_and_its_email_failures_are_caught
//! - NotifyAssessmentFailed: a_blocking_assessment_stops_before_the_task_starts
//! - StartTask: throttling_past_the_retry_budget_sends_one_failure_email
//! - NotifyAssessmentSkipped, NotifyTaskStarted, PollProgress, NotifyFullLoadComplete, NotifyReadyForCutover,
//!   NotifyTaskRecovering: running_task_failures_are_caught
//! - NotifySucceeded: a_failing_succeeded_email_is_caught_once
//! - NotifyTaskFailed: a_failing_task_failed_email_is_caught_once
//! - NotifyMonitoringEnded: max_polls_three_ends_monitoring_with_one_email
//!
//! `every_branch_and_catch_is_named_in_an_assertion` keeps these lists honest when the ASL grows.
//!
//! How failures are made: for real where the lab can (a port that drops connects for a security group,
//! dms-local's throttle and pause faults, a key already on the target for a table error, a missing target
//! table for a blocking assessment); otherwise the rig's proxy answers for the function (an email step
//! failing, a Lambda answering outside the state contract). A Lambda timeout is the proxy giving up after 2 s
//! with the function error AWS reports for a timed-out function, `Sandbox.Timedout` ("Task timed out after
//! 2.00 seconds"): moto does honour a Task's TimeoutSeconds (States.Timeout), but the ASL's are 120–900 s and
//! the Lambda's own timeout, no larger, fires first on AWS.
//!
//! Timing: the real ASL runs unchanged except where a test says otherwise in its own copy: the
//! retries-exhausted test shortens the `Aws.Throttled` interval (the real one, 2 s doubling to 60 s with
//! full jitter over 8 retries, waits about 2 minutes on average and up to 4), and the maxPolls test waits
//! 1 s between polls (poll-progress spreads 3 polls over maxMonitorHours, at least an hour).

use std::time::Duration;

use dms_core::rules::connectivity::FailureClass;
use integration_tests::dms_local::wait_for;
use integration_tests::lab::{binary, Lab};
use integration_tests::lambda::LocalLambda;
use integration_tests::rig::{
    count, events, options, sql, Fault, MigrationRig, RigSpec, SourceAccess, AURORA_PORT,
};
use integration_tests::sfn::{function_arn, route, Finished, LocalStateMachine};
use integration_tests::sns::{Delivered, TopicWithQueue};
use serde_json::{json, Value};

const RUN_LIMIT: Duration = Duration::from_secs(240);

/// Asserts a run ended through `caught` (a Caught<Task> or Unexpected<Choice> Pass state) with exactly one
/// failure email naming `step` and `error`, sent last.
fn assert_one_failure_email(
    finished: &Finished,
    emails: &[Delivered],
    caught: &str,
    step: &str,
    error: &str,
) {
    assert_eq!(finished.status, "FAILED", "{finished:?}");
    assert_eq!(finished.error.as_deref(), Some(error), "{finished:?}");
    assert_eq!(finished.count_entered(caught), 1, "{:?}", finished.entered);
    assert_eq!(
        finished.count_entered("NotifyFailure"),
        1,
        "{:?}",
        finished.entered
    );
    assert_eq!(
        finished.entered.last().map(String::as_str),
        Some("Failed"),
        "{:?}",
        finished.entered
    );
    assert!(
        finished
            .cause
            .as_deref()
            .is_some_and(|c| c.starts_with(&format!("{step}: "))),
        "{finished:?}"
    );
    let kinds = events(emails);
    assert_eq!(
        kinds.iter().filter(|e| *e == "failed").count(),
        1,
        "exactly one failure email: {kinds:?}"
    );
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("failed"),
        "{kinds:?}"
    );
    let email = emails.last().expect("an email");
    assert!(
        email
            .subject
            .contains(&format!("FAILED at {step}: {error}")),
        "{}",
        email.subject
    );
    assert!(
        email.message.contains(&format!("Step: {step}")),
        "{}",
        email.message
    );
}

fn assert_no_failure_email(emails: &[Delivered]) {
    let kinds = events(emails);
    assert!(!kinds.iter().any(|e| e == "failed"), "{kinds:?}");
}

/// `event` of the assessment email the status calls for (none when it passed).
fn assessment_email(finished: &Finished) -> Option<&'static str> {
    let status = finished
        .output
        .as_ref()
        .and_then(|o| o["results"]["assessment"]["status"].as_str())
        .map(str::to_string);
    match status.as_deref() {
        Some("passed") => None,
        Some("warnings") => Some("assessment-warnings"),
        Some("skipped") => Some("assessment-skipped"),
        other => panic!("unexpected assessment status {other:?}"),
    }
}

fn without(pointer_parent: &str, key: &str, value: &mut Value) {
    if let Some(parent) = value
        .pointer_mut(pointer_parent)
        .and_then(Value::as_object_mut)
    {
        parent.remove(key);
    }
}

#[tokio::test]
async fn full_load_and_cdc_runs_to_ready_for_cutover() {
    let mut spec = RigSpec::new("sfn_happy", "full-load-and-cdc");
    spec.dms_assessment = true;
    let Some(rig) = MigrationRig::start(spec).await else {
        return;
    };
    let (finished, emails) = rig.run(&rig.payload(options(json!({}))), RUN_LIMIT).await;
    assert_eq!(finished.status, "SUCCEEDED", "{finished:?}");
    assert_eq!(
        finished.entered.last().map(String::as_str),
        Some("ReadyForCutover")
    );
    for (state, times) in [
        ("NotifyStarted", 1),
        ("ConnectivityCheck", 1),
        ("SgAutofix", 0),
        ("PremigrationAssessmentStart", 1),
        ("StartTask", 1),
        ("NotifyTaskStarted", 1),
        ("NotifyFullLoadComplete", 1),
        ("NotifyReadyForCutover", 1),
        ("NotifyFailure", 0),
    ] {
        assert_eq!(
            finished.count_entered(state),
            times,
            "{state}: {:?}",
            finished.entered
        );
    }
    // The DMS assessment run is polled at least once (status `running` → WaitForAssessment).
    assert!(finished.count_entered("WaitForAssessment") >= 1);
    assert_eq!(
        finished.count_entered("WaitForAssessment"),
        finished.count_entered("PremigrationAssessmentPoll")
    );
    assert!(finished.count_entered("WaitBeforePoll") >= 2);

    let mut expected = vec!["started"];
    expected.extend(assessment_email(&finished));
    expected.extend(["task-started", "full-load-complete", "ready-for-cutover"]);
    assert_eq!(events(&emails), expected);
    assert_eq!(
        finished.count_entered("NotifyAssessmentWarnings"),
        usize::from(expected.contains(&"assessment-warnings"))
    );
    assert!(emails[0]
        .subject
        .contains(rig.task.task_arn.rsplit(':').next().unwrap()));
    assert_eq!(count(&rig.dbs.target_url, "public.orders").await, 30);
    assert_eq!(count(&rig.dbs.target_url, "public.customers").await, 5);
}

#[tokio::test]
async fn full_load_only_succeeds_and_its_email_failures_are_caught() {
    let Some(rig) = MigrationRig::start(RigSpec::new("sfn_full", "full-load")).await else {
        return;
    };
    // Without ASSESSMENT_ROLE_ARN the DMS run is not started, which is a warning.
    rig.inject(
        "notify",
        Some("assessment-warnings"),
        Fault::Fail {
            error_type: "Aws.AccessDenied",
            message: "not authorized to perform: SNS:Publish",
        },
    );
    let (finished, emails) = rig.run(&rig.payload(options(json!({}))), RUN_LIMIT).await;
    assert_one_failure_email(
        &finished,
        &emails,
        "CaughtNotifyAssessmentWarnings",
        "NotifyAssessmentWarnings",
        "Aws.AccessDenied",
    );
    assert_eq!(events(&emails), ["started", "failed"]);
    assert_eq!(finished.count_entered("StartTask"), 0);
    rig.clear_faults();

    let (finished, emails) = rig.run(&rig.payload(options(json!({}))), RUN_LIMIT).await;
    assert_eq!(finished.status, "SUCCEEDED", "{finished:?}");
    assert_eq!(
        finished.entered.last().map(String::as_str),
        Some("Succeeded")
    );
    assert_eq!(finished.count_entered("NotifyAssessmentWarnings"), 1);
    assert_eq!(finished.count_entered("NotifySucceeded"), 1);
    assert_eq!(finished.count_entered("NotifyFullLoadComplete"), 0);
    assert_eq!(
        events(&emails),
        [
            "started",
            "assessment-warnings",
            "task-started",
            "succeeded"
        ]
    );
    assert_eq!(count(&rig.dbs.target_url, "public.orders").await, 30);
    assert_eq!(count(&rig.dbs.target_url, "public.customers").await, 5);
}

/// The shared lab's source cluster carries other tests' replication slots, so its real checks always warn
/// (`source.leftover_slots`); the assessment's answer is made clean here to take the `passed` branch.
#[tokio::test]
async fn a_passed_assessment_goes_straight_to_the_task() {
    let Some(rig) = MigrationRig::start(RigSpec::new("sfn_passed", "full-load")).await else {
        return;
    };
    rig.inject(
        "premigration-assessment",
        Some("start"),
        Fault::Rewrite(|state| {
            let assessment = &mut state["results"]["assessment"];
            assessment["status"] = json!("passed");
            assessment["warnings"] = json!([]);
            assessment["counts"]["warn"] = json!(0);
        }),
    );
    let (finished, emails) = rig.run(&rig.payload(options(json!({}))), RUN_LIMIT).await;
    assert_eq!(finished.status, "SUCCEEDED", "{finished:?}");
    assert_eq!(finished.count_entered("NotifyAssessmentWarnings"), 0);
    assert_eq!(finished.count_entered("StartTask"), 1);
    assert_eq!(events(&emails), ["started", "task-started", "succeeded"]);
}

#[tokio::test]
async fn a_failing_succeeded_email_is_caught_once() {
    let Some(rig) = MigrationRig::start(RigSpec::new("sfn_full_mail", "full-load")).await else {
        return;
    };
    rig.inject(
        "notify",
        Some("succeeded"),
        Fault::Fail {
            error_type: "Aws.Transient",
            message: "SNS answered 503 through every retry",
        },
    );
    let (finished, emails) = rig.run(&rig.payload(options(json!({}))), RUN_LIMIT).await;
    assert_one_failure_email(
        &finished,
        &emails,
        "CaughtNotifySucceeded",
        "NotifySucceeded",
        "Aws.Transient",
    );
    // Aws.Transient is retried (3 attempts) before the Catch.
    assert_eq!(finished.failures_of("NotifySucceeded").len(), 4);
    assert_eq!(
        events(&emails),
        ["started", "assessment-warnings", "task-started", "failed"]
    );
}

// Two workers: dms-local's cleanup on drop blocks one, the security-group gate may still forward.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_source_is_opened_by_sg_autofix_and_the_run_continues() {
    let mut spec = RigSpec::new("sfn_sg", "full-load");
    spec.source = SourceAccess::SecurityGroup;
    let Some(rig) = MigrationRig::start(spec).await else {
        return;
    };
    let (finished, emails) = rig.run(&rig.payload(options(json!({}))), RUN_LIMIT).await;
    assert_eq!(finished.status, "SUCCEEDED", "{finished:?}");
    assert_eq!(finished.count_entered("ConnectivityCheck"), 2);
    assert_eq!(finished.count_entered("SgAutofix"), 1);
    assert_eq!(finished.count_entered("NotifySgFixed"), 1);
    assert_eq!(finished.count_entered("NotifyConnectivityFailed"), 0);
    assert_eq!(
        finished.entered.last().map(String::as_str),
        Some("Succeeded")
    );
    assert_eq!(
        events(&emails),
        [
            "started",
            "sg-fixed",
            "assessment-warnings",
            "task-started",
            "succeeded"
        ]
    );
    let output = finished.output.expect("output");
    // One rule for DMS, one for the in-VPC source checks, both on Aurora's group.
    let added = output["results"]["sgAutofix"]["added"].clone();
    let source_group = output["results"]["sgAutofix"]["sourceGroups"][0]
        .as_str()
        .expect("the source's group")
        .to_string();
    assert_eq!(
        added,
        json!([
            format!(
                "{source_group} <- {} tcp/{AURORA_PORT}",
                output["results"]["sgAutofix"]["dmsGroups"][0]
                    .as_str()
                    .unwrap_or("?")
            ),
            format!(
                "{source_group} <- {} tcp/{AURORA_PORT}",
                rig.source_checks_group
            ),
        ]),
        "{added}"
    );
    assert!(
        emails[1]
            .message
            .contains(added[0].as_str().unwrap_or("no rule")),
        "{}",
        emails[1].message
    );
    // The source checks ran inside the "VPC" once their rule existed: none is reported as not run.
    let assessment = &output["results"]["assessment"];
    assert_eq!(assessment["counts"]["notRun"], json!(0), "{assessment}");
    assert_eq!(
        assessment["sourceChecks"]["where"],
        json!("the source-checks function inside the stack's VPC"),
        "{assessment}"
    );
    assert_eq!(
        assessment["sourceChecks"]["ran"], assessment["sourceChecks"]["total"],
        "{assessment}"
    );
    assert!(
        assessment["sourceChecks"]["ran"].as_u64().unwrap_or(0) > 0,
        "{assessment}"
    );
    assert!(
        assessment["counts"]["pass"].as_u64().unwrap_or(0) >= 10,
        "{assessment}"
    );
    assert_eq!(count(&rig.dbs.target_url, "public.orders").await, 30);
}

/// Aurora's group admits DMS but not the source-checks function: the migration goes on, and the assessment
/// email counts the source checks as not run, says so in its subject, and names the missing rule (the
/// source-checks group, the port).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_checks_that_cannot_reach_the_source_are_not_run_and_name_the_missing_rule() {
    let mut spec = RigSpec::new("sfn_vpc_blocked", "full-load");
    spec.source = SourceAccess::SourceChecksBlocked;
    let Some(rig) = MigrationRig::start(spec).await else {
        return;
    };
    let (finished, emails) = rig.run(&rig.payload(options(json!({}))), RUN_LIMIT).await;
    assert_eq!(finished.status, "SUCCEEDED", "{finished:?}");
    assert_eq!(
        events(&emails),
        [
            "started",
            "assessment-warnings",
            "task-started",
            "succeeded"
        ]
    );
    let output = finished.output.expect("output");
    let assessment = &output["results"]["assessment"];
    assert_eq!(assessment["status"], json!("warnings"), "{assessment}");
    assert_eq!(
        assessment["counts"]["notRun"],
        json!(integration_tests::rig::SOURCE_CHECK_COUNT),
        "{assessment}"
    );
    assert_eq!(assessment["notRun"][0]["id"], json!("source.version"));
    assert_eq!(assessment["sourceChecks"]["ran"], json!(0), "{assessment}");
    let email = &emails[1];
    assert!(
        email.subject.contains("check(s) not run") && !email.subject.contains("passed"),
        "{}",
        email.subject
    );
    for needed in [
        format!("inbound TCP {}", rig.source_port),
        format!("from security group {}", rig.source_checks_group),
        format!("--source-group {}", rig.source_checks_group),
    ] {
        assert!(
            email.message.contains(&needed),
            "{needed}: {}",
            email.message
        );
    }
    assert!(
        email.message.contains(&format!(
            "{} not run",
            integration_tests::rig::SOURCE_CHECK_COUNT
        )),
        "{}",
        email.message
    );
}

// Two workers: dms-local's cleanup on drop blocks one, the security-group gate may still forward.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sg_fixed_email_is_caught_once() {
    let mut spec = RigSpec::new("sfn_sg_mail", "full-load");
    spec.source = SourceAccess::SecurityGroup;
    let Some(rig) = MigrationRig::start(spec).await else {
        return;
    };
    rig.inject(
        "notify",
        Some("sg-fixed"),
        Fault::Fail {
            error_type: "Aws.AccessDenied",
            message: "not authorized to perform: SNS:Publish",
        },
    );
    let (finished, emails) = rig.run(&rig.payload(options(json!({}))), RUN_LIMIT).await;
    assert_one_failure_email(
        &finished,
        &emails,
        "CaughtNotifySgFixed",
        "NotifySgFixed",
        "Aws.AccessDenied",
    );
    assert_eq!(events(&emails), ["started", "failed"]);
}

#[tokio::test]
async fn a_blocked_source_with_autofix_off_fails_with_one_email_naming_the_fix() {
    let mut spec = RigSpec::new("sfn_sg_off", "full-load");
    spec.source = SourceAccess::Blocked;
    let Some(rig) = MigrationRig::start(spec).await else {
        return;
    };
    let input = rig.payload(options(json!({"autoFixSecurityGroup": false})));
    let (finished, emails) = rig.run(&input, RUN_LIMIT).await;
    assert_eq!(finished.status, "FAILED", "{finished:?}");
    assert_eq!(
        finished.error.as_deref(),
        Some("Migration.ConnectivityFailed")
    );
    assert_eq!(finished.count_entered("SgAutofix"), 0);
    assert_eq!(finished.count_entered("NotifyConnectivityFailed"), 1);
    assert_eq!(finished.count_entered("NotifyFailure"), 0);
    assert_eq!(
        finished.entered.last().map(String::as_str),
        Some("ConnectivityFailed")
    );
    assert_eq!(events(&emails), ["started", "connectivity-failed"]);
    let body = &emails[1].message;
    assert!(body.contains("Step: ConnectivityCheck"), "{body}");
    assert!(body.contains("(security-group)"), "{body}");
    assert!(body.contains(FailureClass::SecurityGroup.fix()), "{body}");
}

/// sg-autofix finds the source's group by its address; nothing in the VPC holds 127.0.0.1.
#[tokio::test]
async fn sg_autofix_that_finds_no_group_is_caught_once() {
    let mut spec = RigSpec::new("sfn_sg_nogroup", "full-load");
    spec.source = SourceAccess::Blocked;
    let Some(rig) = MigrationRig::start(spec).await else {
        return;
    };
    let (finished, emails) = rig.run(&rig.payload(options(json!({}))), RUN_LIMIT).await;
    assert_one_failure_email(
        &finished,
        &emails,
        "CaughtSgAutofix",
        "SgAutofix",
        "Aws.NotFound",
    );
    assert_eq!(events(&emails), ["started", "failed"]);
    assert!(
        emails[1].message.contains("no security group found"),
        "{}",
        emails[1].message
    );
}

/// One blocked source, several executions: a failing outcome email, a Lambda answering outside the
/// contract, and a failure email that itself fails.
#[tokio::test]
async fn connectivity_failures_of_the_machine_itself_are_caught() {
    let mut spec = RigSpec::new("sfn_conn_group", "full-load");
    spec.source = SourceAccess::Blocked;
    let Some(rig) = MigrationRig::start(spec).await else {
        return;
    };
    let input = rig.payload(options(json!({"autoFixSecurityGroup": false})));
    let denied = Fault::Fail {
        error_type: "Aws.AccessDenied",
        message: "not authorized to perform: SNS:Publish",
    };

    rig.inject("notify", Some("connectivity-failed"), denied.clone());
    let (finished, emails) = rig.run(&input, RUN_LIMIT).await;
    assert_one_failure_email(
        &finished,
        &emails,
        "CaughtNotifyConnectivityFailed",
        "NotifyConnectivityFailed",
        "Aws.AccessDenied",
    );
    assert_eq!(events(&emails), ["started", "failed"]);

    // The failure email cannot be sent either: the run still ends, in FailedWithoutEmail.
    rig.inject("notify", Some("failed"), denied.clone());
    let (finished, emails) = rig.run(&input, RUN_LIMIT).await;
    assert_eq!(finished.status, "FAILED", "{finished:?}");
    assert_eq!(finished.error.as_deref(), Some("Aws.AccessDenied"));
    assert_eq!(
        finished.entered.last().map(String::as_str),
        Some("FailedWithoutEmail")
    );
    assert_eq!(finished.count_entered("NotifyFailure"), 1);
    assert!(
        finished
            .cause
            .as_deref()
            .is_some_and(|c| c.contains("the failure email could not be sent")),
        "{finished:?}"
    );
    assert_eq!(events(&emails), ["started"]);
    rig.clear_faults();

    rig.inject(
        "connectivity-check",
        None,
        Fault::Rewrite(|state| without("/results/connectivity", "ok", state)),
    );
    let (finished, emails) = rig.run(&input, RUN_LIMIT).await;
    assert_one_failure_email(
        &finished,
        &emails,
        "UnexpectedConnectivityResult",
        "ConnectivityResult",
        "Migration.UnexpectedResult",
    );
    assert_eq!(events(&emails), ["started", "failed"]);
}

#[tokio::test]
async fn a_lambda_timeout_sends_one_failure_email_naming_the_step() {
    let mut spec = RigSpec::new("sfn_timeout", "full-load");
    // The endpoint test takes DMS's 5 s connect timeout; the function is given 2 s.
    spec.source = SourceAccess::Blocked;
    let Some(rig) = MigrationRig::start(spec).await else {
        return;
    };
    rig.inject("connectivity-check", None, Fault::Timeout { seconds: 2 });
    let (finished, emails) = rig.run(&rig.payload(options(json!({}))), RUN_LIMIT).await;
    assert_one_failure_email(
        &finished,
        &emails,
        "CaughtConnectivityCheck",
        "ConnectivityCheck",
        "Sandbox.Timedout",
    );
    assert_eq!(
        finished.failures_of("ConnectivityCheck"),
        ["Sandbox.Timedout"],
        "not retried"
    );
    assert_eq!(events(&emails), ["started", "failed"]);
    assert!(
        emails[1]
            .message
            .contains("Task timed out after 2.00 seconds"),
        "{}",
        emails[1].message
    );
    assert!(
        emails[1].message.contains("hit its timeout"),
        "the fix speaks of the timeout: {}",
        emails[1].message
    );
}

#[tokio::test]
async fn a_blocking_assessment_stops_before_the_task_starts() {
    let mut spec = RigSpec::new("sfn_blocking", "full-load");
    // The target lacks public.customers: the load would fail, so the assessment blocks.
    spec.target_sql = "CREATE TABLE public.orders (id bigint PRIMARY KEY, note text NOT NULL);";
    let Some(rig) = MigrationRig::start(spec).await else {
        return;
    };
    let input = rig.payload(options(json!({})));
    let (finished, emails) = rig.run(&input, RUN_LIMIT).await;
    assert_eq!(finished.status, "FAILED", "{finished:?}");
    assert_eq!(
        finished.error.as_deref(),
        Some("Migration.AssessmentFailed")
    );
    assert_eq!(finished.count_entered("NotifyAssessmentFailed"), 1);
    assert_eq!(finished.count_entered("StartTask"), 0);
    assert_eq!(
        finished.entered.last().map(String::as_str),
        Some("AssessmentFailed")
    );
    assert_eq!(events(&emails), ["started", "assessment-failed"]);
    let body = &emails[1].message;
    assert!(body.contains("target.schema_present"), "{body}");
    assert!(body.contains("public.customers"), "{body}");
    let status = task_status(&rig).await;
    assert_eq!(status, "ready", "nothing was started");

    rig.inject(
        "notify",
        Some("assessment-failed"),
        Fault::Fail {
            error_type: "Aws.AccessDenied",
            message: "not authorized to perform: SNS:Publish",
        },
    );
    let (finished, emails) = rig.run(&input, RUN_LIMIT).await;
    assert_one_failure_email(
        &finished,
        &emails,
        "CaughtNotifyAssessmentFailed",
        "NotifyAssessmentFailed",
        "Aws.AccessDenied",
    );
    assert_eq!(events(&emails), ["started", "failed"]);
}

/// A DMS assessment run polled by the machine: each way its Lambda can fail or answer outside the contract.
#[tokio::test]
async fn assessment_step_failures_are_caught() {
    let mut spec = RigSpec::new("sfn_assess_group", "full-load");
    spec.dms_assessment = true;
    let Some(rig) = MigrationRig::start(spec).await else {
        return;
    };
    let input = rig.payload(options(json!({})));
    let cases: [(Option<&str>, Fault, &str, &str, &str); 4] = [
        (
            Some("start"),
            Fault::Fail {
                error_type: "Aws.AccessDenied",
                message: "not authorized to perform: dms:StartReplicationTaskAssessmentRun",
            },
            "CaughtPremigrationAssessmentStart",
            "PremigrationAssessmentStart",
            "Aws.AccessDenied",
        ),
        (
            Some("poll"),
            Fault::Fail {
                error_type: "Aws.AccessDenied",
                message: "not authorized to perform: dms:DescribeReplicationTaskAssessmentRuns",
            },
            "CaughtPremigrationAssessmentPoll",
            "PremigrationAssessmentPoll",
            "Aws.AccessDenied",
        ),
        (
            Some("start"),
            Fault::Rewrite(|state| without("/results/assessment", "status", state)),
            "UnexpectedAssessmentStatus",
            "AssessmentStatus",
            "Migration.UnexpectedResult",
        ),
        (
            Some("start"),
            Fault::Rewrite(|state| state["results"]["assessment"]["status"] = json!("paused")),
            "UnexpectedAssessmentStatus",
            "AssessmentStatus",
            "Migration.UnexpectedResult",
        ),
    ];
    for (selector, fault, caught, step, error) in cases {
        rig.clear_faults();
        rig.inject("premigration-assessment", selector, fault);
        let (finished, emails) = rig.run(&input, RUN_LIMIT).await;
        assert_one_failure_email(&finished, &emails, caught, step, error);
        assert_eq!(events(&emails), ["started", "failed"], "{caught}");
        assert_eq!(finished.count_entered("StartTask"), 0);
    }
}

#[tokio::test]
async fn a_table_error_during_the_load_fails_naming_the_table() {
    let mut spec = RigSpec::new("sfn_tblerr", "full-load-and-cdc");
    // A row already on the target: DO_NOTHING keeps it, and the copy of orders meets its key.
    spec.target_sql = "CREATE TABLE public.orders (id bigint PRIMARY KEY, note text NOT NULL);
                       CREATE TABLE public.customers (id bigint PRIMARY KEY, name text NOT NULL);
                       INSERT INTO public.orders VALUES (1, 'left over');";
    let Some(rig) = MigrationRig::start(spec).await else {
        return;
    };
    let (finished, emails) = rig.run(&rig.payload(options(json!({}))), RUN_LIMIT).await;
    assert_eq!(finished.status, "FAILED", "{finished:?}");
    assert_eq!(finished.error.as_deref(), Some("Migration.TaskFailed"));
    assert_eq!(finished.count_entered("NotifyTaskFailed"), 1);
    assert_eq!(finished.count_entered("NotifyFailure"), 0);
    assert_eq!(
        finished.entered.last().map(String::as_str),
        Some("TaskFailed")
    );
    let kinds = events(&emails);
    assert_eq!(kinds.first().map(String::as_str), Some("started"));
    assert_eq!(kinds.last().map(String::as_str), Some("task-failed"));
    assert!(kinds.contains(&"task-started".to_string()), "{kinds:?}");
    assert_no_failure_email(&emails);
    let body = &emails.last().expect("an email").message;
    assert!(body.contains("Tables in error: public.orders"), "{body}");
}

#[tokio::test]
async fn a_failing_task_failed_email_is_caught_once() {
    let mut spec = RigSpec::new("sfn_tblerr_mail", "full-load-and-cdc");
    spec.target_sql = "CREATE TABLE public.orders (id bigint PRIMARY KEY, note text NOT NULL);
                       CREATE TABLE public.customers (id bigint PRIMARY KEY, name text NOT NULL);
                       INSERT INTO public.orders VALUES (1, 'left over');";
    let Some(rig) = MigrationRig::start(spec).await else {
        return;
    };
    rig.inject(
        "notify",
        Some("task-failed"),
        Fault::Fail {
            error_type: "Aws.AccessDenied",
            message: "not authorized to perform: SNS:Publish",
        },
    );
    let (finished, emails) = rig.run(&rig.payload(options(json!({}))), RUN_LIMIT).await;
    assert_one_failure_email(
        &finished,
        &emails,
        "CaughtNotifyTaskFailed",
        "NotifyTaskFailed",
        "Aws.AccessDenied",
    );
    assert!(!events(&emails).contains(&"task-failed".to_string()));
}

#[tokio::test]
async fn throttling_within_the_retry_budget_is_retried_and_the_run_succeeds() {
    let Some(rig) = MigrationRig::start(RigSpec::new("sfn_throttle", "full-load")).await else {
        return;
    };
    // The SDK makes 3 attempts per call: 6 throttles fail two start-task invocations.
    rig.dms
        .fault(json!({"operation": "StartReplicationTask", "throttle": 6}))
        .await;
    let (finished, emails) = rig.run(&rig.payload(options(json!({}))), RUN_LIMIT).await;
    assert_eq!(finished.status, "SUCCEEDED", "{finished:?}");
    assert_eq!(
        finished.failures_of("StartTask"),
        ["Aws.Throttled", "Aws.Throttled"]
    );
    assert_eq!(finished.count_entered("StartTask"), 1);
    assert_eq!(
        events(&emails),
        [
            "started",
            "assessment-warnings",
            "task-started",
            "succeeded"
        ]
    );
    assert_eq!(count(&rig.dbs.target_url, "public.orders").await, 30);
}

/// MaxAttempts of the rule retrying `error` on `state`, from the ASL file.
fn max_attempts(state: &str, error: &str) -> usize {
    let text = std::fs::read_to_string(
        integration_tests::lab::workspace_root().join("statemachine.asl.json"),
    )
    .expect("asl");
    let asl: Value = serde_json::from_str(&text).expect("json");
    asl["States"][state]["Retry"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|rule| {
            rule["ErrorEquals"]
                .as_array()
                .is_some_and(|e| e.iter().any(|x| x == error))
        })
        .and_then(|rule| rule["MaxAttempts"].as_u64())
        .map(|n| usize::try_from(n).expect("small"))
        .unwrap_or_else(|| panic!("{state} does not retry {error}"))
}

#[tokio::test]
async fn throttling_past_the_retry_budget_sends_one_failure_email() {
    // Only the waits are shortened in this copy; which errors are retried, and how often, is the file's.
    let shorten = |asl: &mut Value| {
        for state in asl["States"].as_object_mut().expect("States").values_mut() {
            for rule in state
                .get_mut("Retry")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if rule["ErrorEquals"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|x| x == "Aws.Throttled"))
                {
                    rule["IntervalSeconds"] = json!(1);
                    rule["MaxDelaySeconds"] = json!(1);
                }
            }
        }
    };
    let Some(rig) =
        MigrationRig::start_tuned(RigSpec::new("sfn_throttle_out", "full-load"), shorten).await
    else {
        return;
    };
    rig.dms
        .fault(json!({"operation": "StartReplicationTask", "throttle": 1000}))
        .await;
    let (finished, emails) = rig.run(&rig.payload(options(json!({}))), RUN_LIMIT).await;
    assert_one_failure_email(
        &finished,
        &emails,
        "CaughtStartTask",
        "StartTask",
        "Aws.Throttled",
    );
    let failures = finished.failures_of("StartTask");
    assert_eq!(
        failures.len(),
        1 + max_attempts("StartTask", "Aws.Throttled"),
        "{failures:?}"
    );
    assert!(
        failures.iter().all(|e| *e == "Aws.Throttled"),
        "{failures:?}"
    );
    assert_eq!(
        events(&emails),
        ["started", "assessment-warnings", "failed"]
    );
    assert_eq!(task_status(&rig).await, "ready");
}

async fn task_status(rig: &MigrationRig) -> String {
    rig.dms.task_status(&rig.task.task_arn).await
}

#[tokio::test]
async fn a_second_execution_skips_the_assessment_and_resumes_the_task() {
    let Some(rig) = MigrationRig::start(RigSpec::new("sfn_again", "full-load-and-cdc")).await
    else {
        return;
    };
    let input = rig.payload(options(json!({})));
    let (finished, _) = rig.run(&input, RUN_LIMIT).await;
    assert_eq!(finished.status, "SUCCEEDED", "{finished:?}");

    // Stopped during CDC (say, by hand), with writes while it was stopped.
    rig.dms
        .sdk()
        .await
        .stop_replication_task()
        .replication_task_arn(&rig.task.task_arn)
        .send()
        .await
        .expect("StopReplicationTask");
    wait_for("the task to stop", Duration::from_secs(60), || async {
        (task_status(&rig).await == "stopped").then_some(())
    })
    .await;
    sql(
        &rig.dbs.source_url,
        "INSERT INTO public.orders VALUES (9001, 'while stopped')",
    )
    .await;

    let (finished, emails) = rig.run(&input, RUN_LIMIT).await;
    assert_eq!(finished.status, "SUCCEEDED", "{finished:?}");
    assert_eq!(
        finished.entered.last().map(String::as_str),
        Some("ReadyForCutover")
    );
    assert_eq!(finished.count_entered("NotifyAssessmentSkipped"), 1);
    assert_eq!(finished.count_entered("WaitForAssessment"), 0);
    let output = finished.output.expect("output");
    assert_eq!(output["results"]["assessment"]["status"], json!("skipped"));
    assert_eq!(
        output["results"]["startTask"]["action"],
        json!("resume-processing"),
        "{}",
        output["results"]["startTask"]
    );
    let kinds = events(&emails);
    assert_eq!(
        &kinds[..3],
        ["started", "assessment-skipped", "task-started"],
        "{kinds:?}"
    );
    assert_eq!(kinds.last().map(String::as_str), Some("ready-for-cutover"));
    assert_no_failure_email(&emails);
    wait_for(
        "the row written while stopped",
        Duration::from_secs(60),
        || async { (count(&rig.dbs.target_url, "public.orders").await == 31).then_some(()) },
    )
    .await;
}

/// Function, call selector (`event`/`action`), fault, then the state the run must end through, the step its
/// failure email names, and the error.
type Breakage = (
    &'static str,
    Option<&'static str>,
    Fault,
    &'static str,
    &'static str,
    &'static str,
);

/// One running task, several executions on it (each resumes watching it): every later step's failure is
/// caught, and a poll-progress answer outside the contract ends in one failure email, never a loop.
#[tokio::test]
async fn running_task_failures_are_caught() {
    let Some(rig) = MigrationRig::start(RigSpec::new("sfn_late_group", "full-load-and-cdc")).await
    else {
        return;
    };
    let input = rig.payload(options(json!({})));
    let denied = Fault::Fail {
        error_type: "Aws.AccessDenied",
        message: "not authorized to perform: SNS:Publish",
    };
    let cases: [Breakage; 7] = [
        (
            "notify",
            Some("task-started"),
            denied.clone(),
            "CaughtNotifyTaskStarted",
            "NotifyTaskStarted",
            "Aws.AccessDenied",
        ),
        (
            "notify",
            Some("assessment-skipped"),
            denied.clone(),
            "CaughtNotifyAssessmentSkipped",
            "NotifyAssessmentSkipped",
            "Aws.AccessDenied",
        ),
        (
            "poll-progress",
            None,
            Fault::Fail {
                error_type: "Aws.NotFound",
                message: "task not found",
            },
            "CaughtPollProgress",
            "PollProgress",
            "Aws.NotFound",
        ),
        (
            "poll-progress",
            None,
            Fault::Rewrite(|state| without("/results/progress", "phase", state)),
            "UnexpectedProgressPhase",
            "ProgressPhase",
            "Migration.UnexpectedResult",
        ),
        (
            "poll-progress",
            None,
            Fault::Rewrite(|state| state["results"]["progress"]["phase"] = json!("paused")),
            "UnexpectedProgressPhase",
            "ProgressPhase",
            "Migration.UnexpectedResult",
        ),
        (
            "notify",
            Some("full-load-complete"),
            denied.clone(),
            "CaughtNotifyFullLoadComplete",
            "NotifyFullLoadComplete",
            "Aws.AccessDenied",
        ),
        (
            "notify",
            Some("ready-for-cutover"),
            denied.clone(),
            "CaughtNotifyReadyForCutover",
            "NotifyReadyForCutover",
            "Aws.AccessDenied",
        ),
    ];
    for (function, selector, fault, caught, step, error) in cases {
        rig.clear_faults();
        rig.inject(function, selector, fault);
        let (finished, emails) = rig.run(&input, RUN_LIMIT).await;
        assert_one_failure_email(&finished, &emails, caught, step, error);
        assert_eq!(
            finished.count_entered("StartTask"),
            usize::from(caught != "CaughtNotifyAssessmentSkipped"),
            "{caught}"
        );
    }
    assert_eq!(task_status(&rig).await, "running");

    // A failing `task-recovering` email (poll-progress made to answer `recovering`) is caught once.
    rig.clear_faults();
    rig.inject(
        "poll-progress",
        None,
        Fault::Rewrite(|state| state["results"]["progress"]["phase"] = json!("recovering")),
    );
    rig.inject("notify", Some("task-recovering"), denied.clone());
    let (finished, emails) = rig.run(&input, RUN_LIMIT).await;
    assert_one_failure_email(
        &finished,
        &emails,
        "CaughtNotifyTaskRecovering",
        "NotifyTaskRecovering",
        "Aws.AccessDenied",
    );
}

/// DMS stops the running task with `RECOVERABLE_ERROR` (dms-local's fault) and restarts it itself 3 s later:
/// ProgressPhase `recovering` → NotifyTaskRecovering → WaitBeforePoll, one `task-recovering` email, and the
/// run still ends ReadyForCutover.
#[tokio::test]
async fn a_recoverable_error_sends_one_email_and_the_run_continues_to_cutover() {
    let Some(rig) = MigrationRig::start(RigSpec::new("sfn_recover", "full-load-and-cdc")).await
    else {
        return;
    };
    // Six ready polls a second apart leave time to inject the error after the full load.
    let input = rig.payload(options(json!({"readyAfterConsecutivePolls": 6})));
    let inject = async {
        let dms = rig.dms.dms_client().await;
        wait_for("the full load to finish", RUN_LIMIT, || async {
            let task = dms_core::aws::dms::Dms::describe_task(&dms, &rig.task.task_arn)
                .await
                .ok()?;
            (task.status.as_str() == "running"
                && task
                    .stats
                    .is_some_and(|s| s.full_load_finish_epoch_seconds.is_some()))
            .then_some(())
        })
        .await;
        rig.dms
            .fault(json!({"taskArn": rig.task.task_arn,
                          "recoverableError": "Error in replication: the connection to the target was lost",
                          "restartAfterSeconds": 3}))
            .await;
    };
    let ((finished, emails), ()) = tokio::join!(rig.run(&input, RUN_LIMIT), inject);
    assert_eq!(finished.status, "SUCCEEDED", "{finished:?}");
    assert_eq!(
        finished.entered.last().map(String::as_str),
        Some("ReadyForCutover")
    );
    assert_eq!(
        finished.count_entered("NotifyTaskRecovering"),
        1,
        "{:?}",
        finished.entered
    );
    let events = events(&emails);
    assert_eq!(
        events.iter().filter(|e| *e == "task-recovering").count(),
        1,
        "{events:?}"
    );
    assert_eq!(events.last().map(String::as_str), Some("ready-for-cutover"));
    assert!(
        !events.iter().any(|e| e == "failed" || e == "task-failed"),
        "{events:?}"
    );
}

#[tokio::test]
async fn max_polls_three_ends_monitoring_with_one_email() {
    // poll-progress spreads the 3 polls over maxMonitorHours (≥ 1 h); this copy waits 1 s instead.
    let one_second = |asl: &mut Value| {
        let wait = &mut asl["States"]["WaitBeforePoll"];
        wait.as_object_mut().expect("a Wait").remove("SecondsPath");
        wait["Seconds"] = json!(1);
    };
    let Some(rig) = MigrationRig::start_tuned(
        RigSpec::new("sfn_maxpolls", "full-load-and-cdc"),
        one_second,
    )
    .await
    else {
        return;
    };
    // The load never finishes.
    rig.dms
        .fault(json!({"taskArn": rig.task.task_arn, "pauseTableSync": true}))
        .await;
    let input = rig.payload(options(json!({"maxPolls": 3})));
    let (finished, emails) = rig.run(&input, RUN_LIMIT).await;
    assert_eq!(finished.status, "FAILED", "{finished:?}");
    assert_eq!(finished.error.as_deref(), Some("Migration.MonitoringEnded"));
    assert_eq!(finished.count_entered("PollProgress"), 3);
    assert_eq!(finished.count_entered("NotifyMonitoringEnded"), 1);
    assert_eq!(
        finished.entered.last().map(String::as_str),
        Some("MonitoringEnded")
    );
    assert_eq!(
        events(&emails),
        [
            "started",
            "assessment-warnings",
            "task-started",
            "monitoring-ended"
        ]
    );
    assert!(
        emails[3].message.contains("maxPolls"),
        "{}",
        emails[3].message
    );

    // Watching again (the task keeps loading) with a failing outcome email.
    rig.inject(
        "notify",
        Some("monitoring-ended"),
        Fault::Fail {
            error_type: "Aws.AccessDenied",
            message: "not authorized to perform: SNS:Publish",
        },
    );
    let (finished, emails) = rig.run(&input, RUN_LIMIT).await;
    assert_one_failure_email(
        &finished,
        &emails,
        "CaughtNotifyMonitoringEnded",
        "NotifyMonitoringEnded",
        "Aws.AccessDenied",
    );
    assert_eq!(finished.count_entered("PollProgress"), 3);
}

const PLACEHOLDERS: [&str; 6] = [
    "NotifyFunctionArn",
    "ConnectivityCheckFunctionArn",
    "SgAutofixFunctionArn",
    "PremigrationAssessmentFunctionArn",
    "StartTaskFunctionArn",
    "PollProgressFunctionArn",
];

fn bad_payload_base() -> Value {
    json!({
        "replicationInstanceArn": "arn:aws:dms:us-east-1:123456789012:rep:SFNINSTANCE",
        "sourceEndpointArn": "arn:aws:dms:us-east-1:123456789012:endpoint:SFNSOURCE",
        "targetEndpointArn": "arn:aws:dms:us-east-1:123456789012:endpoint:SFNTARGET",
        "replicationTaskArn": "arn:aws:dms:us-east-1:123456789012:task:SFNTASK",
        "sourceEndpointHost": "127.0.0.1",
        "sourcePort": 5432
    })
}

#[tokio::test]
async fn a_bad_payload_fails_at_the_first_step_with_one_email_naming_the_field() {
    let Some(lab) = Lab::get().await else { return };
    let config = lab.aws_config().await;
    let topic = TopicWithQueue::create(&config, "sfn-bad-payload").await;
    let mut env = lab.aws_env();
    env.push(("TOPIC_ARN".into(), topic.topic_arn.clone()));
    let notify = LocalLambda::start(
        &std::path::PathBuf::from(lab.var("CARGO_LAMBDA")),
        "notify",
        &binary("notify"),
        &env,
    )
    .await;
    route(&lab, "sfn-bad-payload-notify", &notify).await;
    // Only notify runs on this path; the other Tasks point at names nobody registered.
    let substitutions: Vec<(&str, String)> = PLACEHOLDERS
        .iter()
        .map(|p| {
            (
                *p,
                function_arn(
                    &lab,
                    if *p == "NotifyFunctionArn" {
                        "sfn-bad-payload-notify"
                    } else {
                        "not-expected-to-run"
                    },
                ),
            )
        })
        .collect();
    let machine = LocalStateMachine::create(&lab, "sfn-bad-payload", &substitutions, |_| {}).await;

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "missing",
            {
                let mut p = bad_payload_base();
                p.as_object_mut().unwrap().remove("replicationTaskArn");
                p
            },
            "`replicationTaskArn`: received nothing",
        ),
        (
            "extra",
            {
                let mut p = bad_payload_base();
                p["sourcePasword"] = json!("x");
                p
            },
            "`sourcePasword`: unknown field",
        ),
        (
            "port",
            {
                let mut p = bad_payload_base();
                p["sourcePort"] = json!("port 5432");
                p
            },
            "`sourcePort`",
        ),
        (
            "arn",
            {
                let mut p = bad_payload_base();
                p["targetEndpointArn"] = json!("arn:aws:dms:us-east-1:123456789012:task:X");
                p
            },
            "`targetEndpointArn`",
        ),
        (
            "option",
            {
                let mut p = bad_payload_base();
                p["options"] = json!({"maxPolls": 0});
                p
            },
            "`options.maxPolls`",
        ),
    ];
    for (name, input, needle) in cases {
        let execution = machine.start(&format!("bad-{name}"), &input).await;
        let finished = machine.wait(&execution, Duration::from_secs(60)).await;
        assert_eq!(finished.status, "FAILED", "{name}: {finished:?}");
        assert_eq!(
            finished.error.as_deref(),
            Some("Payload.Invalid"),
            "{name}: {finished:?}"
        );
        assert_eq!(
            finished.entered.first().map(String::as_str),
            Some("NotifyStarted"),
            "{name}: {:?}",
            finished.entered
        );
        assert_eq!(
            finished.count_entered("CaughtNotifyStarted"),
            1,
            "{name}: {:?}",
            finished.entered
        );
        assert_eq!(
            finished.count_entered("NotifyFailure"),
            1,
            "{name}: {:?}",
            finished.entered
        );
        assert!(
            !finished.entered.iter().any(|s| s == "ConnectivityCheck"),
            "{name}: {:?}",
            finished.entered
        );
        assert!(
            finished.events.iter().any(|e| e == "LambdaFunctionFailed"),
            "{name}"
        );

        let emails = topic.receive(2, Duration::from_secs(3)).await;
        assert_eq!(emails.len(), 1, "{name}: exactly one email: {emails:?}");
        assert_eq!(emails[0].attributes["event"]["Value"], json!("failed"));
        assert!(
            emails[0].message.contains(needle),
            "{name}: {}",
            emails[0].message
        );
        assert!(
            emails[0].subject.contains("Payload.Invalid"),
            "{name}: {}",
            emails[0].subject
        );
    }
}

/// The ASL's Retry blocks and dms-core's error names agree: what core says is retried is retried on every
/// Lambda Task, and nothing else of dms-core's is.
#[test]
fn retry_policy_matches_the_error_names_in_core() {
    use dms_core::ErrorName;
    let text = std::fs::read_to_string(
        integration_tests::lab::workspace_root().join("statemachine.asl.json"),
    )
    .expect("asl");
    let asl: Value = serde_json::from_str(&text).expect("json");
    let states = asl["States"].as_object().expect("States");
    let mut tasks = 0;
    for (name, state) in states {
        if state["Type"] != "Task" {
            continue;
        }
        tasks += 1;
        let retried: Vec<String> = state["Retry"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|rule| rule["ErrorEquals"].as_array().into_iter().flatten())
            .filter_map(|error| error.as_str().map(str::to_string))
            .collect();
        let is_retried = |error: &str| retried.iter().any(|r| r == error);
        for error in ErrorName::ALL {
            assert_eq!(
                is_retried(error.as_str()),
                error.is_retried(),
                "{name}: {error} retried in the ASL = {}, in core = {}",
                is_retried(error.as_str()),
                error.is_retried()
            );
        }
        assert!(
            !is_retried("States.ALL"),
            "{name} must not retry everything"
        );
        let catches_all = state["Catch"].as_array().is_some_and(|c| {
            c.iter().any(|r| {
                r["ErrorEquals"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|x| x == "States.ALL"))
            })
        });
        assert!(catches_all, "{name} has no Catch of States.ALL");
    }
    assert!(tasks >= 7, "found only {tasks} Task states");
}

/// A textual guard for the header's lists: every state a Choice can branch to and every Catch's Pass state
/// is named (quoted, as in an assertion) somewhere in this file, so a state added to the ASL without a test
/// fails here.
#[test]
fn every_branch_and_catch_is_named_in_an_assertion() {
    let text = std::fs::read_to_string(
        integration_tests::lab::workspace_root().join("statemachine.asl.json"),
    )
    .expect("asl");
    let asl: Value = serde_json::from_str(&text).expect("json");
    let this_file = include_str!("state_machine.rs");
    let mut targets = Vec::new();
    for state in asl["States"].as_object().expect("States").values() {
        for choice in state["Choices"].as_array().into_iter().flatten() {
            targets.extend(choice["Next"].as_str());
        }
        targets.extend(state["Default"].as_str());
        for catch in state["Catch"].as_array().into_iter().flatten() {
            targets.extend(catch["Next"].as_str());
        }
    }
    assert!(targets.len() > 30, "{targets:?}");
    let missing: Vec<&str> = targets
        .into_iter()
        .filter(|name| !this_file.contains(&format!("\"{name}\"")))
        .collect();
    assert!(missing.is_empty(), "no test asserts on {missing:?}");
}
