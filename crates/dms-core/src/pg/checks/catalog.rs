//! The three set-based catalog reads the table-level checks share, on either side: the mapped tables with
//! their facts, their columns classified, and the other schema objects. Evaluating the mapped set over
//! 10,000 tables costs more than most checks, so each read serves several checks instead of every check
//! re-reading the catalogs (docs/checks.md: one query per check at most, never one per table). The reads return
//! bare names, unordered; quoting (`sql_ident`, the server's own rules) and ordering happen here, where
//! they cost a fraction of what `format('%I')` and `ORDER BY` cost on the server at 10^5 rows.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::{run_query, Connections, TableSelection};
use crate::errors::StepError;
use crate::rules::schema_objects::{ObjectKind, SchemaObject};
use crate::rules::sql_ident::{push_quoted, qualified, quote_if_needed};

macro_rules! mapped_sql {
    ($file:literal) => {
        concat!(include_str!("sql/mapped_tables.sql"), include_str!($file))
    };
}

const TABLE_FACTS_SQL: &str = mapped_sql!("sql/mapped_table_facts.sql");
const COLUMNS_SQL: &str = mapped_sql!("sql/mapped_columns.sql");
const INVENTORY_SQL: &str = mapped_sql!("sql/schema_inventory.sql");
pub(super) const NOT_EMPTY_SQL: &str = mapped_sql!("sql/target_not_empty.sql");

/// What the three shared reads say about one side's mapped tables.
pub(super) struct Catalog {
    pub tables: Vec<MappedTable>,
    pub columns: Vec<MappedColumn>,
    pub inventory: Vec<SchemaObject>,
}

/// The three shared reads of one side (facts and columns on the first connection, the inventory on the
/// second), turned into their Rust shape as soon as they are in: awaited beside the side's other reads,
/// this work overlaps the statements still running on the server. `check_ids` label errors of the facts,
/// columns and inventory reads.
pub(super) async fn read_catalog(
    connections: Connections<'_>,
    selection: &TableSelection,
    check_ids: [&str; 3],
) -> Result<Catalog, StepError> {
    let [a, b, c, d] = selection.params();
    let params: [&(dyn ToSql + Sync); 4] = [&a, &b, &c, &d];
    let (tables, (columns, inventory)) = tokio::try_join!(
        run_query(connections.first, check_ids[0], TABLE_FACTS_SQL, &params),
        read_objects(connections, &params, [check_ids[1], check_ids[2]]),
    )?;
    Ok(Catalog {
        tables: tables_from_rows(&tables),
        columns,
        inventory,
    })
}

/// The columns read (first connection) and the inventory read (second), shaped: the columns, and every
/// schema object including them. `params` are the selection's; `check_ids` label the two reads' errors.
pub(super) async fn read_objects(
    connections: Connections<'_>,
    params: &[&(dyn ToSql + Sync)],
    check_ids: [&str; 2],
) -> Result<(Vec<MappedColumn>, Vec<SchemaObject>), StepError> {
    let (columns, other) = tokio::try_join!(
        run_query(connections.first, check_ids[0], COLUMNS_SQL, params),
        run_query(connections.second, check_ids[1], INVENTORY_SQL, params),
    )?;
    let columns = columns_from_rows(&columns, &other);
    let inventory = inventory(&columns, &other);
    Ok((columns, inventory))
}

/// Where each named column sits in a statement's rows (the same for every row), so rows are read by
/// position instead of searching the column names for every field of every row.
fn positions<const N: usize>(rows: &[Row], names: [&str; N]) -> [usize; N] {
    let Some(first) = rows.first() else {
        return [0; N];
    };
    names.map(|name| {
        first
            .columns()
            .iter()
            .position(|c| c.name() == name)
            .unwrap_or_else(|| panic!("catalog read has no column {name}: SQL and reader disagree"))
    })
}

/// One row of `sql/mapped_table_facts.sql`.
#[derive(Debug, Clone)]
pub(super) struct MappedTable {
    pub qualified: String,
    /// Unquoted, for ordering as people read names.
    pub sort_key: (String, String),
    pub quoted_schema: String,
    /// `r` table or `p` partitioned table.
    pub relkind: String,
    /// `p` permanent, `u` unlogged.
    pub persistence: String,
    /// `d` default (primary key), `n` nothing, `f` full, `i` index.
    pub replica_identity: String,
    pub is_partition: bool,
    pub has_primary_key: bool,
    pub schema_usage: bool,
    /// Of SELECT, INSERT, UPDATE, DELETE: those the connected role lacks.
    pub missing_privileges: Vec<String>,
    pub partitions: i32,
}

