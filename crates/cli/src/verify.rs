//! `dms-migrate verify`: is the target the source? Per table, exact row counts and an order-independent
//! checksum, grouped by ranges of the primary key so a difference is located; the schema objects of both
//! catalogs diffed; every target sequence ahead of the source. Read-only on both sides.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dms_core::errors::StepError;
use dms_core::pg::checks::{self, TableSelection};
use dms_core::pg::classify_pg_error;
use dms_core::pg::sequences::{self, Behind};
use dms_core::rules::schema_objects::SchemaObject;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;
use tokio_postgres::Client;

use crate::connection::{self, BothDatabases, Environment};
use crate::output::{Format, Outcome, Progress};
use crate::verify_rows::{self, TablePlan, TableResult};

const LONG_HELP: &str = "What is compared:
  Rows: each table (a partitioned table through its root) is split into ranges of its primary key's
  first column (about 50,000 rows each, boundaries sampled on the source). Both sides return the exact
  row count and the sum of a 64-bit hash of each row (hash_record_extended on PostgreSQL 14+, else of
  the row's text form with TimeZone, DateStyle, IntervalStyle, extra_float_digits and bytea_output
  pinned), so the order rows are stored in does not matter: first per chunk of up to 40 ranges, and
  for a chunk that differs, per range. A mismatch names the table and the key range. A table without
  a primary key is compared whole: a mismatch there cannot be located.
  Default: every range of every table.
  --sample N: exact row counts of every table, checksums of only N ranges per table, spread over the
  key space: faster, and a difference outside those ranges is missed.
  --exact: for each mismatching range (at most 10 per table, 1,000,000 rows per side), fetch both
  sides' keys and row hashes and name the rows that are missing, extra or different.
  Schema: tables, columns with types, primary keys, indexes, constraints, triggers, sequences, views,
  functions and types of the selected schemas, from one catalog read per side. A missing or different
  object fails; an object only the target has is a warning.
  Sequences: every source sequence must exist on the target and be ahead of it (sequences sync).
  DMS's own objects (awsdms_*) are left out, and so are the rows of the migration's sentinel table
  (each side's own bookkeeping).

Exit codes:
  0  the target matches the source (warnings allowed)
  1  a row, schema or sequence difference was found
  2  the command could not run (bad arguments, a database unreachable, a query refused); the reason is
     on stderr

Connections and passwords: see dms-migrate --help.";

#[derive(clap::Args, Debug)]
#[command(after_long_help = LONG_HELP)]
pub struct Args {
    #[command(flatten)]
    pub databases: BothDatabases,
    /// Only these schemas (exact names, e.g. Sales); default every non-system schema.
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub schemas: Vec<String>,
    /// For each mismatching range, name the rows that differ.
    #[arg(long)]
    pub exact: bool,
    /// Checksum only N ranges per table (row counts stay exact).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub sample: Option<u32>,
    /// Connections per side; tables and ranges are checked in parallel over them.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: u32,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// A difference between the two catalogs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SchemaDifference {
    pub kind: String,
    pub object: String,
    /// `missing-on-target`, `different` (fail) or `only-on-target` (warning).
    pub problem: &'static str,
    pub source: Option<String>,
    pub target: Option<String>,
}

#[derive(Serialize)]
struct Report<'a> {
    tables: &'a [TableResult],
    schema: &'a [SchemaDifference],
    sequences_behind: &'a [Behind],
    summary: Summary,
}

#[derive(Serialize, Clone, Copy)]
struct Summary {
    tables: usize,
    tables_mismatched: usize,
    source_rows: i64,
    target_rows: i64,
    schema_differences: usize,
    schema_warnings: usize,
    sequences_behind: usize,
}

/// A pair of connections, one per side, with the session pinned.
pub struct Pair {
    pub source: Client,
    pub target: Client,
}

/// Session settings both sides share so a value's text form (and so its hash) is the same on both, and
/// a guard that verify never writes. statement_timeout is raised: one statement scans up to
/// `verify_rows::CHUNK_ROWS` rows.
const SESSION: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres';
SET extra_float_digits = 3; SET bytea_output = 'hex'; SET xmloption = 'content'; SET lc_monetary = 'C';
SET standard_conforming_strings = on; SET default_transaction_read_only = on; SET statement_timeout = '30min'";

