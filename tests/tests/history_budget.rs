//! The whole execution fits Step Functions' limits, counted from statemachine.asl.json itself: every Task's
//! Retry attempts, the assessment loop, the autofix loop, the monitoring loop and the last email.
//!
//! - History: at most 25,000 events (https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html);
//!   the events each state adds are those `dms_core::rules::history` lists (event types of
//!   https://docs.aws.amazon.com/step-functions/latest/apireference/API_HistoryEvent.html).
//! - Duration: at most one year (same page).
//!
//! Retries are unbounded over a whole run by any static limit (every poll may retry 37 times), so the
//! monitoring loop is simulated with poll-progress's run-time guard (`history::may_poll_again`); without it
//! the same worst case overflows, which the test also shows.

use std::collections::BTreeMap;

use dms_core::rules::history::{
    self, task_events, AFTER_POLL_ANSWER, CHOICE_EVENTS, EXECUTION_STARTED_EVENTS, FAIL_EVENTS,
    HISTORY_EVENT_LIMIT, PASS_EVENTS, SUCCEED_EVENTS, WAIT_EVENTS, WORST_ENDING, WORST_ROUND,
    WORST_TASK,
};
use dms_core::rules::payload::{MAX_MONITOR_HOURS_LIMIT, MAX_POLLS_LIMIT};
use integration_tests::lab::workspace_root;
use serde_json::Value;

struct Asl {
    states: BTreeMap<String, Value>,
}

impl Asl {
    fn load() -> Asl {
        let text = std::fs::read_to_string(workspace_root().join("statemachine.asl.json"))
            .expect("statemachine.asl.json");
        let asl: Value = serde_json::from_str(&text).expect("ASL JSON");
        let states = asl["States"]
            .as_object()
            .expect("States")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Asl { states }
    }

    fn state(&self, name: &str) -> &Value {
        self.states
            .get(name)
            .unwrap_or_else(|| panic!("the ASL has no state {name}"))
    }

    /// Lambda attempts one entry into a Task can make: the first plus every retrier's MaxAttempts (default 3).
    fn attempts(&self, name: &str) -> u64 {
        let retries: u64 = self.state(name)["Retry"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|x| x["MaxAttempts"].as_u64().unwrap_or(3))
                    .sum()
            })
            .unwrap_or(0);
        1 + retries
    }

    /// Events of one entry into `name` at its worst.
    fn worst(&self, name: &str) -> u64 {
        match self.state(name)["Type"].as_str().expect("Type") {
            "Task" => task_events(self.attempts(name)),
            "Wait" => WAIT_EVENTS,
            "Choice" => CHOICE_EVENTS,
            "Pass" => PASS_EVENTS,
            "Fail" => FAIL_EVENTS,
            "Succeed" => SUCCEED_EVENTS,
            other => panic!("{name}: state type {other} is not counted"),
        }
    }

    /// Events of one entry into `name` when nothing is retried.
    fn without_retries(&self, name: &str) -> u64 {
        match self.state(name)["Type"].as_str() {
            Some("Task") => task_events(1),
            _ => self.worst(name),
        }
    }

    /// Every state `name` can go to next (Next, Choices, Default, Catch).
    fn successors(&self, name: &str) -> Vec<String> {
        let s = self.state(name);
        let mut next: Vec<String> = Vec::new();
        next.extend(s["Next"].as_str().map(str::to_string));
        next.extend(s["Default"].as_str().map(str::to_string));
        for list in ["Choices", "Catch"] {
            for c in s[list].as_array().into_iter().flatten() {
                next.extend(c["Next"].as_str().map(str::to_string));
            }
        }
        next
    }

    /// Sums `cost` over a path after checking each step is a transition the ASL really has.
    fn path(&self, names: &[&str], cost: impl Fn(&Asl, &str) -> u64) -> u64 {
        for pair in names.windows(2) {
            assert!(
                self.successors(pair[0]).iter().any(|n| n == pair[1]),
                "the ASL has no transition {} -> {}",
                pair[0],
                pair[1]
            );
        }
        names.iter().map(|n| cost(self, n)).sum()
    }
}

