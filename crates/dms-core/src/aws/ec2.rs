//! The EC2 capability sg-autofix needs: find the network interfaces holding an address, read security
//! groups and their inbound rules, and authorize one tagged inbound rule from another group. `Ec2Client` is
//! the real adapter (moto in the lab through `AWS_ENDPOINT_URL`); tests pass a fake implementing `Ec2`.
//! Revoking rules (stack-cleanup) lives elsewhere: this file only adds.

use std::future::Future;

use aws_sdk_ec2::types::{
    Filter, IpPermission, ResourceType, Tag, TagSpecification, UserIdGroupPair,
};
use aws_sdk_ec2::Client;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::errors::{classify_sdk_error, ErrorName, StepError};

/// Which address of a network interface to match (DescribeNetworkInterfaces filter names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressFilter {
    /// `addresses.private-ip-address`: any private IPv4 address of the interface, primary or secondary.
    PrivateIp,
    /// `association.public-ip`: the public (or Elastic) IPv4 address associated with the interface.
    PublicIp,
    /// `ipv6-addresses.ipv6-address`: an IPv6 address of the interface.
    Ipv6,
}

impl AddressFilter {
    pub fn filter_name(self) -> &'static str {
        match self {
            AddressFilter::PrivateIp => "addresses.private-ip-address",
            AddressFilter::PublicIp => "association.public-ip",
            AddressFilter::Ipv6 => "ipv6-addresses.ipv6-address",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkInterfaceInfo {
    pub id: String,
    pub vpc_id: Option<String>,
    pub description: Option<String>,
    pub security_group_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecurityGroupInfo {
    pub id: String,
    pub vpc_id: Option<String>,
    pub ingress: Vec<IngressPermission>,
}

/// One entry of a group's `IpPermissions`, as far as a group-to-group rule cares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngressPermission {
    /// `tcp`, `udp`, `icmp`, a protocol number, or `-1` for all traffic.
    pub protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub source_group_ids: Vec<String>,
}

impl IngressPermission {
    /// Whether this permission already lets `source_group` reach TCP `port`: an exact rule, a port range
    /// that holds it, or an all-traffic rule.
    pub fn allows_tcp_from_group(&self, port: u16, source_group: &str) -> bool {
        if !self.source_group_ids.iter().any(|g| g == source_group) {
            return false;
        }
        match self.protocol.as_str() {
            "-1" | "all" => true,
            // 6 is TCP's protocol number; EC2 answers the name for rules created by name.
            "tcp" | "6" => {
                let port = i32::from(port);
                match (self.from_port, self.to_port) {
                    (Some(from), Some(to)) => {
                        (from == -1 && to == -1) || (from <= port && port <= to)
                    }
                    _ => true,
                }
            }
            _ => false,
        }
    }
}

/// A TCP inbound rule on `group_id` from `source_group_id`, tagged so stack-cleanup can find it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupIngressRule {
    pub group_id: String,
    pub source_group_id: String,
    pub port: u16,
    /// At most 255 characters of `a-zA-Z0-9. _-:/()#,@[]+=&;{}!$*` (EC2's rule description alphabet).
    pub description: String,
    pub tag_key: String,
    pub tag_value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeOutcome {
    Added {
        rule_id: Option<String>,
    },
    /// EC2 answered `InvalidPermission.Duplicate`: the same rule exists already.
    AlreadyPresent,
}

pub trait Ec2 {
    /// Every network interface holding `address`, across all pages.
    fn network_interfaces_with_address(
        &self,
        filter: AddressFilter,
        address: &str,
    ) -> impl Future<Output = Result<Vec<NetworkInterfaceInfo>, StepError>> + Send;
    /// The named groups with their inbound rules; a group that does not exist is `Aws.NotFound`.
    fn security_groups(
        &self,
        group_ids: &[String],
    ) -> impl Future<Output = Result<Vec<SecurityGroupInfo>, StepError>> + Send;
    fn authorize_ingress_from_group(
        &self,
        rule: &GroupIngressRule,
    ) -> impl Future<Output = Result<AuthorizeOutcome, StepError>> + Send;
}

#[derive(Clone)]
pub struct Ec2Client {
    client: Client,
}

impl Ec2Client {
    pub fn new(client: Client) -> Self {
        Ec2Client { client }
    }

    pub fn sdk(&self) -> &Client {
        &self.client
    }
}

/// Bounded pagination: 1,000 interfaces per page (the EC2 maximum) × 100 pages is far beyond any one
/// address.
const MAX_PAGES: usize = 100;

fn interface_info(eni: &aws_sdk_ec2::types::NetworkInterface) -> NetworkInterfaceInfo {
    NetworkInterfaceInfo {
        id: eni.network_interface_id().unwrap_or_default().to_string(),
        vpc_id: eni.vpc_id().map(str::to_string),
        description: eni.description().map(str::to_string),
        security_group_ids: eni
            .groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string))
            .collect(),
    }
}

fn permission_info(permission: &IpPermission) -> IngressPermission {
    IngressPermission {
        protocol: permission.ip_protocol().unwrap_or_default().to_string(),
        from_port: permission.from_port(),
        to_port: permission.to_port(),
        source_group_ids: permission
            .user_id_group_pairs()
            .iter()
            .filter_map(|p| p.group_id().map(str::to_string))
            .collect(),
    }
}

