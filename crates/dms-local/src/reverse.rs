//! A CDC-only task on an existing `test_decoding` slot, from a native CDC start point: the way back's
//! reverse task (docs/fallback.md). A native subscription cannot read a `test_decoding` slot, so this
//! engine reads it over SQL and applies the changes itself.
//!
//! DMS with `SlotName` set "verifies that the specified logical replication slot exists before starting
//! the CDC load task. It also verifies that the task was created with a valid setting of
//! CdcStartPosition. If the specified slot doesn't exist or the task doesn't have a valid
//! CdcStartPosition setting, DMS raises an error"
//! (https://docs.aws.amazon.com/dms/latest/APIReference/API_PostgreSQLSettings.html, `SlotName`;
//! https://docs.aws.amazon.com/dms/latest/APIReference/API_StartReplicationTask.html, `CdcStartPosition`;
//! "Using native CDC start points" in
//! https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Source.PostgreSQL.html). The checks below make
//! the task `failed` before it runs, as a task that cannot start does (README.md says which checks DMS
//! documents and which are this model's reading).
//!
//! Each tick, while the task runs: peek the slot in bounded batches (`upto_nchanges`: PostgreSQL returns
//! whole transactions), apply every decoded transaction that commits after the start position to the
//! target in one transaction with `session_replication_role = replica` (the reverse target endpoint's
//! after-connect script), then advance the slot to the last applied commit. The slot moves only after the
//! target committed, so a crash replays rather than loses: an INSERT replayed onto a row already there
//! updates it (`ON CONFLICT` on the target's primary key), UPDATE and DELETE by primary key are
//! idempotent. Stop reads nothing more (slot and position kept); resume continues from the slot.
//! Decoding: https://www.postgresql.org/docs/current/test-decoding.html,
//! https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-REPLICATION.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use dms_core::rules::sql_ident::quote;
use dms_core::StepError;
use serde_json::Value as Json;

use crate::ids::{now_epoch_seconds, resource_id_of};
use crate::model::{
    stop_reason, table_state, task_status, MigrationType, PendingAction, TableProgress, Task,
};
use crate::protocol::DmsError;
use crate::replication::{mapped_tables, pg_options, qualified, settle, update, Snapshot};
use crate::{latency, App};

/// What a `start-replication` with a slot asked for; `start_lsn` is resolved when the task starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotStream {
    pub slot: String,
    /// `CdcStartPosition` as given (checked when the task starts, as DMS does).
    pub start_position: Option<String>,
    /// The position changes are applied after: the start position, or the slot's confirmed_flush_lsn.
    pub start_lsn: Option<u64>,
}

/// Rows asked of the slot per read; PostgreSQL stops after the transaction that reaches it.
const BATCH: i32 = 1000;
/// Reads per tick, so a stop is served within a few batches.
const READS_PER_TICK: usize = 10;

const SLOT_SQL: &str = "
SELECT plugin::text, slot_type::text, database::text, confirmed_flush_lsn::text,
       pg_current_wal_insert_lsn()::text
FROM pg_replication_slots WHERE slot_name = $1";
/// The COMMIT line's `(at <timestamp>)` (include-timestamp) turned into its age in seconds by PostgreSQL.
const PEEK_SQL: &str = "
SELECT lsn::text, data,
       CASE WHEN data LIKE 'COMMIT%' THEN
         EXTRACT(EPOCH FROM clock_timestamp() - substring(data FROM '\\(at (.*)\\)$')::timestamptz)::float8
       END
FROM pg_logical_slot_peek_changes($1, NULL, $2, 'include-timestamp', 'on')";
/// The partitions of the mapped partitioned tables, with their root: test_decoding names a change by
/// the partition it landed in, the mappings (and DMS's table statistics) by the root.
const PARTITIONS_SQL: &str = "
SELECT n.nspname::text, c.relname::text, rn.nspname::text, r.relname::text
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class r ON r.oid = pg_partition_root(c.oid)
JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE c.relispartition
  AND (rn.nspname, r.relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))";
const PRIMARY_KEY_SQL: &str = "
SELECT a.attname::text
FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indrelid = to_regclass($1) AND i.indisprimary
ORDER BY array_position(i.indkey::int2[], a.attnum)";