pub async fn run(args: Args, env: &Environment) -> Result<Outcome, StepError> {
    let progress = Progress::for_stderr();
    let (source, target) = args.databases.options(env)?;
    progress.say(&format!(
        "connecting {} times to {} and {}",
        args.jobs,
        source.describe(),
        target.describe()
    ));
    let connect_pair = || async {
        let (s, t) = tokio::try_join!(source.connect(), target.connect())?;
        tokio::try_join!(pin(&s, "source"), pin(&t, "target"))?;
        Ok::<_, StepError>(Pair {
            source: s,
            target: t,
        })
    };
    let mut pairs: Vec<Arc<Pair>> = stream::iter(0..args.jobs)
        .map(|_| async { connect_pair().await.map(Arc::new) })
        .buffer_unordered(args.jobs as usize)
        .try_collect()
        .await?;
    let main = pairs
        .pop()
        .ok_or_else(|| StepError::config("--jobs must be at least 1"))?;

    connection::refuse_unknown_schemas(&main.source, &args.schemas).await?;
    progress.say("reading both catalogs");
    let selection = if args.schemas.is_empty() {
        TableSelection::all()
    } else {
        TableSelection::schemas(&args.schemas)
    };
    let (source_objects, target_objects, source_seqs, target_seqs, tables) = tokio::try_join!(
        checks::read_inventory(&main.source, &selection),
        checks::read_inventory(&main.target, &selection),
        sequences::read_sequences(&main.source, &args.schemas),
        sequences::read_sequences(&main.target, &args.schemas),
        verify_rows::read_tables(&main.source, &main.target, &args.schemas),
    )?;
    let schema = diff_schema(&source_objects, &target_objects);
    let behind: Vec<Behind> = sequences::behind(&source_seqs, &target_seqs)
        .into_iter()
        .filter(|b| !b.name.starts_with("awsdms_"))
        .collect();

    pairs.push(main);
    let pool = Mutex::new(pairs);
    progress.say(&format!("planning ranges of {} tables", tables.len()));
    let plans: Vec<TablePlan> = stream::iter(tables)
        .map(|table| {
            with_pair(&pool, move |pair| async move {
                verify_rows::plan(&pair, table).await
            })
        })
        .buffer_unordered(args.jobs as usize)
        .try_collect()
        .await?;
    progress.say("counting and checksumming");
    let mut results = verify_rows::compare(&pool, plans, args.sample, args.jobs as usize).await?;
    if args.exact {
        progress.say("locating the rows of mismatching ranges");
        verify_rows::locate_rows(&pool, &mut results, args.jobs as usize).await?;
    }
    results.sort_by(|a, b| {
        (b.mismatched(), &a.schema, &a.name).cmp(&(a.mismatched(), &b.schema, &b.name))
    });

    let failing_schema = schema
        .iter()
        .filter(|d| d.problem != "only-on-target")
        .count();
    let summary = Summary {
        tables: results.len(),
        tables_mismatched: results.iter().filter(|t| t.mismatched()).count(),
        source_rows: results.iter().map(|t| t.source_rows).sum(),
        target_rows: results.iter().map(|t| t.target_rows).sum(),
        schema_differences: failing_schema,
        schema_warnings: schema.len() - failing_schema,
        sequences_behind: behind.len(),
    };
    match args.format {
        Format::Json => {
            let report = Report {
                tables: &results,
                schema: &schema,
                sequences_behind: &behind,
                summary,
            };
            let text = serde_json::to_string_pretty(&report)
                .map_err(|e| StepError::config(format!("rendering JSON: {e}")))?;
            println!("{text}");
        }
        Format::Text => print!("{}", render_text(&results, &schema, &behind, summary)),
    }
    Ok(
        if summary.tables_mismatched + summary.schema_differences + summary.sequences_behind > 0 {
            Outcome::Failed
        } else {
            Outcome::Ok
        },
    )
}

pub(crate) async fn pin(client: &Client, side: &str) -> Result<(), StepError> {
    client
        .batch_execute(SESSION)
        .await
        .map_err(|e| classify_pg_error(&format!("{side} session settings"), &e))
}

/// Runs `work` on a pair taken from the pool and gives the pair back. The callers bound concurrency to
/// the pool's size, so a pair is always free.
pub async fn with_pair<T, F, Fut>(pool: &Mutex<Vec<Arc<Pair>>>, work: F) -> Result<T, StepError>
where
    F: FnOnce(Arc<Pair>) -> Fut,
    Fut: std::future::Future<Output = Result<T, StepError>>,
{
    let pair = pool
        .lock()
        .map_err(|_| StepError::config("connection pool poisoned"))?
        .pop()
        .ok_or_else(|| StepError::config("no free connection (more work than --jobs)"))?;
    let result = work(Arc::clone(&pair)).await;
    if let Ok(mut free) = pool.lock() {
        free.push(pair);
    }
    result
}

