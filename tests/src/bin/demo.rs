//! `make demo`: the whole workflow of docs/architecture.md against the lab, as a user would run it. The sample schema
//! (tests/fixtures/demo_*.sql) on a source database of its own; `dms-migrate preflight` and `schema apply`;
//! the real state machine in moto with the six built Lambdas and a DMS task in dms-local (the rig of the
//! state machine tests) started with the payload the stack outputs, every email printed as it arrives while
//! the source keeps taking writes; then `dms-migrate cutover --freeze` while the application (a writer
//! committing every 50 ms as a role of its own) writes to the source until the freeze and to the target
//! from the switch instruction on, with the way back's reverse task replaying the target's writes to the
//! source; then `dms-migrate rollback --freeze`, the writer back on the source from the switch-back
//! instruction; both measured outages, every committed row on the other side, and `verify` (sides
//! swapped) equal. Each step is
//! numbered; any failure ends the demo with exit code 1. The lab password never reaches the output: every
//! text shown is checked for it first.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sfn::types::ExecutionStatus;
use dms_core::rules::state::Options;
use integration_tests::lab::{binary, workspace_root, Lab};
use integration_tests::rig::{options, MigrationRig, RigSpec};
use integration_tests::sns::Delivered;
use integration_tests::template;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

/// Rows in the largest tables (app.orders, app.order_items); the others are fractions of it.
const DEMO_ROWS: u32 = 200_000;
/// From the start of the execution to the ready-for-cutover email.
const EXECUTION_LIMIT: Duration = Duration::from_secs(8 * 60);
/// The deferred-objects file `schema apply` writes and `constraints apply` reads, relative to the
/// workspace root (where the demo runs every command, so the commands print it as typed).
const DEFERRED_FILE: &str = "target/demo/deferred.sql";
const COMMAND_LIMIT: Duration = Duration::from_secs(180);
const WRITE_EVERY: Duration = Duration::from_millis(50);
/// A writer that is never stopped gives up after this many attempts (10 minutes at one every 50 ms).
const MAX_WRITES: u64 = 12_000;
/// The application's role on the source (one per demo database): the freeze makes it read-only.
const APP_PASSWORD: &str = "demo-app";
/// How long the writer writes after a switch instruction before the demo goes on.
const AFTER_SWITCH: Duration = Duration::from_secs(2);
/// The rollback's outage goal at demo size, measured by the writer.
const ROLLBACK_GOAL: Duration = Duration::from_secs(10);

type Step<T> = Result<T, String>;

#[tokio::main]
async fn main() {
    let started = Instant::now();
    let Some(lab) = Lab::get().await else {
        println!("demo: the lab is not running; `make demo` starts it");
        std::process::exit(2);
    };
    let secret = lab.var("LAB_ADMIN_PASSWORD");
    match run(lab).await {
        Ok(verified) => println!(
            "\nDemo finished in {} s. {verified}",
            started.elapsed().as_secs()
        ),
        Err(why) => {
            println!("\nDEMO FAILED: {}", redact(&why, &secret));
            std::process::exit(1);
        }
    }
}

fn redact(text: &str, secret: &str) -> String {
    text.replace(secret, "********")
}

/// Prints `text`, refusing (a failed step) if it holds the lab password.
fn show(text: &str, secret: &str) -> Step<()> {
    print!("{}", redact(text, secret));
    if text.contains(secret) {
        return Err("the text above held the lab password (masked here): a secret leaked".into());
    }
    Ok(())
}

fn heading(number: u32, title: &str) {
    println!("\n{number}. {title}");
    println!("{}", "=".repeat(title.len() + 3));
}

async fn connect(url: &str) -> Step<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| format!("connecting to the lab: {e}"))?;
    tokio::spawn(connection);
    Ok(client)
}

/// The lab URL without its password: the commands get it from PGPASSWORD, as docs/cli.md recommends.
fn without_password(url: &str, secret: &str) -> String {
    url.replacen(&format!(":{secret}@"), "@", 1)
}

fn fixture(name: &str) -> Step<String> {
    let path = workspace_root().join("tests/fixtures").join(name);
    std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))
}

struct Demo {
    aws_env: Vec<(String, String)>,
    /// The target database with the password, for the demo's own SQL.
    target_admin_url: String,
    secret: String,
    source_url: String,
    target_url: String,
}

struct Ran {
    code: i32,
    stdout: String,
}

impl Demo {
    /// The built `dms-migrate` with the connection in PGSOURCE/PGTARGET/PGPASSWORD and the AWS endpoints
    /// of the lab (`extra`: dms-local's). Prints the command and everything it wrote.
    async fn dms_migrate(&self, args: &[&str], extra: &[(String, String)]) -> Step<Ran> {
        println!("\n$ dms-migrate {}", args.join(" "));
        let (code, stdout, stderr) = self.spawn(args, extra).await?;
        show(&indent(&stdout), &self.secret)?;
        show(&indent(&stderr), &self.secret)?;
        println!("  (exit {code})");
        Ok(Ran { code, stdout })
    }

