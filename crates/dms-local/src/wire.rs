//! Models → DMS wire shapes (member names as in the AWS SDK's deserializers; timestamps as epoch seconds).

use serde_json::{json, Map, Value};

use crate::model::{
    AssessmentRun, Connection, Endpoint, Instance, TableProgress, Task, Validation,
};

/// Drops `null` members: DMS omits absent members rather than sending null.
fn compact(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, compact(v)))
                .collect::<Map<_, _>>(),
        ),
        other => other,
    }
}

pub fn instance(i: &Instance) -> Value {
    compact(json!({
        "ReplicationInstanceIdentifier": i.identifier,
        "ReplicationInstanceClass": "dms.c6i.xlarge",
        "ReplicationInstanceStatus": i.status(),
        "AllocatedStorage": 50,
        "InstanceCreateTime": i.created,
        "VpcSecurityGroups": i.security_group_ids.iter()
            .map(|id| json!({"VpcSecurityGroupId": id, "Status": "active"}))
            .collect::<Vec<_>>(),
        "ReplicationSubnetGroup": {
            "ReplicationSubnetGroupIdentifier": format!("{}-subnets", i.identifier),
            "ReplicationSubnetGroupDescription": "dms-local",
            "VpcId": i.vpc_id,
            "SubnetGroupStatus": "Complete",
        },
        "MultiAZ": false,
        "EngineVersion": "3.5.4",
        "AutoMinorVersionUpgrade": true,
        "ReplicationInstanceArn": i.arn,
        "ReplicationInstancePrivateIpAddress": "127.0.0.1",
        "ReplicationInstancePrivateIpAddresses": ["127.0.0.1"],
        "PubliclyAccessible": i.publicly_accessible,
        "NetworkType": "IPV4",
    }))
}

pub fn endpoint(e: &Endpoint) -> Value {
    let postgres_settings = json!({
        "DatabaseName": e.database,
        "Port": e.port,
        "ServerName": e.host,
        "Username": e.username,
        "SecretsManagerSecretId": e.secret_id,
        "SlotName": e.slot_name,
        "PluginName": e.plugin_name,
    });
    compact(json!({
        "EndpointIdentifier": e.identifier,
        "EndpointType": e.endpoint_type.to_ascii_uppercase(),
        "EngineName": e.engine,
        "EngineDisplayName": if e.engine == "aurora-postgresql" { "Amazon Aurora PostgreSQL" } else { "PostgreSQL" },
        "Username": e.username,
        "ServerName": e.host,
        "Port": e.port,
        "DatabaseName": e.database,
        "Status": e.status(),
        "EndpointArn": e.arn,
        "SslMode": e.ssl_mode,
        "PostgreSQLSettings": compact(postgres_settings),
    }))
}

pub fn connection(c: &Connection, endpoint_id: &str, instance_id: &str) -> Value {
    compact(json!({
        "ReplicationInstanceArn": c.instance_arn,
        "EndpointArn": c.endpoint_arn,
        "Status": c.status,
        "LastFailureMessage": c.last_failure_message,
        "EndpointIdentifier": endpoint_id,
        "ReplicationInstanceIdentifier": instance_id,
    }))
}

/// What the engine models of a task's settings: the target is never prepared (DO_NOTHING); LobMaxSize is
/// the task's own. DMS answers the settings as one JSON string.
fn task_settings(t: &Task) -> String {
    json!({
        "TargetMetadata": {"SupportLobs": true, "LimitedSizeLobMode": true, "LobMaxSize": t.lob_max_size_kb},
        "FullLoadSettings": {"TargetTablePrepMode": "DO_NOTHING"},
        "Logging": {"EnableLogging": false}
    })
    .to_string()
}

