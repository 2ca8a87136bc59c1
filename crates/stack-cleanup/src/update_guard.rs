//! `Custom::UpdateGuard`: refuses, before CloudFormation touches anything, a stack update that DMS or S3
//! would refuse or that would leave data behind. The replication task and the assessment bucket depend on
//! it, so CloudFormation updates it first; its properties carry the values that matter (it cannot `Ref`
//! the task or the bucket: they depend on it).
//!
//! - `MigrationType` or `LobMaxSizeKb` changed: CloudFormation modifies the task in place
//!   (ModifyReplicationTask), and DMS modifies a task that has run only when it is stopped or failed
//!   ("Tasks that have run must have a status of Stopped or Failed to be modified",
//!   https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.Modifying.html; "The task must be stopped
//!   before you can modify it", https://docs.aws.amazon.com/dms/latest/APIReference/API_ModifyReplicationTask.html).
//!   The guard reads the task's real state and settings and refuses while it is in any other state.
//! - `MigrationBucketName` changed: the bucket's name cannot change in place, so CloudFormation creates a
//!   new bucket and deletes the old one at the end of the update, which fails for a bucket that still holds
//!   objects and leaves it behind, outside the stack
//!   (https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-s3-bucket.html,
//!   BucketName: "Update requires: Replacement"). The guard refuses while the old bucket holds any version.
//!
//! - The way back's reverse task (`FallbackTaskIdentifier`, docs/fallback.md) runs from the switch on:
//!   `LobMaxSizeKb` changed modifies it too, and `EnableFallback` set to `false` deletes it. The guard
//!   refuses either while it is in a state DMS does not modify it in, and names the fix (`dms-migrate
//!   fallback end`, which stops it and drops its slot). DeleteReplicationTask answers
//!   `InvalidResourceStateFault` for a task "in a state that prevents it from being used"
//!   (https://docs.aws.amazon.com/dms/latest/APIReference/API_DeleteReplicationTask.html); which states
//!   those are is not listed there, so the guard holds deletion to the states it accepts for a
//!   modification.
//!
//! It always succeeds when the requested values are what the task and the bucket already are: that is what
//! a rollback sends (the old values back), and a guard failing a rollback would leave the stack in
//! UPDATE_ROLLBACK_FAILED. Create and Delete do nothing.

use std::collections::BTreeMap;
use std::future::Future;

use dms_core::aws::s3::VersionedBucket;
use dms_core::{ErrorName, StepError};

use crate::handler::answer;
use crate::response::{CfnRequest, CfnResponse, RequestType, Status};

pub const RESOURCE_TYPE: &str = "Custom::UpdateGuard";

/// Task statuses in which DMS accepts ModifyReplicationTask: `ready` (never ran), `stopped`, `failed`.
const MODIFIABLE_STATUSES: [&str; 3] = ["ready", "stopped", "failed"];

/// What the guard needs to know of the task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFacts {
    pub status: String,
    pub migration_type: String,
    /// `TargetMetadata.LobMaxSize` of the task's settings, when DMS returned them.
    pub lob_max_size_kb: Option<u64>,
}

pub trait TaskReader {
    /// None when no task has this identifier (not created yet, or deleted).
    fn task_by_identifier(
        &self,
        identifier: &str,
    ) -> impl Future<Output = Result<Option<TaskFacts>, StepError>> + Send;
}

/// `TargetMetadata.LobMaxSize` of a task's settings JSON.
pub fn lob_max_size_kb(settings_json: &str) -> Option<u64> {
    let settings: serde_json::Value = serde_json::from_str(settings_json).ok()?;
    settings["TargetMetadata"]["LobMaxSize"].as_u64()
}

pub fn physical_resource_id(request: &CfnRequest, default_stack_name: &str) -> String {
    request.physical_resource_id.clone().unwrap_or_else(|| {
        let stack = request.property("StackName").unwrap_or(default_stack_name);
        format!("{stack}-update-guard")
    })
}

