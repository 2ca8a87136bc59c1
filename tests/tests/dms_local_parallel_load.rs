//! dms-local's full load with a plan: `parallel-load` `ranges` segments copied under one exported snapshot
//! on at most `MaxFullLoadSubTasks` connections, then CDC from the slot created at that snapshot; rows with
//! NULL in a range column are not loaded; statistics stay one row per table.

use std::time::Duration;

use dms_core::aws::dms::{Dms, DmsClient, StartType};
use integration_tests::dms_local::{full_load_done, wait_for, wait_for_task, DmsLocal};
use integration_tests::lab::{connect, Lab};
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(120);

async fn sql(url: &str, statements: &str) {
    connect(url)
        .await
        .batch_execute(statements)
        .await
        .expect("lab SQL");
}

/// Row count and an order-independent digest of the rows' text.
async fn digest(url: &str, table: &str) -> (i64, String) {
    let row = connect(url)
        .await
        .query_one(
            &format!("SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {table} t"),
            &[],
        )
        .await
        .expect("digest");
    (row.get(0), row.get(1))
}

fn mappings(rules: Vec<Value>) -> Value {
    let mut all = vec![
        json!({"rule-type": "selection", "rule-id": "1", "rule-name": "all-public",
        "object-locator": {"schema-name": "public", "table-name": "%"}, "rule-action": "include"}),
    ];
    all.extend(rules);
    json!({ "rules": all })
}

fn ranges(id: u32, table: &str, column: &str, boundaries: &[i64]) -> Value {
    json!({"rule-type": "table-settings", "rule-id": id.to_string(), "rule-name": format!("parallel-{table}"),
        "object-locator": {"schema-name": "public", "table-name": table},
        "parallel-load": {"type": "ranges", "columns": [column],
            "boundaries": boundaries.iter().map(|b| vec![b.to_string()]).collect::<Vec<_>>()}})
}

/// The name dms-local gives the task's slot, publication and subscription; its copies' connections carry
/// `<name>_s<segment>` as application_name.
fn replication_name(task_arn: &str) -> String {
    format!(
        "dms_local_{}",
        task_arn
            .rsplit(':')
            .next()
            .expect("id")
            .to_ascii_lowercase()
    )
}

/// Copies of this task waiting on a lock in the target, as pg_stat_activity shows them.
async fn blocked_copies(target: &tokio_postgres::Client, name: &str) -> i64 {
    target
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1 AND wait_event_type = 'Lock'",
            &[&format!("{name}\\_s%")],
        )
        .await
        .expect("pg_stat_activity")
        .get(0)
}

/// StopReplicationTask, then until the task reads `stopped`.
async fn stop_and_wait(dms: &DmsClient, task_arn: &str) {
    dms.stop_task(task_arn).await.expect("stop");
    wait_for_task(dms, task_arn, "stopped", LIMIT, |t| {
        t.status.as_str() == "stopped"
    })
    .await;
}

/// Starts the task with a SHARE lock held on the target's `big` (the holder's open transaction), so every
/// copy into it waits before its first row; returns once two copies wait (the tests' MaxFullLoadSubTasks),
/// with the holder (COMMIT releases them) and a connection that watches them.
async fn start_with_two_copies_held(
    dms: &DmsClient,
    task_arn: &str,
    target_url: &str,
    name: &str,
) -> (tokio_postgres::Client, tokio_postgres::Client) {
    let holder = connect(target_url).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE public.big IN SHARE MODE")
        .await
        .expect("lock");
    dms.start_task(task_arn, StartType::StartReplication)
        .await
        .expect("start");
    let observer = connect(target_url).await;
    wait_for("two copies waiting on the lock", LIMIT, || async {
        (blocked_copies(&observer, name).await == 2).then_some(())
    })
    .await;
    (holder, observer)
}

