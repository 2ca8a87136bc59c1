//! The server's in-memory state: what the control API registered and what the replication engine
//! observed. One `std::sync::Mutex` guards it; it is never held across an `.await`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct Instance {
    pub arn: String,
    /// Stored lowercase, as DMS does: it is the CloudWatch `ReplicationInstanceIdentifier`.
    pub identifier: String,
    pub security_group_ids: Vec<String>,
    pub vpc_id: String,
    pub publicly_accessible: bool,
    pub created: f64,
    /// A `ReplicationInstanceStatus` held by the `holdStatus` fault (e.g. `modifying`); `None` reads
    /// `available`.
    pub held_status: Option<String>,
}

impl Instance {
    pub fn status(&self) -> &str {
        self.held_status.as_deref().unwrap_or("available")
    }
}

/// A password that never reaches a `Debug`, a log line or a Describe answer.
#[derive(Clone)]
pub struct Password(pub String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub arn: String,
    pub identifier: String,
    /// `source` or `target` (DMS answers it uppercase in DescribeEndpoints).
    pub endpoint_type: String,
    pub engine: String,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub username: String,
    pub password: Password,
    /// DMS's spelling: none, require, verify-ca, verify-full.
    pub ssl_mode: String,
    pub secret_id: Option<String>,
    /// `PostgreSQLSettings.SlotName` of a source endpoint: a CDC-only task on it reads that existing
    /// slot (src/reverse.rs) instead of a publication and subscription of its own.
    pub slot_name: Option<String>,
    /// `PostgreSQLSettings.PluginName` (`test-decoding`, `pglogical`, `no-preference`), as registered.
    pub plugin_name: Option<String>,
    /// An `Endpoint.Status` held by the `holdStatus` fault (e.g. `modifying`); `None` reads `active`.
    pub held_status: Option<String>,
}

impl Endpoint {
    pub fn status(&self) -> &str {
        self.held_status.as_deref().unwrap_or("active")
    }
}

#[derive(Debug, Clone)]
pub struct Connection {
    pub instance_arn: String,
    pub endpoint_arn: String,
    /// testing, successful, failed.
    pub status: String,
    pub last_failure_message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationType {
    FullLoad,
    Cdc,
    FullLoadAndCdc,
}

impl MigrationType {
    pub fn parse(text: &str) -> Option<MigrationType> {
        match text {
            "full-load" => Some(MigrationType::FullLoad),
            "cdc" => Some(MigrationType::Cdc),
            "full-load-and-cdc" => Some(MigrationType::FullLoadAndCdc),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MigrationType::FullLoad => "full-load",
            MigrationType::Cdc => "cdc",
            MigrationType::FullLoadAndCdc => "full-load-and-cdc",
        }
    }

    pub fn has_full_load(self) -> bool {
        self != MigrationType::Cdc
    }

    pub fn has_cdc(self) -> bool {
        self != MigrationType::FullLoad
    }
}

/// What an API call asked the replication engine to do on its next tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingAction {
    StartReplication,
    ResumeProcessing,
    ReloadTarget,
    Stop,
    /// The `failTask` fault: the task is already reported failed; the engine disables the subscription.
    Fail,
    /// The `recoverableError` fault: the task is already reported stopped with RECOVERABLE_ERROR; the
    /// engine disables the subscription (and restarts the task at `Task::restart_at`, if set).
    RecoverableStop,
    /// ModifyReplicationTask was accepted: the task reports `modifying` until the next tick puts back the
    /// status it had (`stopped`, `failed` or `ready`), as DMS reports `modifying` while it applies a change.
    Modified(String),
}

/// DescribeTableStatistics `TableState` values (DMS spelling).
pub mod table_state {
    pub const BEFORE_LOAD: &str = "Before load";
    pub const FULL_LOAD: &str = "Full load";
    pub const COMPLETED: &str = "Table completed";
    pub const ERROR: &str = "Table error";
    pub const RELOADING: &str = "Table is being reloaded";
}

/// What DMS's data validation reports for a table (`ValidationState`, `ValidationFailedRecords`).
#[derive(Debug, Clone)]
pub struct Validation {
    pub state: String,
    pub failed_records: i64,
}

/// The `ValidationState` values DMS documents
/// (<https://docs.aws.amazon.com/dms/latest/APIReference/API_TableStatistics.html>).
pub const VALIDATION_STATES: [&str; 11] = [
    "Not enabled",
    "Pending records",
    "Mismatched records",
    "Suspended records",
    "No primary key",
    "Table error",
    "Pending validation",
    "Preparing table",
    "Pending revalidation",
    "Validated",
    "Error",
];

