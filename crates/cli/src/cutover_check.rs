//! `dms-migrate cutover-check`: is it safe to switch the application to the target? One line per
//! condition, each green or saying why not and what to do: the task runs CDC (dms-core's phase rules, as the
//! poll-progress Lambda decides them), no table is in error, CDC latency stayed under target for the whole
//! window (CloudWatch), a row written on the source now reaches the target in time (the sentinel), every
//! target sequence is ahead, and no transaction on the source is holding changes back.
//! Run again after application writes stop: a green run then proves the drain.
//! Exit 0 ready, 1 not ready, 2 could not run.

use std::time::{Duration, Instant};

use dms_core::aws::dms::{Dms, DmsClient, TableStat, TaskInfo};
use dms_core::aws::metrics::{CloudWatchMetrics, TaskMetricsKey};
use dms_core::clock;
use dms_core::errors::{ErrorName, StepError};
use dms_core::pg::checks::{self, Check, CheckStatus};
use dms_core::pg::classify_pg_error;
use dms_core::pg::sequences::{self, BehindReason};
use dms_core::rules::arn::DmsArn;
use dms_core::rules::dms_model::{MigrationType, TaskStatus};
use dms_core::rules::sentinel;
use dms_core::rules::state::{Monitor, Options};
use dms_core::rules::table_mapping::TableMappings;
use dms_core::rules::task_phase::{self, CdcLatency, Phase, Reading};
use serde::Serialize;
use tokio_postgres::Client;

use crate::connection::{BothDatabases, Connected, Environment};
use crate::output::{Format, Outcome, Progress};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub databases: BothDatabases,
    /// The DMS task (the stack output's replicationTaskArn).
    #[arg(long, value_name = "ARN")]
    pub task_arn: String,
    /// CDC latency and the sentinel round trip must stay under this (the state machine's
    /// cdcLatencyTargetSeconds default).
    #[arg(long, value_name = "SECONDS", default_value_t = Options::default().cdc_latency_target_seconds,
          value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub latency_target: u32,
    /// How far back CloudWatch's CDC latency must have stayed under target.
    #[arg(long, value_name = "MINUTES", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=180))]
    pub window: u32,
    /// A transaction (or prepared transaction) open on the source longer than this is not ready.
    #[arg(long, value_name = "SECONDS", default_value_t = checks::CheckConfig::default().long_transaction_seconds,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub long_transaction_seconds: u32,
    /// The migrated schemas (the sentinel lives in the first); default: found from the sentinel table and
    /// the task's table mappings, sequences of every non-system schema.
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub schemas: Vec<String>,
    #[command(flatten)]
    pub way_back_slot: crate::fallback::Slot,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Line ids: stable, for scripts reading `--format json`.
mod ids {
    pub const TASK: &str = "cutover.task";
    pub const TABLE_ERRORS: &str = "cutover.table_errors";
    pub const CDC_LATENCY: &str = "cutover.cdc_latency";
    pub const SENTINEL: &str = "cutover.sentinel";
    pub const SEQUENCES: &str = "cutover.sequences";
    pub const TRANSACTIONS: &str = "cutover.transactions";
    pub const WAY_BACK: &str = "cutover.way_back";
}

#[derive(Serialize)]
struct Report<'a> {
    ready: bool,
    #[serde(rename = "taskArn")]
    task_arn: &'a str,
    checks: &'a [Check],
}

/// The sentinel is polled this often on the target while the row travels.
const SENTINEL_POLL: Duration = Duration::from_millis(100);

