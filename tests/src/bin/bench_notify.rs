//! `make bench` row: cold start to first answer and peak RSS of the notify Lambda's release bootstrap,
//! side by side with a Python 3 handler doing the same SNS publish with boto3 under awslambdaric, both
//! against moto in the same run. Each sample is a fresh process: spawn → first invocation answered.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use integration_tests::lab::{workspace_root, Lab};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

const SAMPLES: usize = 10;

struct Sample {
    cold_start: Duration,
    /// Spawn → the runtime's first `next` request: process start, client set-up, imports.
    init: Duration,
    peak_rss_kib: u64,
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// A minimal Lambda Runtime API (next / response / error) serving exactly one invocation, so both runtimes
/// are timed the same way: from process spawn to the handler's response arriving, nothing else in the loop.
struct OneShotRuntime {
    port: u16,
    answered: tokio::sync::mpsc::Receiver<(bool, String)>,
    polled: tokio::sync::mpsc::Receiver<Instant>,
    _server: tokio::task::JoinHandle<()>,
}

async fn one_shot_runtime(payload: Value) -> OneShotRuntime {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::HeaderMap;
    use axum::routing::{get, post};

    type Done = tokio::sync::mpsc::Sender<(bool, String)>;
    let (done, answered) = tokio::sync::mpsc::channel::<(bool, String)>(4);
    let (poll, polled) = tokio::sync::mpsc::channel::<Instant>(4);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let next = move || {
        let payload = payload.clone();
        let poll = poll.clone();
        async move {
            let _ = poll.try_send(Instant::now());
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() + 60_000)
                .unwrap_or(0);
            let mut headers = HeaderMap::new();
            headers.insert(
                "lambda-runtime-aws-request-id",
                "bench-1".parse().expect("header"),
            );
            headers.insert(
                "lambda-runtime-deadline-ms",
                deadline.to_string().parse().expect("header"),
            );
            headers.insert(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:notify"
                    .parse()
                    .expect("header"),
            );
            headers.insert(
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000"
                    .parse()
                    .expect("header"),
            );
            (headers, axum::Json(payload))
        }
    };
    let respond = |ok: bool| {
        move |State(done): State<Done>, UrlPath(_id): UrlPath<String>, body: String| async move {
            let _ = done.send((ok, body)).await;
            axum::http::StatusCode::ACCEPTED
        }
    };
    let init_error = |State(done): State<Done>, body: String| async move {
        let _ = done.send((false, body)).await;
        axum::http::StatusCode::ACCEPTED
    };
    let app = axum::Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(respond(true)),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            post(respond(false)),
        )
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(done);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    OneShotRuntime {
        port,
        answered,
        polled,
        _server: server,
    }
}

