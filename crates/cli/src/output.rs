//! What every subcommand shares about output: `--format`, progress lines on stderr (only for a person at
//! a terminal, so scripts and logs get clean output), and the exit codes of `--help`.

use std::io::IsTerminal;
use std::process::ExitCode;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// For people: grouped by status, with the fix under each problem.
    #[default]
    Text,
    /// For machines: the check list (docs/checks.md) and a summary.
    Json,
}

/// How a command ended; the exit code follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 0: nothing failed (warnings allowed).
    Ok,
    /// 1: a check failed, a mismatch, not ready.
    Failed,
    /// 2: could not run.
    CouldNotRun,
}

impl Outcome {
    pub fn exit_code(self) -> ExitCode {
        match self {
            Outcome::Ok => ExitCode::SUCCESS,
            Outcome::Failed => ExitCode::from(1),
            Outcome::CouldNotRun => ExitCode::from(2),
        }
    }
}

/// Progress on stderr when a person is watching it.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    enabled: bool,
}

impl Progress {
    pub fn for_stderr() -> Self {
        Progress {
            enabled: std::io::stderr().is_terminal(),
        }
    }

    pub fn say(&self, message: &str) {
        if self.enabled {
            eprintln!("... {message}");
        }
    }
}
