//! The deferred file: what `schema apply` leaves for `constraints apply`. Plain SQL a person can read and
//! run with psql, the statements exactly as `pg_dump` wrote them; before each one a machine-readable
//! comment line (`-- dms-migrate-item {json}`) saying what the statement creates, so `constraints apply`
//! can check whether it already exists and rewrite it to build online (NOT VALID + VALIDATE,
//! CONCURRENTLY).

use dms_core::errors::StepError;
use serde::{Deserialize, Serialize};

pub const DEFAULT_PATH: &str = "dms-migrate-deferred.sql";
const MARKER: &str = "-- dms-migrate-item ";
/// The first line of every deferred file; `parse` refuses a file without it, so a hand-written SQL file
/// given by mistake is refused instead of "applying" nothing and exiting 0.
const HEADER: &str =
    "-- Objects deferred until after the DMS full load, written by `dms-migrate schema apply`.";
/// What a deferred file looks like, for the refusal messages.
const SHAPE: &str = "a deferred file starts with the line \"-- Objects deferred until after the DMS full load, \
     written by `dms-migrate schema apply`.\" and puts a line `-- dms-migrate-item {json}` before each statement";

/// What a deferred statement creates. The constraint and index kinds follow `schema_objects`'s phase
/// rule; the last three exist only here (they follow the object they belong to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeferredKind {
    CheckConstraint,
    UniqueConstraint,
    ExclusionConstraint,
    Index,
    /// `ALTER INDEX parent ATTACH PARTITION child`: `name` is the child index, `table` the parent index.
    IndexAttach,
    Trigger,
    ForeignKey,
    Comment,
    /// `ALTER TABLE ... ALTER COLUMN ... SET GENERATED ALWAYS`: `name` is the column.
    IdentityAlways,
}

impl DeferredKind {
    pub fn label(self) -> &'static str {
        match self {
            DeferredKind::CheckConstraint => "check constraint",
            DeferredKind::UniqueConstraint => "unique constraint",
            DeferredKind::ExclusionConstraint => "exclusion constraint",
            DeferredKind::Index => "index",
            DeferredKind::IndexAttach => "index partition attach",
            DeferredKind::Trigger => "trigger",
            DeferredKind::ForeignKey => "foreign key",
            DeferredKind::Comment => "comment",
            DeferredKind::IdentityAlways => "identity always",
        }
    }
}

/// One deferred statement. Names are unquoted (as in the catalogs); `sql` is ready to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub kind: DeferredKind,
    pub schema: String,
    /// The table the object is on (the parent index for `IndexAttach`); empty for a comment.
    pub table: String,
    pub name: String,
    #[serde(skip)]
    pub sql: String,
}

impl Item {
    /// `schema.table.name` quoted where needed: how messages name the item.
    pub fn display_name(&self) -> String {
        let q = dms_core::rules::sql_ident::quote_if_needed;
        match (self.kind, self.table.is_empty()) {
            (DeferredKind::IndexAttach, _) | (_, true) => {
                format!("{}.{}", q(&self.schema), q(&self.name))
            }
            _ => format!("{}.{}.{}", q(&self.schema), q(&self.table), q(&self.name)),
        }
    }
}

pub fn render(items: &[Item]) -> String {
    let mut out = format!(
        "{HEADER}\n\
         -- `dms-migrate constraints apply` applies them online (foreign keys and checks NOT VALID then\n\
         -- VALIDATE, indexes CONCURRENTLY, identity columns back to GENERATED ALWAYS), skipping what exists.\n\
         -- The statements below are pg_dump's; psql can run them as they are, but builds each one offline.\n",
    );
    for item in items {
        // Serialising a struct of strings and a unit enum cannot fail.
        let meta = serde_json::to_string(item).unwrap_or_default();
        out.push_str(&format!("\n{MARKER}{meta}\n{}\n", item.sql.trim_end()));
    }
    out
}

