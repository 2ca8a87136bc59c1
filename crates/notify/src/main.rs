use dms_core::aws::notifier::SnsNotifier;
use dms_core::aws::{load_config, required_env};
use dms_core::defect::catch_defects;
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};
use serde_json::Value;

mod handler;
mod render;

/// One thread: a Lambda sandbox hands this process one invocation at a time, and starting a worker per core
/// only delays the first answer.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let topic_arn = required_env("TOPIC_ARN")?;
    // The stack's way-back task (FallbackReplicationTask); empty when it was deployed without it.
    let way_back_task_arn = std::env::var("WAY_BACK_TASK_ARN")
        .ok()
        .map(|arn| arn.trim().to_string())
        .filter(|arn| !arn.is_empty());
    let way_back_task_arn = way_back_task_arn.as_deref();
    let config = load_config().await;
    let notifier = SnsNotifier::new(aws_sdk_sns::Client::new(&config), topic_arn);
    let notifier = &notifier;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        catch_defects(handler::handle(
            event.payload,
            notifier,
            way_back_task_arn,
            dms_core::clock::now_epoch_seconds(),
        ))
        .await
    }))
    .await
}
