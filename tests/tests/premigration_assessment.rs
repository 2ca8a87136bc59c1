//! The BUILT `premigration-assessment` Lambda on the lab: real SQL checks on both lab databases (credentials
//! from moto Secrets Manager secrets the dms-local endpoints name) and a DMS assessment run in dms-local
//! that probes the source for real. The test plays the state machine's loop: `start`, then `poll` once a
//! second until a final status, bounded so a regression fails instead of hanging. With `ENABLE_FALLBACK`
//! the way back's checks (`fallback.*`) run too, the Aurora ones through the BUILT `source-checks`
//! Lambda when the assessment is given one, as the stack does.

use std::path::PathBuf;
use std::time::Duration;
use test_doubles::StateFixture;

use dms_core::aws::dms::{Dms, StartType};
use dms_core::pg::checks::ids;
use integration_tests::dms_local::{all_public_tables, DmsLocal, LabTask};
use integration_tests::lab::{binary, connect, Lab, TestDatabases};
use integration_tests::lambda::LocalLambda;
use integration_tests::sfn::{function_arn, route_url};
use integration_tests::unique_name;
use serde_json::{json, Value};

const EXEC: &str = "arn:aws:states:us-east-1:123456789012:execution:lab-migration:assessment";
const SCHEMA: &str = "CREATE TABLE public.orders (id bigint PRIMARY KEY, note text NOT NULL);
                      CREATE TABLE public.events (at timestamptz NOT NULL, kind text NOT NULL);";
/// Polls before the test gives up (dms-local runs finish in a few seconds).
const MAX_TEST_POLLS: u32 = 90;

struct Rig {
    lab: Lab,
    dms: DmsLocal,
    task: LabTask,
    lambda: LocalLambda,
    /// The in-VPC source checks, when the assessment was given them.
    _source_checks: Option<LocalLambda>,
    /// Last: dropped once dms-local has dropped its subscriptions.
    _dbs: TestDatabases,
}

/// The password of a test's own migration role (`Login::Role`).
const ROLE_PASSWORD: &str = "Assess-Fallback-3";

/// Who the endpoints' secrets log in as.
enum Login {
    Admin,
    /// A role of the test, made with the given SQL on (source, target); `{role}` is its name.
    Role(&'static str, &'static str),
}

/// How a test's assessment Lambda is set up.
struct Setup {
    login: Login,
    /// Extra environment of the assessment function (`ENABLE_FALLBACK`).
    env: Vec<(&'static str, &'static str)>,
    /// The source checks through the built `source-checks` Lambda, invoked through the lab's Lambda router.
    in_vpc: bool,
    /// A DMS assessment run besides the SQL checks.
    dms_run: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            login: Login::Admin,
            env: Vec::new(),
            in_vpc: false,
            dms_run: true,
        }
    }
}

/// The test's migration role, named `<purpose>_<database>` so the lab drops it with the database.
fn role_of(dbs: &TestDatabases) -> String {
    format!("assessrole_{}", dbs.name)
}

async fn sql(url: &str, statements: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("lab connect");
    tokio::spawn(conn);
    client.batch_execute(statements).await.expect(statements);
}

/// One side's credentials as the stack stores them: a secret the endpoint names.
async fn secret(lab: &Lab, dbs: &TestDatabases, side: &str, login: &Login) -> String {
    let upper = side.to_uppercase();
    let (username, password) = match login {
        Login::Admin => (lab.var("LAB_ADMIN_USER"), lab.var("LAB_ADMIN_PASSWORD")),
        Login::Role(..) => (role_of(dbs), ROLE_PASSWORD.to_string()),
    };
    let value = json!({"host": lab.var(&format!("{upper}_HOST")),
        "port": lab.var(&format!("{upper}_PORT")).parse::<u16>().unwrap(),
        "username": username, "password": password, "dbname": dbs.name});
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
    rig_with(name, Setup::default()).await
}

/// Starts the built assessment function with the rig's DMS and `extra` environment.
async fn assessment_lambda(lab: &Lab, dms: &DmsLocal, extra: Vec<(String, String)>) -> LocalLambda {
    let mut env = lab.aws_env();
    env.extend(dms.env());
    env.extend(extra);
    LocalLambda::start(
        &PathBuf::from(lab.var("CARGO_LAMBDA")),
        "premigration-assessment",
        &binary("premigration-assessment"),
        &env,
    )
    .await
}

