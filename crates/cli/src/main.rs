//! `dms-migrate`: what runs from a workstation that reaches both databases, before and after the DMS task
//! (DESIGN §1, §9). Each subcommand is a module with its clap `Args` and a `run` returning an `Outcome`;
//! `main` only parses, reads the environment once and turns the outcome into the documented exit code.

mod connection;
mod output;
mod preflight;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::connection::Environment;
use crate::output::Outcome;

const EXIT_CODES: &str = "Exit codes:
  0  everything checked is fine (warnings allowed)
  1  a check failed, a mismatch was found, or the migration is not ready
  2  the command could not run (bad arguments, a database unreachable, a query refused); the reason is on stderr

Connections: --source/--target URLs (or PGSOURCE/PGTARGET), e.g.
  postgres://USER@HOST:5432/DBNAME?sslmode=verify-full&sslrootcert=global-bundle.pem
The password comes from the URL, else PGPASSWORD, else the password file (PGPASSFILE or ~/.pgpass),
so it need not appear on the command line.";

#[derive(Parser, Debug)]
#[command(name = "dms-migrate", version, about = "Aurora PostgreSQL to PlanetScale for Postgres through AWS DMS: the steps around the DMS task", after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check that the source and the target are ready for the DMS task (DESIGN §6 checks).
    #[command(after_help = EXIT_CODES)]
    Preflight(preflight::Args),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = Environment::from_process();
    let result = match cli.command {
        Command::Preflight(args) => preflight::run(args, &env).await,
    };
    match result {
        Ok(outcome) => outcome.exit_code(),
        Err(err) => {
            eprintln!("dms-migrate: could not run: {err}");
            Outcome::CouldNotRun.exit_code()
        }
    }
}
