//! The phase rules (poll-progress; docs/state-machine-contract.md): from one reading of a DMS task — status, stop reason,
//! migration type, table statistics, CDC latency — and the monitor so far, decide the `phase` the state
//! machine routes on, the reason in words, and the updated monitor. Pure: no AWS types, no clock, so the
//! Lambda and the CLI's cutover-check share it and a table-driven test covers every combination.
//!
//! Task statuses and stop reasons are those of the DMS API reference (`ReplicationTask.Status`,
//! `ReplicationTask.StopReason`, <https://docs.aws.amazon.com/dms/latest/APIReference/API_ReplicationTask.html>).
//! A value this module does not know fails monitoring with the raw value: guessing could loop forever.

use crate::rules::dms_model::{MigrationType, TaskStatus};
use crate::rules::dms_model::{TableStat, TaskInfo, TaskStats};
use crate::rules::recoverable_errors::STACK_SETTINGS;
use crate::rules::state::{capped, Monitor, Options, ProgressResult};
use crate::string_enum::string_enum;

string_enum! {
    /// What a reading of the task concludes: `results.progress.phase`, which the ASL's Choice routes on.
    /// A state without one reads as `loading` (keep polling).
    #[derive(Default)]
    pub enum Phase {
        #[default]
        Loading => "loading",
        FullLoadComplete => "full-load-complete",
        /// The first poll of this execution that sees DMS restarting the task after a recoverable error
        /// (one email); later polls of a recovery read `loading` / `catching-up`.
        Recovering => "recovering",
        CatchingUp => "catching-up",
        ReadyForCutover => "ready-for-cutover",
        Succeeded => "succeeded",
        Failed => "failed",
        MonitoringEnded => "monitoring-ended",
    }
}

impl Phase {
    /// Monitoring stops after this phase (the machine ends in an email and a Succeed or Fail state).
    pub fn ends_monitoring(self) -> bool {
        matches!(
            self,
            Phase::ReadyForCutover | Phase::Succeeded | Phase::Failed | Phase::MonitoringEnded
        )
    }
}

string_enum! {
    /// The text is the code after `Stop Reason `.
    pub enum StopReason {
        Normal => "NORMAL",
        RecoverableError => "RECOVERABLE_ERROR",
        FatalError => "FATAL_ERROR",
        FullLoadOnlyFinished => "FULL_LOAD_ONLY_FINISHED",
        StoppedAfterFullLoad => "STOPPED_AFTER_FULL_LOAD",
        StoppedAfterCachedEvents => "STOPPED_AFTER_CACHED_EVENTS",
        ExpressLicenseLimitsReached => "EXPRESS_LICENSE_LIMITS_REACHED",
        StoppedAfterDdlApply => "STOPPED_AFTER_DDL_APPLY",
        StoppedDueToLowMemory => "STOPPED_DUE_TO_LOW_MEMORY",
        StoppedDueToLowDisk => "STOPPED_DUE_TO_LOW_DISK",
        StoppedAtServerTime => "STOPPED_AT_SERVER_TIME",
        StoppedAtCommitTime => "STOPPED_AT_COMMIT_TIME",
        ReconfigurationRestart => "RECONFIGURATION_RESTART",
        RecycleTask => "RECYCLE_TASK",
    }
}

/// DMS prefixes every stop reason with this, e.g. `Stop Reason FULL_LOAD_ONLY_FINISHED`.
const STOP_REASON_PREFIX: &str = "Stop Reason ";

impl StopReason {
    /// As DMS reports it: `Stop Reason NORMAL`.
    pub fn dms_text(self) -> String {
        format!("{STOP_REASON_PREFIX}{self}")
    }

    /// Accepts DMS's text with or without the prefix, surrounding spaces ignored.
    pub fn from_dms(text: &str) -> Option<StopReason> {
        let text = text.trim();
        StopReason::parse(text.strip_prefix(STOP_REASON_PREFIX).unwrap_or(text).trim())
    }

