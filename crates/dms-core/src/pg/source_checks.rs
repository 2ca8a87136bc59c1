//! The contract between `premigration-assessment` (outside any VPC: it reaches AWS APIs and the PlanetScale
//! target over the internet) and `source-checks` (inside the stack's VPC, in the replication instance's
//! subnets: it reaches a private Aurora cluster). The assessment reads the source secret itself and sends the
//! connection in a synchronous `lambda:Invoke` payload, so the in-VPC function calls no AWS API at all and
//! needs neither NAT nor a VPC endpoint (docs/template.md, "Networking"). The payload never goes through Step
//! Functions (its history would keep the password) and neither function logs it. The check definitions stay
//! in `checks`; this is only the wire.

use serde::{Deserialize, Serialize};

use crate::pg::checks::{Check, CheckConfig, SourceFacts};
use crate::pg::PgConnectWire;

/// What the assessment sends.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceChecksRequest {
    pub source: PgConnectWire,
    pub config: CheckConfig,
    /// Also run the way back's checks read on Aurora (`ids::FALLBACK_SOURCE`), when the stack's
    /// `EnableFallback` is `true`. Absent in a request of an older assessment: false, as it was.
    #[serde(default)]
    pub fallback: bool,
}

/// What the in-VPC function answers: every source check (and, when asked, the way back's Aurora checks
/// after them) and what the target checks compare against. A
/// database it cannot reach or log in to is a function error named `Postgres.Unreachable` or
/// `Postgres.AuthFailed` (the `errorType` the assessment reads back).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceChecksResponse {
    pub checks: Vec<Check>,
    pub facts: SourceFacts,
}

/// The in-VPC function's `Timeout` in the template (tests/tests/template_contract.rs keeps them equal): a
/// connect (10 s) and the source checks' statements (60 s statement timeout each, pipelined on one
/// connection) with room for a large catalog.
pub const FUNCTION_TIMEOUT_SECONDS: u64 = 180;
/// How long the assessment's synchronous invoke may take: the function's timeout plus its Init phase (up to
/// 10 s, not counted in the function timeout) and the round trip
/// (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html).
pub const INVOKE_TIMEOUT_SECONDS: u64 = FUNCTION_TIMEOUT_SECONDS + 20;
/// A VPC function idle for weeks becomes `Inactive`; its next invoke fails with `ResourceNotReadyException`
/// and the function is `Pending` (invokes fail with `ResourceConflictException`) until Lambda has recreated
/// its network interfaces (https://docs.aws.amazon.com/lambda/latest/dg/functions-states.html,
/// https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html). The assessment waits this long between
/// invokes, at most `NOT_READY_ATTEMPTS` invokes, then fails with `Aws.Transient`, which the state machine
/// retries.
pub const NOT_READY_RETRY_SECONDS: u64 = 15;
pub const NOT_READY_ATTEMPTS: u32 = 12;
