//! sg-autofix (docs/architecture.md): runs only after the source's connection test timed out. Finds the source
//! database's security groups — through RDS for `*.rds.amazonaws.com` names (a public Aurora name resolves
//! to a public address outside the VPC), otherwise through the network interfaces holding the addresses
//! the host resolves to — and authorizes TCP `sourcePort` from each of the replication instance's groups and
//! from the group of the `source-checks` function (the premigration source checks run inside the VPC).
//! Every rule is tagged `tags::SG_RULE_TAG_KEY` = stack name so stack-cleanup revokes exactly these. A rule
//! that exists already (found in the group, or `InvalidPermission.Duplicate`) is reported as present, so a
//! second run adds nothing.

use std::collections::BTreeMap;
use std::net::IpAddr;

use dms_core::aws::dms::Dms;
use dms_core::aws::ec2::{
    AddressFilter, AuthorizeOutcome, Ec2, GroupIngressRule, SecurityGroupInfo,
};
use dms_core::aws::rds::{find_db_by_endpoint, Rds};
use dms_core::envelope::{read_state, write_state};
use dms_core::rules::state::SgAutofixResult;
use dms_core::rules::tags::SG_RULE_TAG_KEY;
use dms_core::{ErrorName, StepError};
use serde_json::Value;

use crate::resolve::Resolver;

/// The capabilities the handler uses, built once per cold start.
pub struct Clients<D, E, R, N> {
    pub dms: D,
    pub ec2: E,
    pub rds: R,
    pub resolver: N,
    /// The `source-checks` function's security group (env `SOURCE_CHECKS_SECURITY_GROUP`), admitted on the
    /// source's groups exactly as the DMS groups are; None when the stack has no such function.
    pub source_checks_group: Option<String>,
}

/// Where the source's groups were found, for the log and the errors.
#[derive(Debug, Clone, PartialEq)]
struct SourceGroups {
    group_ids: Vec<String>,
    found_via: String,
}

