//! The row comparison of `dms-migrate verify`: ranges of the primary key's first column sampled on the
//! source, then per range the exact count and the sum of a 64-bit row hash on both sides. A range is
//! assigned with `width_bucket` inside one scan, so a table costs one statement per side per chunk of
//! ranges rather than one per range. Key columns of collatable types are compared with `COLLATE "C"` on
//! both sides, so a range holds the same rows whatever the databases' collations.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dms_core::errors::StepError;
use dms_core::pg::classify_pg_error;
use dms_core::rules::sentinel;
use dms_core::rules::sql_ident::{quote, quote_if_needed};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use crate::verify::{with_pair, Pair};

/// Rows per range: small enough to locate a difference, large enough that ranges stay few.
pub const ROWS_PER_RANGE: i64 = 50_000;
/// Rows one statement scans at most (estimated), so statements stay short and big tables spread over
/// the connections.
pub const CHUNK_ROWS: i64 = 2_000_000;
const MAX_RANGES: i64 = 10_000;
/// `--exact`: ranges examined per table, rows fetched per side and range, rows named per range.
const EXACT_RANGES: usize = 10;
const EXACT_FETCH_ROWS: i64 = 1_000_000;
const EXACT_NAMED_ROWS: usize = 20;

#[derive(Debug, Clone)]
pub struct TableInfo {
    pub schema: String,
    pub name: String,
    pub primary_key: Vec<String>,
    pub key_type: Option<String>,
    pub key_collatable: bool,
    pub estimated_rows: i64,
    pub on_target: bool,
    /// Both servers have `hash_record_extended` (PostgreSQL 14+).
    pub record_hash: bool,
}

impl TableInfo {
    fn sql_name(&self) -> String {
        format!("{}.{}", quote(&self.schema), quote(&self.name))
    }

    fn display(&self) -> String {
        format!(
            "{}.{}",
            quote_if_needed(&self.schema),
            quote_if_needed(&self.name)
        )
    }

