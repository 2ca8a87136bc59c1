//! DMS premigration assessment runs: which individual assessments apply to a task, starting a run, reading
//! its status and its individual results. Separate from `Dms` so fakes of `Dms` need not grow; `DmsClient`
//! implements both. Run and assessment statuses are kept as DMS spells them
//! (<https://docs.aws.amazon.com/dms/latest/APIReference/API_ReplicationTaskAssessmentRun.html>).

use std::future::Future;

use aws_sdk_databasemigration::types::Filter;

use crate::aws::dms::DmsClient;
use crate::errors::{classify_sdk_error, ErrorName, StepError};

pub const START_RUN_ACTION: &str = "dms:StartReplicationTaskAssessmentRun";
pub const DESCRIBE_RUNS_ACTION: &str = "dms:DescribeReplicationTaskAssessmentRuns";
pub const DESCRIBE_INDIVIDUAL_ACTION: &str = "dms:DescribeReplicationTaskIndividualAssessments";
pub const DESCRIBE_APPLICABLE_ACTION: &str = "dms:DescribeApplicableIndividualAssessments";

/// Bound on pagination loops: DMS pages hold up to 100 items, and no task has 100,000 assessments.
const MAX_PAGES: usize = 1000;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunRequest {
    pub task_arn: String,
    /// The role DMS assumes to write the report (the caller needs `iam:PassRole` on it).
    pub service_access_role_arn: String,
    pub result_location_bucket: String,
    /// Unique per task.
    pub run_name: String,
    pub include_only: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunInfo {
    pub arn: String,
    /// provisioning, starting, running, passed, warning, failed, error-provisioning, error-executing,
    /// invalid state, cancelling, deleting.
    pub status: String,
    pub last_failure_message: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndividualResult {
    pub name: String,
    /// pending, running, passed, warning, failed, error, cancelled, skipped.
    pub status: String,
}

pub trait Assessments {
    fn applicable_assessments(
        &self,
        task_arn: &str,
    ) -> impl Future<Output = Result<Vec<String>, StepError>> + Send;
    fn start_assessment_run(
        &self,
        request: &RunRequest,
    ) -> impl Future<Output = Result<RunInfo, StepError>> + Send;
    /// The run, or None when DMS does not know it (deleted).
    fn describe_assessment_run(
        &self,
        run_arn: &str,
    ) -> impl Future<Output = Result<Option<RunInfo>, StepError>> + Send;
    fn individual_assessments(
        &self,
        run_arn: &str,
    ) -> impl Future<Output = Result<Vec<IndividualResult>, StepError>> + Send;
}

fn filter(name: &str, value: &str) -> Result<Filter, StepError> {
    Filter::builder()
        .name(name)
        .values(value)
        .build()
        .map_err(|e| StepError::new(ErrorName::AwsRejected, format!("DMS filter {name}: {e}")))
}

fn endless(action: &str, resource: &str) -> StepError {
    StepError::new(
        ErrorName::AwsRejected,
        format!("{action} on {resource} never ended its pagination"),
    )
}

impl Assessments for DmsClient {
    async fn applicable_assessments(&self, task_arn: &str) -> Result<Vec<String>, StepError> {
        let mut names = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let out = self
                .sdk()
                .describe_applicable_individual_assessments()
                .replication_task_arn(task_arn)
                .set_marker(marker.clone())
                .send()
                .await
                .map_err(|e| classify_sdk_error(DESCRIBE_APPLICABLE_ACTION, task_arn, &e))?;
            names.extend(out.individual_assessment_names().iter().cloned());
            marker = out.marker().filter(|m| !m.is_empty()).map(str::to_string);
            if marker.is_none() {
                return Ok(names);
            }
        }
        Err(endless(DESCRIBE_APPLICABLE_ACTION, task_arn))
    }

    async fn start_assessment_run(&self, request: &RunRequest) -> Result<RunInfo, StepError> {
        let out = self
            .sdk()
            .start_replication_task_assessment_run()
            .replication_task_arn(&request.task_arn)
            .service_access_role_arn(&request.service_access_role_arn)
            .result_location_bucket(&request.result_location_bucket)
            .assessment_run_name(&request.run_name)
            .set_include_only(
                (!request.include_only.is_empty()).then(|| request.include_only.clone()),
            )
            .send()
            .await
            .map_err(|e| classify_sdk_error(START_RUN_ACTION, &request.task_arn, &e))?;
        let run = out.replication_task_assessment_run().ok_or_else(|| {
            StepError::new(
                ErrorName::AwsTransient,
                format!(
                    "{START_RUN_ACTION} on {} answered without the run",
                    request.task_arn
                ),
            )
        })?;
        Ok(RunInfo {
            arn: run
                .replication_task_assessment_run_arn()
                .unwrap_or_default()
                .to_string(),
            status: run.status().unwrap_or_default().to_string(),
            last_failure_message: run.last_failure_message().map(str::to_string),
        })
    }

    async fn describe_assessment_run(&self, run_arn: &str) -> Result<Option<RunInfo>, StepError> {
        let out = self
            .sdk()
            .describe_replication_task_assessment_runs()
            .filters(filter("replication-task-assessment-run-arn", run_arn)?)
            .send()
            .await
            .map_err(|e| classify_sdk_error(DESCRIBE_RUNS_ACTION, run_arn, &e))?;
        Ok(out
            .replication_task_assessment_runs()
            .iter()
            .find(|r| r.replication_task_assessment_run_arn() == Some(run_arn))
            .map(|r| RunInfo {
                arn: run_arn.to_string(),
                status: r.status().unwrap_or_default().to_string(),
                last_failure_message: r.last_failure_message().map(str::to_string),
            }))
    }

    async fn individual_assessments(
        &self,
        run_arn: &str,
    ) -> Result<Vec<IndividualResult>, StepError> {
        let mut results = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let out = self
                .sdk()
                .describe_replication_task_individual_assessments()
                .filters(filter("replication-task-assessment-run-arn", run_arn)?)
                .set_marker(marker.clone())
                .send()
                .await
                .map_err(|e| classify_sdk_error(DESCRIBE_INDIVIDUAL_ACTION, run_arn, &e))?;
            results.extend(
                out.replication_task_individual_assessments()
                    .iter()
                    .map(|a| IndividualResult {
                        name: a
                            .individual_assessment_name()
                            .unwrap_or_default()
                            .to_string(),
                        status: a.status().unwrap_or_default().to_string(),
                    }),
            );
            marker = out.marker().filter(|m| !m.is_empty()).map(str::to_string);
            if marker.is_none() {
                return Ok(results);
            }
        }
        Err(endless(DESCRIBE_INDIVIDUAL_ACTION, run_arn))
    }
}
