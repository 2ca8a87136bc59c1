//! What start-task does with the task as it stands (docs/architecture.md). DMS allows `start-replication` only for a
//! task that never ran, then `resume-processing` or `reload-target`
//! (<https://docs.aws.amazon.com/dms/latest/APIReference/API_StartReplicationTask.html>). The target is
//! `DO_NOTHING`, so any restart that loads a table again into a non-empty target duplicates its rows:
//! those restarts are refused unless the user asked for `startMode: reload` with `truncateTarget: true`.

use dms_core::aws::dms::{StartType, TaskInfo};
use dms_core::rules::dms_model::{MigrationType, TaskStatus};
use dms_core::rules::state::{Options, StartMode};
use dms_core::rules::task_phase::StopReason;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Call StartReplicationTask, after emptying the mapped target tables when `truncate`.
    Start {
        start_type: StartType,
        truncate: bool,
        reason: String,
    },
    /// The task is already on its way: nothing to do.
    Nothing { reason: String },
    /// A transitional status: `Dms.InvalidState`, which the state machine retries with a long interval.
    Wait { reason: String },
    /// The user must act: `Task.RestartRefused`.
    Refuse { reason: String },
}

/// What the task's history says, read by the caller (the full load may need the table statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    /// The task has started at least once.
    pub has_run: bool,
    /// Its full load is over (`dms_core::rules::task_phase::full_load_finished`).
    pub full_load_finished: bool,
}

const DUPLICATES: &str = "the target endpoint's table preparation mode is DO_NOTHING, so DMS does not empty the target tables and every row loaded before would be loaded again (duplicates)";
const HOW_TO_RELOAD: &str = "To load from scratch, start a new execution with options {\"startMode\": \"reload\", \"truncateTarget\": true}: it empties exactly the task's mapped target tables, then reloads";

fn reload_with_truncate(options: &Options) -> bool {
    options.start_mode == StartMode::Reload && options.truncate_target
}

pub fn plan(task: &TaskInfo, history: History, options: &Options) -> Plan {
    let Some(status) = task.status.known() else {
        return Plan::Refuse {
            reason: format!(
                "DMS reports task status `{}`, which this tool does not know; nothing was started. Check the task in the DMS console",
                task.status
            ),
        };
    };
    match status {
        TaskStatus::Running | TaskStatus::Starting => already_running(status, options),
        TaskStatus::Creating
        | TaskStatus::Modifying
        | TaskStatus::Stopping
        | TaskStatus::Testing
        | TaskStatus::Moving
        | TaskStatus::Deleting => Plan::Wait {
            reason: format!(
                "the task {} is {}; DMS accepts StartReplicationTask only once it is ready, stopped or failed",
                task.arn,
                status.as_str()
            ),
        },
        TaskStatus::Ready if !history.has_run => Plan::Start {
            start_type: StartType::StartReplication,
            truncate: reload_with_truncate(options),
            reason: if reload_with_truncate(options) {
                "the task has never run; the mapped target tables are emptied first, as truncateTarget asks".to_string()
            } else {
                "the task has never run".to_string()
            },
        },
        TaskStatus::Ready | TaskStatus::Stopped => restart(task, history, options),
        TaskStatus::Failed | TaskStatus::FailedMove => after_failure(task, status, options),
    }
}

fn already_running(status: TaskStatus, options: &Options) -> Plan {
    let mut reason = format!("the task is already {}; nothing to start", status.as_str());
    if options.start_mode == StartMode::Reload {
        reason.push_str(". startMode reload was not applied: DMS reloads only a stopped task. To reload from scratch, stop the task in the DMS console, wait until it is Stopped, then start a new execution");
    }
    Plan::Nothing { reason }
}

fn migration(task: &TaskInfo) -> Result<MigrationType, Plan> {
    task.migration_type.known().ok_or_else(|| Plan::Refuse {
        reason: format!(
            "DMS reports migration type `{}`, which this tool does not know; nothing was started",
            task.migration_type
        ),
    })
}

