//! `dms-migrate constraints apply`: the deferred file of `schema apply`, applied online (it takes no lock
//! that stops the application's writes). It belongs to the cutover, after the DMS task is stopped: with the
//! stack's `BatchApplyEnabled`, DMS does not support target tables with a unique constraint besides the
//! primary key, and batches do not keep the order foreign keys need
//! (<https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TaskSettings.TargetMetadata.html>).
//! Foreign keys and checks `NOT VALID` then `VALIDATE`, indexes and unique
//! constraints built `CONCURRENTLY`, identity columns back to `GENERATED ALWAYS`. Resumable: one catalog
//! read up front says what already exists (skipped), an INVALID index an interruption left is dropped
//! and rebuilt, a NOT VALID constraint is validated. A violation fails its item, naming the constraint
//! and a sample offending key, after everything else that can be applied is.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use dms_core::errors::StepError;
use dms_core::pg::{classify_pg_error, PgConnectOptions};
use dms_core::rules::sql_ident::quote;
use serde::Serialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::connection::{self, Environment, Side};
use crate::deferred_file::{self, DeferredKind, Item};
use crate::output::{Format, Outcome, Progress};
use crate::schema_split;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Target (PlanetScale) URL; default $PGTARGET. TLS defaults to sslmode=verify-full.
    #[arg(long, env = "PGTARGET", hide_env_values = true, value_name = "URL")]
    pub target: Option<String>,
    /// The deferred file `schema apply` wrote.
    #[arg(long, alias = "deferred-file", value_name = "FILE", default_value = deferred_file::DEFAULT_PATH)]
    pub file: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Status {
    Applied,
    Skipped,
    Failed,
}

#[derive(Debug, Serialize)]
pub(crate) struct ItemReport {
    pub kind: &'static str,
    pub name: String,
    pub status: Status,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    applied: usize,
    skipped: usize,
    failed: usize,
}

#[derive(Serialize)]
struct Report<'a> {
    file: String,
    items: &'a [ItemReport],
    summary: Summary,
}

pub async fn run(args: Args, env: &Environment) -> Result<Outcome, StepError> {
    let progress = Progress::for_stderr();
    let path = args.file.display().to_string();
    let text = std::fs::read_to_string(&args.file).map_err(|e| {
        StepError::payload(format!(
            "cannot read the deferred file {path} ({e}): give the file `dms-migrate schema apply` wrote with --file"
        ))
    })?;
    let items = deferred_file::parse(&text, &path)?;
    let mut target = connection::options(Side::Target, args.target.as_deref(), env)?;
    // An index build or a validation on a large table takes as long as it takes.
    target.statement_timeout = Duration::ZERO;
    progress.say(&format!("connecting to {}", target.describe()));
    let client = target.connect().await?;
    let all: Vec<&Item> = items.iter().collect();
    let reports = apply_items(&client, &target, &all, &progress).await?;
    let count = |s| reports.iter().filter(|r| r.status == s).count();
    let summary = Summary {
        applied: count(Status::Applied),
        skipped: count(Status::Skipped),
        failed: count(Status::Failed),
    };
    let failed = summary.failed;
    match args.format {
        Format::Json => {
            let report = Report {
                file: path,
                items: &reports,
                summary,
            };
            let text = serde_json::to_string_pretty(&report)
                .map_err(|e| StepError::config(format!("rendering JSON: {e}")))?;
            println!("{text}");
        }
        Format::Text => print!("{}", render_text(&reports, &summary)),
    }
    Ok(if failed > 0 {
        Outcome::Failed
    } else {
        Outcome::Ok
    })
}

