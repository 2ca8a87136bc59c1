//! The DMS rules `dms-migrate plan` applies, as pure functions over what the catalog said (the reads are in
//! `plan.rs`): which columns DMS can range-segment, how many segments, the table-mapping and task-settings
//! documents, LobMaxSize as DMS counts LOB sizes, and the estimate. Every limit cites its DMS page.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};

/// https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TaskSettings.FullLoad.html:
/// "the maximum number of tables to load in parallel, set the MaxFullLoadSubTasks option. The default is 8;
/// the maximum value is 49". MaxFullLoadSubTasks "controls the number of tables or table segments to load
/// in parallel": a segment takes a subtask as a table does.
pub const DEFAULT_SUBTASKS: usize = 8;
pub const MAX_SUBTASKS: usize = 49;
/// Range columns of one `parallel-load` rule: at most 10 (the `ranges` type of
/// https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TableMapping.SelectionTransformation.Tablesettings.html).
pub const MAX_RANGE_COLUMNS: usize = 10;
/// Limited LOB mode's largest LobMaxSize, 102400 KB (100 MB), and the size above which it costs memory
/// (LobMaxSize × commit rate × LOB columns): https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.LOBSupport.html.
pub const MAX_LIMITED_LOB_KB: u64 = 102_400;
pub const LOB_MEMORY_KB: u64 = 63;
/// What DMS uses when LobMaxSize is not set.
pub const DEFAULT_LOB_KB: u64 = 32;
/// Tables with more rows than this are split when `--max-segment-rows` is not given.
pub const DEFAULT_MAX_SEGMENT_ROWS: u64 = 10_000_000;

/// How DMS's PostgreSQL source maps a column type
/// (https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Source.PostgreSQL.html#CHAP_Source-PostgreSQL-DataTypes):
/// TEXT, JSON, JSONB, XML, HSTORE, arrays (and VARCHAR without a length, which the catalog read passes as
/// `text`) become NCLOB, BYTEA becomes BLOB, REAL and DOUBLE become
/// REAL4/REAL8. DMS treats NCLOB and BLOB as LOBs even between two PostgreSQL databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DmsKind {
    Nclob,
    Blob,
    Float,
    Other,
}

impl DmsKind {
    /// `typname` and `typcategory` of the column's base type (a domain resolved to what it is over).
    pub fn of(typname: &str, typcategory: &str) -> DmsKind {
        match typname {
            "text" | "json" | "jsonb" | "xml" | "hstore" => DmsKind::Nclob,
            "bytea" => DmsKind::Blob,
            "float4" | "float8" => DmsKind::Float,
            _ if typcategory == "A" => DmsKind::Nclob,
            _ => DmsKind::Other,
        }
    }
}

/// One column a `parallel-load` `ranges` rule names.
#[derive(Debug, Clone)]
pub struct RangeColumn {
    pub name: String,
    pub kind: DmsKind,
    pub nullable: bool,
}

/// DMS's rules for `ranges` on a PostgreSQL source: at most 10 columns, none that DMS maps to a LOB or a
/// float; boundaries each as long as the columns. Rows with NULL in a range column are not loaded (no
/// segment holds them): a warning, since the rule is valid. Partitions cannot segment a PostgreSQL table
/// (`partitions-auto`/`partitions-list` are for other engines), so only `ranges` is accepted.
pub fn check_ranges(
    columns: &[RangeColumn],
    boundaries: &[Vec<String>],
) -> Result<Vec<String>, String> {
    if columns.is_empty() {
        return Err("a ranges rule needs at least one column".into());
    }
    if columns.len() > MAX_RANGE_COLUMNS {
        return Err(format!(
            "{} range columns: DMS takes at most {MAX_RANGE_COLUMNS}",
            columns.len()
        ));
    }
    for c in columns {
        match c.kind {
            DmsKind::Nclob | DmsKind::Blob => {
                return Err(format!(
                    "range column {} is a LOB for DMS ({:?}): DMS cannot segment on it",
                    c.name, c.kind
                ))
            }
            DmsKind::Float => {
                return Err(format!(
                    "range column {} is a floating-point column: DMS cannot segment on it",
                    c.name
                ))
            }
            DmsKind::Other => {}
        }
    }
    if let Some((i, b)) = boundaries
        .iter()
        .enumerate()
        .find(|(_, b)| b.len() != columns.len())
    {
        return Err(format!(
            "boundary {} has {} value(s) for {} range column(s)",
            i + 1,
            b.len(),
            columns.len()
        ));
    }
    Ok(columns
        .iter()
        .filter(|c| c.nullable)
        .map(|c| {
            format!(
                "range column {} allows NULL: DMS does not load rows whose range columns hold NULL",
                c.name
            )
        })
        .collect())
}

