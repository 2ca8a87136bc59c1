//! The real statemachine.asl.json in moto's Step Functions interpreter, calling the built Lambda binaries
//! through the lab's router. Each test asserts the path taken (history) and the emails sent.
//!
//! Branches covered so far (the rest arrive with their Lambdas):
//! - NotifyStarted Catch → CaughtNotifyStarted → NotifyFailure → Failed (bad payload, each kind)

use std::path::PathBuf;
use std::time::Duration;

use integration_tests::lab::{binary, Lab};
use integration_tests::lambda::LocalLambda;
use integration_tests::sfn::{function_arn, route, LocalStateMachine};
use integration_tests::sns::TopicWithQueue;
use serde_json::{json, Value};

const PLACEHOLDERS: [&str; 6] = [
    "NotifyFunctionArn",
    "ConnectivityCheckFunctionArn",
    "SgAutofixFunctionArn",
    "PremigrationAssessmentFunctionArn",
    "StartTaskFunctionArn",
    "PollProgressFunctionArn",
];

fn payload() -> Value {
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
        &PathBuf::from(lab.var("CARGO_LAMBDA")),
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
                let mut p = payload();
                p.as_object_mut().unwrap().remove("replicationTaskArn");
                p
            },
            "`replicationTaskArn`: received nothing",
        ),
        (
            "extra",
            {
                let mut p = payload();
                p["sourcePasword"] = json!("x");
                p
            },
            "`sourcePasword`: unknown field",
        ),
        (
            "port",
            {
                let mut p = payload();
                p["sourcePort"] = json!("port 5432");
                p
            },
            "`sourcePort`",
        ),
        (
            "arn",
            {
                let mut p = payload();
                p["targetEndpointArn"] = json!("arn:aws:dms:us-east-1:123456789012:task:X");
                p
            },
            "`targetEndpointArn`",
        ),
        (
            "option",
            {
                let mut p = payload();
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

/// The ASL's Retry blocks and core's error names agree: what core says is retried is retried on every
/// Lambda Task, and nothing else of core's is.
#[test]
fn retry_policy_matches_the_error_names_in_core() {
    use core_lib::ErrorName;
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
