//! The source checks run by the `source-checks` function inside the stack's VPC (`dms_core::pg::source_checks`):
//! this Lambda reads the source secret, hands the connection over in a synchronous `lambda:Invoke` and reads
//! the checks back; the target checks run here, where the internet is reachable.

use std::time::Duration;

use aws_sdk_lambda::error::SdkError;
use aws_sdk_lambda::operation::invoke::InvokeError;
use aws_sdk_lambda::primitives::Blob;
use dms_core::errors::classify_sdk_error;
use dms_core::pg::checks::{Check, CheckConfig, SourceFacts};
use dms_core::pg::source_checks::{SourceChecksRequest, SourceChecksResponse, NOT_READY_ATTEMPTS};
use dms_core::pg::{PgConnectOptions, PgConnectWire};
use dms_core::{ErrorName, StepError};

use crate::sql_checks::{PgChecks, SqlChecks};

const INVOKE_ACTION: &str = "lambda:InvokeFunction";

/// The invoke errors that mean "the function is being (re)attached to its VPC, try again shortly"
/// (https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html): `ResourceNotReadyException` (an
/// inactive VPC function's first invoke), `ResourceConflictException` (invoked while `Pending`). Read from
/// the modeled error, which the SDK builds from the response's error code.
fn not_ready<R>(e: &SdkError<InvokeError, R>) -> Option<&'static str> {
    match e.as_service_error()? {
        InvokeError::ResourceNotReadyException(_) => Some("ResourceNotReadyException"),
        InvokeError::ResourceConflictException(_) => Some("ResourceConflictException"),
        _ => None,
    }
}

pub struct InVpcChecks {
    pub lambda: aws_sdk_lambda::Client,
    /// The `source-checks` function's name or ARN.
    pub function: String,
    /// Its security group: the one Aurora's group must admit (named in the not-run advice).
    pub security_group: String,
    pub retry_wait: Duration,
}

impl InVpcChecks {
    async fn invoke(&self, payload: Vec<u8>) -> Result<SourceChecksResponse, StepError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .lambda
                .invoke()
                .function_name(&self.function)
                .payload(Blob::new(payload.clone()))
                .send()
                .await;
            let out = match sent {
                Ok(out) => out,
                Err(e) if not_ready(&e).is_some() => {
                    let code = not_ready(&e).unwrap_or_default();
                    if attempt >= NOT_READY_ATTEMPTS {
                        return Err(StepError::new(
                            ErrorName::AwsTransient,
                            format!(
                                "{INVOKE_ACTION} on {}: the function is still not ready after {attempt} tries {}s apart ({code}: Lambda is re-creating the network interfaces of a VPC function left idle); the step is retried",
                                self.function,
                                self.retry_wait.as_secs()
                            ),
                        ));
                    }
                    tracing::info!(function = %self.function, %code, attempt, "the in-VPC function is not ready yet; waiting");
                    tokio::time::sleep(self.retry_wait).await;
                    continue;
                }
                Err(e) => return Err(classify_sdk_error(INVOKE_ACTION, &self.function, &e)),
            };
            let body = out.payload().map(|b| b.as_ref()).unwrap_or_default();
            if let Some(kind) = out.function_error() {
                return Err(function_error(&self.function, kind, body));
            }
            return serde_json::from_slice(body).map_err(|e| {
                StepError::new(
                    ErrorName::ToolDefect,
                    format!(
                        "{} answered something that is not the source checks' answer ({e})",
                        self.function
                    ),
                )
            });
        }
    }
}

/// A function error's body is `{"errorType", "errorMessage"}`; the source-checks function's own names
/// (`Postgres.Unreachable`, ...) keep their meaning here. Anything else (`Sandbox.Timedout`, a runtime
/// crash) is worth a retry of the step.
fn function_error(function: &str, kind: &str, body: &[u8]) -> StepError {
    let parsed: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let error_type = parsed["errorType"].as_str().unwrap_or(kind);
    let message = parsed["errorMessage"].as_str().unwrap_or("no message");
    match ErrorName::parse(error_type) {
        Some(name) => StepError::new(name, message.to_string()),
        None => StepError::new(
            ErrorName::AwsTransient,
            format!("{function} failed with {error_type}: {message}"),
        ),
    }
}

