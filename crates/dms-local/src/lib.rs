//! dms-local: a local stand-in for AWS DMS for tests and the demo (never deployed). See README.md.

pub mod api;
pub mod assessments;
pub mod connection_messages;
pub mod connection_test;
pub mod control;
pub mod full_load;
pub mod ids;
pub mod latency;
pub mod model;
pub mod pg_connect;
pub mod protocol;
pub mod replication;
pub mod reverse;
pub mod subnet_groups;
pub mod table_mappings;
pub mod task_rules;
pub mod wire;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

pub struct App {
    pub registry: model::Registry,
    pub region: String,
    pub cas: pg_connect::TrustedCas,
    /// None when no AWS configuration is wanted (unit tests); latency is then not published.
    pub cloudwatch: Option<aws_sdk_cloudwatch::Client>,
    /// psql, which holds the replication connection that exports a full load's snapshot.
    pub psql: std::path::PathBuf,
    /// The file behind `cas` (`DMS_LOCAL_CA_FILE`), for psql's `sslrootcert`.
    pub ca_file: Option<std::path::PathBuf>,
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", post(api::handle))
        .route("/control/health", get(control::health))
        .route("/control/instances", post(control::register_instance))
        .route("/control/endpoints", post(control::register_endpoint))
        .route("/control/tasks", post(control::register_task))
        .route("/control/faults", post(control::fault))
        .with_state(app)
}
