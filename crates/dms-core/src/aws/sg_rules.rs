//! Finding and revoking the security-group rules this project added: `sg-autofix` tags each ingress rule it
//! authorizes with `tags::SG_RULE_TAG_KEY` = stack name, and `stack-cleanup` revokes exactly those by rule
//! id when the stack is deleted. `Ec2SecurityGroupRules` is the real adapter; tests pass a fake.

use std::future::Future;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::Filter;
use aws_sdk_ec2::Client;

use crate::errors::{classify_sdk_error, ErrorName, StepError};

/// DescribeSecurityGroupRules returns at most 1,000 rules per page; 100 pages is far beyond what
/// `sg-autofix` ever adds and bounds the loop if a paginator misbehaves.
const PAGE_SIZE: i32 = 1000;
const MAX_PAGES: usize = 100;

/// EC2 error codes meaning the rule is no longer there (revoked by hand, or its group deleted): the
/// cleanup's goal is already reached.
const GONE_CODES: &[&str] = &[
    "InvalidSecurityGroupRuleId.NotFound",
    "InvalidPermission.NotFound",
    "InvalidGroup.NotFound",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedRule {
    pub rule_id: String,
    pub group_id: String,
    pub is_egress: bool,
    /// For logs and reports, e.g. `tcp 5432 from sg-0abc`.
    pub summary: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeOutcome {
    Revoked,
    /// The rule (or its group) no longer exists.
    AlreadyGone,
}

pub trait SecurityGroupRules {
    /// Every rule (ingress and egress, all pages) tagged `tag_key` = `tag_value`.
    fn rules_tagged(
        &self,
        tag_key: &str,
        tag_value: &str,
    ) -> impl Future<Output = Result<Vec<TaggedRule>, StepError>> + Send;

    /// Revokes one ingress rule of `group_id` by its rule id.
    fn revoke_ingress_rule(
        &self,
        group_id: &str,
        rule_id: &str,
    ) -> impl Future<Output = Result<RevokeOutcome, StepError>> + Send;
}

pub struct Ec2SecurityGroupRules {
    client: Client,
}

impl Ec2SecurityGroupRules {
    pub fn new(client: Client) -> Self {
        Ec2SecurityGroupRules { client }
    }
}

fn summary(rule: &aws_sdk_ec2::types::SecurityGroupRule) -> String {
    let protocol = match rule.ip_protocol() {
        Some("-1") | None => "all traffic".to_string(),
        Some(p) => p.to_string(),
    };
    let ports = match (rule.from_port(), rule.to_port()) {
        (Some(from), Some(to)) if from == to && from >= 0 => format!(" {from}"),
        (Some(from), Some(to)) if from >= 0 => format!(" {from}-{to}"),
        _ => String::new(),
    };
    let peer = rule
        .referenced_group_info()
        .and_then(|g| g.group_id())
        .or(rule.cidr_ipv4())
        .or(rule.cidr_ipv6())
        .or(rule.prefix_list_id())
        .unwrap_or("?");
    let direction = if rule.is_egress().unwrap_or(false) {
        "to"
    } else {
        "from"
    };
    format!("{protocol}{ports} {direction} {peer}")
}

impl SecurityGroupRules for Ec2SecurityGroupRules {
    async fn rules_tagged(
        &self,
        tag_key: &str,
        tag_value: &str,
    ) -> Result<Vec<TaggedRule>, StepError> {
        let filter = Filter::builder()
            .name(format!("tag:{tag_key}"))
            .values(tag_value)
            .build();
        let resource = format!("security group rules tagged {tag_key}={tag_value}");
        let mut rules = Vec::new();
        let mut next_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let out = self
                .client
                .describe_security_group_rules()
                .filters(filter.clone())
                .max_results(PAGE_SIZE)
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(|e| classify_sdk_error("ec2:DescribeSecurityGroupRules", &resource, &e))?;
            rules.extend(out.security_group_rules().iter().filter_map(|r| {
                Some(TaggedRule {
                    rule_id: r.security_group_rule_id()?.to_string(),
                    group_id: r.group_id()?.to_string(),
                    is_egress: r.is_egress().unwrap_or(false),
                    summary: summary(r),
                })
            }));
            match out.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
                _ => return Ok(rules),
            }
        }
        Err(StepError::new(
            ErrorName::AwsRejected,
            format!("ec2:DescribeSecurityGroupRules on {resource}: more than {MAX_PAGES} pages"),
        ))
    }

    async fn revoke_ingress_rule(
        &self,
        group_id: &str,
        rule_id: &str,
    ) -> Result<RevokeOutcome, StepError> {
        let result = self
            .client
            .revoke_security_group_ingress()
            .group_id(group_id)
            .security_group_rule_ids(rule_id)
            .send()
            .await;
        match result {
            Ok(_) => Ok(RevokeOutcome::Revoked),
            Err(err) if err.code().is_some_and(|c| GONE_CODES.contains(&c)) => {
                Ok(RevokeOutcome::AlreadyGone)
            }
            Err(err) => Err(classify_sdk_error(
                "ec2:RevokeSecurityGroupIngress",
                &format!("rule {rule_id} of {group_id}"),
                &err,
            )),
        }
    }
}