/// Applies `items` in order on `client`, each reported applied, skipped (already there) or failed (with
/// the reason); only a lost connection stops it. `constraints apply` gives every item of the file;
/// `cutover` gives the items that may run while DMS still applies changes, and later the rest.
pub(crate) async fn apply_items(
    client: &Client,
    target: &PgConnectOptions,
    items: &[&Item],
    progress: &Progress,
) -> Result<Vec<ItemReport>, StepError> {
    let catalog = Catalog::read(client, target).await?;
    let mut reports = Vec::with_capacity(items.len());
    for (n, item) in items.iter().enumerate() {
        progress.say(&format!(
            "[{}/{}] {} {}",
            n + 1,
            items.len(),
            item.kind.label(),
            item.display_name()
        ));
        let (status, detail) = match apply(client, &catalog, item).await {
            Ok(Done::Skipped(why)) => (Status::Skipped, why.to_string()),
            Ok(Done::Applied(how)) => (Status::Applied, how.to_string()),
            Err(err) if err.is_closed() => {
                return Err(classify_pg_error(&target.describe(), &err));
            }
            // A partition's copy of its parent's constraint is created with the parent's item.
            Err(err)
                if [SqlState::DUPLICATE_OBJECT, SqlState::DUPLICATE_TABLE]
                    .iter()
                    .any(|c| err.code() == Some(c)) =>
            {
                (
                    Status::Skipped,
                    "exists (created along with an earlier item)".to_string(),
                )
            }
            Err(err) => (Status::Failed, failure(client, item, &err).await),
        };
        reports.push(ItemReport {
            kind: item.kind.label(),
            name: item.display_name(),
            status,
            detail,
        });
    }
    Ok(reports)
}

