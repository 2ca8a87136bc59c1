//! connectivity-check: runs DMS's own connection test from the replication instance to both endpoints
//! (the only test that sees the instance's network: security groups, routes, DNS in its VPC), waits for
//! the verdicts within the Lambda's remaining time, and classifies each failure with the fix. A failed
//! test is data (`results.connectivity.ok = false`) the state machine routes on, not an error.

use std::time::{Duration, SystemTime};

use core_lib::aws::OPERATION_TIMEOUT;
use core_lib::connectivity::{classify_failure, FailureClass};
use core_lib::dms::{ConnectionInfo, Dms};
use core_lib::envelope::{read_state, write_state};
use core_lib::redact::redact_secrets;
use core_lib::state::{ConnectivityResult, EndpointCheck};
use core_lib::{ExecutionState, StepError};
use serde_json::Value;
use tokio::time::Instant;

/// Between two DescribeConnections rounds. A DMS test takes seconds when the database answers and up
/// to about a minute when the connect times out.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Kept back from the Lambda's deadline for the last DescribeConnections round and the answer: the round
/// makes up to two calls, one per endpoint, and each may take the whole SDK operation timeout (its retried
/// attempts included) before it gives up; 10 s more answer. Past the deadline Lambda ends the invocation
/// with `Sandbox.Timedout`, which the state machine does not retry.
const DEADLINE_MARGIN: Duration =
    Duration::from_secs(2 * OPERATION_TIMEOUT.as_secs() + ANSWER_TIME.as_secs());
/// Building and returning the answer after the last call.
const ANSWER_TIME: Duration = Duration::from_secs(10);

/// Lambda sends the deadline as epoch milliseconds; `cargo lambda watch` (the local emulator the lab
/// tests run the binary under) sends the function timeout itself (`Lambda-Runtime-Deadline-Ms: 600000`).
/// A "deadline" within a day of the epoch can only be such a duration.
const EMULATOR_DEADLINE_LIMIT: Duration = Duration::from_secs(86_400);

/// How long the handler may keep polling: the time left until the deadline minus the margin, and never
/// more than half of what is left (a short local deadline still gets some polling).
pub fn time_budget(deadline: SystemTime, now: SystemTime) -> Duration {
    let since_epoch = deadline
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let left = if since_epoch < EMULATOR_DEADLINE_LIMIT {
        since_epoch
    } else {
        deadline.duration_since(now).unwrap_or_default()
    };
    left.saturating_sub(DEADLINE_MARGIN.min(left / 2))
}

const SUCCESSFUL: &str = "successful";
const FAILED: &str = "failed";
const TESTING: &str = "testing";

/// `successful` and `failed` are verdicts; `testing` (or no record yet) means wait. `deleting` means the
/// endpoint is going away: no verdict will come, so it counts as a failure.
fn is_final(connection: Option<&ConnectionInfo>) -> bool {
    connection.is_some_and(|c| c.status != TESTING)
}

/// Starts both tests, then polls until both have a verdict or the budget is spent.
async fn run_tests<D: Dms>(
    dms: &D,
    instance_arn: &str,
    endpoint_arns: [&str; 2],
    interval: Duration,
    budget: Duration,
) -> Result<[Option<ConnectionInfo>; 2], StepError> {
    let started = Instant::now();
    for endpoint_arn in endpoint_arns {
        dms.test_connection(instance_arn, endpoint_arn).await?;
    }
    let mut connections: [Option<ConnectionInfo>; 2] = [None, None];
    loop {
        for (slot, endpoint_arn) in connections.iter_mut().zip(endpoint_arns) {
            if !is_final(slot.as_ref()) {
                *slot = dms.describe_connection(instance_arn, endpoint_arn).await?;
            }
        }
        if connections.iter().all(|c| is_final(c.as_ref())) {
            return Ok(connections);
        }
        if started.elapsed() + interval >= budget {
            tracing::warn!(waited_ms = %started.elapsed().as_millis(), "connection tests still running at the deadline");
            return Ok(connections);
        }
        tokio::time::sleep(interval).await;
    }
}

