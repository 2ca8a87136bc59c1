//! `dms-migrate schema apply`: being written (issue 7); see DESIGN §9.

use core_lib::errors::StepError;

use crate::connection::Environment;
use crate::output::Outcome;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub async fn run(_args: Args, _env: &Environment) -> Result<Outcome, StepError> {
    Err(StepError::config("not built yet"))
}
