//! One migration as the stack sets it up, for the state machine tests: the test's own databases, a
//! dms-local with an instance, both endpoints (credentials in moto Secrets Manager secrets) and one task,
//! the six built Lambdas with the environment the stack gives them, the topic with a queue reading it back,
//! and the real ASL in moto's interpreter. Every function is reached through a small proxy of the test's
//! own, so a test can make one step fail, time out, or answer outside the state contract.
//!
//! The source may sit behind a "security group": a loopback port that drops connections (a listen queue
//! that is full and never accepted, docs/lab.md) until moto's EC2 holds an ingress rule from the DMS
//! instance's group on the source's group, and then forwards to the real source.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use crate::dms_local::{all_public_tables, DmsLocal, LabTask};
use crate::lab::{binary, Lab, TestDatabases};
use crate::lambda::LocalLambda;
use crate::sfn::{function_arn, route_url, Finished, LocalStateMachine};
use crate::sns::{Delivered, TopicWithQueue};
use crate::unique_name;

/// The built functions and the ASL placeholder each one fills.
pub const FUNCTIONS: [(&str, &str); 6] = [
    ("notify", "NotifyFunctionArn"),
    ("connectivity-check", "ConnectivityCheckFunctionArn"),
    ("sg-autofix", "SgAutofixFunctionArn"),
    (
        "premigration-assessment",
        "PremigrationAssessmentFunctionArn",
    ),
    ("start-task", "StartTaskFunctionArn"),
    ("poll-progress", "PollProgressFunctionArn"),
];

/// How many source checks there are (docs/checks.md): all of them are `not_run` when the source is unreachable.
pub const SOURCE_CHECK_COUNT: usize = dms_core::pg::checks::ids::SOURCE.len();

/// The function premigration-assessment invokes for the source checks (not a state-machine step).
pub const SOURCE_CHECKS: &str = "source-checks";

/// The source checks' security group when the rig has no moto network (no rule is ever checked for it).
pub const LAB_SOURCE_CHECKS_GROUP: &str = "sg-lab-source-checks";

/// The source port the payload names when the source is behind a security group (Aurora's).
pub const AURORA_PORT: u16 = 5432;

pub const SCHEMA: &str = "CREATE TABLE public.orders (id bigint PRIMARY KEY, note text NOT NULL);
                          CREATE TABLE public.customers (id bigint PRIMARY KEY, name text NOT NULL);";
pub const SEED: &str = "INSERT INTO public.orders SELECT g, 'order ' || g FROM generate_series(1, 30) g;
                        INSERT INTO public.customers SELECT g, 'customer ' || g FROM generate_series(1, 5) g;";

/// How DMS reaches the source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SourceAccess {
    /// The lab cluster itself.
    Direct,
    /// A port whose connects time out, forever.
    Blocked,
    /// Blocked until moto's EC2 allows the DMS group on the source's group (an Aurora cluster in moto RDS);
    /// for the source checks, until it allows the source-checks group.
    SecurityGroup,
    /// DMS reaches the source, the in-VPC source checks never do (Aurora's group lacks their rule).
    SourceChecksBlocked,
}

pub struct RigSpec {
    pub name: &'static str,
    pub migration_type: &'static str,
    /// SQL on the target database (the schema, since the task is DO_NOTHING); the source gets SCHEMA + SEED.
    pub target_sql: &'static str,
    /// Gives premigration-assessment ASSESSMENT_ROLE_ARN / ASSESSMENT_BUCKET, so a DMS run is polled.
    pub dms_assessment: bool,
    pub source: SourceAccess,
    /// Gives start-task PLAN_BUCKET: the bucket (in moto S3) where it reads `dms-plan.json`.
    pub plan_bucket: Option<String>,
    /// Registers the way back's reverse task (the stack's FallbackReplicationTask, reading this slot on
    /// the target) and gives notify and start-task WAY_BACK_TASK_ARN and premigration-assessment
    /// ENABLE_FALLBACK=true, as the stack does with EnableFallback.
    pub way_back_slot: Option<String>,
}

impl RigSpec {
    pub fn new(name: &'static str, migration_type: &'static str) -> RigSpec {
        RigSpec {
            name,
            migration_type,
            target_sql: SCHEMA,
            dms_assessment: false,
            source: SourceAccess::Direct,
            plan_bucket: None,
            way_back_slot: None,
        }
    }
}