/// Tables in name order.
fn tables_from_rows(rows: &[Row]) -> Vec<MappedTable> {
    let [schema, table, relkind, persistence, replident, is_partition, has_pk, usage, partitions] =
        positions(
            rows,
            [
                "schema_name",
                "table_name",
                "relkind",
                "relpersistence",
                "relreplident",
                "relispartition",
                "has_primary_key",
                "schema_usage",
                "partitions",
            ],
        );
    let privileges = positions(
        rows,
        ["can_select", "can_insert", "can_update", "can_delete"],
    );
    let mut tables: Vec<MappedTable> = rows
        .iter()
        .map(|row| {
            let (schema_name, table_name): (String, String) = (row.get(schema), row.get(table));
            MappedTable {
                qualified: qualified(&schema_name, &table_name),
                quoted_schema: quote_if_needed(&schema_name),
                sort_key: (schema_name, table_name),
                relkind: row.get(relkind),
                persistence: row.get(persistence),
                replica_identity: row.get(replident),
                is_partition: row.get(is_partition),
                has_primary_key: row.get(has_pk),
                schema_usage: row.get(usage),
                missing_privileges: ["SELECT", "INSERT", "UPDATE", "DELETE"]
                    .into_iter()
                    .zip(privileges)
                    .filter(|&(_, at)| !row.get::<_, bool>(at))
                    .map(|(privilege, _)| privilege.to_string())
                    .collect(),
                partitions: row.get(partitions),
            }
        })
        .collect();
    tables.sort_unstable_by(|a, b| a.sort_key.cmp(&b.sort_key));
    tables
}

/// One row of `sql/mapped_columns.sql`.
#[derive(Debug, Clone)]
pub(super) struct MappedColumn {
    pub table_oid: u32,
    /// The table, qualified and quoted where needed; shared by its columns.
    pub table: Arc<str>,
    /// `schema.table.column`, each part quoted where needed.
    pub qualified: String,
    /// The column's position in its table.
    pub attnum: i16,
    pub detail: String,
    pub insert_requires_value: bool,
    pub is_lob: bool,
    pub is_unbounded_numeric: bool,
    pub is_identity_always: bool,
    /// The table's place in name order (for sorting by integers, not by names).
    table_rank: u32,
}

impl MappedColumn {
    /// The column's own name, quoted where needed.
    pub fn quoted_column(&self) -> &str {
        &self.qualified[self.table.len() + 1..]
    }
}

/// Columns grouped by table in name order, in column order within each table. The columns read names
/// tables by oid only: their names come from the table rows of the inventory read (`other`), quoted once
/// per table and shared by its columns. A column whose table is not among them (created between the two
/// reads) is left out, as its table is.
fn columns_from_rows(rows: &[Row], other: &[Row]) -> Vec<MappedColumn> {
    let [kind_at, schema_at, table_at, table_oid_at] =
        positions(other, ["kind", "schema_name", "table_name", "table_oid"]);
    let mut tables: Vec<(&str, &str, u32)> = other
        .iter()
        .filter(|row| row.get::<_, &str>(kind_at) == ObjectKind::Table.as_str())
        .map(|row| (row.get(schema_at), row.get(table_at), row.get(table_oid_at)))
        .collect();
    tables.sort_unstable();
    // oid -> (place in name order, quoted name)
    let names: HashMap<u32, (u32, Arc<str>)> = (0u32..)
        .zip(&tables)
        .map(|(rank, &(schema, table, oid))| (oid, (rank, Arc::from(qualified(schema, table)))))
        .collect();

    let [oid_at, column_at, attnum_at, detail_at, requires_at, lob_at, numeric_at, always_at] =
        positions(
            rows,
            [
                "table_oid",
                "column_name",
                "attnum",
                "detail",
                "insert_requires_value",
                "is_lob",
                "is_unbounded_numeric",
                "is_identity_always",
            ],
        );
    let mut columns: Vec<MappedColumn> = Vec::with_capacity(rows.len());
    for row in rows {
        let oid: u32 = row.get(oid_at);
        let Some((rank, table)) = names.get(&oid) else {
            continue;
        };
        let column: &str = row.get(column_at);
        let mut name = String::with_capacity(table.len() + column.len() + 3);
        name.push_str(table);
        name.push('.');
        push_quoted(&mut name, column);
        columns.push(MappedColumn {
            table_oid: oid,
            table: Arc::clone(table),
            qualified: name,
            attnum: row.get(attnum_at),
            detail: row.get(detail_at),
            insert_requires_value: row.get(requires_at),
            is_lob: row.get(lob_at),
            is_unbounded_numeric: row.get(numeric_at),
            is_identity_always: row.get(always_at),
            table_rank: *rank,
        });
    }
    columns.sort_unstable_by_key(|c| (c.table_rank, c.attnum));
    columns
}

