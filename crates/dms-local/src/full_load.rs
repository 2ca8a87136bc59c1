//! A full load as DMS runs it with `parallel-load` ranges: every mapped table is cut into segments (one per
//! table without a `ranges` rule), and the segments are copied on at most `MaxFullLoadSubTasks` connections
//! at once, all reading one snapshot: the one exported when the task's replication slot was created, so the
//! changes streamed from that slot afterwards start exactly where the copy ends.
//!
//! - Ranges: https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TableMapping.SelectionTransformation.Tablesettings.html
//!   ("PostgreSQL ... as a source support only this type of parallel load"; up to 10 columns; each
//!   boundary is the upper bound of a segment, rows above the last one form the last segment; "Records
//!   with null values aren't replicated").
//! - MaxFullLoadSubTasks: https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TaskSettings.FullLoad.html
//!   (default 8, maximum 49; it "controls the number of tables or table segments to load in parallel").
//! - The exported snapshot: https://www.postgresql.org/docs/current/protocol-replication.html
//!   (`CREATE_REPLICATION_SLOT ... EXPORT_SNAPSHOT`: the snapshot can be imported with `SET TRANSACTION
//!   SNAPSHOT` until the replication connection runs its next command or closes).

use std::path::{Path, PathBuf};
use std::time::Duration;

use dms_core::pg::PgConnectOptions;
use dms_core::rules::sql_ident::quote;
use dms_core::{ErrorName, StepError};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TaskSettings.FullLoad.html
pub const DEFAULT_MAX_SUBTASKS: usize = 8;
pub const MAX_SUBTASKS: usize = 49;
/// The `ranges` type takes up to 10 columns (the table-settings page above).
pub const MAX_RANGE_COLUMNS: usize = 10;
/// How long creating the slot and exporting its snapshot may take (it waits for running transactions).
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(60);
/// A segment's COPY is one statement: the connections' statement timeout must outlast a large one.
pub const COPY_STATEMENT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// A `parallel-load` rule of type `ranges` for one table.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeRule {
    pub schema: String,
    pub table: String,
    pub columns: Vec<String>,
    /// Each boundary holds one value per column, as text (DMS takes them as the source's literals).
    pub boundaries: Vec<Vec<String>>,
}

