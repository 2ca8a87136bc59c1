//! Shared harness of the integration tests: the lab (PostgreSQL clusters and moto, started by
//! `scripts/lab.sh up`), the built Lambda binaries served through `cargo lambda watch`, and SNS read back
//! through SQS.

pub mod bench;
pub mod bench_shop;
pub mod cfn;
pub mod dms_local;
pub mod lab;
pub mod lambda;
pub mod rig;
pub mod sfn;
pub mod sns;
pub mod template;

/// `name` made unique to this process and call: moto and the lab outlive a test run.
pub fn unique_name(name: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{name}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
