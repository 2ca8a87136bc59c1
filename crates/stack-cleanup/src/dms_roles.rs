//! `Custom::DmsServiceRoles`: makes sure the two account-wide roles DMS looks up by name exist, and that DMS
//! can already use `dms-vpc-role`, before the stack creates its DMS resources.
//!
//! - `dms-vpc-role` (AWS managed policy `service-role/AmazonDMSVPCManagementRole`) and
//!   `dms-cloudwatch-logs-role` (`service-role/AmazonDMSCloudWatchLogsRole`), both trusting
//!   `dms.amazonaws.com` (https://docs.aws.amazon.com/dms/latest/userguide/security-iam.html#CHAP_Security.APIRole,
//!   https://docs.aws.amazon.com/dms/latest/userguide/security-iam-awsmanpol.html). The DMS console creates
//!   them silently and other stacks may have, so any of the four cases (none, either one, both) is normal:
//!   a role that exists is left exactly as it is (a wrong trust or policy is reported, never changed), a
//!   missing one is created, and `EntityAlreadyExists` on create (another stack won the race) counts as
//!   present. On Delete neither role is deleted: other DMS users of the account rely on them.
//! - IAM is eventually consistent: for a while after `dms-vpc-role` is created DMS answers
//!   `AccessDeniedFault: The IAM Role arn:aws:iam::...:role/dms-vpc-role is not configured properly`
//!   (aws/aws-cdk#7632, hashicorp/terraform-provider-aws#11025). So on Create (and on an Update that had to
//!   create a role) this resource proves DMS can use the role the way the stack's next resource will: it
//!   creates and deletes a throwaway replication subnet group over the stack's subnets, retrying
//!   `AccessDeniedFault` with backoff within the Lambda's time, and answers FAILED with what to check when
//!   DMS still refuses. The stack's `AWS::DMS::ReplicationSubnetGroup` depends on this resource.
//!
//! An Update that created nothing does not probe: that is what a rollback sends, and a rollback must not
//! fail on a transient refusal.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use dms_core::StepError;
use tokio::time::Instant;

use crate::handler::answer;
use crate::response::{CfnRequest, CfnResponse, RequestType, Status};

pub const RESOURCE_TYPE: &str = "Custom::DmsServiceRoles";

/// The role trust DMS needs: `dms.amazonaws.com` may assume it.
pub const DMS_TRUST_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"dms.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
const DMS_PRINCIPAL: &str = "dms.amazonaws.com";

/// One of the roles DMS finds by its fixed name.
pub struct AccountRole {
    pub name: &'static str,
    /// The AWS managed policy, after `arn:<partition>:iam::aws:policy/`.
    pub managed_policy: &'static str,
    pub description: &'static str,
    /// Its key in the answer's Data: `created` or `found`.
    pub data_key: &'static str,
}

pub const DMS_VPC_ROLE: AccountRole = AccountRole {
    name: "dms-vpc-role",
    managed_policy: "service-role/AmazonDMSVPCManagementRole",
    description: "Lets AWS DMS manage the network interfaces of replication instances (account-wide; created by an aurora-to-ps-dms stack, never deleted by it)",
    data_key: "DmsVpcRole",
};

pub const DMS_CLOUDWATCH_LOGS_ROLE: AccountRole = AccountRole {
    name: "dms-cloudwatch-logs-role",
    managed_policy: "service-role/AmazonDMSCloudWatchLogsRole",
    description: "Lets AWS DMS write task logs to CloudWatch Logs (account-wide; created by an aurora-to-ps-dms stack, never deleted by it)",
    data_key: "DmsCloudWatchLogsRole",
};

pub const ACCOUNT_ROLES: [&AccountRole; 2] = [&DMS_VPC_ROLE, &DMS_CLOUDWATCH_LOGS_ROLE];

/// A role as IAM describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundRole {
    /// The trust policy as JSON text (decoded from GetRole's URL-encoded form).
    pub trust_policy: String,
    pub attached_policy_arns: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// `EntityAlreadyExists`: someone else created it since GetRole.
    AlreadyExisted,
}