    /// What the reason means, in words for the email.
    fn meaning(self) -> &'static str {
        match self {
            StopReason::Normal => "the task was stopped (StopReplicationTask, from the console or a tool)",
            StopReason::RecoverableError => "the task stopped on an error DMS classes as recoverable",
            StopReason::FatalError => "the task stopped on a fatal error",
            StopReason::FullLoadOnlyFinished => "the full-load-only task finished",
            StopReason::StoppedAfterFullLoad => "the task stopped after the full load, before applying cached changes, as its settings ask (FullLoadSettings StopTaskCachedChangesNotApplied)",
            StopReason::StoppedAfterCachedEvents => "the task stopped after the full load and the cached changes, as its settings ask (FullLoadSettings StopTaskCachedChangesApplied)",
            StopReason::ExpressLicenseLimitsReached => "the task reached the limits of the source engine's Express edition license",
            StopReason::StoppedAfterDdlApply => "the task stopped after applying a DDL change, as its settings ask",
            StopReason::StoppedDueToLowMemory => "the task ran out of memory on the replication instance (choose a larger instance class or lower MemoryLimitTotal / the number of tables loaded in parallel)",
            StopReason::StoppedDueToLowDisk => "the replication instance ran out of storage (increase its allocated storage)",
            StopReason::StoppedAtServerTime => "the task reached the CDC stop position it was given (server time)",
            StopReason::StoppedAtCommitTime => "the task reached the CDC stop position it was given (commit time)",
            StopReason::ReconfigurationRestart => "DMS is restarting the task after a configuration change",
            StopReason::RecycleTask => "DMS is recycling the task",
        }
    }
}

/// The latest CloudWatch `CDCLatencySource` / `CDCLatencyTarget` in seconds. DMS publishes them only while
/// CDC runs: `None` means no data yet, which is "not ready", never zero.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CdcLatency {
    pub source_seconds: Option<f64>,
    pub target_seconds: Option<f64>,
}

/// `TableState` values from DescribeTableStatistics.
pub const TABLE_COMPLETED: &str = "Table completed";
pub const TABLE_ERROR: &str = "Table error";
const TABLE_LOADING: &[&str] = &["Full load", "Table is being reloaded"];
const TABLE_QUEUED: &str = "Before load";
/// `ValidationState` values that deserve a warning naming the table.
pub const VALIDATION_WARNINGS: &[&str] =
    &["Mismatched records", "Suspended records", "No primary key"];

/// One poll's reading of the task.
#[derive(Debug, Clone, Copy)]
pub struct Reading<'a> {
    pub task: &'a TaskInfo,
    pub tables: &'a [TableStat],
    pub latency: CdcLatency,
}

/// What the rules decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub phase: Phase,
    pub monitor: Monitor,
    pub progress: ProgressResult,
}

/// Whether the full load is over: DMS set `FullLoadFinishDate`, or every table reports `Table completed`.
pub fn full_load_finished(stats: Option<&TaskStats>, tables: &[TableStat]) -> bool {
    stats.is_some_and(|s| s.full_load_finish_epoch_seconds.is_some())
        || (!tables.is_empty() && tables.iter().all(|t| t.state == TABLE_COMPLETED))
}

/// The rules' verdict before the monitoring budget is applied.
enum Verdict {
    /// Loading (or waiting on a transient status before the load finished).
    Loading(String),
    /// In CDC (or waiting on a transient status after the load), with the ready streak so far.
    CatchingUp(String),
    /// The first poll that sees the full load finished.
    FullLoadComplete(String),
    /// The first poll of the execution that sees DMS restarting the task.
    Recovering(String),
    Ready(String),
    Succeeded(String),
    Failed(String),
}

/// Applies the phase rules to one reading (see the module doc) at time `now` (epoch seconds).
pub fn assess(reading: &Reading<'_>, monitor: &Monitor, options: &Options, now: i64) -> Assessment {
    let tables = TableSummary::of(reading);
    let mut next_monitor = monitor.clone();
    next_monitor.polls = monitor.polls.saturating_add(1);
    let verdict = verdict(reading, &tables, &mut next_monitor, options, now);
    let (mut phase, reason) = match verdict {
        Verdict::Loading(r) => (Phase::Loading, r),
        Verdict::CatchingUp(r) => (Phase::CatchingUp, r),
        Verdict::FullLoadComplete(r) => (Phase::FullLoadComplete, r),
        Verdict::Recovering(r) => (Phase::Recovering, r),
        Verdict::Ready(r) => (Phase::ReadyForCutover, r),
        Verdict::Succeeded(r) => (Phase::Succeeded, r),
        Verdict::Failed(r) => (Phase::Failed, r),
    };
    let mut reason = reason;
    if !phase.ends_monitoring() {
        if let Some(why) = budget_exhausted(&next_monitor, options, now) {
            reason = format!("{why}. Last reading: {} — {reason}", phase.as_str());
            phase = Phase::MonitoringEnded;
        }
    }
    next_monitor.next_poll_seconds = next_poll_seconds(&next_monitor, options, now);
    let progress = tables.progress(reading, phase, reason);
    Assessment {
        phase,
        monitor: next_monitor,
        progress,
    }
}