pub async fn run(args: Args, env: &Environment) -> Result<Outcome, StepError> {
    let progress = Progress::for_stderr();
    let task_arn = args.task_arn.trim().to_string();
    DmsArn::parse(&task_arn, "task")
        .map_err(|why| StepError::payload(format!("--task-arn `{task_arn}`: {why}")))?;
    let Connected {
        source,
        target,
        source_client,
        target_client,
    } = args.databases.connect(env, &progress).await?;

    let config = dms_core::aws::load_config().await;
    let dms = DmsClient::new(aws_sdk_databasemigration::Client::new(&config));
    progress.say("reading the DMS task");
    let task = dms.describe_task(&task_arn).await?;
    let tables = match dms.table_statistics(&task_arn).await {
        Ok(tables) => tables,
        // A task that never ran has no statistics yet: no tables, not a failure.
        Err(err) if err.name == ErrorName::DmsInvalidState => Vec::new(),
        Err(err) => return Err(err),
    };
    let in_cdc = task.status == TaskStatus::Running
        && task
            .migration_type
            .known()
            .is_some_and(|m| m != MigrationType::FullLoad);
    let now = clock::now_epoch_seconds();
    let latency = if in_cdc {
        progress.say("reading CDC latency from CloudWatch");
        let metrics = CloudWatchMetrics::new(aws_sdk_cloudwatch::Client::new(&config));
        let key = metrics_key(&dms, &task).await?;
        metrics
            .cdc_latency_worst(&key, now, i64::from(args.window) * 60)
            .await?
    } else {
        CdcLatency::default()
    };

    let mut lines = task_lines(&task, &tables, latency, &args, now);
    progress.say("sending a sentinel row from the source to the target");
    lines.push(sentinel_line(&source_client, &target_client, &task, in_cdc, &args).await?);
    progress.say("comparing sequences");
    lines.push(sequences_line(&source_client, &target_client, &args.schemas).await?);
    lines.push(transactions_line(&source_client, args.long_transaction_seconds).await?);
    lines.push(way_back_line(&target_client, &args.way_back_slot.name).await?);

    let ready = lines.iter().all(|c| c.status == CheckStatus::Pass);
    match args.format {
        Format::Json => {
            let report = Report {
                ready,
                task_arn: &task_arn,
                checks: &lines,
            };
            let text = serde_json::to_string_pretty(&report)
                .map_err(|e| StepError::config(format!("rendering JSON: {e}")))?;
            println!("{text}");
        }
        Format::Text => print!(
            "{}",
            render_text(&lines, &task_arn, &source.describe(), &target.describe())
        ),
    }
    Ok(if ready { Outcome::Ok } else { Outcome::Failed })
}

/// The way back's slot on the target. Before the switch there is none: `cutover` creates it in the freeze,
/// and stops when it finds one (it may be an earlier cutover's armed way back). One already there is
/// reported with the WAL it holds on PlanetScale, as `fallback status` does.
async fn way_back_line(target: &Client, slot: &str) -> Result<Check, StepError> {
    Ok(match crate::fallback::slot_report(target, slot).await? {
        None => Check::pass(
            ids::WAY_BACK,
            format!("no slot {slot} on the target yet: cutover creates the way back's slot at the switch"),
        ),
        Some((report, _)) => Check::new(
            ids::WAY_BACK,
            CheckStatus::Fail,
            report,
            vec![slot.to_string()],
            "cutover stops when the way back's slot already exists. If the application already writes to the target, this is the armed way back: watch it with `dms-migrate fallback status`, do not cut over again. Otherwise drop it with `dms-migrate fallback end` (or name another with --way-back-slot) and run cutover-check again",
        ),
    })
}

/// The CloudWatch dimensions: the instance's identifier (DMS stores it lowercase), not the id in its ARN.
async fn metrics_key(dms: &DmsClient, task: &TaskInfo) -> Result<TaskMetricsKey, StepError> {
    if task.instance_arn.is_empty() {
        return Err(StepError::new(
            ErrorName::AwsRejected,
            format!("DMS reports no replication instance for task {}", task.arn),
        ));
    }
    let instance = dms.describe_instance(&task.instance_arn).await?;
    let task_resource_id = DmsArn::parse(&task.arn, "task")
        .map(|a| a.resource_id)
        .map_err(|why| StepError::payload(format!("task ARN {}: {why}", task.arn)))?;
    Ok(TaskMetricsKey {
        instance_identifier: instance.identifier.to_lowercase(),
        task_resource_id,
    })
}

