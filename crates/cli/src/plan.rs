//! `dms-migrate plan`: sizes the DMS task from the source's own statistics before anything is deployed
//! (docs/cli.md#plan). Reads the catalog (sizes, row estimates, partitioning, primary keys, LOB columns),
//! chooses `parallel-load` range boundaries on the primary key so segments hold about the same number of
//! rows, measures LOB values as DMS counts them, and prints the table mappings, the task settings and an
//! estimate. The rules themselves are `plan_rules`.

use dms_core::errors::StepError;
use dms_core::pg::classify_pg_error;
use dms_core::rules::sql_ident::{quote, quote_if_needed};
use serde_json::{json, Value};
use tokio_postgres::Client;

use crate::connection::{self, refuse_unknown_schemas, Environment, Side};
use crate::output::{Format, Outcome, Progress};
use crate::plan_rules::{
    self, check_ranges, BoundarySource, DmsKind, LobColumn, RangeColumn, TablePlan,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Source (Aurora) URL; default $PGSOURCE. TLS defaults to sslmode=require.
    #[arg(long, env = "PGSOURCE", hide_env_values = true, value_name = "URL")]
    pub source: Option<String>,
    /// Only these schemas (exact names); default every non-system schema.
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub schemas: Vec<String>,
    /// Split a table into parallel-load ranges of about this many rows (default 10,000,000).
    #[arg(long, value_name = "N", default_value_t = plan_rules::DEFAULT_MAX_SEGMENT_ROWS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_segment_rows: u64,
    /// Read every row of every LOB column for its largest value, instead of a sample of each table.
    #[arg(long)]
    pub exact_lobs: bool,
    /// The region whose prices the estimate uses.
    #[arg(long, default_value = "us-east-1", value_name = "REGION")]
    pub region: String,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// A sample reads at most this many pages of a table (TABLESAMPLE SYSTEM, a fixed seed so that two runs
/// agree): pages of 8 kB, so at most 40 MB per table.
pub const SAMPLE_PAGES: f64 = 5000.0;

/// One row per ordinary or partitioned (root) table: size and row estimate summed over its leaf
/// partitions (pg_partition_tree lists no row for a plain table: it is its own leaf), whether every leaf
/// has statistics (reltuples -1: never vacuumed or analysed), the primary key's columns with the base type's name and
/// category (domains resolved), and its LOB columns the same way. Set-based (grouped CTEs joined once):
/// correlated subqueries per table made it quadratic in the number of tables.
const TABLES_SQL: &str = "
WITH t AS (
  SELECT c.oid, n.nspname::text AS schema, c.relname::text AS name, c.relkind = 'p' AS partitioned
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
    AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
    AND (cardinality($1::text[]) = 0 OR n.nspname = ANY($1))
),
leaves AS (
  SELECT t.oid,
         sum(greatest(lc.reltuples, 0))::float8 AS rows,
         bool_and(lc.reltuples >= 0) AS counted,
         sum(pg_table_size(lc.oid))::int8 AS bytes,
         sum(lc.relpages)::int8 AS pages,
         sum(pg_relation_size(lc.oid))::int8 AS heap_bytes
  FROM t
  JOIN LATERAL (SELECT relid FROM pg_partition_tree(t.oid) WHERE isleaf AND t.partitioned
                UNION ALL SELECT t.oid WHERE NOT t.partitioned) pt ON true
  JOIN pg_class lc ON lc.oid = pt.relid
  GROUP BY t.oid
),
cols AS (
  SELECT a.attrelid, a.attnum, a.attname::text AS name, NOT a.attnotnull AS nullable,
         -- varchar without a length is an NCLOB for DMS, as text is (the rule of the source.lob_columns
         -- check, crates/dms-core/src/pg/checks/sql/mapped_columns.sql)
         CASE WHEN coalesce(bt.typname, ty.typname) = 'varchar'
                   AND (CASE WHEN bt.oid IS NULL THEN a.atttypmod ELSE ty.typtypmod END) = -1
              THEN 'text' ELSE coalesce(bt.typname, ty.typname) END::text AS typname,
         coalesce(bt.typcategory, ty.typcategory)::text AS typcategory
  FROM pg_attribute a
  JOIN pg_type ty ON ty.oid = a.atttypid
  LEFT JOIN pg_type bt ON ty.typtype = 'd' AND bt.oid = ty.typbasetype
  WHERE a.attrelid IN (SELECT oid FROM t) AND a.attnum > 0 AND NOT a.attisdropped
),
pk AS (
  SELECT con.conrelid AS oid,
         array_agg(c.name ORDER BY k.ord) AS names,
         array_agg(c.typname || ':' || c.typcategory || ':' || c.nullable::text ORDER BY k.ord) AS types
  FROM pg_constraint con
  CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
  JOIN cols c ON c.attrelid = con.conrelid AND c.attnum = k.attnum
  WHERE con.contype = 'p' AND con.conrelid IN (SELECT oid FROM t)
  GROUP BY con.conrelid
),
lobs AS (
  SELECT c.attrelid AS oid,
         array_agg(c.name ORDER BY c.attnum) AS names,
         array_agg(c.typname || ':' || c.typcategory ORDER BY c.attnum) AS types
  FROM cols c
  WHERE c.typname IN ('text', 'json', 'jsonb', 'xml', 'hstore', 'bytea') OR c.typcategory = 'A'
  GROUP BY c.attrelid
)
SELECT t.schema, t.name, t.partitioned,
       coalesce(l.rows, 0), coalesce(l.counted, true), coalesce(l.bytes, 0), coalesce(l.heap_bytes, 0),
       coalesce(pk.names, '{}'), coalesce(pk.types, '{}'),
       coalesce(lobs.names, '{}'), coalesce(lobs.types, '{}')
FROM t LEFT JOIN leaves l ON l.oid = t.oid
LEFT JOIN pk ON pk.oid = t.oid
LEFT JOIN lobs ON lobs.oid = t.oid
ORDER BY 1, 2";

/// The equi-depth histogram of a column, where ANALYZE made one (the inherited row for a partitioned
/// table's root).
const HISTOGRAM_SQL: &str = "
SELECT histogram_bounds::text::text[] FROM pg_stats
WHERE schemaname = $1 AND tablename = $2 AND attname = $3 AND histogram_bounds IS NOT NULL
ORDER BY inherited DESC LIMIT 1";

struct CatalogTable {
    schema: String,
    name: String,
    partitioned: bool,
    rows: f64,
    counted: bool,
    bytes: i64,
    heap_bytes: i64,
    pk: Vec<RangeColumn>,
    lobs: Vec<(String, DmsKind)>,
}

fn split_type(spec: &str) -> (DmsKind, bool) {
    let mut parts = spec.split(':');
    let typname = parts.next().unwrap_or("");
    let category = parts.next().unwrap_or("");
    let nullable = parts.next() == Some("true");
    (DmsKind::of(typname, category), nullable)
}

async fn read_tables(client: &Client, schemas: &[String]) -> Result<Vec<CatalogTable>, StepError> {
    let rows = client
        .query(TABLES_SQL, &[&schemas])
        .await
        .map_err(|e| classify_pg_error("source catalog", &e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let pk_names: Vec<String> = r.get(7);
            let pk_types: Vec<String> = r.get(8);
            let lob_names: Vec<String> = r.get(9);
            let lob_types: Vec<String> = r.get(10);
            CatalogTable {
                schema: r.get(0),
                name: r.get(1),
                partitioned: r.get(2),
                rows: r.get(3),
                counted: r.get(4),
                bytes: r.get(5),
                heap_bytes: r.get(6),
                pk: pk_names
                    .into_iter()
                    .zip(pk_types.iter())
                    .map(|(name, spec)| {
                        let (kind, nullable) = split_type(spec);
                        RangeColumn {
                            name,
                            kind,
                            nullable,
                        }
                    })
                    .collect(),
                lobs: lob_names
                    .into_iter()
                    .zip(lob_types.iter())
                    .map(|(name, spec)| (name, split_type(spec).0))
                    .collect(),
            }
        })
        .collect())
}

fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote(schema), quote(table))
}

fn display_name(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_if_needed(schema), quote_if_needed(table))
}

/// TABLESAMPLE SYSTEM's percentage for a table of `pages`: all of a small table, SAMPLE_PAGES of a big one.
fn sample_percent(heap_bytes: i64) -> f64 {
    let pages = (heap_bytes as f64 / 8192.0).max(1.0);
    (SAMPLE_PAGES * 100.0 / pages).min(100.0)
}

/// Quantiles at k/segments of the key in a page sample, and the row count the sample implies.
async fn sample_boundaries(
    client: &Client,
    t: &CatalogTable,
    column: &str,
    segments: usize,
) -> Result<(Vec<String>, f64), StepError> {
    let fractions: Vec<f64> = (1..segments).map(|k| k as f64 / segments as f64).collect();
    let percent = sample_percent(t.heap_bytes);
    let sql = format!(
        "SELECT coalesce(percentile_disc($1::float8[]) WITHIN GROUP (ORDER BY {col})::text[], '{{}}'), count(*)::float8 \
         FROM {table} TABLESAMPLE SYSTEM ({percent}) REPEATABLE (18)",
        col = quote(column),
        table = qualified(&t.schema, &t.name),
    );
    let row = client
        .query_one(&sql, &[&fractions])
        .await
        .map_err(|e| classify_pg_error(&format!("sample of {}", t.name), &e))?;
    let values: Vec<Option<String>> = row.get(0);
    let sampled: f64 = row.get(1);
    Ok((
        plan_rules::dedup_consecutive(values.into_iter().flatten()),
        sampled * 100.0 / percent,
    ))
}

