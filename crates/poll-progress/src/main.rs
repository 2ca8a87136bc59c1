use dms_core::aws::dms::DmsClient;
use dms_core::aws::load_config;
use dms_core::aws::metrics::CloudWatchMetrics;
use dms_core::defect::catch_defects;
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};
use serde_json::Value;

mod handler;
mod history;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let config = load_config().await;
    let deps = handler::Deps {
        dms: DmsClient::new(aws_sdk_databasemigration::Client::new(&config)),
        metrics: CloudWatchMetrics::new(aws_sdk_cloudwatch::Client::new(&config)),
        history: history::SfnHistory::new(aws_sdk_sfn::Client::new(&config)),
    };
    let deps = &deps;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        catch_defects(handler::handle(
            event.payload,
            deps,
            dms_core::clock::now_epoch_seconds(),
        ))
        .await
    }))
    .await
}
