use core_lib::aws::load_config;
use core_lib::db_secret::SecretsManagerStore;
use core_lib::defect::catch_defects;
use core_lib::dms::DmsClient;
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};
use serde_json::Value;

mod handler;
mod sql_checks;

fn optional_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    // Both optional: without them the DMS run is skipped and the result carries a warning saying so.
    let run_setup = match (
        optional_env("ASSESSMENT_ROLE_ARN"),
        optional_env("ASSESSMENT_BUCKET"),
    ) {
        (Some(role_arn), Some(bucket)) => Some(handler::RunSetup { role_arn, bucket }),
        _ => None,
    };
    let config = load_config().await;
    let dms = DmsClient::new(aws_sdk_databasemigration::Client::new(&config));
    let deps = handler::Deps {
        dms: dms.clone(),
        assessments: dms,
        secrets: SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(&config)),
        databases: sql_checks::PgChecks,
        run_setup,
    };
    let deps = &deps;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        catch_defects(handler::handle(
            event.payload,
            deps,
            core_lib::clock::now_epoch_seconds(),
        ))
        .await
    }))
    .await
}
