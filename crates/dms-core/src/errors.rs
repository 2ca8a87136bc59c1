//! The stable error names that reach Step Functions (docs/state-machine-contract.md). The ASL's Retry and Catch match on these
//! strings, so they are defined once here and never derived from a Rust type name or an SDK message.

use std::fmt;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::rules::redact::redact_secrets;
use crate::string_enum::string_enum;

string_enum! {
    pub enum ErrorName {
        /// Bad execution input: no retry.
        PayloadInvalid => "Payload.Invalid",
        /// Throttling / TooManyRequests / RequestLimitExceeded: retried with jittered backoff.
        AwsThrottled => "Aws.Throttled",
        /// 5xx, timeouts, dispatch failures: retried a few times.
        AwsTransient => "Aws.Transient",
        /// IAM does not allow the Lambda's own call; the message names the action.
        AwsAccessDenied => "Aws.AccessDenied",
        /// DMS itself was refused while acting for us: one of the roles DMS assumes (the secrets-access role,
        /// the assessment role, `dms-vpc-role`) or a KMS key it needs. The message names the role and what to
        /// check; the Lambda's role is not at fault.
        DmsAccessDenied => "Dms.AccessDenied",
        /// An ARN or resource that does not exist.
        AwsNotFound => "Aws.NotFound",
        /// AWS refused the request as invalid (a 4xx that is none of the above): retrying cannot help.
        AwsRejected => "Aws.Rejected",
        /// The DMS task or instance is in a state that forbids the action; retried with a long interval.
        DmsInvalidState => "Dms.InvalidState",
        /// PostgreSQL could not be reached (network, TLS, missing database).
        PostgresUnreachable => "Postgres.Unreachable",
        /// PostgreSQL refused the credentials.
        PostgresAuthFailed => "Postgres.AuthFailed",
        /// A SQL statement failed on a reachable server.
        PostgresQueryFailed => "Postgres.QueryFailed",
        /// The Lambda's own configuration (environment) is missing or wrong: a deployment fault.
        ConfigInvalid => "Config.Invalid",
        /// start-task will not start the task as it stands (restarting would duplicate rows, the task failed,
        /// or another execution watches it): the user must act; the message says what to do. No retry.
        TaskRestartRefused => "Task.RestartRefused",
        /// The plan file in the stack's bucket (`dms-migrate plan`) does not parse, names a table the target
        /// lacks, or sets a task setting a plan may not set: start-task applied nothing and started nothing.
        /// No retry: the user replaces or deletes the file.
        PlanInvalid => "Plan.Invalid",
        /// A Lambda of this tool panicked: a bug in the tool, not in the user's setup. Never retried (the same
        /// input panics again); the failure email asks for a report. See `crate::defect`.
        ToolDefect => "Tool.Defect",
    }
}

