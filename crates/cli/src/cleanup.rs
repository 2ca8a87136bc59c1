//! `dms-migrate cleanup`: after the switch, what the migration left on the databases — DMS's logical
//! replication slot (it keeps WAL on Aurora until dropped), the publication that goes with it, the DMS
//! heartbeat table, and the sentinel table; on the target, the sentinel table and the way back's slot
//! (docs/fallback.md: it keeps PlanetScale's WAL until dropped, so dropping it ends the way back). Reports
//! by default; drops with `--yes`, idempotently.
//!
//! It refuses while the DMS task still runs (given `--task-arn`): the slot would stay active and stray
//! writes would still reach the live target. Without `--task-arn` an active slot is never dropped.
//!
//! Which objects are DMS's: slots of this database named as DMS names them (`<16 characters>_<database
//! oid, 8 digits>_<uuid with underscores>`) or as the local stand-in does (`dms_local_<task id>`), plus any
//! `--slot` (an endpoint's own `SlotName`); publications named after one of those slots, `dms_publication*`,
//! `dms_local_*`, plus any `--publication`. Nothing else is touched.

use dms_core::aws::dms::{Dms, DmsClient};
use dms_core::errors::{ErrorName, StepError};
use dms_core::pg::classify_pg_error;
use dms_core::rules::arn::DmsArn;
use dms_core::rules::dms_model::TaskStatus;
use dms_core::rules::sentinel;
use dms_core::rules::sql_ident::{quote, quote_if_needed};
use serde::Serialize;
use tokio_postgres::Client;

use crate::connection::{self, Environment, Side};
use crate::output::{Format, Outcome, Progress};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Source (Aurora) URL; default $PGSOURCE. TLS defaults to sslmode=require.
    #[arg(long, env = "PGSOURCE", hide_env_values = true, value_name = "URL")]
    pub source: Option<String>,
    /// Target (PlanetScale) URL, to drop the sentinel table there too; default $PGTARGET.
    #[arg(long, env = "PGTARGET", hide_env_values = true, value_name = "URL")]
    pub target: Option<String>,
    /// The DMS task: cleanup refuses unless it is stopped, failed or ready.
    #[arg(long, value_name = "ARN")]
    pub task_arn: Option<String>,
    /// Also a slot of this name (the source endpoint's SlotName, when one was set). Repeatable.
    #[arg(long = "slot", value_name = "NAME")]
    pub slots: Vec<String>,
    /// Also a publication of this name. Repeatable.
    #[arg(long = "publication", value_name = "NAME")]
    pub publications: Vec<String>,
    #[command(flatten)]
    pub way_back_slot: crate::fallback::Slot,
    /// Drop what is found; without it, only report.
    #[arg(long)]
    pub yes: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Tables the migration creates on the source: the sentinel, and the table the DMS heartbeat writes
/// (`HeartbeatEnable`). DMS's DDL-capture objects are left alone: the stack turns DDL capture off, and
/// dropping their table while the event trigger exists would make every DDL fail.
const SOURCE_TABLES: [&str; 2] = [sentinel::TABLE, "awsdms_heartbeat"];

/// What the stack delete removes, so the user knows cleanup is complete after both.
const STACK_DELETE_HANDLES: &str = "Deleting the stack removes the rest: the DMS replication instance, both endpoints and the task, \
their secrets, the Lambdas and the state machine, the S3 bucket (the stack-cleanup custom resource empties it first), \
and the security-group rules sg-autofix added (tagged, revoked by stack-cleanup). The account-wide dms-vpc-role and \
dms-cloudwatch-logs-role stay (other DMS users need them). Stop the task before deleting the stack.";