#[tokio::test]
async fn segments_load_every_row_once_across_the_snapshot_and_cdc_with_at_most_max_subtasks_at_once(
) {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("dmsl_ranges").await;
    let schema = "CREATE TABLE public.big (id bigint PRIMARY KEY, v text);
                  CREATE TABLE public.nullable (id int PRIMARY KEY, k int);
                  CREATE TABLE public.small (id int PRIMARY KEY);";
    sql(
        &dbs.source_url,
        &format!(
            "{schema}
             INSERT INTO public.big SELECT g, 'row ' || g FROM generate_series(1, 20000) g;
             INSERT INTO public.nullable SELECT g, CASE WHEN g > 100 THEN NULL ELSE g END FROM generate_series(1, 110) g;
             INSERT INTO public.small SELECT generate_series(1, 7);"
        ),
    )
    .await;
    sql(&dbs.target_url, schema).await;
    let local = DmsLocal::start(&lab).await;
    let ids = local
        .register_lab_task_with_settings(
            &lab,
            &dbs,
            "full-load-and-cdc",
            &mappings(vec![
                ranges(2, "big", "id", &[5000, 10000, 15000]),
                ranges(3, "nullable", "k", &[50]),
            ]),
            &json!({"FullLoadSettings": {"MaxFullLoadSubTasks": 2}}),
        )
        .await;
    let name = replication_name(&ids.task_arn);
    let dms = local.dms_client().await;

    let (holder, observer) =
        start_with_two_copies_held(&dms, &ids.task_arn, &dbs.target_url, &name).await;
    // Changes made now are after the snapshot: they must arrive through CDC only, even in the segments
    // that have not started copying yet (ids above 15000 are the last segment's).
    sql(
        &dbs.source_url,
        "INSERT INTO public.big SELECT g, 'new ' || g FROM generate_series(20001, 20500) g;
         UPDATE public.big SET v = 'updated' WHERE id % 7 = 0;
         DELETE FROM public.big WHERE id % 11 = 0 AND id <= 20000;
         INSERT INTO public.small VALUES (8);",
    )
    .await;
    for _ in 0..10 {
        let blocked = blocked_copies(&observer, &name).await;
        assert_eq!(
            blocked, 2,
            "MaxFullLoadSubTasks is 2: {blocked} copies ran at once"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    holder.batch_execute("COMMIT").await.expect("unlock");

    // One statistics row per table however many segments; FullLoadRows is what the snapshot held.
    wait_for_task(&dms, &ids.task_arn, "the full load", LIMIT, full_load_done).await;
    let stats = dms.table_statistics(&ids.task_arn).await.expect("stats");
    let mut rows: Vec<(String, String, i64)> = stats
        .iter()
        .map(|t| (t.table.clone(), t.state.clone(), t.full_load_rows))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            ("big".into(), "Table completed".into(), 20000),
            ("nullable".into(), "Table completed".into(), 100),
            ("small".into(), "Table completed".into(), 7),
        ]
    );

    // The changes made after the snapshot arrive once through CDC, and CDC keeps flowing (a row loaded
    // twice would stop the apply on its key): a last change made now arrives too.
    sql(
        &dbs.source_url,
        "INSERT INTO public.big VALUES (999999, 'after the load')",
    )
    .await;
    wait_for("the target to match the source", LIMIT, || async {
        let source = digest(&dbs.source_url, "public.big").await;
        (digest(&dbs.target_url, "public.big").await == source
            && digest(&dbs.target_url, "public.small").await.0 == 8)
            .then_some(())
    })
    .await;

    // Rows whose range column is NULL are not loaded (and nothing else is missing).
    let nullable = connect(&dbs.target_url)
        .await
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE k IS NULL) FROM public.nullable",
            &[],
        )
        .await
        .expect("nullable");
    assert_eq!(
        (nullable.get::<_, i64>(0), nullable.get::<_, i64>(1)),
        (100, 0)
    );
    wait_for("CDC inserts in the statistics", LIMIT, || async {
        let stats = dms.table_statistics(&ids.task_arn).await.expect("stats");
        stats
            .iter()
            .any(|t| t.table == "big" && t.inserts == 501)
            .then_some(())
    })
    .await;
    let task = dms.describe_task(&ids.task_arn).await.expect("describe");
    assert_eq!(task.status.as_str(), "running");
    assert_eq!(task.stats.expect("stats").full_load_progress_percent, 100);
}