/// On StartReplicationTask: the slot stream this start asks for, or a refusal. `CdcStartTime` and
/// `CdcStopPosition` are not modelled; `CdcStartPosition` only for a `start-replication` of a CDC-only
/// task whose source endpoint names a slot (anything else would be silently ignored, so it is refused).
pub fn requested(
    task: &Task,
    start_type: &str,
    slot: Option<String>,
    input: &Json,
) -> Result<Option<SlotStream>, DmsError> {
    for unmodelled in ["CdcStartTime", "CdcStopPosition"] {
        if !input[unmodelled].is_null() {
            return Err(DmsError::invalid_parameter(format!(
                "dms-local does not model {unmodelled} (see crates/dms-local/README.md)"
            )));
        }
    }
    let position = input["CdcStartPosition"].as_str().map(str::to_string);
    match slot {
        Some(slot)
            if task.migration_type == MigrationType::Cdc && start_type == "start-replication" =>
        {
            Ok(Some(SlotStream {
                slot,
                start_position: position,
                start_lsn: None,
            }))
        }
        _ if position.is_some() => Err(DmsError::invalid_parameter(
            "dms-local models CdcStartPosition only for a start-replication of a cdc task whose source endpoint has PostgreSQLSettings.SlotName (see crates/dms-local/README.md)",
        )),
        _ => Ok(None),
    }
}

/// `XXX/XXXXXXXX` (two hexadecimal halves of up to 8 digits, PostgreSQL's pg_lsn text) as a number.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.split_once('/')?;
    let half = |h: &str| {
        (!h.is_empty() && h.len() <= 8 && h.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| u64::from_str_radix(h, 16).ok())
            .flatten()
    };
    Some((half(high)? << 32) | half(low)?)
}

pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// One engine step of a slot-stream task: the pending action, or a round of reading while it runs.
pub(crate) async fn step(
    app: &App,
    snap: &Snapshot,
    pending: Option<PendingAction>,
) -> Result<(), StepError> {
    let task = &snap.task;
    match pending {
        Some(PendingAction::StartReplication) => start(app, snap).await,
        Some(PendingAction::ResumeProcessing) => resume(app, snap).await,
        Some(PendingAction::Stop) => {
            let now = now_epoch_seconds();
            update(app, &task.arn, |t| {
                t.stop_date = Some(now);
                t.stop_reason = Some(stop_reason::NORMAL.to_string());
                settle(t, task_status::STOPPED);
            });
            Ok(())
        }
        // Already reported failed or stopped by the fault; nothing is held open between ticks.
        Some(PendingAction::Fail | PendingAction::RecoverableStop) => Ok(()),
        Some(PendingAction::Modified(status)) => {
            update(app, &task.arn, |t| t.status = status);
            Ok(())
        }
        Some(PendingAction::ReloadTarget) => Ok(()),
        None => {
            if let Some(at) = task.restart_at {
                if Instant::now() < at {
                    return Ok(());
                }
                // DMS's own restart after a recoverable error: the task resumes where it stopped.
                update(app, &task.arn, |t| t.restart_at = None);
                return resume(app, snap).await;
            }
            if task.status == task_status::RUNNING {
                pump(app, snap).await
            } else {
                Ok(())
            }
        }
    }
}

struct SlotState {
    confirmed_flush: u64,
    current: u64,
}

/// The slot as DMS checks it before a native-start CDC load: it exists, is a logical `test_decoding`
/// slot of the endpoint's database. The Err is the task's failure message.
async fn check_slot(
    source: &tokio_postgres::Client,
    slot: &str,
    database: &str,
) -> Result<SlotState, StepError> {
    let fail = |message: String| StepError::new(dms_core::ErrorName::PostgresQueryFailed, message);
    let row = source
        .query_opt(SLOT_SQL, &[&slot])
        .await
        .map_err(|e| dms_core::pg::classify_pg_error("the source", &e))?
        .ok_or_else(|| {
            fail(format!(
                "Failed to start the CDC load: the replication slot '{slot}' named by SlotName does not exist on the source"
            ))
        })?;
    let (plugin, kind, slot_database): (Option<String>, String, Option<String>) =
        (row.get(0), row.get(1), row.get(2));
    if kind != "logical" || plugin.as_deref() != Some(dms_core::rules::way_back::PLUGIN) {
        return Err(fail(format!(
            "Failed to start the CDC load: the replication slot '{slot}' is a {kind} slot of plugin {}, not a logical slot of test_decoding (PluginName test-decoding)",
            plugin.unwrap_or_else(|| "none".into())
        )));
    }
    if slot_database.as_deref() != Some(database) {
        return Err(fail(format!(
            "Failed to start the CDC load: the replication slot '{slot}' belongs to database {}, not to the endpoint's database {database}",
            slot_database.unwrap_or_default()
        )));
    }
    let lsn = |i: usize| {
        row.get::<_, Option<String>>(i)
            .as_deref()
            .and_then(parse_lsn)
            .unwrap_or(0)
    };
    Ok(SlotState {
        confirmed_flush: lsn(3),
        current: lsn(4),
    })
}

