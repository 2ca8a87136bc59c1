//! Wall-clock time as the state stores it: whole epoch seconds. Handlers take `now` as an argument so
//! tests control time; only `main` reads the clock.

pub fn now_epoch_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Epoch seconds of an ISO 8601 / RFC 3339 time such as the context object's `$$.Execution.StartTime`
/// (`2019-03-26T20:14:13.192Z`, https://docs.aws.amazon.com/step-functions/latest/dg/input-output-contextobject.html).
pub fn parse_iso8601(text: &str) -> Option<i64> {
    aws_smithy_types::DateTime::from_str(text.trim(), aws_smithy_types::date_time::Format::DateTime)
        .ok()
        .map(|t| t.secs())
}

/// Lambda sends the invocation deadline as epoch milliseconds; `cargo lambda watch` (the local emulator the
/// lab runs the binaries under) sends the function timeout itself (`Lambda-Runtime-Deadline-Ms: 600000`).
/// A "deadline" within a day of the epoch can only be such a duration.
const EMULATOR_DEADLINE_LIMIT: std::time::Duration = std::time::Duration::from_secs(86_400);

/// Time left in this invocation: until `deadline` (the Lambda context's), or the emulator's timeout.
pub fn time_left(
    deadline: std::time::SystemTime,
    now: std::time::SystemTime,
) -> std::time::Duration {
    let since_epoch = deadline
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    if since_epoch < EMULATOR_DEADLINE_LIMIT {
        since_epoch
    } else {
        deadline.duration_since(now).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn time_left_reads_a_lambda_deadline_and_the_emulators_timeout() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(
            time_left(now + Duration::from_secs(900), now),
            Duration::from_secs(900)
        );
        assert_eq!(time_left(now - Duration::from_secs(5), now), Duration::ZERO);
        let emulator = SystemTime::UNIX_EPOCH + Duration::from_millis(600_000);
        assert_eq!(time_left(emulator, now), Duration::from_secs(600));
    }

    #[test]
    fn the_context_objects_start_time_parses() {
        assert_eq!(
            parse_iso8601("2019-03-26T20:14:13.192Z"),
            Some(1_553_631_253)
        );
        assert_eq!(parse_iso8601("yesterday"), None);
    }
}
