//! The CloudFormation custom resource protocol: the request CloudFormation sends, and the response this
//! function PUTs to the request's pre-signed `ResponseURL`. Until a response arrives CloudFormation waits
//! (up to the resource's `ServiceTimeout`), so every request gets exactly one answer.
//! https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-responses.html

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use dms_core::{ErrorName, StepError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// CloudFormation rejects a response body larger than 4,096 bytes; the reason and data are cut to fit.
pub const MAX_RESPONSE_BYTES: usize = 4096;
pub const MAX_REASON_CHARS: usize = 1800;
pub const MAX_DATA_VALUE_CHARS: usize = 400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RequestType {
    Create,
    Update,
    Delete,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CfnRequest {
    pub request_type: RequestType,
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    /// `Custom::StackCleanup`, `Custom::DmsServiceRoles` or `Custom::UpdateGuard`: which resource of this
    /// function the request is for.
    #[serde(default)]
    pub resource_type: String,
    /// Absent on Create.
    pub physical_resource_id: Option<String>,
    #[serde(default)]
    pub resource_properties: Value,
    /// On Update only: the properties before the update
    /// (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-requesttypes-update.html).
    #[serde(default)]
    pub old_resource_properties: Value,
}

impl CfnRequest {
    /// A string property, None when absent or blank.
    pub fn property(&self, name: &str) -> Option<&str> {
        string_property(&self.resource_properties, name)
    }

    /// A string property of the properties before an Update, None when absent or blank.
    pub fn old_property(&self, name: &str) -> Option<&str> {
        string_property(&self.old_resource_properties, name)
    }

    /// A list-of-strings property (CloudFormation passes a `List<...>` parameter as a JSON array).
    pub fn list_property(&self, name: &str) -> Vec<String> {
        self.resource_properties
            .get(name)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn string_property<'a>(properties: &'a Value, name: &str) -> Option<&'a str> {
    properties
        .get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Success,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CfnResponse {
    pub status: Status,
    pub reason: String,
    pub physical_resource_id: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub data: BTreeMap<String, String>,
}

/// Cuts `text` to at most `max` characters, saying so.
pub fn bounded(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(15)).collect();
    cut.push_str(" ... (cut; see the log)");
    cut
}

impl CfnResponse {
    /// The JSON body, its reason and data values bounded so it fits CloudFormation's limit (multi-byte
    /// characters can make the first cut too long; the second one is short enough whatever they are).
    pub fn body(&self) -> String {
        let first = self.bounded_body(MAX_REASON_CHARS, MAX_DATA_VALUE_CHARS);
        if first.len() < MAX_RESPONSE_BYTES {
            return first;
        }
        self.bounded_body(MAX_REASON_CHARS / 4, MAX_DATA_VALUE_CHARS / 8)
    }

    fn bounded_body(&self, reason_chars: usize, value_chars: usize) -> String {
        let mut bounded_response = self.clone();
        bounded_response.reason = bounded(&self.reason, reason_chars);
        for value in bounded_response.data.values_mut() {
            *value = bounded(value, value_chars);
        }
        // Serialising a struct of strings cannot fail.
        serde_json::to_string(&bounded_response).unwrap_or_default()
    }
}

/// Delivers a response body to the pre-signed URL.
pub trait Responder {
    fn put(&self, url: &str, body: &str) -> impl Future<Output = Result<(), StepError>> + Send;
}

/// Attempts and per-attempt timeout of the PUT. Together they stay under `handler::RESPONSE_MARGIN`, the
/// time kept free before the Lambda's deadline.
const PUT_ATTEMPTS: u32 = 3;
const PUT_TIMEOUT: Duration = Duration::from_secs(4);

pub struct HttpResponder {
    client: reqwest::Client,
}

impl HttpResponder {
    pub fn new() -> Result<Self, StepError> {
        let client = reqwest::Client::builder()
            .timeout(PUT_TIMEOUT)
            .build()
            .map_err(|e| StepError::config(format!("HTTP client: {e}")))?;
        Ok(HttpResponder { client })
    }
}

impl Responder for HttpResponder {
    async fn put(&self, url: &str, body: &str) -> Result<(), StepError> {
        let mut last_error = String::new();
        for attempt in 1..=PUT_ATTEMPTS {
            // The pre-signed S3 URL is signed without a content type: send an empty one, as cfn-response does.
            let result = self
                .client
                .put(url)
                .header(reqwest::header::CONTENT_TYPE, "")
                .body(body.to_string())
                .send()
                .await;
            match result {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                // A 4xx (expired or altered URL) will not change on a retry.
                Ok(resp) if resp.status().is_client_error() => {
                    return Err(StepError::new(
                        ErrorName::AwsRejected,
                        format!(
                            "the response URL refused the response: HTTP {}",
                            resp.status()
                        ),
                    ))
                }
                Ok(resp) => last_error = format!("HTTP {}", resp.status()),
                // reqwest errors may carry the URL, whose query string is a signature: keep only the kind.
                Err(e) if e.is_timeout() => last_error = "timed out".to_string(),
                Err(e) if e.is_connect() => last_error = "could not connect".to_string(),
                Err(_) => last_error = "the request failed".to_string(),
            }
            if attempt < PUT_ATTEMPTS {
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            }
        }
        Err(StepError::new(
            ErrorName::AwsTransient,
            format!("the response could not be delivered to CloudFormation after {PUT_ATTEMPTS} attempts: {last_error}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_has_the_protocol_field_names_and_fits_the_limit() {
        let response = CfnResponse {
            status: Status::Failed,
            reason: "é".repeat(10_000),
            physical_resource_id: "stack-stack-cleanup".into(),
            stack_id: "arn:aws:cloudformation:us-east-1:123456789012:stack/s/guid".into(),
            request_id: "req".into(),
            logical_resource_id: "StackCleanup".into(),
            data: [(
                "RevokedRuleIds".to_string(),
                "sgr-0123456789abcdef0,".repeat(500),
            )]
            .into_iter()
            .collect(),
        };
        let body = response.body();
        assert!(body.len() < MAX_RESPONSE_BYTES, "{} bytes", body.len());
        let json: Value = serde_json::from_str(&body).expect("JSON");
        for field in [
            "Status",
            "Reason",
            "PhysicalResourceId",
            "StackId",
            "RequestId",
            "LogicalResourceId",
            "Data",
        ] {
            assert!(json.get(field).is_some(), "{field} missing: {body}");
        }
        assert_eq!(json["Status"], "FAILED");
    }

    #[test]
    fn the_request_parses_with_cloudformation_field_names() {
        let request: CfnRequest = serde_json::from_value(serde_json::json!({
            "RequestType": "Delete",
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:s-stack-cleanup",
            "ResponseURL": "https://example.com/presigned",
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/s/guid",
            "RequestId": "r1",
            "ResourceType": "Custom::StackCleanup",
            "LogicalResourceId": "StackCleanup",
            "PhysicalResourceId": "s-stack-cleanup",
            "ResourceProperties": {"ServiceToken": "x", "BucketName": " b ", "StackName": ""}
        }))
        .expect("parses");
        assert_eq!(request.request_type, RequestType::Delete);
        assert_eq!(request.property("BucketName"), Some("b"));
        assert_eq!(request.property("StackName"), None);
        assert_eq!(request.property("Missing"), None);
    }
}
