use std::time::{Duration, SystemTime};

use dms_core::aws::dms::DmsClient;
use dms_core::aws::load_config;
use dms_core::defect::catch_defects;
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};
use serde_json::Value;

mod handler;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    // Optional: tests shorten the wait between DescribeConnections calls.
    let interval = std::env::var("CONNECTION_POLL_INTERVAL_MS")
        .ok()
        .and_then(|ms| ms.trim().parse::<u64>().ok())
        .map_or(handler::DEFAULT_POLL_INTERVAL, Duration::from_millis);
    // Optional: caps how long the step waits for DMS below the Lambda's own deadline (the lab's Lambda
    // emulator gives every function 600 s).
    let time_limit = std::env::var("CONNECTION_TIME_LIMIT_SECONDS")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let config = load_config().await;
    let dms = DmsClient::new(aws_sdk_databasemigration::Client::new(&config));
    let dms = &dms;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let budget = handler::time_budget(event.context.deadline(), SystemTime::now());
        let budget = time_limit.map_or(budget, |limit| budget.min(limit));
        catch_defects(handler::handle(event.payload, dms, interval, budget)).await
    }))
    .await
}
