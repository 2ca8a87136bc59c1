//! One plain-text email per event, readable on a phone: what happened, the step, the cause in plain words,
//! the fix, the numbers known so far, and the links. Rendered from whatever part of the state is present,
//! because a `failed` email may follow input that never validated. Every line passes the secret scrubber.

use std::fmt::Write as _;

use dms_core::rules::bounds::{
    cap_text, CUT, MAX_EMAIL_BYTES, MAX_EMAIL_DETAILS_BYTES, MAX_TEXT_BYTES,
};
use dms_core::rules::redact::redact_secrets;
use dms_core::rules::state::{
    AssessmentResult, CheckSummary, ConnectivityResult, EndpointCheck, EndpointStatus, Failure,
    Links, ProgressResult, SgAutofixResult, StartAction, StartTaskResult,
};
use dms_core::rules::task_phase::StopReason;
use dms_core::Event;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub struct Email {
    pub subject: String,
    pub body: String,
}

/// The parts of the state an email may mention, each read on its own so one bad part spoils nothing.
pub struct StateView {
    pub task_arn: Option<String>,
    pub task_id: String,
    pub execution_id: String,
    pub links: Option<Links>,
    pub source_host: Option<String>,
    pub poll_interval_seconds: Option<u64>,
    pub cdc_latency_target_seconds: Option<u64>,
    pub polls: Option<u64>,
    pub connectivity: Option<ConnectivityResult>,
    pub sg_autofix: Option<SgAutofixResult>,
    pub assessment: Option<AssessmentResult>,
    pub start_task: Option<StartTaskResult>,
    pub progress: Option<ProgressResult>,
    pub error: Option<Failure>,
}

fn part<T: DeserializeOwned>(value: &Value, pointer: &str) -> Option<T> {
    value
        .pointer(pointer)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

impl StateView {
    pub fn read(state: &Value, execution_id: &str) -> StateView {
        let task_arn: Option<String> = part(state, "/replicationTaskArn");
        let task_id = part::<String>(state, "/context/taskId")
            .or_else(|| {
                task_arn
                    .as_deref()
                    .and_then(|a| a.rsplit(':').next())
                    .map(str::to_string)
            })
            .filter(|id| !id.trim().is_empty())
            .unwrap_or_else(|| "unknown task".to_string());
        StateView {
            task_arn,
            task_id,
            execution_id: execution_id.to_string(),
            links: part(state, "/context/links")
                .or_else(|| Links::from_execution_arn(execution_id)),
            source_host: part(state, "/sourceEndpointHost"),
            poll_interval_seconds: part(state, "/options/pollIntervalSeconds"),
            cdc_latency_target_seconds: part(state, "/options/cdcLatencyTargetSeconds"),
            polls: part(state, "/monitor/polls"),
            connectivity: part(state, "/results/connectivity"),
            sg_autofix: part(state, "/results/sgAutofix"),
            assessment: part(state, "/results/assessment"),
            start_task: part(state, "/results/startTask"),
            progress: part(state, "/results/progress"),
            error: part(state, "/error"),
        }
    }
}

/// What one email says, before layout.
struct Message {
    title: String,
    headline: String,
    step: Option<String>,
    why: Option<String>,
    fix: Option<String>,
    details: Vec<String>,
}

impl Message {
    fn new(title: impl Into<String>, headline: impl Into<String>) -> Self {
        Message {
            title: title.into(),
            headline: headline.into(),
            step: None,
            why: None,
            fix: None,
            details: Vec::new(),
        }
    }
}

/// `way_back_task_arn`: the stack's reverse task (`FallbackReplicationTask`), `None` when the stack was
/// deployed without the way back (`EnableFallback` false).
pub fn render(event: Event, view: &StateView, way_back_task_arn: Option<&str>) -> Email {
    let message = match event {
        Event::Started => started(view),
        Event::ConnectivityFailed => connectivity_failed(view),
        Event::SgFixed => sg_fixed(view),
        Event::AssessmentWarnings => assessment(view, false),
        Event::AssessmentFailed => assessment(view, true),
        Event::AssessmentSkipped => assessment_skipped(view),
        Event::TaskStarted => task_started(view),
        Event::FullLoadComplete => full_load_complete(view),
        Event::TaskRecovering => task_recovering(view),
        Event::ReadyForCutover => ready_for_cutover(view, way_back_task_arn),
        Event::Succeeded => succeeded(view),
        Event::TaskFailed => task_failed(view),
        Event::MonitoringEnded => monitoring_ended(view),
        Event::Failed => failed(view),
    };
    Email {
        subject: subject(&view.task_id, &message.title),
        body: layout(event, view, &message),
    }
}

/// SNS email subjects: ASCII, no line breaks, under 100 characters.
fn subject(task_id: &str, title: &str) -> String {
    let ascii = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    ' '
                }
            })
            .collect::<String>()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut task = ascii(task_id);
    if task.len() > 30 {
        task.truncate(30);
    }
    let mut text = format!("[DMS {task}] {}", ascii(title));
    if text.len() > 99 {
        text.truncate(96);
        text.push_str("...");
    }
    text
}

fn layout(event: Event, view: &StateView, message: &Message) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}\n", message.headline);
    if let Some(step) = &message.step {
        let _ = writeln!(out, "Step: {step}");
    }
    if let Some(why) = &message.why {
        // A Catch's Cause may hold up to 32,768 characters.
        let why = cap_text(why, MAX_TEXT_BYTES * 4, CUT);
        let _ = writeln!(out, "Why: {why}");
    }
    if let Some(fix) = &message.fix {
        let _ = writeln!(out, "How to fix: {fix}");
    }
    if message.step.is_some() || message.why.is_some() || message.fix.is_some() {
        out.push('\n');
    }
    let mut details = String::new();
    for detail in &message.details {
        let _ = writeln!(details, "{detail}");
    }
    out.push_str(&cap_text(&details, MAX_EMAIL_DETAILS_BYTES, DETAILS_CUT));
    if !message.details.is_empty() {
        out.push('\n');
    }
    let numbers = numbers_so_far(view);
    if !numbers.is_empty() {
        let _ = writeln!(out, "Numbers so far:");
        for line in numbers {
            let _ = writeln!(out, "  {line}");
        }
        out.push('\n');
    }
    if let Some(links) = &view.links {
        let _ = writeln!(out, "Execution: {}", links.execution);
        let _ = writeln!(out, "DMS tasks: {}", links.dms_tasks);
    }
    if let Some(arn) = &view.task_arn {
        let _ = writeln!(out, "Task: {arn}");
    }
    let _ = writeln!(out, "Execution id: {}", view.execution_id);
    let _ = writeln!(out, "Event: {event}");
    cap_text(&redact_secrets(&out), MAX_EMAIL_BYTES, CUT)
}

