//! `dms-migrate cutover`: the whole cutover in one command, with a write outage that does not grow with
//! the database (docs/cutover.md). Everything whose cost grows with the data runs before the freeze while
//! the application still writes (the apply mode switched to transactional with the task stopped and
//! resumed, sequences with a rate-aware margin, the deferred objects, a live verify); inside the freeze
//! only the sentinel drain, the final sequences, DMS's validation state, the ranges the live verify
//! doubted, identity columns and the task stop. Any failed gate, Ctrl-C or lost connection before the
//! switch instruction undoes the freeze and says what was done. Exit 0: switch now; 1: a gate failed
//! (aborted, source writable); 2: could not run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dms_core::aws::dms::{Dms, DmsClient, DmsModify, StartType};
use dms_core::errors::StepError;
use dms_core::pg::sequences;
use dms_core::pg::{classify_pg_error, PgConnectOptions};
use dms_core::rules::arn::DmsArn;
use dms_core::rules::dms_model::{MigrationType, TaskStatus};
use dms_core::rules::sentinel;
use dms_core::rules::way_back;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use tokio_postgres::Client;

use crate::connection::{BothDatabases, Connected, Environment};
use crate::constraints_apply::{self, Status};
use crate::cutover_check;
use crate::deferred_file::{self, DeferredKind, Item};
use crate::fallback;
use crate::output::{Outcome, Progress};
use crate::sequences_sync;
use crate::verify::{self, with_pair, Pair};
use crate::verify_rows::{self, TablePlan, Totals};

/// The flags cutover and rollback share: how the application's writes are stopped on the side it
/// leaves, and how long each wait may take.
#[derive(clap::Args, Debug, Clone)]
pub struct Switch {
    /// The deferred file `schema apply` wrote (its identity columns are set back to GENERATED ALWAYS).
    #[arg(long, value_name = "FILE", default_value = deferred_file::DEFAULT_PATH)]
    pub deferred_file: PathBuf,
    /// Make the database the application leaves read-only for every role but the migration's and DMS's,
    /// ending their sessions; without it, the command waits for the operator to stop the application's
    /// writes.
    #[arg(long)]
    pub freeze: bool,
    /// Only undo a freeze an earlier run left in place (after the switch), then exit.
    #[arg(long, conflicts_with = "freeze")]
    pub undo_freeze: bool,
    /// The sentinel's round trip (the drain) must take less than this.
    #[arg(long, value_name = "SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub latency_target: u64,
    /// Before the freeze: observe sequence consumption this long to size the margin.
    #[arg(long, value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub rate_window: u64,
    /// Steps each sequence of the side the application moves to is set beyond the other side's last value.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(i64).range(0..=1_000_000_000_000))]
    pub margin: i64,
    /// Live verify: how many times a differing range is checked again, each after a sentinel round trip.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..=50))]
    pub rechecks: u32,
    /// Without --freeze: how long the database the application leaves must stay free of application
    /// changes to count as stopped.
    #[arg(long, value_name = "SECONDS", default_value_t = 3,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub quiet_seconds: u64,
    /// Without --freeze: how long to wait for the application's writes to stop.
    #[arg(long, value_name = "SECONDS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub stop_timeout: u64,
    /// Connections per side for the live verify.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: u32,
    /// The migrated schemas (the sentinel lives in the first); default: found from the sentinel table.
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub schemas: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub databases: BothDatabases,
    /// The DMS task (the stack output's replicationTaskArn).
    #[arg(long, value_name = "ARN")]
    pub task_arn: String,
    #[command(flatten)]
    pub switch: Switch,
    /// How long DMS's validation may stay pending for a table once the drain is proved.
    #[arg(long, value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub validation_wait: u64,
    /// Do not arm the way back (docs/fallback.md): no slot is created on the target, and going back to
    /// the source after the switch would lose every write made on the target.
    #[arg(long)]
    pub no_fallback: bool,
    #[command(flatten)]
    pub way_back_slot: fallback::Slot,
    /// The way back's reverse DMS task (the stack output FallbackReplicationTaskArn): started from the
    /// slot's position before the switch instruction. Without it the command prints how to start it.
    #[arg(long, value_name = "ARN", conflicts_with = "no_fallback")]
    pub way_back_task_arn: Option<String>,
}

/// Which way the application moves: from the source to the target (cutover), or back (rollback). The
/// words stay the tool's own everywhere: the source is Aurora, the target PlanetScale.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Direction {
    Forward,
    Back,
}

impl Direction {
    /// The side the application leaves: frozen, proved quiet, drained.
    pub(crate) fn from(self) -> &'static str {
        match self {
            Direction::Forward => "source",
            Direction::Back => "target",
        }
    }

    /// The side the application moves to: its sequences are set ahead, its rows verified.
    pub(crate) fn to(self) -> &'static str {
        match self {
            Direction::Forward => "target",
            Direction::Back => "source",
        }
    }

    /// How a frozen role is recorded in the sentinel table of the side frozen. Distinct per direction:
    /// the reverse task replays the target's sentinel table to the source, so a rollback's record (and its
    /// undo) must never touch the record of the cutover's freeze, which the source keeps.
    pub(crate) fn freeze_token(self) -> &'static str {
        match self {
            Direction::Forward => "freeze:",
            Direction::Back => "freeze-back:",
        }
    }

    fn command(self) -> &'static str {
        match self {
            Direction::Forward => "cutover",
            Direction::Back => "rollback",
        }
    }
}

/// The way back a cutover arms (none with --no-fallback, and none in a rollback).
pub(crate) struct Arm {
    slot: String,
    task_arn: Option<String>,
}

/// How long the reverse task may take to show `running` once the switch instruction is out.
const WAY_BACK_START_WAIT: Duration = Duration::from_secs(120);

/// Why the cutover stopped before the switch instruction.
enum Stop {
    /// A gate did not pass: what it found and what to do.
    Gate(String),
    /// The command could not go on (a lost connection, a refused call).
    Error(StepError),
    Interrupted,
}

impl From<StepError> for Stop {
    fn from(err: StepError) -> Self {
        Stop::Error(err)
    }
}

type Step<T> = Result<T, Stop>;

/// Bounds of the waits on DMS (DMS takes seconds to minutes to stop, modify and start a task).
const TASK_WAIT: Duration = Duration::from_secs(600);
const POLL: Duration = Duration::from_millis(500);
/// Changes decoded per call from the write-stop slot, and calls per reading.
const DECODE_BATCH: i64 = 10_000;
const DECODE_CALLS: usize = 1_000;

/// Set by SIGINT; every wait checks it.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// What this run has done that an abort must undo or report. `from` is the side the application leaves
/// (the source in a cutover, the target in a rollback), `to` the side it moves to.
pub(crate) struct Context {
    dir: Direction,
    switch: Switch,
    progress: Progress,
    from_opts: PgConnectOptions,
    to_opts: PgConnectOptions,
    from: Client,
    to: Client,
    dms: DmsClient,
    /// The task that replicates `from` to `to`: the forward task, or the way back's reverse task.
    task_arn: String,
    /// `"schema".dms_migrate_sentinel`, on both sides.
    sentinel: String,
    /// Cutover only: how long DMS's validation may stay pending.
    validation_wait: u64,
    /// Cutover only: the way back to arm.
    arm: Option<Arm>,
    started: Instant,
    /// When the application's writes stopped (the freeze, or the last change the proof saw).
    outage_start: Option<Instant>,
    /// This run stopped the task inside the freeze: an abort resumes it.
    stopped_task: bool,
    /// The write-stop proof's session and slot, from the freeze on.
    proof: Option<WriteProof>,
    /// The way back's slot this run created on the target, and its consistent LSN: an abort drops it.
    way_back: Option<String>,
    /// This run started the reverse task: an abort stops it before the slot is dropped.
    way_back_started: bool,
    /// Identity columns of the source this run changed (a cutover sets them to BY DEFAULT for the reverse
    /// task, a rollback back to ALWAYS): an abort changes them back.
    identities_changed: Vec<Item>,
    timeline: Vec<Phase>,
    doubted: Vec<Doubt>,
    deferred: Vec<Item>,
}

struct Phase {
    name: &'static str,
    in_outage: bool,
    seconds: f64,
}