/// The assessment loop's bound, read from the Lambda that enforces it.
fn assessment_max_polls() -> u64 {
    let source = std::fs::read_to_string(
        workspace_root().join("crates/premigration-assessment/src/handler.rs"),
    )
    .expect("premigration-assessment source");
    let line = source
        .lines()
        .find(|l| l.starts_with("pub const MAX_POLLS: u32 = "))
        .expect("premigration-assessment defines MAX_POLLS");
    line.trim_start_matches("pub const MAX_POLLS: u32 = ")
        .trim_end_matches(';')
        .replace('_', "")
        .parse()
        .expect("a number")
}

/// The longest way from the start to the first poll-progress answer: autofix and a second connectivity
/// test, then the assessment loop at its bound.
fn before_monitoring(asl: &Asl, cost: impl Fn(&Asl, &str) -> u64 + Copy) -> u64 {
    let head = asl.path(
        &[
            "NotifyStarted",
            "ConnectivityCheck",
            "ConnectivityResult",
            "SgAutofix",
            "NotifySgFixed",
            "ConnectivityCheck",
            "ConnectivityResult",
            "PremigrationAssessmentStart",
            "AssessmentStatus",
        ],
        cost,
    );
    let assessment_round = asl.path(
        &[
            "AssessmentStatus",
            "WaitForAssessment",
            "PremigrationAssessmentPoll",
            "AssessmentStatus",
        ],
        cost,
    ) - cost(asl, "AssessmentStatus");
    let tail = asl.path(
        &[
            "AssessmentStatus",
            "NotifyAssessmentWarnings",
            "StartTask",
            "NotifyTaskStarted",
            "WaitBeforePoll",
            "PollProgress",
        ],
        cost,
    ) - cost(asl, "AssessmentStatus");
    EXECUTION_STARTED_EVENTS + head + assessment_max_polls() * assessment_round + tail
        - AFTER_POLL_ANSWER
}

/// From one poll's answer to the next poll's answer, the full-load-complete email included.
fn round(asl: &Asl, cost: impl Fn(&Asl, &str) -> u64 + Copy) -> u64 {
    asl.path(
        &[
            "PollProgress",
            "ProgressPhase",
            "NotifyFullLoadComplete",
            "WaitBeforePoll",
            "PollProgress",
        ],
        cost,
    ) - cost(asl, "PollProgress")
}

/// From the answer of the poll that ends monitoring to the end of the execution, the worst way: the email
/// fails through every retry and the failure email follows; or the next poll fails and is caught.
fn ending(asl: &Asl, cost: impl Fn(&Asl, &str) -> u64 + Copy) -> u64 {
    let mut worst = 0;
    for (notify, end) in [
        ("NotifyMonitoringEnded", "MonitoringEnded"),
        ("NotifyTaskFailed", "TaskFailed"),
        ("NotifyReadyForCutover", "ReadyForCutover"),
        ("NotifySucceeded", "Succeeded"),
    ] {
        let normal = asl.path(&["PollProgress", "ProgressPhase", notify, end], cost);
        let caught_pass = format!("Caught{notify}");
        let failed = asl.path(
            &[
                "PollProgress",
                "ProgressPhase",
                notify,
                &caught_pass,
                "NotifyFailure",
                "Failed",
            ],
            cost,
        );
        worst = worst.max(normal).max(failed);
    }
    worst - cost(asl, "PollProgress") + AFTER_POLL_ANSWER
}

/// The caught failure of a poll itself, from the previous answer.
fn poll_caught(asl: &Asl) -> u64 {
    asl.path(
        &[
            "PollProgress",
            "ProgressPhase",
            "WaitBeforePoll",
            "PollProgress",
            "CaughtPollProgress",
            "NotifyFailure",
            "Failed",
        ],
        Asl::worst,
    ) - Asl::worst(asl, "PollProgress")
}

/// The worst total when monitoring continues while `may_continue` says so (and maxPolls allows).
fn simulate(asl: &Asl, may_continue: impl Fn(u64) -> bool) -> u64 {
    let mut events = before_monitoring(asl, Asl::worst);
    let mut polls = 1;
    while polls < u64::from(MAX_POLLS_LIMIT) && may_continue(events) {
        events += round(asl, Asl::worst);
        polls += 1;
    }
    events + ending(asl, Asl::worst)
}