/// Where a cut email's full lists are.
const DETAILS_CUT: &str = "\n... (the rest is cut to keep the email short: `dms-migrate preflight` lists every check and object, the DMS assessment report in the stack's bucket has DMS's own findings, and the Lambda's log has every table)\n";

fn numbers_so_far(view: &StateView) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(p) = &view.progress {
        let mut status = format!("Task status: {}", p.status);
        if let Some(reason) = &p.stop_reason {
            let _ = write!(status, " ({reason})");
        }
        lines.push(status);
        if let Some(pct) = p.full_load_progress_percent {
            lines.push(format!("Full load: {pct}%"));
        }
        lines.push(format!(
            "Tables: {} loaded, {} loading, {} queued, {} in error",
            p.tables_loaded, p.tables_loading, p.tables_queued, p.tables_errored
        ));
        if let Some(rows) = p.full_load_rows {
            lines.push(format!("Rows loaded: {rows}"));
        }
        let latency = |v: Option<f64>| {
            v.map(|s| format!("{s:.0} s"))
                .unwrap_or_else(|| "no data yet".to_string())
        };
        if p.cdc_latency_source_seconds.is_some() || p.cdc_latency_target_seconds.is_some() {
            lines.push(format!(
                "CDC latency: source {}, target {}",
                latency(p.cdc_latency_source_seconds),
                latency(p.cdc_latency_target_seconds)
            ));
        }
    }
    if let Some(polls) = view.polls.filter(|p| *p > 0) {
        lines.push(format!("Progress checks so far: {polls}"));
    }
    lines
}

fn names(list: &[String], total: usize) -> String {
    names_from(list, total, "full list in the Lambda's log")
}

/// The names shown, and how many more there are and where to find them all.
fn names_from(list: &[String], total: usize, where_all: &str) -> String {
    let mut text = list.join(", ");
    if total > list.len() {
        let _ = write!(text, " and {} more ({where_all})", total - list.len());
    }
    text
}

fn started(view: &StateView) -> Message {
    let mut m = Message::new(
        "Migration started",
        "The migration workflow has started. You will get an email at every step and exactly one if anything fails.",
    );
    m.details.push(
        "Next: both DMS endpoints are tested, then the premigration assessment runs.".to_string(),
    );
    if let Some(host) = &view.source_host {
        m.details.push(format!("Source host: {host}"));
    }
    if let Some(secs) = view.poll_interval_seconds {
        m.details
            .push(format!("Progress is checked every {secs} s."));
    }
    m
}

fn endpoint_lines(label: &str, check: &EndpointCheck, out: &mut Vec<String>) {
    let asked_for_no_test =
        check.status == EndpointStatus::NotTested && check.classification.is_none();
    if check.status == EndpointStatus::Successful || asked_for_no_test {
        out.push(format!(
            "{label} endpoint: {}",
            if asked_for_no_test {
                "not tested"
            } else {
                "reachable"
            }
        ));
        return;
    }
    let kind = check
        .classification
        .map_or("unknown", |class| class.as_str());
    out.push(format!("{label} endpoint: {} ({kind})", check.status));
    if let Some(message) = &check.message {
        out.push(format!("  DMS said: {message}"));
    }
    if let Some(fix) = &check.fix {
        out.push(format!("  Fix: {fix}"));
    }
}

fn connectivity_failed(view: &StateView) -> Message {
    let mut m = Message::new(
        "FAILED: an endpoint is not reachable",
        "The migration stopped: DMS could not connect to an endpoint. Nothing was started or changed in the databases.",
    );
    m.step = Some("ConnectivityCheck".to_string());
    if let Some(c) = &view.connectivity {
        m.why = [("source", &c.source), ("target", &c.target)]
            .into_iter()
            .find(|(_, e)| e.status != EndpointStatus::Successful)
            .map(|(label, e)| {
                format!(
                    "the {label} endpoint test {}: {}",
                    e.status,
                    e.classification
                        .map_or("unknown cause", |class| class.as_str())
                )
            });
        m.fix = Some("Apply the fix listed for each endpoint below, then start a new execution with the same input.".to_string());
        endpoint_lines("Source", &c.source, &mut m.details);
        endpoint_lines("Target", &c.target, &mut m.details);
        if let Some(sg) = &view.sg_autofix {
            m.details.push(format!(
                "An ingress rule was already added by this run: {}",
                names(&sg.added, sg.added.len())
            ));
        }
    }
    m
}

fn sg_fixed(view: &StateView) -> Message {
    let mut m = Message::new(
        "Security group rule added",
        "The source refused DMS at the network level, so ingress rules from the DMS security group and from the source-checks security group (where the premigration source checks run) were added. Connectivity is tested once more.",
    );
    m.step = Some("SecurityGroupAutofix".to_string());
    if let Some(sg) = &view.sg_autofix {
        if !sg.added.is_empty() {
            m.details.push(format!("Added: {}", sg.added.join("; ")));
        }
        if !sg.present.is_empty() {
            m.details
                .push(format!("Already present: {}", sg.present.join("; ")));
        }
        m.details
            .push("The rules are tagged so that deleting the stack removes them.".to_string());
    }
    m
}

fn check_lines(checks: &[CheckSummary], out: &mut Vec<String>) {
    for check in checks {
        out.push(format!("- {}: {}", check.id, check.summary));
        if !check.objects.is_empty() {
            out.push(format!(
                "  Objects: {}",
                names_from(
                    &check.objects,
                    check.objects_total as usize,
                    "all of them: `dms-migrate preflight`, or the DMS assessment report in the stack's bucket"
                )
            ));
        }
        if !check.fix.is_empty() {
            out.push(format!("  Fix: {}", check.fix));
        }
    }
}

