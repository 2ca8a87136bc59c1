//! The replication engine: DMS task semantics on PostgreSQL logical replication.
//!
//! A task owns one publication on the source (its mapped tables), one subscription on the target and the
//! subscription's slot on the source, all named `dms_local_<task id>`. Start creates them (copy_data for a
//! full load), stop disables the subscription (the slot keeps CDC's position, so resume continues), reload
//! recreates the subscription with copy_data (DO_NOTHING: target rows are kept, so rows are duplicated or
//! the copy fails on a key, as in DMS). Every tick (≈1 s) reads pg_subscription_rel and
//! pg_stat_subscription_stats on the target to derive table and task states, and pushes CDC latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dms_core::pg::{PgConnectOptions, SslMode};
use dms_core::rules::sql_ident::quote;
use dms_core::StepError;
use tokio::task::JoinSet;

use crate::ids::{now_epoch_seconds, resource_id_of};
use crate::model::{
    stop_reason, table_state, task_status, Endpoint, MigrationType, PendingAction, TableProgress,
    Task,
};
use crate::{latency, table_mappings, App};

pub const TICK: Duration = Duration::from_secs(1);
/// A table whose copy keeps failing (sync_error_count grows) for this long shows `Table error`; shorter
/// blips (a first retry) do not.
pub const TABLE_ERROR_GRACE: Duration = Duration::from_secs(5);

const REL_STATES_SQL: &str = "
SELECT n.nspname::text, c.relname::text, sr.srsubstate::text
FROM pg_subscription s
JOIN pg_subscription_rel sr ON sr.srsubid = s.oid
JOIN pg_class c ON c.oid = sr.srrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE s.subname = $1
  AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())";
const SYNC_ERRORS_SQL: &str =
    "SELECT coalesce((SELECT sync_error_count FROM pg_stat_subscription_stats WHERE subname = $1), 0)";
const COUNTERS_SQL: &str = "
SELECT schemaname::text, relname::text, n_tup_ins, n_tup_upd, n_tup_del
FROM pg_stat_user_tables
WHERE (schemaname, relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))";
/// Mapped target tables that batch apply cannot serve: a unique index or constraint besides the primary key,
/// or a foreign key. DMS does not support batch apply on tables with a unique constraint beside the
/// primary key (a batch's net changes can move a unique value between rows), and a batch does not keep the
/// order foreign keys need (BatchApplyEnabled "can affect transactional integrity":
/// https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TaskSettings.TargetMetadata.html).
/// The model is stricter than DMS: such a table ends `Table error` as soon as its load is complete, while DMS
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
/// never logged.
const CREATE_SUBSCRIPTION_SQL: &str = "
SELECT format('CREATE SUBSCRIPTION %I CONNECTION %L PUBLICATION %I WITH (copy_data = %s, enabled = %s)',
              $1::text, $2::text, $1::text, $3::text, $4::text)";
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