async fn start(app: &App, snap: &Snapshot) -> Result<(), StepError> {
    let task = &snap.task;
    let Some(stream) = &task.slot_stream else {
        return Ok(());
    };
    let fail = |message: String| StepError::new(dms_core::ErrorName::PostgresQueryFailed, message);
    let source = pg_options(&snap.source, app).connect().await?;
    let slot = check_slot(&source, &stream.slot, &snap.source.database).await?;
    let start_lsn = match &stream.start_position {
        None => slot.confirmed_flush,
        Some(text) => {
            let lsn = parse_lsn(text).ok_or_else(|| {
                fail(format!(
                    "Failed to start the CDC load: CdcStartPosition '{text}' is not a PostgreSQL LSN (XXX/XXXXXXXX)"
                ))
            })?;
            if lsn < slot.confirmed_flush {
                return Err(fail(format!(
                    "Failed to start the CDC load: CdcStartPosition {text} is before the confirmed position {} of replication slot '{}': the changes before it are no longer in the slot",
                    format_lsn(slot.confirmed_flush),
                    stream.slot
                )));
            }
            if lsn > slot.current {
                return Err(fail(format!(
                    "Failed to start the CDC load: CdcStartPosition {text} is ahead of the source's current WAL position {}",
                    format_lsn(slot.current)
                )));
            }
            lsn
        }
    };
    let tables = mapped_tables(&source, task).await?;
    if tables.is_empty() {
        return Err(fail(crate::replication::NO_TABLES_MESSAGE.to_string()));
    }
    let target = pg_options(&snap.target, app).connect().await?;
    for (schema, table) in &tables {
        let exists: bool = target
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&qualified(schema, table)],
            )
            .await
            .map_err(|e| dms_core::pg::classify_pg_error("the target", &e))?
            .get(0);
        if !exists {
            return Err(fail(format!(
                "Failed to start the CDC load: table {} does not exist on the target (a CDC-only task creates no table)",
                qualified(schema, table)
            )));
        }
    }
    let now = now_epoch_seconds();
    let progress: Vec<TableProgress> = tables
        .iter()
        .map(|(schema, table)| {
            let mut p = TableProgress::new(schema, table, now);
            // As a CDC-only task's tables are reported by the subscription engine: no load, completed.
            p.state = table_state::COMPLETED;
            p
        })
        .collect();
    tracing::info!(task = %task.identifier, slot = %stream.slot, start = %format_lsn(start_lsn), tables = tables.len(), "slot stream started");
    update(app, &task.arn, |t| {
        t.tables = progress;
        t.ever_started = true;
        t.start_date = Some(now);
        t.fresh_start_date = Some(now);
        t.stop_date = None;
        if let Some(s) = t.slot_stream.as_mut() {
            s.start_lsn = Some(start_lsn);
        }
        settle(t, task_status::RUNNING);
    });
    Ok(())
}

/// resume-processing: the slot must still be there (its position is where the task stopped).
async fn resume(app: &App, snap: &Snapshot) -> Result<(), StepError> {
    let Some(stream) = &snap.task.slot_stream else {
        return Ok(());
    };
    if stream.start_lsn.is_none() {
        // The first start failed before it resolved a position: resume starts it as DMS would.
        return start(app, snap).await;
    }
    let source = pg_options(&snap.source, app).connect().await?;
    check_slot(&source, &stream.slot, &snap.source.database).await?;
    let now = now_epoch_seconds();
    update(app, &snap.task.arn, |t| {
        t.start_date = Some(now);
        t.stop_date = None;
        settle(t, task_status::RUNNING);
    });
    Ok(())
}

/// One decoded transaction: its changes, its commit position and the commit's age when read.
#[derive(Debug, Default)]
struct Transaction {
    changes: Vec<Change>,
    commit_lsn: u64,
    age_seconds: f64,
}

