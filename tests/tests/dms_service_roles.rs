//! `Custom::DmsServiceRoles` through the built `stack-cleanup` binary: moto IAM (an account of its own per
//! test, since the role names are account-wide) and dms-local for the probe DMS must accept. The four
//! cases a real account can be in (neither role, either one, both), the IAM propagation delay (DMS
//! answers `AccessDeniedFault` N times), and a role DMS never accepts.

use std::path::PathBuf;

use aws_sdk_iam::Client as Iam;
use integration_tests::cfn::{MotoAccount, ResponseServer};
use integration_tests::dms_local::DmsLocal;
use integration_tests::lab::{binary, Lab};
use integration_tests::lambda::LocalLambda;
use integration_tests::unique_name;
use serde_json::{json, Value};

const VPC_ROLE: &str = "dms-vpc-role";
const LOGS_ROLE: &str = "dms-cloudwatch-logs-role";
const VPC_POLICY: &str = "arn:aws:iam::aws:policy/service-role/AmazonDMSVPCManagementRole";
const LOGS_POLICY: &str = "arn:aws:iam::aws:policy/service-role/AmazonDMSCloudWatchLogsRole";
/// What a user's own role looks like: trusted by DMS, its own description, no policy attached by us.
const USERS_DESCRIPTION: &str = "made by hand before the stack";

struct Rig {
    dms_sdk: aws_sdk_databasemigration::Client,
    dms: DmsLocal,
    iam: Iam,
    server: ResponseServer,
    lambda: LocalLambda,
    stack: String,
}

async fn rig(lab: &Lab) -> Rig {
    let account = MotoAccount::fresh(lab).await;
    let dms = DmsLocal::start(lab).await;
    let stack = unique_name("roles");
    let mut env = account.env(lab);
    env.extend(dms.env());
    env.push(("STACK_NAME".into(), stack.clone()));
    let lambda = LocalLambda::start(
        &PathBuf::from(lab.var("CARGO_LAMBDA")),
        "stack-cleanup",
        &binary("stack-cleanup"),
        &env,
    )
    .await;
    let iam = Iam::new(&account.sdk_config(lab).await);
    Rig {
        dms_sdk: dms.sdk().await,
        dms,
        iam,
        server: ResponseServer::start().await,
        lambda,
        stack,
    }
}

impl Rig {
    fn request(&self, kind: &str, extra: Value) -> Value {
        let mut props = json!({"ServiceToken": "x", "StackName": self.stack, "Partition": "aws",
            "SubnetIds": ["subnet-0a", "subnet-0b"],
            "ProbeSubnetGroupIdentifier": format!("{}-role-probe", self.stack)});
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            props[k] = v;
        }
        let mut event = json!({
            "RequestType": kind,
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:x-stack-cleanup",
            "ResponseURL": self.server.url(&kind.to_lowercase()),
            "StackId": format!("arn:aws:cloudformation:us-east-1:123456789012:stack/{}/guid", self.stack),
            "RequestId": format!("request-{kind}"),
            "ResourceType": "Custom::DmsServiceRoles",
            "LogicalResourceId": "DMSServiceRoles",
            "ResourceProperties": props,
        });
        if kind != "Create" {
            event["PhysicalResourceId"] = json!(format!("{}-dms-service-roles", self.stack));
        }
        event
    }

    /// Invokes and returns the one answer CloudFormation received for it.
    async fn answer(&self, kind: &str, extra: Value) -> Value {
        let before = self.server.received().len();
        self.lambda
            .invoke(&self.request(kind, extra))
            .await
            .expect("the request is answered, not a function error");
        let received = self.server.received();
        assert_eq!(
            received.len(),
            before + 1,
            "exactly one answer: {received:?}"
        );
        received[before].body.clone()
    }

    async fn users_role(&self, name: &str, trust_service: &str) {
        let trust = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"Service":"{trust_service}"}},"Action":"sts:AssumeRole"}}]}}"#
        );
        self.iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(trust)
            .description(USERS_DESCRIPTION)
            .send()
            .await
            .expect("create the user's role");
    }

    /// (description, trust policy text, attached policy ARNs), or None when the role does not exist.
    async fn role(&self, name: &str) -> Option<(String, String, Vec<String>)> {
        let role = match self.iam.get_role().role_name(name).send().await {
            Ok(out) => out.role.expect("a role"),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_entity_exception()) =>
            {
                return None
            }
            Err(e) => panic!("GetRole {name}: {e:?}"),
        };
        let attached = self
            .iam
            .list_attached_role_policies()
            .role_name(name)
            .send()
            .await
            .expect("ListAttachedRolePolicies")
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_string))
            .collect();
        let trust = role.assume_role_policy_document().unwrap_or_default();
        Some((
            role.description().unwrap_or_default().to_string(),
            stack_cleanup_decode(trust),
            attached,
        ))
    }

    /// Whether the probe's subnet group is still in dms-local (it must never be left behind).
    async fn probe_group_left(&self) -> bool {
        match self
            .dms_sdk
            .delete_replication_subnet_group()
            .replication_subnet_group_identifier(format!("{}-role-probe", self.stack))
            .send()
            .await
        {
            Ok(_) => true,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_fault()) =>
            {
                false
            }
            Err(e) => panic!("DeleteReplicationSubnetGroup: {e:?}"),
        }
    }
}

