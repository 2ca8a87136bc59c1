//! Runs a built Lambda binary exactly as Lambda would: the binary talks to a Runtime API served by
//! `cargo lambda watch --only-lambda-apis`, and the test invokes it through the Invoke API. Both processes
//! die with this value.

use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};

use crate::lab::workspace_root;

pub struct LocalLambda {
    name: String,
    port: u16,
    _runtime_api: Child,
    _function: Child,
    http: reqwest::Client,
}

/// A function error as Lambda reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionError {
    pub error_type: String,
    pub error_message: String,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl LocalLambda {
    /// Starts the Runtime API and the function `binary` under the name `name` with `env`.
    pub async fn start(
        cargo_lambda: &Path,
        name: &str,
        binary: &Path,
        env: &[(String, String)],
    ) -> LocalLambda {
        let port = free_port();
        let runtime_api = Command::new(cargo_lambda)
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "-A",
                "127.0.0.1",
                "-P",
                &port.to_string(),
            ])
            .current_dir(workspace_root())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("cargo lambda watch starts");
        let http = reqwest::Client::new();
        wait_for_port(port).await;
        let function = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt/{name}"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the function binary starts");
        LocalLambda {
            name: name.to_string(),
            port,
            _runtime_api: runtime_api,
            _function: function,
            http,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Invoke API URL of this function (what the lab's Lambda router forwards to).
    pub fn invoke_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/2015-03-31/functions/{}/invocations",
            self.port, self.name
        )
    }

    /// Invokes the function once; a function error comes back as `Err` with its `errorType`.
    pub async fn invoke(&self, payload: &Value) -> Result<Value, FunctionError> {
        let url = format!(
            "http://127.0.0.1:{}/2015-03-31/functions/{}/invocations",
            self.port, self.name
        );
        let response = self
            .http
            .post(&url)
            .json(payload)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .expect("the Invoke API answers");
        let status = response.status();
        let body: Value = response.json().await.expect("a JSON answer");
        // cargo lambda watch reports a function error as HTTP 500 (real Lambda: 200 + X-Amz-Function-Error).
        if status.is_success() {
            Ok(body)
        } else {
            Err(FunctionError {
                error_type: body["errorType"].as_str().unwrap_or_default().to_string(),
                error_message: body["errorMessage"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            })
        }
    }
}

async fn wait_for_port(port: u16) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cargo lambda watch did not listen on {port} within 10 s");
}
