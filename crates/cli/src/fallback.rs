//! `dms-migrate fallback`: the way back after the switch (docs/fallback.md).
//!
//! `status` reports the slot `cutover` created on the target: whether something reads it, the WAL it
//! holds, and how much more PlanetScale keeps before `max_slot_wal_keep_size` invalidates it (the way back
//! then is lost). `end`: the user declares the migration final. Stops the way back's reverse DMS task when
//! given (`--task-arn`), then drops the slot: an unread slot keeps PlanetScale's WAL until its disk fills or
//! the limit invalidates it. Idempotent: a slot already gone is reported as such. A slot still read (the
//! reverse task runs and was not given) is never dropped.

use std::time::{Duration, Instant};

use dms_core::aws::dms::{Dms, DmsClient};
use dms_core::errors::StepError;
use dms_core::rules::arn::DmsArn;
use dms_core::rules::dms_model::TaskStatus;
use dms_core::rules::way_back;

use crate::cleanup::{self, Action};
use crate::connection::{self, Environment, Side};
use crate::output::{Outcome, Progress};

/// `--way-back-slot`, declared once for every command that names the slot.
#[derive(clap::Args, Debug)]
pub struct Slot {
    /// The way back's slot on the target: the name the stack's reverse source endpoint reads (`SlotName`)
    /// and `cutover` creates. Slot names are per PlanetScale cluster.
    #[arg(long = "way-back-slot", value_name = "NAME", default_value = way_back::SLOT, value_parser = slot_name)]
    pub name: String,
}

/// PostgreSQL's rule for a replication slot name: lower-case letters, digits and underscores, at most 63.
fn slot_name(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(text.to_owned())
    } else {
        Err("a slot name has 1 to 63 lower-case letters, digits or underscores".into())
    }
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Target (PlanetScale) URL; default $PGTARGET.
    #[arg(long, env = "PGTARGET", hide_env_values = true, value_name = "URL")]
    pub target: Option<String>,
    #[command(flatten)]
    pub way_back_slot: Slot,
}

/// The slot as the target reports it. `wal_status` and `safe_wal_size` are PostgreSQL 13+
/// (<https://www.postgresql.org/docs/current/view-pg-replication-slots.html>).
const SLOT_STATUS_SQL: &str = r"
SELECT s.plugin::text, s.active, s.active_pid, s.confirmed_flush_lsn::text,
       pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.restart_lsn)::bigint,
       s.wal_status, s.safe_wal_size,
       pg_catalog.current_setting('max_slot_wal_keep_size')
FROM pg_catalog.pg_replication_slots s
WHERE s.slot_name = $1 AND s.database = pg_catalog.current_database()";

pub async fn status(args: StatusArgs, env: &Environment) -> Result<Outcome, StepError> {
    let progress = Progress::for_stderr();
    let target = connection::options(Side::Target, args.target.as_deref(), env)?;
    progress.say(&format!("connecting to {}", target.describe()));
    let client = target.connect().await?;
    let slot = &args.way_back_slot.name;
    let Some((report, holds)) = slot_report(&client, slot).await? else {
        println!("NOT ARMED: no slot {slot} in this database of the target. Changes made on the target do not reach the source; going back would lose them.");
        return Ok(Outcome::Failed);
    };
    println!("{report}");
    Ok(if holds { Outcome::Ok } else { Outcome::Failed })
}

/// The way back's slot on the target as `fallback status` reports it (ARMED, AT RISK or LOST, with the WAL
/// it holds), and whether the way back still holds; None when there is no such slot.
pub(crate) async fn slot_report(
    target: &tokio_postgres::Client,
    slot: &str,
) -> Result<Option<(String, bool)>, StepError> {
    let row = target
        .query_opt(SLOT_STATUS_SQL, &[&slot])
        .await
        .map_err(|e| dms_core::pg::classify_pg_error("reading the way back's slot", &e))?;
    Ok(row.map(|row| {
        SlotStatus {
            plugin: row.get(0),
            active: row.get(1),
            active_pid: row.get(2),
            confirmed_flush: row.get(3),
            retained_bytes: row.get(4),
            wal_status: row.get(5),
            safe_wal_bytes: row.get(6),
            keep_size: row.get(7),
        }
        .verdict(slot)
    }))
}

