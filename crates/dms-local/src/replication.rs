//! The replication engine: DMS task semantics on PostgreSQL logical replication.
//!
//! A task owns one publication on the source (its mapped tables), one logical slot on the source and one
//! subscription on the target, all named `dms_local_<task id>`. A full load (`full_load.rs`) creates the
//! slot with an exported snapshot and copies every segment under that snapshot; a task with CDC then
//! subscribes from the slot without copying (`create_slot = false, copy_data = false`), so changes start
//! exactly where the copy ends. A CDC-only task subscribes at once. Stop aborts the copies and disables the
//! subscription (the slot keeps CDC's position, so resume continues); reload drops everything and loads
//! again (DO_NOTHING: target rows are kept, so rows are duplicated or the copy fails on a key, as in DMS).
//! Every tick (≈1 s) reads the target's counters for CDC statistics and pushes CDC latency.

use std::sync::Arc;
use std::time::Duration;

use dms_core::pg::{PgConnectOptions, SslMode};
use dms_core::rules::sql_ident::quote;
use dms_core::StepError;
use tokio::task::JoinSet;

use crate::ids::{now_epoch_seconds, resource_id_of};
use crate::model::{
    stop_reason, table_state, task_status, Endpoint, MigrationType, PendingAction, Segment,
    SegmentState, TableProgress, Task,
};
use crate::{full_load, latency, table_mappings, App};

pub const TICK: Duration = Duration::from_secs(1);
/// A task paused by the `pauseTableSync` fault waits at most this long before its copies start anyway.
const PAUSE_LIMIT: Duration = Duration::from_secs(6 * 3600);

const COUNTERS_SQL: &str = "
SELECT schemaname::text, relname::text, n_tup_ins, n_tup_upd, n_tup_del
FROM pg_stat_user_tables
WHERE (schemaname, relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))";
/// Mapped target tables that batch apply cannot serve: a unique index or constraint besides the primary key,
/// or a foreign key. DMS does not support batch apply on tables with a unique constraint beside the
/// primary key (a batch's net changes can move a unique value between rows), and a batch does not keep the
/// order foreign keys need (BatchApplyEnabled "can affect transactional integrity":
/// https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TaskSettings.TargetMetadata.html).
/// The model is stricter than DMS: such a table ends `Table error` as soon as changes reach it, while DMS
/// fails only when a batch actually conflicts.
const BATCH_APPLY_CONFLICTS_SQL: &str = "
SELECT n.nspname::text, c.relname::text
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))
  AND (EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisunique AND NOT i.indisprimary)
       OR EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'f'))";
/// The subscription's apply worker connects with application_name = the subscription name.
const LAG_SQL: &str = "
SELECT EXTRACT(EPOCH FROM coalesce(write_lag, interval '0'))::float8,
       EXTRACT(EPOCH FROM coalesce(replay_lag, interval '0'))::float8
FROM pg_stat_replication WHERE application_name = $1";
/// Quoting done by PostgreSQL itself (%I, %L); the connection string holds the source password and is
/// never logged. `$3` is the WITH list (fixed text built here, never input).
const CREATE_SUBSCRIPTION_SQL: &str = "
SELECT format('CREATE SUBSCRIPTION %I CONNECTION %L PUBLICATION %I WITH (%s)',
              $1::text, $2::text, $1::text, $3::text)";
const SLOT_SQL: &str = "
SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()";
pub(crate) const NO_TABLES_MESSAGE: &str = "No tables were found at task initialization. Either the selected table(s) or schemas(s) no longer exist or no explicit table(s) or schema(s) were selected.";

pub(crate) fn pg_options(endpoint: &Endpoint, app: &App) -> PgConnectOptions {
    let mut options = PgConnectOptions::from_parts(
        &endpoint.host,
        endpoint.port,
        &endpoint.username,
        Some(&endpoint.password.0),
        &endpoint.database,
    );
    options.ssl_mode = match endpoint.ssl_mode.as_str() {
        "none" => SslMode::Disable,
        "require" => SslMode::Require,
        _ => SslMode::VerifyFull,
    };
    options.root_cert_pem = app.cas.0.clone();
    options.application_name = "dms-local".to_string();
    options
}

/// libpq conninfo value quoting: single quotes, with `\` and `'` backslash-escaped.
fn conninfo_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// libpq's sslmode for an endpoint's DMS ssl mode.
fn libpq_sslmode(endpoint: &Endpoint) -> &str {
    match endpoint.ssl_mode.as_str() {
        "none" => "disable",
        other => other,
    }
}

