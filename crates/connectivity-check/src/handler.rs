//! connectivity-check: runs DMS's own connection test from the replication instance to both endpoints
//! (the only test that sees the instance's network: security groups, routes, DNS in its VPC), waits for
//! the verdicts within the Lambda's remaining time, and classifies each failure with the fix. A failed
//! test is data (`results.connectivity.ok = false`) the state machine routes on, not an error.

use std::time::{Duration, SystemTime};

use dms_core::aws::dms::{ConnectionInfo, Dms};
use dms_core::aws::OPERATION_TIMEOUT;
use dms_core::envelope::{read_state, write_state};
use dms_core::rules::connectivity::{classify_failure, FailureClass};
use dms_core::rules::redact::redact_secrets;
use dms_core::rules::state::{ConnectivityResult, EndpointCheck, EndpointStatus};
use dms_core::{ErrorName, ExecutionState, StepError};
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

/// How long the handler may keep polling: the time left until the deadline minus the margin, and never
/// more than half of what is left (a short local deadline still gets some polling).
pub fn time_budget(deadline: SystemTime, now: SystemTime) -> Duration {
    let left = dms_core::clock::time_left(deadline, now);
    left.saturating_sub(DEADLINE_MARGIN.min(left / 2))
}

/// `Connection.Status` values DMS reports (<https://docs.aws.amazon.com/dms/latest/APIReference/API_Connection.html>).
const DMS_SUCCESSFUL: &str = "successful";
const DMS_TESTING: &str = "testing";

/// `ReplicationInstanceStatus` of an instance that runs tests; every other listed value (creating,
/// modifying, upgrading, rebooting, maintenance, storage-full, incompatible-network, ...) makes DMS refuse
/// TestConnection with `InvalidResourceStateFault` ("The resource is in a state that prevents it from being
/// used for database migration"). <https://docs.aws.amazon.com/dms/latest/APIReference/API_ReplicationInstance.html>,
/// <https://docs.aws.amazon.com/dms/latest/APIReference/API_TestConnection.html>
const INSTANCE_AVAILABLE: &str = "available";
/// `Endpoint.Status` of a usable endpoint. The API reference lists no values for it
/// (<https://docs.aws.amazon.com/dms/latest/APIReference/API_Endpoint.html>); DMS reports `active`.
const ENDPOINT_ACTIVE: &str = "active";

/// `successful` and `failed` are verdicts; `testing` (or no record yet) means wait. `deleting` means the
/// endpoint is going away: no verdict will come, so it counts as a failure.
fn is_final(connection: Option<&ConnectionInfo>) -> bool {
    connection.is_some_and(|c| c.status != DMS_TESTING)
}

/// Why DMS refused to start our test (`InvalidResourceStateFault` from TestConnection), read from the
/// resources themselves: the fault's message is not a contract.
#[derive(Debug, Clone, PartialEq)]
enum Blocked {
    Instance {
        identifier: String,
        status: String,
    },
    Endpoint {
        identifier: String,
        status: String,
    },
    /// A test of the same pair that this step did not start is still running.
    TestRunning,
    /// The instance and endpoint read usable and no test runs, yet DMS refused: its message.
    Refused(String),
}

/// Where one endpoint's test stands.
///
/// A result counts only once DMS has accepted a TestConnection of this step. The `Connection` that
/// DescribeConnections returns has no timestamp and no test id (Status, LastFailureMessage and the two
/// identifiers: <https://docs.aws.amazon.com/dms/latest/APIReference/API_Connection.html>), and after a
/// refused TestConnection it still holds the last saved verdict, possibly days old. DMS refuses a test
/// while one of the same pair runs, and an accepted TestConnection answers the record as `testing`
/// (<https://docs.aws.amazon.com/dms/latest/APIReference/API_TestConnection.html>), so after our own
/// accepted call the record's next verdict is this test's — and before it, no verdict is ours.
#[derive(Debug, Clone, PartialEq)]
enum Progress {
    NotStarted(Option<Blocked>),
    Started(Option<ConnectionInfo>),
}

impl Progress {
    fn is_final(&self) -> bool {
        matches!(self, Progress::Started(c) if is_final(c.as_ref()))
    }
}

