//! CDC latency to CloudWatch as DMS publishes it: namespace `AWS/DMS`, metrics `CDCLatencySource` and
//! `CDCLatencyTarget` in seconds, dimensions `ReplicationInstanceIdentifier` (the lowercase instance
//! identifier) and `ReplicationTaskIdentifier` (the resource id after `task:` in the task ARN).
//! https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Monitoring.html#CHAP_Monitoring.Metrics.Task

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};

pub const NAMESPACE: &str = "AWS/DMS";

fn datum(name: &str, instance: &str, task_id: &str, seconds: f64) -> MetricDatum {
    MetricDatum::builder()
        .metric_name(name)
        .dimensions(
            Dimension::builder()
                .name("ReplicationInstanceIdentifier")
                .value(instance)
                .build(),
        )
        .dimensions(
            Dimension::builder()
                .name("ReplicationTaskIdentifier")
                .value(task_id)
                .build(),
        )
        .unit(StandardUnit::Seconds)
        .value(seconds)
        .timestamp(DateTime::from(std::time::SystemTime::now()))
        .build()
}

/// Best effort: a failed push is logged, never fatal to the task (DMS's own metrics can lag too).
pub async fn push(
    client: &aws_sdk_cloudwatch::Client,
    instance: &str,
    task_id: &str,
    source_seconds: f64,
    target_seconds: f64,
) {
    let result = client
        .put_metric_data()
        .namespace(NAMESPACE)
        .metric_data(datum("CDCLatencySource", instance, task_id, source_seconds))
        .metric_data(datum("CDCLatencyTarget", instance, task_id, target_seconds))
        .send()
        .await;
    if let Err(err) = result {
        tracing::warn!(error = %aws_sdk_cloudwatch::error::DisplayErrorContext(&err), "PutMetricData failed");
    }
}
