//! Bench row: the application's write outage at cutover, at demo.rows 200,000 and 2,000,000 (the sample
//! shop of tests/fixtures/demo_*.sql: about 610,000 and 6,100,000 rows), for both orders in the same run:
//! - the step-by-step order the ready-for-cutover email gave before `dms-migrate cutover` (writes stopped,
//!   then `cutover-check` for the drain, `sequences sync`, the task stopped, `constraints apply`,
//!   `verify`): everything after the stop counts, and most of it grows with the data;
//! - `dms-migrate cutover --freeze`: only the freeze counts, everything that grows runs before it.
//!
//! Each measurement has a database pair, a dms-local task (the stack's `BatchApplyEnabled: true`) whose
//! full load is done, and an application role committing an order every 50 ms until it is stopped (the
//! step-by-step order) or frozen (ours). The outage is timed from the application's last commit on the
//! source to the end of the last step before the switch. Goal: ours at most 10 s at both sizes and
//! growing at most 30% from the small to the large one. Run: `make bench` (the lab must be up; builds the
//! release `dms-migrate` first; the debug dms-local moves the rows).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_tests::bench::{dms_migrate, seconds};
use integration_tests::bench_shop::{order_writer, shop};
use integration_tests::dms_local::wait_for;
use integration_tests::lab::Lab;
use tokio::io::{AsyncBufReadExt, BufReader};

const SIZES: [u32; 2] = [200_000, 2_000_000];
const GOAL: Duration = Duration::from_secs(10);
const GOAL_GROWTH: f64 = 0.30;
/// Writes before the cutover starts, so CDC has something to carry.
const WARM_UP: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, PartialEq)]
enum Order {
    StepByStep,
    Ours,
}

/// The outage of one order on a fresh setup of `rows`.
async fn measure(lab: &Lab, rows: u32, order: Order) -> Duration {
    let setup = shop(lab, "bench_cutover", rows).await;
    let stop = Arc::new(AtomicBool::new(false));
    let app = order_writer(setup.app_url.clone(), Arc::clone(&stop));
    tokio::time::sleep(WARM_UP).await;
    let task = setup.task_arn.as_str();
    let outage = match order {
        Order::StepByStep => {
            // Before the stop, as the email said: sequences ahead while the application writes.
            setup
                .run_ok(&["sequences", "sync", "--rate-window", "5"])
                .await;
            stop.store(true, Ordering::SeqCst);
            let last = app.await.ok().flatten().expect("the application committed");
            setup
                .run_ok(&[
                    "cutover-check",
                    "--task-arn",
                    task,
                    "--latency-target",
                    "30",
                ])
                .await;
            setup.run_ok(&["sequences", "sync"]).await;
            let dms = setup.dms.dms_client().await;
            dms.stop_task(task).await.expect("StopReplicationTask");
            wait_for("the task to stop", Duration::from_secs(120), || async {
                (setup.dms.task_status(task).await == "stopped").then_some(())
            })
            .await;
            setup
                .run_ok(&["constraints", "apply", "--file", &setup.deferred])
                .await;
            setup.run_ok(&["verify"]).await;
            last.elapsed()
        }
        Order::Ours => {
            let mut child = setup
                .cli(&[
                    "cutover",
                    "--task-arn",
                    task,
                    "--freeze",
                    "--rate-window",
                    "5",
                    "--deferred-file",
                    &setup.deferred,
                ])
                .spawn()
                .expect("run dms-migrate cutover");
            let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
            let mut switched = None;
            let mut text = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("SWITCH NOW") {
                    switched = Some(Instant::now());
                }
                text.push_str(&line);
                text.push('\n');
            }
            let status = child.wait().await.expect("wait");
            stop.store(true, Ordering::SeqCst);
            let last = app.await.ok().flatten().expect("the application committed");
            let switched =
                switched.unwrap_or_else(|| panic!("cutover did not switch ({status}):\n{text}"));
            // Where the outage went: the command's own lines for the phases in the freeze.
            for line in text.lines().filter(|l| l.contains("(outage)  ")) {
                println!(
                    "      {}",
                    line.trim().chars().take(150).collect::<String>()
                );
            }
            switched.saturating_duration_since(last)
        }
    };
    setup.remove(lab).await;
    outage
}

#[tokio::main]
async fn main() {
    let Some(lab) = Lab::get().await else {
        println!("bench_cutover: the lab is not running; `make bench` starts it");
        std::process::exit(2);
    };
    let (_, build) = dms_migrate();
    println!(
        "Bench: the write outage at cutover ({build} dms-migrate), demo.rows 200,000 and 2,000,000"
    );
    let mut ours = Vec::new();
    for rows in SIZES {
        let step = measure(&lab, rows, Order::StepByStep).await;
        let one = measure(&lab, rows, Order::Ours).await;
        println!(
            "  demo.rows {rows:>9}: step by step (stop, drain, sequences, stop task, constraints apply, verify) {:>10}   dms-migrate cutover --freeze {:>10}",
            seconds(step),
            seconds(one)
        );
        ours.push(one);
    }
    let growth = ours[1].as_secs_f64() / ours[0].as_secs_f64().max(0.001) - 1.0;
    let worst = ours.iter().max().copied().unwrap_or_default();
    let met = worst <= GOAL && growth <= GOAL_GROWTH;
    println!(
        "  ours: worst {} (goal <= {} s), growth {:+.0}% from the small to the large size (goal <= {:.0}%): {}",
        seconds(worst),
        GOAL.as_secs(),
        growth * 100.0,
        GOAL_GROWTH * 100.0,
        if met { "goal met" } else { "GOAL MISSED" }
    );
}