/// How the target's subscription reaches the source: the source endpoint's registered credentials.
fn source_conninfo(source: &Endpoint) -> String {
    format!(
        "host={} port={} dbname={} user={} password={} sslmode={}",
        conninfo_value(&source.host),
        source.port,
        conninfo_value(&source.database),
        conninfo_value(&source.username),
        conninfo_value(&source.password.0),
        libpq_sslmode(source)
    )
}

pub(crate) struct Snapshot {
    pub(crate) task: Task,
    pub(crate) source: Endpoint,
    pub(crate) target: Endpoint,
    pub(crate) instance_identifier: String,
}

fn snapshot(app: &App, arn: &str) -> Option<Snapshot> {
    let inner = app.registry.lock();
    let task = inner.task(arn)?.clone();
    Some(Snapshot {
        source: inner.endpoint(&task.source_arn)?.clone(),
        target: inner.endpoint(&task.target_arn)?.clone(),
        instance_identifier: inner.instance(&task.instance_arn)?.identifier.clone(),
        task,
    })
}

pub(crate) fn update(app: &App, arn: &str, change: impl FnOnce(&mut Task)) {
    if let Some(task) = app.registry.lock().task_mut(arn) {
        change(task);
    }
}

/// Sets the status unless a newer API call (a stop, a fault) has already asked for something else.
pub(crate) fn settle(task: &mut Task, status: &str) {
    if task.pending.is_none() && task.status != task_status::FAILED {
        task.status = status.to_string();
    }
}

fn fail(task: &mut Task, message: &str) {
    task.status = task_status::FAILED.to_string();
    task.stop_reason = Some(stop_reason::FATAL_ERROR.to_string());
    task.last_failure_message = Some(message.to_string());
    task.stop_date = Some(now_epoch_seconds());
}

/// Runs the engine until `shutdown` flips, then cleans up what it created.
pub async fn run(app: Arc<App>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => tick(&app).await,
            _ = app.registry.woken() => tick(&app).await,
            _ = shutdown.changed() => break,
        }
    }
    cleanup_all(&app).await;
}

/// One step for every task with work to do, concurrently; at most one step per task at a time.
pub async fn tick(app: &Arc<App>) {
    let arns: Vec<String> = app
        .registry
        .lock()
        .tasks
        .iter()
        .filter(|t| {
            t.pending.is_some() || t.status == task_status::RUNNING || t.restart_at.is_some()
        })
        .map(|t| t.arn.clone())
        .collect();
    let mut steps = JoinSet::new();
    for arn in arns {
        let app = Arc::clone(app);
        steps.spawn(async move { step(&app, &arn).await });
    }
    while steps.join_next().await.is_some() {}
}

async fn step(app: &Arc<App>, arn: &str) {
    let pending = {
        let mut inner = app.registry.lock();
        inner.task_mut(arn).and_then(|t| t.pending.take())
    };
    let Some(snap) = snapshot(app, arn) else {
        return;
    };
    // A CDC-only task on an existing slot (the way back's reverse task) has an engine of its own.
    if snap.task.slot_stream.is_some() {
        let result = crate::reverse::step(app, &snap, pending.clone()).await;
        return report(app, &snap, pending, result);
    }
    if pending.is_none() {
        if let Some(at) = snap.task.restart_at {
            if std::time::Instant::now() < at {
                return;
            }
            // DMS's own restart after a recoverable error: the task resumes where it stopped.
            update(app, arn, |t| t.restart_at = None);
            if let Err(err) = resume(app, &snap).await {
                tracing::warn!(task = %snap.task.identifier, error = %err, "restart after a recoverable error failed");
            }
            return;
        }
    }
    let result = match pending {
        Some(PendingAction::StartReplication) => start(app, &snap, false).await,
        Some(PendingAction::ReloadTarget) => start(app, &snap, true).await,
        Some(PendingAction::ResumeProcessing) => resume(app, &snap).await,
        Some(PendingAction::Stop) => stop(app, &snap).await,
        Some(PendingAction::Fail | PendingAction::RecoverableStop) => {
            abort_load(app, arn);
            set_enabled(app, &snap, false).await
        }
        Some(PendingAction::Modified(status)) => {
            update(app, arn, |t| t.status = status);
            return;
        }
        None => observe(app, &snap).await,
    };
    report(app, &snap, pending, result);
}

/// A failed step: logged; when it served a start, resume or fault, the task is `failed` with the error
/// as its LastFailureMessage.
fn report(
    app: &App,
    snap: &Snapshot,
    pending: Option<PendingAction>,
    result: Result<(), StepError>,
) {
    let arn = snap.task.arn.as_str();
    if let Err(err) = result {
        tracing::warn!(task = %snap.task.identifier, error = %err, "replication step failed");
        if pending.is_some() && pending != Some(PendingAction::Stop) {
            update(app, arn, |t| fail(t, &err.message));
        }
    }
}

