//! Bench row: `dms-migrate sequences sync` on 10,000 sequences across 5 schemas, end to end (the built
//! binary: connect, one catalog read per side, one batched write), side by side in the same run with the
//! guide's method done right (setval statements generated from the source and run in one psql session on
//! the target), the peer the headline quotes. A secondary line, labelled a straw man, times one psql
//! process per sequence on a sample and extrapolates (the output says so); it is never the headline. Before each run every target sequence is reset to never-called, so each run does the full
//! work. Run: `make bench` (the lab must be up; builds the release `dms-migrate` first).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dms_core::pg::sequences;
use integration_tests::bench::{dms_migrate, generated, recreate, seconds};
use integration_tests::lab::Lab;

const DATABASE: &str = "bench_sequences";
const SEQUENCES: u32 = 10_000;
const SCHEMAS: u32 = 5;
const RUNS: usize = 3;
const SAMPLE: u32 = 50;
const MARGIN: i64 = 1000;
const GOAL: Duration = Duration::from_secs(1);

/// 10,000 sequences round-robin over 5 schemas (two of them mixed-case), every 10th descending; the
/// source's are advanced, the target's left never called. Commits every 1,000 to stay in the lock table.
const GENERATE: &str = r#"
DO $$
DECLARE
    i int;
    s text;
BEGIN
    FOR i IN 0..4 LOOP
        EXECUTE format('CREATE SCHEMA %I', CASE WHEN i < 2 THEN 'Bench ' || i ELSE 'bench_' || i END);
    END LOOP;
    FOR i IN 0..9999 LOOP
        s := CASE WHEN i % 5 < 2 THEN 'Bench ' || i % 5 ELSE 'bench_' || i % 5 END;
        IF i % 10 = 9 THEN
            EXECUTE format('CREATE SEQUENCE %I.%I INCREMENT -1 MAXVALUE -1 START -1', s, 'Seq ' || i);
        ELSE
            EXECUTE format('CREATE SEQUENCE %I.%I', s, 'seq_' || i);
        END IF;
        IF i % 1000 = 999 THEN
            COMMIT;
        END IF;
    END LOOP;
END
$$;
"#;

const ADVANCE_SOURCE: &str = r#"
SELECT setval(c.oid, CASE WHEN s.seqincrement > 0 THEN 1 + (c.oid::int8 % 100000) ELSE -1 - (c.oid::int8 % 100000) END)
FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid"#;

const RESET_TARGET: &str =
    "SELECT setval(s.seqrelid, s.seqstart, false) FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid";

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-X", "-A", "-t", "-q", "-d", url, "-c", sql])
        .output()
        .expect("psql runs (apt postgresql-client)");
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The guide's method done right: one psql reads the source and prints a setval per sequence (margin
/// added), one psql session on the target runs them all in one transaction.
fn generated_setvals(source_url: &str, target_url: &str) -> Duration {
    let started = Instant::now();
    let script = psql(
        source_url,
        &format!(
            "SELECT format('SELECT setval(%L, %s, true);', format('%I.%I', schemaname, sequencename), last_value + {MARGIN} * increment_by) FROM pg_sequences WHERE last_value IS NOT NULL"
        ),
    );
    let mut child = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-1",
            "-o",
            "/dev/null",
            "-d",
            target_url,
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("psql runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("script to psql");
    assert!(child.wait().expect("psql ends").success());
    started.elapsed()
}

/// One psql process per sequence and side, on a sample: read the source value, set the target.
fn per_sequence(source_url: &str, target_url: &str, names: &[String]) -> Duration {
    let started = Instant::now();
    for name in names {
        let last = psql(source_url, &format!("SELECT last_value FROM {name}"));
        psql(
            target_url,
            &format!(
                "SELECT setval('{}', {} + {MARGIN})",
                name.replace('\'', "''"),
                last.trim()
            ),
        );
    }
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let Some(lab) = Lab::get().await else {
        eprintln!("bench_sequences: the lab is not running; `make lab-up` starts it");
        std::process::exit(2);
    };
    eprintln!("generating {SEQUENCES} sequences in {SCHEMAS} schemas on source and target...");
    let (source_url, target_url, source, target) = generated(&lab, DATABASE, GENERATE).await;
    source.batch_execute(ADVANCE_SOURCE).await.expect("advance");

    let (binary, build) = dms_migrate();
    let mut runs = Vec::new();
    let mut changed = 0;
    for _ in 0..RUNS {
        target.batch_execute(RESET_TARGET).await.expect("reset");
        let started = Instant::now();
        let out = Command::new(&binary)
            .args([
                "sequences",
                "sync",
                "--source",
                &source_url,
                "--target",
                &target_url,
            ])
            .args(["--margin", &MARGIN.to_string(), "--format", "json"])
            .output()
            .expect("dms-migrate runs");
        runs.push(started.elapsed());
        assert!(
            out.status.success(),
            "sequences sync failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
        changed = report["changed"].as_array().map_or(0, Vec::len);
    }
    runs.sort();
    let median = runs[RUNS / 2];
    let behind = sequences::behind(
        &sequences::read_sequences(&source, &[]).await.expect("read"),
        &sequences::read_sequences(&target, &[]).await.expect("read"),
    )
    .len();

    target.batch_execute(RESET_TARGET).await.expect("reset");
    let generated = generated_setvals(&source_url, &target_url);

    target.batch_execute(RESET_TARGET).await.expect("reset");
    let names: Vec<String> = source
        .query(
            "SELECT format('%I.%I', schemaname, sequencename) FROM pg_sequences ORDER BY 1 LIMIT $1",
            &[&i64::from(SAMPLE)],
        )
        .await
        .expect("names")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let sampled = per_sequence(&source_url, &target_url, &names);
    let extrapolated = sampled / SAMPLE * SEQUENCES;
    if std::env::var("BENCH_KEEP").as_deref() != Ok("1") {
        recreate(&lab, DATABASE, true).await;
    }

    println!(
        "Sequence sync of {SEQUENCES} sequences in {SCHEMAS} schemas (2 mixed-case, 1,000 descending), margin {MARGIN}; target sequences reset to never-called before each method"
    );
    println!();
    println!("| method | 10,000 sequences | notes |");
    println!("|---|---|---|");
    println!(
        "| dms-migrate sequences sync ({build} build, end to end) | {} | median of {RUNS} runs ({}), process start and connect included; {changed} changed, {behind} behind afterwards; never moves a sequence backwards |",
        seconds(median),
        runs.iter().map(|d| seconds(*d)).collect::<Vec<_>>().join(", ")
    );
    println!(
        "| guide's method done right: setval statements generated from the source, run in one psql session | {} | 2 psql processes; no check for missing or overflowing sequences, can move a sequence backwards |",
        seconds(generated)
    );
    println!();
    println!("Straw man, not a peer (nobody syncs sequences this way; kept to show what one process per sequence costs):");
    println!("| method | 10,000 sequences | notes |");
    println!("|---|---|---|");
    println!(
        "| one psql process per sequence (read source, setval target) | {} (EXTRAPOLATED) | measured {} for {SAMPLE} sampled sequences ({} psql processes); extrapolated to {SEQUENCES} |",
        seconds(extrapolated),
        seconds(sampled),
        SAMPLE * 2
    );
    println!();
    println!(
        "Goal: sync of {SEQUENCES} sequences <= {} end to end: {} ({:.1}x faster than the generated-setval session)",
        seconds(GOAL),
        if median <= GOAL { "MET" } else { "MISSED" },
        generated.as_secs_f64() / median.as_secs_f64()
    );
}
