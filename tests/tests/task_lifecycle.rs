//! The DMS task lifecycle end to end on the lab: the BUILT `start-task` and `poll-progress` binaries (served
//! through `cargo lambda watch`) drive a task in `dms-local`, which moves rows for real between the lab
//! clusters with logical replication and pushes CDC latency to CloudWatch in moto; Secrets Manager and
//! Step Functions are moto's. Each test has its own databases, its own dms-local and its own task.
//!
//! The test plays the state machine's loop itself (start-task, then poll-progress until a phase that ends
//! monitoring), one poll per second, bounded by `maxPolls`, so a regression fails instead of hanging.

use std::path::PathBuf;
use std::time::Duration;
use test_doubles::StateFixture;

use integration_tests::dms_local::{all_public_tables, wait_for, DmsLocal, LabTask};
use integration_tests::lab::{binary, Lab, TestDatabases};
use integration_tests::lambda::{FunctionError, LocalLambda};
use integration_tests::unique_name;
use serde_json::{json, Value};

const SCHEMA: &str = "CREATE TABLE public.orders (id bigint PRIMARY KEY, note text NOT NULL);
                      CREATE TABLE public.customers (id bigint PRIMARY KEY, name text NOT NULL);";
const SEED: &str = "INSERT INTO public.orders SELECT g, 'order ' || g FROM generate_series(1, 300) g;
                    INSERT INTO public.customers SELECT g, 'customer ' || g FROM generate_series(1, 40) g;";

struct Rig {
    lab: Lab,
    dms: DmsLocal,
    task: LabTask,
    start: LocalLambda,
    poll: LocalLambda,
    /// A real (finished) execution in moto: poll-progress reads its history to keep within the
    /// 25,000-event budget, so the state must name one that exists.
    execution_arn: String,
    /// Last: dropped once dms-local has dropped its subscriptions.
    dbs: TestDatabases,
}

async fn sql(url: &str, statements: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("lab connect");
    tokio::spawn(conn);
    client.batch_execute(statements).await.expect(statements);
}

async fn count(url: &str, table: &str) -> i64 {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("lab connect");
    tokio::spawn(conn);
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count")
        .get(0)
}

/// The target's credentials as the stack stores them: a Secrets Manager secret the endpoint names.
async fn target_secret(lab: &Lab, dbs: &TestDatabases) -> String {
    let config = lab.aws_config().await;
    let name = unique_name("lifecycle-target");
    let secret = json!({"host": lab.var("TARGET_HOST"), "port": lab.var("TARGET_PORT").parse::<u16>().unwrap(),
        "username": lab.var("LAB_ADMIN_USER"), "password": lab.var("LAB_ADMIN_PASSWORD"), "dbname": dbs.name});
    aws_sdk_secretsmanager::Client::new(&config)
        .create_secret()
        .name(&name)
        .secret_string(secret.to_string())
        .send()
        .await
        .expect("moto creates the secret")
        .arn()
        .expect("a secret ARN")
        .to_string()
}

async fn lambda(lab: &Lab, dms: &DmsLocal, name: &str, extra: &[(String, String)]) -> LocalLambda {
    let mut env = lab.aws_env();
    env.extend(dms.env());
    env.extend(extra.iter().cloned());
    LocalLambda::start(
        &PathBuf::from(lab.var("CARGO_LAMBDA")),
        name,
        &binary(name),
        &env,
    )
    .await
}

