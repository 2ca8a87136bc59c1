//! CloudFormation custom resources under test: a local stand-in for the pre-signed ResponseURL, and a
//! fresh moto account per test for account-wide resources (IAM roles with fixed names).

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::put;
use axum::Router;
use serde_json::Value;

use crate::lab::Lab;

/// One PUT the response server received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub content_type: Option<String>,
    pub body: Value,
}

/// The pre-signed ResponseURL stand-in: records every PUT and answers 200 like S3.
pub struct ResponseServer {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl ResponseServer {
    pub async fn start() -> ResponseServer {
        let received = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/responses/{id}", put(record))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the response server");
        let port = listener.local_addr().expect("address").port();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("response server");
        });
        ResponseServer {
            port,
            received,
            _task: task,
        }
    }

    /// A URL shaped like a pre-signed S3 URL (the query string is a signature the function must not log).
    pub fn url(&self, id: &str) -> String {
        format!(
            "http://127.0.0.1:{}/responses/{id}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=secret{id}",
            self.port
        )
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

async fn record(
    State(received): State<Arc<Mutex<Vec<Received>>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> &'static str {
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    received.lock().expect("lock").push(Received {
        path: id,
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body,
    });
    ""
}

/// Credentials of an AWS account of its own in moto: moto switches account for the access keys STS
/// AssumeRole returns into another account's role (the role need not exist).
pub struct MotoAccount {
    pub id: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
}

fn xml_text(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    xml.split_once(&open)
        .and_then(|(_, rest)| rest.split_once(&close))
        .map(|(text, _)| text.to_string())
        .unwrap_or_else(|| panic!("no <{tag}> in the AssumeRole answer: {xml}"))
}

impl MotoAccount {
    /// A new account (its id is unique to this process and call).
    pub async fn fresh(lab: &Lab) -> MotoAccount {
        let unique = crate::unique_name("a");
        let digits: String = unique.chars().filter(char::is_ascii_digit).collect();
        let tail = &digits[digits.len().saturating_sub(11)..];
        let id = format!("9{tail:0>11}");
        let region = lab.var("AWS_REGION");
        let role_arn = format!("arn:aws:iam::{id}:role/test-admin");
        let response = reqwest::Client::new()
            .post(lab.var("AWS_ENDPOINT_URL"))
            .header(
                "Authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential={}/20260101/{region}/sts/aws4_request, SignedHeaders=host, Signature=0",
                    lab.var("AWS_ACCESS_KEY_ID")
                ),
            )
            .form(&[
                ("Action", "AssumeRole"),
                ("Version", "2011-06-15"),
                ("RoleArn", role_arn.as_str()),
                ("RoleSessionName", "test"),
            ])
            .send()
            .await
            .expect("moto answers AssumeRole");
        let xml = response.text().await.expect("an AssumeRole answer");
        MotoAccount {
            access_key_id: xml_text(&xml, "AccessKeyId"),
            secret_access_key: xml_text(&xml, "SecretAccessKey"),
            session_token: xml_text(&xml, "SessionToken"),
            id,
        }
    }

    /// The lab's AWS environment with this account's credentials.
    pub fn env(&self, lab: &Lab) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = lab
            .aws_env()
            .into_iter()
            .filter(|(k, _)| k != "AWS_ACCESS_KEY_ID" && k != "AWS_SECRET_ACCESS_KEY")
            .collect();
        env.push(("AWS_ACCESS_KEY_ID".into(), self.access_key_id.clone()));
        env.push((
            "AWS_SECRET_ACCESS_KEY".into(),
            self.secret_access_key.clone(),
        ));
        env.push(("AWS_SESSION_TOKEN".into(), self.session_token.clone()));
        env
    }

    pub async fn sdk_config(&self, lab: &Lab) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(lab.var("AWS_ENDPOINT_URL"))
            .region(aws_config::Region::new(lab.var("AWS_REGION")))
            .credentials_provider(aws_sdk_sns::config::Credentials::new(
                self.access_key_id.clone(),
                self.secret_access_key.clone(),
                Some(self.session_token.clone()),
                None,
                "moto-account",
            ))
            .load()
            .await
    }
}
