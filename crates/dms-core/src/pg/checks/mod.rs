//! The SQL checks (docs/checks.md), shared by the `premigration-assessment` Lambda and `dms-migrate preflight`.
//!
//! Each check reads the catalogs once for all mapped tables (one statement per check, never one per table;
//! the statements of a side are pipelined on one connection, or two: see `Connections`) and reports
//! `{"id","status","summary","objects","fix"}` with qualified, correctly quoted names and a fix that can be
//! pasted. Severity is what DMS would suffer: `fail` only for what breaks the migration or silently loses
//! changes, `warn` for what needs attention but does not block.
//!
//! ```ignore
//! let source = run_source_checks(&source_client, &config).await?;
//! let target = run_target_checks(&target_client, Some(&source.facts), &config).await?;
//! ```

mod catalog;
mod fallback;
mod source;
mod target;

use serde::{Deserialize, Serialize};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

use crate::errors::StepError;
use crate::pg::classify_pg_error;
use crate::rules::state::{CheckCounts, CheckSummary, MAX_NAMES};
use crate::string_enum::string_enum;

pub use crate::rules::table_selection::TableSelection;
pub use fallback::{run_source_checks_and_fallback, run_target_fallback_checks};
pub use source::{
    run_source_checks, run_source_checks_on, run_transaction_checks, SourceFacts, SourceReport,
};
pub use target::{gather_target, run_target_checks, target_checks, TargetFacts};

/// The stable check ids (tests and users script against them).
pub mod ids {
    pub const SOURCE_VERSION: &str = "source.version";
    pub const SOURCE_WAL_LEVEL: &str = "source.wal_level";
    pub const SOURCE_WAL_SENDER_TIMEOUT: &str = "source.wal_sender_timeout";
    pub const SOURCE_MAX_WAL_SENDERS: &str = "source.max_wal_senders";
    pub const SOURCE_REPLICATION_SLOTS: &str = "source.replication_slots";
    pub const SOURCE_LEFTOVER_SLOTS: &str = "source.leftover_slots";
    pub const SOURCE_REPLICATION_ROLE: &str = "source.replication_role";
    pub const SOURCE_SELECT_PRIVILEGES: &str = "source.select_privileges";
    pub const SOURCE_PRIMARY_KEYS: &str = "source.primary_keys";
    pub const SOURCE_LOB_COLUMNS: &str = "source.lob_columns";
    pub const SOURCE_UNBOUNDED_NUMERIC: &str = "source.unbounded_numeric";
    pub const SOURCE_UNLOGGED_TABLES: &str = "source.unlogged_tables";
    pub const SOURCE_PARTITIONED_TABLES: &str = "source.partitioned_tables";
    pub const SOURCE_PREPARED_TRANSACTIONS: &str = "source.prepared_transactions";
    pub const SOURCE_LONG_TRANSACTIONS: &str = "source.long_transactions";
    pub const SOURCE_EXTENSIONS: &str = "source.extensions";
    pub const SOURCE_HEARTBEAT_SCHEMA: &str = "source.heartbeat_schema";

    pub const TARGET_VERSION: &str = "target.version";
    pub const TARGET_PRIVILEGES: &str = "target.privileges";
    pub const TARGET_SCHEMA_PRESENT: &str = "target.schema_present";
    pub const TARGET_SCHEMA_MATCHES: &str = "target.schema_matches";
    pub const TARGET_NOT_EMPTY: &str = "target.not_empty";
    pub const TARGET_EXTENSIONS: &str = "target.extensions";
    pub const TARGET_SESSION_REPLICATION_ROLE: &str = "target.session_replication_role";
    pub const TARGET_GENERATED_ALWAYS: &str = "target.generated_always";
    pub const TARGET_UNIQUE_WITH_PK: &str = "target.unique_with_pk";

    // The way back (docs/fallback.md): PlanetScale as the reverse DMS task's source, Aurora as its target.
    // `dms-migrate preflight` runs them unless `--no-fallback`; the premigration-assessment Lambda when the
    // stack's `EnableFallback` is `true`.
    pub const FALLBACK_TARGET_WAL_LEVEL: &str = "fallback.target_wal_level";
    pub const FALLBACK_TARGET_SLOT: &str = "fallback.target_slot";
    pub const FALLBACK_TARGET_REPLICATION_CAPACITY: &str = "fallback.target_replication_capacity";
    pub const FALLBACK_TARGET_WAL_KEEP_SIZE: &str = "fallback.target_wal_keep_size";
    pub const FALLBACK_SOURCE_PRIVILEGES: &str = "fallback.source_privileges";
    pub const FALLBACK_SOURCE_SESSION_REPLICATION_ROLE: &str =
        "fallback.source_session_replication_role";