pub trait AccountRoles {
    /// None when IAM has no role of that name.
    fn find_role(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<FoundRole>, StepError>> + Send;
    fn create_role(
        &self,
        name: &str,
        trust_policy: &str,
        description: &str,
    ) -> impl Future<Output = Result<CreateOutcome, StepError>> + Send;
    fn attach_managed_policy(
        &self,
        name: &str,
        policy_arn: &str,
    ) -> impl Future<Output = Result<(), StepError>> + Send;
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProbeError {
    /// DMS's `AccessDeniedFault`: it cannot use `dms-vpc-role` (yet). The message is DMS's.
    RoleNotUsable(String),
    /// `ResourceAlreadyExistsFault`: a probe group left by an earlier attempt.
    AlreadyExists,
    Failed(StepError),
}

pub trait SubnetGroups {
    fn create_probe_group(
        &self,
        identifier: &str,
        description: &str,
        subnet_ids: &[String],
    ) -> impl Future<Output = Result<(), ProbeError>> + Send;
    /// A group that does not exist is not an error.
    fn delete_probe_group(
        &self,
        identifier: &str,
    ) -> impl Future<Output = Result<(), StepError>> + Send;
}

/// Waits between probe attempts; the last one repeats. IAM changes usually reach DMS within a minute
/// (the workarounds in the issues above wait 30 s).
pub const PROBE_BACKOFF: [Duration; 5] = [
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(15),
    Duration::from_secs(20),
];
/// Kept free of waiting for the last probe attempt's two calls (they take well under a second; should
/// they hang, the caller's budget still ends the request with an answer).
const LAST_ATTEMPT_TIME: Duration = Duration::from_secs(15);
/// Attempts at most, whatever the time left (40 attempts take about 13 minutes, more than the Lambda has).
const MAX_PROBE_ATTEMPTS: u32 = 40;

/// What the request did to one role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RoleOutcome {
    Created,
    Found,
}

impl RoleOutcome {
    fn as_str(self) -> &'static str {
        match self {
            RoleOutcome::Created => "created",
            RoleOutcome::Found => "found",
        }
    }
}

pub fn physical_resource_id(request: &CfnRequest, default_stack_name: &str) -> String {
    request.physical_resource_id.clone().unwrap_or_else(|| {
        let stack = request.property("StackName").unwrap_or(default_stack_name);
        format!("{stack}-dms-service-roles")
    })
}

fn probe_identifier(request: &CfnRequest, default_stack_name: &str) -> String {
    request
        .property("ProbeSubnetGroupIdentifier")
        .map(str::to_string)
        .unwrap_or_else(|| {
            let stack = request.property("StackName").unwrap_or(default_stack_name);
            format!("{stack}-dms-role-probe")
        })
        .to_ascii_lowercase()
}

