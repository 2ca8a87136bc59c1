//! The DMS operations dms-local serves. Each reads the JSON input, checks it against the registry and
//! answers DMS's output shape; anything that touches a database is left to the replication engine's
//! next tick (or, for TestConnection, a spawned attempt), so every call answers at once.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::ids::now_epoch_seconds;
use crate::model::{task_status, Connection, PendingAction};
use crate::protocol::{self, filter_matches, filters, page, required_str, DmsError};
use crate::{assessments, connection_test, subnet_groups, task_rules, wire, App};

pub async fn handle(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let operation = protocol::operation(&headers)?;
        let input = protocol::parse_body(&body)?;
        if app.registry.lock().take_throttle(&operation) {
            return Err(DmsError::throttled());
        }
        if app.registry.lock().take_access_denial(&operation) {
            return Err(subnet_groups::vpc_role_not_ready());
        }
        tracing::debug!(%operation, "request");
        dispatch(&app, &operation, &input)
    }
    .await;
    match result {
        Ok(body) => protocol::ok(body),
        Err(err) => {
            tracing::info!(code = err.code, message = %err.message, "answering an error");
            err.into_response()
        }
    }
}

fn dispatch(app: &Arc<App>, operation: &str, input: &Value) -> Result<Value, DmsError> {
    match operation {
        "DescribeReplicationInstances" => describe_instances(app, input),
        "DescribeEndpoints" => describe_endpoints(app, input),
        "TestConnection" => connection_test::start(app, input),
        "DescribeConnections" => describe_connections(app, input),
        "DescribeReplicationTasks" => describe_tasks(app, input),
        "StartReplicationTask" => start_task(app, input),
        "StopReplicationTask" => stop_task(app, input),
        "ModifyReplicationTask" => modify_task(app, input),
        "DescribeTableStatistics" => describe_table_statistics(app, input),
        "StartReplicationTaskAssessmentRun" => assessments::start_run(app, input),
        "DescribeReplicationTaskAssessmentRuns" => assessments::describe_runs(app, input),
        "DescribeReplicationTaskIndividualAssessments" => {
            assessments::describe_individual(app, input)
        }
        "DescribeApplicableIndividualAssessments" => assessments::describe_applicable(app, input),
        "CreateReplicationSubnetGroup" => subnet_groups::create(app, input),
        "DeleteReplicationSubnetGroup" => subnet_groups::delete(app, input),
        other => Err(DmsError {
            code: "InvalidAction",
            message: format!(
                "dms-local does not implement {other} (see crates/dms-local/README.md)"
            ),
        }),
    }
}

fn describe_instances(app: &App, input: &Value) -> Result<Value, DmsError> {
    let filters = filters(
        input,
        &["replication-instance-arn", "replication-instance-id"],
    )?;
    let inner = app.registry.lock();
    let matching: Vec<Value> = inner
        .instances
        .iter()
        .filter(|i| {
            filter_matches(&filters, "replication-instance-arn", &i.arn)
                && filter_matches(&filters, "replication-instance-id", &i.identifier)
        })
        .map(wire::instance)
        .collect();
    if matching.is_empty() {
        return Err(DmsError::not_found(
            "No replication instance found matching the filters",
        ));
    }
    let (items, marker) = page(&matching, input, 100, 100)?;
    Ok(json!({"ReplicationInstances": items, "Marker": marker}))
}

fn describe_endpoints(app: &App, input: &Value) -> Result<Value, DmsError> {
    let filters = filters(
        input,
        &[
            "endpoint-arn",
            "endpoint-type",
            "endpoint-id",
            "engine-name",
        ],
    )?;
    let inner = app.registry.lock();
    let matching: Vec<Value> = inner
        .endpoints
        .iter()
        .filter(|e| {
            filter_matches(&filters, "endpoint-arn", &e.arn)
                && filter_matches(&filters, "endpoint-type", &e.endpoint_type)
                && filter_matches(&filters, "endpoint-id", &e.identifier)
                && filter_matches(&filters, "engine-name", &e.engine)
        })
        .map(wire::endpoint)
        .collect();
    if matching.is_empty() {
        return Err(DmsError::not_found(
            "No endpoint found matching the filters",
        ));
    }
    let (items, marker) = page(&matching, input, 100, 100)?;
    Ok(json!({"Endpoints": items, "Marker": marker}))
}

