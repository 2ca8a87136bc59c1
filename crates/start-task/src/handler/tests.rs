use std::sync::Mutex;

use dms_core::aws::dms::{EndpointInfo, StartType, TableStat, TaskInfo, TaskStats};
use dms_core::pg::PgConnectOptions;
use serde_json::{json, Value};
use test_doubles::{FakeDms, StateFixture, TARGET_ARN, TASK_ARN};

use super::*;

const EXEC: &str = "arn:aws:states:us-east-1:123456789012:execution:m:run-1";
const MAPPINGS: &str = r#"{"rules":[
  {"rule-type":"selection","rule-id":"1","rule-name":"public","object-locator":{"schema-name":"public","table-name":"%"},"rule-action":"include"},
  {"rule-type":"selection","rule-id":"2","rule-name":"no-tmp","object-locator":{"schema-name":"public","table-name":"tmp%"},"rule-action":"exclude"}]}"#;

/// DMS with this task, no table statistics yet, and the target endpoint without a secret.
fn dms(task: TaskInfo) -> FakeDms {
    FakeDms::default()
        .task(task)
        .tables(vec![])
        .endpoint(target_endpoint(None))
}

fn target_endpoint(secret_id: Option<&str>) -> EndpointInfo {
    EndpointInfo {
        arn: TARGET_ARN.into(),
        server: Some("target.example.com".into()),
        port: Some(5432),
        database: Some("app".into()),
        username: Some("dms".into()),
        ssl_mode: Some("require".into()),
        secret_id: secret_id.map(str::to_string),
        ..EndpointInfo::default()
    }
}

struct FakeSecrets;

