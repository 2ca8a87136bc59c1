//! Error shapes no emulator produces on demand (throttling codes, 5xx, an unknown fault, a garbled body),
//! answered by a local HTTP server so the real SDK client, its HTTP stack and its deserializers parse
//! them exactly as they would parse AWS's. Moto's real responses for the common cases (not found, access)
//! are covered by the lab tests.

use aws_credential_types::Credentials;
use aws_sdk_databasemigration as dms;
use aws_sdk_sns as sns;
use aws_smithy_types::retry::RetryConfig;
use dms_core::aws::dms::{Dms, DmsClient};
use dms_core::errors::{classify_sdk_error, ErrorName};
use test_doubles::{CannedHttp, CannedResponse};

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:migration";
const TASK_ARN: &str = "arn:aws:dms:us-east-1:123456789012:task:TASK1";

/// Answers every request with the same status and body; returns the endpoint URL. The server lives as long
/// as the test's runtime.
async fn answering(status: u16, content_type: &'static str, body: String) -> String {
    let server = CannedHttp::start(vec![
        CannedResponse::new(status, body).header("Content-Type", content_type)
    ])
    .await;
    server.url
}

fn credentials() -> Credentials {
    Credentials::new("AKIDEXAMPLE", "secret", None, None, "test")
}

async fn sns_answering(status: u16, body: String) -> sns::Client {
    let url = answering(status, "text/xml", body).await;
    sns::Client::from_conf(
        sns::Config::builder()
            .behavior_version(sns::config::BehaviorVersion::latest())
            .region(sns::config::Region::new("us-east-1"))
            .credentials_provider(credentials())
            .endpoint_url(url)
            .retry_config(RetryConfig::disabled())
            .build(),
    )
}

fn query_error(code: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><Error><Type>Sender</Type>\
         <Code>{code}</Code><Message>{code} happened</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"
    )
}

async fn publish_answered(status: u16, body: String) -> dms_core::StepError {
    let err = sns_answering(status, body)
        .await
        .publish()
        .topic_arn(TOPIC)
        .message("m")
        .send()
        .await
        .expect_err("the server answers with an error");
    classify_sdk_error("sns:Publish", TOPIC, &err)
}

#[tokio::test]
async fn every_throttling_code_is_aws_throttled() {
    for code in [
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    ] {
        let err = publish_answered(400, query_error(code)).await;
        assert_eq!(err.name, ErrorName::AwsThrottled, "{code}: {}", err.message);
        assert!(err.message.contains(code), "{}", err.message);
    }
}

#[tokio::test]
async fn status_codes_without_a_known_code() {
    let err = publish_answered(503, query_error("SomethingNew")).await;
    assert_eq!(err.name, ErrorName::AwsTransient, "{}", err.message);
    let err = publish_answered(429, query_error("SomethingNew")).await;
    assert_eq!(err.name, ErrorName::AwsThrottled, "{}", err.message);
    let err = publish_answered(400, query_error("InvalidParameter")).await;
    assert_eq!(err.name, ErrorName::AwsRejected, "{}", err.message);
}

#[tokio::test]
async fn access_denied_names_the_action() {
    let err = publish_answered(403, query_error("AuthorizationError")).await;
    assert_eq!(err.name, ErrorName::AwsAccessDenied);
    assert!(
        err.message.contains("must allow `sns:Publish`"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn a_body_the_sdk_cannot_read_is_classified_not_a_panic() {
    let err = publish_answered(500, "<<<not xml".to_string()).await;
    assert_eq!(err.name, ErrorName::AwsTransient, "{}", err.message);
}

#[tokio::test]
async fn success_is_not_an_error() {
    let body = "<PublishResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><PublishResult>\
                <MessageId>m-1</MessageId></PublishResult><ResponseMetadata><RequestId>r-1</RequestId>\
                </ResponseMetadata></PublishResponse>";
    let out = sns_answering(200, body.to_string())
        .await
        .publish()
        .topic_arn(TOPIC)
        .message("m")
        .send()
        .await
        .expect("a well-formed answer");
    assert_eq!(out.message_id(), Some("m-1"));
}

/// A DMS answer the SDK cannot map to a modelled error (an unknown fault, a body that is not JSON, a
/// proxy's HTML page) is classified by the DMS adapter every Lambda uses, never a panic.
#[tokio::test]
async fn unmappable_dms_answers_are_classified() {
    for (status, body, expected) in [
        (
            400,
            r#"{"__type":"SomethingNewFault","message":"new"}"#,
            ErrorName::AwsRejected,
        ),
        (400, "<html>bad request</html>", ErrorName::AwsRejected),
        (502, "<html>bad gateway</html>", ErrorName::AwsTransient),
        (
            400,
            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
            ErrorName::AwsThrottled,
        ),
        (200, "{not json", ErrorName::AwsTransient),
    ] {
        let url = answering(status, "application/x-amz-json-1.1", body.to_string()).await;
        let client = DmsClient::new(dms::Client::from_conf(
            dms::Config::builder()
                .behavior_version(dms::config::BehaviorVersion::latest())
                .region(dms::config::Region::new("us-east-1"))
                .credentials_provider(credentials())
                .endpoint_url(url)
                .retry_config(RetryConfig::disabled())
                .build(),
        ));
        let err = client
            .describe_task(TASK_ARN)
            .await
            .expect_err("the server answers with an error");
        assert_eq!(err.name, expected, "{status} {body}: {}", err.message);
        assert!(
            err.message.contains("dms:DescribeReplicationTasks"),
            "{}",
            err.message
        );
        assert!(err.message.contains(TASK_ARN), "{}", err.message);
    }
}
