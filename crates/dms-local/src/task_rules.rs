//! Which StartReplicationTask / StopReplicationTask calls DMS accepts in which task state.
//! https://docs.aws.amazon.com/dms/latest/APIReference/API_StartReplicationTask.html: `start-replication`
//! is only for a task that has never run; after that, `resume-processing` or `reload-target`.
//! The rules look at the *reported* status, so a held `modifying` refuses like DMS does.

use crate::model::{task_status, MigrationType, PendingAction, Task};
use crate::protocol::DmsError;

pub fn start_action(task: &Task, start_type: &str) -> Result<PendingAction, DmsError> {
    let status = task.reported_status();
    let action = match start_type {
        "start-replication" => PendingAction::StartReplication,
        "resume-processing" => PendingAction::ResumeProcessing,
        "reload-target" => PendingAction::ReloadTarget,
        other => {
            return Err(DmsError::invalid_parameter(format!(
                "StartReplicationTaskType {other:?} is not start-replication, resume-processing or reload-target"
            )))
        }
    };
    if action == PendingAction::ReloadTarget && task.migration_type == MigrationType::Cdc {
        return Err(DmsError::invalid_combination(
            "reload-target is not valid for a CDC-only task",
        ));
    }
    match (&action, status) {
        (PendingAction::StartReplication, task_status::READY) if !task.ever_started => Ok(action),
        (PendingAction::StartReplication, task_status::STOPPED | task_status::FAILED) => {
            Err(DmsError::invalid_state(
                "Start Type : START_REPLICATION, valid only for tasks running for the first time",
            ))
        }
        (
            PendingAction::ResumeProcessing | PendingAction::ReloadTarget,
            task_status::STOPPED | task_status::FAILED,
        ) => Ok(action),
        (PendingAction::ResumeProcessing | PendingAction::ReloadTarget, task_status::READY) => {
            Err(DmsError::invalid_state(format!(
                "Start Type : {}, valid only for tasks that have run before; use start-replication",
                start_type.to_ascii_uppercase().replace('-', "_")
            )))
        }
        _ => Err(DmsError::invalid_state(format!(
            "Replication task {} is in state {status}, in which it cannot be started",
            task.arn
        ))),
    }
}

pub fn check_stop(task: &Task) -> Result<(), DmsError> {
    match task.reported_status() {
        task_status::RUNNING | task_status::STARTING => Ok(()),
        status => Err(DmsError::invalid_state(format!(
            "Replication task {} is in state {status}: only a running task can be stopped",
            task.arn
        ))),
    }
}

/// ModifyReplicationTask: "Tasks that have run must have a status of Stopped or Failed to be modified"
/// (https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.Modifying.html); a task that never ran
/// (`ready`) may be modified too. Anything else answers InvalidResourceStateFault
/// (https://docs.aws.amazon.com/dms/latest/APIReference/API_ModifyReplicationTask.html: "The task must be
/// stopped before you can modify it").
pub fn check_modify(task: &Task) -> Result<(), DmsError> {
    match task.reported_status() {
        task_status::STOPPED | task_status::FAILED | task_status::READY => Ok(()),
        status => Err(DmsError::invalid_state(format!(
            "Replication task {} is in state {status}: the task must be stopped before you can modify it",
            task.arn
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Task;

    fn task(status: &str, ever_started: bool, kind: MigrationType) -> Task {
        Task {
            status: status.into(),
            ever_started,
            ..Task::registered(
                "arn:aws:dms:us-east-1:123456789012:task:T".into(),
                "t".into(),
                kind,
            )
        }
    }

    #[test]
    fn start_replication_only_once() {
        let fresh = task("ready", false, MigrationType::FullLoadAndCdc);
        assert_eq!(
            start_action(&fresh, "start-replication"),
            Ok(PendingAction::StartReplication)
        );
        let err = start_action(&fresh, "resume-processing").expect_err("never ran");
        assert_eq!(err.code, "InvalidResourceStateFault");
        let stopped = task("stopped", true, MigrationType::FullLoadAndCdc);
        let err = start_action(&stopped, "start-replication").expect_err("ran before");
        assert_eq!(err.code, "InvalidResourceStateFault");
        assert!(err.message.contains("first time"), "{}", err.message);
        assert_eq!(
            start_action(&stopped, "resume-processing"),
            Ok(PendingAction::ResumeProcessing)
        );
        assert_eq!(
            start_action(&stopped, "reload-target"),
            Ok(PendingAction::ReloadTarget)
        );
    }

    #[test]
    fn transitional_and_held_states_refuse() {
        for status in ["running", "starting", "stopping", "modifying", "creating"] {
            let t = task(status, true, MigrationType::FullLoad);
            let err = start_action(&t, "resume-processing").expect_err(status);
            assert_eq!(err.code, "InvalidResourceStateFault", "{status}");
        }
        let mut held = task("stopped", true, MigrationType::FullLoad);
        held.held_status = Some("modifying".into());
        assert!(start_action(&held, "resume-processing").is_err());
        assert!(check_stop(&held).is_err());
        assert!(check_stop(&task("running", true, MigrationType::Cdc)).is_ok());
        for status in ["running", "starting", "stopping", "creating"] {
            let err = check_modify(&task(status, true, MigrationType::FullLoad)).expect_err(status);
            assert_eq!(err.code, "InvalidResourceStateFault", "{status}");
        }
        for status in ["ready", "stopped", "failed"] {
            assert!(
                check_modify(&task(status, true, MigrationType::FullLoad)).is_ok(),
                "{status}"
            );
        }
        assert!(check_modify(&held).is_err(), "held modifying");
        let cdc = task("stopped", true, MigrationType::Cdc);
        assert_eq!(
            start_action(&cdc, "reload-target").map_err(|e| e.code),
            Err("InvalidParameterCombinationException")
        );
        assert_eq!(
            start_action(&cdc, "bogus").map_err(|e| e.code),
            Err("InvalidParameterValueException")
        );
    }
}