pub async fn respond<T, B>(
    request: &CfnRequest,
    tasks: &T,
    buckets: &B,
    default_stack_name: &str,
) -> CfnResponse
where
    T: TaskReader + Sync,
    B: VersionedBucket + Sync,
{
    let physical_id = physical_resource_id(request, default_stack_name);
    if request.request_type != RequestType::Update {
        return answer(
            request,
            physical_id,
            Status::Success,
            format!(
                "{:?}: nothing to check; the guard checks stack updates",
                request.request_type
            ),
            BTreeMap::new(),
        );
    }
    let mut refusals = Vec::new();
    let mut checked = Vec::new();
    match check_task(request, tasks).await {
        Ok(Some(refusal)) => refusals.push(refusal),
        Ok(None) => checked.push("the task accepts the update"),
        Err(e) => refusals.push(format!(
            "the replication task could not be read, so the update cannot be judged safe: {}",
            e.message
        )),
    }
    match check_fallback_task(request, tasks).await {
        Ok(Some(refusal)) => refusals.push(refusal),
        Ok(None) => checked.push("the way back's task accepts the update"),
        Err(e) => refusals.push(format!(
            "the way back's replication task could not be read, so the update cannot be judged safe: {}",
            e.message
        )),
    }
    match check_bucket(request, buckets).await {
        Ok(Some(refusal)) => refusals.push(refusal),
        Ok(None) => checked.push("the bucket needs no emptying"),
        Err(e) => refusals.push(format!(
            "the assessment bucket could not be read, so the update cannot be judged safe: {}",
            e.message
        )),
    }
    if refusals.is_empty() {
        return answer(
            request,
            physical_id,
            Status::Success,
            format!("Update checked: {}.", checked.join("; ")),
            BTreeMap::new(),
        );
    }
    answer(
        request,
        physical_id,
        Status::Failed,
        format!(
            "Stack update refused before it changed anything: {}",
            refusals.join(" ")
        ),
        BTreeMap::new(),
    )
}

/// Some(reason) when the update would modify a task DMS cannot modify in its state.
async fn check_task<T: TaskReader>(
    request: &CfnRequest,
    tasks: &T,
) -> Result<Option<String>, StepError> {
    let Some(identifier) = request.property("TaskIdentifier") else {
        return Ok(None);
    };
    let Some(task) = tasks.task_by_identifier(identifier).await? else {
        return Ok(None);
    };
    let mut changes = Vec::new();
    if let Some(wanted) = request.property("MigrationType") {
        if wanted != task.migration_type {
            changes.push(format!("MigrationType {} -> {wanted}", task.migration_type));
        }
    }
    changes.extend(lob_change(request, &task));
    if changes.is_empty() || MODIFIABLE_STATUSES.contains(&task.status.as_str()) {
        return Ok(None);
    }
    Ok(Some(format!(
        "{} would make CloudFormation modify replication task {identifier}, which is {}: DMS modifies a task \
         only when it is stopped or failed (https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.Modifying.html). \
         Stop the task first (DMS console, or aws dms stop-replication-task), then update the stack again; or \
         keep MigrationType={} and LobMaxSizeKb={}.",
        changes.join(" and "),
        task.status,
        task.migration_type,
        task.lob_max_size_kb
            .map_or("<unchanged>".to_string(), |kb| kb.to_string()),
    )))
}

/// `LobMaxSizeKb a -> b` when the update asks `task` for another LOB size.
fn lob_change(request: &CfnRequest, task: &TaskFacts) -> Option<String> {
    let wanted = request.property("LobMaxSizeKb")?;
    let wanted_kb = wanted.parse::<u64>().ok();
    let differs = match task.lob_max_size_kb {
        Some(actual) => wanted_kb != Some(actual),
        // Settings not returned: judge by what the update changes.
        None => request.old_property("LobMaxSizeKb") != Some(wanted),
    };
    differs.then(|| {
        let actual = task
            .lob_max_size_kb
            .map_or("unknown".to_string(), |kb| kb.to_string());
        format!("LobMaxSizeKb {actual} -> {wanted}")
    })
}

