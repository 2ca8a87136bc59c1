//! AWS configuration, loaded once per cold start. `aws-config` honours `AWS_ENDPOINT_URL` and
//! `AWS_ENDPOINT_URL_<SERVICE>`, which is how the lab points the Lambdas at moto and dms-local.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

use crate::errors::StepError;

/// One attempt may not hang for the whole Lambda timeout: a stuck call becomes `Aws.Transient`, which the
/// state machine retries, instead of a Lambda timeout, which it does not.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn load_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
        .load()
        .await
}

/// Reads a required environment variable once at cold start; a missing one is a deployment fault.
pub fn required_env(name: &str) -> Result<String, StepError> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value.trim().to_string()),
        _ => Err(StepError::config(format!(
            "environment variable {name} is not set on this Lambda; the stack sets it — redeploy the stack"
        ))),
    }
}