/// Task, table errors and CDC latency, from one reading judged by dms-core's phase rules. The rules are run
/// as for a single poll that may already count as ready (one consecutive poll, load announced), so the
/// phase says what the task is doing now; the latency line applies the window's worst value itself.
fn task_lines(
    task: &TaskInfo,
    tables: &[TableStat],
    latency: CdcLatency,
    args: &Args,
    now: i64,
) -> Vec<Check> {
    let options = Options {
        cdc_latency_target_seconds: args.latency_target,
        ready_after_consecutive_polls: 1,
        ..Options::default()
    };
    let monitor = Monitor {
        // Far enough that the monitoring budget never ends this single reading.
        deadline_epoch_seconds: now.saturating_add(86_400),
        polls: 0,
        consecutive_ready_polls: 0,
        full_load_announced: true,
        next_poll_seconds: 0,
        recovering_since_epoch_seconds: None,
        recovery_announced: false,
    };
    let reading = Reading {
        task,
        tables,
        latency,
    };
    let assessment = task_phase::assess(&reading, &monitor, &options, now);
    let reason = assessment.progress.reason.clone().unwrap_or_default();
    let running = task.status == TaskStatus::Running;
    let task_line = if running
        && matches!(assessment.phase, Phase::CatchingUp | Phase::ReadyForCutover)
    {
        Check::pass(
            ids::TASK,
            format!(
                "the task is running {} and replicating changes (phase {})",
                task.migration_type,
                assessment.phase.as_str()
            ),
        )
    } else {
        let mut summary = format!(
            "the task is {} (phase {}): {reason}",
            task.status,
            assessment.phase.as_str()
        );
        if let Some(message) = task
            .last_failure_message
            .as_deref()
            .filter(|m| !m.is_empty())
        {
            summary.push_str(&format!("; DMS says: {message}"));
        }
        let fix = match assessment.phase {
            Phase::Loading => "wait: the full load has not finished; run cutover-check again when it has".to_string(),
            Phase::Succeeded => "a full-load-only task replicates no changes: cutover needs a full-load-and-cdc or cdc task".to_string(),
            Phase::Failed => "fix the cause above, then start a new execution of the state machine with the same input (it resumes the task, or refuses saying why when that would duplicate rows)".to_string(),
            _ => format!("wait for the task to run; if it stays {}, start a new execution of the state machine with the same input to resume it", task.status),
        };
        Check::new(ids::TASK, CheckStatus::Fail, summary, Vec::new(), fix)
    };

    let error_tables: Vec<String> = tables
        .iter()
        .filter(|t| t.state == task_phase::TABLE_ERROR)
        .map(TableStat::qualified_name)
        .collect();
    let errored = assessment.progress.tables_errored;
    let table_line = if error_tables.is_empty() && errored == 0 {
        Check::pass(
            ids::TABLE_ERRORS,
            format!("no table in error ({} tables reported)", tables.len()),
        )
    } else if error_tables.is_empty() {
        Check::new(
            ids::TABLE_ERRORS,
            CheckStatus::Fail,
            format!("DMS counts {errored} table(s) in error but does not name them"),
            Vec::new(),
            "read the task's CloudWatch log for the tables and their errors, fix the cause, then reload those tables (console: the task, Table statistics, Reload table data)",
        )
    } else {
        Check::new(
            ids::TABLE_ERRORS,
            CheckStatus::Fail,
            format!(
                "{} table(s) in `Table error`: {}",
                error_tables.len(),
                error_tables.join(", ")
            ),
            error_tables,
            "read the task's CloudWatch log for each table's error, fix the cause (often the target table differs from the source), then reload those tables (console: the task, Table statistics, Reload table data)",
        )
    };

    vec![task_line, table_line, latency_line(latency, args, running)]
}