/// Segments for a table of `rows`: one per `max_segment_rows` started, at most MAX_SUBTASKS (more could
/// never run at once).
pub fn segment_count(rows: u64, max_segment_rows: u64) -> usize {
    if rows <= max_segment_rows || max_segment_rows == 0 {
        return 1;
    }
    (rows.div_ceil(max_segment_rows) as usize).min(MAX_SUBTASKS)
}

/// `segments - 1` boundaries from the equi-depth histogram of the key (pg_stats.histogram_bounds: each
/// bucket holds the same share of rows), strictly increasing (a repeated value would make an empty
/// segment and is dropped).
pub fn boundaries_from_histogram(bounds: &[String], segments: usize) -> Vec<String> {
    if bounds.len() < 2 || segments < 2 {
        return Vec::new();
    }
    let buckets = bounds.len() - 1;
    let picked = (1..segments).map(|k| {
        let i = ((k * buckets) as f64 / segments as f64).round() as usize;
        bounds[i.min(buckets)].clone()
    });
    dedup_consecutive(picked)
}

/// Quantile values read from a sample, already at k/segments: drop repeats.
pub fn dedup_consecutive(values: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        if out.last() != Some(&v) {
            out.push(v);
        }
    }
    out
}

/// Where a table's boundaries came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BoundarySource {
    /// pg_stats.histogram_bounds of the key column (the table is analysed).
    PgStats,
    /// Quantiles of a TABLESAMPLE SYSTEM sample of at most SAMPLE_PAGES pages.
    Sample,
}

/// A table as the plan sees it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TablePlan {
    pub schema: String,
    pub table: String,
    pub partitioned: bool,
    pub estimated_rows: u64,
    pub bytes: u64,
    pub primary_key: Vec<String>,
    pub range_columns: Vec<String>,
    pub boundaries: Vec<String>,
    pub boundary_source: Option<BoundarySource>,
    /// Segments DMS loads: boundaries + 1.
    pub segments: usize,
}

/// The largest value of one LOB column, as DMS counts it: NCLOB in UTF-16 (2 bytes a character, 4 for a
/// character outside the Basic Multilingual Plane), BLOB in bytes.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LobColumn {
    pub schema: String,
    pub table: String,
    pub column: String,
    pub kind: DmsKind,
    pub max_bytes: u64,
    /// Every row read (`--exact-lobs`, or a table small enough to read whole); else a sample.
    pub exact: bool,
}

/// The LOB part of the task settings and why.
#[derive(Debug, Clone, PartialEq)]
pub struct LobDecision {
    pub full_lob_mode: bool,
    pub lob_max_size_kb: u64,
    pub reason: String,
}

/// Exact measurements get a 10% margin, sampled ones 50% (the sample can miss the largest value; the
/// stack's FailTasksOnLobTruncation then fails the task rather than cutting a value).
pub fn lob_decision(lobs: &[LobColumn]) -> LobDecision {
    let Some(largest) = lobs.iter().max_by_key(|l| l.max_bytes) else {
        return LobDecision {
            full_lob_mode: false,
            lob_max_size_kb: DEFAULT_LOB_KB,
            reason: format!("no column DMS maps to a LOB: DMS's default {DEFAULT_LOB_KB} KB"),
        };
    };
    let sampled = lobs.iter().any(|l| !l.exact);
    let margin = if sampled { 1.5 } else { 1.1 };
    // Never below DMS's default: values written during CDC can outgrow what was measured, and the stack
    // fails the task on a truncated LOB rather than cutting it.
    let kb = (((largest.max_bytes as f64 * margin) / 1024.0).ceil() as u64).max(DEFAULT_LOB_KB);
    let what = format!(
        "largest LOB value {} bytes as DMS counts it ({}.{}.{}, {:?}{})",
        largest.max_bytes,
        largest.schema,
        largest.table,
        largest.column,
        largest.kind,
        if largest.exact {
            ", every row read"
        } else {
            ", sampled"
        }
    );
    if kb > MAX_LIMITED_LOB_KB {
        return LobDecision {
            full_lob_mode: true,
            lob_max_size_kb: 0,
            reason: format!(
                "{what}: above limited LOB mode's {MAX_LIMITED_LOB_KB} KB, so full LOB mode (slower: LOBs move one at a time)"
            ),
        };
    }
    LobDecision {
        full_lob_mode: false,
        lob_max_size_kb: kb,
        reason: format!(
            "{what} plus {}%, at least DMS's default {DEFAULT_LOB_KB} KB: LobMaxSize {kb} KB",
            ((margin - 1.0) * 100.0).round()
        ),
    }
}