/// Some(reason) when the update would modify or delete the way back's reverse task in a state DMS refuses
/// it in.
async fn check_fallback_task<T: TaskReader>(
    request: &CfnRequest,
    tasks: &T,
) -> Result<Option<String>, StepError> {
    let Some(identifier) = request.property("FallbackTaskIdentifier") else {
        return Ok(None);
    };
    let Some(task) = tasks.task_by_identifier(identifier).await? else {
        return Ok(None);
    };
    if MODIFIABLE_STATUSES.contains(&task.status.as_str()) {
        return Ok(None);
    }
    let end_it = "End the way back first (`dms-migrate fallback end --task-arn <FallbackReplicationTaskArn>` stops the task and drops its slot on PlanetScale; going back to Aurora is then no longer possible), then update the stack again";
    if request.property("EnableFallback") == Some("false") {
        return Ok(Some(format!(
            "EnableFallback=false would make CloudFormation delete the way back's reverse task {identifier}, which is {}: while it runs it is what keeps Aurora current with PlanetScale's writes, and DMS does not delete a task in that state. {end_it}; or keep EnableFallback=true.",
            task.status
        )));
    }
    Ok(lob_change(request, &task).map(|change| {
        format!(
            "{change} would make CloudFormation modify the way back's reverse task {identifier} too, which is {}: DMS modifies a task only when it is stopped or failed (https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.Modifying.html). {end_it}; or keep LobMaxSizeKb={}.",
            task.status,
            task.lob_max_size_kb
                .map_or("<unchanged>".to_string(), |kb| kb.to_string()),
        )
    }))
}

