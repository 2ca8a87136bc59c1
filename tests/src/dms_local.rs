//! The built `dms-local` binary (the project's DMS stand-in) for one test: spawned on a free port with the
//! lab's AWS environment (CloudWatch latency goes to moto), resources registered through its control API.
//! Dropping it sends SIGTERM so it drops the publications, subscriptions and slots it created, then kills it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use dms_core::aws::dms::{Dms, DmsClient, TaskInfo};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::lab::{binary, Lab, TestDatabases};
use crate::lambda::free_port;

pub struct DmsLocal {
    child: Child,
    port: u16,
    http: reqwest::Client,
    region: String,
}

/// A replication instance, both endpoints and one task on a test's own databases.
#[derive(Debug, Clone)]
pub struct LabTask {
    pub instance_arn: String,
    pub source_endpoint_arn: String,
    pub target_endpoint_arn: String,
    pub task_arn: String,
}

/// Selects every table of schema `public`.
pub fn all_public_tables() -> Value {
    json!({"rules": [{"rule-type": "selection", "rule-id": "1", "rule-name": "all-public",
        "object-locator": {"schema-name": "public", "table-name": "%"}, "rule-action": "include"}]})
}

impl DmsLocal {
    pub async fn start(lab: &Lab) -> DmsLocal {
        let port = free_port();
        let child = Command::new(binary("dms-local"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(lab.aws_env())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("dms-local starts");
        let local = DmsLocal {
            child,
            port,
            http: reqwest::Client::new(),
            region: lab.var("AWS_REGION"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let health = local
                .http
                .get(format!("{}/control/health", local.endpoint_url()))
                .send()
                .await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return local;
            }
            assert!(
                Instant::now() < deadline,
                "dms-local did not answer /control/health on port {port} within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment a Lambda needs to reach this dms-local (besides the lab's AWS environment).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![(
            "AWS_ENDPOINT_URL_DATABASE_MIGRATION_SERVICE".to_string(),
            self.endpoint_url(),
        )]
    }

    /// POSTs to the control API; the Err holds the error text dms-local answered.
    pub async fn try_control(&self, path: &str, body: &Value) -> Result<Value, String> {
        let response = self
            .http
            .post(format!("{}/control/{path}", self.endpoint_url()))
            .json(body)
            .send()
            .await
            .expect("the control API answers");
        let ok = response.status().is_success();
        let text = response.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(json!({"error": text}));
        if ok {
            Ok(value)
        } else {
            Err(value["error"].as_str().unwrap_or_default().to_string())
        }
    }

    async fn control(&self, path: &str, body: &Value) -> Value {
        self.try_control(path, body)
            .await
            .unwrap_or_else(|e| panic!("control/{path} refused {body}: {e}"))
    }

    pub async fn register_instance(&self, identifier: &str) -> String {
        let body = json!({"identifier": identifier, "securityGroupIds": ["sg-0123456789abcdef0"],
            "vpcId": "vpc-0123456789abcdef0", "publiclyAccessible": false});
        self.control("instances", &body).await["arn"]
            .as_str()
            .expect("an instance ARN")
            .to_string()
    }

    /// `spec` is the control API's endpoint object (README.md of dms-local).
    pub async fn register_endpoint(&self, spec: &Value) -> String {
        self.control("endpoints", spec).await["arn"]
            .as_str()
            .expect("an endpoint ARN")
            .to_string()
    }

    /// The lab cluster of `role` (`source` or `target`) and the test's database, as admin.
    pub fn lab_endpoint_spec(lab: &Lab, dbs: &TestDatabases, role: &str) -> Value {
        let prefix = if role == "source" { "SOURCE" } else { "TARGET" };
        let engine = if role == "source" {
            "aurora-postgresql"
        } else {
            "postgres"
        };
        json!({
            "identifier": format!("{role}-{}", dbs.name.replace('_', "-")),
            "endpointType": role,
            "engine": engine,
            "host": lab.var(&format!("{prefix}_HOST")),
            "port": lab.var(&format!("{prefix}_PORT")).parse::<u16>().expect("a port"),
            "database": dbs.name,
            "username": lab.var("LAB_ADMIN_USER"),
            "password": lab.var("LAB_ADMIN_PASSWORD"),
            "sslMode": "none",
        })
    }

    /// The way back's reverse task (docs/fallback.md) over a lab pair: the lab target (PlanetScale) as a
    /// source reading `slot` through test_decoding, the lab source (Aurora) as the target, CDC only.
    pub async fn register_reverse_task(
        &self,
        lab: &Lab,
        dbs: &TestDatabases,
        slot: &str,
        table_mappings: &Value,
    ) -> String {
        let instance = self.register_instance("lab-instance").await;
        let mut planetscale = DmsLocal::lab_endpoint_spec(lab, dbs, "target");
        planetscale["endpointType"] = json!("source");
        planetscale["identifier"] = json!(format!("ps-{}", dbs.name.replace('_', "-")));
        planetscale["slotName"] = json!(slot);
        planetscale["pluginName"] = json!("test-decoding");
        let mut aurora = DmsLocal::lab_endpoint_spec(lab, dbs, "source");
        aurora["endpointType"] = json!("target");
        aurora["identifier"] = json!(format!("aurora-{}", dbs.name.replace('_', "-")));
        let source = self.register_endpoint(&planetscale).await;
        let target = self.register_endpoint(&aurora).await;
        self.register_task(
            &format!("back-{}", slot.replace('_', "-")),
            &instance,
            &source,
            &target,
            "cdc",
            table_mappings,
        )
        .await
    }

    pub async fn register_task(
        &self,
        identifier: &str,
        instance_arn: &str,
        source_endpoint_arn: &str,
        target_endpoint_arn: &str,
        migration_type: &str,
        table_mappings: &Value,
    ) -> String {
        let body = json!({"identifier": identifier, "instanceArn": instance_arn,
            "sourceEndpointArn": source_endpoint_arn, "targetEndpointArn": target_endpoint_arn,
            "migrationType": migration_type, "tableMappings": table_mappings});
        self.register_task_from(body).await
    }

    async fn register_task_from(&self, body: Value) -> String {
        self.control("tasks", &body).await["arn"]
            .as_str()
            .expect("a task ARN")
            .to_string()
    }

    /// Instance, lab endpoints on `dbs` and a task of `migration_type` in one call.
    pub async fn register_lab_task(
        &self,
        lab: &Lab,
        dbs: &TestDatabases,
        migration_type: &str,
        table_mappings: &Value,
    ) -> LabTask {
        self.register_lab_task_with(lab, dbs, migration_type, table_mappings, None)
            .await
    }

    /// As `register_lab_task`, the task created with these `ReplicationTaskSettings` (the stack's batch
    /// apply, a LOB size).
    pub async fn register_lab_task_with_settings(
        &self,
        lab: &Lab,
        dbs: &TestDatabases,
        migration_type: &str,
        table_mappings: &Value,
        settings: &Value,
    ) -> LabTask {
        self.register_lab_task_with(lab, dbs, migration_type, table_mappings, Some(settings))
            .await
    }

    async fn register_lab_task_with(
        &self,
        lab: &Lab,
        dbs: &TestDatabases,
        migration_type: &str,
        table_mappings: &Value,
        settings: Option<&Value>,
    ) -> LabTask {
        let instance_arn = self.register_instance("Lab-Instance").await;
        let source_endpoint_arn = self
            .register_endpoint(&Self::lab_endpoint_spec(lab, dbs, "source"))
            .await;
        let target_endpoint_arn = self
            .register_endpoint(&Self::lab_endpoint_spec(lab, dbs, "target"))
            .await;
        let mut body = json!({"identifier": format!("task-{}", dbs.name.replace('_', "-")),
            "instanceArn": instance_arn, "sourceEndpointArn": source_endpoint_arn,
            "targetEndpointArn": target_endpoint_arn, "migrationType": migration_type,
            "tableMappings": table_mappings});
        if let Some(settings) = settings {
            body["settings"] = Value::String(settings.to_string());
        }
        let task_arn = self.register_task_from(body).await;
        LabTask {
            instance_arn,
            source_endpoint_arn,
            target_endpoint_arn,
            task_arn,
        }
    }

    /// A fault through the control API (README.md of dms-local), e.g.
    /// `json!({"operation": "StartReplicationTask", "throttle": 3})`.
    pub async fn fault(&self, body: Value) {
        self.control("faults", &body).await;
    }

    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(self.endpoint_url())
            .region(aws_config::Region::new(self.region.clone()))
            .credentials_provider(aws_sdk_sns::config::Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "dms-local",
            ))
            .load()
            .await
    }

