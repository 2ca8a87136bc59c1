//! start-task: reads the DMS task and starts, resumes or reloads it as its real state calls for
//! (`start_rules`), refusing — with what to do instead — whenever a start would duplicate rows or another
//! execution already drives the task. Safe to re-run: a task already running is left alone, and a reload
//! empties the mapped target tables again before loading them. Before a fresh start or a reload, a plan
//! file in the stack's bucket (`plan_file`) is checked and applied with ModifyReplicationTask; a task that
//! already holds it is not modified again.

use dms_core::aws::db_secret::{endpoint_connect_options, SecretStore};
use dms_core::aws::dms::{Dms, DmsModify, StartType, TaskInfo};
use dms_core::envelope::{read_state, write_state};
use dms_core::rules::dms_model::TaskStatus;
use dms_core::rules::state::{capped, ExecutionState, StartAction, StartTaskResult};
use dms_core::rules::table_mapping::TableMappings;
use dms_core::rules::task_phase::full_load_finished;
use dms_core::{ErrorName, StepError};
use serde_json::Value;

use crate::executions::Executions;
use crate::plan_file;
use crate::plan_source::PlanSource;
use crate::start_rules::{plan, way_back_refusal, History, Plan};
use crate::target_tables::TargetTables;

pub struct Deps<D, S, E, T, M, P> {
    pub dms: D,
    pub secrets: S,
    pub executions: E,
    pub target_tables: T,
    pub modify: M,
    pub plans: P,
    /// The way back's reverse task (WAY_BACK_TASK_ARN), when the stack created it.
    pub way_back_task_arn: Option<String>,
}

pub async fn handle<D, S, E, T, M, P>(
    input: Value,
    deps: &Deps<D, S, E, T, M, P>,
) -> Result<Value, StepError>
where
    D: Dms + Sync,
    S: SecretStore + Sync,
    E: Executions + Sync,
    T: TargetTables + Sync,
    M: DmsModify + Sync,
    P: PlanSource + Sync,
{
    let mut state = read_state(input, "start-task")?;
    let task_arn = state.replication_task_arn.clone();
    let task = deps.dms.describe_task(&task_arn).await?;
    refuse_if_another_execution_runs(&deps.executions, &state).await?;
    let history = history(&deps.dms, &task).await?;
    let mut plan = plan(&task, history, &state.options);
    if let Some(reverse_arn) = &deps.way_back_task_arn {
        let reverse = match deps.dms.describe_task(reverse_arn).await {
            Ok(reverse) => Some(reverse),
            // Deleted with EnableFallback false: nothing to guard.
            Err(e) if e.name == ErrorName::AwsNotFound => None,
            Err(e) => return Err(e),
        };
        if let Some(reason) = reverse.and_then(|r| way_back_refusal(&r, &plan)) {
            plan = Plan::Refuse { reason };
        }
    }
    tracing::info!(task = %task_arn, status = %task.status, stop_reason = ?task.stop_reason, ?history, ?plan, "start-task plan");
    let mut result = StartTaskResult {
        status_before: task.status.to_string(),
        ..StartTaskResult::default()
    };
    match plan {
        Plan::Refuse { reason } => {
            return Err(StepError::new(
                ErrorName::TaskRestartRefused,
                format!("start-task did not start {task_arn}: {reason}"),
            ))
        }
        Plan::Wait { reason } => return Err(StepError::new(ErrorName::DmsInvalidState, reason)),
        Plan::Nothing { reason } => {
            result.action = StartAction::Untouched;
            result.reason = reason;
            result.plan = plan_not_applied(deps, "the task is already running").await?;
        }
        Plan::Start {
            start_type,
            truncate,
            reason,
        } => {
            if start_type == StartType::ResumeProcessing {
                result.plan = plan_not_applied(
                    deps,
                    "the task resumes where it stopped; a plan applies to a fresh start or a reload",
                )
                .await?;
            } else if let Some(applied) = apply_plan(deps, &task).await? {
                result.plan = Some(applied);
            }
            if truncate {
                let emptied = empty_mapped_target_tables(deps, &task).await?;
                let (shown, total) = capped(&emptied);
                result.truncated_tables = shown;
                result.truncated_total = total;
            }
            deps.dms.start_task(&task_arn, start_type).await?;
            result.action = start_type.into();
            result.reason = reason;
        }
    }
    state.results.start_task = Some(result);
    state.monitor.next_poll_seconds = state.options.poll_interval_seconds;
    write_state(&state)
}

