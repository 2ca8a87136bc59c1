//! `dms-migrate schema apply`: the source's schema (`pg_dump --schema-only`) on the target before the DMS
//! full load, split by `dms_core::rules::schema_objects`' phase rule. Pre-load objects are created in one
//! transaction together with the sentinel table; deferred ones go to a file for `constraints apply`.
//! Refuses, changing nothing, when the target lacks an extension the schema needs or a mapped table on
//! the target already holds rows.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use dms_core::errors::{ErrorName, StepError};
use dms_core::pg::{classify_pg_error, PgConnectOptions};
use dms_core::rules::sentinel;
use dms_core::rules::sql_ident::{quote, quote_if_needed};
use serde::Serialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::connection::{BothDatabases, Connected, Environment};
use crate::deferred_file;
use crate::output::{Format, Outcome, Progress};
use crate::schema_split::{self, Plan};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub databases: BothDatabases,
    /// Only these schemas (exact names, mixed case as is); default every schema pg_dump dumps. The
    /// sentinel table dms_migrate_sentinel goes into the first, on both sides (cutover-check writes to it).
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub schemas: Vec<String>,
    /// Print what would be applied (counts per kind; the SQL too with --format text); change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Apply even though mapped tables on the target already hold rows.
    #[arg(long)]
    pub allow_non_empty: bool,
    /// Where to write the deferred objects for `constraints apply`.
    #[arg(long, value_name = "FILE", default_value = deferred_file::DEFAULT_PATH)]
    pub deferred_file: PathBuf,
    /// The pg_dump to run, at least the source server's major version. It runs with --schema-only
    /// --no-owner --no-privileges: owners and grants are left out because PlanetScale's roles differ
    /// from Aurora's (grant on the target yourself). The connection reaches it through PG* environment
    /// variables, never its command line.
    #[arg(long, value_name = "PATH", default_value = "pg_dump")]
    pub pg_dump: String,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Serialize, Default)]
struct Report {
    /// applied | dry-run | refused
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// What a refusal is about: missing extensions or tables holding rows.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    objects: Vec<String>,
    pre_load: BTreeMap<&'static str, usize>,
    deferred: BTreeMap<&'static str, usize>,
    deferred_file: String,
    /// Created BY DEFAULT for the load; `constraints apply` makes them ALWAYS again.
    identity_columns: Vec<String>,
    sentinel: String,
}