    /// Exit code, stdout and stderr of the built binary, bounded by COMMAND_LIMIT.
    async fn spawn(
        &self,
        args: &[&str],
        extra: &[(String, String)],
    ) -> Step<(i32, String, String)> {
        let child = tokio::process::Command::new(binary("dms-migrate"))
            .args(args)
            .current_dir(workspace_root())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::temp_dir())
            .env("PGSOURCE", &self.source_url)
            .env("PGTARGET", &self.target_url)
            .env("PGPASSWORD", &self.secret)
            .envs(self.aws_env.iter().cloned())
            .envs(extra.iter().cloned())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(COMMAND_LIMIT, child)
            .await
            .map_err(|_| {
                format!(
                    "dms-migrate {} ran longer than {} s",
                    args[0],
                    COMMAND_LIMIT.as_secs()
                )
            })?
            .map_err(|e| format!("running dms-migrate: {e}"))?;
        Ok((
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ))
    }

    /// As `dms_migrate`, each stdout line printed (and given to `on_line`) as it comes.
    async fn dms_migrate_streaming(
        &self,
        args: &[&str],
        extra: &[(String, String)],
        mut on_line: impl FnMut(&str),
    ) -> Step<Ran> {
        println!("\n$ dms-migrate {}", args.join(" "));
        let mut child = tokio::process::Command::new(binary("dms-migrate"))
            .args(args)
            .current_dir(workspace_root())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::temp_dir())
            .env("PGSOURCE", &self.source_url)
            .env("PGTARGET", &self.target_url)
            .env("PGPASSWORD", &self.secret)
            .envs(self.aws_env.iter().cloned())
            .envs(extra.iter().cloned())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("running dms-migrate: {e}"))?;
        let (Some(out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
            return Err("dms-migrate's output is not piped".into());
        };
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text).await;
            text
        });
        let mut stdout = String::new();
        let read = async {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                on_line(&line);
                show(&format!("  {line}\n"), &self.secret)?;
                stdout.push_str(&line);
                stdout.push('\n');
            }
            child
                .wait()
                .await
                .map_err(|e| format!("waiting for dms-migrate: {e}"))
        };
        let status = tokio::time::timeout(COMMAND_LIMIT, read)
            .await
            .map_err(|_| {
                format!(
                    "dms-migrate {} ran longer than {} s",
                    args[0],
                    COMMAND_LIMIT.as_secs()
                )
            })??;
        show(&indent(&stderr.await.unwrap_or_default()), &self.secret)?;
        let code = status.code().unwrap_or(-1);
        println!("  (exit {code})");
        Ok(Ran { code, stdout })
    }

    /// As `dms_migrate`, printing only the command and stderr (the caller shows stdout its own way).
    async fn run_quietly(&self, args: &[&str], extra: &[(String, String)]) -> Step<Ran> {
        println!("\n$ dms-migrate {}", args.join(" "));
        let (code, stdout, stderr) = self.spawn(args, extra).await?;
        show(&indent(&stderr), &self.secret)?;
        if stdout.contains(&self.secret) {
            return Err(format!(
                "dms-migrate {}'s output held the lab password",
                args[0]
            ));
        }
        Ok(Ran { code, stdout })
    }

    async fn require_ok(&self, args: &[&str], extra: &[(String, String)]) -> Step<Ran> {
        let ran = self.dms_migrate(args, extra).await?;
        if ran.code != 0 {
            return Err(format!("dms-migrate {} exited {}", args[0], ran.code));
        }
        Ok(ran)
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// The whole workflow; Ok holds verify's verdict in one line.
async fn run(lab: Lab) -> Step<String> {
    let secret = lab.var("LAB_ADMIN_PASSWORD");
    heading(
        1,
        "The source: the sample shop schema in a database of the demo's own",
    );
    let dbs = lab.fresh_databases("demo").await;
    let timer = Instant::now();
    let source = connect(&dbs.source_url).await?;
    let load = format!(
        "{}\nSET demo.rows = '{DEMO_ROWS}';\n{}\nANALYZE;",
        fixture("demo_schema.sql")?,
        fixture("demo_data.sql")?
    );
    tokio::time::timeout(COMMAND_LIMIT, source.batch_execute(&load))
        .await
        .map_err(|_| format!("loading the sample took over {} s", COMMAND_LIMIT.as_secs()))?
        .map_err(|e| format!("loading the sample schema: {e}"))?;
    println!(
        "Loaded tests/fixtures/demo_schema.sql and demo_data.sql (demo.rows = {DEMO_ROWS}) into database {} in {:.1} s:",
        dbs.name,
        timer.elapsed().as_secs_f32()
    );
    println!("schemas app, \"Billing\" and audit; mixed-case names, sequences and identity columns, jsonb, bytea, foreign keys, triggers, a view.");
    print_counts(&source).await?;
    drop(source);

    if let Some(dir) = workspace_root().join(DEFERRED_FILE).parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let demo = Demo {
        aws_env: lab.aws_env(),
        target_admin_url: dbs.target_url.clone(),
        source_url: without_password(&dbs.source_url, &secret),
        target_url: without_password(&dbs.target_url, &secret),
        secret,
    };
    prepare_target(&demo).await?;

    heading(
        3,
        "The state machine with the payload the stack outputs, while the source keeps taking writes",
    );
    let mut spec = RigSpec::new("demo", "full-load-and-cdc");
    spec.dms_assessment = true;
    spec.plan_bucket = Some(upload_plan(&demo, &lab).await?);
    // The stack's reverse task (FallbackReplicationTask), reading the way back's slot. Slot names are per
    // cluster, and the lab's target cluster is shared: one name per demo database.
    spec.way_back_slot = Some(way_back_slot(&dbs.name));
    let stack = template::load(&template::template_path());
    let mappings: Value = stack
        .pointer("/Resources/ReplicationTask/Properties/TableMappings")
        .and_then(Value::as_str)
        .ok_or("the template has no ReplicationTask TableMappings")
        .and_then(|text| {
            serde_json::from_str(text).map_err(|_| "the template's TableMappings is not JSON")
        })?;
    let admin_urls = [lab.var("SOURCE_URL"), lab.var("TARGET_URL")];
    let rig = MigrationRig::start_on(spec, lab, dbs, &mappings).await;
    println!("A DMS task in dms-local (the project's DMS stand-in: real logical replication between the lab clusters) with the stack's table mappings (every schema but the system ones), both endpoints' credentials in Secrets Manager secrets (moto), the six built Lambdas and statemachine.asl.json in moto's Step Functions.");
    let app_url = app_role(&rig.lab, &rig.dbs.source_url, &rig.dbs.name).await?;
    // The application's role on the target too: `rollback --freeze` makes it read-only there.
    let app_target_url = app_role(&rig.lab, &demo.target_admin_url, &rig.dbs.name).await?;
    let writer = Writer::start(app_url, app_target_url);
    let outcome = migrate_and_cut_over(&demo, &rig, &writer).await;
    let stopped = writer.finish().await;
    let verified = outcome?;
    stopped?;

    next_steps();
    println!("\n(The lab's side of deleting the stack: dms-local stops, and the demo's databases are dropped.)");
    // The lab's equivalent of deleting the stack: dms-local drops its subscription, then the databases go.
    let name = rig.dbs.name.clone();
    drop(rig);
    for url in admin_urls {
        let admin = connect(&url).await?;
        // Two calls: DROP DATABASE cannot run inside the implicit transaction of a multi-statement batch.
        let _ = admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await;
        let _ = admin
            .batch_execute(&format!("DROP ROLE IF EXISTS \"{name}_app\""))
            .await;
    }
    Ok(verified)
}

/// Segments of this many rows: the sample's largest tables get parallel-load ranges (a real database
/// keeps the default, 10,000,000).
const DEMO_SEGMENT_ROWS: &str = "50000";

/// `dms-migrate plan` on the source, shown; its JSON uploaded as `dms-plan.json` to the stack's bucket (a
/// bucket in moto S3), where start-task applies it before starting the task. Returns the bucket.
async fn upload_plan(demo: &Demo, lab: &Lab) -> Step<String> {
    println!(
        "\nSizing the DMS task from the source's statistics (docs/console.md, Applying a plan):"
    );
    let args = ["plan", "--max-segment-rows", DEMO_SEGMENT_ROWS];
    let shown = demo.dms_migrate(&args, &[]).await?;
    if shown.code != 0 {
        return Err(format!("dms-migrate plan exited {}", shown.code));
    }
    let json = demo
        .run_quietly(&[&args[..], &["--format", "json"]].concat(), &[])
        .await?;
    if json.code != 0 {
        return Err(format!(
            "dms-migrate plan --format json exited {}",
            json.code
        ));
    }
    serde_json::from_str::<Value>(&json.stdout)
        .map_err(|e| format!("dms-migrate plan --format json is not JSON: {e}"))?;
    let s3 = aws_sdk_s3::Client::new(&lab.aws_config().await);
    let bucket = integration_tests::unique_name("demo-plan").to_lowercase();
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .map_err(|e| format!("creating the plan bucket in moto: {e}"))?;
    s3.put_object()
        .bucket(&bucket)
        .key("dms-plan.json")
        .body(json.stdout.into_bytes().into())
        .send()
        .await
        .map_err(|e| format!("uploading the plan to moto: {e}"))?;
    println!("-> uploaded as s3://{bucket}/dms-plan.json (the stack's bucket): start-task applies it to the task before starting it, and the task-started email says so.");
    Ok(bucket)
}

/// Exact row counts of every table of the three schemas.
async fn print_counts(client: &Client) -> Step<()> {
    let tables = client
        .query(
            "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables
             WHERE table_schema IN ('app', 'Billing', 'audit') AND table_type = 'BASE TABLE'
             ORDER BY 1",
            &[],
        )
        .await
        .map_err(|e| format!("listing the tables: {e}"))?;
    for row in tables {
        let table: String = row.get(0);
        let count: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .map_err(|e| format!("counting {table}: {e}"))?
            .get(0);
        println!("  {table:<22} {count:>9} rows");
    }
    Ok(())
}

/// The ids of the checks listed under `FAILED (n)` or `WARNINGS (n)` (`section`) in preflight's text.
fn listed_checks(preflight: &str, section: &str) -> Vec<String> {
    preflight
        .lines()
        .skip_while(|l| !l.starts_with(&format!("{section} (")))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

async fn prepare_target(demo: &Demo) -> Step<()> {
    heading(
        2,
        "From the workstation: preflight, schema apply, preflight again",
    );
    println!("Connections: PGSOURCE={}", demo.source_url);
    println!("             PGTARGET={}", demo.target_url);
    println!("             the password in PGPASSWORD (never on the command line).");
    let first = demo.dms_migrate(&["preflight"], &[]).await?;
    let failed = listed_checks(&first.stdout, "FAILED");
    if first.code != 1 || failed != ["target.schema_present"] {
        return Err(format!(
            "preflight on an empty target should fail target.schema_present only; it exited {} failing {failed:?}",
            first.code
        ));
    }
    println!("-> target.schema_present fails, as expected: nothing is on the target yet. The DMS task is DO_NOTHING, so the schema must exist first:");
    demo.require_ok(&["schema", "apply", "--deferred-file", DEFERRED_FILE], &[])
        .await?;
    let again = demo.require_ok(&["preflight"], &[]).await?;
    let warned = listed_checks(&again.stdout, "WARNINGS");
    println!(
        "-> no failures. Warnings ({}) do not block the task: each says what to check for the real run (LOB columns: \
         set the stack's LobMaxSize above the largest value the SQL shown measures).",
        warned.join(", ")
    );
    Ok(())
}

/// The application's login role on the database of `url`, allowed to write the three schemas: `cutover
/// --freeze` (on the source) and `rollback --freeze` (on the target) make it read-only and end its
/// sessions (the lab's admin is a superuser, which no setting binds). Returns the URL that logs in as it.
async fn app_role(lab: &Lab, url: &str, database: &str) -> Step<String> {
    let role = format!("{database}_app");
    connect(url)
        .await?
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS \"{role}\";
             CREATE ROLE \"{role}\" LOGIN PASSWORD '{APP_PASSWORD}';
             GRANT USAGE ON SCHEMA app, \"Billing\", audit TO \"{role}\";
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA app, \"Billing\", audit TO \"{role}\";
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA app, \"Billing\", audit TO \"{role}\";"
        ))
        .await
        .map_err(|e| format!("creating the application's role: {e}"))?;
    Ok(lab.login_url(url, &role, APP_PASSWORD))
}