/// moto may or may not URL-encode the trust policy as IAM does; the test only looks for the principal.
fn stack_cleanup_decode(text: &str) -> String {
    text.replace("%22", "\"")
        .replace("%3A", ":")
        .replace("%2E", ".")
}

async fn the_four_cases(existing: &[&str]) {
    let Some(lab) = Lab::get().await else { return };
    let rig = rig(&lab).await;
    for name in existing {
        rig.users_role(name, "dms.amazonaws.com").await;
    }

    let create = rig.answer("Create", json!({})).await;
    assert_eq!(create["Status"], "SUCCESS", "{existing:?}: {create}");
    assert_eq!(
        create["PhysicalResourceId"],
        format!("{}-dms-service-roles", rig.stack)
    );
    for (name, policy, key) in [
        (VPC_ROLE, VPC_POLICY, "DmsVpcRole"),
        (LOGS_ROLE, LOGS_POLICY, "DmsCloudWatchLogsRole"),
    ] {
        let (description, trust, attached) = rig
            .role(name)
            .await
            .unwrap_or_else(|| panic!("{existing:?}: {name} exists afterwards"));
        assert!(
            trust.contains("dms.amazonaws.com"),
            "{name} trusts DMS: {trust}"
        );
        if existing.contains(&name) {
            assert_eq!(create["Data"][key], "found", "{existing:?}");
            assert_eq!(description, USERS_DESCRIPTION, "{name} untouched");
            assert!(
                attached.is_empty(),
                "nothing attached to the user's {name}: {attached:?}"
            );
        } else {
            assert_eq!(create["Data"][key], "created", "{existing:?}");
            assert_eq!(attached, vec![policy.to_string()], "{name}");
        }
    }
    assert_eq!(create["Data"]["ProbeAttempts"], "1", "{create}");
    assert!(!rig.probe_group_left().await, "the probe group is deleted");

    // A second Create (another stack in the same account) finds both and changes nothing.
    let again = rig.answer("Create", json!({})).await;
    assert_eq!(again["Status"], "SUCCESS", "{again}");
    assert_eq!(again["Data"]["DmsVpcRole"], "found");
    assert_eq!(again["Data"]["DmsCloudWatchLogsRole"], "found");

    let delete = rig.answer("Delete", json!({})).await;
    assert_eq!(delete["Status"], "SUCCESS", "{delete}");
    for name in [VPC_ROLE, LOGS_ROLE] {
        assert!(rig.role(name).await.is_some(), "Delete keeps {name}");
    }
}

#[tokio::test]
async fn neither_role_exists() {
    the_four_cases(&[]).await;
}

#[tokio::test]
async fn only_dms_vpc_role_exists() {
    the_four_cases(&[VPC_ROLE]).await;
}

#[tokio::test]
async fn only_dms_cloudwatch_logs_role_exists() {
    the_four_cases(&[LOGS_ROLE]).await;
}

#[tokio::test]
async fn both_roles_exist() {
    the_four_cases(&[VPC_ROLE, LOGS_ROLE]).await;
}

#[tokio::test]
async fn a_misconfigured_existing_role_is_reported_and_left_alone() {
    let Some(lab) = Lab::get().await else { return };
    let rig = rig(&lab).await;
    rig.users_role(LOGS_ROLE, "ec2.amazonaws.com").await;
    let create = rig.answer("Create", json!({})).await;
    assert_eq!(create["Status"], "SUCCESS", "{create}");
    let reason = create["Reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("dms-cloudwatch-logs-role does not trust dms.amazonaws.com"),
        "{reason}"
    );
    let (_, trust, attached) = rig.role(LOGS_ROLE).await.expect("still there");
    assert!(trust.contains("ec2.amazonaws.com") && attached.is_empty());
}

#[tokio::test]
async fn dms_refusing_the_new_role_a_few_times_is_waited_out() {
    let Some(lab) = Lab::get().await else { return };
    let rig = rig(&lab).await;
    rig.dms
        .fault(json!({"operation": "CreateReplicationSubnetGroup", "accessDenied": 3}))
        .await;
    let create = rig.answer("Create", json!({})).await;
    assert_eq!(create["Status"], "SUCCESS", "{create}");
    assert_eq!(create["Data"]["ProbeAttempts"], "4", "{create}");
    assert!(!rig.probe_group_left().await);
}

#[tokio::test]
async fn dms_refusing_the_role_past_the_bound_fails_with_what_to_check() {
    let Some(lab) = Lab::get().await else { return };
    let rig = rig(&lab).await;
    rig.dms
        .fault(json!({"operation": "CreateReplicationSubnetGroup", "accessDenied": 1000}))
        .await;
    let started = std::time::Instant::now();
    let create = rig
        .answer("Create", json!({"ProbeTimeoutSeconds": "5"}))
        .await;
    assert!(
        started.elapsed().as_secs() < 20,
        "bounded by ProbeTimeoutSeconds"
    );
    assert_eq!(create["Status"], "FAILED", "{create}");
    let reason = create["Reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("dms-vpc-role")
            && reason.contains("not configured properly")
            && reason.contains("AmazonDMSVPCManagementRole"),
        "{reason}"
    );
    // The roles were still created: a retried create finds them.
    assert!(rig.role(VPC_ROLE).await.is_some());
    assert!(!rig.probe_group_left().await);
}