fn endpoint_check(
    endpoint_arn: &str,
    connection: Option<&ConnectionInfo>,
    waited: Duration,
) -> EndpointCheck {
    let mut check = EndpointCheck {
        endpoint_arn: endpoint_arn.to_string(),
        ..EndpointCheck::default()
    };
    match connection {
        Some(c) if c.status == SUCCESSFUL => check.status = SUCCESSFUL.to_string(),
        Some(c) if c.status != TESTING => {
            let message = c.last_failure_message.clone().unwrap_or_else(|| {
                format!(
                    "DMS reported the connection as `{}` without a message",
                    c.status
                )
            });
            let class = classify_failure(&message);
            check.status = FAILED.to_string();
            check.classification = Some(class.as_str().to_string());
            check.message = Some(redact_secrets(&message));
            check.fix = Some(class.fix().to_string());
        }
        _ => {
            check.status = TESTING.to_string();
            check.fix = Some(format!(
                "DMS was still testing this connection after {} seconds, when this step had to answer; a test that runs this long is usually a connect that times out (a security group or route): check them, then run the execution again.",
                waited.as_secs()
            ));
        }
    }
    check
}

/// The source failed in the way sg-autofix repairs, the user allows it, and it has not run yet in this
/// execution (so the ConnectivityCheck → SgAutofix → ConnectivityCheck loop runs at most once).
fn autofix_eligible(state: &ExecutionState, source: &EndpointCheck) -> bool {
    source.status == FAILED
        && source.classification.as_deref() == Some(FailureClass::SecurityGroup.as_str())
        && state.options.auto_fix_security_group
        && state.results.sg_autofix.is_none()
}

