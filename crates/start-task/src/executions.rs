//! Other executions of this state machine watching the same task. Two executions driving one task would
//! start it twice and send two sets of emails, so start-task refuses when another one is running.

use std::future::Future;

use aws_sdk_sfn::types::ExecutionStatus;
use dms_core::errors::{classify_sdk_error, StepError};
use serde_json::Value;

/// IAM actions of the adapter (the stack's policy is derived from these strings).
const LIST_EXECUTIONS_ACTION: &str = "states:ListExecutions";
const DESCRIBE_EXECUTION_ACTION: &str = "states:DescribeExecution";
/// 100 per page (the API maximum) × 50 pages: far more running executions than one stack ever has.
const MAX_PAGES: usize = 50;

pub trait Executions {
    /// ARNs of the RUNNING executions, other than `own_execution`, whose input names `task_arn`.
    fn others_running_for_task(
        &self,
        task_arn: &str,
        own_execution: &str,
    ) -> impl Future<Output = Result<Vec<String>, StepError>> + Send;
}

pub struct SfnExecutions {
    client: aws_sdk_sfn::Client,
    /// None when the Lambda runs without `STATE_MACHINE_ARN` (outside the stack): the check is skipped.
    state_machine_arn: Option<String>,
}

impl SfnExecutions {
    pub fn new(client: aws_sdk_sfn::Client, state_machine_arn: Option<String>) -> Self {
        if state_machine_arn.is_none() {
            tracing::warn!("STATE_MACHINE_ARN is not set: the check for another running execution of the same task is skipped");
        }
        SfnExecutions {
            client,
            state_machine_arn,
        }
    }

    async fn running(&self, state_machine_arn: &str) -> Result<Vec<String>, StepError> {
        let mut arns = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let out = self
                .client
                .list_executions()
                .state_machine_arn(state_machine_arn)
                .status_filter(ExecutionStatus::Running)
                .max_results(100)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| classify_sdk_error(LIST_EXECUTIONS_ACTION, state_machine_arn, &e))?;
            arns.extend(
                out.executions()
                    .iter()
                    .map(|e| e.execution_arn().to_string()),
            );
            token = out
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        Ok(arns)
    }
}

/// The task ARN an execution's input names (the pasted payload, or a state handed on from a previous run).
pub fn input_task_arn(input: &str) -> Option<String> {
    serde_json::from_str::<Value>(input)
        .ok()?
        .get("replicationTaskArn")?
        .as_str()
        .map(|s| s.trim().to_string())
}

impl Executions for SfnExecutions {
    async fn others_running_for_task(
        &self,
        task_arn: &str,
        own_execution: &str,
    ) -> Result<Vec<String>, StepError> {
        let Some(state_machine_arn) = self.state_machine_arn.as_deref() else {
            tracing::info!("STATE_MACHINE_ARN is not set: not checking for other executions");
            return Ok(Vec::new());
        };
        let mut others = Vec::new();
        for execution_arn in self.running(state_machine_arn).await? {
            if execution_arn == own_execution {
                continue;
            }
            let out = self
                .client
                .describe_execution()
                .execution_arn(&execution_arn)
                .send()
                .await
                .map_err(|e| classify_sdk_error(DESCRIBE_EXECUTION_ACTION, &execution_arn, &e))?;
            if out.input().and_then(input_task_arn).as_deref() == Some(task_arn) {
                others.push(execution_arn);
            }
        }
        Ok(others)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_task_arn_is_read_from_the_input() {
        assert_eq!(
            input_task_arn(r#"{"replicationTaskArn": " arn:aws:dms:us-east-1:1:task:A ", "x": 1}"#),
            Some("arn:aws:dms:us-east-1:1:task:A".to_string())
        );
        assert_eq!(input_task_arn("not json"), None);
        assert_eq!(input_task_arn(r#"{"replicationTaskArn": 5}"#), None);
    }
}
