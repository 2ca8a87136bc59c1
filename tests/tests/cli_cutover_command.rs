//! The built `dms-migrate cutover` against the lab: schema apply, a full-load-and-cdc task in dms-local
//! with the stack's `BatchApplyEnabled: true`, and an application role writing every 50 ms while the
//! command runs. Each test has its own databases, role, dms-local and task.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dms_core::aws::dms::{Dms, StartType};
use integration_tests::dms_local::{all_public_tables, wait_for, DmsLocal};
use integration_tests::lab::connect;
use integration_tests::lab::{self, binary, Lab, TestDatabases};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

const SCHEMA: &str = "
CREATE TABLE public.customers (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text NOT NULL UNIQUE, visits int NOT NULL DEFAULT 0);
CREATE TABLE public.orders (id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES public.customers (id), note text NOT NULL);
CREATE INDEX orders_note ON public.orders (note);
INSERT INTO public.customers (email) SELECT 'c' || g || '@example.com' FROM generate_series(1, 2000) g;
INSERT INTO public.orders (customer_id, note) SELECT 1 + g % 2000, 'order ' || g FROM generate_series(1, 120000) g;
CREATE SCHEMA other;
CREATE TABLE other.log (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());";

const APP_PASSWORD: &str = "app-pw";

async fn scalar(url: &str, sql: &str) -> i64 {
    connect(url)
        .await
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

struct Rig {
    lab: Lab,
    dbs: TestDatabases,
    dms: DmsLocal,
    task_arn: String,
    deferred: std::path::PathBuf,
    app_url: String,
}

/// Fresh databases, the schema and rows on the source, an application role, `schema apply`, and a
/// running full-load-and-cdc task over schema public whose full load is done.
async fn rig(name: &str) -> Option<Rig> {
    let lab = Lab::get().await?;
    let dbs = lab.fresh_databases(name).await;
    let role = format!("app_{}", dbs.name);
    let source = connect(&dbs.source_url).await;
    source
        .batch_execute(&format!(
            "{SCHEMA}
             DROP ROLE IF EXISTS {role};
             CREATE ROLE {role} LOGIN PASSWORD '{APP_PASSWORD}';
             GRANT USAGE ON SCHEMA public TO {role};
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role};"
        ))
        .await
        .expect("schema, rows and role on the source");
    let admin = format!(
        "{}:{}@",
        lab.var("LAB_ADMIN_USER"),
        lab.var("LAB_ADMIN_PASSWORD")
    );
    let app_url = dbs
        .source_url
        .replacen(&admin, &format!("{role}:{APP_PASSWORD}@"), 1);
    let deferred = std::env::temp_dir().join(format!("{}.deferred.sql", dbs.name));
    let applied = lab::dms_migrate()
        .args(["schema", "apply", "--source", &dbs.source_url])
        .args(["--target", &dbs.target_url, "--schemas", "public"])
        .arg("--deferred-file")
        .arg(&deferred)
        .output()
        .expect("run schema apply");
    assert!(
        applied.status.success(),
        "schema apply: {}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let dms = DmsLocal::start(&lab).await;
    // The stack's task applies changes in batches.
    let settings = json!({"TargetMetadata": {"BatchApplyEnabled": true, "LobMaxSize": 32}});
    let task_arn = dms
        .register_lab_task_with_settings(
            &lab,
            &dbs,
            "full-load-and-cdc",
            &all_public_tables(),
            &settings,
        )
        .await
        .task_arn;
    let client = dms.dms_client().await;
    client
        .start_task(&task_arn, StartType::StartReplication)
        .await
        .expect("start");
    wait_for("the full load", Duration::from_secs(120), || async {
        let task = client.describe_task(&task_arn).await.expect("describe");
        (task.status.as_str() == "running"
            && task
                .stats
                .as_ref()
                .is_some_and(|s| s.full_load_progress_percent == 100))
        .then_some(())
    })
    .await;
    Some(Rig {
        lab,
        dbs,
        dms,
        task_arn,
        deferred,
        app_url,
    })
}

/// A writer committing every 50 ms: an order inserted (its id kept once committed) and a customer
/// updated. It reconnects after an error, as an application does, and counts the errors.
struct Writer {
    stop: Arc<AtomicBool>,
    committed: Arc<Mutex<Vec<i64>>>,
    errors: Arc<Mutex<Vec<String>>>,
    handle: tokio::task::JoinHandle<()>,
}

fn writer(url: &str, sql: &'static str) -> Writer {
    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let (s, c, e, url) = (
        Arc::clone(&stop),
        Arc::clone(&committed),
        Arc::clone(&errors),
        url.to_string(),
    );
    let handle = tokio::spawn(async move {
        let mut client: Option<Client> = None;
        let mut n: i64 = 0;
        while !s.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            n += 1;
            if client.as_ref().is_none_or(Client::is_closed) {
                client = match tokio_postgres::connect(&url, NoTls).await {
                    Ok((cl, conn)) => {
                        tokio::spawn(conn);
                        Some(cl)
                    }
                    Err(err) => {
                        e.lock().expect("errors").push(err.to_string());
                        None
                    }
                };
            }
            let Some(cl) = client.as_ref() else { continue };
            match cl.query_one(sql, &[&(1 + n % 2000)]).await {
                Ok(row) => c.lock().expect("committed").push(row.get(0)),
                Err(err) => {
                    let text = err
                        .as_db_error()
                        .map(|d| format!("{} {}", d.code().code(), d.message()))
                        .unwrap_or_else(|| err.to_string());
                    e.lock().expect("errors").push(text);
                }
            }
        }
    });
    Writer {
        stop,
        committed,
        errors,
        handle,
    }
}

