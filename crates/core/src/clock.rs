//! Wall-clock time as the state stores it: whole epoch seconds. Handlers take `now` as an argument so
//! tests control time; only `main` reads the clock.

pub fn now_epoch_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
