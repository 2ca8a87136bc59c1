//! The real `statemachine.asl.json` executed by moto's Step Functions interpreter. Task resources become
//! Lambda ARNs whose names the lab's router (scripts/sfn_router.py) forwards to the built binaries.

use std::time::{Duration, Instant};

use aws_sdk_sfn::types::{ExecutionStatus, HistoryEventType};
use serde_json::Value;

use crate::lab::{workspace_root, Lab};
use crate::lambda::LocalLambda;

pub const ACCOUNT: &str = "123456789012";

pub struct LocalStateMachine {
    pub arn: String,
    sfn: aws_sdk_sfn::Client,
}

#[derive(Debug)]
pub struct Finished {
    pub status: String,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// The states entered, in order (TaskStateEntered, ChoiceStateEntered, ... names).
    pub entered: Vec<String>,
    /// Every history event type, in order (e.g. `LambdaFunctionFailed`).
    pub events: Vec<String>,
    /// Each failed Lambda call (retried or not): the state it belonged to and the error name.
    pub lambda_failures: Vec<(String, String)>,
}

impl Finished {
    pub fn count_entered(&self, state: &str) -> usize {
        self.entered.iter().filter(|s| *s == state).count()
    }

    /// The failed Lambda calls of `state` (a Retry makes several), by error name.
    pub fn failures_of(&self, state: &str) -> Vec<&str> {
        self.lambda_failures
            .iter()
            .filter(|(s, _)| s == state)
            .map(|(_, e)| e.as_str())
            .collect()
    }
}

/// Makes `lambda` reachable from moto's interpreter as the function `alias` (unique per test: cargo lambda
/// only serves functions named like a binary of the workspace, so the alias lives in the router).
pub async fn route(lab: &Lab, alias: &str, lambda: &LocalLambda) {
    route_url(lab, alias, &lambda.invoke_url()).await;
}

/// As `route`, to any Invoke API URL (e.g. a test's proxy in front of a function).
pub async fn route_url(lab: &Lab, alias: &str, invoke_url: &str) {
    let body = serde_json::json!({"name": alias, "invokeUrl": invoke_url});
    reqwest::Client::new()
        .post(format!(
            "{}/_router/functions",
            lab.var("LAMBDA_ROUTER_URL")
        ))
        .json(&body)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("the lab's Lambda router registers the function");
}

pub fn function_arn(lab: &Lab, name: &str) -> String {
    format!(
        "arn:aws:lambda:{}:{ACCOUNT}:function:{name}",
        lab.var("AWS_REGION")
    )
}

impl LocalStateMachine {
    /// Creates the machine from the real ASL file; `substitutions` maps `${Name}` placeholders to values
    /// (usually function ARNs), `tune` may rewrite the definition (e.g. shorter retry intervals).
    pub async fn create(
        lab: &Lab,
        name: &str,
        substitutions: &[(&str, String)],
        tune: impl FnOnce(&mut Value),
    ) -> Self {
        reqwest::Client::new()
            .post(format!("{}/moto-api/config", lab.var("MOTO_URL")))
            .json(&serde_json::json!({"stepfunctions": {"execute_state_machine": true}}))
            .send()
            .await
            .expect("moto config");
        let mut text = std::fs::read_to_string(workspace_root().join("statemachine.asl.json"))
            .expect("statemachine.asl.json");
        for (key, value) in substitutions {
            text = text.replace(&format!("${{{key}}}"), value);
        }
        assert!(!text.contains("${"), "a placeholder was left unsubstituted");
        let mut definition: Value = serde_json::from_str(&text).expect("ASL is JSON");
        tune(&mut definition);
        let sfn = aws_sdk_sfn::Client::new(&lab.aws_config().await);
        // moto keeps state between runs: a name of its own per run.
        let name = crate::unique_name(name);
        let arn = sfn
            .create_state_machine()
            .name(&name)
            .definition(definition.to_string())
            .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/{name}-role"))
            .send()
            .await
            .expect("create state machine")
            .state_machine_arn;
        LocalStateMachine { arn, sfn }
    }

    pub async fn start(&self, name: &str, input: &Value) -> String {
        self.sfn
            .start_execution()
            .state_machine_arn(&self.arn)
            .name(crate::unique_name(name))
            .input(input.to_string())
            .send()
            .await
            .expect("start execution")
            .execution_arn
    }

    /// Waits (bounded) until the execution leaves RUNNING, then reads its history.
    pub async fn wait(&self, execution_arn: &str, timeout: Duration) -> Finished {
        let start = Instant::now();
        let description = loop {
            let d = self
                .sfn
                .describe_execution()
                .execution_arn(execution_arn)
                .send()
                .await
                .expect("describe execution");
            if d.status != ExecutionStatus::Running {
                break d;
            }
            assert!(
                start.elapsed() < timeout,
                "execution still running after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let mut entered = Vec::new();
        let mut events = Vec::new();
        let mut lambda_failures = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..100 {
            let page = self
                .sfn
                .get_execution_history()
                .execution_arn(execution_arn)
                .set_next_token(token.clone())
                .max_results(1000)
                .send()
                .await
                .expect("history");
            for event in page.events() {
                events.push(event.r#type().as_str().to_string());
                let is_entered = matches!(
                    event.r#type(),
                    HistoryEventType::TaskStateEntered
                        | HistoryEventType::ChoiceStateEntered
                        | HistoryEventType::PassStateEntered
                        | HistoryEventType::WaitStateEntered
                        | HistoryEventType::FailStateEntered
                        | HistoryEventType::SucceedStateEntered
                );
                if let (true, Some(details)) = (is_entered, event.state_entered_event_details()) {
                    entered.push(details.name().to_string());
                }
                if let Some(failure) = event.lambda_function_failed_event_details() {
                    lambda_failures.push((
                        entered.last().cloned().unwrap_or_default(),
                        failure.error().unwrap_or_default().to_string(),
                    ));
                }
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        Finished {
            status: description.status.as_str().to_string(),
            output: description
                .output()
                .and_then(|o| serde_json::from_str(o).ok()),
            error: description.error().map(str::to_string),
            cause: description.cause().map(str::to_string),
            entered,
            events,
            lambda_failures,
        }
    }
}
