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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_objects_start_time_parses() {
        assert_eq!(
            parse_iso8601("2019-03-26T20:14:13.192Z"),
            Some(1_553_631_253)
        );
        assert_eq!(parse_iso8601("yesterday"), None);
    }
}
