//! The SQL checks of docs/checks.md (dms-core's `checks`) against one database, behind a trait so the handler's
//! rules (unreachable → warnings) are tested without databases.

use std::future::Future;

use dms_core::errors::StepError;
use dms_core::pg::checks::{self, Check, CheckConfig, SourceFacts};
use dms_core::pg::PgConnectOptions;

pub trait SqlChecks {
    /// What the source checks learned that the target checks compare against.
    type Facts: Send + Sync;
    fn source(
        &self,
        source: &PgConnectOptions,
        config: &CheckConfig,
    ) -> impl Future<Output = Result<(Vec<Check>, Self::Facts), StepError>> + Send;
    fn target(
        &self,
        target: &PgConnectOptions,
        source: Option<&Self::Facts>,
        config: &CheckConfig,
    ) -> impl Future<Output = Result<Vec<Check>, StepError>> + Send;
    /// Where the source checks run, in words, for the email.
    fn source_location(&self) -> &'static str {
        "premigration-assessment, outside any VPC"
    }
    /// The summary and fix of a source check that could not run because the source was unreachable
    /// (`why`) from where the source checks run, given the source's port and security groups when known.
    fn source_not_run(&self, _port: u16, _source_groups: &[String], why: &str) -> (String, String) {
        (
            format!("not run: the source database could not be reached from this Lambda ({why})"),
            format!("{NOT_RUN_FIX}: dms-migrate preflight --source URL --target URL"),
        )
    }
}

/// Where a check that could not run here can run instead.
pub const NOT_RUN_FIX: &str = "run `dms-migrate preflight` from a machine that reaches it";

pub struct PgChecks;

impl SqlChecks for PgChecks {
    type Facts = SourceFacts;

    async fn source(
        &self,
        source: &PgConnectOptions,
        config: &CheckConfig,
    ) -> Result<(Vec<Check>, SourceFacts), StepError> {
        let client = source.connect().await?;
        let report = checks::run_source_checks(&client, config).await?;
        Ok((report.checks, report.facts))
    }

    async fn target(
        &self,
        target: &PgConnectOptions,
        source: Option<&SourceFacts>,
        config: &CheckConfig,
    ) -> Result<Vec<Check>, StepError> {
        let client = target.connect().await?;
        checks::run_target_checks(&client, source, config).await
    }
}
