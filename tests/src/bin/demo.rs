//! `make demo`: the workflow against the lab, as far as the project has built it. Today that is the
//! machine's first step for real — the built `notify` Lambda validating the payload the stack would
//! output, publishing to SNS in moto — and the failure path for a mistyped payload, with every email
//! printed as it arrives. The later steps join as their Lambdas land (see README).

use std::path::PathBuf;
use std::time::Duration;

use integration_tests::lab::{binary, Lab};
use integration_tests::lambda::LocalLambda;
use integration_tests::sns::{Delivered, TopicWithQueue};
use serde_json::{json, Value};

fn print_email(email: &Delivered) {
    println!("---------------------------------------------------------------- email");
    println!("Subject: {}", email.subject);
    println!(
        "Attributes: event={} executionId={}",
        email.attributes["event"]["Value"], email.attributes["executionId"]["Value"]
    );
    println!();
    println!("{}", email.message.trim_end());
    println!("----------------------------------------------------------------------");
}

#[tokio::main]
async fn main() {
    let Some(lab) = Lab::get().await else {
        eprintln!("demo: the lab is not running; `make demo` starts it");
        std::process::exit(2);
    };
    let config = lab.aws_config().await;
    let topic = TopicWithQueue::create(&config, "demo-migration-notifications").await;
    let mut env = lab.aws_env();
    env.push(("TOPIC_ARN".into(), topic.topic_arn.clone()));
    let notify = LocalLambda::start(
        &PathBuf::from(lab.var("CARGO_LAMBDA")),
        "notify",
        &binary("notify"),
        &env,
    )
    .await;

    let payload = json!({
        "replicationInstanceArn": "arn:aws:dms:us-east-1:123456789012:rep:DEMOINSTANCE",
        "sourceEndpointArn": "arn:aws:dms:us-east-1:123456789012:endpoint:DEMOSOURCE",
        "targetEndpointArn": "arn:aws:dms:us-east-1:123456789012:endpoint:DEMOTARGET",
        "replicationTaskArn": "arn:aws:dms:us-east-1:123456789012:task:DEMOTASK",
        "sourceEndpointHost": "127.0.0.1",
        "sourcePort": lab.var("SOURCE_PORT"),
    });
    let execution = "arn:aws:states:us-east-1:123456789012:execution:demo-migration:demo-1";

    println!(
        "1. The payload the stack outputs goes to notify `started` (the machine's first Task)."
    );
    let state: Value = match notify
        .invoke(&json!({"event": "started", "executionId": execution, "state": payload}))
        .await
    {
        Ok(state) => state,
        Err(e) => {
            eprintln!(
                "demo: notify refused the payload: {}: {}",
                e.error_type, e.error_message
            );
            std::process::exit(1);
        }
    };
    println!(
        "   Normalised state (every option default filled in):\n{}",
        serde_json::to_string_pretty(&state).unwrap_or_default()
    );
    for email in topic.receive(1, Duration::from_secs(10)).await {
        print_email(&email);
    }

    println!("\n2. The same payload pasted with a typo and a bad port: refused with Payload.Invalid, then one failure email.");
    let mut typo = payload_with_typo(&state);
    let refusal = notify
        .invoke(&json!({"event": "started", "executionId": execution, "state": typo.clone()}))
        .await
        .expect_err("a mistyped payload is refused");
    println!(
        "   errorType: {}\n   errorMessage: {}",
        refusal.error_type, refusal.error_message
    );
    let cause =
        json!({"errorType": refusal.error_type, "errorMessage": refusal.error_message}).to_string();
    typo["error"] = json!({"Error": refusal.error_type, "Cause": cause, "step": "NotifyStarted"});
    if let Err(e) = notify
        .invoke(&json!({"event": "failed", "executionId": execution, "state": typo}))
        .await
    {
        eprintln!(
            "demo: the failure email could not be sent: {}: {}",
            e.error_type, e.error_message
        );
        std::process::exit(1);
    }
    let emails = topic.receive(1, Duration::from_secs(10)).await;
    for email in &emails {
        print_email(email);
    }
    if emails.len() != 1 {
        eprintln!(
            "demo: expected exactly one failure email, got {}",
            emails.len()
        );
        std::process::exit(1);
    }
    println!("\nDemo finished: the payload was validated and normalised, and both emails arrived through SNS.");
    println!("Next in the real deployment: `make build`, `make package ARTIFACT_BUCKET=...`, upload packaged.yaml in the CloudFormation console.");
}

fn payload_with_typo(state: &Value) -> Value {
    json!({
        "replicationInstanceArn": state["replicationInstanceArn"],
        "sourceEndpointArn": state["sourceEndpointArn"],
        "targetEndpointArn": state["targetEndpointArn"],
        "replicationTaskArn": state["replicationTaskArn"],
        "sourceEndpointHost": state["sourceEndpointHost"],
        "sourcePort": 70000,
        "options": {"pollIntervalSecs": 30}
    })
}
