//! Shared harness of the integration tests: the lab (PostgreSQL clusters and moto, started by
//! `scripts/lab.sh up`), the built Lambda binaries served through `cargo lambda watch`, and SNS read back
//! through SQS.

pub mod lab;
pub mod lambda;
pub mod sns;