struct SlotStatus {
    plugin: Option<String>,
    active: bool,
    active_pid: Option<i32>,
    confirmed_flush: Option<String>,
    retained_bytes: Option<i64>,
    wal_status: Option<String>,
    safe_wal_bytes: Option<i64>,
    keep_size: String,
}

impl SlotStatus {
    /// The report, and whether the way back still holds.
    fn verdict(&self, slot: &str) -> (String, bool) {
        let mib = |b: i64| format!("{:.1} MiB", b as f64 / 1_048_576.0);
        let held = self.retained_bytes.map_or("?".into(), mib);
        let reader = if self.active {
            format!(
                "read now (pid {}): the reverse task replays it",
                self.active_pid.map_or("?".into(), |p| p.to_string())
            )
        } else {
            "NOT read: start the reverse task (the command `cutover` printed), or nothing reaches the source"
                .into()
        };
        let from = self.confirmed_flush.as_deref().unwrap_or("?");
        match self.wal_status.as_deref() {
            Some("lost") => (
                format!("LOST: slot {slot} was invalidated (it held more WAL than max_slot_wal_keep_size = {}). The way back is gone: changes made on the target since {from} cannot be replayed to the source; drop the slot with `dms-migrate fallback end`.", self.keep_size),
                false,
            ),
            Some("unreserved") => (
                format!("AT RISK: slot {slot} holds {held} of WAL, past max_slot_wal_keep_size = {}: it is invalidated at the next checkpoint unless the reverse task catches up. It is {reader}.", self.keep_size),
                false,
            ),
            _ => {
                let room = self.safe_wal_bytes.map_or_else(
                    || format!("no limit (max_slot_wal_keep_size = {}): the slot can fill the target's disk", self.keep_size),
                    |b| format!("{} more before max_slot_wal_keep_size = {} invalidates it", mib(b), self.keep_size),
                );
                (
                    format!(
                        "ARMED: slot {slot} ({}) on the target holds {held} of WAL from {from} on; {room}. It is {reader}.",
                        self.plugin.as_deref().unwrap_or("?")
                    ),
                    true,
                )
            }
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct EndArgs {
    /// Target (PlanetScale) URL; default $PGTARGET.
    #[arg(long, env = "PGTARGET", hide_env_values = true, value_name = "URL")]
    pub target: Option<String>,
    /// The way back's reverse DMS task (the stack output FallbackReplicationTaskArn): stopped first.
    #[arg(long, value_name = "ARN")]
    pub task_arn: Option<String>,
    #[command(flatten)]
    pub way_back_slot: Slot,
    /// How long the reverse task may take to stop.
    #[arg(long, value_name = "SECONDS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub stop_timeout: u64,
}

/// Statuses in which the reverse task no longer reads the slot.
const NOT_READING: [TaskStatus; 4] = [
    TaskStatus::Stopped,
    TaskStatus::Failed,
    TaskStatus::Ready,
    TaskStatus::FailedMove,
];

pub async fn end(args: EndArgs, env: &Environment) -> Result<Outcome, StepError> {
    let progress = Progress::for_stderr();
    let target = connection::options(Side::Target, args.target.as_deref(), env)?;
    if let Some(arn) = args.task_arn.as_deref().map(str::trim) {
        DmsArn::parse(arn, "task")
            .map_err(|why| StepError::payload(format!("--task-arn `{arn}`: {why}")))?;
        let config = dms_core::aws::load_config().await;
        let dms = DmsClient::new(aws_sdk_databasemigration::Client::new(&config));
        progress.say("stopping the way back's reverse task");
        println!(
            "{}",
            stop_reverse_task(&dms, arn, Duration::from_secs(args.stop_timeout)).await?
        );
    }
    progress.say(&format!("connecting to {}", target.describe()));
    let client = target.connect().await?;
    let slot = args.way_back_slot.name.clone();
    let found = cleanup::slots(&client, "target", false, std::slice::from_ref(&slot)).await?;
    let Some(mut leftover) = found.into_iter().next() else {
        println!("No way back's slot {slot} on the target: the way back is already ended (or was never armed).");
        return Ok(Outcome::Ok);
    };
    if leftover.action == Action::Kept {
        println!(
            "NOT ENDED: the way back's slot {slot} on the target is {}. Give the reverse task with --task-arn (the stack output FallbackReplicationTaskArn) so it is stopped first.",
            leftover.detail
        );
        return Ok(Outcome::Failed);
    }
    progress.say(&format!("dropping the way back's slot {slot}"));
    leftover.action = cleanup::drop(&client, &leftover).await?;
    if leftover.action == Action::Kept {
        println!("NOT ENDED: a reader took the slot {slot} while it was being dropped; stop it and run again.");
        return Ok(Outcome::Failed);
    }
    println!(
        "The way back is ended: slot {slot} dropped on the target (it was {}). Changes made on the target from now on no longer reach the source: going back would lose them.",
        leftover.detail
    );
    Ok(Outcome::Ok)
}

/// Stops the reverse task unless it already does not read the slot, and waits (bounded) until it is.
pub(crate) async fn stop_reverse_task(
    dms: &DmsClient,
    arn: &str,
    limit: Duration,
) -> Result<String, StepError> {
    let deadline = Instant::now() + limit;
    let mut asked = false;
    loop {
        let task = dms.describe_task(arn).await?;
        if task
            .status
            .known()
            .is_some_and(|s| NOT_READING.contains(&s))
        {
            return Ok(if asked {
                format!(
                    "The reverse task is {}: it no longer reads the slot.",
                    task.status
                )
            } else {
                format!("The reverse task is already {}.", task.status)
            });
        }
        if !asked
            && matches!(
                task.status.known(),
                Some(TaskStatus::Running | TaskStatus::Starting)
            )
        {
            dms.stop_task(arn).await?;
            asked = true;
        }
        if Instant::now() >= deadline {
            return Err(StepError::new(
                dms_core::errors::ErrorName::AwsTransient,
                format!(
                    "the reverse task is still {} after {} s: look at it in the DMS console, then run fallback end again",
                    task.status,
                    limit.as_secs()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(wal_status: Option<&str>, safe: Option<i64>, active: bool) -> SlotStatus {
        SlotStatus {
            plugin: Some("test_decoding".into()),
            active,
            active_pid: active.then_some(42),
            confirmed_flush: Some("0/3000000".into()),
            retained_bytes: Some(3 * 1_048_576),
            wal_status: wal_status.map(str::to_owned),
            safe_wal_bytes: safe,
            keep_size: "4GB".into(),
        }
    }

    #[test]
    fn a_slot_name_follows_postgresqls_rule() {
        assert!(slot_name("dms_migrate_way_back").is_ok());
        assert!(slot_name(&"a".repeat(63)).is_ok());
        for bad in ["", "Way_Back", "way-back", "way back", &"a".repeat(64)] {
            assert!(slot_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_reserved_slot_is_armed_and_says_how_much_room_is_left() {
        let (text, ok) = slot(Some("reserved"), Some(1024 * 1_048_576), true).verdict("wb");
        assert!(ok);
        assert!(
            text.starts_with("ARMED")
                && text.contains("3.0 MiB")
                && text.contains("1024.0 MiB more"),
            "{text}"
        );
        assert!(text.contains("read now (pid 42)"), "{text}");
    }

    #[test]
    fn an_unread_slot_without_a_limit_warns_of_the_disk() {
        let (text, ok) = slot(Some("reserved"), None, false).verdict("wb");
        assert!(ok);
        assert!(
            text.contains("NOT read") && text.contains("fill the target's disk"),
            "{text}"
        );
    }

    #[test]
    fn an_unreserved_or_lost_slot_fails_naming_the_limit() {
        let (text, ok) = slot(Some("unreserved"), Some(0), false).verdict("wb");
        assert!(
            !ok && text.starts_with("AT RISK") && text.contains("4GB"),
            "{text}"
        );
        let (text, ok) = slot(Some("lost"), None, false).verdict("wb");
        assert!(
            !ok && text.starts_with("LOST") && text.contains("fallback end"),
            "{text}"
        );
    }
}
