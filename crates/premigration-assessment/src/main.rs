use std::time::Duration;

use dms_core::aws::db_secret::SecretsManagerStore;
use dms_core::aws::dms::DmsClient;
use dms_core::aws::load_config;
use dms_core::defect::catch_defects;
use dms_core::pg::source_checks::{INVOKE_TIMEOUT_SECONDS, NOT_READY_RETRY_SECONDS};
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};
use serde_json::Value;

mod handler;
mod in_vpc;
mod sql_checks;

/// A synchronous invoke lasts as long as the invoked function runs, longer than the shared SDK timeouts
/// allow (`dms_core::aws`): one attempt, bounded by the function's timeout plus its Init phase. Retries are
/// the caller's (`in_vpc`), so a not-ready function is waited for, not hammered.
fn invoke_client(config: &aws_config::SdkConfig) -> aws_sdk_lambda::Client {
    let invoke = Duration::from_secs(INVOKE_TIMEOUT_SECONDS);
    let lambda_config = aws_sdk_lambda::config::Builder::from(config)
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(invoke)
                .operation_timeout(invoke)
                .build(),
        )
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
        .build();
    aws_sdk_lambda::Client::from_conf(lambda_config)
}

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
    // The stack's EnableFallback: with it the way back's checks run too (docs/fallback.md).
    let fallback = handler::fallback_enabled(std::env::var("ENABLE_FALLBACK").ok().as_deref())?;
    let config = load_config().await;
    // The stack sets both: the source checks run inside the VPC (crates/source-checks). Without them they
    // run from this Lambda, which reaches only a source open to the internet.
    let databases = match (
        optional_env("SOURCE_CHECKS_FUNCTION"),
        optional_env("SOURCE_CHECKS_SECURITY_GROUP"),
    ) {
        (Some(function), Some(security_group)) => in_vpc::Databases::InVpc(in_vpc::InVpcChecks {
            lambda: invoke_client(&config),
            function,
            security_group,
            retry_wait: Duration::from_secs(NOT_READY_RETRY_SECONDS),
        }),
        _ => in_vpc::Databases::Direct(sql_checks::PgChecks),
    };
    let dms = DmsClient::new(aws_sdk_databasemigration::Client::new(&config));
    let deps = handler::Deps {
        dms: dms.clone(),
        assessments: dms,
        secrets: SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(&config)),
        databases,
        run_setup,
        fallback,
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
