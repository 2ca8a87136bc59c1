//! A DMS task's table mappings (the `TableMappings` JSON): which source tables the task selects. Used to
//! empty exactly the mapped target tables before a reload and to check that every mapped table exists.
//!
//! Selection rules name a schema and a table with DMS's wildcards (`%` any run of characters, `_` one
//! character, `[_]` a literal underscore, `[ab]` / `[a-d]` a set or range), see
//! <https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TableMapping.SelectionTransformation.Wildcards.html>.
//! A table is mapped when an `include` or `explicit` rule matches it and no `exclude` rule does, whatever
//! the order of the rules.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    Include,
    Exclude,
    /// Names one object exactly (no wildcards).
    Explicit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectionRule {
    pub name: String,
    pub action: RuleAction,
    pub schema: String,
    pub table: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableMappings {
    pub selections: Vec<SelectionRule>,
    /// Transformation rules that rename a schema or a table (`rule-name: rule-action`): with one of these
    /// the target names differ from the source names.
    pub renaming_rules: Vec<String>,
}

/// Transformation actions that change the name a schema or table has on the target.
const RENAMING_ACTIONS: &[&str] = &[
    "rename",
    "add-prefix",
    "remove-prefix",
    "replace-prefix",
    "add-suffix",
    "remove-suffix",
    "replace-suffix",
    "convert-lowercase",
    "convert-uppercase",
];

impl TableMappings {
    /// Parses the JSON DMS stores (a string holding `{"rules": [...]}`). The error says what is wrong.
    pub fn parse(text: &str) -> Result<TableMappings, String> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| format!("the table mappings are not JSON ({e})"))?;
        let rules = value
            .get("rules")
            .and_then(Value::as_array)
            .ok_or("the table mappings have no `rules` array")?;
        let mut mappings = TableMappings::default();
        for (index, rule) in rules.iter().enumerate() {
            let text_of = |key: &str| rule.get(key).and_then(Value::as_str).unwrap_or_default();
            let name = match text_of("rule-name") {
                "" => format!("rule {}", index + 1),
                name => name.to_string(),
            };
            match text_of("rule-type") {
                "selection" => mappings.selections.push(selection(rule, &name)?),
                "transformation" => {
                    let target = text_of("rule-target");
                    let action = text_of("rule-action");
                    if matches!(target, "schema" | "table") && RENAMING_ACTIONS.contains(&action) {
                        mappings
                            .renaming_rules
                            .push(format!("{name}: {action} {target}"));
                    }
                }
                // table-settings, post-processing...: they do not change which tables are mapped.
                _ => {}
            }
        }
        Ok(mappings)
    }

    /// Whether the task maps `schema.table`.
    pub fn maps(&self, schema: &str, table: &str) -> bool {
        let matching = |action: RuleAction| {
            self.selections.iter().any(|rule| {
                rule.action == action
                    && if action == RuleAction::Explicit {
                        rule.schema == schema && rule.table == table
                    } else {
                        wildcard_match(&rule.schema, schema) && wildcard_match(&rule.table, table)
                    }
            })
        };
        (matching(RuleAction::Include) || matching(RuleAction::Explicit))
            && !matching(RuleAction::Exclude)
    }

    /// The mapped tables among `tables` (schema, table), in the order given.
    pub fn select<'a>(&self, tables: &'a [(String, String)]) -> Vec<&'a (String, String)> {
        tables.iter().filter(|(s, t)| self.maps(s, t)).collect()
    }
}

fn selection(rule: &Value, name: &str) -> Result<SelectionRule, String> {
    let action = match rule.get("rule-action").and_then(Value::as_str) {
        Some("include") => RuleAction::Include,
        Some("exclude") => RuleAction::Exclude,
        Some("explicit") => RuleAction::Explicit,
        other => {
            return Err(format!(
                "selection rule `{name}` has rule-action {}; expected include, exclude or explicit",
                other.map(|a| format!("`{a}`")).unwrap_or("missing".into())
            ))
        }
    };
    let locator = rule.get("object-locator");
    let part = |key: &str| {
        locator
            .and_then(|l| l.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("selection rule `{name}` has no object-locator `{key}`"))
    };
    Ok(SelectionRule {
        name: name.to_string(),
        action,
        schema: part("schema-name")?,
        // DMS lets a rule name only a schema; that selects every table in it.
        table: part("table-name").unwrap_or_else(|_| "%".to_string()),
    })
}

#[derive(Debug, PartialEq)]
enum Token {
    Any,
    One,
    Char(char),
    Set(Vec<(char, char)>),
}

fn tokens(pattern: &str) -> Vec<Token> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '%' => out.push(Token::Any),
            '_' => out.push(Token::One),
            '[' => {
                if let Some(close) = chars[i + 1..].iter().position(|&c| c == ']') {
                    let body = &chars[i + 1..i + 1 + close];
                    if !body.is_empty() {
                        out.push(Token::Set(ranges(body)));
                        i += close + 2;
                        continue;
                    }
                }
                out.push(Token::Char('['));
            }
            c => out.push(Token::Char(c)),
        }
        i += 1;
    }
    out
}