#[tokio::test]
async fn a_full_load_only_task_with_ranges_stops_finished_and_drops_its_slot() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("dmsl_ranges_fl").await;
    let schema = "CREATE TABLE public.events (id int PRIMARY KEY, bucket int, at date);";
    sql(
        &dbs.source_url,
        &format!(
            "{schema}
             INSERT INTO public.events
             SELECT g, CASE WHEN g % 10 = 0 THEN NULL ELSE g % 4 END,
                    CASE WHEN g % 8 = 4 THEN NULL ELSE date '2024-01-01' + g END
             FROM generate_series(1, 400) g;"
        ),
    )
    .await;
    sql(&dbs.target_url, schema).await;
    let local = DmsLocal::start(&lab).await;
    // Two range columns, boundaries as upper bounds of the (bucket, at) tuple, a row equal to a boundary
    // belonging to the segment above it.
    let rule = json!({"rule-type": "table-settings", "rule-id": "2", "rule-name": "events",
        "object-locator": {"schema-name": "public", "table-name": "events"},
        "parallel-load": {"type": "ranges", "columns": ["bucket", "at"],
            "boundaries": [["1", "2024-03-01"], ["2", "2024-01-05"], ["3", "2025-01-01"]]}});
    let ids = local
        .register_lab_task(&lab, &dbs, "full-load", &mappings(vec![rule]))
        .await;
    let dms = local.dms_client().await;
    dms.start_task(&ids.task_arn, StartType::StartReplication)
        .await
        .expect("start");
    let done = wait_for("the full load to finish", LIMIT, || async {
        let task = dms.describe_task(&ids.task_arn).await.expect("describe");
        (task.status.as_str() == "stopped").then_some(task)
    })
    .await;
    assert_eq!(
        done.stop_reason.as_deref(),
        Some("Stop Reason FULL_LOAD_ONLY_FINISHED")
    );
    // Every row whose range columns are not NULL, once: the 40 rows with a NULL bucket stay behind, and so
    // do the 40 with bucket 0 and a NULL date, which the page's WHERE clause alone would load (bucket < 1
    // decides the first segment before the date is compared).
    let expected = connect(&dbs.source_url)
        .await
        .query_one(
            "SELECT count(*) FROM public.events WHERE bucket IS NOT NULL AND at IS NOT NULL",
            &[],
        )
        .await
        .expect("count")
        .get::<_, i64>(0);
    assert_eq!(expected, 320);
    assert_eq!(digest(&dbs.target_url, "public.events").await.0, 320);
    let stats = dms.table_statistics(&ids.task_arn).await.expect("stats");
    assert_eq!(stats.len(), 1);
    assert_eq!(
        (stats[0].state.as_str(), stats[0].full_load_rows),
        ("Table completed", 320)
    );
    let slots: i64 = connect(&dbs.source_url)
        .await
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
            &[&replication_name(&ids.task_arn)],
        )
        .await
        .expect("slots")
        .get(0);
    assert_eq!(slots, 0, "the slot goes with the finished full load");
}

#[tokio::test]
async fn a_table_in_error_is_left_out_of_cdc_and_the_other_tables_keep_receiving_changes() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("dmsl_err_cdc").await;
    sql(
        &dbs.source_url,
        "CREATE TABLE public.good (id int PRIMARY KEY); CREATE TABLE public.bad (id int PRIMARY KEY, v text);
         INSERT INTO public.good SELECT generate_series(1, 10); INSERT INTO public.bad VALUES (1, 'a');",
    )
    .await;
    // The target's `bad` lacks column v: its copy fails and it ends in `Table error`.
    sql(
        &dbs.target_url,
        "CREATE TABLE public.good (id int PRIMARY KEY); CREATE TABLE public.bad (id int PRIMARY KEY);",
    )
    .await;
    let local = DmsLocal::start(&lab).await;
    let ids = local
        .register_lab_task(
            &lab,
            &dbs,
            "full-load-and-cdc",
            &mappings(vec![ranges(2, "good", "id", &[5])]),
        )
        .await;
    let dms = local.dms_client().await;
    dms.start_task(&ids.task_arn, StartType::StartReplication)
        .await
        .expect("start");
    wait_for_task(&dms, &ids.task_arn, "the full load", LIMIT, full_load_done).await;
    let stats = dms.table_statistics(&ids.task_arn).await.expect("stats");
    let state = |name: &str| {
        stats
            .iter()
            .find(|t| t.table == name)
            .map(|t| (t.state.clone(), t.full_load_rows))
    };
    assert_eq!(state("bad"), Some(("Table error".to_string(), 0)));
    assert_eq!(state("good"), Some(("Table completed".to_string(), 10)));
    // A change to the table in error would stop the whole apply (its column is missing on the target):
    // DMS suspends that table, and the other's changes still arrive.
    sql(
        &dbs.source_url,
        "INSERT INTO public.bad VALUES (2, 'b'); INSERT INTO public.good VALUES (11);",
    )
    .await;
    wait_for("the change to good", LIMIT, || async {
        (digest(&dbs.target_url, "public.good").await.0 == 11).then_some(())
    })
    .await;
}

