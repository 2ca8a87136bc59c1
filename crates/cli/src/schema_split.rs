//! Splits `pg_dump --schema-only` plain output into the pre-load DDL and the deferred items, by the one
//! phase rule in `dms_core::rules::schema_objects`. Each TOC entry of the dump starts with a
//! `-- Name: N; Type: T; Schema: S; Owner: O` header; the entry's type and statement classify it.
//! Three rewrites make the pre-load part load-friendly: CHECK constraints written inside CREATE TABLE
//! move to the deferred items, identity columns GENERATED ALWAYS are created BY DEFAULT (DMS inserts
//! explicit values) with an item restoring ALWAYS, and CREATE SCHEMA tolerates an existing schema.

use std::collections::{BTreeMap, HashSet};

use dms_core::errors::StepError;
use dms_core::rules::schema_objects::{ObjectKind, Phase};
use dms_core::rules::sql_ident::quote;

use crate::deferred_file::{DeferredKind, Item};

#[derive(Debug, Default)]
pub struct Plan {
    /// Statements for one transaction on the target, in pg_dump's dependency order.
    pub pre_load_sql: String,
    /// Pre-load objects by kind label.
    pub pre_load_counts: BTreeMap<&'static str, usize>,
    pub deferred: Vec<Item>,
    /// Extensions the dump creates (header names).
    pub extensions: Vec<String>,
    /// Schemas the dump creates or puts tables in, in dump order.
    pub schemas: Vec<String>,
    /// `(schema, table)` of every table the dump creates.
    pub tables: Vec<(String, String)>,
}

impl Plan {
    pub fn deferred_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for item in &self.deferred {
            *counts.entry(item.kind.label()).or_insert(0) += 1;
        }
        counts
    }
}

struct Entry<'a> {
    name: &'a str,
    kind: &'a str,
    schema: &'a str,
    body: String,
}

pub fn split(dump: &str) -> Result<Plan, StepError> {
    let entries = entries(dump);
    // Partition primary keys are attached to the parent's (`INDEX ATTACH`): those attachments belong
    // with the primary keys, before the load.
    let primary_key_indexes: HashSet<Qualified> = entries
        .iter()
        .filter(|e| ObjectKind::from_pg_dump_entry(e.kind, &e.body) == Some(ObjectKind::PrimaryKey))
        .filter_map(|e| Some((e.schema.to_string(), constraint_name(&e.body)?)))
        .collect();
    let mut plan = Plan::default();
    let mut checks_from_tables = Vec::new();
    let mut identities = Vec::new();
    for entry in &entries {
        let unreadable = |what: &str| {
            StepError::payload(format!(
                "pg_dump entry `{}` ({}, schema {}): cannot read its {what}; please report this dump entry",
                entry.name, entry.kind, entry.schema
            ))
        };
        if entry.kind == "INDEX ATTACH" {
            let (parent, child) = index_attach(&entry.body).ok_or_else(|| unreadable("indexes"))?;
            if primary_key_indexes.contains(&parent) {
                push_sql(&mut plan.pre_load_sql, &entry.body);
            } else {
                plan.deferred.push(Item {
                    kind: DeferredKind::IndexAttach,
                    schema: child.0,
                    table: parent.1,
                    name: child.1,
                    sql: entry.body.clone(),
                });
            }
            continue;
        }
        if entry.kind == "COMMENT"
            && ["INDEX ", "CONSTRAINT ", "TRIGGER "]
                .iter()
                .any(|p| entry.name.starts_with(p))
        {
            plan.deferred.push(Item {
                kind: DeferredKind::Comment,
                schema: entry.schema.to_string(),
                table: String::new(),
                name: entry.name.to_string(),
                sql: entry.body.clone(),
            });
            continue;
        }
        let Some(kind) = ObjectKind::from_pg_dump_entry(entry.kind, &entry.body) else {
            push_sql(&mut plan.pre_load_sql, &entry.body);
            continue;
        };
        if kind.phase() == Phase::Deferred {
            plan.deferred
                .push(deferred_item(kind, entry).ok_or_else(|| unreadable("name"))?);
            continue;
        }
        *plan.pre_load_counts.entry(kind.as_str()).or_insert(0) += 1;
        let mut body = entry.body.clone();
        match kind {
            ObjectKind::Schema => {
                body = body.replacen("CREATE SCHEMA ", "CREATE SCHEMA IF NOT EXISTS ", 1);
                add_once(&mut plan.schemas, entry.name);
            }
            ObjectKind::Extension => plan.extensions.push(entry.name.to_string()),
            ObjectKind::Table => {
                add_once(&mut plan.schemas, entry.schema);
                plan.tables
                    .push((entry.schema.to_string(), entry.name.to_string()));
                let (kept, checks) = take_inline_checks(&body, entry)
                    .ok_or_else(|| unreadable("CHECK constraints"))?;
                body = kept;
                checks_from_tables.extend(checks);
            }
            ObjectKind::Sequence if body.contains("ADD GENERATED ALWAYS AS IDENTITY") => {
                let (schema, table, column) =
                    identity_column(&body).ok_or_else(|| unreadable("identity column"))?;
                body = body.replacen(
                    "ADD GENERATED ALWAYS AS IDENTITY",
                    "ADD GENERATED BY DEFAULT AS IDENTITY",
                    1,
                );
                identities.push(Item {
                    kind: DeferredKind::IdentityAlways,
                    sql: format!(
                        "ALTER TABLE {}.{} ALTER COLUMN {} SET GENERATED ALWAYS;",
                        quote(&schema),
                        quote(&table),
                        quote(&column)
                    ),
                    schema,
                    table,
                    name: column,
                });
            }
            _ => {}
        }
        push_sql(&mut plan.pre_load_sql, &body);
    }
    // Checks first (they need nothing else), identity last (nothing depends on it).
    plan.deferred.splice(0..0, checks_from_tables);
    plan.deferred.extend(identities);
    Ok(plan)
}

