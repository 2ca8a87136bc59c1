//! The target checks (docs/checks.md): what a `DO_NOTHING` DMS task needs to find on the target before the full
//! load. The schema comparison uses the pre-load / deferred split of `schema_objects`: a deferred object
//! missing on the target is "to apply after the load", never a mismatch.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Row};

use super::catalog::{self, MappedColumn, MappedTable, NOT_EMPTY_SQL};
use super::source::{schema_create_gap, version_status, SCHEMA_CREATE_SQL};
use super::{
    first_names, ids, plural, run_query, Check, CheckConfig, CheckStatus, Connections, SourceFacts,
};
use crate::errors::StepError;
use crate::pg::classify_pg_error;
use crate::rules::schema_objects::{ObjectKind, Phase, SchemaObject};

const SETTINGS_SQL: &str = include_str!("sql/target_settings.sql");
const SESSION_REPLICATION_ROLE_SQL: &str = include_str!("sql/target_session_replication_role.sql");
const EXTENSIONS_SQL: &str = include_str!("sql/target_extensions.sql");

/// The first DMS engine version that supports PostgreSQL 17 as a target.
const PG17_TARGET_DMS_ENGINE: &str = "3.6.1";

const SOURCE_NOT_READ: &str =
    "not checked: the source was not read, so there is nothing to compare the target with";
const SOURCE_NOT_READ_FIX: &str =
    "Run `dms-migrate preflight --source URL --target URL` from a machine that reaches both databases.";

/// What the target's catalogs say, read without waiting for the source (so both sides are read at once).
pub struct TargetFacts {
    settings: Row,
    /// Why `SET session_replication_role = replica` was refused, if it was.
    session_replication_role_refused: Option<String>,
    tables: Vec<MappedTable>,
    columns: Vec<MappedColumn>,
    inventory: Vec<SchemaObject>,
    control_schema: Vec<Row>,
    /// Mapped tables holding rows, quoted, in name order.
    not_empty: Vec<String>,
    /// Of those, how many were not probed (beyond `CheckConfig::not_empty_probes`): their file size decided.
    judged_by_size: usize,
    extensions: Vec<Row>,
}

/// Runs every target check of docs/checks.md, in `ids::TARGET` order. `source` is what the source checks
/// learnt; without it the comparisons (`schema_present`, `schema_matches`, `extensions`) are warnings
/// saying they did not run.
pub async fn run_target_checks(
    client: &Client,
    source: Option<&SourceFacts>,
    config: &CheckConfig,
) -> Result<Vec<Check>, StepError> {
    let facts = gather_target(Connections::one(client), config).await?;
    Ok(target_checks(&facts, source, config))
}

/// Every target catalog read, pipelined on the connections: the schema inventory and the emptiness probe on
/// the second.
pub async fn gather_target(
    connections: Connections<'_>,
    config: &CheckConfig,
) -> Result<TargetFacts, StepError> {
    let client = connections.first;
    let [a, b, c, d] = config.selection.params();
    let control_param: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&config.control_schema];
    let probes = i64::from(config.not_empty_probes);
    let not_empty_params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
        [&a, &b, &c, &d, &probes];
    let (settings, refused, catalog, control, not_empty, extensions) = tokio::try_join!(
        run_query(client, ids::TARGET_VERSION, SETTINGS_SQL, &[]),
        session_replication_role_refused(client),
        catalog::read_catalog(
            connections,
            &config.selection,
            [
                ids::TARGET_PRIVILEGES,
                ids::TARGET_SCHEMA_MATCHES,
                ids::TARGET_SCHEMA_MATCHES
            ]
        ),
        run_query(
            client,
            ids::TARGET_PRIVILEGES,
            SCHEMA_CREATE_SQL,
            &control_param
        ),
        run_query(
            connections.second,
            ids::TARGET_NOT_EMPTY,
            NOT_EMPTY_SQL,
            &not_empty_params
        ),
        run_query(client, ids::TARGET_EXTENSIONS, EXTENSIONS_SQL, &[]),
    )?;
    let settings = first_settings_row(settings)?;
    Ok(TargetFacts {
        settings,
        session_replication_role_refused: refused,
        tables: catalog.tables,
        inventory: catalog.inventory,
        columns: catalog.columns,
        control_schema: control,
        judged_by_size: not_empty.iter().filter(|r| !r.get::<_, bool>(2)).count(),
        not_empty: catalog::qualified_names_from_rows(&not_empty),
        extensions,
    })
}