pub async fn run(args: Args, env: &Environment) -> Result<Outcome, StepError> {
    let progress = Progress::for_stderr();
    let Connected {
        source,
        target,
        source_client,
        mut target_client,
    } = args.databases.connect(env, &progress).await?;
    let server_major = server_major(&source_client, &source).await?;
    let dump_major = pg_dump_major(&args.pg_dump).await?;
    check_pg_dump_version(&args.pg_dump, dump_major, server_major)?;
    progress.say("running pg_dump --schema-only on the source");
    let dump = run_pg_dump(&args.pg_dump, &source, &args.schemas, dump_major).await?;
    let plan = schema_split::split(&dump)?;
    let mapped = if args.schemas.is_empty() {
        plan.schemas.clone()
    } else {
        args.schemas.clone()
    };
    let sentinel_schema = mapped.first().map_or("public", String::as_str);
    let mut report = Report {
        pre_load: plan.pre_load_counts.clone(),
        deferred: plan.deferred_counts(),
        deferred_file: args.deferred_file.display().to_string(),
        identity_columns: plan
            .deferred
            .iter()
            .filter(|i| i.kind == deferred_file::DeferredKind::IdentityAlways)
            .map(|i| i.display_name())
            .collect(),
        sentinel: sentinel::qualified(sentinel_schema),
        ..Report::default()
    };

    progress.say("checking the target's extensions and tables");
    let available = available_extensions(&target_client, &target).await?;
    let missing = missing_extensions(&plan.extensions, &available);
    if !missing.is_empty() {
        report.status = "refused";
        report.reason = Some(format!(
            "the target cannot create {} extension(s) the schema uses; nothing was applied. PlanetScale \
             enables extensions per database: enable them, or remove their use from the source schema",
            missing.len()
        ));
        report.objects = missing;
        print_report(&report, args.format, None);
        return Ok(Outcome::Failed);
    }
    let with_rows = tables_with_rows(&target_client, &target, &mapped).await?;
    if !with_rows.is_empty() && !args.allow_non_empty {
        report.status = "refused";
        report.reason = Some(format!(
            "{} table(s) in the mapped schemas on the target hold rows; nothing was applied. Empty them, \
             or pass --allow-non-empty if they are meant to stay",
            with_rows.len()
        ));
        report.objects = with_rows;
        print_report(&report, args.format, None);
        return Ok(Outcome::Failed);
    }
    if args.dry_run {
        report.status = "dry-run";
        print_report(&report, args.format, Some(&plan));
        return Ok(Outcome::Ok);
    }

    // The source's sentinel first: it is idempotent, and failing here leaves the target untouched.
    source_client
        .batch_execute(&sentinel::create_sql(sentinel_schema))
        .await
        .map_err(|e| {
            let err = classify_pg_error(&source.describe(), &e);
            StepError::new(
                err.name,
                format!("creating the sentinel table on the source: {}", err.message),
            )
        })?;
    progress.say(&format!(
        "creating the pre-load schema on {} in one transaction",
        target.describe()
    ));
    let tx = target_client
        .transaction()
        .await
        .map_err(|e| classify_pg_error(&target.describe(), &e))?;
    let ddl = format!(
        "SET LOCAL search_path = ''; SET LOCAL check_function_bodies = false; \
         SET LOCAL client_min_messages = warning;\n{}\n{};",
        plan.pre_load_sql,
        sentinel::create_sql(sentinel_schema)
    );
    tx.batch_execute(&ddl)
        .await
        .map_err(|e| ddl_error(&target, &e))?;
    std::fs::write(&args.deferred_file, deferred_file::render(&plan.deferred)).map_err(|e| {
        StepError::config(format!(
            "writing the deferred file {}: {e}; nothing was applied on the target (give --deferred-file \
             a writable path)",
            args.deferred_file.display()
        ))
    })?;
    tx.commit().await.map_err(|e| ddl_error(&target, &e))?;
    report.status = "applied";
    print_report(&report, args.format, None);
    Ok(Outcome::Ok)
}

fn ddl_error(target: &PgConnectOptions, err: &tokio_postgres::Error) -> StepError {
    let classified = classify_pg_error(&target.describe(), err);
    let hint = match err.code() {
        Some(code) if *code == SqlState::DUPLICATE_TABLE || *code == SqlState::DUPLICATE_OBJECT || *code == SqlState::DUPLICATE_FUNCTION => {
            " — the target already has part of this schema. schema apply creates everything in one \
             transaction, so nothing was applied; drop what an earlier attempt created on the target \
             (or skip schema apply if it already completed)"
        }
        _ => " — nothing was applied on the target (one transaction)",
    };
    StepError::new(
        classified.name,
        format!("applying the pre-load schema: {}{hint}", classified.message),
    )
}

async fn server_major(client: &Client, side: &PgConnectOptions) -> Result<u32, StepError> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int / 10000",
            &[],
        )
        .await
        .map_err(|e| classify_pg_error(&side.describe(), &e))?;
    Ok(row.get::<_, i32>(0).unsigned_abs())
}