/// Task statuses in which nothing reads the slot any more.
const SAFE_STATUSES: [TaskStatus; 4] = [
    TaskStatus::Stopped,
    TaskStatus::Failed,
    TaskStatus::Ready,
    TaskStatus::FailedMove,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    ReplicationSlot,
    Publication,
    Table,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::ReplicationSlot => "replication slot",
            Kind::Publication => "publication",
            Kind::Table => "table",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Action {
    WouldDrop,
    Dropped,
    /// In use: never dropped.
    Kept,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Leftover {
    pub kind: Kind,
    /// `source` or `target`.
    pub database: &'static str,
    pub name: String,
    pub detail: String,
    pub action: Action,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    dropped: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    refused: Option<&'a str>,
    objects: &'a [Leftover],
    stack_delete_handles: &'a str,
}

pub async fn run(args: Args, env: &Environment) -> Result<Outcome, StepError> {
    let progress = Progress::for_stderr();
    let source = connection::options(Side::Source, args.source.as_deref(), env)?;
    let target = args
        .target
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .map(|t| connection::options(Side::Target, Some(t), env))
        .transpose()?;
    if let Some(arn) = &args.task_arn {
        progress.say("reading the DMS task");
        if let Some(why) = refusal(arn.trim()).await? {
            print_report(args.format, false, Some(&why), &[])?;
            return Ok(Outcome::Failed);
        }
    }
    progress.say(&format!("connecting to {}", source.describe()));
    let source_client = source.connect().await?;
    let target_client = match &target {
        Some(t) => Some(t.connect().await?),
        None => None,
    };

    let mut found = source_leftovers(&source_client, &args).await?;
    if let Some(client) = &target_client {
        found.extend(
            slots(
                client,
                "target",
                false,
                std::slice::from_ref(&args.way_back_slot.name),
            )
            .await?,
        );
        found.extend(tables(client, "target", &[sentinel::TABLE]).await?);
    }
    // An active DMS slot means the migration still runs: its publication and tables are in use too.
    let in_use = found.iter().any(|l| l.action == Action::Kept);
    if args.yes && !in_use {
        for leftover in found.iter_mut().filter(|l| l.action == Action::WouldDrop) {
            let client = match leftover.database {
                "target" => target_client.as_ref().unwrap_or(&source_client),
                _ => &source_client,
            };
            progress.say(&format!(
                "dropping {} {}",
                leftover.kind.label(),
                leftover.name
            ));
            leftover.action = drop(client, leftover).await?;
        }
    }
    print_report(args.format, args.yes && !in_use, None, &found)?;
    Ok(if in_use { Outcome::Failed } else { Outcome::Ok })
}

/// `Some(why)` when the task may still read the slot or write the target.
async fn refusal(task_arn: &str) -> Result<Option<String>, StepError> {
    DmsArn::parse(task_arn, "task")
        .map_err(|why| StepError::payload(format!("--task-arn `{task_arn}`: {why}")))?;
    let config = dms_core::aws::load_config().await;
    let dms = DmsClient::new(aws_sdk_databasemigration::Client::new(&config));
    let task = dms.describe_task(task_arn).await.map_err(|err| {
        if err.name == ErrorName::AwsNotFound {
            StepError::new(
                err.name,
                format!("{}. If the stack (and the task with it) is already deleted, run cleanup without --task-arn: it never drops a slot that is still in use", err.message),
            )
        } else {
            err
        }
    })?;
    let safe = task
        .status
        .known()
        .is_some_and(|s| SAFE_STATUSES.contains(&s));
    Ok((!safe).then(|| {
        format!(
            "the DMS task is `{}`: stop it first (console: the task, Actions, Stop; or `aws dms stop-replication-task --replication-task-arn {task_arn}`), then run cleanup again. While it runs, its slot stays active and stray writes on the source still reach the live target",
            task.status
        )
    }))
}

async fn source_leftovers(client: &Client, args: &Args) -> Result<Vec<Leftover>, StepError> {
    let mut found = slots(client, "source", true, &args.slots).await?;
    let slot_names: Vec<String> = found.iter().map(|l| l.name.clone()).collect();
    let publications = client
        .query(
            r"SELECT p.pubname::text FROM pg_catalog.pg_publication p
              WHERE p.pubname LIKE 'dms\_local\_%' OR p.pubname LIKE 'dms\_publication%'
                 OR p.pubname = ANY($1::text[])
                 OR EXISTS (SELECT 1 FROM unnest($2::text[]) AS slot(name)
                            WHERE starts_with(p.pubname, slot.name))
              ORDER BY 1",
            &[&args.publications, &slot_names],
        )
        .await
        .map_err(|e| classify_pg_error("listing publications on the source", &e))?;
    found.extend(publications.iter().map(|r| Leftover {
        kind: Kind::Publication,
        database: "source",
        name: r.get(0),
        detail: "logical replication publication".to_string(),
        action: Action::WouldDrop,
    }));
    found.extend(tables(client, "source", &SOURCE_TABLES).await?);
    Ok(found)
}

/// The logical slots of this database named in `names`, and with `dms_named` those named as DMS (or the
/// local stand-in) names its own; an active one is kept, an inactive one would be dropped.
pub(crate) async fn slots(
    client: &Client,
    database: &'static str,
    dms_named: bool,
    names: &[String],
) -> Result<Vec<Leftover>, StepError> {
    let slots = client
        .query(
            r"SELECT s.slot_name::text, coalesce(s.plugin::text, ''), s.active, s.active_pid,
                     coalesce(pg_catalog.pg_size_pretty(pg_catalog.pg_wal_lsn_diff(
                         pg_catalog.pg_current_wal_lsn(), s.restart_lsn)), '?')
              FROM pg_catalog.pg_replication_slots s
              JOIN pg_catalog.pg_database d ON d.datname = s.database
              WHERE s.slot_type = 'logical' AND s.database = current_database()
                AND (($2 AND (s.slot_name LIKE 'dms\_local\_%'
                              OR s.slot_name ~ ('^[a-z0-9]{16}_' || lpad(d.oid::text, 8, '0')
                                                || '_[0-9a-f]{8}(_[0-9a-f]{4}){3}_[0-9a-f]{12}$')))
                     OR s.slot_name = ANY($1::text[]))
              ORDER BY 1",
            &[&names, &dms_named],
        )
        .await
        .map_err(|e| {
            classify_pg_error(&format!("listing replication slots on the {database}"), &e)
        })?;
    Ok(slots
        .iter()
        .map(|r| {
            let active: bool = r.get(2);
            let pid: Option<i32> = r.get(3);
            let (action, detail) = if active {
                (
                    Action::Kept,
                    format!(
                        "ACTIVE (read by pid {}): never dropped while in use; stop the DMS task, then run cleanup again",
                        pid.map_or("?".to_string(), |p| p.to_string())
                    ),
                )
            } else {
                (
                    Action::WouldDrop,
                    format!(
                        "inactive, plugin {}, holding {} of WAL",
                        r.get::<_, String>(1),
                        r.get::<_, String>(4)
                    ),
                )
            };
            Leftover {
                kind: Kind::ReplicationSlot,
                database,
                name: r.get(0),
                detail,
                action,
            }
        })
        .collect())
}

async fn tables(
    client: &Client,
    database: &'static str,
    names: &[&str],
) -> Result<Vec<Leftover>, StepError> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, c.reltuples::bigint
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND c.relname = ANY($1::text[])
             ORDER BY 1, 2",
            &[&names],
        )
        .await
        .map_err(|e| {
            classify_pg_error(
                &format!("listing the migration's tables on the {database}"),
                &e,
            )
        })?;
    Ok(rows
        .iter()
        .map(|r| Leftover {
            kind: Kind::Table,
            database,
            name: format!(
                "{}.{}",
                quote_if_needed(r.get(0)),
                quote_if_needed(r.get(1))
            ),
            detail: if r.get::<_, String>(1) == sentinel::TABLE {
                "the cutover sentinel".to_string()
            } else {
                "written by the DMS heartbeat".to_string()
            },
            action: Action::WouldDrop,
        })
        .collect())
}

