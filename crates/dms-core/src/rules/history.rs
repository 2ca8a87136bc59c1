//! Step Functions' history budget. A Standard execution holds at most 25,000 history events; past that it
//! fails with no Catch and no email (https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html,
//! "Maximum execution history size"). Every state and every Lambda attempt spends events, so the budget is
//! counted for the whole machine, retries included:
//!
//! - a Task state: `TaskStateEntered` and `TaskStateExited`, plus per Lambda attempt
//!   `LambdaFunctionScheduled`, `LambdaFunctionStarted` and one of `LambdaFunctionSucceeded` /
//!   `LambdaFunctionFailed` / `LambdaFunctionTimedOut`; a Retry adds one such attempt;
//! - a Wait, Choice or Pass state: its `...StateEntered` and `...StateExited`;
//! - a Fail state: `FailStateEntered` and `ExecutionFailed`; a Succeed state: `SucceedStateEntered`,
//!   `SucceedStateExited`, `ExecutionSucceeded`; the execution itself: `ExecutionStarted`.
//!
//! The event types are those of https://docs.aws.amazon.com/step-functions/latest/apireference/API_HistoryEvent.html;
//! AWS does not publish a per-state count, so these are the counts a console history shows, taken as an
//! upper bound. Events are numbered from one in order (same page), so the newest event's `id` is the number
//! spent so far: poll-progress reads it (GetExecutionHistory, newest first, one event) and ends monitoring
//! with an email while the rest of the worst case still fits (`may_poll_again`). A test
//! (tests/tests/history_budget.rs) recomputes every constant here from statemachine.asl.json.

/// Events one execution may hold.
pub const HISTORY_EVENT_LIMIT: u64 = 25_000;

pub const EXECUTION_STARTED_EVENTS: u64 = 1;
pub const TASK_STATE_EVENTS: u64 = 2;
pub const LAMBDA_ATTEMPT_EVENTS: u64 = 3;
pub const WAIT_EVENTS: u64 = 2;
pub const CHOICE_EVENTS: u64 = 2;
pub const PASS_EVENTS: u64 = 2;
pub const FAIL_EVENTS: u64 = 2;
pub const SUCCEED_EVENTS: u64 = 3;

/// The most Lambda attempts one entry into a Task state can make: the first, plus every Retry's
/// `MaxAttempts` (each retrier counts its own attempts, so a mix of errors can use them all).
pub const MAX_ATTEMPTS_PER_TASK: u64 = 1 + 6 + 8 + 3 + 20;

/// Events of one entry into a Task state that makes `attempts` Lambda attempts.
pub const fn task_events(attempts: u64) -> u64 {
    TASK_STATE_EVENTS + LAMBDA_ATTEMPT_EVENTS * attempts
}

/// A Task state at its worst: every retry used.
pub const WORST_TASK: u64 = task_events(MAX_ATTEMPTS_PER_TASK);

/// A poll-progress invocation sees the events up to its own `LambdaFunctionStarted`; two follow its
/// answer: `LambdaFunctionSucceeded` and `TaskStateExited`.
pub const AFTER_POLL_ANSWER: u64 = 2;

/// From a poll that ends monitoring to the end: its remaining events, the Choice, the email Task, and if
/// that email fails through every retry, the Catch's Pass, the failure email and the Fail state.
pub const WORST_ENDING: u64 =
    AFTER_POLL_ANSWER + CHOICE_EVENTS + WORST_TASK + PASS_EVENTS + WORST_TASK + FAIL_EVENTS;

/// From a poll that keeps monitoring to the next poll's answer: its remaining events, the Choice, the
/// full-load-complete email (at most once, counted every time), the Wait, and the next poll with every retry.
pub const WORST_ROUND: u64 =
    AFTER_POLL_ANSWER + CHOICE_EVENTS + WORST_TASK + WAIT_EVENTS + WORST_TASK;

/// Whether one more monitoring round may start when `events_so_far` events are in the history: after the
/// worst round, the worst ending (an email, or the failure email) must still fit.
pub fn may_poll_again(events_so_far: u64) -> bool {
    events_so_far + WORST_ROUND + WORST_ENDING <= HISTORY_EVENT_LIMIT
}

/// Why monitoring ends early when `may_poll_again` says no.
pub fn budget_reason(events_so_far: u64) -> String {
    format!(
        "This execution's history holds {events_so_far} events and Step Functions keeps at most {HISTORY_EVENT_LIMIT}: monitoring ends now so this email is still sent (retries during the run spent part of the budget)"
    )
}

/// Turns a reading that would keep monitoring into `monitoring-ended` when `may_poll_again` says no;
/// a reading that ends monitoring anyway is left alone (its ending is in the reserve). True when it ended.
pub fn end_monitoring_if_history_runs_short(
    progress: &mut crate::rules::state::ProgressResult,
    events_so_far: u64,
) -> bool {
    use crate::rules::task_phase::Phase;
    let continuing = matches!(
        progress.phase,
        Phase::Loading | Phase::CatchingUp | Phase::FullLoadComplete
    );
    if !continuing || may_poll_again(events_so_far) {
        return false;
    }
    let last = std::mem::replace(&mut progress.phase, Phase::MonitoringEnded);
    let why = progress.reason.take().unwrap_or_default();
    progress.reason = Some(format!(
        "{}. Last reading: {last} — {why}",
        budget_reason(events_so_far)
    ));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_a_few_hundred_events() {
        assert_eq!(WORST_TASK, 116);
        assert!(may_poll_again(0));
        assert!(may_poll_again(
            HISTORY_EVENT_LIMIT - WORST_ROUND - WORST_ENDING
        ));
        assert!(!may_poll_again(
            HISTORY_EVENT_LIMIT - WORST_ROUND - WORST_ENDING + 1
        ));
        let reserve = WORST_ROUND + WORST_ENDING;
        assert_eq!(reserve, 478, "a few hundred events of the 25,000");
    }

    #[test]
    fn a_continuing_reading_ends_when_the_history_runs_short() {
        use crate::rules::task_phase::Phase;
        let reading = |phase: Phase| crate::rules::state::ProgressResult {
            phase,
            reason: Some("12 of 40 tables loaded".to_string()),
            ..Default::default()
        };
        let mut early = reading(Phase::Loading);
        assert!(!end_monitoring_if_history_runs_short(&mut early, 900));
        assert_eq!(early.phase, Phase::Loading);

        let late = HISTORY_EVENT_LIMIT - 300;
        let mut loading = reading(Phase::Loading);
        assert!(end_monitoring_if_history_runs_short(&mut loading, late));
        assert_eq!(loading.phase, Phase::MonitoringEnded);
        let reason = loading.reason.unwrap();
        assert!(
            reason.contains("25000") && reason.contains("12 of 40"),
            "{reason}"
        );

        let mut failed = reading(Phase::Failed);
        assert!(!end_monitoring_if_history_runs_short(&mut failed, late));
        assert_eq!(
            failed.phase,
            Phase::Failed,
            "an ending reading keeps its own email"
        );
    }
}