fn normalized_host(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// RDS endpoint names in the commercial and China partitions.
fn is_rds_host(host: &str) -> bool {
    host.ends_with(".rds.amazonaws.com") || host.ends_with(".rds.amazonaws.com.cn")
}

/// A public IPv4 address can only be an interface's `association.public-ip`; a private one only its
/// private address. IPv6 addresses have one filter of their own.
fn address_filters(ip: IpAddr) -> Vec<AddressFilter> {
    match ip {
        IpAddr::V4(v4) if v4.is_private() || v4.is_loopback() || v4.is_link_local() => {
            vec![AddressFilter::PrivateIp]
        }
        // A VPC may use a non-RFC 1918 range, so a public-looking address is tried as both.
        IpAddr::V4(_) => vec![AddressFilter::PrivateIp, AddressFilter::PublicIp],
        IpAddr::V6(_) => vec![AddressFilter::Ipv6],
    }
}

fn push_unique(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for item in items {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

async fn groups_from_interfaces<E: Ec2, N: Resolver>(
    ec2: &E,
    resolver: &N,
    host: &str,
    searched: &mut Vec<String>,
) -> Result<Option<SourceGroups>, StepError> {
    let addresses = resolver.resolve(host).await.map_err(|why| {
        StepError::new(
            ErrorName::AwsNotFound,
            format!(
                "the source host {host} does not resolve from this Lambda ({why}); the Lambda runs outside the VPC, so a name from a private hosted zone cannot be resolved here: put the RDS endpoint name or the database's IP address in the stack's source host, or add the inbound rule for the DMS security group by hand"
            ),
        )
    })?;
    if addresses.is_empty() {
        return Err(StepError::new(
            ErrorName::AwsNotFound,
            format!("the source host {host} resolves to no address"),
        ));
    }
    let mut group_ids = Vec::new();
    let mut interfaces = Vec::new();
    for ip in &addresses {
        for filter in address_filters(*ip) {
            let found = ec2
                .network_interfaces_with_address(filter, &ip.to_string())
                .await?;
            searched.push(format!(
                "network interfaces with {} {ip} ({} found)",
                filter.filter_name(),
                found.len()
            ));
            for eni in found {
                push_unique(&mut group_ids, eni.security_group_ids);
                push_unique(&mut interfaces, [eni.id]);
            }
        }
    }
    if group_ids.is_empty() {
        return Ok(None);
    }
    Ok(Some(SourceGroups {
        group_ids,
        found_via: format!("network interfaces {}", interfaces.join(", ")),
    }))
}

async fn find_source_groups<E: Ec2, R: Rds, N: Resolver>(
    ec2: &E,
    rds: &R,
    resolver: &N,
    host: &str,
) -> Result<SourceGroups, StepError> {
    let mut searched = Vec::new();
    if is_rds_host(host) {
        match find_db_by_endpoint(rds, host).await? {
            Some(target) if !target.security_group_ids.is_empty() => {
                return Ok(SourceGroups {
                    group_ids: target.security_group_ids,
                    found_via: target.description,
                });
            }
            Some(target) => searched.push(format!("{} (it has no VPC security group)", target.description)),
            None => searched.push(format!(
                "RDS DB clusters (cluster, reader and custom endpoints) and DB instances: none answers on {host}"
            )),
        }
    }
    if let Some(found) = groups_from_interfaces(ec2, resolver, host, &mut searched).await? {
        return Ok(found);
    }
    Err(StepError::new(
        ErrorName::AwsNotFound,
        format!(
            "no security group found for the source host {host} in this account and region; searched: {}. Check that the stack's source host names the database in this region, or add an inbound rule for TCP from the DMS security group to the database's group by hand",
            searched.join("; ")
        ),
    ))
}

/// A group's rule may only name a group of the same VPC (peering aside): refuse clearly before EC2 does.
fn check_same_vpc(
    groups: &BTreeMap<String, SecurityGroupInfo>,
    source_groups: &[String],
    dms_groups: &[String],
) -> Result<(), StepError> {
    let vpc = |id: &str| groups.get(id).and_then(|g| g.vpc_id.clone());
    for dms_group in dms_groups {
        for source_group in source_groups {
            let (dms_vpc, source_vpc) = (vpc(dms_group), vpc(source_group));
            if dms_vpc != source_vpc {
                return Err(StepError::new(
                    ErrorName::AwsRejected,
                    format!(
                        "the DMS security group {dms_group} is in {} but the source's security group {source_group} is in {}; a rule can only name a group of the same VPC: create the replication instance in the source's VPC (the stack's VPC and subnets), or allow the instance's address in {source_group} by hand",
                        dms_vpc.as_deref().unwrap_or("no VPC"),
                        source_vpc.as_deref().unwrap_or("no VPC")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Who a rule admits, for its description.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Admitted {
    DmsInstance,
    SourceChecks,
}

/// EC2's rule description alphabet is `a-zA-Z0-9. _-:/()#,@[]+=&;{}!$*`, at most 255 characters.
fn rule_description(stack_name: &str, admitted: Admitted) -> String {
    let stack: String = stack_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-:/()#,@[]+=&;{}!$* ".contains(*c))
        .take(128)
        .collect();
    let who = match admitted {
        Admitted::DmsInstance => "DMS replication instance",
        Admitted::SourceChecks => "source-checks Lambda",
    };
    format!("{who} to source PostgreSQL - added by sg-autofix of stack {stack}")
}

fn rule_name(source_group: &str, dms_group: &str, port: u16) -> String {
    format!("{source_group} <- {dms_group} tcp/{port}")
}

pub async fn handle<D: Dms, E: Ec2, R: Rds, N: Resolver>(
    input: Value,
    clients: &Clients<D, E, R, N>,
    stack_name: &str,
) -> Result<Value, StepError> {
    let mut state = read_state(input, "sg-autofix")?;
    let port = state.source_port;
    let host = normalized_host(&state.source_endpoint_host);

    let instance = clients
        .dms
        .describe_instance(&state.replication_instance_arn)
        .await?;
    let dms_groups = instance.security_group_ids.clone();
    if dms_groups.is_empty() {
        return Err(StepError::new(
            ErrorName::AwsNotFound,
            format!(
                "the replication instance {} has no VPC security group, so there is no group to allow into the source's",
                state.replication_instance_arn
            ),
        ));
    }
    let source = find_source_groups(&clients.ec2, &clients.rds, &clients.resolver, &host).await?;
    tracing::info!(host = %host, found_via = %source.found_via, groups = ?source.group_ids, dms_groups = ?dms_groups, "source security groups");

    // Every group Aurora's must admit: the instance's, then the in-VPC source checks' (same VPC rule).
    let mut admitted: Vec<(String, Admitted)> = dms_groups
        .iter()
        .map(|g| (g.clone(), Admitted::DmsInstance))
        .collect();
    if let Some(group) = &clients.source_checks_group {
        if !dms_groups.contains(group) {
            admitted.push((group.clone(), Admitted::SourceChecks));
        }
    }
    let admitted_ids: Vec<String> = admitted.iter().map(|(g, _)| g.clone()).collect();
    let mut wanted = source.group_ids.clone();
    push_unique(&mut wanted, admitted_ids.iter().cloned());
    let groups: BTreeMap<String, SecurityGroupInfo> = clients
        .ec2
        .security_groups(&wanted)
        .await?
        .into_iter()
        .map(|g| (g.id.clone(), g))
        .collect();
    check_same_vpc(&groups, &source.group_ids, &admitted_ids)?;

    let mut result = SgAutofixResult {
        source_groups: source.group_ids.clone(),
        dms_groups: dms_groups.clone(),
        source_checks_group: clients.source_checks_group.clone(),
        ..SgAutofixResult::default()
    };
    for source_group in &source.group_ids {
        for (dms_group, who) in &admitted {
            let name = rule_name(source_group, dms_group, port);
            let present = groups.get(source_group).is_some_and(|g| {
                g.ingress
                    .iter()
                    .any(|p| p.allows_tcp_from_group(port, dms_group))
            });
            if present {
                result.present.push(name);
                continue;
            }
            let rule = GroupIngressRule {
                group_id: source_group.clone(),
                source_group_id: dms_group.clone(),
                port,
                description: rule_description(stack_name, *who),
                tag_key: SG_RULE_TAG_KEY.to_string(),
                tag_value: stack_name.to_string(),
            };
            match clients.ec2.authorize_ingress_from_group(&rule).await? {
                AuthorizeOutcome::Added { rule_id } => {
                    tracing::info!(rule = %name, rule_id = ?rule_id, "inbound rule added");
                    result.added.push(name);
                }
                AuthorizeOutcome::AlreadyPresent => result.present.push(name),
            }
        }
    }
    state.results.sg_autofix = Some(result);
    write_state(&state)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use dms_core::aws::dms::InstanceInfo;
    use dms_core::aws::ec2::{IngressPermission, NetworkInterfaceInfo};
    use dms_core::aws::rds::{DbClusterInfo, DbInstanceInfo};
    use serde_json::json;
    use test_doubles::FakeDms;

    use super::*;

    const AURORA_HOST: &str = "app.cluster-abc.us-east-1.rds.amazonaws.com";

    /// DMS whose replication instance has these security groups.
    fn dms(groups: &[&str]) -> FakeDms {
        FakeDms::default().instance(InstanceInfo {
            security_group_ids: groups.iter().map(|g| g.to_string()).collect(),
            vpc_id: Some("vpc-1".into()),
            ..InstanceInfo::default()
        })
    }

    /// EC2 with groups (id → vpc, ingress) and interfaces (address → groups); records what it authorized
    /// and answers Duplicate for a rule it already holds, as EC2 does.
    #[derive(Default)]
    struct FakeEc2 {
        groups: Mutex<HashMap<String, SecurityGroupInfo>>,
        interfaces: HashMap<String, Vec<String>>,
        authorized: Mutex<Vec<GroupIngressRule>>,
        lookups: Mutex<Vec<String>>,
        fail_authorize: Option<StepError>,
    }

    impl FakeEc2 {
        fn group(self, id: &str, vpc: &str) -> Self {
            self.groups.lock().unwrap().insert(
                id.into(),
                SecurityGroupInfo {
                    id: id.into(),
                    vpc_id: Some(vpc.into()),
                    ingress: vec![],
                },
            );
            self
        }
        fn interface(mut self, ip: &str, groups: &[&str]) -> Self {
            self.interfaces
                .insert(ip.into(), groups.iter().map(|g| g.to_string()).collect());
            self
        }
    }

    impl Ec2 for FakeEc2 {
        async fn network_interfaces_with_address(
            &self,
            filter: AddressFilter,
            address: &str,
        ) -> Result<Vec<NetworkInterfaceInfo>, StepError> {
            self.lookups
                .lock()
                .unwrap()
                .push(format!("{} {address}", filter.filter_name()));
            Ok(self
                .interfaces
                .get(address)
                .map(|groups| {
                    vec![NetworkInterfaceInfo {
                        id: format!("eni-{address}"),
                        vpc_id: Some("vpc-1".into()),
                        description: None,
                        security_group_ids: groups.clone(),
                    }]
                })
                .unwrap_or_default())
        }
        async fn security_groups(
            &self,
            ids: &[String],
        ) -> Result<Vec<SecurityGroupInfo>, StepError> {
            let groups = self.groups.lock().unwrap();
            ids.iter()
                .map(|id| {
                    groups.get(id).cloned().ok_or_else(|| {
                        StepError::new(
                            ErrorName::AwsNotFound,
                            format!("InvalidGroup.NotFound {id}"),
                        )
                    })
                })
                .collect()
        }
        async fn authorize_ingress_from_group(
            &self,
            rule: &GroupIngressRule,
        ) -> Result<AuthorizeOutcome, StepError> {
            if let Some(err) = &self.fail_authorize {
                return Err(err.clone());
            }
            let mut groups = self.groups.lock().unwrap();
            let group = groups.get_mut(&rule.group_id).expect("a known group");
            if group
                .ingress
                .iter()
                .any(|p| p.allows_tcp_from_group(rule.port, &rule.source_group_id))
            {
                return Ok(AuthorizeOutcome::AlreadyPresent);
            }
            group.ingress.push(IngressPermission {
                protocol: "tcp".into(),
                from_port: Some(i32::from(rule.port)),
                to_port: Some(i32::from(rule.port)),
                source_group_ids: vec![rule.source_group_id.clone()],
            });
            self.authorized.lock().unwrap().push(rule.clone());
            Ok(AuthorizeOutcome::Added {
                rule_id: Some("sgr-1".into()),
            })
        }
    }

    #[derive(Default)]
    struct FakeRds {
        clusters: Vec<DbClusterInfo>,
        instances: Vec<DbInstanceInfo>,
    }

    impl Rds for FakeRds {
        async fn db_clusters(&self) -> Result<Vec<DbClusterInfo>, StepError> {
            Ok(self.clusters.clone())
        }
        async fn db_instances(&self) -> Result<Vec<DbInstanceInfo>, StepError> {
            Ok(self.instances.clone())
        }
    }

    struct FakeResolver(HashMap<String, Vec<IpAddr>>);

    impl Resolver for FakeResolver {
        async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, String> {
            self.0.get(host).cloned().ok_or_else(|| {
                "failed to lookup address information: Name or service not known".to_string()
            })
        }
    }

    fn resolver(entries: &[(&str, &str)]) -> FakeResolver {
        FakeResolver(
            entries
                .iter()
                .map(|(h, ip)| (h.to_string(), vec![ip.parse().unwrap()]))
                .collect(),
        )
    }

    fn aurora() -> FakeRds {
        FakeRds {
            clusters: vec![DbClusterInfo {
                identifier: "app".into(),
                endpoint: Some(AURORA_HOST.into()),
                security_group_ids: vec!["sg-db".into()],
                ..DbClusterInfo::default()
            }],
            instances: vec![],
        }
    }

    fn state(host: &str) -> Value {
        let payload = json!({
            "replicationInstanceArn": "arn:aws:dms:us-east-1:123456789012:rep:INSTANCE1",
            "sourceEndpointArn": "arn:aws:dms:us-east-1:123456789012:endpoint:SOURCE1",
            "targetEndpointArn": "arn:aws:dms:us-east-1:123456789012:endpoint:TARGET1",
            "replicationTaskArn": "arn:aws:dms:us-east-1:123456789012:task:TASK1",
            "sourceEndpointHost": host,
            "sourcePort": 5432
        });
        let state =
            dms_core::rules::payload::parse_payload(&payload, "local", 0).expect("a valid payload");
        json!({ "state": serde_json::to_value(state).unwrap() })
    }

    fn clients(
        ec2: FakeEc2,
        rds: FakeRds,
        resolver: FakeResolver,
    ) -> Clients<FakeDms, FakeEc2, FakeRds, FakeResolver> {
        Clients {
            dms: dms(&["sg-dms"]),
            ec2,
            rds,
            resolver,
            source_checks_group: None,
        }
    }

    #[tokio::test]
    async fn the_source_checks_group_is_admitted_like_the_dms_group_tagged_once() {
        let mut c = clients(
            FakeEc2::default()
                .group("sg-db", "vpc-1")
                .group("sg-dms", "vpc-1")
                .group("sg-checks", "vpc-1"),
            aurora(),
            resolver(&[]),
        );
        c.source_checks_group = Some("sg-checks".into());
        let out = handle(state(AURORA_HOST), &c, "prod-migration")
            .await
            .unwrap();
        let result = &out["results"]["sgAutofix"];
        assert_eq!(
            result["added"],
            json!(["sg-db <- sg-dms tcp/5432", "sg-db <- sg-checks tcp/5432"])
        );
        assert_eq!(result["sourceChecksGroup"], json!("sg-checks"));
        let authorized = c.ec2.authorized.lock().unwrap().clone();
        assert_eq!(authorized.len(), 2);
        assert_eq!(authorized[1].source_group_id, "sg-checks");
        assert_eq!(authorized[1].port, 5432);
        assert_eq!(authorized[1].tag_key, SG_RULE_TAG_KEY);
        assert_eq!(authorized[1].tag_value, "prod-migration");
        assert!(authorized[1]
            .description
            .starts_with("source-checks Lambda"));

        let again = handle(state(AURORA_HOST), &c, "prod-migration")
            .await
            .unwrap();
        assert_eq!(again["results"]["sgAutofix"]["added"], json!([]));
        assert_eq!(c.ec2.authorized.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn an_aurora_host_is_found_through_rds_and_the_rule_is_added_tagged_once() {
        let c = clients(
            FakeEc2::default()
                .group("sg-db", "vpc-1")
                .group("sg-dms", "vpc-1"),
            aurora(),
            resolver(&[]),
        );
        let out = handle(state(AURORA_HOST), &c, "prod-migration")
            .await
            .unwrap();
        let result = &out["results"]["sgAutofix"];
        assert_eq!(result["sourceGroups"], json!(["sg-db"]));
        assert_eq!(result["dmsGroups"], json!(["sg-dms"]));
        assert_eq!(result["added"], json!(["sg-db <- sg-dms tcp/5432"]));
        assert_eq!(result["present"], json!([]));
        let authorized = c.ec2.authorized.lock().unwrap().clone();
        assert_eq!(authorized.len(), 1);
        assert_eq!(authorized[0].tag_key, SG_RULE_TAG_KEY);
        assert_eq!(authorized[0].tag_value, "prod-migration");
        assert!(authorized[0].description.contains("prod-migration"));
        assert!(
            c.ec2.lookups.lock().unwrap().is_empty(),
            "RDS answered: no ENI search"
        );

        // Re-run: nothing added, the rule reported as present.
        let again = handle(state(AURORA_HOST), &c, "prod-migration")
            .await
            .unwrap();
        assert_eq!(again["results"]["sgAutofix"]["added"], json!([]));
        assert_eq!(
            again["results"]["sgAutofix"]["present"],
            json!(["sg-db <- sg-dms tcp/5432"])
        );
        assert_eq!(c.ec2.authorized.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_duplicate_answer_counts_as_present() {
        // The group read shows no rule, but EC2 refuses the add as a duplicate (a race with another run).
        struct RacingEc2(FakeEc2);
        impl Ec2 for RacingEc2 {
            async fn network_interfaces_with_address(
                &self,
                f: AddressFilter,
                a: &str,
            ) -> Result<Vec<NetworkInterfaceInfo>, StepError> {
                self.0.network_interfaces_with_address(f, a).await
            }
            async fn security_groups(
                &self,
                ids: &[String],
            ) -> Result<Vec<SecurityGroupInfo>, StepError> {
                self.0.security_groups(ids).await
            }
            async fn authorize_ingress_from_group(
                &self,
                _: &GroupIngressRule,
            ) -> Result<AuthorizeOutcome, StepError> {
                Ok(AuthorizeOutcome::AlreadyPresent)
            }
        }
        let c = Clients {
            dms: dms(&["sg-dms"]),
            ec2: RacingEc2(
                FakeEc2::default()
                    .group("sg-db", "vpc-1")
                    .group("sg-dms", "vpc-1"),
            ),
            rds: aurora(),
            resolver: resolver(&[]),
            source_checks_group: None,
        };
        let out = handle(state(AURORA_HOST), &c, "s").await.unwrap();
        assert_eq!(
            out["results"]["sgAutofix"]["present"],
            json!(["sg-db <- sg-dms tcp/5432"])
        );
        assert_eq!(out["results"]["sgAutofix"]["added"], json!([]));
    }

    #[tokio::test]
    async fn a_non_rds_host_is_found_through_the_interface_holding_its_address() {
        let c = clients(
            FakeEc2::default()
                .group("sg-db", "vpc-1")
                .group("sg-extra", "vpc-1")
                .group("sg-dms", "vpc-1")
                .interface("10.0.1.25", &["sg-db", "sg-extra"]),
            FakeRds::default(),
            resolver(&[("db.internal.example", "10.0.1.25")]),
        );
        let out = handle(state("DB.internal.example."), &c, "s")
            .await
            .unwrap();
        let result = &out["results"]["sgAutofix"];
        assert_eq!(result["sourceGroups"], json!(["sg-db", "sg-extra"]));
        assert_eq!(
            result["added"],
            json!(["sg-db <- sg-dms tcp/5432", "sg-extra <- sg-dms tcp/5432"])
        );
        assert_eq!(
            *c.ec2.lookups.lock().unwrap(),
            vec!["addresses.private-ip-address 10.0.1.25".to_string()]
        );
    }

    #[tokio::test]
    async fn an_rds_name_rds_does_not_know_falls_back_to_interfaces_and_public_ips_use_both_filters(
    ) {
        let c = clients(
            FakeEc2::default()
                .group("sg-db", "vpc-1")
                .group("sg-dms", "vpc-1")
                .interface("54.1.2.3", &["sg-db"]),
            aurora(),
            resolver(&[("other.cluster-abc.us-east-1.rds.amazonaws.com", "54.1.2.3")]),
        );
        let out = handle(
            state("other.cluster-abc.us-east-1.rds.amazonaws.com"),
            &c,
            "s",
        )
        .await
        .unwrap();
        assert_eq!(
            out["results"]["sgAutofix"]["sourceGroups"],
            json!(["sg-db"])
        );
        assert_eq!(
            *c.ec2.lookups.lock().unwrap(),
            vec![
                "addresses.private-ip-address 54.1.2.3".to_string(),
                "association.public-ip 54.1.2.3".to_string()
            ]
        );
    }

    #[tokio::test]
    async fn an_existing_broader_rule_is_present_and_nothing_is_added() {
        let ec2 = FakeEc2::default()
            .group("sg-db", "vpc-1")
            .group("sg-dms", "vpc-1");
        ec2.groups
            .lock()
            .unwrap()
            .get_mut("sg-db")
            .unwrap()
            .ingress
            .push(IngressPermission {
                protocol: "-1".into(),
                from_port: None,
                to_port: None,
                source_group_ids: vec!["sg-dms".into()],
            });
        let c = clients(ec2, aurora(), resolver(&[]));
        let out = handle(state(AURORA_HOST), &c, "s").await.unwrap();
        assert_eq!(
            out["results"]["sgAutofix"]["present"],
            json!(["sg-db <- sg-dms tcp/5432"])
        );
        assert!(c.ec2.authorized.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_unresolvable_host_is_a_named_error() {
        let c = clients(FakeEc2::default(), FakeRds::default(), resolver(&[]));
        let err = handle(state("db.nowhere.example"), &c, "s")
            .await
            .unwrap_err();
        assert_eq!(err.name, ErrorName::AwsNotFound);
        assert!(err.message.contains("does not resolve"), "{}", err.message);
        assert!(
            err.message.contains("db.nowhere.example"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn no_group_found_says_what_was_searched() {
        let c = clients(
            FakeEc2::default().group("sg-dms", "vpc-1"),
            aurora(),
            resolver(&[("gone.cluster-abc.us-east-1.rds.amazonaws.com", "10.9.9.9")]),
        );
        let err = handle(
            state("gone.cluster-abc.us-east-1.rds.amazonaws.com"),
            &c,
            "s",
        )
        .await
        .unwrap_err();
        assert_eq!(err.name, ErrorName::AwsNotFound);
        assert!(
            err.message.contains("no security group found"),
            "{}",
            err.message
        );
        assert!(err.message.contains("RDS DB clusters"), "{}", err.message);
        assert!(
            err.message
                .contains("addresses.private-ip-address 10.9.9.9"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn a_dms_group_in_another_vpc_is_refused_before_any_change() {
        let c = clients(
            FakeEc2::default()
                .group("sg-db", "vpc-1")
                .group("sg-dms", "vpc-2"),
            aurora(),
            resolver(&[]),
        );
        let err = handle(state(AURORA_HOST), &c, "s").await.unwrap_err();
        assert_eq!(err.name, ErrorName::AwsRejected);
        assert!(
            err.message.contains("vpc-2") && err.message.contains("vpc-1"),
            "{}",
            err.message
        );
        assert!(c.ec2.authorized.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn authorize_errors_keep_their_names() {
        for (name, text) in [
            (ErrorName::AwsRejected, "security group sg-db has reached its limit of inbound rules"),
            (ErrorName::AwsAccessDenied, "ec2:AuthorizeSecurityGroupIngress on security group sg-db failed: UnauthorizedOperation"),
        ] {
            let mut ec2 = FakeEc2::default().group("sg-db", "vpc-1").group("sg-dms", "vpc-1");
            ec2.fail_authorize = Some(StepError::new(name, text));
            let c = clients(ec2, aurora(), resolver(&[]));
            let err = handle(state(AURORA_HOST), &c, "s").await.unwrap_err();
            assert_eq!(err.name, name);
            assert!(err.message.contains(text), "{}", err.message);
        }
    }

    #[tokio::test]
    async fn an_instance_without_groups_and_bad_input_are_named_errors() {
        let c = Clients {
            dms: dms(&[]),
            ec2: FakeEc2::default(),
            rds: aurora(),
            resolver: resolver(&[]),
            source_checks_group: None,
        };
        let err = handle(state(AURORA_HOST), &c, "s").await.unwrap_err();
        assert_eq!(err.name, ErrorName::AwsNotFound);
        assert!(
            err.message.contains("no VPC security group"),
            "{}",
            err.message
        );
        let err = handle(json!("x"), &c, "s").await.unwrap_err();
        assert_eq!(err.name, ErrorName::PayloadInvalid);
    }

    #[test]
    fn the_description_keeps_to_ec2s_alphabet() {
        for admitted in [Admitted::DmsInstance, Admitted::SourceChecks] {
            let text = rule_description(
                &format!("prod-migration'\"<x>{}", "s".repeat(300)),
                admitted,
            );
            assert!(text.contains("prod-migrationx"), "{text}");
            assert!(text.len() <= 255, "{}", text.len());
        }
    }
}
