//! The pure rules every Lambda and the CLI share: what a DMS reading means, the execution state, the pasted
//! payload, events, bounds, the history budget, names and SQL identifiers. Nothing here imports an adapter
//! (`crate::aws`, `crate::pg`), an SDK or a driver (`tests/layout.rs` checks it), so each rule is tested
//! without any and a change to an adapter cannot change a rule.

pub mod arn;
pub mod bounds;
pub mod connectivity;
pub mod dms_model;
pub mod events;
pub mod history;
pub mod payload;
pub mod recoverable_errors;
pub mod redact;
pub mod schema_objects;
pub mod sentinel;
pub mod sql_ident;
pub mod state;
pub mod table_mapping;
pub mod table_selection;
pub mod tags;
pub mod task_phase;
pub mod way_back;
