//! DMS's error-handling settings for recoverable (environmental) errors, as the stack sets them on the
//! replication task (`ReplicationTaskSettings.ErrorBehavior` in `cloudformation/aurora-to-ps-dms.yaml`;
//! a test checks the two agree), and the bound they put on how long DMS keeps restarting a task.
//!
//! Meaning of each setting, from "Error handling task settings"
//! (<https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TaskSettings.ErrorHandling.html>):
//! - `RecoverableErrorCount`: how many times DMS restarts a task after an environmental error before it
//!   stops for good and waits for a person; `-1` (the default) lets DMS decide, which for several error
//!   kinds means restarting indefinitely. The stack sets a number, so the retrying is bounded.
//! - `RecoverableErrorInterval`: seconds between restart attempts.
//! - `RecoverableErrorThrottling`: when true, the interval doubles after each attempt (5, 10, 20 s, ...).
//! - `RecoverableErrorThrottlingMax`: the longest interval when throttling.
//! - `RecoverableErrorStopRetryAfterThrottlingMax`: when true, DMS stops retrying once the interval
//!   reaches the maximum. The stack sets it false so `RecoverableErrorCount` alone decides when DMS gives
//!   up (with true, DMS gives up no later, so the bound below holds either way).
//!
//! A task DMS is restarting reads `stopped` with `Stop Reason RECOVERABLE_ERROR` between attempts
//! (<https://repost.aws/knowledge-center/dms-task-not-retrying>; `ReplicationTask.StopReason`,
//! <https://docs.aws.amazon.com/dms/latest/APIReference/API_ReplicationTask.html>).

/// The recoverable-error settings of a replication task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoverableErrorSettings {
    pub count: u32,
    pub interval_seconds: u32,
    pub throttling: bool,
    pub throttling_max_seconds: u32,
    pub stop_retry_after_throttling_max: bool,
}

/// What the stack sets. 10 attempts, 5 s doubling up to 30 min: DMS keeps trying through about 73 minutes
/// of waits, long enough for an Aurora failover, a reboot or a maintenance window on either database,
/// and then gives up instead of retrying forever unnoticed.
pub const STACK_SETTINGS: RecoverableErrorSettings = RecoverableErrorSettings {
    count: 10,
    interval_seconds: 5,
    throttling: true,
    throttling_max_seconds: 1800,
    stop_retry_after_throttling_max: false,
};

/// Allowed for each restart attempt itself (the task starting, reconnecting and failing again) on top
/// of DMS's wait before it. The documentation gives no figure; a task start takes seconds to a few
/// minutes.
pub const ATTEMPT_ALLOWANCE_SECONDS: u64 = 180;

impl RecoverableErrorSettings {
    /// DMS's wait before restart attempt `attempt` (0-based).
    pub fn wait_before_attempt(&self, attempt: u32) -> u64 {
        let interval = u64::from(self.interval_seconds);
        if !self.throttling {
            return interval;
        }
        let doubled = interval.saturating_mul(1u64.checked_shl(attempt).unwrap_or(u64::MAX));
        doubled.min(u64::from(self.throttling_max_seconds).max(interval))
    }

    /// The longest a task can stay stopped with `RECOVERABLE_ERROR`, seen by polls minutes apart, while
    /// DMS still means to restart it: every wait of every attempt plus the attempts themselves. Longer
    /// than this, DMS has given up.
    pub fn give_up_after_seconds(&self) -> u64 {
        (0..self.count)
            .map(|attempt| self.wait_before_attempt(attempt) + ATTEMPT_ALLOWANCE_SECONDS)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_maximum() {
        let waits: Vec<u64> = (0..10)
            .map(|a| STACK_SETTINGS.wait_before_attempt(a))
            .collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 640, 1280, 1800]);
        let flat = RecoverableErrorSettings {
            throttling: false,
            ..STACK_SETTINGS
        };
        assert_eq!(flat.wait_before_attempt(9), 5);
        assert_eq!(STACK_SETTINGS.wait_before_attempt(200), 1800);
    }

    #[test]
    fn the_bound_covers_every_attempt_and_stays_under_two_hours() {
        let bound = STACK_SETTINGS.give_up_after_seconds();
        assert_eq!(bound, 4355 + 10 * ATTEMPT_ALLOWANCE_SECONDS);
        assert!(bound < 2 * 3600, "{bound}");
    }
}
