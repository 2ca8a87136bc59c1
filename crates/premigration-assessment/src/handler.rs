//! premigration-assessment (docs/architecture.md): `start` runs the SQL checks of both databases and starts a DMS
//! premigration assessment run; `poll` reads the run once and, when it has ended, merges its individual
//! results with the SQL checks kept in the state. Skipped when the task has run before and no reload is
//! asked: the checks describe a database about to be loaded, not one being replicated. With the way back
//! enabled (the stack's `EnableFallback`), the `fallback.*` checks run too, each on the side it reads: a
//! failure among them blocks the way back, not the migration, so it is reported as a warning.

use dms_core::aws::assessment_runs::{Assessments, RunRequest};
use dms_core::aws::db_secret::{endpoint_connect_options, SecretStore};
use dms_core::aws::dms::{Dms, TaskInfo};
use dms_core::envelope::{read_state, write_state};
use dms_core::pg::checks::{self, ids, Check, CheckConfig, CheckStatus, TableSelection};
use dms_core::rules::dms_model::{MigrationType, TaskStatus};
use dms_core::rules::state::{
    AssessmentResult, AssessmentStatus, CheckCounts, CheckSummary, SourceChecksRan, StartMode,
    MAX_NAMES,
};
use dms_core::{ErrorName, StepError};
use serde_json::Value;

use crate::sql_checks::{SqlChecks, NOT_RUN_FIX};

const LAMBDA: &str = "premigration-assessment";
/// Polls before giving up on a run that never ends (× `assessmentPollSeconds`, 30 s by default: an hour).
pub const MAX_POLLS: u32 = 120;
/// The check id of the DMS run itself (not started, or ended in an error state).
pub const RUN_CHECK_ID: &str = "dms.assessment_run";

/// Where the DMS run writes its report: a role DMS assumes and the bucket it writes.
#[derive(Debug, Clone)]
pub struct RunSetup {
    pub role_arn: String,
    pub bucket: String,
}

pub struct Deps<D, A, S, C> {
    pub dms: D,
    pub assessments: A,
    pub secrets: S,
    pub databases: C,
    pub run_setup: Option<RunSetup>,
    /// The stack's `EnableFallback` (`ENABLE_FALLBACK`): run the way back's checks (docs/fallback.md).
    pub fallback: bool,
}

