//! Which schema objects must exist on the target before the DMS full load and which are applied after it.
//!
//! The task runs with `TargetTablePrepMode: DO_NOTHING`, so the tables must exist before the load, with
//! their primary keys (DMS's batch apply and CDC UPDATE/DELETE key on them). Foreign keys, triggers and
//! secondary indexes make a full load fail (rows arrive in any table order) or crawl, and unique
//! constraints trip batch apply, which applies a batch's net changes in an order that can transiently
//! duplicate a key. So they are deferred until after the load (`dms-migrate constraints apply`).
//! This is the one definition: `target.schema_matches` and `dms-migrate schema apply` both use it.

use crate::string_enum::string_enum;
use serde::{Deserialize, Serialize};

/// When an object is created on the target, relative to the DMS full load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    PreLoad,
    Deferred,
}

string_enum! {
    labels:
    /// The kinds of schema objects the migration knows about. The text is the inventory label; the
    /// deferred file's JSON names the kind in kebab case (`foreign-key`).
    #[derive(PartialOrd, Ord, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum ObjectKind {
        Schema => "schema",
        Extension => "extension",
        Type => "type",
        Table => "table",
        Column => "column",
        PrimaryKey => "primary key",
        Sequence => "sequence",
        Function => "function",
        View => "view",
        MaterializedView => "materialized view",
        ForeignKey => "foreign key",
        UniqueConstraint => "unique constraint",
        CheckConstraint => "check constraint",
        ExclusionConstraint => "exclusion constraint",
        Trigger => "trigger",
        Index => "index",
    }
}

impl ObjectKind {
    /// Pre-load: schemas, extensions, types, tables (with columns and primary keys), sequences, functions,
    /// views. Deferred: foreign keys, every other constraint (unique included), triggers, secondary indexes.
    pub fn phase(self) -> Phase {
        match self {
            ObjectKind::Schema
            | ObjectKind::Extension
            | ObjectKind::Type
            | ObjectKind::Table
            | ObjectKind::Column
            | ObjectKind::PrimaryKey
            | ObjectKind::Sequence
            | ObjectKind::Function
            | ObjectKind::View
            | ObjectKind::MaterializedView => Phase::PreLoad,
            ObjectKind::ForeignKey
            | ObjectKind::UniqueConstraint
            | ObjectKind::CheckConstraint
            | ObjectKind::ExclusionConstraint
            | ObjectKind::Trigger
            | ObjectKind::Index => Phase::Deferred,
        }
    }

    /// Classifies a `pg_dump` table-of-contents entry by its descriptor (`pg_restore -l` shows it, e.g.
    /// `FK CONSTRAINT`) and, for `CONSTRAINT`, its statement: pg_dump uses that one descriptor for primary
    /// keys, unique and exclusion constraints and separately dumped CHECK constraints. None: not a schema
    /// object of its own (COMMENT, ACL, DEFAULT, SEQUENCE OWNED BY... follow the object they belong to).
    pub fn from_pg_dump_entry(descriptor: &str, statement: &str) -> Option<ObjectKind> {
        let upper = statement.to_ascii_uppercase();
        Some(match descriptor {
            "SCHEMA" => ObjectKind::Schema,
            "EXTENSION" => ObjectKind::Extension,
            "TYPE" | "DOMAIN" => ObjectKind::Type,
            "TABLE" => ObjectKind::Table,
            "SEQUENCE" => ObjectKind::Sequence,
            "FUNCTION" | "PROCEDURE" | "AGGREGATE" => ObjectKind::Function,
            "VIEW" => ObjectKind::View,
            "MATERIALIZED VIEW" => ObjectKind::MaterializedView,
            "FK CONSTRAINT" => ObjectKind::ForeignKey,
            "CONSTRAINT" if upper.contains("PRIMARY KEY") => ObjectKind::PrimaryKey,
            "CONSTRAINT" if upper.contains(" UNIQUE") => ObjectKind::UniqueConstraint,
            "CONSTRAINT" if upper.contains(" EXCLUDE") => ObjectKind::ExclusionConstraint,
            "CONSTRAINT" | "CHECK CONSTRAINT" => ObjectKind::CheckConstraint,
            "TRIGGER" => ObjectKind::Trigger,
            "INDEX" => ObjectKind::Index,
            _ => return None,
        })
    }
}

/// One row of the catalog inventory of a database: what exists, by kind and qualified name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaObject {
    pub kind: ObjectKind,
    /// Qualified, quoted where needed (`format('%I.%I')`): `public."Order Items"`, `s.t.col`, `s.f(integer)`.
    pub name: String,
    /// The table the object belongs to (columns, constraints, triggers, indexes), qualified.
    pub table: Option<String>,
    /// What must match between source and target: a column's type and nullability, a primary key's
    /// columns, a sequence's data type. Empty where the name says it all.
    pub detail: String,
    /// Columns only: NOT NULL without a default, identity or generation, so an INSERT must give a value.
    pub insert_requires_value: bool,
}

impl SchemaObject {
    pub fn phase(&self) -> Phase {
        self.kind.phase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_follow_the_design() {
        let pre: Vec<_> = ObjectKind::ALL
            .into_iter()
            .filter(|k| k.phase() == Phase::PreLoad)
            .map(ObjectKind::as_str)
            .collect();
        assert_eq!(
            pre,
            [
                "schema",
                "extension",
                "type",
                "table",
                "column",
                "primary key",
                "sequence",
                "function",
                "view",
                "materialized view"
            ]
        );
        for kind in ObjectKind::ALL {
            assert_eq!(ObjectKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ObjectKind::UniqueConstraint.phase(), Phase::Deferred);
    }

    #[test]
    fn pg_dump_entries_are_classified() {
        let kind = |d, s| ObjectKind::from_pg_dump_entry(d, s);
        assert_eq!(
            kind(
                "CONSTRAINT",
                "ALTER TABLE ONLY public.t ADD CONSTRAINT t_pkey PRIMARY KEY (id);"
            ),
            Some(ObjectKind::PrimaryKey)
        );
        assert_eq!(
            kind(
                "CONSTRAINT",
                "ALTER TABLE ONLY public.t ADD CONSTRAINT t_email_key UNIQUE (email);"
            ),
            Some(ObjectKind::UniqueConstraint)
        );
        assert_eq!(
            kind(
                "FK CONSTRAINT",
                "ALTER TABLE ONLY a ADD CONSTRAINT f FOREIGN KEY (b) REFERENCES b(id);"
            ),
            Some(ObjectKind::ForeignKey)
        );
        assert_eq!(kind("INDEX", ""), Some(ObjectKind::Index));
        assert_eq!(kind("COMMENT", ""), None);
        assert_eq!(
            kind("CONSTRAINT", "ADD CONSTRAINT c CHECK (x > 0) NOT VALID;"),
            Some(ObjectKind::CheckConstraint)
        );
    }
}
