//! An SNS topic in moto with an SQS queue subscribed, so a test reads back exactly what was published.

use std::time::{Duration, Instant};

use serde_json::Value;

pub struct TopicWithQueue {
    pub topic_arn: String,
    pub queue_url: String,
    sqs: aws_sdk_sqs::Client,
}

/// One SNS notification as delivered to SQS (not raw: the envelope carries Subject and attributes).
#[derive(Debug, Clone)]
pub struct Delivered {
    pub subject: String,
    pub message: String,
    pub attributes: Value,
}

impl TopicWithQueue {
    pub async fn create(config: &aws_config::SdkConfig, name: &str) -> TopicWithQueue {
        // moto keeps state between runs: a fresh topic and queue per run, so no stale message is read.
        let name = &crate::unique_name(name);
        let sns = aws_sdk_sns::Client::new(config);
        let sqs = aws_sdk_sqs::Client::new(config);
        let topic_arn = sns
            .create_topic()
            .name(name)
            .send()
            .await
            .expect("create topic")
            .topic_arn
            .expect("arn");
        let queue_url = sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("url");
        let queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                    .cloned()
            })
            .expect("queue arn");
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(queue_arn)
            .send()
            .await
            .expect("subscribe");
        TopicWithQueue {
            topic_arn,
            queue_url,
            sqs,
        }
    }

    /// Waits up to `timeout` for `count` messages; returns what arrived (maybe fewer).
    pub async fn receive(&self, count: usize, timeout: Duration) -> Vec<Delivered> {
        let start = Instant::now();
        let mut out = Vec::new();
        while out.len() < count && start.elapsed() < timeout {
            let batch = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("receive");
            for message in batch.messages.unwrap_or_default() {
                let envelope: Value = serde_json::from_str(message.body().unwrap_or("{}"))
                    .expect("SNS envelope JSON");
                out.push(Delivered {
                    subject: envelope["Subject"].as_str().unwrap_or_default().to_string(),
                    message: envelope["Message"].as_str().unwrap_or_default().to_string(),
                    attributes: envelope["MessageAttributes"].clone(),
                });
                if let Some(handle) = message.receipt_handle() {
                    self.sqs
                        .delete_message()
                        .queue_url(&self.queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .expect("delete");
                }
            }
        }
        out
    }
}
