//! The stable error names that reach Step Functions (DESIGN §4). The ASL's Retry and Catch match on these
//! strings, so they are defined once here and never derived from a Rust type name or an SDK message.

use std::fmt;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::redact::redact_secrets;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorName {
    /// Bad execution input: no retry.
    PayloadInvalid,
    /// Throttling / TooManyRequests / RequestLimitExceeded: retried with jittered backoff.
    AwsThrottled,
    /// 5xx, timeouts, dispatch failures: retried a few times.
    AwsTransient,
    /// IAM does not allow the call; the message names the action.
    AwsAccessDenied,
    /// An ARN or resource that does not exist.
    AwsNotFound,
    /// AWS refused the request as invalid (a 4xx that is none of the above): retrying cannot help.
    AwsRejected,
    /// The DMS task or instance is in a state that forbids the action; retried with a long interval.
    DmsInvalidState,
    /// PostgreSQL could not be reached (network, TLS, missing database).
    PostgresUnreachable,
    /// PostgreSQL refused the credentials.
    PostgresAuthFailed,
    /// A SQL statement failed on a reachable server.
    PostgresQueryFailed,
    /// The Lambda's own configuration (environment) is missing or wrong: a deployment fault.
    ConfigInvalid,
    /// start-task will not start the task as it stands (restarting would duplicate rows, the task failed,
    /// or another execution watches it): the user must act; the message says what to do. No retry.
    TaskRestartRefused,
    /// A Lambda of this tool panicked: a bug in the tool, not in the user's setup. Never retried (the same
    /// input panics again); the failure email asks for a report. See `crate::defect`.
    ToolDefect,
}

impl ErrorName {
    pub const ALL: [ErrorName; 13] = [
        ErrorName::PayloadInvalid,
        ErrorName::AwsThrottled,
        ErrorName::AwsTransient,
        ErrorName::AwsAccessDenied,
        ErrorName::AwsNotFound,
        ErrorName::AwsRejected,
        ErrorName::DmsInvalidState,
        ErrorName::PostgresUnreachable,
        ErrorName::PostgresAuthFailed,
        ErrorName::PostgresQueryFailed,
        ErrorName::ConfigInvalid,
        ErrorName::TaskRestartRefused,
        ErrorName::ToolDefect,
    ];

    /// The `errorType` string Step Functions sees.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorName::PayloadInvalid => "Payload.Invalid",
            ErrorName::AwsThrottled => "Aws.Throttled",
            ErrorName::AwsTransient => "Aws.Transient",
            ErrorName::AwsAccessDenied => "Aws.AccessDenied",
            ErrorName::AwsNotFound => "Aws.NotFound",
            ErrorName::AwsRejected => "Aws.Rejected",
            ErrorName::DmsInvalidState => "Dms.InvalidState",
            ErrorName::PostgresUnreachable => "Postgres.Unreachable",
            ErrorName::PostgresAuthFailed => "Postgres.AuthFailed",
            ErrorName::PostgresQueryFailed => "Postgres.QueryFailed",
            ErrorName::ConfigInvalid => "Config.Invalid",
            ErrorName::TaskRestartRefused => "Task.RestartRefused",
            ErrorName::ToolDefect => "Tool.Defect",
        }
    }

    pub fn parse(name: &str) -> Option<ErrorName> {
        ErrorName::ALL.into_iter().find(|n| n.as_str() == name)
    }

    /// Whether the state machine retries this error (kept in step with the ASL's Retry blocks).
    pub fn is_retried(self) -> bool {
        matches!(
            self,
            ErrorName::AwsThrottled | ErrorName::AwsTransient | ErrorName::DmsInvalidState
        )
    }
}

impl fmt::Display for ErrorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The one error type every Lambda handler returns. Its message is scrubbed of secrets when built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    pub name: ErrorName,
    pub message: String,
}

impl StepError {
    /// The message is scrubbed of secrets and bounded: it becomes the state's `error.Cause` and the failure
    /// email's "Why" (crate::bounds).
    pub fn new(name: ErrorName, message: impl Into<String>) -> Self {
        StepError {
            name,
            message: crate::bounds::cap_text(
                &redact_secrets(&message.into()),
                crate::bounds::MAX_ERROR_BYTES,
                crate::bounds::CUT,
            ),
        }
    }

    pub fn payload(message: impl Into<String>) -> Self {
        StepError::new(ErrorName::PayloadInvalid, message)
    }

    pub fn config(message: impl Into<String>) -> Self {
        StepError::new(ErrorName::ConfigInvalid, message)
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

impl std::error::Error for StepError {}

impl From<StepError> for lambda_runtime::Diagnostic {
    fn from(err: StepError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: err.name.as_str().to_string(),
            error_message: err.message,
        }
    }
}

const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    "ProvisionedThroughputExceededException",
    "BandwidthLimitExceeded",
];

const ACCESS_DENIED_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "AccessDeniedFault",
    "UnauthorizedOperation",
    "AuthorizationError",
    "AuthorizationErrorException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
    "MissingAuthenticationToken",
    "KMSAccessDeniedFault",
    "S3AccessDeniedFault",
];

const TRANSIENT_CODES: &[&str] = &[
    "InternalFailure",
    "InternalError",
    "InternalErrorException",
    "InternalServerError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    "KMSThrottlingFault",
];