/// The TOC entries in dump order. Text before the first header (session settings, `\restrict`) is
/// dropped: the caller sets up its own session.
fn entries(dump: &str) -> Vec<Entry<'_>> {
    let lines: Vec<&str> = dump.lines().collect();
    let mut entries: Vec<Entry> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let header = (lines[i] == "--" && lines.get(i + 2) == Some(&"--"))
            .then(|| lines.get(i + 1).and_then(|l| parse_header(l)))
            .flatten();
        if let Some((name, kind, schema)) = header {
            entries.push(Entry {
                name,
                kind,
                schema,
                body: String::new(),
            });
            i += 3;
            continue;
        }
        if lines[i] == "-- PostgreSQL database dump complete" {
            // Its opening `--` line went into the last body: take it back.
            if let Some(entry) = entries.last_mut() {
                let kept = entry.body.trim_end().trim_end_matches("\n--").len();
                entry.body.truncate(kept);
            }
            break;
        }
        if let Some(entry) = entries.last_mut() {
            if !is_session_noise(lines[i]) {
                entry.body.push_str(lines[i]);
                entry.body.push('\n');
            }
        }
        i += 1;
    }
    for entry in &mut entries {
        entry.body = entry.body.trim().to_string();
    }
    entries
}

fn parse_header(line: &str) -> Option<(&str, &str, &str)> {
    let rest = line.strip_prefix("-- Name: ")?;
    let (name, rest) = rest.split_once("; Type: ")?;
    let (kind, rest) = rest.split_once("; Schema: ")?;
    let (schema, _) = rest.split_once("; Owner: ")?;
    Some((name, kind, schema))
}

/// Settings pg_dump emits between entries, and psql meta-commands (`\restrict`, `\unrestrict`), which
/// are not SQL.
fn is_session_noise(line: &str) -> bool {
    line.starts_with('\\')
        || line.starts_with("SET default_tablespace = ")
        || line.starts_with("SET default_table_access_method = ")
}

fn push_sql(out: &mut String, body: &str) {
    if !body.is_empty() {
        out.push_str(body);
        out.push_str("\n\n");
    }
}

fn add_once(list: &mut Vec<String>, name: &str) {
    if !list.iter().any(|n| n == name) {
        list.push(name.to_string());
    }
}

