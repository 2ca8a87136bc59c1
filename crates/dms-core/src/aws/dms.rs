//! The DMS capability: the calls the Lambdas and the CLI make, returning dms-core's own types
//! (`crate::rules::dms_model`, re-exported here) so business rules never touch SDK types. `DmsClient` is the real
//! adapter (it also reaches `dms-local` through `AWS_ENDPOINT_URL_DATABASE_MIGRATION_SERVICE`); tests pass a
//! fake implementing `Dms`.

use std::future::Future;

use aws_sdk_databasemigration::types::{Filter, StartReplicationTaskTypeValue};
use aws_sdk_databasemigration::Client;

use crate::errors::{classify_sdk_error, ErrorName, StepError};
pub use crate::rules::dms_model::{
    ConnectionInfo, EndpointInfo, InstanceInfo, Reported, StartType, TableStat, TaskInfo, TaskStats,
};

pub trait Dms {
    fn describe_task(
        &self,
        task_arn: &str,
    ) -> impl Future<Output = Result<TaskInfo, StepError>> + Send;
    fn table_statistics(
        &self,
        task_arn: &str,
    ) -> impl Future<Output = Result<Vec<TableStat>, StepError>> + Send;
    fn start_task(
        &self,
        task_arn: &str,
        start_type: StartType,
    ) -> impl Future<Output = Result<(), StepError>> + Send;
    fn describe_instance(
        &self,
        instance_arn: &str,
    ) -> impl Future<Output = Result<InstanceInfo, StepError>> + Send;
    fn describe_endpoint(
        &self,
        endpoint_arn: &str,
    ) -> impl Future<Output = Result<EndpointInfo, StepError>> + Send;
    /// Starts a connection test. DMS answers `InvalidResourceStateFault` (here `Dms.InvalidState`) when it
    /// starts none: the instance or the endpoint is in a state that forbids a test, or a test of the same
    /// pair is still running. The fault's message does not reliably say which, so the caller reads the
    /// resources' status to tell (connectivity-check).
    fn test_connection(
        &self,
        instance_arn: &str,
        endpoint_arn: &str,
    ) -> impl Future<Output = Result<(), StepError>> + Send;
    /// The last connection test of this endpoint from this instance, if any.
    fn describe_connection(
        &self,
        instance_arn: &str,
        endpoint_arn: &str,
    ) -> impl Future<Output = Result<Option<ConnectionInfo>, StepError>> + Send;
    /// The task's `TableMappings` JSON. `describe_task` asks DMS `WithoutSettings`, which may leave the
    /// mappings out, so `DmsClient` asks again with settings; a fake inherits this default, which reads
    /// `describe_task`.
    fn task_table_mappings(
        &self,
        task_arn: &str,
    ) -> impl Future<Output = Result<Option<String>, StepError>> + Send
    where
        Self: Sync,
    {
        async move { Ok(self.describe_task(task_arn).await?.table_mappings) }
    }
}

/// The task's two JSON documents as DMS holds them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskDocuments {
    pub table_mappings: Option<String>,
    pub settings: Option<String>,
}

/// Changing a task: only start-task needs it (to apply a plan), so it is its own capability.
pub trait DmsModify {
    fn task_documents(
        &self,
        task_arn: &str,
    ) -> impl Future<Output = Result<TaskDocuments, StepError>> + Send;
    /// ModifyReplicationTask with new table mappings and the whole settings document (the reference does
    /// not say whether DMS keeps settings a document leaves out, so callers send them all). DMS refuses it unless the task is stopped, failed or never ran
    /// (https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.Modifying.html), answering
    /// `InvalidResourceStateFault` (`Dms.InvalidState`); the task then shows `modifying` for a while.
    /// `table_mappings` None leaves the task's mappings as they are.
    fn modify_task(
        &self,
        task_arn: &str,
        table_mappings: Option<&str>,
        settings: &str,
    ) -> impl Future<Output = Result<(), StepError>> + Send;
}

#[derive(Clone)]
pub struct DmsClient {
    client: Client,
}