async fn refuse_if_another_execution_runs<E: Executions>(
    executions: &E,
    state: &ExecutionState,
) -> Result<(), StepError> {
    let others = executions
        .others_running_for_task(&state.replication_task_arn, &state.context.execution_id)
        .await?;
    if others.is_empty() {
        return Ok(());
    }
    let (shown, total) = capped(&others);
    Err(StepError::new(
        ErrorName::TaskRestartRefused,
        format!(
            "{total} other execution(s) of this state machine already run for task {}: {}. Two executions would drive one task and send two sets of emails. Nothing was started. Let that execution finish (or stop it in the Step Functions console), then start a new one if needed",
            state.replication_task_arn,
            shown.join(", ")
        ),
    ))
}

/// Whether the task ran before and finished its full load. The table statistics are read only when the
/// task's own statistics cannot tell (a stopped task whose FullLoadFinishDate is not set).
async fn history<D: Dms>(dms: &D, task: &TaskInfo) -> Result<History, StepError> {
    let stats = task.stats.as_ref();
    let has_run = task.started_at_epoch_seconds.is_some()
        || stats.is_some_and(|s| {
            s.full_load_start_epoch_seconds.is_some()
                || s.tables_loaded > 0
                || s.tables_loading > 0
                || s.tables_errored > 0
        });
    let restartable = matches!(
        task.status.known(),
        Some(TaskStatus::Ready | TaskStatus::Stopped | TaskStatus::Failed | TaskStatus::FailedMove)
    );
    let full_load_finished = if full_load_finished(stats, &[]) {
        true
    } else if restartable && has_run {
        full_load_finished(stats, &dms.table_statistics(&task.arn).await?)
    } else {
        false
    };
    Ok(History {
        has_run,
        full_load_finished,
    })
}

/// How long start-task waits for DMS to finish modifying the task after it applied a plan: polls of
/// `MODIFY_POLL`, at most `MODIFY_POLLS` of them (one minute, well within the function's timeout).
const MODIFY_POLL: std::time::Duration = std::time::Duration::from_secs(5);
const MODIFY_POLLS: u32 = 12;

/// The plan file, checked against the target's tables and applied to the task unless it already holds
/// it. After ModifyReplicationTask DMS shows the task `modifying` and refuses to start it: start-task
/// waits (bounded) for it to leave that state; past the wait it ends `Dms.InvalidState`, which the state
/// machine retries, and the retry finds the plan applied and starts the task. None without a plan file.
async fn apply_plan<D, S, E, T, M, P>(
    deps: &Deps<D, S, E, T, M, P>,
    task: &TaskInfo,
) -> Result<Option<String>, StepError>
where
    D: Dms + Sync,
    S: SecretStore + Sync,
    T: TargetTables + Sync,
    M: DmsModify + Sync,
    P: PlanSource + Sync,
{
    let Some(bytes) = deps.plans.read().await? else {
        return Ok(None);
    };
    let location = deps.plans.location().unwrap_or_default();
    let endpoint = deps
        .dms
        .describe_endpoint(&task.target_endpoint_arn)
        .await?;
    let target = endpoint_connect_options(&endpoint, &deps.secrets).await?;
    let catalog = deps.target_tables.list(&target).await?;
    let checked = plan_file::check(&bytes, &catalog).map_err(|why| {
        StepError::new(
            ErrorName::PlanInvalid,
            format!("{location}: {why}. Nothing was applied and the task was not started"),
        )
    })?;
    let applied = format!("{location} applied: {}", checked.summary);
    let current = deps.modify.task_documents(&task.arn).await?;
    if plan_file::already_applied(
        &checked,
        current.table_mappings.as_deref(),
        current.settings.as_deref(),
    ) {
        return Ok(Some(applied));
    }
    deps.modify
        .modify_task(
            &task.arn,
            Some(&checked.table_mappings.to_string()),
            &plan_file::full_settings(&checked, current.settings.as_deref()).to_string(),
        )
        .await?;
    tracing::info!(task = %task.arn, plan = %location, summary = %checked.summary, "plan applied with ModifyReplicationTask");
    for poll in 0..=MODIFY_POLLS {
        let status = deps.dms.describe_task(&task.arn).await?.status;
        if status != TaskStatus::Modifying {
            return Ok(Some(applied));
        }
        if poll < MODIFY_POLLS {
            tokio::time::sleep(MODIFY_POLL).await;
        }
    }
    Err(StepError::new(
        ErrorName::DmsInvalidState,
        format!(
            "{location} applied to {} with ModifyReplicationTask ({}); DMS is still modifying the task, so this step runs again",
            task.arn, checked.summary
        ),
    ))
}