    /// Every source check, in report order.
    pub const SOURCE: [&str; 17] = [
        SOURCE_VERSION,
        SOURCE_WAL_LEVEL,
        SOURCE_WAL_SENDER_TIMEOUT,
        SOURCE_MAX_WAL_SENDERS,
        SOURCE_REPLICATION_SLOTS,
        SOURCE_LEFTOVER_SLOTS,
        SOURCE_REPLICATION_ROLE,
        SOURCE_SELECT_PRIVILEGES,
        SOURCE_PRIMARY_KEYS,
        SOURCE_LOB_COLUMNS,
        SOURCE_UNBOUNDED_NUMERIC,
        SOURCE_UNLOGGED_TABLES,
        SOURCE_PARTITIONED_TABLES,
        SOURCE_PREPARED_TRANSACTIONS,
        SOURCE_LONG_TRANSACTIONS,
        SOURCE_EXTENSIONS,
        SOURCE_HEARTBEAT_SCHEMA,
    ];

    /// Every target check, in report order.
    pub const TARGET: [&str; 9] = [
        TARGET_VERSION,
        TARGET_PRIVILEGES,
        TARGET_SCHEMA_PRESENT,
        TARGET_SCHEMA_MATCHES,
        TARGET_NOT_EMPTY,
        TARGET_EXTENSIONS,
        TARGET_SESSION_REPLICATION_ROLE,
        TARGET_GENERATED_ALWAYS,
        TARGET_UNIQUE_WITH_PK,
    ];

    /// The way back's checks read on PlanetScale (`run_target_fallback_checks`), in report order.
    pub const FALLBACK_TARGET: [&str; 4] = [
        FALLBACK_TARGET_WAL_LEVEL,
        FALLBACK_TARGET_SLOT,
        FALLBACK_TARGET_REPLICATION_CAPACITY,
        FALLBACK_TARGET_WAL_KEEP_SIZE,
    ];

    /// The way back's checks read on Aurora (`run_source_checks_and_fallback`), in report order.
    pub const FALLBACK_SOURCE: [&str; 2] = [
        FALLBACK_SOURCE_PRIVILEGES,
        FALLBACK_SOURCE_SESSION_REPLICATION_ROLE,
    ];

    /// Every check of the way back, in report order: PlanetScale's, then Aurora's.
    pub const FALLBACK: [&str; 6] = [
        FALLBACK_TARGET_WAL_LEVEL,
        FALLBACK_TARGET_SLOT,
        FALLBACK_TARGET_REPLICATION_CAPACITY,
        FALLBACK_TARGET_WAL_KEEP_SIZE,
        FALLBACK_SOURCE_PRIVILEGES,
        FALLBACK_SOURCE_SESSION_REPLICATION_ROLE,
    ];
}

string_enum! {
    /// Ordered by severity, so sorting puts failures first. `NotRun`: the check could not run where it was
    /// started (its database unreachable from there); it is neither a pass nor a finding, and is counted
    /// apart.
    #[derive(PartialOrd, Ord)]
    pub enum CheckStatus {
        Fail => "fail",
        Warn => "warn",
        NotRun => "not_run",
        Pass => "pass",
    }
}

/// One check's outcome, in the JSON shape of docs/checks.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub id: String,
    pub status: CheckStatus,
    pub summary: String,
    /// Qualified names (`schema.table`, `schema.table.column`, a slot name...), quoted where needed.
    /// Every one of them: cap with `to_summary` before putting a check into Step Functions state.
    pub objects: Vec<String>,
    /// Exact SQL or setting, one statement or step per line; empty when there is nothing to fix.
    pub fix: String,
}

impl Check {
    pub fn new(
        id: &str,
        status: CheckStatus,
        summary: impl Into<String>,
        objects: Vec<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            id: id.to_string(),
            status,
            summary: summary.into(),
            objects,
            fix: fix.into(),
        }
    }

    pub fn pass(id: &str, summary: impl Into<String>) -> Check {
        Check::new(id, CheckStatus::Pass, summary, Vec::new(), "")
    }

    /// For Step Functions state: at most `MAX_NAMES` objects (`objectsTotal` keeps the count), at most
    /// `MAX_NAMES` lines of fix, the rest said in one line, and every text within `crate::rules::bounds`; the
    /// full check belongs in the log and in `dms-migrate preflight`.
    pub fn to_summary(&self) -> CheckSummary {
        let (objects, objects_total) = crate::rules::state::capped(&self.objects);
        let lines: Vec<&str> = self.fix.lines().collect();
        let fix = if lines.len() > MAX_NAMES {
            format!(
                "{}\n-- ... and {} more lines: run `dms-migrate preflight` for all of them",
                lines[..MAX_NAMES].join("\n"),
                lines.len() - MAX_NAMES
            )
        } else {
            self.fix.clone()
        };
        let mut summary = CheckSummary {
            id: self.id.clone(),
            summary: self.summary.clone(),
            fix,
            objects,
            objects_total,
        };
        // A single line can be unbounded too (one TRUNCATE naming every non-empty table).
        summary.bound();
        summary
    }
}