/// A cdc-only task has no full load: its target was loaded by other means, and emptying it would lose
/// those rows for good.
fn cdc_only_reload_refused() -> Plan {
    Plan::Refuse {
        reason: "startMode reload was asked, but the task is cdc-only: it has no full load, so a reload cannot refill the target, and emptying the target would lose the rows loaded before CDC began. Start a new execution with startMode \"auto\" to resume CDC".to_string(),
    }
}

fn reload(reason: String) -> Plan {
    Plan::Start {
        start_type: StartType::ReloadTarget,
        truncate: true,
        reason,
    }
}

fn restart(task: &TaskInfo, history: History, options: &Options) -> Plan {
    let migration = match migration(task) {
        Ok(m) => m,
        Err(refused) => return refused,
    };
    let stop = task.stop_reason.as_deref().and_then(StopReason::from_dms);
    let stopped_how = task
        .stop_reason
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    if migration == MigrationType::Cdc {
        if options.start_mode == StartMode::Reload {
            return cdc_only_reload_refused();
        }
        return Plan::Start {
            start_type: StartType::ResumeProcessing,
            truncate: false,
            reason: format!(
                "the cdc-only task is {}{stopped_how}: CDC resumes from its checkpoint",
                task.status
            ),
        };
    }
    let load_done = history.full_load_finished || stop == Some(StopReason::FullLoadOnlyFinished);
    if reload_with_truncate(options) {
        return reload(format!(
            "startMode reload with truncateTarget: the task is {}{stopped_how}; the mapped target tables are emptied, then reloaded",
            task.status
        ));
    }
    if !load_done {
        return Plan::Refuse {
            reason: format!(
                "the task is {}{stopped_how} before its full load completed: resuming it reloads the tables that were partly loaded, and {DUPLICATES}. Nothing was started. {HOW_TO_RELOAD}",
                task.status
            ),
        };
    }
    if migration == MigrationType::FullLoad {
        return Plan::Refuse {
            reason: format!(
                "the full-load-only task already finished{stopped_how}: starting it again would copy every table again, and {DUPLICATES}. Nothing was started. {HOW_TO_RELOAD}"
            ),
        };
    }
    if options.start_mode == StartMode::Reload {
        return Plan::Refuse {
            reason: format!(
                "startMode reload was asked without truncateTarget: {DUPLICATES}. Nothing was started. {HOW_TO_RELOAD}; or use startMode \"auto\" to resume CDC where it stopped"
            ),
        };
    }
    Plan::Start {
        start_type: StartType::ResumeProcessing,
        truncate: false,
        reason: format!(
            "the task is {}{stopped_how} after its full load completed: CDC resumes from its checkpoint",
            task.status
        ),
    }
}

fn after_failure(task: &TaskInfo, status: TaskStatus, options: &Options) -> Plan {
    let migration = match migration(task) {
        Ok(m) => m,
        Err(refused) => return refused,
    };
    let message = task
        .last_failure_message
        .as_deref()
        .filter(|m| !m.trim().is_empty())
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    if migration == MigrationType::Cdc && options.start_mode == StartMode::Reload {
        return cdc_only_reload_refused();
    }
    if migration != MigrationType::Cdc && reload_with_truncate(options) {
        return reload(format!(
            "startMode reload with truncateTarget: the task is {}{message}; the mapped target tables are emptied, then reloaded",
            status.as_str()
        ));
    }
    Plan::Refuse {
        reason: format!(
            "the task is {}{message}. Restarting a failed task may load partly loaded tables again, and {DUPLICATES}. Nothing was started. Fix the cause first (the task's CloudWatch log has the detail). If it failed during CDC, resume it from the DMS console (Actions > Resume) and start a new execution to monitor it; {}",
            status.as_str(),
            if migration == MigrationType::Cdc {
                "a cdc-only task cannot be reloaded".to_string()
            } else {
                format!("otherwise: {HOW_TO_RELOAD}")
            }
        ),
    }
}