impl SqlChecks for InVpcChecks {
    type Facts = SourceFacts;

    async fn source(
        &self,
        source: &PgConnectOptions,
        config: &CheckConfig,
        fallback: bool,
    ) -> Result<(Vec<Check>, SourceFacts), StepError> {
        let request = SourceChecksRequest {
            source: PgConnectWire::from(source),
            config: config.clone(),
            fallback,
        };
        let payload = serde_json::to_vec(&request).map_err(|e| {
            StepError::new(
                ErrorName::ToolDefect,
                format!("the source checks' request could not be serialized: {e}"),
            )
        })?;
        let response = self.invoke(payload).await?;
        Ok((response.checks, response.facts))
    }

    async fn target(
        &self,
        target: &PgConnectOptions,
        source: Option<&SourceFacts>,
        config: &CheckConfig,
        fallback: bool,
    ) -> Result<Vec<Check>, StepError> {
        PgChecks.target(target, source, config, fallback).await
    }

    fn source_location(&self) -> &'static str {
        "the source-checks function inside the stack's VPC"
    }

    fn source_not_run(&self, port: u16, source_groups: &[String], why: &str) -> (String, String) {
        let groups = if source_groups.is_empty() {
            "the source database's security group".to_string()
        } else {
            format!("the source's security group {}", source_groups.join(", "))
        };
        let group_id = source_groups.first().map_or("SOURCE_GROUP", String::as_str);
        (
            format!(
                "not run: the source database could not be reached from the source-checks function inside the VPC ({why}). Missing rule: {groups} must allow inbound TCP {port} from security group {} (the source-checks function's), as it allows the DMS replication instance's",
                self.security_group
            ),
            format!(
                "add the inbound rule, then start a new execution: aws ec2 authorize-security-group-ingress --group-id {group_id} --protocol tcp --port {port} --source-group {} (sg-autofix adds it, tagged for stack-cleanup, when the DMS connection test times out first)",
                self.security_group
            ),
        )
    }
}

/// Where the source checks run: inside the VPC through `source-checks` (the stack), or from this Lambda
/// itself when no such function is configured.
pub enum Databases {
    InVpc(InVpcChecks),
    Direct(PgChecks),
}

impl SqlChecks for Databases {
    type Facts = SourceFacts;

    async fn source(
        &self,
        source: &PgConnectOptions,
        config: &CheckConfig,
        fallback: bool,
    ) -> Result<(Vec<Check>, SourceFacts), StepError> {
        match self {
            Databases::InVpc(c) => c.source(source, config, fallback).await,
            Databases::Direct(c) => c.source(source, config, fallback).await,
        }
    }

    async fn target(
        &self,
        target: &PgConnectOptions,
        source: Option<&SourceFacts>,
        config: &CheckConfig,
        fallback: bool,
    ) -> Result<Vec<Check>, StepError> {
        PgChecks.target(target, source, config, fallback).await
    }

    fn source_location(&self) -> &'static str {
        match self {
            Databases::InVpc(c) => c.source_location(),
            Databases::Direct(c) => c.source_location(),
        }
    }

    fn source_not_run(&self, port: u16, source_groups: &[String], why: &str) -> (String, String) {
        match self {
            Databases::InVpc(c) => c.source_not_run(port, source_groups, why),
            Databases::Direct(c) => c.source_not_run(port, source_groups, why),
        }
    }
}

#[cfg(test)]
mod tests {
    //! `ResourceNotReadyException` comes only from a real inactive VPC function; no emulator produces it,
    //! so a local server gives the real client Lambda's answers as the Invoke API reference describes them
    //! (https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html: 502 with the error type, or 200 with
    //! `X-Amz-Function-Error` and the function's error document).
    use dms_core::pg::checks::CheckStatus;
    use test_doubles::{CannedHttp, CannedResponse};