/// The largest value of each LOB column of a table, as DMS counts it: BLOB bytes; NCLOB UTF-16 bytes,
/// 2 a character plus 2 more for each character outside the Basic Multilingual Plane (4 bytes in UTF-8
/// and in UTF-16). One statement per table, over every row (`exact`) or a page sample.
async fn measure_lobs(
    client: &Client,
    t: &CatalogTable,
    exact: bool,
) -> Result<Vec<LobColumn>, StepError> {
    if t.lobs.is_empty() {
        return Ok(Vec::new());
    }
    let percent = if exact {
        100.0
    } else {
        sample_percent(t.heap_bytes)
    };
    let measures: Vec<String> = t
        .lobs
        .iter()
        .map(|(name, kind)| {
            let c = quote(name);
            match kind {
                DmsKind::Blob => format!("coalesce(max(octet_length({c})), 0)::int8"),
                _ => format!(
                    "coalesce(max(CASE WHEN octet_length({c}::text) = char_length({c}::text) THEN 2 * char_length({c}::text) \
                     ELSE 2 * char_length({c}::text) + 2 * char_length(regexp_replace({c}::text, '[^\\U00010000-\\U0010FFFF]', '', 'g')) END), 0)::int8"
                ),
            }
        })
        .collect();
    let sampling = if percent < 100.0 {
        format!(" TABLESAMPLE SYSTEM ({percent}) REPEATABLE (18)")
    } else {
        String::new()
    };
    let sql = format!(
        "SELECT {} FROM {}{sampling}",
        measures.join(", "),
        qualified(&t.schema, &t.name)
    );
    let row = client
        .query_one(&sql, &[])
        .await
        .map_err(|e| classify_pg_error(&format!("LOB sizes of {}", t.name), &e))?;
    Ok(t.lobs
        .iter()
        .enumerate()
        .map(|(i, (name, kind))| LobColumn {
            schema: t.schema.clone(),
            table: t.name.clone(),
            column: name.clone(),
            kind: *kind,
            max_bytes: row.get::<_, i64>(i).max(0) as u64,
            exact: percent >= 100.0,
        })
        .collect())
}