impl ErrorName {
    /// Whether the state machine retries this error (kept in step with the ASL's Retry blocks).
    pub fn is_retried(self) -> bool {
        matches!(
            self,
            ErrorName::AwsThrottled | ErrorName::AwsTransient | ErrorName::DmsInvalidState
        )
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
    /// email's "Why" (crate::rules::bounds).
    pub fn new(name: ErrorName, message: impl Into<String>) -> Self {
        StepError {
            name,
            message: crate::rules::bounds::cap_text(
                &redact_secrets(&message.into()),
                crate::rules::bounds::MAX_ERROR_BYTES,
                crate::rules::bounds::CUT,
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
            let message = err.message().unwrap_or("no message");
            return classify_service_error(action, resource, status, code, message);
        }
        // SdkError is non-exhaustive; an unknown shape is not worth retrying blindly.
        _ => (
            ErrorName::AwsRejected,
            "an unrecognised SDK error".to_string(),
        ),
    };
    with_hint(name, action, resource, &detail)
}

fn with_hint(name: ErrorName, action: &str, resource: &str, detail: &str) -> StepError {
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

/// A service's error answer (code and message as the service sent them) as a stable name and a message
/// that says what to fix.
pub fn classify_service_error(
    action: &str,
    resource: &str,
    status: u16,
    code: &str,
    message: &str,
) -> StepError {
    let code_text = if code.is_empty() {
        "no error code"
    } else {
        code
    };
    let detail = format!("{code_text} (HTTP {status}): {message}");
    if let Some(role) = dms_role_at_fault(action, code, message) {
        return StepError::new(
            ErrorName::DmsAccessDenied,
            format!(
                "{action} on {resource} failed: {detail} — DMS itself was refused, not this Lambda: {}",
                role.what_to_check()
            ),
        );
    }
    let name = classify_code(code).unwrap_or_else(|| classify_status(status));
    with_hint(name, action, resource, &detail)
}

/// What DMS was using when it was refused. The stack creates each of these (logical IDs in
/// `cloudformation/aurora-to-ps-dms.yaml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmsRole {
    /// `dms-vpc-role`: DMS manages the replication instance's network interfaces with it.
    VpcRole,
    /// `DMSSecretsAccessRole`: the endpoints' `SecretsManagerAccessRoleArn`, with which DMS reads the
    /// database secrets (and decrypts them with their KMS key).
    SecretsAccess,
    /// `DMSAssessmentRole`: the assessment run's `ServiceAccessRoleArn`, with which DMS writes the
    /// results to the migration bucket.
    Assessment,
    /// A KMS key DMS needs (the endpoint's, the instance's or the one encrypting a secret).
    KmsKey,
    /// One of DMS's roles, the message does not say which.
    Unnamed,
}

impl DmsRole {
    pub fn what_to_check(self) -> &'static str {
        match self {
            DmsRole::VpcRole => "the IAM role `dms-vpc-role` is missing, was edited, or was created moments ago and IAM has not propagated it yet. It must trust dms.amazonaws.com and carry the AWS managed policy AmazonDMSVPCManagementRole; the stack creates it when it is absent. Wait a few minutes and run the execution again; if it persists, check the role in the IAM console.",
            DmsRole::SecretsAccess => "the stack's DMS secrets-access role (logical ID DMSSecretsAccessRole, the endpoints' SecretsManagerAccessRoleArn) could not read the database secret. It must trust dms.<region>.amazonaws.com and allow Secrets Manager's GetSecretValue on the secret (and kms:Decrypt on the secret's KMS key, if it is not the AWS managed key). Check that the secret ARN in the stack parameters is the one the endpoint uses and that the role was not edited.",
            DmsRole::Assessment => "the stack's DMS assessment role (logical ID DMSAssessmentRole, the assessment run's ServiceAccessRoleArn) could not write the premigration assessment results. It must trust dms.amazonaws.com and allow s3:PutObject, s3:GetObject, s3:ListBucket and s3:GetBucketLocation on the migration bucket (stack parameter MigrationBucketName), and the bucket policy must not deny it. Check that the bucket exists and that neither the role nor the bucket policy was edited.",
            DmsRole::KmsKey => "DMS could not use a KMS key it needs (the key encrypting the endpoint or the replication instance, or the database secret's key). The key must be enabled and its key policy must let the account's IAM policies (and so DMS's roles) use it.",
            DmsRole::Unnamed => "one of the roles DMS assumes for this stack was refused (dms-vpc-role, the secrets-access role DMSSecretsAccessRole, or the assessment role DMSAssessmentRole). The message above names what DMS tried; check that role in the IAM console against the stack template.",
        }
    }
}

/// The faults DMS answers when DMS itself, acting with one of its roles, was refused (each operation's
/// `Errors` in the DMS API reference: `AccessDeniedFault` "AWS DMS was denied access to the endpoint.
/// Check that the role is correctly configured", `KMSKeyNotAccessibleFault` "AWS DMS cannot access the AWS
/// KMS key" — <https://docs.aws.amazon.com/dms/latest/APIReference/API_TestConnection.html>;
/// `S3AccessDeniedFault` and `KMSAccessDeniedFault` on
/// <https://docs.aws.amazon.com/dms/latest/APIReference/API_StartReplicationTaskAssessmentRun.html>).
/// The caller's own IAM refusal is the common error `AccessDeniedException`
/// (<https://docs.aws.amazon.com/dms/latest/APIReference/CommonErrors.html>), which stays `Aws.AccessDenied`.
const DMS_SERVICE_FAULTS: &[&str] = &[
    "AccessDeniedFault",
    "KMSAccessDeniedFault",
    "S3AccessDeniedFault",
    "KMSKeyNotAccessibleFault",
];

/// Which of DMS's roles was refused, from the operation and DMS's message; `None` when the fault is not
/// DMS's own or the message says the caller itself is not authorized (IAM's `User: ... is not authorized
/// to perform: iam:PassRole` wording, which names the Lambda's role as the principal).
pub fn dms_role_at_fault(action: &str, code: &str, message: &str) -> Option<DmsRole> {
    if !action.starts_with("dms:") || !DMS_SERVICE_FAULTS.contains(&code) {
        return None;
    }
    let text = message.to_ascii_lowercase();
    if text.contains("is not authorized to perform") {
        return None;
    }
    // Checked before the operation: DMS's message for an unusable `dms-vpc-role` names it
    // ("The IAM Role arn:aws:iam::...:role/dms-vpc-role is not configured properly"; terraform-provider-aws
    // #11025, aws-cdk #7632), whatever the operation.
    if text.contains("dms-vpc-role") {
        return Some(DmsRole::VpcRole);
    }
    if code == "S3AccessDeniedFault"
        || text.contains("s3:")
        || text.contains("amazon s3")
        || text.contains("bucket")
    {
        return Some(DmsRole::Assessment);
    }
    if text.contains("secret") {
        return Some(DmsRole::SecretsAccess);
    }
    let kms = code.starts_with("KMS") || text.contains("kms");
    match action {
        "dms:StartReplicationTaskAssessmentRun" if !kms => Some(DmsRole::Assessment),
        // TestConnection and StartReplicationTask read the endpoints' secrets with the secrets-access
        // role: an AccessDeniedFault there is that role unless the message says otherwise.
        "dms:TestConnection" | "dms:StartReplicationTask" if !kms => Some(DmsRole::SecretsAccess),
        _ if kms => Some(DmsRole::KmsKey),
        _ => Some(DmsRole::Unnamed),
    }
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

    const TASK: &str = "arn:aws:dms:us-east-1:123456789012:task:T1";

    #[test]
    fn dms_own_faults_name_the_dms_role_not_the_lambda_role() {
        let cases = [
            (
                "dms:TestConnection",
                "AccessDeniedFault",
                "The IAM Role arn:aws:iam::123456789012:role/dms-vpc-role is not configured properly.",
                "dms-vpc-role",
            ),
            (
                "dms:TestConnection",
                "AccessDeniedFault",
                "DMS could not retrieve the secret of endpoint src-endpoint",
                "DMSSecretsAccessRole",
            ),
            (
                "dms:StartReplicationTask",
                "AccessDeniedFault",
                "Access denied",
                "DMSSecretsAccessRole",
            ),
            (
                "dms:StartReplicationTaskAssessmentRun",
                "S3AccessDeniedFault",
                "Insufficient privileges to access the S3 bucket",
                "DMSAssessmentRole",
            ),
            (
                "dms:StartReplicationTaskAssessmentRun",
                "AccessDeniedFault",
                "Access denied",
                "DMSAssessmentRole",
            ),
            (
                "dms:StartReplicationTaskAssessmentRun",
                "KMSAccessDeniedFault",
                "The ciphertext references a key that doesn't exist",
                "KMS key",
            ),
            (
                "dms:TestConnection",
                "KMSKeyNotAccessibleFault",
                "AWS DMS cannot access the AWS KMS key",
                "KMS key",
            ),
        ];
        for (action, code, message, role) in cases {
            let err = classify_service_error(action, TASK, 400, code, message);
            assert_eq!(err.name, ErrorName::DmsAccessDenied, "{action} {code}");
            assert!(
                err.message.contains(role),
                "{action} {code}: {}",
                err.message
            );
            assert!(
                !err.message.contains("the Lambda's IAM role must allow"),
                "{action} {code}: {}",
                err.message
            );
            assert!(err.message.contains(message), "DMS's own words are kept");
        }
    }

    #[test]
    fn the_lambdas_own_denial_stays_the_lambdas_role() {
        // IAM's refusal of the caller: the common error, or a DMS fault whose message names the caller.
        for (code, message) in [
            (
                "AccessDeniedException",
                "User: arn:aws:sts::123456789012:assumed-role/stack-start-task/fn is not authorized to perform: dms:StartReplicationTask",
            ),
            (
                "AccessDeniedFault",
                "User: arn:aws:sts::123456789012:assumed-role/stack-premigration-assessment/fn is not authorized to perform: iam:PassRole",
            ),
        ] {
            let err = classify_service_error(
                "dms:StartReplicationTaskAssessmentRun",
                TASK,
                400,
                code,
                message,
            );
            assert_eq!(err.name, ErrorName::AwsAccessDenied, "{code}");
            assert!(err.message.contains("the Lambda's IAM role must allow"));
        }
        // Another service's AccessDenied is never DMS's.
        let err = classify_service_error("sns:Publish", "topic", 403, "AuthorizationError", "no");
        assert_eq!(err.name, ErrorName::AwsAccessDenied);
        assert_eq!(
            dms_role_at_fault("s3:PutObject", "AccessDeniedFault", "x"),
            None
        );
        assert_eq!(
            ErrorName::parse("Dms.AccessDenied"),
            Some(ErrorName::DmsAccessDenied)
        );
        assert!(!ErrorName::DmsAccessDenied.is_retried());
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