impl DmsClient {
    pub fn new(client: Client) -> Self {
        DmsClient { client }
    }

    pub fn sdk(&self) -> &Client {
        &self.client
    }
}

fn filter(name: &str, value: &str) -> Result<Filter, StepError> {
    Filter::builder()
        .name(name)
        .values(value)
        .build()
        .map_err(|e| StepError::new(ErrorName::AwsRejected, format!("DMS filter {name}: {e}")))
}

fn epoch(date: Option<&aws_smithy_types::DateTime>) -> Option<f64> {
    date.map(|d| d.as_secs_f64())
}

fn not_found(what: &str, arn: &str) -> StepError {
    StepError::new(
        ErrorName::AwsNotFound,
        format!("{what} {arn} does not exist in this account and region; use the ARNs from the same stack's outputs"),
    )
}

impl DmsClient {
    /// One task by ARN. `with_settings` asks DMS for the settings and table mappings too, which a plain
    /// status read does not need.
    async fn describe_one_task(
        &self,
        task_arn: &str,
        with_settings: bool,
    ) -> Result<aws_sdk_databasemigration::types::ReplicationTask, StepError> {
        let out = self
            .client
            .describe_replication_tasks()
            .filters(filter("replication-task-arn", task_arn)?)
            .without_settings(!with_settings)
            .send()
            .await
            .map_err(|e| classify_sdk_error("dms:DescribeReplicationTasks", task_arn, &e))?;
        out.replication_tasks()
            .iter()
            .find(|t| t.replication_task_arn() == Some(task_arn))
            .cloned()
            .ok_or_else(|| not_found("replication task", task_arn))
    }

    /// StopReplicationTask. DMS accepts it only for a running (or starting) task and answers
    /// `InvalidResourceStateFault` otherwise
    /// (<https://docs.aws.amazon.com/dms/latest/APIReference/API_StopReplicationTask.html>).
    pub async fn stop_task(&self, task_arn: &str) -> Result<(), StepError> {
        self.client
            .stop_replication_task()
            .replication_task_arn(task_arn)
            .send()
            .await
            .map_err(|e| classify_sdk_error("dms:StopReplicationTask", task_arn, &e))?;
        Ok(())
    }

    /// StartReplicationTask `start-replication` of a CDC task from a native start point: with the source
    /// endpoint's `SlotName`, DMS reads that slot from `position` (an LSN) and raises an error when the slot
    /// does not exist or the position is not valid
    /// (<https://docs.aws.amazon.com/dms/latest/APIReference/API_StartReplicationTask.html>, `CdcStartPosition`;
    /// <https://docs.aws.amazon.com/dms/latest/APIReference/API_PostgreSQLSettings.html>, `SlotName`).
    pub async fn start_cdc_from(&self, task_arn: &str, position: &str) -> Result<(), StepError> {
        self.client
            .start_replication_task()
            .replication_task_arn(task_arn)
            .start_replication_task_type(
                aws_sdk_databasemigration::types::StartReplicationTaskTypeValue::StartReplication,
            )
            .cdc_start_position(position)
            .send()
            .await
            .map_err(|e| classify_sdk_error("dms:StartReplicationTask", task_arn, &e))?;
        Ok(())
    }
}

impl DmsModify for DmsClient {
    async fn task_documents(&self, task_arn: &str) -> Result<TaskDocuments, StepError> {
        let task = self.describe_one_task(task_arn, true).await?;
        Ok(TaskDocuments {
            table_mappings: task.table_mappings().map(str::to_string),
            settings: task.replication_task_settings().map(str::to_string),
        })
    }

    async fn modify_task(
        &self,
        task_arn: &str,
        table_mappings: Option<&str>,
        settings: &str,
    ) -> Result<(), StepError> {
        self.client
            .modify_replication_task()
            .replication_task_arn(task_arn)
            .set_table_mappings(table_mappings.map(str::to_string))
            .replication_task_settings(settings)
            .send()
            .await
            .map_err(|e| classify_sdk_error("dms:ModifyReplicationTask", task_arn, &e))?;
        Ok(())
    }
}