fn classify_code(code: &str) -> Option<ErrorName> {
    if THROTTLING_CODES.contains(&code) {
        return Some(ErrorName::AwsThrottled);
    }
    if ACCESS_DENIED_CODES.contains(&code) {
        return Some(ErrorName::AwsAccessDenied);
    }
    if TRANSIENT_CODES.contains(&code) {
        return Some(ErrorName::AwsTransient);
    }
    if code == "InvalidResourceStateFault" {
        return Some(ErrorName::DmsInvalidState);
    }
    // DMS `ResourceNotFoundFault`, SNS `NotFound`, EC2 `InvalidGroup.NotFound`, RDS `DBClusterNotFoundFault`,
    // S3 `NoSuchBucket`: the naming differs per service, the meaning does not.
    if code.contains("NotFound") || code.starts_with("NoSuch") {
        return Some(ErrorName::AwsNotFound);
    }
    None
}

fn classify_status(status: u16) -> ErrorName {
    match status {
        429 => ErrorName::AwsThrottled,
        403 | 401 => ErrorName::AwsAccessDenied,
        404 => ErrorName::AwsNotFound,
        500..=599 => ErrorName::AwsTransient,
        // A success status whose body the SDK could not read (cut short, garbled by a proxy): the request
        // itself was accepted, so another try is the right answer, not "refused".
        200..=299 => ErrorName::AwsTransient,
        _ => ErrorName::AwsRejected,
    }
}

/// Classifies any AWS SDK error into a stable name. `action` names the API call (e.g. `sns:Publish`) and
/// `resource` what it was called on, so an access-denied or not-found message tells the user what to fix.
pub fn classify_sdk_error<E>(
    action: &str,
    resource: &str,
    err: &SdkError<E, HttpResponse>,
) -> StepError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (name, detail) = match err {
        SdkError::TimeoutError(_) => (ErrorName::AwsTransient, "the request timed out".to_string()),
        SdkError::DispatchFailure(failure) => {
            let kind = if failure.is_timeout() {
                "timed out"
            } else if failure.is_io() {
                "failed on the network"
            } else {
                "could not be sent"
            };
            (ErrorName::AwsTransient, format!("the request {kind}"))
        }
        SdkError::ResponseError(resp) => (
            // A response that could not be read (cut short, garbled) is worth one more try.
            ErrorName::AwsTransient,
            format!(
                "the response could not be read (HTTP {})",
                resp.raw().status().as_u16()
            ),
        ),
        SdkError::ConstructionFailure(_) => (
            ErrorName::AwsRejected,
            "the request could not be built".to_string(),
        ),
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = err.code().unwrap_or("");
            let name = classify_code(code).unwrap_or_else(|| classify_status(status));
            let message = err.message().unwrap_or("no message");
            let code_text = if code.is_empty() {
                "no error code"
            } else {
                code
            };
            (name, format!("{code_text} (HTTP {status}): {message}"))
        }
        // SdkError is non-exhaustive; an unknown shape is not worth retrying blindly.
        _ => (
            ErrorName::AwsRejected,
            "an unrecognised SDK error".to_string(),
        ),
    };
    let hint = match name {
        ErrorName::AwsAccessDenied => {
            format!(" — the Lambda's IAM role must allow `{action}` on {resource}")
        }
        ErrorName::AwsNotFound => {
            format!(" — check that {resource} exists in this account and region")
        }
        _ => String::new(),
    };
    StepError::new(
        name,
        format!("{action} on {resource} failed: {detail}{hint}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for name in ErrorName::ALL {
            assert!(seen.insert(name.as_str()), "duplicate {name}");
            assert_eq!(ErrorName::parse(name.as_str()), Some(name));
        }
        assert_eq!(ErrorName::parse("Lambda.Unknown"), None);
    }

    #[test]
    fn diagnostic_carries_the_stable_name_not_the_rust_type() {
        let diag: lambda_runtime::Diagnostic =
            StepError::new(ErrorName::AwsThrottled, "slow down").into();
        assert_eq!(diag.error_type, "Aws.Throttled");
        assert_eq!(diag.error_message, "slow down");
    }

    #[test]
    fn codes_map_to_names() {
        for code in [
            "Throttling",
            "ThrottlingException",
            "RequestLimitExceeded",
            "TooManyRequestsException",
        ] {
            assert_eq!(classify_code(code), Some(ErrorName::AwsThrottled), "{code}");
        }
        assert_eq!(
            classify_code("ResourceNotFoundFault"),
            Some(ErrorName::AwsNotFound)
        );
        assert_eq!(
            classify_code("InvalidGroup.NotFound"),
            Some(ErrorName::AwsNotFound)
        );
        assert_eq!(classify_code("NotFound"), Some(ErrorName::AwsNotFound));
        assert_eq!(
            classify_code("AccessDeniedFault"),
            Some(ErrorName::AwsAccessDenied)
        );
        assert_eq!(
            classify_code("UnauthorizedOperation"),
            Some(ErrorName::AwsAccessDenied)
        );
        assert_eq!(
            classify_code("InvalidResourceStateFault"),
            Some(ErrorName::DmsInvalidState)
        );
        assert_eq!(classify_code("InvalidParameterValueException"), None);
        assert_eq!(classify_status(503), ErrorName::AwsTransient);
        assert_eq!(classify_status(400), ErrorName::AwsRejected);
        assert_eq!(classify_status(429), ErrorName::AwsThrottled);
        assert_eq!(classify_status(200), ErrorName::AwsTransient);
    }

    #[test]
    fn messages_are_scrubbed_when_built() {
        let err = StepError::new(
            ErrorName::PostgresAuthFailed,
            "connect to postgres://app:hunter2@db.example.com/app failed",
        );
        assert!(!err.message.contains("hunter2"), "{}", err.message);
    }
}
