//! The notification events (docs/state-machine-contract.md): one email each. The ASL passes the kebab-case name to `notify`.

use crate::string_enum::string_enum;

string_enum! {
    pub enum Event {
        Started => "started",
        ConnectivityFailed => "connectivity-failed",
        SgFixed => "sg-fixed",
        AssessmentWarnings => "assessment-warnings",
        AssessmentFailed => "assessment-failed",
        AssessmentSkipped => "assessment-skipped",
        TaskStarted => "task-started",
        FullLoadComplete => "full-load-complete",
        /// DMS stopped the task on a recoverable error and restarts it itself (once per execution).
        TaskRecovering => "task-recovering",
        ReadyForCutover => "ready-for-cutover",
        /// A full-load-only task finished.
        Succeeded => "succeeded",
        TaskFailed => "task-failed",
        MonitoringEnded => "monitoring-ended",
        /// A Catch fired: the state carries `error` with `step`, `Error` and `Cause`.
        Failed => "failed",
    }
}

impl Event {
    /// The migration stops after this event's email.
    pub fn ends_in_failure(self) -> bool {
        matches!(
            self,
            Event::ConnectivityFailed
                | Event::AssessmentFailed
                | Event::TaskFailed
                | Event::MonitoringEnded
                | Event::Failed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_name_matches_as_str() {
        for event in Event::ALL {
            let json = serde_json::to_value(event).unwrap();
            assert_eq!(json, serde_json::Value::String(event.as_str().into()));
            assert_eq!(Event::parse(event.as_str()), Some(event));
        }
        assert_eq!(Event::parse("Started"), None);
    }
}
