//! The BUILT `premigration-assessment` Lambda on the lab: real SQL checks on both lab databases (credentials
//! from moto Secrets Manager secrets the dms-local endpoints name) and a DMS assessment run in dms-local
//! that probes the source for real. The test plays the state machine's loop: `start`, then `poll` once a
//! second until a final status, bounded so a regression fails instead of hanging.

use std::path::PathBuf;
use std::time::Duration;

use core_lib::dms::{Dms, StartType};
use core_lib::payload::parse_payload;
use integration_tests::dms_local::{all_public_tables, DmsLocal, LabTask};
use integration_tests::lab::{binary, Lab, TestDatabases};
use integration_tests::lambda::LocalLambda;
use integration_tests::unique_name;
use serde_json::{json, Value};

const EXEC: &str = "arn:aws:states:us-east-1:123456789012:execution:lab-migration:assessment";
const SCHEMA: &str = "CREATE TABLE public.orders (id bigint PRIMARY KEY, note text NOT NULL);
                      CREATE TABLE public.events (at timestamptz NOT NULL, kind text NOT NULL);";
/// Polls before the test gives up (dms-local runs finish in a few seconds).
const MAX_TEST_POLLS: u32 = 90;

struct Rig {
    lab: Lab,
    _dbs: TestDatabases,
    dms: DmsLocal,
    task: LabTask,
    lambda: LocalLambda,
}

async fn sql(url: &str, statements: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("lab connect");
    tokio::spawn(conn);
    client.batch_execute(statements).await.expect(statements);
}

/// One side's credentials as the stack stores them: a secret the endpoint names.
async fn secret(lab: &Lab, dbs: &TestDatabases, side: &str) -> String {
    let upper = side.to_uppercase();
    let value = json!({"host": lab.var(&format!("{upper}_HOST")),
        "port": lab.var(&format!("{upper}_PORT")).parse::<u16>().unwrap(),
        "username": lab.var("LAB_ADMIN_USER"), "password": lab.var("LAB_ADMIN_PASSWORD"), "dbname": dbs.name});
    aws_sdk_secretsmanager::Client::new(&lab.aws_config().await)
        .create_secret()
        .name(unique_name(&format!("assessment-{side}")))
        .secret_string(value.to_string())
        .send()
        .await
        .expect("moto creates the secret")
        .arn()
        .expect("a secret ARN")
        .to_string()
}

async fn rig(name: &str) -> Option<Rig> {
    let lab = Lab::get().await?;
    let dbs = lab.fresh_databases(name).await;
    sql(&dbs.source_url, SCHEMA).await;
    sql(&dbs.target_url, SCHEMA).await;
    let dms = DmsLocal::start(&lab).await;
    let instance_arn = dms.register_instance("Lab-Instance").await;
    let mut endpoints = Vec::new();
    for side in ["source", "target"] {
        let mut spec = DmsLocal::lab_endpoint_spec(&lab, &dbs, side);
        spec["secretId"] = json!(secret(&lab, &dbs, side).await);
        endpoints.push(dms.register_endpoint(&spec).await);
    }
    let task_arn = dms
        .register_task(
            &format!("task-{}", dbs.name.replace('_', "-")),
            &instance_arn,
            &endpoints[0],
            &endpoints[1],
            "full-load-and-cdc",
            &all_public_tables(),
        )
        .await;
    let mut env = lab.aws_env();
    env.extend(dms.env());
    env.push((
        "ASSESSMENT_ROLE_ARN".into(),
        "arn:aws:iam::123456789012:role/lab-assessment".into(),
    ));
    env.push(("ASSESSMENT_BUCKET".into(), "lab-assessment-results".into()));
    let lambda = LocalLambda::start(
        &PathBuf::from(lab.var("CARGO_LAMBDA")),
        "premigration-assessment",
        &binary("premigration-assessment"),
        &env,
    )
    .await;
    Some(Rig {
        lab,
        _dbs: dbs,
        dms,
        task: LabTask {
            instance_arn,
            source_endpoint_arn: endpoints[0].clone(),
            target_endpoint_arn: endpoints[1].clone(),
            task_arn,
        },
        lambda,
    })
}

impl Rig {
    fn state(&self) -> Value {
        let raw = json!({
            "replicationInstanceArn": self.task.instance_arn,
            "sourceEndpointArn": self.task.source_endpoint_arn,
            "targetEndpointArn": self.task.target_endpoint_arn,
            "replicationTaskArn": self.task.task_arn,
            "sourceEndpointHost": self.lab.var("SOURCE_HOST"),
            "sourcePort": self.lab.var("SOURCE_PORT"),
            "options": {}
        });
        let now = core_lib::clock::now_epoch_seconds();
        serde_json::to_value(parse_payload(&raw, EXEC, now).expect("a valid payload")).unwrap()
    }

    async fn invoke(&self, state: &Value, action: &str) -> Value {
        self.lambda
            .invoke(&json!({"state": state, "action": action}))
            .await
            .unwrap_or_else(|e| panic!("{action}: {e:?}"))
    }

    /// `start`, then `poll` once a second until the status is final; returns the last assessment result.
    async fn assess(&self) -> Value {
        let mut state = self.invoke(&self.state(), "start").await;
        for _ in 0..MAX_TEST_POLLS {
            if state["results"]["assessment"]["status"] != json!("running") {
                return state["results"]["assessment"].clone();
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            state = self.invoke(&state, "poll").await;
        }
        panic!(
            "the assessment never ended: {}",
            state["results"]["assessment"]
        );
    }
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_table_without_a_primary_key_ends_the_run_with_warnings_from_both_checks() {
    let Some(rig) = rig("assess_no_pk").await else {
        return;
    };
    let a = rig.assess().await;
    assert_ne!(a["status"], json!("running"), "{a}");
    assert!(
        a["runArn"]
            .as_str()
            .is_some_and(|r| r.contains("assessment-run")),
        "{a}"
    );
    let warnings = ids(&a["warnings"]);
    assert!(
        warnings.contains(&"dms.postgres-check-pk".to_string()),
        "{a}"
    );
    let pk = a["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .chain(a["failures"].as_array().unwrap())
        .find(|c| c["id"] == json!("source.primary_keys"))
        .unwrap_or_else(|| panic!("source.primary_keys is not reported: {a}"));
    assert_eq!(pk["objects"], json!(["public.events"]), "{a}");
    assert!(a["polls"].as_u64().unwrap() >= 1, "{a}");
}

#[tokio::test]
async fn an_error_executing_run_ends_the_loop_as_failed() {
    let Some(rig) = rig("assess_error").await else {
        return;
    };
    rig.dms
        .fault(json!({"operation": "StartReplicationTaskAssessmentRun", "assessmentError": true}))
        .await;
    let a = rig.assess().await;
    assert_eq!(a["status"], json!("failed"), "{a}");
    assert!(
        ids(&a["failures"]).contains(&"dms.assessment_run".to_string()),
        "{a}"
    );
    assert!(
        a["reason"].as_str().unwrap().contains("error-executing"),
        "{a}"
    );
}

#[tokio::test]
async fn a_task_that_already_started_is_skipped_not_blocked() {
    let Some(rig) = rig("assess_started").await else {
        return;
    };
    rig.dms
        .dms_client()
        .await
        .start_task(&rig.task.task_arn, StartType::StartReplication)
        .await
        .expect("dms-local starts the task");
    let out = rig.invoke(&rig.state(), "start").await;
    let a = &out["results"]["assessment"];
    assert_eq!(a["status"], json!("skipped"), "{a}");
    assert!(a["reason"].as_str().unwrap().contains("startMode"), "{a}");
}