/// Reads and applies what the slot holds, a bounded number of batches.
async fn pump(app: &App, snap: &Snapshot) -> Result<(), StepError> {
    let task = &snap.task;
    let Some(stream) = &task.slot_stream else {
        return Ok(());
    };
    let start_lsn = stream.start_lsn.unwrap_or(0);
    let mapped: Vec<(String, String)> = task
        .tables
        .iter()
        .map(|t| (t.schema.clone(), t.table.clone()))
        .collect();
    let source = pg_options(&snap.source, app).connect().await?;
    let target = pg_options(&snap.target, app).connect().await?;
    let on_target = |e: tokio_postgres::Error| dms_core::pg::classify_pg_error("the target", &e);
    // The reverse target endpoint's AfterConnectScript: the target's triggers and foreign keys do not
    // act on replayed rows (https://www.postgresql.org/docs/current/runtime-config-client.html).
    target
        .batch_execute("SET session_replication_role = replica")
        .await
        .map_err(on_target)?;
    let mut keys: HashMap<(String, String), Vec<String>> = HashMap::new();
    for (schema, table) in &mapped {
        let columns = target
            .query(PRIMARY_KEY_SQL, &[&qualified(schema, table)])
            .await
            .map_err(on_target)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        keys.insert((schema.clone(), table.clone()), columns);
    }
    let (schemas, names): (Vec<String>, Vec<String>) = mapped.iter().cloned().unzip();
    let roots: HashMap<(String, String), (String, String)> = source
        .query(PARTITIONS_SQL, &[&schemas, &names])
        .await
        .map_err(|e| dms_core::pg::classify_pg_error("the source", &e))?
        .iter()
        .map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3))))
        .collect();
    let mut latency = (0.0, 0.0);
    for _ in 0..READS_PER_TICK {
        let rows = source
            .query(PEEK_SQL, &[&stream.slot, &BATCH])
            .await
            .map_err(|e| dms_core::pg::classify_pg_error("reading the source's slot", &e))?;
        let read = rows.len();
        let read_at = Instant::now();
        let mut transactions = Vec::new();
        let mut current = Transaction::default();
        for row in &rows {
            let (lsn, data, age): (String, String, Option<f64>) =
                (row.get(0), row.get(1), row.get(2));
            match parse_line(&data).map_err(|e| {
                StepError::new(
                    dms_core::ErrorName::PostgresQueryFailed,
                    format!("cannot read a change of the slot ({e}): {data}"),
                )
            })? {
                Line::Begin => current = Transaction::default(),
                Line::Commit => {
                    current.commit_lsn = parse_lsn(&lsn).unwrap_or(0);
                    current.age_seconds = age.unwrap_or(0.0).max(0.0);
                    transactions.push(std::mem::take(&mut current));
                }
                Line::Change(mut change) => {
                    // Applied through the root on the target, which routes the row to its partition.
                    if let Some((schema, table)) =
                        roots.get(&(change.schema.clone(), change.table.clone()))
                    {
                        change.schema = schema.clone();
                        change.table = table.clone();
                    }
                    if mapped.contains(&(change.schema.clone(), change.table.clone())) {
                        current.changes.push(change);
                    }
                }
                Line::Other => {}
            }
        }
        let mut applied_to = None;
        let mut outcome = Ok(());
        for txn in &transactions {
            if txn.commit_lsn > start_lsn && !txn.changes.is_empty() {
                if let Err(e) = apply(&target, txn, &keys).await {
                    outcome = Err(e);
                    break;
                }
                count(app, &task.arn, &txn.changes);
                latency = (
                    txn.age_seconds,
                    txn.age_seconds + read_at.elapsed().as_secs_f64(),
                );
            }
            applied_to = Some(txn.commit_lsn);
        }
        // Only after the target committed: a crash before this replays, never loses.
        if let Some(lsn) = applied_to {
            source
                .query(
                    "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)",
                    &[&stream.slot, &format_lsn(lsn)],
                )
                .await
                .map_err(|e| dms_core::pg::classify_pg_error("advancing the source's slot", &e))?;
        }
        outcome?;
        if read < BATCH as usize {
            // Caught up: nothing waits in the slot.
            if transactions.is_empty() {
                latency = (0.0, 0.0);
            }
            break;
        }
    }
    if let Some(cloudwatch) = &app.cloudwatch {
        latency::push(
            cloudwatch,
            &snap.instance_identifier,
            resource_id_of(&task.arn),
            latency.0,
            latency.1,
        )
        .await;
    }
    Ok(())
}

fn count(app: &App, arn: &str, changes: &[Change]) {
    let now = now_epoch_seconds();
    update(app, arn, |t| {
        for change in changes {
            if let Some(p) = t
                .tables
                .iter_mut()
                .find(|p| p.schema == change.schema && p.table == change.table)
            {
                match change.kind {
                    Kind::Insert => p.inserts += 1,
                    Kind::Update => p.updates += 1,
                    Kind::Delete => p.deletes += 1,
                    Kind::Truncate => {}
                }
                p.last_update = now;
            }
        }
    });
}