/// How many checks passed, warned, failed and could not run.
pub fn counts(checks: &[Check]) -> CheckCounts {
    let count = |status| {
        let n = checks.iter().filter(|c| c.status == status).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    };
    CheckCounts {
        pass: count(CheckStatus::Pass),
        warn: count(CheckStatus::Warn),
        fail: count(CheckStatus::Fail),
        not_run: count(CheckStatus::NotRun),
    }
}

/// Checks that could not run (the database is unreachable from where they run): `not_run`, saying why and
/// how to make them run, never failures and never passes (docs/checks.md).
pub fn not_run(check_ids: &[&str], reason: &str, fix: &str) -> Vec<Check> {
    check_ids
        .iter()
        .map(|id| Check::new(id, CheckStatus::NotRun, reason, Vec::new(), fix))
        .collect()
}

/// The connections one side's catalog reads are spread over. Statements pipelined on one connection run
/// one after the other on the server; with a second connection the heaviest read (the schema inventory,
/// and on the target the emptiness probe) runs beside the others, which at 10^4 tables is a third of the
/// wall time. `one` where a caller has a single connection (the Lambda).
#[derive(Clone, Copy)]
pub struct Connections<'a> {
    pub first: &'a Client,
    pub second: &'a Client,
}

impl<'a> Connections<'a> {
    pub fn one(client: &'a Client) -> Self {
        Connections {
            first: client,
            second: client,
        }
    }

    pub fn two(first: &'a Client, second: &'a Client) -> Self {
        Connections { first, second }
    }
}

/// Every check of both sides, as `dms-migrate preflight` runs them: the two databases are read at the
/// same time, then compared. With `way_back` (the target's connection options: its slot probe needs a
/// session of its own) the way back's checks too, read at the same time as the others: PlanetScale's on
/// that session, Aurora's from the source checks' own table read plus three one-row reads sent ahead of
/// the catalog reads on the source's second connection, so the way back adds no second read of the
/// source's tables.
pub async fn run_all_checks(
    source: Connections<'_>,
    target: Connections<'_>,
    config: &CheckConfig,
    way_back: Option<&crate::pg::PgConnectOptions>,
) -> Result<Vec<Check>, StepError> {
    // Polled first, so its source statements are the first in the second connection's pipeline.
    let way_back_reads = async {
        match way_back {
            None => Ok(None),
            Some(target_options) => tokio::try_join!(
                target::read_for_writes(source.second, config),
                run_target_fallback_checks(target_options),
            )
            .map(Some),
        }
    };
    let (way_back_reads, source_report, target_facts) = tokio::try_join!(
        way_back_reads,
        run_source_checks_on(source, config),
        gather_target(target, config)
    )?;
    let mut checks = source_report.checks;
    checks.extend(target_checks(
        &target_facts,
        Some(&source_report.facts),
        config,
    ));
    if let Some((aurora_reads, planetscale)) = way_back_reads {
        checks.extend(planetscale);
        checks.extend(fallback::source_fallback_checks(
            &source_report.tables,
            &aurora_reads,
            config,
        ));
    }
    Ok(checks)
}

/// What the checks need to know about the migration besides the databases. Serializable: the assessment
/// sends it to the function that runs the source checks inside the VPC.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckConfig {
    /// The tables the DMS task maps (its selection rules).
    pub selection: TableSelection,
    /// `full-load-and-cdc` or `cdc` (true) versus `full-load` (false): CDC-only hazards fail only with CDC.
    pub cdc: bool,
    /// Where the DMS heartbeat (`HeartbeatEnable`) creates `awsdms_heartbeat` on the source
    /// (task setting `HeartbeatSchema`, default `public`).
    pub heartbeat_schema: String,
    /// Where DMS creates its control tables on the target (`ControlTablesSettings.ControlSchema`; empty in
    /// the task settings means the target's default schema, `public`).
    pub control_schema: String,
    /// Transactions (and prepared transactions) open longer than this are reported.
    pub long_transaction_seconds: u32,
    /// `target.not_empty` probes at most this many target tables for a row (each probe holds a lock until
    /// the check's statement ends); beyond them a non-empty file counts as holding rows.
    pub not_empty_probes: u32,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            selection: TableSelection::all(),
            cdc: true,
            heartbeat_schema: "public".to_string(),
            control_schema: "public".to_string(),
            long_transaction_seconds: 300,
            not_empty_probes: 1000,
        }
    }
}