/// The `ranges` rules of a table mapping. Other `parallel-load` types (`partitions-auto`,
/// `partitions-list`, `none`) leave the table in one segment: DMS's PostgreSQL source supports only
/// `ranges`. A malformed `ranges` rule is an error naming the rule.
pub fn range_rules(mappings_text: &str) -> Result<Vec<RangeRule>, String> {
    let value: Value = serde_json::from_str(mappings_text)
        .map_err(|e| format!("the table mappings are not JSON ({e})"))?;
    let Some(rules) = value.get("rules").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for rule in rules {
        if rule.get("rule-type").and_then(Value::as_str) != Some("table-settings") {
            continue;
        }
        let Some(load) = rule.get("parallel-load") else {
            continue;
        };
        if load.get("type").and_then(Value::as_str) != Some("ranges") {
            continue;
        }
        let name = rule
            .get("rule-name")
            .and_then(Value::as_str)
            .unwrap_or("(unnamed)");
        let locator = |key: &str| {
            rule.pointer(&format!("/object-locator/{key}"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("table-settings rule `{name}` has no object-locator {key}"))
        };
        let columns: Vec<String> = load
            .get("columns")
            .and_then(Value::as_array)
            .map(|c| {
                c.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if columns.is_empty() || columns.len() > MAX_RANGE_COLUMNS {
            return Err(format!(
                "table-settings rule `{name}`: parallel-load ranges takes 1 to {MAX_RANGE_COLUMNS} columns, not {}",
                columns.len()
            ));
        }
        let mut boundaries = Vec::new();
        for (i, boundary) in load
            .get("boundaries")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let values: Vec<String> = boundary
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect();
            if values.len() != columns.len() {
                return Err(format!(
                    "table-settings rule `{name}`: boundary {} has {} value(s) for {} column(s)",
                    i + 1,
                    values.len(),
                    columns.len()
                ));
            }
            boundaries.push(values);
        }
        found.push(RangeRule {
            schema: locator("schema-name")?,
            table: locator("table-name")?,
            columns,
            boundaries,
        });
    }
    Ok(found)
}

/// `FullLoadSettings.MaxFullLoadSubTasks` of the task settings: 8 when absent, at most 49.
pub fn max_subtasks(settings: Option<&str>) -> usize {
    settings
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .and_then(|v| {
            v.pointer("/FullLoadSettings/MaxFullLoadSubTasks")
                .and_then(Value::as_u64)
        })
        .map(|n| (n as usize).clamp(1, MAX_SUBTASKS))
        .unwrap_or(DEFAULT_MAX_SUBTASKS)
}

/// A SQL string literal (standard_conforming_strings is on since PostgreSQL 9.1).
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// `(c1, ..., cn) < (v1, ..., vn)` written as DMS writes it: `(c1 < v1) OR ((c1 = v1) AND (c2 < v2)) OR ...`.
fn below(columns: &[String], boundary: &[String]) -> String {
    let terms: Vec<String> = (0..columns.len())
        .map(|k| {
            let mut parts: Vec<String> = (0..k)
                .map(|j| format!("({} = {})", quote(&columns[j]), literal(&boundary[j])))
                .collect();
            parts.push(format!(
                "({} < {})",
                quote(&columns[k]),
                literal(&boundary[k])
            ));
            format!("({})", parts.join(" AND "))
        })
        .collect();
    format!("({})", terms.join(" OR "))
}

/// The WHERE clause of every segment of a `ranges` rule, bottom to top: boundaries + 1 segments.
/// The page's WHERE clauses compare the column list as a tuple, strictly below each boundary (a row equal to
/// a boundary belongs to the segment above it). Its prose also says that "records with null values aren't
/// replicated", which the clauses alone do not guarantee when a later column is NULL: every segment also
/// requires each range column to be non-NULL, so no row with a NULL range column is loaded.
pub fn segment_predicates(rule: &RangeRule) -> Vec<String> {
    let not_null: Vec<String> = rule
        .columns
        .iter()
        .map(|c| format!("{} IS NOT NULL", quote(c)))
        .collect();
    let not_null = not_null.join(" AND ");
    let mut predicates = Vec::new();
    let mut previous: Option<String> = None;
    for boundary in &rule.boundaries {
        let upper = below(&rule.columns, boundary);
        predicates.push(match &previous {
            None => format!("{not_null} AND {upper}"),
            Some(lower) => format!("{not_null} AND NOT {lower} AND {upper}"),
        });
        previous = Some(upper);
    }
    predicates.push(match &previous {
        None => not_null,
        Some(lower) => format!("{not_null} AND NOT {lower}"),
    });
    predicates
}

/// The psql that the lab uses: the newest `/usr/lib/postgresql/<version>/bin/psql`, else `psql` on PATH.
pub fn find_psql() -> PathBuf {
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let psql = entry.path().join("bin").join("psql");
            psql.is_file().then_some((version, psql))
        })
        .max_by_key(|(version, _)| *version);
    newest
        .map(|(_, psql)| psql)
        .unwrap_or_else(|| PathBuf::from("psql"))
}

/// The session that created the task's slot and exported its snapshot. The snapshot stays importable
/// until this session runs another command or ends: keep it until every segment has imported it.
pub struct ExportedSnapshot {
    child: Child,
    stdin: Option<ChildStdin>,
    pub name: String,
}

/// Where the replication connection goes. The password goes through the environment, never the command
/// line (which `ps` shows).
pub struct ReplicationConnection<'a> {
    pub host: &'a str,
    pub port: u16,
    pub database: &'a str,
    pub user: &'a str,
    pub password: &'a str,
    /// libpq's sslmode.
    pub sslmode: &'a str,
    pub root_cert: Option<&'a Path>,
    pub application_name: &'a str,
}