/// One source transaction as one target transaction.
async fn apply(
    target: &tokio_postgres::Client,
    txn: &Transaction,
    keys: &HashMap<(String, String), Vec<String>>,
) -> Result<(), StepError> {
    let mut sql = String::from("BEGIN;\n");
    for change in &txn.changes {
        let key = keys
            .get(&(change.schema.clone(), change.table.clone()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        match statement(change, key) {
            Ok(statement) => {
                sql.push_str(&statement);
                sql.push_str(";\n");
            }
            Err(why) => tracing::warn!(
                table = %qualified(&change.schema, &change.table),
                "change not applied: {why}"
            ),
        }
    }
    sql.push_str("COMMIT;");
    let timeout = Duration::from_secs(60);
    let result = tokio::time::timeout(timeout, target.batch_execute(&sql)).await;
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            let _ = target.batch_execute("ROLLBACK").await;
            Err(dms_core::pg::classify_pg_error(
                "applying a change to the target",
                &e,
            ))
        }
        Err(_) => Err(StepError::new(
            dms_core::ErrorName::PostgresQueryFailed,
            "applying a transaction to the target took more than 60 s",
        )),
    }
}

/// The SQL that applies one change by the target table's primary key `key`. Err: why it cannot be
/// applied (logged and skipped, as DMS logs an apply error and goes on under its default error policy).
fn statement(change: &Change, key: &[String]) -> Result<String, String> {
    let table = qualified(&change.schema, &change.table);
    let sql_value = |v: &Value| match v {
        Value::Null => "NULL".to_string(),
        Value::Literal(l) => l.clone(),
        Value::UnchangedToast => String::new(),
    };
    // The key's values: from the old key when the decoder gave one (the key changed, or REPLICA
    // IDENTITY FULL), else from the new tuple.
    let key_condition = || -> Result<String, String> {
        if key.is_empty() {
            return Err("the target table has no primary key".into());
        }
        let mut parts = Vec::new();
        for column in key {
            let value = change
                .old_key
                .iter()
                .chain(change.new_tuple.iter())
                .find(|c| &c.name == column)
                .map(|c| &c.value)
                .ok_or_else(|| format!("the change carries no value for key column {column}"))?;
            match value {
                Value::Literal(l) => parts.push(format!("{} = {l}", quote(column))),
                _ => return Err(format!("key column {column} has no value")),
            }
        }
        Ok(parts.join(" AND "))
    };
    let present: Vec<&Column> = change
        .new_tuple
        .iter()
        .filter(|c| c.value != Value::UnchangedToast)
        .collect();
    match change.kind {
        Kind::Insert => {
            if present.is_empty() {
                return Err("an INSERT without tuple data".into());
            }
            let names: Vec<String> = present.iter().map(|c| quote(&c.name)).collect();
            let values: Vec<String> = present.iter().map(|c| sql_value(&c.value)).collect();
            let mut sql = format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                names.join(", "),
                values.join(", ")
            );
            // A replay after a crash between the target's commit and the slot's advance finds the row:
            // it is updated to the decoded values instead of failing the transaction.
            if !key.is_empty() && key.iter().all(|k| present.iter().any(|c| &c.name == k)) {
                let keys: Vec<String> = key.iter().map(|k| quote(k)).collect();
                let sets: Vec<String> = present
                    .iter()
                    .filter(|c| !key.contains(&c.name))
                    .map(|c| format!("{0} = EXCLUDED.{0}", quote(&c.name)))
                    .collect();
                if sets.is_empty() {
                    sql.push_str(&format!(" ON CONFLICT ({}) DO NOTHING", keys.join(", ")));
                } else {
                    sql.push_str(&format!(
                        " ON CONFLICT ({}) DO UPDATE SET {}",
                        keys.join(", "),
                        sets.join(", ")
                    ));
                }
            }
            Ok(sql)
        }
        Kind::Update => {
            let condition = key_condition()?;
            if present.is_empty() {
                return Err("an UPDATE without tuple data".into());
            }
            let sets: Vec<String> = present
                .iter()
                .map(|c| format!("{} = {}", quote(&c.name), sql_value(&c.value)))
                .collect();
            Ok(format!(
                "UPDATE {table} SET {} WHERE {condition}",
                sets.join(", ")
            ))
        }
        Kind::Delete => Ok(format!("DELETE FROM {table} WHERE {}", key_condition()?)),
        Kind::Truncate => Err("TRUNCATE is not replicated by this model".into()),
    }
}

// ---------------------------------------------------------------------------------------------------
// test_decoding's text output (contrib/test_decoding/test_decoding.c): `BEGIN <xid>`,
// `COMMIT <xid> (at <timestamp>)`, and per change
// `table <schema>.<table>: INSERT|UPDATE|DELETE|TRUNCATE: ...` where identifiers are quoted only when
// needed (quote_identifier), each column is ` <name>[<type>]:<value>`, the value `null`,
// `unchanged-toast-datum`, a bare number / `true` / `false` / `B'0101'`, or a quoted literal with `'`
// doubled. UPDATE may carry ` old-key: <columns> new-tuple: <columns>`; DELETE carries the old key.

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    UnchangedToast,
    /// A SQL literal, ready to put in a statement.
    Literal(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub type_name: String,
    pub value: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Insert,
    Update,
    Delete,
    Truncate,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub schema: String,
    pub table: String,
    pub kind: Kind,
    pub old_key: Vec<Column>,
    pub new_tuple: Vec<Column>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Begin,
    Commit,
    Change(Change),
    /// Anything else test_decoding may print (a logical message): not a row change.
    Other,
}