/// Some(reason) when the update would replace a bucket that still holds object versions.
async fn check_bucket<B: VersionedBucket>(
    request: &CfnRequest,
    buckets: &B,
) -> Result<Option<String>, StepError> {
    let (Some(wanted), Some(current)) = (
        request.property("BucketName"),
        request.old_property("BucketName"),
    ) else {
        return Ok(None);
    };
    if wanted == current {
        return Ok(None);
    }
    // The requested bucket exists already: a rollback (CloudFormation deletes the old bucket only after
    // the update succeeded, so the original is still there) or a return to a kept bucket.
    match buckets.list_object_versions(wanted, None).await {
        Ok(_) => return Ok(None),
        Err(e) if e.name == ErrorName::AwsNotFound => {}
        // Not ours to read (another account's name): CloudFormation will refuse to create it anyway.
        Err(_) => {}
    }
    let page = match buckets.list_object_versions(current, None).await {
        Ok(page) => page,
        Err(e) if e.name == ErrorName::AwsNotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if page.versions.is_empty() {
        return Ok(None);
    }
    let count = if page.next.is_some() {
        format!("at least {}", page.versions.len())
    } else {
        page.versions.len().to_string()
    };
    Ok(Some(format!(
        "Changing MigrationBucketName replaces the assessment bucket: CloudFormation would create {wanted} and \
         then fail to delete {current}, which still holds {count} object version(s) or delete marker(s), \
         leaving it behind outside the stack. Empty {current} (every version) first, or keep the current \
         MigrationBucketName."
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dms_core::aws::s3::{DeleteFailure, ObjectVersionRef, VersionsPage, VersionsPageMarker};
    use serde_json::{json, Value};
    use std::collections::HashMap;

    struct FakeTasks(Option<TaskFacts>);

    impl TaskReader for FakeTasks {
        /// The forward task only: the way back's task does not exist.
        async fn task_by_identifier(
            &self,
            identifier: &str,
        ) -> Result<Option<TaskFacts>, StepError> {
            Ok(self.0.clone().filter(|_| identifier == "mig-task"))
        }
    }

    /// Tasks by identifier.
    struct NamedTasks(HashMap<&'static str, TaskFacts>);

    impl TaskReader for NamedTasks {
        async fn task_by_identifier(
            &self,
            identifier: &str,
        ) -> Result<Option<TaskFacts>, StepError> {
            Ok(self.0.get(identifier).cloned())
        }
    }

    fn facts(status: &str, migration_type: &str) -> TaskFacts {
        TaskFacts {
            status: status.into(),
            migration_type: migration_type.into(),
            lob_max_size_kb: Some(64),
        }
    }

    /// The forward task stopped, the way back's running (after the switch).
    fn switched() -> NamedTasks {
        NamedTasks(HashMap::from([
            ("mig-task", facts("stopped", "full-load-and-cdc")),
            ("mig-fallback-task", facts("running", "cdc")),
        ]))
    }

    fn with_fallback(mut props: Value, enabled: &str) -> Value {
        props["FallbackTaskIdentifier"] = json!("mig-fallback-task");
        props["EnableFallback"] = json!(enabled);
        props
    }

    #[tokio::test]
    async fn turning_the_way_back_off_while_its_task_runs_is_refused_naming_fallback_end() {
        let r = request(
            "Update",
            with_fallback(props("full-load-and-cdc", "64", "b"), "false"),
            with_fallback(props("full-load-and-cdc", "64", "b"), "true"),
        );
        let out = respond(&r, &switched(), &buckets(&[]), "env").await;
        assert_eq!(out.status, Status::Failed);
        assert!(
            out.reason.contains("EnableFallback=false")
                && out.reason.contains("mig-fallback-task")
                && out.reason.contains("dms-migrate fallback end"),
            "{}",
            out.reason
        );
        // Once fallback end stopped it, the same update passes.
        let ended = NamedTasks(HashMap::from([
            ("mig-task", facts("stopped", "full-load-and-cdc")),
            ("mig-fallback-task", facts("stopped", "cdc")),
        ]));
        let out = respond(&r, &ended, &buckets(&[]), "env").await;
        assert_eq!(out.status, Status::Success, "{}", out.reason);
    }

    #[tokio::test]
    async fn a_changed_lob_size_is_refused_while_the_way_backs_task_runs_even_with_the_forward_task_stopped(
    ) {
        let r = request(
            "Update",
            with_fallback(props("full-load-and-cdc", "128", "b"), "true"),
            with_fallback(props("full-load-and-cdc", "64", "b"), "true"),
        );
        let out = respond(&r, &switched(), &buckets(&[]), "env").await;
        assert_eq!(out.status, Status::Failed);
        assert!(
            out.reason.contains("LobMaxSizeKb 64 -> 128")
                && out
                    .reason
                    .contains("way back's reverse task mig-fallback-task")
                && !out.reason.contains("replication task mig-task,"),
            "{}",
            out.reason
        );
        // The same update that changes nothing for the reverse task passes.
        let same = request(
            "Update",
            with_fallback(props("full-load-and-cdc", "64", "b"), "true"),
            with_fallback(props("full-load-and-cdc", "64", "b"), "true"),
        );
        let out = respond(&same, &switched(), &buckets(&[]), "env").await;
        assert_eq!(out.status, Status::Success, "{}", out.reason);
    }

    /// Bucket name → number of versions; absent names do not exist.
    struct FakeBuckets(HashMap<String, usize>);

    impl VersionedBucket for FakeBuckets {
        async fn list_object_versions(
            &self,
            bucket: &str,
            _after: Option<&VersionsPageMarker>,
        ) -> Result<VersionsPage, StepError> {
            let Some(n) = self.0.get(bucket) else {
                return Err(StepError::new(ErrorName::AwsNotFound, "NoSuchBucket"));
            };
            Ok(VersionsPage {
                versions: (0..*n)
                    .map(|i| ObjectVersionRef {
                        key: format!("k{i}"),
                        version_id: Some(format!("v{i}")),
                        is_delete_marker: false,
                    })
                    .collect(),
                next: None,
            })
        }
        async fn delete_object_versions(
            &self,
            _: &str,
            _: &[ObjectVersionRef],
        ) -> Result<Vec<DeleteFailure>, StepError> {
            unreachable!("the guard never deletes")
        }
    }

    fn task(status: &str) -> FakeTasks {
        FakeTasks(Some(TaskFacts {
            status: status.into(),
            migration_type: "full-load-and-cdc".into(),
            lob_max_size_kb: Some(64),
        }))
    }

    fn request(kind: &str, new: Value, old: Value) -> CfnRequest {
        serde_json::from_value(json!({
            "RequestType": kind,
            "ResponseURL": "https://example.com/r",
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/mig/guid",
            "RequestId": "req",
            "ResourceType": RESOURCE_TYPE,
            "LogicalResourceId": "UpdateGuard",
            "PhysicalResourceId": "mig-update-guard",
            "ResourceProperties": new,
            "OldResourceProperties": old,
        }))
        .unwrap()
    }

    fn props(migration: &str, lob: &str, bucket: &str) -> Value {
        json!({"TaskIdentifier": "mig-task", "MigrationType": migration, "LobMaxSizeKb": lob,
               "BucketName": bucket, "StackName": "mig"})
    }

    fn buckets(entries: &[(&str, usize)]) -> FakeBuckets {
        FakeBuckets(entries.iter().map(|(k, v)| (k.to_string(), *v)).collect())
    }

    #[tokio::test]
    async fn a_changed_lob_size_on_a_running_task_is_refused_naming_the_fix() {
        let r = request(
            "Update",
            props("full-load-and-cdc", "128", "b"),
            props("full-load-and-cdc", "64", "b"),
        );
        let out = respond(&r, &task("running"), &buckets(&[("b", 3)]), "env").await;
        assert_eq!(out.status, Status::Failed);
        assert!(
            out.reason.contains("LobMaxSizeKb 64 -> 128")
                && out.reason.contains("running")
                && out.reason.contains("Stop the task first"),
            "{}",
            out.reason
        );
    }

    #[tokio::test]
    async fn a_changed_migration_type_on_a_stopped_or_never_run_task_passes() {
        for status in ["stopped", "failed", "ready"] {
            let r = request(
                "Update",
                props("cdc", "64", "b"),
                props("full-load-and-cdc", "64", "b"),
            );
            let out = respond(&r, &task(status), &buckets(&[]), "env").await;
            assert_eq!(out.status, Status::Success, "{status}: {}", out.reason);
        }
    }

    #[tokio::test]
    async fn a_rollback_asking_for_what_the_task_has_passes_while_it_runs() {
        // Rollback: the new properties are the original values, the old ones the refused update's.
        let r = request(
            "Update",
            props("full-load-and-cdc", "64", "b"),
            props("cdc", "128", "b2"),
        );
        let out = respond(
            &r,
            &task("running"),
            &buckets(&[("b", 5), ("b2", 0)]),
            "env",
        )
        .await;
        assert_eq!(out.status, Status::Success, "{}", out.reason);
    }

    #[tokio::test]
    async fn a_new_bucket_name_is_refused_while_the_old_bucket_holds_versions() {
        let r = request(
            "Update",
            props("full-load-and-cdc", "64", "new"),
            props("full-load-and-cdc", "64", "old"),
        );
        let out = respond(&r, &task("running"), &buckets(&[("old", 7)]), "env").await;
        assert_eq!(out.status, Status::Failed);
        assert!(
            out.reason.contains("old") && out.reason.contains("holds 7"),
            "{}",
            out.reason
        );
        let out = respond(&r, &task("running"), &buckets(&[("old", 0)]), "env").await;
        assert_eq!(out.status, Status::Success, "{}", out.reason);
    }

    #[tokio::test]
    async fn create_and_delete_pass_without_reading_anything() {
        for kind in ["Create", "Delete"] {
            let r = request(kind, props("cdc", "1", "x"), json!({}));
            let out = respond(&r, &task("running"), &buckets(&[("x", 9)]), "env").await;
            assert_eq!(out.status, Status::Success, "{kind}");
        }
    }

    #[test]
    fn the_lob_size_is_read_from_the_task_settings() {
        assert_eq!(
            lob_max_size_kb(r#"{"TargetMetadata":{"LobMaxSize":64}}"#),
            Some(64)
        );
        assert_eq!(lob_max_size_kb("{}"), None);
        assert_eq!(lob_max_size_kb("not json"), None);
    }
}
