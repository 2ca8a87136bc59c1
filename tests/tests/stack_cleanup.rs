//! The built `stack-cleanup` binary, served through `cargo lambda watch`, against moto S3 (a versioned
//! bucket with several versions and delete markers) and moto EC2 (rules with and without the stack's tag).
//! A local HTTP server plays the pre-signed ResponseURL, so each test sees exactly what CloudFormation
//! would receive.

use std::path::PathBuf;

use aws_sdk_ec2::types::{
    IpPermission, IpRange, ResourceType, Tag, TagSpecification, UserIdGroupPair,
};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use dms_core::rules::tags::SG_RULE_TAG_KEY;
use integration_tests::cfn::ResponseServer;
use integration_tests::lab::{binary, Lab};
use integration_tests::lambda::LocalLambda;
use integration_tests::unique_name;
use serde_json::{json, Value};

fn request(kind: &str, response_url: &str, bucket: &str, stack: &str) -> Value {
    let mut event = json!({
        "RequestType": kind,
        "ServiceToken": format!("arn:aws:lambda:us-east-1:123456789012:function:{stack}-stack-cleanup"),
        "ResponseURL": response_url,
        "StackId": format!("arn:aws:cloudformation:us-east-1:123456789012:stack/{stack}/0b1c2d3e"),
        "RequestId": format!("request-{kind}"),
        "ResourceType": "Custom::StackCleanup",
        "LogicalResourceId": "StackCleanup",
        "ResourceProperties": {"ServiceToken": "x", "BucketName": bucket, "StackName": stack}
    });
    if kind != "Create" {
        event["PhysicalResourceId"] = json!(format!("{stack}-stack-cleanup"));
    }
    event
}

async fn stack_cleanup_lambda(lab: &Lab, stack: &str, extra_env: &[(&str, &str)]) -> LocalLambda {
    let mut env = lab.aws_env();
    env.push(("STACK_NAME".into(), stack.into()));
    env.extend(
        extra_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    LocalLambda::start(
        &PathBuf::from(lab.var("CARGO_LAMBDA")),
        "stack-cleanup",
        &binary("stack-cleanup"),
        &env,
    )
    .await
}

/// A versioned bucket holding 3 versions of `a`, 2 of `b` then a delete marker on `b`, and a delete
/// marker on `a` after a third upload of `c`: 6 versions and 2 delete markers.
async fn versioned_bucket(s3: &aws_sdk_s3::Client, name: &str) {
    s3.create_bucket()
        .bucket(name)
        .send()
        .await
        .expect("create bucket");
    s3.put_bucket_versioning()
        .bucket(name)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("enable versioning");
    for (key, count) in [("a", 3), ("b", 2), ("reports/c.json", 1)] {
        for i in 0..count {
            s3.put_object()
                .bucket(name)
                .key(key)
                .body(ByteStream::from(format!("{key} version {i}").into_bytes()))
                .send()
                .await
                .expect("put object");
        }
    }
    for key in ["a", "b"] {
        s3.delete_object()
            .bucket(name)
            .key(key)
            .send()
            .await
            .expect("delete marker");
    }
}

async fn version_count(s3: &aws_sdk_s3::Client, bucket: &str) -> (usize, usize) {
    let out = s3
        .list_object_versions()
        .bucket(bucket)
        .send()
        .await
        .expect("list versions");
    (out.versions().len(), out.delete_markers().len())
}

struct Groups {
    aurora: String,
    dms: String,
    /// The in-VPC source-checks function's group, which sg-autofix admits on Aurora's like the DMS group.
    source_checks: String,
}

async fn security_groups(ec2: &aws_sdk_ec2::Client, stack: &str) -> Groups {
    let mut ids = Vec::new();
    for role in ["aurora", "dms", "source-checks"] {
        let id = ec2
            .create_security_group()
            .group_name(format!("{stack}-{role}"))
            .description(format!("{role} group of the stack-cleanup test"))
            .send()
            .await
            .expect("create security group")
            .group_id
            .expect("group id");
        ids.push(id);
    }
    Groups {
        source_checks: ids.pop().expect("source-checks"),
        dms: ids.pop().expect("dms"),
        aurora: ids.pop().expect("aurora"),
    }
}

/// Authorizes one ingress rule on `group` tagged `tag` (key, value), as sg-autofix does; returns its id.
async fn ingress_rule(
    ec2: &aws_sdk_ec2::Client,
    group: &str,
    permission: IpPermission,
    tag: Option<(&str, &str)>,
) -> String {
    let mut call = ec2
        .authorize_security_group_ingress()
        .group_id(group)
        .ip_permissions(permission);
    if let Some((key, value)) = tag {
        call = call.tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::SecurityGroupRule)
                .tags(Tag::builder().key(key).value(value).build())
                .build(),
        );
    }
    call.send()
        .await
        .expect("authorize ingress")
        .security_group_rules()
        .first()
        .and_then(|r| r.security_group_rule_id())
        .expect("rule id")
        .to_string()
}

