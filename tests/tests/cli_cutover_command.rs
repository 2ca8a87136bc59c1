//! The built `dms-migrate cutover` against the lab: schema apply, a full-load-and-cdc task in dms-local
//! with the stack's `BatchApplyEnabled: true`, and an application role writing every 50 ms while the
//! command runs. Each test has its own databases, role, dms-local and task.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dms_core::aws::dms::{Dms, StartType};
use integration_tests::dms_local::{
    all_public_tables, full_load_done, wait_for, wait_for_task, DmsLocal,
};
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
    let app_url = lab.login_url(&dbs.source_url, &role, APP_PASSWORD);
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
    wait_for_task(
        &client,
        &task_arn,
        "the full load",
        Duration::from_secs(120),
        |task| task.status.as_str() == "running" && full_load_done(task),
    )
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

    /// `command` (cutover or rollback) on this rig's databases and schema, with the task flag and the
    /// deferred file, then `extra`.
    fn switch_args(
        &self,
        command: &str,
        task_flag: &str,
        task: &str,
        extra: &[&str],
    ) -> Vec<String> {
        let mut args: Vec<String> = [
            command,
            "--source",
            &self.dbs.source_url,
            "--target",
            &self.dbs.target_url,
            task_flag,
            task,
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
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    async fn cutover(&self, extra: &[&str], on_line: impl FnMut(&str, u32)) -> Run {
        let slot = self.way_back_slot();
        let extra: Vec<&str> = ["--way-back-slot", slot.as_str()]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        let args = self.switch_args("cutover", "--task-arn", &self.task_arn, &extra);
        self.dms_migrate(args, on_line).await
    }

    /// `dms-migrate rollback` through the way back's reverse task.
    async fn rollback(&self, reverse: &str, extra: &[&str], on_line: impl FnMut(&str, u32)) -> Run {
        let args = self.switch_args("rollback", "--way-back-task-arn", reverse, extra);
        self.dms_migrate(args, on_line).await
    }

    /// The built binary; `on_line` sees each stdout line as it comes, with the process id (to signal it).
    async fn dms_migrate(&self, args: Vec<String>, mut on_line: impl FnMut(&str, u32)) -> Run {
        let mut child = tokio::process::Command::new(binary("dms-migrate"))
            .args(args)
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
        can_write(&self.app_url).await
    }

    /// The application's role on the target too (roles are per cluster), allowed what it may on the
    /// source; its URL.
    async fn app_on_target(&self) -> String {
        let role = format!("app_{}", self.dbs.name);
        connect(&self.dbs.target_url)
            .await
            .batch_execute(&format!(
                "DROP ROLE IF EXISTS {role};
                 CREATE ROLE {role} LOGIN PASSWORD '{APP_PASSWORD}';
                 GRANT USAGE ON SCHEMA public TO {role};
                 GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
                 GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role};"
            ))
            .await
            .expect("the application's role on the target");
        self.lab
            .login_url(&self.dbs.target_url, &role, APP_PASSWORD)
    }
}