async fn slots_named(url: &str, name: &str) -> i64 {
    connect(url)
        .await
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
            &[&name],
        )
        .await
        .expect("pg_replication_slots")
        .get(0)
}

#[tokio::test]
async fn a_load_stopped_mid_segments_resumes_reloads_and_its_slot_goes_at_shutdown() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("dmsl_ranges_stop").await;
    let schema = "CREATE TABLE public.big (id bigint PRIMARY KEY, v text);";
    sql(
        &dbs.source_url,
        &format!(
            "{schema} INSERT INTO public.big SELECT g, 'row ' || g FROM generate_series(1, 3000) g;"
        ),
    )
    .await;
    sql(&dbs.target_url, schema).await;
    let local = DmsLocal::start(&lab).await;
    let ids = local
        .register_lab_task_with_settings(
            &lab,
            &dbs,
            "full-load-and-cdc",
            &mappings(vec![ranges(2, "big", "id", &[1000, 2000])]),
            &json!({"FullLoadSettings": {"MaxFullLoadSubTasks": 2}}),
        )
        .await;
    let name = replication_name(&ids.task_arn);
    let dms = local.dms_client().await;
    let (holder, observer) =
        start_with_two_copies_held(&dms, &ids.task_arn, &dbs.target_url, &name).await;

    // Stopped mid load: the copies roll back, the slot keeps CDC's start.
    stop_and_wait(&dms, &ids.task_arn).await;
    holder.batch_execute("COMMIT").await.expect("unlock");
    wait_for("the copies gone", LIMIT, || async {
        let copies: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1",
                &[&format!("{name}\\_s%")],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        (copies == 0).then_some(())
    })
    .await;
    assert_eq!(digest(&dbs.target_url, "public.big").await.0, 0);
    assert_eq!(slots_named(&dbs.source_url, &name).await, 1);
    sql(
        &dbs.source_url,
        "INSERT INTO public.big VALUES (5000, 'while stopped')",
    )
    .await;

    // Resumed: the table had not completed, so every segment is copied again, then CDC runs.
    dms.start_task(&ids.task_arn, StartType::ResumeProcessing)
        .await
        .expect("resume");
    wait_for_task(
        &dms,
        &ids.task_arn,
        "the load after resume",
        LIMIT,
        full_load_done,
    )
    .await;
    sql(
        &dbs.source_url,
        "INSERT INTO public.big VALUES (5001, 'after the resume')",
    )
    .await;
    wait_for("the target to match the source", LIMIT, || async {
        let source = digest(&dbs.source_url, "public.big").await;
        (digest(&dbs.target_url, "public.big").await == source).then_some(())
    })
    .await;

    // Reloaded into an emptied target: a new slot and snapshot, every row once again.
    stop_and_wait(&dms, &ids.task_arn).await;
    sql(&dbs.target_url, "TRUNCATE public.big").await;
    dms.start_task(&ids.task_arn, StartType::ReloadTarget)
        .await
        .expect("reload");
    wait_for("the reloaded target to match the source", LIMIT, || async {
        let source = digest(&dbs.source_url, "public.big").await;
        (digest(&dbs.target_url, "public.big").await == source).then_some(())
    })
    .await;
    let stats = dms.table_statistics(&ids.task_arn).await.expect("stats");
    assert_eq!(stats.len(), 1);
    assert_eq!(
        (stats[0].state.as_str(), stats[0].full_load_rows),
        ("Table completed", 3002)
    );

    // At shutdown dms-local drops subscription, slot and publication.
    drop(local);
    assert_eq!(slots_named(&dbs.source_url, &name).await, 0);
}