impl Ec2 for Ec2Client {
    async fn network_interfaces_with_address(
        &self,
        filter: AddressFilter,
        address: &str,
    ) -> Result<Vec<NetworkInterfaceInfo>, StepError> {
        let mut found = Vec::new();
        let mut next_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let out = self
                .client
                .describe_network_interfaces()
                .filters(
                    Filter::builder()
                        .name(filter.filter_name())
                        .values(address)
                        .build(),
                )
                .max_results(1000)
                .set_next_token(next_token.clone())
                .send()
                .await
                .map_err(|e| {
                    classify_sdk_error(
                        "ec2:DescribeNetworkInterfaces",
                        &format!("network interfaces with {} {address}", filter.filter_name()),
                        &e,
                    )
                })?;
            found.extend(out.network_interfaces().iter().map(interface_info));
            next_token = out
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if next_token.is_none() {
                return Ok(found);
            }
        }
        Err(StepError::new(
            ErrorName::AwsRejected,
            format!("ec2:DescribeNetworkInterfaces for {address} never ended its pagination"),
        ))
    }

    async fn security_groups(
        &self,
        group_ids: &[String],
    ) -> Result<Vec<SecurityGroupInfo>, StepError> {
        if group_ids.is_empty() {
            return Ok(Vec::new());
        }
        // EC2 refuses MaxResults together with GroupIds; named groups come back in one answer.
        let out = self
            .client
            .describe_security_groups()
            .set_group_ids(Some(group_ids.to_vec()))
            .send()
            .await
            .map_err(|e| {
                classify_sdk_error(
                    "ec2:DescribeSecurityGroups",
                    &format!("security groups {}", group_ids.join(", ")),
                    &e,
                )
            })?;
        Ok(out
            .security_groups()
            .iter()
            .map(|g| SecurityGroupInfo {
                id: g.group_id().unwrap_or_default().to_string(),
                vpc_id: g.vpc_id().map(str::to_string),
                ingress: g.ip_permissions().iter().map(permission_info).collect(),
            })
            .collect())
    }

    async fn authorize_ingress_from_group(
        &self,
        rule: &GroupIngressRule,
    ) -> Result<AuthorizeOutcome, StepError> {
        let port = i32::from(rule.port);
        let permission = IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(port)
            .to_port(port)
            .user_id_group_pairs(
                UserIdGroupPair::builder()
                    .group_id(&rule.source_group_id)
                    .description(&rule.description)
                    .build(),
            )
            .build();
        // Tagging the rule in the same call needs ec2:CreateTags on security-group-rule as well.
        let tags = TagSpecification::builder()
            .resource_type(ResourceType::SecurityGroupRule)
            .tags(
                Tag::builder()
                    .key(&rule.tag_key)
                    .value(&rule.tag_value)
                    .build(),
            )
            .build();
        let result = self
            .client
            .authorize_security_group_ingress()
            .group_id(&rule.group_id)
            .ip_permissions(permission)
            .tag_specifications(tags)
            .send()
            .await;
        match result {
            Ok(out) => Ok(AuthorizeOutcome::Added {
                rule_id: out
                    .security_group_rules()
                    .first()
                    .and_then(|r| r.security_group_rule_id())
                    .map(str::to_string),
            }),
            Err(err) if err.code() == Some("InvalidPermission.Duplicate") => {
                Ok(AuthorizeOutcome::AlreadyPresent)
            }
            Err(err) if err.code() == Some("RulesPerSecurityGroupLimitExceeded") => {
                Err(StepError::new(
                    ErrorName::AwsRejected,
                    format!(
                        "security group {} has reached its limit of inbound rules, so the rule for tcp/{} from {} could not be added: remove an unused inbound rule from {} (or raise the \"Inbound or outbound rules per security group\" quota) and run the execution again",
                        rule.group_id, rule.port, rule.source_group_id, rule.group_id
                    ),
                ))
            }
            Err(err) => Err(classify_sdk_error(
                "ec2:AuthorizeSecurityGroupIngress",
                &format!("security group {}", rule.group_id),
                &err,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permission(protocol: &str, from: Option<i32>, to: Option<i32>) -> IngressPermission {
        IngressPermission {
            protocol: protocol.to_string(),
            from_port: from,
            to_port: to,
            source_group_ids: vec!["sg-dms".to_string()],
        }
    }

    #[test]
    fn an_existing_rule_counts_when_it_covers_the_port_from_the_group() {
        assert!(permission("tcp", Some(5432), Some(5432)).allows_tcp_from_group(5432, "sg-dms"));
        assert!(permission("tcp", Some(5000), Some(6000)).allows_tcp_from_group(5432, "sg-dms"));
        assert!(permission("-1", None, None).allows_tcp_from_group(5432, "sg-dms"));
        assert!(permission("6", Some(5432), Some(5432)).allows_tcp_from_group(5432, "sg-dms"));
    }

    #[test]
    fn a_rule_for_another_port_protocol_or_group_does_not_count() {
        assert!(!permission("tcp", Some(5433), Some(5433)).allows_tcp_from_group(5432, "sg-dms"));
        assert!(!permission("udp", Some(5432), Some(5432)).allows_tcp_from_group(5432, "sg-dms"));
        assert!(!permission("tcp", Some(5432), Some(5432)).allows_tcp_from_group(5432, "sg-other"));
    }
}