fn latency_line(latency: CdcLatency, args: &Args, running: bool) -> Check {
    let limit = f64::from(args.latency_target);
    let window = args.window;
    let shown = |v: Option<f64>| v.map_or("no data".to_string(), |s| format!("{s:.1} s"));
    let text = format!(
        "worst CDC latency over the last {window} min: source {}, target {} (target under {} s)",
        shown(latency.source_seconds),
        shown(latency.target_seconds),
        args.latency_target
    );
    match (latency.source_seconds, latency.target_seconds) {
        _ if !running => Check::new(
            ids::CDC_LATENCY,
            CheckStatus::Fail,
            "no CDC latency to read: the task is not running CDC",
            Vec::new(),
            "see the task line",
        ),
        (Some(s), Some(t)) if s < limit && t < limit => Check::pass(ids::CDC_LATENCY, text),
        (None, _) | (_, None) => Check::new(
            ids::CDC_LATENCY,
            CheckStatus::Fail,
            format!("{text}: CloudWatch has no datapoint, which is not the same as zero (DMS publishes CDCLatencySource/CDCLatencyTarget only while CDC runs)"),
            Vec::new(),
            "wait a minute or two after CDC starts and run cutover-check again; if the data never comes, check the task runs CDC and that this machine reads CloudWatch in the task's region",
        ),
        _ => Check::new(
            ids::CDC_LATENCY,
            CheckStatus::Fail,
            format!("{text}: CDC is behind"),
            Vec::new(),
            format!("wait for CDC to catch up and run cutover-check again; the whole window must stay under target, so this takes at least {window} min after the last slow minute"),
        ),
    }
}

/// Where the sentinel lives: the first schema of `--schemas`, else the first schema on the source holding
/// it that the task's table mappings select.
pub(crate) async fn sentinel_schema(
    source: &Client,
    task: &TaskInfo,
    schemas: &[String],
) -> Result<Option<String>, StepError> {
    if let Some(first) = schemas.first() {
        return Ok(Some(first.clone()));
    }
    let rows = source
        .query(
            "SELECT n.nspname::text FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relname = $1 AND c.relkind IN ('r', 'p') ORDER BY 1",
            &[&sentinel::TABLE],
        )
        .await
        .map_err(|e| classify_pg_error("finding the sentinel table on the source", &e))?;
    let found: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let mappings = task
        .table_mappings
        .as_deref()
        .and_then(|m| TableMappings::parse(m).ok());
    Ok(found
        .iter()
        .find(|s| mappings.as_ref().is_none_or(|m| m.maps(s, sentinel::TABLE)))
        .or(found.first())
        .cloned())
}

pub(crate) async fn table_exists(
    client: &Client,
    qualified: &str,
    side: &str,
) -> Result<bool, StepError> {
    client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&qualified])
        .await
        .map(|r| r.get(0))
        .map_err(|e| classify_pg_error(&format!("looking for {qualified} on the {side}"), &e))
}

async fn sentinel_line(
    source: &Client,
    target: &Client,
    task: &TaskInfo,
    in_cdc: bool,
    args: &Args,
) -> Result<Check, StepError> {
    let schema_apply = "run `dms-migrate schema apply` (it creates the sentinel table on both sides, in the first mapped schema, so the task replicates it), then run cutover-check again";
    let Some(schema) = sentinel_schema(source, task, &args.schemas).await? else {
        return Ok(Check::new(
            ids::SENTINEL,
            CheckStatus::Fail,
            format!("no {} table on the source", sentinel::TABLE),
            Vec::new(),
            schema_apply,
        ));
    };
    let table = sentinel::qualified(&schema);
    let mut missing = Vec::new();
    for (client, side) in [(source, "source"), (target, "target")] {
        if !table_exists(client, &table, side).await? {
            missing.push(side);
        }
    }
    if !missing.is_empty() {
        return Ok(Check::new(
            ids::SENTINEL,
            CheckStatus::Fail,
            format!("{table} is missing on the {}", missing.join(" and the ")),
            vec![table],
            schema_apply,
        ));
    }
    if let Some(mappings) = task
        .table_mappings
        .as_deref()
        .and_then(|m| TableMappings::parse(m).ok())
    {
        if !mappings.maps(&schema, sentinel::TABLE) {
            return Ok(Check::new(
                ids::SENTINEL,
                CheckStatus::Fail,
                format!("the task's table mappings do not select {table}, so it never reaches the target"),
                vec![table],
                "give --schemas with a schema the task maps first, or run `dms-migrate schema apply` with the task's schemas",
            ));
        }
    }
    if !in_cdc {
        return Ok(Check::new(
            ids::SENTINEL,
            CheckStatus::Fail,
            format!("round trip through {table} not tried: the task is not running CDC"),
            Vec::new(),
            "see the task line",
        ));
    }
    let limit = Duration::from_secs(u64::from(args.latency_target));
    let arrived = round_trip(source, target, &table, "cutover-check", limit, true).await?;
    Ok(match arrived {
        Some(took) => Check::pass(
            ids::SENTINEL,
            format!(
                "a row written into {table} on the source reached the target in {:.1} s (target under {} s)",
                took.as_secs_f64(),
                args.latency_target
            ),
        ),
        None => Check::new(
            ids::SENTINEL,
            CheckStatus::Fail,
            format!(
                "a row written into {table} on the source did not reach the target within {} s",
                args.latency_target
            ),
            vec![table],
            "changes are not applied on the target fast enough, or at all: look at the task's CloudWatch log and CDC latency, and run cutover-check again",
        ),
    })
}