/// The items in file order. A statement is everything up to the next marker line. A file that does not
/// start with the header, or holds SQL before its first item line, is not one `schema apply` wrote:
/// refused, naming the line, because that SQL would otherwise be silently skipped. A header and no items
/// is valid (a schema with nothing to defer).
pub fn parse(text: &str, path: &str) -> Result<Vec<Item>, StepError> {
    let not_deferred = |what: String| {
        StepError::payload(format!(
            "{path} is not a deferred file written by `dms-migrate schema apply`: {what}; {SHAPE}. \
             Give the file `schema apply --deferred-file` wrote, or write it again with `dms-migrate schema apply`"
        ))
    };
    let first = text.lines().next().unwrap_or_default();
    if first.trim_end() != HEADER {
        return Err(not_deferred(if text.trim().is_empty() {
            "the file is empty".to_string()
        } else {
            format!("line 1 is `{}`", excerpt(first))
        }));
    }
    let mut items: Vec<Item> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if items.is_empty() && !line.starts_with(MARKER) {
            let trimmed = line.trim();
            if !trimmed.is_empty() && !trimmed.starts_with("--") {
                return Err(not_deferred(format!(
                    "line {} holds SQL outside any item (`{}`)",
                    number + 1,
                    excerpt(line)
                )));
            }
            continue;
        }
        if let Some(meta) = line.strip_prefix(MARKER) {
            let item: Item = serde_json::from_str(meta).map_err(|e| {
                StepError::payload(format!(
                    "{path} line {}: the item comment is not one `schema apply` writes ({e}); \
                     write the file again with `dms-migrate schema apply`",
                    number + 1
                ))
            })?;
            items.push(item);
        } else if let Some(item) = items.last_mut() {
            item.sql.push_str(line);
            item.sql.push('\n');
        }
    }
    for item in &mut items {
        item.sql = item.sql.trim().to_string();
        if item.sql.is_empty() {
            return Err(StepError::payload(format!(
                "{path}: the {} {} has no statement; write the file again with `dms-migrate schema apply`",
                item.kind.label(),
                item.display_name()
            )));
        }
    }
    Ok(items)
}

/// A line as a message quotes it: at most 80 characters.
fn excerpt(line: &str) -> String {
    let line = line.trim();
    match line.char_indices().nth(80) {
        Some((end, _)) => format!("{}...", &line[..end]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_awkward_names_and_multi_line_sql() {
        let items = vec![
            Item {
                kind: DeferredKind::ForeignKey,
                schema: "Sales".into(),
                table: "Customer Accounts".into(),
                name: "a \"quoted\" fk".into(),
                sql: "ALTER TABLE ONLY \"Sales\".\"Customer Accounts\"\n    ADD CONSTRAINT x FOREIGN KEY (a) REFERENCES b(id);".into(),
            },
            Item {
                kind: DeferredKind::IdentityAlways,
                schema: "app".into(),
                table: "t".into(),
                name: "id".into(),
                sql: "ALTER TABLE app.t ALTER COLUMN id SET GENERATED ALWAYS;".into(),
            },
        ];
        let text = render(&items);
        assert_eq!(parse(&text, "f.sql").unwrap(), items);
        assert_eq!(
            items[0].display_name(),
            "\"Sales\".\"Customer Accounts\".\"a \"\"quoted\"\" fk\""
        );
    }

    #[test]
    fn a_file_schema_apply_did_not_write_is_refused() {
        for (text, names) in [
            ("DROP TABLE x;\n", "line 1 is `DROP TABLE x;`"),
            ("", "the file is empty"),
            (
                "-- my notes\nCREATE INDEX i ON t (a);\n",
                "line 1 is `-- my notes`",
            ),
            (
                &format!("{HEADER}\n-- a comment is fine\n\nDROP TABLE x;\n"),
                "line 4 holds SQL outside any item (`DROP TABLE x;`)",
            ),
        ] {
            let err = parse(text, "f.sql").unwrap_err();
            assert_eq!(err.name, dms_core::errors::ErrorName::PayloadInvalid);
            assert!(
                err.message.contains("f.sql is not a deferred file") && err.message.contains(names),
                "{text:?}: {}",
                err.message
            );
            assert!(
                err.message.contains("-- dms-migrate-item"),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn a_header_and_no_items_is_a_valid_empty_file() {
        assert_eq!(parse(&render(&[]), "f.sql").unwrap(), vec![]);
    }

    #[test]
    fn a_damaged_item_line_names_the_line() {
        let err = parse(
            &format!("{HEADER}\n-- dms-migrate-item {{\"kind\":\"nope\"}}\nSELECT 1;\n"),
            "f.sql",
        )
        .unwrap_err();
        assert!(err.message.contains("f.sql line 2"), "{}", err.message);
        let err = parse(&format!("{HEADER}\n-- dms-migrate-item {{\"kind\":\"index\",\"schema\":\"s\",\"table\":\"t\",\"name\":\"i\"}}\n"), "f.sql")
            .unwrap_err();
        assert!(
            err.message.contains("index s.t.i has no statement"),
            "{}",
            err.message
        );
    }
}
