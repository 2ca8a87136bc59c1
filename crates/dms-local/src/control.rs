//! The control API (README.md): registers resources and injects faults. Not part of DMS.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::ids::{arn, now_epoch_seconds, resource_id};
use crate::model::{
    stop_reason, task_status, Endpoint, Instance, MigrationType, Password, PendingAction, Task,
    Validation, VALIDATION_STATES,
};
use crate::{table_mappings, App};

pub struct ControlError(String);

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, Json(json!({"error": self.0}))).into_response()
    }
}

type ControlResult = Result<Json<Value>, ControlError>;

pub async fn health() -> Json<Value> {
    Json(json!({"ok": true}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceSpec {
    identifier: String,
    #[serde(default)]
    security_group_ids: Vec<String>,
    #[serde(default)]
    vpc_id: String,
    #[serde(default)]
    publicly_accessible: bool,
}

pub async fn register_instance(
    State(app): State<Arc<App>>,
    Json(spec): Json<InstanceSpec>,
) -> ControlResult {
    if spec.identifier.is_empty() {
        return Err(ControlError("identifier is required".into()));
    }
    let arn = arn(&app.region, "rep", &resource_id());
    app.registry.lock().instances.push(Instance {
        arn: arn.clone(),
        identifier: spec.identifier.to_ascii_lowercase(),
        security_group_ids: spec.security_group_ids,
        vpc_id: spec.vpc_id,
        publicly_accessible: spec.publicly_accessible,
        created: now_epoch_seconds(),
        held_status: None,
    });
    Ok(Json(json!({"arn": arn})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointSpec {
    identifier: String,
    endpoint_type: String,
    engine: String,
    host: String,
    port: u16,
    database: String,
    username: String,
    password: String,
    #[serde(default = "default_ssl_mode")]
    ssl_mode: String,
    secret_id: Option<String>,
    /// `PostgreSQLSettings.SlotName` (source endpoints only).
    slot_name: Option<String>,
    /// `PostgreSQLSettings.PluginName`: `no-preference`, `test-decoding` or `pglogical`
    /// (https://docs.aws.amazon.com/dms/latest/APIReference/API_PostgreSQLSettings.html).
    plugin_name: Option<String>,
}

fn default_ssl_mode() -> String {
    "none".to_string()
}

pub async fn register_endpoint(
    State(app): State<Arc<App>>,
    Json(spec): Json<EndpointSpec>,
) -> ControlResult {
    if !matches!(spec.endpoint_type.as_str(), "source" | "target") {
        return Err(ControlError("endpointType must be source or target".into()));
    }
    if !matches!(spec.engine.as_str(), "aurora-postgresql" | "postgres") {
        return Err(ControlError(
            "engine must be aurora-postgresql or postgres".into(),
        ));
    }
    if !matches!(
        spec.ssl_mode.as_str(),
        "none" | "require" | "verify-ca" | "verify-full"
    ) {
        return Err(ControlError(
            "sslMode must be none, require, verify-ca or verify-full".into(),
        ));
    }
    if spec.slot_name.is_some() && spec.endpoint_type != "source" {
        return Err(ControlError("slotName is a source endpoint setting".into()));
    }
    if let Some(plugin) = &spec.plugin_name {
        if !matches!(
            plugin.as_str(),
            "no-preference" | "test-decoding" | "pglogical"
        ) {
            return Err(ControlError(
                "pluginName must be no-preference, test-decoding or pglogical".into(),
            ));
        }
    }
    let arn = arn(&app.region, "endpoint", &resource_id());
    app.registry.lock().endpoints.push(Endpoint {
        arn: arn.clone(),
        identifier: spec.identifier,
        endpoint_type: spec.endpoint_type,
        engine: spec.engine,
        host: spec.host,
        port: spec.port,
        database: spec.database,
        username: spec.username,
        password: Password(spec.password),
        ssl_mode: spec.ssl_mode,
        secret_id: spec.secret_id,
        slot_name: spec.slot_name,
        plugin_name: spec.plugin_name,
        held_status: None,
    });
    Ok(Json(json!({"arn": arn})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskSpec {
    identifier: String,
    instance_arn: String,
    source_endpoint_arn: String,
    target_endpoint_arn: String,
    migration_type: String,
    table_mappings: Value,
    /// The settings' `TargetMetadata.LobMaxSize` (KB); 32 when absent.
    lob_max_size_kb: Option<u32>,
    /// ReplicationTaskSettings as a JSON object or text; `TargetMetadata.BatchApplyEnabled` is modelled.
    #[serde(default)]
    settings: Option<Value>,
}

pub async fn register_task(
    State(app): State<Arc<App>>,
    Json(spec): Json<TaskSpec>,
) -> ControlResult {
    let migration_type = MigrationType::parse(&spec.migration_type).ok_or_else(|| {
        ControlError("migrationType must be full-load, cdc or full-load-and-cdc".into())
    })?;
    let mappings_text = table_mappings::mapping_text(&spec.table_mappings);
    table_mappings::parse(&mappings_text).map_err(ControlError)?;
    let settings: Option<Value> = match &spec.settings {
        Some(Value::String(text)) => Some(
            serde_json::from_str(text)
                .map_err(|e| ControlError(format!("settings is not JSON: {e}")))?,
        ),
        other => other.clone(),
    };
    // https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TaskSettings.TargetMetadata.html:
    // BatchApplyEnabled defaults to false.
    let batch_apply = settings
        .as_ref()
        .and_then(|s| s.pointer("/TargetMetadata/BatchApplyEnabled"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut inner = app.registry.lock();
    if inner.instance(&spec.instance_arn).is_none() {
        return Err(ControlError(format!(
            "instance {} is not registered",
            spec.instance_arn
        )));
    }
    for (role, endpoint_arn) in [
        ("source", &spec.source_endpoint_arn),
        ("target", &spec.target_endpoint_arn),
    ] {
        match inner.endpoint(endpoint_arn) {
            Some(e) if e.endpoint_type == role => {}
            Some(_) => {
                return Err(ControlError(format!(
                    "endpoint {endpoint_arn} is not a {role} endpoint"
                )))
            }
            None => {
                return Err(ControlError(format!(
                    "endpoint {endpoint_arn} is not registered"
                )))
            }
        }
    }
    let arn = arn(&app.region, "task", &resource_id());
    inner.tasks.push(Task {
        instance_arn: spec.instance_arn,
        source_arn: spec.source_endpoint_arn,
        target_arn: spec.target_endpoint_arn,
        table_mappings: mappings_text,
        created: now_epoch_seconds(),
        lob_max_size_kb: spec
            .lob_max_size_kb
            .unwrap_or(crate::model::DEFAULT_LOB_MAX_SIZE_KB),
        settings: settings.map(|s| s.to_string()),
        batch_apply,
        ..Task::registered(arn.clone(), spec.identifier, migration_type)
    });
    Ok(Json(json!({"arn": arn})))
}

/// One fault per call; the member present says which (README.md).
pub async fn fault(State(app): State<Arc<App>>, Json(body): Json<Value>) -> ControlResult {
    let mut inner = app.registry.lock();
    if let Some(operation) = body["operation"].as_str() {
        if let Some(count) = body["throttle"].as_u64() {
            inner
                .throttles
                .insert(operation.to_string(), count.min(u32::MAX as u64) as u32);
            return Ok(Json(json!({"ok": true})));
        }
        if let Some(count) = body["accessDenied"].as_u64() {
            inner
                .access_denials
                .insert(operation.to_string(), count.min(u32::MAX as u64) as u32);
            return Ok(Json(json!({"ok": true})));
        }
        if body["assessmentError"].as_bool() == Some(true)
            && operation == "StartReplicationTaskAssessmentRun"
        {
            inner.next_assessment_run_errors = true;
            return Ok(Json(json!({"ok": true})));
        }
        return Err(ControlError(
            "an operation fault needs `throttle` or `accessDenied` (a count), or `assessmentError: true` on StartReplicationTaskAssessmentRun".into(),
        ));
    }
    // A replication instance or endpoint held in a status (e.g. `modifying`): Describe reports it and
    // TestConnection refuses, until `holdStatus: null` releases it.
    if let Some(instance_arn) = body["instanceArn"].as_str() {
        let status = held_status(&body)?;
        let instance = inner
            .instances
            .iter_mut()
            .find(|i| i.arn == instance_arn)
            .ok_or_else(|| ControlError(format!("instance {instance_arn} is not registered")))?;
        instance.held_status = status;
        return Ok(Json(json!({"ok": true})));
    }
    if let Some(endpoint_arn) = body["endpointArn"].as_str() {
        let status = held_status(&body)?;
        let endpoint = inner
            .endpoints
            .iter_mut()
            .find(|e| e.arn == endpoint_arn)
            .ok_or_else(|| ControlError(format!("endpoint {endpoint_arn} is not registered")))?;
        endpoint.held_status = status;
        return Ok(Json(json!({"ok": true})));
    }
    let task_arn = body["taskArn"].as_str().ok_or_else(|| {
        ControlError("a fault needs `operation`, `taskArn`, `instanceArn` or `endpointArn`".into())
    })?;
    let task = inner
        .task_mut(task_arn)
        .ok_or_else(|| ControlError(format!("task {task_arn} is not registered")))?;
    let object = body.as_object().cloned().unwrap_or_default();
    if let Some(message) = body["failTask"].as_str() {
        task.status = task_status::FAILED.to_string();
        task.stop_reason = Some(stop_reason::FATAL_ERROR.to_string());
        task.last_failure_message = Some(message.to_string());
        task.stop_date = Some(now_epoch_seconds());
        task.pending = Some(PendingAction::Fail);
    } else if let Some(message) = body["recoverableError"].as_str() {
        // DMS stops a task on an environmental error with RECOVERABLE_ERROR and restarts it itself after
        // the waits its error-handling settings give; `restartAfterSeconds` absent = DMS gave up.
        if !matches!(
            task.status.as_str(),
            task_status::RUNNING | task_status::STARTING
        ) {
            return Err(ControlError(format!(
                "a recoverable error stops a running task; this one is {}",
                task.status
            )));
        }
        task.status = task_status::STOPPED.to_string();
        task.stop_reason = Some(stop_reason::RECOVERABLE_ERROR.to_string());
        task.last_failure_message = Some(message.to_string());
        task.stop_date = Some(now_epoch_seconds());
        task.pending = Some(PendingAction::RecoverableStop);
        task.restart_at = body["restartAfterSeconds"].as_f64().map(|s| {
            std::time::Instant::now() + std::time::Duration::from_secs_f64(s.clamp(0.0, 86_400.0))
        });
    } else if object.contains_key("holdStatus") {
        task.held_status = body["holdStatus"].as_str().map(str::to_string);
    } else if let Some(pause) = body["pauseTableSync"].as_bool() {
        task.pause_table_sync = pause;
    } else if let Some(v) = body.get("validationState") {
        let field = |name: &str| {
            v[name]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| ControlError(format!("validationState needs `{name}`")))
        };
        let (schema, table, state) = (field("schema")?, field("table")?, field("state")?);
        if !VALIDATION_STATES.contains(&state.as_str()) {
            return Err(ControlError(format!(
                "validationState `{state}` is not one DMS reports: {}",
                VALIDATION_STATES.join(", ")
            )));
        }
        let failed_records = v["failedRecords"].as_i64().unwrap_or(0);
        task.validation.insert(
            (schema, table),
            Validation {
                state,
                failed_records,
            },
        );
    } else {
        return Err(ControlError(
            "a task fault needs failTask, recoverableError, holdStatus, pauseTableSync or validationState".into(),
        ));
    }
    Ok(Json(json!({"ok": true})))
}

/// `holdStatus`: a status string to hold, or `null` to release.
fn held_status(body: &Value) -> Result<Option<String>, ControlError> {
    match body.get("holdStatus") {
        Some(Value::String(status)) if !status.is_empty() => Ok(Some(status.clone())),
        Some(Value::Null) => Ok(None),
        _ => Err(ControlError(
            "an instance or endpoint fault needs `holdStatus` (a status, or null to release)"
                .into(),
        )),
    }
}