    /// The first key column as compared: `r."id"`, with `COLLATE "C"` where collations apply.
    fn key_expr(&self) -> Option<String> {
        let first = self.primary_key.first()?;
        let collate = if self.key_collatable {
            " COLLATE \"C\""
        } else {
            ""
        };
        Some(format!("r.{}{collate}", quote(first)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashMethod {
    /// `hash_record_extended(row, 0)`: each column hashed by its type, no text conversion.
    Record,
    /// `hashtextextended(row::text, 0)`: for types without an extended hash function, or servers < 14.
    Text,
}

impl HashMethod {
    fn expr(self) -> &'static str {
        match self {
            HashMethod::Record => "hash_record_extended(r, 0)",
            HashMethod::Text => "hashtextextended(r::text, 0)",
        }
    }
}

pub struct TablePlan {
    pub info: TableInfo,
    pub method: HashMethod,
    /// Sorted lower bounds of ranges 1..=n (range 0 is everything below the first).
    pub boundaries: Vec<String>,
}

impl TablePlan {
    fn ranges(&self) -> usize {
        self.boundaries.len() + 1
    }

    fn lower(&self, range: usize) -> Option<&String> {
        range.checked_sub(1).and_then(|i| self.boundaries.get(i))
    }

    fn upper(&self, range: usize) -> Option<&String> {
        self.boundaries.get(range)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RangeMismatch {
    pub range: usize,
    /// The first key column's value where the range starts (inclusive); None: from the lowest.
    pub lower: Option<String>,
    /// Where the next range starts (exclusive); None: to the highest.
    pub upper: Option<String>,
    pub source_rows: i64,
    pub target_rows: i64,
    pub checksums_match: bool,
    /// With --exact: the rows that differ (at most 20 named).
    pub rows: Vec<RowDifference>,
    pub rows_differing: Option<usize>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RowDifference {
    /// The primary key, as `(v1,v2)`.
    pub key: String,
    /// `missing-on-target`, `extra-on-target` or `different`.
    pub problem: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableResult {
    pub schema: String,
    pub name: String,
    pub table: String,
    pub primary_key: Vec<String>,
    pub method: Option<HashMethod>,
    pub missing_on_target: bool,
    /// False for a table without a primary key: compared whole, a difference cannot be located.
    pub localised: bool,
    pub ranges: usize,
    pub ranges_compared: usize,
    pub source_rows: i64,
    pub target_rows: i64,
    pub mismatches: Vec<RangeMismatch>,
    #[serde(skip)]
    boundaries: Vec<String>,
    #[serde(skip)]
    info: Option<TableInfo>,
}

impl TableResult {
    /// The plan this result was compared with, to check some of its ranges again.
    pub fn plan(&self) -> Option<TablePlan> {
        Some(TablePlan {
            info: self.info.clone()?,
            method: self.method?,
            boundaries: self.boundaries.clone(),
        })
    }

    pub fn mismatched(&self) -> bool {
        self.missing_on_target
            || self.source_rows != self.target_rows
            || !self.mismatches.is_empty()
    }

    /// Text lines naming the table, each mismatching range and, with --exact, the rows.
    pub fn describe_mismatch(&self) -> String {
        if self.missing_on_target {
            return format!("  {}: missing on the target\n", self.table);
        }
        let mut out = format!(
            "  {}: {} source rows, {} target rows{}\n",
            self.table,
            self.source_rows,
            self.target_rows,
            if self.localised {
                ""
            } else {
                " (no primary key: compared whole, the difference cannot be located)"
            }
        );
        let key = self.primary_key.first().map(|k| quote_if_needed(k));
        for m in &self.mismatches {
            let range = match (&key, &m.lower, &m.upper) {
                (None, _, _) | (Some(_), None, None) => "the whole table".to_string(),
                (Some(k), Some(lo), Some(hi)) => format!("{k} >= {lo} and < {hi}"),
                (Some(k), Some(lo), None) => format!("{k} >= {lo}"),
                (Some(k), None, Some(hi)) => format!("{k} < {hi}"),
            };
            out.push_str(&format!(
                "    range {range}: {} source rows, {} target rows{}\n",
                m.source_rows,
                m.target_rows,
                if m.checksums_match {
                    ""
                } else {
                    ", checksums differ"
                }
            ));
            for row in &m.rows {
                out.push_str(&format!("      key {}: {}\n", row.key, row.problem));
            }
            if let Some(n) = m.rows_differing.filter(|&n| n > m.rows.len()) {
                out.push_str(&format!(
                    "      ... {} more rows differ\n",
                    n - m.rows.len()
                ));
            }
        }
        out
    }
}

/// The source's tables (partitions through their root; DMS's own and the migration's sentinel table left
/// out) and which exist on the target. The sentinel table is each side's own bookkeeping (a freeze's
/// record of the roles it made read-only, round-trip rows in flight), not the application's data.
pub async fn read_tables(
    source: &Client,
    target: &Client,
    schemas: &[String],
) -> Result<Vec<TableInfo>, StepError> {
    const SOURCE_SQL: &str = r#"
SELECT n.nspname, c.relname,
  CASE WHEN c.relkind = 'p' THEN
    (SELECT coalesce(sum(greatest(pc.reltuples::int8, pg_relation_size(pc.oid) / 100)), 0)::int8
       FROM pg_partition_tree(c.oid) pt JOIN pg_class pc ON pc.oid = pt.relid WHERE pt.isleaf)
  ELSE greatest(c.reltuples::int8, pg_relation_size(c.oid) / 100) END AS estimated_rows,
  (SELECT array_agg(a.attname::text ORDER BY k.ord)
     FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
     JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
    WHERE i.indrelid = c.oid AND i.indisprimary) AS primary_key,
  (SELECT format_type(a.atttypid, NULL) FROM pg_index i
     JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
    WHERE i.indrelid = c.oid AND i.indisprimary) AS key_type,
  (SELECT t.typcollation <> 0 FROM pg_index i
     JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
     JOIN pg_type t ON t.oid = a.atttypid
    WHERE i.indrelid = c.oid AND i.indisprimary) AS key_collatable,
  current_setting('server_version_num')::int AS version
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'
  AND (cardinality($1::text[]) = 0 OR n.nspname = ANY($1::text[]))
  AND c.relname NOT LIKE 'awsdms\_%' AND c.relname <> $2::text
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')"#;
    const TARGET_SQL: &str = r#"
SELECT n.nspname, c.relname, current_setting('server_version_num')::int
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND (cardinality($1::text[]) = 0 OR n.nspname = ANY($1::text[]))"#;
    let (source_rows, target_rows) = tokio::try_join!(
        async {
            source
                .query(SOURCE_SQL, &[&schemas, &sentinel::TABLE])
                .await
                .map_err(|e| classify_pg_error("source tables", &e))
        },
        async {
            target
                .query(TARGET_SQL, &[&schemas])
                .await
                .map_err(|e| classify_pg_error("target tables", &e))
        }
    )?;
    let on_target: std::collections::HashSet<(String, String)> =
        target_rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let target_version: i32 = target_rows.first().map_or(0, |r| r.get(2));
    Ok(source_rows
        .iter()
        .map(|r| {
            let schema: String = r.get("nspname");
            let name: String = r.get("relname");
            let version: i32 = r.get("version");
            TableInfo {
                on_target: on_target.contains(&(schema.clone(), name.clone())),
                primary_key: r
                    .get::<_, Option<Vec<String>>>("primary_key")
                    .unwrap_or_default(),
                key_type: r.get("key_type"),
                key_collatable: r.get::<_, Option<bool>>("key_collatable").unwrap_or(false),
                estimated_rows: r.get("estimated_rows"),
                record_hash: version >= 140000
                    && (target_version >= 140000 || target_rows.is_empty()),
                schema,
                name,
            }
        })
        .collect())
}

/// On the source: which hash the table allows, and its range boundaries from a sample of its pages.
pub async fn plan(pair: &Pair, info: TableInfo) -> Result<TablePlan, StepError> {
    let client = &pair.source;
    let what = |step: &str| format!("{} {step}", info.display());
    let mut method = HashMethod::Text;
    if info.record_hash {
        let probe = format!(
            "SELECT {} FROM {} r LIMIT 1",
            HashMethod::Record.expr(),
            info.sql_name()
        );
        method = match client.query(&probe, &[]).await {
            Ok(_) => HashMethod::Record,
            // A column type without an extended hash function (json, point, xml...).
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_FUNCTION) => HashMethod::Text,
            Err(e) => return Err(classify_pg_error(&what("hash probe"), &e)),
        };
    }
    let mut boundaries = Vec::new();
    if let (Some(key), Some(_)) = (info.key_expr(), &info.key_type) {
        if info.estimated_rows > ROWS_PER_RANGE && info.on_target {
            let ranges = (info.estimated_rows / ROWS_PER_RANGE + 1).min(MAX_RANGES);
            // SYSTEM sampling picks whole pages: ask for plenty of rows, and once more with ten times
            // the pages when too few came back.
            let mut percent =
                (100.0 * (ranges * 200) as f64 / info.estimated_rows as f64).min(100.0);
            let mut sample: Vec<String> = Vec::new();
            for _ in 0..2 {
                let sql = format!(
                    "SELECT k::text FROM (SELECT DISTINCT {key} AS k FROM {} r TABLESAMPLE SYSTEM ({percent:.6})) s ORDER BY 1{}",
                    info.sql_name(),
                    if info.key_collatable { " COLLATE \"C\"" } else { "" }
                );
                sample = client
                    .query(&sql, &[])
                    .await
                    .map_err(|e| classify_pg_error(&what("range sample"), &e))?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                if sample.len() as i64 >= ranges * 10 || percent >= 100.0 {
                    break;
                }
                percent = (percent * 10.0).min(100.0);
            }
            // Evenly spaced over the sorted sample; the first value would only make an empty range 0.
            let ranges = (ranges as usize).min(sample.len());
            boundaries = (1..ranges)
                .map(|j| sample[j * sample.len() / ranges].clone())
                .collect();
            boundaries.dedup();
        }
    }
    Ok(TablePlan {
        info,
        method,
        boundaries,
    })
}

/// One statement's worth of work on both sides.
struct Unit {
    table: usize,
    /// Ranges first..=last, or None: a plain count of the whole table (`--sample`).
    ranges: Option<(usize, usize)>,
}

/// A row count and the sum of the row hashes (as text: a numeric beyond 64 bits).
pub type Totals = (i64, String);

struct UnitResult {
    table: usize,
    /// (range, source count/sum, target count/sum)
    ranges: Vec<(usize, Totals, Totals)>,
    /// Whole-table counts, for count-only units.
    counts: Option<(i64, i64)>,
    /// A chunk whose totals matched: (ranges it covers, source rows, target rows).
    matched_chunk: Option<(usize, i64, i64)>,
}

/// Counts and checksums every planned table over the pool.
pub async fn compare(
    pool: &Mutex<Vec<Arc<Pair>>>,
    plans: Vec<TablePlan>,
    sample: Option<u32>,
    jobs: usize,
) -> Result<Vec<TableResult>, StepError> {
    let per_chunk = (CHUNK_ROWS / ROWS_PER_RANGE) as usize;
    let mut units = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        if !p.info.on_target {
            continue;
        }
        let n = p.ranges();
        match sample {
            Some(k) => {
                units.push(Unit {
                    table: i,
                    ranges: None,
                });
                let k = (k as usize).min(n);
                let mut picked: Vec<usize> = (0..k).map(|j| j * n / k).collect();
                picked.dedup();
                units.extend(picked.into_iter().map(|r| Unit {
                    table: i,
                    ranges: Some((r, r)),
                }));
            }
            None => units.extend((0..n).step_by(per_chunk).map(|first| Unit {
                table: i,
                ranges: Some((first, (first + per_chunk - 1).min(n - 1))),
            })),
        }
    }
    let plans_ref = &plans;
    let done: Vec<UnitResult> = stream::iter(units)
        .map(|unit| {
            with_pair(pool, move |pair| async move {
                run_unit(&pair, &plans_ref[unit.table], unit).await
            })
        })
        .buffer_unordered(jobs)
        .try_collect()
        .await?;
    let mut results: Vec<TableResult> = plans
        .into_iter()
        .map(|p| TableResult {
            schema: p.info.schema.clone(),
            name: p.info.name.clone(),
            table: p.info.display(),
            primary_key: p.info.primary_key.clone(),
            method: p.info.on_target.then_some(p.method),
            missing_on_target: !p.info.on_target,
            localised: !p.info.primary_key.is_empty(),
            ranges: p.ranges(),
            ranges_compared: 0,
            source_rows: 0,
            target_rows: 0,
            mismatches: Vec::new(),
            boundaries: p.boundaries,
            info: Some(p.info),
        })
        .collect();
    for unit in done {
        let t = &mut results[unit.table];
        if let Some((s, tg)) = unit.counts {
            t.source_rows = s;
            t.target_rows = tg;
        }
        if let Some((ranges, s, tg)) = unit.matched_chunk {
            t.ranges_compared += ranges;
            if sample.is_none() {
                t.source_rows += s;
                t.target_rows += tg;
            }
        }
        for (range, (sc, ss), (tc, ts)) in unit.ranges {
            t.ranges_compared += 1;
            if sample.is_none() {
                t.source_rows += sc;
                t.target_rows += tc;
            }
            if sc != tc || ss != ts {
                t.mismatches.push(RangeMismatch {
                    range,
                    lower: range
                        .checked_sub(1)
                        .and_then(|i| t.boundaries.get(i))
                        .cloned(),
                    upper: t.boundaries.get(range).cloned(),
                    source_rows: sc,
                    target_rows: tc,
                    checksums_match: ss == ts,
                    rows: Vec::new(),
                    rows_differing: None,
                });
            }
        }
        t.mismatches.sort_by_key(|m| m.range);
    }
    Ok(results)
}

/// One range of a planned table counted and checksummed again on both sides: one statement per side,
/// bounded by the range's key values (the whole table only when it has no primary key).
pub async fn recheck(
    pair: &Pair,
    plan: &TablePlan,
    range: usize,
) -> Result<(Totals, Totals), StepError> {
    let unit = Unit {
        table: 0,
        ranges: Some((range, range)),
    };
    let result = run_unit(pair, plan, unit).await?;
    let empty = || (0i64, "0".to_string());
    Ok(result
        .ranges
        .into_iter()
        .next()
        .map(|(_, s, t)| (s, t))
        .unwrap_or_else(|| (empty(), empty())))
}

/// One range of `plan` cut into pieces of about `rows` rows each, at the source's own keys in it (one
/// statement reading that range through the key): a plan whose ranges `first..=last` are the pieces, the
/// others lying outside the range. None for a table without a primary key (its range is the whole table).
pub async fn split(
    pair: &Pair,
    plan: &TablePlan,
    range: usize,
    rows: i64,
) -> Result<Option<(TablePlan, usize, usize)>, StepError> {
    let Some(key) = plan.info.key_expr() else {
        return Ok(None);
    };
    if plan.info.key_type.is_none() {
        return Ok(None);
    }
    let (filter, params) = range_filter(plan, range, range, 1);
    let sql = format!(
        "SELECT k::text FROM (SELECT {key} AS k, row_number() OVER (ORDER BY {key}) AS n FROM {} r{filter}) s WHERE n % {} = 0 ORDER BY n",
        plan.info.sql_name(),
        rows.max(2)
    );
    let bound: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    let interior: Vec<String> = pair
        .source
        .query(&sql, &bound)
        .await
        .map_err(|e| {
            classify_pg_error(
                &format!("source {}: splitting a range", plan.info.display()),
                &e,
            )
        })?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let lower = plan.lower(range).cloned();
    let first = usize::from(lower.is_some());
    let last = first + interior.len();
    let mut boundaries: Vec<String> = lower.into_iter().collect();
    boundaries.extend(interior);
    boundaries.extend(plan.upper(range).cloned());
    Ok(Some((
        TablePlan {
            info: plan.info.clone(),
            method: plan.method,
            boundaries,
        },
        first,
        last,
    )))
}

/// The ranges `first..=last` of a plan that differ now, with both sides' totals (one aggregate when they
/// all match).
pub async fn differing_ranges(
    pair: &Pair,
    plan: &TablePlan,
    first: usize,
    last: usize,
) -> Result<Vec<(usize, Totals, Totals)>, StepError> {
    let unit = Unit {
        table: 0,
        ranges: Some((first, last)),
    };
    let result = run_unit(pair, plan, unit).await?;
    Ok(result
        .ranges
        .into_iter()
        .filter(|(_, s, t)| s != t)
        .collect())
}

impl TablePlan {
    /// Whether a range of this plan is the whole table, however large (no primary key to bound it by).
    pub fn whole_table(&self) -> bool {
        self.info.primary_key.is_empty()
    }

    pub fn display(&self) -> String {
        self.info.display()
    }

    /// The range's bounds as text, e.g. `id >= 100 and < 200`.
    pub fn describe_range(&self, range: usize) -> String {
        let key = self.info.primary_key.first().map(|k| quote_if_needed(k));
        match (key, self.lower(range), self.upper(range)) {
            (None, _, _) | (Some(_), None, None) => "the whole table".to_string(),
            (Some(k), Some(lo), Some(hi)) => format!("{k} >= {lo} and < {hi}"),
            (Some(k), Some(lo), None) => format!("{k} >= {lo}"),
            (Some(k), None, Some(hi)) => format!("{k} < {hi}"),
        }
    }
}

/// `WHERE` over ranges first..=last of the first key column, with the parameters it binds.
fn range_filter(plan: &TablePlan, first: usize, last: usize, next: usize) -> (String, Vec<String>) {
    let (Some(key), Some(ty)) = (plan.info.key_expr(), &plan.info.key_type) else {
        return (String::new(), Vec::new());
    };
    let mut parts = Vec::new();
    let mut params = Vec::new();
    if let Some(lo) = plan.lower(first) {
        params.push(lo.clone());
        parts.push(format!("{key} >= ${}::text::{ty}", next + params.len() - 1));
    }
    if let Some(hi) = plan.upper(last) {
        params.push(hi.clone());
        parts.push(format!("{key} < ${}::text::{ty}", next + params.len() - 1));
    }
    if parts.is_empty() {
        (String::new(), params)
    } else {
        (format!(" WHERE {}", parts.join(" AND ")), params)
    }
}

async fn run_unit(pair: &Pair, plan: &TablePlan, unit: Unit) -> Result<UnitResult, StepError> {
    let table = plan.info.sql_name();
    let Some((first, last)) = unit.ranges else {
        let sql = format!("SELECT count(*) FROM {table} r");
        let (s, t) = both(pair, &plan.info, &sql, &[]).await?;
        let count = |rows: &[tokio_postgres::Row]| rows.first().map_or(0, |r| r.get::<_, i64>(0));
        return Ok(UnitResult {
            table: unit.table,
            ranges: Vec::new(),
            counts: Some((count(&s), count(&t))),
            matched_chunk: None,
        });
    };
    // The chunk's totals first: one plain aggregate, which the server can run in parallel workers. Only
    // when they differ is the chunk broken down into its ranges (a GROUP BY the planner sorts).
    if first != last {
        let (filter, params) = range_filter(plan, first, last, 1);
        let sql = format!(
            "SELECT count(*), coalesce(sum({}), 0)::text FROM {table} r{filter}",
            plan.method.expr()
        );
        let bound: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let (s, t) = both(pair, &plan.info, &sql, &bound).await?;
        let total = |rows: &[tokio_postgres::Row]| {
            rows.first()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)))
        };
        if let (Some(s), Some(t)) = (total(&s), total(&t)) {
            if s == t {
                return Ok(UnitResult {
                    table: unit.table,
                    ranges: Vec::new(),
                    counts: None,
                    matched_chunk: Some((last - first + 1, s.0, t.0)),
                });
            }
        }
    }
    let bucket = match (plan.info.key_expr(), &plan.info.key_type) {
        (Some(key), Some(ty)) if !plan.boundaries.is_empty() => {
            format!("width_bucket({key}, $1::text[]::{ty}[])")
        }
        _ => "0".to_string(),
    };
    let uses_array = bucket != "0";
    let (filter, params) = range_filter(plan, first, last, if uses_array { 2 } else { 1 });
    let sql = format!(
        "SELECT {bucket}::int AS range, count(*), coalesce(sum({}), 0)::text FROM {table} r{filter} GROUP BY 1",
        plan.method.expr()
    );
    let mut bound: Vec<&(dyn ToSql + Sync)> = Vec::new();
    if uses_array {
        bound.push(&plan.boundaries);
    }
    bound.extend(params.iter().map(|p| p as &(dyn ToSql + Sync)));
    let (s, t) = both(pair, &plan.info, &sql, &bound).await?;
    let by_range = |rows: &[tokio_postgres::Row]| -> HashMap<usize, Totals> {
        rows.iter()
            .map(|r| {
                (
                    usize::try_from(r.get::<_, i32>(0)).unwrap_or(0),
                    (r.get(1), r.get(2)),
                )
            })
            .collect()
    };
    let (s, t) = (by_range(&s), by_range(&t));
    let empty = (0i64, "0".to_string());
    Ok(UnitResult {
        table: unit.table,
        ranges: (first..=last)
            .map(|r| {
                (
                    r,
                    s.get(&r).cloned().unwrap_or_else(|| empty.clone()),
                    t.get(&r).cloned().unwrap_or_else(|| empty.clone()),
                )
            })
            .collect(),
        counts: None,
        matched_chunk: None,
    })
}

async fn both(
    pair: &Pair,
    info: &TableInfo,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<(Vec<tokio_postgres::Row>, Vec<tokio_postgres::Row>), StepError> {
    tokio::try_join!(
        async {
            pair.source
                .query(sql, params)
                .await
                .map_err(|e| classify_pg_error(&format!("source {}", info.display()), &e))
        },
        async {
            pair.target
                .query(sql, params)
                .await
                .map_err(|e| classify_pg_error(&format!("target {}", info.display()), &e))
        }
    )
}

/// `--exact`: for each mismatching range of a table with a key (at most `EXACT_RANGES` per table), the
/// keys and row hashes of both sides, diffed.
pub async fn locate_rows(
    pool: &Mutex<Vec<Arc<Pair>>>,
    results: &mut [TableResult],
    jobs: usize,
) -> Result<(), StepError> {
    let mut work = Vec::new();
    for (ti, t) in results.iter().enumerate() {
        if !t.localised || t.missing_on_target {
            continue;
        }
        for mi in 0..t.mismatches.len().min(EXACT_RANGES) {
            work.push((ti, mi));
        }
    }
    let results_ref = &*results;
    let found: Vec<(usize, usize, Vec<RowDifference>, usize)> = stream::iter(work)
        .map(|(ti, mi)| {
            with_pair(pool, move |pair| async move {
                let t = &results_ref[ti];
                let (rows, total) = diff_range(&pair, t, &t.mismatches[mi]).await?;
                Ok((ti, mi, rows, total))
            })
        })
        .buffer_unordered(jobs)
        .try_collect()
        .await?;
    for (ti, mi, rows, total) in found {
        let m = &mut results[ti].mismatches[mi];
        m.rows = rows;
        m.rows_differing = Some(total);
    }
    Ok(())
}

async fn diff_range(
    pair: &Pair,
    table: &TableResult,
    range: &RangeMismatch,
) -> Result<(Vec<RowDifference>, usize), StepError> {
    let Some(info) = &table.info else {
        return Ok((Vec::new(), 0));
    };
    let plan = TablePlan {
        info: info.clone(),
        method: table.method.unwrap_or(HashMethod::Text),
        boundaries: table.boundaries.clone(),
    };
    let key_row = plan
        .info
        .primary_key
        .iter()
        .map(|k| format!("r.{}", quote(k)))
        .collect::<Vec<_>>()
        .join(", ");
    let (filter, params) = range_filter(&plan, range.range, range.range, 1);
    let sql = format!(
        "SELECT ROW({key_row})::text, {}::text FROM {} r{filter} LIMIT {EXACT_FETCH_ROWS}",
        plan.method.expr(),
        plan.info.sql_name()
    );
    let bound: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    let (s, t) = both(pair, &plan.info, &sql, &bound).await?;
    let map = |rows: &[tokio_postgres::Row]| -> HashMap<String, String> {
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    };
    let (s, t) = (map(&s), map(&t));
    let mut diffs: Vec<RowDifference> = s
        .iter()
        .filter_map(|(k, h)| match t.get(k) {
            None => Some(RowDifference {
                key: k.clone(),
                problem: "missing-on-target",
            }),
            Some(th) if th != h => Some(RowDifference {
                key: k.clone(),
                problem: "different",
            }),
            Some(_) => None,
        })
        .chain(
            t.keys()
                .filter(|k| !s.contains_key(*k))
                .map(|k| RowDifference {
                    key: k.clone(),
                    problem: "extra-on-target",
                }),
        )
        .collect();
    diffs.sort_by(|a, b| a.key.cmp(&b.key));
    let total = diffs.len();
    diffs.truncate(EXACT_NAMED_ROWS);
    Ok((diffs, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(boundaries: &[&str], collatable: bool) -> TablePlan {
        TablePlan {
            info: TableInfo {
                schema: "Sales".into(),
                name: "Orders".into(),
                primary_key: vec!["Id".into(), "line".into()],
                key_type: Some(if collatable { "text" } else { "bigint" }.into()),
                key_collatable: collatable,
                estimated_rows: 0,
                on_target: true,
                record_hash: true,
            },
            method: HashMethod::Record,
            boundaries: boundaries.iter().map(|b| b.to_string()).collect(),
        }
    }

    #[test]
    fn range_filter_binds_only_the_bounds_a_range_has() {
        let p = plan(&["10", "20"], false);
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            range_filter(&p, 0, 0, 2),
            (
                " WHERE r.\"Id\" < $2::text::bigint".to_string(),
                owned(&["10"])
            )
        );
        assert_eq!(
            range_filter(&p, 1, 1, 1),
            (
                " WHERE r.\"Id\" >= $1::text::bigint AND r.\"Id\" < $2::text::bigint".to_string(),
                owned(&["10", "20"])
            )
        );
        assert_eq!(range_filter(&p, 0, 2, 1), (String::new(), Vec::new()));
        let text = plan(&["m"], true);
        assert_eq!(
            range_filter(&text, 1, 1, 1).0,
            " WHERE r.\"Id\" COLLATE \"C\" >= $1::text::text"
        );
    }
}
