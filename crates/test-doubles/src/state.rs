//! The execution state `notify` hands to the next step, built from a valid pasted payload.

use dms_core::rules::payload::parse_payload;
use serde_json::{json, Value};

pub const INSTANCE_ARN: &str = "arn:aws:dms:us-east-1:123456789012:rep:INSTANCE1";
pub const SOURCE_ARN: &str = "arn:aws:dms:us-east-1:123456789012:endpoint:SOURCE1";
pub const TARGET_ARN: &str = "arn:aws:dms:us-east-1:123456789012:endpoint:TARGET1";
pub const TASK_ARN: &str = "arn:aws:dms:us-east-1:123456789012:task:TASK1";
pub const SOURCE_HOST: &str = "db.cluster-abc.us-east-1.rds.amazonaws.com";

/// A payload that passes `parse_payload`, changed field by field, then parsed as `notify` parses it.
#[derive(Debug, Clone)]
pub struct StateFixture {
    payload: Value,
    execution_id: String,
    started: i64,
}

impl Default for StateFixture {
    fn default() -> Self {
        StateFixture {
            payload: json!({
                "replicationInstanceArn": INSTANCE_ARN,
                "sourceEndpointArn": SOURCE_ARN,
                "targetEndpointArn": TARGET_ARN,
                "replicationTaskArn": TASK_ARN,
                "sourceEndpointHost": SOURCE_HOST,
                "sourcePort": 5432
            }),
            execution_id: "local".into(),
            started: 0,
        }
    }
}

impl StateFixture {
    /// Sets one pasted field (`replicationTaskArn`, `sourcePort`, `options`, ...).
    pub fn with(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.payload[field] = value.into();
        self
    }

    /// The execution ARN (or `local`) and its start time, epoch seconds.
    pub fn execution(mut self, execution_id: &str, started: i64) -> Self {
        self.execution_id = execution_id.into();
        self.started = started;
        self
    }

    /// The normalised state; panics with parse_payload's own message when a change made it invalid.
    pub fn state(&self) -> Value {
        let state = parse_payload(&self.payload, &self.execution_id, self.started)
            .unwrap_or_else(|e| panic!("the fixture payload is invalid: {}", e.message));
        serde_json::to_value(state).unwrap_or_else(|e| panic!("state to JSON: {e}"))
    }

    /// `{"state": ...}`: the input every step after `notify` receives.
    pub fn input(&self) -> Value {
        json!({ "state": self.state() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_is_the_normalised_state_with_the_changes() {
        let state = StateFixture::default()
            .with("sourcePort", 6432)
            .with("options", json!({"pollIntervalSeconds": 120}))
            .execution(
                "arn:aws:states:us-east-1:123456789012:execution:m:run-1",
                1_000,
            )
            .state();
        assert_eq!(state["sourcePort"], 6432, "{state}");
        assert_eq!(state["replicationTaskArn"], TASK_ARN);
        assert_eq!(state["options"]["pollIntervalSeconds"], 120, "{state}");
        assert_eq!(
            state["context"]["executionId"],
            "arn:aws:states:us-east-1:123456789012:execution:m:run-1"
        );
    }

    #[test]
    #[should_panic(expected = "sourcePort")]
    fn an_invalid_change_fails_with_the_field_named() {
        StateFixture::default()
            .with("sourcePort", "not a port")
            .state();
    }
}