pub fn parse_line(data: &str) -> Result<Line, String> {
    if data == "BEGIN" || data.starts_with("BEGIN ") {
        return Ok(Line::Begin);
    }
    if data == "COMMIT" || data.starts_with("COMMIT ") {
        return Ok(Line::Commit);
    }
    let Some(rest) = data.strip_prefix("table ") else {
        return Ok(Line::Other);
    };
    let (schema, rest) = identifier(rest)?;
    let rest = rest.strip_prefix('.').ok_or("no '.' after the schema")?;
    let (table, rest) = identifier(rest)?;
    let rest = rest.strip_prefix(": ").ok_or("no ': ' after the table")?;
    let (kind, rest) = if let Some(r) = rest.strip_prefix("INSERT:") {
        (Kind::Insert, r)
    } else if let Some(r) = rest.strip_prefix("UPDATE:") {
        (Kind::Update, r)
    } else if let Some(r) = rest.strip_prefix("DELETE:") {
        (Kind::Delete, r)
    } else if rest.starts_with("TRUNCATE:") {
        return Ok(Line::Change(Change {
            schema,
            table,
            kind: Kind::Truncate,
            old_key: Vec::new(),
            new_tuple: Vec::new(),
        }));
    } else {
        return Err(format!("unknown change kind in {rest:?}"));
    };
    let mut change = Change {
        schema,
        table,
        kind,
        old_key: Vec::new(),
        new_tuple: Vec::new(),
    };
    if rest == " (no-tuple-data)" {
        return Ok(Line::Change(change));
    }
    match kind {
        Kind::Delete => change.old_key = columns(rest)?.0,
        _ => {
            let mut rest = rest;
            if let Some(after) = rest.strip_prefix(" old-key:") {
                let (old, left) = columns(after)?;
                change.old_key = old;
                rest = left
                    .strip_prefix(" new-tuple:")
                    .ok_or("old-key without new-tuple")?;
            }
            if rest != " (no-tuple-data)" {
                let (new, left) = columns(rest)?;
                if !left.is_empty() {
                    return Err(format!("unexpected text after the tuple: {left:?}"));
                }
                change.new_tuple = new;
            }
        }
    }
    Ok(Line::Change(change))
}

/// An identifier as quote_identifier prints it: bare (lowercase letters, digits, `_`) or in double
/// quotes with `"` doubled.
fn identifier(text: &str) -> Result<(String, &str), String> {
    if let Some(body) = text.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = body.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if matches!(chars.peek(), Some((_, '"'))) {
                    chars.next();
                    name.push('"');
                } else {
                    return Ok((name, &body[i + 1..]));
                }
            } else {
                name.push(c);
            }
        }
        return Err("an unterminated quoted identifier".into());
    }
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .unwrap_or(text.len());
    if end == 0 {
        return Err(format!("no identifier at {text:?}"));
    }
    Ok((text[..end].to_string(), &text[end..]))
}

/// ` name[type]:value` repeated; stops at the end or before ` new-tuple:` (never a bare column name:
/// quote_identifier quotes a name with `-`).
fn columns(mut text: &str) -> Result<(Vec<Column>, &str), String> {
    let mut out = Vec::new();
    while !text.is_empty() && !text.starts_with(" new-tuple:") {
        let rest = text.strip_prefix(' ').ok_or("no space before a column")?;
        let (name, rest) = identifier(rest)?;
        let rest = rest.strip_prefix('[').ok_or("no '[' after a column name")?;
        let end = rest.find("]:").ok_or("no ']:' after a column type")?;
        let type_name = rest[..end].to_string();
        let rest = &rest[end + 2..];
        let (value, rest) = value(rest)?;
        out.push(Column {
            name,
            type_name,
            value,
        });
        text = rest;
    }
    Ok((out, text))
}

