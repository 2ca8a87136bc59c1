//! notify: the first and the last word of every execution. For `started` it validates the pasted input and
//! returns the normalised state the rest of the machine reads; for every event it sends one email.

use dms_core::aws::notifier::{Notification, Notifier};
use dms_core::rules::payload::parse_payload;
use dms_core::{Event, StepError};
use serde_json::Value;

use crate::render::{render, StateView};

/// The envelope the ASL passes: `{"event": "...", "executionId": "$$.Execution.Id", "state": $}`, and for
/// `started` also `"executionStartTime": "$$.Execution.StartTime"`.
struct Envelope {
    event: Event,
    execution_id: String,
    /// Epoch seconds the execution started, when the ASL passed it.
    started_at: Option<i64>,
    state: Value,
}

fn read_envelope(input: Value) -> Result<Envelope, StepError> {
    let Value::Object(mut object) = input else {
        return Err(StepError::payload(
            "notify expects {\"event\", \"executionId\", \"state\"}; received something else (check the state machine definition)",
        ));
    };
    let event_name = object
        .get("event")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let event = Event::parse(&event_name).ok_or_else(|| {
        StepError::payload(format!(
            "notify: `event` is \"{event_name}\"; expected one of {}",
            Event::ALL.map(Event::as_str).join(", ")
        ))
    })?;
    let execution_id = object
        .get("executionId")
        .and_then(Value::as_str)
        .unwrap_or("local")
        .to_string();
    let started_at = object
        .get("executionStartTime")
        .and_then(Value::as_str)
        .and_then(dms_core::clock::parse_iso8601);
    let state = object.remove("state").unwrap_or(Value::Null);
    Ok(Envelope {
        event,
        execution_id,
        started_at,
        state,
    })
}

