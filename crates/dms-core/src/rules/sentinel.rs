//! The sentinel table: one small table that `dms-migrate schema apply` creates on both sides, inside the
//! first mapped schema so the task's table mappings replicate it from the start. `cutover-check` writes a
//! row on the source and waits for it on the target: the end-to-end proof that CDC is flowing and how long
//! a change takes right now. `cleanup` drops it on both sides. Its name is fixed so a user can exclude it
//! from anything else and recognise it.

use crate::rules::sql_ident::quote_if_needed as quote_ident;

pub const TABLE: &str = "dms_migrate_sentinel";

/// `"schema".dms_migrate_sentinel`, quoted for SQL.
pub fn qualified(schema: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(TABLE))
}

/// Idempotent DDL. A primary key, so DMS replicates UPDATE/DELETE and batch apply accepts it; a bounded
/// varchar, because DMS handles `text` as a LOB (and LOB columns cannot be part of a primary key).
pub fn create_sql(schema: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\
         token varchar(64) PRIMARY KEY, \
         written_at timestamptz NOT NULL DEFAULT clock_timestamp())",
        qualified(schema)
    )
}

pub fn drop_sql(schema: &str) -> String {
    format!("DROP TABLE IF EXISTS {}", qualified(schema))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_a_mixed_case_schema() {
        assert_eq!(qualified("Sales"), "\"Sales\".dms_migrate_sentinel");
        assert!(create_sql("a b")
            .starts_with("CREATE TABLE IF NOT EXISTS \"a b\".dms_migrate_sentinel"));
    }
}