async fn one_sample(mut command: Command, payload: &Value) -> Sample {
    let mut runtime = one_shot_runtime(payload.clone()).await;
    command
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("127.0.0.1:{}", runtime.port),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", "notify")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let start = Instant::now();
    let child: Child = command.spawn().expect("function starts");
    let answer = tokio::time::timeout(Duration::from_secs(60), runtime.answered.recv()).await;
    let cold_start = start.elapsed();
    match answer {
        Ok(Some((true, _))) => {}
        other => panic!("the function did not answer successfully: {other:?}"),
    }
    let init = runtime
        .polled
        .try_recv()
        .map(|at| at - start)
        .unwrap_or(cold_start);
    let peak = child.id().map(peak_rss_kib).unwrap_or(0);
    drop(child);
    Sample {
        cold_start,
        init,
        peak_rss_kib: peak,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn row(label: &str, samples: &[Sample]) -> (f64, f64) {
    let ms: Vec<f64> = samples
        .iter()
        .map(|s| s.cold_start.as_secs_f64() * 1000.0)
        .collect();
    let rss: Vec<f64> = samples
        .iter()
        .map(|s| s.peak_rss_kib as f64 / 1024.0)
        .collect();
    let (min, max) = (
        ms.iter().cloned().fold(f64::MAX, f64::min),
        ms.iter().cloned().fold(0.0, f64::max),
    );
    let init = median(
        samples
            .iter()
            .map(|s| s.init.as_secs_f64() * 1000.0)
            .collect(),
    );
    let (med_ms, med_rss) = (median(ms), median(rss));
    println!(
        "| {label:<34} | {med_ms:>9.1} | {min:>7.1} | {max:>7.1} | {init:>7.1} | {med_rss:>12.1} |"
    );
    (med_ms, med_rss)
}

#[tokio::main]
async fn main() {
    let Some(lab) = Lab::get().await else {
        std::process::exit(2)
    };
    let root = workspace_root();
    let rust_bin = root.join("target/release/notify");
    assert!(
        rust_bin.exists(),
        "build it first: cargo build --release -p notify (make bench does)"
    );
    let python: PathBuf = root.join(".tools/lambda/bin/python");
    let config = lab.aws_config().await;
    let topic = aws_sdk_sns::Client::new(&config)
        .create_topic()
        .name("bench-notify")
        .send()
        .await
        .expect("topic")
        .topic_arn
        .expect("arn");

    let payload = json!({"event": "started", "executionId": "bench", "state": {
        "replicationInstanceArn": "arn:aws:dms:us-east-1:123456789012:rep:BENCH",
        "sourceEndpointArn": "arn:aws:dms:us-east-1:123456789012:endpoint:SRC",
        "targetEndpointArn": "arn:aws:dms:us-east-1:123456789012:endpoint:TGT",
        "replicationTaskArn": "arn:aws:dms:us-east-1:123456789012:task:BENCHTASK",
        "sourceEndpointHost": "db.example.com", "sourcePort": 5432}});

    let env = |cmd: &mut Command| {
        // Lambda sets both region variables; boto3 reads AWS_DEFAULT_REGION.
        cmd.env_clear()
            .envs(lab.aws_env())
            .env("AWS_DEFAULT_REGION", lab.var("AWS_REGION"))
            .env("TOPIC_ARN", &topic)
            .env("PATH", std::env::var("PATH").unwrap_or_default());
    };
    let mut rust = Vec::new();
    let mut py = Vec::new();
    for _ in 0..SAMPLES {
        let mut cmd = Command::new(&rust_bin);
        env(&mut cmd);
        rust.push(one_sample(cmd, &payload).await);
        let mut cmd = Command::new(&python);
        env(&mut cmd);
        cmd.args(["-m", "awslambdaric", "notify_handler.handler"])
            .current_dir(root.join("tests/bench"));
        py.push(one_sample(cmd, &payload).await);
    }

    // The same SNS publish, warm, from this process: the moto round trip both runtimes pay inside their
    // first answer. Subtracting it shows what each runtime itself costs to start.
    let sns = aws_sdk_sns::Client::new(&config);
    let mut publish_ms = Vec::new();
    for _ in 0..SAMPLES {
        let start = Instant::now();
        sns.publish()
            .topic_arn(&topic)
            .subject("bench")
            .message("warm publish")
            .send()
            .await
            .expect("publish");
        publish_ms.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let publish = median(publish_ms);

    println!("\nnotify Lambda: cold start to first answer (spawn → SNS publish to moto → response at the Runtime API), {SAMPLES} fresh processes each");
    println!("| runtime                            | median ms |  min ms |  max ms | init ms | peak RSS MiB |");
    println!("|------------------------------------|-----------|---------|---------|---------|--------------|");
    let (rust_ms, rust_rss) = row("Rust notify (release bootstrap)", &rust);
    let (py_ms, py_rss) = row("Python 3 + boto3 (awslambdaric)", &py);
    println!("| warm SNS publish to moto (both pay it) | {publish:>5.1} |         |         |         |              |");
    println!(
        "Cold start to first answer: Rust is {:.1}x faster; without the shared moto round trip ({publish:.1} ms): {:.1}x (goal >= 30x).",
        py_ms / rust_ms,
        (py_ms - publish).max(0.1) / (rust_ms - publish).max(0.1),
    );
    println!("Peak RSS: Rust {rust_rss:.1} MiB vs Python {py_rss:.1} MiB (goal <= 16 MiB).");
    println!("Measured on this machine's x86_64 build; the deployed arm64 build is the same code.");
}