fn value(text: &str) -> Result<(Value, &str), String> {
    if text.starts_with('\'') || text.starts_with("B'") {
        let open = text.find('\'').unwrap_or(0);
        let bytes = text.as_bytes();
        let mut i = open + 1;
        while i < bytes.len() {
            if bytes[i] == b'\'' {
                if bytes.get(i + 1) == Some(&b'\'') {
                    i += 2;
                    continue;
                }
                return Ok((Value::Literal(text[..=i].to_string()), &text[i + 1..]));
            }
            i += 1;
        }
        return Err("an unterminated quoted value".into());
    }
    let end = text.find(' ').unwrap_or(text.len());
    let token = &text[..end];
    let value = match token {
        "null" => Value::Null,
        "unchanged-toast-datum" => Value::UnchangedToast,
        "true" | "false" => Value::Literal(token.to_string()),
        // Numeric and float special values are printed bare, which SQL would read as identifiers.
        "NaN" | "Infinity" | "-Infinity" => Value::Literal(format!("'{token}'")),
        _ if !token.is_empty()
            && token
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E')) =>
        {
            Value::Literal(token.to_string())
        }
        _ => return Err(format!("an unexpected bare value {token:?}")),
    };
    Ok((value, &text[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Value {
        Value::Literal(s.to_string())
    }

    fn col(name: &str, type_name: &str, value: Value) -> Column {
        Column {
            name: name.into(),
            type_name: type_name.into(),
            value,
        }
    }

    fn change(line: &str) -> Change {
        match parse_line(line) {
            Ok(Line::Change(c)) => c,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn begin_commit_and_other_lines() {
        assert_eq!(parse_line("BEGIN 741"), Ok(Line::Begin));
        assert_eq!(
            parse_line("COMMIT 741 (at 2026-12-07 15:49:21.123456+00)"),
            Ok(Line::Commit)
        );
        assert_eq!(parse_line("COMMIT"), Ok(Line::Commit));
        assert_eq!(
            parse_line("message: transactional: 1 prefix: p, sz: 1 content:x"),
            Ok(Line::Other)
        );
    }

    #[test]
    fn insert_with_every_value_shape() {
        let c = change(
            "table public.items: INSERT: id[integer]:1 note[text]:'it''s ''quoted''' gone[text]:null \
             price[numeric]:12.50 f[double precision]:-1.5e-07 n[numeric]:NaN ok[boolean]:true \
             at[timestamp with time zone]:'2026-12-07 15:49:21.1+00' doc[jsonb]:'{\"a\": \"b c\"}' \
             tags[text[]]:'{a,\"b c\"}' bits[bit(4)]:B'0101' name[character varying(20)]:'x y'",
        );
        assert_eq!((c.schema.as_str(), c.table.as_str()), ("public", "items"));
        assert_eq!(c.kind, Kind::Insert);
        assert!(c.old_key.is_empty());
        assert_eq!(
            c.new_tuple,
            vec![
                col("id", "integer", lit("1")),
                col("note", "text", lit("'it''s ''quoted'''")),
                col("gone", "text", Value::Null),
                col("price", "numeric", lit("12.50")),
                col("f", "double precision", lit("-1.5e-07")),
                col("n", "numeric", lit("'NaN'")),
                col("ok", "boolean", lit("true")),
                col(
                    "at",
                    "timestamp with time zone",
                    lit("'2026-12-07 15:49:21.1+00'")
                ),
                col("doc", "jsonb", lit("'{\"a\": \"b c\"}'")),
                col("tags", "text[]", lit("'{a,\"b c\"}'")),
                col("bits", "bit(4)", lit("B'0101'")),
                col("name", "character varying(20)", lit("'x y'")),
            ]
        );
    }

    #[test]
    fn quoted_identifiers_are_unquoted() {
        let c = change(
            "table \"Sales\".\"Order \"\"Lines\"\"\": INSERT: \"LineId\"[bigint]:7 \"a[b]\"[text]:'v'",
        );
        assert_eq!(c.schema, "Sales");
        assert_eq!(c.table, "Order \"Lines\"");
        assert_eq!(
            c.new_tuple,
            vec![
                col("LineId", "bigint", lit("7")),
                col("a[b]", "text", lit("'v'"))
            ]
        );
    }

    #[test]
    fn update_with_and_without_old_key_and_unchanged_toast() {
        let plain = change(
            "table public.t: UPDATE: id[integer]:1 body[text]:unchanged-toast-datum n[integer]:2",
        );
        assert_eq!(plain.kind, Kind::Update);
        assert!(plain.old_key.is_empty());
        assert_eq!(plain.new_tuple[1].value, Value::UnchangedToast);
        let moved = change(
            "table public.t: UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:10 n[integer]:null",
        );
        assert_eq!(moved.old_key, vec![col("id", "integer", lit("1"))]);
        assert_eq!(
            moved.new_tuple,
            vec![
                col("id", "integer", lit("10")),
                col("n", "integer", Value::Null)
            ]
        );
        // A quoted value holding the words that separate the tuples.
        let tricky = change(
            "table public.t: UPDATE: old-key: k[text]:'a new-tuple: b' new-tuple: k[text]:'c'",
        );
        assert_eq!(tricky.old_key[0].value, lit("'a new-tuple: b'"));
        assert_eq!(tricky.new_tuple[0].value, lit("'c'"));
    }

    #[test]
    fn delete_and_no_tuple_data_and_truncate() {
        let d = change("table public.t: DELETE: id[integer]:3 code[text]:'x'");
        assert_eq!(d.kind, Kind::Delete);
        assert_eq!(d.old_key.len(), 2);
        assert!(d.new_tuple.is_empty());
        let none = change("table public.t: DELETE: (no-tuple-data)");
        assert!(none.old_key.is_empty());
        assert_eq!(
            change("table public.t: TRUNCATE: (no-flags)").kind,
            Kind::Truncate
        );
    }

    #[test]
    fn malformed_lines_are_errors_not_guesses() {
        for bad in [
            "table public.t INSERT: id[integer]:1",
            "table public.t: MERGE: id[integer]:1",
            "table public.t: INSERT: id[integer]:'open",
            "table public.t: INSERT: id[integer]:1;DROP",
            "table \"open.t: INSERT: id[integer]:1",
        ] {
            assert!(parse_line(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn statements_use_the_target_primary_key() {
        let key = vec!["id".to_string()];
        let insert = change("table public.t: INSERT: id[integer]:1 \"Name\"[text]:'a''b'");
        assert_eq!(
            statement(&insert, &key).as_deref(),
            Ok("INSERT INTO \"public\".\"t\" (\"id\", \"Name\") VALUES (1, 'a''b') ON CONFLICT (\"id\") DO UPDATE SET \"Name\" = EXCLUDED.\"Name\"")
        );
        let update = change("table public.t: UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:2 body[text]:unchanged-toast-datum n[integer]:null");
        assert_eq!(
            statement(&update, &key).as_deref(),
            Ok("UPDATE \"public\".\"t\" SET \"id\" = 2, \"n\" = NULL WHERE \"id\" = 1")
        );
        let delete = change("table public.t: DELETE: id[integer]:2");
        assert_eq!(
            statement(&delete, &key).as_deref(),
            Ok("DELETE FROM \"public\".\"t\" WHERE \"id\" = 2")
        );
        assert!(statement(&delete, &[]).is_err(), "no key, no guess");
    }

    #[test]
    fn positions_are_taken_only_where_modelled() {
        let mut task = crate::model::Task::registered(
            "arn:aws:dms:us-east-1:123456789012:task:T".into(),
            "t".into(),
            MigrationType::Cdc,
        );
        let at = serde_json::json!({"CdcStartPosition": "0/16B3748"});
        let slot = || Some("wb".to_string());
        assert_eq!(
            requested(&task, "start-replication", slot(), &at),
            Ok(Some(SlotStream {
                slot: "wb".into(),
                start_position: Some("0/16B3748".into()),
                start_lsn: None
            }))
        );
        let code = |r: Result<Option<SlotStream>, DmsError>| r.map_err(|e| e.code);
        assert_eq!(
            code(requested(&task, "start-replication", None, &at)),
            Err("InvalidParameterValueException"),
            "no slot on the source endpoint"
        );
        assert_eq!(
            code(requested(&task, "resume-processing", slot(), &at)),
            Err("InvalidParameterValueException")
        );
        assert_eq!(
            code(requested(
                &task,
                "start-replication",
                slot(),
                &serde_json::json!({"CdcStopPosition": "server_time:2026-12-07T12:00:00"})
            )),
            Err("InvalidParameterValueException")
        );
        assert_eq!(
            requested(&task, "resume-processing", slot(), &serde_json::json!({})),
            Ok(None),
            "resume keeps the stream it has"
        );
        task.migration_type = MigrationType::FullLoadAndCdc;
        assert_eq!(
            code(requested(&task, "start-replication", slot(), &at)),
            Err("InvalidParameterValueException")
        );
        assert_eq!(
            requested(&task, "start-replication", slot(), &serde_json::json!({})),
            Ok(None),
            "a forward task ignores the endpoint's slot"
        );
    }

    #[test]
    fn lsns_parse_and_print() {
        assert_eq!(parse_lsn("0/16B3748"), Some(0x16B3748));
        assert_eq!(parse_lsn("1A/0000FFFF"), Some((0x1A << 32) | 0xFFFF));
        assert_eq!(format_lsn((0x1A << 32) | 0xFFFF), "1A/FFFF");
        for bad in ["", "0", "0/", "/1", "G/1", "123456789/0", "0/1/2", " 0/1"] {
            assert_eq!(parse_lsn(bad), None, "{bad}");
        }
    }
}