enum Done {
    Applied(&'static str),
    Skipped(&'static str),
}

/// What exists on the target, read once: keys are unquoted catalog names.
#[derive(Default)]
struct Catalog {
    /// (schema, table, constraint) → validated
    constraints: HashMap<(String, String, String), bool>,
    /// (schema, index) → (valid, on a partitioned table)
    indexes: HashMap<(String, String), (bool, bool)>,
    triggers: HashSet<(String, String, String)>,
    /// (schema, table, column) → GENERATED ALWAYS
    identities: HashMap<(String, String, String), bool>,
    /// (schema, index) of partition indexes attached to a parent index
    attached: HashSet<(String, String)>,
    partitioned_tables: HashSet<(String, String)>,
}

impl Catalog {
    async fn read(client: &Client, side: &PgConnectOptions) -> Result<Catalog, StepError> {
        let rows = client
            .query(
                "WITH rel AS (
                   SELECT c.oid, n.nspname, c.relname, c.relkind FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
                     AND n.nspname NOT LIKE 'pg\\_toast%')
                 SELECT 'constraint', r.nspname, r.relname, con.conname::text, con.convalidated
                   FROM pg_constraint con JOIN rel r ON r.oid = con.conrelid
                 UNION ALL
                 SELECT 'index', i.nspname, t.relname, i.relname, x.indisvalid AND x.indisready
                   FROM pg_index x JOIN rel i ON i.oid = x.indexrelid JOIN rel t ON t.oid = x.indrelid
                 UNION ALL
                 SELECT 'partitioned index', i.nspname, '', i.relname, true FROM rel i WHERE i.relkind = 'I'
                 UNION ALL
                 SELECT 'trigger', r.nspname, r.relname, tg.tgname::text, true
                   FROM pg_trigger tg JOIN rel r ON r.oid = tg.tgrelid WHERE NOT tg.tgisinternal
                 UNION ALL
                 SELECT 'identity', r.nspname, r.relname, a.attname::text, a.attidentity = 'a'
                   FROM pg_attribute a JOIN rel r ON r.oid = a.attrelid
                   WHERE a.attidentity <> '' AND NOT a.attisdropped
                 UNION ALL
                 SELECT 'attached', i.nspname, '', i.relname, true
                   FROM pg_inherits h JOIN rel i ON i.oid = h.inhrelid WHERE i.relkind IN ('i', 'I')
                 UNION ALL
                 SELECT 'partitioned table', r.nspname, r.relname, '', true FROM rel r WHERE r.relkind = 'p'",
                &[],
            )
            .await
            .map_err(|e| classify_pg_error(&side.describe(), &e))?;
        let mut catalog = Catalog::default();
        let mut partitioned_indexes = HashSet::new();
        for row in rows {
            let (what, schema, table, name, flag): (&str, String, String, String, bool) =
                (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
            match what {
                "constraint" => {
                    catalog.constraints.insert((schema, table, name), flag);
                }
                "index" => {
                    catalog.indexes.insert((schema, name), (flag, false));
                }
                "partitioned index" => {
                    partitioned_indexes.insert((schema, name));
                }
                "trigger" => {
                    catalog.triggers.insert((schema, table, name));
                }
                "identity" => {
                    catalog.identities.insert((schema, table, name), flag);
                }
                "attached" => {
                    catalog.attached.insert((schema, name));
                }
                _ => {
                    catalog.partitioned_tables.insert((schema, table));
                }
            }
        }
        for key in partitioned_indexes {
            if let Some(state) = catalog.indexes.get_mut(&key) {
                state.1 = true;
            }
        }
        Ok(catalog)
    }
}

async fn apply(
    client: &Client,
    catalog: &Catalog,
    item: &Item,
) -> Result<Done, tokio_postgres::Error> {
    let on_table = (item.schema.clone(), item.table.clone(), item.name.clone());
    let index_key = (item.schema.clone(), item.name.clone());
    let table = format!("{}.{}", quote(&item.schema), quote(&item.table));
    let partitioned = catalog
        .partitioned_tables
        .contains(&(item.schema.clone(), item.table.clone()));
    let statement = item.sql.trim_end().trim_end_matches(';');
    let run = |sql: String| async move { client.batch_execute(&sql).await };
    match item.kind {
        DeferredKind::ForeignKey | DeferredKind::CheckConstraint => {
            let validate = format!(
                "ALTER TABLE {table} VALIDATE CONSTRAINT {}",
                quote(&item.name)
            );
            // The source left it NOT VALID (rows may violate it there): keep it so.
            let not_valid_at_source = statement.ends_with(" NOT VALID");
            match catalog.constraints.get(&on_table) {
                Some(true) => Ok(Done::Skipped("exists")),
                Some(false) if not_valid_at_source => {
                    Ok(Done::Skipped("exists (NOT VALID, as on the source)"))
                }
                Some(false) => {
                    run(validate).await?;
                    Ok(Done::Applied("validated (it was left NOT VALID)"))
                }
                // PostgreSQL cannot add a NOT VALID foreign key to a partitioned table, and VALIDATE
                // leaves the per-partition copies of one referencing a partitioned table NOT VALID.
                None if not_valid_at_source
                    || partitioned
                    || references_partitioned(catalog, statement) =>
                {
                    run(item.sql.clone()).await?;
                    Ok(Done::Applied("added"))
                }
                None => {
                    run(format!("{statement} NOT VALID")).await?;
                    run(validate).await?;
                    Ok(Done::Applied("added NOT VALID, then validated"))
                }
            }
        }
        DeferredKind::UniqueConstraint => {
            if catalog.constraints.contains_key(&on_table) {
                return Ok(Done::Skipped("exists"));
            }
            let Some((columns, attributes)) = unique_columns(statement).filter(|_| !partitioned)
            else {
                run(item.sql.clone()).await?;
                return Ok(Done::Applied("added"));
            };
            let index = format!("{}.{}", quote(&item.schema), quote(&item.name));
            let how = match catalog.indexes.get(&index_key) {
                Some((true, _)) => "index existed; constraint added on it",
                Some((false, _)) => {
                    run(format!("DROP INDEX CONCURRENTLY IF EXISTS {index}")).await?;
                    "an interrupted build left the index INVALID: dropped, rebuilt concurrently, constraint added on it"
                }
                None => "index built concurrently, constraint added on it",
            };
            if !matches!(catalog.indexes.get(&index_key), Some((true, _))) {
                run(format!(
                    "CREATE UNIQUE INDEX CONCURRENTLY {} ON {table} {columns}",
                    quote(&item.name)
                ))
                .await?;
            }
            run(format!(
                "ALTER TABLE {table} ADD CONSTRAINT {n} UNIQUE USING INDEX {n} {attributes}",
                n = quote(&item.name)
            ))
            .await?;
            Ok(Done::Applied(how))
        }
        DeferredKind::ExclusionConstraint => {
            if catalog.constraints.contains_key(&on_table) {
                return Ok(Done::Skipped("exists"));
            }
            run(item.sql.clone()).await?;
            Ok(Done::Applied("added"))
        }
        DeferredKind::Index => {
            let mut how = "built concurrently";
            match catalog.indexes.get(&index_key) {
                Some((true, _)) => return Ok(Done::Skipped("exists")),
                // A partitioned index is INVALID until every partition's index is attached: the attach
                // items complete it.
                Some((false, true)) => return Ok(Done::Skipped("exists (partitioned)")),
                Some((false, false)) => {
                    run(format!(
                        "DROP INDEX CONCURRENTLY IF EXISTS {}.{}",
                        quote(&item.schema),
                        quote(&item.name)
                    ))
                    .await?;
                    how = "an interrupted build left it INVALID: dropped and rebuilt concurrently";
                }
                None => {}
            }
            if statement.contains(" ON ONLY ") {
                how = "created on the partitioned table; its partitions' indexes attach to it";
            }
            run(concurrently(statement)).await?;
            Ok(Done::Applied(how))
        }
        DeferredKind::IndexAttach => {
            if catalog.attached.contains(&index_key) {
                return Ok(Done::Skipped("attached"));
            }
            run(item.sql.clone()).await?;
            Ok(Done::Applied("attached"))
        }
        DeferredKind::Trigger => {
            if catalog.triggers.contains(&on_table) {
                return Ok(Done::Skipped("exists"));
            }
            run(item.sql.clone()).await?;
            Ok(Done::Applied("created"))
        }
        DeferredKind::IdentityAlways => {
            if catalog.identities.get(&on_table) == Some(&true) {
                return Ok(Done::Skipped("already GENERATED ALWAYS"));
            }
            run(item.sql.clone()).await?;
            Ok(Done::Applied("GENERATED ALWAYS restored"))
        }
        // COMMENT ON replaces: running it again is harmless.
        DeferredKind::Comment => {
            run(item.sql.clone()).await?;
            Ok(Done::Applied("set"))
        }
    }
}

fn references_partitioned(catalog: &Catalog, statement: &str) -> bool {
    statement
        .split_once(" REFERENCES ")
        .and_then(|(_, rest)| schema_split::qualified(rest))
        .is_some_and(|(table, _)| catalog.partitioned_tables.contains(&table))
}

/// `CREATE [UNIQUE] INDEX name ON table ...` → the same built CONCURRENTLY. `ON ONLY` (a partitioned
/// table's parent index) cannot be built concurrently, and needs not: it covers no rows by itself.
fn concurrently(statement: &str) -> String {
    if statement.contains(" ON ONLY ") {
        return statement.to_string();
    }
    for prefix in ["CREATE INDEX ", "CREATE UNIQUE INDEX "] {
        if let Some(rest) = statement.strip_prefix(prefix) {
            return format!("{prefix}CONCURRENTLY {rest}");
        }
    }
    statement.to_string()
}

/// `... ADD CONSTRAINT c UNIQUE (a, b) [DEFERRABLE ...]` → ("(a, b)", "DEFERRABLE ..."). None for the
/// forms an index cannot simply carry (NULLS NOT DISTINCT, INCLUDE, WITH, USING INDEX TABLESPACE): those
/// are added as written.
fn unique_columns(statement: &str) -> Option<(&str, &str)> {
    let (_, definition) = statement.split_once(" UNIQUE ")?;
    if !definition.starts_with('(') {
        return None;
    }
    let mut depth = 0usize;
    let mut in_quotes = false;
    for (i, c) in definition.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            '(' if !in_quotes => depth += 1,
            ')' if !in_quotes => {
                depth -= 1;
                if depth == 0 {
                    let (columns, rest) = definition.split_at(i + 1);
                    let rest = rest.trim();
                    let plain = rest.is_empty()
                        || ["DEFERRABLE", "NOT DEFERRABLE", "INITIALLY"]
                            .iter()
                            .any(|p| rest.starts_with(p));
                    return plain.then_some((columns, rest));
                }
            }
            _ => {}
        }
    }
    None
}