#[test]
fn every_task_retries_within_what_the_guard_reserves() {
    let asl = Asl::load();
    for (name, s) in &asl.states {
        if s["Type"] == "Task" {
            assert!(
                asl.worst(name) <= WORST_TASK,
                "{name}: {} events",
                asl.worst(name)
            );
        }
    }
    assert!(round(&asl, Asl::worst) <= WORST_ROUND);
    assert!(ending(&asl, Asl::worst) <= WORST_ENDING);
    assert!(poll_caught(&asl) + AFTER_POLL_ANSWER <= WORST_ROUND + WORST_ENDING);
}

#[test]
fn the_worst_case_execution_ends_with_an_email_inside_25000_events() {
    let asl = Asl::load();
    let before = before_monitoring(&asl, Asl::worst);
    assert!(
        history::may_poll_again(before) || before + ending(&asl, Asl::worst) <= HISTORY_EVENT_LIMIT,
        "the path before monitoring alone ({before} events) leaves no room for the ending"
    );
    let with_guard = simulate(&asl, history::may_poll_again);
    assert!(
        with_guard <= HISTORY_EVENT_LIMIT,
        "worst case with the guard: {with_guard} events"
    );
    // What the limits alone allowed before the guard: every poll retried to the end overflows the history,
    // and the execution would die without an email.
    let without_guard = simulate(&asl, |_| true);
    assert!(without_guard > HISTORY_EVENT_LIMIT, "{without_guard}");
}

#[test]
fn without_retries_max_polls_rounds_fit_so_the_guard_only_acts_on_retries() {
    let asl = Asl::load();
    let plain_round = asl.path(
        &[
            "PollProgress",
            "ProgressPhase",
            "WaitBeforePoll",
            "PollProgress",
        ],
        Asl::without_retries,
    ) - Asl::without_retries(&asl, "PollProgress");
    assert_eq!(plain_round, 9, "Wait, poll, Choice: the design's 9 events");
    let total = before_monitoring(&asl, Asl::without_retries)
        + (u64::from(MAX_POLLS_LIMIT) - 1) * plain_round
        + Asl::without_retries(&asl, "NotifyFullLoadComplete")
        + ending(&asl, Asl::without_retries);
    assert!(
        total + WORST_ROUND + WORST_ENDING <= HISTORY_EVENT_LIMIT,
        "maxPolls {MAX_POLLS_LIMIT} without any retry already needs {total} events"
    );
}

/// Seconds one entry into a Task may take at its worst: every attempt runs to TimeoutSeconds, and every
/// retry waits its longest (IntervalSeconds × BackoffRate^n, capped by MaxDelaySeconds).
fn task_seconds(asl: &Asl, name: &str) -> f64 {
    let s = asl.state(name);
    let timeout = s["TimeoutSeconds"].as_f64().unwrap_or(60.0);
    let mut waits = 0.0;
    for r in s["Retry"].as_array().into_iter().flatten() {
        let interval = r["IntervalSeconds"].as_f64().unwrap_or(1.0);
        let rate = r["BackoffRate"].as_f64().unwrap_or(2.0);
        let cap = r["MaxDelaySeconds"].as_f64().unwrap_or(f64::MAX);
        for n in 0..r["MaxAttempts"].as_u64().unwrap_or(3) {
            waits += (interval * rate.powi(n as i32)).min(cap);
        }
    }
    timeout * asl.attempts(name) as f64 + waits
}

#[test]
fn the_longest_execution_stays_well_under_one_year() {
    let asl = Asl::load();
    let tasks: f64 = asl
        .states
        .iter()
        .filter(|(_, s)| s["Type"] == "Task")
        .map(|(name, _)| task_seconds(&asl, name))
        .fold(0.0, f64::max);
    // Waits take at most an hour (pollIntervalSeconds, assessmentPollSeconds ≤ 3600; nextPollSeconds
    // reaches the deadline at most): before monitoring, ~10 Task entries and 120 assessment rounds.
    let before = 10.0 * tasks + assessment_max_polls() as f64 * (3600.0 + tasks);
    // The deadline counts from the execution's start; after it, one wait, one poll and the ending.
    let monitoring = f64::from(MAX_MONITOR_HOURS_LIMIT) * 3600.0;
    let after = 3600.0 + 4.0 * tasks;
    let total_days = (before.max(monitoring) + after) / 86_400.0;
    assert!(
        total_days < 200.0,
        "worst case {total_days:.0} days of the 365 allowed"
    );
}
