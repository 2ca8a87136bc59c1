//! Which tables the DMS task maps: its selection rules, turned into SQL `LIKE` patterns that every
//! table-level check passes as parameters (`sql/mapped_tables.sql`), so the filter runs in the catalog
//! query, not per table in Rust.

use crate::errors::StepError;
use crate::rules::table_mapping::{RuleAction, TableMappings};

/// Include and exclude rules as (schema pattern, table pattern) pairs in `LIKE` syntax.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableSelection {
    include: Vec<(String, String)>,
    exclude: Vec<(String, String)>,
}

impl TableSelection {
    /// Every table of every non-system schema (the task's `%`.`%` rule).
    pub fn all() -> Self {
        TableSelection {
            include: vec![("%".into(), "%".into())],
            exclude: Vec::new(),
        }
    }

    /// Every table of the named schemas (exact names, as stored: `Sales`, not `"Sales"`).
    pub fn schemas<S: AsRef<str>>(names: &[S]) -> Self {
        TableSelection {
            include: names
                .iter()
                .map(|s| (escape_like(s.as_ref()), "%".to_string()))
                .collect(),
            exclude: Vec::new(),
        }
    }

    /// From the task's `TableMappings` JSON, read by `TableMappings::parse` (the one parser of it):
    /// `include` and `explicit` rules select, `exclude` rules deselect; wildcards as `dms_pattern_to_like`
    /// says.
    pub fn from_dms_table_mappings(json: &str) -> Result<Self, StepError> {
        let bad = |why: String| StepError::payload(format!("table mappings: {why}"));
        let mappings = TableMappings::parse(json).map_err(bad)?;
        let mut selection = TableSelection {
            include: Vec::new(),
            exclude: Vec::new(),
        };
        for rule in &mappings.selections {
            let pair = (
                dms_pattern_to_like(&rule.schema).map_err(bad)?,
                dms_pattern_to_like(&rule.table).map_err(bad)?,
            );
            match rule.action {
                RuleAction::Include | RuleAction::Explicit => selection.include.push(pair),
                RuleAction::Exclude => selection.exclude.push(pair),
            }
        }
        if selection.include.is_empty() {
            return Err(bad("no selection rule includes any table".into()));
        }
        Ok(selection)
    }

    /// `$1..$4` of `sql/mapped_tables.sql`: include schema and table patterns, exclude schema and table.
    pub(crate) fn params(&self) -> [Vec<String>; 4] {
        let split = |pairs: &[(String, String)]| -> (Vec<String>, Vec<String>) {
            pairs.iter().cloned().unzip()
        };
        let (include_schemas, include_tables) = split(&self.include);
        let (exclude_schemas, exclude_tables) = split(&self.exclude);
        [
            include_schemas,
            include_tables,
            exclude_schemas,
            exclude_tables,
        ]
    }
}

/// A literal name as a `LIKE` pattern (default escape character `\`).
fn escape_like(name: &str) -> String {
    name.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// A DMS object-locator name as a `LIKE` pattern. DMS wildcards (see `crate::rules::table_mapping`): `%` any
/// run, `_` one character (both mean the same in LIKE), `[x]` the literal x (e.g. `[_]`). Sets and ranges
/// (`[ab]`, `[a-d]`) have no LIKE equivalent and are refused rather than silently widened.
fn dms_pattern_to_like(pattern: &str) -> Result<String, String> {
    let mut like = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' | '_' => like.push(c),
            '\\' => like.push_str("\\\\"),
            '[' => {
                let inner: String = chars.by_ref().take_while(|&c| c != ']').collect();
                let mut inner_chars = inner.chars();
                match (inner_chars.next(), inner_chars.next()) {
                    (Some(literal), None) => like.push_str(&escape_like(&literal.to_string())),
                    _ => {
                        return Err(format!(
                            "`{pattern}`: the set or range `[{inner}]` is not supported by the checks' table filter"
                        ))
                    }
                }
            }
            other => like.push(other),
        }
    }
    Ok(like)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dms_rules_become_like_patterns() {
        let json = r#"{"rules":[
            {"rule-type":"selection","rule-id":"1","rule-name":"1",
             "object-locator":{"schema-name":"Sales","table-name":"order_%"},"rule-action":"include"},
            {"rule-type":"selection","rule-id":"2","rule-name":"2",
             "object-locator":{"schema-name":"%","table-name":"tmp%"},"rule-action":"exclude"},
            {"rule-type":"transformation","rule-id":"3","rule-name":"3","rule-target":"schema",
             "object-locator":{"schema-name":"%"},"rule-action":"rename","value":"x"}
        ]}"#;
        let selection = TableSelection::from_dms_table_mappings(json).unwrap();
        assert_eq!(
            TableSelection::from_dms_table_mappings(
                r#"{"rules":[{"rule-type":"selection","object-locator":{"schema-name":"app"},"rule-action":"include"}]}"#
            )
            .unwrap()
            .params()[1],
            ["%"],
            "a rule naming only a schema selects every table in it, as DMS reads it"
        );
        assert_eq!(
            selection.params(),
            [
                vec!["Sales".to_string()],
                vec!["order_%".to_string()],
                vec!["%".to_string()],
                vec!["tmp%".to_string()]
            ]
        );
    }

    #[test]
    fn bad_mappings_are_named() {
        for (json, expected) in [
            ("nope", "not JSON"),
            ("{}", "no `rules` array"),
            (r#"{"rules":[]}"#, "no selection rule includes"),
            (
                r#"{"rules":[{"rule-type":"selection","object-locator":{"table-name":"a"},"rule-action":"include"}]}"#,
                "`schema-name`",
            ),
            (
                r#"{"rules":[{"rule-type":"selection","object-locator":{"schema-name":"a","table-name":"t[ab]"},"rule-action":"include"}]}"#,
                "set or range `[ab]`",
            ),
        ] {
            let err = TableSelection::from_dms_table_mappings(json).unwrap_err();
            assert!(err.message.contains(expected), "{json}: {}", err.message);
        }
    }

    #[test]
    fn dms_wildcards() {
        assert_eq!(dms_pattern_to_like("a[_]b_%").unwrap(), "a\\_b_%");
        assert!(dms_pattern_to_like("t[ab]").is_err());
    }

    #[test]
    fn schema_names_are_literal() {
        assert_eq!(
            TableSelection::schemas(&["my_app", "100%"]).params()[0],
            vec!["my\\_app".to_string(), "100\\%".to_string()]
        );
        assert_eq!(TableSelection::all().params()[1], vec!["%".to_string()]);
    }
}