/// Databases with the schema on both sides (the target is DO_NOTHING: the schema comes first), seed rows
/// on the source, a dms-local with the task registered, and both Lambdas.
async fn rig(name: &str, migration_type: &str, target_schema: &str) -> Option<Rig> {
    let lab = Lab::get().await?;
    let dbs = lab.fresh_databases(name).await;
    sql(&dbs.source_url, &format!("{SCHEMA} {SEED}")).await;
    sql(&dbs.target_url, target_schema).await;
    let dms = DmsLocal::start(&lab).await;
    let secret_arn = target_secret(&lab, &dbs).await;
    let instance_arn = dms.register_instance("Lab-Instance").await;
    let source_endpoint_arn = dms
        .register_endpoint(&DmsLocal::lab_endpoint_spec(&lab, &dbs, "source"))
        .await;
    let mut target_spec = DmsLocal::lab_endpoint_spec(&lab, &dbs, "target");
    target_spec["secretId"] = json!(secret_arn);
    let target_endpoint_arn = dms.register_endpoint(&target_spec).await;
    let task_arn = dms
        .register_task(
            &format!("task-{}", dbs.name.replace('_', "-")),
            &instance_arn,
            &source_endpoint_arn,
            &target_endpoint_arn,
            migration_type,
            &all_public_tables(),
        )
        .await;
    let task = LabTask {
        instance_arn,
        source_endpoint_arn,
        target_endpoint_arn,
        task_arn,
    };
    let start = lambda(&lab, &dms, "start-task", &[]).await;
    let poll = lambda(&lab, &dms, "poll-progress", &[]).await;
    let execution_arn = finished_execution(&lab).await;
    Some(Rig {
        lab,
        dbs,
        dms,
        task,
        start,
        poll,
        execution_arn,
    })
}