const APP_WRITE: &str =
    "WITH o AS (INSERT INTO public.orders (customer_id, note) VALUES ($1, 'live') RETURNING id),
     u AS (UPDATE public.customers SET visits = visits + 1 WHERE id = $1)
     SELECT id FROM o";
const OTHER_WRITE: &str =
    "INSERT INTO other.log (id) VALUES (nextval('other.log_id_seq') + $1::bigint * 0) RETURNING id";

impl Writer {
    async fn finish(self) -> (Vec<i64>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.handle.await;
        let committed = self.committed.lock().expect("committed").clone();
        let errors = self.errors.lock().expect("errors").clone();
        (committed, errors)
    }
}

struct Run {
    code: i32,
    stdout: String,
}

impl Rig {
    /// The way back's reverse task on this rig's dms-local, reading this test's slot.
    async fn reverse_task(&self) -> String {
        self.dms
            .register_reverse_task(
                &self.lab,
                &self.dbs,
                &self.way_back_slot(),
                &all_public_tables(),
            )
            .await
    }

    /// Slot names are per cluster and the tests share the lab's target cluster: one name per test.
    fn way_back_slot(&self) -> String {
        format!("wb_{}", self.dbs.name)
    }

    fn cutover_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "cutover",
            "--source",
            &self.dbs.source_url,
            "--target",
            &self.dbs.target_url,
            "--task-arn",
            &self.task_arn,
            "--schemas",
            "public",
            "--rate-window",
            "1",
            "--latency-target",
            "30",
            "--deferred-file",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(self.deferred.display().to_string());
        args.push("--way-back-slot".into());
        args.push(self.way_back_slot());
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// The built binary; `on_line` sees each stdout line as it comes, with the process id (to signal it).
    async fn cutover(&self, extra: &[&str], mut on_line: impl FnMut(&str, u32)) -> Run {
        let mut child = tokio::process::Command::new(binary("dms-migrate"))
            .args(self.cutover_args(extra))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::temp_dir())
            .envs(self.lab.aws_env())
            .envs(self.dms.env())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run dms-migrate cutover");
        let pid = child.id().unwrap_or_default();
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut stdout = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("| {line}");
            on_line(&line, pid);
            stdout.push_str(&line);
            stdout.push('\n');
        }
        let status = child.wait().await.expect("wait");
        Run {
            code: status.code().unwrap_or(-1),
            stdout,
        }
    }

    /// Whether the application role can write on the source now.
    async fn app_can_write(&self) -> Result<(), String> {
        let client = connect(&self.app_url).await;
        client
            .execute(
                "UPDATE public.customers SET visits = visits WHERE id = 1",
                &[],
            )
            .await
            .map(|_| ())
            .map_err(|e| {
                e.as_db_error()
                    .map(|d| format!("{} {}", d.code().code(), d.message()))
                    .unwrap_or_else(|| e.to_string())
            })
    }

    async fn task_status(&self) -> String {
        self.dms.task_status(&self.task_arn).await
    }

    /// After writes have stopped: the target catches up with every committed order.
    async fn wait_for_target_to_hold(&self, ids: &[i64]) {
        let target = connect(&self.dbs.target_url).await;
        wait_for(
            "every committed order on the target",
            Duration::from_secs(60),
            || async {
                let found: i64 = target
                    .query_one(
                        "SELECT count(*) FROM public.orders WHERE id = ANY($1)",
                        &[&ids],
                    )
                    .await
                    .expect("count")
                    .get(0);
                (found == ids.len() as i64).then_some(())
            },
        )
        .await;
    }
}