fn assessment(view: &StateView, blocking: bool) -> Message {
    let a = view.assessment.clone().unwrap_or_default();
    // A check that could not run checked nothing: the subject says so, so it never reads as a pass.
    let not_run = match a.counts.not_run {
        0 => String::new(),
        n => format!("; {n} check(s) not run"),
    };
    let mut m = if blocking {
        let mut m = Message::new(
            format!(
                "FAILED: assessment found {} blocking problem(s){not_run}",
                a.counts.fail
            ),
            "The migration stopped before the DMS task was started: the premigration assessment found problems that would break it.",
        );
        m.fix = Some("Apply the fix under each failure below, then start a new execution. Run `dms-migrate preflight` to check from your workstation first.".to_string());
        m
    } else if a.counts.not_run > 0 {
        let mut m = Message::new(
            format!(
                "Assessment incomplete: {} check(s) not run, {} warning(s)",
                a.counts.not_run, a.counts.warn
            ),
            "The premigration assessment found nothing blocking among the checks that ran, but some checks could not run and checked nothing; the task starts next.",
        );
        m.fix = Some(
            "Make the checks under \"Not run\" runnable (the fix under each), or run `dms-migrate preflight` from a machine that reaches both databases; read the warnings."
                .to_string(),
        );
        m
    } else {
        let mut m = Message::new(
            format!("Assessment passed with {} warning(s)", a.counts.warn),
            "The premigration assessment found nothing blocking; the task starts next. Read the warnings: each can cost data or time.",
        );
        m.fix = Some(
            "Nothing is required now; the fix under each warning says how to avoid its effect."
                .to_string(),
        );
        m
    };
    m.step = Some("PremigrationAssessment".to_string());
    m.details.push(format!(
        "Checks: {} passed, {} warnings, {} failed, {} not run",
        a.counts.pass, a.counts.warn, a.counts.fail, a.counts.not_run
    ));
    if let Some(source) = &a.source_checks {
        m.details.push(format!(
            "Source checks run: {} of {}, from {}",
            source.ran, source.total, source.location
        ));
    }
    if !a.failures.is_empty() {
        m.details.push("Failures:".to_string());
        check_lines(&a.failures, &mut m.details);
    }
    if !a.warnings.is_empty() {
        m.details.push("Warnings:".to_string());
        check_lines(&a.warnings, &mut m.details);
    }
    if !a.not_run.is_empty() {
        m.details.push("Not run:".to_string());
        not_run_lines(&a.not_run, &mut m.details);
    }
    if let Some(run) = &a.run_arn {
        m.details.push(format!("DMS assessment run: {run}"));
    }
    m
}

/// Checks not run for one reason share their summary and fix (a whole side at once): one entry per reason,
/// naming every check id.
fn not_run_lines(checks: &[CheckSummary], out: &mut Vec<String>) {
    let mut groups: Vec<(&str, &str, Vec<&str>)> = Vec::new();
    for check in checks {
        match groups
            .iter_mut()
            .find(|(summary, fix, _)| *summary == check.summary && *fix == check.fix)
        {
            Some((_, _, ids)) => ids.push(&check.id),
            None => groups.push((&check.summary, &check.fix, vec![&check.id])),
        }
    }
    for (summary, fix, ids) in groups {
        out.push(format!("- {}: {summary}", ids.join(", ")));
        if !fix.is_empty() {
            out.push(format!("  Fix: {fix}"));
        }
    }
}

fn assessment_skipped(view: &StateView) -> Message {
    let mut m = Message::new(
        "Assessment skipped",
        "The premigration assessment was skipped; the task is started or resumed next.",
    );
    m.step = Some("PremigrationAssessment".to_string());
    m.why = Some(
        view.assessment
            .as_ref()
            .and_then(|a| a.reason.clone())
            .unwrap_or_else(|| "the task has already run and no reload was asked for".to_string()),
    );
    m
}

fn task_started(view: &StateView) -> Message {
    let action = view.start_task.as_ref().map(|s| s.action);
    let s = view.start_task.clone().unwrap_or_default();
    let title = match action {
        Some(StartAction::ResumeProcessing) => "Replication task resumed",
        Some(StartAction::ReloadTarget) => "Replication task reloading",
        Some(StartAction::Untouched) => "Replication task already running",
        Some(StartAction::StartReplication) | None => "Replication task started",
    };
    let mut m = Message::new(
        title,
        "The DMS replication task is running. Progress is checked until it is ready for cutover.",
    );
    m.step = Some("StartTask".to_string());
    if !s.reason.is_empty() {
        m.why = Some(format!(
            "{} (status before: {})",
            s.reason,
            if s.status_before.is_empty() {
                "unknown"
            } else {
                &s.status_before
            }
        ));
    }
    if let Some(action) = action {
        m.details.push(format!("Action: {action}"));
    }
    if s.truncated_total > 0 {
        m.details.push(format!(
            "Emptied before the reload: {}",
            names(&s.truncated_tables, s.truncated_total as usize)
        ));
    }
    if let Some(plan) = &s.plan {
        m.details.push(format!("Plan: {plan}"));
    }
    m
}

/// What the user may do on the target while CDC runs, and what waits for cutover. The stack's task applies
/// changes with BatchApplyEnabled: DMS does not support batch apply on tables with a unique constraint
/// besides the primary key, and a batch does not keep the order foreign keys need
/// (https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TaskSettings.TargetMetadata.html);
/// identity columns set back to GENERATED ALWAYS reject the explicit values DMS writes, whatever the
/// settings. So `constraints apply` (foreign keys, unique constraints, identity) waits until the task is
/// stopped at cutover; nothing that changes the target's schema is advised before it.
const CDC_ADVICE: [&str; 3] = [
    "Safe now: nothing needs to change on the target while DMS applies changes. `dms-migrate cutover-check` only reads, run it any time to see how far the target lags.",
    "Waits for cutover: `dms-migrate constraints apply`. Run it only after the DMS task is stopped (cutover steps in the ready-for-cutover email). This task applies changes in batches (BatchApplyEnabled): DMS does not support batch apply on tables with a unique constraint besides the primary key, and batches do not keep the order foreign keys need, so adding them now can put tables in error and fail the task.",
    "Also waiting for cutover: identity columns back to GENERATED ALWAYS (part of constraints apply), which would reject the explicit values DMS writes.",
];