/// Why `SET session_replication_role = replica` was refused (insufficient privilege), or `None` when it
/// was accepted.
async fn session_replication_role_refused(client: &Client) -> Result<Option<String>, StepError> {
    match client.query(SESSION_REPLICATION_ROLE_SQL, &[]).await {
        Ok(_) => Ok(None),
        Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => Ok(Some(
            e.as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_default(),
        )),
        Err(e) => Err(classify_pg_error(
            &format!("check {}", ids::TARGET_SESSION_REPLICATION_ROLE),
            &e,
        )),
    }
}

fn first_settings_row(rows: Vec<Row>) -> Result<Row, StepError> {
    rows.into_iter().next().ok_or_else(|| {
        StepError::new(
            crate::errors::ErrorName::PostgresQueryFailed,
            "check target.version: the connected role is not in pg_roles",
        )
    })
}

/// What `target.privileges` and `target.session_replication_role` need besides the mapped tables' facts,
/// read on a database DMS is to write other than the target: the way back (docs/fallback.md) reads them
/// on the source, which becomes the reverse task's target, and takes the tables from the source checks'
/// own read (`fallback`).
pub(super) struct WriteReads {
    settings: Row,
    /// Why `SET session_replication_role = replica` was refused, if it was.
    refused: Option<String>,
    control: Vec<Row>,
}

/// Three one-row reads: the role and server version, the `session_replication_role` probe, and whether
/// DMS's control schema accepts the role's tables.
pub(super) async fn read_for_writes(
    client: &Client,
    config: &CheckConfig,
) -> Result<WriteReads, StepError> {
    let control_param: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&config.control_schema];
    let (settings, refused, control) = tokio::try_join!(
        run_query(client, ids::TARGET_VERSION, SETTINGS_SQL, &[]),
        session_replication_role_refused(client),
        run_query(
            client,
            ids::TARGET_PRIVILEGES,
            SCHEMA_CREATE_SQL,
            &control_param
        ),
    )?;
    Ok(WriteReads {
        settings: first_settings_row(settings)?,
        refused,
        control,
    })
}

/// `target.privileges` and `target.session_replication_role` from what was read: `tables` are the mapped
/// tables of the database DMS is to write, as the source checks' catalog read gives them (the statement
/// `target.privileges` reads on the target).
pub(super) fn write_checks(
    tables: &[MappedTable],
    reads: &WriteReads,
    config: &CheckConfig,
) -> Vec<Check> {
    let user: String = reads.settings.get("quoted_user");
    vec![
        privileges_check(tables, &reads.control, &user, &config.control_schema),
        session_replication_role_check(
            reads.refused.as_deref(),
            &user,
            reads.settings.get("version_num"),
        ),
    ]
}

/// The target checks from what was read, compared with the source when it was read too.
pub fn target_checks(
    facts: &TargetFacts,
    source: Option<&SourceFacts>,
    config: &CheckConfig,
) -> Vec<Check> {
    let not_read = |id: &str| {
        Check::new(
            id,
            CheckStatus::Warn,
            SOURCE_NOT_READ,
            Vec::new(),
            SOURCE_NOT_READ_FIX,
        )
    };
    let user: String = facts.settings.get("quoted_user");
    vec![
        version_check(&facts.settings, source),
        privileges_check(
            &facts.tables,
            &facts.control_schema,
            &user,
            &config.control_schema,
        ),
        match source {
            Some(s) => schema_present_check(&s.tables, &facts.inventory),
            None => not_read(ids::TARGET_SCHEMA_PRESENT),
        },
        match source {
            Some(s) => schema_matches_check(&s.inventory, &facts.inventory),
            None => not_read(ids::TARGET_SCHEMA_MATCHES),
        },
        not_empty_check(
            &facts.not_empty,
            facts.judged_by_size,
            config.not_empty_probes,
        ),
        match source {
            Some(s) => extensions_check(&facts.extensions, &s.extensions),
            None => not_read(ids::TARGET_EXTENSIONS),
        },
        session_replication_role_check(
            facts.session_replication_role_refused.as_deref(),
            &user,
            facts.settings.get("version_num"),
        ),
        generated_always_check(&facts.columns),
        unique_with_pk_check(&facts.inventory),
    ]
}