/// MaxFullLoadSubTasks: enough for every segment of the segmented tables to load at once, never below
/// DMS's default, never above its maximum.
pub fn max_full_load_subtasks(tables: &[TablePlan]) -> usize {
    let segments: usize = tables
        .iter()
        .filter(|t| t.segments > 1)
        .map(|t| t.segments)
        .sum();
    segments.clamp(DEFAULT_SUBTASKS, MAX_SUBTASKS)
}

/// The table-mapping document: include every table of each schema (as the stack's default mapping
/// does), then one table-settings rule per segmented table.
pub fn table_mappings(schemas: &[String], tables: &[TablePlan]) -> Value {
    let mut rules = Vec::new();
    let mut id = 0;
    for schema in schemas {
        id += 1;
        rules.push(json!({
            "rule-type": "selection",
            "rule-id": id.to_string(),
            "rule-name": format!("include-{id}"),
            "object-locator": {"schema-name": schema, "table-name": "%"},
            "rule-action": "include"
        }));
    }
    for t in tables.iter().filter(|t| t.segments > 1) {
        id += 1;
        rules.push(json!({
            "rule-type": "table-settings",
            "rule-id": id.to_string(),
            "rule-name": format!("parallel-load-{id}"),
            "object-locator": {"schema-name": t.schema, "table-name": t.table},
            "parallel-load": {
                "type": "ranges",
                "columns": t.range_columns,
                "boundaries": t.boundaries.iter().map(|b| vec![b.clone()]).collect::<Vec<_>>()
            }
        }));
    }
    json!({ "rules": rules })
}

/// The task settings that depend on the data, in the shape ReplicationTaskSettings takes (a partial
/// document: ModifyReplicationTask changes only the keys given).
pub fn task_settings(subtasks: usize, lob: &LobDecision) -> Value {
    let target_metadata = if lob.full_lob_mode {
        json!({"SupportLobs": true, "FullLobMode": true, "LimitedSizeLobMode": false, "LobChunkSize": 64})
    } else {
        json!({"SupportLobs": true, "FullLobMode": false, "LimitedSizeLobMode": true, "LobMaxSize": lob.lob_max_size_kb})
    };
    json!({
        "FullLoadSettings": {"MaxFullLoadSubTasks": subtasks},
        "TargetMetadata": target_metadata
    })
}

/// The dated price table kept in the repository.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PriceTable {
    pub as_of: String,
    pub regions: BTreeMap<String, RegionPrices>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionPrices {
    pub storage_gb_month: f64,
    pub instance_hour: BTreeMap<String, f64>,
}

pub fn price_table() -> Result<PriceTable, String> {
    serde_json::from_str(include_str!("../data/dms-prices.json"))
        .map_err(|e| format!("the built-in price table does not parse: {e}"))
}

/// The throughput model: one subtask moves between SLOW and FAST MB/s of table data (heap and TOAST, as
/// pg_table_size counts it), and the instance as a whole at most its vCPUs × the per-vCPU cap.
const SLOW_MB_S: f64 = 5.0;
const FAST_MB_S: f64 = 20.0;
const SLOW_PER_VCPU_MB_S: f64 = 10.0;
const FAST_PER_VCPU_MB_S: f64 = 40.0;
const HOURS_PER_MONTH: f64 = 730.0;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Estimate {
    pub instance_class: String,
    pub instance_rule: String,
    pub allocated_storage_gb: u64,
    pub storage_rule: String,
    pub throughput_model: String,
    pub full_load_hours_min: f64,
    pub full_load_hours_max: f64,
    pub region: String,
    pub prices_as_of: String,
    pub cost_usd_min: f64,
    pub cost_usd_max: f64,
    pub cost_rule: String,
}