/// Writes a sentinel row into `table` on the source and waits (at most `limit`) until the target holds it:
/// once it has arrived, every change committed on the source before it has been applied on the target.
/// The row is deleted afterwards; with `wait_for_delete` (cutover-check), when it had arrived, the delete
/// is waited for too (within what is left of `limit`), so a task stopped right after the check leaves no
/// sentinel row on the target. `cutover` and `rollback` do not wait: the arrival is the proof, and a row
/// left behind is bookkeeping verify leaves out. None: not in time.
pub(crate) async fn round_trip(
    source: &Client,
    target: &Client,
    table: &str,
    who: &str,
    limit: Duration,
    wait_for_delete: bool,
) -> Result<Option<Duration>, StepError> {
    let token = format!(
        "{who} {} {}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let written = Instant::now();
    source
        .execute(
            &format!("INSERT INTO {table} (token) VALUES ($1)"),
            &[&token],
        )
        .await
        .map_err(|e| {
            classify_pg_error(
                &format!("writing the sentinel row into {table} on the source"),
                &e,
            )
        })?;
    let select = format!("SELECT count(*) FROM {table} WHERE token = $1");
    let arrived = loop {
        let count: i64 = target
            .query_one(&select, &[&token])
            .await
            .map(|r| r.get(0))
            .map_err(|e| classify_pg_error(&format!("reading {table} on the target"), &e))?;
        if count > 0 {
            break Some(written.elapsed());
        }
        if written.elapsed() >= limit {
            break None;
        }
        tokio::time::sleep(SENTINEL_POLL).await;
    };
    source
        .execute(&format!("DELETE FROM {table} WHERE token = $1"), &[&token])
        .await
        .map_err(|e| {
            classify_pg_error(
                &format!("deleting the sentinel row from {table} on the source"),
                &e,
            )
        })?;
    if arrived.is_some() && wait_for_delete {
        while written.elapsed() < limit {
            let count: i64 = target
                .query_one(&select, &[&token])
                .await
                .map(|r| r.get(0))
                .map_err(|e| classify_pg_error(&format!("reading {table} on the target"), &e))?;
            if count == 0 {
                break;
            }
            tokio::time::sleep(SENTINEL_POLL).await;
        }
    }
    Ok(arrived)
}

async fn sequences_line(
    source: &Client,
    target: &Client,
    schemas: &[String],
) -> Result<Check, StepError> {
    let (on_source, on_target) = tokio::try_join!(
        sequences::read_sequences(source, schemas),
        sequences::read_sequences(target, schemas)
    )?;
    let behind = sequences::behind(&on_source, &on_target);
    if behind.is_empty() {
        return Ok(Check::pass(
            ids::SEQUENCES,
            format!(
                "every target sequence is ahead of the source ({} sequence(s) compared)",
                on_source.len()
            ),
        ));
    }
    let shown = |v: Option<i64>| v.map_or("none".to_string(), |v| v.to_string());
    let objects: Vec<String> = behind
        .iter()
        .map(|b| match b.reason {
            BehindReason::Missing => format!("{} (missing on the target)", b.qualified()),
            BehindReason::Unreadable => format!(
                "{} (values not readable: grant SELECT on it)",
                b.qualified()
            ),
            BehindReason::NotAhead => format!(
                "{} (source last {}, target next {})",
                b.qualified(),
                shown(b.source_last),
                shown(b.target_next)
            ),
        })
        .collect();
    Ok(Check::new(
        ids::SEQUENCES,
        CheckStatus::Fail,
        format!(
            "{} target sequence(s) would hand out values the source already used: {}",
            behind.len(),
            behind.iter().map(|b| b.qualified()).collect::<Vec<_>>().join(", ")
        ),
        objects,
        "stop application writes, then run `dms-migrate sequences sync` (it moves every target sequence ahead of the source) and run cutover-check again",
    ))
}

/// Core's two transaction checks as one line: anything open too long holds changes back from the target.
async fn transactions_line(source: &Client, threshold_seconds: u32) -> Result<Check, StepError> {
    let found = checks::run_transaction_checks(source, threshold_seconds).await?;
    let problems: Vec<&Check> = found
        .iter()
        .filter(|c| c.status != CheckStatus::Pass)
        .collect();
    if problems.is_empty() {
        return Ok(Check::pass(
            ids::TRANSACTIONS,
            format!("no transaction or prepared transaction open longer than {threshold_seconds} s on the source"),
        ));
    }
    Ok(Check::new(
        ids::TRANSACTIONS,
        CheckStatus::Fail,
        format!(
            "{}; what they write reaches the target only when they commit",
            problems
                .iter()
                .map(|c| c.summary.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ),
        problems.iter().flat_map(|c| c.objects.clone()).collect(),
        problems
            .iter()
            .map(|c| c.fix.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    ))
}

/// One line per condition in a fixed order, with what to do under each failing one.
fn render_text(lines: &[Check], task_arn: &str, source: &str, target: &str) -> String {
    let mut out =
        format!("Cutover check of task {task_arn}\n  source {source} -> target {target}\n\n");
    let label = |id: &str| id.trim_start_matches("cutover.").replace('_', " ");
    let width = lines.iter().map(|c| label(&c.id).len()).max().unwrap_or(0);
    for line in lines {
        let mark = if line.status == CheckStatus::Pass {
            "ok  "
        } else {
            "FAIL"
        };
        out.push_str(&format!(
            "  {mark}  {:width$}  {}\n",
            label(&line.id),
            line.summary
        ));
        if line.status == CheckStatus::Pass {
            continue;
        }
        if line.objects.len() > 1 {
            for object in &line.objects {
                out.push_str(&format!("          - {object}\n"));
            }
        }
        for (i, fix) in line.fix.lines().enumerate() {
            let lead = if i == 0 { "what to do:" } else { "           " };
            out.push_str(&format!("        {lead} {fix}\n"));
        }
    }
    let failed: Vec<String> = lines
        .iter()
        .filter(|c| c.status != CheckStatus::Pass)
        .map(|c| label(&c.id))
        .collect();
    if failed.is_empty() {
        out.push_str("\nREADY for cutover. After application writes stop, run cutover-check again: a green run then proves the drain.\n");
    } else {
        out.push_str(&format!(
            "\nNOT READY: {} of {} checks failed ({}).\n",
            failed.len(),
            lines.len(),
            failed.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dms_core::aws::dms::TaskStats;

    fn args() -> Args {
        Args {
            databases: BothDatabases {
                source: None,
                target: None,
            },
            task_arn: "arn:aws:dms:us-east-1:123456789012:task:ABC".into(),
            latency_target: 5,
            window: 5,
            long_transaction_seconds: 300,
            schemas: Vec::new(),
            way_back_slot: crate::fallback::Slot {
                name: dms_core::rules::way_back::SLOT.into(),
            },
            format: Format::Text,
        }
    }

    fn task(status: &str) -> TaskInfo {
        TaskInfo {
            arn: "arn:aws:dms:us-east-1:123456789012:task:ABC".into(),
            status: status.into(),
            migration_type: "full-load-and-cdc".into(),
            stats: Some(TaskStats {
                full_load_progress_percent: 100,
                tables_loaded: 1,
                full_load_finish_epoch_seconds: Some(1.0),
                ..TaskStats::default()
            }),
            ..TaskInfo::default()
        }
    }

    fn table(name: &str, state: &str) -> TableStat {
        TableStat {
            schema: "public".into(),
            table: name.into(),
            state: state.into(),
            ..TableStat::default()
        }
    }

    fn status_of(lines: &[Check], id: &str) -> CheckStatus {
        lines.iter().find(|c| c.id == id).unwrap().status
    }

    #[test]
    fn a_running_task_under_target_is_green_and_slow_cdc_is_not() {
        let tables = [table("orders", task_phase::TABLE_COMPLETED)];
        let fast = CdcLatency {
            source_seconds: Some(0.5),
            target_seconds: Some(1.0),
        };
        let lines = task_lines(&task("running"), &tables, fast, &args(), 100);
        assert!(
            lines.iter().all(|c| c.status == CheckStatus::Pass),
            "{lines:#?}"
        );

        let slow = CdcLatency {
            source_seconds: Some(0.5),
            target_seconds: Some(7.0),
        };
        let lines = task_lines(&task("running"), &tables, slow, &args(), 100);
        assert_eq!(status_of(&lines, ids::TASK), CheckStatus::Pass);
        assert_eq!(status_of(&lines, ids::CDC_LATENCY), CheckStatus::Fail);
        let lines = task_lines(
            &task("running"),
            &tables,
            CdcLatency::default(),
            &args(),
            100,
        );
        assert!(lines[2].summary.contains("no datapoint"), "{lines:#?}");
    }

    #[test]
    fn table_errors_and_a_stopped_task_say_why() {
        let tables = [
            table("orders", task_phase::TABLE_ERROR),
            table("customers", task_phase::TABLE_COMPLETED),
        ];
        let lines = task_lines(
            &task("running"),
            &tables,
            CdcLatency::default(),
            &args(),
            100,
        );
        assert_eq!(status_of(&lines, ids::TASK), CheckStatus::Fail);
        assert_eq!(lines[1].objects, vec!["public.orders".to_string()]);

        let mut stopped = task("stopped");
        stopped.stop_reason = Some("Stop Reason NORMAL".into());
        let lines = task_lines(&stopped, &tables[1..], CdcLatency::default(), &args(), 100);
        assert!(
            lines[0].summary.starts_with("the task is stopped"),
            "{lines:#?}"
        );
        assert!(lines[0].fix.contains("new execution"), "{lines:#?}");
        assert_eq!(status_of(&lines, ids::CDC_LATENCY), CheckStatus::Fail);
    }

    #[test]
    fn text_marks_each_line_and_gives_the_verdict() {
        let lines = vec![
            Check::pass(ids::TASK, "running"),
            Check::new(
                ids::SENTINEL,
                CheckStatus::Fail,
                format!("{} is missing on the target", sentinel::qualified("Sales")),
                vec![],
                "run `dms-migrate schema apply`",
            ),
        ];
        let text = render_text(&lines, "arn", "a@s:1/d", "b@t:2/d");
        assert!(text.contains("  ok    task      running\n"), "{text}");
        assert!(text.contains("  FAIL  sentinel  \"Sales\".dms_migrate_sentinel is missing on the target\n        what to do: run `dms-migrate schema apply`\n"), "{text}");
        assert!(
            text.ends_with("NOT READY: 1 of 2 checks failed (sentinel).\n"),
            "{text}"
        );
    }
}