impl Dms for DmsClient {
    async fn describe_task(&self, task_arn: &str) -> Result<TaskInfo, StepError> {
        let task = self.describe_one_task(task_arn, false).await?;
        Ok(TaskInfo {
            arn: task_arn.to_string(),
            identifier: task
                .replication_task_identifier()
                .unwrap_or_default()
                .to_string(),
            status: Reported::read(task.status().unwrap_or_default()),
            stop_reason: task.stop_reason().map(str::to_string),
            last_failure_message: task.last_failure_message().map(str::to_string),
            migration_type: Reported::read(
                task.migration_type()
                    .map(|m| m.as_str())
                    .unwrap_or_default(),
            ),
            table_mappings: task.table_mappings().map(str::to_string),
            source_endpoint_arn: task.source_endpoint_arn().unwrap_or_default().to_string(),
            target_endpoint_arn: task.target_endpoint_arn().unwrap_or_default().to_string(),
            instance_arn: task
                .replication_instance_arn()
                .unwrap_or_default()
                .to_string(),
            started_at_epoch_seconds: epoch(task.replication_task_start_date()),
            stats: task.replication_task_stats().map(|s| TaskStats {
                full_load_progress_percent: s.full_load_progress_percent(),
                tables_loaded: s.tables_loaded(),
                tables_loading: s.tables_loading(),
                tables_queued: s.tables_queued(),
                tables_errored: s.tables_errored(),
                full_load_start_epoch_seconds: epoch(s.full_load_start_date()),
                full_load_finish_epoch_seconds: epoch(s.full_load_finish_date()),
            }),
        })
    }

    async fn table_statistics(&self, task_arn: &str) -> Result<Vec<TableStat>, StepError> {
        let mut stats = Vec::new();
        let mut marker: Option<String> = None;
        // Bounded: 500 per page (the DMS maximum) × 2,000 pages covers a million tables.
        for _ in 0..2000 {
            let out = self
                .client
                .describe_table_statistics()
                .replication_task_arn(task_arn)
                .max_records(500)
                .set_marker(marker.clone())
                .send()
                .await
                .map_err(|e| classify_sdk_error("dms:DescribeTableStatistics", task_arn, &e))?;
            stats.extend(out.table_statistics().iter().map(|t| TableStat {
                schema: t.schema_name().unwrap_or_default().to_string(),
                table: t.table_name().unwrap_or_default().to_string(),
                state: t.table_state().unwrap_or_default().to_string(),
                full_load_rows: t.full_load_rows(),
                inserts: t.inserts(),
                updates: t.updates(),
                deletes: t.deletes(),
                validation_state: t.validation_state().map(str::to_string),
            }));
            marker = out.marker().filter(|m| !m.is_empty()).map(str::to_string);
            if marker.is_none() {
                return Ok(stats);
            }
        }
        Err(StepError::new(
            ErrorName::AwsRejected,
            format!("dms:DescribeTableStatistics on {task_arn} never ended its pagination"),
        ))
    }

    async fn start_task(&self, task_arn: &str, start_type: StartType) -> Result<(), StepError> {
        let kind = match start_type {
            StartType::StartReplication => StartReplicationTaskTypeValue::StartReplication,
            StartType::ResumeProcessing => StartReplicationTaskTypeValue::ResumeProcessing,
            StartType::ReloadTarget => StartReplicationTaskTypeValue::ReloadTarget,
        };
        self.client
            .start_replication_task()
            .replication_task_arn(task_arn)
            .start_replication_task_type(kind)
            .send()
            .await
            .map_err(|e| classify_sdk_error("dms:StartReplicationTask", task_arn, &e))?;
        Ok(())
    }