#[derive(Debug, Clone)]
pub struct TableProgress {
    pub schema: String,
    pub table: String,
    pub state: &'static str,
    /// Rows the full load copied, summed over the table's segments.
    pub full_load_rows: i64,
    pub inserts: i64,
    pub updates: i64,
    pub deletes: i64,
    pub full_load_start: Option<f64>,
    pub full_load_end: Option<f64>,
    pub last_update: f64,
    pub reloaded: bool,
    /// pg_stat_user_tables (n_tup_ins, n_tup_upd, n_tup_del) on the target when this load began.
    pub counters_before_load: (i64, i64, i64),
    /// The same counters as they stand when the load completed (the copied rows added to the inserts):
    /// changes after it count as CDC inserts/updates/deletes.
    pub counters_at_load_end: Option<(i64, i64, i64)>,
}

impl TableProgress {
    pub fn new(schema: &str, table: &str, now: f64) -> TableProgress {
        TableProgress {
            schema: schema.to_string(),
            table: table.to_string(),
            state: table_state::BEFORE_LOAD,
            full_load_rows: 0,
            inserts: 0,
            updates: 0,
            deletes: 0,
            full_load_start: None,
            full_load_end: None,
            last_update: now,
            reloaded: false,
            counters_before_load: (0, 0, 0),
            counters_at_load_end: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentState {
    Pending,
    Copying,
    Done,
    Failed,
}

/// One unit of the full load: a whole table, or one range of a table with a `parallel-load` `ranges` rule.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Index in `Task::tables`.
    pub table: usize,
    /// The WHERE clause of the range; None copies the whole table.
    pub predicate: Option<String>,
    pub state: SegmentState,
    pub rows: i64,
}

#[derive(Debug, Clone)]
pub struct Task {
    pub arn: String,
    pub identifier: String,
    pub instance_arn: String,
    pub source_arn: String,
    pub target_arn: String,
    pub migration_type: MigrationType,
    /// The table-mapping JSON as text, exactly as DMS returns it.
    pub table_mappings: String,
    pub created: f64,
    pub status: String,
    pub stop_reason: Option<String>,
    pub last_failure_message: Option<String>,
    /// The `holdStatus` fault: reported (and enforced by Start/Stop) instead of `status`.
    pub held_status: Option<String>,
    pub pause_table_sync: bool,
    /// The `validationState` fault per (schema, table): dms-local does not validate data, so a table's
    /// `ValidationState` is `Not enabled` unless a test sets what DMS's validation would report.
    pub validation: std::collections::BTreeMap<(String, String), Validation>,
    pub ever_started: bool,
    pub start_date: Option<f64>,
    pub fresh_start_date: Option<f64>,
    pub stop_date: Option<f64>,
    pub full_load_start: Option<f64>,
    pub full_load_finish: Option<f64>,
    pub tables: Vec<TableProgress>,
    pub pending: Option<PendingAction>,
    /// The full load's segments (empty for a CDC-only task).
    pub segments: Vec<Segment>,
    /// `FullLoadSettings.MaxFullLoadSubTasks` when the load started: segments copied at once.
    pub max_subtasks: usize,
    /// Bumped by every load: a copy of an earlier load that is still finishing records nothing.
    pub load_generation: u64,
    /// The running full load (its copies stop when it is aborted).
    pub load: Option<tokio::task::AbortHandle>,
    /// Whether the task's logical slot exists on the source (created with the load's snapshot).
    pub slot_exists: bool,
    /// Whether a subscription exists on the target / is enabled (the engine's view).
    pub subscription_exists: bool,
    pub subscription_enabled: bool,
    /// `TargetMetadata.LobMaxSize` of the task's settings, in KB (what DescribeReplicationTasks reports).
    pub lob_max_size_kb: u32,
    /// The `recoverableError` fault's `restartAfterSeconds`: when DMS restarts the stopped task by itself.
    pub restart_at: Option<Instant>,
    /// The task settings JSON given at registration (DescribeReplicationTasks returns it), if any.
    pub settings: Option<String>,
    /// `TargetMetadata.BatchApplyEnabled` of those settings (DMS's default is false).
    pub batch_apply: bool,
    /// Set by a `start-replication` of a CDC-only task whose source endpoint names a `SlotName`: the task
    /// is then served by src/reverse.rs from that slot, from `CdcStartPosition`.
    pub slot_stream: Option<crate::reverse::SlotStream>,
}

/// The LobMaxSize a task registered without one reports.
pub const DEFAULT_LOB_MAX_SIZE_KB: u32 = 32;

impl Task {
    /// A task as registration leaves it: `ready`, never run, nothing created, DMS's default settings. The
    /// control route and the tests change the fields they need.
    pub fn registered(arn: String, identifier: String, migration_type: MigrationType) -> Task {
        Task {
            arn,
            identifier,
            instance_arn: String::new(),
            source_arn: String::new(),
            target_arn: String::new(),
            migration_type,
            table_mappings: String::new(),
            created: 0.0,
            status: task_status::READY.to_string(),
            stop_reason: None,
            last_failure_message: None,
            held_status: None,
            pause_table_sync: false,
            validation: std::collections::BTreeMap::new(),
            ever_started: false,
            start_date: None,
            fresh_start_date: None,
            stop_date: None,
            full_load_start: None,
            full_load_finish: None,
            tables: Vec::new(),
            pending: None,
            segments: Vec::new(),
            max_subtasks: crate::full_load::DEFAULT_MAX_SUBTASKS,
            load_generation: 0,
            load: None,
            slot_exists: false,
            subscription_exists: false,
            subscription_enabled: false,
            lob_max_size_kb: DEFAULT_LOB_MAX_SIZE_KB,
            restart_at: None,
            settings: None,
            batch_apply: false,
            slot_stream: None,
        }
    }

    pub fn reported_status(&self) -> &str {
        self.held_status.as_deref().unwrap_or(&self.status)
    }

    pub fn full_load_finished(&self) -> bool {
        self.full_load_finish.is_some()
    }

    /// Publication, subscription and slot share this name: lowercase so it needs no quoting.
    pub fn replication_name(&self) -> String {
        format!(
            "dms_local_{}",
            crate::ids::resource_id_of(&self.arn).to_ascii_lowercase()
        )
    }
}

pub mod task_status {
    pub const READY: &str = "ready";
    pub const STARTING: &str = "starting";
    pub const RUNNING: &str = "running";
    pub const STOPPING: &str = "stopping";
    pub const STOPPED: &str = "stopped";
    pub const FAILED: &str = "failed";
    pub const MODIFYING: &str = "modifying";
}

pub mod stop_reason {
    pub const NORMAL: &str = "Stop Reason NORMAL";
    pub const FULL_LOAD_ONLY_FINISHED: &str = "Stop Reason FULL_LOAD_ONLY_FINISHED";
    pub const FATAL_ERROR: &str = "Stop Reason FATAL_ERROR";
    pub const RECOVERABLE_ERROR: &str = "Stop Reason RECOVERABLE_ERROR";
}

#[derive(Debug, Clone)]
pub struct IndividualAssessment {
    pub arn: String,
    pub name: String,
    /// pending, running, passed, warning, failed, error, skipped.
    pub status: String,
    pub start_date: Option<f64>,
    /// What the probe found (names of offending objects, the setting's value): kept for the README's
    /// promise that results are real; DMS puts this in the S3 report, which dms-local does not write.
    pub detail: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AssessmentRun {
    pub arn: String,
    pub task_arn: String,
    pub name: String,
    /// provisioning, running, passed, warning, failed, error-executing.
    pub status: String,
    pub created: f64,
    pub service_access_role_arn: String,
    pub result_location_bucket: String,
    pub result_location_folder: Option<String>,
    pub last_failure_message: Option<String>,
    pub assessments: Vec<IndividualAssessment>,
    /// The `assessmentError` fault was armed when this run started.
    pub fail_execution: bool,
}

/// A replication subnet group (CreateReplicationSubnetGroup). dms-local knows no subnet's VPC or zone.
#[derive(Debug, Clone)]
pub struct SubnetGroup {
    /// Stored lowercase, as DMS stores it.
    pub identifier: String,
    pub description: String,
    pub subnet_ids: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Inner {
    pub instances: Vec<Instance>,
    pub endpoints: Vec<Endpoint>,
    pub tasks: Vec<Task>,
    pub connections: Vec<Connection>,
    pub assessment_runs: Vec<AssessmentRun>,
    /// Operation name → how many more calls answer ThrottlingException.
    pub throttles: HashMap<String, u32>,
    /// Operation name → how many more calls answer AccessDeniedFault (what DMS answers while it cannot
    /// use `dms-vpc-role`, e.g. just after the role was created).
    pub access_denials: HashMap<String, u32>,
    pub subnet_groups: Vec<SubnetGroup>,
    pub next_assessment_run_errors: bool,
}

impl Inner {
    pub fn task(&self, arn: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.arn == arn)
    }

    pub fn task_mut(&mut self, arn: &str) -> Option<&mut Task> {
        self.tasks.iter_mut().find(|t| t.arn == arn)
    }

    pub fn endpoint(&self, arn: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.arn == arn)
    }

    pub fn instance(&self, arn: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.arn == arn)
    }

    /// Consumes one throttle of `operation`; true when this call must be throttled.
    pub fn take_access_denial(&mut self, operation: &str) -> bool {
        match self.access_denials.get_mut(operation) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }

    pub fn take_throttle(&mut self, operation: &str) -> bool {
        match self.throttles.get_mut(operation) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }
}

#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Inner>,
    /// Rung by a start or stop request so the engine acts on it now instead of at its next tick: a task's
    /// start and stop then take the engine's work, not up to a tick of waiting, and timings measured
    /// against dms-local (the cutover bench) do not carry a random share of a tick.
    wake: tokio::sync::Notify,
}

impl Registry {
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// A poisoned lock only means another request panicked mid-update; the data is still usable here.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}