fn ranges(body: &[char]) -> Vec<(char, char)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        if i + 2 < body.len() && body[i + 1] == '-' {
            out.push((body[i], body[i + 2]));
            i += 3;
        } else {
            out.push((body[i], body[i]));
            i += 1;
        }
    }
    out
}

/// DMS wildcard matching (`%`, `_`, `[...]`), case-sensitive like PostgreSQL's identifiers.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let tokens = tokens(pattern);
    let name: Vec<char> = name.chars().collect();
    // matched[j]: the tokens so far can match the first j characters of the name.
    let mut matched = vec![false; name.len() + 1];
    matched[0] = true;
    for token in &tokens {
        let mut next = vec![false; name.len() + 1];
        for j in 0..=name.len() {
            match token {
                Token::Any => next[j] = matched[j] || (j > 0 && next[j - 1]),
                _ if j == 0 => {}
                Token::One => next[j] = matched[j - 1],
                Token::Char(c) => next[j] = matched[j - 1] && name[j - 1] == *c,
                Token::Set(set) => {
                    let c = name[j - 1];
                    next[j] = matched[j - 1] && set.iter().any(|(lo, hi)| *lo <= c && c <= *hi);
                }
            }
        }
        matched = next;
    }
    matched[name.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_follow_the_dms_table() {
        assert!(wildcard_match("%", "orders"));
        assert!(wildcard_match("%", ""));
        assert!(wildcard_match("ord%", "orders"));
        assert!(wildcard_match("%der%", "orders"));
        assert!(!wildcard_match("ord%", "customers"));
        assert!(wildcard_match("t_1", "tx1"));
        assert!(!wildcard_match("t_1", "t1"));
        assert!(wildcard_match("t[_]1", "t_1"));
        assert!(!wildcard_match("t[_]1", "tx1"));
        assert!(wildcard_match("[ab]%", "beta"));
        assert!(!wildcard_match("[ab]%", "gamma"));
        assert!(wildcard_match("part_[a-d]", "part_c"));
        assert!(!wildcard_match("part_[a-d]", "part_e"));
        assert!(!wildcard_match("Orders", "orders"), "case-sensitive");
        assert!(wildcard_match("a[", "a["), "an unclosed bracket is literal");
    }

    const MAPPINGS: &str = r#"{"rules": [
        {"rule-type": "selection", "rule-id": "1", "rule-name": "all-public", "object-locator": {"schema-name": "public", "table-name": "%"}, "rule-action": "include"},
        {"rule-type": "selection", "rule-id": "2", "rule-name": "no-temp", "object-locator": {"schema-name": "public", "table-name": "tmp%"}, "rule-action": "exclude"},
        {"rule-type": "selection", "rule-id": "3", "rule-name": "one-audit", "object-locator": {"schema-name": "audit", "table-name": "log"}, "rule-action": "explicit"},
        {"rule-type": "transformation", "rule-id": "4", "rule-name": "lower-cols", "rule-target": "column", "object-locator": {"schema-name": "%", "table-name": "%", "column-name": "%"}, "rule-action": "convert-lowercase"}
    ]}"#;

    #[test]
    fn include_minus_exclude_plus_explicit() {
        let m = TableMappings::parse(MAPPINGS).unwrap();
        assert!(m.maps("public", "orders"));
        assert!(!m.maps("public", "tmp_orders"), "exclude wins");
        assert!(m.maps("audit", "log"));
        assert!(!m.maps("audit", "other"));
        assert!(!m.maps("sales", "orders"));
        assert!(
            m.renaming_rules.is_empty(),
            "column rules do not rename tables"
        );
        let tables = vec![
            ("public".to_string(), "a".to_string()),
            ("public".to_string(), "tmp1".to_string()),
            ("audit".to_string(), "log".to_string()),
        ];
        let selected: Vec<_> = m.select(&tables).into_iter().cloned().collect();
        assert_eq!(selected, vec![tables[0].clone(), tables[2].clone()]);
    }

    #[test]
    fn renames_and_bad_rules_are_reported() {
        let m = TableMappings::parse(r#"{"rules": [
            {"rule-type": "selection", "rule-name": "s", "object-locator": {"schema-name": "public", "table-name": "%"}, "rule-action": "include"},
            {"rule-type": "transformation", "rule-name": "to-app", "rule-target": "schema", "object-locator": {"schema-name": "public"}, "rule-action": "rename", "value": "app"}
        ]}"#).unwrap();
        assert_eq!(m.renaming_rules, vec!["to-app: rename schema".to_string()]);
        let err = TableMappings::parse(r#"{"rules": [{"rule-type": "selection", "rule-name": "s", "object-locator": {"schema-name": "public"}, "rule-action": "copy"}]}"#).unwrap_err();
        assert!(err.contains("`s`") && err.contains("`copy`"), "{err}");
        assert!(TableMappings::parse("not json").is_err());
        assert!(TableMappings::parse("{}").unwrap_err().contains("rules"));
    }
}