    /// The SDK client pointed at this dms-local.
    pub async fn sdk(&self) -> aws_sdk_databasemigration::Client {
        aws_sdk_databasemigration::Client::new(&self.sdk_config().await)
    }

    /// dms-core's DMS adapter pointed at this dms-local.
    pub async fn dms_client(&self) -> DmsClient {
        DmsClient::new(self.sdk().await)
    }

    /// The task's status as DescribeReplicationTasks reports it ("" for a task it does not list).
    pub async fn task_status(&self, task_arn: &str) -> String {
        self.sdk()
            .await
            .describe_replication_tasks()
            .send()
            .await
            .expect("DescribeReplicationTasks")
            .replication_tasks()
            .iter()
            .find(|t| t.replication_task_arn() == Some(task_arn))
            .and_then(|t| t.status())
            .unwrap_or_default()
            .to_string()
    }
}

impl Drop for DmsLocal {
    /// SIGTERM first: dms-local then drops its subscriptions (whose apply workers and slots would
    /// otherwise outlive the test); kill_on_drop ends it if it takes longer than 15 s.
    fn drop(&mut self) {
        let Some(pid) = self.child.id() else {
            return;
        };
        let signalled = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !signalled {
            return;
        }
        for _ in 0..150 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Polls `probe` every 300 ms until it returns Some, up to `limit`; panics naming `what` otherwise.
/// Waits until dms-local has published both CDC latency metrics for the task to CloudWatch in moto, with
/// the dimensions DMS uses (the task's and the lab instance's identifiers).
pub async fn wait_for_latency_metrics(lab: &Lab, task_arn: &str, limit: Duration) {
    let task_id = task_arn.rsplit(':').next().expect("id").to_string();
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&lab.aws_config().await);
    for metric in ["CDCLatencySource", "CDCLatencyTarget"] {
        wait_for(&format!("{metric} in moto"), limit, || async {
            let listed = cloudwatch
                .list_metrics()
                .namespace("AWS/DMS")
                .metric_name(metric)
                .dimensions(
                    aws_sdk_cloudwatch::types::DimensionFilter::builder()
                        .name("ReplicationTaskIdentifier")
                        .value(&task_id)
                        .build(),
                )
                .dimensions(
                    aws_sdk_cloudwatch::types::DimensionFilter::builder()
                        .name("ReplicationInstanceIdentifier")
                        .value("lab-instance")
                        .build(),
                )
                .send()
                .await
                .expect("ListMetrics");
            (!listed.metrics().is_empty()).then_some(())
        })
        .await;
    }
}

/// Describes the task until `done` holds for it (at most `limit`), and returns that reading.
pub async fn wait_for_task(
    dms: &impl Dms,
    task_arn: &str,
    what: &str,
    limit: Duration,
    done: impl Fn(&TaskInfo) -> bool,
) -> TaskInfo {
    wait_for(what, limit, || async {
        let task = dms.describe_task(task_arn).await.expect("describe task");
        done(&task).then_some(task)
    })
    .await
}

/// The task's full load reports 100%.
pub fn full_load_done(task: &TaskInfo) -> bool {
    task.stats
        .as_ref()
        .is_some_and(|s| s.full_load_progress_percent == 100)
}

pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what} after {} s",
            limit.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