pub async fn respond<I, S>(
    request: &CfnRequest,
    roles: &I,
    groups: &S,
    default_stack_name: &str,
    budget: Duration,
    backoff: &[Duration],
) -> CfnResponse
where
    I: AccountRoles + Sync,
    S: SubnetGroups + Sync,
{
    let begun = Instant::now();
    let physical_id = physical_resource_id(request, default_stack_name);
    let probe_id = probe_identifier(request, default_stack_name);
    if request.request_type == RequestType::Delete {
        // A probe group is only left behind by an attempt that died between create and delete.
        let leftover = match groups.delete_probe_group(&probe_id).await {
            Ok(()) => String::new(),
            Err(e) => {
                tracing::warn!(error = %e.message, group = %probe_id, "probe subnet group not deleted");
                format!(
                    " The probe subnet group {probe_id} could not be deleted ({}); delete it in the DMS console.",
                    e.message
                )
            }
        };
        return answer(
            request,
            physical_id,
            Status::Success,
            format!(
                "Kept {} and {}: they are account-wide and other DMS users of this account rely on them, \
                 so no stack deletes them.{leftover}",
                DMS_VPC_ROLE.name, DMS_CLOUDWATCH_LOGS_ROLE.name
            ),
            BTreeMap::new(),
        );
    }

    let partition = request.property("Partition").unwrap_or("aws");
    let mut data = BTreeMap::new();
    let mut notes = Vec::new();
    let mut created_any = false;
    for role in ACCOUNT_ROLES {
        match ensure_role(roles, role, partition, &mut notes).await {
            Ok(outcome) => {
                created_any |= outcome == RoleOutcome::Created;
                data.insert(role.data_key.to_string(), outcome.as_str().to_string());
            }
            Err(e) => {
                return answer(
                    request,
                    physical_id,
                    Status::Failed,
                    format!(
                        "Could not make sure the DMS role {} exists: {}",
                        role.name, e.message
                    ),
                    data,
                )
            }
        }
    }
    for note in &notes {
        tracing::warn!(%note, "existing DMS role left as it is");
    }

    let subnets = request.list_property("SubnetIds");
    let probe = request.request_type == RequestType::Create || created_any;
    if !probe || subnets.is_empty() {
        let reason = summary(&data, &notes, "no probe needed");
        return answer(request, physical_id, Status::Success, reason, data);
    }
    // The last attempt (a create and a delete) must still end within the budget.
    let left = budget
        .saturating_sub(begun.elapsed())
        .saturating_sub(LAST_ATTEMPT_TIME);
    let limit = request
        .property("ProbeTimeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .map_or(left, |d| d.min(left));
    match prove_vpc_role(groups, &probe_id, &subnets, limit, backoff).await {
        Ok(attempts) => {
            data.insert("ProbeAttempts".into(), attempts.to_string());
            let reason = summary(
                &data,
                &notes,
                &format!("DMS accepted {} (attempt {attempts})", DMS_VPC_ROLE.name),
            );
            answer(request, physical_id, Status::Success, reason, data)
        }
        Err(failure) => {
            data.insert("ProbeAttempts".into(), failure.attempts.to_string());
            let mut reason = failure.reason;
            if !notes.is_empty() {
                reason.push_str(&format!(" Also: {}.", notes.join("; ")));
            }
            answer(request, physical_id, Status::Failed, reason, data)
        }
    }
}

fn summary(data: &BTreeMap<String, String>, notes: &[String], probe: &str) -> String {
    let roles: Vec<String> = ACCOUNT_ROLES
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r.name,
                data.get(r.data_key).map_or("unknown", String::as_str)
            )
        })
        .collect();
    let mut text = format!("{}; {probe}.", roles.join(", "));
    if !notes.is_empty() {
        text.push_str(&format!(
            " Left as they are (fix them in IAM if DMS fails): {}.",
            notes.join("; ")
        ));
    }
    text
}

async fn ensure_role<I: AccountRoles>(
    roles: &I,
    role: &AccountRole,
    partition: &str,
    notes: &mut Vec<String>,
) -> Result<RoleOutcome, StepError> {
    let policy_arn = format!("arn:{partition}:iam::aws:policy/{}", role.managed_policy);
    if let Some(found) = roles.find_role(role.name).await? {
        if !found.trust_policy.contains(DMS_PRINCIPAL) {
            notes.push(format!("{} does not trust {DMS_PRINCIPAL}", role.name));
        }
        if !found.attached_policy_arns.iter().any(|a| a == &policy_arn) {
            notes.push(format!("{} does not have {policy_arn} attached", role.name));
        }
        return Ok(RoleOutcome::Found);
    }
    match roles
        .create_role(role.name, DMS_TRUST_POLICY, role.description)
        .await?
    {
        // Attached only to a role this request created: an existing role is never changed.
        CreateOutcome::Created => {
            roles.attach_managed_policy(role.name, &policy_arn).await?;
            Ok(RoleOutcome::Created)
        }
        CreateOutcome::AlreadyExisted => Ok(RoleOutcome::Found),
    }
}

struct ProbeFailure {
    attempts: u32,
    reason: String,
}