pub(crate) async fn mapped_tables(
    source: &tokio_postgres::Client,
    task: &Task,
) -> Result<Vec<(String, String)>, StepError> {
    let mappings = table_mappings::parse(&task.table_mappings)
        .map_err(|e| StepError::new(dms_core::ErrorName::PayloadInvalid, e))?;
    let catalog: Vec<(String, String)> = source
        .query(table_mappings::SOURCE_TABLES_SQL, &[])
        .await
        .map_err(|e| dms_core::pg::classify_pg_error("the source", &e))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(table_mappings::resolve(&mappings, &catalog))
}

pub(crate) fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote(schema), quote(table))
}

async fn exec(client: &tokio_postgres::Client, what: &str, sql: &str) -> Result<(), StepError> {
    client
        .batch_execute(sql)
        .await
        .map_err(|e| dms_core::pg::classify_pg_error(what, &e))
}

/// pg_stat_user_tables counters of `tables` on the target, (inserts, updates, deletes) by table.
async fn read_counters(
    target: &tokio_postgres::Client,
    tables: &[(String, String)],
) -> Result<Vec<(String, String, i64, i64, i64)>, StepError> {
    let schemas: Vec<&str> = tables.iter().map(|(s, _)| s.as_str()).collect();
    let names: Vec<&str> = tables.iter().map(|(_, t)| t.as_str()).collect();
    Ok(target
        .query(COUNTERS_SQL, &[&schemas, &names])
        .await
        .map_err(|e| dms_core::pg::classify_pg_error("the target", &e))?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect())
}

