//! `ExecutionState`: the one document every Lambda of the state machine reads and returns (docs/state-machine-contract.md).
//! Strict parsing of what the user pastes lives in `payload`; this module is the shape and its defaults.
//! Lists are capped (`MAX_NAMES`) because Step Functions state data is limited to 256 KiB.

use serde::{Deserialize, Serialize};

pub use crate::rules::bounds::MAX_NAMES;
use crate::rules::bounds::{cap_in_place, cap_names, MAX_FIX_BYTES, MAX_TEXT_BYTES};
use crate::rules::connectivity::FailureClass;
use crate::rules::dms_model::{MigrationType, Reported, StartType, TaskStatus};
use crate::rules::task_phase::Phase;

use crate::string_enum::string_enum;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionState {
    pub replication_instance_arn: String,
    pub source_endpoint_arn: String,
    pub target_endpoint_arn: String,
    pub replication_task_arn: String,
    pub source_endpoint_host: String,
    pub source_port: u16,
    pub options: Options,
    pub context: Context,
    pub monitor: Monitor,
    #[serde(default)]
    pub results: Results,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Options {
    pub auto_fix_security_group: bool,
    pub poll_interval_seconds: u32,
    pub assessment_poll_seconds: u32,
    pub max_monitor_hours: u32,
    pub max_polls: u32,
    pub cdc_latency_target_seconds: u32,
    pub ready_after_consecutive_polls: u32,
    pub start_mode: StartMode,
    pub truncate_target: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            auto_fix_security_group: true,
            poll_interval_seconds: 60,
            assessment_poll_seconds: 30,
            max_monitor_hours: 72,
            max_polls: 2500,
            cdc_latency_target_seconds: 5,
            ready_after_consecutive_polls: 3,
            start_mode: StartMode::Auto,
            truncate_target: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartMode {
    /// Start, resume or do nothing, whichever the task's real state calls for; never reload.
    Auto,
    /// Reload the target (with `truncateTarget`, after emptying the mapped tables).
    Reload,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    /// The Step Functions execution ARN (`$$.Execution.Id`), or `local` outside Step Functions.
    pub execution_id: String,
    pub region: String,
    pub account_id: String,
    /// The resource id after `task:` in the task ARN (the CloudWatch `ReplicationTaskIdentifier`).
    pub task_id: String,
    pub started_at_epoch_seconds: i64,
    pub links: Links,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Links {
    pub execution: String,
    pub dms_tasks: String,
}

impl Links {
    /// Console links in the partition's own console (the China and GovCloud consoles have their own hosts).
    /// `execution_id` is the execution ARN, or `local` outside Step Functions (then the state machines list).
    pub fn new(partition: &str, region: &str, execution_id: &str) -> Links {
        let console = match partition {
            "aws-cn" => format!("https://{region}.console.amazonaws.cn"),
            "aws-us-gov" => format!("https://{region}.console.amazonaws-us-gov.com"),
            _ => format!("https://{region}.console.aws.amazon.com"),
        };
        let execution = if execution_id.starts_with("arn:") {
            format!("{console}/states/home?region={region}#/v2/executions/details/{execution_id}")
        } else {
            format!("{console}/states/home?region={region}#/statemachines")
        };
        Links {
            execution,
            dms_tasks: format!("{console}/dms/v2/home?region={region}#tasks"),
        }
    }

    /// From an execution ARN alone (`arn:PARTITION:states:REGION:...`), for input that never validated.
    pub fn from_execution_arn(execution_id: &str) -> Option<Links> {
        let mut parts = execution_id.split(':');
        let (Some("arn"), Some(partition), Some("states"), Some(region)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        if !matches!(partition, "aws" | "aws-cn" | "aws-us-gov")
            || !crate::rules::arn::is_region(region)
        {
            return None;
        }
        Some(Links::new(partition, region, execution_id))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Monitor {
    /// Monitoring ends (phase `monitoring-ended`) at this time: start + `maxMonitorHours`.
    pub deadline_epoch_seconds: i64,
    pub polls: u32,
    pub consecutive_ready_polls: u32,
    pub full_load_announced: bool,
    /// Read by the ASL Wait state's `SecondsPath`.
    pub next_poll_seconds: u32,
    /// When a poll first saw the task stopped with `RECOVERABLE_ERROR` in the current stop (DMS restarts
    /// such a task itself); cleared once it runs again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovering_since_epoch_seconds: Option<i64>,
    /// The `recovering` phase (and its one email) was reported in this execution.
    #[serde(default)]
    pub recovery_announced: bool,
}

/// What each step found, keyed by step. Every field is optional: a step that has not run leaves it out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Results {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectivity: Option<ConnectivityResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sg_autofix: Option<SgAutofixResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assessment: Option<AssessmentResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_task: Option<StartTaskResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<ProgressResult>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConnectivityResult {
    /// Both endpoints `successful`.
    pub ok: bool,
    /// The source failed with `security-group`, autofix is on, and it has not been tried yet.
    pub autofix_eligible: bool,
    pub attempts: u32,
    pub source: EndpointCheck,
    pub target: EndpointCheck,
}

string_enum! {
    /// `results.connectivity.<endpoint>.status`.
    #[derive(Default)]
    pub enum EndpointStatus {
        Successful => "successful",
        Failed => "failed",
        /// Our test was still running when the Lambda had to answer.
        Testing => "testing",
        /// DMS refused to start a test for as long as the step could wait (classification
        /// `dms-unavailable`, the message names the resource and its status); without a classification,
        /// no test was asked for.
        #[default]
        NotTested => "not-tested",
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointCheck {
    pub endpoint_arn: String,
    pub status: EndpointStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classification: Option<FailureClass>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SgAutofixResult {
    pub source_groups: Vec<String>,
    pub dms_groups: Vec<String>,
    /// The in-VPC source-checks function's group, admitted like the DMS groups (None without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_checks_group: Option<String>,
    /// Rules this run added, as `sg-source <- sg-dms tcp/PORT`.
    pub added: Vec<String>,
    /// Rules that were present already.
    pub present: Vec<String>,
}

string_enum! {
    /// `results.assessment.status`.
    #[derive(Default)]
    pub enum AssessmentStatus {
        /// The checks ran and a DMS assessment run is being polled. A result without a status reads so.
        #[default]
        Running => "running",
        Passed => "passed",
        /// Warnings, or checks that could not run (never a pass).
        Warnings => "warnings",
        Failed => "failed",
        /// No DMS assessment run (the task has run before, or the stack turned it off).
        Skipped => "skipped",
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AssessmentResult {
    /// The ASL's Choice reads it.
    pub status: AssessmentStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_arn: Option<String>,
    pub polls: u32,
    pub counts: CheckCounts,
    pub failures: Vec<CheckSummary>,
    pub warnings: Vec<CheckSummary>,
    /// Checks that could not run (their database unreachable from where they run), with why and the fix.
    pub not_run: Vec<CheckSummary>,
    /// How many of the source checks ran and where (None before the checks ran, or when they were skipped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_checks: Option<SourceChecksRan>,
}

/// The source checks that ran (not `not_run`), of how many, and where: the email says so, so a source
/// checked from inside the VPC reads as checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SourceChecksRan {
    pub ran: u32,
    pub total: u32,
    /// Where they ran from, in words (`the source-checks function inside the stack's VPC`).
    #[serde(rename = "where")]
    pub location: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckCounts {
    pub pass: u32,
    pub warn: u32,
    pub fail: u32,
    /// Neither passed nor found anything: never counted as a pass (docs/checks.md).
    #[serde(rename = "notRun")]
    pub not_run: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CheckSummary {
    pub id: String,
    pub summary: String,
    pub fix: String,
    /// At most `MAX_NAMES` qualified names; `objectsTotal` says how many there were.
    pub objects: Vec<String>,
    pub objects_total: u32,
}

string_enum! {
    /// `results.startTask.action`: the StartReplicationTask type start-task used, or `none`.
    #[derive(Default)]
    pub enum StartAction {
        StartReplication => "start-replication",
        ResumeProcessing => "resume-processing",
        ReloadTarget => "reload-target",
        /// The task was left as it was (already running or starting).
        #[default]
        Untouched => "none",
    }
}

impl From<StartType> for StartAction {
    fn from(start_type: StartType) -> StartAction {
        match start_type {
            StartType::StartReplication => StartAction::StartReplication,
            StartType::ResumeProcessing => StartAction::ResumeProcessing,
            StartType::ReloadTarget => StartAction::ReloadTarget,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StartTaskResult {
    pub action: StartAction,
    pub reason: String,
    pub status_before: String,
    pub truncated_tables: Vec<String>,
    pub truncated_total: u32,
    /// What start-task did with the plan file in the stack's bucket (docs/console.md, *Applying a plan*):
    /// applied, already applied, or why not. None when there is no plan file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProgressResult {
    /// The ASL's Choice reads it.
    pub phase: Phase,
    pub status: Reported<TaskStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_load_progress_percent: Option<i32>,
    pub tables_loaded: u32,
    pub tables_loading: u32,
    pub tables_queued: u32,
    pub tables_errored: u32,
    pub error_tables: Vec<String>,
    pub warning_tables: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cdc_latency_source_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cdc_latency_target_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_load_rows: Option<i64>,
    /// How many tables have a validation warning (`warningTables` holds at most `MAX_NAMES`).
    pub warning_tables_total: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migration_type: Option<MigrationType>,
}

/// What a Catch recorded: Step Functions' `Error` and `Cause`, and the state name a Pass added as `step`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Failure {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(rename = "Error", skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(rename = "Cause", skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// Keeps the first names (see `bounds::capped_names`) and says how many there were.
pub fn capped(items: &[String]) -> (Vec<String>, u32) {
    crate::rules::bounds::capped_names(items)
}

impl ExecutionState {
    /// Cuts every list and free text of every result to the bounds of `crate::rules::bounds`, so the state a
    /// Lambda returns stays under Step Functions' 256 KiB whatever the object counts and message lengths.
    /// `envelope::write_state` applies it to every Lambda's answer; counts (`objectsTotal`,
    /// `truncatedTotal`, `tablesErrored`...) keep the real numbers.
    pub fn bound(&mut self) {
        self.results.bound();
    }
}

impl Results {
    pub fn bound(&mut self) {
        if let Some(c) = &mut self.connectivity {
            for end in [&mut c.source, &mut c.target] {
                for text in [&mut end.message, &mut end.fix].into_iter().flatten() {
                    cap_in_place(text, MAX_TEXT_BYTES);
                }
            }
        }
        if let Some(sg) = &mut self.sg_autofix {
            for list in [
                &mut sg.source_groups,
                &mut sg.dms_groups,
                &mut sg.added,
                &mut sg.present,
            ] {
                cap_names(list);
            }
        }
        if let Some(a) = &mut self.assessment {
            if let Some(reason) = &mut a.reason {
                cap_in_place(reason, MAX_TEXT_BYTES);
            }
            if let Some(s) = &mut a.source_checks {
                cap_in_place(&mut s.location, MAX_TEXT_BYTES);
            }
            for list in [&mut a.failures, &mut a.warnings, &mut a.not_run] {
                list.truncate(MAX_NAMES);
                list.iter_mut().for_each(CheckSummary::bound);
            }
        }
        if let Some(s) = &mut self.start_task {
            cap_in_place(&mut s.reason, MAX_TEXT_BYTES);
            cap_names(&mut s.truncated_tables);
        }
        if let Some(p) = &mut self.progress {
            for text in [
                &mut p.stop_reason,
                &mut p.last_failure_message,
                &mut p.reason,
            ]
            .into_iter()
            .flatten()
            {
                cap_in_place(text, MAX_TEXT_BYTES);
            }
            cap_names(&mut p.error_tables);
            cap_names(&mut p.warning_tables);
        }
    }
}

impl CheckSummary {
    pub fn bound(&mut self) {
        cap_in_place(&mut self.id, MAX_TEXT_BYTES);
        cap_in_place(&mut self.summary, MAX_TEXT_BYTES);
        if self.fix.len() > MAX_FIX_BYTES {
            self.fix = crate::rules::bounds::cap_text(
                &self.fix,
                MAX_FIX_BYTES,
                "\n-- ... cut here: `dms-migrate preflight` prints the whole fix",
            );
        }
        cap_names(&mut self.objects);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::bounds::MAX_STATE_BYTES;

    #[test]
    fn results_are_typed_and_unknown_values_are_refused_by_name() {
        let results: Results = serde_json::from_value(serde_json::json!({
            "connectivity": {"source": {"status": "failed", "classification": "security-group"},
                             "target": {"status": "successful"}},
            "startTask": {"action": "none"},
            "progress": {"phase": "ready-for-cutover", "migrationType": "full-load-and-cdc"}
        }))
        .expect("the state the Lambdas write");
        let connectivity = results.connectivity.expect("connectivity");
        assert_eq!(connectivity.source.status, EndpointStatus::Failed);
        assert_eq!(
            connectivity.source.classification,
            Some(FailureClass::SecurityGroup)
        );
        assert_eq!(
            results.start_task.expect("startTask").action,
            StartAction::Untouched
        );
        let progress = results.progress.expect("progress");
        assert_eq!(progress.phase, Phase::ReadyForCutover);
        assert_eq!(progress.migration_type, Some(MigrationType::FullLoadAndCdc));

        let err = serde_json::from_value::<Results>(serde_json::json!({
            "progress": {"phase": "ready"}
        }))
        .expect_err("a phase the ASL does not route on");
        assert!(err.to_string().contains("unknown Phase `ready`"), "{err}");
        let missing = serde_json::from_value::<EndpointCheck>(serde_json::json!({}))
            .expect("an endpoint nobody tested");
        assert_eq!(
            missing.status,
            EndpointStatus::NotTested,
            "never successful"
        );
    }

    #[test]
    fn console_links_are_in_the_partitions_own_console() {
        let china = "arn:aws-cn:states:cn-north-1:123456789012:execution:m:run-1";
        let links = Links::from_execution_arn(china).expect("a China execution ARN");
        assert_eq!(
            links.execution,
            format!("https://cn-north-1.console.amazonaws.cn/states/home?region=cn-north-1#/v2/executions/details/{china}")
        );
        assert_eq!(
            links.dms_tasks,
            "https://cn-north-1.console.amazonaws.cn/dms/v2/home?region=cn-north-1#tasks"
        );
        let gov = Links::new("aws-us-gov", "us-gov-west-1", "local");
        assert_eq!(
            gov.execution,
            "https://us-gov-west-1.console.amazonaws-us-gov.com/states/home?region=us-gov-west-1#/statemachines"
        );
        let commercial = Links::new("aws", "eu-west-1", "local");
        assert!(commercial
            .dms_tasks
            .starts_with("https://eu-west-1.console.aws.amazon.com/dms/"));
        for not_an_execution in [
            "arn:aws:dms:us-east-1:123456789012:task:X",
            "arn:aws-xx:states:us-east-1:123456789012:execution:m:r",
            "arn:aws:states:nowhere:123456789012:execution:m:r",
            "local",
        ] {
            assert_eq!(
                Links::from_execution_arn(not_an_execution),
                None,
                "{not_an_execution}"
            );
        }
    }

    fn huge_names(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("\"{}{i}\"", "n".repeat(300)))
            .collect()
    }

    /// Every list and text at its worst (names longer than PostgreSQL allows, messages of megabytes):
    /// the bounded state still fits Step Functions' 256 KiB with the margin `MAX_STATE_BYTES` keeps.
    #[test]
    fn the_worst_case_state_fits_after_bounding() {
        let text = "x".repeat(1_000_000);
        let check = CheckSummary {
            id: text.clone(),
            summary: text.clone(),
            fix: format!("TRUNCATE {};", huge_names(10_000).join(", ")),
            objects: huge_names(10_000),
            objects_total: 10_000,
        };
        let endpoint = EndpointCheck {
            endpoint_arn: "arn:aws:dms:us-east-1:123456789012:endpoint:X".into(),
            status: EndpointStatus::Failed,
            classification: Some(FailureClass::Unknown),
            message: Some(text.clone()),
            fix: Some(text.clone()),
        };
        let mut results = Results {
            connectivity: Some(ConnectivityResult {
                source: endpoint.clone(),
                target: endpoint,
                ..Default::default()
            }),
            sg_autofix: Some(SgAutofixResult {
                source_groups: huge_names(1000),
                dms_groups: huge_names(1000),
                source_checks_group: None,
                added: huge_names(1000),
                present: huge_names(1000),
            }),
            assessment: Some(AssessmentResult {
                status: AssessmentStatus::Failed,
                reason: Some(text.clone()),
                failures: vec![check.clone(); 500],
                warnings: vec![check; 500],
                ..Default::default()
            }),
            start_task: Some(StartTaskResult {
                reason: text.clone(),
                truncated_tables: huge_names(10_000),
                truncated_total: 10_000,
                ..Default::default()
            }),
            progress: Some(ProgressResult {
                stop_reason: Some(text.clone()),
                last_failure_message: Some(text.clone()),
                reason: Some(text),
                error_tables: huge_names(10_000),
                warning_tables: huge_names(10_000),
                ..Default::default()
            }),
        };
        results.bound();
        let size = serde_json::to_string(&results).unwrap().len();
        assert!(size < MAX_STATE_BYTES, "{size} bytes");
        let a = results.assessment.unwrap();
        assert_eq!(a.failures.len(), MAX_NAMES);
        assert_eq!(a.failures[0].objects_total, 10_000, "counts stay exact");
        assert!(
            a.failures[0].fix.contains("dms-migrate preflight"),
            "{}",
            a.failures[0].fix
        );
        assert_eq!(results.start_task.unwrap().truncated_total, 10_000);
    }
}