async fn rig_with(name: &str, setup: Setup) -> Option<Rig> {
    let lab = Lab::get().await?;
    let dbs = lab.fresh_databases(name).await;
    sql(&dbs.source_url, SCHEMA).await;
    sql(&dbs.target_url, SCHEMA).await;
    if let Login::Role(on_source, on_target) = setup.login {
        let role = role_of(&dbs);
        for (url, grants) in [(&dbs.source_url, on_source), (&dbs.target_url, on_target)] {
            sql(
                url,
                &format!(
                    "CREATE ROLE {role} LOGIN PASSWORD '{ROLE_PASSWORD}'; {}",
                    grants.replace("{role}", &role)
                ),
            )
            .await;
        }
    }
    let dms = DmsLocal::start(&lab).await;
    let instance_arn = dms.register_instance("Lab-Instance").await;
    let mut endpoints = Vec::new();
    for side in ["source", "target"] {
        let mut spec = DmsLocal::lab_endpoint_spec(&lab, &dbs, side);
        spec["secretId"] = json!(secret(&lab, &dbs, side, &setup.login).await);
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
    let mut env: Vec<(String, String)> = setup
        .env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if setup.dms_run {
        env.push((
            "ASSESSMENT_ROLE_ARN".into(),
            "arn:aws:iam::123456789012:role/lab-assessment".into(),
        ));
        env.push(("ASSESSMENT_BUCKET".into(), "lab-assessment-results".into()));
    }
    let source_checks = if setup.in_vpc {
        // As the stack wires it: no AWS environment, reached only through the Invoke API.
        let function = LocalLambda::start(
            &PathBuf::from(lab.var("CARGO_LAMBDA")),
            "source-checks",
            &binary("source-checks"),
            &[],
        )
        .await;
        let alias = unique_name("assess-source-checks");
        route_url(&lab, &alias, &function.invoke_url()).await;
        env.push(("SOURCE_CHECKS_FUNCTION".into(), function_arn(&lab, &alias)));
        env.push((
            "SOURCE_CHECKS_SECURITY_GROUP".into(),
            "sg-lab-source-checks".into(),
        ));
        env.push((
            "AWS_ENDPOINT_URL_LAMBDA".into(),
            lab.var("LAMBDA_ROUTER_URL"),
        ));
        Some(function)
    } else {
        None
    };
    let lambda = assessment_lambda(&lab, &dms, env).await;
    Some(Rig {
        lab,
        _source_checks: source_checks,
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
        StateFixture::default()
            .with("replicationInstanceArn", self.task.instance_arn.as_str())
            .with("sourceEndpointArn", self.task.source_endpoint_arn.as_str())
            .with("targetEndpointArn", self.task.target_endpoint_arn.as_str())
            .with("replicationTaskArn", self.task.task_arn.as_str())
            .with("sourceEndpointHost", self.lab.var("SOURCE_HOST"))
            .with("sourcePort", self.lab.var("SOURCE_PORT"))
            .execution(EXEC, dms_core::clock::now_epoch_seconds())
            .state()
    }

    async fn invoke(&self, state: &Value, action: &str) -> Value {
        invoke(&self.lambda, state, action).await
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

async fn invoke(lambda: &LocalLambda, state: &Value, action: &str) -> Value {
    lambda
        .invoke(&json!({"state": state, "action": action}))
        .await
        .unwrap_or_else(|e| panic!("{action}: {e:?}"))
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

/// Step Functions' limit on a state's input or output (256 KiB of UTF-8), past which the execution dies with
/// `States.DataLimitExceeded` and no Catch runs
/// (https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html).
const STEP_FUNCTIONS_STATE_LIMIT: usize = 256 * 1024;
/// SNS's limit on one message (https://docs.aws.amazon.com/sns/latest/api/API_Publish.html).
const SNS_MESSAGE_LIMIT: usize = 256 * 1024;

#[tokio::test]
async fn ten_thousand_loaded_target_tables_keep_the_output_and_the_email_bounded() {
    let Some(rig) = rig("assess_10k_loaded").await else {
        return;
    };
    // 10,000 non-empty target tables with realistic names (about 45 bytes each: a TRUNCATE naming all of
    // them is ~470 KB). Batches of 500 per transaction: each CREATE holds a lock until commit, and the lock
    // table holds max_locks_per_transaction × max_connections.
    for batch in 0..20 {
        sql(
            &rig._dbs.target_url,
            &format!(
                "DO $$ BEGIN FOR i IN {}..{} LOOP
                   EXECUTE format('CREATE TABLE public.already_loaded_customer_table_%s (id int PRIMARY KEY)', lpad(i::text, 5, '0'));
                   EXECUTE format('INSERT INTO public.already_loaded_customer_table_%s VALUES (1)', lpad(i::text, 5, '0'));
                 END LOOP; END $$;",
                batch * 500 + 1,
                batch * 500 + 500
            ),
        )
        .await;
    }
    let state = rig.invoke(&rig.state(), "start").await;
    let size = state.to_string().len();
    assert!(
        size < STEP_FUNCTIONS_STATE_LIMIT,
        "the assessment step's output is {size} bytes"
    );
    let a = &state["results"]["assessment"];
    let not_empty = a["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == json!("target.not_empty"))
        .unwrap_or_else(|| panic!("target.not_empty is not reported: {a}"));
    assert_eq!(not_empty["objectsTotal"], json!(10_000), "{not_empty}");
    assert!(not_empty["objects"].as_array().unwrap().len() <= dms_core::rules::state::MAX_NAMES);
    assert!(
        not_empty["fix"]
            .as_str()
            .unwrap()
            .contains("dms-migrate preflight"),
        "the cut fix says where the whole one is: {not_empty}"
    );

    // The email of that result, rendered and published by the built notify Lambda, read back from SNS.
    let config = rig.lab.aws_config().await;
    let topic = integration_tests::sns::TopicWithQueue::create(&config, "assess-10k").await;
    let mut env = rig.lab.aws_env();
    env.push(("TOPIC_ARN".into(), topic.topic_arn.clone()));
    let notify = LocalLambda::start(
        &PathBuf::from(rig.lab.var("CARGO_LAMBDA")),
        "notify",
        &binary("notify"),
        &env,
    )
    .await;
    notify
        .invoke(&json!({"event": "assessment-warnings", "executionId": EXEC, "state": state}))
        .await
        .expect("notify publishes the assessment email");
    let emails = topic.receive(1, Duration::from_secs(10)).await;
    assert_eq!(emails.len(), 1, "exactly one email");
    let body = &emails[0].message;
    assert!(
        body.len() < SNS_MESSAGE_LIMIT,
        "the email is {} bytes",
        body.len()
    );
    assert!(body.contains("target.not_empty"), "{body}");
    assert!(
        body.contains("9980 more"),
        "the count of the rest is in the email: {body}"
    );
}

/// Every check of `list` (failures, warnings or notRun) whose id is one of the way back's.
fn way_back_ids(list: &Value) -> Vec<String> {
    ids(list)
        .into_iter()
        .filter(|id| ids::FALLBACK.contains(&id.as_str()))
        .collect()
}

fn find<'a>(list: &'a Value, id: &str) -> &'a Value {
    list.as_array()
        .and_then(|a| a.iter().find(|c| c["id"] == json!(id)))
        .unwrap_or_else(|| panic!("no {id} in {list:#}"))
}

/// The way back enabled, the source checks inside the "VPC" (the built source-checks function), an
/// admin login that has every prerequisite: the six `fallback.*` checks run, each on its side, and only
/// `max_slot_wal_keep_size` (the lab's PostgreSQL default, -1) warns; the same databases assessed with
/// the way back disabled show none of them. No probe slot is left on the target.
#[tokio::test]
async fn with_the_way_back_enabled_its_checks_run_on_both_sides_and_pass() {
    let Some(rig) = rig_with(
        "assess_fb_pass",
        Setup {
            env: vec![("ENABLE_FALLBACK", "true")],
            in_vpc: true,
            dms_run: false,
            ..Setup::default()
        },
    )
    .await
    else {
        return;
    };
    let enabled = rig.invoke(&rig.state(), "start").await;
    let enabled = &enabled["results"]["assessment"];
    assert_eq!(
        enabled["sourceChecks"]["where"],
        json!("the source-checks function inside the stack's VPC"),
        "{enabled}"
    );
    assert_eq!(
        way_back_ids(&enabled["failures"]),
        Vec::<String>::new(),
        "{enabled}"
    );
    assert_eq!(
        way_back_ids(&enabled["notRun"]),
        Vec::<String>::new(),
        "{enabled}"
    );
    assert_eq!(
        way_back_ids(&enabled["warnings"]),
        [ids::FALLBACK_TARGET_WAL_KEEP_SIZE],
        "{enabled}"
    );
    let keep = find(&enabled["warnings"], ids::FALLBACK_TARGET_WAL_KEEP_SIZE);
    assert!(
        keep["summary"]
            .as_str()
            .is_some_and(|s| s.contains("-1 (no limit)")),
        "{keep}"
    );

    let disabled_lambda = assessment_lambda(
        &rig.lab,
        &rig.dms,
        vec![("ENABLE_FALLBACK".into(), "false".into())],
    )
    .await;
    let disabled = invoke(&disabled_lambda, &rig.state(), "start").await;
    let disabled = &disabled["results"]["assessment"];
    assert!(
        !disabled.to_string().contains("fallback."),
        "no way-back check without the way back: {disabled}"
    );
    let count = |a: &Value, status: &str| a["counts"][status].as_u64().unwrap();
    assert_eq!(
        count(enabled, "pass") - count(disabled, "pass"),
        5,
        "the way back's five other checks passed: {enabled} against {disabled}"
    );
    assert_eq!(count(enabled, "warn") - count(disabled, "warn"), 1);
    assert_eq!(count(enabled, "fail"), count(disabled, "fail"));

    let target = connect(&rig._dbs.target_url).await;
    let left = target
        .query(
            "SELECT slot_name::text FROM pg_replication_slots WHERE slot_name LIKE 'dms\\_migrate\\_preflight\\_%'",
            &[],
        )
        .await
        .expect("slots");
    assert!(left.is_empty(), "probe slots left on the target: {left:?}");
}

/// A migration role without REPLICATION on PlanetScale and without write privileges on Aurora: the
/// assessment names both checks with their fix, as warnings that say the way back (not the migration) is
/// blocked and how to go without it; the forward migration's own verdict is untouched by them.
#[tokio::test]
async fn a_missing_way_back_prerequisite_is_named_and_blocks_only_the_way_back() {
    let Some(rig) = rig_with(
        "assess_fb_fail",
        Setup {
            login: Login::Role(
                // Aurora: reads and replicates (the forward source's needs), writes nothing.
                "ALTER ROLE {role} WITH REPLICATION; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};",
                // PlanetScale: writes the tables (the forward target's needs), no REPLICATION.
                "GRANT USAGE, CREATE ON SCHEMA public TO {role};
                 GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public TO {role};",
            ),
            env: vec![("ENABLE_FALLBACK", "true")],
            dms_run: false,
            ..Setup::default()
        },
    )
    .await
    else {
        return;
    };
    let out = rig.invoke(&rig.state(), "start").await;
    let a = &out["results"]["assessment"];
    assert_eq!(way_back_ids(&a["failures"]), Vec::<String>::new(), "{a}");
    let role = role_of(&rig._dbs);
    let slot = find(&a["warnings"], ids::FALLBACK_TARGET_SLOT);
    let summary = slot["summary"].as_str().unwrap();
    assert!(summary.contains("the way back cannot be armed"), "{slot}");
    assert!(
        summary.contains("lacks the REPLICATION attribute"),
        "{slot}"
    );
    let fix = slot["fix"].as_str().unwrap();
    assert!(
        fix.starts_with(&format!("ALTER ROLE {role} WITH REPLICATION;")),
        "{slot}"
    );
    assert!(fix.contains("EnableFallback = false"), "{slot}");
    let privileges = find(&a["warnings"], ids::FALLBACK_SOURCE_PRIVILEGES);
    assert!(
        privileges["objects"]
            .as_array()
            .is_some_and(|o| o.contains(&json!("public.orders"))),
        "{privileges}"
    );
    assert!(
        privileges["summary"]
            .as_str()
            .is_some_and(|s| s.contains("Aurora as the way back's DMS target")),
        "{privileges}"
    );
}