fn conninfo_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl ExportedSnapshot {
    /// Creates logical slot `slot` (pgoutput) through the replication protocol and returns the snapshot
    /// it exported. tokio-postgres cannot open a replication connection, so psql holds it.
    pub async fn create(
        psql: &Path,
        to: &ReplicationConnection<'_>,
        slot: &str,
    ) -> Result<ExportedSnapshot, StepError> {
        let failed = |why: String| {
            StepError::new(
                ErrorName::PostgresQueryFailed,
                format!("creating replication slot {slot} on the source: {why}"),
            )
        };
        let mut conninfo = format!(
            "host={} port={} dbname={} user={} sslmode={} replication=database application_name={}",
            conninfo_value(to.host),
            to.port,
            conninfo_value(to.database),
            conninfo_value(to.user),
            to.sslmode,
            conninfo_value(to.application_name),
        );
        if let Some(cert) = to.root_cert {
            conninfo.push_str(&format!(
                " sslrootcert={}",
                conninfo_value(&cert.to_string_lossy())
            ));
        }
        let mut child = Command::new(psql)
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &conninfo,
            ])
            .env("PGPASSWORD", to.password)
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failed(format!("cannot run {}: {e}", psql.display())))?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| failed("no stdin".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| failed("no stdout".into()))?;
        let mut stderr = child
            .stderr
            .take()
            .ok_or_else(|| failed("no stderr".into()))?;
        stdin
            .write_all(
                format!("CREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput EXPORT_SNAPSHOT;\n")
                    .as_bytes(),
            )
            .await
            .map_err(|e| failed(format!("psql: {e}")))?;
        stdin
            .flush()
            .await
            .map_err(|e| failed(format!("psql: {e}")))?;
        // One row, unaligned: slot_name|consistent_point|snapshot_name|output_plugin.
        let mut line = String::new();
        let read = tokio::time::timeout(
            SNAPSHOT_TIMEOUT,
            BufReader::new(stdout).read_line(&mut line),
        )
        .await;
        let name = match read {
            Ok(Ok(n)) if n > 0 => line.trim().split('|').nth(2).map(str::to_string),
            _ => None,
        };
        let Some(name) =
            name.filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
        else {
            let _ = child.start_kill();
            let mut message = String::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), stderr.read_to_string(&mut message))
                    .await;
            let message = message.trim();
            return Err(failed(if message.is_empty() {
                "psql printed no snapshot".to_string()
            } else {
                message.to_string()
            }));
        };
        Ok(ExportedSnapshot {
            child,
            stdin: Some(stdin),
            name,
        })
    }

    /// Ends the replication session (the slot stays, released).
    pub async fn release(mut self) {
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// One segment to copy.
#[derive(Debug, Clone)]
pub struct SegmentJob {
    /// Index in the task's segment list.
    pub index: usize,
    pub schema: String,
    pub table: String,
    pub columns: Vec<String>,
    pub predicate: Option<String>,
}

impl SegmentJob {
    fn copy_out_sql(&self) -> String {
        let columns: Vec<String> = self.columns.iter().map(|c| quote(c)).collect();
        let from = format!("{}.{}", quote(&self.schema), quote(&self.table));
        match &self.predicate {
            Some(p) => format!(
                "COPY (SELECT {} FROM {from} WHERE {p}) TO STDOUT",
                columns.join(", ")
            ),
            None => format!("COPY (SELECT {} FROM {from}) TO STDOUT", columns.join(", ")),
        }
    }

    fn copy_in_sql(&self) -> String {
        let columns: Vec<String> = self.columns.iter().map(|c| quote(c)).collect();
        format!(
            "COPY {}.{} ({}) FROM STDIN",
            quote(&self.schema),
            quote(&self.table),
            columns.join(", ")
        )
    }
}

/// The columns a table's rows are copied with: the source's, in order, without generated ones.
pub const COPY_COLUMNS_SQL: &str = "
SELECT a.attname::text
FROM pg_attribute a
WHERE a.attrelid = ($1::text)::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
ORDER BY a.attnum";

/// Copies one segment: a REPEATABLE READ transaction on the source that imports `snapshot` (when given),
/// `COPY (SELECT ...) TO STDOUT` streamed into `COPY ... FROM STDIN` in one target transaction.
/// `began` is called once the source transaction holds its snapshot (or the attempt failed before that).
/// Returns the rows the target took.
pub async fn copy_segment(
    source: &PgConnectOptions,
    target: &PgConnectOptions,
    snapshot: Option<&str>,
    job: &SegmentJob,
    began: impl FnOnce(),
) -> Result<u64, StepError> {
    let mut began = Some(began);
    let result = async {
        let from = source.connect().await?;
        let in_source =
            |e: tokio_postgres::Error| dms_core::pg::classify_pg_error("the source", &e);
        let in_target =
            |e: tokio_postgres::Error| dms_core::pg::classify_pg_error("the target", &e);
        from.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(in_source)?;
        if let Some(name) = snapshot {
            from.batch_execute(&format!("SET TRANSACTION SNAPSHOT {}", literal(name)))
                .await
                .map_err(in_source)?;
        }
        if let Some(began) = began.take() {
            began();
        }
        let to = target.connect().await?;
        to.batch_execute("BEGIN").await.map_err(in_target)?;
        let sink = to.copy_in(&job.copy_in_sql()).await.map_err(in_target)?;
        let rows = from
            .copy_out(&job.copy_out_sql())
            .await
            .map_err(in_source)?;
        futures_util::pin_mut!(sink);
        futures_util::pin_mut!(rows);
        while let Some(chunk) = rows.next().await {
            sink.send(chunk.map_err(in_source)?)
                .await
                .map_err(in_target)?;
        }
        let copied = sink.finish().await.map_err(in_target)?;
        to.batch_execute("COMMIT").await.map_err(in_target)?;
        from.batch_execute("COMMIT").await.map_err(in_source)?;
        Ok(copied)
    }
    .await;
    if let Some(began) = began.take() {
        began();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(columns: &[&str], boundaries: &[&[&str]]) -> RangeRule {
        RangeRule {
            schema: "public".into(),
            table: "t".into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            boundaries: boundaries
                .iter()
                .map(|b| b.iter().map(|v| v.to_string()).collect())
                .collect(),
        }
    }

    #[test]
    fn segments_are_the_pages_where_clauses_plus_not_null() {
        // The page's example: three boundaries over COL1, COL2, COL3 give four segments.
        let r = rule(
            &["col1", "col2", "col3"],
            &[
                &["10", "30", "105"],
                &["20", "20", "120"],
                &["100", "12", "99"],
            ],
        );
        let p = segment_predicates(&r);
        assert_eq!(p.len(), 4);
        let nn = r#""col1" IS NOT NULL AND "col2" IS NOT NULL AND "col3" IS NOT NULL"#;
        let below_first = r#"((("col1" < '10')) OR (("col1" = '10') AND ("col2" < '30')) OR (("col1" = '10') AND ("col2" = '30') AND ("col3" < '105')))"#;
        assert_eq!(p[0], format!("{nn} AND {below_first}"));
        assert!(
            p[1].starts_with(&format!(
                "{nn} AND NOT {below_first} AND (((\"col1\" < '20'))"
            )),
            "{}",
            p[1]
        );
        assert!(
            p[3].starts_with(&format!("{nn} AND NOT (((\"col1\" < '100'))")),
            "{}",
            p[3]
        );
        assert_eq!(
            segment_predicates(&rule(&["id"], &[])),
            vec![r#""id" IS NOT NULL"#]
        );
    }

    #[test]
    fn literals_and_identifiers_are_quoted() {
        let p = segment_predicates(&rule(&["Mixed Case"], &[&["o'brien"]]));
        assert_eq!(
            p[0],
            r#""Mixed Case" IS NOT NULL AND ((("Mixed Case" < 'o''brien')))"#
        );
    }

    #[test]
    fn ranges_rules_are_read_and_checked() {
        let mapping = json!({"rules": [
            {"rule-type": "selection", "rule-id": "1", "rule-name": "1",
             "object-locator": {"schema-name": "public", "table-name": "%"}, "rule-action": "include"},
            {"rule-type": "table-settings", "rule-id": "2", "rule-name": "big",
             "object-locator": {"schema-name": "public", "table-name": "big"},
             "parallel-load": {"type": "ranges", "columns": ["id"], "boundaries": [[100], ["200"]]}},
            {"rule-type": "table-settings", "rule-id": "3", "rule-name": "auto",
             "object-locator": {"schema-name": "public", "table-name": "p"},
             "parallel-load": {"type": "partitions-auto"}}
        ]});
        let rules = range_rules(&mapping.to_string()).expect("valid");
        assert_eq!(
            rules,
            vec![RangeRule {
                schema: "public".into(),
                table: "big".into(),
                columns: vec!["id".into()],
                boundaries: vec![vec!["100".into()], vec!["200".into()]],
            }]
        );
        let bad = json!({"rules": [{"rule-type": "table-settings", "rule-name": "bad",
            "object-locator": {"schema-name": "public", "table-name": "big"},
            "parallel-load": {"type": "ranges", "columns": ["a", "b"], "boundaries": [["1"]]}}]});
        let err = range_rules(&bad.to_string()).expect_err("short boundary");
        assert!(
            err.contains("boundary 1 has 1 value(s) for 2 column(s)"),
            "{err}"
        );
        let eleven: Vec<String> = (0..11).map(|i| format!("c{i}")).collect();
        let wide = json!({"rules": [{"rule-type": "table-settings", "rule-name": "wide",
            "object-locator": {"schema-name": "public", "table-name": "big"},
            "parallel-load": {"type": "ranges", "columns": eleven, "boundaries": []}}]});
        assert!(range_rules(&wide.to_string()).is_err());
    }

    #[test]
    fn max_subtasks_defaults_to_8_and_stops_at_49() {
        assert_eq!(max_subtasks(None), 8);
        assert_eq!(max_subtasks(Some("{}")), 8);
        assert_eq!(
            max_subtasks(Some(r#"{"FullLoadSettings":{"MaxFullLoadSubTasks":3}}"#)),
            3
        );
        assert_eq!(
            max_subtasks(Some(r#"{"FullLoadSettings":{"MaxFullLoadSubTasks":80}}"#)),
            49
        );
        assert_eq!(
            max_subtasks(Some(r#"{"FullLoadSettings":{"MaxFullLoadSubTasks":0}}"#)),
            1
        );
    }
}
