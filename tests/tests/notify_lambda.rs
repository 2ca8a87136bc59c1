//! The built `notify` binary, served through `cargo lambda watch`, publishing to moto SNS; the emails are
//! read back through an SQS queue subscribed to the topic.

use std::path::PathBuf;
use std::time::Duration;

use dms_core::aws::notifier::{Notification, Notifier, SnsNotifier};
use dms_core::{ErrorName, Event};
use integration_tests::lab::{binary, Lab};
use integration_tests::lambda::LocalLambda;
use integration_tests::sns::TopicWithQueue;
use serde_json::{json, Value};

const EXEC: &str = "arn:aws:states:us-east-1:123456789012:execution:lab-migration:notify-test";

fn payload() -> Value {
    json!({
        "replicationInstanceArn": "arn:aws:dms:us-east-1:123456789012:rep:LABINSTANCE",
        "sourceEndpointArn": "arn:aws:dms:us-east-1:123456789012:endpoint:LABSOURCE",
        "targetEndpointArn": "arn:aws:dms:us-east-1:123456789012:endpoint:LABTARGET",
        "replicationTaskArn": "arn:aws:dms:us-east-1:123456789012:task:LABTASK",
        "sourceEndpointHost": "127.0.0.1",
        "sourcePort": " 5432 ",
        "options": {"pollIntervalSeconds": 2}
    })
}

/// The stack's way-back task, as the template passes it (`WAY_BACK_TASK_ARN`, empty without the way back).
const WAY_BACK: &str = "arn:aws:dms:us-east-1:123456789012:task:LABWAYBACK";

async fn notify_lambda(lab: &Lab, topic_arn: &str) -> LocalLambda {
    notify_lambda_with_way_back(lab, topic_arn, WAY_BACK).await
}

async fn notify_lambda_with_way_back(lab: &Lab, topic_arn: &str, way_back: &str) -> LocalLambda {
    let mut env = lab.aws_env();
    env.push(("TOPIC_ARN".into(), topic_arn.into()));
    env.push(("WAY_BACK_TASK_ARN".into(), way_back.into()));
    LocalLambda::start(
        &PathBuf::from(lab.var("CARGO_LAMBDA")),
        "notify",
        &binary("notify"),
        &env,
    )
    .await
}

#[tokio::test]
async fn started_validates_normalises_and_emails_through_sns() {
    let Some(lab) = Lab::get().await else { return };
    let config = lab.aws_config().await;
    let topic = TopicWithQueue::create(&config, "notify-started").await;
    let lambda = notify_lambda(&lab, &topic.topic_arn).await;

    let state = lambda
        .invoke(&json!({"event": "started", "executionId": EXEC, "state": payload()}))
        .await
        .expect("valid input is accepted");
    assert_eq!(
        state["sourcePort"],
        json!(5432),
        "the string port is normalised"
    );
    assert_eq!(state["options"]["pollIntervalSeconds"], json!(2));
    assert_eq!(
        state["options"]["maxPolls"],
        json!(2500),
        "defaults are filled in"
    );
    assert_eq!(state["monitor"]["nextPollSeconds"], json!(2));
    assert_eq!(state["context"]["taskId"], json!("LABTASK"));

    let emails = topic.receive(1, Duration::from_secs(10)).await;
    assert_eq!(emails.len(), 1, "exactly one email for `started`");
    let email = &emails[0];
    assert!(
        email.subject.contains("LABTASK") && email.subject.contains("Migration started"),
        "{}",
        email.subject
    );
    assert!(email.subject.len() < 100);
    assert!(email.message.contains(EXEC), "{}", email.message);
    assert_eq!(email.attributes["event"]["Value"], json!("started"));
    assert_eq!(email.attributes["executionId"]["Value"], json!(EXEC));

    // A later event gets the normalised state back and hands it through unchanged.
    let mut later = state.clone();
    later["results"] = json!({"startTask": {"action": "start-replication", "reason": "the task has never run", "statusBefore": "ready"}});
    let out = lambda
        .invoke(&json!({"event": "task-started", "executionId": EXEC, "state": later}))
        .await
        .expect("task-started");
    assert_eq!(out, later);
    let emails = topic.receive(1, Duration::from_secs(10)).await;
    assert_eq!(emails.len(), 1);
    assert!(
        emails[0].subject.contains("Replication task started"),
        "{}",
        emails[0].subject
    );
    assert!(
        emails[0].message.contains("the task has never run"),
        "{}",
        emails[0].message
    );
}