/// Drops one object; re-checks at drop time, so a re-run or a concurrent drop is not an error.
pub(crate) async fn drop(client: &Client, leftover: &Leftover) -> Result<Action, StepError> {
    let what = format!(
        "dropping {} {} on the {}",
        leftover.kind.label(),
        leftover.name,
        leftover.database
    );
    let failed = |e: tokio_postgres::Error| classify_pg_error(&what, &e);
    match leftover.kind {
        Kind::ReplicationSlot => {
            // Only while inactive, in one statement: a consumer that reconnected meanwhile keeps its slot.
            let dropped = client
                .query(
                    "SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots
                     WHERE slot_name = $1 AND NOT active",
                    &[&leftover.name],
                )
                .await
                .map_err(failed)?;
            if !dropped.is_empty() {
                return Ok(Action::Dropped);
            }
            let still_active = client
                .query(
                    "SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1 AND active",
                    &[&leftover.name],
                )
                .await
                .map_err(failed)?;
            Ok(if still_active.is_empty() {
                Action::Dropped
            } else {
                Action::Kept
            })
        }
        Kind::Publication => {
            client
                .batch_execute(&format!(
                    "DROP PUBLICATION IF EXISTS {}",
                    quote(&leftover.name)
                ))
                .await
                .map_err(failed)?;
            Ok(Action::Dropped)
        }
        Kind::Table => {
            // `name` is already quoted.
            client
                .batch_execute(&format!("DROP TABLE IF EXISTS {}", leftover.name))
                .await
                .map_err(failed)?;
            Ok(Action::Dropped)
        }
    }
}