fn version_check(row: &Row, source: Option<&SourceFacts>) -> Check {
    let version_num: i32 = row.get("version_num");
    let version: String = row.get("version");
    let (mut status, mut summary) = version_status(version_num, "the target", &version);
    let mut fix = String::new();
    if status == CheckStatus::Fail {
        fix = "Use a target running PostgreSQL 12 to 17.".to_string();
    }
    if status == CheckStatus::Pass && version_num / 10000 == 17 {
        status = CheckStatus::Warn;
        summary.push_str(&format!(
            ": a PostgreSQL 17 target needs DMS engine {PG17_TARGET_DMS_ENGINE} or later"
        ));
        fix = format!(
            "Set the stack's DMS engine version parameter to {PG17_TARGET_DMS_ENGINE} or later."
        );
    }
    if let Some(facts) = source {
        let (source_major, target_major) = (facts.version_num / 10000, version_num / 10000);
        if status == CheckStatus::Pass && target_major < source_major {
            status = CheckStatus::Warn;
            summary.push_str(&format!(
                ", older than the source ({}): pg_dump of the source may use syntax the target does not know",
                facts.version
            ));
            fix = "Prefer a target major version at least the source's; otherwise review the schema `dms-migrate schema apply` creates.".to_string();
        }
    }
    Check::new(ids::TARGET_VERSION, status, summary, Vec::new(), fix)
}

fn privileges_check(
    tables: &[MappedTable],
    control: &[Row],
    user: &str,
    control_schema: &str,
) -> Check {
    let lacking: Vec<&MappedTable> = tables
        .iter()
        .filter(|t| !t.schema_usage || !t.missing_privileges.is_empty())
        .collect();
    let control_gap = schema_create_gap(control);
    if lacking.is_empty() && control_gap.is_none() {
        return Check::pass(
            ids::TARGET_PRIVILEGES,
            format!("{user} may write every mapped table and create DMS's control tables in {control_schema}"),
        );
    }
    let mut objects: Vec<String> = lacking.iter().map(|t| t.qualified.clone()).collect();
    let details: Vec<String> = lacking
        .iter()
        .map(|t| {
            let mut what = t.missing_privileges.clone();
            if !t.schema_usage {
                what.insert(0, "USAGE on its schema".to_string());
            }
            format!("{}: {}", t.qualified, what.join(", "))
        })
        .collect();
    let schemas: BTreeSet<&str> = lacking.iter().map(|t| t.quoted_schema.as_str()).collect();
    let mut fix: Vec<String> = schemas
        .iter()
        .map(|schema| {
            format!(
                "GRANT USAGE ON SCHEMA {schema} TO {user};\nGRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {user};"
            )
        })
        .collect();
    let mut summary = Vec::new();
    if !lacking.is_empty() {
        summary.push(format!(
            "{user} lacks privileges DMS needs on {} ({})",
            plural(lacking.len(), "mapped table", "mapped tables"),
            first_names(&details)
        ));
    }
    if let Some((why, control_fix)) = control_gap {
        summary.push(format!(
            "{why}: DMS creates its control tables (awsdms_apply_exceptions, batch apply's net changes) there"
        ));
        objects.push(crate::rules::sql_ident::quote_if_needed(control_schema));
        fix.push(control_fix);
    }
    Check::new(
        ids::TARGET_PRIVILEGES,
        CheckStatus::Fail,
        summary.join("; "),
        objects,
        fix.join("\n"),
    )
}