/// A range the live verify could not settle while rows changed.
/// Rows per piece of a range still changing at the end of the live verify: what one re-check in the
/// freeze reads.
const PIECE_ROWS: i64 = 2_000;

struct Doubt {
    plan: Arc<TablePlan>,
    range: usize,
    last_source: Option<Totals>,
}

pub async fn run(args: Args, env: &Environment) -> Result<Outcome, StepError> {
    let task_arn = args.task_arn.trim().to_string();
    DmsArn::parse(&task_arn, "task")
        .map_err(|why| StepError::payload(format!("--task-arn `{task_arn}`: {why}")))?;
    if let Some(reverse) = &args.way_back_task_arn {
        DmsArn::parse(reverse, "task")
            .map_err(|why| StepError::payload(format!("--way-back-task-arn `{reverse}`: {why}")))?;
        if reverse.trim() == task_arn {
            return Err(StepError::payload(
                "--way-back-task-arn names the forward task: give the stack output FallbackReplicationTaskArn",
            ));
        }
    }
    let arm = (!args.no_fallback).then(|| Arm {
        slot: args.way_back_slot.name.clone(),
        task_arn: args
            .way_back_task_arn
            .as_ref()
            .map(|a| a.trim().to_string()),
    });
    let Some(mut cx) = prepare(
        Direction::Forward,
        args.databases,
        args.switch,
        task_arn,
        env,
    )
    .await?
    else {
        return Ok(Outcome::Failed);
    };
    if cx.undo_freeze_requested() {
        return undo_freeze_only(&cx).await;
    }
    cx.validation_wait = args.validation_wait;
    cx.arm = arm;
    println!(
        "Cutover of task {} ({} mode)",
        cx.task_arn,
        if cx.switch.freeze {
            "--freeze"
        } else {
            "the operator stops the application"
        }
    );
    match cutover(&mut cx).await {
        Ok(()) => {
            print_summary(&cx);
            let started = cx.arm.as_ref().and_then(|a| a.task_arn.as_ref());
            if let (true, Some(arn), Some(lsn)) = (cx.way_back_started, started, &cx.way_back) {
                println!("{}", report_reverse(&cx.dms, arn, lsn).await);
            }
            Ok(Outcome::Ok)
        }
        Err(stop) => abort(cx, stop).await,
    }
}

/// Connects both sides, finds the sentinel table and reads the deferred file; None when there is no
/// sentinel table (said on stdout). From here on Ctrl-C is seen by every wait.
pub(crate) async fn prepare(
    dir: Direction,
    databases: BothDatabases,
    switch: Switch,
    task_arn: String,
    env: &Environment,
) -> Result<Option<Context>, StepError> {
    let progress = Progress::for_stderr();
    let Connected {
        source: source_opts,
        target: target_opts,
        source_client,
        target_client,
    } = databases.connect(env, &progress).await?;
    crate::connection::refuse_unknown_schemas(&source_client, &switch.schemas).await?;
    let config = dms_core::aws::load_config().await;
    let dms = DmsClient::new(aws_sdk_databasemigration::Client::new(&config));
    let task = dms.describe_task(&task_arn).await?;
    let (from_opts, to_opts, from, to) = match dir {
        Direction::Forward => (source_opts, target_opts, source_client, target_client),
        Direction::Back => (target_opts, source_opts, target_client, source_client),
    };
    let Some(schema) = cutover_check::sentinel_schema(&from, &task, &switch.schemas).await? else {
        println!(
            "NOT SWITCHING: no {} table on the {}; run `dms-migrate schema apply` first",
            sentinel::TABLE,
            dir.from()
        );
        return Ok(None);
    };
    let deferred = if switch.undo_freeze {
        Vec::new()
    } else if switch.deferred_file.exists() {
        let path = switch.deferred_file.display().to_string();
        let text = std::fs::read_to_string(&switch.deferred_file).map_err(|e| {
            StepError::payload(format!("cannot read the deferred file {path}: {e}"))
        })?;
        deferred_file::parse(&text, &path)?
    } else {
        return Err(StepError::payload(format!(
            "no deferred file at {}: give the file `dms-migrate schema apply` wrote with --deferred-file",
            switch.deferred_file.display()
        )));
    };
    // Ctrl-C: the waits see the flag and the abort path undoes the freeze. The handler is the process's
    // for as long as the command runs.
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            INTERRUPTED.store(true, Ordering::SeqCst);
        }
    });
    Ok(Some(Context {
        dir,
        switch,
        progress,
        from_opts,
        to_opts,
        from,
        to,
        dms,
        task_arn,
        sentinel: sentinel::qualified(&schema),
        validation_wait: 0,
        arm: None,
        started: Instant::now(),
        outage_start: None,
        stopped_task: false,
        proof: None,
        way_back: None,
        way_back_started: false,
        identities_changed: Vec::new(),
        timeline: Vec::new(),
        doubted: Vec::new(),
        deferred,
    }))
}

impl Context {
    pub(crate) fn undo_freeze_requested(&self) -> bool {
        self.switch.undo_freeze
    }
}

/// `--undo-freeze`: resets the roles this direction's freeze recorded on the side it froze.
pub(crate) async fn undo_freeze_only(cx: &Context) -> Result<Outcome, StepError> {
    let reset = freeze_undo(&cx.from, &cx.sentinel, cx.dir.freeze_token()).await?;
    println!("{}", describe_undo(&reset, cx.dir.from()));
    Ok(Outcome::Ok)
}

/// Runs one phase, timing it and printing its line as soon as it is done.
macro_rules! phase {
    ($cx:expr, $name:expr, $in_outage:expr, $body:ident) => {{
        check_interrupt()?;
        $cx.progress.say($name);
        let started = Instant::now();
        let proved = $body($cx).await?;
        finish($cx, $name, $in_outage, started, proved);
        check_interrupt()?;
    }};
}

async fn cutover(cx: &mut Context) -> Step<()> {
    // Before the freeze, while the application still writes.
    phase!(cx, "1. task", false, task_phase);
    phase!(cx, "2. apply mode", false, apply_mode_phase);
    phase!(cx, "3. sequences", false, sequences_ahead_phase);
    phase!(cx, "4. deferred objects", false, deferred_phase);
    phase!(cx, "5. live verify", false, live_verify_phase);
    // The outage.
    phase!(cx, "6. freeze", true, freeze_phase);
    phase!(cx, "7. drain", true, drain_phase);
    phase!(cx, "8. final sequences", true, final_sequences_phase);
    phase!(cx, "9. DMS validation", true, validation_phase);
    phase!(cx, "10. doubted ranges", true, doubted_phase);
    phase!(cx, "11. identity", true, identity_phase);
    phase!(cx, "12. task stopped", true, stop_task_phase);
    // What must exist before the application writes to the target is armed here: after the drain and
    // the task stop, before the switch instruction (and so inside the abort guarantees).
    phase!(cx, "13. way back", true, way_back_phase);
    phase!(cx, "14. writes stopped", true, write_proof_phase);
    Ok(())
}

fn finish(cx: &mut Context, name: &'static str, in_outage: bool, started: Instant, proved: String) {
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "  [{:>6.1} s] {name:<22} {seconds:>6.1} s{}  {proved}",
        cx.started.elapsed().as_secs_f64(),
        if in_outage { " (outage)" } else { "" }
    );
    cx.timeline.push(Phase {
        name,
        in_outage,
        seconds,
    });
}

fn check_interrupt() -> Step<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err(Stop::Interrupted)
    } else {
        Ok(())
    }
}

async fn sleep(duration: Duration) -> Step<()> {
    check_interrupt()?;
    tokio::time::sleep(duration).await;
    check_interrupt()
}

// ---------------------------------------------------------------------------------------------------
// Before the freeze