/// How the target's subscription reaches the source: the source endpoint's registered credentials.
fn source_conninfo(source: &Endpoint) -> String {
    let sslmode = match source.ssl_mode.as_str() {
        "none" => "disable",
        other => other,
    };
    format!(
        "host={} port={} dbname={} user={} password={} sslmode={sslmode}",
        conninfo_value(&source.host),
        source.port,
        conninfo_value(&source.database),
        conninfo_value(&source.username),
        conninfo_value(&source.password.0)
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

async fn step(app: &App, arn: &str) {
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
        Some(PendingAction::StartReplication) => start(app, &snap, true, false).await,
        Some(PendingAction::ReloadTarget) => start(app, &snap, true, true).await,
        Some(PendingAction::ResumeProcessing) => resume(app, &snap).await,
        Some(PendingAction::Stop) => stop(app, &snap).await,
        Some(PendingAction::Fail | PendingAction::RecoverableStop) => {
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
            update(app, arn, |t| {
                t.status = task_status::FAILED.to_string();
                t.stop_reason = Some(stop_reason::FATAL_ERROR.to_string());
                t.last_failure_message = Some(err.message.clone());
                t.stop_date = Some(now_epoch_seconds());
            });
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

async fn row_count(target: &tokio_postgres::Client, schema: &str, table: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM {}", qualified(schema, table));
    match target.query_one(&sql, &[]).await {
        Ok(row) => row.get(0),
        Err(_) => 0,
    }
}

/// Creates (or recreates) publication and subscription and resets the tables' progress.
/// `copy` is false only for a CDC-only task's first start.
async fn start(app: &App, snap: &Snapshot, copy: bool, reload: bool) -> Result<(), StepError> {
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
    exec(
        &target,
        "the target",
        &format!("DROP SUBSCRIPTION IF EXISTS {}", quote(&name)),
    )
    .await?;
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
    let copy_data = copy && task.migration_type.has_full_load();
    let enabled = !(copy_data && task.pause_table_sync);
    let mut progress = Vec::new();
    let now = now_epoch_seconds();
    for (schema, table) in &tables {
        let mut p = TableProgress::new(schema, table, now);
        p.rows_before_load = row_count(&target, schema, table).await;
        p.reloaded = reload;
        if reload {
            p.state = table_state::RELOADING;
        }
        progress.push(p);
    }
    let create: String = target
        .query_one(
            CREATE_SUBSCRIPTION_SQL,
            &[
                &name,
                &source_conninfo(&snap.source),
                &copy_data.to_string(),
                &enabled.to_string(),
            ],
        )
        .await
        .map_err(|e| dms_core::pg::classify_pg_error("the target", &e))?
        .get(0);
    exec(&target, "the target", &create).await?;
    tracing::info!(task = %task.identifier, tables = tables.len(), copy_data, "replication started");
    let fresh = !task.ever_started || reload;
    update(app, &task.arn, |t| {
        t.tables = progress;
        t.ever_started = true;
        t.start_date = Some(now);
        if fresh {
            t.fresh_start_date = Some(now);
        }
        t.stop_date = None;
        t.full_load_start = copy_data.then_some(now);
        t.full_load_finish = None;
        t.subscription_exists = true;
        t.subscription_enabled = enabled;
        settle(t, task_status::RUNNING);
    });
    Ok(())
}

/// resume-processing: continue from where the task stopped. A task whose subscription is gone (a
/// full-load-only task that finished, or a start that failed) starts over with a full copy, which with
/// DO_NOTHING duplicates rows — as DMS does when it resumes such a task.
async fn resume(app: &App, snap: &Snapshot) -> Result<(), StepError> {
    if !snap.task.subscription_exists {
        return start(app, snap, true, false).await;
    }
    let wants_enabled = !(snap.task.pause_table_sync
        && snap.task.migration_type.has_full_load()
        && !snap.task.full_load_finished());
    set_enabled(app, snap, wants_enabled).await?;
    let now = now_epoch_seconds();
    update(app, &snap.task.arn, |t| {
        t.start_date = Some(now);
        t.stop_date = None;
        settle(t, task_status::RUNNING);
    });
    Ok(())
}

async fn stop(app: &App, snap: &Snapshot) -> Result<(), StepError> {
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

/// Drops subscription (and with it the slot on the source) and publication.
async fn drop_replication(
    app: &App,
    task: &Task,
    source: &Endpoint,
    target: &Endpoint,
) -> Result<(), StepError> {
    let name = quote(&task.replication_name());
    let target = pg_options(target, app).connect().await?;
    exec(
        &target,
        "the target",
        &format!("DROP SUBSCRIPTION IF EXISTS {name}"),
    )
    .await?;
    let source = pg_options(source, app).connect().await?;
    exec(
        &source,
        "the source",
        &format!("DROP PUBLICATION IF EXISTS {name}"),
    )
    .await?;
    update(app, &task.arn, |t| {
        t.subscription_exists = false;
        t.subscription_enabled = false;
    });
    Ok(())
}

struct Observed {
    rel_states: Vec<(String, String, String)>,
    sync_errors: i64,
    counters: Vec<(String, String, i64, i64, i64)>,
    /// With batch apply on: the tables `BATCH_APPLY_CONFLICTS_SQL` names.
    batch_apply_conflicts: Vec<(String, String)>,
}

async fn read_target(target: &tokio_postgres::Client, task: &Task) -> Result<Observed, StepError> {
    let name = task.replication_name();
    let classify = |e: tokio_postgres::Error| dms_core::pg::classify_pg_error("the target", &e);
    let rel_states = target
        .query(REL_STATES_SQL, &[&name])
        .await
        .map_err(classify)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let sync_errors: i64 = target
        .query_one(SYNC_ERRORS_SQL, &[&name])
        .await
        .map_err(classify)?
        .get(0);
    let schemas: Vec<String> = task.tables.iter().map(|t| t.schema.clone()).collect();
    let names: Vec<String> = task.tables.iter().map(|t| t.table.clone()).collect();
    let counters = target
        .query(COUNTERS_SQL, &[&schemas, &names])
        .await
        .map_err(classify)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let batch_apply_conflicts = if task.batch_apply {
        target
            .query(BATCH_APPLY_CONFLICTS_SQL, &[&schemas, &names])
            .await
            .map_err(classify)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    } else {
        Vec::new()
    };
    Ok(Observed {
        rel_states,
        sync_errors,
        counters,
        batch_apply_conflicts,
    })
}

/// The new progress of one table from its pg_subscription_rel state (i, d, f, s, r).
/// `Table error` is sticky until a reload, as in DMS.
fn next_table_state(
    table: &mut TableProgress,
    rel_state: &str,
    sync_errors: i64,
    now: f64,
    counters: Option<(i64, i64, i64)>,
    completed_rows: Option<i64>,
) {
    if table.state == table_state::ERROR {
        return;
    }
    let loading = if table.reloaded {
        table_state::RELOADING
    } else {
        table_state::FULL_LOAD
    };
    match rel_state {
        "r" => {
            if table.state != table_state::COMPLETED {
                table.state = table_state::COMPLETED;
                table.full_load_end = Some(now);
                table.full_load_start.get_or_insert(now);
                table.full_load_rows = completed_rows.unwrap_or(0);
                table.counters_at_load_end = counters;
                table.data_sync_since = None;
                table.last_update = now;
            } else if let (Some((ins, upd, del)), Some((bi, bu, bd))) =
                (counters, table.counters_at_load_end)
            {
                let changed = (ins - bi, upd - bu, del - bd);
                if changed != (table.inserts, table.updates, table.deletes) {
                    (table.inserts, table.updates, table.deletes) = changed;
                    table.last_update = now;
                }
            }
        }
        "d" | "f" | "s" => {
            table.full_load_start.get_or_insert(now);
            if table.state != loading {
                table.state = loading;
                table.last_update = now;
            }
            let (since, errors_then) = *table
                .data_sync_since
                .get_or_insert((Instant::now(), sync_errors));
            if sync_errors > errors_then && since.elapsed() >= TABLE_ERROR_GRACE {
                table.state = table_state::ERROR;
                table.last_update = now;
            }
        }
        _ => {}
    }
}

async fn observe(app: &App, snap: &Snapshot) -> Result<(), StepError> {
    let task = &snap.task;
    if !task.subscription_exists {
        return Ok(());
    }
    let load_running = task.migration_type.has_full_load() && !task.full_load_finished();
    let wants_enabled = !(task.pause_table_sync && load_running);
    if wants_enabled != task.subscription_enabled {
        set_enabled(app, snap, wants_enabled).await?;
    }
    let target = pg_options(&snap.target, app).connect().await?;
    let observed = read_target(&target, task).await?;
    // Rows of tables that just completed: counted once, at completion (count(*) is exact; the statistics
    // collector may lag behind the copy).
    let mut completed_rows = Vec::new();
    for (schema, table, state) in &observed.rel_states {
        let was_completed = task
            .tables
            .iter()
            .any(|t| &t.schema == schema && &t.table == table && t.state == table_state::COMPLETED);
        if state == "r" && !was_completed {
            completed_rows.push((
                schema.clone(),
                table.clone(),
                row_count(&target, schema, table).await,
            ));
        }
    }
    let now = now_epoch_seconds();
    let mut finished_full_load_only = false;
    let mut cdc_running = false;
    update(app, &task.arn, |t| {
        for table in t.tables.iter_mut() {
            let Some((_, _, rel_state)) = observed
                .rel_states
                .iter()
                .find(|(s, n, _)| s == &table.schema && n == &table.table)
            else {
                continue;
            };
            let counters = observed
                .counters
                .iter()
                .find(|c| c.0 == table.schema && c.1 == table.table)
                .map(|c| (c.2, c.3, c.4));
            let rows = completed_rows
                .iter()
                .find(|c| c.0 == table.schema && c.1 == table.table)
                .map(|c| c.2 - table.rows_before_load);
            next_table_state(table, rel_state, observed.sync_errors, now, counters, rows);
            // Changes reach a table through batch apply once its load is complete.
            if table.state == table_state::COMPLETED
                && observed
                    .batch_apply_conflicts
                    .iter()
                    .any(|(s, n)| s == &table.schema && n == &table.table)
            {
                table.state = table_state::ERROR;
                table.last_update = now;
            }
        }
        let all_done = !t.tables.is_empty()
            && t.tables
                .iter()
                .all(|x| x.state == table_state::COMPLETED || x.state == table_state::ERROR);
        if t.migration_type.has_full_load() && !t.full_load_finished() && all_done {
            t.full_load_finish = Some(now);
            if t.migration_type == MigrationType::FullLoad
                && t.status == task_status::RUNNING
                && t.pending.is_none()
            {
                finished_full_load_only = true;
            }
        }
        cdc_running = t.status == task_status::RUNNING
            && t.migration_type.has_cdc()
            && (t.migration_type == MigrationType::Cdc || t.full_load_finished());
    });
    if finished_full_load_only {
        // https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Monitoring.html: a full-load-only task
        // stops by itself when the load is done.
        let drop_result = drop_replication(app, task, &snap.source, &snap.target).await;
        update(app, &task.arn, |t| {
            t.stop_date = Some(now);
            t.stop_reason = Some(stop_reason::FULL_LOAD_ONLY_FINISHED.to_string());
            settle(t, task_status::STOPPED);
        });
        drop_result?;
    }
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
    fn a_table_errors_only_after_the_grace_with_growing_sync_errors() {
        let mut table = TableProgress::new("public", "bad", 0.0);
        next_table_state(&mut table, "d", 3, 1.0, None, None);
        assert_eq!(table.state, table_state::FULL_LOAD);
        table.data_sync_since = Some((Instant::now() - TABLE_ERROR_GRACE, 3));
        next_table_state(&mut table, "d", 3, 2.0, None, None);
        assert_eq!(table.state, table_state::FULL_LOAD, "no new errors");
        next_table_state(&mut table, "d", 4, 3.0, None, None);
        assert_eq!(table.state, table_state::ERROR);
        next_table_state(&mut table, "r", 4, 4.0, None, Some(10));
        assert_eq!(table.state, table_state::ERROR, "sticky until reload");
    }

    #[test]
    fn completed_tables_count_cdc_changes_from_the_load_end() {
        let mut table = TableProgress::new("public", "t", 0.0);
        next_table_state(&mut table, "r", 0, 1.0, Some((100, 0, 0)), Some(100));
        assert_eq!(
            (table.state, table.full_load_rows),
            (table_state::COMPLETED, 100)
        );
        next_table_state(&mut table, "r", 0, 2.0, Some((103, 2, 1)), None);
        assert_eq!((table.inserts, table.updates, table.deletes), (3, 2, 1));
    }
}