fn full_load_complete(_view: &StateView) -> Message {
    let mut m = Message::new(
        "Full load complete",
        "Every table has been copied. DMS now applies the changes made on the source since the load started (CDC).",
    );
    m.step = Some("PollProgress".to_string());
    m.details.push("Next: an email when CDC latency stays under the target and no table is in error (ready for cutover).".to_string());
    m.details.extend(CDC_ADVICE.map(str::to_string));
    m
}

fn task_recovering(view: &StateView) -> Message {
    let p = view.progress.clone().unwrap_or_default();
    let settings = dms_core::rules::recoverable_errors::STACK_SETTINGS;
    let mut m = Message::new(
        "DMS is restarting the task after a recoverable error",
        "DMS stopped the replication task on an error it classes as recoverable (a lost connection, a database restart or failover) and restarts it by itself. Nothing is lost: it resumes where it stopped.",
    );
    m.step = Some("PollProgress".to_string());
    let mut why = p
        .reason
        .clone()
        .unwrap_or_else(|| "the task is stopped with Stop Reason RECOVERABLE_ERROR".to_string());
    if let Some(last) = &p.last_failure_message {
        if !why.contains(last.as_str()) {
            let _ = write!(why, ". DMS said: {last}");
        }
    }
    m.why = Some(why);
    m.fix = Some(format!(
        "No action is needed now, and do not reload the task. DMS tries up to {} restarts, {} s apart and doubling up to {} s; this execution keeps watching and sends a failure email only if DMS gives up. If the message points at a database you control (stopped, rebooting, out of connections), bring it back.",
        settings.count, settings.interval_seconds, settings.throttling_max_seconds
    ));
    m
}

fn ready_for_cutover(view: &StateView, way_back_task_arn: Option<&str>) -> Message {
    let target = view
        .cdc_latency_target_seconds
        .map(|s| format!("{s} s"))
        .unwrap_or_else(|| "the target".to_string());
    let mut m = Message::new(
        "Ready for cutover",
        format!("The target is caught up: CDC latency has stayed under {target} and no table is in error. The task keeps replicating."),
    );
    m.step = Some("PollProgress".to_string());
    let arn = view.task_arn.as_deref().unwrap_or("<ReplicationTaskArn>");
    let (way_back_flag, way_back) = match way_back_task_arn {
        Some(reverse) => (
            format!(" --way-back-task-arn {reverse}"),
            format!("   The way back: at the switch the command starts this stack's reverse task (PlanetScale to Aurora) from the moment writes stopped, so every write made on PlanetScale also reaches Aurora and going back loses none of them: dms-migrate rollback --way-back-task-arn {reverse} --freeze switches back the way the cutover switched. Once the migration is final, end it with dms-migrate fallback end --task-arn {reverse}."),
        ),
        None => (
            " --no-fallback".to_string(),
            "   The way back is not created by this stack (EnableFallback is false): --no-fallback leaves it out, and going back to Aurora after the switch would lose the writes made on PlanetScale.".to_string(),
        ),
    };
    m.details.extend([
        "Cutover, from your workstation, in one command:".to_string(),
        format!("1. dms-migrate cutover --task-arn {arn} --freeze{way_back_flag}"),
        "   While the application still writes it switches the task to transactional apply (stopped, modified, resumed from its position), sets sequences ahead, builds the deferred constraints and indexes online and verifies every range. Then it makes the source read-only for the application's roles and, in seconds whatever the size, proves the drain, the final sequences, DMS's validation and that writes stopped, and stops the task. Without --freeze it tells you when to stop the application's writes.".to_string(),
        way_back,
        "2. On SWITCH NOW, point the application at PlanetScale. On NOT SWITCHING the source is writable again and nothing is lost: fix the reason it gives and run the command again.".to_string(),
        "3. dms-migrate cleanup, then delete the stack".to_string(),
    ]);
    m
}

fn succeeded(_view: &StateView) -> Message {
    let mut m = Message::new(
        "Full load finished: migration succeeded",
        "The full-load-only task finished and every table completed without error.",
    );
    m.step = Some("PollProgress".to_string());
    m.details.push(
        "Next: dms-migrate sequences sync, dms-migrate constraints apply, dms-migrate verify, then switch the application."
            .to_string(),
    );
    m
}

fn task_failed(view: &StateView) -> Message {
    let p = view.progress.clone().unwrap_or_default();
    let mut m = Message::new(
        "FAILED: replication task failed",
        "The DMS replication task failed or has tables in error. Monitoring stopped.",
    );
    m.step = Some("PollProgress".to_string());
    let mut why = p
        .reason
        .clone()
        .unwrap_or_else(|| format!("task status {}", p.status));
    if let Some(last) = &p.last_failure_message {
        let _ = write!(why, ". DMS said: {last}");
    }
    m.why = Some(why);
    let recoverable = p.stop_reason.as_deref().and_then(StopReason::from_dms)
        == Some(StopReason::RecoverableError);
    m.fix = Some(if recoverable {
        // DMS gave up restarting after environmental errors: the task's position is intact, so resuming
        // it is right and a reload (which re-copies everything) is not.
        "DMS gave up restarting the task after recoverable errors: fix the cause above (usually a source or target that stayed unreachable: stopped, failed over, a changed security group or password), then start a new execution with the same input; it resumes the task where it stopped. Do not reload: the data loaded so far is intact.".to_string()
    } else {
        "Fix the cause above (the task's CloudWatch log has the detail). A reload does not empty target tables: start a new execution with options startMode \"reload\" and truncateTarget true to load again from scratch."
            .to_string()
    });
    if !p.error_tables.is_empty() {
        m.details.push(format!(
            "Tables in error: {}",
            names(&p.error_tables, p.tables_errored as usize)
        ));
    }
    if !p.warning_tables.is_empty() {
        m.details.push(format!(
            "Tables with validation warnings: {}",
            names(&p.warning_tables, p.warning_tables_total as usize)
        ));
    }
    m
}

