//! Everything the migration Lambdas and the `dms-migrate` CLI share, in three groups: `rules` (the execution
//! state that flows through the state machine, what a DMS reading means, the notification events, bounds:
//! pure, no outside capability), `aws` (one adapter per AWS service behind its capability trait) and `pg`
//! (PostgreSQL connections and the SQL checks). At the top: the error names Step Functions matches on, the
//! Lambda envelope around a step's state, the panic guard and the clock.

mod string_enum;

pub mod aws;
pub mod clock;
pub mod defect;
pub mod envelope;
pub mod errors;
pub mod pg;
pub mod rules;

pub use errors::{ErrorName, StepError};
pub use rules::events::Event;
pub use rules::state::ExecutionState;
