//! `dms-migrate`: what runs from a workstation that reaches both databases, before and after the DMS task
//! (docs/architecture.md, docs/cli.md). Each subcommand is a module with its clap `Args` and a `run` returning an `Outcome`;
//! `main` only parses, reads the environment once and turns the outcome into the documented exit code.

mod cleanup;
mod connection;
mod constraints_apply;
mod cutover;
mod cutover_check;
mod deferred_file;
mod fallback;
mod output;
mod plan;
mod plan_rules;
mod preflight;
mod rollback;
mod schema_apply;
mod schema_split;
mod sequences_sync;
mod verify;
mod verify_rows;

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
    /// Check that the source and the target are ready for the DMS task (the checks of docs/checks.md).
    #[command(after_help = EXIT_CODES)]
    Preflight(preflight::Args),
    /// Size the DMS task from the source's statistics: parallel-load ranges, task settings, an estimate.
    #[command(after_help = EXIT_CODES)]
    Plan(plan::Args),
    /// Create the schema on the target before the DMS full load.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Move the target's sequences ahead of the source's.
    #[command(subcommand)]
    Sequences(SequencesCommand),
    /// Apply the objects deferred until after the load.
    #[command(subcommand)]
    Constraints(ConstraintsCommand),
    /// Compare the target with the source: row counts, checksums by key range, schema objects, sequences.
    #[command(after_help = EXIT_CODES)]
    Verify(verify::Args),
    /// Is the migration ready to switch the application over?
    #[command(after_help = EXIT_CODES)]
    CutoverCheck(cutover_check::Args),
    /// The whole cutover: everything that grows with the data before the freeze, then a short freeze
    /// proved and drained, ending with the instruction to switch (docs/cutover.md).
    #[command(after_help = EXIT_CODES)]
    Cutover(cutover::Args),
    /// After the switch: drop what the migration left on the source, and on the target the way back's slot.
    #[command(after_help = EXIT_CODES)]
    Cleanup(cleanup::Args),
    /// The way back after the switch (docs/fallback.md).
    #[command(subcommand)]
    Fallback(FallbackCommand),
    /// Switch back to the source after a cutover, through the way back: the target frozen, proved quiet
    /// and drained to the source, ending with the instruction to switch back (docs/rollback.md).
    #[command(after_help = EXIT_CODES)]
    Rollback(rollback::Args),
}

#[derive(Subcommand, Debug)]
enum FallbackCommand {
    /// Is the way back armed: the slot on the target, the WAL it holds, how close it is to being lost.
    #[command(after_help = EXIT_CODES)]
    Status(fallback::StatusArgs),
    /// The migration is final: stop the reverse task, drop the way back's slot on the target.
    #[command(after_help = EXIT_CODES)]
    End(fallback::EndArgs),
}

#[derive(Subcommand, Debug)]
enum SchemaCommand {
    /// Create the pre-load objects on the target; write the deferred ones for `constraints apply`.
    #[command(after_help = EXIT_CODES)]
    Apply(schema_apply::Args),
}

#[derive(Subcommand, Debug)]
enum SequencesCommand {
    /// Set every target sequence to at least the source's value plus a margin; never backwards.
    #[command(after_help = EXIT_CODES)]
    Sync(sequences_sync::Args),
}

#[derive(Subcommand, Debug)]
enum ConstraintsCommand {
    /// Foreign keys, unique and check constraints, triggers, indexes and identity columns, resumably.
    #[command(after_help = EXIT_CODES)]
    Apply(constraints_apply::Args),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = Environment::from_process();
    let result = match cli.command {
        Command::Preflight(args) => preflight::run(args, &env).await,
        Command::Plan(args) => plan::run(args, &env).await,
        Command::Schema(SchemaCommand::Apply(args)) => schema_apply::run(args, &env).await,
        Command::Sequences(SequencesCommand::Sync(args)) => sequences_sync::run(args, &env).await,
        Command::Constraints(ConstraintsCommand::Apply(args)) => {
            constraints_apply::run(args, &env).await
        }
        Command::Verify(args) => verify::run(args, &env).await,
        Command::CutoverCheck(args) => cutover_check::run(args, &env).await,
        Command::Cutover(args) => cutover::run(args, &env).await,
        Command::Rollback(args) => rollback::run(args, &env).await,
        Command::Cleanup(args) => cleanup::run(args, &env).await,
        Command::Fallback(FallbackCommand::Status(args)) => fallback::status(args, &env).await,
        Command::Fallback(FallbackCommand::End(args)) => fallback::end(args, &env).await,
    };
    match result {
        Ok(outcome) => outcome.exit_code(),
        Err(err) => {
            eprintln!("dms-migrate: could not run: {err}");
            Outcome::CouldNotRun.exit_code()
        }
    }
}
