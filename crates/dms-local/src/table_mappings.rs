//! A task's table mappings resolved against the source catalog. The selection rules themselves (DMS's
//! wildcards, include/exclude/explicit) are dms-core's `table_mapping`, shared with start-task and the checks;
//! this module adds what only dms-local needs: the text form DMS stores and the catalog query.
//! Transformation rules are accepted and ignored (dms-local renames nothing).

use dms_core::rules::table_mapping::{RuleAction, TableMappings};
use serde_json::Value;

/// The mapping as DMS stores and returns it (JSON text), from the object or the text the control API got.
pub fn mapping_text(mapping: &Value) -> String {
    match mapping {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Parses the stored text; a mapping that can select nothing is refused, as CreateReplicationTask does.
pub fn parse(text: &str) -> Result<TableMappings, String> {
    let mappings = TableMappings::parse(text)?;
    if !mappings
        .selections
        .iter()
        .any(|r| matches!(r.action, RuleAction::Include | RuleAction::Explicit))
    {
        return Err("the table mappings select nothing: add an include selection rule".into());
    }
    Ok(mappings)
}

/// The source's tables (schema, name) the mappings select, in catalog order.
pub fn resolve(mappings: &TableMappings, catalog: &[(String, String)]) -> Vec<(String, String)> {
    mappings.select(catalog).into_iter().cloned().collect()
}

/// Ordinary and partitioned (root) tables outside the system schemas.
pub const SOURCE_TABLES_SQL: &str = "
SELECT n.nspname::text, c.relname::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1, 2";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog() -> Vec<(String, String)> {
        [
            ("public", "orders"),
            ("public", "order_lines"),
            ("public", "audit_log"),
            ("sales", "orders"),
        ]
        .iter()
        .map(|(s, t)| (s.to_string(), t.to_string()))
        .collect()
    }

    #[test]
    fn include_then_exclude_resolves_against_the_catalog() {
        let mapping = json!({"rules": [
            {"rule-type": "selection", "rule-id": "1", "rule-name": "1",
             "object-locator": {"schema-name": "public", "table-name": "%"}, "rule-action": "include"},
            {"rule-type": "selection", "rule-id": "2", "rule-name": "2",
             "object-locator": {"schema-name": "public", "table-name": "audit%"}, "rule-action": "exclude"},
            {"rule-type": "transformation", "rule-id": "3", "rule-name": "3", "rule-action": "rename"}
        ]});
        let mappings = parse(&mapping_text(&mapping)).expect("valid");
        assert_eq!(
            resolve(&mappings, &catalog()),
            vec![
                ("public".to_string(), "orders".to_string()),
                ("public".to_string(), "order_lines".to_string())
            ]
        );
    }

    #[test]
    fn text_form_and_mappings_that_select_nothing() {
        let text = json!(
            r#"{"rules":[{"rule-type":"selection","rule-id":"1","rule-name":"1","object-locator":{"schema-name":"%","table-name":"orders"},"rule-action":"include"}]}"#
        );
        let mappings = parse(&mapping_text(&text)).expect("text form");
        assert_eq!(resolve(&mappings, &catalog()).len(), 2);
        assert!(parse(r#"{"rules": []}"#).is_err());
        assert!(parse("not json").is_err());
    }
}