    async fn describe_instance(&self, instance_arn: &str) -> Result<InstanceInfo, StepError> {
        let out = self
            .client
            .describe_replication_instances()
            .filters(filter("replication-instance-arn", instance_arn)?)
            .send()
            .await
            .map_err(|e| {
                classify_sdk_error("dms:DescribeReplicationInstances", instance_arn, &e)
            })?;
        let instance = out
            .replication_instances()
            .iter()
            .find(|i| i.replication_instance_arn() == Some(instance_arn))
            .ok_or_else(|| not_found("replication instance", instance_arn))?;
        Ok(InstanceInfo {
            arn: instance_arn.to_string(),
            identifier: instance
                .replication_instance_identifier()
                .unwrap_or_default()
                .to_string(),
            status: instance
                .replication_instance_status()
                .unwrap_or_default()
                .to_string(),
            vpc_id: instance
                .replication_subnet_group()
                .and_then(|g| g.vpc_id())
                .map(str::to_string),
            security_group_ids: instance
                .vpc_security_groups()
                .iter()
                .filter_map(|g| g.vpc_security_group_id().map(str::to_string))
                .collect(),
            publicly_accessible: instance.publicly_accessible(),
        })
    }

    async fn describe_endpoint(&self, endpoint_arn: &str) -> Result<EndpointInfo, StepError> {
        let out = self
            .client
            .describe_endpoints()
            .filters(filter("endpoint-arn", endpoint_arn)?)
            .send()
            .await
            .map_err(|e| classify_sdk_error("dms:DescribeEndpoints", endpoint_arn, &e))?;
        let endpoint = out
            .endpoints()
            .iter()
            .find(|e| e.endpoint_arn() == Some(endpoint_arn))
            .ok_or_else(|| not_found("endpoint", endpoint_arn))?;
        Ok(EndpointInfo {
            arn: endpoint_arn.to_string(),
            identifier: endpoint
                .endpoint_identifier()
                .unwrap_or_default()
                .to_string(),
            endpoint_type: endpoint
                .endpoint_type()
                .map(|t| t.as_str().to_ascii_lowercase())
                .unwrap_or_default(),
            engine: endpoint.engine_name().unwrap_or_default().to_string(),
            server: endpoint.server_name().map(str::to_string),
            port: endpoint.port(),
            database: endpoint.database_name().map(str::to_string),
            username: endpoint.username().map(str::to_string),
            ssl_mode: endpoint.ssl_mode().map(|m| m.as_str().to_string()),
            secret_id: endpoint
                .postgre_sql_settings()
                .and_then(|s| s.secrets_manager_secret_id())
                .map(str::to_string),
            status: endpoint.status().unwrap_or_default().to_string(),
        })
    }

    async fn test_connection(
        &self,
        instance_arn: &str,
        endpoint_arn: &str,
    ) -> Result<(), StepError> {
        self.client
            .test_connection()
            .replication_instance_arn(instance_arn)
            .endpoint_arn(endpoint_arn)
            .send()
            .await
            .map_err(|e| classify_sdk_error("dms:TestConnection", endpoint_arn, &e))?;
        Ok(())
    }

    async fn task_table_mappings(&self, task_arn: &str) -> Result<Option<String>, StepError> {
        let task = self.describe_one_task(task_arn, true).await?;
        Ok(task.table_mappings().map(str::to_string))
    }

    async fn describe_connection(
        &self,
        instance_arn: &str,
        endpoint_arn: &str,
    ) -> Result<Option<ConnectionInfo>, StepError> {
        let out = self
            .client
            .describe_connections()
            .filters(filter("endpoint-arn", endpoint_arn)?)
            .filters(filter("replication-instance-arn", instance_arn)?)
            .send()
            .await
            .map_err(|e| classify_sdk_error("dms:DescribeConnections", endpoint_arn, &e))?;
        Ok(out
            .connections()
            .iter()
            .find(|c| {
                c.endpoint_arn() == Some(endpoint_arn)
                    && c.replication_instance_arn() == Some(instance_arn)
            })
            .map(|c| ConnectionInfo {
                status: c.status().unwrap_or_default().to_string(),
                last_failure_message: c.last_failure_message().map(str::to_string),
            }))
    }
}