/// Creates then deletes a subnet group until DMS accepts it; Ok(attempts) once it did.
async fn prove_vpc_role<S: SubnetGroups>(
    groups: &S,
    identifier: &str,
    subnets: &[String],
    limit: Duration,
    backoff: &[Duration],
) -> Result<u32, ProbeFailure> {
    let started = Instant::now();
    let description = "Temporary: proves DMS can use dms-vpc-role; deleted at once";
    let mut last_refusal = String::new();
    let mut attempts = 0;
    while attempts < MAX_PROBE_ATTEMPTS {
        attempts += 1;
        match groups
            .create_probe_group(identifier, description, subnets)
            .await
        {
            Ok(()) => {
                if let Err(e) = groups.delete_probe_group(identifier).await {
                    return Err(ProbeFailure {
                        attempts,
                        reason: format!(
                            "DMS accepted {} but the probe subnet group {identifier} could not be deleted: {}. \
                             Delete it in the DMS console (Subnet groups) and retry.",
                            DMS_VPC_ROLE.name, e.message
                        ),
                    });
                }
                return Ok(attempts);
            }
            // Left by an attempt that died before deleting it: remove it and try again at once.
            Err(ProbeError::AlreadyExists) => {
                if let Err(e) = groups.delete_probe_group(identifier).await {
                    return Err(ProbeFailure {
                        attempts,
                        reason: format!(
                            "a probe subnet group {identifier} already exists and could not be deleted: {}",
                            e.message
                        ),
                    });
                }
                continue;
            }
            Err(ProbeError::RoleNotUsable(message)) => last_refusal = message,
            Err(ProbeError::Failed(e)) => {
                return Err(ProbeFailure {
                    attempts,
                    reason: format!(
                        "Creating the probe subnet group {identifier} over the stack's subnets failed: {}",
                        e.message
                    ),
                })
            }
        }
        let index = (attempts as usize - 1).min(backoff.len().saturating_sub(1));
        let wait = backoff
            .get(index)
            .copied()
            .unwrap_or(Duration::from_secs(1));
        if started.elapsed() + wait > limit {
            break;
        }
        tokio::time::sleep(wait).await;
    }
    Err(ProbeFailure {
        attempts,
        reason: format!(
            "DMS still refuses {role} after {attempts} attempt(s) over {secs} s: {last_refusal} \
             Check in IAM that {role} trusts {DMS_PRINCIPAL} and has the AWS managed policy \
             AmazonDMSVPCManagementRole attached (a role created moments ago can take a few minutes to \
             reach DMS), then create the stack again.",
            role = DMS_VPC_ROLE.name,
            secs = started.elapsed().as_secs(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dms_core::ErrorName;
    use serde_json::{json, Value};
    use std::sync::Mutex;

    #[derive(Default)]
    struct FakeIam {
        roles: Mutex<BTreeMap<String, FoundRole>>,
        /// Names whose CreateRole answers EntityAlreadyExists (another stack created it meanwhile).
        racing: Vec<String>,
        calls: Mutex<Vec<String>>,
    }

    impl FakeIam {
        fn with(names: &[&str]) -> FakeIam {
            let iam = FakeIam::default();
            for name in names {
                iam.roles.lock().unwrap().insert(
                    name.to_string(),
                    FoundRole {
                        trust_policy: "{\"Principal\":{\"Service\":\"ec2.amazonaws.com\"}}".into(),
                        attached_policy_arns: vec![],
                    },
                );
            }
            iam
        }

        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl AccountRoles for FakeIam {
        async fn find_role(&self, name: &str) -> Result<Option<FoundRole>, StepError> {
            self.calls.lock().unwrap().push(format!("get {name}"));
            Ok(self.roles.lock().unwrap().get(name).cloned())
        }
        async fn create_role(
            &self,
            name: &str,
            trust: &str,
            _description: &str,
        ) -> Result<CreateOutcome, StepError> {
            self.calls.lock().unwrap().push(format!("create {name}"));
            if self.racing.iter().any(|r| r == name) {
                return Ok(CreateOutcome::AlreadyExisted);
            }
            self.roles.lock().unwrap().insert(
                name.into(),
                FoundRole {
                    trust_policy: trust.into(),
                    attached_policy_arns: vec![],
                },
            );
            Ok(CreateOutcome::Created)
        }
        async fn attach_managed_policy(&self, name: &str, arn: &str) -> Result<(), StepError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("attach {name} {arn}"));
            Ok(())
        }
    }

    #[derive(Default)]
    struct FakeGroups {
        refusals: Mutex<u32>,
        leftover: Mutex<bool>,
        created: Mutex<u32>,
        deleted: Mutex<u32>,
    }

    impl SubnetGroups for FakeGroups {
        async fn create_probe_group(
            &self,
            _id: &str,
            _description: &str,
            subnets: &[String],
        ) -> Result<(), ProbeError> {
            assert!(!subnets.is_empty());
            let mut refusals = self.refusals.lock().unwrap();
            if *refusals > 0 {
                *refusals -= 1;
                return Err(ProbeError::RoleNotUsable(
                    "The IAM Role arn:aws:iam::123456789012:role/dms-vpc-role is not configured properly."
                        .into(),
                ));
            }
            let mut leftover = self.leftover.lock().unwrap();
            if *leftover {
                return Err(ProbeError::AlreadyExists);
            }
            *leftover = true;
            *self.created.lock().unwrap() += 1;
            Ok(())
        }
        async fn delete_probe_group(&self, _id: &str) -> Result<(), StepError> {
            *self.leftover.lock().unwrap() = false;
            *self.deleted.lock().unwrap() += 1;
            Ok(())
        }
    }

    fn request(kind: &str, props: Value) -> CfnRequest {
        let mut r = json!({
            "RequestType": kind,
            "ResponseURL": "https://example.com/r",
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/mig/guid",
            "RequestId": "req",
            "ResourceType": RESOURCE_TYPE,
            "LogicalResourceId": "DMSServiceRoles",
            "ResourceProperties": props,
        });
        if kind != "Create" {
            r["PhysicalResourceId"] = json!("mig-dms-service-roles");
        }
        serde_json::from_value(r).unwrap()
    }

    fn props() -> Value {
        json!({"StackName": "mig", "Partition": "aws-cn", "SubnetIds": ["subnet-1", "subnet-2"]})
    }

    const BUDGET: Duration = Duration::from_secs(580);
    /// The production schedule's shape, in milliseconds.
    const FAST: [Duration; 3] = [
        Duration::from_millis(10),
        Duration::from_millis(20),
        Duration::from_millis(40),
    ];

    #[tokio::test]
    async fn missing_roles_are_created_with_the_partitions_policy_and_existing_ones_are_not_touched(
    ) {
        for existing in [
            vec![],
            vec!["dms-vpc-role"],
            vec!["dms-cloudwatch-logs-role"],
            vec!["dms-vpc-role", "dms-cloudwatch-logs-role"],
        ] {
            let iam = FakeIam::with(&existing);
            let groups = FakeGroups::default();
            let out = respond(
                &request("Create", props()),
                &iam,
                &groups,
                "env",
                BUDGET,
                &FAST,
            )
            .await;
            assert_eq!(out.status, Status::Success, "{existing:?}: {}", out.reason);
            for role in ACCOUNT_ROLES {
                let was_there = existing.contains(&role.name);
                let expected = if was_there { "found" } else { "created" };
                assert_eq!(out.data[role.data_key], expected, "{existing:?}");
                let touched = iam.calls().iter().any(|c| {
                    c.starts_with(&format!("create {}", role.name))
                        || c.starts_with(&format!("attach {}", role.name))
                });
                assert_eq!(touched, !was_there, "{existing:?}: {:?}", iam.calls());
                if !was_there {
                    assert!(iam.calls().contains(&format!(
                        "attach {} arn:aws-cn:iam::aws:policy/{}",
                        role.name, role.managed_policy
                    )));
                }
            }
            // The pre-existing fakes trust ec2 and have no policy: reported, not fixed.
            if !existing.is_empty() {
                assert!(
                    out.reason.contains("does not trust dms.amazonaws.com"),
                    "{}",
                    out.reason
                );
            }
            assert_eq!(*groups.created.lock().unwrap(), 1, "one probe on Create");
            assert_eq!(
                *groups.deleted.lock().unwrap(),
                1,
                "the probe group is deleted"
            );
            assert_eq!(out.physical_resource_id, "mig-dms-service-roles");
        }
    }

    #[tokio::test]
    async fn a_role_created_by_someone_else_meanwhile_counts_as_found_and_gets_no_policy() {
        let iam = FakeIam {
            racing: vec!["dms-vpc-role".into()],
            ..FakeIam::default()
        };
        let out = respond(
            &request("Create", props()),
            &iam,
            &FakeGroups::default(),
            "env",
            BUDGET,
            &FAST,
        )
        .await;
        assert_eq!(out.status, Status::Success, "{}", out.reason);
        assert_eq!(out.data["DmsVpcRole"], "found");
        assert!(!iam
            .calls()
            .iter()
            .any(|c| c.starts_with("attach dms-vpc-role")));
    }

    #[tokio::test]
    async fn access_denied_is_retried_with_backoff_until_dms_accepts_the_role() {
        let groups = FakeGroups {
            refusals: Mutex::new(3),
            ..FakeGroups::default()
        };
        let started = Instant::now();
        let out = respond(
            &request("Create", props()),
            &FakeIam::default(),
            &groups,
            "env",
            BUDGET,
            &FAST,
        )
        .await;
        assert_eq!(out.status, Status::Success, "{}", out.reason);
        assert_eq!(out.data["ProbeAttempts"], "4");
        assert!(started.elapsed() >= Duration::from_millis(10 + 20 + 40));
    }

    #[tokio::test]
    async fn a_role_dms_keeps_refusing_fails_within_the_budget_naming_the_role() {
        let groups = FakeGroups {
            refusals: Mutex::new(u32::MAX),
            ..FakeGroups::default()
        };
        let started = Instant::now();
        let out = respond(
            &request("Create", props()),
            &FakeIam::default(),
            &groups,
            "env",
            LAST_ATTEMPT_TIME + Duration::from_millis(300),
            &FAST,
        )
        .await;
        assert_eq!(out.status, Status::Failed);
        assert!(started.elapsed() <= Duration::from_millis(300));
        let attempts: u32 = out.data["ProbeAttempts"].parse().unwrap();
        assert!(attempts > 3, "retried until the bound: {attempts}");
        assert!(
            out.reason.contains("dms-vpc-role")
                && out.reason.contains("not configured properly")
                && out.reason.contains("AmazonDMSVPCManagementRole"),
            "{}",
            out.reason
        );
    }

    #[tokio::test]
    async fn a_leftover_probe_group_is_replaced() {
        let groups = FakeGroups {
            leftover: Mutex::new(true),
            ..FakeGroups::default()
        };
        let out = respond(
            &request("Create", props()),
            &FakeIam::default(),
            &groups,
            "env",
            BUDGET,
            &FAST,
        )
        .await;
        assert_eq!(out.status, Status::Success, "{}", out.reason);
        assert_eq!(*groups.created.lock().unwrap(), 1);
        assert!(!*groups.leftover.lock().unwrap());
    }

    #[tokio::test]
    async fn an_update_that_creates_nothing_does_not_probe_so_a_rollback_cannot_fail_on_it() {
        let iam = FakeIam::with(&["dms-vpc-role", "dms-cloudwatch-logs-role"]);
        let groups = FakeGroups {
            refusals: Mutex::new(u32::MAX),
            ..FakeGroups::default()
        };
        let out = respond(
            &request("Update", props()),
            &iam,
            &groups,
            "env",
            BUDGET,
            &FAST,
        )
        .await;
        assert_eq!(out.status, Status::Success, "{}", out.reason);
        assert_eq!(*groups.created.lock().unwrap(), 0);
    }

    #[tokio::test]
    async fn delete_deletes_no_role() {
        let iam = FakeIam::with(&["dms-vpc-role"]);
        let out = respond(
            &request("Delete", props()),
            &iam,
            &FakeGroups::default(),
            "env",
            BUDGET,
            &FAST,
        )
        .await;
        assert_eq!(out.status, Status::Success);
        assert!(iam.calls().is_empty(), "{:?}", iam.calls());
        assert!(out
            .reason
            .contains("Kept dms-vpc-role and dms-cloudwatch-logs-role"));
    }

    #[tokio::test]
    async fn an_iam_refusal_fails_naming_the_role_and_the_action() {
        struct DeniedIam;
        impl AccountRoles for DeniedIam {
            async fn find_role(&self, _: &str) -> Result<Option<FoundRole>, StepError> {
                Err(StepError::new(
                    ErrorName::AwsAccessDenied,
                    "iam:GetRole on dms-vpc-role failed: AccessDenied",
                ))
            }
            async fn create_role(
                &self,
                _: &str,
                _: &str,
                _: &str,
            ) -> Result<CreateOutcome, StepError> {
                unreachable!()
            }
            async fn attach_managed_policy(&self, _: &str, _: &str) -> Result<(), StepError> {
                unreachable!()
            }
        }
        let out = respond(
            &request("Create", props()),
            &DeniedIam,
            &FakeGroups::default(),
            "env",
            BUDGET,
            &FAST,
        )
        .await;
        assert_eq!(out.status, Status::Failed);
        assert!(out.reason.contains("iam:GetRole") && out.reason.contains("dms-vpc-role"));
    }
}