/// Longest-processing-time-first over `slots`: the time the last slot finishes, for units in bytes at
/// `rate` bytes a second.
fn makespan_seconds(units: &[f64], slots: usize, rate: f64) -> f64 {
    let mut sorted = units.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut loads = vec![0.0_f64; slots.max(1)];
    for u in sorted {
        if let Some(min) = loads.iter_mut().min_by(|a, b| a.total_cmp(b)) {
            *min += u / rate;
        }
    }
    loads.into_iter().fold(0.0, f64::max)
}

pub fn estimate(
    tables: &[TablePlan],
    subtasks: usize,
    lob: &LobDecision,
    region: &str,
    prices: &PriceTable,
) -> Result<Estimate, String> {
    let region_prices = prices.regions.get(region).ok_or_else(|| {
        format!(
            "--region {region}: the price table (dated {}) has {}",
            prices.as_of,
            prices
                .regions
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let vcpus = match subtasks.div_ceil(4).max(2) {
        0..=2 => 2,
        3..=4 => 4,
        5..=8 => 8,
        _ => 16,
    };
    let size = match vcpus {
        2 => "large",
        4 => "xlarge",
        8 => "2xlarge",
        _ => "4xlarge",
    };
    let memory_bound = lob.full_lob_mode || lob.lob_max_size_kb > LOB_MEMORY_KB;
    let family = if memory_bound { "r6i" } else { "c6i" };
    let instance_class = format!("dms.{family}.{size}");
    let hourly = *region_prices
        .instance_hour
        .get(&instance_class)
        .ok_or_else(|| format!("the price table has no {instance_class} in {region}"))?;
    let total_bytes: f64 = tables.iter().map(|t| t.bytes as f64).sum();
    let units: Vec<f64> = tables
        .iter()
        .flat_map(|t| std::iter::repeat_n(t.bytes as f64 / t.segments as f64, t.segments))
        .collect();
    let mb = 1024.0 * 1024.0;
    let seconds = |per_subtask: f64, per_vcpu: f64| {
        makespan_seconds(&units, subtasks, per_subtask * mb)
            .max(total_bytes / (per_vcpu * vcpus as f64 * mb))
    };
    let hours_min = seconds(FAST_MB_S, FAST_PER_VCPU_MB_S) / 3600.0;
    let hours_max = seconds(SLOW_MB_S, SLOW_PER_VCPU_MB_S) / 3600.0;
    let gib = total_bytes / (1024.0 * mb);
    let storage = (50.0 + (gib * 0.1).ceil()).min(6144.0) as u64;
    let cost = |hours: f64| {
        let billed = hours.ceil().max(1.0);
        let dollars = billed * hourly
            + storage as f64 * region_prices.storage_gb_month * billed / HOURS_PER_MONTH;
        (dollars * 100.0).round() / 100.0
    };
    // Hundredths of an hour, rounded up: a small load shows 0.01 h rather than nothing.
    let round2 = |h: f64| (h * 100.0).ceil() / 100.0;
    Ok(Estimate {
        instance_rule: format!(
            "one vCPU per 4 parallel subtasks, at least 2 ({subtasks} subtasks: {vcpus} vCPUs); {} ({})",
            if memory_bound { "memory-optimized r6i" } else { "compute-optimized c6i" },
            if memory_bound {
                "LOBs above 63 KB or full LOB mode: DMS allocates LobMaxSize × commit rate × LOB columns"
            } else {
                "no LOB above 63 KB"
            }
        ),
        instance_class,
        allocated_storage_gb: storage,
        storage_rule: "50 GB (DMS's default) plus 10% of the data to load, for task logs and changes cached during the full load; at most 6144".into(),
        throughput_model: format!(
            "each subtask moves {SLOW_MB_S}-{FAST_MB_S} MB/s of table data (pg_table_size), the instance at most {SLOW_PER_VCPU_MB_S}-{FAST_PER_VCPU_MB_S} MB/s per vCPU; segments and tables scheduled largest first over MaxFullLoadSubTasks"
        ),
        full_load_hours_min: round2(hours_min),
        full_load_hours_max: round2(hours_max),
        region: region.to_string(),
        prices_as_of: prices.as_of.clone(),
        cost_usd_min: cost(hours_min),
        cost_usd_max: cost(hours_max),
        cost_rule: "instance hours (whole hours, at least one) plus storage for those hours, full load only: add the hours CDC runs until cutover".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, kind: DmsKind) -> RangeColumn {
        RangeColumn {
            name: name.into(),
            kind,
            nullable: false,
        }
    }

    #[test]
    fn dms_maps_postgres_types_as_its_page_says() {
        assert_eq!(DmsKind::of("text", "S"), DmsKind::Nclob);
        assert_eq!(DmsKind::of("jsonb", "U"), DmsKind::Nclob);
        assert_eq!(DmsKind::of("json", "U"), DmsKind::Nclob);
        assert_eq!(DmsKind::of("_int4", "A"), DmsKind::Nclob);
        assert_eq!(DmsKind::of("bytea", "U"), DmsKind::Blob);
        assert_eq!(DmsKind::of("float8", "N"), DmsKind::Float);
        assert_eq!(DmsKind::of("float4", "N"), DmsKind::Float);
        assert_eq!(DmsKind::of("int8", "N"), DmsKind::Other);
        assert_eq!(DmsKind::of("varchar", "S"), DmsKind::Other);
        assert_eq!(DmsKind::of("numeric", "N"), DmsKind::Other);
    }

    #[test]
    fn ten_range_columns_pass_eleven_are_refused() {
        let ten: Vec<_> = (0..10)
            .map(|i| col(&format!("c{i}"), DmsKind::Other))
            .collect();
        let b = vec![vec!["1".to_string(); 10]];
        assert_eq!(check_ranges(&ten, &b), Ok(vec![]));
        let mut eleven = ten.clone();
        eleven.push(col("c10", DmsKind::Other));
        let err = check_ranges(&eleven, &[vec!["1".to_string(); 11]]).unwrap_err();
        assert!(err.contains("at most 10"), "{err}");
    }

    #[test]
    fn lob_and_float_range_columns_are_refused_and_nulls_warned() {
        for kind in [DmsKind::Nclob, DmsKind::Blob, DmsKind::Float] {
            let err = check_ranges(&[col("k", kind)], &[vec!["1".into()]]).unwrap_err();
            assert!(err.contains("cannot segment"), "{kind:?}: {err}");
        }
        let mut nullable = col("k", DmsKind::Other);
        nullable.nullable = true;
        let warnings = check_ranges(&[nullable], &[vec!["1".into()]]).unwrap();
        assert!(warnings[0].contains("does not load rows"), "{warnings:?}");
        let err =
            check_ranges(&[col("a", DmsKind::Other)], &[vec!["1".into(), "2".into()]]).unwrap_err();
        assert!(err.contains("boundary 1 has 2"), "{err}");
    }

    #[test]
    fn segments_stop_at_49_subtasks() {
        assert_eq!(segment_count(10, 10), 1);
        assert_eq!(segment_count(11, 10), 2);
        assert_eq!(segment_count(490, 10), 49);
        assert_eq!(segment_count(491, 10), 49);
        assert_eq!(segment_count(1_000_000, 10), 49);
    }

    fn table(name: &str, segments: usize, bytes: u64) -> TablePlan {
        TablePlan {
            schema: "app".into(),
            table: name.into(),
            partitioned: false,
            estimated_rows: 0,
            bytes,
            primary_key: vec!["id".into()],
            range_columns: vec!["id".into()],
            boundaries: (1..segments).map(|i| (i * 100).to_string()).collect(),
            boundary_source: Some(BoundarySource::PgStats),
            segments,
        }
    }

    #[test]
    fn subtasks_count_segments_between_the_default_and_49() {
        assert_eq!(max_full_load_subtasks(&[table("a", 1, 1)]), 8);
        assert_eq!(
            max_full_load_subtasks(&[table("a", 7, 1), table("b", 5, 1), table("c", 1, 1)]),
            12
        );
        assert_eq!(
            max_full_load_subtasks(&[table("a", 49, 1), table("b", 2, 1)]),
            49
        );
    }

    #[test]
    fn histogram_boundaries_are_even_quantiles_without_repeats() {
        let bounds: Vec<String> = (0..=100).map(|i| (i * 10).to_string()).collect();
        assert_eq!(
            boundaries_from_histogram(&bounds, 4),
            vec!["250", "500", "750"]
        );
        let flat = vec!["1".to_string(); 101];
        assert_eq!(boundaries_from_histogram(&flat, 4), vec!["1"]);
        assert!(boundaries_from_histogram(&bounds, 1).is_empty());
    }

    fn lob(bytes: u64, exact: bool) -> LobColumn {
        LobColumn {
            schema: "app".into(),
            table: "docs".into(),
            column: "body".into(),
            kind: DmsKind::Nclob,
            max_bytes: bytes,
            exact,
        }
    }

    #[test]
    fn lob_max_size_has_a_margin_and_full_lob_mode_above_100_mb() {
        assert_eq!(lob_decision(&[]).lob_max_size_kb, DEFAULT_LOB_KB);
        assert_eq!(
            lob_decision(&[lob(10_240, true)]).lob_max_size_kb,
            DEFAULT_LOB_KB
        );
        assert_eq!(lob_decision(&[lob(40_960, true)]).lob_max_size_kb, 44);
        assert_eq!(lob_decision(&[lob(40_960, false)]).lob_max_size_kb, 60);
        // 100 MB / 1.1 still fits limited mode; just above it does not.
        let fits = lob_decision(&[lob(95_325_000, true)]);
        assert!(
            !fits.full_lob_mode && fits.lob_max_size_kb <= MAX_LIMITED_LOB_KB,
            "{fits:?}"
        );
        let full = lob_decision(&[lob(95_500_000, true)]);
        assert!(full.full_lob_mode, "{full:?}");
        assert!(full.reason.contains("full LOB mode"), "{}", full.reason);
        let settings = task_settings(8, &full);
        assert_eq!(settings["TargetMetadata"]["FullLobMode"], true);
        assert_eq!(settings["TargetMetadata"]["LimitedSizeLobMode"], false);
    }

    #[test]
    fn estimate_picks_a_class_by_subtasks_and_lobs_and_prices_it() {
        let prices = price_table().unwrap();
        let small_lobs = lob_decision(&[lob(1000, true)]);
        let tables = [
            table("a", 10, 10 * 1024 * 1024 * 1024),
            table("b", 1, 1 << 30),
        ];
        let e = estimate(&tables, 10, &small_lobs, "us-east-1", &prices).unwrap();
        assert_eq!(e.instance_class, "dms.c6i.xlarge");
        assert!(e.full_load_hours_min < e.full_load_hours_max, "{e:?}");
        assert!(
            e.cost_usd_min > 0.0 && e.cost_usd_min <= e.cost_usd_max,
            "{e:?}"
        );
        assert_eq!(e.allocated_storage_gb, 52);
        let big_lobs = lob_decision(&[lob(1 << 20, true)]);
        let e = estimate(&tables, 49, &big_lobs, "us-east-1", &prices).unwrap();
        assert_eq!(e.instance_class, "dms.r6i.4xlarge");
        let err = estimate(&tables, 8, &small_lobs, "xx-nowhere-1", &prices).unwrap_err();
        assert!(err.contains("us-east-1"), "{err}");
    }

    #[test]
    fn one_big_table_bounds_the_duration_until_it_is_segmented() {
        let prices = price_table().unwrap();
        let lobs = lob_decision(&[]);
        let whole = estimate(&[table("a", 1, 100 << 30)], 8, &lobs, "us-east-1", &prices).unwrap();
        let split = estimate(&[table("a", 8, 100 << 30)], 8, &lobs, "us-east-1", &prices).unwrap();
        assert!(
            split.full_load_hours_max < whole.full_load_hours_max / 3.0,
            "{whole:?} {split:?}"
        );
    }

    #[test]
    fn mapping_selects_each_schema_and_segments_only_split_tables() {
        let mapping = table_mappings(
            &["app".into(), "Billing".into()],
            &[table("orders", 4, 1), table("small", 1, 1)],
        );
        let rules = mapping["rules"].as_array().unwrap();
        assert_eq!(
            rules.len(),
            3,
            "two selections and one table-settings rule: {mapping}"
        );
        assert_eq!(rules[1]["object-locator"]["schema-name"], "Billing");
        assert_eq!(rules[2]["rule-id"], "3");
        assert_eq!(rules[2]["object-locator"]["table-name"], "orders");
        assert_eq!(rules[2]["parallel-load"]["type"], "ranges");
        assert_eq!(rules[2]["parallel-load"]["columns"], json!(["id"]));
        assert_eq!(
            rules[2]["parallel-load"]["boundaries"],
            json!([["100"], ["200"], ["300"]])
        );
    }
}
