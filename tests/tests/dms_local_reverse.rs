//! dms-local's CDC-only task on an existing `test_decoding` slot from a native CDC start point: the way
//! back's reverse task (docs/fallback.md), PlanetScale (the lab target) as the source and Aurora (the lab
//! source) as the target, exactly as `dms-migrate cutover` arms it: the slot created while nothing writes,
//! the task started with `CdcStartPosition` = the slot's consistent LSN.

use std::time::Duration;

use aws_sdk_databasemigration::error::ProvideErrorMetadata;
use aws_sdk_databasemigration::types::StartReplicationTaskTypeValue;
use integration_tests::dms_local::{wait_for, wait_for_latency_metrics, DmsLocal};
use integration_tests::lab::{connect, Lab, TestDatabases};
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(60);

async fn sql(url: &str, statements: &str) {
    connect(url)
        .await
        .batch_execute(statements)
        .await
        .unwrap_or_else(|e| panic!("lab SQL failed: {e}\n{statements}"));
}

/// Every row of `table` as text, in order: what "arrived exactly" compares.
async fn rows(url: &str, table: &str) -> Vec<String> {
    connect(url)
        .await
        .query(&format!("SELECT t::text FROM {table} t ORDER BY 1"), &[])
        .await
        .expect("read rows")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

const SCHEMA: &str = r#"
CREATE TABLE public.items (id int PRIMARY KEY, note text, price numeric(10,2), at timestamptz,
                           doc jsonb, tags text[], gone text);
CREATE TABLE public."MixedCase" ("Id" bigint PRIMARY KEY, "Label Text" text);
CREATE TABLE public.events (note text);
CREATE TABLE public.unmapped (id int PRIMARY KEY);
CREATE TABLE public.parted (id int, region text, amount int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE public.parted_eu PARTITION OF public.parted FOR VALUES IN ('eu');
CREATE TABLE public.parted_us PARTITION OF public.parted FOR VALUES IN ('us');
INSERT INTO public.parted VALUES (1, 'eu', 10), (2, 'us', 20);
INSERT INTO public.items (id, note, price) VALUES (1, 'one', 1.00), (2, 'two', 2.00), (3, 'three', 3.00);
INSERT INTO public.events VALUES ('before the switch');
"#;

/// Every table of `public` but `unmapped`.
fn mappings() -> Value {
    json!({"rules": [
        {"rule-type": "selection", "rule-id": "1", "rule-name": "all", "rule-action": "include",
         "object-locator": {"schema-name": "public", "table-name": "%"}},
        {"rule-type": "selection", "rule-id": "2", "rule-name": "not-unmapped", "rule-action": "exclude",
         "object-locator": {"schema-name": "public", "table-name": "unmapped"}}]})
}

struct Reverse {
    local: DmsLocal,
    task_arn: String,
    dbs: TestDatabases,
}

/// The reverse pair on the test's databases: the lab target (PlanetScale) as a source endpoint with
/// `SlotName`/`PluginName`, the lab source (Aurora) as the target endpoint, and a `cdc` task.
async fn reverse_task(lab: &Lab, local: &DmsLocal, dbs: &TestDatabases, slot: &str) -> String {
    local
        .register_reverse_task(lab, dbs, slot, &mappings())
        .await
}

async fn start(
    local: &DmsLocal,
    task_arn: &str,
    kind: StartReplicationTaskTypeValue,
    position: Option<&str>,
) {
    local
        .sdk()
        .await
        .start_replication_task()
        .replication_task_arn(task_arn)
        .start_replication_task_type(kind)
        .set_cdc_start_position(position.map(str::to_string))
        .send()
        .await
        .expect("StartReplicationTask accepted");
}

/// (status, LastFailureMessage) once the task is no longer starting/stopping.
async fn settled(local: &DmsLocal, task_arn: &str) -> (String, String) {
    wait_for("the task to settle", LIMIT, || async {
        let answer = local
            .sdk()
            .await
            .describe_replication_tasks()
            .send()
            .await
            .expect("DescribeReplicationTasks");
        let task = answer
            .replication_tasks()
            .iter()
            .find(|t| t.replication_task_arn() == Some(task_arn))?
            .clone();
        let status = task.status().unwrap_or_default().to_string();
        (!matches!(status.as_str(), "starting" | "stopping")).then(|| {
            (
                status,
                task.last_failure_message().unwrap_or_default().to_string(),
            )
        })
    })
    .await
}

/// Waits until every mapped table reads the same on both sides.
async fn converged(dbs: &TestDatabases) {
    wait_for(
        "the target's changes to reach the source",
        LIMIT,
        || async {
            for table in [
                "public.items",
                "public.\"MixedCase\"",
                "public.events",
                "public.parted",
            ] {
                if rows(&dbs.source_url, table).await != rows(&dbs.target_url, table).await {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
}

async fn statistics(local: &DmsLocal, task_arn: &str, table: &str) -> (i64, i64, i64) {
    let answer = local
        .sdk()
        .await
        .describe_table_statistics()
        .replication_task_arn(task_arn)
        .send()
        .await
        .expect("DescribeTableStatistics");
    let stats = answer
        .table_statistics()
        .iter()
        .find(|s| s.table_name() == Some(table))
        .unwrap_or_else(|| panic!("no statistics for {table}"));
    (stats.inserts(), stats.updates(), stats.deletes())
}

impl Reverse {
    /// Both sides equal (as after the cutover's drain), then the slot created on PlanetScale.
    async fn armed(lab: &Lab, test: &str) -> (Reverse, String, String) {
        let dbs = lab.fresh_databases(test).await;
        sql(&dbs.source_url, SCHEMA).await;
        sql(&dbs.target_url, SCHEMA).await;
        let slot = format!("wb_{}", dbs.name);
        let lsn: String = connect(&dbs.target_url)
            .await
            .query_one(
                "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'test_decoding')",
                &[&slot],
            )
            .await
            .expect("the way back's slot")
            .get(0);
        let local = DmsLocal::start(lab).await;
        let task_arn = reverse_task(lab, &local, &dbs, &slot).await;
        (
            Reverse {
                local,
                task_arn,
                dbs,
            },
            slot,
            lsn,
        )
    }
}

#[tokio::test]
async fn the_reverse_task_replays_the_targets_changes_from_the_slots_position_exactly_once() {
    let Some(lab) = Lab::get().await else { return };
    let (r, slot, lsn) = Reverse::armed(&lab, "reverse_replay").await;

    // Written on PlanetScale after the slot, before the task starts: must arrive, once.
    sql(
        &r.dbs.target_url,
        "INSERT INTO public.items (id, note) VALUES (4, 'just before the start');
         INSERT INTO public.events VALUES ('just before the start');",
    )
    .await;
    start(
        &r.local,
        &r.task_arn,
        StartReplicationTaskTypeValue::StartReplication,
        Some(&lsn),
    )
    .await;
    assert_eq!(
        settled(&r.local, &r.task_arn).await,
        ("running".to_string(), String::new())
    );

    sql(
        &r.dbs.target_url,
        r#"INSERT INTO public.items VALUES (10, 'it''s "quoted"', 12.34, '2026-12-07 15:49:21.5+02',
                                           '{"k": [1, "two"], "s": "a''b"}', '{a,"b c",NULL}', NULL);
           UPDATE public.items SET note = 'changed', price = NULL, gone = 'was null' WHERE id = 1;
           BEGIN;
           UPDATE public.items SET id = 20 WHERE id = 2;
           DELETE FROM public.items WHERE id = 3;
           INSERT INTO public."MixedCase" VALUES (5, 'Mixed ''case''');
           COMMIT;
           INSERT INTO public.unmapped VALUES (1);
           INSERT INTO public.parted VALUES (3, 'eu', 30);
           UPDATE public.parted SET amount = 21 WHERE id = 2;
           DELETE FROM public.parted WHERE id = 1;
           INSERT INTO public.events VALUES ('after the start');"#,
    )
    .await;
    converged(&r.dbs).await;
    assert_eq!(
        rows(&r.dbs.source_url, "public.events").await,
        vec![
            "(\"after the start\")".to_string(),
            "(\"before the switch\")".to_string(),
            "(\"just before the start\")".to_string()
        ],
        "a table without a key shows a duplicate or a loss at once"
    );
    assert!(
        rows(&r.dbs.source_url, "public.unmapped").await.is_empty(),
        "an unmapped table is not replayed"
    );
    let items = rows(&r.dbs.source_url, "public.items").await;
    assert!(
        items
            .iter()
            .any(|r| r.starts_with("(10,\"it's \"\"quoted\"\"\",12.34,")),
        "{items:?}"
    );
    // Inserts 4 and 10, updates of 1 and of 2's key, the delete of 3.
    assert_eq!(statistics(&r.local, &r.task_arn, "items").await, (2, 2, 1));
    assert_eq!(
        statistics(&r.local, &r.task_arn, "MixedCase").await,
        (1, 0, 0)
    );
    // A partitioned table's changes are named by their partition in the slot, counted under the root.
    assert_eq!(statistics(&r.local, &r.task_arn, "parted").await, (1, 1, 1));
    assert_eq!(
        rows(&r.dbs.source_url, "public.parted").await,
        vec!["(2,us,21)".to_string(), "(3,eu,30)".to_string()]
    );

    // CDC latency reaches CloudWatch (moto) as for a forward task.
    wait_for_latency_metrics(&lab, &r.task_arn, LIMIT).await;

    // Stop: nothing more is read, the slot and its position stay; resume continues from there.
    r.local
        .sdk()
        .await
        .stop_replication_task()
        .replication_task_arn(&r.task_arn)
        .send()
        .await
        .expect("StopReplicationTask");
    assert_eq!(settled(&r.local, &r.task_arn).await.0, "stopped");
    sql(
        &r.dbs.target_url,
        "INSERT INTO public.items (id, note) VALUES (30, 'while stopped');
         UPDATE public.items SET note = 'updated while stopped' WHERE id = 10;
         INSERT INTO public.events VALUES ('while stopped');",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_ne!(
        rows(&r.dbs.source_url, "public.items").await,
        rows(&r.dbs.target_url, "public.items").await,
        "a stopped task applies nothing"
    );
    let slot_there: i64 = connect(&r.dbs.target_url)
        .await
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .expect("slots")
        .get(0);
    assert_eq!(slot_there, 1, "stop keeps the slot");
    start(
        &r.local,
        &r.task_arn,
        StartReplicationTaskTypeValue::ResumeProcessing,
        None,
    )
    .await;
    assert_eq!(settled(&r.local, &r.task_arn).await.0, "running");
    converged(&r.dbs).await;
    assert_eq!(
        rows(&r.dbs.source_url, "public.events").await.len(),
        4,
        "resume neither loses nor replays"
    );
}

/// A start position later than the slot's confirmed one: what the slot holds before it is already on the
/// target (copied by other means) and is skipped, what commits after it arrives.
#[tokio::test]
async fn a_later_start_position_skips_what_the_slot_holds_before_it() {
    let Some(lab) = Lab::get().await else { return };
    let (r, _slot, _consistent) = Reverse::armed(&lab, "reverse_later").await;
    let already = "INSERT INTO public.events VALUES ('already on both');
                   UPDATE public.items SET note = 'already' WHERE id = 1;";
    sql(&r.dbs.target_url, already).await;
    sql(&r.dbs.source_url, already).await;
    let position: String = connect(&r.dbs.target_url)
        .await
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .expect("the target's WAL position")
        .get(0);
    sql(
        &r.dbs.target_url,
        "INSERT INTO public.events VALUES ('after the position');",
    )
    .await;
    start(
        &r.local,
        &r.task_arn,
        StartReplicationTaskTypeValue::StartReplication,
        Some(&position),
    )
    .await;
    assert_eq!(settled(&r.local, &r.task_arn).await.0, "running");
    converged(&r.dbs).await;
    assert_eq!(
        rows(&r.dbs.source_url, "public.events").await.len(),
        3,
        "the change before the position is not replayed"
    );
    assert_eq!(statistics(&r.local, &r.task_arn, "items").await, (0, 0, 0));
    assert_eq!(statistics(&r.local, &r.task_arn, "events").await, (1, 0, 0));
}

/// What a replay after a crash between the target's commit and the slot's advance looks like: the slot
/// still holds an INSERT whose row is already on the target. It updates the row instead of failing the
/// transaction (and every one after it).
#[tokio::test]
async fn a_replayed_insert_of_a_row_already_on_the_target_updates_it() {
    let Some(lab) = Lab::get().await else { return };
    let (r, _slot, lsn) = Reverse::armed(&lab, "reverse_replayed").await;
    sql(
        &r.dbs.target_url,
        "INSERT INTO public.items (id, note, price) VALUES (7, 'as on the target', 7.00);",
    )
    .await;
    sql(
        &r.dbs.source_url,
        "INSERT INTO public.items (id, note) VALUES (7, 'applied before the crash');",
    )
    .await;
    start(
        &r.local,
        &r.task_arn,
        StartReplicationTaskTypeValue::StartReplication,
        Some(&lsn),
    )
    .await;
    sql(
        &r.dbs.target_url,
        "INSERT INTO public.events VALUES ('after the replay');",
    )
    .await;
    converged(&r.dbs).await;
    assert_eq!(statistics(&r.local, &r.task_arn, "items").await, (1, 0, 0));
    assert_eq!(settled(&r.local, &r.task_arn).await.0, "running");
}

#[tokio::test]
async fn a_missing_slot_a_wrong_plugin_or_a_bad_position_fails_the_task_as_dms_does() {
    let Some(lab) = Lab::get().await else { return };
    let (r, slot, lsn) = Reverse::armed(&lab, "reverse_refused").await;
    let target = connect(&r.dbs.target_url).await;

    // Each case on a task of its own (start-replication runs once per task).
    let failure = |slot: String, position: Option<String>| {
        let (lab, local, dbs) = (&lab, &r.local, &r.dbs);
        async move {
            let task = reverse_task(lab, local, dbs, &slot).await;
            start(
                local,
                &task,
                StartReplicationTaskTypeValue::StartReplication,
                position.as_deref(),
            )
            .await;
            settled(local, &task).await
        }
    };
    let (status, message) = failure("no_such_slot".into(), Some(lsn.clone())).await;
    assert_eq!(status, "failed");
    assert!(message.contains("does not exist"), "{message}");

    let (status, message) = failure(slot.clone(), Some("not-an-lsn".into())).await;
    assert_eq!(status, "failed");
    assert!(message.contains("is not a PostgreSQL LSN"), "{message}");

    // The slot consumed past the position: the changes before it are gone.
    target
        .batch_execute("INSERT INTO public.events VALUES ('moves the slot')")
        .await
        .expect("a write");
    // The lab runs with synchronous_commit off: the slot advances only as far as the WAL is flushed, so
    // advance until it is past the position (the WAL writer flushes within its delay).
    wait_for("the slot advanced past the position", LIMIT, || async {
        target
            .query_one(
                "SELECT s.confirmed_flush_lsn > $2::text::pg_lsn
                 FROM pg_replication_slot_advance($1, pg_current_wal_lsn()) a,
                      pg_replication_slots s WHERE s.slot_name = $1",
                &[&slot, &lsn],
            )
            .await
            .expect("advance")
            .get::<_, bool>(0)
            .then_some(())
    })
    .await;
    let (status, message) = failure(slot.clone(), Some(lsn.clone())).await;
    assert_eq!(status, "failed");
    assert!(
        message.contains("is before the confirmed position"),
        "{message}"
    );

    let pgoutput = format!("po_{}", r.dbs.name);
    target
        .query(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&pgoutput],
        )
        .await
        .expect("a pgoutput slot");
    let (status, message) = failure(pgoutput, None).await;
    assert_eq!(status, "failed");
    assert!(
        message.contains("not a logical slot of test_decoding"),
        "{message}"
    );

    // Positions are refused at once where dms-local does not model them.
    let sdk = r.local.sdk().await;
    let other = reverse_task(&lab, &r.local, &r.dbs, &slot).await;
    let err = sdk
        .start_replication_task()
        .replication_task_arn(&other)
        .start_replication_task_type(StartReplicationTaskTypeValue::StartReplication)
        .cdc_start_time(aws_sdk_databasemigration::primitives::DateTime::from_secs(
            0,
        ))
        .send()
        .await
        .expect_err("CdcStartTime is not modelled");
    assert_eq!(
        err.into_service_error().code(),
        Some("InvalidParameterValueException")
    );
    let forward = r
        .local
        .register_lab_task(&lab, &r.dbs, "full-load-and-cdc", &mappings())
        .await;
    let err = sdk
        .start_replication_task()
        .replication_task_arn(&forward.task_arn)
        .start_replication_task_type(StartReplicationTaskTypeValue::StartReplication)
        .cdc_start_position(lsn)
        .send()
        .await
        .expect_err("a position on a task without a slot");
    assert_eq!(
        err.into_service_error().code(),
        Some("InvalidParameterValueException")
    );
    assert_eq!(r.local.task_status(&forward.task_arn).await, "ready");
}