fn describe_connections(app: &App, input: &Value) -> Result<Value, DmsError> {
    let filters = filters(input, &["endpoint-arn", "replication-instance-arn"])?;
    let inner = app.registry.lock();
    let matching: Vec<Value> = inner
        .connections
        .iter()
        .filter(|c: &&Connection| {
            filter_matches(&filters, "endpoint-arn", &c.endpoint_arn)
                && filter_matches(&filters, "replication-instance-arn", &c.instance_arn)
        })
        .map(|c| {
            let endpoint_id = inner
                .endpoint(&c.endpoint_arn)
                .map(|e| e.identifier.as_str())
                .unwrap_or_default();
            let instance_id = inner
                .instance(&c.instance_arn)
                .map(|i| i.identifier.as_str())
                .unwrap_or_default();
            wire::connection(c, endpoint_id, instance_id)
        })
        .collect();
    let (items, marker) = page(&matching, input, 100, 100)?;
    Ok(json!({"Connections": items, "Marker": marker}))
}

fn describe_tasks(app: &App, input: &Value) -> Result<Value, DmsError> {
    let filters = filters(
        input,
        &[
            "replication-task-arn",
            "replication-task-id",
            "migration-type",
            "endpoint-arn",
            "replication-instance-arn",
        ],
    )?;
    let with_settings = !input["WithoutSettings"].as_bool().unwrap_or(false);
    let now = now_epoch_seconds();
    let inner = app.registry.lock();
    let matching: Vec<Value> = inner
        .tasks
        .iter()
        .filter(|t| {
            filter_matches(&filters, "replication-task-arn", &t.arn)
                && filter_matches(&filters, "replication-task-id", &t.identifier)
                && filter_matches(&filters, "migration-type", t.migration_type.as_str())
                && filter_matches(&filters, "replication-instance-arn", &t.instance_arn)
                && (filter_matches(&filters, "endpoint-arn", &t.source_arn)
                    || filter_matches(&filters, "endpoint-arn", &t.target_arn))
        })
        .map(|t| wire::task(t, with_settings, now))
        .collect();
    if matching.is_empty() {
        return Err(DmsError::not_found(
            "No Tasks found matching provided filters",
        ));
    }
    let (items, marker) = page(&matching, input, 100, 100)?;
    Ok(json!({"ReplicationTasks": items, "Marker": marker}))
}

fn task_not_found(arn: &str) -> DmsError {
    DmsError::not_found(format!("Replication Task {arn} not found"))
}

fn start_task(app: &App, input: &Value) -> Result<Value, DmsError> {
    let arn = required_str(input, "ReplicationTaskArn")?;
    let start_type = required_str(input, "StartReplicationTaskType")?;
    let now = now_epoch_seconds();
    let mut inner = app.registry.lock();
    let slot = inner
        .task(arn)
        .and_then(|t| inner.endpoint(&t.source_arn))
        .and_then(|e| e.slot_name.clone());
    let task = inner.task_mut(arn).ok_or_else(|| task_not_found(arn))?;
    let action = task_rules::start_action(task, start_type)?;
    // CdcStartPosition on a slot: checked by the engine before the task runs, as DMS does (reverse.rs).
    if let Some(stream) = crate::reverse::requested(task, start_type, slot, input)? {
        task.slot_stream = Some(stream);
    }
    tracing::info!(task = %task.identifier, %start_type, "start requested");
    task.status = task_status::STARTING.to_string();
    task.stop_reason = None;
    task.last_failure_message = None;
    task.pending = Some(action);
    let answer = json!({"ReplicationTask": wire::task(task, true, now)});
    drop(inner);
    app.registry.wake();
    Ok(answer)
}

fn stop_task(app: &App, input: &Value) -> Result<Value, DmsError> {
    let arn = required_str(input, "ReplicationTaskArn")?;
    let now = now_epoch_seconds();
    let mut inner = app.registry.lock();
    let task = inner.task_mut(arn).ok_or_else(|| task_not_found(arn))?;
    task_rules::check_stop(task)?;
    tracing::info!(task = %task.identifier, "stop requested");
    task.status = task_status::STOPPING.to_string();
    task.pending = Some(PendingAction::Stop);
    let answer = json!({"ReplicationTask": wire::task(task, true, now)});
    drop(inner);
    app.registry.wake();
    Ok(answer)
}