async fn task_phase(cx: &mut Context) -> Step<String> {
    // Before the forward task is touched: a reverse task that has run means a cutover already switched
    // (and maybe a rollback came back). Resuming the forward task then would apply the way back's replayed
    // writes to the target again; only a reload starts over (docs/rollback.md).
    if let Some(reverse_arn) = cx.arm.as_ref().and_then(|a| a.task_arn.clone()) {
        let reverse = cx.dms.describe_task(&reverse_arn).await?;
        if reverse.status != TaskStatus::Ready {
            return Err(Stop::Gate(format!(
                "the way back's reverse task {reverse_arn} is {}, not ready: a cutover has already switched with it. If the application writes to the target, the migration is done; if a rollback brought it back to the source, the forward task must not resume (it would apply the way back's writes to the target again): start over with a reload (the state machine with {{\"startMode\": \"reload\", \"truncateTarget\": true}}) and recreate the reverse task (update the stack with EnableFallback false, then true)",
                reverse.status
            )));
        }
    }
    let task = cx.dms.describe_task(&cx.task_arn).await?;
    if cx.dir == Direction::Back && task.migration_type != MigrationType::Cdc {
        return Err(Stop::Gate(format!(
            "{} is a {} task, not the way back's CDC-only reverse task: give the stack output FallbackReplicationTaskArn",
            cx.task_arn, task.migration_type
        )));
    }
    if task.migration_type == MigrationType::FullLoad {
        return Err(Stop::Gate(
            "a full-load-only task replicates no changes: cutover needs a full-load-and-cdc or cdc task (switch after sequences sync, constraints apply and verify)".into(),
        ));
    }
    if cx.dir == Direction::Back && task.status == TaskStatus::Ready {
        return Err(Stop::Gate(
            "the way back's reverse task never ran: the source has none of the target's writes since the switch, and going back would lose them all. It can only start from the position of the slot the cutover created (the cutover printed the command)".into(),
        ));
    }
    let mut resumed = "";
    match task.status.known() {
        Some(TaskStatus::Running) => {}
        // A stop by an earlier run of this command (or by hand) keeps the position: resume-processing
        // replicates "the changes from the last stop position"
        // (https://docs.aws.amazon.com/dms/latest/APIReference/API_StartReplicationTask.html).
        Some(TaskStatus::Stopped) => {
            cx.dms
                .start_task(&cx.task_arn, StartType::ResumeProcessing)
                .await?;
            wait_task(cx, TaskStatus::Running).await?;
            resumed = "resumed from its stop position; ";
        }
        _ => {
            return Err(Stop::Gate(format!(
                "the task is {}{}: fix it ({}) and run {} again",
                task.status,
                task.last_failure_message
                    .as_deref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default(),
                match cx.dir {
                    Direction::Forward => "the ready-for-cutover email's state machine can resume it",
                    Direction::Back => "then resume it from its position: aws dms start-replication-task --start-replication-task-type resume-processing",
                },
                cx.dir.command()
            )))
        }
    }
    let took = round_trip(cx).await?;
    Ok(format!(
        "the task runs {} ({resumed}a sentinel row reached the {} in {took:.1} s)",
        task.migration_type,
        cx.dir.to()
    ))
}

async fn apply_mode_phase(cx: &mut Context) -> Step<String> {
    let Some(text) = cx.dms.task_documents(&cx.task_arn).await?.settings else {
        return Ok("DMS returned no task settings: BatchApplyEnabled is DMS's default, false (transactional apply)".into());
    };
    let mut settings: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Stop::Error(StepError::config(format!(
            "the task's ReplicationTaskSettings are not JSON: {e}"
        )))
    })?;
    let batch = settings
        .pointer("/TargetMetadata/BatchApplyEnabled")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    if !batch {
        return Ok("the task already applies changes transactionally (BatchApplyEnabled false): unique constraints may be built while it runs".into());
    }
    let before = round_trip(cx).await?;
    // Batch apply does not support target tables with a unique constraint besides the primary key
    // (https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TaskSettings.TargetMetadata.html);
    // settings change only while the task is stopped
    // (https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.Modifying.html).
    cx.dms.stop_task(&cx.task_arn).await?;
    wait_task(cx, TaskStatus::Stopped).await?;
    if let Some(metadata) = settings
        .get_mut("TargetMetadata")
        .and_then(serde_json::Value::as_object_mut)
    {
        metadata.insert("BatchApplyEnabled".into(), serde_json::Value::Bool(false));
    }
    // The whole document, with only BatchApplyEnabled changed: the reference does not say whether DMS
    // keeps settings a document leaves out.
    cx.dms
        .modify_task(&cx.task_arn, None, &settings.to_string())
        .await?;
    wait_task(cx, TaskStatus::Stopped).await?;
    cx.dms
        .start_task(&cx.task_arn, StartType::ResumeProcessing)
        .await?;
    wait_task(cx, TaskStatus::Running).await?;
    let after = round_trip(cx).await?;
    Ok(format!(
        "BatchApplyEnabled set to false with the task stopped, then resumed from its position; sentinel round trip {before:.1} s before, {after:.1} s after"
    ))
}

async fn sequences_ahead_phase(cx: &mut Context) -> Step<String> {
    let first = sequences::read_sequences(&cx.from, &cx.switch.schemas).await?;
    sleep(Duration::from_secs(cx.switch.rate_window)).await?;
    let plan = sync_sequences(cx, Some(&first), "sequences").await?;
    Ok(format!(
        "{} {} sequences set ahead by max({}, 10 × the values used in {} s), {} already ahead",
        plan.changes.len(),
        cx.dir.to(),
        cx.switch.margin,
        cx.switch.rate_window,
        plan.already_ahead
    ))
}

async fn deferred_phase(cx: &mut Context) -> Step<String> {
    // Identity columns stay BY DEFAULT while DMS inserts explicit values; the rest is built online.
    let items: Vec<&Item> = cx
        .deferred
        .iter()
        .filter(|i| i.kind != DeferredKind::IdentityAlways)
        .collect();
    apply_deferred(cx, &items, "deferred objects").await
}

async fn apply_deferred(cx: &Context, items: &[&Item], what: &str) -> Step<String> {
    let mut target = cx.to_opts.clone();
    target.statement_timeout = Duration::ZERO;
    let client = target.connect().await?;
    let reports = constraints_apply::apply_items(&client, &target, items, &cx.progress).await?;
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| r.status == Status::Failed)
        .map(|r| format!("{} {}: {}", r.kind, r.name, r.detail))
        .collect();
    if !failed.is_empty() {
        return Err(Stop::Gate(format!(
            "{what}: {} failed: {}",
            failed.len(),
            failed.join("; ")
        )));
    }
    let applied = reports
        .iter()
        .filter(|r| r.status == Status::Applied)
        .count();
    Ok(format!(
        "{what}: {applied} applied, {} already there",
        reports.len() - applied
    ))
}