    use super::*;

    fn checks(url: &str) -> InVpcChecks {
        let config = aws_sdk_lambda::Config::builder()
            .behavior_version(aws_sdk_lambda::config::BehaviorVersion::latest())
            .region(aws_sdk_lambda::config::Region::new("us-east-1"))
            .credentials_provider(aws_credential_types::Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "test",
            ))
            .endpoint_url(url)
            // One request per invoke, so the server's count is the handler's own attempts.
            .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled())
            .build();
        InVpcChecks {
            lambda: aws_sdk_lambda::Client::from_conf(config),
            function: "stack-source-checks".into(),
            security_group: "sg-checks".into(),
            retry_wait: Duration::ZERO,
        }
    }

    fn not_ready() -> CannedResponse {
        CannedResponse::new(
            502,
            r#"{"Type":"Service","message":"The function is inactive and its VPC connection is no longer available."}"#,
        )
        .header("Content-Type", "application/json")
        .header("X-Amzn-ErrorType", "ResourceNotReadyException")
    }

    fn answer() -> CannedResponse {
        let body = serde_json::json!({"checks": [{"id": "source.version", "status": "pass", "summary": "16", "objects": [], "fix": ""}],
            "facts": {"versionNum": 160004, "version": "16.4", "tables": [], "extensions": [], "inventory": []}});
        CannedResponse::new(200, body.to_string()).header("Content-Type", "application/json")
    }

    fn options() -> PgConnectOptions {
        PgConnectOptions::from_parts("aurora.internal", 5432, "app", Some("pw"), "shop")
    }

    #[tokio::test]
    async fn an_inactive_function_is_invoked_again_until_it_answers() {
        let lambda = CannedHttp::start(vec![not_ready(), not_ready(), answer()]).await;
        let (found, facts) = checks(&lambda.url)
            .source(&options(), &CheckConfig::default(), false)
            .await
            .unwrap();
        assert_eq!(found[0].status, CheckStatus::Pass);
        assert_eq!(facts.version_num, 160004);
        assert_eq!(lambda.requests(), 3, "two refused invokes, then the answer");
    }

    #[tokio::test]
    async fn a_function_that_stays_not_ready_is_a_bounded_transient_error() {
        let lambda = CannedHttp::start(vec![not_ready()]).await;
        let err = checks(&lambda.url)
            .source(&options(), &CheckConfig::default(), false)
            .await
            .unwrap_err();
        assert_eq!(err.name, ErrorName::AwsTransient, "{}", err.message);
        assert_eq!(lambda.requests(), NOT_READY_ATTEMPTS as usize);
    }

    #[tokio::test]
    async fn the_functions_own_error_names_keep_their_meaning() {
        let lambda = CannedHttp::start(vec![CannedResponse::new(
            200,
            r#"{"errorType":"Postgres.Unreachable","errorMessage":"connect timed out"}"#,
        )
        .header("Content-Type", "application/json")
        .header("X-Amz-Function-Error", "Unhandled")])
        .await;
        let err = checks(&lambda.url)
            .source(&options(), &CheckConfig::default(), false)
            .await
            .unwrap_err();
        assert_eq!(err.name, ErrorName::PostgresUnreachable);
        assert_eq!(err.message, "connect timed out");
    }

    #[test]
    fn the_not_run_advice_names_the_rule_the_group_and_the_port() {
        let (summary, fix) =
            checks("http://127.0.0.1:9").source_not_run(5432, &["sg-aurora".into()], "timed out");
        assert!(
            summary.contains("sg-aurora must allow inbound TCP 5432 from security group sg-checks"),
            "{summary}"
        );
        assert!(
            fix.contains(
                "--group-id sg-aurora --protocol tcp --port 5432 --source-group sg-checks"
            ),
            "{fix}"
        );
    }
}