fn deferred_item(kind: ObjectKind, entry: &Entry) -> Option<Item> {
    let (kind, name, table) = match kind {
        ObjectKind::Index => {
            let (name, table) = index_name_and_table(&entry.body)?;
            (DeferredKind::Index, name, table)
        }
        ObjectKind::Trigger => {
            let after = entry
                .body
                .strip_prefix("CREATE TRIGGER ")
                .or_else(|| entry.body.strip_prefix("CREATE CONSTRAINT TRIGGER "))?;
            let (name, _) = ident(after)?;
            let table = entry.name.strip_suffix(&format!(" {name}"))?.to_string();
            (DeferredKind::Trigger, name, table)
        }
        _ => {
            let name = constraint_name(&entry.body)?;
            let table = entry.name.strip_suffix(&format!(" {name}"))?.to_string();
            let kind = match kind {
                ObjectKind::ForeignKey => DeferredKind::ForeignKey,
                ObjectKind::UniqueConstraint => DeferredKind::UniqueConstraint,
                ObjectKind::ExclusionConstraint => DeferredKind::ExclusionConstraint,
                _ => DeferredKind::CheckConstraint,
            };
            (kind, name, table)
        }
    };
    Some(Item {
        kind,
        schema: entry.schema.to_string(),
        table,
        name,
        sql: entry.body.clone(),
    })
}

/// `... ADD CONSTRAINT name ...` → name.
fn constraint_name(statement: &str) -> Option<String> {
    let (_, after) = statement.split_once("ADD CONSTRAINT ")?;
    Some(ident(after)?.0)
}

/// `CREATE [UNIQUE] INDEX name ON [ONLY] schema.table ...` → (name, table).
fn index_name_and_table(statement: &str) -> Option<(String, String)> {
    let (_, after) = statement.split_once("INDEX ")?;
    let (name, rest) = ident(after)?;
    let rest = rest.strip_prefix(" ON ")?;
    let rest = rest.strip_prefix("ONLY ").unwrap_or(rest);
    let ((_, table), _) = qualified(rest)?;
    Some((name, table))
}

/// `(schema, name)`, unquoted.
pub type Qualified = (String, String);

/// `ALTER INDEX parent ATTACH PARTITION child;` → (parent, child).
fn index_attach(statement: &str) -> Option<(Qualified, Qualified)> {
    let (parent, rest) = qualified(statement.strip_prefix("ALTER INDEX ")?)?;
    let (child, _) = qualified(rest.strip_prefix(" ATTACH PARTITION ")?)?;
    Some((parent, child))
}

/// `ALTER TABLE [ONLY] schema.table ALTER COLUMN col ADD GENERATED ...` → (schema, table, column).
fn identity_column(statement: &str) -> Option<(String, String, String)> {
    let rest = statement.strip_prefix("ALTER TABLE ")?;
    let rest = rest.strip_prefix("ONLY ").unwrap_or(rest);
    let ((schema, table), rest) = qualified(rest)?;
    let (column, _) = ident(rest.strip_prefix(" ALTER COLUMN ")?)?;
    Some((schema, table, column))
}

/// Removes the `CONSTRAINT name CHECK (...)` lines pg_dump writes inside CREATE TABLE (one element per
/// line) and returns them as deferred `ALTER TABLE ... ADD CONSTRAINT` items.
fn take_inline_checks(body: &str, entry: &Entry) -> Option<(String, Vec<Item>)> {
    let lines: Vec<&str> = body.lines().collect();
    let Some(open) = lines
        .iter()
        .position(|l| l.starts_with("CREATE ") && l.ends_with(" ("))
    else {
        return Some((body.to_string(), Vec::new()));
    };
    let close = open + lines[open..].iter().position(|l| l.starts_with(')'))?;
    let (_, table_text) = lines[open].split_once("TABLE ")?;
    let table_text = table_text.strip_suffix(" (")?;
    let mut elements: Vec<String> = Vec::new();
    let mut checks = Vec::new();
    for line in &lines[open + 1..close] {
        let check = line.strip_prefix("    CONSTRAINT ").and_then(|rest| {
            let (name, rest) = ident(rest)?;
            let definition = rest.strip_prefix(" CHECK ")?;
            Some((name, definition.trim_end_matches(',')))
        });
        match check {
            Some((name, definition)) => checks.push(Item {
                kind: DeferredKind::CheckConstraint,
                schema: entry.schema.to_string(),
                table: entry.name.to_string(),
                sql: format!(
                    "ALTER TABLE {table_text} ADD CONSTRAINT {} CHECK {definition};",
                    quote(&name)
                ),
                name,
            }),
            None => elements.push(line.to_string()),
        }
    }
    if checks.is_empty() {
        return Some((body.to_string(), checks));
    }
    if let Some(last) = elements.last_mut() {
        if let Some(stripped) = last.strip_suffix(',') {
            *last = stripped.to_string();
        }
    }
    let mut kept: Vec<String> = lines[..=open].iter().map(|l| l.to_string()).collect();
    kept.extend(elements);
    kept.extend(lines[close..].iter().map(|l| l.to_string()));
    Some((kept.join("\n"), checks))
}

