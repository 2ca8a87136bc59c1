//! The three set-based catalog reads the table-level checks share, on either side: the mapped tables with
//! their facts, their columns classified, and the other schema objects. Evaluating the mapped set over
//! 10,000 tables costs more than most checks, so each read serves several checks instead of every check
//! re-reading the catalogs (DESIGN §6: one query per check at most, never one per table).

use tokio_postgres::Row;

use crate::schema_objects::{ObjectKind, SchemaObject};

macro_rules! mapped_sql {
    ($file:literal) => {
        concat!(include_str!("sql/mapped_tables.sql"), include_str!($file))
    };
}

pub(super) const TABLE_FACTS_SQL: &str = mapped_sql!("sql/mapped_table_facts.sql");
pub(super) const COLUMNS_SQL: &str = mapped_sql!("sql/mapped_columns.sql");
pub(super) const INVENTORY_SQL: &str = mapped_sql!("sql/schema_inventory.sql");
pub(super) const NOT_EMPTY_SQL: &str = mapped_sql!("sql/target_not_empty.sql");

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

impl MappedTable {
    pub fn from_row(row: &Row) -> MappedTable {
        MappedTable {
            qualified: row.get("qualified"),
            sort_key: (row.get("schema_name"), row.get("table_name")),
            quoted_schema: row.get("quoted_schema"),
            relkind: row.get("relkind"),
            persistence: row.get("relpersistence"),
            replica_identity: row.get("relreplident"),
            is_partition: row.get("relispartition"),
            has_primary_key: row.get("has_primary_key"),
            schema_usage: row.get("schema_usage"),
            missing_privileges: row.get("missing_privileges"),
            partitions: row.get("partitions"),
        }
    }
}

/// One row of `sql/mapped_columns.sql`.
#[derive(Debug, Clone)]
pub(super) struct MappedColumn {
    pub table: String,
    /// The table's unquoted schema and name, for ordering.
    pub sort_key: (String, String),
    pub qualified: String,
    pub quoted_column: String,
    /// The column's position in its table, for ordering.
    pub attnum: i16,
    pub detail: String,
    pub insert_requires_value: bool,
    pub is_lob: bool,
    pub is_unbounded_numeric: bool,
    pub is_identity_always: bool,
}

impl MappedColumn {
    pub fn from_row(row: &Row) -> MappedColumn {
        MappedColumn {
            table: row.get("qualified"),
            sort_key: (row.get("schema_name"), row.get("table_name")),
            qualified: row.get("qualified_column"),
            quoted_column: row.get("quoted_column"),
            attnum: row.get("attnum"),
            detail: row.get("detail"),
            insert_requires_value: row.get("insert_requires_value"),
            is_lob: row.get("is_lob"),
            is_unbounded_numeric: row.get("is_unbounded_numeric"),
            is_identity_always: row.get("is_identity_always"),
        }
    }
}

/// Tables in name order (the SQL leaves ordering to the client: sorting in the server spills to disk on
/// large schemas).
pub(super) fn tables_from_rows(rows: &[Row]) -> Vec<MappedTable> {
    let mut tables: Vec<MappedTable> = rows.iter().map(MappedTable::from_row).collect();
    tables.sort_by(|a, b| a.sort_key.cmp(&b.sort_key));
    tables
}

/// Columns grouped by table in name order, in column order within each table.
pub(super) fn columns_from_rows(rows: &[Row]) -> Vec<MappedColumn> {
    let mut columns: Vec<MappedColumn> = rows.iter().map(MappedColumn::from_row).collect();
    columns.sort_unstable_by(|a, b| (&a.sort_key, a.attnum).cmp(&(&b.sort_key, b.attnum)));
    columns
}

/// The full inventory of `schema_objects`: the columns plus the rows of `sql/schema_inventory.sql`,
/// sorted by kind and name.
pub(super) fn inventory(columns: &[MappedColumn], other: &[Row]) -> Vec<SchemaObject> {
    let mut objects: Vec<SchemaObject> = other
        .iter()
        .filter_map(|row| {
            Some(SchemaObject {
                kind: ObjectKind::parse(row.get::<_, &str>(0))?,
                name: row.get(1),
                table: row.get(2),
                detail: row.get(3),
                insert_requires_value: row.get(4),
            })
        })
        .chain(columns.iter().map(|c| SchemaObject {
            kind: ObjectKind::Column,
            name: c.qualified.clone(),
            table: Some(c.table.clone()),
            detail: c.detail.clone(),
            insert_requires_value: c.insert_requires_value,
        }))
        .collect();
    objects.sort_unstable_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    objects
}