/// The reason an item failed; for a violation, the constraint and a sample offending key. PostgreSQL's
/// own detail names the key for foreign keys (`Key (a)=(1) is not present in table ...`) and unique
/// builds (`Key (a)=(1) is duplicated.`); a check's row is looked up.
async fn failure(client: &Client, item: &Item, err: &tokio_postgres::Error) -> String {
    let Some(db) = err.as_db_error() else {
        return err.to_string();
    };
    let violation = [
        SqlState::FOREIGN_KEY_VIOLATION,
        SqlState::UNIQUE_VIOLATION,
        SqlState::CHECK_VIOLATION,
        SqlState::EXCLUSION_VIOLATION,
    ]
    .contains(db.code());
    if !violation {
        return format!("{} ({})", db.message(), db.code().code());
    }
    let key = match db.detail() {
        Some(detail) => detail.trim_end_matches('.').to_string(),
        None => check_sample(client, item)
            .await
            .unwrap_or_else(|| "no sample key could be read".to_string()),
    };
    format!(
        "existing rows violate {} {}: {}; sample offending key: {key}. Fix the rows on the target (or the \
         source, and let CDC carry it), then run constraints apply again",
        item.kind.label(),
        item.display_name(),
        db.message()
    )
}

/// The primary key (or ctid) of one row that fails the check, as JSON.
async fn check_sample(client: &Client, item: &Item) -> Option<String> {
    let table = format!("{}.{}", quote(&item.schema), quote(&item.table));
    let row = client
        .query_opt(
            "SELECT pg_get_constraintdef(con.oid),
                    (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.i)
                       FROM pg_index x CROSS JOIN unnest(x.indkey) WITH ORDINALITY AS k(n, i)
                       JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n
                      WHERE x.indrelid = con.conrelid AND x.indisprimary)
               FROM pg_constraint con
              WHERE con.conrelid = $1::text::regclass AND con.conname = $2",
            &[&table, &item.name],
        )
        .await
        .ok()??;
    let definition: String = row.get(0);
    let key_columns: Option<String> = row.get(1);
    let expression = definition
        .strip_prefix("CHECK ")?
        .trim_end_matches(" NOT VALID");
    let columns = key_columns.unwrap_or_else(|| "ctid".to_string());
    let sample = client
        .query_opt(
            &format!(
                "SELECT row_to_json(k)::text FROM (SELECT {columns} FROM {table} WHERE NOT {expression} LIMIT 1) k"
            ),
            &[],
        )
        .await
        .ok()??;
    Some(sample.get(0))
}