async fn live_verify_phase(cx: &mut Context) -> Step<String> {
    let (source_opts, target_opts) = (cx.from_opts.clone(), cx.to_opts.clone());
    let jobs = cx.switch.jobs as usize;
    let pairs: Vec<Arc<Pair>> = stream::iter(0..jobs)
        .map(|_| async {
            let (s, t) = tokio::try_join!(source_opts.connect(), target_opts.connect())?;
            tokio::try_join!(verify::pin(&s, "source"), verify::pin(&t, "target"))?;
            Ok::<_, StepError>(Arc::new(Pair {
                source: s,
                target: t,
            }))
        })
        .buffer_unordered(jobs)
        .try_collect()
        .await?;
    let main = Arc::clone(&pairs[0]);
    let pool = Mutex::new(pairs);
    // The sentinel table is left out: the drain proves it, its rows come and go with every round trip.
    let tables = verify_rows::read_tables(&main.source, &main.target, &cx.switch.schemas).await?;
    let table_count = tables.len();
    let plans: Vec<TablePlan> = stream::iter(tables)
        .map(|table| {
            with_pair(&pool, move |pair| async move {
                verify_rows::plan(&pair, table).await
            })
        })
        .buffer_unordered(jobs)
        .try_collect()
        .await?;
    let results = verify_rows::compare(&pool, plans, None, jobs).await?;
    let rows: i64 = results.iter().map(|r| r.source_rows).sum();
    let mut real = Vec::new();
    let mut open = Vec::new();
    for result in &results {
        if result.missing_on_target {
            real.push(format!(
                "{} is missing on the {}",
                result.table,
                cx.dir.to()
            ));
            continue;
        }
        let Some(plan) = result.plan().map(Arc::new) else {
            continue;
        };
        for mismatch in &result.mismatches {
            open.push(Doubt {
                plan: Arc::clone(&plan),
                range: mismatch.range,
                last_source: None,
            });
        }
    }
    let first_pass = open.len();
    // A differing range may only be a change DMS has not applied yet: check it again once a sentinel
    // round trip shows DMS has applied everything committed before the re-check began. A range whose
    // source side did not change between two checks and still differs is a real difference.
    for _ in 0..cx.switch.rechecks {
        if open.is_empty() {
            break;
        }
        round_trip(cx).await?;
        let mut still = Vec::new();
        for mut doubt in open {
            let (plan, range) = (Arc::clone(&doubt.plan), doubt.range);
            let (s, t) = with_pair(&pool, |pair| async move {
                verify_rows::recheck(&pair, &plan, range).await
            })
            .await?;
            if s == t {
                continue;
            }
            if doubt.last_source.as_ref() == Some(&s) {
                real.push(describe_range(cx.dir, &doubt.plan, doubt.range, &s, &t));
                continue;
            }
            doubt.last_source = Some(s);
            still.push(doubt);
        }
        open = still;
    }
    // What the freeze re-checks must not cost a whole range of verify's (about 50,000 rows, read from a
    // cold cache on a large database): each range still changing is cut into pieces, and only the pieces
    // that still differ once DMS has caught up again are left for the freeze.
    let still_changing = open.len();
    if !open.is_empty() {
        round_trip(cx).await?;
        let mut pieces = Vec::new();
        for doubt in open {
            let (plan, range) = (Arc::clone(&doubt.plan), doubt.range);
            let split = with_pair(&pool, |pair| async move {
                verify_rows::split(&pair, &plan, range, PIECE_ROWS).await
            })
            .await?;
            let Some((sub, first, last)) = split else {
                pieces.push(doubt);
                continue;
            };
            let sub = Arc::new(sub);
            let checked = Arc::clone(&sub);
            let differing = with_pair(&pool, |pair| async move {
                verify_rows::differing_ranges(&pair, &checked, first, last).await
            })
            .await?;
            pieces.extend(differing.into_iter().map(|(range, s, _)| Doubt {
                plan: Arc::clone(&sub),
                range,
                last_source: Some(s),
            }));
        }
        open = pieces;
    }
    let (unbounded, doubted): (Vec<Doubt>, Vec<Doubt>) =
        open.into_iter().partition(|d| d.plan.whole_table());
    for d in &unbounded {
        real.push(format!(
            "{} (no primary key) kept changing and differing; it cannot be re-checked in the freeze without scanning it whole",
            d.plan.display()
        ));
    }
    if !real.is_empty() {
        return Err(Stop::Gate(format!(
            "live verify found {} difference(s): {}. Fix the {} (dms-migrate verify --exact names the rows), or reload the tables, then run {} again",
            real.len(),
            real.join("; "),
            cx.dir.to(),
            cx.dir.command()
        )));
    }
    let proved = format!(
        "{table_count} tables, {rows} rows: every range equal ({first_pass} differed at first and settled after re-checks{})",
        if doubted.is_empty() {
            String::new()
        } else {
            format!(
                "; {still_changing} still changing, narrowed to {} piece(s) of about {PIECE_ROWS} rows re-checked in the freeze",
                doubted.len()
            )
        }
    );
    cx.doubted = doubted;
    Ok(proved)
}

fn describe_range(
    dir: Direction,
    plan: &TablePlan,
    range: usize,
    s: &Totals,
    t: &Totals,
) -> String {
    format!(
        "{} range {}: {} {} rows, {} {} rows{}",
        plan.display(),
        plan.describe_range(range),
        s.0,
        dir.from(),
        t.0,
        dir.to(),
        if s.1 == t.1 { "" } else { ", checksums differ" }
    )
}

// ---------------------------------------------------------------------------------------------------
// The freeze

async fn freeze_phase(cx: &mut Context) -> Step<String> {
    if cx.switch.freeze {
        let frozen = freeze(cx).await?;
        cx.outage_start = Some(Instant::now());
        let proof = WriteProof::start(&cx.from_opts).await?;
        cx.proof = Some(proof);
        return Ok(frozen);
    }
    // The operator stops the application; the proof watches until the source has been quiet long enough.
    let proof = WriteProof::start(&cx.from_opts).await?;
    println!(
        "STOP WRITES: stop the application's writes to the {} now (waiting up to {} s for {} s without a change)",
        cx.dir.from(),
        cx.switch.stop_timeout,
        cx.switch.quiet_seconds
    );
    let deadline = Instant::now() + Duration::from_secs(cx.switch.stop_timeout);
    let quiet = Duration::from_secs(cx.switch.quiet_seconds);
    let mut last_change = Instant::now();
    let mut seen = 0usize;
    let mut last_tables = BTreeMap::new();
    loop {
        let changes = proof.application_changes().await?;
        if !changes.is_empty() {
            last_change = Instant::now();
            seen += changes.values().sum::<usize>();
            last_tables = changes;
        }
        if last_change.elapsed() >= quiet {
            break;
        }
        if Instant::now() > deadline {
            cx.proof = Some(proof);
            return Err(Stop::Gate(format!(
                "the application kept writing for {} s after STOP WRITES (last on {}); stop it, or use --freeze",
                cx.switch.stop_timeout,
                names(&last_tables)
            )));
        }
        sleep(Duration::from_millis(250)).await?;
    }
    cx.outage_start = Some(last_change);
    cx.proof = Some(proof);
    Ok(format!(
        "no application change on the {} for {} s ({seen} changes decoded before that); the outage is counted from the last one",
        cx.dir.from(),
        cx.switch.quiet_seconds
    ))
}

async fn drain_phase(cx: &mut Context) -> Step<String> {
    let took = round_trip(cx).await?;
    Ok(format!(
        "a sentinel row written after the freeze reached the {} in {took:.1} s: DMS has applied every change before it",
        cx.dir.to()
    ))
}

