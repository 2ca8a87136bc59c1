//! The capability to send one notification. The business rules (rendering) depend on the trait; the SNS
//! adapter is the real one, tests pass their own.

use std::future::Future;

use aws_sdk_sns::types::MessageAttributeValue;

use crate::errors::{classify_sdk_error, StepError};
use crate::rules::events::Event;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub event: Event,
    pub execution_id: String,
    /// ASCII, at most 100 characters, no line breaks (SNS rules for email subjects).
    pub subject: String,
    pub body: String,
}

pub trait Notifier {
    fn publish(
        &self,
        notification: &Notification,
    ) -> impl Future<Output = Result<(), StepError>> + Send;
}

pub struct SnsNotifier {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsNotifier {
    pub fn new(client: aws_sdk_sns::Client, topic_arn: String) -> Self {
        SnsNotifier { client, topic_arn }
    }
}

fn attribute(value: &str) -> Result<MessageAttributeValue, StepError> {
    MessageAttributeValue::builder()
        .data_type("String")
        // SNS rejects an empty attribute value.
        .string_value(if value.is_empty() { "-" } else { value })
        .build()
        .map_err(|e| {
            StepError::new(
                crate::ErrorName::AwsRejected,
                format!("message attribute: {e}"),
            )
        })
}

impl Notifier for SnsNotifier {
    async fn publish(&self, notification: &Notification) -> Result<(), StepError> {
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(&notification.subject)
            .message(&notification.body)
            .message_attributes("event", attribute(notification.event.as_str())?)
            .message_attributes("executionId", attribute(&notification.execution_id)?)
            .send()
            .await
            .map_err(|e| classify_sdk_error("sns:Publish", &self.topic_arn, &e))?;
        Ok(())
    }
}