#[tokio::test]
async fn freeze_then_switch_with_every_committed_row_on_the_target_and_the_freeze_undone_on_request(
) {
    let Some(rig) = rig("cutover_freeze").await else {
        return;
    };
    let app = writer(&rig.app_url, APP_WRITE);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let run = rig.cutover(&["--freeze"], |_, _| {}).await;
    let after_switch = app.committed.lock().expect("committed").len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (committed, errors) = app.finish().await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(run.stdout.contains("SWITCH NOW"), "{}", run.stdout);
    assert!(
        run.stdout.contains("BatchApplyEnabled set to false"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("5. live verify") && run.stdout.contains("every range equal"),
        "the live verify converged while the application wrote: {}",
        run.stdout
    );
    assert!(
        committed.len() > 20,
        "the writer committed during the live phases"
    );
    assert_eq!(
        committed.len(),
        after_switch,
        "the frozen role committed nothing after the switch instruction"
    );
    assert!(
        errors.iter().any(
            |e| e.starts_with(SqlState::READ_ONLY_SQL_TRANSACTION.code())
                || e.contains("terminat")
                || e.contains("closed")
        ),
        "the writer was stopped by the freeze: {errors:?}"
    );
    let refused = rig.app_can_write().await.expect_err("the source is frozen");
    assert!(refused.starts_with("25006"), "{refused}");

    // Every order the application committed is on the target, and verify finds both sides equal.
    rig.wait_for_target_to_hold(&committed).await;
    let verify = lab::dms_migrate()
        .args(["verify", "--source", &rig.dbs.source_url])
        .args(["--target", &rig.dbs.target_url, "--schemas", "public"])
        .output()
        .expect("verify");
    assert!(
        verify.status.success(),
        "verify: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    // The deferred objects are in place: the unique constraint, the foreign key, identity ALWAYS.
    let target = &rig.dbs.target_url;
    assert_eq!(
        scalar(
            target,
            "SELECT count(*) FROM pg_constraint WHERE conname = 'customers_email_key'"
        )
        .await,
        1
    );
    assert_eq!(
        scalar(
            target,
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated"
        )
        .await,
        1
    );
    assert_eq!(
        scalar(target, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.customers'::regclass AND attidentity = 'a'").await,
        1
    );
    assert_eq!(rig.task_status().await, "stopped");

    // The way back is armed: the slot exists on the target at the LSN the command printed, and holds
    // exactly what the application writes to the target after the switch, nothing from before it.
    let slot = rig.way_back_slot();
    let target_client = connect(target).await;
    let row = target_client
        .query_one(
            "SELECT plugin::text, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .expect("the way back's slot exists");
    let (plugin, lsn): (String, String) = (row.get(0), row.get(1));
    assert_eq!(plugin, "test_decoding");
    assert!(
        run.stdout.contains(&format!("--cdc-start-position {lsn}")),
        "the start command names the slot's LSN {lsn}: {}",
        run.stdout
    );
    target_client
        .execute(
            "INSERT INTO public.orders (id, customer_id, note) SELECT 990001, customer_id, 'after the switch' FROM public.orders LIMIT 1",
            &[],
        )
        .await
        .expect("the application writes to the target");
    // The lab runs with synchronous_commit off: decoding sees the commit once the WAL writer flushed it.
    let changes: Vec<String> = wait_for(
        "the write after the switch in the slot",
        Duration::from_secs(10),
        || async {
            let changes: Vec<String> = target_client
                .query(
                    "SELECT data FROM pg_logical_slot_peek_changes($1, NULL, NULL, 'skip-empty-xacts', '1')",
                    &[&slot],
                )
                .await
                .expect("peek the slot")
                .iter()
                .map(|r| r.get(0))
                .collect();
            changes
                .iter()
                .any(|c| c.starts_with("table "))
                .then_some(changes)
        },
    )
    .await;
    let rows: Vec<&String> = changes.iter().filter(|c| c.starts_with("table ")).collect();
    assert_eq!(
        rows.len(),
        1,
        "only the write after the switch: {changes:?}"
    );
    assert!(
        rows[0].contains("public.orders: INSERT") && rows[0].contains("990001"),
        "{changes:?}"
    );

    let undo = rig.cutover(&["--undo-freeze"], |_, _| {}).await;
    assert_eq!(undo.code, 0, "{}", undo.stdout);
    assert!(undo.stdout.contains("freeze undone"), "{}", undo.stdout);
    rig.app_can_write()
        .await
        .expect("writable again after --undo-freeze");
}

/// A gate failing before the freeze (a real difference), inside it (a deferred item that cannot be
/// applied) and Ctrl-C in the freeze each leave the source writable with nothing lost; the run after
/// the cause is fixed switches.
#[tokio::test]
async fn an_abort_at_each_phase_leaves_the_source_writable_and_a_rerun_resumes() {
    let Some(rig) = rig("cutover_abort").await else {
        return;
    };
    let app = writer(&rig.app_url, APP_WRITE);

    // A real difference: a row only the source has. It is reported, nothing is frozen.
    let target = connect(&rig.dbs.target_url).await;
    target
        .execute("DELETE FROM public.orders WHERE id = 777", &[])
        .await
        .expect("a difference on the target");
    let run = rig.cutover(&["--freeze"], |_, _| {}).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("live verify found 1 difference")
            && run.stdout.contains("public.orders range"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("6. freeze"), "{}", run.stdout);
    rig.app_can_write().await.expect("never frozen");
    target
        .execute(
            "INSERT INTO public.orders (id, customer_id, note) VALUES (777, 778, 'order 777')",
            &[],
        )
        .await
        .expect("the row put back");

    // A gate inside the freeze: an identity item that cannot be applied. The freeze is undone.
    let good = std::fs::read_to_string(&rig.deferred).expect("deferred file");
    std::fs::write(
        &rig.deferred,
        format!(
            "{good}\n-- dms-migrate-item {{\"kind\":\"identity-always\",\"schema\":\"public\",\"table\":\"orders\",\"name\":\"no_such_column\"}}\nALTER TABLE ONLY public.orders ALTER COLUMN no_such_column SET GENERATED ALWAYS;\n"
        ),
    )
    .expect("a bad deferred file");
    let run = rig.cutover(&["--freeze"], |_, _| {}).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("6. freeze") && run.stdout.contains("stopped in phase 11"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("freeze undone"), "{}", run.stdout);
    rig.app_can_write().await.expect("writable after the abort");
    std::fs::write(&rig.deferred, &good).expect("the good deferred file again");

    // Ctrl-C during the freeze: undone too.
    let run = rig
        .cutover(&["--freeze"], |line, pid| {
            if line.contains("6. freeze") {
                let _ = std::process::Command::new("kill")
                    .args(["-INT", &pid.to_string()])
                    .status();
            }
        })
        .await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stdout.contains("interrupted"), "{}", run.stdout);
    assert!(run.stdout.contains("freeze undone"), "{}", run.stdout);
    rig.app_can_write().await.expect("writable after Ctrl-C");
    assert_eq!(rig.task_status().await, "running");

    // The writer's rows written around the aborts all arrive: nothing lost.
    let (committed, _) = app.finish().await;
    rig.wait_for_target_to_hold(&committed).await;

    // Fixed: the next run switches.
    let run = rig.cutover(&["--freeze"], |_, _| {}).await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(run.stdout.contains("SWITCH NOW"), "{}", run.stdout);
}

/// The write-stop proof: a superuser (which a setting cannot freeze) keeps writing during the freeze;
/// its changes, decoded from the source, fail the last gate after the task was stopped. The freeze is
/// undone and the task this run stopped resumes.
#[tokio::test]
async fn writes_that_go_on_in_the_freeze_fail_the_proof_and_the_stopped_task_resumes() {
    let Some(rig) = rig("cutover_proof").await else {
        return;
    };
    let reverse = rig.reverse_task().await;
    let superuser = writer(&rig.dbs.source_url, OTHER_WRITE);
    let run = rig
        .cutover(&["--freeze", "--way-back-task-arn", &reverse], |_, _| {})
        .await;
    let (committed, errors) = superuser.finish().await;
    assert!(
        committed.len() > 20,
        "the superuser kept writing: {} commits, errors {errors:?}",
        committed.len()
    );
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("writes did not stop") && run.stdout.contains("other.log"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("stopped in phase 14"), "{}", run.stdout);
    assert!(run.stdout.contains("freeze undone"), "{}", run.stdout);
    assert!(run.stdout.contains("resuming"), "{}", run.stdout);
    // The reverse task this run started is stopped, and the slot it created is dropped with the abort:
    // nothing keeps the target's WAL.
    assert!(
        run.stdout.contains("13. way back")
            && run.stdout.contains("the reverse task is starting from")
            && run
                .stdout
                .contains("reverse task this run started is stopped")
            && run.stdout.contains("is dropped"),
        "{}",
        run.stdout
    );
    assert_ne!(rig.dms.task_status(&reverse).await, "running");
    assert_eq!(
        scalar(
            &rig.dbs.target_url,
            &format!(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}'",
                rig.way_back_slot()
            )
        )
        .await,
        0
    );
    rig.app_can_write().await.expect("writable after the abort");
    wait_for("the task to run again", Duration::from_secs(60), || async {
        (rig.task_status().await == "running").then_some(())
    })
    .await;
}

/// Without --freeze the operator stops the application: the command says when, waits for a quiet
/// source, and counts the outage from the last change it decoded. With the reverse task given, the way
/// back runs from the switch on: a write made on the target afterwards reaches the source, and nothing
/// from before the switch is replayed.
#[tokio::test]
async fn the_operator_stops_writes_when_told_and_the_command_proves_it() {
    let Some(rig) = rig("cutover_operator").await else {
        return;
    };
    let app = writer(&rig.app_url, APP_WRITE);
    let stop = Arc::clone(&app.stop);
    let reverse = rig.reverse_task().await;
    let run = rig
        .cutover(
            &["--quiet-seconds", "2", "--way-back-task-arn", &reverse],
            |line, _| {
                if line.starts_with("STOP WRITES") {
                    stop.store(true, Ordering::SeqCst);
                }
            },
        )
        .await;
    let (committed, _) = app.finish().await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("no application change on the source for 2 s"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("SWITCH NOW"), "{}", run.stdout);
    assert!(
        run.stdout.contains("The way back is running"),
        "{}",
        run.stdout
    );
    rig.wait_for_target_to_hold(&committed).await;
    rig.app_can_write()
        .await
        .expect("nothing frozen without --freeze");

    // The application, switched, writes to the target: the reverse task carries it to the source.
    connect(&rig.dbs.target_url)
        .await
        .execute(
            "INSERT INTO public.orders (id, customer_id, note) SELECT 990002, customer_id, 'after the switch' FROM public.orders LIMIT 1",
            &[],
        )
        .await
        .expect("the application writes to the target");
    wait_for(
        "the target's write on the source",
        Duration::from_secs(60),
        || async {
            (scalar(
                &rig.dbs.source_url,
                "SELECT count(*) FROM public.orders WHERE id = 990002",
            )
            .await
                == 1)
                .then_some(())
        },
    )
    .await;
    let stats = rig
        .dms
        .dms_client()
        .await
        .table_statistics(&reverse)
        .await
        .expect("the reverse task's statistics");
    let orders = stats.iter().find(|t| t.table == "orders").expect("orders");
    assert_eq!(
        (orders.inserts, orders.updates, orders.deletes),
        (1, 0, 0),
        "only the write after the switch is replayed"
    );
}
