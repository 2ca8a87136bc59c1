//! Premigration assessment runs with a handful of DMS's PostgreSQL individual assessments, each probing
//! the source for real. Names are DMS's API keys:
//! https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.AssessmentReport.PG.html
//! A run goes provisioning → running (assessments one by one: pending → running → result) → passed,
//! warning or failed (the worst result), or error-executing when the source cannot be probed or the
//! `assessmentError` fault is armed. dms-local writes no S3 report.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::ids::{arn, now_epoch_seconds, resource_id};
use crate::model::{task_status, AssessmentRun, IndividualAssessment, MigrationType};
use crate::protocol::{filter_matches, filters, page, required_str, DmsError};
use crate::{table_mappings, wire, App};

/// Pause between steps so a poller can see provisioning, running and per-assessment progress.
const STEP: Duration = Duration::from_millis(700);

#[derive(Debug, Clone, Copy)]
struct Definition {
    name: &'static str,
    /// Only meaningful when the task captures changes (CDC).
    cdc_only: bool,
    sql: &'static str,
    verdict: Verdict,
}

#[derive(Debug, Clone, Copy)]
enum Verdict {
    /// The query returns one boolean: true passes, false fails.
    PassWhen,
    /// The query returns offending (schema, table) rows among all tables; mapped ones → `warning`.
    WarnOnMappedTables,
    /// Same, but a mapped one → `failed`.
    FailOnMappedTables,
    /// The query returns one count: above zero → `warning`.
    WarnWhenPositive,
}

const DEFINITIONS: &[Definition] = &[
    Definition {
        name: "postgres-check-dbversion",
        cdc_only: false,
        sql: "SELECT current_setting('server_version_num')::int >= 100000",
        verdict: Verdict::PassWhen,
    },
    Definition {
        name: "postgres-check-wallevel",
        cdc_only: true,
        sql: "SELECT current_setting('wal_level') = 'logical'",
        verdict: Verdict::PassWhen,
    },
    Definition {
        // DMS CDC needs wal_sender_timeout of at least 10000 ms (0 disables the timeout).
        name: "postgres-check-walsenderstimeout",
        cdc_only: true,
        sql: "SELECT setting::int = 0 OR setting::int >= 10000 FROM pg_settings WHERE name = 'wal_sender_timeout'",
        verdict: Verdict::PassWhen,
    },
    Definition {
        name: "postgres-check-maxwalsenders",
        cdc_only: true,
        sql: "SELECT current_setting('max_wal_senders')::int > 1",
        verdict: Verdict::PassWhen,
    },
    Definition {
        name: "postgres-check-replication-slots-count",
        cdc_only: true,
        sql: "SELECT current_setting('max_replication_slots')::int > (SELECT count(*) FROM pg_replication_slots)",
        verdict: Verdict::PassWhen,
    },
    Definition {
        // Without a primary key (and without REPLICA IDENTITY FULL) UPDATE and DELETE are not replicated.
        name: "postgres-check-pk",
        cdc_only: false,
        sql: "SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p') AND c.relreplident <> 'f'
                AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p')",
        verdict: Verdict::WarnOnMappedTables,
    },
    Definition {
        // DMS ignores a table with an ARRAY column and no primary key during the full load.
        name: "postgres-check-table-with-array",
        cdc_only: false,
        sql: "SELECT DISTINCT n.nspname::text, c.relname::text
              FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid
              WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped AND t.typcategory = 'A'
                AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p')",
        verdict: Verdict::FailOnMappedTables,
    },
    Definition {
        name: "postgres-check-preparedtxn",
        cdc_only: false,
        sql: "SELECT count(*) FROM pg_prepared_xacts",
        verdict: Verdict::WarnWhenPositive,
    },
    Definition {
        name: "postgres-check-longrunningtxn",
        cdc_only: false,
        sql: "SELECT count(*) FROM pg_stat_activity WHERE xact_start < now() - interval '10 minutes'",
        verdict: Verdict::WarnWhenPositive,
    },
];

