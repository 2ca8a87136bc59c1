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
use crate::model::{task_status, Connection, MigrationType, PendingAction};
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
    let task = inner.task_mut(arn).ok_or_else(|| task_not_found(arn))?;
    let action = task_rules::start_action(task, start_type)?;
    tracing::info!(task = %task.identifier, %start_type, "start requested");
    task.status = task_status::STARTING.to_string();
    task.stop_reason = None;
    task.last_failure_message = None;
    task.pending = Some(action);
    Ok(json!({"ReplicationTask": wire::task(task, true, now)}))
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
    Ok(json!({"ReplicationTask": wire::task(task, true, now)}))
}

/// A string member that must hold JSON (TableMappings, ReplicationTaskSettings), parsed; None when absent.
fn json_member(input: &Value, member: &str) -> Result<Option<Value>, DmsError> {
    match input.get(member) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => serde_json::from_str(text)
            .map(Some)
            .map_err(|e| DmsError::invalid_parameter(format!("{member} is not valid JSON: {e}"))),
        Some(_) => Err(DmsError::invalid_parameter(format!(
            "{member} must be a string"
        ))),
    }
}

/// `over` laid onto `base` key by key: the settings a partial ReplicationTaskSettings leaves out keep
/// their values.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

/// ModifyReplicationTask: table mappings, settings and migration type of a task that is not running
/// (`task_rules::check_modify`), as https://docs.aws.amazon.com/dms/latest/APIReference/API_ModifyReplicationTask.html
/// describes. A mapping that selects nothing is refused as at creation.
fn modify_task(app: &App, input: &Value) -> Result<Value, DmsError> {
    let arn = required_str(input, "ReplicationTaskArn")?;
    let mappings = match input.get("TableMappings").and_then(Value::as_str) {
        Some(text) => {
            crate::table_mappings::parse(text)
                .map_err(|e| DmsError::invalid_parameter(format!("Invalid TableMappings: {e}")))?;
            Some(text.to_string())
        }
        None => None,
    };
    let settings = json_member(input, "ReplicationTaskSettings")?;
    let migration_type = match input.get("MigrationType").and_then(Value::as_str) {
        Some(m) => Some(MigrationType::parse(m).ok_or_else(|| {
            DmsError::invalid_parameter(format!(
                "MigrationType {m:?} is not full-load, cdc or full-load-and-cdc"
            ))
        })?),
        None => None,
    };
    let now = now_epoch_seconds();
    let mut inner = app.registry.lock();
    let task = inner.task_mut(arn).ok_or_else(|| task_not_found(arn))?;
    task_rules::check_modify(task)?;
    if let Some(text) = mappings {
        task.table_mappings = text;
    }
    if let Some(over) = settings {
        let mut merged = task
            .settings
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_else(|| serde_json::json!({}));
        merge(&mut merged, over);
        if let Some(kb) = merged
            .pointer("/TargetMetadata/LobMaxSize")
            .and_then(Value::as_u64)
        {
            task.lob_max_size_kb = kb.min(u32::MAX as u64) as u32;
        }
        task.batch_apply = merged
            .pointer("/TargetMetadata/BatchApplyEnabled")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        task.settings = Some(merged.to_string());
    }
    if let Some(kind) = migration_type {
        task.migration_type = kind;
    }
    tracing::info!(task = %task.identifier, "task modified");
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
        .map(wire::table_statistics)
        .collect();
    // DescribeTableStatistics allows MaxRecords up to 500 (default 100).
    let (items, marker) = page(&matching, input, 100, 500)?;
    Ok(json!({"ReplicationTaskArn": arn, "TableStatistics": items, "Marker": marker}))
}
