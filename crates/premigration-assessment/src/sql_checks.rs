//! The SQL checks of docs/checks.md (dms-core's `checks`) against one database, behind a trait so the handler's
//! rules (unreachable → warnings) are tested without databases.

use std::future::Future;

use dms_core::errors::StepError;
use dms_core::pg::checks::{self, Check, CheckConfig, SourceFacts};
use dms_core::pg::PgConnectOptions;

/// `fallback`: also the way back's checks of that side (`ids::FALLBACK_SOURCE` on the source,
/// `ids::FALLBACK_TARGET` on the target), after the side's own.
pub trait SqlChecks {
    /// What the source checks learned that the target checks compare against.
    type Facts: Send + Sync;
    fn source(
        &self,
        source: &PgConnectOptions,
        config: &CheckConfig,
        fallback: bool,
    ) -> impl Future<Output = Result<(Vec<Check>, Self::Facts), StepError>> + Send;
    fn target(
        &self,
        target: &PgConnectOptions,
        source: Option<&Self::Facts>,
        config: &CheckConfig,
        fallback: bool,
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
        fallback: bool,
    ) -> Result<(Vec<Check>, SourceFacts), StepError> {
        let client = source.connect().await?;
        let report = checks::run_source_checks_and_fallback(&client, config, fallback).await?;
        Ok((report.checks, report.facts))
    }

    /// The way back's PlanetScale checks open a session of their own (its throwaway slot is dropped with
    /// it), read beside the target checks.
    async fn target(
        &self,
        target: &PgConnectOptions,
        source: Option<&SourceFacts>,
        config: &CheckConfig,
        fallback: bool,
    ) -> Result<Vec<Check>, StepError> {
        let client = target.connect().await?;
        let way_back = async {
            if fallback {
                checks::run_target_fallback_checks(target).await
            } else {
                Ok(Vec::new())
            }
        };
        let (mut found, way_back) =
            tokio::try_join!(checks::run_target_checks(&client, source, config), way_back)?;
        found.extend(way_back);
        Ok(found)
    }
}
