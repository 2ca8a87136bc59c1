//! The metrics capability: the latest DMS CDC latency from CloudWatch. `CloudWatchMetrics` is the real
//! adapter (it reaches moto in the lab through `AWS_ENDPOINT_URL`); tests pass a fake implementing `Metrics`.
//!
//! DMS publishes `CDCLatencySource` / `CDCLatencyTarget` in namespace `AWS/DMS` with the dimensions
//! `ReplicationInstanceIdentifier` (the instance identifier DescribeReplicationInstances reports, stored
//! lowercase — not the id in the `rep:` ARN) and `ReplicationTaskIdentifier` (the resource id after
//! `task:` in the task ARN), and only while CDC runs
//! (<https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Monitoring.html#CHAP_Monitoring.Metrics>).

use std::future::Future;

use aws_sdk_cloudwatch::types::{
    Dimension, Metric, MetricDataQuery, MetricDataResult, MetricStat, ScanBy,
};
use aws_sdk_cloudwatch::Client;
use aws_smithy_types::DateTime;

use crate::errors::{classify_sdk_error, StepError};
use crate::rules::task_phase::CdcLatency;

pub const NAMESPACE: &str = "AWS/DMS";
pub const CDC_LATENCY_SOURCE: &str = "CDCLatencySource";
pub const CDC_LATENCY_TARGET: &str = "CDCLatencyTarget";
/// The IAM action the adapter needs (the stack's policy is derived from these strings).
pub const GET_METRIC_DATA_ACTION: &str = "cloudwatch:GetMetricData";

/// Only datapoints this recent count: an older one describes a CDC run that may have ended.
const LOOKBACK_SECONDS: i64 = 300;
/// DMS publishes these metrics once a minute.
const PERIOD_SECONDS: i32 = 60;

/// Which task's metrics to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskMetricsKey {
    /// `ReplicationInstanceIdentifier`: the lowercase identifier, not the ARN's resource id.
    pub instance_identifier: String,
    /// `ReplicationTaskIdentifier`: the resource id after `task:` in the task ARN.
    pub task_resource_id: String,
}

pub trait Metrics {
    /// The newest value of each latency metric in the last few minutes; `None` where there is none.
    fn cdc_latency(
        &self,
        key: &TaskMetricsKey,
        now_epoch_seconds: i64,
    ) -> impl Future<Output = Result<CdcLatency, StepError>> + Send;
}

#[derive(Clone)]
pub struct CloudWatchMetrics {
    client: Client,
}

impl CloudWatchMetrics {
    pub fn new(client: Client) -> Self {
        CloudWatchMetrics { client }
    }
}

fn query(id: &str, metric_name: &str, key: &TaskMetricsKey) -> MetricDataQuery {
    let dimension = |name: &str, value: &str| Dimension::builder().name(name).value(value).build();
    let metric = Metric::builder()
        .namespace(NAMESPACE)
        .metric_name(metric_name)
        .dimensions(dimension(
            "ReplicationInstanceIdentifier",
            &key.instance_identifier,
        ))
        .dimensions(dimension(
            "ReplicationTaskIdentifier",
            &key.task_resource_id,
        ))
        .build();
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(
            MetricStat::builder()
                .metric(metric)
                .period(PERIOD_SECONDS)
                // The worst second of the minute: readiness must not rest on an average.
                .stat("Maximum")
                .build(),
        )
        .return_data(true)
        .build()
}

/// The value with the newest timestamp (the API's order is a request option moto may ignore).
fn newest(timestamps: &[DateTime], values: &[f64]) -> Option<f64> {
    timestamps
        .iter()
        .zip(values)
        .max_by_key(|(t, _)| (t.secs(), t.subsec_nanos()))
        .map(|(_, v)| *v)
        .filter(|v| v.is_finite())
}

impl Metrics for CloudWatchMetrics {
    async fn cdc_latency(
        &self,
        key: &TaskMetricsKey,
        now_epoch_seconds: i64,
    ) -> Result<CdcLatency, StepError> {
        self.latency_since(key, now_epoch_seconds, LOOKBACK_SECONDS, |points| {
            newest(points.timestamps(), points.values())
        })
        .await
    }
}

impl CloudWatchMetrics {
    /// The worst (highest) value of each latency metric over the last `window_seconds`: `cutover-check`
    /// wants the latency to have stayed under target for the whole window, not just its last minute.
    /// `None` where the window holds no datapoint.
    pub async fn cdc_latency_worst(
        &self,
        key: &TaskMetricsKey,
        now_epoch_seconds: i64,
        window_seconds: i64,
    ) -> Result<CdcLatency, StepError> {
        self.latency_since(key, now_epoch_seconds, window_seconds, |points| {
            points
                .values()
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .reduce(f64::max)
        })
        .await
    }

    /// Both latency metrics over the last `window_seconds`, each series reduced to one value by `pick`.
    async fn latency_since(
        &self,
        key: &TaskMetricsKey,
        now_epoch_seconds: i64,
        window_seconds: i64,
        pick: impl Fn(&MetricDataResult) -> Option<f64>,
    ) -> Result<CdcLatency, StepError> {
        let resource = format!(
            "{NAMESPACE} metrics of task {} on instance {}",
            key.task_resource_id, key.instance_identifier
        );
        let out = self
            .client
            .get_metric_data()
            .metric_data_queries(query("source", CDC_LATENCY_SOURCE, key))
            .metric_data_queries(query("target", CDC_LATENCY_TARGET, key))
            .start_time(DateTime::from_secs(now_epoch_seconds - window_seconds))
            .end_time(DateTime::from_secs(
                now_epoch_seconds + i64::from(PERIOD_SECONDS),
            ))
            .scan_by(ScanBy::TimestampDescending)
            .send()
            .await
            .map_err(|e| classify_sdk_error(GET_METRIC_DATA_ACTION, &resource, &e))?;
        let mut latency = CdcLatency::default();
        for result in out.metric_data_results() {
            match result.id() {
                Some("source") => latency.source_seconds = pick(result),
                Some("target") => latency.target_seconds = pick(result),
                _ => {}
            }
        }
        Ok(latency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_datapoint_wins_whatever_the_order() {
        let t = |s| DateTime::from_secs(s);
        assert_eq!(
            newest(&[t(100), t(160), t(40)], &[3.0, 1.0, 9.0]),
            Some(1.0)
        );
        assert_eq!(newest(&[], &[]), None);
        assert_eq!(newest(&[t(1)], &[f64::NAN]), None);
    }

    #[test]
    fn queries_carry_the_dms_dimensions() {
        let key = TaskMetricsKey {
            instance_identifier: "lab-instance".into(),
            task_resource_id: "ABCDEF".into(),
        };
        let q = query("source", CDC_LATENCY_SOURCE, &key);
        let metric = q.metric_stat().and_then(|s| s.metric()).unwrap();
        assert_eq!(metric.namespace(), Some("AWS/DMS"));
        assert_eq!(metric.metric_name(), Some("CDCLatencySource"));
        let dims: Vec<_> = metric
            .dimensions()
            .iter()
            .map(|d| (d.name().unwrap_or(""), d.value().unwrap_or("")))
            .collect();
        assert_eq!(
            dims,
            vec![
                ("ReplicationInstanceIdentifier", "lab-instance"),
                ("ReplicationTaskIdentifier", "ABCDEF")
            ]
        );
    }
}