fn verdict(
    reading: &Reading<'_>,
    tables: &TableSummary,
    monitor: &mut Monitor,
    options: &Options,
    now: i64,
) -> Verdict {
    let task = reading.task;
    let recovering = task.status == TaskStatus::Stopped
        && task.stop_reason.as_deref().and_then(StopReason::from_dms)
            == Some(StopReason::RecoverableError);
    if !recovering {
        // The recovery (if any) is over: a later one is timed from its own start.
        monitor.recovering_since_epoch_seconds = None;
    }
    let Some(status) = task.status.known() else {
        return Verdict::Failed(format!(
            "DMS reports task status `{}`, which this tool does not know; monitoring stops rather than guess",
            task.status
        ));
    };
    let Some(migration) = task.migration_type.known() else {
        return Verdict::Failed(format!(
            "DMS reports migration type `{}`, which this tool does not know (full-load, cdc, full-load-and-cdc); monitoring stops rather than guess",
            task.migration_type
        ));
    };
    match status {
        TaskStatus::Failed => return Verdict::Failed(failed_reason(task)),
        TaskStatus::FailedMove => {
            return Verdict::Failed(
                "moving the task to another replication instance failed (status failed-move); the task does not run"
                    .to_string(),
            )
        }
        TaskStatus::Deleting => {
            return Verdict::Failed("the task is being deleted".to_string())
        }
        _ => {}
    }
    if let Some(why) = tables.error_reason() {
        return Verdict::Failed(why);
    }
    let load_finished = full_load_finished(task.stats.as_ref(), reading.tables);
    match status {
        TaskStatus::Running => running(reading, tables, migration, load_finished, monitor, options),
        TaskStatus::Stopped if recovering => {
            recovering_verdict(task, tables, migration, load_finished, monitor, now)
        }
        TaskStatus::Stopped => stopped(task, tables, migration, load_finished, monitor),
        TaskStatus::Creating
        | TaskStatus::Ready
        | TaskStatus::Starting
        | TaskStatus::Stopping
        | TaskStatus::Modifying
        | TaskStatus::Moving
        | TaskStatus::Testing => waiting(
            &format!("the task is {}", status.as_str()),
            migration,
            load_finished,
            tables,
            monitor,
        ),
        // Handled above; listed so a new status is a compile error here.
        TaskStatus::Failed | TaskStatus::FailedMove | TaskStatus::Deleting => {
            Verdict::Failed(failed_reason(task))
        }
    }
}

fn failed_reason(task: &TaskInfo) -> String {
    let mut reason = format!("the task is {}", task.status);
    if let Some(stop) = task.stop_reason.as_deref().filter(|s| !s.is_empty()) {
        match StopReason::from_dms(stop) {
            Some(known) => {
                reason.push_str(&format!(" ({}: {})", known.dms_text(), known.meaning()))
            }
            None => reason.push_str(&format!(" ({stop})")),
        }
    }
    if task
        .last_failure_message
        .as_deref()
        .is_none_or(str::is_empty)
    {
        reason.push_str("; DMS gave no failure message (see the task's CloudWatch log)");
    }
    reason
}