/// Drops the task's slot on the source if it is there. A slot still held by a session of this task (the
/// walsender of a subscription being dropped, or of an aborted snapshot export) is released first.
async fn drop_slot(source: &tokio_postgres::Client, name: &str) -> Result<(), StepError> {
    let classify = |e: tokio_postgres::Error| dms_core::pg::classify_pg_error("the source", &e);
    for _ in 0..40 {
        let rows = source.query(SLOT_SQL, &[&name]).await.map_err(classify)?;
        let Some(row) = rows.first() else {
            return Ok(());
        };
        match row.get::<_, Option<i32>>(0) {
            Some(pid) => {
                source
                    .execute("SELECT pg_terminate_backend($1)", &[&pid])
                    .await
                    .map_err(classify)?;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            None => {
                if source
                    .execute("SELECT pg_drop_replication_slot($1)", &[&name])
                    .await
                    .is_ok()
                {
                    return Ok(());
                }
            }
        }
    }
    Err(StepError::new(
        dms_core::ErrorName::PostgresQueryFailed,
        format!("replication slot {name} on the source stayed in use"),
    ))
}

/// Stops the task's running load, if any: its copies' transactions roll back when their connections drop.
fn abort_load(app: &App, arn: &str) {
    let mut inner = app.registry.lock();
    if let Some(task) = inner.task_mut(arn) {
        if let Some(load) = task.load.take() {
            load.abort();
        }
        task.load_generation += 1;
        for segment in task.segments.iter_mut() {
            if segment.state == SegmentState::Copying {
                segment.state = SegmentState::Pending;
            }
        }
    }
}

async fn create_subscription(
    target: &tokio_postgres::Client,
    snap: &Snapshot,
    with: &str,
) -> Result<(), StepError> {
    let name = snap.task.replication_name();
    let create: String = target
        .query_one(
            CREATE_SUBSCRIPTION_SQL,
            &[&name, &source_conninfo(&snap.source), &with],
        )
        .await
        .map_err(|e| dms_core::pg::classify_pg_error("the target", &e))?
        .get(0);
    exec(target, "the target", &create).await
}

/// The segments of `tables`: one per range of a `parallel-load` `ranges` rule, else one per table.
fn plan_segments(tables: &[(String, String)], rules: &[full_load::RangeRule]) -> Vec<Segment> {
    let mut segments = Vec::new();
    for (index, (schema, table)) in tables.iter().enumerate() {
        match rules
            .iter()
            .find(|r| &r.schema == schema && &r.table == table)
        {
            Some(rule) => segments.extend(full_load::segment_predicates(rule).into_iter().map(
                |p| Segment {
                    table: index,
                    predicate: Some(p),
                    state: SegmentState::Pending,
                    rows: 0,
                },
            )),
            None => segments.push(Segment {
                table: index,
                predicate: None,
                state: SegmentState::Pending,
                rows: 0,
            }),
        }
    }
    segments
}

/// Starts the task afresh (start-replication, reload-target, or resume of a task with nothing left):
/// drops what an earlier run left, creates the publication, then either subscribes at once (CDC only) or
/// creates the slot with its snapshot and starts the full load.
async fn start(app: &Arc<App>, snap: &Snapshot, reload: bool) -> Result<(), StepError> {
    abort_load(app, &snap.task.arn);
    let task = &snap.task;
    let name = task.replication_name();
    let source = pg_options(&snap.source, app).connect().await?;
    let target = pg_options(&snap.target, app).connect().await?;
    let tables = mapped_tables(&source, task).await?;
    if tables.is_empty() {
        return Err(StepError::new(
            dms_core::ErrorName::PostgresQueryFailed,
            NO_TABLES_MESSAGE,
        ));
    }
    let rules = full_load::range_rules(&task.table_mappings)
        .map_err(|e| StepError::new(dms_core::ErrorName::PayloadInvalid, e))?;
    exec(
        &target,
        "the target",
        &format!("DROP SUBSCRIPTION IF EXISTS {}", quote(&name)),
    )
    .await?;
    drop_slot(&source, &name).await?;
    let list: Vec<String> = tables.iter().map(|(s, t)| qualified(s, t)).collect();
    // The mappings select a partitioned table by its root, as DMS's table statistics name it: published
    // through the root, the subscription tracks (and reports) the root rather than each partition.
    exec(
        &source,
        "the source",
        &format!(
            "DROP PUBLICATION IF EXISTS {0}; \
             CREATE PUBLICATION {0} FOR TABLE {1} WITH (publish_via_partition_root = true)",
            quote(&name),
            list.join(", ")
        ),
    )
    .await?;
    let counters = read_counters(&target, &tables).await?;
    let now = now_epoch_seconds();
    let mut progress = Vec::new();
    for (schema, table) in &tables {
        let mut p = TableProgress::new(schema, table, now);
        p.counters_before_load = counters
            .iter()
            .find(|c| &c.0 == schema && &c.1 == table)
            .map(|c| (c.2, c.3, c.4))
            .unwrap_or((0, 0, 0));
        p.reloaded = reload;
        if reload {
            p.state = table_state::RELOADING;
        }
        progress.push(p);
    }
    let fresh = !task.ever_started || reload;
    let full_load = task.migration_type.has_full_load();
    if !full_load {
        // CDC only: changes from now on, nothing copied. The tables are in CDC at once.
        create_subscription(&target, snap, "copy_data = false").await?;
        for p in progress.iter_mut() {
            p.state = table_state::COMPLETED;
            p.counters_at_load_end = Some(p.counters_before_load);
        }
    }
    let segments = if full_load {
        let segments = plan_segments(&tables, &rules);
        for rule in &rules {
            if !tables
                .iter()
                .any(|(s, t)| s == &rule.schema && t == &rule.table)
            {
                tracing::info!(task = %task.identifier, table = %qualified(&rule.schema, &rule.table), "a parallel-load rule names a table the task does not map");
            }
        }
        segments
    } else {
        Vec::new()
    };
    let max_subtasks = full_load::max_subtasks(task.settings.as_deref());
    update(app, &task.arn, |t| {
        t.tables = progress;
        t.segments = segments;
        t.max_subtasks = max_subtasks;
        t.ever_started = true;
        t.start_date = Some(now);
        if fresh {
            t.fresh_start_date = Some(now);
        }
        t.stop_date = None;
        t.full_load_start = full_load.then_some(now);
        t.full_load_finish = None;
        t.slot_exists = !full_load;
        t.subscription_exists = !full_load;
        t.subscription_enabled = !full_load;
    });
    if full_load {
        let exported = full_load::ExportedSnapshot::create(
            &app.psql,
            &full_load::ReplicationConnection {
                host: &snap.source.host,
                port: snap.source.port,
                database: &snap.source.database,
                user: &snap.source.username,
                password: &snap.source.password.0,
                sslmode: libpq_sslmode(&snap.source),
                root_cert: app.ca_file.as_deref(),
                application_name: &format!("{name}_snapshot"),
            },
            &name,
        )
        .await?;
        update(app, &task.arn, |t| t.slot_exists = true);
        launch_load(app, snap, Some(exported));
    }
    tracing::info!(task = %task.identifier, tables = tables.len(), full_load, "replication started");
    update(app, &task.arn, |t| settle(t, task_status::RUNNING));
    Ok(())
}

/// Starts copying the task's pending segments in the background.
fn launch_load(app: &Arc<App>, snap: &Snapshot, exported: Option<full_load::ExportedSnapshot>) {
    let mut inner = app.registry.lock();
    let Some(task) = inner.task_mut(&snap.task.arn) else {
        return;
    };
    task.load_generation += 1;
    let generation = task.load_generation;
    let load = tokio::spawn(run_load(
        Arc::clone(app),
        snap.task.arn.clone(),
        generation,
        snap.source.clone(),
        snap.target.clone(),
        exported,
    ));
    task.load = Some(load.abort_handle());
}

/// Updates the task if `generation` is still its current load.
fn update_load(app: &App, arn: &str, generation: u64, change: impl FnOnce(&mut Task)) {
    update(app, arn, |t| {
        if t.load_generation == generation {
            change(t);
        }
    });
}

/// The full load: every pending segment copied on at most `max_subtasks` connections, under the exported
/// snapshot when there is one; the snapshot's session ends once every copy has begun its transaction.
async fn run_load(
    app: Arc<App>,
    arn: String,
    generation: u64,
    source: Endpoint,
    target: Endpoint,
    exported: Option<full_load::ExportedSnapshot>,
) {
    let Some((jobs, max_subtasks, task_id)) = load_jobs(&app, &arn, &source).await else {
        if let Some(exported) = exported {
            exported.release().await;
        }
        return;
    };
    let snapshot_name = exported.as_ref().map(|e| e.name.clone());
    let semaphore = Arc::new(tokio::sync::Semaphore::new(max_subtasks));
    let (began_tx, mut began_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut copies = JoinSet::new();
    let total = jobs.len();
    for job in jobs {
        wait_while_paused(&app, &arn).await;
        let Ok(permit) = Arc::clone(&semaphore).acquire_owned().await else {
            break;
        };
        let mut source_options = pg_options(&source, &app);
        let mut target_options = pg_options(&target, &app);
        // Each copy names itself after its segment: what pg_stat_activity shows while it runs.
        for options in [&mut source_options, &mut target_options] {
            options.application_name = format!("{task_id}_s{}", job.index);
            options.statement_timeout = full_load::COPY_STATEMENT_TIMEOUT;
        }
        let app = Arc::clone(&app);
        let arn = arn.clone();
        let snapshot_name = snapshot_name.clone();
        let began_tx = began_tx.clone();
        let now = now_epoch_seconds();
        update_load(&app, &arn, generation, |t| {
            if let Some(segment) = t.segments.get_mut(job.index) {
                segment.state = SegmentState::Copying;
                if let Some(table) = t.tables.get_mut(segment.table) {
                    table.full_load_start.get_or_insert(now);
                    if table.state == table_state::BEFORE_LOAD {
                        table.state = table_state::FULL_LOAD;
                        table.last_update = now;
                    }
                }
            }
        });
        copies.spawn(async move {
            let result = full_load::copy_segment(
                &source_options,
                &target_options,
                snapshot_name.as_deref(),
                &job,
                move || {
                    let _ = began_tx.send(());
                },
            )
            .await;
            drop(permit);
            record_segment(&app, &arn, generation, &job, result);
        });
    }
    drop(began_tx);
    // The exported snapshot is importable only while its session is idle and open.
    for _ in 0..total {
        if began_rx.recv().await.is_none() {
            break;
        }
    }
    if let Some(exported) = exported {
        exported.release().await;
    }
    while copies.join_next().await.is_some() {}
    if let Err(err) = finish_load(&app, &arn, generation).await {
        tracing::warn!(task = %arn, error = %err, "finishing the full load failed");
        update_load(&app, &arn, generation, |t| fail(t, &err.message));
    }
}

/// The pending segments as copy jobs (columns read from the source), MaxFullLoadSubTasks and the name the
/// copies' connections carry.
async fn load_jobs(
    app: &App,
    arn: &str,
    source: &Endpoint,
) -> Option<(Vec<full_load::SegmentJob>, usize, String)> {
    let task = app.registry.lock().task(arn)?.clone();
    let client = match pg_options(source, app).connect().await {
        Ok(client) => client,
        Err(err) => {
            update(app, arn, |t| fail(t, &err.message));
            return None;
        }
    };
    let mut columns: Vec<Vec<String>> = Vec::new();
    for table in &task.tables {
        let names = match client
            .query(
                full_load::COPY_COLUMNS_SQL,
                &[&qualified(&table.schema, &table.table)],
            )
            .await
        {
            Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
            Err(e) => {
                let err = dms_core::pg::classify_pg_error("the source", &e);
                update(app, arn, |t| fail(t, &err.message));
                return None;
            }
        };
        columns.push(names);
    }
    let jobs = task
        .segments
        .iter()
        .enumerate()
        .filter(|(_, s)| s.state == SegmentState::Pending)
        .filter_map(|(index, s)| {
            let table = task.tables.get(s.table)?;
            Some(full_load::SegmentJob {
                index,
                schema: table.schema.clone(),
                table: table.table.clone(),
                columns: columns.get(s.table)?.clone(),
                predicate: s.predicate.clone(),
            })
        })
        .collect();
    Some((jobs, task.max_subtasks, task.replication_name()))
}

/// The `pauseTableSync` fault: no copy starts while it is set (bounded by PAUSE_LIMIT).
async fn wait_while_paused(app: &App, arn: &str) {
    let since = std::time::Instant::now();
    while since.elapsed() < PAUSE_LIMIT {
        let paused = app
            .registry
            .lock()
            .task(arn)
            .is_some_and(|t| t.pause_table_sync);
        if !paused {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A segment's outcome in its table's statistics: the table completes when all its segments are done
/// (FullLoadRows their sum); a failed segment puts it in `Table error` (sticky until a reload, as in DMS).
fn record_segment(
    app: &App,
    arn: &str,
    generation: u64,
    job: &full_load::SegmentJob,
    result: Result<u64, StepError>,
) {
    let now = now_epoch_seconds();
    if let Err(err) = &result {
        tracing::warn!(task = %arn, table = %qualified(&job.schema, &job.table), segment = job.index, error = %err, "segment copy failed");
    }
    update_load(app, arn, generation, |t| {
        let Some(segment) = t.segments.get_mut(job.index) else {
            return;
        };
        let table_index = segment.table;
        match result {
            Ok(rows) => {
                segment.state = SegmentState::Done;
                segment.rows = rows as i64;
            }
            Err(_) => segment.state = SegmentState::Failed,
        }
        let of_table = || t.segments.iter().filter(|s| s.table == table_index);
        let all_done = of_table().all(|s| s.state == SegmentState::Done);
        let rows: i64 = of_table().map(|s| s.rows).sum();
        let failed = of_table().any(|s| s.state == SegmentState::Failed);
        let Some(table) = t.tables.get_mut(table_index) else {
            return;
        };
        if table.state == table_state::ERROR {
            return;
        }
        if failed {
            table.state = table_state::ERROR;
            table.last_update = now;
        } else if all_done {
            let (ins, upd, del) = table.counters_before_load;
            table.state = table_state::COMPLETED;
            table.full_load_rows = rows;
            table.full_load_end = Some(now);
            table.counters_at_load_end = Some((ins + rows, upd, del));
            table.last_update = now;
        }
    });
}

/// After the last segment: a full-load-only task drops its slot and publication and stops; a task with
/// CDC subscribes from the slot (no copy), leaving out tables in error as DMS suspends them.
async fn finish_load(app: &Arc<App>, arn: &str, generation: u64) -> Result<(), StepError> {
    let Some(snap) = snapshot(app, arn) else {
        return Ok(());
    };
    let task = &snap.task;
    if task.load_generation != generation
        || task
            .segments
            .iter()
            .any(|s| matches!(s.state, SegmentState::Pending | SegmentState::Copying))
    {
        return Ok(());
    }
    let now = now_epoch_seconds();
    if task.migration_type == MigrationType::FullLoad {
        // https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Monitoring.html: a full-load-only task
        // stops by itself when the load is done.
        let dropped = drop_replication(app, task, &snap.source, &snap.target).await;
        update_load(app, arn, generation, |t| {
            t.load = None;
            t.full_load_finish = Some(now);
            if t.status == task_status::RUNNING && t.pending.is_none() {
                t.stop_date = Some(now);
                t.stop_reason = Some(stop_reason::FULL_LOAD_ONLY_FINISHED.to_string());
                settle(t, task_status::STOPPED);
            }
        });
        return dropped;
    }
    let name = task.replication_name();
    let errored: Vec<String> = task
        .tables
        .iter()
        .filter(|t| t.state == table_state::ERROR)
        .map(|t| qualified(&t.schema, &t.table))
        .collect();
    if !errored.is_empty() {
        let source = pg_options(&snap.source, app).connect().await?;
        exec(
            &source,
            "the source",
            &format!(
                "ALTER PUBLICATION {} DROP TABLE {}",
                quote(&name),
                errored.join(", ")
            ),
        )
        .await?;
    }
    let target = pg_options(&snap.target, app).connect().await?;
    create_subscription(
        &target,
        &snap,
        &format!("create_slot = false, slot_name = '{name}', copy_data = false"),
    )
    .await?;
    update_load(app, arn, generation, |t| {
        t.load = None;
        t.full_load_finish = Some(now);
        t.subscription_exists = true;
        t.subscription_enabled = true;
    });
    Ok(())
}

/// resume-processing: continue from where the task stopped. In CDC the subscription is enabled again. A
/// task stopped during its full load before any table finished starts its load over (a new slot and
/// snapshot: nothing of the first attempt was committed but whole segments, which DO_NOTHING keeps). Once
/// a table has finished, it copies again every table that had not (DMS reloads a partly loaded table),
/// each segment from a snapshot of its own, while CDC later starts from the slot created at the first
/// start. A task with nothing left (a full-load-only task that finished, or a start that failed) starts
/// over with a full copy, which with DO_NOTHING duplicates rows — as DMS does.
async fn resume(app: &Arc<App>, snap: &Snapshot) -> Result<(), StepError> {
    let task = &snap.task;
    let any_table_finished = task
        .tables
        .iter()
        .any(|t| t.state == table_state::COMPLETED || t.state == table_state::ERROR);
    if task.subscription_exists {
        set_enabled(app, snap, true).await?;
    } else if task.slot_exists && task.migration_type.has_full_load() && any_table_finished {
        abort_load(app, &task.arn);
        update(app, &task.arn, |t| {
            let unfinished: Vec<usize> = t
                .tables
                .iter()
                .enumerate()
                .filter(|(_, x)| x.state != table_state::COMPLETED && x.state != table_state::ERROR)
                .map(|(i, _)| i)
                .collect();
            for segment in t.segments.iter_mut() {
                if unfinished.contains(&segment.table) {
                    segment.state = SegmentState::Pending;
                    segment.rows = 0;
                }
            }
            for i in unfinished {
                if let Some(table) = t.tables.get_mut(i) {
                    table.full_load_rows = 0;
                }
            }
        });
        launch_load(app, snap, None);
    } else {
        return start(app, snap, false).await;
    }
    let now = now_epoch_seconds();
    update(app, &task.arn, |t| {
        t.start_date = Some(now);
        t.stop_date = None;
        settle(t, task_status::RUNNING);
    });
    Ok(())
}

async fn stop(app: &App, snap: &Snapshot) -> Result<(), StepError> {
    abort_load(app, &snap.task.arn);
    let result = set_enabled(app, snap, false).await;
    let now = now_epoch_seconds();
    update(app, &snap.task.arn, |t| {
        t.stop_date = Some(now);
        t.stop_reason = Some(stop_reason::NORMAL.to_string());
        settle(t, task_status::STOPPED);
    });
    result
}

async fn set_enabled(app: &App, snap: &Snapshot, enabled: bool) -> Result<(), StepError> {
    if !snap.task.subscription_exists {
        return Ok(());
    }
    let target = pg_options(&snap.target, app).connect().await?;
    let verb = if enabled { "ENABLE" } else { "DISABLE" };
    exec(
        &target,
        "the target",
        &format!(
            "ALTER SUBSCRIPTION {} {verb}",
            quote(&snap.task.replication_name())
        ),
    )
    .await?;
    update(app, &snap.task.arn, |t| t.subscription_enabled = enabled);
    Ok(())
}

/// Drops subscription, slot and publication.
async fn drop_replication(
    app: &App,
    task: &Task,
    source: &Endpoint,
    target: &Endpoint,
) -> Result<(), StepError> {
    let name = task.replication_name();
    let target = pg_options(target, app).connect().await?;
    exec(
        &target,
        "the target",
        &format!("DROP SUBSCRIPTION IF EXISTS {}", quote(&name)),
    )
    .await?;
    let source = pg_options(source, app).connect().await?;
    drop_slot(&source, &name).await?;
    exec(
        &source,
        "the source",
        &format!("DROP PUBLICATION IF EXISTS {}", quote(&name)),
    )
    .await?;
    update(app, &task.arn, |t| {
        t.slot_exists = false;
        t.subscription_exists = false;
        t.subscription_enabled = false;
    });
    Ok(())
}

/// CDC statistics of a completed table: target changes since its load ended.
fn count_cdc_changes(table: &mut TableProgress, counters: (i64, i64, i64), now: f64) {
    let Some((bi, bu, bd)) = table.counters_at_load_end else {
        return;
    };
    let (ins, upd, del) = counters;
    let changed = ((ins - bi).max(0), (upd - bu).max(0), (del - bd).max(0));
    if changed != (table.inserts, table.updates, table.deletes) {
        (table.inserts, table.updates, table.deletes) = changed;
        table.last_update = now;
    }
}

/// In CDC (the subscription exists): CDC statistics, batch-apply conflicts, latency.
async fn observe(app: &App, snap: &Snapshot) -> Result<(), StepError> {
    let task = &snap.task;
    if !task.subscription_exists {
        return Ok(());
    }
    let target = pg_options(&snap.target, app).connect().await?;
    let tables: Vec<(String, String)> = task
        .tables
        .iter()
        .map(|t| (t.schema.clone(), t.table.clone()))
        .collect();
    let counters = read_counters(&target, &tables).await?;
    let conflicts: Vec<(String, String)> = if task.batch_apply {
        let schemas: Vec<&str> = tables.iter().map(|(s, _)| s.as_str()).collect();
        let names: Vec<&str> = tables.iter().map(|(_, t)| t.as_str()).collect();
        target
            .query(BATCH_APPLY_CONFLICTS_SQL, &[&schemas, &names])
            .await
            .map_err(|e| dms_core::pg::classify_pg_error("the target", &e))?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    } else {
        Vec::new()
    };
    let now = now_epoch_seconds();
    let mut cdc_running = false;
    update(app, &task.arn, |t| {
        for table in t.tables.iter_mut() {
            if table.state != table_state::COMPLETED {
                continue;
            }
            if let Some(c) = counters
                .iter()
                .find(|c| c.0 == table.schema && c.1 == table.table)
            {
                count_cdc_changes(table, (c.2, c.3, c.4), now);
            }
            // Changes reach a table through batch apply once it is in CDC.
            if conflicts
                .iter()
                .any(|(s, n)| s == &table.schema && n == &table.table)
            {
                table.state = table_state::ERROR;
                table.last_update = now;
            }
        }
        cdc_running = t.status == task_status::RUNNING && t.migration_type.has_cdc();
    });
    if cdc_running {
        push_latency(app, snap).await?;
    }
    Ok(())
}

async fn push_latency(app: &App, snap: &Snapshot) -> Result<(), StepError> {
    let Some(cloudwatch) = &app.cloudwatch else {
        return Ok(());
    };
    let source = pg_options(&snap.source, app).connect().await?;
    let rows = source
        .query(LAG_SQL, &[&snap.task.replication_name()])
        .await
        .map_err(|e| dms_core::pg::classify_pg_error("the source", &e))?;
    // No walsender for the subscription (it is reconnecting): no sample, like a DMS instance that
    // publishes nothing while its source stream is down.
    let Some(row) = rows.first() else {
        return Ok(());
    };
    let (source_lag, target_lag): (f64, f64) = (row.get(0), row.get(1));
    latency::push(
        cloudwatch,
        &snap.instance_identifier,
        resource_id_of(&snap.task.arn),
        source_lag,
        target_lag,
    )
    .await;
    Ok(())
}

/// At shutdown: drop every subscription, slot and publication this server created, each bounded.
pub async fn cleanup_all(app: &App) {
    let tasks: Vec<String> = app
        .registry
        .lock()
        .tasks
        .iter()
        // A task on an existing slot created nothing here: the slot is the user's and stays.
        .filter(|t| (t.subscription_exists || t.ever_started) && t.slot_stream.is_none())
        .map(|t| t.arn.clone())
        .collect();
    for arn in tasks {
        abort_load(app, &arn);
        let Some(snap) = snapshot(app, &arn) else {
            continue;
        };
        let outcome = tokio::time::timeout(
            Duration::from_secs(15),
            drop_replication(app, &snap.task, &snap.source, &snap.target),
        )
        .await;
        match outcome {
            Ok(Ok(())) => {
                tracing::info!(task = %snap.task.identifier, "replication objects dropped")
            }
            Ok(Err(err)) => {
                tracing::warn!(task = %snap.task.identifier, error = %err, "cleanup failed")
            }
            Err(_) => tracing::warn!(task = %snap.task.identifier, "cleanup timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_values_are_quoted() {
        assert_eq!(conninfo_value("a b"), "'a b'");
        assert_eq!(conninfo_value(r"it's\x"), r"'it\'s\\x'");
    }

    #[test]
    fn tables_without_a_ranges_rule_are_one_segment() {
        let tables = vec![
            ("public".to_string(), "big".to_string()),
            ("public".to_string(), "small".to_string()),
        ];
        let rules = vec![full_load::RangeRule {
            schema: "public".into(),
            table: "big".into(),
            columns: vec!["id".into()],
            boundaries: vec![vec!["10".into()], vec!["20".into()]],
        }];
        let segments = plan_segments(&tables, &rules);
        let per_table: Vec<(usize, bool)> = segments
            .iter()
            .map(|s| (s.table, s.predicate.is_some()))
            .collect();
        assert_eq!(per_table, vec![(0, true), (0, true), (0, true), (1, false)]);
    }

    #[test]
    fn completed_tables_count_cdc_changes_from_the_load_end() {
        let mut table = TableProgress::new("public", "t", 0.0);
        table.counters_at_load_end = Some((100, 0, 0));
        count_cdc_changes(&mut table, (103, 2, 1), 2.0);
        assert_eq!((table.inserts, table.updates, table.deletes), (3, 2, 1));
        assert_eq!(table.last_update, 2.0);
    }
}