fn tcp_from_group(port: i32, group: &str) -> IpPermission {
    IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(port)
        .to_port(port)
        .user_id_group_pairs(UserIdGroupPair::builder().group_id(group).build())
        .build()
}

fn tcp_from_cidr(port: i32, cidr: &str) -> IpPermission {
    IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(port)
        .to_port(port)
        .ip_ranges(IpRange::builder().cidr_ip(cidr).build())
        .build()
}

async fn ingress_rule_ids(ec2: &aws_sdk_ec2::Client, group: &str) -> Vec<String> {
    ec2.describe_security_group_rules()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-id")
                .values(group)
                .build(),
        )
        .send()
        .await
        .expect("describe rules")
        .security_group_rules()
        .iter()
        .filter(|r| r.is_egress() == Some(false))
        .filter_map(|r| r.security_group_rule_id().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn delete_empties_the_versioned_bucket_and_revokes_only_this_stacks_tagged_rules() {
    let Some(lab) = Lab::get().await else { return };
    let config = lab.aws_config().await;
    let s3 = aws_sdk_s3::Client::new(&config);
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let stack = unique_name("sc");
    let bucket = unique_name("sc-reports");
    versioned_bucket(&s3, &bucket).await;
    assert_eq!(version_count(&s3, &bucket).await, (6, 2), "the fixture");

    let groups = security_groups(&ec2, &stack).await;
    let autofix_rule = ingress_rule(
        &ec2,
        &groups.aurora,
        tcp_from_group(5432, &groups.dms),
        Some((SG_RULE_TAG_KEY, &stack)),
    )
    .await;
    let source_checks_rule = ingress_rule(
        &ec2,
        &groups.aurora,
        tcp_from_group(5432, &groups.source_checks),
        Some((SG_RULE_TAG_KEY, &stack)),
    )
    .await;
    let users_rule = ingress_rule(
        &ec2,
        &groups.aurora,
        tcp_from_cidr(5432, "10.0.0.0/16"),
        None,
    )
    .await;
    let other_stacks_rule = ingress_rule(
        &ec2,
        &groups.aurora,
        tcp_from_cidr(6432, "10.1.0.0/16"),
        Some((SG_RULE_TAG_KEY, "another-stack")),
    )
    .await;

    let server = ResponseServer::start().await;
    let lambda = stack_cleanup_lambda(&lab, &stack, &[]).await;

    // Create: nothing is touched.
    let out = lambda
        .invoke(&request("Create", &server.url("create"), &bucket, &stack))
        .await
        .expect("create answers");
    assert_eq!(out["status"], "SUCCESS");
    assert_eq!(
        version_count(&s3, &bucket).await,
        (6, 2),
        "Create deletes nothing"
    );

    // Delete: everything this stack owns goes.
    let out = lambda
        .invoke(&request("Delete", &server.url("delete"), &bucket, &stack))
        .await
        .expect("delete answers");
    assert_eq!(out["status"], "SUCCESS", "{out}");

    let received = server.received();
    assert_eq!(
        received.len(),
        2,
        "exactly one answer per request: {received:?}"
    );
    let create = &received[0];
    assert_eq!(create.path, "create");
    assert_eq!(create.body["Status"], "SUCCESS");
    assert_eq!(
        create.body["PhysicalResourceId"],
        format!("{stack}-stack-cleanup")
    );
    assert_eq!(create.body["RequestId"], "request-Create");
    let delete = &received[1];
    assert_eq!(delete.path, "delete");
    assert_eq!(delete.body["Status"], "SUCCESS", "{}", delete.body);
    assert_eq!(
        delete.body["PhysicalResourceId"],
        format!("{stack}-stack-cleanup")
    );
    assert_eq!(delete.body["LogicalResourceId"], "StackCleanup");
    assert_eq!(
        delete.body["StackId"],
        format!("arn:aws:cloudformation:us-east-1:123456789012:stack/{stack}/0b1c2d3e")
    );
    assert_eq!(delete.body["RequestId"], "request-Delete");
    assert_eq!(delete.body["Data"]["ObjectVersionsDeleted"], "6");
    assert_eq!(delete.body["Data"]["DeleteMarkersDeleted"], "2");
    assert_eq!(delete.body["Data"]["SecurityGroupRulesRevoked"], "2");
    let mut revoked: Vec<&str> = delete.body["Data"]["RevokedRuleIds"]
        .as_str()
        .unwrap_or_default()
        .split(',')
        .collect();
    revoked.sort_unstable();
    let mut expected = vec![autofix_rule.as_str(), source_checks_rule.as_str()];
    expected.sort_unstable();
    assert_eq!(
        revoked, expected,
        "the DMS group's and the source-checks group's rules"
    );
    // The pre-signed URL's signature covers no content type: none must be sent (cfn-response sends "").
    assert!(
        delete.content_type.as_deref().unwrap_or("").is_empty(),
        "content type {:?}",
        delete.content_type
    );

    assert_eq!(
        version_count(&s3, &bucket).await,
        (0, 0),
        "every version and marker is gone"
    );
    s3.delete_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("the emptied bucket can be deleted, as CloudFormation will");
    let left = ingress_rule_ids(&ec2, &groups.aurora).await;
    assert!(
        !left.contains(&autofix_rule) && !left.contains(&source_checks_rule),
        "the tagged rules are revoked: {left:?}"
    );
    assert!(
        left.contains(&users_rule),
        "the user's own rule stays: {left:?}"
    );
    assert!(
        left.contains(&other_stacks_rule),
        "another stack's rule stays: {left:?}"
    );

    // A retried delete finds nothing left and still answers SUCCESS.
    let out = lambda
        .invoke(&request("Delete", &server.url("retry"), &bucket, &stack))
        .await
        .expect("the retry answers");
    assert_eq!(out["status"], "SUCCESS", "{out}");
    let received = server.received();
    assert_eq!(received.len(), 3);
    assert!(
        received[2].body["Reason"]
            .as_str()
            .unwrap_or_default()
            .contains("does not exist"),
        "{}",
        received[2].body
    );
}

#[tokio::test]
async fn an_unreachable_s3_still_answers_failed_and_the_rules_are_still_revoked() {
    let Some(lab) = Lab::get().await else { return };
    let config = lab.aws_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let stack = unique_name("sc-fail");
    let groups = security_groups(&ec2, &stack).await;
    let autofix_rule = ingress_rule(
        &ec2,
        &groups.aurora,
        tcp_from_group(5432, &groups.dms),
        Some((SG_RULE_TAG_KEY, &stack)),
    )
    .await;

    // S3 (only) points at a port nothing listens on: every S3 call fails as a network error would.
    let dead = format!(
        "http://127.0.0.1:{}",
        integration_tests::lambda::free_port()
    );
    let server = ResponseServer::start().await;
    let lambda = stack_cleanup_lambda(&lab, &stack, &[("AWS_ENDPOINT_URL_S3", &dead)]).await;
    let out = lambda
        .invoke(&request(
            "Delete",
            &server.url("delete"),
            "sc-reports-unreachable",
            &stack,
        ))
        .await
        .expect("a failed cleanup is answered, not a function error");
    assert_eq!(out["status"], "FAILED", "{out}");

    let received = server.received();
    assert_eq!(received.len(), 1, "exactly one answer: {received:?}");
    let body = &received[0].body;
    assert_eq!(body["Status"], "FAILED");
    assert_eq!(body["RequestId"], "request-Delete");
    let reason = body["Reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("s3:ListBucketVersions") && reason.contains("sc-reports-unreachable"),
        "the reason names the call and the bucket: {reason}"
    );
    assert!(reason.contains("retry the stack delete"), "{reason}");
    assert!(
        !reason.contains("secret"),
        "no URL signature in the reason: {reason}"
    );
    assert_eq!(body["Data"]["SecurityGroupRulesRevoked"], "1");
    let left = ingress_rule_ids(&ec2, &groups.aurora).await;
    assert!(!left.contains(&autofix_rule), "{left:?}");
}
