//! Test doubles shared by every crate's tests: one configurable fake per outside capability, a canned HTTP server for the
//! answers no emulator gives, and the valid
//! execution-state fixture. A dev-dependency only, never in a deployed binary. It is a crate rather than a
//! `test-util` feature of `dms-core` because a feature enabled by dev-dependencies alone would compile `dms-core`
//! and every Lambda twice (docs/architecture.md, "Dependency features").

mod dms;
mod http;
mod state;

pub use dms::FakeDms;
pub use http::{CannedHttp, CannedResponse};
pub use state::{StateFixture, INSTANCE_ARN, SOURCE_ARN, SOURCE_HOST, TARGET_ARN, TASK_ARN};