fn print_report(
    format: Format,
    yes: bool,
    refused: Option<&str>,
    found: &[Leftover],
) -> Result<(), StepError> {
    match format {
        Format::Json => {
            let report = Report {
                dropped: yes,
                refused,
                objects: found,
                stack_delete_handles: STACK_DELETE_HANDLES,
            };
            let text = serde_json::to_string_pretty(&report)
                .map_err(|e| StepError::config(format!("rendering JSON: {e}")))?;
            println!("{text}");
        }
        Format::Text => print!("{}", render_text(yes, refused, found)),
    }
    Ok(())
}

fn render_text(yes: bool, refused: Option<&str>, found: &[Leftover]) -> String {
    if let Some(why) = refused {
        return format!("REFUSED: {why}\nNothing was dropped.\n");
    }
    let mut out = String::new();
    if found.is_empty() {
        out.push_str("Nothing left to clean up: no DMS replication slot, publication, heartbeat or sentinel table found.\n");
    } else {
        let width = found
            .iter()
            .map(|l| l.kind.label().len() + l.name.len() + 1)
            .max()
            .unwrap_or(0);
        for leftover in found {
            let action = match leftover.action {
                Action::WouldDrop => "would drop",
                Action::Dropped => "dropped",
                Action::Kept => "KEPT",
            };
            let object = format!("{} {}", leftover.kind.label(), leftover.name);
            out.push_str(&format!(
                "  {action:10}  {:6}  {object:width$}  {}\n",
                leftover.database, leftover.detail
            ));
        }
        if found.iter().any(|l| l.action == Action::Kept) {
            out.push_str("\nA DMS slot is still in use, so nothing was dropped: stop the DMS task, then run cleanup again.\n");
        } else if !yes {
            out.push_str("\nReport only: nothing was dropped. Run again with --yes to drop what says `would drop`.\n");
        }
    }
    out.push_str(&format!("\n{STACK_DELETE_HANDLES}\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftover(kind: Kind, name: &str, action: Action) -> Leftover {
        Leftover {
            kind,
            database: "source",
            name: name.into(),
            detail: "d".into(),
            action,
        }
    }

    #[test]
    fn text_says_what_would_be_dropped_and_what_is_kept() {
        let found = vec![
            leftover(Kind::ReplicationSlot, "dms_local_abc", Action::Kept),
            leftover(Kind::Publication, "dms_local_abc", Action::WouldDrop),
        ];
        let text = render_text(false, None, &found);
        assert!(
            text.contains("  KEPT        source  replication slot dms_local_abc  d\n"),
            "{text}"
        );
        assert!(
            text.contains("  would drop  source  publication dms_local_abc       d\n"),
            "{text}"
        );
        assert!(
            text.contains("still in use, so nothing was dropped"),
            "{text}"
        );
        assert!(text.contains("stack-cleanup"), "{text}");
        let empty = render_text(true, None, &[]);
        assert!(empty.starts_with("Nothing left to clean up"), "{empty}");
        let refused = render_text(true, Some("the DMS task is `running`"), &found);
        assert!(
            refused.starts_with("REFUSED: the DMS task is `running`"),
            "{refused}"
        );
        assert!(!refused.contains("dms_local_abc"), "{refused}");
    }
}