/// A stop with `RECOVERABLE_ERROR`: DMS restarts the task by itself, after waits its error-handling
/// settings fix (`recoverable_errors`). Report it once per execution, keep polling, and call it a failure
/// (with DMS's message) only once the stop has lasted longer than all of DMS's restart attempts can.
fn recovering_verdict(
    task: &TaskInfo,
    tables: &TableSummary,
    migration: MigrationType,
    load_finished: bool,
    monitor: &mut Monitor,
    now: i64,
) -> Verdict {
    let since = *monitor.recovering_since_epoch_seconds.get_or_insert(now);
    let stopped_for = now.saturating_sub(since).max(0);
    let bound = STACK_SETTINGS.give_up_after_seconds();
    let said = task
        .last_failure_message
        .as_deref()
        .filter(|m| !m.trim().is_empty())
        .map_or_else(
            || "DMS gave no failure message (see the task's CloudWatch log)".to_string(),
            |m| format!("DMS said: {m}"),
        );
    if u64::try_from(stopped_for).unwrap_or(0) > bound {
        return Verdict::Failed(format!(
            "DMS stopped the task on a recoverable error ({}) and had not restarted it {stopped_for} s later, longer than its error-handling settings allow for all its restart attempts ({bound} s for RecoverableErrorCount {} with waits from {} s doubling up to {} s): DMS has given up. {said}",
            StopReason::RecoverableError.dms_text(),
            STACK_SETTINGS.count,
            STACK_SETTINGS.interval_seconds,
            STACK_SETTINGS.throttling_max_seconds,
        ));
    }
    let what = format!(
        "DMS stopped the task on a recoverable error ({}) and restarts it by itself: stopped for {stopped_for} s so far; this execution keeps watching and reports a failure if the task is still stopped after {bound} s. {said}",
        StopReason::RecoverableError.dms_text()
    );
    if !monitor.recovery_announced {
        monitor.recovery_announced = true;
        monitor.consecutive_ready_polls = 0;
        return Verdict::Recovering(what);
    }
    waiting(&what, migration, load_finished, tables, monitor)
}

/// A transient status (or a stop DMS restarts by itself): keep polling; the ready streak starts over.
fn waiting(
    what: &str,
    migration: MigrationType,
    load_finished: bool,
    tables: &TableSummary,
    monitor: &mut Monitor,
) -> Verdict {
    monitor.consecutive_ready_polls = 0;
    let reason = format!("{what}; waiting for it to run");
    match migration {
        MigrationType::Cdc => Verdict::CatchingUp(reason),
        MigrationType::FullLoadAndCdc if load_finished || monitor.full_load_announced => {
            Verdict::CatchingUp(reason)
        }
        _ => Verdict::Loading(format!("{reason}; {}", tables.load_text())),
    }
}

fn running(
    reading: &Reading<'_>,
    tables: &TableSummary,
    migration: MigrationType,
    load_finished: bool,
    monitor: &mut Monitor,
    options: &Options,
) -> Verdict {
    match migration {
        // A full-load-only task ends `stopped` with FULL_LOAD_ONLY_FINISHED, never "100% and running".
        MigrationType::FullLoad => Verdict::Loading(tables.load_text()),
        MigrationType::FullLoadAndCdc if !load_finished => Verdict::Loading(tables.load_text()),
        MigrationType::FullLoadAndCdc | MigrationType::Cdc => {
            let readiness = readiness(reading.latency, monitor, options);
            if migration == MigrationType::FullLoadAndCdc && !monitor.full_load_announced {
                monitor.full_load_announced = true;
                return Verdict::FullLoadComplete(format!(
                    "the full load finished ({}); CDC is applying the changes made since it began",
                    tables.load_text()
                ));
            }
            readiness
        }
    }
}

/// Counts this poll towards the ready streak, or resets it.
fn readiness(latency: CdcLatency, monitor: &mut Monitor, options: &Options) -> Verdict {
    let limit = f64::from(options.cdc_latency_target_seconds);
    let needed = options.ready_after_consecutive_polls.max(1);
    let shown = |v: Option<f64>| v.map_or("no data yet".to_string(), |s| format!("{s:.0} s"));
    let latency_text = format!(
        "CDC latency source {}, target {} (target under {} s)",
        shown(latency.source_seconds),
        shown(latency.target_seconds),
        options.cdc_latency_target_seconds
    );
    match (latency.source_seconds, latency.target_seconds) {
        (Some(source), Some(target)) if source < limit && target < limit => {
            monitor.consecutive_ready_polls = monitor.consecutive_ready_polls.saturating_add(1);
            if monitor.consecutive_ready_polls >= needed {
                Verdict::Ready(format!(
                    "{latency_text} for {} consecutive polls, and no table is in error",
                    monitor.consecutive_ready_polls
                ))
            } else {
                Verdict::CatchingUp(format!(
                    "{latency_text}: {} of {needed} consecutive polls under target",
                    monitor.consecutive_ready_polls
                ))
            }
        }
        (None, _) | (_, None) => {
            monitor.consecutive_ready_polls = 0;
            Verdict::CatchingUp(format!(
                "{latency_text}; DMS publishes CDC latency only while CDC runs, so no data counts as not ready"
            ))
        }
        _ => {
            monitor.consecutive_ready_polls = 0;
            Verdict::CatchingUp(format!("{latency_text}: still catching up"))
        }
    }
}