pub fn task(t: &Task, with_settings: bool, now: f64) -> Value {
    let loaded = t
        .tables
        .iter()
        .filter(|x| x.state == crate::model::table_state::COMPLETED)
        .count();
    let errored = t
        .tables
        .iter()
        .filter(|x| x.state == crate::model::table_state::ERROR)
        .count();
    let loading = t
        .tables
        .iter()
        .filter(|x| {
            x.state == crate::model::table_state::FULL_LOAD
                || x.state == crate::model::table_state::RELOADING && x.full_load_start.is_some()
        })
        .count();
    let queued = t.tables.len() - loaded - errored - loading;
    // "The percent complete for the full load migration task"
    // (https://docs.aws.amazon.com/dms/latest/APIReference/API_ReplicationTaskStats.html) says not what
    // it counts: here finished tables over mapped tables, whatever their segments.
    let percent = if !t.migration_type.has_full_load() || t.tables.is_empty() {
        0
    } else if t.full_load_finished() {
        100
    } else {
        ((loaded + errored) * 100 / t.tables.len()).min(99)
    };
    let stats = compact(json!({
        "FullLoadProgressPercent": percent,
        "ElapsedTimeMillis": t.start_date.map(|s| ((now - s).max(0.0) * 1000.0) as i64).unwrap_or(0),
        "TablesLoaded": loaded,
        "TablesLoading": loading,
        "TablesQueued": queued,
        "TablesErrored": errored,
        "FreshStartDate": t.fresh_start_date,
        "StartDate": t.start_date,
        "StopDate": t.stop_date,
        "FullLoadStartDate": t.full_load_start,
        "FullLoadFinishDate": t.full_load_finish,
    }));
    compact(json!({
        "ReplicationTaskIdentifier": t.identifier,
        "SourceEndpointArn": t.source_arn,
        "TargetEndpointArn": t.target_arn,
        "ReplicationInstanceArn": t.instance_arn,
        "MigrationType": t.migration_type.as_str(),
        "TableMappings": t.table_mappings,
        "ReplicationTaskSettings": with_settings.then(|| t.settings.clone().unwrap_or_else(|| task_settings(t))),
        "Status": t.reported_status(),
        "LastFailureMessage": t.last_failure_message,
        "StopReason": t.stop_reason,
        "ReplicationTaskCreationDate": t.created,
        "ReplicationTaskStartDate": t.start_date,
        "ReplicationTaskArn": t.arn,
        "ReplicationTaskStats": stats,
    }))
}

/// One TableStatistics per mapped table, however many parallel-load segments it is copied in
/// (https://docs.aws.amazon.com/dms/latest/APIReference/API_TableStatistics.html: FullLoadRows "the number
/// of rows added during the full load operation", TableState one of DMS's table states).
pub fn table_statistics(t: &TableProgress, validation: Option<&Validation>) -> Value {
    compact(json!({
        "SchemaName": t.schema,
        "TableName": t.table,
        "Inserts": t.inserts,
        "Deletes": t.deletes,
        "Updates": t.updates,
        "Ddls": 0,
        "AppliedInserts": t.inserts,
        "AppliedDeletes": t.deletes,
        "AppliedUpdates": t.updates,
        "AppliedDdls": 0,
        "FullLoadRows": t.full_load_rows,
        "FullLoadCondtnlChkFailedRows": 0,
        "FullLoadErrorRows": 0,
        "FullLoadStartTime": t.full_load_start,
        "FullLoadEndTime": t.full_load_end,
        "FullLoadReloaded": t.reloaded,
        "LastUpdateTime": t.last_update,
        "TableState": t.state,
        "ValidationPendingRecords": 0,
        "ValidationFailedRecords": validation.map_or(0, |v| v.failed_records),
        "ValidationSuspendedRecords": 0,
        // dms-local does not validate data: DMS reports this state when validation is off, unless the
        // `validationState` fault sets what validation would report.
        "ValidationState": validation.map_or("Not enabled", |v| v.state.as_str()),
    }))
}

pub fn assessment_run(r: &AssessmentRun, is_latest: bool) -> Value {
    let count = |status: &str| r.assessments.iter().filter(|a| a.status == status).count();
    let completed = r
        .assessments
        .iter()
        .filter(|a| !matches!(a.status.as_str(), "pending" | "running"))
        .count();
    compact(json!({
        "ReplicationTaskAssessmentRunArn": r.arn,
        "ReplicationTaskArn": r.task_arn,
        "Status": r.status,
        "ReplicationTaskAssessmentRunCreationDate": r.created,
        "AssessmentProgress": {
            "IndividualAssessmentCount": r.assessments.len(),
            "IndividualAssessmentCompletedCount": completed,
        },
        "LastFailureMessage": r.last_failure_message,
        "ServiceAccessRoleArn": r.service_access_role_arn,
        "ResultLocationBucket": r.result_location_bucket,
        "ResultLocationFolder": r.result_location_folder,
        "ResultEncryptionMode": "SSE_S3",
        "AssessmentRunName": r.name,
        "IsLatestTaskAssessmentRun": is_latest,
        "ResultStatistic": {
            "Passed": count("passed"),
            "Failed": count("failed"),
            "Error": count("error"),
            "Warning": count("warning"),
            "Cancelled": count("cancelled"),
            "Skipped": count("skipped"),
        },
    }))
}

pub fn individual_assessments(r: &AssessmentRun) -> Vec<Value> {
    r.assessments
        .iter()
        .map(|a| {
            compact(json!({
                "ReplicationTaskIndividualAssessmentArn": a.arn,
                "ReplicationTaskAssessmentRunArn": r.arn,
                "IndividualAssessmentName": a.name,
                "Status": a.status,
                "ReplicationTaskIndividualAssessmentStartDate": a.start_date,
            }))
        })
        .collect()
}