/// Objects by (kind, name): missing on the target or different fail; only on the target warns.
pub fn diff_schema(source: &[SchemaObject], target: &[SchemaObject]) -> Vec<SchemaDifference> {
    let key = |o: &SchemaObject| (o.kind.as_str().to_string(), o.name.clone());
    let dms_own = |o: &SchemaObject| o.name.contains("awsdms_");
    let targets: HashMap<_, _> = target.iter().map(|o| (key(o), o)).collect();
    let sources: HashMap<_, _> = source.iter().map(|o| (key(o), o)).collect();
    let mut out = Vec::new();
    for s in source.iter().filter(|o| !dms_own(o)) {
        let (kind, name) = key(s);
        match targets.get(&(kind.clone(), name.clone())) {
            None => out.push(SchemaDifference {
                kind,
                object: name,
                problem: "missing-on-target",
                source: Some(s.detail.clone()),
                target: None,
            }),
            Some(t) if t.detail != s.detail => out.push(SchemaDifference {
                kind,
                object: name,
                problem: "different",
                source: Some(s.detail.clone()),
                target: Some(t.detail.clone()),
            }),
            Some(_) => {}
        }
    }
    for t in target.iter().filter(|o| !dms_own(o)) {
        if !sources.contains_key(&key(t)) {
            out.push(SchemaDifference {
                kind: t.kind.as_str().to_string(),
                object: t.name.clone(),
                problem: "only-on-target",
                source: None,
                target: Some(t.detail.clone()),
            });
        }
    }
    out
}

fn render_text(
    tables: &[TableResult],
    schema: &[SchemaDifference],
    behind: &[Behind],
    summary: Summary,
) -> String {
    let mut out = String::new();
    let mismatched: Vec<&TableResult> = tables.iter().filter(|t| t.mismatched()).collect();
    if !mismatched.is_empty() {
        out.push_str(&format!("ROW MISMATCHES ({})\n", mismatched.len()));
        for t in mismatched {
            out.push_str(&t.describe_mismatch());
        }
    }
    if !schema.is_empty() {
        out.push_str(&format!("SCHEMA DIFFERENCES ({})\n", schema.len()));
        for d in schema {
            let detail = match (&d.source, &d.target) {
                (Some(s), Some(t)) => format!(": source `{s}`, target `{t}`"),
                _ => String::new(),
            };
            out.push_str(&format!(
                "  {} {} {}{detail}\n",
                d.kind, d.object, d.problem
            ));
        }
    }
    if !behind.is_empty() {
        out.push_str(&format!(
            "SEQUENCES NOT AHEAD OF THE SOURCE ({}): run dms-migrate sequences sync\n",
            behind.len()
        ));
        for b in behind {
            out.push_str(&format!(
                "  {}  {:?}: source last {}, target next {}\n",
                b.qualified(),
                b.reason,
                b.source_last.map_or("-".into(), |v| v.to_string()),
                b.target_next.map_or("-".into(), |v| v.to_string())
            ));
        }
    }
    let matching = tables.len() - summary.tables_mismatched;
    out.push_str(&format!(
        "MATCHING TABLES ({matching})\n{} of {} tables differ ({} source rows, {} target rows); {} schema differences, {} schema warnings; {} sequences not ahead\n",
        summary.tables_mismatched,
        summary.tables,
        summary.source_rows,
        summary.target_rows,
        summary.schema_differences,
        summary.schema_warnings,
        summary.sequences_behind
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dms_core::rules::schema_objects::ObjectKind;

    fn obj(kind: ObjectKind, name: &str, detail: &str) -> SchemaObject {
        SchemaObject {
            kind,
            name: name.into(),
            table: None,
            detail: detail.into(),
            insert_requires_value: false,
        }
    }

    #[test]
    fn schema_diff_names_missing_different_and_extra() {
        let source = vec![
            obj(ObjectKind::Column, "s.t.a", "bigint not null"),
            obj(ObjectKind::Column, "s.t.b", "text"),
            obj(ObjectKind::Index, "s.t_b_idx", ""),
            obj(ObjectKind::Table, "public.awsdms_heartbeat", ""),
        ];
        let target = vec![
            obj(ObjectKind::Column, "s.t.a", "integer not null"),
            obj(ObjectKind::Column, "s.t.b", "text"),
            obj(ObjectKind::View, "s.v", ""),
        ];
        let diff: Vec<(String, String, &str)> = diff_schema(&source, &target)
            .into_iter()
            .map(|d| (d.kind, d.object, d.problem))
            .collect();
        assert_eq!(
            diff,
            vec![
                ("column".into(), "s.t.a".into(), "different"),
                ("index".into(), "s.t_b_idx".into(), "missing-on-target"),
                ("view".into(), "s.v".into(), "only-on-target"),
            ]
        );
    }
}
