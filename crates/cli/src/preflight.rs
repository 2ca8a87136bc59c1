//! `dms-migrate preflight`: every check of docs/checks.md against both databases, with dms-core's checks (the same
//! ones the premigration-assessment Lambda runs) and, unless `--no-fallback`, the way back's
//! (`fallback.*`), read at the same time as the others (`checks::run_all_checks`). Exit 0 when nothing
//! fails, 1 when a check fails.

use dms_core::errors::StepError;
use dms_core::pg::checks::{self, Check, CheckConfig, CheckStatus, Connections, TableSelection};
use dms_core::rules::state::CheckCounts;
use serde::Serialize;

use crate::connection::{self, BothDatabases, Environment};
use crate::output::{Format, Outcome, Progress};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub databases: BothDatabases,
    /// Only these schemas (as the task's table mappings select them); default every non-system schema.
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub schemas: Vec<String>,
    /// The DMS task's migration type: CDC-only hazards (tables without a key, unlogged tables) fail only
    /// when changes are replicated.
    #[arg(long, value_enum, default_value_t = MigrationType::FullLoadAndCdc)]
    pub migration_type: MigrationType,
    /// Leave out the way back's checks (`fallback.*`: PlanetScale's logical decoding and Aurora as the
    /// reverse task's target, docs/fallback.md). They run by default; pass this when the migration goes
    /// without a way back.
    #[arg(long)]
    pub no_fallback: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationType {
    FullLoad,
    FullLoadAndCdc,
    Cdc,
}

/// The JSON document: the check list of docs/checks.md plus the counts.
#[derive(Serialize)]
struct Report<'a> {
    checks: &'a [Check],
    summary: CheckCounts,
}

pub async fn run(args: Args, env: &Environment) -> Result<Outcome, StepError> {
    let progress = Progress::for_stderr();
    let (source, target) = args.databases.options(env)?;
    let config = CheckConfig {
        selection: if args.schemas.is_empty() {
            TableSelection::all()
        } else {
            TableSelection::schemas(&args.schemas)
        },
        cdc: args.migration_type != MigrationType::FullLoad,
        ..CheckConfig::default()
    };
    progress.say(&format!(
        "connecting to {} and {}",
        source.describe(),
        target.describe()
    ));
    // Two connections a side: see checks::Connections.
    let (source_first, source_second, target_first, target_second) = tokio::try_join!(
        source.connect(),
        source.connect(),
        target.connect(),
        target.connect()
    )?;
    connection::refuse_unknown_schemas(&source_first, &args.schemas).await?;
    progress.say("reading both catalogs");
    let all = checks::run_all_checks(
        Connections::two(&source_first, &source_second),
        Connections::two(&target_first, &target_second),
        &config,
        (!args.no_fallback).then_some(&target),
    )
    .await?;
    let counts = checks::counts(&all);
    match args.format {
        Format::Json => {
            let report = Report {
                checks: &all,
                summary: counts,
            };
            let text = serde_json::to_string_pretty(&report)
                .map_err(|e| StepError::config(format!("rendering JSON: {e}")))?;
            println!("{text}");
        }
        Format::Text => print!(
            "{}",
            render_text(&all, counts, &source.describe(), &target.describe())
        ),
    }
    Ok(if counts.fail > 0 {
        Outcome::Failed
    } else {
        Outcome::Ok
    })
}

/// Failures first, then warnings (each with its objects and fix), then one line per passed check.
fn render_text(checks: &[Check], counts: CheckCounts, source: &str, target: &str) -> String {
    let mut out = format!("Preflight: source {source} -> target {target}\n");
    let width = checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
    for (status, title) in [
        (CheckStatus::Fail, "FAILED"),
        (CheckStatus::Warn, "WARNINGS"),
        (CheckStatus::NotRun, "NOT RUN"),
        (CheckStatus::Pass, "PASSED"),
    ] {
        let group: Vec<&Check> = checks.iter().filter(|c| c.status == status).collect();
        if group.is_empty() {
            continue;
        }
        out.push_str(&format!("\n{title} ({})\n", group.len()));
        for check in group {
            out.push_str(&format!("  {:width$}  {}\n", check.id, check.summary));
            if status == CheckStatus::Pass {
                continue;
            }
            if !check.objects.is_empty() {
                out.push_str(&format!("      objects ({}):\n", check.objects.len()));
                for object in &check.objects {
                    out.push_str(&format!("        {object}\n"));
                }
            }
            if !check.fix.is_empty() {
                out.push_str("      fix:\n");
                for line in check.fix.lines() {
                    out.push_str(&format!("        {line}\n"));
                }
            }
        }
    }
    let verdict = if counts.fail > 0 {
        "not ready: fix the failures above and run preflight again"
    } else if counts.warn > 0 {
        "ready, with warnings worth reading"
    } else {
        "ready"
    };
    out.push_str(&format!(
        "\n{} failed, {} warnings, {} passed: {verdict}\n",
        counts.fail, counts.warn, counts.pass
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_groups_by_status_with_fixes_under_problems() {
        let checks = vec![
            Check::pass("source.version", "the source runs PostgreSQL 15"),
            Check::new(
                "target.not_empty",
                CheckStatus::Warn,
                "1 table holds rows",
                vec!["public.t".into()],
                "TRUNCATE public.t;",
            ),
            Check::new(
                "source.primary_keys",
                CheckStatus::Fail,
                "1 table has no primary key",
                vec!["public.\"Order Items\"".into()],
                "ALTER TABLE public.\"Order Items\" REPLICA IDENTITY FULL;",
            ),
        ];
        let text = render_text(&checks, checks::counts(&checks), "a@s:1/d", "b@t:2/d");
        let failed = text.find("FAILED (1)").unwrap();
        let warnings = text.find("WARNINGS (1)").unwrap();
        let passed = text.find("PASSED (1)").unwrap();
        assert!(failed < warnings && warnings < passed, "{text}");
        assert!(text.contains(
            "  source.primary_keys  1 table has no primary key\n      objects (1):\n        public.\"Order Items\"\n      fix:\n        ALTER TABLE public.\"Order Items\" REPLICA IDENTITY FULL;\n"
        ), "{text}");
        assert!(text.ends_with("1 failed, 1 warnings, 1 passed: not ready: fix the failures above and run preflight again\n"));
    }
}