fn stopped(
    task: &TaskInfo,
    tables: &TableSummary,
    migration: MigrationType,
    load_finished: bool,
    monitor: &mut Monitor,
) -> Verdict {
    let raw = task.stop_reason.as_deref().unwrap_or("").trim();
    if raw.is_empty() {
        return Verdict::Failed(
            "the task is stopped and DMS gave no stop reason; start a new execution with the same input to resume it (it refuses, saying why, when a restart would duplicate rows)"
                .to_string(),
        );
    }
    let Some(reason) = StopReason::from_dms(raw) else {
        return Verdict::Failed(format!(
            "the task is stopped with `{raw}`, a stop reason this tool does not know; monitoring stops rather than guess"
        ));
    };
    let resume_hint = "start a new execution with the same input to resume it (it refuses, saying why, when a restart would duplicate rows)";
    match reason {
        StopReason::ReconfigurationRestart | StopReason::RecycleTask => waiting(
            &format!(
                "the task is stopped ({}: {})",
                reason.dms_text(),
                reason.meaning()
            ),
            migration,
            load_finished,
            tables,
            monitor,
        ),
        StopReason::FullLoadOnlyFinished
        | StopReason::StoppedAfterFullLoad
        | StopReason::StoppedAfterCachedEvents
            if migration == MigrationType::FullLoad =>
        {
            tables.succeeded()
        }
        StopReason::Normal if migration == MigrationType::FullLoad && load_finished => {
            tables.succeeded()
        }
        StopReason::FullLoadOnlyFinished => Verdict::Failed(format!(
            "DMS reports {} although the task's migration type is {}: CDC is not running",
            reason.dms_text(),
            migration.as_str()
        )),
        StopReason::StoppedAfterFullLoad | StopReason::StoppedAfterCachedEvents
            if migration == MigrationType::FullLoadAndCdc =>
        {
            Verdict::Failed(format!(
                "{} ({}). The full load is complete; {resume_hint}",
                reason.meaning(),
                reason.dms_text()
            ))
        }
        StopReason::Normal
        | StopReason::StoppedAfterFullLoad
        | StopReason::StoppedAfterCachedEvents
        | StopReason::StoppedAfterDdlApply
        | StopReason::StoppedAtServerTime
        | StopReason::StoppedAtCommitTime => Verdict::Failed(format!(
            "{} ({}) before the target was ready; {resume_hint}",
            reason.meaning(),
            reason.dms_text()
        )),
        // Handled by `recovering_verdict` before this function is called.
        StopReason::RecoverableError
        | StopReason::FatalError
        | StopReason::ExpressLicenseLimitsReached
        | StopReason::StoppedDueToLowMemory
        | StopReason::StoppedDueToLowDisk => {
            Verdict::Failed(format!("{} ({})", reason.meaning(), reason.dms_text()))
        }
    }
}

/// `Some(why)` when the time or poll budget of this execution is used up.
fn budget_exhausted(monitor: &Monitor, options: &Options, now: i64) -> Option<String> {
    if now >= monitor.deadline_epoch_seconds {
        return Some(format!(
            "Monitoring reached its time limit (options.maxMonitorHours = {} h) after {} polls",
            options.max_monitor_hours, monitor.polls
        ));
    }
    if monitor.polls >= options.max_polls {
        return Some(format!(
            "Monitoring used all {} polls it may make (options.maxPolls; the state machine's history holds 25,000 events)",
            options.max_polls
        ));
    }
    None
}

/// max(pollIntervalSeconds, time left / polls left): spreads the remaining polls over the remaining time so
/// the loop never outruns Step Functions' 25,000-event history (docs/architecture.md).
fn next_poll_seconds(monitor: &Monitor, options: &Options, now: i64) -> u32 {
    let interval = options.poll_interval_seconds.max(1);
    let polls_left = i64::from(options.max_polls.saturating_sub(monitor.polls));
    let time_left = monitor.deadline_epoch_seconds.saturating_sub(now);
    if polls_left <= 0 || time_left <= 0 {
        return interval;
    }
    let spread = (time_left + polls_left - 1) / polls_left;
    interval.max(u32::try_from(spread).unwrap_or(u32::MAX))
}