/// Waits until the database of `url` holds every one of the orders `ids`.
async fn wait_for_orders(url: &str, ids: &[i64], side: &str) {
    let client = connect(url).await;
    wait_for(
        &format!("every committed order on {side}"),
        Duration::from_secs(60),
        || async {
            let found: i64 = client
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

/// Whether the role of `url` can write now (the SQLSTATE and message when not).
async fn can_write(url: &str) -> Result<(), String> {
    connect(url)
        .await
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

impl Rig {
    async fn task_status(&self) -> String {
        self.dms.task_status(&self.task_arn).await
    }

    /// After writes have stopped: the target catches up with every committed order.
    async fn wait_for_target_to_hold(&self, ids: &[i64]) {
        wait_for_orders(&self.dbs.target_url, ids, "the target").await;
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

/// The application after the switch: a new customer (the identity column, GENERATED ALWAYS on both
/// sides before the cutover) with an order; the order's id is kept once committed.
const TARGET_WRITE: &str =
    "WITH c AS (INSERT INTO public.customers (email) VALUES ('after-switch-' || $1::bigint || '-' || clock_timestamp()) RETURNING id),
     o AS (INSERT INTO public.orders (customer_id, note) SELECT id, 'after the switch' FROM c RETURNING id)
     SELECT id FROM o";

/// A rig switched to the target by `cutover --freeze` with the way back running, and the application's
/// role on the target; (reverse task, the application's URL on the target).
async fn switched(rig: &Rig) -> (String, String) {
    let reverse = rig.reverse_task().await;
    let run = rig
        .cutover(&["--freeze", "--way-back-task-arn", &reverse], |_, _| {})
        .await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stdout.contains("The way back is running"),
        "{}",
        run.stdout
    );
    // The reverse task inserts the target's identity values: the source's column is BY DEFAULT now.
    assert_eq!(
        scalar(&rig.dbs.source_url, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.customers'::regclass AND attidentity = 'd'").await,
        1,
        "{}",
        run.stdout
    );
    (reverse, rig.app_on_target().await)
}

/// After a cutover with the way back running, the application writes to the target; `rollback
/// --freeze` freezes the target, drains the reverse task and switches back: every write the application
/// committed on the target is on the source, the source's sequences are ahead of the target's, its
/// identity column is ALWAYS again, its freeze from the cutover is undone, the target is frozen (until
/// `rollback --undo-freeze`), and the reverse task is stopped.
#[tokio::test]
async fn rollback_switches_back_with_every_target_write_on_the_source_and_its_sequences_ahead() {
    let Some(rig) = rig("rollback").await else {
        return;
    };
    let (reverse, app_target) = switched(&rig).await;
    let app = writer(&app_target, TARGET_WRITE);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let run = rig.rollback(&reverse, &["--freeze"], |_, _| {}).await;
    let after_switch = app.committed.lock().expect("committed").len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (committed, errors) = app.finish().await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(run.stdout.contains("SWITCH BACK NOW"), "{}", run.stdout);
    assert!(
        run.stdout.contains("3. live verify") && run.stdout.contains("every range equal"),
        "{}",
        run.stdout
    );
    assert!(
        committed.len() > 20,
        "the application wrote to the target: {errors:?}"
    );
    assert_eq!(
        committed.len(),
        after_switch,
        "the frozen role committed nothing on the target after the instruction"
    );

    // Every order committed on the target is on the source already: the drain proved it before the
    // instruction, so no wait.
    let source = &rig.dbs.source_url;
    let ids = committed.clone();
    let found: i64 = connect(source)
        .await
        .query_one(
            "SELECT count(*) FROM public.orders WHERE id = ANY($1)",
            &[&ids],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(found, committed.len() as i64);
    // The source's sequences are ahead of every value the target used.
    for (sequence, table) in [
        ("public.orders_id_seq", "public.orders"),
        ("public.customers_id_seq", "public.customers"),
    ] {
        let ahead = scalar(source, &format!("SELECT last_value FROM {sequence}")).await;
        let used = scalar(&rig.dbs.target_url, &format!("SELECT max(id) FROM {table}")).await;
        assert!(
            ahead > used,
            "{sequence} {ahead} <= {used} used on the target"
        );
    }
    assert_eq!(
        scalar(source, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.customers'::regclass AND attidentity = 'a'").await,
        1,
        "the source's identity column is ALWAYS again"
    );
    rig.app_can_write()
        .await
        .expect("the source is writable for the application again");
    let refused = can_write(&app_target)
        .await
        .expect_err("the target is frozen");
    assert!(refused.starts_with("25006"), "{refused}");
    assert_eq!(rig.dms.task_status(&reverse).await, "stopped");

    // verify with the sides swapped (is the source what the target holds?) finds them equal, the
    // source's sequences ahead.
    let verify = lab::dms_migrate()
        .args(["verify", "--source", &rig.dbs.target_url])
        .args(["--target", source, "--schemas", "public"])
        .output()
        .expect("verify");
    assert!(
        verify.status.success(),
        "verify: {}",
        String::from_utf8_lossy(&verify.stdout)
    );

    // Cutting over again through the same way back is refused before the forward task is touched: it
    // would apply the way back's writes to the target again.
    let again = rig
        .cutover(&["--freeze", "--way-back-task-arn", &reverse], |_, _| {})
        .await;
    assert_eq!(again.code, 1, "{}", again.stdout);
    assert!(
        again.stdout.contains("stopped in phase 1")
            && again
                .stdout
                .contains("a cutover has already switched with it"),
        "{}",
        again.stdout
    );
    assert_eq!(rig.task_status().await, "stopped");

    let undo = rig.rollback(&reverse, &["--undo-freeze"], |_, _| {}).await;
    assert_eq!(undo.code, 0, "{}", undo.stdout);
    assert!(
        undo.stdout.contains("freeze undone on the target"),
        "{}",
        undo.stdout
    );
    can_write(&app_target)
        .await
        .expect("the target writable again after --undo-freeze");
}

/// A rollback stopped before the freeze (a real difference), in it (Ctrl-C) and after the reverse task
/// was stopped (writes that go on, seen by the proof) each leave the target writable and the way back
/// running, with nothing lost; the run after the cause is fixed switches back.
#[tokio::test]
async fn a_rollback_aborted_at_each_phase_leaves_the_target_writable_and_the_way_back_running() {
    let Some(rig) = rig("rollback_abort").await else {
        return;
    };
    let (reverse, app_target) = switched(&rig).await;
    let app = writer(&app_target, TARGET_WRITE);
    let source = connect(&rig.dbs.source_url).await;

    // A real difference: a row only the target has. Reported before anything is frozen.
    source
        .execute("DELETE FROM public.orders WHERE id = 777", &[])
        .await
        .expect("a difference on the source");
    let run = rig.rollback(&reverse, &["--freeze"], |_, _| {}).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("NOT SWITCHING BACK")
            && run.stdout.contains("live verify found 1 difference")
            && run.stdout.contains("public.orders range"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("4. freeze"), "{}", run.stdout);
    can_write(&app_target).await.expect("never frozen");
    source
        .execute(
            "INSERT INTO public.orders (id, customer_id, note) VALUES (777, 778, 'order 777')",
            &[],
        )
        .await
        .expect("the row put back");

    // Ctrl-C in the freeze: undone, the reverse task still runs.
    let run = rig
        .rollback(&reverse, &["--freeze"], |line, pid| {
            if line.contains("4. freeze") {
                let _ = std::process::Command::new("kill")
                    .args(["-INT", &pid.to_string()])
                    .status();
            }
        })
        .await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stdout.contains("interrupted"), "{}", run.stdout);
    assert!(
        run.stdout.contains("freeze undone on the target"),
        "{}",
        run.stdout
    );
    can_write(&app_target).await.expect("writable after Ctrl-C");
    assert_eq!(rig.dms.task_status(&reverse).await, "running");

    // A superuser the freeze cannot bind keeps writing on the target: the proof fails the last gate
    // after the reverse task was stopped and the source's identity set back; both are undone.
    // (other.log exists on the target only: outside what the task maps and verify compares.)
    connect(&rig.dbs.target_url)
        .await
        .batch_execute("CREATE SCHEMA other; CREATE TABLE other.log (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());")
        .await
        .expect("a table of the target's own");
    let superuser = writer(&rig.dbs.target_url, OTHER_WRITE);
    let run = rig.rollback(&reverse, &["--freeze"], |_, _| {}).await;
    let _ = superuser.finish().await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("writes did not stop") && run.stdout.contains("stopped in phase 10"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("freeze undone on the target")
            && run.stdout.contains("resuming")
            && run
                .stdout
                .contains("identity column(s) of the source this run changed are as they were"),
        "{}",
        run.stdout
    );
    can_write(&app_target)
        .await
        .expect("writable after the abort");
    assert_eq!(
        scalar(&rig.dbs.source_url, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.customers'::regclass AND attidentity = 'd'").await,
        1,
        "the reverse task can insert the target's identity values again"
    );
    wait_for(
        "the reverse task to run again",
        Duration::from_secs(60),
        || async { (rig.dms.task_status(&reverse).await == "running").then_some(()) },
    )
    .await;
    let refused = rig
        .app_can_write()
        .await
        .expect_err("the source stays frozen");
    assert!(refused.starts_with("25006"), "{refused}");

    // Every order the application committed on the target around the aborts reaches the source.
    let (committed, _) = app.finish().await;
    wait_for_orders(&rig.dbs.source_url, &committed, "the source").await;

    // The next run switches back.
    let run = rig.rollback(&reverse, &["--freeze"], |_, _| {}).await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(run.stdout.contains("SWITCH BACK NOW"), "{}", run.stdout);
}

/// Phase 9 reads DMS's validation state of each mapped table (dms-local does not validate; its
/// `validationState` fault sets what DMS would report): a table in `Mismatched records` stops the cutover
/// inside the freeze, which is undone and the stopped task resumed; once every table is `Validated`, the
/// phase says so and the cutover switches.
#[tokio::test]
async fn dms_validation_states_decide_the_validation_phase() {
    let Some(rig) = rig("cutover_validation").await else {
        return;
    };
    let state = |table: &str, state: &str| {
        json!({"taskArn": rig.task_arn, "validationState":
            {"schema": "public", "table": table, "state": state, "failedRecords": 3}})
    };
    rig.dms.fault(state("orders", "Mismatched records")).await;
    rig.dms.fault(state("customers", "Validated")).await;
    let run = rig.cutover(&["--freeze", "--no-fallback"], |_, _| {}).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("stopped in phase 9")
            && run
                .stdout
                .contains("DMS validation: public.orders (Mismatched records)"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("freeze undone"), "{}", run.stdout);
    rig.app_can_write().await.expect("writable after the abort");
    assert_eq!(rig.task_status().await, "running");

    rig.dms.fault(state("orders", "Validated")).await;
    let run = rig.cutover(&["--freeze", "--no-fallback"], |_, _| {}).await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("every one of 2 tables Validated by DMS"),
        "{}",
        run.stdout
    );
}
