//! Everything the migration Lambdas and the `dms-migrate` CLI share: the execution state that flows through
//! the state machine, the error names Step Functions matches on, the notification events, and the plumbing
//! to reach AWS and PostgreSQL.

mod string_enum;

pub mod arn;
pub mod assessment_runs;
pub mod aws;
pub mod bounds;
pub mod checks;
pub mod clock;
pub mod connectivity;
pub mod db_secret;
pub mod defect;
pub mod dms;
pub mod dms_model;
pub mod ec2;
pub mod envelope;
pub mod errors;
pub mod events;
pub mod history;
pub mod metrics;
pub mod notifier;
pub mod payload;
pub mod pg;
pub mod pgpass;
pub mod rds;
pub mod recoverable_errors;
pub mod redact;
pub mod s3;
pub mod schema_objects;
pub mod sentinel;
pub mod sequences;
pub mod sg_rules;
pub mod source_checks;
pub mod sql_ident;
pub mod state;
pub mod table_mapping;
pub mod tags;
pub mod task_phase;

pub use errors::{ErrorName, StepError};
pub use events::Event;
pub use state::ExecutionState;
