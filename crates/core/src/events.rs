//! The notification events (docs/state-machine-contract.md): one email each. The ASL passes the kebab-case name to `notify`.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    Started,
    ConnectivityFailed,
    SgFixed,
    AssessmentWarnings,
    AssessmentFailed,
    AssessmentSkipped,
    TaskStarted,
    FullLoadComplete,
    /// DMS stopped the task on a recoverable error and restarts it itself (once per execution).
    TaskRecovering,
    ReadyForCutover,
    /// A full-load-only task finished.
    Succeeded,
    TaskFailed,
    MonitoringEnded,
    /// A Catch fired: the state carries `error` with `step`, `Error` and `Cause`.
    Failed,
}

impl Event {
    pub const ALL: [Event; 14] = [
        Event::Started,
        Event::ConnectivityFailed,
        Event::SgFixed,
        Event::AssessmentWarnings,
        Event::AssessmentFailed,
        Event::AssessmentSkipped,
        Event::TaskStarted,
        Event::FullLoadComplete,
        Event::TaskRecovering,
        Event::ReadyForCutover,
        Event::Succeeded,
        Event::TaskFailed,
        Event::MonitoringEnded,
        Event::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::Started => "started",
            Event::ConnectivityFailed => "connectivity-failed",
            Event::SgFixed => "sg-fixed",
            Event::AssessmentWarnings => "assessment-warnings",
            Event::AssessmentFailed => "assessment-failed",
            Event::AssessmentSkipped => "assessment-skipped",
            Event::TaskStarted => "task-started",
            Event::FullLoadComplete => "full-load-complete",
            Event::TaskRecovering => "task-recovering",
            Event::ReadyForCutover => "ready-for-cutover",
            Event::Succeeded => "succeeded",
            Event::TaskFailed => "task-failed",
            Event::MonitoringEnded => "monitoring-ended",
            Event::Failed => "failed",
        }
    }

    pub fn parse(name: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.as_str() == name)
    }

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

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