/// What the proxy does with a call instead of (or after) passing it to the function.
#[derive(Clone)]
pub enum Fault {
    /// A function error with this `errorType`, the function is not called.
    Fail {
        error_type: &'static str,
        message: &'static str,
    },
    /// Lambda's own function timeout: the call is abandoned after `seconds` and answered with the function
    /// error AWS gives a timed-out function (`Sandbox.Timedout`, "Task timed out after N seconds").
    Timeout { seconds: u64 },
    /// The function's answer, changed (a Lambda breaking the state contract).
    Rewrite(fn(&mut Value)),
}

struct Injected {
    function: String,
    /// Compared with the call's `event` (notify) or `action` (premigration-assessment); None: every call.
    selector: Option<String>,
    fault: Fault,
}

struct Proxy {
    invoke_urls: HashMap<String, String>,
    faults: Mutex<Vec<Injected>>,
    http: reqwest::Client,
}

pub struct MigrationRig {
    /// The source-checks function's security group (moto's with `SecurityGroup`, else a lab name).
    pub source_checks_group: String,
    pub lab: Lab,
    pub dms: DmsLocal,
    pub task: LabTask,
    /// The way back's reverse task, when the spec asked for it.
    pub way_back_task_arn: Option<String>,
    pub topic: TopicWithQueue,
    pub machine: LocalStateMachine,
    pub source_host: String,
    pub source_port: u16,
    proxy: Arc<Proxy>,
    _lambdas: Vec<LocalLambda>,
    _tasks: Vec<JoinHandle<()>>,
    /// Last: fields drop in order, and the databases can go only once dms-local has dropped its
    /// subscriptions.
    pub dbs: TestDatabases,
}

pub async fn sql(url: &str, statements: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("lab connect");
    tokio::spawn(conn);
    client.batch_execute(statements).await.expect(statements);
}