/// The oldest server the checks support: `pg_partition_root` (used to match partitions by their root)
/// arrived in PostgreSQL 12, and no older major is still supported by RDS or PostgreSQL.
pub const MIN_SERVER_VERSION_NUM: i32 = 120000;
/// The newest major the DMS documentation lists as a source or target (a PostgreSQL 17 target needs DMS
/// engine 3.6.1 or later).
pub const NEWEST_DMS_MAJOR: i32 = 17;

/// Every schema object of the selected tables and their schemas (`schema_objects`), columns included:
/// the catalog read `dms-migrate verify` diffs between the two sides.
pub async fn read_inventory(
    client: &Client,
    selection: &TableSelection,
) -> Result<Vec<crate::rules::schema_objects::SchemaObject>, StepError> {
    let [a, b, c, d] = selection.params();
    let params: [&(dyn ToSql + Sync); 4] = [&a, &b, &c, &d];
    let (_, inventory) = catalog::read_objects(
        Connections::one(client),
        &params,
        ["inventory", "inventory"],
    )
    .await?;
    Ok(inventory)
}

async fn run_query(
    client: &Client,
    check_id: &str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, StepError> {
    client
        .query(sql, params)
        .await
        .map_err(|e| classify_pg_error(&format!("check {check_id}"), &e))
}

/// "1 table" / "3 tables".
fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// The first few names, for a summary line; the full list is in `objects`.
fn first_names(names: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut text = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_is_the_design_one() {
        let check = Check::new(
            ids::SOURCE_PRIMARY_KEYS,
            CheckStatus::Fail,
            "1 table",
            vec!["public.\"Order Items\"".into()],
            "ALTER TABLE public.\"Order Items\" REPLICA IDENTITY FULL;",
        );
        let json = serde_json::to_value(&check).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": "source.primary_keys",
                "status": "fail",
                "summary": "1 table",
                "objects": ["public.\"Order Items\""],
                "fix": "ALTER TABLE public.\"Order Items\" REPLICA IDENTITY FULL;"
            })
        );
    }

    #[test]
    fn summaries_for_the_state_are_capped() {
        let objects: Vec<String> = (0..45).map(|i| format!("s.t{i}")).collect();
        let fix = objects
            .iter()
            .map(|t| format!("ALTER TABLE {t} REPLICA IDENTITY FULL;"))
            .collect::<Vec<_>>()
            .join("\n");
        let check = Check::new("x", CheckStatus::Fail, "many", objects, fix);
        let summary = check.to_summary();
        assert_eq!(summary.objects.len(), MAX_NAMES);
        assert_eq!(summary.objects_total, 45);
        assert_eq!(summary.fix.lines().count(), MAX_NAMES + 1);
        assert!(summary
            .fix
            .ends_with("and 25 more lines: run `dms-migrate preflight` for all of them"));
    }

    #[test]
    fn counts_and_not_run() {
        let mut checks = not_run(&ids::SOURCE, "source unreachable", "run it elsewhere");
        checks.push(Check::pass("target.version", "ok"));
        assert_eq!(
            counts(&checks),
            CheckCounts {
                pass: 1,
                warn: 0,
                fail: 0,
                not_run: 17
            }
        );
        assert!(CheckStatus::Fail < CheckStatus::Warn && CheckStatus::Warn < CheckStatus::Pass);
        assert!(CheckStatus::Warn < CheckStatus::NotRun && CheckStatus::NotRun < CheckStatus::Pass);
        assert_eq!(
            serde_json::to_value(CheckStatus::NotRun).unwrap(),
            serde_json::json!("not_run")
        );
    }

    #[test]
    fn summary_helpers() {
        assert_eq!(plural(1, "table", "tables"), "1 table");
        assert_eq!(plural(2, "table", "tables"), "2 tables");
        let names: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        assert_eq!(first_names(&names), "a, b, c and 2 more");
        assert_eq!(first_names(&names[..2]), "a, b");
    }
}
