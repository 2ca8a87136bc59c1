//! What DMS reports about a task, an instance, an endpoint and a connection test, as dms-core's own types: the
//! pure rules (`task_phase`, `state`) read these without depending on the DMS adapter (`crate::aws::dms`) or the
//! AWS SDK.

use std::fmt;

use crate::string_enum::{string_enum, FixedText};

string_enum! {
    /// `ReplicationTask.Status`, the values the API reference lists
    /// (<https://docs.aws.amazon.com/dms/latest/APIReference/API_ReplicationTask.html>).
    pub enum TaskStatus {
        Creating => "creating",
        Ready => "ready",
        Starting => "starting",
        Running => "running",
        Stopping => "stopping",
        Stopped => "stopped",
        Failed => "failed",
        FailedMove => "failed-move",
        Modifying => "modifying",
        Moving => "moving",
        Deleting => "deleting",
        Testing => "testing",
    }
}

string_enum! {
    /// `ReplicationTask.MigrationType`.
    pub enum MigrationType {
        FullLoad => "full-load",
        Cdc => "cdc",
        FullLoadAndCdc => "full-load-and-cdc",
    }
}

/// A value DMS reported, read once at the adapter: one its documentation lists, or one it does not, kept as
/// DMS spelled it so a message can name it. Rules act on `Known` only; `Unlisted` fails closed (monitoring
/// stops, a start is refused) rather than being taken for a value it resembles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reported<T> {
    Known(T),
    Unlisted(String),
}

impl<T: FixedText> Reported<T> {
    pub fn read(text: &str) -> Self {
        T::parse_text(text).map_or_else(|| Reported::Unlisted(text.to_owned()), Reported::Known)
    }

    pub fn known(&self) -> Option<T> {
        match self {
            Reported::Known(value) => Some(*value),
            Reported::Unlisted(_) => None,
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Reported::Known(value) => value.text(),
            Reported::Unlisted(text) => text,
        }
    }
}

/// What a task reads before DMS has said anything: an empty, unlisted value.
impl<T> Default for Reported<T> {
    fn default() -> Self {
        Reported::Unlisted(String::new())
    }
}

impl<T: FixedText> From<&str> for Reported<T> {
    fn from(text: &str) -> Self {
        Reported::read(text)
    }
}

impl<T: FixedText> From<T> for Reported<T> {
    fn from(value: T) -> Self {
        Reported::Known(value)
    }
}

impl<T: FixedText + PartialEq> PartialEq<T> for Reported<T> {
    fn eq(&self, other: &T) -> bool {
        self.known() == Some(*other)
    }
}

impl<T: FixedText> fmt::Display for Reported<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Written as DMS's text; any text reads back (an unlisted one as `Unlisted`), so a state holding a status
/// DMS added later still parses and the rule that reads it decides.
impl<T: FixedText> serde::Serialize for Reported<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de, T: FixedText> serde::Deserialize<'de> for Reported<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(Reported::read(&text))
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskInfo {
    pub arn: String,
    pub identifier: String,
    pub status: Reported<TaskStatus>,
    /// As DMS reports it, e.g. `Stop Reason FULL_LOAD_ONLY_FINISHED`.
    pub stop_reason: Option<String>,
    pub last_failure_message: Option<String>,
    pub migration_type: Reported<MigrationType>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_value_reads_known_and_an_unlisted_one_keeps_its_text() {
        assert_eq!(
            Reported::<TaskStatus>::read("failed-move"),
            Reported::Known(TaskStatus::FailedMove)
        );
        let odd = Reported::<TaskStatus>::read("Running");
        assert_eq!(
            odd,
            Reported::Unlisted("Running".into()),
            "DMS's text is exact"
        );
        assert_eq!(odd.known(), None);
        assert!(odd != TaskStatus::Running);
        assert_eq!(odd.to_string(), "Running");
    }

    #[test]
    fn state_json_keeps_the_text_both_ways() {
        for text in ["stopped", "rebooting"] {
            let reported = Reported::<TaskStatus>::read(text);
            let json = serde_json::to_string(&reported).expect("serialise");
            assert_eq!(json, format!("\"{text}\""));
            let back: Reported<TaskStatus> = serde_json::from_str(&json).expect("any text reads");
            assert_eq!(back, reported);
        }
    }
}