/// Why an existing plan file was left alone, for the task-started email; None without a plan file.
async fn plan_not_applied<D, S, E, T, M, P>(
    deps: &Deps<D, S, E, T, M, P>,
    why: &str,
) -> Result<Option<String>, StepError>
where
    P: PlanSource + Sync,
{
    Ok(deps.plans.read().await?.map(|_| {
        format!(
            "{} not applied: {why}",
            deps.plans.location().unwrap_or_default()
        )
    }))
}

/// Resolves the task's mappings against the target catalog and empties exactly those tables. The full
/// list goes to the log; the state carries at most `MAX_NAMES`.
async fn empty_mapped_target_tables<D, S, E, T, M, P>(
    deps: &Deps<D, S, E, T, M, P>,
    task: &TaskInfo,
) -> Result<Vec<String>, StepError>
where
    D: Dms + Sync,
    S: SecretStore + Sync,
    T: TargetTables + Sync,
{
    let refused = |why: String| {
        StepError::new(
            ErrorName::TaskRestartRefused,
            format!(
                "start-task did not empty the target tables of {}: {why}. Nothing was started",
                task.arn
            ),
        )
    };
    let mappings_text = deps
        .dms
        .task_table_mappings(&task.arn)
        .await?
        .ok_or_else(|| refused("DMS returned no table mappings for the task".to_string()))?;
    let mappings = TableMappings::parse(&mappings_text).map_err(refused)?;
    if !mappings.renaming_rules.is_empty() {
        return Err(refused(format!(
            "the task's transformation rules rename schemas or tables ({}), so the target names cannot be derived from the source names safely; empty the target tables yourself",
            mappings.renaming_rules.join("; ")
        )));
    }
    let endpoint = deps
        .dms
        .describe_endpoint(&task.target_endpoint_arn)
        .await?;
    let target = endpoint_connect_options(&endpoint, &deps.secrets).await?;
    let catalog = deps.target_tables.list(&target).await?;
    let mapped: Vec<(String, String)> = mappings.select(&catalog).into_iter().cloned().collect();
    if mapped.is_empty() {
        return Err(refused(format!(
            "none of the task's mapped tables exists on the target {}; create the schema first (`dms-migrate schema apply`)",
            target.describe()
        )));
    }
    let names: Vec<String> = mapped
        .iter()
        .map(|(schema, table)| {
            format!(
                "{}.{}",
                dms_core::rules::sql_ident::quote_if_needed(schema),
                dms_core::rules::sql_ident::quote_if_needed(table)
            )
        })
        .collect();
    tracing::info!(target = %target.describe(), count = names.len(), tables = ?names, "emptying the mapped target tables before the reload");
    deps.target_tables.truncate(&target, &mapped).await?;
    Ok(names)
}

#[cfg(test)]
mod tests;
