//! Bench row: `dms-migrate verify` of a 1,000,000-row table (exact counts and checksums of every key
//! range, both sides, end to end with the built binary), side by side in the same run with `count(*)` on
//! both sides (issued at the same time on one connection per side, connect included). Also `--sample 4`.
//! The table is generated identically on the lab's source and target in a database of its own.
//! Run: `make bench` (the lab must be up; builds the release `dms-migrate` first).

use std::process::Command;
use std::time::{Duration, Instant};

use integration_tests::bench::{connect, dms_migrate, generated, median, recreate, seconds};
use integration_tests::lab::Lab;

const DATABASE: &str = "bench_verify";
const ROWS: i64 = 1_000_000;
const RUNS: usize = 3;
const GOAL_RATIO: f64 = 5.0;

const GENERATE: &str = r#"
CREATE SCHEMA bench;
CREATE TABLE bench.big (
    id bigint PRIMARY KEY,
    name text NOT NULL,
    amount numeric(12,2) NOT NULL,
    created timestamptz NOT NULL,
    flag boolean NOT NULL,
    doc jsonb,
    raw bytea
);
INSERT INTO bench.big
SELECT g, 'name ' || g, g * 1.5, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute', g % 2 = 0,
       CASE WHEN g % 10 = 0 THEN jsonb_build_object('n', g) END,
       CASE WHEN g % 7 = 0 THEN int8send(g) END
FROM generate_series(1, 1000000) AS g;
"#;

fn verify(source_url: &str, target_url: &str, extra: &[&str]) -> (Duration, serde_json::Value) {
    let (binary, _) = dms_migrate();
    let started = Instant::now();
    let out = Command::new(binary)
        .args(["verify", "--source", source_url, "--target", target_url])
        .args(["--schemas", "bench", "--format", "json"])
        .args(extra)
        .output()
        .expect("dms-migrate runs");
    let elapsed = started.elapsed();
    assert!(
        out.status.success(),
        "verify failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        elapsed,
        serde_json::from_slice(&out.stdout).expect("JSON report"),
    )
}

async fn count_both(source_url: &str, target_url: &str) -> Duration {
    let started = Instant::now();
    let count = |url: String| async move {
        let client = connect(&url).await;
        let n: i64 = client
            .query_one("SELECT count(*) FROM bench.big", &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(n, ROWS);
    };
    tokio::join!(count(source_url.to_string()), count(target_url.to_string()));
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let Some(lab) = Lab::get().await else {
        eprintln!("bench_verify: the lab is not running; `make lab-up` starts it");
        std::process::exit(2);
    };
    eprintln!("generating a {ROWS}-row table on source and target...");
    let (source_url, target_url, source, target) = generated(&lab, DATABASE, GENERATE).await;
    // Its own statement: VACUUM refuses to run inside the implicit transaction of a batch.
    let vacuum = "VACUUM ANALYZE bench.big";
    let (a, b) = tokio::join!(source.batch_execute(vacuum), target.batch_execute(vacuum));
    a.expect("vacuum source");
    b.expect("vacuum target");

    let (_, build) = dms_migrate();
    // Warm both caches once so every method reads from memory.
    count_both(&source_url, &target_url).await;
    let mut full = Vec::new();
    let mut sampled = Vec::new();
    let mut counts = Vec::new();
    let mut report = serde_json::Value::Null;
    for _ in 0..RUNS {
        counts.push(count_both(&source_url, &target_url).await);
        let (elapsed, r) = verify(&source_url, &target_url, &[]);
        full.push(elapsed);
        report = r;
        sampled.push(verify(&source_url, &target_url, &["--sample", "4"]).0);
    }
    let (full, sampled, count) = (median(full), median(sampled), median(counts));
    let table = &report["tables"][0];
    if std::env::var("BENCH_KEEP").as_deref() != Ok("1") {
        recreate(&lab, DATABASE, true).await;
    }
    let ratio = full.as_secs_f64() / count.as_secs_f64();

    println!(
        "Verify of one {ROWS}-row table (bigint key, text, numeric, timestamptz, boolean, jsonb, bytea) on source and target; medians of {RUNS} runs, caches warm"
    );
    println!();
    println!("| method | time | notes |");
    println!("|---|---|---|");
    println!(
        "| dms-migrate verify ({build} build, end to end) | {} | exact counts + checksum ({}) over all {} key ranges on both sides (per chunk of up to 40 ranges, split into ranges only where it differs), plus schema and sequence diff; {:.1}x the count |",
        seconds(full),
        table["method"].as_str().unwrap_or("?"),
        table["ranges"],
        ratio
    );
    println!(
        "| dms-migrate verify --sample 4 | {} | exact counts, checksums of 4 ranges; {:.1}x the count |",
        seconds(sampled),
        sampled.as_secs_f64() / count.as_secs_f64()
    );
    println!(
        "| count(*) on both sides (at the same time) | {} | connect included; no checksum, a changed row goes unseen |",
        seconds(count)
    );
    println!();
    println!(
        "Goal: exact checksum <= {GOAL_RATIO}x the count: {} ({ratio:.1}x)",
        if ratio <= GOAL_RATIO { "MET" } else { "MISSED" }
    );
}