/// ModifyReplicationTask: the task's settings (and table mappings) replaced while it is stopped; the task
/// reports `modifying` until the engine's next tick. What DMS refuses is refused: a task that is not
/// stopped, failed or ready (task_rules::check_modify), a different migration type ("You can't change the
/// migration type of a task": https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.Modifying.html),
/// settings or mappings that are not JSON. CDC start and stop positions are not modelled, so they are
/// refused rather than ignored.
fn modify_task(app: &App, input: &Value) -> Result<Value, DmsError> {
    let arn = required_str(input, "ReplicationTaskArn")?;
    for unmodelled in ["CdcStartPosition", "CdcStartTime", "CdcStopPosition"] {
        if !input[unmodelled].is_null() {
            return Err(DmsError::invalid_parameter(format!(
                "dms-local does not model {unmodelled} (see crates/dms-local/README.md)"
            )));
        }
    }
    let settings: Option<Value> = match input["ReplicationTaskSettings"].as_str() {
        Some(text) => {
            let value: Value = serde_json::from_str(text).map_err(|e| {
                DmsError::invalid_parameter(format!(
                    "ReplicationTaskSettings is not valid JSON: {e}"
                ))
            })?;
            if !value.is_object() {
                return Err(DmsError::invalid_parameter(
                    "ReplicationTaskSettings must be a JSON object",
                ));
            }
            Some(value)
        }
        None => None,
    };
    let mappings = match input["TableMappings"].as_str() {
        Some(text) => {
            crate::table_mappings::parse(text).map_err(DmsError::invalid_parameter)?;
            Some(text.to_string())
        }
        None => None,
    };
    let now = now_epoch_seconds();
    let mut inner = app.registry.lock();
    let task = inner.task_mut(arn).ok_or_else(|| task_not_found(arn))?;
    task_rules::check_modify(task)?;
    if let Some(kind) = input["MigrationType"].as_str() {
        if kind != task.migration_type.as_str() {
            return Err(DmsError::invalid_parameter(format!(
                "You can't change the migration type of a task ({} to {kind})",
                task.migration_type.as_str()
            )));
        }
    }
    if let Some(settings) = settings {
        // BatchApplyEnabled defaults to false when the new settings leave it out
        // (https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TaskSettings.TargetMetadata.html).
        task.batch_apply = settings
            .pointer("/TargetMetadata/BatchApplyEnabled")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        task.lob_max_size_kb = settings
            .pointer("/TargetMetadata/LobMaxSize")
            .and_then(Value::as_u64)
            .map_or(crate::model::DEFAULT_LOB_MAX_SIZE_KB, |kb| {
                kb.min(u64::from(u32::MAX)) as u32
            });
        task.settings = Some(settings.to_string());
    }
    if let Some(mappings) = mappings {
        task.table_mappings = mappings;
    }
    tracing::info!(task = %task.identifier, batch_apply = task.batch_apply, "task modified");
    let previous = task.status.clone();
    task.status = task_status::MODIFYING.to_string();
    task.pending = Some(PendingAction::Modified(previous));
    Ok(json!({"ReplicationTask": wire::task(task, true, now)}))
}

fn describe_table_statistics(app: &App, input: &Value) -> Result<Value, DmsError> {
    let arn = required_str(input, "ReplicationTaskArn")?;
    let filters = filters(input, &["schema-name", "table-name", "table-state"])?;
    let inner = app.registry.lock();
    let task = inner.task(arn).ok_or_else(|| task_not_found(arn))?;
    let matching: Vec<Value> = task
        .tables
        .iter()
        .filter(|t| {
            filter_matches(&filters, "schema-name", &t.schema)
                && filter_matches(&filters, "table-name", &t.table)
                && filter_matches(&filters, "table-state", t.state)
        })
        .map(|t| {
            let key = (t.schema.clone(), t.table.clone());
            wire::table_statistics(t, task.validation.get(&key))
        })
        .collect();
    // DescribeTableStatistics allows MaxRecords up to 500 (default 100).
    let (items, marker) = page(&matching, input, 100, 500)?;
    Ok(json!({"ReplicationTaskArn": arn, "TableStatistics": items, "Marker": marker}))
}
