//! Everything the migration Lambdas and the `dms-migrate` CLI share: the execution state that flows through
//! the state machine, the error names Step Functions matches on, the notification events, and the plumbing
//! to reach AWS and PostgreSQL.

pub mod arn;
pub mod aws;
pub mod dms;
pub mod errors;
pub mod events;
pub mod notifier;
pub mod payload;
pub mod pg;
pub mod redact;
pub mod sql_ident;
pub mod state;

pub use errors::{ErrorName, StepError};
pub use events::Event;
pub use state::ExecutionState;