impl SecretStore for FakeSecrets {
    async fn secret_string(&self, secret_id: &str) -> Result<String, StepError> {
        assert_eq!(secret_id, "target-secret");
        Ok(r#"{"host":"db.example.com","port":5432,"username":"migrator","password":"hunter2","dbname":"app"}"#.into())
    }
}

#[derive(Default)]
struct FakeExecutions {
    others: Vec<String>,
    asked: Mutex<Vec<(String, String)>>,
}

impl Executions for FakeExecutions {
    async fn others_running_for_task(
        &self,
        task_arn: &str,
        own_execution: &str,
    ) -> Result<Vec<String>, StepError> {
        self.asked
            .lock()
            .unwrap()
            .push((task_arn.to_string(), own_execution.to_string()));
        Ok(self.others.clone())
    }
}

#[derive(Default)]
struct FakeTarget {
    catalog: Vec<(String, String)>,
    truncated: Mutex<Vec<Vec<(String, String)>>>,
    connected_as: Mutex<Vec<String>>,
}

impl TargetTables for FakeTarget {
    async fn list(&self, target: &PgConnectOptions) -> Result<Vec<(String, String)>, StepError> {
        self.connected_as.lock().unwrap().push(target.describe());
        Ok(self.catalog.clone())
    }
    async fn truncate(
        &self,
        _target: &PgConnectOptions,
        tables: &[(String, String)],
    ) -> Result<(), StepError> {
        self.truncated.lock().unwrap().push(tables.to_vec());
        Ok(())
    }
}

fn pair(schema: &str, table: &str) -> (String, String) {
    (schema.to_string(), table.to_string())
}

fn task(status: &str, stop: Option<&str>, migration: &str, has_run: bool) -> TaskInfo {
    TaskInfo {
        arn: TASK_ARN.into(),
        status: status.into(),
        stop_reason: stop.map(str::to_string),
        migration_type: migration.into(),
        table_mappings: Some(MAPPINGS.into()),
        target_endpoint_arn: TARGET_ARN.into(),
        started_at_epoch_seconds: has_run.then_some(1_000.0),
        ..TaskInfo::default()
    }
}

/// The task's documents as DMS holds them; ModifyReplicationTask replaces them.
#[derive(Default)]
struct FakeModify {
    documents: Mutex<dms_core::aws::dms::TaskDocuments>,
    modified: Mutex<u32>,
}

impl DmsModify for FakeModify {
    async fn task_documents(
        &self,
        _task_arn: &str,
    ) -> Result<dms_core::aws::dms::TaskDocuments, StepError> {
        Ok(self.documents.lock().unwrap().clone())
    }
    async fn modify_task(
        &self,
        task_arn: &str,
        table_mappings: Option<&str>,
        settings: &str,
    ) -> Result<(), StepError> {
        assert_eq!(task_arn, TASK_ARN);
        *self.modified.lock().unwrap() += 1;
        *self.documents.lock().unwrap() = dms_core::aws::dms::TaskDocuments {
            table_mappings: table_mappings.map(str::to_string),
            settings: Some(settings.to_string()),
        };
        Ok(())
    }
}

#[derive(Default)]
struct FakePlans {
    file: Option<Vec<u8>>,
}

impl PlanSource for FakePlans {
    fn location(&self) -> Option<String> {
        Some("s3://bucket/dms-plan.json".into())
    }
    async fn read(&self) -> Result<Option<Vec<u8>>, StepError> {
        Ok(self.file.clone())
    }
}

type TestDeps = Deps<FakeDms, FakeSecrets, FakeExecutions, FakeTarget, FakeModify, FakePlans>;

fn deps(dms: FakeDms) -> TestDeps {
    Deps {
        dms,
        secrets: FakeSecrets,
        executions: FakeExecutions::default(),
        target_tables: FakeTarget {
            catalog: vec![
                pair("public", "orders"),
                pair("public", "tmp_import"),
                pair("audit", "log"),
                pair("public", "Line Items"),
            ],
            ..FakeTarget::default()
        },
        modify: FakeModify::default(),
        plans: FakePlans::default(),
        way_back_task_arn: None,
    }
}

fn with_plan(dms: FakeDms, plan: Value) -> TestDeps {
    let mut d = deps(dms);
    d.plans.file = Some(plan.to_string().into_bytes());
    d
}

fn a_plan(segmented_table: &str) -> Value {
    json!({"tableMappings": {"rules": [
        {"rule-type": "selection", "rule-id": "1", "rule-name": "include-1",
         "object-locator": {"schema-name": "public", "table-name": "%"}, "rule-action": "include"},
        {"rule-type": "table-settings", "rule-id": "2", "rule-name": "parallel-load-2",
         "object-locator": {"schema-name": "public", "table-name": segmented_table},
         "parallel-load": {"type": "ranges", "columns": ["id"], "boundaries": [["1000"], ["2000"]]}}]},
        "taskSettings": {"FullLoadSettings": {"MaxFullLoadSubTasks": 12}},
        "estimate": {}})
}

/// A fresh start with a plan file: it is applied (ModifyReplicationTask), then the task starts and the
/// result names the plan for the task-started email; a re-run finds the plan applied and does not modify
/// the task again.
#[tokio::test]
async fn a_plan_file_is_applied_before_a_fresh_start_and_only_once() {
    let d = with_plan(
        dms(task("ready", None, "full-load-and-cdc", false))
            .endpoint(target_endpoint(Some("target-secret"))),
        a_plan("orders"),
    );
    let out = handle(input(json!({})), &d)
        .await
        .expect("applied and started");
    assert_eq!(*d.modify.modified.lock().unwrap(), 1);
    assert_eq!(d.dms.started(), vec![StartType::StartReplication]);
    let plan = out["results"]["startTask"]["plan"].as_str().unwrap();
    assert_eq!(
        plan,
        "s3://bucket/dms-plan.json applied: 2 table mapping rules, 1 table(s) loaded in parallel-load ranges, MaxFullLoadSubTasks 12"
    );
    let held: Value = serde_json::from_str(
        d.modify
            .documents
            .lock()
            .unwrap()
            .table_mappings
            .as_deref()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(held, a_plan("orders")["tableMappings"]);

    handle(input(json!({})), &d).await.expect("re-run");
    assert_eq!(*d.modify.modified.lock().unwrap(), 1, "not modified again");
}

/// A plan that names a table the target lacks fails before anything is modified, emptied or started.
#[tokio::test]
async fn a_plan_naming_a_missing_table_fails_before_anything_starts() {
    let d = with_plan(
        dms(task(
            "stopped",
            Some("Stop Reason FULL_LOAD_ONLY_FINISHED"),
            "full-load",
            true,
        ))
        .endpoint(target_endpoint(Some("target-secret"))),
        a_plan("invoices"),
    );
    let err = handle(
        input(json!({"startMode": "reload", "truncateTarget": true})),
        &d,
    )
    .await
    .expect_err("refused");
    assert_eq!(err.name, ErrorName::PlanInvalid);
    assert!(
        err.message
            .contains("public.invoices, which does not exist on the target"),
        "{}",
        err.message
    );
    assert_eq!(*d.modify.modified.lock().unwrap(), 0);
    assert!(d.target_tables.truncated.lock().unwrap().is_empty());
    assert!(d.dms.started().is_empty());
}

/// A resume continues where the task stopped: the plan is left alone and the email says why.
#[tokio::test]
async fn a_resumed_task_keeps_its_mappings_and_says_the_plan_was_not_applied() {
    let mut stats = TaskStats {
        full_load_progress_percent: 100,
        tables_loaded: 2,
        full_load_finish_epoch_seconds: Some(2_000.0),
        ..TaskStats::default()
    };
    stats.full_load_start_epoch_seconds = Some(1_000.0);
    let mut t = task(
        "stopped",
        Some("Stop Reason STOPPED_BY_USER"),
        "full-load-and-cdc",
        true,
    );
    t.stats = Some(stats);
    let d = with_plan(dms(t), a_plan("orders"));
    let out = handle(input(json!({})), &d).await.expect("resumed");
    assert_eq!(d.dms.started(), vec![StartType::ResumeProcessing]);
    assert_eq!(*d.modify.modified.lock().unwrap(), 0);
    let plan = out["results"]["startTask"]["plan"].as_str().unwrap();
    assert!(plan.contains("not applied: the task resumes"), "{plan}");
}

fn input(options: Value) -> Value {
    StateFixture::default()
        .with("options", options)
        .execution(EXEC, 1_000)
        .input()
}

#[tokio::test]
async fn a_task_that_never_ran_is_started_and_the_poll_interval_set() {
    let d = deps(dms(task("ready", None, "full-load-and-cdc", false)));
    let out = handle(input(json!({"pollIntervalSeconds": 7})), &d)
        .await
        .unwrap();
    assert_eq!(
        out["results"]["startTask"]["action"],
        json!("start-replication")
    );
    assert_eq!(out["results"]["startTask"]["statusBefore"], json!("ready"));
    assert_eq!(
        out["results"]["startTask"]["reason"],
        json!("the task has never run")
    );
    assert_eq!(out["monitor"]["nextPollSeconds"], json!(7));
    assert_eq!(d.dms.started(), vec![StartType::StartReplication]);
    assert!(d.target_tables.truncated.lock().unwrap().is_empty());
    assert_eq!(
        *d.executions.asked.lock().unwrap(),
        vec![(TASK_ARN.to_string(), EXEC.to_string())],
        "the own execution is excluded by id"
    );
}

#[tokio::test]
async fn a_task_stopped_during_cdc_is_resumed() {
    let d = deps(dms(stopped_in_cdc()));
    let out = handle(input(json!({})), &d).await.unwrap();
    assert_eq!(
        out["results"]["startTask"]["action"],
        json!("resume-processing")
    );
    assert_eq!(d.dms.started(), vec![StartType::ResumeProcessing]);
    assert_eq!(
        d.dms.calls_to("table_statistics"),
        0,
        "the task's own stats sufficed"
    );
}

#[tokio::test]
async fn table_statistics_decide_when_the_task_stats_cannot() {
    let done = TableStat {
        schema: "public".into(),
        table: "orders".into(),
        state: "Table completed".into(),
        ..TableStat::default()
    };
    let d = deps(
        dms(task(
            "stopped",
            Some("Stop Reason NORMAL"),
            "full-load-and-cdc",
            true,
        ))
        .tables(vec![done.clone()]),
    );
    let out = handle(input(json!({})), &d).await.unwrap();
    assert_eq!(
        out["results"]["startTask"]["action"],
        json!("resume-processing")
    );
    assert_eq!(d.dms.calls_to("table_statistics"), 1);

    let loading = TableStat {
        state: "Full load".into(),
        ..done
    };
    let d = deps(
        dms(task(
            "stopped",
            Some("Stop Reason NORMAL"),
            "full-load-and-cdc",
            true,
        ))
        .tables(vec![loading]),
    );
    let err = handle(input(json!({})), &d).await.unwrap_err();
    assert_eq!(err.name, ErrorName::TaskRestartRefused);
    assert!(
        err.message.contains("before its full load completed"),
        "{}",
        err.message
    );
    assert!(d.dms.started().is_empty());
}

#[tokio::test]
async fn running_and_starting_need_nothing() {
    for status in ["running", "starting"] {
        let d = deps(dms(task(status, None, "full-load-and-cdc", true)));
        let out = handle(input(json!({})), &d).await.unwrap();
        assert_eq!(out["results"]["startTask"]["action"], json!("none"));
        assert!(d.dms.started().is_empty());
    }
}

#[tokio::test]
async fn transitional_states_are_dms_invalid_state() {
    for status in [
        "creating",
        "modifying",
        "stopping",
        "testing",
        "moving",
        "deleting",
    ] {
        let d = deps(dms(task(status, None, "full-load-and-cdc", true)));
        let err = handle(input(json!({})), &d).await.unwrap_err();
        assert_eq!(err.name, ErrorName::DmsInvalidState, "{status}");
        assert!(err.message.contains(status), "{}", err.message);
        assert!(d.dms.started().is_empty());
    }
}

#[tokio::test]
async fn failed_and_finished_tasks_are_refused_with_the_reason() {
    let mut failed = task(
        "failed",
        Some("Stop Reason FATAL_ERROR"),
        "full-load-and-cdc",
        true,
    );
    failed.last_failure_message = Some("Last Error Table 'public.orders' was errored".into());
    for (t, words) in [
        (failed, "Table 'public.orders' was errored"),
        (
            task(
                "stopped",
                Some("Stop Reason FULL_LOAD_ONLY_FINISHED"),
                "full-load",
                true,
            ),
            "already finished",
        ),
    ] {
        let d = deps(dms(t));
        let err = handle(input(json!({})), &d).await.unwrap_err();
        assert_eq!(err.name, ErrorName::TaskRestartRefused);
        assert!(err.message.contains(words), "{}", err.message);
        assert!(err.message.contains(TASK_ARN), "{}", err.message);
        let diag: lambda_runtime::Diagnostic = err.into();
        assert_eq!(diag.error_type, "Task.RestartRefused");
        assert!(d.dms.started().is_empty());
    }
}

#[tokio::test]
async fn reload_with_truncate_empties_exactly_the_mapped_tables_then_reloads() {
    let d = deps(
        dms(task(
            "stopped",
            Some("Stop Reason NORMAL"),
            "full-load-and-cdc",
            true,
        ))
        .endpoint(target_endpoint(Some("target-secret"))),
    );
    let out = handle(
        input(json!({"startMode": "reload", "truncateTarget": true})),
        &d,
    )
    .await
    .unwrap();
    assert_eq!(
        out["results"]["startTask"]["action"],
        json!("reload-target")
    );
    assert_eq!(
        out["results"]["startTask"]["truncatedTables"],
        json!(["public.orders", "public.\"Line Items\""])
    );
    assert_eq!(out["results"]["startTask"]["truncatedTotal"], json!(2));
    assert_eq!(
        *d.target_tables.truncated.lock().unwrap(),
        vec![vec![pair("public", "orders"), pair("public", "Line Items")]]
    );
    assert_eq!(
        *d.target_tables.connected_as.lock().unwrap(),
        vec!["migrator@db.example.com:5432/app".to_string()],
        "credentials come from the endpoint's secret"
    );
    assert_eq!(d.dms.started(), vec![StartType::ReloadTarget]);
    assert!(!out.to_string().contains("hunter2"));
}

#[tokio::test]
async fn a_long_truncate_list_is_capped_in_the_state() {
    let mut d = deps(
        dms(task("failed", None, "full-load", true))
            .endpoint(target_endpoint(Some("target-secret"))),
    );
    d.target_tables.catalog = (0..45)
        .map(|i| pair("public", &format!("t{i:02}")))
        .collect();
    let out = handle(
        input(json!({"startMode": "reload", "truncateTarget": true})),
        &d,
    )
    .await
    .unwrap();
    assert_eq!(
        out["results"]["startTask"]["truncatedTables"]
            .as_array()
            .unwrap()
            .len(),
        20
    );
    assert_eq!(out["results"]["startTask"]["truncatedTotal"], json!(45));
    assert_eq!(d.target_tables.truncated.lock().unwrap()[0].len(), 45);
}

#[tokio::test]
async fn without_a_secret_the_password_is_unavailable_and_nothing_starts() {
    let d = deps(
        dms(task(
            "stopped",
            Some("Stop Reason NORMAL"),
            "full-load",
            true,
        ))
        .endpoint(target_endpoint(None)),
    );
    let err = handle(
        input(json!({"startMode": "reload", "truncateTarget": true})),
        &d,
    )
    .await
    .unwrap_err();
    assert_eq!(err.name, ErrorName::ConfigInvalid);
    assert!(err.message.contains("password"), "{}", err.message);
    assert!(d.dms.started().is_empty());
    assert!(d.target_tables.truncated.lock().unwrap().is_empty());
}

#[tokio::test]
async fn renaming_mappings_or_no_mapped_table_refuse_before_truncating() {
    let mut t = task("stopped", Some("Stop Reason NORMAL"), "full-load", true);
    t.table_mappings = Some(r#"{"rules":[
      {"rule-type":"selection","rule-name":"s","object-locator":{"schema-name":"public","table-name":"%"},"rule-action":"include"},
      {"rule-type":"transformation","rule-name":"r","rule-target":"table","object-locator":{"schema-name":"public","table-name":"orders"},"rule-action":"add-prefix","value":"x_"}]}"#.into());
    let d = deps(dms(t).endpoint(target_endpoint(Some("target-secret"))));
    let options = json!({"startMode": "reload", "truncateTarget": true});
    let err = handle(input(options.clone()), &d).await.unwrap_err();
    assert_eq!(err.name, ErrorName::TaskRestartRefused);
    assert!(
        err.message.contains("r: add-prefix table"),
        "{}",
        err.message
    );

    let mut d = deps(
        dms(task(
            "stopped",
            Some("Stop Reason NORMAL"),
            "full-load",
            true,
        ))
        .endpoint(target_endpoint(Some("target-secret"))),
    );
    d.target_tables.catalog = vec![pair("other", "x")];
    let err = handle(input(options), &d).await.unwrap_err();
    assert_eq!(err.name, ErrorName::TaskRestartRefused);
    assert!(err.message.contains("schema apply"), "{}", err.message);
    assert!(d.target_tables.truncated.lock().unwrap().is_empty());
    assert!(d.dms.started().is_empty());
}

#[tokio::test]
async fn another_running_execution_for_the_task_is_refused() {
    let mut d = deps(dms(task("ready", None, "full-load-and-cdc", false)));
    d.executions.others = vec!["arn:aws:states:us-east-1:123456789012:execution:m:other".into()];
    let err = handle(input(json!({})), &d).await.unwrap_err();
    assert_eq!(err.name, ErrorName::TaskRestartRefused);
    assert!(err.message.contains("execution:m:other"), "{}", err.message);
    assert!(d.dms.started().is_empty());
}

#[tokio::test]
async fn aws_errors_keep_their_names() {
    let d = deps(FakeDms::default().describe_task_fails(StepError::new(
        ErrorName::AwsNotFound,
        format!("{TASK_ARN} does not exist"),
    )));
    let err = handle(input(json!({})), &d).await.unwrap_err();
    assert_eq!(err.name, ErrorName::AwsNotFound);
    assert!(err.message.contains(TASK_ARN));

    let d = deps(
        dms(task("ready", None, "cdc", false))
            .start_fails(StepError::new(ErrorName::AwsThrottled, "slow down")),
    );
    let err = handle(input(json!({})), &d).await.unwrap_err();
    assert_eq!(err.name, ErrorName::AwsThrottled);
}

#[tokio::test]
async fn a_bad_envelope_is_payload_invalid() {
    let d = deps(FakeDms::default());
    for bad in [
        json!([1]),
        json!({"state": {"replicationTaskArn": 5}}),
        json!({}),
    ] {
        let err = handle(bad, &d).await.unwrap_err();
        assert_eq!(err.name, ErrorName::PayloadInvalid);
    }
}

const WAY_BACK_ARN: &str = "arn:aws:dms:us-east-1:123456789012:task:WAYBACK";

fn reverse(status: &str, has_run: bool) -> TaskInfo {
    TaskInfo {
        arn: WAY_BACK_ARN.into(),
        status: status.into(),
        migration_type: "cdc".into(),
        started_at_epoch_seconds: has_run.then_some(2_000.0),
        ..TaskInfo::default()
    }
}

/// A task stopped in CDC (after its full load): on its own it is resumed.
fn stopped_in_cdc() -> TaskInfo {
    let mut t = task(
        "stopped",
        Some("Stop Reason NORMAL"),
        "full-load-and-cdc",
        true,
    );
    t.stats = Some(TaskStats {
        full_load_finish_epoch_seconds: Some(2_000.0),
        ..TaskStats::default()
    });
    t
}

fn with_way_back(dms: FakeDms) -> TestDeps {
    let mut d = deps(dms.endpoint(target_endpoint(Some("target-secret"))));
    d.way_back_task_arn = Some(WAY_BACK_ARN.into());
    d
}

/// While the way back's reverse task runs, the forward task is neither resumed nor reloaded (every write
/// would go round between the two databases), and one already running is reported: nothing is started.
#[tokio::test]
async fn nothing_starts_the_forward_task_while_the_way_back_runs() {
    for options in [
        json!({}),
        json!({"startMode": "reload", "truncateTarget": true}),
    ] {
        let d = with_way_back(dms(stopped_in_cdc()).other_task(reverse("running", true)));
        let err = handle(input(options.clone()), &d).await.unwrap_err();
        assert_eq!(err.name, ErrorName::TaskRestartRefused, "{options}");
        assert!(
            err.message.contains(WAY_BACK_ARN)
                && err.message.contains("go round between the two databases")
                && err.message.contains("dms-migrate rollback"),
            "{}",
            err.message
        );
        assert!(d.dms.started().is_empty(), "{options}");
        assert!(d.target_tables.truncated.lock().unwrap().is_empty());
    }
}

/// After a cutover whose way back has run and stopped (a rollback), resuming the forward task would apply
/// the way back's replayed writes to PlanetScale again: refused; a reload with the target emptied starts
/// over.
#[tokio::test]
async fn after_the_way_back_ran_only_a_reload_with_truncate_starts_the_forward_task() {
    let forward = || dms(stopped_in_cdc()).other_task(reverse("stopped", true));
    let d = with_way_back(forward());
    let err = handle(input(json!({})), &d).await.unwrap_err();
    assert_eq!(err.name, ErrorName::TaskRestartRefused);
    assert!(
        err.message.contains("has run") && err.message.contains("truncateTarget"),
        "{}",
        err.message
    );
    assert!(d.dms.started().is_empty());

    let d = with_way_back(forward());
    handle(
        input(json!({"startMode": "reload", "truncateTarget": true})),
        &d,
    )
    .await
    .expect("a reload starts over");
    assert_eq!(d.dms.started(), vec![StartType::ReloadTarget]);
}

/// A way back that never ran (the stack created it, no cutover yet) changes nothing.
#[tokio::test]
async fn a_way_back_that_never_ran_does_not_hold_the_forward_task() {
    let d = with_way_back(
        dms(task("ready", None, "full-load-and-cdc", false)).other_task(reverse("ready", false)),
    );
    handle(input(json!({})), &d).await.expect("started");
    assert_eq!(d.dms.started(), vec![StartType::StartReplication]);
}