fn applicable(migration_type: MigrationType) -> Vec<&'static str> {
    DEFINITIONS
        .iter()
        .filter(|d| migration_type.has_cdc() || !d.cdc_only)
        .map(|d| d.name)
        .collect()
}

fn is_postgres(engine: &str) -> bool {
    matches!(engine, "postgres" | "aurora-postgresql")
}

pub fn describe_applicable(app: &App, input: &Value) -> Result<Value, DmsError> {
    let (migration_type, source_engine) = match input["ReplicationTaskArn"].as_str() {
        Some(task_arn) => {
            let inner = app.registry.lock();
            let task = inner.task(task_arn).ok_or_else(|| {
                DmsError::not_found(format!("Replication Task {task_arn} not found"))
            })?;
            let engine = inner
                .endpoint(&task.source_arn)
                .map(|e| e.engine.clone())
                .unwrap_or_default();
            (task.migration_type, engine)
        }
        None => (
            MigrationType::parse(
                input["MigrationType"]
                    .as_str()
                    .unwrap_or("full-load-and-cdc"),
            )
            .ok_or_else(|| DmsError::invalid_parameter("MigrationType is not valid"))?,
            input["SourceEngineName"]
                .as_str()
                .unwrap_or("postgres")
                .to_string(),
        ),
    };
    let names: Vec<&str> = if is_postgres(&source_engine) {
        applicable(migration_type)
    } else {
        Vec::new()
    };
    let (items, marker) = page(&names, input, 100, 100)?;
    Ok(json!({"IndividualAssessmentNames": items, "Marker": marker}))
}