/// What the writer committed, where and when.
#[derive(Default, Clone)]
struct WriteLog {
    /// Rounds committed on the source, then on the target, then on the source again after the rollback.
    source: Vec<u64>,
    target: Vec<u64>,
    back: Vec<u64>,
    last_source: Option<Instant>,
    first_target: Option<Instant>,
    last_target: Option<Instant>,
    first_back: Option<Instant>,
    /// Attempts refused (read-only) or cut (session ended) in a freeze.
    refused: u64,
}

/// Where the application writes: the source, the target from the switch instruction on, the source
/// again from the switch-back instruction on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Target,
    Back,
}

impl Side {
    fn load(cell: &AtomicU8) -> Side {
        match cell.load(Ordering::SeqCst) {
            0 => Side::Source,
            1 => Side::Target,
            _ => Side::Back,
        }
    }

    /// The customer email a round on this side writes (how a round is looked up and taken out).
    fn email(self, n: u64) -> String {
        match self {
            Side::Source => format!("live{n}@example.com"),
            Side::Target => format!("after-switch{n}@example.com"),
            Side::Back => format!("after-switch-back{n}@example.com"),
        }
    }
}

/// The application: once begun, a transaction every WRITE_EVERY on the source; after `switch`, on the
/// target; after `switch_back`, on the source again. A refused or cut transaction is retried on a new
/// session, as an application does; one cut while committing is looked up before it counts as lost.
struct Writer {
    go: Arc<AtomicBool>,
    halt: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    side: Arc<AtomicU8>,
    log: Arc<Mutex<WriteLog>>,
    task: JoinHandle<Step<()>>,
}

