//! The target database's tables, and emptying the mapped ones before a reload. The task's target table
//! preparation mode is `DO_NOTHING`, so DMS never empties a table itself: a reload into full tables
//! duplicates every row (<https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TaskSettings.FullLoad.html>).

use std::future::Future;

use dms_core::errors::StepError;
use dms_core::pg::{classify_pg_error, PgConnectOptions};
use dms_core::rules::sql_ident::quote;

/// Ordinary and partitioned tables that are not themselves partitions (truncating a partitioned table
/// empties its partitions, and DMS rules name the root), outside the system schemas, not created by an
/// extension, and not DMS's own `awsdms_*` control tables (DMS never maps those).
const LIST_TABLES_SQL: &str = r"
SELECT n.nspname, c.relname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND NOT c.relispartition
  AND n.nspname <> ALL (ARRAY['pg_catalog', 'information_schema'])
  AND n.nspname !~ '^pg_(toast|temp_)'
  AND c.relname NOT LIKE 'awsdms\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_class'::regclass
                    AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2";

/// As DMS's target after-connect script does: user triggers (an ON TRUNCATE audit trigger, say) stay quiet
/// while the replication tool writes.
const REPLICA_ROLE_SQL: &str = "SET session_replication_role = replica";

pub trait TargetTables {
    /// Every table of the target as (schema, table), as `LIST_TABLES_SQL` selects them.
    fn list(
        &self,
        target: &PgConnectOptions,
    ) -> impl Future<Output = Result<Vec<(String, String)>, StepError>> + Send;
    /// Empties exactly `tables` in one TRUNCATE statement.
    fn truncate(
        &self,
        target: &PgConnectOptions,
        tables: &[(String, String)],
    ) -> impl Future<Output = Result<(), StepError>> + Send;
}

pub struct PgTargetTables;

/// One statement for all tables: it takes every lock at once and either empties all or none.
pub fn truncate_statement(tables: &[(String, String)]) -> String {
    let names: Vec<String> = tables
        .iter()
        .map(|(schema, table)| format!("{}.{}", quote(schema), quote(table)))
        .collect();
    format!("TRUNCATE TABLE {}", names.join(", "))
}

impl TargetTables for PgTargetTables {
    async fn list(&self, target: &PgConnectOptions) -> Result<Vec<(String, String)>, StepError> {
        let client = target.connect().await?;
        let rows = client
            .query(LIST_TABLES_SQL, &[])
            .await
            .map_err(|e| classify_pg_error(&target.describe(), &e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn truncate(
        &self,
        target: &PgConnectOptions,
        tables: &[(String, String)],
    ) -> Result<(), StepError> {
        if tables.is_empty() {
            return Ok(());
        }
        let client = target.connect().await?;
        // One simple-protocol batch runs as one transaction: the role applies to the TRUNCATE.
        client
            .batch_execute(&format!(
                "{REPLICA_ROLE_SQL}; {}",
                truncate_statement(tables)
            ))
            .await
            .map_err(|e| classify_pg_error(&target.describe(), &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_identifier_is_quoted() {
        let tables = vec![
            ("public".to_string(), "orders".to_string()),
            ("Sales".to_string(), "line \"items\"".to_string()),
        ];
        assert_eq!(
            truncate_statement(&tables),
            r#"TRUNCATE TABLE "public"."orders", "Sales"."line ""items""""#
        );
    }
}