pub fn start_run(app: &Arc<App>, input: &Value) -> Result<Value, DmsError> {
    let task_arn = required_str(input, "ReplicationTaskArn")?;
    let role = required_str(input, "ServiceAccessRoleArn")?;
    let bucket = required_str(input, "ResultLocationBucket")?;
    let name = required_str(input, "AssessmentRunName")?;
    let list = |member: &str| -> Vec<String> {
        input[member]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (include_only, exclude) = (list("IncludeOnly"), list("Exclude"));
    let mut inner = app.registry.lock();
    let task = inner
        .task(task_arn)
        .ok_or_else(|| DmsError::not_found(format!("Replication Task {task_arn} not found")))?;
    if matches!(
        task.reported_status(),
        task_status::RUNNING
            | task_status::STARTING
            | task_status::STOPPING
            | "modifying"
            | "creating"
    ) {
        return Err(DmsError::invalid_state(format!(
            "Replication task {task_arn} is {}: an assessment run needs a task that is not running",
            task.reported_status()
        )));
    }
    let names = applicable(task.migration_type);
    if let Some(unknown) = include_only
        .iter()
        .chain(&exclude)
        .find(|n| !names.contains(&n.as_str()))
    {
        return Err(DmsError::invalid_parameter(format!(
            "Individual assessment {unknown} is not applicable to this task"
        )));
    }
    if inner
        .assessment_runs
        .iter()
        .any(|r| r.task_arn == task_arn && r.name == name)
    {
        return Err(DmsError {
            code: "ResourceAlreadyExistsFault",
            message: format!("An assessment run named {name} already exists for this task"),
        });
    }
    let run_arn = arn(&app.region, "assessment-run", &resource_id());
    let assessments = names
        .iter()
        .filter(|n| include_only.is_empty() || include_only.iter().any(|i| i == *n))
        .filter(|n| !exclude.iter().any(|e| e == *n))
        .map(|n| IndividualAssessment {
            arn: arn(&app.region, "individual-assessment", &resource_id()),
            name: n.to_string(),
            status: "pending".to_string(),
            start_date: None,
            detail: None,
        })
        .collect();
    let fail_execution = std::mem::take(&mut inner.next_assessment_run_errors);
    let run = AssessmentRun {
        arn: run_arn.clone(),
        task_arn: task_arn.to_string(),
        name: name.to_string(),
        status: "provisioning".to_string(),
        created: now_epoch_seconds(),
        service_access_role_arn: role.to_string(),
        result_location_bucket: bucket.to_string(),
        result_location_folder: input["ResultLocationFolder"].as_str().map(str::to_string),
        last_failure_message: None,
        assessments,
        fail_execution,
    };
    let answer = wire::assessment_run(&run, true);
    inner.assessment_runs.push(run);
    drop(inner);
    tokio::spawn(execute(Arc::clone(app), run_arn));
    Ok(json!({"ReplicationTaskAssessmentRun": answer}))
}

fn with_run(app: &App, run_arn: &str, change: impl FnOnce(&mut AssessmentRun)) {
    if let Some(run) = app
        .registry
        .lock()
        .assessment_runs
        .iter_mut()
        .find(|r| r.arn == run_arn)
    {
        change(run);
    }
}

async fn execute(app: Arc<App>, run_arn: String) {
    tokio::time::sleep(STEP).await;
    with_run(&app, &run_arn, |r| r.status = "running".to_string());
    let context = {
        let inner = app.registry.lock();
        inner
            .assessment_runs
            .iter()
            .find(|r| r.arn == run_arn)
            .and_then(|r| {
                let task = inner.task(&r.task_arn)?;
                Some((
                    r.assessments
                        .iter()
                        .map(|a| a.name.clone())
                        .collect::<Vec<_>>(),
                    r.fail_execution,
                    inner.endpoint(&task.source_arn)?.clone(),
                    task.table_mappings.clone(),
                ))
            })
    };
    let Some((names, fail_execution, source, mappings)) = context else {
        return;
    };
    tokio::time::sleep(STEP).await;
    if fail_execution {
        finish_with_error(&app, &run_arn, "An error occurred while executing the individual assessments (dms-local assessmentError fault)");
        return;
    }
    let client = match crate::pg_connect::connect(&source, &app.cas).await {
        Ok(client) => client,
        Err(_) => {
            finish_with_error(
                &app,
                &run_arn,
                &format!(
                    "Failed to connect to the source endpoint '{}' to run the assessments",
                    source.identifier
                ),
            );
            return;
        }
    };
    let mappings = table_mappings::parse(&mappings).unwrap_or_default();
    for name in names {
        let now = now_epoch_seconds();
        with_run(&app, &run_arn, |r| {
            if let Some(a) = r.assessments.iter_mut().find(|a| a.name == name) {
                a.status = "running".to_string();
                a.start_date = Some(now);
            }
        });
        let (status, detail) = match DEFINITIONS.iter().find(|d| d.name == name) {
            Some(definition) => probe(&client, definition, &mappings).await,
            None => ("skipped", None),
        };
        tracing::info!(%name, status, "individual assessment finished");
        with_run(&app, &run_arn, |r| {
            if let Some(a) = r.assessments.iter_mut().find(|a| a.name == name) {
                a.status = status.to_string();
                a.detail = detail;
            }
        });
        tokio::time::sleep(STEP / 4).await;
    }
    with_run(&app, &run_arn, |r| {
        let has = |s: &str| r.assessments.iter().any(|a| a.status == s);
        r.status = if has("error") {
            "error-executing"
        } else if has("failed") {
            "failed"
        } else if has("warning") {
            "warning"
        } else {
            "passed"
        }
        .to_string();
    });
}

fn finish_with_error(app: &App, run_arn: &str, message: &str) {
    with_run(app, run_arn, |r| {
        r.status = "error-executing".to_string();
        r.last_failure_message = Some(message.to_string());
        for a in r.assessments.iter_mut() {
            a.status = "error".to_string();
        }
    });
}

async fn probe(
    client: &tokio_postgres::Client,
    definition: &Definition,
    mappings: &dms_core::rules::table_mapping::TableMappings,
) -> (&'static str, Option<String>) {
    let rows = match client.query(definition.sql, &[]).await {
        Ok(rows) => rows,
        Err(e) => {
            return (
                "error",
                Some(dms_core::rules::redact::redact_secrets(&e.to_string())),
            )
        }
    };
    let mapped_offenders = || -> Vec<String> {
        rows.iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
            .filter(|(s, t)| mappings.maps(s, t))
            .map(|(s, t)| format!("{s}.{t}"))
            .collect()
    };
    match definition.verdict {
        Verdict::PassWhen => match rows.first().map(|r| r.get::<_, bool>(0)) {
            Some(true) => ("passed", None),
            _ => ("failed", None),
        },
        Verdict::WarnWhenPositive => match rows.first().map(|r| r.get::<_, i64>(0)) {
            Some(0) | None => ("passed", None),
            Some(n) => ("warning", Some(format!("{n} found"))),
        },
        Verdict::WarnOnMappedTables | Verdict::FailOnMappedTables => {
            let offenders = mapped_offenders();
            if offenders.is_empty() {
                ("passed", None)
            } else if matches!(definition.verdict, Verdict::WarnOnMappedTables) {
                ("warning", Some(offenders.join(", ")))
            } else {
                ("failed", Some(offenders.join(", ")))
            }
        }
    }
}

pub fn describe_runs(app: &App, input: &Value) -> Result<Value, DmsError> {
    let filters = filters(
        input,
        &[
            "replication-task-assessment-run-arn",
            "replication-task-arn",
            "replication-instance-arn",
            "status",
        ],
    )?;
    let inner = app.registry.lock();
    let matching: Vec<Value> = inner
        .assessment_runs
        .iter()
        .filter(|r| {
            let instance = inner
                .task(&r.task_arn)
                .map(|t| t.instance_arn.as_str())
                .unwrap_or("");
            filter_matches(&filters, "replication-task-assessment-run-arn", &r.arn)
                && filter_matches(&filters, "replication-task-arn", &r.task_arn)
                && filter_matches(&filters, "replication-instance-arn", instance)
                && filter_matches(&filters, "status", &r.status)
        })
        .map(|r| {
            let latest = inner
                .assessment_runs
                .iter()
                .rev()
                .find(|x| x.task_arn == r.task_arn)
                .is_some_and(|x| x.arn == r.arn);
            wire::assessment_run(r, latest)
        })
        .collect();
    let (items, marker) = page(&matching, input, 100, 100)?;
    Ok(json!({"ReplicationTaskAssessmentRuns": items, "Marker": marker}))
}

pub fn describe_individual(app: &App, input: &Value) -> Result<Value, DmsError> {
    let filters = filters(
        input,
        &[
            "replication-task-assessment-run-arn",
            "replication-task-arn",
            "status",
        ],
    )?;
    let inner = app.registry.lock();
    let matching: Vec<Value> = inner
        .assessment_runs
        .iter()
        .filter(|r| {
            filter_matches(&filters, "replication-task-assessment-run-arn", &r.arn)
                && filter_matches(&filters, "replication-task-arn", &r.task_arn)
        })
        .flat_map(|r| {
            wire::individual_assessments(r)
                .into_iter()
                .filter(|a| filter_matches(&filters, "status", a["Status"].as_str().unwrap_or("")))
        })
        .collect();
    let (items, marker) = page(&matching, input, 100, 100)?;
    Ok(json!({"ReplicationTaskIndividualAssessments": items, "Marker": marker}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdc_assessments_apply_only_to_cdc_tasks() {
        let full_load = applicable(MigrationType::FullLoad);
        assert!(full_load.contains(&"postgres-check-pk"));
        assert!(!full_load.contains(&"postgres-check-wallevel"));
        assert!(applicable(MigrationType::FullLoadAndCdc).contains(&"postgres-check-wallevel"));
    }
}