fn monitoring_ended(view: &StateView) -> Message {
    let p = view.progress.clone().unwrap_or_default();
    let mut m = Message::new(
        "FAILED: monitoring ended before cutover readiness",
        "This execution stopped watching the task before it was ready for cutover. The DMS task itself was not stopped and keeps running.",
    );
    m.step = Some("PollProgress".to_string());
    m.why = Some(
        p.reason
            .clone()
            .unwrap_or_else(|| "the poll or time budget of this execution ran out".to_string()),
    );
    m.fix = Some(
        "Start a new execution with the same input to keep watching (it does not restart the task), or raise options maxMonitorHours / maxPolls."
            .to_string(),
    );
    m
}

/// Step Functions hands a Lambda error over as `Cause`: a JSON text with `errorType` and `errorMessage`.
fn cause_text(cause: &str) -> String {
    match serde_json::from_str::<Value>(cause) {
        Ok(value) => value
            .get("errorMessage")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| cause.to_string()),
        Err(_) => cause.to_string(),
    }
}

fn error_fix(error: &str) -> &'static str {
    match error {
        "Payload.Invalid" => "Copy the stack output StepFunctionsPayloadTemplate again (CloudFormation > your stack > Outputs) and start a new execution with it, unchanged.",
        "Aws.Throttled" => "AWS kept throttling the calls through every retry. Wait a few minutes and start a new execution; every step is safe to re-run.",
        "Aws.Transient" => "An AWS service kept failing through every retry. Check the AWS Health Dashboard for the region, then start a new execution; every step is safe to re-run.",
        "Aws.AccessDenied" => "The Lambda's IAM role lacks the permission named above. The stack creates these roles: if they were edited, update the stack to restore them.",
        "Dms.AccessDenied" => "DMS itself was refused while working for this migration; the Lambda's own permissions are fine. The message above names the DMS role (or KMS key) and what it must allow. The stack creates these roles: if one was edited or deleted, update the stack to restore it, then start a new execution.",
        "Aws.NotFound" => "A resource named in the input does not exist (deleted, or in another region or account). Use the payload from the same stack's outputs.",
        "Aws.Rejected" => "AWS refused the request; the message above says why. Correct it and start a new execution.",
        "Dms.InvalidState" => "The DMS task stayed in a transitional state (creating, modifying, stopping...) through every retry. Wait until the DMS console shows it Ready, Running or Stopped, then start a new execution.",
        "Postgres.Unreachable" => "Check the endpoint's host, port, database name and security group; run `dms-migrate preflight` from a machine that reaches the database.",
        "Postgres.AuthFailed" => "Check the user name and password in the endpoint's Secrets Manager secret, and that pg_hba / the cluster allows this user.",
        "Postgres.QueryFailed" => "A SQL statement failed; the message above names it. Fix the privilege or object it names, then start a new execution.",
        "Config.Invalid" => "The Lambda is missing part of its configuration. Update or redeploy the stack.",
        "Task.RestartRefused" => "The task was not started, because starting it as it stands would duplicate rows or disturb another run; the message above says why. Do what it says (for a fresh load: start a new execution with options startMode \"reload\" and truncateTarget true, which empties the mapped target tables first).",
        "Plan.Invalid" => "The plan file in the stack's bucket was not applied and the task was not started; the message above names the problem. Write a new plan with `dms-migrate plan --format json` and upload it under the same key, or delete the file to start with the template's table mappings and settings, then start a new execution.",
        "Tool.Defect" => "This is a defect in the migration tool, not in your setup: the same input will most likely fail the same way. Report it to the tool's maintainers and send this email plus the failed step's Lambda log from CloudWatch (the stack's function for that step, the lines around the panic), with any secret removed. Read what the steps before it reported to know what was already done.",
        "States.Timeout" => "The step ran past its time limit. Start a new execution; if it happens again, read the step's Lambda log in CloudWatch.",
        // AWS reports a function that ran past its own timeout as Sandbox.Timedout.
        "Lambda.Unknown" | "Sandbox.Timedout" => "The Lambda crashed, ran out of memory or hit its timeout before answering. Read its log group in CloudWatch, then start a new execution.",
        _ => "Read the execution's history in the Step Functions console (link below), then start a new execution; every step is safe to re-run.",
    }
}

fn failed(view: &StateView) -> Message {
    let failure = view.error.clone().unwrap_or_default();
    let error = failure
        .error
        .clone()
        .unwrap_or_else(|| "an unknown error".to_string());
    let step = failure
        .step
        .clone()
        .unwrap_or_else(|| "an unknown step".to_string());
    let mut m = Message::new(
        format!("FAILED at {step}: {error}"),
        "The migration stopped because a step failed. This is the only failure email for this execution.",
    );
    m.step = Some(step);
    let cause = failure
        .cause
        .as_deref()
        .map(cause_text)
        .filter(|c| !c.trim().is_empty());
    m.why = Some(match cause {
        Some(cause) => format!("{error}: {cause}"),
        None => error.clone(),
    });
    m.fix = Some(error_fix(&error).to_string());
    if error == "Tool.Defect" {
        m.headline = "The migration stopped because of a defect (a bug) in the migration tool: one of its Lambdas panicked. This is the only failure email for this execution.".to_string();
    }
    m
}

#[cfg(test)]
mod tests {
    use dms_core::rules::state::AssessmentStatus;

    use super::*;