/// `ENABLE_FALLBACK` as the stack sets it from `EnableFallback` (`true` or `false`). Unset (a function
/// deployed before the way back existed, or outside the stack): false, as before. Anything else is a
/// deployment mistake, refused at cold start rather than guessed.
pub fn fallback_enabled(value: Option<&str>) -> Result<bool, String> {
    match value.map(str::trim) {
        None | Some("") | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(format!(
            "ENABLE_FALLBACK is `{other}`; the stack sets it to `true` or `false` from EnableFallback"
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Start,
    Poll,
}

fn read_action(input: &Value) -> Result<Action, StepError> {
    match input.get("action").and_then(Value::as_str) {
        Some("start") => Ok(Action::Start),
        Some("poll") => Ok(Action::Poll),
        other => Err(StepError::payload(format!(
            "{LAMBDA} expects {{\"state\": ..., \"action\": \"start\"|\"poll\"}}; action was {}",
            other.map_or("missing".to_string(), |a| format!("`{a}`"))
        ))),
    }
}

pub async fn handle<D, A, S, C>(
    input: Value,
    deps: &Deps<D, A, S, C>,
    now: i64,
) -> Result<Value, StepError>
where
    D: Dms + Sync,
    A: Assessments + Sync,
    S: SecretStore + Sync,
    C: SqlChecks + Sync,
{
    let action = read_action(&input)?;
    let mut state = read_state(input, LAMBDA)?;
    let result = match action {
        Action::Start => {
            let task = deps.dms.describe_task(&state.replication_task_arn).await?;
            match skip_reason(&task, state.options.start_mode) {
                Some(reason) => AssessmentResult {
                    status: AssessmentStatus::Skipped,
                    reason: Some(reason),
                    ..AssessmentResult::default()
                },
                None => {
                    // The port the stack's rules open and Aurora's groups as sg-autofix found them, for the
                    // advice when the source is unreachable from where the source checks run.
                    let network = SourceNetwork {
                        port: state.source_port,
                        groups: state
                            .results
                            .sg_autofix
                            .as_ref()
                            .map(|r| r.source_groups.clone())
                            .unwrap_or_default(),
                    };
                    start(deps, &task, &network, now).await?
                }
            }
        }
        Action::Poll => {
            let previous = state.results.assessment.take().ok_or_else(|| {
                StepError::payload(format!(
                    "{LAMBDA} poll: the state has no results.assessment; `start` must run first"
                ))
            })?;
            poll(deps, previous).await?
        }
    };
    tracing::info!(status = %result.status, reason = ?result.reason, run = ?result.run_arn, polls = result.polls, counts = ?result.counts, "assessment result");
    state.results.assessment = Some(result);
    write_state(&state)
}

/// Where the source listens, as the security-group rules see it.
struct SourceNetwork {
    port: u16,
    groups: Vec<String>,
}

/// None when the assessment should run: the task has never started, or the target is reloaded anyway.
fn skip_reason(task: &TaskInfo, start_mode: StartMode) -> Option<String> {
    if start_mode == StartMode::Reload {
        return None;
    }
    if task.started_at_epoch_seconds.is_none() && task.status == TaskStatus::Ready {
        return None;
    }
    let started = if task.started_at_epoch_seconds.is_some() {
        "has run before"
    } else {
        "is not in the `ready` state"
    };
    Some(format!(
        "task {} {started} (status `{}`), and startMode is not `reload`: the premigration checks describe a first load, and a DMS assessment run needs a task that is not running. The migration continues with the task as it is",
        task.identifier, task.status
    ))
}

async fn start<D, A, S, C>(
    deps: &Deps<D, A, S, C>,
    task: &TaskInfo,
    network: &SourceNetwork,
    now: i64,
) -> Result<AssessmentResult, StepError>
where
    D: Dms + Sync,
    A: Assessments + Sync,
    S: SecretStore + Sync,
    C: SqlChecks + Sync,
{
    let config = check_config(deps, task).await?;
    let mut all = sql_checks(deps, task, &config, network).await?;
    let run_arn = match &deps.run_setup {
        None => {
            all.push(Check::new(
                RUN_CHECK_ID,
                CheckStatus::Warn,
                "the DMS premigration assessment run was not started: ASSESSMENT_ROLE_ARN or ASSESSMENT_BUCKET is not set on this Lambda",
                Vec::new(),
                "set ASSESSMENT_ROLE_ARN (a role DMS assumes that may write the bucket) and ASSESSMENT_BUCKET on the premigration-assessment function (the stack does), or start an assessment run in the DMS console",
            ));
            None
        }
        Some(setup) => Some(start_run(&deps.assessments, task, setup, now).await?),
    };
    log_checks(&all);
    let mut result = AssessmentResult {
        source_checks: Some(source_checks_ran(&all, deps.databases.source_location())),
        ..AssessmentResult::default()
    };
    add_checks(&mut result, &all);
    match run_arn {
        Some(arn) => {
            result.status = AssessmentStatus::Running;
            result.run_arn = Some(arn);
        }
        None => finish(&mut result),
    }
    Ok(result)
}

/// How many source checks ran (anything but `not_run`), of how many, from where.
fn source_checks_ran(all: &[Check], location: &str) -> SourceChecksRan {
    let count = |ran_only: bool| {
        let n = all
            .iter()
            .filter(|c| ids::SOURCE.contains(&c.id.as_str()))
            .filter(|c| !ran_only || c.status != CheckStatus::NotRun)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    };
    SourceChecksRan {
        ran: count(true),
        total: count(false),
        location: location.to_string(),
    }
}

/// The task's selection rules and migration type decide which tables are checked and what CDC needs.
async fn check_config<D, A, S, C>(
    deps: &Deps<D, A, S, C>,
    task: &TaskInfo,
) -> Result<CheckConfig, StepError>
where
    D: Dms + Sync,
{
    let selection = match deps.dms.task_table_mappings(&task.arn).await? {
        Some(text) => TableSelection::from_dms_table_mappings(&text)?,
        None => TableSelection::all(),
    };
    Ok(CheckConfig {
        selection,
        cdc: task.migration_type != MigrationType::FullLoad,
        ..CheckConfig::default()
    })
}

/// Source checks (inside the VPC when the stack's source-checks function is configured), then target checks
/// (they compare with what the source has). A database that cannot be reached or logged in to turns its
/// checks into `not_run` checks saying why and what to fix (for the source: the missing security-group rule).
async fn sql_checks<D, A, S, C>(
    deps: &Deps<D, A, S, C>,
    task: &TaskInfo,
    config: &CheckConfig,
    network: &SourceNetwork,
) -> Result<Vec<Check>, StepError>
where
    D: Dms + Sync,
    S: SecretStore + Sync,
    C: SqlChecks + Sync,
{
    let fallback = deps.fallback;
    // The ids each side answers for: a side that cannot be read has every one of them `not_run`.
    let side_ids = |own: &[&'static str], way_back: &[&'static str]| -> Vec<&'static str> {
        let mut ids = own.to_vec();
        if fallback {
            ids.extend_from_slice(way_back);
        }
        ids
    };
    let source_ids = side_ids(&ids::SOURCE, &ids::FALLBACK_SOURCE);
    let target_ids = side_ids(&ids::TARGET, &ids::FALLBACK_TARGET);
    let mut all = Vec::new();
    let source_facts = match connect_options(deps, &task.source_endpoint_arn).await? {
        Err(reason) => {
            all.extend(not_run("source", &source_ids, &reason));
            None
        }
        Ok(options) => match deps.databases.source(&options, config, fallback).await {
            Ok((found, facts)) => {
                all.extend(found);
                if fallback {
                    all.extend(unanswered(&all, &ids::FALLBACK_SOURCE));
                }
                Some(facts)
            }
            Err(e) if e.name == ErrorName::PostgresUnreachable => {
                let (summary, fix) =
                    deps.databases
                        .source_not_run(network.port, &network.groups, &e.message);
                all.extend(checks::not_run(&source_ids, &summary, &fix));
                None
            }
            Err(e) if is_unreachable(&e) => {
                all.extend(not_run("source", &source_ids, &e.message));
                None
            }
            Err(e) => return Err(e),
        },
    };
    match connect_options(deps, &task.target_endpoint_arn).await? {
        Err(reason) => all.extend(not_run("target", &target_ids, &reason)),
        Ok(options) => match deps
            .databases
            .target(&options, source_facts.as_ref(), config, fallback)
            .await
        {
            Ok(found) => all.extend(found),
            Err(e) if is_unreachable(&e) => all.extend(not_run("target", &target_ids, &e.message)),
            Err(e) => return Err(e),
        },
    }
    Ok(all.into_iter().map(way_back_blocks_only_itself).collect())
}

/// The way back's Aurora checks an older source-checks function (one that ignores the request's
/// `fallback` flag) did not answer: `not_run`, never a pass.
fn unanswered(found: &[Check], expected: &[&str]) -> Vec<Check> {
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|id| !found.iter().any(|c| c.id == *id))
        .collect();
    checks::not_run(
        &missing,
        "not run: the source-checks function did not answer the way back's checks (a version older than this function's)",
        "update the stack so both functions run the same release, then start a new execution; or run `dms-migrate preflight` from a machine that reaches both databases",
    )
}

/// A failed `fallback.*` check blocks the way back, not the migration (docs/checks.md, "The way back"):
/// in the assessment it is a warning saying so, with the way to migrate without a way back, so the state
/// machine does not stop the forward migration for it.
fn way_back_blocks_only_itself(mut check: Check) -> Check {
    if check.status != CheckStatus::Fail || !ids::FALLBACK.contains(&check.id.as_str()) {
        return check;
    }
    check.status = CheckStatus::Warn;
    check.summary = format!(
        "the way back cannot be armed (the migration itself is not blocked): {}",
        check.summary
    );
    let without = "Or update the stack with EnableFallback = false to migrate without a way back.";
    check.fix = if check.fix.is_empty() {
        without.to_string()
    } else {
        format!("{}\n{without}", check.fix)
    };
    check
}

/// The endpoint's connection options, or (inner Err) why this Lambda cannot connect: an endpoint without
/// a usable secret is a check that cannot run here, not a failed migration.
async fn connect_options<D, A, S, C>(
    deps: &Deps<D, A, S, C>,
    endpoint_arn: &str,
) -> Result<Result<dms_core::pg::PgConnectOptions, String>, StepError>
where
    D: Dms + Sync,
    S: SecretStore + Sync,
{
    let endpoint = deps.dms.describe_endpoint(endpoint_arn).await?;
    match endpoint_connect_options(&endpoint, &deps.secrets).await {
        Ok(options) => Ok(Ok(options)),
        Err(e) if e.name == ErrorName::ConfigInvalid => Ok(Err(e.message)),
        Err(e) => Err(e),
    }
}

fn is_unreachable(e: &StepError) -> bool {
    matches!(
        e.name,
        ErrorName::PostgresUnreachable | ErrorName::PostgresAuthFailed
    )
}

fn not_run(side: &str, check_ids: &[&str], why: &str) -> Vec<Check> {
    checks::not_run(
        check_ids,
        &format!("not run: the {side} database could not be reached from this Lambda ({why})"),
        &format!("{NOT_RUN_FIX}: dms-migrate preflight --source URL --target URL"),
    )
}

async fn start_run<A: Assessments + Sync>(
    assessments: &A,
    task: &TaskInfo,
    setup: &RunSetup,
    now: i64,
) -> Result<String, StepError> {
    let include_only = assessments.applicable_assessments(&task.arn).await?;
    let request = RunRequest {
        task_arn: task.arn.clone(),
        service_access_role_arn: setup.role_arn.clone(),
        result_location_bucket: setup.bucket.clone(),
        // Unique per task: DMS refuses a second run of the same name.
        run_name: format!("dms-migrate-{now}"),
        include_only,
    };
    let run = assessments.start_assessment_run(&request).await?;
    tracing::info!(run = %run.arn, status = %run.status, assessments = ?request.include_only, "DMS assessment run started");
    Ok(run.arn)
}

async fn poll<D, A, S, C>(
    deps: &Deps<D, A, S, C>,
    mut result: AssessmentResult,
) -> Result<AssessmentResult, StepError>
where
    A: Assessments + Sync,
{
    // Only a running assessment is polled; anything else is already final (a re-delivered poll).
    if result.status != AssessmentStatus::Running {
        return Ok(result);
    }
    let run_arn = result.run_arn.clone().ok_or_else(|| {
        StepError::payload(format!(
            "{LAMBDA} poll: results.assessment is `running` without a runArn"
        ))
    })?;
    let Some(run) = deps.assessments.describe_assessment_run(&run_arn).await? else {
        add_checks(
            &mut result,
            &[run_error(&run_arn, "no longer exists (deleted?)")],
        );
        result.reason = Some(format!("the DMS assessment run {run_arn} no longer exists"));
        finish(&mut result);
        return Ok(result);
    };
    result.polls += 1;
    match run.status.as_str() {
        "provisioning" | "starting" | "running" => {
            if result.polls >= MAX_POLLS {
                result.status = AssessmentStatus::Failed;
                result.reason = Some(format!(
                    "the DMS assessment run {run_arn} was still `{}` after {} polls; it never finished. Look at it in the DMS console (task → Premigration assessments), then run the migration again",
                    run.status, result.polls
                ));
            }
            return Ok(result);
        }
        "passed" | "warning" | "failed" => {
            let individual = deps.assessments.individual_assessments(&run_arn).await?;
            let found: Vec<Check> = individual
                .iter()
                .map(|a| individual_check(&a.name, &a.status, deps.run_setup.as_ref()))
                .collect();
            log_checks(&found);
            add_checks(&mut result, &found);
            result.reason = Some(format!("the DMS assessment run ended `{}`", run.status));
        }
        other => {
            // error-provisioning, error-executing, invalid state, cancelling, deleting, or a status this
            // code does not know: the run will not produce results, so the loop ends here.
            let why = run
                .last_failure_message
                .as_deref()
                .unwrap_or("DMS gave no reason");
            add_checks(
                &mut result,
                &[run_error(&run_arn, &format!("ended `{other}`: {why}"))],
            );
            result.reason = Some(format!(
                "the DMS assessment run {run_arn} ended `{other}`: {why}"
            ));
        }
    }
    finish(&mut result);
    Ok(result)
}

fn run_error(run_arn: &str, what: &str) -> Check {
    Check::new(
        RUN_CHECK_ID,
        CheckStatus::Fail,
        format!("the DMS premigration assessment run {what}"),
        vec![run_arn.to_string()],
        "read the run's failure in the DMS console (task → Premigration assessments); check that the assessment role may write the bucket and that DMS reaches the source, then run the migration again",
    )
}

/// One DMS individual assessment as a check: `failed` fails, `warning` warns, anything else passes
/// (`error`, `cancelled` and `skipped` warn: DMS could not tell).
fn individual_check(name: &str, status: &str, setup: Option<&RunSetup>) -> Check {
    let id = format!("dms.{name}");
    let report = setup.map_or_else(
        || "the DMS console (task → Premigration assessments)".to_string(),
        |s| {
            format!(
                "the DMS console (task → Premigration assessments) or the report in s3://{}",
                s.bucket
            )
        },
    );
    let check_status = match status {
        "passed" => CheckStatus::Pass,
        "failed" => CheckStatus::Fail,
        _ => CheckStatus::Warn,
    };
    if check_status == CheckStatus::Pass {
        return Check::pass(&id, format!("DMS assessment {name} passed"));
    }
    Check::new(
        &id,
        check_status,
        format!("DMS assessment {name} ended `{status}`"),
        Vec::new(),
        format!("read the details of {name} in {report}"),
    )
}

/// Adds checks to the counts and the (capped) failure and warning lists.
fn add_checks(result: &mut AssessmentResult, found: &[Check]) {
    let more = checks::counts(found);
    result.counts = CheckCounts {
        pass: result.counts.pass + more.pass,
        warn: result.counts.warn + more.warn,
        fail: result.counts.fail + more.fail,
        not_run: result.counts.not_run + more.not_run,
    };
    let merge = |kept: &mut Vec<CheckSummary>, status: CheckStatus| {
        let mut all: Vec<CheckSummary> = std::mem::take(kept);
        all.extend(
            found
                .iter()
                .filter(|c| c.status == status)
                .map(Check::to_summary),
        );
        all.truncate(MAX_NAMES);
        *kept = all;
    };
    merge(&mut result.failures, CheckStatus::Fail);
    merge(&mut result.warnings, CheckStatus::Warn);
    merge(&mut result.not_run, CheckStatus::NotRun);
}

/// The final verdict: failures block; warnings and checks that could not run are emailed (a check not run
/// is never a pass).
fn finish(result: &mut AssessmentResult) {
    result.status = if result.counts.fail > 0 {
        AssessmentStatus::Failed
    } else if result.counts.warn > 0 || result.counts.not_run > 0 {
        AssessmentStatus::Warnings
    } else {
        AssessmentStatus::Passed
    };
}

/// The state carries at most 20 names per list; the log has every check.
fn log_checks(found: &[Check]) {
    for check in found.iter().filter(|c| c.status != CheckStatus::Pass) {
        tracing::info!(id = %check.id, status = check.status.as_str(), summary = %check.summary, objects = ?check.objects, fix = %check.fix, "check");
    }
}

#[cfg(test)]
mod tests;