/// An execution of a one-state machine that ends at once: it has a history to read and never competes
/// with the task (its input names none).
async fn finished_execution(lab: &Lab) -> String {
    let sfn = aws_sdk_sfn::Client::new(&lab.aws_config().await);
    let definition = json!({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": true}}});
    let machine = sfn
        .create_state_machine()
        .name(unique_name("lifecycle-exec"))
        .definition(definition.to_string())
        .role_arn("arn:aws:iam::123456789012:role/lab-sfn")
        .send()
        .await
        .expect("moto creates the state machine");
    sfn.start_execution()
        .state_machine_arn(machine.state_machine_arn())
        .name(unique_name("lifecycle"))
        .input("{}")
        .send()
        .await
        .expect("execution started")
        .execution_arn()
        .to_string()
}

impl Rig {
    /// The state notify `started` would return for this task, with `options`.
    fn state(&self, options: Value) -> Value {
        self.state_for(&self.task.task_arn, options)
    }

    fn state_for(&self, task_arn: &str, options: Value) -> Value {
        StateFixture::default()
            .with("replicationInstanceArn", self.task.instance_arn.as_str())
            .with("sourceEndpointArn", self.task.source_endpoint_arn.as_str())
            .with("targetEndpointArn", self.task.target_endpoint_arn.as_str())
            .with("replicationTaskArn", task_arn)
            .with("sourceEndpointHost", self.lab.var("SOURCE_HOST"))
            .with("sourcePort", self.lab.var("SOURCE_PORT"))
            .with("options", options)
            .execution(&self.execution_arn, dms_core::clock::now_epoch_seconds())
            .state()
    }

    async fn start_task(&self, state: &Value) -> Result<Value, FunctionError> {
        self.start.invoke(&json!({ "state": state })).await
    }

    async fn poll_once(&self, state: &Value) -> Result<Value, FunctionError> {
        self.poll.invoke(&json!({ "state": state })).await
    }

    /// Polls (one per second) until a phase in `until` or one that ends monitoring; returns the state and
    /// every phase seen, in order.
    async fn poll_until(&self, mut state: Value, until: &[&str]) -> (Value, Vec<String>) {
        let mut phases = Vec::new();
        loop {
            state = self.poll_once(&state).await.expect("poll-progress answers");
            let phase = state["results"]["progress"]["phase"]
                .as_str()
                .expect("a phase")
                .to_string();
            phases.push(phase.clone());
            let ends = matches!(
                phase.as_str(),
                "ready-for-cutover" | "succeeded" | "failed" | "monitoring-ended"
            );
            if ends || until.contains(&phase.as_str()) {
                return (state, phases);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn status(&self) -> String {
        self.dms.task_status(&self.task.task_arn).await
    }

    async fn stop_and_wait(&self) {
        self.dms
            .sdk()
            .await
            .stop_replication_task()
            .replication_task_arn(&self.task.task_arn)
            .send()
            .await
            .expect("StopReplicationTask");
        wait_for("the task to stop", Duration::from_secs(60), || async {
            (self.status().await == "stopped").then_some(())
        })
        .await;
    }

    async fn target_count_reaches(&self, table: &str, expected: i64) {
        wait_for(
            &format!("{table} on the target to hold {expected} rows"),
            Duration::from_secs(90),
            || async { (count(&self.dbs.target_url, table).await == expected).then_some(()) },
        )
        .await;
    }
}

/// Small, fast monitoring options: one-second polls, a poll budget that bounds every loop.
fn options(extra: Value) -> Value {
    let mut base = json!({"pollIntervalSeconds": 1, "maxMonitorHours": 1, "maxPolls": 180,
        "readyAfterConsecutivePolls": 2, "cdcLatencyTargetSeconds": 30});
    if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    base
}

#[tokio::test]
async fn full_load_only_succeeds_and_copies_every_row() {
    let Some(rig) = rig("lc_full", "full-load", SCHEMA).await else {
        return;
    };
    let state = rig
        .start_task(&rig.state(options(json!({}))))
        .await
        .expect("started");
    assert_eq!(
        state["results"]["startTask"]["action"],
        json!("start-replication")
    );
    assert_eq!(
        state["results"]["startTask"]["statusBefore"],
        json!("ready")
    );
    assert_eq!(state["monitor"]["nextPollSeconds"], json!(1));
    let (state, phases) = rig.poll_until(state, &[]).await;
    let progress = &state["results"]["progress"];
    assert_eq!(progress["phase"], json!("succeeded"), "{progress}");
    assert!(
        !phases.contains(&"full-load-complete".to_string()),
        "{phases:?}"
    );
    assert_eq!(
        progress["stopReason"],
        json!("Stop Reason FULL_LOAD_ONLY_FINISHED")
    );
    assert_eq!(count(&rig.dbs.target_url, "public.orders").await, 300);
    assert_eq!(count(&rig.dbs.target_url, "public.customers").await, 40);

    // Re-running the execution refuses: a second full load would duplicate every row.
    let err = rig
        .start_task(&rig.state(options(json!({}))))
        .await
        .expect_err("refused");
    assert_eq!(err.error_type, "Task.RestartRefused");
    assert!(
        err.error_message.contains("already finished"),
        "{}",
        err.error_message
    );
    assert_eq!(count(&rig.dbs.target_url, "public.orders").await, 300);
}

#[tokio::test]
async fn full_load_and_cdc_announces_the_load_replicates_changes_then_is_ready() {
    let Some(rig) = rig("lc_cdc", "full-load-and-cdc", SCHEMA).await else {
        return;
    };
    let state = rig
        .start_task(&rig.state(options(json!({}))))
        .await
        .expect("started");
    let (state, phases) = rig.poll_until(state, &["full-load-complete"]).await;
    assert_eq!(
        state["results"]["progress"]["phase"],
        json!("full-load-complete"),
        "{phases:?}"
    );
    assert!(
        phases[..phases.len() - 1].iter().all(|p| p == "loading"),
        "{phases:?}"
    );
    assert_eq!(count(&rig.dbs.target_url, "public.orders").await, 300);

    sql(
        &rig.dbs.source_url,
        "INSERT INTO public.orders SELECT g, 'late ' || g FROM generate_series(301, 350) g",
    )
    .await;
    rig.target_count_reaches("public.orders", 350).await;

    let (state, phases) = rig.poll_until(state, &[]).await;
    let progress = &state["results"]["progress"];
    assert_eq!(
        progress["phase"],
        json!("ready-for-cutover"),
        "{phases:?} {progress}"
    );
    assert!(
        !phases.contains(&"full-load-complete".to_string()),
        "announced once: {phases:?}"
    );
    assert!(
        progress["cdcLatencySourceSeconds"].is_number(),
        "{progress}"
    );
    assert!(
        progress["cdcLatencyTargetSeconds"].is_number(),
        "{progress}"
    );
    assert_eq!(state["monitor"]["consecutiveReadyPolls"], json!(2));
}

#[tokio::test]
async fn cdc_only_replicates_changes_and_never_announces_a_full_load() {
    let Some(rig) = rig("lc_cdconly", "cdc", SCHEMA).await else {
        return;
    };
    let state = rig
        .start_task(&rig.state(options(json!({}))))
        .await
        .expect("started");
    assert_eq!(
        state["results"]["startTask"]["action"],
        json!("start-replication")
    );
    // CDC copies changes from the start on; the seed rows stay on the source only.
    wait_for("the cdc task to run", Duration::from_secs(60), || async {
        (rig.status().await == "running").then_some(())
    })
    .await;
    sql(
        &rig.dbs.source_url,
        "INSERT INTO public.customers SELECT g, 'new ' || g FROM generate_series(1001, 1010) g",
    )
    .await;
    rig.target_count_reaches("public.customers", 10).await;
    let (state, phases) = rig.poll_until(state, &[]).await;
    assert_eq!(
        state["results"]["progress"]["phase"],
        json!("ready-for-cutover"),
        "{phases:?}"
    );
    assert!(
        phases
            .iter()
            .all(|p| p == "catching-up" || p == "ready-for-cutover"),
        "{phases:?}"
    );
    assert_eq!(count(&rig.dbs.target_url, "public.orders").await, 0);
}

#[tokio::test]
async fn a_table_whose_copy_fails_fails_the_task_naming_the_table() {
    // The target's orders table lacks the `note` column: its initial copy keeps failing.
    let target = "CREATE TABLE public.orders (id bigint PRIMARY KEY);
                  CREATE TABLE public.customers (id bigint PRIMARY KEY, name text NOT NULL);";
    let Some(rig) = rig("lc_tblerr", "full-load-and-cdc", target).await else {
        return;
    };
    let state = rig
        .start_task(&rig.state(options(json!({}))))
        .await
        .expect("started");
    let (state, phases) = rig.poll_until(state, &[]).await;
    let progress = &state["results"]["progress"];
    assert_eq!(progress["phase"], json!("failed"), "{phases:?} {progress}");
    assert_eq!(
        progress["errorTables"],
        json!(["public.orders"]),
        "{progress}"
    );
    assert!(
        progress["reason"]
            .as_str()
            .unwrap()
            .contains("public.orders"),
        "{progress}"
    );
}

#[tokio::test]
async fn a_task_failure_fails_with_dms_message() {
    let Some(rig) = rig("lc_fail", "full-load-and-cdc", SCHEMA).await else {
        return;
    };
    rig.dms
        .fault(json!({"taskArn": rig.task.task_arn, "pauseTableSync": true}))
        .await;
    let state = rig
        .start_task(&rig.state(options(json!({}))))
        .await
        .expect("started");
    let message = "ERROR: could not receive data from WAL stream: replication slot lost";
    rig.dms
        .fault(json!({"taskArn": rig.task.task_arn, "failTask": message}))
        .await;
    let (state, _) = rig.poll_until(state, &[]).await;
    let progress = &state["results"]["progress"];
    assert_eq!(progress["phase"], json!("failed"), "{progress}");
    assert_eq!(progress["lastFailureMessage"], json!(message));
    assert_eq!(progress["status"], json!("failed"));
}

#[tokio::test]
async fn a_task_stopped_during_cdc_is_resumed_without_duplicates() {
    let Some(rig) = rig("lc_resume", "full-load-and-cdc", SCHEMA).await else {
        return;
    };
    let state = rig
        .start_task(&rig.state(options(json!({}))))
        .await
        .expect("started");
    let (_, phases) = rig.poll_until(state, &["full-load-complete"]).await;
    assert_eq!(
        phases.last().map(String::as_str),
        Some("full-load-complete")
    );
    rig.stop_and_wait().await;
    sql(
        &rig.dbs.source_url,
        "INSERT INTO public.orders VALUES (9001, 'while stopped')",
    )
    .await;

    // The execution re-run: start-task resumes CDC; nothing is loaded twice.
    let state = rig
        .start_task(&rig.state(options(json!({}))))
        .await
        .expect("resumed");
    assert_eq!(
        state["results"]["startTask"]["action"],
        json!("resume-processing"),
        "{state}"
    );
    assert_eq!(
        state["results"]["startTask"]["statusBefore"],
        json!("stopped")
    );
    rig.target_count_reaches("public.orders", 301).await;
    let (state, phases) = rig.poll_until(state, &[]).await;
    assert_eq!(
        state["results"]["progress"]["phase"],
        json!("ready-for-cutover"),
        "{phases:?}"
    );
    assert_eq!(count(&rig.dbs.target_url, "public.orders").await, 301);

    // Re-running while it runs does nothing.
    let again = rig
        .start_task(&rig.state(options(json!({}))))
        .await
        .expect("no-op");
    assert_eq!(again["results"]["startTask"]["action"], json!("none"));
}

#[tokio::test]
async fn a_task_stopped_mid_load_is_refused_unless_reloaded_with_truncate() {
    let Some(rig) = rig("lc_reload", "full-load-and-cdc", SCHEMA).await else {
        return;
    };
    rig.dms
        .fault(json!({"taskArn": rig.task.task_arn, "pauseTableSync": true}))
        .await;
    rig.start_task(&rig.state(options(json!({}))))
        .await
        .expect("started");
    wait_for("the task to run", Duration::from_secs(60), || async {
        (rig.status().await == "running").then_some(())
    })
    .await;
    rig.stop_and_wait().await;
    // What a partly loaded table looks like on the target.
    sql(
        &rig.dbs.target_url,
        "INSERT INTO public.orders VALUES (1, 'partial'), (2, 'partial')",
    )
    .await;

    let err = rig
        .start_task(&rig.state(options(json!({}))))
        .await
        .expect_err("refused");
    assert_eq!(err.error_type, "Task.RestartRefused");
    assert!(
        err.error_message.contains("before its full load completed"),
        "{}",
        err.error_message
    );
    assert!(
        err.error_message.contains("truncateTarget"),
        "{}",
        err.error_message
    );
    let err = rig
        .start_task(&rig.state(options(json!({"startMode": "reload"}))))
        .await
        .expect_err("reload without truncate is refused");
    assert_eq!(err.error_type, "Task.RestartRefused");
    assert_eq!(rig.status().await, "stopped", "a refusal starts nothing");

    rig.dms
        .fault(json!({"taskArn": rig.task.task_arn, "pauseTableSync": false}))
        .await;
    let state = rig
        .start_task(&rig.state(options(
            json!({"startMode": "reload", "truncateTarget": true}),
        )))
        .await
        .expect("reloaded");
    let result = &state["results"]["startTask"];
    assert_eq!(result["action"], json!("reload-target"), "{result}");
    assert_eq!(
        result["truncatedTables"],
        json!(["public.customers", "public.orders"])
    );
    assert_eq!(result["truncatedTotal"], json!(2));
    let (_, phases) = rig.poll_until(state, &["full-load-complete"]).await;
    assert_eq!(
        phases.last().map(String::as_str),
        Some("full-load-complete"),
        "{phases:?}"
    );
    assert_eq!(count(&rig.dbs.target_url, "public.orders").await, 300);
    assert_eq!(count(&rig.dbs.target_url, "public.customers").await, 40);
}

#[tokio::test]
async fn throttling_is_aws_throttled_for_the_state_machine_to_retry() {
    let Some(rig) = rig("lc_throttle", "full-load", SCHEMA).await else {
        return;
    };
    // The SDK's standard retry makes 3 attempts per call itself: 6 throttles outlast two invocations.
    rig.dms
        .fault(json!({"operation": "DescribeReplicationTasks", "throttle": 6}))
        .await;
    let state = rig.state(options(json!({})));
    let err = rig.start_task(&state).await.expect_err("throttled");
    assert_eq!(err.error_type, "Aws.Throttled", "{}", err.error_message);
    let err = rig.poll_once(&state).await.expect_err("throttled");
    assert_eq!(err.error_type, "Aws.Throttled", "{}", err.error_message);
    // The retry the ASL makes then succeeds.
    let state = rig.start_task(&state).await.expect("retried");
    assert_eq!(
        state["results"]["startTask"]["action"],
        json!("start-replication")
    );
}

#[tokio::test]
async fn the_poll_budget_ends_monitoring_clearly() {
    let Some(rig) = rig("lc_budget", "full-load-and-cdc", SCHEMA).await else {
        return;
    };
    rig.dms
        .fault(json!({"taskArn": rig.task.task_arn, "pauseTableSync": true}))
        .await;
    let state = rig
        .start_task(&rig.state(options(json!({"maxPolls": 3}))))
        .await
        .expect("started");
    let (state, phases) = rig.poll_until(state, &[]).await;
    assert_eq!(phases.len(), 3, "{phases:?}");
    let progress = &state["results"]["progress"];
    assert_eq!(progress["phase"], json!("monitoring-ended"), "{progress}");
    assert!(
        progress["reason"].as_str().unwrap().contains("maxPolls"),
        "{progress}"
    );
    assert_eq!(state["monitor"]["polls"], json!(3));
}

#[tokio::test]
async fn a_wrong_task_arn_is_aws_not_found_naming_it() {
    let Some(rig) = rig("lc_notfound", "full-load", SCHEMA).await else {
        return;
    };
    let missing = "arn:aws:dms:us-east-1:123456789012:task:NOSUCHTASK0000000000000000";
    let state = rig.state_for(missing, options(json!({})));
    for err in [
        rig.start_task(&state).await.expect_err("not found"),
        rig.poll_once(&state).await.expect_err("not found"),
    ] {
        assert_eq!(err.error_type, "Aws.NotFound", "{}", err.error_message);
        assert!(err.error_message.contains(missing), "{}", err.error_message);
    }
}

#[tokio::test]
async fn another_running_execution_for_the_task_is_refused() {
    let Some(rig) = rig("lc_other", "full-load", SCHEMA).await else {
        return;
    };
    let config = rig.lab.aws_config().await;
    let sfn = aws_sdk_sfn::Client::new(&config);
    // A machine whose executions stay RUNNING whether or not moto interprets the ASL.
    let definition = json!({"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 3600, "End": true}}});
    let machine = sfn
        .create_state_machine()
        .name(unique_name("lifecycle-other"))
        .definition(definition.to_string())
        .role_arn("arn:aws:iam::123456789012:role/lab-sfn")
        .send()
        .await
        .expect("moto creates the state machine");
    let other = sfn
        .start_execution()
        .state_machine_arn(machine.state_machine_arn())
        .name(unique_name("other"))
        .input(json!({"replicationTaskArn": rig.task.task_arn}).to_string())
        .send()
        .await
        .expect("execution started");
    let start = lambda(
        &rig.lab,
        &rig.dms,
        "start-task",
        &[(
            "STATE_MACHINE_ARN".to_string(),
            machine.state_machine_arn().to_string(),
        )],
    )
    .await;
    let err = start
        .invoke(&json!({"state": rig.state(options(json!({})))}))
        .await
        .expect_err("refused");
    assert_eq!(err.error_type, "Task.RestartRefused");
    assert!(
        err.error_message.contains(other.execution_arn()),
        "{}",
        err.error_message
    );
    assert_eq!(rig.status().await, "ready", "nothing was started");

    // The execution itself (its own id in context) is not "another" one.
    let mut own = rig.state(options(json!({})));
    own["context"]["executionId"] = json!(other.execution_arn());
    let state = start
        .invoke(&json!({"state": own}))
        .await
        .expect("its own execution");
    assert_eq!(
        state["results"]["startTask"]["action"],
        json!("start-replication")
    );
    sfn.stop_execution()
        .execution_arn(other.execution_arn())
        .send()
        .await
        .expect("stopped");
}

/// DMS stops a task on an environmental error with RECOVERABLE_ERROR and restarts it itself. The first
/// poll that sees it says `recovering` (one email), monitoring goes on, and once DMS has restarted the
/// task the run continues to cutover readiness with every row there once.
#[tokio::test]
async fn a_recoverable_error_is_reported_once_and_the_run_continues_after_dms_restarts_the_task() {
    let Some(rig) = rig("lc_recover", "full-load-and-cdc", SCHEMA).await else {
        return;
    };
    let state = rig
        .start_task(&rig.state(options(json!({}))))
        .await
        .expect("started");
    let (state, _) = rig.poll_until(state, &["full-load-complete"]).await;
    assert_eq!(
        state["results"]["progress"]["phase"],
        json!("full-load-complete")
    );
    let message = "Error in replication: the connection to the source was lost (server closed the connection unexpectedly)";
    rig.dms
        .fault(json!({"taskArn": rig.task.task_arn, "recoverableError": message, "restartAfterSeconds": 4}))
        .await;
    let (state, phases) = rig.poll_until(state, &["recovering"]).await;
    let progress = &state["results"]["progress"];
    assert_eq!(progress["phase"], json!("recovering"), "{phases:?}");
    assert_eq!(
        progress["stopReason"],
        json!("Stop Reason RECOVERABLE_ERROR")
    );
    assert_eq!(progress["lastFailureMessage"], json!(message));
    assert!(progress["reason"]
        .as_str()
        .unwrap_or_default()
        .contains(message));

    sql(
        &rig.dbs.source_url,
        "INSERT INTO public.customers VALUES (1001, 'after-recovery');",
    )
    .await;
    let (state, phases) = rig.poll_until(state, &[]).await;
    assert_eq!(
        state["results"]["progress"]["phase"],
        json!("ready-for-cutover"),
        "{phases:?}"
    );
    assert!(
        !phases.iter().any(|p| p == "recovering"),
        "announced once: {phases:?}"
    );
    assert_eq!(state["monitor"].get("recoveringSinceEpochSeconds"), None);
    rig.target_count_reaches("public.customers", 41).await;
}

/// DMS never restarts the task (it gave up): once the stop has lasted longer than all of DMS's restart
/// attempts can (the bound from the stack's settings), monitoring fails with DMS's own message.
#[tokio::test]
async fn a_recoverable_stop_past_dms_retry_bound_fails_with_dms_message() {
    let Some(rig) = rig("lc_recover_gave_up", "full-load-and-cdc", SCHEMA).await else {
        return;
    };
    let state = rig
        .start_task(&rig.state(options(json!({}))))
        .await
        .expect("started");
    let (state, _) = rig.poll_until(state, &["full-load-complete"]).await;
    let message =
        "Error in replication: could not connect to the target: password authentication failed";
    rig.dms
        .fault(json!({"taskArn": rig.task.task_arn, "recoverableError": message}))
        .await;
    let (mut state, _) = rig.poll_until(state, &["recovering"]).await;
    let since = state["monitor"]["recoveringSinceEpochSeconds"]
        .as_i64()
        .expect("the stop is timed");
    // As if the polls had gone on past the bound (the stack's settings allow DMS about an hour and a half).
    let bound = dms_core::rules::recoverable_errors::STACK_SETTINGS.give_up_after_seconds() as i64;
    state["monitor"]["recoveringSinceEpochSeconds"] = json!(since - bound - 1);
    let state = rig.poll_once(&state).await.expect("poll-progress answers");
    let progress = &state["results"]["progress"];
    assert_eq!(progress["phase"], json!("failed"), "{progress}");
    let reason = progress["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(message) && reason.contains("given up"),
        "{reason}"
    );
    assert_eq!(progress["lastFailureMessage"], json!(message));
    assert_eq!(
        rig.status().await,
        "stopped",
        "DMS's task is left as DMS left it"
    );
}

/// The stack's bucket in moto, holding `plan` (if any) under the key start-task reads.
async fn plan_bucket(lab: &Lab, plan: Option<&Value>) -> String {
    let s3 = aws_sdk_s3::Client::new(&lab.aws_config().await);
    let bucket = unique_name("plan").to_lowercase();
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("moto creates the bucket");
    if let Some(plan) = plan {
        s3.put_object()
            .bucket(&bucket)
            .key("dms-plan.json")
            .body(plan.to_string().into_bytes().into())
            .send()
            .await
            .expect("moto stores the plan");
    }
    bucket
}

fn plan_for_orders(table: &str) -> Value {
    json!({"tableMappings": {"rules": [
        {"rule-type": "selection", "rule-id": "1", "rule-name": "include-1",
         "object-locator": {"schema-name": "public", "table-name": "%"}, "rule-action": "include"},
        {"rule-type": "table-settings", "rule-id": "2", "rule-name": "parallel-load-2",
         "object-locator": {"schema-name": "public", "table-name": table},
         "parallel-load": {"type": "ranges", "columns": ["id"], "boundaries": [["100"], ["200"]]}}]},
        "taskSettings": {"FullLoadSettings": {"MaxFullLoadSubTasks": 12},
                         "TargetMetadata": {"SupportLobs": true, "FullLobMode": false, "LimitedSizeLobMode": true, "LobMaxSize": 8}},
        "estimate": {}})
}

/// A console user's plan in the stack's bucket (S3 in moto): start-task applies it to the task with
/// ModifyReplicationTask (dms-local) and starts it; the task holds the plan's mappings and settings,
/// every row is copied, and the result names the plan for the task-started email.
#[tokio::test]
async fn a_plan_in_the_stacks_bucket_is_applied_then_the_task_starts() {
    let Some(rig) = rig("lc_plan", "full-load", SCHEMA).await else {
        return;
    };
    let plan = plan_for_orders("orders");
    let bucket = plan_bucket(&rig.lab, Some(&plan)).await;
    let start = lambda(
        &rig.lab,
        &rig.dms,
        "start-task",
        &[("PLAN_BUCKET".to_string(), bucket.clone())],
    )
    .await;
    let state = start
        .invoke(&json!({ "state": rig.state(options(json!({}))) }))
        .await
        .expect("applied and started");
    let applied = state["results"]["startTask"]["plan"].as_str().unwrap_or("");
    assert!(
        applied.contains(&format!("s3://{bucket}/dms-plan.json applied")),
        "{applied}"
    );
    assert_eq!(
        state["results"]["startTask"]["action"],
        json!("start-replication")
    );
    let task = rig
        .dms
        .sdk()
        .await
        .describe_replication_tasks()
        .filters(
            aws_sdk_databasemigration::types::Filter::builder()
                .name("replication-task-arn")
                .values(&rig.task.task_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("describe");
    let task = &task.replication_tasks()[0];
    let mappings: Value = serde_json::from_str(task.table_mappings().unwrap()).unwrap();
    assert_eq!(mappings, plan["tableMappings"]);
    let settings: Value = serde_json::from_str(task.replication_task_settings().unwrap()).unwrap();
    assert_eq!(settings["FullLoadSettings"]["MaxFullLoadSubTasks"], 12);
    assert_eq!(settings["TargetMetadata"]["LobMaxSize"], 8);
    let (state, _) = rig.poll_until(state, &[]).await;
    assert_eq!(state["results"]["progress"]["phase"], json!("succeeded"));
    assert_eq!(count(&rig.dbs.target_url, "public.orders").await, 300);
}

/// A plan naming a table the target lacks fails start-task with Plan.Invalid naming the table; the task
/// keeps its mappings and never starts.
#[tokio::test]
async fn a_plan_naming_a_missing_table_fails_before_the_task_starts() {
    let Some(rig) = rig("lc_badplan", "full-load", SCHEMA).await else {
        return;
    };
    let bucket = plan_bucket(&rig.lab, Some(&plan_for_orders("invoices"))).await;
    let start = lambda(
        &rig.lab,
        &rig.dms,
        "start-task",
        &[("PLAN_BUCKET".to_string(), bucket)],
    )
    .await;
    let err = start
        .invoke(&json!({ "state": rig.state(options(json!({}))) }))
        .await
        .expect_err("refused");
    assert_eq!(err.error_type, "Plan.Invalid", "{}", err.error_message);
    assert!(
        err.error_message
            .contains("public.invoices, which does not exist on the target"),
        "{}",
        err.error_message
    );
    assert_eq!(rig.status().await, "ready");

    // Without a plan file in the bucket, the task starts with its own mappings.
    let empty = plan_bucket(&rig.lab, None).await;
    let start = lambda(
        &rig.lab,
        &rig.dms,
        "start-task",
        &[("PLAN_BUCKET".to_string(), empty)],
    )
    .await;
    let state = start
        .invoke(&json!({ "state": rig.state(options(json!({}))) }))
        .await
        .expect("started without a plan");
    assert!(
        state["results"]["startTask"].get("plan").is_none(),
        "{state}"
    );
}