pub async fn handle<D: Dms>(
    input: Value,
    dms: &D,
    interval: Duration,
    budget: Duration,
) -> Result<Value, StepError> {
    let mut state = read_state(input, "connectivity-check")?;
    let started = Instant::now();
    let [source, target] = run_tests(
        dms,
        &state.replication_instance_arn,
        [&state.source_endpoint_arn, &state.target_endpoint_arn],
        interval,
        budget,
    )
    .await?;
    let waited = started.elapsed();
    let source = endpoint_check(&state.source_endpoint_arn, source.as_ref(), waited);
    let target = endpoint_check(&state.target_endpoint_arn, target.as_ref(), waited);
    for (role, check) in [("source", &source), ("target", &target)] {
        tracing::info!(endpoint = role, status = %check.status, classification = ?check.classification, "connection test");
    }
    let attempts = state
        .results
        .connectivity
        .as_ref()
        .map_or(0, |c| c.attempts)
        .saturating_add(1);
    let result = ConnectivityResult {
        ok: source.status == SUCCESSFUL && target.status == SUCCESSFUL,
        autofix_eligible: autofix_eligible(&state, &source),
        attempts,
        source,
        target,
    };
    state.results.connectivity = Some(result);
    write_state(&state)
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, VecDeque};
    use std::sync::Mutex;

    use core_lib::dms::{EndpointInfo, InstanceInfo, StartType, TableStat, TaskInfo};
    use core_lib::ErrorName;
    use lambda_runtime::{Context, LambdaEvent};
    use serde_json::json;

    use super::*;

    const SOURCE: &str = "arn:aws:dms:us-east-1:123456789012:endpoint:SOURCE1";
    const TARGET: &str = "arn:aws:dms:us-east-1:123456789012:endpoint:TARGET1";
    const TIMEOUT_TEXT: &str = "Test Endpoint failed: Application-Status: 1020912, Application-Message: Failed to connect Network error has occurred, Application-Detailed-Message: RetCode: SQL_ERROR SqlState: 08001 NativeError: 101 Message: [unixODBC]timeout expired";

    /// Answers DescribeConnections from a script per endpoint (the last answer repeats).
    #[derive(Default)]
    struct ScriptedDms {
        answers: Mutex<HashMap<String, VecDeque<Option<ConnectionInfo>>>>,
        tests_started: Mutex<Vec<String>>,
        describes: Mutex<u32>,
        fail_test_with: Option<StepError>,
    }

    fn connection(status: &str, message: Option<&str>) -> Option<ConnectionInfo> {
        Some(ConnectionInfo {
            status: status.to_string(),
            last_failure_message: message.map(str::to_string),
        })
    }

    impl ScriptedDms {
        fn with(source: Vec<Option<ConnectionInfo>>, target: Vec<Option<ConnectionInfo>>) -> Self {
            let dms = ScriptedDms::default();
            dms.answers
                .lock()
                .unwrap()
                .insert(SOURCE.into(), source.into());
            dms.answers
                .lock()
                .unwrap()
                .insert(TARGET.into(), target.into());
            dms
        }
    }

    impl Dms for ScriptedDms {
        async fn describe_task(&self, _: &str) -> Result<TaskInfo, StepError> {
            unreachable!("connectivity-check reads no task")
        }
        async fn table_statistics(&self, _: &str) -> Result<Vec<TableStat>, StepError> {
            unreachable!("connectivity-check reads no table statistics")
        }
        async fn start_task(&self, _: &str, _: StartType) -> Result<(), StepError> {
            unreachable!("connectivity-check starts no task")
        }
        async fn describe_instance(&self, _: &str) -> Result<InstanceInfo, StepError> {
            unreachable!("connectivity-check reads no instance")
        }
        async fn describe_endpoint(&self, _: &str) -> Result<EndpointInfo, StepError> {
            unreachable!("connectivity-check reads no endpoint")
        }
        async fn test_connection(&self, _: &str, endpoint_arn: &str) -> Result<(), StepError> {
            if let Some(err) = &self.fail_test_with {
                return Err(err.clone());
            }
            self.tests_started
                .lock()
                .unwrap()
                .push(endpoint_arn.to_string());
            Ok(())
        }
        async fn describe_connection(
            &self,
            _: &str,
            endpoint_arn: &str,
        ) -> Result<Option<ConnectionInfo>, StepError> {
            *self.describes.lock().unwrap() += 1;
            let mut answers = self.answers.lock().unwrap();
            let script = answers.get_mut(endpoint_arn).expect("a scripted endpoint");
            Ok(if script.len() > 1 {
                script.pop_front().flatten()
            } else {
                script.front().cloned().flatten()
            })
        }
    }

    fn state() -> Value {
        let payload = json!({
            "replicationInstanceArn": "arn:aws:dms:us-east-1:123456789012:rep:INSTANCE1",
            "sourceEndpointArn": SOURCE,
            "targetEndpointArn": TARGET,
            "replicationTaskArn": "arn:aws:dms:us-east-1:123456789012:task:TASK1",
            "sourceEndpointHost": "db.cluster-abc.us-east-1.rds.amazonaws.com",
            "sourcePort": 5432
        });
        let state =
            core_lib::payload::parse_payload(&payload, "local", 0).expect("a valid payload");
        serde_json::to_value(state).unwrap()
    }

    async fn run(dms: &ScriptedDms, state: Value, budget: Duration) -> Result<Value, StepError> {
        let event = LambdaEvent::new(json!({ "state": state }), Context::default());
        handle(event.payload, dms, Duration::from_millis(1), budget).await
    }

    const LONG: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn both_successful_after_testing_is_ok() {
        let dms = ScriptedDms::with(
            vec![connection("testing", None), connection("successful", None)],
            vec![
                None,
                connection("testing", None),
                connection("successful", None),
            ],
        );
        let out = run(&dms, state(), LONG).await.unwrap();
        let result = &out["results"]["connectivity"];
        assert_eq!(result["ok"], json!(true));
        assert_eq!(result["autofixEligible"], json!(false));
        assert_eq!(result["attempts"], json!(1));
        assert_eq!(result["source"]["status"], json!("successful"));
        assert_eq!(result["target"]["status"], json!("successful"));
        assert!(result["source"].get("classification").is_none());
        assert_eq!(
            *dms.tests_started.lock().unwrap(),
            vec![SOURCE.to_string(), TARGET.to_string()]
        );
        assert_eq!(
            out["sourcePort"],
            json!(5432),
            "the rest of the state passes through"
        );
    }

    #[tokio::test]
    async fn a_source_timeout_is_security_group_and_eligible_for_autofix() {
        let dms = ScriptedDms::with(
            vec![connection("failed", Some(TIMEOUT_TEXT))],
            vec![connection("successful", None)],
        );
        let out = run(&dms, state(), LONG).await.unwrap();
        let result = &out["results"]["connectivity"];
        assert_eq!(result["ok"], json!(false));
        assert_eq!(result["autofixEligible"], json!(true));
        assert_eq!(result["source"]["status"], json!("failed"));
        assert_eq!(result["source"]["classification"], json!("security-group"));
        assert_eq!(result["source"]["message"], json!(TIMEOUT_TEXT));
        assert!(result["source"]["fix"]
            .as_str()
            .unwrap()
            .contains("security group"));
    }

    #[tokio::test]
    async fn not_eligible_after_autofix_ran_or_when_it_is_off_and_attempts_count_up() {
        let dms = ScriptedDms::with(
            vec![connection("failed", Some(TIMEOUT_TEXT))],
            vec![connection("successful", None)],
        );
        let first = run(&dms, state(), LONG).await.unwrap();
        let mut after_fix = first.clone();
        after_fix["results"]["sgAutofix"] = json!({"sourceGroups": ["sg-1"], "dmsGroups": ["sg-2"], "added": ["sg-1 <- sg-2 tcp/5432"], "present": []});
        let second = run(&dms, after_fix, LONG).await.unwrap();
        assert_eq!(second["results"]["connectivity"]["attempts"], json!(2));
        assert_eq!(
            second["results"]["connectivity"]["autofixEligible"],
            json!(false)
        );

        let mut off = state();
        off["options"]["autoFixSecurityGroup"] = json!(false);
        let out = run(&dms, off, LONG).await.unwrap();
        assert_eq!(
            out["results"]["connectivity"]["autofixEligible"],
            json!(false)
        );
    }

    #[tokio::test]
    async fn a_target_timeout_or_a_source_auth_failure_is_not_eligible() {
        let dms = ScriptedDms::with(
            vec![connection("successful", None)],
            vec![connection("failed", Some(TIMEOUT_TEXT))],
        );
        let out = run(&dms, state(), LONG).await.unwrap();
        assert_eq!(
            out["results"]["connectivity"]["target"]["classification"],
            json!("security-group")
        );
        assert_eq!(
            out["results"]["connectivity"]["autofixEligible"],
            json!(false)
        );

        let dms = ScriptedDms::with(
            vec![connection(
                "failed",
                Some("FATAL:  password authentication failed for user \"dms\""),
            )],
            vec![connection("successful", None)],
        );
        let out = run(&dms, state(), LONG).await.unwrap();
        assert_eq!(
            out["results"]["connectivity"]["source"]["classification"],
            json!("auth")
        );
        assert_eq!(
            out["results"]["connectivity"]["autofixEligible"],
            json!(false)
        );
    }

    #[tokio::test]
    async fn still_testing_at_the_deadline_is_reported_as_testing_after_one_round() {
        let dms = ScriptedDms::with(
            vec![connection("testing", None)],
            vec![connection("successful", None)],
        );
        let out = run(&dms, state(), Duration::ZERO).await.unwrap();
        let result = &out["results"]["connectivity"];
        assert_eq!(result["ok"], json!(false));
        assert_eq!(result["source"]["status"], json!("testing"));
        assert!(result["source"].get("classification").is_none());
        assert!(result["source"]["fix"]
            .as_str()
            .unwrap()
            .contains("still testing"));
        assert_eq!(
            *dms.describes.lock().unwrap(),
            2,
            "one round, no sleeping past the budget"
        );
    }

    #[tokio::test]
    async fn polling_stops_once_both_are_final() {
        let dms = ScriptedDms::with(
            vec![
                connection("testing", None),
                connection("testing", None),
                connection("failed", Some("FATAL:  database \"x\" does not exist")),
            ],
            vec![connection("successful", None)],
        );
        let out = run(&dms, state(), LONG).await.unwrap();
        assert_eq!(
            out["results"]["connectivity"]["source"]["classification"],
            json!("database-missing")
        );
        // Round 1: both; rounds 2 and 3: the source only (the target was final after round 1).
        assert_eq!(*dms.describes.lock().unwrap(), 4);
    }

    #[tokio::test]
    async fn a_failure_without_message_and_a_deleting_endpoint_are_failed_unknown() {
        let dms = ScriptedDms::with(
            vec![connection("failed", None)],
            vec![connection("deleting", None)],
        );
        let out = run(&dms, state(), LONG).await.unwrap();
        let result = &out["results"]["connectivity"];
        assert_eq!(result["source"]["classification"], json!("unknown"));
        assert_eq!(result["target"]["status"], json!("failed"));
        assert!(result["target"]["message"]
            .as_str()
            .unwrap()
            .contains("deleting"));
    }

    #[tokio::test]
    async fn dms_errors_keep_their_names_and_bad_input_is_payload_invalid() {
        let dms = ScriptedDms {
            fail_test_with: Some(StepError::new(
                ErrorName::AwsAccessDenied,
                "dms:TestConnection denied",
            )),
            ..ScriptedDms::with(vec![None], vec![None])
        };
        let err = run(&dms, state(), LONG).await.unwrap_err();
        assert_eq!(err.name, ErrorName::AwsAccessDenied);

        let err = handle(json!([1]), &dms, Duration::ZERO, Duration::ZERO)
            .await
            .unwrap_err();
        assert_eq!(err.name, ErrorName::PayloadInvalid);
        let err = handle(
            json!({"state": {"sourcePort": 1}}),
            &dms,
            Duration::ZERO,
            Duration::ZERO,
        )
        .await
        .unwrap_err();
        assert_eq!(err.name, ErrorName::PayloadInvalid);
    }

    #[test]
    fn the_budget_keeps_a_margin_before_the_deadline() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(
            time_budget(now + Duration::from_secs(900), now),
            Duration::from_secs(770)
        );
        assert_eq!(
            time_budget(now + Duration::from_secs(20), now),
            Duration::from_secs(10)
        );
        assert_eq!(
            time_budget(now - Duration::from_secs(5), now),
            Duration::ZERO
        );
    }

    /// The last round starts before the budget runs out (the loop checks the budget before it sleeps) and
    /// makes one DescribeConnections call per endpoint, each of which may take the whole SDK operation
    /// timeout: the answer must still leave before the deadline.
    #[test]
    fn a_last_round_of_slowest_calls_still_answers_before_the_deadline() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let last_round = 2 * OPERATION_TIMEOUT;
        for timeout_secs in [300, 400, 900] {
            let left = Duration::from_secs(timeout_secs);
            let budget = time_budget(now + left, now);
            assert!(
                budget + last_round + ANSWER_TIME <= left,
                "a {timeout_secs} s Lambda polls for {budget:?}: a last round of {last_round:?} and the answer \
                 would end after its deadline (Sandbox.Timedout)"
            );
        }
    }
}