    /// Checks that could not run are counted apart and named in the subject: such an email must never
    /// read like "Assessment passed".
    #[test]
    fn checks_not_run_are_counted_apart_and_named_in_the_subject() {
        let reason = "not run: the source database could not be reached from the source-checks function inside the VPC (timed out). Missing rule: the source's security group sg-aurora must allow inbound TCP 5432 from security group sg-checks";
        let not_run = |id: &str| {
            CheckSummary {
            id: id.into(),
            summary: reason.into(),
            fix: "aws ec2 authorize-security-group-ingress --group-id sg-aurora --protocol tcp --port 5432 --source-group sg-checks".into(),
            ..Default::default()
        }
        };
        let state = serde_json::json!({
            "replicationTaskArn": "arn:aws:dms:us-east-1:123456789012:task:ABC",
            "results": {"assessment": {"status": "warnings",
                "counts": {"pass": 9, "warn": 0, "fail": 0, "notRun": 17},
                "sourceChecks": {"ran": 0, "total": 17, "where": "the source-checks function inside the stack's VPC"},
                "notRun": [not_run("source.version"), not_run("source.wal_level")]}}
        });
        let view = StateView::read(&state, "local");
        let email = render(Event::AssessmentWarnings, &view, None);
        assert!(
            email
                .subject
                .contains("Assessment incomplete: 17 check(s) not run"),
            "{}",
            email.subject
        );
        assert!(!email.subject.contains("passed"), "{}", email.subject);
        assert!(
            email
                .body
                .contains("Checks: 9 passed, 0 warnings, 0 failed, 17 not run"),
            "{}",
            email.body
        );
        assert!(
            email.body.contains(
                "Source checks run: 0 of 17, from the source-checks function inside the stack's VPC"
            ),
            "{}",
            email.body
        );
        // One entry for one reason, naming every check, the rule, the group and the port.
        assert_eq!(
            email.body.matches("Missing rule").count(),
            1,
            "{}",
            email.body
        );
        assert!(
            email
                .body
                .contains("- source.version, source.wal_level: not run:"),
            "{}",
            email.body
        );
        assert!(
            email.body.contains("--source-group sg-checks"),
            "{}",
            email.body
        );
        let blocking = render(Event::AssessmentFailed, &view, None);
        assert!(
            blocking.subject.contains("17 check(s) not run"),
            "{}",
            blocking.subject
        );
    }

    #[test]
    fn subjects_are_short_ascii_single_lines() {
        let long = "T".repeat(200);
        let s = subject(&long, "FAILED at Step\nwith — unicode and a very long title that goes on and on and on and on and on");
        assert!(s.len() < 100, "{}", s.len());
        assert!(s.is_ascii() && !s.contains('\n'), "{s}");
        assert!(s.starts_with("[DMS TTTT"), "{s}");
    }

    #[test]
    fn a_panic_is_reported_as_a_defect_with_its_message_and_what_to_send() {
        let state = serde_json::json!({
            "replicationTaskArn": "arn:aws:dms:us-east-1:123456789012:task:ABC",
            "error": {
                "step": "PollProgress",
                "Error": "Tool.Defect",
                "Cause": r#"{"errorType":"Tool.Defect","errorMessage":"the Lambda panicked (a defect in the migration tool): index out of bounds: the len is 0 but the index is 0"}"#
            }
        });
        let view = StateView::read(
            &state,
            "arn:aws:states:us-east-1:123456789012:execution:m:run-1",
        );
        let email = render(Event::Failed, &view, None);
        assert!(email.subject.contains("Tool.Defect"), "{}", email.subject);
        assert!(
            email.body.contains("defect (a bug) in the migration tool"),
            "{}",
            email.body
        );
        assert!(
            email.body.contains("index out of bounds: the len is 0"),
            "{}",
            email.body
        );
        assert!(
            email.body.contains("Report it to the tool's maintainers"),
            "{}",
            email.body
        );
        assert!(email.body.contains("Lambda log"), "{}", email.body);
        assert!(email.body.contains("Step: PollProgress"), "{}", email.body);
    }

    /// Every event rendered from a state whose lists and texts are at their bounds (and a 32 KB Cause)
    /// stays within the email bound, far under SNS's 256 KB.
    #[test]
    fn every_email_of_a_worst_case_state_is_bounded() {
        let mut results = dms_core::rules::state::Results::default();
        let name = |i: usize| format!("\"{}{i}\"", "n".repeat(300));
        let names: Vec<String> = (0..10_000).map(name).collect();
        let check = CheckSummary {
            id: "target.not_empty".into(),
            summary: "s".repeat(100_000),
            fix: format!("TRUNCATE {};", names.join(", ")),
            objects: names.clone(),
            objects_total: 10_000,
        };
        results.assessment = Some(AssessmentResult {
            status: AssessmentStatus::Failed,
            failures: vec![check.clone(); 100],
            warnings: vec![check; 100],
            ..Default::default()
        });
        results.progress = Some(ProgressResult {
            error_tables: names.clone(),
            warning_tables: names.clone(),
            last_failure_message: Some("m".repeat(100_000)),
            ..Default::default()
        });
        results.start_task = Some(StartTaskResult {
            truncated_tables: names,
            truncated_total: 10_000,
            ..Default::default()
        });
        results.bound();
        let state = serde_json::json!({
            "replicationTaskArn": "arn:aws:dms:us-east-1:123456789012:task:ABC",
            "results": results,
            "error": {"step": "PollProgress", "Error": "Aws.Rejected", "Cause": "c".repeat(32_768)}
        });
        let view = StateView::read(
            &state,
            "arn:aws:states:us-east-1:123456789012:execution:m:run-1",
        );
        for event in Event::ALL {
            let email = render(event, &view, Some(WAY_BACK));
            assert!(
                email.body.len() <= MAX_EMAIL_BYTES,
                "{event}: {} bytes",
                email.body.len()
            );
        }
        let email = render(Event::AssessmentFailed, &view, None);
        assert!(
            email.body.contains("dms-migrate preflight"),
            "says where the rest is"
        );
    }

    /// Under the stack's batch apply, adding unique constraints or foreign keys during CDC fails tables
    /// (dms-local models it: tests/tests/dms_local.rs). The full-load-complete email must not advise it.
    #[test]
    fn full_load_complete_keeps_constraints_for_cutover() {
        let view = StateView::read(&serde_json::json!({}), "local");
        let body = render(Event::FullLoadComplete, &view, None).body;
        let advice_now = body
            .lines()
            .find(|l| l.starts_with("Safe now:"))
            .unwrap_or_else(|| panic!("says what is safe now: {body}"));
        assert!(!advice_now.contains("constraints apply"), "{advice_now}");
        assert!(
            !body.contains("Meanwhile you may run `dms-migrate constraints apply`"),
            "{body}"
        );
        let waits = body
            .lines()
            .find(|l| l.starts_with("Waits for cutover:"))
            .unwrap_or_else(|| panic!("says what waits: {body}"));
        assert!(
            waits.contains("constraints apply") && waits.contains("stopped"),
            "{waits}"
        );
    }

