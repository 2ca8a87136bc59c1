//! Error shapes no emulator produces on demand (throttling codes, 5xx, a garbled body), made with
//! `aws-smithy-mocks` at the HTTP level so the real SNS deserializer parses them. Moto's real responses for
//! the common cases (not found, access) are covered by the lab tests.

use aws_sdk_sns::config::retry::RetryConfig;
use aws_sdk_sns::operation::publish::PublishOutput;
use aws_sdk_sns::Client;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use aws_smithy_runtime_api::http::{Response as HttpResponse, StatusCode};
use aws_smithy_types::body::SdkBody;
use core_lib::errors::{classify_sdk_error, ErrorName};

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:migration";

fn query_error(status: u16, code: &str) -> impl Fn() -> HttpResponse + Send + Sync + 'static {
    let body = format!(
        "<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><Error><Type>Sender</Type>\
         <Code>{code}</Code><Message>{code} happened</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"
    );
    move || {
        HttpResponse::new(
            StatusCode::try_from(status).expect("status"),
            SdkBody::from(body.clone()),
        )
    }
}

async fn publish_with(
    response: impl Fn() -> HttpResponse + Send + Sync + 'static,
) -> core_lib::StepError {
    let rule = mock!(Client::publish).then_http_response(response);
    let client = mock_client!(aws_sdk_sns, RuleMode::MatchAny, &[&rule], |c| c
        .retry_config(RetryConfig::disabled()));
    let err = client
        .publish()
        .topic_arn(TOPIC)
        .message("m")
        .send()
        .await
        .expect_err("the mock answers with an error");
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
        let err = publish_with(query_error(400, code)).await;
        assert_eq!(err.name, ErrorName::AwsThrottled, "{code}: {}", err.message);
        assert!(err.message.contains(code), "{}", err.message);
    }
}

#[tokio::test]
async fn status_codes_without_a_known_code() {
    let err = publish_with(query_error(503, "SomethingNew")).await;
    assert_eq!(err.name, ErrorName::AwsTransient, "{}", err.message);
    let err = publish_with(query_error(429, "SomethingNew")).await;
    assert_eq!(err.name, ErrorName::AwsThrottled, "{}", err.message);
    let err = publish_with(query_error(400, "InvalidParameter")).await;
    assert_eq!(err.name, ErrorName::AwsRejected, "{}", err.message);
}

#[tokio::test]
async fn access_denied_names_the_action() {
    let err = publish_with(query_error(403, "AuthorizationError")).await;
    assert_eq!(err.name, ErrorName::AwsAccessDenied);
    assert!(
        err.message.contains("must allow `sns:Publish`"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn a_body_the_sdk_cannot_read_is_classified_not_a_panic() {
    let err = publish_with(|| {
        HttpResponse::new(
            StatusCode::try_from(500).expect("status"),
            SdkBody::from("<<<not xml"),
        )
    })
    .await;
    assert_eq!(err.name, ErrorName::AwsTransient, "{}", err.message);
}

#[tokio::test]
async fn success_is_not_an_error() {
    let rule =
        mock!(Client::publish).then_output(|| PublishOutput::builder().message_id("m-1").build());
    let client = mock_client!(aws_sdk_sns, &[&rule]);
    let out = client
        .publish()
        .topic_arn(TOPIC)
        .message("m")
        .send()
        .await
        .expect("mocked success");
    assert_eq!(out.message_id(), Some("m-1"));
}