/// The table statistics condensed for the rules and the result.
struct TableSummary {
    error_tables: Vec<String>,
    warning_tables: Vec<String>,
    not_completed: Vec<String>,
    loaded: u32,
    loading: u32,
    queued: u32,
    errored: u32,
    percent: Option<i32>,
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn stat(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

impl TableSummary {
    fn of(reading: &Reading<'_>) -> TableSummary {
        let tables = reading.tables;
        let names_where = |keep: &dyn Fn(&TableStat) -> bool| {
            tables
                .iter()
                .filter(|t| keep(t))
                .map(TableStat::qualified_name)
                .collect::<Vec<_>>()
        };
        let error_tables = names_where(&|t| t.state == TABLE_ERROR);
        let warning_tables = names_where(&|t| {
            t.validation_state
                .as_deref()
                .is_some_and(|v| VALIDATION_WARNINGS.contains(&v))
        });
        let not_completed = names_where(&|t| t.state != TABLE_COMPLETED);
        let in_state = |states: &[&str]| {
            count(
                tables
                    .iter()
                    .filter(|t| states.contains(&t.state.as_str()))
                    .count(),
            )
        };
        let stats = reading.task.stats.as_ref();
        TableSummary {
            loaded: stats.map_or_else(|| in_state(&[TABLE_COMPLETED]), |s| stat(s.tables_loaded)),
            loading: stats.map_or_else(|| in_state(TABLE_LOADING), |s| stat(s.tables_loading)),
            queued: stats.map_or_else(|| in_state(&[TABLE_QUEUED]), |s| stat(s.tables_queued)),
            // Either source may know of an error the other does not show yet.
            errored: count(error_tables.len()).max(stats.map_or(0, |s| stat(s.tables_errored))),
            percent: stats.map(|s| s.full_load_progress_percent),
            error_tables,
            warning_tables,
            not_completed,
        }
    }

    fn error_reason(&self) -> Option<String> {
        if self.errored == 0 {
            return None;
        }
        if self.error_tables.is_empty() {
            return Some(format!(
                "DMS counts {} table(s) in error (ReplicationTaskStats.TablesErrored); the task's CloudWatch log names them",
                self.errored
            ));
        }
        let (shown, total) = capped(&self.error_tables);
        Some(format!(
            "{total} table(s) in `Table error`: {}{}",
            shown.join(", "),
            if total as usize > shown.len() {
                ", ..."
            } else {
                ""
            }
        ))
    }

    fn load_text(&self) -> String {
        let mut text = format!(
            "{} tables loaded, {} loading, {} queued",
            self.loaded, self.loading, self.queued
        );
        if let Some(percent) = self.percent {
            text = format!("full load {percent}%: {text}");
        }
        text
    }

    fn succeeded(&self) -> Verdict {
        if self.not_completed.is_empty() {
            return Verdict::Succeeded(format!(
                "the full-load-only task finished and every table completed ({} tables)",
                self.loaded
            ));
        }
        let (shown, total) = capped(&self.not_completed);
        Verdict::Failed(format!(
            "the full-load-only task finished, but {total} table(s) did not complete: {}",
            shown.join(", ")
        ))
    }

    fn progress(&self, reading: &Reading<'_>, phase: Phase, reason: String) -> ProgressResult {
        let task = reading.task;
        let (error_tables, _) = capped(&self.error_tables);
        let (warning_tables, warning_total) = capped(&self.warning_tables);
        let non_empty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        ProgressResult {
            phase,
            status: task.status.clone(),
            stop_reason: non_empty(&task.stop_reason),
            last_failure_message: non_empty(&task.last_failure_message),
            reason: Some(reason),
            full_load_progress_percent: self.percent,
            tables_loaded: self.loaded,
            tables_loading: self.loading,
            tables_queued: self.queued,
            tables_errored: self.errored,
            error_tables,
            warning_tables,
            warning_tables_total: warning_total,
            migration_type: task.migration_type.known(),
            cdc_latency_source_seconds: reading.latency.source_seconds,
            cdc_latency_target_seconds: reading.latency.target_seconds,
            full_load_rows: (!reading.tables.is_empty())
                .then(|| reading.tables.iter().map(|t| t.full_load_rows).sum()),
        }
    }
}

#[cfg(test)]
mod tests;
