//! poll-progress: one reading of the DMS task per invocation — its status, stop reason and statistics,
//! its table statistics, and (while CDC can run) its CloudWatch CDC latency — turned by dms-core's phase rules
//! into `results.progress` and the updated `monitor` (docs/state-machine-contract.md). A business outcome (failed, monitoring
//! ended) is data for the ASL's Choice; only an AWS call that fails is an error.

use dms_core::aws::dms::{Dms, TableStat, TaskInfo};
use dms_core::aws::metrics::{Metrics, TaskMetricsKey};
use dms_core::envelope::{read_state, write_state};
use dms_core::rules::arn::DmsArn;
use dms_core::rules::dms_model::{MigrationType, TaskStatus};
use dms_core::rules::history;
use dms_core::rules::state::ExecutionState;
use dms_core::rules::task_phase::{assess, CdcLatency, Reading};
use dms_core::{ErrorName, StepError};
use serde_json::Value;

use crate::history::History;

pub struct Deps<D, M, H> {
    pub dms: D,
    pub metrics: M,
    pub history: H,
}

pub async fn handle<D, M, H>(
    input: Value,
    deps: &Deps<D, M, H>,
    now: i64,
) -> Result<Value, StepError>
where
    D: Dms + Sync,
    M: Metrics + Sync,
    H: History + Sync,
{
    let mut state = read_state(input, "poll-progress")?;
    let task_arn = state.replication_task_arn.clone();
    let task = deps.dms.describe_task(&task_arn).await?;
    let tables = table_statistics(&deps.dms, &task).await?;
    let latency = if may_be_in_cdc(&task) {
        cdc_latency(deps, &state, &task, now).await?
    } else {
        CdcLatency::default()
    };
    let reading = Reading {
        task: &task,
        tables: &tables,
        latency,
    };
    let mut assessment = assess(&reading, &state.monitor, &state.options, now);
    // Retries spend history events the poll count cannot see: end monitoring (with its email) while the
    // worst case of the rest still fits in the 25,000 events.
    if let Some(events) = deps
        .history
        .events_so_far(&state.context.execution_id)
        .await?
    {
        history::end_monitoring_if_history_runs_short(&mut assessment.progress, events);
    }
    log_reading(&task, &tables, &assessment.progress);
    state.monitor = assessment.monitor;
    state.results.progress = Some(assessment.progress);
    write_state(&state)
}

/// DMS may answer InvalidResourceStateFault for a task that has not produced statistics yet (never
/// started); that is "no tables yet", not a failure of this poll.
async fn table_statistics<D: Dms>(dms: &D, task: &TaskInfo) -> Result<Vec<TableStat>, StepError> {
    match dms.table_statistics(&task.arn).await {
        Ok(tables) => Ok(tables),
        Err(err) if err.name == ErrorName::DmsInvalidState => {
            tracing::info!(task = %task.arn, status = %task.status, error = %err, "no table statistics yet");
            Ok(Vec::new())
        }
        Err(err) => Err(err),
    }
}

/// CDC latency exists only while a CDC-capable task runs; any other reading needs no metric call.
fn may_be_in_cdc(task: &TaskInfo) -> bool {
    task.status == TaskStatus::Running
        && task
            .migration_type
            .known()
            .is_some_and(|m| m != MigrationType::FullLoad)
}

async fn cdc_latency<D, M, H>(
    deps: &Deps<D, M, H>,
    state: &ExecutionState,
    task: &TaskInfo,
    now: i64,
) -> Result<CdcLatency, StepError>
where
    D: Dms + Sync,
    M: Metrics + Sync,
{
    let instance_arn = if task.instance_arn.is_empty() {
        state.replication_instance_arn.as_str()
    } else {
        task.instance_arn.as_str()
    };
    // The metric dimension is the instance's identifier (stored lowercase), not the id in its ARN.
    let instance = deps.dms.describe_instance(instance_arn).await?;
    let task_resource_id = if state.context.task_id.is_empty() {
        DmsArn::parse(&task.arn, "task")
            .map(|a| a.resource_id)
            .map_err(|why| StepError::payload(format!("replicationTaskArn {}: {why}", task.arn)))?
    } else {
        state.context.task_id.clone()
    };
    let key = TaskMetricsKey {
        instance_identifier: instance.identifier.to_lowercase(),
        task_resource_id,
    };
    deps.metrics.cdc_latency(&key, now).await
}

/// The whole lists go to the log; the state carries at most `MAX_NAMES` of each.
fn log_reading(
    task: &TaskInfo,
    tables: &[TableStat],
    progress: &dms_core::rules::state::ProgressResult,
) {
    let in_state = |keep: &dyn Fn(&TableStat) -> bool| -> Vec<String> {
        tables
            .iter()
            .filter(|t| keep(t))
            .map(|t| format!("{} ({})", t.qualified_name(), t.state))
            .collect()
    };
    let errors = in_state(&|t| t.state == dms_core::rules::task_phase::TABLE_ERROR);
    let warnings = in_state(&|t| {
        t.validation_state
            .as_deref()
            .is_some_and(|v| dms_core::rules::task_phase::VALIDATION_WARNINGS.contains(&v))
    });
    tracing::info!(
        task = %task.arn,
        status = %task.status,
        stop_reason = ?task.stop_reason,
        phase = %progress.phase,
        reason = ?progress.reason,
        tables = tables.len(),
        error_tables = ?errors,
        warning_tables = ?warnings,
        latency_source = ?progress.cdc_latency_source_seconds,
        latency_target = ?progress.cdc_latency_target_seconds,
        "poll-progress reading"
    );
}

#[cfg(test)]
mod tests;
