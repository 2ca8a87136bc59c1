//! `dms-migrate fallback end`: the user declares the migration final. Stops the way back's reverse DMS
//! task when given (`--task-arn`), then drops the way back's slot on the target: an unread slot keeps
//! PlanetScale's WAL until its disk fills or `max_slot_wal_keep_size` invalidates it (docs/fallback.md).
//! Idempotent: a slot already gone is reported as such. A slot still read (the reverse task runs and was
//! not given) is never dropped.

use std::time::{Duration, Instant};

use dms_core::aws::dms::{Dms, DmsClient};
use dms_core::errors::StepError;
use dms_core::rules::arn::DmsArn;
use dms_core::rules::dms_model::TaskStatus;
use dms_core::rules::way_back;

use crate::cleanup::{self, Action};
use crate::connection::{self, Environment, Side};
use crate::output::{Outcome, Progress};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Target (PlanetScale) URL; default $PGTARGET.
    #[arg(long, env = "PGTARGET", hide_env_values = true, value_name = "URL")]
    pub target: Option<String>,
    /// The way back's reverse DMS task (the stack output FallbackReplicationTaskArn): stopped first.
    #[arg(long, value_name = "ARN")]
    pub task_arn: Option<String>,
    /// The way back's slot on the target (`cutover --way-back-slot`).
    #[arg(long, value_name = "NAME", default_value = way_back::SLOT)]
    pub way_back_slot: String,
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

pub async fn run(args: Args, env: &Environment) -> Result<Outcome, StepError> {
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
    let slot = args.way_back_slot.clone();
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
async fn stop_reverse_task(
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