/// `pg_dump (PostgreSQL) 15.18 (Debian ...)` → 15; `9.6.24` → 9.
pub fn parse_pg_dump_major(version_output: &str) -> Option<u32> {
    let (_, after) = version_output.split_once("(PostgreSQL) ")?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// pg_dump refuses to dump a server newer than itself, with a less helpful message; say what to install.
pub fn check_pg_dump_version(
    pg_dump: &str,
    dump_major: u32,
    server_major: u32,
) -> Result<(), StepError> {
    if dump_major >= server_major {
        return Ok(());
    }
    Err(StepError::config(format!(
        "{pg_dump} is version {dump_major} but the source server is PostgreSQL {server_major}: pg_dump must \
         be at least the server's major version. Install postgresql-client-{server_major} (or newer) and \
         put its pg_dump first on PATH, or give its path with --pg-dump"
    )))
}

async fn pg_dump_major(pg_dump: &str) -> Result<u32, StepError> {
    let output = tokio::process::Command::new(pg_dump)
        .arg("--version")
        .output()
        .await
        .map_err(|e| {
            StepError::config(format!(
                "cannot run `{pg_dump} --version` ({e}): install the PostgreSQL client (e.g. \
                 postgresql-client-16) or give its path with --pg-dump"
            ))
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_pg_dump_major(&text).ok_or_else(|| {
        StepError::config(format!(
            "`{pg_dump} --version` printed `{}`, not pg_dump's version line; give the real pg_dump with --pg-dump",
            text.trim()
        ))
    })
}

/// The connection goes to pg_dump in libpq's environment variables: the password never appears in
/// its command line (visible in `ps`).
async fn run_pg_dump(
    pg_dump: &str,
    source: &PgConnectOptions,
    schemas: &[String],
    dump_major: u32,
) -> Result<String, StepError> {
    let mut command = tokio::process::Command::new(pg_dump);
    command
        .args([
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--no-publications",
            "--no-subscriptions",
            "--no-tablespaces",
            "--strict-names",
        ])
        .arg(format!("--exclude-table=*.{}", sentinel::TABLE))
        .args(schemas.iter().map(|s| format!("--schema={}", quote(s))))
        .env("PGHOST", &source.host)
        .env("PGPORT", source.port.to_string())
        .env("PGUSER", &source.user)
        .env("PGDATABASE", &source.dbname)
        .env("PGSSLMODE", source.ssl_mode.as_str())
        .env("PGAPPNAME", &source.application_name)
        .env(
            "PGCONNECT_TIMEOUT",
            source.connect_timeout.as_secs().max(2).to_string(),
        )
        .env_remove("PGSERVICE")
        .env_remove("PGHOSTADDR")
        .env_remove("PGOPTIONS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match source.password() {
        Some(password) => command.env("PGPASSWORD", password),
        None => command.env_remove("PGPASSWORD"),
    };
    let root_cert = match &source.root_cert_pem {
        Some(pem) => {
            let path = std::env::temp_dir()
                .join(format!("dms-migrate-rootcert-{}.pem", std::process::id()));
            std::fs::write(&path, pem).map_err(|e| {
                StepError::config(format!(
                    "writing the source's sslrootcert for pg_dump to {}: {e}",
                    path.display()
                ))
            })?;
            command.env("PGSSLROOTCERT", &path);
            Some(path)
        }
        // libpq 16+ verifies against the system's roots only when asked to.
        None if dump_major >= 16 => {
            command.env("PGSSLROOTCERT", "system");
            None
        }
        None => None,
    };
    let output = tokio::time::timeout(Duration::from_secs(30 * 60), command.output()).await;
    if let Some(path) = root_cert {
        let _ = std::fs::remove_file(path);
    }
    let output = output
        .map_err(|_| {
            StepError::new(
                ErrorName::PostgresUnreachable,
                "pg_dump --schema-only did not finish within 30 minutes",
            )
        })?
        .map_err(|e| StepError::config(format!("running {pg_dump}: {e}")))?;
    if !output.status.success() {
        return Err(StepError::new(
            ErrorName::PostgresQueryFailed,
            format!(
                "pg_dump --schema-only of {} failed ({}): {}",
                source.describe(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        ));
    }
    String::from_utf8(output.stdout).map_err(|_| {
        StepError::config("pg_dump's output is not UTF-8; dump with client_encoding UTF8")
    })
}

async fn available_extensions(
    client: &Client,
    side: &PgConnectOptions,
) -> Result<Vec<String>, StepError> {
    let rows = client
        .query("SELECT name FROM pg_available_extensions", &[])
        .await
        .map_err(|e| classify_pg_error(&side.describe(), &e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub fn missing_extensions(needed: &[String], available: &[String]) -> Vec<String> {
    needed
        .iter()
        .filter(|n| !available.contains(n))
        .cloned()
        .collect()
}

/// Tables in the mapped schemas on the target that hold at least one row (the sentinel excluded: it is
/// the migration's own).
async fn tables_with_rows(
    client: &Client,
    side: &PgConnectOptions,
    schemas: &[String],
) -> Result<Vec<String>, StepError> {
    let failed = |e: tokio_postgres::Error| classify_pg_error(&side.describe(), &e);
    let rows = client
        .query(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY($1) \
               AND c.relname <> $2 \
             ORDER BY 1, 2",
            &[&schemas, &sentinel::TABLE],
        )
        .await
        .map_err(failed)?;
    let mut with_rows = Vec::new();
    for row in rows {
        let (schema, table): (String, String) = (row.get(0), row.get(1));
        let any = client
            .query_one(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM {}.{})",
                    quote(&schema),
                    quote(&table)
                ),
                &[],
            )
            .await
            .map_err(failed)?;
        if any.get::<_, bool>(0) {
            with_rows.push(format!(
                "{}.{}",
                quote_if_needed(&schema),
                quote_if_needed(&table)
            ));
        }
    }
    Ok(with_rows)
}

fn counts_line(counts: &BTreeMap<&'static str, usize>) -> String {
    if counts.is_empty() {
        return "nothing".to_string();
    }
    counts
        .iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_report(report: &Report, format: Format, dry_run_plan: Option<&Plan>) {
    if format == Format::Json {
        match serde_json::to_string_pretty(report) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("dms-migrate: rendering JSON: {e}"),
        }
        return;
    }
    let mut out = String::new();
    if let Some(reason) = &report.reason {
        out.push_str(&format!("schema apply refused: {reason}\n"));
        for object in &report.objects {
            out.push_str(&format!("  {object}\n"));
        }
        print!("{out}");
        return;
    }
    let (create, write) = match report.status {
        "dry-run" => ("would create", "would write"),
        _ => ("created", "wrote"),
    };
    out.push_str(&format!(
        "{create} on the target (pre-load): {}\n",
        counts_line(&report.pre_load)
    ));
    out.push_str(&format!(
        "{write} {} (deferred): {}\n",
        report.deferred_file,
        counts_line(&report.deferred)
    ));
    if !report.identity_columns.is_empty() {
        out.push_str("identity columns created BY DEFAULT for the load (constraints apply restores ALWAYS):\n");
        for column in &report.identity_columns {
            out.push_str(&format!("  {column}\n"));
        }
    }
    out.push_str(&format!(
        "sentinel table: {} on both sides{}\n",
        report.sentinel,
        if report.status == "dry-run" {
            " (not created: dry run)"
        } else {
            ""
        }
    ));
    if let Some(plan) = dry_run_plan {
        out.push_str("\n-- pre-load SQL (one transaction on the target)\n");
        out.push_str(&plan.pre_load_sql);
        out.push_str("\n-- deferred file\n");
        out.push_str(&deferred_file::render(&plan.deferred));
    } else {
        out.push_str(
            // Not during CDC: with the stack's BatchApplyEnabled, DMS does not support target tables with a
            // unique constraint besides the primary key, and batches do not keep foreign-key order.
            "next: start the DMS task; dms-migrate constraints apply waits for the cutover, after the task is stopped\n",
        );
    }
    print!("{out}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_dump_version_is_read_and_compared() {
        assert_eq!(
            parse_pg_dump_major("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"),
            Some(15)
        );
        assert_eq!(parse_pg_dump_major("pg_dump (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(
            parse_pg_dump_major("pg_dump (PostgreSQL) 17devel"),
            Some(17)
        );
        assert_eq!(parse_pg_dump_major("something else 16.1"), None);
        assert!(check_pg_dump_version("pg_dump", 16, 16).is_ok());
        assert!(check_pg_dump_version("pg_dump", 17, 15).is_ok());
        let err = check_pg_dump_version("pg_dump", 15, 16).unwrap_err();
        assert!(
            err.message.contains("install postgresql-client-16")
                || err.message.contains("Install postgresql-client-16"),
            "{}",
            err.message
        );
        assert!(err.message.contains("version 15"), "{}", err.message);
    }

    #[test]
    fn missing_extensions_are_named() {
        let available = vec!["plpgsql".to_string(), "pgcrypto".to_string()];
        let needed = vec!["pgcrypto".to_string(), "postgis".to_string()];
        assert_eq!(missing_extensions(&needed, &available), ["postgis"]);
        assert!(missing_extensions(&needed[..1], &available).is_empty());
    }
}