#[tokio::test]
async fn invalid_input_is_payload_invalid_and_the_failure_email_names_the_field() {
    let Some(lab) = Lab::get().await else { return };
    let config = lab.aws_config().await;
    let topic = TopicWithQueue::create(&config, "notify-invalid").await;
    let lambda = notify_lambda(&lab, &topic.topic_arn).await;

    let mut raw = payload();
    raw["sourcePort"] = json!(70000);
    raw["sourcePassword"] = json!("hunter2");
    let err = lambda
        .invoke(&json!({"event": "started", "executionId": EXEC, "state": raw.clone()}))
        .await
        .expect_err("invalid input is refused");
    assert_eq!(err.error_type, "Payload.Invalid");
    assert!(
        err.error_message.contains("`sourcePort`: received 70000"),
        "{}",
        err.error_message
    );
    assert!(
        err.error_message
            .contains("`sourcePassword`: unknown field"),
        "{}",
        err.error_message
    );
    assert!(
        !err.error_message.contains("hunter2"),
        "{}",
        err.error_message
    );

    // What the state machine does next: the Catch records the error, a Pass adds the step, notify `failed`.
    let cause = json!({"errorType": err.error_type, "errorMessage": err.error_message}).to_string();
    raw["error"] = json!({"Error": "Payload.Invalid", "Cause": cause, "step": "NotifyStarted"});
    lambda
        .invoke(&json!({"event": "failed", "executionId": EXEC, "state": raw}))
        .await
        .expect("failed email is sent");

    let emails = topic.receive(2, Duration::from_secs(5)).await;
    assert_eq!(
        emails.len(),
        1,
        "no email for the refused input, one for the failure: {emails:?}"
    );
    let email = &emails[0];
    assert_eq!(email.attributes["event"]["Value"], json!("failed"));
    assert!(
        email
            .subject
            .contains("FAILED at NotifyStarted: Payload.Invalid"),
        "{}",
        email.subject
    );
    assert!(
        email.message.contains("`sourcePort`: received 70000"),
        "{}",
        email.message
    );
    assert!(
        email.message.contains("StepFunctionsPayloadTemplate"),
        "{}",
        email.message
    );
    assert!(!email.message.contains("hunter2"), "{}", email.message);
}

/// The ready-for-cutover email's command arms the stack's way back when the stack created it (the
/// variable set), and leaves it out with `--no-fallback` when the stack was deployed without it (empty).
#[tokio::test]
async fn the_ready_for_cutover_email_names_the_way_back_the_stack_passes() {
    let Some(lab) = Lab::get().await else { return };
    let config = lab.aws_config().await;
    for (way_back, expected, absent) in [
        (
            WAY_BACK,
            format!("--freeze --way-back-task-arn {WAY_BACK}"),
            "--no-fallback",
        ),
        (
            "",
            "--freeze --no-fallback".to_string(),
            "--way-back-task-arn",
        ),
    ] {
        let topic = TopicWithQueue::create(&config, "notify-way-back").await;
        let lambda = notify_lambda_with_way_back(&lab, &topic.topic_arn, way_back).await;
        lambda
            .invoke(&json!({"event": "ready-for-cutover", "executionId": EXEC, "state": payload()}))
            .await
            .expect("sent");
        let emails = topic.receive(1, Duration::from_secs(10)).await;
        assert_eq!(emails.len(), 1);
        let body = &emails[0].message;
        assert!(
            body.contains(
                "dms-migrate cutover --task-arn arn:aws:dms:us-east-1:123456789012:task:LABTASK"
            ) && body.contains(&expected),
            "{body}"
        );
        assert!(!body.contains(absent), "{body}");
    }
}

#[tokio::test]
async fn a_secret_in_the_cause_never_reaches_the_email() {
    let Some(lab) = Lab::get().await else { return };
    let config = lab.aws_config().await;
    let topic = TopicWithQueue::create(&config, "notify-secret").await;
    let lambda = notify_lambda(&lab, &topic.topic_arn).await;
    let mut state = payload();
    let cause = json!({"errorType": "Postgres.AuthFailed",
        "errorMessage": "connect to postgres://migrator:S3cr3t-pw@db.internal:5432/app failed; secret {\"password\":\"S3cr3t-pw\"}"}).to_string();
    state["error"] = json!({"Error": "Postgres.AuthFailed", "Cause": cause, "step": "PremigrationAssessmentStart"});
    lambda
        .invoke(&json!({"event": "failed", "executionId": EXEC, "state": state}))
        .await
        .expect("sent");
    let emails = topic.receive(1, Duration::from_secs(10)).await;
    assert_eq!(emails.len(), 1);
    assert!(
        !emails[0].message.contains("S3cr3t-pw"),
        "{}",
        emails[0].message
    );
    assert!(
        emails[0]
            .message
            .contains("postgres://migrator:***@db.internal"),
        "{}",
        emails[0].message
    );
}

#[tokio::test]
async fn moto_error_shapes_are_classified() {
    let Some(lab) = Lab::get().await else { return };
    let config = lab.aws_config().await;
    let missing = "arn:aws:sns:us-east-1:123456789012:no-such-topic";
    let notifier = SnsNotifier::new(aws_sdk_sns::Client::new(&config), missing.to_string());
    let err = notifier
        .publish(&Notification {
            event: Event::Started,
            execution_id: "x".into(),
            subject: "s".into(),
            body: "b".into(),
        })
        .await
        .expect_err("publishing to a missing topic fails");
    assert_eq!(err.name, ErrorName::AwsNotFound, "{}", err.message);
    assert!(
        err.message.contains("sns:Publish") && err.message.contains(missing),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn a_missing_topic_env_is_a_named_configuration_error_at_cold_start() {
    let Some(lab) = Lab::get().await else { return };
    let output = tokio::process::Command::new(binary("notify"))
        .env_clear()
        .envs(lab.aws_env())
        .env("AWS_LAMBDA_RUNTIME_API", "http://127.0.0.1:9/.rt/notify")
        .output()
        .await
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("TOPIC_ARN"), "{stderr}");
}