impl Writer {
    fn start(source_url: String, target_url: String) -> Writer {
        let [go, halt, done] = [(); 3].map(|()| Arc::new(AtomicBool::new(false)));
        let side = Arc::new(AtomicU8::new(0));
        let log = Arc::new(Mutex::new(WriteLog::default()));
        let (g, h, d, sd, l) = (
            go.clone(),
            halt.clone(),
            done.clone(),
            side.clone(),
            log.clone(),
        );
        let task = tokio::spawn(async move {
            let result = async {
                let mut client: Option<(Side, Client)> = None;
                let mut n: u64 = 0;
                // Bounded even if never halted: MAX_WRITES attempts, or 10 times as long waiting to begin.
                let mut attempts = 0;
                for _ in 0..MAX_WRITES * 10 {
                    tokio::time::sleep(WRITE_EVERY).await;
                    if h.load(Ordering::SeqCst) || attempts >= MAX_WRITES {
                        break;
                    }
                    if !g.load(Ordering::SeqCst) {
                        continue;
                    }
                    attempts += 1;
                    let side = Side::load(&sd);
                    let url = if side == Side::Target {
                        &target_url
                    } else {
                        &source_url
                    };
                    if client
                        .as_ref()
                        .is_none_or(|(s, c)| *s != side || c.is_closed())
                    {
                        client = match tokio_postgres::connect(url, NoTls).await {
                            Ok((c, connection)) => {
                                tokio::spawn(connection);
                                Some((side, c))
                            }
                            Err(_) => None,
                        };
                    }
                    let Some((_, c)) = client.as_ref() else {
                        lock(&l).refused += 1;
                        continue;
                    };
                    let round = n + 1;
                    let committed = match c.batch_execute(&write_round(side, round)).await {
                        Ok(()) => true,
                        // A session ended while committing may have committed: look, on a new one.
                        Err(_) => {
                            client = None;
                            committed_on(url, &side.email(round)).await
                        }
                    };
                    let mut log = lock(&l);
                    if !committed {
                        log.refused += 1;
                        continue;
                    }
                    n = round;
                    let now = Instant::now();
                    match side {
                        Side::Source => {
                            log.source.push(round);
                            log.last_source = Some(now);
                        }
                        Side::Target => {
                            log.target.push(round);
                            log.first_target.get_or_insert(now);
                            log.last_target = Some(now);
                        }
                        Side::Back => {
                            log.back.push(round);
                            log.first_back.get_or_insert(now);
                        }
                    }
                }
                Ok(())
            }
            .await;
            d.store(true, Ordering::SeqCst);
            result
        });
        Writer {
            go,
            halt,
            done,
            side,
            log,
            task,
        }
    }

    fn begin(&self) {
        self.go.store(true, Ordering::SeqCst);
    }

    /// From now on the writer writes to the target (the switch instruction).
    fn switch(&self) {
        self.side.store(1, Ordering::SeqCst);
    }

    /// From now on the writer writes to the source again (the switch-back instruction).
    fn switch_back(&self) {
        self.side.store(2, Ordering::SeqCst);
    }

    fn log(&self) -> WriteLog {
        lock(&self.log).clone()
    }

    fn rounds(&self) -> usize {
        let log = self.log();
        log.source.len() + log.target.len() + log.back.len()
    }

    /// Stops writing and waits (up to 30 s) until the transaction in flight has committed.
    async fn halt(&self) -> Step<()> {
        self.halt.store(true, Ordering::SeqCst);
        for _ in 0..600 {
            if self.done.load(Ordering::SeqCst) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err("the writer did not stop within 30 s".into())
    }

    /// Halts it; an error of any round is returned.
    async fn finish(self) -> Step<()> {
        self.halt().await?;
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(format!("the writer stopped abnormally: {e}")),
        }
    }
}