/// Reads why TestConnection was refused: the instance's status, the endpoint's, then a running test.
async fn diagnose<D: Dms>(
    dms: &D,
    instance_arn: &str,
    endpoint_arn: &str,
    refusal: String,
) -> Result<Blocked, StepError> {
    let instance = dms.describe_instance(instance_arn).await?;
    if instance.status != INSTANCE_AVAILABLE {
        return Ok(Blocked::Instance {
            identifier: instance.identifier,
            status: instance.status,
        });
    }
    let endpoint = dms.describe_endpoint(endpoint_arn).await?;
    if endpoint.status != ENDPOINT_ACTIVE {
        return Ok(Blocked::Endpoint {
            identifier: endpoint.identifier,
            status: endpoint.status,
        });
    }
    let running = dms
        .describe_connection(instance_arn, endpoint_arn)
        .await?
        .is_some_and(|c| c.status == DMS_TESTING);
    Ok(if running {
        Blocked::TestRunning
    } else {
        Blocked::Refused(refusal)
    })
}

/// Starts a test of each endpoint (again, each round, while DMS refuses because a resource is not
/// available), then polls until both of this step's tests have a verdict or the budget is spent.
async fn run_tests<D: Dms>(
    dms: &D,
    instance_arn: &str,
    endpoint_arns: [&str; 2],
    interval: Duration,
    budget: Duration,
) -> Result<[Progress; 2], StepError> {
    let started = Instant::now();
    let mut progress = [Progress::NotStarted(None), Progress::NotStarted(None)];
    // Bounded by the budget below; every round makes at most four DMS calls per endpoint.
    loop {
        for (slot, endpoint_arn) in progress.iter_mut().zip(endpoint_arns) {
            if let Progress::NotStarted(_) = slot {
                match dms.test_connection(instance_arn, endpoint_arn).await {
                    Ok(()) => *slot = Progress::Started(None),
                    Err(refused) if refused.name == ErrorName::DmsInvalidState => {
                        let why =
                            diagnose(dms, instance_arn, endpoint_arn, refused.message).await?;
                        tracing::info!(endpoint = %endpoint_arn, blocked = ?why, "DMS started no connection test");
                        *slot = Progress::NotStarted(Some(why));
                    }
                    Err(other) => return Err(other),
                }
            }
            if let Progress::Started(connection) = slot {
                if !is_final(connection.as_ref()) {
                    *connection = dms.describe_connection(instance_arn, endpoint_arn).await?;
                }
            }
        }
        if progress.iter().all(Progress::is_final) {
            return Ok(progress);
        }
        if started.elapsed() + interval >= budget {
            tracing::warn!(waited_ms = %started.elapsed().as_millis(), "connection tests not finished at the deadline");
            return Ok(progress);
        }
        tokio::time::sleep(interval).await;
    }
}