fn schema_present_check(source_tables: &[String], target: &[SchemaObject]) -> Check {
    let present: HashSet<&str> = target
        .iter()
        .filter(|o| o.kind == ObjectKind::Table)
        .map(|o| o.name.as_str())
        .collect();
    let missing: Vec<String> = source_tables
        .iter()
        .filter(|t| !present.contains(t.as_str()))
        .cloned()
        .collect();
    if missing.is_empty() {
        return Check::pass(
            ids::TARGET_SCHEMA_PRESENT,
            format!(
                "all {} exist on the target",
                plural(source_tables.len(), "mapped table", "mapped tables")
            ),
        );
    }
    Check::new(
        ids::TARGET_SCHEMA_PRESENT,
        CheckStatus::Fail,
        format!(
            "{} of {} missing on the target: the task uses DO_NOTHING and never creates tables, so they would fail ({})",
            missing.len(),
            plural(source_tables.len(), "mapped table is", "mapped tables are"),
            first_names(&missing)
        ),
        missing,
        "dms-migrate schema apply --source SOURCE_URL --target TARGET_URL",
    )
}

/// The column name part of a qualified column name (`schema.table.column` → `column`), quoted as stored.
fn column_part(object: &SchemaObject) -> &str {
    match &object.table {
        Some(table) => object
            .name
            .strip_prefix(table.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .unwrap_or(&object.name),
        None => &object.name,
    }
}

fn split_not_null(detail: &str) -> (&str, bool) {
    match detail.strip_suffix(" not null") {
        Some(data_type) => (data_type, true),
        None => (detail, false),
    }
}

/// Table-shape differences break the load (DMS writes the source's columns), so they fail; other
/// pre-load objects missing (sequences, views, functions, types) break the application after cutover,
/// so they warn; deferred objects missing are expected before the load.
fn schema_matches_check(source: &[SchemaObject], target: &[SchemaObject]) -> Check {
    let source = by_kind_and_name(source);
    let target = by_kind_and_name(target);
    let mut in_target = SortedLookup::new(&target);
    let (source_tables, target_tables) = (table_names(&source), table_names(&target));
    let on_present_table = |o: &SchemaObject| {
        o.table
            .as_deref()
            .is_some_and(|t| target_tables.contains(t))
    };

    let mut shape: Vec<(String, String, String)> = Vec::new(); // (name, difference, fix)
    let mut other: Vec<(String, String)> = Vec::new();
    let mut deferred: Vec<String> = Vec::new();
    for &object in &source {
        let found = in_target.find(object);
        match (object.kind, object.phase(), found) {
            // Missing tables are target.schema_present's; extensions are target.extensions'.
            (ObjectKind::Table | ObjectKind::Schema | ObjectKind::Extension, _, _) => {}
            (_, Phase::Deferred, None) => deferred.push(object.name.clone()),
            (_, Phase::Deferred, Some(_)) => {}
            (ObjectKind::Column | ObjectKind::PrimaryKey, _, _) if !on_present_table(object) => {}
            (ObjectKind::Column, _, None) => {
                let table = object.table.as_deref().unwrap_or_default();
                let (data_type, _) = split_not_null(&object.detail);
                shape.push((
                    object.name.clone(),
                    format!("missing on the target (source: {})", object.detail),
                    format!(
                        "ALTER TABLE {table} ADD COLUMN {} {data_type};",
                        column_part(object)
                    ),
                ));
            }
            (ObjectKind::Column, _, Some(t)) if t.detail != object.detail => {
                let table = object.table.as_deref().unwrap_or_default();
                let column = column_part(object);
                let (source_type, source_not_null) = split_not_null(&object.detail);
                let (target_type, target_not_null) = split_not_null(&t.detail);
                let mut fixes = Vec::new();
                if source_type != target_type {
                    fixes.push(format!(
                        "ALTER TABLE {table} ALTER COLUMN {column} TYPE {source_type};"
                    ));
                }
                if target_not_null && !source_not_null {
                    fixes.push(format!(
                        "ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL;"
                    ));
                } else if source_not_null && !target_not_null {
                    fixes.push(format!(
                        "ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL;"
                    ));
                }
                shape.push((
                    object.name.clone(),
                    format!(
                        "{} on the source, {} on the target",
                        object.detail, t.detail
                    ),
                    fixes.join("\n"),
                ));
            }
            (ObjectKind::PrimaryKey, _, None) => shape.push((
                object.name.clone(),
                format!("no primary key on the target (source: ({}))", object.detail),
                format!(
                    "ALTER TABLE {} ADD PRIMARY KEY ({});",
                    object.name, object.detail
                ),
            )),
            (ObjectKind::PrimaryKey, _, Some(t)) if t.detail != object.detail => shape.push((
                object.name.clone(),
                format!(
                    "primary key ({}) on the source, ({}) on the target",
                    object.detail, t.detail
                ),
                format!(
                    "-- re-create the primary key of {} on ({})",
                    object.name, object.detail
                ),
            )),
            (_, Phase::PreLoad, None) => other.push((
                object.name.clone(),
                format!("{} {}", object.kind.as_str(), object.name),
            )),
            (ObjectKind::Sequence, _, Some(t)) if t.detail != object.detail => other.push((
                object.name.clone(),
                format!(
                    "sequence {}: {} on the source, {} on the target",
                    object.name, object.detail, t.detail
                ),
            )),
            _ => {}
        }
    }
    // A NOT NULL column without default that the source does not have: every DMS insert would fail.
    let mut in_source = SortedLookup::new(&source);
    for &object in &target {
        if object.kind == ObjectKind::Column
            && object.insert_requires_value
            && in_source.find(object).is_none()
            && object
                .table
                .as_deref()
                .is_some_and(|t| source_tables.contains(t))
        {
            shape.push((
                object.name.clone(),
                "NOT NULL without default on the target, absent on the source".to_string(),
                format!(
                    "ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL;",
                    object.table.as_deref().unwrap_or_default(),
                    column_part(object)
                ),
            ));
        }
    }
    let pending = if deferred.is_empty() {
        String::new()
    } else {
        format!(
            "; {} (foreign keys, unique and check constraints, triggers, secondary indexes) to apply after the load with `dms-migrate constraints apply`",
            plural(deferred.len(), "deferred object", "deferred objects")
        )
    };
    if !shape.is_empty() {
        let examples: Vec<String> = shape.iter().map(|(n, d, _)| format!("{n}: {d}")).collect();
        let mut objects: Vec<String> = shape.iter().map(|(n, _, _)| n.clone()).collect();
        objects.extend(other.iter().map(|(n, _)| n.clone()));
        let fix = shape
            .iter()
            .map(|(_, _, f)| f.clone())
            .chain(
                other
                    .iter()
                    .map(|(_, d)| format!("-- create {d} (dms-migrate schema apply)")),
            )
            .collect::<Vec<_>>()
            .join("\n");
        return Check::new(
            ids::TARGET_SCHEMA_MATCHES,
            CheckStatus::Fail,
            format!(
                "{} of the target differ from the source: DMS would fail on those tables ({}){pending}",
                plural(shape.len(), "column or primary key", "columns or primary keys"),
                first_names(&examples)
            ),
            objects,
            fix,
        );
    }
    if !other.is_empty() {
        let descriptions: Vec<String> = other.iter().map(|(_, d)| d.clone()).collect();
        return Check::new(
            ids::TARGET_SCHEMA_MATCHES,
            CheckStatus::Warn,
            format!(
                "tables match, but {} missing or different on the target: the load works, the application may not after cutover ({}){pending}",
                plural(other.len(), "pre-load object is", "pre-load objects are"),
                first_names(&descriptions)
            ),
            other.iter().map(|(n, _)| n.clone()).collect(),
            "dms-migrate schema apply --source SOURCE_URL --target TARGET_URL  (creates what is missing)",
        );
    }
    let tables = source
        .iter()
        .filter(|o| o.kind == ObjectKind::Table)
        .count();
    let summary = if deferred.is_empty() {
        format!(
            "columns, types and primary keys of {} match the source",
            plural(tables, "table", "tables")
        )
    } else {
        format!(
            "columns, types and primary keys of {} match the source{pending}: listed here, not a mismatch",
            plural(tables, "table", "tables")
        )
    };
    let fix = if deferred.is_empty() {
        String::new()
    } else {
        "After the full load: dms-migrate constraints apply --target TARGET_URL".to_string()
    };
    Check::new(
        ids::TARGET_SCHEMA_MATCHES,
        CheckStatus::Pass,
        summary,
        deferred,
        fix,
    )
}

fn table_names<'a>(objects: &[&'a SchemaObject]) -> HashSet<&'a str> {
    objects
        .iter()
        .filter(|o| o.kind == ObjectKind::Table)
        .map(|o| o.name.as_str())
        .collect()
}