/// A table's plan: its segments (boundaries on the primary key's first column when DMS can use it) and
/// the warnings the plan cannot fix.
async fn plan_table(
    client: &Client,
    t: &CatalogTable,
    max_segment_rows: u64,
    warnings: &mut Vec<String>,
) -> Result<TablePlan, StepError> {
    let name = display_name(&t.schema, &t.name);
    let mut plan = TablePlan {
        schema: t.schema.clone(),
        table: t.name.clone(),
        partitioned: t.partitioned,
        estimated_rows: t.rows.max(0.0) as u64,
        bytes: t.bytes.max(0) as u64,
        primary_key: t.pk.iter().map(|c| c.name.clone()).collect(),
        range_columns: Vec::new(),
        boundaries: Vec::new(),
        boundary_source: None,
        segments: 1,
    };
    // A table never analysed or vacuumed has no row estimate: the sample says how many rows it holds.
    let mut rows = plan.estimated_rows;
    let first = t.pk.first();
    // An empty heap has no rows to count.
    if !t.counted && t.heap_bytes > 0 {
        if let Some(key) = first.filter(|k| k.kind == DmsKind::Other) {
            let (_, sampled_rows) = sample_boundaries(client, t, &key.name, 1).await?;
            rows = sampled_rows.round() as u64;
            plan.estimated_rows = rows;
        }
    }
    let wanted = plan_rules::segment_count(rows, max_segment_rows);
    if wanted < 2 {
        return Ok(plan);
    }
    let Some(key) = first else {
        warnings.push(format!(
            "{name}: about {rows} rows and no primary key: DMS loads it in one thread (add a primary key, or accept the time)"
        ));
        return Ok(plan);
    };
    let range = [key.clone()];
    if let Err(why) = check_ranges(&range, &[vec![String::new()]]) {
        warnings.push(format!(
            "{name}: about {rows} rows loaded in one thread: {why} (the primary key's first column)"
        ));
        return Ok(plan);
    }
    if t.partitioned {
        warnings.push(format!(
            "{name}: partitioned; DMS does not segment a PostgreSQL table by partition, so the plan splits it by key range"
        ));
    }
    if rows.div_ceil(max_segment_rows) as usize > plan_rules::MAX_SUBTASKS {
        warnings.push(format!(
            "{name}: about {rows} rows would need {} segments of {max_segment_rows} rows; DMS runs at most {} subtasks, so {} segments",
            rows.div_ceil(max_segment_rows),
            plan_rules::MAX_SUBTASKS,
            plan_rules::MAX_SUBTASKS
        ));
    }
    let histogram: Option<Vec<String>> = client
        .query_opt(HISTOGRAM_SQL, &[&t.schema, &t.name, &key.name])
        .await
        .map_err(|e| classify_pg_error("pg_stats", &e))?
        .map(|r| r.get(0));
    let (boundaries, source) = match histogram {
        Some(bounds) if t.counted => (
            plan_rules::boundaries_from_histogram(&bounds, wanted),
            BoundarySource::PgStats,
        ),
        _ => (
            sample_boundaries(client, t, &key.name, wanted).await?.0,
            BoundarySource::Sample,
        ),
    };
    let extra = check_ranges(
        &range,
        &boundaries
            .iter()
            .map(|b| vec![b.clone()])
            .collect::<Vec<_>>(),
    )
    .map_err(StepError::payload)?;
    warnings.extend(extra.into_iter().map(|w| format!("{name}: {w}")));
    plan.segments = boundaries.len() + 1;
    plan.range_columns = vec![key.name.clone()];
    plan.boundaries = boundaries;
    plan.boundary_source = Some(source);
    Ok(plan)
}

