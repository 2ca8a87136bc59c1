use dms_core::aws::db_secret::SecretsManagerStore;
use dms_core::aws::dms::DmsClient;
use dms_core::aws::load_config;
use dms_core::defect::catch_defects;
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};
use serde_json::Value;

mod executions;
mod handler;
mod plan_file;
mod plan_source;
mod start_rules;
mod target_tables;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    // Optional: without it the check for another running execution is skipped (and logged).
    let state_machine_arn = std::env::var("STATE_MACHINE_ARN")
        .ok()
        .filter(|v| !v.trim().is_empty());
    // Optional: the stack's bucket, where a console user uploads the plan file; without it no plan is read.
    let plan_bucket = std::env::var("PLAN_BUCKET")
        .ok()
        .filter(|v| !v.trim().is_empty());
    // Set by the stack with EnableFallback: the way back's reverse task, whose state decides whether the
    // forward task may start (start_rules::way_back_refusal).
    let way_back_task_arn = std::env::var("WAY_BACK_TASK_ARN")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let config = load_config().await;
    let dms = DmsClient::new(aws_sdk_databasemigration::Client::new(&config));
    let deps = handler::Deps {
        dms: dms.clone(),
        secrets: SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(&config)),
        executions: executions::SfnExecutions::new(
            aws_sdk_sfn::Client::new(&config),
            state_machine_arn,
        ),
        target_tables: target_tables::PgTargetTables,
        modify: dms,
        plans: plan_source::S3PlanSource::new(aws_sdk_s3::Client::new(&config), plan_bucket),
        way_back_task_arn,
    };
    let deps = &deps;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        catch_defects(handler::handle(event.payload, deps)).await
    }))
    .await
}