fn endpoint_check(endpoint_arn: &str, progress: &Progress, waited: Duration) -> EndpointCheck {
    let mut check = EndpointCheck {
        endpoint_arn: endpoint_arn.to_string(),
        ..EndpointCheck::default()
    };
    let connection = match progress {
        Progress::Started(connection) => connection.as_ref(),
        Progress::NotStarted(blocked) => {
            let waited = waited.as_secs();
            let message = match blocked {
                Some(Blocked::Instance { identifier, status }) => format!(
                    "DMS started no connection test: the replication instance `{identifier}` is `{status}`, not `available`, and stayed so for the {waited} s this step waited"
                ),
                Some(Blocked::Endpoint { identifier, status }) => format!(
                    "DMS started no connection test: the endpoint `{identifier}` is `{status}`, not `active`, and stayed so for the {waited} s this step waited"
                ),
                Some(Blocked::TestRunning) => format!(
                    "DMS started no connection test: a test of this endpoint from this instance that this step did not start was still running after {waited} s, and its result cannot be told apart from an older one"
                ),
                Some(Blocked::Refused(refusal)) => format!(
                    "DMS refused to start a connection test although the instance is available and the endpoint active: {refusal}"
                ),
                None => "DMS started no connection test".to_string(),
            };
            let class = FailureClass::DmsUnavailable;
            check.status = EndpointStatus::NotTested;
            check.classification = Some(class);
            check.message = Some(redact_secrets(&message));
            check.fix = Some(class.fix().to_string());
            return check;
        }
    };
    match connection {
        Some(c) if c.status == DMS_SUCCESSFUL => check.status = EndpointStatus::Successful,
        Some(c) if c.status != DMS_TESTING => {
            let message = c.last_failure_message.clone().unwrap_or_else(|| {
                format!(
                    "DMS reported the connection as `{}` without a message",
                    c.status
                )
            });
            let class = classify_failure(&message);
            check.status = EndpointStatus::Failed;
            check.classification = Some(class);
            check.message = Some(redact_secrets(&message));
            check.fix = Some(class.fix().to_string());
        }
        _ => {
            check.status = EndpointStatus::Testing;
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
    source.status == EndpointStatus::Failed
        && source.classification == Some(FailureClass::SecurityGroup)
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
    let source = endpoint_check(&state.source_endpoint_arn, &source, waited);
    let target = endpoint_check(&state.target_endpoint_arn, &target, waited);
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
        ok: source.status == EndpointStatus::Successful
            && target.status == EndpointStatus::Successful,
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
    use dms_core::aws::dms::{EndpointInfo, InstanceInfo};
    use dms_core::ErrorName;
    use lambda_runtime::{Context, LambdaEvent};
    use serde_json::json;
    use test_doubles::{FakeDms, StateFixture, SOURCE_ARN as SOURCE, TARGET_ARN as TARGET};

    use super::*;
    const TIMEOUT_TEXT: &str = "Test Endpoint failed: Application-Status: 1020912, Application-Message: Failed to connect Network error has occurred, Application-Detailed-Message: RetCode: SQL_ERROR SqlState: 08001 NativeError: 101 Message: [unixODBC]timeout expired";

    /// The shape classify_sdk_error gives DMS's fault: the text names dms:TestConnection, so it always
    /// contains "test" whatever the cause.
    fn refusal() -> StepError {
        StepError::new(
            ErrorName::DmsInvalidState,
            format!("dms:TestConnection on {SOURCE} failed: InvalidResourceStateFault (HTTP 400): Replication Instance is in MODIFYING state and cannot be used for a test connection"),
        )
    }

    fn connection(status: &str, message: Option<&str>) -> Option<ConnectionInfo> {
        Some(ConnectionInfo {
            status: status.to_string(),
            last_failure_message: message.map(str::to_string),
        })
    }

    /// DMS answering DescribeConnections from a script per endpoint (the last answer repeats), with an
    /// available instance and active endpoints; tests add refusals and statuses.
    fn scripted(
        source: Vec<Option<ConnectionInfo>>,
        target: Vec<Option<ConnectionInfo>>,
    ) -> FakeDms {
        FakeDms::default()
            .instance(InstanceInfo {
                identifier: "lab-instance".into(),
                status: "available".into(),
                ..InstanceInfo::default()
            })
            .endpoint(endpoint(SOURCE, "lab-source", "active"))
            .endpoint(endpoint(TARGET, "lab-target", "active"))
            .connections(SOURCE, source)
            .connections(TARGET, target)
    }

    fn endpoint(arn: &str, identifier: &str, status: &str) -> EndpointInfo {
        EndpointInfo {
            arn: arn.into(),
            identifier: identifier.into(),
            status: status.into(),
            ..EndpointInfo::default()
        }
    }

    fn state() -> Value {
        StateFixture::default().state()
    }

    async fn run(dms: &FakeDms, state: Value, budget: Duration) -> Result<Value, StepError> {
        let event = LambdaEvent::new(json!({ "state": state }), Context::default());
        handle(event.payload, dms, Duration::from_millis(1), budget).await
    }

    const LONG: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn both_successful_after_testing_is_ok() {
        let dms = scripted(
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
            dms.tests_started(),
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
        let dms = scripted(
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
        let dms = scripted(
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
        let dms = scripted(
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

        let dms = scripted(
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
        let dms = scripted(
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
            dms.calls_to("describe_connection"),
            2,
            "one round, no sleeping past the budget"
        );
    }

    #[tokio::test]
    async fn polling_stops_once_both_are_final() {
        let dms = scripted(
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
        assert_eq!(dms.calls_to("describe_connection"), 4);
    }

    #[tokio::test]
    async fn a_failure_without_message_and_a_deleting_endpoint_are_failed_unknown() {
        let dms = scripted(
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
        let dms = scripted(vec![None], vec![None]).test_connection_fails(StepError::new(
            ErrorName::AwsAccessDenied,
            "dms:TestConnection denied",
        ));
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

    fn refused(dms: FakeDms, endpoint: &str, times: u32) -> FakeDms {
        dms.refuse_tests(endpoint, times, refusal())
    }

    #[tokio::test]
    async fn a_refused_test_never_accepts_the_last_saved_verdict() {
        // DMS keeps the last verdict of the pair: `successful`, from a test long ago.
        let dms = refused(
            scripted(
                vec![connection("successful", None)],
                vec![connection("successful", None)],
            ),
            SOURCE,
            u32::MAX,
        )
        .instance_statuses(&["modifying"]);
        let out = run(&dms, state(), Duration::from_millis(20)).await.unwrap();
        let result = &out["results"]["connectivity"];
        assert_eq!(result["ok"], json!(false), "{result}");
        assert_eq!(result["source"]["status"], json!("not-tested"));
        assert_eq!(result["source"]["classification"], json!("dms-unavailable"));
        let message = result["source"]["message"].as_str().unwrap();
        assert!(
            message.contains("`lab-instance` is `modifying`"),
            "{message}"
        );
        assert!(!result["source"]["fix"]
            .as_str()
            .unwrap()
            .contains("security group"));
        assert_eq!(result["autofixEligible"], json!(false));
        assert!(
            dms.calls_to("test_connection") >= 3,
            "TestConnection is tried again while the instance is unavailable"
        );
    }

    #[tokio::test]
    async fn no_verdict_while_the_endpoint_is_unavailable_names_it_not_a_security_group() {
        let dms = refused(
            scripted(vec![None], vec![connection("successful", None)]).endpoint(endpoint(
                SOURCE,
                "lab-source",
                "modifying",
            )),
            SOURCE,
            u32::MAX,
        );
        let out = run(&dms, state(), Duration::from_millis(20)).await.unwrap();
        let source = &out["results"]["connectivity"]["source"];
        assert_eq!(source["status"], json!("not-tested"), "{source}");
        assert!(source["message"]
            .as_str()
            .unwrap()
            .contains("endpoint `lab-source` is `modifying`"));
        assert!(!source["fix"].as_str().unwrap().contains("security group"));
        assert_eq!(
            out["results"]["connectivity"]["target"]["status"],
            json!("successful")
        );
    }

    #[tokio::test]
    async fn once_the_instance_is_available_our_own_test_gives_the_verdict() {
        let dms = refused(
            scripted(
                vec![
                    connection("testing", None),
                    connection("failed", Some(TIMEOUT_TEXT)),
                ],
                vec![connection("successful", None)],
            ),
            SOURCE,
            2,
        )
        .instance_statuses(&["modifying", "modifying", "available"]);
        let out = run(&dms, state(), LONG).await.unwrap();
        let source = &out["results"]["connectivity"]["source"];
        assert_eq!(source["status"], json!("failed"), "{source}");
        assert_eq!(source["classification"], json!("security-group"));
        assert_eq!(
            dms.tests_started(),
            vec![TARGET.to_string(), SOURCE.to_string()],
            "the source's test starts once DMS accepts it"
        );
    }

    #[tokio::test]
    async fn a_test_this_step_did_not_start_is_waited_out_then_ours_runs() {
        // Round 1: refused, the pair reads `testing` (someone else's test); round 2: ours is accepted.
        let dms = refused(
            scripted(
                vec![connection("testing", None), connection("successful", None)],
                vec![connection("successful", None)],
            ),
            SOURCE,
            1,
        );
        let out = run(&dms, state(), LONG).await.unwrap();
        let result = &out["results"]["connectivity"];
        assert_eq!(result["source"]["status"], json!("successful"), "{result}");
        assert_eq!(dms.calls_to("test_connection"), 3);

        // Still running at the deadline: no verdict of ours, and it says so.
        let dms = refused(
            scripted(
                vec![connection("testing", None)],
                vec![connection("successful", None)],
            ),
            SOURCE,
            u32::MAX,
        );
        let out = run(&dms, state(), Duration::ZERO).await.unwrap();
        let source = &out["results"]["connectivity"]["source"];
        assert_eq!(source["status"], json!("not-tested"));
        assert!(source["message"]
            .as_str()
            .unwrap()
            .contains("did not start"));
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