/// `way_back_task_arn`: the stack's reverse task, named in the ready-for-cutover email (`None` without the
/// way back).
pub async fn handle<N: Notifier>(
    input: Value,
    notifier: &N,
    way_back_task_arn: Option<&str>,
    now: i64,
) -> Result<Value, StepError> {
    let envelope = read_envelope(input)?;
    let state = if envelope.event == Event::Started {
        // Invalid input fails here with Payload.Invalid; the Catch then sends the `failed` email.
        // The monitoring deadline counts from the execution's start (Step Functions' one-year limit does
        // too), not from this first Task, which retries may have delayed.
        let started = envelope.started_at.map_or(now, |at| at.min(now));
        let state = parse_payload(&envelope.state, &envelope.execution_id, started)?;
        serde_json::to_value(&state).map_err(|e| {
            StepError::payload(format!("the normalised state could not be written: {e}"))
        })?
    } else {
        envelope.state
    };
    let view = StateView::read(&state, &envelope.execution_id);
    let email = render(envelope.event, &view, way_back_task_arn);
    tracing::info!(event = %envelope.event, subject = %email.subject, "publishing notification");
    notifier
        .publish(&Notification {
            event: envelope.event,
            execution_id: envelope.execution_id,
            subject: email.subject,
            body: email.body,
        })
        .await?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use dms_core::ErrorName;
    use lambda_runtime::{Context, LambdaEvent};
    use serde_json::json;

    use super::*;

    /// Records what would have been published; can be told to fail like SNS would.
    #[derive(Default)]
    pub struct RecordingNotifier {
        pub sent: Mutex<Vec<Notification>>,
        pub fail_with: Option<StepError>,
    }

    impl Notifier for RecordingNotifier {
        async fn publish(&self, notification: &Notification) -> Result<(), StepError> {
            if let Some(err) = &self.fail_with {
                return Err(err.clone());
            }
            self.sent.lock().expect("lock").push(notification.clone());
            Ok(())
        }
    }

    const EXEC: &str = "arn:aws:states:us-east-1:123456789012:execution:demo-migration:run-1";

    fn payload() -> Value {
        json!({
            "replicationInstanceArn": "arn:aws:dms:us-east-1:123456789012:rep:INSTANCE1",
            "sourceEndpointArn": "arn:aws:dms:us-east-1:123456789012:endpoint:SOURCE1",
            "targetEndpointArn": "arn:aws:dms:us-east-1:123456789012:endpoint:TARGET1",
            "replicationTaskArn": "arn:aws:dms:us-east-1:123456789012:task:TASK1",
            "sourceEndpointHost": "db.cluster-abc.us-east-1.rds.amazonaws.com",
            "sourcePort": "5432"
        })
    }

    fn lambda_event(payload: Value) -> LambdaEvent<Value> {
        LambdaEvent::new(payload, Context::default())
    }

    #[tokio::test]
    async fn the_monitoring_deadline_counts_from_the_executions_start() {
        let notifier = RecordingNotifier::default();
        let now = 1_553_631_253 + 600;
        let state = handle(
            json!({"event": "started", "executionId": EXEC, "state": payload(),
                   "executionStartTime": "2019-03-26T20:14:13.192Z"}),
            &notifier,
            None,
            now,
        )
        .await
        .expect("valid input");
        assert_eq!(
            state["context"]["startedAtEpochSeconds"],
            json!(1_553_631_253)
        );
        assert_eq!(
            state["monitor"]["deadlineEpochSeconds"],
            json!(1_553_631_253 + 72 * 3600),
            "72 h from the execution's start, not from this step"
        );
    }

    #[tokio::test]
    async fn started_returns_the_normalised_state_and_sends_one_email() {
        let notifier = RecordingNotifier::default();
        let event =
            lambda_event(json!({"event": "started", "executionId": EXEC, "state": payload()}));
        let state = handle(event.payload, &notifier, None, 100).await.unwrap();
        assert_eq!(state["sourcePort"], json!(5432));
        assert_eq!(state["options"]["pollIntervalSeconds"], json!(60));
        assert_eq!(state["monitor"]["nextPollSeconds"], json!(60));
        assert_eq!(state["context"]["executionId"], json!(EXEC));
        let sent = notifier.sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].event, Event::Started);
        assert_eq!(sent[0].execution_id, EXEC);
        assert!(sent[0].subject.contains("TASK1"), "{}", sent[0].subject);
    }

    #[tokio::test]
    async fn invalid_input_fails_with_payload_invalid_and_sends_nothing() {
        let notifier = RecordingNotifier::default();
        let mut raw = payload();
        raw["sourcePort"] = json!(99999);
        let err = handle(
            json!({"event": "started", "executionId": EXEC, "state": raw}),
            &notifier,
            None,
            0,
        )
        .await
        .unwrap_err();
        assert_eq!(err.name, ErrorName::PayloadInvalid);
        assert!(err.message.contains("`sourcePort`"), "{}", err.message);
        assert!(notifier.sent.lock().unwrap().is_empty());
        let diag: lambda_runtime::Diagnostic = err.into();
        assert_eq!(diag.error_type, "Payload.Invalid");
    }

    #[tokio::test]
    async fn failed_renders_from_input_that_never_validated() {
        let notifier = RecordingNotifier::default();
        let cause = json!({"errorType": "Payload.Invalid", "errorMessage": "The execution input has 1 problem: 1) `sourcePort`: received 99999; expected a port number from 1 to 65535, e.g. 5432."}).to_string();
        let mut raw = payload();
        raw["sourcePort"] = json!(99999);
        raw["error"] = json!({"Error": "Payload.Invalid", "Cause": cause, "step": "ValidateInputAndNotifyStart"});
        let out = handle(
            json!({"event": "failed", "executionId": EXEC, "state": raw.clone()}),
            &notifier,
            None,
            0,
        )
        .await
        .unwrap();
        assert_eq!(
            out, raw,
            "a non-started event hands the state back unchanged"
        );
        let sent = notifier.sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert!(
            sent[0].body.contains("ValidateInputAndNotifyStart"),
            "{}",
            sent[0].body
        );
        assert!(
            sent[0].body.contains("`sourcePort`: received 99999"),
            "{}",
            sent[0].body
        );
        assert!(
            sent[0].body.contains("StepFunctionsPayloadTemplate"),
            "{}",
            sent[0].body
        );
    }

    #[tokio::test]
    async fn failed_with_garbage_state_still_sends_an_email() {
        let notifier = RecordingNotifier::default();
        for state in [
            json!(null),
            json!("text"),
            json!({"error": "not an object"}),
            json!([1, 2]),
        ] {
            handle(
                json!({"event": "failed", "state": state}),
                &notifier,
                None,
                0,
            )
            .await
            .unwrap();
        }
        assert_eq!(notifier.sent.lock().unwrap().len(), 4);
    }

    /// The stack's reverse task, given at cold start, reaches the ready-for-cutover email's command.
    #[tokio::test]
    async fn ready_for_cutover_names_the_stacks_way_back_task() {
        let notifier = RecordingNotifier::default();
        let way_back = "arn:aws:dms:us-east-1:123456789012:task:WAYBACK1";
        handle(
            json!({"event": "ready-for-cutover", "executionId": EXEC, "state": payload()}),
            &notifier,
            Some(way_back),
            0,
        )
        .await
        .unwrap();
        let sent = notifier.sent.lock().unwrap();
        assert!(
            sent[0]
                .body
                .contains(&format!("--way-back-task-arn {way_back}")),
            "{}",
            sent[0].body
        );
    }

    #[tokio::test]
    async fn unknown_event_is_a_named_error() {
        let notifier = RecordingNotifier::default();
        let err = handle(
            json!({"event": "finished", "state": {}}),
            &notifier,
            None,
            0,
        )
        .await
        .unwrap_err();
        assert_eq!(err.name, ErrorName::PayloadInvalid);
        assert!(err.message.contains("\"finished\""), "{}", err.message);
        let err = handle(json!([1]), &notifier, None, 0).await.unwrap_err();
        assert_eq!(err.name, ErrorName::PayloadInvalid);
    }

    #[tokio::test]
    async fn a_publish_failure_keeps_its_name() {
        let notifier = RecordingNotifier {
            fail_with: Some(StepError::new(
                ErrorName::AwsThrottled,
                "sns:Publish throttled",
            )),
            ..Default::default()
        };
        let err = handle(
            json!({"event": "started", "executionId": EXEC, "state": payload()}),
            &notifier,
            None,
            0,
        )
        .await
        .unwrap_err();
        assert_eq!(err.name, ErrorName::AwsThrottled);
    }
}