/// Reads both sides' sequences and sets the target's ahead (with the rate margin when `earlier` is the
/// reading a rate window before); a sequence it cannot set stops the phase named `phase`.
async fn sync_sequences(
    cx: &mut Context,
    earlier: Option<&[sequences::SequenceState]>,
    phase: &str,
) -> Step<sequences_sync::Plan> {
    let (source, target) = tokio::try_join!(
        sequences::read_sequences(&cx.from, &cx.switch.schemas),
        sequences::read_sequences(&cx.to, &cx.switch.schemas)
    )?;
    let mut plan = sequences_sync::plan(&source, earlier, &target, cx.switch.margin);
    sequences_sync::apply(&cx.to, &mut plan).await?;
    if !plan.problems.is_empty() {
        return Err(Stop::Gate(format!(
            "{phase}: {}",
            plan.problems
                .iter()
                .map(|p| format!("{}: {}", p.sequence, p.detail))
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    Ok(plan)
}

async fn final_sequences_phase(cx: &mut Context) -> Step<String> {
    let plan = sync_sequences(cx, None, "final sequences").await?;
    Ok(format!(
        "every {} sequence ahead of the {}'s final value ({} set, {} already ahead)",
        cx.dir.to(),
        cx.dir.from(),
        plan.changes.len(),
        plan.already_ahead
    ))
}

/// DMS's validation states
/// (https://docs.aws.amazon.com/dms/latest/APIReference/API_TableStatistics.html): which one fails the
/// cutover, which one is waited for, which one only says validation did not look at the table.
fn validation_verdict(state: &str) -> Verdict {
    match state {
        "Validated" => Verdict::Good,
        "Pending records" | "Pending validation" | "Preparing table" | "Pending revalidation" => {
            Verdict::Wait
        }
        "Not enabled" | "No primary key" | "" => Verdict::NotValidated,
        _ => Verdict::Bad,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Good,
    Wait,
    NotValidated,
    Bad,
}

async fn validation_phase(cx: &mut Context) -> Step<String> {
    let deadline = Instant::now() + Duration::from_secs(cx.validation_wait);
    loop {
        let stats = cx.dms.table_statistics(&cx.task_arn).await?;
        let mut by: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut bad = Vec::new();
        let mut waiting = Vec::new();
        let mut unvalidated = 0usize;
        for t in stats.iter().filter(|t| t.table != sentinel::TABLE) {
            let state = t.validation_state.as_deref().unwrap_or_default();
            by.entry(state).or_default().push(t.qualified_name());
            match validation_verdict(state) {
                Verdict::Good => {}
                Verdict::Wait => waiting.push(format!("{} ({state})", t.qualified_name())),
                Verdict::NotValidated => unvalidated += 1,
                Verdict::Bad => bad.push(format!("{} ({state})", t.qualified_name())),
            }
        }
        if !bad.is_empty() {
            return Err(Stop::Gate(format!(
                "DMS validation: {}; read the task's validation failures (the awsdms_validation_failures_v1 table on the target) and fix them",
                bad.join(", ")
            )));
        }
        if waiting.is_empty() {
            let validated = by.get("Validated").map_or(0, Vec::len);
            return Ok(if unvalidated > 0 {
                format!("{validated} tables Validated by DMS; {unvalidated} not validated by DMS (validation not enabled, or no primary key): the live verify and the doubted ranges stand for them")
            } else {
                format!("every one of {validated} tables Validated by DMS")
            });
        }
        if Instant::now() > deadline {
            return Err(Stop::Gate(format!(
                "DMS validation still pending after {} s: {}",
                cx.validation_wait,
                waiting.join(", ")
            )));
        }
        sleep(Duration::from_secs(1)).await?;
    }
}

async fn doubted_phase(cx: &mut Context) -> Step<String> {
    if cx.doubted.is_empty() {
        return Ok("no range left in doubt by the live verify".into());
    }
    let (source, target) = tokio::try_join!(cx.from_opts.connect(), cx.to_opts.connect())?;
    tokio::try_join!(
        verify::pin(&source, "source"),
        verify::pin(&target, "target")
    )?;
    // The target's statistics may predate the full load (nothing has analyzed it since), and with them
    // the planner may read a whole large table to check one key range. Without sequential scans it
    // reads the range through the primary key's index, so the check costs the range, not the table
    // (https://www.postgresql.org/docs/current/runtime-config-query.html#GUC-ENABLE-SEQSCAN).
    const BY_THE_KEY: &str = "SET enable_seqscan = off";
    tokio::try_join!(
        source.batch_execute(BY_THE_KEY),
        target.batch_execute(BY_THE_KEY)
    )
    .map_err(|e| classify_pg_error("preparing the range re-checks", &e))?;
    let pair = Pair { source, target };
    let mut differ = Vec::new();
    for d in &cx.doubted {
        let (s, t) = verify_rows::recheck(&pair, &d.plan, d.range).await?;
        if s != t {
            differ.push(describe_range(cx.dir, &d.plan, d.range, &s, &t));
        }
    }
    if !differ.is_empty() {
        return Err(Stop::Gate(format!(
            "with writes stopped and the drain proved, {} range(s) still differ: {}",
            differ.len(),
            differ.join("; ")
        )));
    }
    Ok(format!(
        "{} range(s) the live verify doubted are equal with writes stopped",
        cx.doubted.len()
    ))
}

async fn identity_phase(cx: &mut Context) -> Step<String> {
    let deferred = std::mem::take(&mut cx.deferred);
    let items: Vec<&Item> = deferred
        .iter()
        .filter(|i| i.kind == DeferredKind::IdentityAlways)
        .collect();
    let result = if items.is_empty() {
        Ok("no identity column to restore".into())
    } else {
        apply_deferred(
            cx,
            &items,
            "identity columns back to GENERATED ALWAYS (catalog only)",
        )
        .await
    };
    cx.deferred = deferred;
    result
}

async fn stop_task_phase(cx: &mut Context) -> Step<String> {
    cx.stopped_task = true;
    cx.dms.stop_task(&cx.task_arn).await?;
    wait_task(cx, TaskStatus::Stopped).await?;
    Ok("StopReplicationTask: the task is stopped (its slot keeps the position)".into())
}

/// Creates the way back's slot on the target while nothing writes to it (the source is frozen and drained,
/// the task stopped, the application not yet switched), so its consistent LSN separates exactly the
/// writes already on the source from those the reverse task must replay (docs/fallback.md). A slot of
/// that name that is already there is never dropped here: it may be a switched cutover's armed way back.
async fn way_back_phase(cx: &mut Context) -> Step<String> {
    let Some(arm) = cx.arm.as_ref() else {
        return Ok("not armed (--no-fallback): going back to the source after the switch would lose every write made on the target".into());
    };
    let (slot, task_arn) = (arm.slot.clone(), arm.task_arn.clone());
    let existing = cx
        .to
        .query_opt(
            "SELECT plugin::text, database::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| classify_pg_error("reading the target's replication slots", &e))?;
    if let Some(row) = existing {
        let database: Option<String> = row.get(1);
        return Err(Stop::Gate(format!(
            "the way back's slot {slot} already exists on the target (database {}). If the application already writes to the target after an earlier cutover, do not run cutover again: that slot holds the way back. Otherwise drop it on the target with SELECT pg_drop_replication_slot('{slot}'); and run cutover again, or give another name with --way-back-slot",
            database.unwrap_or_else(|| "none".into())
        )));
    }
    let row = cx
        .to
        .query_one(
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, $2)",
            &[&slot, &way_back::PLUGIN],
        )
        .await
        .map_err(|e| {
            classify_pg_error(
                &format!("creating the way back's slot {slot} on the target"),
                &e,
            )
        })?;
    let lsn: String = row.get(0);
    cx.way_back = Some(lsn.clone());
    let created = format!(
        "slot {slot} ({}) created on the target at {lsn}: every change made on the target from here on can be replayed to the source",
        way_back::PLUGIN
    );
    let relaxed = relax_source_identities(cx).await?;
    let created = format!("{created}; {relaxed}");
    let Some(arn) = task_arn else {
        return Ok(created);
    };
    let reverse = cx.dms.describe_task(&arn).await?;
    if reverse.status != TaskStatus::Ready {
        return Err(Stop::Gate(format!(
            "the way back's reverse task {arn} is {}, not ready: it can start from the slot's position only if it never ran (start-replication). Recreate it (update the stack with EnableFallback false, then true), or run cutover without --way-back-task-arn and start it by hand",
            reverse.status
        )));
    }
    cx.dms.start_cdc_from(&arn, &lsn).await?;
    cx.way_back_started = true;
    Ok(format!(
        "{created}; the reverse task is starting from {lsn}"
    ))
}

/// The reverse task inserts the target's rows with their identity values, which a `GENERATED ALWAYS`
/// column refuses (<https://www.postgresql.org/docs/current/sql-insert.html>, `OVERRIDING SYSTEM VALUE`;
/// the forward task meets the same rule, which is why the target's columns stay `BY DEFAULT` until the
/// cutover's identity phase). So each column the deferred file lists as `GENERATED ALWAYS` is set to
/// `BY DEFAULT` on the source while the way back is armed (catalog only, no scan); a rollback sets them
/// back, and so does an abort of this run.
async fn relax_source_identities(cx: &mut Context) -> Step<String> {
    let items = identity_items(&cx.deferred);
    set_identities(&cx.from, &items, false, &mut cx.identities_changed).await?;
    Ok(format!(
        "{} identity column(s) of the source set to BY DEFAULT so the reverse task can insert the target's values (a rollback sets them back to ALWAYS)",
        cx.identities_changed.len()
    ))
}

fn identity_items(deferred: &[Item]) -> Vec<Item> {
    deferred
        .iter()
        .filter(|i| i.kind == DeferredKind::IdentityAlways)
        .cloned()
        .collect()
}

/// Sets each identity column of `items` to `GENERATED ALWAYS` (`always`) or `BY DEFAULT` on `side`,
/// when it is not so already; each one changed is recorded in `changed` before the change, so an abort
/// covers every column this may have altered. Catalog only: no scan, no rewrite.
async fn set_identities(
    side: &Client,
    items: &[Item],
    always: bool,
    changed: &mut Vec<Item>,
) -> Result<(), StepError> {
    let wanted = if always { "ALWAYS" } else { "BY DEFAULT" };
    for item in items {
        let current: Option<i8> = side
            .query_opt(
                "SELECT a.attidentity FROM pg_catalog.pg_attribute a
                 JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3 AND NOT a.attisdropped",
                &[&item.schema, &item.table, &item.name],
            )
            .await
            .map_err(|e| classify_pg_error("reading identity columns", &e))?
            .map(|row| row.get(0));
        // 'a': ALWAYS, 'd': BY DEFAULT, '\0': not an identity column (then nothing to do).
        let is = match current.map(|c| c as u8) {
            Some(b'a') => true,
            Some(b'd') => false,
            _ => continue,
        };
        if is == always {
            continue;
        }
        changed.push(item.clone());
        side.batch_execute(&format!(
            "ALTER TABLE {}.{} ALTER COLUMN {} SET GENERATED {wanted}",
            quote_ident(&item.schema),
            quote_ident(&item.table),
            quote_ident(&item.name)
        ))
        .await
        .map_err(|e| {
            classify_pg_error(
                &format!(
                    "setting identity column {} to {wanted}",
                    item.display_name()
                ),
                &e,
            )
        })?;
    }
    Ok(())
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

async fn write_proof_phase(cx: &mut Context) -> Step<String> {
    let Some(proof) = cx.proof.as_ref() else {
        return Err(Stop::Error(StepError::config(
            "the write-stop proof was never started",
        )));
    };
    let changes = proof.application_changes().await?;
    if !changes.is_empty() {
        return Err(Stop::Gate(format!(
            "writes did not stop: {} change(s) committed on the {} during the freeze, on {}",
            changes.values().sum::<usize>(),
            cx.dir.from(),
            names(&changes)
        )));
    }
    Ok(format!(
        "the {} committed no change to an application table since the {} (decoded from a logical slot, the sentinel's apart)",
        cx.dir.from(),
        if cx.switch.freeze { "freeze" } else { "writes stopped" }
    ))
}

fn names(changes: &BTreeMap<String, usize>) -> String {
    let mut parts: Vec<String> = changes
        .iter()
        .take(20)
        .map(|(t, n)| format!("{t} ({n})"))
        .collect();
    if changes.len() > 20 {
        parts.push(format!("and {} more tables", changes.len() - 20));
    }
    parts.join(", ")
}

// ---------------------------------------------------------------------------------------------------
// The freeze itself, and its undo

/// Every role that may log in to this database, except the migration's (this session's) and the DMS
/// source endpoint's user, superusers (a setting cannot bind them: the write-stop proof watches them) and
/// the providers' own (`rds*`, `pg_*`), gets `default_transaction_read_only = on` in this database; its
/// sessions are ended. A role that already had the setting is left alone (not recorded, so not undone).
async fn freeze(cx: &mut Context) -> Step<String> {
    let task = cx.dms.describe_task(&cx.task_arn).await?;
    let dms_user = cx
        .dms
        .describe_endpoint(&task.source_endpoint_arn)
        .await?
        .username
        .unwrap_or_default();
    let rows = cx
        .from
        .query(
            "SELECT r.rolname::text FROM pg_catalog.pg_roles r
             WHERE r.rolcanlogin AND NOT r.rolsuper
               AND r.rolname <> current_user AND r.rolname <> $1
               AND r.rolname !~ '^(rds|pg_)'
               AND has_database_privilege(r.oid, current_database(), 'CONNECT')
               AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_db_role_setting s
                   JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
                   WHERE d.datname = current_database() AND s.setrole = r.oid
                     AND 'default_transaction_read_only=on' = ANY (s.setconfig))
             ORDER BY 1 LIMIT 1000",
            &[&dms_user],
        )
        .await
        .map_err(|e| classify_pg_error("listing the roles to freeze", &e))?;
    let roles: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let mut frozen = Vec::new();
    for role in &roles {
        // Recorded first: the undo then covers every role this loop may have altered.
        let token = format!("{}{role}", cx.dir.freeze_token());
        if token.len() > 64 {
            continue;
        }
        cx.from
            .execute(
                &format!(
                    "INSERT INTO {} (token) VALUES ($1) ON CONFLICT DO NOTHING",
                    cx.sentinel
                ),
                &[&token],
            )
            .await
            .map_err(|e| classify_pg_error("recording the freeze in the sentinel table", &e))?;
        let sql = format!(
            "DO $$BEGIN EXECUTE format('ALTER ROLE %I IN DATABASE %I SET default_transaction_read_only = on', {}, current_database()); END$$",
            quote_literal(role)
        );
        match cx.from.batch_execute(&sql).await {
            Ok(()) => frozen.push(role.clone()),
            // Dropped meanwhile: nothing to freeze.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_OBJECT) => {}
            Err(e) => return Err(classify_pg_error(&format!("freezing role {role}"), &e).into()),
        }
    }
    let ended: i64 = cx
        .from
        .query_one(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_catalog.pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND usename = ANY($1)",
            &[&frozen],
        )
        .await
        .map(|r| r.get(0))
        .map_err(|e| classify_pg_error("ending the frozen roles' sessions", &e))?;
    Ok(format!(
        "{} read-only for {} role(s) ({}); {ended} of their sessions ended; recorded in {} for the undo",
        cx.dir.from(),
        frozen.len(),
        if frozen.is_empty() {
            "none besides the migration's".to_string()
        } else {
            frozen.join(", ")
        },
        cx.sentinel
    ))
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Resets every role the sentinel table records as frozen under `token` (the sentinel rows are one
/// token per frozen role), and forgets the record. Idempotent.
pub(crate) async fn freeze_undo(
    side: &Client,
    sentinel_table: &str,
    token: &str,
) -> Result<Vec<String>, StepError> {
    let rows = side
        .query(
            &format!(
                "SELECT substr(token, {}) FROM {sentinel_table} WHERE left(token, length($1)) = $1 ORDER BY 1",
                token.len() + 1
            ),
            &[&token],
        )
        .await
        .map_err(|e| classify_pg_error("reading the freeze record", &e))?;
    let mut reset = Vec::new();
    for row in rows {
        let role: String = row.get(0);
        let sql = format!(
            "DO $$BEGIN EXECUTE format('ALTER ROLE %I IN DATABASE %I RESET default_transaction_read_only', {}, current_database()); END$$",
            quote_literal(&role)
        );
        match side.batch_execute(&sql).await {
            Ok(()) => {}
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_OBJECT) => {}
            Err(e) => return Err(classify_pg_error(&format!("unfreezing role {role}"), &e)),
        }
        side.execute(
            &format!("DELETE FROM {sentinel_table} WHERE token = $1"),
            &[&format!("{token}{role}")],
        )
        .await
        .map_err(|e| classify_pg_error("forgetting the freeze record", &e))?;
        reset.push(role);
    }
    Ok(reset)
}

fn describe_undo(reset: &[String], side: &str) -> String {
    if reset.is_empty() {
        format!("no freeze recorded: the {side} is writable for every role")
    } else {
        format!(
            "freeze undone on the {side}: {} role(s) writable again ({}); their new sessions can write",
            reset.len(),
            reset.join(", ")
        )
    }
}

// ---------------------------------------------------------------------------------------------------
// The write-stop proof

/// A temporary logical replication slot on the source (test_decoding: its text output names each
/// changed table), on a session of its own; PostgreSQL drops it when the session ends. It decodes every
/// change committed after its creation. The WAL position is no proof: Aurora writes WAL on its own.
struct WriteProof {
    client: Client,
    slot: String,
}

impl WriteProof {
    async fn start(source: &PgConnectOptions) -> Result<WriteProof, StepError> {
        let mut options = source.clone();
        // Creating a slot waits for the transactions running at that moment to end.
        options.statement_timeout = Duration::from_secs(60);
        let client = options.connect().await?;
        let slot = format!("dms_migrate_cutover_{}", std::process::id());
        client
            .query_one(
                "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'test_decoding', true)",
                &[&slot],
            )
            .await
            .map_err(|e| {
                classify_pg_error(
                    "creating the write-stop proof's temporary logical slot (the migration user needs REPLICATION, rds_replication on Aurora)",
                    &e,
                )
            })?;
        Ok(WriteProof { client, slot })
    }

    /// Changes committed since the last call, per table, the sentinel's and DMS's own left out.
    async fn application_changes(&self) -> Result<BTreeMap<String, usize>, StepError> {
        // Decoding stops at the WAL flushed to disk; with synchronous_commit off a commit may not be
        // flushed yet. A transaction of this session with an id, committed synchronously, flushes the
        // WAL up to its commit record and so every commit before it.
        self.client
            .batch_execute(
                "BEGIN; SET LOCAL synchronous_commit = on; SELECT txid_current(); COMMIT;",
            )
            .await
            .map_err(|e| {
                classify_pg_error("flushing the source's WAL for the write-stop proof", &e)
            })?;
        let mut changes = BTreeMap::new();
        for _ in 0..DECODE_CALLS {
            let rows = self
                .client
                .query(
                    "SELECT data FROM pg_logical_slot_get_changes($1, NULL, $2::int)",
                    &[&self.slot, &(DECODE_BATCH as i32)],
                )
                .await
                .map_err(|e| classify_pg_error("reading the write-stop proof's slot", &e))?;
            for row in &rows {
                let data: String = row.get(0);
                if let Some(table) = changed_table(&data) {
                    *changes.entry(table.to_string()).or_insert(0) += 1;
                }
            }
            if (rows.len() as i64) < DECODE_BATCH {
                break;
            }
        }
        Ok(changes)
    }
}

/// The table of one test_decoding line (`table app.orders: INSERT: ...`), unless it is the sentinel or
/// one of DMS's own tables (`awsdms_*`, e.g. the heartbeat).
fn changed_table(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("table ")?;
    let end = rest.find(": ")?;
    let table = &rest[..end];
    let bare = table.rsplit('.').next().unwrap_or(table).trim_matches('"');
    if bare == sentinel::TABLE || bare.starts_with("awsdms_") {
        return None;
    }
    Some(table)
}

// ---------------------------------------------------------------------------------------------------
// Helpers, abort and summary

async fn round_trip(cx: &Context) -> Step<f64> {
    let limit = Duration::from_secs(cx.switch.latency_target);
    // The row's delete is not waited for: the arrival is the proof, and the sentinel table's rows are
    // each side's own bookkeeping, which verify leaves out.
    match cutover_check::round_trip(&cx.from, &cx.to, &cx.sentinel, cx.dir.command(), limit, false)
        .await?
    {
        Some(took) => Ok(took.as_secs_f64()),
        None => Err(Stop::Gate(format!(
            "a sentinel row written on the {} did not reach the {} within {} s: DMS is behind or not applying; look at the task's CDC latency and log",
            cx.dir.from(),
            cx.dir.to(),
            cx.switch.latency_target
        ))),
    }
}

async fn wait_task(cx: &Context, wanted: TaskStatus) -> Step<()> {
    let deadline = Instant::now() + TASK_WAIT;
    loop {
        let task = cx.dms.describe_task(&cx.task_arn).await?;
        if task.status == wanted {
            return Ok(());
        }
        if task.status == TaskStatus::Failed {
            return Err(Stop::Gate(format!(
                "the task failed while waiting for it to be {wanted}: {}",
                task.last_failure_message.unwrap_or_default()
            )));
        }
        if Instant::now() > deadline {
            return Err(Stop::Gate(format!(
                "the task is still {} after {} s (waiting for {wanted})",
                task.status,
                TASK_WAIT.as_secs()
            )));
        }
        sleep(POLL).await?;
    }
}

/// Undoes what the run did to the source and the task, on fresh connections when the old ones are
/// gone, and says so. The freeze is undone from its record, so a freeze interrupted half-way is undone
/// too.
async fn abort(cx: Context, stop: Stop) -> Result<Outcome, StepError> {
    let (reason, outcome) = match &stop {
        Stop::Gate(why) => (why.clone(), Ok(Outcome::Failed)),
        Stop::Interrupted => ("interrupted (Ctrl-C)".to_string(), Ok(Outcome::Failed)),
        Stop::Error(err) => (err.to_string(), Err(())),
    };
    let phase = cx.timeline.len() + 1;
    let (not_switching, stays, undo) = match cx.dir {
        Direction::Forward => (
            "NOT SWITCHING",
            "The application stays on Aurora, which takes writes; nothing was lost. Fix the cause and run cutover again: it resumes safely.",
            "dms-migrate cutover --undo-freeze",
        ),
        Direction::Back => (
            "NOT SWITCHING BACK",
            "The application stays on PlanetScale, which takes writes, and the way back replays them to Aurora again; nothing was lost. Fix the cause and run rollback again: it resumes safely.",
            "dms-migrate rollback --undo-freeze",
        ),
    };
    println!("{not_switching}: stopped in phase {phase}: {reason}");
    let mut problems = Vec::new();
    let (from, to) = (
        usable(cx.from, &cx.from_opts, &mut problems).await,
        usable(cx.to, &cx.to_opts, &mut problems).await,
    );
    let side = cx.dir.from();
    match &from {
        Some(client) => match freeze_undo(client, &cx.sentinel, cx.dir.freeze_token()).await {
            Ok(reset) => println!("  {}", describe_undo(&reset, side)),
            Err(e) => problems.push(format!("undoing the freeze on the {side}: {e}")),
        },
        None => problems.push(format!("the {side} cannot be reached to undo the freeze")),
    }
    let started = cx.arm.as_ref().and_then(|a| a.task_arn.as_ref());
    if let (true, Some(arn)) = (cx.way_back_started, started) {
        match fallback::stop_reverse_task(&cx.dms, arn, WAY_BACK_START_WAIT).await {
            Ok(_) => println!("  the way back's reverse task this run started is stopped"),
            Err(e) => problems.push(format!("stopping the way back's reverse task {arn}: {e}")),
        }
    }
    if let (Some(_), Some(arm), Some(target)) = (&cx.way_back, &cx.arm, &to) {
        let slot = &arm.slot;
        match drop_slot(target, slot).await {
            Ok(()) => println!("  the way back's slot {slot} this run created on the target is dropped"),
            Err(e) => problems.push(format!(
                "dropping the way back's slot {slot} on the target ({e}): drop it with SELECT pg_drop_replication_slot('{slot}'); before running cutover again, or it keeps the target's WAL"
            )),
        }
    }
    if !cx.identities_changed.is_empty() {
        // Back as they were: ALWAYS after a cutover's abort, BY DEFAULT (the reverse task resumes) after a
        // rollback's.
        let (source, always) = match cx.dir {
            Direction::Forward => (&from, true),
            Direction::Back => (&to, false),
        };
        let mut changed = Vec::new();
        match source {
            Some(client) => {
                match set_identities(client, &cx.identities_changed, always, &mut changed).await {
                    Ok(()) => println!(
                        "  {} identity column(s) of the source this run changed are as they were",
                        cx.identities_changed.len()
                    ),
                    Err(e) => {
                        problems.push(format!("setting the source's identity columns back: {e}"))
                    }
                }
            }
            None => problems
                .push("the source cannot be reached to set its identity columns back".into()),
        }
    }
    if cx.stopped_task {
        let resumed = match cx.dms.describe_task(&cx.task_arn).await {
            Ok(t) if t.status == TaskStatus::Stopped => cx
                .dms
                .start_task(&cx.task_arn, StartType::ResumeProcessing)
                .await
                .map(|_| {
                    "  the DMS task this run stopped is resuming from its position".to_string()
                }),
            Ok(t) => Ok(format!("  the DMS task is {}; not resumed", t.status)),
            Err(e) => Err(e),
        };
        match resumed {
            Ok(line) => println!("{line}"),
            Err(e) => problems.push(format!("resuming the task: {e}")),
        }
    }
    let done: Vec<&str> = cx.timeline.iter().map(|p| p.name).collect();
    println!(
        "  done before the stop: {}",
        if done.is_empty() {
            "nothing".to_string()
        } else {
            done.join(", ")
        }
    );
    if problems.is_empty() {
        println!("  {stays}");
    } else {
        println!(
            "  UNDO INCOMPLETE: {}. Run `{undo}` as soon as the {side} is reachable.",
            problems.join("; ")
        );
    }
    match (outcome, stop) {
        (Ok(o), _) => Ok(o),
        (Err(()), Stop::Error(err)) => Err(err),
        (Err(()), _) => Ok(Outcome::Failed),
    }
}

/// `client` while its connection serves, else a fresh one (three tries); None, with the reasons in
/// `problems`, when the side cannot be reached.
async fn usable(
    client: Client,
    opts: &PgConnectOptions,
    problems: &mut Vec<String>,
) -> Option<Client> {
    if !client.is_closed() {
        return Some(client);
    }
    for _ in 0..3 {
        match opts.connect().await {
            Ok(fresh) => return Some(fresh),
            Err(e) => {
                problems.push(e.to_string());
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    None
}

/// After the switch instruction: the reverse task this run started, once it shows `running` (or why
/// not). Nothing is undone here: the application may already write to the target.
async fn report_reverse(dms: &DmsClient, arn: &str, lsn: &str) -> String {
    let deadline = Instant::now() + WAY_BACK_START_WAIT;
    loop {
        match dms.describe_task(arn).await {
            Ok(task) if task.status == TaskStatus::Running => {
                return format!("The way back is running: the reverse task {arn} replays the target's changes to the source from {lsn}. End it with `dms-migrate fallback end --task-arn {arn}` once the migration is final.");
            }
            Ok(task) if task.status == TaskStatus::Starting => {}
            Ok(task) => {
                return format!("THE WAY BACK IS NOT RUNNING: the reverse task {arn} is {} ({}). The slot keeps the target's changes from {lsn}: fix the cause, then start it from there: aws dms start-replication-task --replication-task-arn {arn} --start-replication-task-type start-replication --cdc-start-position {lsn}", task.status, task.last_failure_message.unwrap_or_else(|| "no message".into()));
            }
            Err(e) => return format!("THE WAY BACK IS NOT CONFIRMED: reading the reverse task {arn} failed ({e}); check it in the DMS console"),
        }
        if Instant::now() >= deadline {
            return format!("THE WAY BACK IS NOT CONFIRMED: the reverse task {arn} is still starting after {} s; check it in the DMS console", WAY_BACK_START_WAIT.as_secs());
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn drop_slot(client: &Client, slot: &str) -> Result<(), StepError> {
    client
        .execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map(|_| ())
        .map_err(|e| classify_pg_error("dropping the way back's slot", &e))
}

/// The timeline of the phases; the outage so far.
fn print_timeline(cx: &Context) -> f64 {
    let outage = cx
        .outage_start
        .map(|t| t.elapsed().as_secs_f64())
        .unwrap_or_default();
    let before: f64 = cx
        .timeline
        .iter()
        .filter(|p| !p.in_outage)
        .map(|p| p.seconds)
        .sum();
    println!(
        "Timeline: {:.1} s before the freeze while the application wrote; write outage so far {outage:.1} s",
        before
    );
    for p in &cx.timeline {
        println!(
            "  {:<22} {:>6.1} s{}",
            p.name,
            p.seconds,
            if p.in_outage { "  (outage)" } else { "" }
        );
    }
    outage
}

fn print_summary(cx: &Context) {
    let outage = print_timeline(cx);
    println!(
        "SWITCH NOW: point the application at the target (PlanetScale). The source stays read-only for the frozen roles (`dms-migrate cutover --undo-freeze` reverts that); the DMS task is stopped. Outage until now: {outage:.1} s."
    );
    match (&cx.way_back, &cx.arm) {
        (Some(_), _) if cx.way_back_started => {}
        (Some(lsn), Some(arm)) => println!(
            "The way back is armed: slot {slot} on the target holds every change from {lsn} on. Start the stack's reverse task (output FallbackReplicationTaskArn) from exactly there, before the target's WAL limit is reached: aws dms start-replication-task --replication-task-arn <FallbackReplicationTaskArn> --start-replication-task-type start-replication --cdc-start-position {lsn}. Once the migration is final, or if the way back will not be used, drop the slot on the target, since it keeps the target's WAL (up to max_slot_wal_keep_size): SELECT pg_drop_replication_slot('{slot}');",
            slot = arm.slot
        ),
        _ => println!("The way back is not armed (--no-fallback)."),
    }
}

/// The rollback (docs/rollback.md): the cutover's phases the other way, through the way back's reverse
/// task. Returns as `run` does: exit 0 switch back now, 1 a gate failed (aborted, the target writable and
/// the way back running), 2 could not run.
pub(crate) async fn roll_back(mut cx: Context) -> Result<Outcome, StepError> {
    println!(
        "Rollback through the way back's task {} ({} mode)",
        cx.task_arn,
        if cx.switch.freeze {
            "--freeze"
        } else {
            "the operator stops the application"
        }
    );
    match rollback_phases(&mut cx).await {
        Ok(()) => {
            let outage = print_timeline(&cx);
            println!(
                "SWITCH BACK NOW: point the application at the source (Aurora), which now holds every write made on the target since the cutover. The target stays read-only for the frozen roles (`dms-migrate rollback --undo-freeze` reverts that); the reverse task is stopped. Rollback outage until now: {outage:.1} s."
            );
            println!(
                "Then: end the way back with `dms-migrate fallback end --task-arn {arn}` (its slot keeps the target's WAL), and drop the forward task's slot on the source with `dms-migrate cleanup --task-arn <ReplicationTaskArn>` (it keeps the source's WAL since the cutover). Do not resume the forward task: it would send the way back's writes to the target again; migrating again starts from an emptied target.",
                arn = cx.task_arn
            );
            Ok(Outcome::Ok)
        }
        Err(stop) => abort(cx, stop).await,
    }
}

async fn rollback_phases(cx: &mut Context) -> Step<()> {
    // Before the freeze, while the application still writes to the target.
    phase!(cx, "1. reverse task", false, task_phase);
    phase!(cx, "2. sequences", false, sequences_ahead_phase);
    phase!(cx, "3. live verify", false, live_verify_phase);
    // The outage.
    phase!(cx, "4. freeze", true, freeze_phase);
    phase!(cx, "5. drain", true, drain_phase);
    phase!(cx, "6. final sequences", true, final_sequences_phase);
    phase!(cx, "7. doubted ranges", true, doubted_phase);
    phase!(cx, "8. task stopped", true, stop_task_phase);
    phase!(cx, "9. identity", true, source_identity_phase);
    phase!(cx, "10. writes stopped", true, write_proof_phase);
    // Last, once nothing else can fail: the source's freeze from the cutover is undone.
    phase!(cx, "11. source writable", true, source_writable_phase);
    Ok(())
}

/// The identity columns the cutover set to BY DEFAULT on the source for the reverse task, back to
/// GENERATED ALWAYS now that it is stopped.
async fn source_identity_phase(cx: &mut Context) -> Step<String> {
    let items = identity_items(&cx.deferred);
    set_identities(&cx.to, &items, true, &mut cx.identities_changed).await?;
    Ok(format!(
        "{} identity column(s) of the source back to GENERATED ALWAYS ({} already)",
        cx.identities_changed.len(),
        items.len() - cx.identities_changed.len()
    ))
}

/// Undoes the cutover's freeze of the source (its own record, `freeze:`), so the application's roles can
/// write there again.
async fn source_writable_phase(cx: &mut Context) -> Step<String> {
    let reset = freeze_undo(&cx.to, &cx.sentinel, Direction::Forward.freeze_token()).await?;
    Ok(describe_undo(&reset, "source"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proof_names_application_tables_and_ignores_the_sentinel_and_dms_own() {
        assert_eq!(
            changed_table("table app.orders: INSERT: id[bigint]:1"),
            Some("app.orders")
        );
        assert_eq!(
            changed_table("table \"Billing\".\"Invoices\": UPDATE: id[integer]:2"),
            Some("\"Billing\".\"Invoices\"")
        );
        assert_eq!(
            changed_table(
                "table \"Billing\".dms_migrate_sentinel: INSERT: token[character varying]:'x'"
            ),
            None
        );
        assert_eq!(
            changed_table("table public.awsdms_heartbeat: UPDATE: hearbeat_id[integer]:1"),
            None
        );
        assert_eq!(changed_table("BEGIN 1234"), None);
        assert_eq!(changed_table("COMMIT 1234"), None);
    }

    #[test]
    fn validation_states_fail_wait_or_pass_as_dms_documents_them() {
        assert_eq!(validation_verdict("Validated"), Verdict::Good);
        assert_eq!(validation_verdict("Pending records"), Verdict::Wait);
        assert_eq!(validation_verdict("Pending revalidation"), Verdict::Wait);
        assert_eq!(validation_verdict("Mismatched records"), Verdict::Bad);
        assert_eq!(validation_verdict("Suspended records"), Verdict::Bad);
        assert_eq!(validation_verdict("Table error"), Verdict::Bad);
        assert_eq!(validation_verdict("Error"), Verdict::Bad);
        assert_eq!(validation_verdict("Not enabled"), Verdict::NotValidated);
        assert_eq!(validation_verdict("No primary key"), Verdict::NotValidated);
    }
}