/// The objects in kind and name order (as `catalog::read_objects` returns them; sorted here only if not).
fn by_kind_and_name(objects: &[SchemaObject]) -> Vec<&SchemaObject> {
    let order = |a: &&SchemaObject, b: &&SchemaObject| (a.kind, &a.name).cmp(&(b.kind, &b.name));
    let mut sorted: Vec<&SchemaObject> = objects.iter().collect();
    if !sorted.is_sorted_by(|a, b| order(a, b).is_le()) {
        sorted.sort_by(order);
    }
    sorted
}

/// Finds objects by kind and name in a sorted list, for lookups made in the same order: a cursor that only
/// moves forward, one comparison per step, instead of hashing 10^5 names into a map.
struct SortedLookup<'a> {
    objects: &'a [&'a SchemaObject],
    at: usize,
}

impl<'a> SortedLookup<'a> {
    fn new(objects: &'a [&'a SchemaObject]) -> Self {
        SortedLookup { objects, at: 0 }
    }

    fn find(&mut self, wanted: &SchemaObject) -> Option<&'a SchemaObject> {
        let wanted = (wanted.kind, wanted.name.as_str());
        while let Some(&object) = self.objects.get(self.at) {
            match (object.kind, object.name.as_str()).cmp(&wanted) {
                std::cmp::Ordering::Less => self.at += 1,
                std::cmp::Ordering::Equal => return Some(object),
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }
}

