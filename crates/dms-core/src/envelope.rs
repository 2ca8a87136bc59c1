//! The `{"state": $}` envelope the ASL passes to every Lambda except notify
//! (docs/state-machine-contract.md), and the state a Lambda hands back (`ResultPath: "$"`).

use serde_json::Value;

use crate::errors::StepError;
use crate::rules::state::ExecutionState;

/// Reads `{"state": <ExecutionState>}`; `lambda` names the caller in the error.
pub fn read_state(input: Value, lambda: &str) -> Result<ExecutionState, StepError> {
    let Value::Object(mut envelope) = input else {
        return Err(StepError::payload(format!(
            "{lambda} expects {{\"state\": <execution state>}}; received something else (check the state machine definition)"
        )));
    };
    let state = envelope.remove("state").unwrap_or(Value::Null);
    serde_json::from_value(state).map_err(|e| {
        StepError::payload(format!(
            "{lambda}: `state` is not the execution state notify `started` returns ({e}); the machine's first Task must be NotifyStarted"
        ))
    })
}

/// The whole updated state, as the Lambda's result, with every list and text cut to its bound
/// (`ExecutionState::bound`): Step Functions fails an execution whose state exceeds 256 KiB without
/// running any Catch.
pub fn write_state(state: &ExecutionState) -> Result<Value, StepError> {
    let mut state = state.clone();
    state.bound();
    serde_json::to_value(&state)
        .map_err(|e| StepError::payload(format!("the updated state could not be written: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::ErrorName;

    #[test]
    fn a_bad_envelope_is_payload_invalid_and_names_the_lambda() {
        for bad in [
            serde_json::json!([1]),
            serde_json::json!({}),
            serde_json::json!({"state": {"x": 1}}),
        ] {
            let err = read_state(bad, "poll-progress").unwrap_err();
            assert_eq!(err.name, ErrorName::PayloadInvalid);
            assert!(err.message.starts_with("poll-progress"), "{}", err.message);
        }
    }
}