pub async fn count(url: &str, table: &str) -> i64 {
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

/// The endpoint's credentials as the stack stores them: a secret the endpoint names. `reach`: the loopback
/// port the source checks connect to instead of the cluster's (a gate, see the module comment).
async fn secret(lab: &Lab, dbs: &TestDatabases, side: &str, reach: Option<u16>) -> String {
    let upper = side.to_uppercase();
    let (host, port) = match reach {
        Some(port) => ("127.0.0.1".to_string(), port),
        None => (
            lab.var(&format!("{upper}_HOST")),
            lab.var(&format!("{upper}_PORT"))
                .parse::<u16>()
                .expect("a port"),
        ),
    };
    let value = json!({"host": host, "port": port,
        "username": lab.var("LAB_ADMIN_USER"), "password": lab.var("LAB_ADMIN_PASSWORD"), "dbname": dbs.name});
    aws_sdk_secretsmanager::Client::new(&lab.aws_config().await)
        .create_secret()
        .name(unique_name(&format!("sfn-{side}")))
        .secret_string(value.to_string())
        .send()
        .await
        .expect("moto creates the secret")
        .arn()
        .expect("a secret ARN")
        .to_string()
}

/// The moto side of a security-group scenario: the DMS instance's group, the source's group and an
/// Aurora cluster in it (sg-autofix finds the group through RDS by the cluster's endpoint).
struct Network {
    vpc_id: String,
    dms_group: String,
    source_checks_group: String,
    source_group: String,
    aurora_host: String,
}

async fn network(lab: &Lab) -> Network {
    let config = lab.aws_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let vpc_id = ec2
        .create_vpc()
        .cidr_block("10.77.0.0/16")
        .send()
        .await
        .expect("create VPC")
        .vpc()
        .and_then(|v| v.vpc_id())
        .expect("a VPC id")
        .to_string();
    let mut groups = Vec::new();
    for label in ["sfn-dms", "sfn-aurora", "sfn-checks"] {
        groups.push(
            ec2.create_security_group()
                .group_name(unique_name(label))
                .description(format!("state machine test: {label}"))
                .vpc_id(&vpc_id)
                .send()
                .await
                .expect("create security group")
                .group_id()
                .expect("a group id")
                .to_string(),
        );
    }
    let aurora_host = aws_sdk_rds::Client::new(&config)
        .create_db_cluster()
        .db_cluster_identifier(unique_name("sfn-aurora"))
        .engine("aurora-postgresql")
        .master_username("postgres")
        .master_user_password("lab-password-not-used")
        .vpc_security_group_ids(&groups[1])
        .send()
        .await
        .expect("create DB cluster")
        .db_cluster()
        .and_then(|c| c.endpoint())
        .expect("a cluster endpoint")
        .to_string();
    Network {
        vpc_id,
        dms_group: groups[0].clone(),
        source_group: groups[1].clone(),
        source_checks_group: groups[2].clone(),
        aurora_host,
    }
}

/// Whether `group` lets `from_group` in on tcp `port`.
async fn allows(ec2: &aws_sdk_ec2::Client, group: &str, from_group: &str, port: u16) -> bool {
    let Ok(out) = ec2.describe_security_groups().group_ids(group).send().await else {
        return false;
    };
    let port = i32::from(port);
    out.security_groups()
        .iter()
        .flat_map(|g| g.ip_permissions())
        .any(|p| {
            p.ip_protocol() == Some("tcp")
                && p.from_port().is_some_and(|f| f <= port)
                && p.to_port().is_some_and(|t| t >= port)
                && p.user_id_group_pairs()
                    .iter()
                    .any(|pair| pair.group_id() == Some(from_group))
        })
}

/// Resolves once moto's EC2 lets `from` into `group` on the Aurora port; never, if that takes longer than
/// any run (10 minutes), so a gate that never opens fails that run.
async fn admitted(ec2: aws_sdk_ec2::Client, group: String, from: String) {
    for _ in 0..2000 {
        if allows(&ec2, &group, &from, AURORA_PORT).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    std::future::pending::<()>().await;
}

/// A loopback port whose connects hang (a full listen queue nobody accepts) until `open` resolves; then
/// every connection is forwarded to `upstream`.
async fn gate(
    upstream: String,
    open: impl std::future::Future<Output = ()> + Send + 'static,
) -> (u16, JoinHandle<()>) {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket
        .bind("127.0.0.1:0".parse().expect("an address"))
        .expect("bind");
    let listener: TcpListener = socket.listen(1).expect("listen");
    let port = listener.local_addr().expect("an address").port();
    let mut fillers = Vec::new();
    for _ in 0..2 {
        if let Ok(Ok(stream)) = tokio::time::timeout(
            Duration::from_millis(500),
            TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        {
            fillers.push(stream);
        }
    }
    let task = tokio::spawn(async move {
        open.await;
        drop(fillers);
        while let Ok((mut inbound, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (port, task)
}

/// Small, fast options. maxMonitorHours is at least 1 and maxPolls at most 2500, so poll-progress spreads
/// its polls no closer than 2 s apart (time left / polls left).
pub fn options(extra: Value) -> Value {
    let mut base = json!({"pollIntervalSeconds": 1, "assessmentPollSeconds": 1, "maxMonitorHours": 1,
        "maxPolls": 2500, "readyAfterConsecutivePolls": 2, "cdcLatencyTargetSeconds": 30});
    if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    base
}

async fn proxy_invoke(
    State(proxy): State<Arc<Proxy>>,
    Path(function): Path<String>,
    body: Bytes,
) -> (StatusCode, [(&'static str, &'static str); 1], Vec<u8>) {
    const JSON: [(&str, &str); 1] = [("content-type", "application/json")];
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let selector = request["event"]
        .as_str()
        .or_else(|| request["action"].as_str())
        .map(str::to_string);
    let fault = proxy
        .faults
        .lock()
        .expect("fault list")
        .iter()
        .find(|f| f.function == function && (f.selector.is_none() || f.selector == selector))
        .map(|f| f.fault.clone());
    let function_error = |error_type: &str, message: String| {
        let body = json!({"errorType": error_type, "errorMessage": message});
        // cargo lambda watch's shape of a function error, which the lab's router maps to Lambda's.
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            JSON,
            body.to_string().into_bytes(),
        )
    };
    if let Some(Fault::Fail {
        error_type,
        message,
    }) = &fault
    {
        return function_error(error_type, message.to_string());
    }
    let Some(url) = proxy.invoke_urls.get(&function) else {
        return function_error("Rig.UnknownFunction", format!("no function {function}"));
    };
    let call = proxy.http.post(url).body(body.to_vec()).send();
    let response = match &fault {
        Some(Fault::Timeout { seconds }) => {
            match tokio::time::timeout(Duration::from_secs(*seconds), call).await {
                Ok(response) => response,
                Err(_) => {
                    return function_error(
                        "Sandbox.Timedout",
                        format!("Task timed out after {seconds}.00 seconds"),
                    )
                }
            }
        }
        _ => call.await,
    };
    let Ok(response) = response else {
        return function_error("Lambda.Unknown", format!("{function} did not answer"));
    };
    let status = response.status();
    let mut bytes = response.bytes().await.unwrap_or_default().to_vec();
    if let (Some(Fault::Rewrite(edit)), true) = (&fault, status.is_success()) {
        if let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) {
            edit(&mut value);
            bytes = value.to_string().into_bytes();
        }
    }
    let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    (status, JSON, bytes)
}

impl MigrationRig {
    /// Everything for one migration; None when the lab is down (and not required).
    pub async fn start(spec: RigSpec) -> Option<MigrationRig> {
        Self::start_tuned(spec, |_| {}).await
    }

    /// As `start`, with the test's copy of the ASL rewritten by `tune` (never the file itself).
    pub async fn start_tuned(spec: RigSpec, tune: impl FnOnce(&mut Value)) -> Option<MigrationRig> {
        let lab = Lab::get().await?;
        let dbs = lab.fresh_databases(spec.name).await;
        sql(&dbs.source_url, &format!("{SCHEMA} {SEED}")).await;
        sql(&dbs.target_url, spec.target_sql).await;
        Some(Self::assemble(spec, lab, dbs, &all_public_tables(), tune).await)
    }

    /// On databases the caller prepared (schema and rows already in place; `spec.target_sql` is not run),
    /// with the task selecting `table_mappings` (e.g. the stack's own), and the real ASL unchanged.
    pub async fn start_on(
        spec: RigSpec,
        lab: Lab,
        dbs: TestDatabases,
        table_mappings: &Value,
    ) -> MigrationRig {
        Self::assemble(spec, lab, dbs, table_mappings, |_| {}).await
    }

    async fn assemble(
        spec: RigSpec,
        lab: Lab,
        dbs: TestDatabases,
        table_mappings: &Value,
        tune: impl FnOnce(&mut Value),
    ) -> MigrationRig {
        let dms = DmsLocal::start(&lab).await;
        let mut tasks = Vec::new();

        let lab_source = format!("{}:{}", lab.var("SOURCE_HOST"), lab.var("SOURCE_PORT"));
        // (instance, payload host and port, DMS endpoint port, where the source checks reach the source,
        // the source-checks group)
        let lab_checks_group = LAB_SOURCE_CHECKS_GROUP.to_string();
        let (instance_arn, source_host, source_port, endpoint_port, checks_port, checks_group) =
            match spec.source {
                SourceAccess::Direct => {
                    let port: u16 = lab.var("SOURCE_PORT").parse().expect("a port");
                    let arn = dms.register_instance("Lab-Instance").await;
                    (
                        arn,
                        lab.var("SOURCE_HOST"),
                        port,
                        port,
                        None,
                        lab_checks_group,
                    )
                }
                SourceAccess::Blocked => {
                    let (port, task) = gate(lab_source, std::future::pending()).await;
                    tasks.push(task);
                    let arn = dms.register_instance("Lab-Instance").await;
                    (
                        arn,
                        "127.0.0.1".to_string(),
                        port,
                        port,
                        None,
                        lab_checks_group,
                    )
                }
                SourceAccess::SourceChecksBlocked => {
                    let port: u16 = lab.var("SOURCE_PORT").parse().expect("a port");
                    let (blocked, task) = gate(lab_source, std::future::pending()).await;
                    tasks.push(task);
                    let arn = dms.register_instance("Lab-Instance").await;
                    (
                        arn,
                        lab.var("SOURCE_HOST"),
                        port,
                        port,
                        Some(blocked),
                        lab_checks_group,
                    )
                }
                SourceAccess::SecurityGroup => {
                    let net = network(&lab).await;
                    let ec2 = aws_sdk_ec2::Client::new(&lab.aws_config().await);
                    let open_dms =
                        admitted(ec2.clone(), net.source_group.clone(), net.dms_group.clone());
                    let (port, task) = gate(lab_source.clone(), open_dms).await;
                    tasks.push(task);
                    let open_checks = admitted(
                        ec2,
                        net.source_group.clone(),
                        net.source_checks_group.clone(),
                    );
                    let (checks_port, task) = gate(lab_source, open_checks).await;
                    tasks.push(task);
                    let arn = dms
                        .try_control(
                            "instances",
                            &json!({"identifier": "Lab-Instance", "securityGroupIds": [net.dms_group],
                                "vpcId": net.vpc_id, "publiclyAccessible": false}),
                        )
                        .await
                        .expect("instance registered")["arn"]
                        .as_str()
                        .expect("an instance ARN")
                        .to_string();
                    (
                        arn,
                        net.aurora_host,
                        AURORA_PORT,
                        port,
                        Some(checks_port),
                        net.source_checks_group,
                    )
                }
            };
        let mut endpoints = Vec::new();
        for side in ["source", "target"] {
            let mut endpoint = DmsLocal::lab_endpoint_spec(&lab, &dbs, side);
            let reach = if side == "source" { checks_port } else { None };
            endpoint["secretId"] = json!(secret(&lab, &dbs, side, reach).await);
            if side == "source"
                && matches!(
                    spec.source,
                    SourceAccess::Blocked | SourceAccess::SecurityGroup
                )
            {
                endpoint["host"] = json!("127.0.0.1");
                endpoint["port"] = json!(endpoint_port);
            }
            endpoints.push(dms.register_endpoint(&endpoint).await);
        }
        let task_arn = dms
            .register_task(
                &format!("task-{}", dbs.name.replace('_', "-")),
                &instance_arn,
                &endpoints[0],
                &endpoints[1],
                spec.migration_type,
                table_mappings,
            )
            .await;
        let task = LabTask {
            instance_arn,
            source_endpoint_arn: endpoints[0].clone(),
            target_endpoint_arn: endpoints[1].clone(),
            task_arn,
        };
        let way_back_task_arn = match &spec.way_back_slot {
            Some(slot) => Some(
                dms.register_reverse_task(&lab, &dbs, slot, table_mappings)
                    .await,
            ),
            None => None,
        };

        let config = lab.aws_config().await;
        let topic = TopicWithQueue::create(&config, spec.name).await;
        let aliases: Vec<String> = FUNCTIONS
            .iter()
            .map(|(function, _)| unique_name(&format!("sfn-{function}")))
            .collect();
        let substitutions: Vec<(&str, String)> = FUNCTIONS
            .iter()
            .zip(&aliases)
            .map(|((_, placeholder), alias)| (*placeholder, function_arn(&lab, alias)))
            .collect();
        // The machine first: start-task needs its ARN to look for other running executions.
        let machine = LocalStateMachine::create(&lab, spec.name, &substitutions, tune).await;

        let mut lambdas = Vec::new();
        let mut invoke_urls = HashMap::new();
        // The in-VPC source checks: no AWS environment at all, reached only through the Invoke API.
        let source_checks_alias = unique_name("sfn-source-checks");
        let source_checks = LocalLambda::start(
            &PathBuf::from(lab.var("CARGO_LAMBDA")),
            SOURCE_CHECKS,
            &binary(SOURCE_CHECKS),
            &[],
        )
        .await;
        route_url(&lab, &source_checks_alias, &source_checks.invoke_url()).await;
        lambdas.push(source_checks);
        for (function, _) in FUNCTIONS {
            let mut env = lab.aws_env();
            env.extend(dms.env());
            let extra: Vec<(&str, String)> = match function {
                "notify" => vec![
                    ("TOPIC_ARN", topic.topic_arn.clone()),
                    (
                        "WAY_BACK_TASK_ARN",
                        way_back_task_arn.clone().unwrap_or_default(),
                    ),
                ],
                "connectivity-check" => vec![("CONNECTION_POLL_INTERVAL_MS", "200".into())],
                "sg-autofix" => vec![
                    ("STACK_NAME", unique_name("sfn-stack")),
                    ("SOURCE_CHECKS_SECURITY_GROUP", checks_group.clone()),
                ],
                "premigration-assessment" => {
                    let mut extra = vec![
                        (
                            "SOURCE_CHECKS_FUNCTION",
                            function_arn(&lab, &source_checks_alias),
                        ),
                        ("SOURCE_CHECKS_SECURITY_GROUP", checks_group.clone()),
                        // The stack sets it from EnableFallback: with the way back, its checks run.
                        ("ENABLE_FALLBACK", way_back_task_arn.is_some().to_string()),
                        ("AWS_ENDPOINT_URL_LAMBDA", lab.var("LAMBDA_ROUTER_URL")),
                    ];
                    if spec.dms_assessment {
                        extra.push((
                            "ASSESSMENT_ROLE_ARN",
                            "arn:aws:iam::123456789012:role/lab-assessment".into(),
                        ));
                        extra.push(("ASSESSMENT_BUCKET", "lab-assessment-results".into()));
                    }
                    extra
                }
                "start-task" => {
                    let mut env = vec![("STATE_MACHINE_ARN", machine.arn.clone())];
                    env.extend(spec.plan_bucket.iter().map(|b| ("PLAN_BUCKET", b.clone())));
                    env.extend(
                        way_back_task_arn
                            .iter()
                            .map(|arn| ("WAY_BACK_TASK_ARN", arn.clone())),
                    );
                    env
                }
                _ => vec![],
            };
            env.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
            let lambda = LocalLambda::start(
                &PathBuf::from(lab.var("CARGO_LAMBDA")),
                function,
                &binary(function),
                &env,
            )
            .await;
            invoke_urls.insert(function.to_string(), lambda.invoke_url());
            lambdas.push(lambda);
        }
        let proxy = Arc::new(Proxy {
            invoke_urls,
            faults: Mutex::new(Vec::new()),
            http: reqwest::Client::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy port");
        let proxy_port = listener.local_addr().expect("an address").port();
        let app = Router::new()
            .route("/fn/{function}", post(proxy_invoke))
            .with_state(proxy.clone());
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
        for ((function, _), alias) in FUNCTIONS.iter().zip(&aliases) {
            route_url(
                &lab,
                alias,
                &format!("http://127.0.0.1:{proxy_port}/fn/{function}"),
            )
            .await;
        }
        MigrationRig {
            source_checks_group: checks_group,
            lab,
            dbs,
            dms,
            task,
            way_back_task_arn,
            topic,
            machine,
            source_host,
            source_port,
            proxy,
            _lambdas: lambdas,
            _tasks: tasks,
        }
    }

    /// Every call of `function` (whose `event`/`action` is `selector`, when given) meets `fault`.
    pub fn inject(&self, function: &str, selector: Option<&str>, fault: Fault) {
        self.proxy
            .faults
            .lock()
            .expect("fault list")
            .push(Injected {
                function: function.to_string(),
                selector: selector.map(str::to_string),
                fault,
            });
    }

    pub fn clear_faults(&self) {
        self.proxy.faults.lock().expect("fault list").clear();
    }

    /// The input the stack's output StepFunctionsPayloadTemplate holds for this migration, with `options`.
    pub fn payload(&self, options: Value) -> Value {
        json!({
            "replicationInstanceArn": self.task.instance_arn,
            "sourceEndpointArn": self.task.source_endpoint_arn,
            "targetEndpointArn": self.task.target_endpoint_arn,
            "replicationTaskArn": self.task.task_arn,
            "sourceEndpointHost": self.source_host,
            "sourcePort": self.source_port,
            "options": options
        })
    }

    /// Starts an execution with `input`, waits (bounded) for its end, then reads every email it sent:
    /// the queue is read until nothing more arrives for a few seconds, so a late second email is seen.
    pub async fn run(&self, input: &Value, limit: Duration) -> (Finished, Vec<Delivered>) {
        let execution = self.machine.start("run", input).await;
        let finished = self.machine.wait(&execution, limit).await;
        let emails = self.topic.receive(50, Duration::from_secs(4)).await;
        (finished, emails)
    }
}

/// The `event` attribute of each email, in order.
pub fn events(emails: &[Delivered]) -> Vec<String> {
    emails
        .iter()
        .map(|e| {
            e.attributes["event"]["Value"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}