/// The whole plan document.
pub async fn build(client: &Client, args: &Args, progress: &Progress) -> Result<Value, StepError> {
    refuse_unknown_schemas(client, &args.schemas).await?;
    let prices = plan_rules::price_table().map_err(StepError::payload)?;
    progress.say("reading the source catalog");
    let catalog = read_tables(client, &args.schemas).await?;
    let mut warnings = Vec::new();
    let mut tables = Vec::with_capacity(catalog.len());
    let mut lobs = Vec::new();
    for t in &catalog {
        tables.push(plan_table(client, t, args.max_segment_rows, &mut warnings).await?);
        // An empty heap holds no value to measure (an empty TOAST table still has its index's pages).
        if t.heap_bytes > 0 {
            lobs.extend(measure_lobs(client, t, args.exact_lobs).await?);
        }
    }
    if lobs.iter().any(|l| !l.exact) {
        warnings.push(format!(
            "LOB sizes of tables larger than {SAMPLE_PAGES} pages come from a sample of {SAMPLE_PAGES} pages each: a larger value may exist (the task then fails on it rather than cut it); --exact-lobs reads every row"
        ));
    }
    let lob = plan_rules::lob_decision(&lobs);
    let subtasks = plan_rules::max_full_load_subtasks(&tables);
    let estimate = plan_rules::estimate(&tables, subtasks, &lob, &args.region, &prices)
        .map_err(StepError::payload)?;
    let mut schemas: Vec<String> = catalog.iter().map(|t| t.schema.clone()).collect();
    schemas.dedup();
    if schemas.is_empty() {
        return Err(StepError::payload(
            "the source has no table to plan (in the schemas given)",
        ));
    }
    let segmented = tables.iter().filter(|t| t.segments > 1).count();
    Ok(json!({
        "tableMappings": plan_rules::table_mappings(&schemas, &tables),
        "taskSettings": plan_rules::task_settings(subtasks, &lob),
        "estimate": estimate,
        "lob": {"fullLobMode": lob.full_lob_mode, "lobMaxSizeKb": lob.lob_max_size_kb, "reason": lob.reason, "columns": lobs},
        "tables": tables.iter().filter(|t| t.segments > 1).collect::<Vec<_>>(),
        "summary": {
            "tables": tables.len(),
            "segmentedTables": segmented,
            "segments": tables.iter().filter(|t| t.segments > 1).map(|t| t.segments).sum::<usize>(),
            "maxSegmentRows": args.max_segment_rows,
            "maxFullLoadSubTasks": subtasks,
        },
        "warnings": warnings,
    }))
}

fn render_text(plan: &Value) -> String {
    let mut out = String::new();
    let s = &plan["summary"];
    out.push_str(&format!(
        "{} tables, {} split into {} parallel-load segments (about {} rows each at most); MaxFullLoadSubTasks {}\n",
        s["tables"], s["segmentedTables"], s["segments"], s["maxSegmentRows"], s["maxFullLoadSubTasks"]
    ));
    for t in plan["tables"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<40} {:>12} rows  {:>3} segments on {}  (boundaries from {})\n",
            display_name(
                t["schema"].as_str().unwrap_or(""),
                t["table"].as_str().unwrap_or("")
            ),
            t["estimatedRows"],
            t["segments"],
            t["rangeColumns"][0].as_str().unwrap_or(""),
            t["boundarySource"].as_str().unwrap_or("")
        ));
    }
    out.push_str(&format!(
        "LOBs: {}\n",
        plan["lob"]["reason"].as_str().unwrap_or("")
    ));
    let e = &plan["estimate"];
    out.push_str(&format!(
        "Estimate: {} ({}), {} GB storage; full load {}-{} h; {}-{} USD ({}, prices of {})\n",
        e["instanceClass"].as_str().unwrap_or(""),
        e["instanceRule"].as_str().unwrap_or(""),
        e["allocatedStorageGb"],
        e["fullLoadHoursMin"],
        e["fullLoadHoursMax"],
        e["costUsdMin"],
        e["costUsdMax"],
        e["region"].as_str().unwrap_or(""),
        e["pricesAsOf"].as_str().unwrap_or("")
    ));
    out.push_str(&format!(
        "  model: {}\n",
        e["throughputModel"].as_str().unwrap_or("")
    ));
    let warnings = plan["warnings"].as_array().cloned().unwrap_or_default();
    if !warnings.is_empty() {
        out.push_str(&format!("WARNINGS ({})\n", warnings.len()));
        for w in warnings {
            out.push_str(&format!("  {}\n", w.as_str().unwrap_or("")));
        }
    }
    out.push_str(
        "The plan file is `--format json`; docs/console.md says how the stack applies it.\n",
    );
    out
}

pub async fn run(args: Args, env: &Environment) -> Result<Outcome, StepError> {
    let progress = Progress::for_stderr();
    let options = connection::options(Side::Source, args.source.as_deref(), env)?;
    progress.say(&format!("connecting to {}", options.describe()));
    let client = options.connect().await?;
    let plan = build(&client, &args, &progress).await?;
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&plan).unwrap_or_else(|_| plan.to_string())
        ),
        Format::Text => print!("{}", render_text(&plan)),
    }
    Ok(Outcome::Ok)
}
