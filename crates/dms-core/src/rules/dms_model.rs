//! What DMS reports about a task, an instance, an endpoint and a connection test, as dms-core's own types: the
//! pure rules (`task_phase`, `state`) read these without depending on the DMS adapter (`crate::aws::dms`) or the
//! AWS SDK.

use crate::string_enum::string_enum;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskInfo {
    pub arn: String,
    pub identifier: String,
    /// creating, ready, starting, running, stopping, stopped, failed, failed-move, modifying, moving,
    /// deleting, testing — kept as DMS spells it so an unknown value is reported raw.
    pub status: String,
    /// As DMS reports it, e.g. `Stop Reason FULL_LOAD_ONLY_FINISHED`.
    pub stop_reason: Option<String>,
    pub last_failure_message: Option<String>,
    /// full-load, cdc, full-load-and-cdc.
    pub migration_type: String,
    pub table_mappings: Option<String>,
    pub source_endpoint_arn: String,
    pub target_endpoint_arn: String,
    pub instance_arn: String,
    /// When the task was last started; None when it has never run.
    pub started_at_epoch_seconds: Option<f64>,
    pub stats: Option<TaskStats>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskStats {
    pub full_load_progress_percent: i32,
    pub tables_loaded: i32,
    pub tables_loading: i32,
    pub tables_queued: i32,
    pub tables_errored: i32,
    pub full_load_start_epoch_seconds: Option<f64>,
    pub full_load_finish_epoch_seconds: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableStat {
    pub schema: String,
    pub table: String,
    /// `Table does not exist`, `Before load`, `Full load`, `Table completed`, `Table cancelled`,
    /// `Table error`, `Table is being reloaded`.
    pub state: String,
    pub full_load_rows: i64,
    pub inserts: i64,
    pub updates: i64,
    pub deletes: i64,
    pub validation_state: Option<String>,
}

impl TableStat {
    /// `schema.table` with each part quoted only where PostgreSQL needs it.
    pub fn qualified_name(&self) -> String {
        format!(
            "{}.{}",
            crate::rules::sql_ident::quote_if_needed(&self.schema),
            crate::rules::sql_ident::quote_if_needed(&self.table)
        )
    }
}

string_enum! {
    pub enum StartType {
        StartReplication => "start-replication",
        ResumeProcessing => "resume-processing",
        ReloadTarget => "reload-target",
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceInfo {
    pub arn: String,
    /// Stored lowercase by DMS; the CloudWatch `ReplicationInstanceIdentifier` dimension.
    pub identifier: String,
    pub status: String,
    pub vpc_id: Option<String>,
    pub security_group_ids: Vec<String>,
    pub publicly_accessible: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointInfo {
    pub arn: String,
    pub identifier: String,
    /// `source` or `target`.
    pub endpoint_type: String,
    pub engine: String,
    pub server: Option<String>,
    pub port: Option<i32>,
    pub database: Option<String>,
    pub username: Option<String>,
    pub ssl_mode: Option<String>,
    /// The Secrets Manager secret holding host, port, username, password and dbname.
    pub secret_id: Option<String>,
    /// `Endpoint.Status` as DMS reports it. The API reference lists no values ("The status of the
    /// endpoint", <https://docs.aws.amazon.com/dms/latest/APIReference/API_Endpoint.html>); a usable endpoint
    /// reads `active`.
    pub status: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionInfo {
    /// successful, testing, failed, deleting.
    pub status: String,
    pub last_failure_message: Option<String>,
}