fn lock(log: &Mutex<WriteLog>) -> std::sync::MutexGuard<'_, WriteLog> {
    log.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether the round whose customer has `email` is on the database of `url` (reading works in a freeze).
async fn committed_on(url: &str, email: &str) -> bool {
    let Ok((client, connection)) = tokio_postgres::connect(url, NoTls).await else {
        return false;
    };
    tokio::spawn(connection);
    client
        .query_one(
            "SELECT count(*) FROM app.customers WHERE email = $1",
            &[&email],
        )
        .await
        .is_ok_and(|row| row.get::<_, i64>(0) == 1)
}

fn write_round(side: Side, n: u64) -> String {
    match side {
        Side::Source => write_round_on_source(n),
        _ => write_round_marked(side, n),
    }
}

/// One transaction: a new customer with an order, its line, invoice, payment and audit event; an update
/// of a product's jsonb and of an old order; the delete of an old audit event.
fn write_round_on_source(n: u64) -> String {
    format!(
        "BEGIN;
         WITH c AS (INSERT INTO app.customers (email, \"displayName\")
                    VALUES ('live{n}@example.com', 'Live customer {n}') RETURNING id),
              o AS (INSERT INTO app.orders (customer_id, placed_at) SELECT id, now() FROM c RETURNING id),
              i AS (INSERT INTO app.order_items (order_id, line_no, product_id, quantity, unit_price_cents)
                    SELECT id, 1, {product}, 2, 150 FROM o),
              v AS (INSERT INTO \"Billing\".\"Invoices\" (order_id, \"amountCents\", issued_at, details)
                    SELECT id, 300, now(), '{{\"currency\": \"USD\", \"live\": true}}' FROM o RETURNING id),
              p AS (INSERT INTO \"Billing\".payments (invoice_id, amount_cents, paid_at)
                    SELECT id, 300, now() FROM v)
         INSERT INTO audit.events (happened_at, actor, payload)
         SELECT now(), 'demo-writer', jsonb_build_object('action', 'order.placed', 'order_id', id) FROM o;
         UPDATE app.products SET attributes = jsonb_set(attributes, '{{stock}}', to_jsonb({n})) WHERE id = {product};
         UPDATE app.orders SET status = 'shipped' WHERE id = {n};
         DELETE FROM audit.events WHERE id = {n};
         COMMIT;",
        product = 1 + n % 50
    )
}

/// One transaction after the switch (on the target) or after the switch back (on the source again): a new
/// customer with an order, its line, invoice ("Billing"."Invoices" has a GENERATED ALWAYS identity
/// column), payment and audit event, all marked by the side, so the demo can find them and take them out.
fn write_round_marked(side: Side, n: u64) -> String {
    let actor = match side {
        Side::Back => "demo-writer-after-switch-back",
        _ => "demo-writer-after-switch",
    };
    format!(
        "BEGIN;
         WITH c AS (INSERT INTO app.customers (email, \"displayName\")
                    VALUES ('{email}', 'After the switch {n}') RETURNING id),
              o AS (INSERT INTO app.orders (customer_id, placed_at) SELECT id, now() FROM c RETURNING id),
              i AS (INSERT INTO app.order_items (order_id, line_no, product_id, quantity, unit_price_cents)
                    SELECT id, 1, {product}, 1, 150 FROM o),
              v AS (INSERT INTO \"Billing\".\"Invoices\" (order_id, \"amountCents\", issued_at, details)
                    SELECT id, 150, now(), '{{\"currency\": \"USD\"}}' FROM o RETURNING id),
              p AS (INSERT INTO \"Billing\".payments (invoice_id, amount_cents, paid_at)
                    SELECT id, 150, now() FROM v)
         INSERT INTO audit.events (happened_at, actor, payload)
         SELECT now(), '{actor}', jsonb_build_object('action', 'order.placed', 'order_id', id) FROM o;
         COMMIT;",
        email = side.email(n),
        product = 1 + n % 50
    )
}

/// Removes from the source what the writer wrote there after the switch back (marked by
/// write_round_marked), children first; the number of rows removed.
async fn remove_after_switch_back(source: &Client) -> Step<u64> {
    const ORDERS: &str = "SELECT o.id FROM app.orders o JOIN app.customers c ON c.id = o.customer_id WHERE c.email LIKE 'after-switch-back%'";
    let statements = [
        "DELETE FROM audit.events WHERE actor = 'demo-writer-after-switch-back'".to_string(),
        format!("DELETE FROM \"Billing\".payments WHERE invoice_id IN (SELECT id FROM \"Billing\".\"Invoices\" WHERE order_id IN ({ORDERS}))"),
        format!("DELETE FROM \"Billing\".\"Invoices\" WHERE order_id IN ({ORDERS})"),
        format!("DELETE FROM app.order_items WHERE order_id IN ({ORDERS})"),
        format!("DELETE FROM app.orders WHERE id IN ({ORDERS})"),
        "DELETE FROM app.customers WHERE email LIKE 'after-switch-back%'".to_string(),
    ];
    let mut removed = 0;
    for sql in &statements {
        removed += source
            .execute(sql.as_str(), &[])
            .await
            .map_err(|e| format!("removing the writes after the switch back: {e}"))?;
    }
    Ok(removed)
}

/// The execution's status from moto's Step Functions.
async fn execution_status(sfn: &aws_sdk_sfn::Client, arn: &str) -> Step<ExecutionStatus> {
    sfn.describe_execution()
        .execution_arn(arn)
        .send()
        .await
        .map(|d| d.status)
        .map_err(|e| format!("describing the execution: {e}"))
}

fn email_event(email: &Delivered) -> String {
    email.attributes["event"]["Value"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn print_email(email: &Delivered, elapsed: Duration, secret: &str) -> Step<()> {
    println!(
        "\n---------------------------------------------------------- email at {:>4.0} s",
        elapsed.as_secs_f32()
    );
    show(
        &format!(
            "Subject: {}\n\n{}\n",
            email.subject,
            email.message.trim_end()
        ),
        secret,
    )?;
    println!("----------------------------------------------------------------------------");
    Ok(())
}

/// Prints the email and notes its event; the full-load-complete email starts the writer.
fn on_email(
    email: &Delivered,
    elapsed: Duration,
    secret: &str,
    writer: &Writer,
    events: &mut Vec<String>,
) -> Step<()> {
    print_email(email, elapsed, secret)?;
    let event = email_event(email);
    if event == "full-load-complete" {
        writer.begin();
        println!(
            "(the full load is complete: writing to the source every {} ms from now on: a customer, an order \
             with its line, invoice, payment and audit event; a jsonb update; an order update; a delete)",
            WRITE_EVERY.as_millis()
        );
    }
    events.push(event);
    Ok(())
}

/// The payload as StepFunctionsPayloadTemplate holds it (every option written out), with the lab's
/// shorter options, and one line per option the lab changes.
fn payload(rig: &MigrationRig) -> Step<(Value, Vec<String>)> {
    let defaults = serde_json::to_value(Options::default()).map_err(|e| e.to_string())?;
    let lab_options = options(json!({}));
    let mut merged = defaults.clone();
    let mut changed = Vec::new();
    if let (Some(merged), Some(lab)) = (merged.as_object_mut(), lab_options.as_object()) {
        for (key, value) in lab {
            if defaults.get(key) != Some(value) {
                changed.push(format!(
                    "{key}: {value} (the stack: {})",
                    defaults.get(key).cloned().unwrap_or(Value::Null)
                ));
            }
            merged.insert(key.clone(), value.clone());
        }
    }
    Ok((rig.payload(merged), changed))
}

async fn migrate_and_cut_over(demo: &Demo, rig: &MigrationRig, writer: &Writer) -> Step<String> {
    let secret = &demo.secret;
    let (input, changed) = payload(rig)?;
    println!("\nThe payload (StepFunctionsPayloadTemplate, pasted into Start execution):");
    show(
        &format!(
            "{}\n",
            serde_json::to_string_pretty(&input).map_err(|e| e.to_string())?
        ),
        secret,
    )?;
    println!("Options shortened for the lab, so the demo takes minutes, not hours:");
    for line in &changed {
        println!("  {line}");
    }
    let sfn = aws_sdk_sfn::Client::new(&rig.lab.aws_config().await);
    let execution = rig.machine.start("demo", &input).await;
    let started = Instant::now();
    println!("\nExecution started: {execution}");
    let mut events = Vec::new();
    let status = loop {
        for email in rig.topic.receive(10, Duration::from_secs(1)).await {
            on_email(&email, started.elapsed(), secret, writer, &mut events)?;
        }
        let status = execution_status(&sfn, &execution).await?;
        if status != ExecutionStatus::Running {
            // A last email may still be on its way.
            for email in rig.topic.receive(10, Duration::from_secs(3)).await {
                on_email(&email, started.elapsed(), secret, writer, &mut events)?;
            }
            break status;
        }
        if started.elapsed() > EXECUTION_LIMIT {
            return Err(format!(
                "the execution was still running after {} s",
                EXECUTION_LIMIT.as_secs()
            ));
        }
    };
    let finished = rig.machine.wait(&execution, Duration::from_secs(30)).await;
    println!(
        "\nExecution {} after {:.0} s, last state {}; the writer has committed {} transactions so far.",
        status.as_str(),
        started.elapsed().as_secs_f32(),
        finished.entered.last().map_or("-", String::as_str),
        writer.rounds()
    );
    let seen = |event: &str| events.iter().any(|e| e == event);
    if status != ExecutionStatus::Succeeded
        || !seen("full-load-complete")
        || !seen("ready-for-cutover")
        || finished.entered.last().map(String::as_str) != Some("ReadyForCutover")
    {
        return Err(format!(
            "the execution did not end ready for cutover (emails: {}): {} {}",
            events.join(", "),
            finished.error.unwrap_or_default(),
            finished.cause.unwrap_or_default()
        ));
    }
    // The source checks run inside the "VPC" (the source-checks function premigration-assessment invokes):
    // a check reported as not run means that path is broken, not that the source is fine.
    let assessment = finished
        .output
        .as_ref()
        .map(|o| o["results"]["assessment"].clone())
        .unwrap_or_default();
    let (counts, source) = (&assessment["counts"], &assessment["sourceChecks"]);
    let ran = source["ran"].as_u64().unwrap_or(0);
    if counts["notRun"].as_u64() != Some(0)
        || ran == 0
        || source["ran"] != source["total"]
        || source["where"] != "the source-checks function inside the stack's VPC"
    {
        return Err(format!(
            "the assessment's checks did not all run (counts {counts}, source checks {source}): the source checks must run through the source-checks function"
        ));
    }
    println!(
        "Assessment: {} checks passed, {} warned, {} failed, {} not run; {ran} source checks ran through the source-checks function.",
        counts["pass"], counts["warn"], counts["fail"], counts["notRun"]
    );
    let latency_target = input["options"]["cdcLatencyTargetSeconds"].to_string();
    cut_over(demo, rig, writer, &latency_target).await
}

async fn cut_over(
    demo: &Demo,
    rig: &MigrationRig,
    writer: &Writer,
    latency_target: &str,
) -> Step<String> {
    heading(
        4,
        "The cutover: one command while the application writes, then a freeze of seconds",
    );
    let dms = rig.dms.env();
    let task = rig.task.task_arn.as_str();
    let slot = way_back_slot(&rig.dbs.name);
    let reverse = rig
        .way_back_task_arn
        .clone()
        .ok_or("the rig has no way back's reverse task")?;
    println!(
        "The application (the writer, logged in as its own role) commits every {} ms to the source; it \
         switches to the target when the command says SWITCH NOW. The way back's reverse task \
         (FallbackReplicationTask, CDC only, PlanetScale to Aurora) is registered in dms-local, never started.",
        WRITE_EVERY.as_millis()
    );
    let args = [
        "cutover",
        "--task-arn",
        task,
        "--freeze",
        "--latency-target",
        latency_target,
        "--rate-window",
        "5",
        "--deferred-file",
        DEFERRED_FILE,
        "--way-back-slot",
        &slot,
        "--way-back-task-arn",
        &reverse,
    ];
    let ran = demo
        .dms_migrate_streaming(&args, &dms, |line| {
            if line.starts_with("SWITCH NOW") {
                writer.switch();
            }
        })
        .await?;
    if ran.code != 0
        || !ran.stdout.contains("SWITCH NOW")
        || !ran.stdout.contains("The way back is running")
    {
        return Err(format!(
            "dms-migrate cutover exited {} without the way back running",
            ran.code
        ));
    }
    tokio::time::sleep(AFTER_SWITCH).await;
    let log = writer.log();
    let (Some(last_source), Some(first_target)) = (log.last_source, log.first_target) else {
        return Err(format!(
            "the writer did not write on both sides ({} rounds on the source, {} on the target)",
            log.source.len(),
            log.target.len()
        ));
    };
    println!(
        "\nThe application's write outage, measured by the writer: {:.1} s, from its last commit on the \
         source to its first on the target ({} commits on the source, {} attempts refused or cut in the \
         freeze, {} commits on the target so far).",
        first_target.duration_since(last_source).as_secs_f64(),
        log.source.len(),
        log.refused,
        log.target.len()
    );
    let target = connect(&demo.target_admin_url).await?;
    all_rounds_on(&target, Side::Source, &log.source).await?;
    roll_back(demo, rig, writer, &reverse, &slot, latency_target).await
}

fn way_back_slot(database: &str) -> String {
    format!("wb_{database}")
}

/// Err unless the database of `client` (the other side) holds every one of `rounds`, committed on `side`.
async fn all_rounds_on(client: &Client, side: Side, rounds: &[u64]) -> Step<()> {
    let (from, to) = match side {
        Side::Target => ("target", "source"),
        _ => ("source", "target"),
    };
    let emails: Vec<String> = rounds.iter().map(|n| side.email(*n)).collect();
    let found: i64 = client
        .query_one(
            "SELECT count(*) FROM app.customers WHERE email = ANY($1)",
            &[&emails],
        )
        .await
        .map_err(|e| format!("looking up the committed rounds: {e}"))?
        .get(0);
    let missing = emails.len() as i64 - found;
    if missing > 0 {
        return Err(format!(
            "{missing} of the {} rounds committed on the {from} are missing on the {to}",
            rounds.len()
        ));
    }
    println!(
        "-> every one of the {} rounds the application committed on the {from} is on the {to}.",
        rounds.len()
    );
    Ok(())
}

/// The way back: the application on the target while the reverse task replays its writes to the source,
/// then `dms-migrate rollback --freeze`; the writer switches back on SWITCH BACK NOW. Proves every round
/// committed on the target is on the source, the source's sequences ahead (verify with the sides
/// swapped) and the rows equal, and prints the rollback outage.
async fn roll_back(
    demo: &Demo,
    rig: &MigrationRig,
    writer: &Writer,
    reverse: &str,
    slot: &str,
    latency_target: &str,
) -> Step<String> {
    heading(
        5,
        "The way back: the application on PlanetScale, then one command to go back to Aurora",
    );
    let dms = rig.dms.env();
    println!(
        "The application now writes to the target (new customers, orders, invoices with their GENERATED \
         ALWAYS identity, payments, audit events); the reverse task replays each write to the source. \
         Going back:"
    );
    let args = [
        "rollback",
        "--way-back-task-arn",
        reverse,
        "--freeze",
        "--latency-target",
        latency_target,
        "--rate-window",
        "5",
        "--deferred-file",
        DEFERRED_FILE,
    ];
    let ran = demo
        .dms_migrate_streaming(&args, &dms, |line| {
            if line.starts_with("SWITCH BACK NOW") {
                writer.switch_back();
            }
        })
        .await?;
    if ran.code != 0 || !ran.stdout.contains("SWITCH BACK NOW") {
        return Err(format!("dms-migrate rollback exited {}", ran.code));
    }
    tokio::time::sleep(AFTER_SWITCH).await;
    writer.halt().await?;
    let log = writer.log();
    let (Some(last_target), Some(first_back)) = (log.last_target, log.first_back) else {
        return Err(format!(
            "the writer did not write on the target and back on the source ({} rounds on the target, {} back on the source)",
            log.target.len(),
            log.back.len()
        ));
    };
    let outage = first_back.duration_since(last_target).as_secs_f64();
    println!(
        "\nThe application's rollback outage, measured by the writer: {outage:.1} s, from its last commit on \
         the target to its first on the source again (goal: at most {} s; {} commits on the target, {} back \
         on the source).",
        ROLLBACK_GOAL.as_secs(),
        log.target.len(),
        log.back.len()
    );
    if outage > ROLLBACK_GOAL.as_secs_f64() {
        return Err(format!(
            "the rollback outage {outage:.1} s is over the goal of {} s",
            ROLLBACK_GOAL.as_secs()
        ));
    }
    let source = connect(&rig.dbs.source_url).await?;
    all_rounds_on(&source, Side::Target, &log.target).await?;
    let removed = remove_after_switch_back(&source).await?;
    println!(
        "The {removed} rows the application wrote to the source after the switch back are taken out again, \
         so verify, with the sides swapped (is the source what the target holds, its sequences ahead?), \
         compares the two as the rollback left them:"
    );
    let swapped = [
        ("PGSOURCE".to_string(), demo.target_url.clone()),
        ("PGTARGET".to_string(), demo.source_url.clone()),
    ];
    let verified = verify(demo, &swapped).await?;
    println!("\nThen, with the application back on the source:");
    demo.require_ok(
        &[
            "fallback",
            "end",
            "--task-arn",
            reverse,
            "--way-back-slot",
            slot,
        ],
        &dms,
    )
    .await?;
    let task = rig.task.task_arn.as_str();
    demo.require_ok(&["cleanup", "--task-arn", task, "--yes"], &dms)
        .await?;
    // dms-local's subscription lost its slot to cleanup: detach it so dms-local's shutdown can drop it.
    connect(&demo.target_admin_url)
        .await?
        .batch_execute(&format!(
            "ALTER SUBSCRIPTION dms_local_{} SET (slot_name = NONE)",
            task.rsplit(':')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase()
        ))
        .await
        .map_err(|e| format!("detaching dms-local's subscription: {e}"))?;
    Ok(format!(
        "Rollback outage {outage:.1} s. After the rollback, {verified} (sides swapped: PlanetScale as the source, Aurora as the target)"
    ))
}

/// `verify --format json`, shown one line per table; Err unless every count, checksum, schema object and
/// sequence matches.
/// `extra`: the connection swapped after the rollback.
async fn verify(demo: &Demo, extra: &[(String, String)]) -> Step<String> {
    let ran = demo
        .run_quietly(&["verify", "--format", "json"], extra)
        .await?;
    let report: Value = serde_json::from_str(&ran.stdout)
        .map_err(|e| format!("verify's JSON did not parse ({e}); it exited {}", ran.code))?;
    let tables = report["tables"].as_array().cloned().unwrap_or_default();
    println!(
        "  {:<32} {:>12} {:>12}  {:>6}  checksums",
        "table", "source rows", "target rows", "ranges"
    );
    for t in &tables {
        let equal = t["mismatches"].as_array().is_some_and(Vec::is_empty)
            && t["source_rows"] == t["target_rows"]
            && t["missing_on_target"] == false;
        println!(
            "  {:<32} {:>12} {:>12}  {:>6}  {}",
            t["table"].as_str().unwrap_or_default(),
            t["source_rows"].as_i64().unwrap_or(-1),
            t["target_rows"].as_i64().unwrap_or(-1),
            t["ranges_compared"].as_i64().unwrap_or(-1),
            if equal { "equal" } else { "DIFFERENT" }
        );
    }
    let summary = &report["summary"];
    println!(
        "  {} of {} tables differ; {} schema differences; {} sequences not ahead",
        summary["tables_mismatched"],
        summary["tables"],
        summary["schema_differences"],
        summary["sequences_behind"]
    );
    println!("  (exit {})", ran.code);
    let clean = ran.code == 0
        && !tables.is_empty()
        && summary["tables_mismatched"] == 0
        && summary["schema_differences"] == 0
        && summary["sequences_behind"] == 0
        && summary["source_rows"] == summary["target_rows"];
    if !clean {
        return Err(format!(
            "verify found differences (exit {}): {summary}",
            ran.code
        ));
    }
    Ok(format!(
        "verify: the target matches the source: {} tables, {} rows on each side, every checksum equal, schema and sequences in line.",
        summary["tables"], summary["source_rows"]
    ))
}

fn next_steps() {
    heading(6, "What the real deployment needs next");
    println!(
        "1. From a workstation that reaches both databases, the password in PGPASSWORD or ~/.pgpass (never in a URL):
     export PGSOURCE='postgres://USER@CLUSTER.cluster-XXXX.REGION.rds.amazonaws.com:5432/DBNAME?sslmode=verify-full&sslrootcert=global-bundle.pem'
     export PGTARGET='postgres://USER@HOST:5432/DBNAME?sslmode=verify-full'   (the PlanetScale connection details)
     dms-migrate preflight && dms-migrate schema apply
2. Build and upload the Lambdas and the template:  make package ARTIFACT_BUCKET=<a bucket in the stack's region>
3. Console: CloudFormation > Create stack > upload packaged.yaml, fill the parameters (VPC, two subnets, source
   and target host/port/database/user/password, NotificationEmail, EnableAutomation=true), create
   (docs/console.md walks through each group; `make deploy STACK=... PARAMS=...` does the same from a shell).
4. Confirm the email subscription: SNS sends NotificationEmail a confirmation link; until it is clicked, no email arrives.
5. Copy the stack output StepFunctionsPayloadTemplate, open StepFunctionsConsoleURL, Start execution, paste it as is.
   The emails above then arrive at the real pace (a poll every 60 s; ready after 3 polls under 5 s of CDC latency).
6. After the ready-for-cutover email, the cutover above with the ReplicationTaskArn output:
     dms-migrate cutover --task-arn ARN --freeze --way-back-task-arn FALLBACK_ARN
       (the migration user needs rds_superuser and rds_replication; FALLBACK_ARN: the output FallbackReplicationTaskArn)
     on SWITCH NOW: switch the application to PlanetScale
7. To go back: dms-migrate rollback --way-back-task-arn FALLBACK_ARN --freeze; on SWITCH BACK NOW switch back to Aurora.
   Once the migration is final instead: dms-migrate fallback end --task-arn FALLBACK_ARN
8. dms-migrate cleanup --task-arn ARN --yes;  delete the stack (it empties its bucket and revokes its rules)"
    );
}
