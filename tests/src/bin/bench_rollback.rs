//! Bench row: the application's write outage when it goes back to the source after a cutover, at demo
//! size (demo.rows 200,000: about 610,000 rows), for both orders in the same run:
//! - by hand, the reverse of the step-by-step cutover (writes stopped on the target, a sentinel row
//!   written there and waited for on the source, `sequences sync` and `verify` with the sides swapped, the
//!   reverse task stopped, the source's freeze undone): everything after the stop counts;
//! - `dms-migrate rollback --freeze`: only the freeze counts.
//!
//! Each measurement has its own database pair, a dms-local task whose full load is done, a
//! `cutover --freeze` that started the way back's reverse task, and the application role writing an order
//! every 50 ms to the target until it is stopped (by hand) or frozen (ours). The outage is timed from the
//! application's last commit on the target to the end of the last step before the switch back. Goal: ours
//! at most 10 s. Run: `make bench` (the lab must be up; the release `dms-migrate` if built, else the
//! debug one; the debug dms-local moves the rows).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_tests::bench::{connect, dms_migrate, seconds};
use integration_tests::bench_shop::{order_writer, shop, shop_mappings, Shop};
use integration_tests::dms_local::wait_for;
use integration_tests::lab::Lab;
use tokio::io::{AsyncBufReadExt, BufReader};

const ROWS: u32 = 200_000;
const GOAL: Duration = Duration::from_secs(10);
/// Writes on each side before the next command, so the task in use has something to carry.
const WARM_UP: Duration = Duration::from_secs(5);
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq)]
enum Order {
    ByHand,
    Ours,
}

/// Runs `dms-migrate` to the end, returning the instant a line starting with `marker` was printed.
async fn until_marker(mut command: tokio::process::Command, marker: &str) -> Instant {
    let mut child = command.spawn().expect("run dms-migrate");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = None;
    let mut text = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.starts_with(marker) {
            seen = Some(Instant::now());
        }
        if line.contains("(outage)  ") && marker == "SWITCH BACK NOW" {
            println!(
                "      {}",
                line.trim().chars().take(150).collect::<String>()
            );
        }
        text.push_str(&line);
        text.push('\n');
    }
    let status = child.wait().await.expect("wait");
    seen.unwrap_or_else(|| panic!("no {marker} ({status}):\n{text}"))
}

/// A shop switched to the target by `cutover --freeze` with the way back running; the reverse task.
async fn switched(lab: &Lab, setup: &Shop) -> String {
    let slot = format!("wb_{}", setup.dbs.name);
    let reverse = setup
        .dms
        .register_reverse_task(lab, &setup.dbs, &slot, &shop_mappings())
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let app = order_writer(setup.app_url.clone(), Arc::clone(&stop));
    tokio::time::sleep(WARM_UP).await;
    until_marker(
        setup.cli(&[
            "cutover",
            "--task-arn",
            &setup.task_arn,
            "--freeze",
            "--rate-window",
            "5",
            "--deferred-file",
            &setup.deferred,
            "--way-back-slot",
            &slot,
            "--way-back-task-arn",
            &reverse,
        ]),
        "SWITCH NOW",
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let _ = app.await;
    reverse
}

/// By hand: a sentinel row written on the target, waited for on the source, then taken out.
async fn drain_by_hand(setup: &Shop) {
    let target = connect(&setup.dbs.target_url).await;
    let table: String = target
        .query_one(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE tablename = 'dms_migrate_sentinel' LIMIT 1",
            &[],
        )
        .await
        .expect("the sentinel table on the target")
        .get(0);
    target
        .execute(
            &format!("INSERT INTO {table} (token) VALUES ('bench by hand')"),
            &[],
        )
        .await
        .expect("a sentinel row on the target");
    let source = connect(&setup.dbs.source_url).await;
    let count = format!("SELECT count(*) FROM {table} WHERE token = 'bench by hand'");
    wait_for("the sentinel row on the source", DRAIN_LIMIT, || async {
        let n: i64 = source.query_one(&count, &[]).await.expect("count").get(0);
        (n == 1).then_some(())
    })
    .await;
    target
        .execute(
            &format!("DELETE FROM {table} WHERE token = 'bench by hand'"),
            &[],
        )
        .await
        .expect("the sentinel row taken out");
}

/// The outage of one order on a fresh shop.
async fn measure(lab: &Lab, order: Order) -> Duration {
    let setup = shop(lab, "bench_rollback", ROWS).await;
    let reverse = switched(lab, &setup).await;
    let stop = Arc::new(AtomicBool::new(false));
    let app = order_writer(setup.app_on_target(lab).await, Arc::clone(&stop));
    tokio::time::sleep(WARM_UP).await;
    let outage = match order {
        Order::ByHand => {
            // Before the stop: the source's sequences ahead while the application writes.
            setup
                .run_swapped_ok(&["sequences", "sync", "--rate-window", "5"])
                .await;
            stop.store(true, Ordering::SeqCst);
            let last = app.await.ok().flatten().expect("the application committed");
            drain_by_hand(&setup).await;
            setup.run_swapped_ok(&["sequences", "sync"]).await;
            let dms = setup.dms.dms_client().await;
            dms.stop_task(&reverse).await.expect("StopReplicationTask");
            wait_for(
                "the reverse task to stop",
                Duration::from_secs(120),
                || async { (setup.dms.task_status(&reverse).await == "stopped").then_some(()) },
            )
            .await;
            setup.run_swapped_ok(&["verify"]).await;
            setup
                .run_ok(&["cutover", "--task-arn", &setup.task_arn, "--undo-freeze"])
                .await;
            last.elapsed()
        }
        Order::Ours => {
            let switched_back = until_marker(
                setup.cli(&[
                    "rollback",
                    "--way-back-task-arn",
                    &reverse,
                    "--freeze",
                    "--rate-window",
                    "5",
                    "--deferred-file",
                    &setup.deferred,
                ]),
                "SWITCH BACK NOW",
            )
            .await;
            stop.store(true, Ordering::SeqCst);
            let last = app.await.ok().flatten().expect("the application committed");
            switched_back.saturating_duration_since(last)
        }
    };
    let slot = format!("wb_{}", setup.dbs.name);
    let target = connect(&setup.dbs.target_url).await;
    let _ = target
        .execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await;
    setup.remove(lab).await;
    outage
}

#[tokio::main]
async fn main() {
    let Some(lab) = Lab::get().await else {
        println!("bench_rollback: the lab is not running; `make bench` starts it");
        std::process::exit(2);
    };
    let (_, build) = dms_migrate();
    println!(
        "Bench: the write outage going back to the source after a cutover ({build} dms-migrate), demo.rows {ROWS}"
    );
    let by_hand = measure(&lab, Order::ByHand).await;
    let ours = measure(&lab, Order::Ours).await;
    println!(
        "  demo.rows {ROWS:>9}: by hand (stop, drain, sequences, stop the reverse task, verify, unfreeze) {:>10}   dms-migrate rollback --freeze {:>10}",
        seconds(by_hand),
        seconds(ours)
    );
    println!(
        "  ours: {} (goal <= {} s): {}",
        seconds(ours),
        GOAL.as_secs(),
        if ours <= GOAL {
            "goal met"
        } else {
            "GOAL MISSED"
        }
    );
}