/// The full inventory of `schema_objects`: the columns plus the rows of `sql/schema_inventory.sql`,
/// sorted by kind and name.
fn inventory(columns: &[MappedColumn], other: &[Row]) -> Vec<SchemaObject> {
    let [kind_at, schema_at, table_at, object_at, detail_at, key_at, oid_at] = positions(
        other,
        [
            "kind",
            "schema_name",
            "table_name",
            "object_name",
            "detail",
            "key",
            "table_oid",
        ],
    );
    // Each table's columns (sorted by table, then attnum), to name primary key columns by number.
    let mut columns_of: HashMap<u32, Range<usize>> = HashMap::new();
    let mut start = 0;
    for (i, column) in columns.iter().enumerate() {
        if columns.get(i + 1).map(|c| c.table_oid) != Some(column.table_oid) {
            columns_of.insert(column.table_oid, start..i + 1);
            start = i + 1;
        }
    }
    let key_names = |oid: Option<u32>, key: &[i16]| -> String {
        let table_columns = oid
            .and_then(|oid| columns_of.get(&oid))
            .map_or(&columns[..0], |range| &columns[range.clone()]);
        key.iter()
            .map(|attnum| {
                table_columns
                    .binary_search_by_key(attnum, |c| c.attnum)
                    .map_or_else(
                        |_| format!("#{attnum}"),
                        |i| table_columns[i].quoted_column().to_string(),
                    )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut objects: Vec<SchemaObject> = other
        .iter()
        .filter_map(|row| {
            let kind = ObjectKind::parse(row.get::<_, &str>(kind_at))?;
            let schema: Option<&str> = row.get(schema_at);
            let table: Option<&str> = row.get(table_at);
            let object: Option<&str> = row.get(object_at);
            let (schema, object_or_table) = (
                schema.unwrap_or_default(),
                object.or(table).unwrap_or_default(),
            );
            let owner = table.map(|t| qualified(schema, t));
            let mut detail: String = row.get(detail_at);
            let name = match kind {
                ObjectKind::Schema => quote_if_needed(schema),
                ObjectKind::Extension => quote_if_needed(object_or_table),
                ObjectKind::Table | ObjectKind::PrimaryKey => owner.clone().unwrap_or_default(),
                ObjectKind::ForeignKey
                | ObjectKind::UniqueConstraint
                | ObjectKind::CheckConstraint
                | ObjectKind::ExclusionConstraint
                | ObjectKind::Trigger => {
                    let mut name = owner.clone().unwrap_or_default();
                    name.push('.');
                    push_quoted(&mut name, object_or_table);
                    name
                }
                ObjectKind::Function => {
                    let name = format!("{}({detail})", qualified(schema, object_or_table));
                    detail.clear();
                    name
                }
                _ => qualified(schema, object_or_table),
            };
            if kind == ObjectKind::PrimaryKey {
                if let Some(key) = row.get::<_, Option<Vec<i16>>>(key_at) {
                    detail = key_names(row.get(oid_at), &key);
                }
            }
            if kind == ObjectKind::Sequence {
                detail = sequence_type(&detail).to_string();
            }
            Some(SchemaObject {
                kind,
                name,
                table: if kind == ObjectKind::Table {
                    None
                } else {
                    owner
                },
                detail,
                insert_requires_value: false,
            })
        })
        .chain(columns.iter().map(|c| SchemaObject {
            kind: ObjectKind::Column,
            name: c.qualified.clone(),
            table: Some(c.table.to_string()),
            detail: c.detail.clone(),
            insert_requires_value: c.insert_requires_value,
        }))
        .collect();
    objects.sort_unstable_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    objects
}

/// A sequence's data type from its oid (as text): a sequence is smallint, integer or bigint.
fn sequence_type(oid: &str) -> &str {
    match oid {
        "21" => "smallint",
        "23" => "integer",
        "20" => "bigint",
        other => other,
    }
}

/// `target_not_empty.sql`'s (schema, table) rows as quoted names, in name order.
pub(super) fn qualified_names_from_rows(rows: &[Row]) -> Vec<String> {
    let mut names: Vec<(&str, &str)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    names.sort_unstable();
    names.into_iter().map(|(s, t)| qualified(s, t)).collect()
}