    const TASK: &str = "arn:aws:dms:us-east-1:123456789012:task:ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const WAY_BACK: &str = "arn:aws:dms:us-east-1:123456789012:task:WAYBACKWAYBACKWAYBACK";

    /// The ready-for-cutover email points to the one cutover command, with the task's ARN filled in and,
    /// when the stack created the way back, its reverse task: the command then arms it, and the email says
    /// what it is and how it ends.
    #[test]
    fn ready_for_cutover_gives_the_cutover_command_with_the_stacks_way_back() {
        let view = StateView::read(&serde_json::json!({"replicationTaskArn": TASK}), "local");
        let body = render(Event::ReadyForCutover, &view, Some(WAY_BACK)).body;
        assert!(
            body.contains(&format!(
                "dms-migrate cutover --task-arn {TASK} --freeze --way-back-task-arn {WAY_BACK}"
            )),
            "{body}"
        );
        let way_back = body
            .lines()
            .find(|l| l.trim_start().starts_with("The way back:"))
            .unwrap_or_else(|| panic!("says what the way back is: {body}"));
        assert!(
            way_back.contains("PlanetScale to Aurora")
                && way_back.contains(&format!("dms-migrate fallback end --task-arn {WAY_BACK}")),
            "{way_back}"
        );
        assert!(!body.contains("--no-fallback"), "{body}");
        assert!(
            body.contains("dms-migrate rollback --way-back-task-arn"),
            "how to go back: {body}"
        );
        assert!(body.contains("SWITCH NOW"), "{body}");
        assert!(!body.contains("cutover-check again"), "{body}");
    }

    /// A stack deployed without the way back (`EnableFallback` false): the command leaves it out with
    /// `--no-fallback` (otherwise cutover would create a slot on PlanetScale for a task that does not
    /// exist), and the email says going back would lose PlanetScale's writes.
    #[test]
    fn ready_for_cutover_without_the_way_back_says_the_stack_did_not_create_it() {
        let view = StateView::read(&serde_json::json!({"replicationTaskArn": TASK}), "local");
        let body = render(Event::ReadyForCutover, &view, None).body;
        assert!(
            body.contains(&format!(
                "dms-migrate cutover --task-arn {TASK} --freeze --no-fallback"
            )),
            "{body}"
        );
        assert!(
            body.contains("The way back is not created by this stack"),
            "{body}"
        );
        assert!(!body.contains("--way-back-task-arn"), "{body}");
        assert!(!body.contains("fallback end"), "{body}");
    }

    #[test]
    fn cause_json_is_unwrapped() {
        let cause = r#"{"errorType":"Aws.NotFound","errorMessage":"dms:DescribeReplicationTasks on arn failed"}"#;
        assert_eq!(
            cause_text(cause),
            "dms:DescribeReplicationTasks on arn failed"
        );
        assert_eq!(cause_text("Task timed out"), "Task timed out");
    }
}

#[cfg(test)]
mod golden {
    //! Each event rendered from one realistic state, compared with `tests/golden/<event>.txt`.
    //! Review a changed email by reading the diff; regenerate with `UPDATE_GOLDEN=1 cargo test -p notify`.

    use serde_json::json;

    use super::*;

    const EXEC: &str = "arn:aws:states:us-east-1:123456789012:execution:shop-migration:run-7";
    const WAY_BACK: &str = "arn:aws:dms:us-east-1:123456789012:task:SHOPWAYBACK";

    fn full_state(secret: &str) -> Value {
        json!({
            "replicationInstanceArn": "arn:aws:dms:us-east-1:123456789012:rep:INSTANCE1",
            "sourceEndpointArn": "arn:aws:dms:us-east-1:123456789012:endpoint:SOURCE1",
            "targetEndpointArn": "arn:aws:dms:us-east-1:123456789012:endpoint:TARGET1",
            "replicationTaskArn": "arn:aws:dms:us-east-1:123456789012:task:SHOPTASK",
            "sourceEndpointHost": "shop.cluster-abc.us-east-1.rds.amazonaws.com",
            "sourcePort": 5432,
            "options": {"autoFixSecurityGroup": true, "pollIntervalSeconds": 60, "assessmentPollSeconds": 30,
                        "maxMonitorHours": 72, "maxPolls": 2500, "cdcLatencyTargetSeconds": 5,
                        "readyAfterConsecutivePolls": 3, "startMode": "auto", "truncateTarget": false},
            "context": {"executionId": EXEC, "region": "us-east-1", "accountId": "123456789012", "taskId": "SHOPTASK",
                        "startedAtEpochSeconds": 1_764_100_000,
                        "links": {"execution": format!("https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/details/{EXEC}"),
                                  "dmsTasks": "https://us-east-1.console.aws.amazon.com/dms/v2/home?region=us-east-1#tasks"}},
            "monitor": {"deadlineEpochSeconds": 1_764_359_200, "polls": 42, "consecutiveReadyPolls": 3,
                        "fullLoadAnnounced": true, "nextPollSeconds": 60},
            "results": {
                "connectivity": {"ok": false, "autofixEligible": false, "attempts": 2,
                    "source": {"endpointArn": "arn:aws:dms:us-east-1:123456789012:endpoint:SOURCE1", "status": "failed",
                               "classification": "auth",
                               "message": format!("FATAL: password authentication failed for user \"migrator\" (postgres://migrator:{secret}@shop:5432/shop)"),
                               "fix": "Correct the user name and password in the source endpoint's Secrets Manager secret."},
                    "target": {"endpointArn": "arn:aws:dms:us-east-1:123456789012:endpoint:TARGET1", "status": "successful"}},
                "sgAutofix": {"sourceGroups": ["sg-0aaa"], "dmsGroups": ["sg-0bbb"],
                              "added": ["sg-0aaa <- sg-0bbb tcp/5432"], "present": []},
                "assessment": {"status": "warnings", "polls": 4, "runArn": "arn:aws:dms:us-east-1:123456789012:assessment-run:RUN1",
                    "counts": {"pass": 31, "warn": 2, "fail": 1},
                    "sourceChecks": {"ran": 17, "total": 17, "where": "the source-checks function inside the stack's VPC"},
                    "failures": [{"id": "source.wal_sender_timeout", "summary": "wal_sender_timeout is 5000 ms; DMS needs at least 10000 ms or 0",
                                  "fix": "Set wal_sender_timeout = 10000 in the cluster parameter group and reboot the writer.", "objects": [], "objectsTotal": 0}],
                    "warnings": [{"id": "source.primary_keys", "summary": "3 tables have no primary key: UPDATE and DELETE are lost in CDC",
                                  "fix": "ALTER TABLE ... REPLICA IDENTITY FULL, or add a primary key.",
                                  "objects": ["public.audit_log", "\"Sales\".\"Events\""], "objectsTotal": 3}]},
                "startTask": {"action": "reload-target", "reason": "startMode reload with truncateTarget: the mapped tables were emptied first",
                              "statusBefore": "stopped", "truncatedTables": ["public.orders", "public.customers"], "truncatedTotal": 2},
                "progress": {"phase": "failed", "status": "running", "stopReason": null,
                             "reason": "2 tables are in Table error",
                             "lastFailureMessage": format!("Error connecting: password={secret}"),
                             "fullLoadProgressPercent": 100, "tablesLoaded": 40, "tablesLoading": 0, "tablesQueued": 0,
                             "tablesErrored": 2, "errorTables": ["public.orders", "\"Sales\".\"Line Items\""],
                             "warningTables": [], "cdcLatencySourceSeconds": 1.0, "cdcLatencyTargetSeconds": 3.4,
                             "fullLoadRows": 1_250_000}
            },
            "error": {"step": "StartTask", "Error": "Dms.InvalidState",
                      "Cause": json!({"errorType": "Dms.InvalidState",
                                      "errorMessage": format!("task is modifying; secret {{\"password\":\"{secret}\"}}")}).to_string()}
        })
    }

