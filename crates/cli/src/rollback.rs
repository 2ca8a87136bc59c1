//! `dms-migrate rollback`: the way back's switch (docs/rollback.md). The mirror of `cutover`: the target
//! (PlanetScale) is frozen and proved quiet, the way back's reverse task drained by a sentinel round trip
//! from the target to the source, the source's sequences set ahead of the target's, the ranges checked,
//! the reverse task stopped, the source's identity columns back to ALWAYS and its freeze from the cutover
//! undone; then the instruction to switch the application back. Any failed gate, Ctrl-C or lost
//! connection before it undoes the target's freeze and resumes the reverse task. Exit 0: switch back now;
//! 1: a gate failed (aborted, the target writable, the way back running); 2: could not run.

use dms_core::errors::StepError;
use dms_core::rules::arn::DmsArn;

use crate::connection::{BothDatabases, Environment};
use crate::cutover::{self, Direction, Switch};
use crate::output::Outcome;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub databases: BothDatabases,
    /// The way back's reverse DMS task (the stack output FallbackReplicationTaskArn), running since the
    /// cutover.
    #[arg(long, value_name = "ARN")]
    pub way_back_task_arn: String,
    #[command(flatten)]
    pub switch: Switch,
}

pub async fn run(args: Args, env: &Environment) -> Result<Outcome, StepError> {
    let task_arn = args.way_back_task_arn.trim().to_string();
    DmsArn::parse(&task_arn, "task")
        .map_err(|why| StepError::payload(format!("--way-back-task-arn `{task_arn}`: {why}")))?;
    let Some(cx) =
        cutover::prepare(Direction::Back, args.databases, args.switch, task_arn, env).await?
    else {
        return Ok(Outcome::Failed);
    };
    if cx.undo_freeze_requested() {
        return cutover::undo_freeze_only(&cx).await;
    }
    cutover::roll_back(cx).await
}