fn render_text(reports: &[ItemReport], summary: &Summary) -> String {
    let mut out = String::new();
    for report in reports {
        let status = match report.status {
            Status::Applied => "applied",
            Status::Skipped => "skipped",
            Status::Failed => "FAILED ",
        };
        out.push_str(&format!("{status}  {} {}", report.kind, report.name));
        if !report.detail.is_empty() {
            out.push_str(&format!(": {}", report.detail));
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "\n{} applied, {} skipped (already there), {} failed{}\n",
        summary.applied,
        summary.skipped,
        summary.failed,
        if summary.failed > 0 {
            ": fix what is named above and run constraints apply again (it resumes)"
        } else {
            ""
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_rewritten_to_build_concurrently() {
        assert_eq!(
            concurrently("CREATE INDEX i ON app.t USING btree (a)"),
            "CREATE INDEX CONCURRENTLY i ON app.t USING btree (a)"
        );
        assert_eq!(
            concurrently("CREATE UNIQUE INDEX \"I x\" ON app.t USING btree (a)"),
            "CREATE UNIQUE INDEX CONCURRENTLY \"I x\" ON app.t USING btree (a)"
        );
        let parent = "CREATE INDEX i ON ONLY \"order\".\"Line\" USING btree (sku)";
        assert_eq!(concurrently(parent), parent);
    }

    #[test]
    fn unique_definitions_an_index_can_carry() {
        assert_eq!(
            unique_columns(
                "ALTER TABLE ONLY a.t\n    ADD CONSTRAINT k UNIQUE (\"Email\", \"a)b\")"
            ),
            Some(("(\"Email\", \"a)b\")", ""))
        );
        assert_eq!(
            unique_columns(
                "ALTER TABLE a.t ADD CONSTRAINT k UNIQUE (x) DEFERRABLE INITIALLY DEFERRED"
            ),
            Some(("(x)", "DEFERRABLE INITIALLY DEFERRED"))
        );
        assert_eq!(
            unique_columns("ALTER TABLE a.t ADD CONSTRAINT k UNIQUE NULLS NOT DISTINCT (x)"),
            None
        );
        assert_eq!(
            unique_columns("ALTER TABLE a.t ADD CONSTRAINT k UNIQUE (x) INCLUDE (y)"),
            None
        );
    }
}