    #[test]
    fn every_event_matches_its_golden_file() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
        let state = full_state("hunter2");
        let view = StateView::read(&state, EXEC);
        let mut mismatches = Vec::new();
        for event in Event::ALL {
            let email = render(event, &view, Some(WAY_BACK));
            let text = format!("Subject: {}\n\n{}", email.subject, email.body);
            let path = dir.join(format!("{event}.txt"));
            if std::env::var_os("UPDATE_GOLDEN").is_some() {
                std::fs::write(&path, &text).expect("write golden");
                continue;
            }
            let expected = std::fs::read_to_string(&path).unwrap_or_default();
            if expected != text {
                mismatches.push(format!(
                    "{event}: differs from {}\n--- got ---\n{text}",
                    path.display()
                ));
            }
        }
        assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    }

    /// DMS gave up restarting after recoverable errors: the email carries DMS's message and never the
    /// reload advice (which would re-copy a task whose position is intact).
    #[test]
    fn a_task_dms_gave_up_restarting_gets_dms_message_and_no_reload_advice() {
        let mut state = full_state("x");
        state["results"]["progress"]["status"] = json!("stopped");
        state["results"]["progress"]["stopReason"] = json!("Stop Reason RECOVERABLE_ERROR");
        state["results"]["progress"]["lastFailureMessage"] =
            json!("Error in replication: connection to the source was lost");
        state["results"]["progress"]["reason"] = json!("DMS has given up");
        let view = StateView::read(&state, EXEC);
        let email = render(Event::TaskFailed, &view, Some(WAY_BACK));
        assert!(
            email.body.contains("connection to the source was lost"),
            "{}",
            email.body
        );
        assert!(
            !email.body.contains("startMode \"reload\""),
            "{}",
            email.body
        );
        assert!(email.body.contains("Do not reload"), "{}", email.body);
        // Any other failure keeps the reload advice.
        let view = StateView::read(&full_state("x"), EXEC);
        assert!(render(Event::TaskFailed, &view, Some(WAY_BACK))
            .body
            .contains("startMode \"reload\""));
    }

    /// A DMS service-role refusal names that role, never the Lambda's.
    #[test]
    fn a_dms_role_refusal_matches_its_golden_file() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/failed-dms-access-denied.txt");
        let err = dms_core::errors::classify_service_error(
            "dms:StartReplicationTaskAssessmentRun",
            "arn:aws:dms:us-east-1:123456789012:task:SHOPTASK",
            400,
            "S3AccessDeniedFault",
            "Insufficient privileges to write to the S3 bucket",
        );
        let mut state = full_state("hunter2");
        state["error"] = json!({"step": "PremigrationAssessmentStart", "Error": err.name.as_str(),
            "Cause": json!({"errorType": err.name.as_str(), "errorMessage": err.message}).to_string()});
        let view = StateView::read(&state, EXEC);
        let email = render(Event::Failed, &view, Some(WAY_BACK));
        let text = format!("Subject: {}\n\n{}", email.subject, email.body);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &text).expect("write golden");
            return;
        }
        assert!(text.contains("DMSAssessmentRole"), "{text}");
        assert!(!text.contains("The Lambda's IAM role lacks"), "{text}");
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(expected, text, "differs from {}", path.display());
    }

    #[test]
    fn no_secret_reaches_any_email() {
        for secret in ["hunter2", "Zx9!pQ"] {
            let state = full_state(secret);
            let view = StateView::read(&state, EXEC);
            for event in Event::ALL {
                let email = render(event, &view, Some(WAY_BACK));
                assert!(
                    !email.body.contains(secret) && !email.subject.contains(secret),
                    "{event} leaks:\n{}",
                    email.body
                );
            }
        }
    }

    #[test]
    fn every_email_names_the_task_and_the_event() {
        let state = full_state("x");
        let view = StateView::read(&state, EXEC);
        for event in Event::ALL {
            let email = render(event, &view, Some(WAY_BACK));
            assert!(email.subject.contains("SHOPTASK"), "{}", email.subject);
            assert!(email.body.contains(&format!("Event: {event}")), "{event}");
            assert!(email.body.contains("Execution: https://"), "{event}");
        }
    }
}