/// One SQL identifier at the start of `text`, as pg_dump writes it (quoted with `""` escapes, or bare):
/// the name and the rest.
fn ident(text: &str) -> Option<(String, &str)> {
    if let Some(rest) = text.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = rest.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c != '"' {
                name.push(c);
            } else if chars.peek().map(|&(_, c)| c) == Some('"') {
                name.push('"');
                chars.next();
            } else {
                return Some((name, &rest[i + 1..]));
            }
        }
        return None;
    }
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .unwrap_or(text.len());
    (end > 0).then(|| (text[..end].to_string(), &text[end..]))
}

pub fn qualified(text: &str) -> Option<(Qualified, &str)> {
    let (schema, rest) = ident(text)?;
    let (name, rest) = ident(rest.strip_prefix('.')?)?;
    Some(((schema, name), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, kind: &str, schema: &str, body: &str) -> String {
        format!("--\n-- Name: {name}; Type: {kind}; Schema: {schema}; Owner: -\n--\n\n{body}\n\n\n")
    }

    #[test]
    fn identifiers_quoted_and_bare() {
        assert_eq!(
            ident("\"a \"\"b\"\" c\".rest"),
            Some(("a \"b\" c".to_string(), ".rest"))
        );
        assert_eq!(ident("plain_1 ON"), Some(("plain_1".to_string(), " ON")));
        assert_eq!(
            qualified("\"order\".\"Line 2024\" USING"),
            Some((("order".into(), "Line 2024".into()), " USING"))
        );
        assert_eq!(ident("\"unterminated"), None);
    }

    #[test]
    fn splits_by_the_core_phase_rule_with_the_rewrites() {
        let dump = [
            "SET statement_timeout = 0;\n\\restrict abc\n\n".to_string(),
            entry("Sales", "SCHEMA", "-", "CREATE SCHEMA \"Sales\";"),
            entry(
                "Customer Accounts",
                "TABLE",
                "Sales",
                "CREATE TABLE \"Sales\".\"Customer Accounts\" (\n    \"Id\" bigint NOT NULL,\n    \"Full Name\" text,\n    CONSTRAINT \"name not blank\" CHECK ((length(\"Full Name\") > 0))\n);",
            ),
            "SET default_tablespace = '';\n\n".to_string(),
            entry(
                "Customer Accounts_Id_seq",
                "SEQUENCE",
                "Sales",
                "ALTER TABLE \"Sales\".\"Customer Accounts\" ALTER COLUMN \"Id\" ADD GENERATED ALWAYS AS IDENTITY (\n    SEQUENCE NAME \"Sales\".\"Customer Accounts_Id_seq\"\n);",
            ),
            entry(
                "Customer Accounts Customer Accounts_pkey",
                "CONSTRAINT",
                "Sales",
                "ALTER TABLE ONLY \"Sales\".\"Customer Accounts\"\n    ADD CONSTRAINT \"Customer Accounts_pkey\" PRIMARY KEY (\"Id\");",
            ),
            entry(
                "Customer Accounts Customer Accounts_Email_key",
                "CONSTRAINT",
                "Sales",
                "ALTER TABLE ONLY \"Sales\".\"Customer Accounts\"\n    ADD CONSTRAINT \"Customer Accounts_Email_key\" UNIQUE (\"Email\");",
            ),
            entry(
                "Line_sku_idx",
                "INDEX",
                "order",
                "CREATE INDEX \"Line_sku_idx\" ON ONLY \"order\".\"Line\" USING btree (sku);",
            ),
            entry(
                "Line 2024_pkey",
                "INDEX ATTACH",
                "order",
                "ALTER INDEX \"order\".\"Line_pkey\" ATTACH PARTITION \"order\".\"Line 2024_pkey\";",
            ),
            entry(
                "Line 2024_sku_idx",
                "INDEX ATTACH",
                "order",
                "ALTER INDEX \"order\".\"Line_sku_idx\" ATTACH PARTITION \"order\".\"Line 2024_sku_idx\";",
            ),
            entry(
                "Line Line_pkey",
                "CONSTRAINT",
                "order",
                "ALTER TABLE ONLY \"order\".\"Line\"\n    ADD CONSTRAINT \"Line_pkey\" PRIMARY KEY (\"order\");",
            ),
            entry(
                "Items Items bump version",
                "TRIGGER",
                "inventory",
                "CREATE TRIGGER \"Items bump version\" BEFORE UPDATE ON inventory.\"Items\" FOR EACH ROW EXECUTE FUNCTION inventory.bump_version();",
            ),
            entry(
                "addresses addresses_accountId_fkey",
                "FK CONSTRAINT",
                "Sales",
                "ALTER TABLE ONLY \"Sales\".addresses\n    ADD CONSTRAINT \"addresses_accountId_fkey\" FOREIGN KEY (\"accountId\") REFERENCES \"Sales\".\"Customer Accounts\"(\"Id\");",
            ),
            "--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc\n".to_string(),
        ]
        .concat();
        let plan = split(&dump).unwrap();
        let sql = &plan.pre_load_sql;
        assert!(
            sql.starts_with("CREATE SCHEMA IF NOT EXISTS \"Sales\";"),
            "{sql}"
        );
        assert!(
            sql.contains("CREATE TABLE \"Sales\".\"Customer Accounts\" (\n    \"Id\" bigint NOT NULL,\n    \"Full Name\" text\n);"),
            "{sql}"
        );
        assert!(
            sql.contains("ADD GENERATED BY DEFAULT AS IDENTITY"),
            "{sql}"
        );
        assert!(
            sql.contains("ATTACH PARTITION \"order\".\"Line 2024_pkey\""),
            "{sql}"
        );
        for absent in [
            "\\",
            "SET ",
            "UNIQUE",
            "FOREIGN KEY",
            "CREATE TRIGGER",
            "CREATE INDEX",
            "CHECK",
            "Line 2024_sku_idx",
        ] {
            assert!(!sql.contains(absent), "{absent} in {sql}");
        }
        assert_eq!(plan.schemas, ["Sales"]);
        assert_eq!(plan.pre_load_counts.get("primary key"), Some(&2));
        let summary: Vec<(DeferredKind, &str, &str, &str)> = plan
            .deferred
            .iter()
            .map(|i| (i.kind, i.schema.as_str(), i.table.as_str(), i.name.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    DeferredKind::CheckConstraint,
                    "Sales",
                    "Customer Accounts",
                    "name not blank"
                ),
                (
                    DeferredKind::UniqueConstraint,
                    "Sales",
                    "Customer Accounts",
                    "Customer Accounts_Email_key"
                ),
                (DeferredKind::Index, "order", "Line", "Line_sku_idx"),
                (
                    DeferredKind::IndexAttach,
                    "order",
                    "Line_sku_idx",
                    "Line 2024_sku_idx"
                ),
                (
                    DeferredKind::Trigger,
                    "inventory",
                    "Items",
                    "Items bump version"
                ),
                (
                    DeferredKind::ForeignKey,
                    "Sales",
                    "addresses",
                    "addresses_accountId_fkey"
                ),
                (
                    DeferredKind::IdentityAlways,
                    "Sales",
                    "Customer Accounts",
                    "Id"
                ),
            ]
        );
        assert_eq!(
            plan.deferred[0].sql,
            "ALTER TABLE \"Sales\".\"Customer Accounts\" ADD CONSTRAINT \"name not blank\" CHECK ((length(\"Full Name\") > 0));"
        );
        assert!(
            plan.deferred[5].sql.ends_with("(\"Id\");"),
            "{}",
            plan.deferred[5].sql
        );
        assert_eq!(
            plan.deferred[6].sql,
            "ALTER TABLE \"Sales\".\"Customer Accounts\" ALTER COLUMN \"Id\" SET GENERATED ALWAYS;"
        );
    }
}