fn not_empty_check(tables: &[String], judged_by_size: usize, probes: u32) -> Check {
    if tables.is_empty() {
        return Check::pass(ids::TARGET_NOT_EMPTY, "every mapped target table is empty");
    }
    let by_size = if judged_by_size == 0 {
        String::new()
    } else {
        format!(
            "; beyond the first {probes} probed, {} counted by file size (rows deleted but not vacuumed away count too)",
            plural(judged_by_size, "table is", "tables are")
        )
    };
    Check::new(
        ids::TARGET_NOT_EMPTY,
        CheckStatus::Warn,
        format!(
            "{} rows already: with DO_NOTHING the load adds to them, and duplicates or key conflicts follow ({}){by_size}",
            plural(tables.len(), "mapped target table holds", "mapped target tables hold"),
            first_names(tables)
        ),
        tables.to_vec(),
        // The alternative first: with thousands of tables the state carries only the start of the
        // TRUNCATE line (`Check::to_summary`), and the reload option empties exactly the mapped tables.
        format!(
            "-- either start the execution with \"startMode\": \"reload\" and \"truncateTarget\": true, or run:\nTRUNCATE {};",
            tables.join(", ")
        ),
    )
}

fn extensions_check(rows: &[Row], source_extensions: &[String]) -> Check {
    // name -> (quoted, installed)
    let offered: HashMap<String, (String, bool)> = rows
        .iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                (r.get::<_, String>(1), r.get::<_, bool>(2)),
            )
        })
        .collect();
    let missing: Vec<&String> = source_extensions
        .iter()
        .filter(|name| {
            !offered
                .get(name.as_str())
                .is_some_and(|(_, installed)| *installed)
        })
        .collect();
    if missing.is_empty() {
        return Check::pass(
            ids::TARGET_EXTENSIONS,
            "every extension of the source is installed on the target",
        );
    }
    let names: Vec<String> = missing.iter().map(|n| n.to_string()).collect();
    let unavailable: Vec<String> = names
        .iter()
        .filter(|n| !offered.contains_key(n.as_str()))
        .cloned()
        .collect();
    let fix = names
        .iter()
        .map(|name| match offered.get(name.as_str()) {
            Some((quoted, _)) => format!("CREATE EXTENSION IF NOT EXISTS {quoted};"),
            None => format!("-- {} is not available on the target server: remove what depends on it from the source schema, or ask the provider to offer it", crate::rules::sql_ident::quote_if_needed(name)),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let (status, summary) = if unavailable.is_empty() {
        (
            CheckStatus::Warn,
            format!(
                "{} of the source not installed on the target yet, but available ({}); `dms-migrate schema apply` creates them",
                plural(names.len(), "extension", "extensions"),
                first_names(&names)
            ),
        )
    } else {
        (
            CheckStatus::Fail,
            format!(
                "{} of the source not available on the target server ({}): tables or functions using them cannot be created",
                plural(unavailable.len(), "extension", "extensions"),
                first_names(&unavailable)
            ),
        )
    };
    Check::new(ids::TARGET_EXTENSIONS, status, summary, names, fix)
}

fn session_replication_role_check(refused: Option<&str>, user: &str, version_num: i32) -> Check {
    let Some(message) = refused else {
        return Check::pass(
            ids::TARGET_SESSION_REPLICATION_ROLE,
            format!(
                "{user} may SET session_replication_role = replica (the DMS after-connect script)"
            ),
        );
    };
    let fix = if version_num >= 150000 {
        format!("GRANT SET ON PARAMETER session_replication_role TO {user};  -- as a superuser or the provider's admin role")
    } else {
        "Use a superuser for the DMS target endpoint: before PostgreSQL 15 only superusers may set session_replication_role.".to_string()
    };
    Check::new(
        ids::TARGET_SESSION_REPLICATION_ROLE,
        CheckStatus::Fail,
        format!("{user} may not SET session_replication_role = replica ({message}): every DMS connection runs it as its after-connect script and fails"),
        vec![user.to_string()],
        fix,
    )
}

fn generated_always_check(columns: &[MappedColumn]) -> Check {
    let always: Vec<&MappedColumn> = columns.iter().filter(|c| c.is_identity_always).collect();
    if always.is_empty() {
        return Check::pass(
            ids::TARGET_GENERATED_ALWAYS,
            "no identity column GENERATED ALWAYS on the mapped target tables",
        );
    }
    let names: Vec<String> = always.iter().map(|c| c.qualified.clone()).collect();
    let fix = always
        .iter()
        .map(|c| {
            format!(
                "ALTER TABLE {} ALTER COLUMN {} SET GENERATED BY DEFAULT;  -- back to ALWAYS after cutover (dms-migrate constraints apply)",
                c.table,
                c.quoted_column()
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    Check::new(
        ids::TARGET_GENERATED_ALWAYS,
        CheckStatus::Fail,
        format!(
            "{} GENERATED ALWAYS AS IDENTITY: they reject the explicit values DMS inserts ({})",
            plural(names.len(), "column is", "columns are"),
            first_names(&names)
        ),
        names,
        fix,
    )
}

/// From the target inventory: tables with a primary key and also a unique constraint or unique index.
fn unique_with_pk_check(target: &[SchemaObject]) -> Check {
    let with_pk: HashSet<&str> = target
        .iter()
        .filter(|o| o.kind == ObjectKind::PrimaryKey)
        .map(|o| o.name.as_str())
        .collect();
    let mut uniques: BTreeMap<String, String> = BTreeMap::new();
    for object in target {
        let Some(table) = object.table.as_deref() else {
            continue;
        };
        if !with_pk.contains(table) {
            continue;
        }
        match object.kind {
            ObjectKind::UniqueConstraint => {
                uniques.insert(
                    object.name.clone(),
                    format!(
                        "ALTER TABLE {table} DROP CONSTRAINT {};",
                        column_part(object)
                    ),
                );
            }
            ObjectKind::Index if object.detail == "unique" => {
                uniques.insert(object.name.clone(), format!("DROP INDEX {};", object.name));
            }
            _ => {}
        }
    }
    if uniques.is_empty() {
        return Check::pass(
            ids::TARGET_UNIQUE_WITH_PK,
            "no mapped target table has unique constraints besides its primary key",
        );
    }
    let names: Vec<String> = uniques.keys().cloned().collect();
    let fix = format!(
        "-- note each definition first (pg_dump --schema-only), drop for the load, re-create after it (dms-migrate constraints apply)\n{}",
        uniques.values().cloned().collect::<Vec<_>>().join("\n")
    );
    Check::new(
        ids::TARGET_UNIQUE_WITH_PK,
        CheckStatus::Warn,
        format!(
            "{} on tables that also have a primary key: batch apply can fail on them when a batch moves a unique value between rows ({})",
            plural(names.len(), "unique constraint or index", "unique constraints or indexes"),
            first_names(&names)
        ),
        names,
        fix,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(kind: ObjectKind, name: &str, table: Option<&str>, detail: &str) -> SchemaObject {
        SchemaObject {
            kind,
            name: name.into(),
            table: table.map(str::to_string),
            detail: detail.into(),
            insert_requires_value: false,
        }
    }

    fn source_schema() -> Vec<SchemaObject> {
        vec![
            object(ObjectKind::Table, "s.\"Order\"", None, ""),
            object(
                ObjectKind::Column,
                "s.\"Order\".id",
                Some("s.\"Order\""),
                "bigint not null",
            ),
            object(
                ObjectKind::Column,
                "s.\"Order\".\"Note\"",
                Some("s.\"Order\""),
                "text",
            ),
            object(
                ObjectKind::PrimaryKey,
                "s.\"Order\"",
                Some("s.\"Order\""),
                "id",
            ),
            object(
                ObjectKind::ForeignKey,
                "s.\"Order\".fk",
                Some("s.\"Order\""),
                "",
            ),
            object(
                ObjectKind::Index,
                "s.order_note_idx",
                Some("s.\"Order\""),
                "",
            ),
            object(ObjectKind::Sequence, "s.seq", None, "bigint"),
        ]
    }

    #[test]
    fn deferred_objects_are_to_apply_not_mismatches() {
        let source = source_schema();
        let target: Vec<SchemaObject> = source
            .iter()
            .filter(|o| o.phase() == Phase::PreLoad)
            .cloned()
            .collect();
        let check = schema_matches_check(&source, &target);
        assert_eq!(check.status, CheckStatus::Pass, "{}", check.summary);
        assert_eq!(check.objects, ["s.\"Order\".fk", "s.order_note_idx"]);
        assert!(
            check.summary.contains("2 deferred objects"),
            "{}",
            check.summary
        );
    }

    #[test]
    fn column_differences_fail_with_exact_alter_statements() {
        let source = source_schema();
        let mut target: Vec<SchemaObject> = source
            .iter()
            .filter(|o| o.name != "s.\"Order\".\"Note\"" && o.kind != ObjectKind::Sequence)
            .cloned()
            .collect();
        target[1].detail = "integer".into();
        let mut extra = object(
            ObjectKind::Column,
            "s.\"Order\".x",
            Some("s.\"Order\""),
            "int not null",
        );
        extra.insert_requires_value = true;
        target.push(extra);
        let check = schema_matches_check(&source, &target);
        assert_eq!(check.status, CheckStatus::Fail, "{}", check.summary);
        // In inventory order (kind, then name as quoted), whatever order the lists were built in.
        assert_eq!(
            check.objects,
            [
                "s.\"Order\".\"Note\"",
                "s.\"Order\".id",
                "s.\"Order\".x",
                "s.seq"
            ]
        );
        assert!(
            check
                .fix
                .contains("ALTER TABLE s.\"Order\" ALTER COLUMN id TYPE bigint;"),
            "{}",
            check.fix
        );
        assert!(check
            .fix
            .contains("ALTER TABLE s.\"Order\" ALTER COLUMN id SET NOT NULL;"));
        assert!(check
            .fix
            .contains("ALTER TABLE s.\"Order\" ADD COLUMN \"Note\" text;"));
        assert!(check
            .fix
            .contains("ALTER TABLE s.\"Order\" ALTER COLUMN x DROP NOT NULL;"));
    }

    #[test]
    fn missing_sequence_alone_warns() {
        let source = source_schema();
        let target: Vec<SchemaObject> = source
            .iter()
            .filter(|o| o.kind != ObjectKind::Sequence)
            .cloned()
            .collect();
        let check = schema_matches_check(&source, &target);
        assert_eq!(check.status, CheckStatus::Warn);
        assert_eq!(check.objects, ["s.seq"]);
    }

    #[test]
    fn unique_besides_pk_warns() {
        let mut target = source_schema();
        target.push(object(
            ObjectKind::UniqueConstraint,
            "s.\"Order\".\"Order_note_key\"",
            Some("s.\"Order\""),
            "UNIQUE (\"Note\")",
        ));
        let check = unique_with_pk_check(&target);
        assert_eq!(check.status, CheckStatus::Warn);
        assert!(check
            .fix
            .contains("ALTER TABLE s.\"Order\" DROP CONSTRAINT \"Order_note_key\";"));
    }
}