/// Why the forward task must not start while the way back's reverse task (docs/fallback.md) stands as
/// `reverse`, given what `plan` would do; None when it may.
///
/// - The reverse task runs (or is on its way): it replays PlanetScale's writes to Aurora, and the forward
///   task would send them back to PlanetScale, so every write would go round between the two. Nothing that
///   starts or keeps the forward task running is allowed.
/// - It has run and is stopped (after a rollback, or a way back ended): the forward task's position is the
///   cutover's, and Aurora's changes since then include the way back's replayed writes, which resuming
///   would apply to PlanetScale again. Only a reload with the target emptied starts over cleanly.
pub fn way_back_refusal(reverse: &TaskInfo, plan: &Plan) -> Option<String> {
    let resting = matches!(
        reverse.status.known(),
        Some(TaskStatus::Ready | TaskStatus::Stopped | TaskStatus::Failed)
    );
    let has_run = reverse.status != TaskStatus::Ready || reverse.started_at_epoch_seconds.is_some();
    let starts_forward = matches!(plan, Plan::Start { .. } | Plan::Nothing { .. });
    if !resting && starts_forward {
        return Some(format!(
            "the way back's reverse task {} is {}: it replays the application's writes on PlanetScale to Aurora since a cutover, and the forward task would send them back to PlanetScale, so every write would go round between the two databases. Nothing was started. If the application runs on PlanetScale the migration is done (end the way back with `dms-migrate fallback end` once it is final); to go back to Aurora use `dms-migrate rollback`",
            reverse.arn, reverse.status
        ));
    }
    let reload = matches!(
        plan,
        Plan::Start {
            start_type: StartType::ReloadTarget,
            truncate: true,
            ..
        }
    );
    if has_run && starts_forward && !reload {
        return Some(format!(
            "the way back's reverse task {} has run (it is {}): a cutover switched to PlanetScale, and Aurora's changes since then include the writes the way back replayed from PlanetScale, which resuming the forward task would apply to PlanetScale again. Nothing was started. Only after a rollback, with the application back on Aurora, may the migration start over: {HOW_TO_RELOAD} (on PlanetScale)",
            reverse.arn, reverse.status
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(status: &str, stop: Option<&str>, migration: &str) -> TaskInfo {
        TaskInfo {
            arn: "arn:aws:dms:us-east-1:123456789012:task:T".into(),
            status: status.into(),
            stop_reason: stop.map(str::to_string),
            migration_type: migration.into(),
            ..TaskInfo::default()
        }
    }

    fn options(mode: StartMode, truncate: bool) -> Options {
        Options {
            start_mode: mode,
            truncate_target: truncate,
            ..Options::default()
        }
    }

    const NEVER: History = History {
        has_run: false,
        full_load_finished: false,
    };
    const MID_LOAD: History = History {
        has_run: true,
        full_load_finished: false,
    };
    const IN_CDC: History = History {
        has_run: true,
        full_load_finished: true,
    };

    fn start_type(plan: &Plan) -> Option<(StartType, bool)> {
        match plan {
            Plan::Start {
                start_type,
                truncate,
                ..
            } => Some((*start_type, *truncate)),
            _ => None,
        }
    }

    #[test]
    fn every_status_has_a_plan() {
        let auto = options(StartMode::Auto, false);
        for status in TaskStatus::ALL {
            for history in [NEVER, MID_LOAD, IN_CDC] {
                for migration in ["full-load", "cdc", "full-load-and-cdc"] {
                    let t = task(status.as_str(), Some("Stop Reason NORMAL"), migration);
                    let p = plan(&t, history, &auto);
                    let expected_kind = match status {
                        TaskStatus::Running | TaskStatus::Starting => "nothing",
                        TaskStatus::Creating
                        | TaskStatus::Modifying
                        | TaskStatus::Stopping
                        | TaskStatus::Testing
                        | TaskStatus::Moving
                        | TaskStatus::Deleting => "wait",
                        TaskStatus::Failed | TaskStatus::FailedMove => "refuse",
                        TaskStatus::Ready if !history.has_run => "start",
                        TaskStatus::Ready | TaskStatus::Stopped => {
                            if migration == "cdc"
                                || (migration == "full-load-and-cdc" && history.full_load_finished)
                            {
                                "start"
                            } else {
                                "refuse"
                            }
                        }
                    };
                    let kind = match &p {
                        Plan::Start { .. } => "start",
                        Plan::Nothing { .. } => "nothing",
                        Plan::Wait { .. } => "wait",
                        Plan::Refuse { .. } => "refuse",
                    };
                    assert_eq!(
                        kind, expected_kind,
                        "{status:?} {history:?} {migration}: {p:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn never_run_starts_and_cdc_resumes() {
        let auto = options(StartMode::Auto, false);
        let p = plan(&task("ready", None, "full-load-and-cdc"), NEVER, &auto);
        assert_eq!(start_type(&p), Some((StartType::StartReplication, false)));
        let p = plan(
            &task("stopped", Some("Stop Reason NORMAL"), "full-load-and-cdc"),
            IN_CDC,
            &auto,
        );
        assert_eq!(start_type(&p), Some((StartType::ResumeProcessing, false)));
        let p = plan(
            &task("stopped", Some("Stop Reason NORMAL"), "cdc"),
            MID_LOAD,
            &auto,
        );
        assert_eq!(start_type(&p), Some((StartType::ResumeProcessing, false)));
    }

    #[test]
    fn restarts_that_would_duplicate_rows_are_refused_with_the_way_out() {
        let auto = options(StartMode::Auto, false);
        for (t, history) in [
            (
                task("stopped", Some("Stop Reason NORMAL"), "full-load-and-cdc"),
                MID_LOAD,
            ),
            (
                task(
                    "stopped",
                    Some("Stop Reason FULL_LOAD_ONLY_FINISHED"),
                    "full-load",
                ),
                MID_LOAD,
            ),
            (
                task("stopped", Some("Stop Reason NORMAL"), "full-load"),
                IN_CDC,
            ),
            (
                task(
                    "failed",
                    Some("Stop Reason FATAL_ERROR"),
                    "full-load-and-cdc",
                ),
                IN_CDC,
            ),
        ] {
            let Plan::Refuse { reason } = plan(&t, history, &auto) else {
                panic!("{t:?} must be refused");
            };
            assert!(reason.contains("duplicates"), "{reason}");
            assert!(reason.contains("truncateTarget"), "{reason}");
        }
        let p = plan(
            &task("stopped", Some("Stop Reason NORMAL"), "full-load-and-cdc"),
            MID_LOAD,
            &options(StartMode::Reload, true),
        );
        assert_eq!(start_type(&p), Some((StartType::ReloadTarget, true)));
        let p = plan(
            &task("failed", None, "full-load"),
            MID_LOAD,
            &options(StartMode::Reload, true),
        );
        assert_eq!(start_type(&p), Some((StartType::ReloadTarget, true)));
    }

    #[test]
    fn reload_without_truncate_and_cdc_only_reloads_are_refused() {
        let p = plan(
            &task("stopped", Some("Stop Reason NORMAL"), "full-load-and-cdc"),
            IN_CDC,
            &options(StartMode::Reload, false),
        );
        assert!(matches!(p, Plan::Refuse { .. }), "{p:?}");
        let p = plan(
            &task("stopped", Some("Stop Reason NORMAL"), "cdc"),
            IN_CDC,
            &options(StartMode::Reload, true),
        );
        let Plan::Refuse { reason } = p else { panic!() };
        assert!(reason.contains("cdc-only"), "{reason}");
    }

    #[test]
    fn running_is_left_alone_even_when_reload_was_asked() {
        let p = plan(
            &task("running", None, "full-load-and-cdc"),
            IN_CDC,
            &options(StartMode::Reload, true),
        );
        let Plan::Nothing { reason } = p else {
            panic!()
        };
        assert!(reason.contains("not applied"), "{reason}");
    }

    #[test]
    fn unknown_values_are_refused_raw() {
        let auto = options(StartMode::Auto, false);
        let Plan::Refuse { reason } = plan(&task("hibernating", None, "cdc"), NEVER, &auto) else {
            panic!()
        };
        assert!(reason.contains("`hibernating`"));
        let Plan::Refuse { reason } = plan(&task("stopped", None, "full-load-plus"), IN_CDC, &auto)
        else {
            panic!()
        };
        assert!(reason.contains("`full-load-plus`"));
    }
}
