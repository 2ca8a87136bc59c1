//! sg-autofix against moto EC2 and RDS (an Aurora cluster, its security group, a network interface, the
//! DMS instance's group — all created by the test) and dms-local (the replication instance naming that
//! group). The built binary finds the source's group through RDS and through an interface's address; the
//! handler, called in-process with the test's own resolver, finds it for a host name. The rule exists
//! exactly once, tagged with the stack, and a second run adds nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use test_doubles::StateFixture;

use aws_sdk_ec2::types::Filter;
use dms_core::aws::ec2::Ec2Client;
use dms_core::aws::rds::RdsClient;
use dms_core::rules::tags::SG_RULE_TAG_KEY;
use integration_tests::dms_local::DmsLocal;
use integration_tests::lab::{binary, Lab};
use integration_tests::lambda::LocalLambda;
use serde_json::{json, Value};
use sg_autofix::handler::{handle, Clients};
use sg_autofix::resolve::Resolver;

const PORT: u16 = 5432;

/// Moto's state outlives a test run, so every name and address is unique to this run.
fn unique(label: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{label}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Second and third octets no earlier run used (a stale interface holding the address would be found).
fn fresh_octets() -> (u8, u8) {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mixed = nanos ^ u128::from(std::process::id()) << 20;
    (
        u8::try_from(mixed % 250).unwrap_or(1) + 1,
        u8::try_from((mixed / 250) % 250).unwrap_or(1) + 1,
    )
}

struct Network {
    ec2: aws_sdk_ec2::Client,
    rds: aws_sdk_rds::Client,
    vpc_id: String,
    subnet_id: String,
    dms_group: String,
    subnet_prefix: String,
}

impl Network {
    async fn create(lab: &Lab) -> Network {
        let config = lab.aws_config().await;
        let ec2 = aws_sdk_ec2::Client::new(&config);
        let rds = aws_sdk_rds::Client::new(&config);
        let (b, c) = fresh_octets();
        let vpc_id = ec2
            .create_vpc()
            .cidr_block(format!("10.{b}.0.0/16"))
            .send()
            .await
            .expect("create VPC")
            .vpc()
            .and_then(|v| v.vpc_id())
            .expect("a VPC id")
            .to_string();
        let subnet_id = ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(format!("10.{b}.{c}.0/24"))
            .send()
            .await
            .expect("create subnet")
            .subnet()
            .and_then(|s| s.subnet_id())
            .expect("a subnet id")
            .to_string();
        let mut network = Network {
            ec2,
            rds,
            vpc_id,
            subnet_id,
            dms_group: String::new(),
            subnet_prefix: format!("10.{b}.{c}"),
        };
        network.dms_group = network.group("dms").await;
        network
    }

    async fn group(&self, label: &str) -> String {
        self.ec2
            .create_security_group()
            .group_name(unique(label))
            .description(format!("sg-autofix lab test: {label}"))
            .vpc_id(&self.vpc_id)
            .send()
            .await
            .expect("create security group")
            .group_id()
            .expect("a group id")
            .to_string()
    }

    /// An Aurora PostgreSQL cluster in `group`; returns its writer endpoint.
    async fn aurora_cluster(&self, group: &str) -> String {
        let id = unique("lab-aurora");
        let out = self
            .rds
            .create_db_cluster()
            .db_cluster_identifier(&id)
            .engine("aurora-postgresql")
            .master_username("postgres")
            .master_user_password("lab-password-not-used")
            .vpc_security_group_ids(group)
            .send()
            .await
            .expect("create DB cluster");
        out.db_cluster()
            .and_then(|c| c.endpoint())
            .expect("a cluster endpoint")
            .to_string()
    }

    /// A network interface holding `ip` in the subnet, in `group`.
    async fn interface(&self, ip: &str, group: &str) {
        self.ec2
            .create_network_interface()
            .subnet_id(&self.subnet_id)
            .private_ip_address(ip)
            .groups(group)
            .send()
            .await
            .expect("create network interface");
    }

    /// Inbound rules carrying the cleanup tag of `stack`.
    async fn tagged_rules(&self, stack: &str) -> Vec<aws_sdk_ec2::types::SecurityGroupRule> {
        self.ec2
            .describe_security_group_rules()
            .filters(
                Filter::builder()
                    .name(format!("tag:{SG_RULE_TAG_KEY}"))
                    .values(stack)
                    .build(),
            )
            .send()
            .await
            .expect("describe security group rules")
            .security_group_rules()
            .to_vec()
    }
}

async fn dms_instance(dms: &DmsLocal, network: &Network) -> String {
    dms.try_control(
        "instances",
        &json!({"identifier": unique("lab-sg"), "securityGroupIds": [network.dms_group],
            "vpcId": network.vpc_id, "publiclyAccessible": false}),
    )
    .await
    .expect("instance registered")["arn"]
        .as_str()
        .expect("an instance ARN")
        .to_string()
}

fn state(instance_arn: &str, host: &str) -> Value {
    StateFixture::default()
        .with("replicationInstanceArn", instance_arn)
        .with("sourceEndpointHost", host)
        .with("sourcePort", PORT)
        .input()
}

async fn sg_autofix_lambda(lab: &Lab, dms: &DmsLocal, stack: &str) -> LocalLambda {
    let mut env = lab.aws_env();
    env.extend(dms.env());
    env.push(("STACK_NAME".into(), stack.into()));
    LocalLambda::start(
        &PathBuf::from(lab.var("CARGO_LAMBDA")),
        "sg-autofix",
        &binary("sg-autofix"),
        &env,
    )
    .await
}

fn assert_one_rule(rules: &[aws_sdk_ec2::types::SecurityGroupRule], group: &str, dms_group: &str) {
    assert_eq!(rules.len(), 1, "exactly one tagged rule: {rules:?}");
    let rule = &rules[0];
    assert_eq!(rule.group_id(), Some(group));
    assert_eq!(rule.is_egress(), Some(false));
    assert_eq!(rule.ip_protocol(), Some("tcp"));
    assert_eq!(rule.from_port(), Some(i32::from(PORT)));
    assert_eq!(rule.to_port(), Some(i32::from(PORT)));
    assert_eq!(
        rule.referenced_group_info().and_then(|r| r.group_id()),
        Some(dms_group)
    );
}

#[tokio::test]
async fn an_aurora_host_is_found_through_rds_and_the_rule_is_added_once() {
    let Some(lab) = Lab::get().await else { return };
    let network = Network::create(&lab).await;
    let db_group = network.group("aurora").await;
    let host = network.aurora_cluster(&db_group).await;
    let dms = DmsLocal::start(&lab).await;
    let instance_arn = dms_instance(&dms, &network).await;
    let stack = unique("lab-stack");
    let lambda = sg_autofix_lambda(&lab, &dms, &stack).await;

    let rule = format!("{db_group} <- {} tcp/{PORT}", network.dms_group);
    let out = lambda
        .invoke(&state(&instance_arn, &host))
        .await
        .expect("sg-autofix answers");
    let result = &out["results"]["sgAutofix"];
    assert_eq!(result["sourceGroups"], json!([db_group]), "{result}");
    assert_eq!(result["dmsGroups"], json!([network.dms_group]));
    assert_eq!(result["added"], json!([rule]));
    assert_eq!(result["present"], json!([]));
    assert_one_rule(
        &network.tagged_rules(&stack).await,
        &db_group,
        &network.dms_group,
    );

    let again = lambda
        .invoke(&state(&instance_arn, &host))
        .await
        .expect("a second run answers");
    assert_eq!(again["results"]["sgAutofix"]["added"], json!([]));
    assert_eq!(again["results"]["sgAutofix"]["present"], json!([rule]));
    assert_one_rule(
        &network.tagged_rules(&stack).await,
        &db_group,
        &network.dms_group,
    );
}

/// Maps the test's made-up host names to addresses in moto's VPC.
struct MapResolver(HashMap<String, IpAddr>);

impl Resolver for MapResolver {
    async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        self.0
            .get(host)
            .map(|ip| vec![*ip])
            .ok_or_else(|| format!("{host}: Name or service not known"))
    }
}

#[tokio::test]
async fn a_non_rds_host_is_found_through_the_interface_holding_its_address() {
    let Some(lab) = Lab::get().await else { return };
    let network = Network::create(&lab).await;
    let db_group = network.group("self-managed").await;
    let ip = format!("{}.25", network.subnet_prefix);
    network.interface(&ip, &db_group).await;
    let dms = DmsLocal::start(&lab).await;
    let instance_arn = dms_instance(&dms, &network).await;
    let stack = unique("lab-stack");
    let config = lab.aws_config().await;
    let clients = Clients {
        dms: dms.dms_client().await,
        ec2: Ec2Client::new(aws_sdk_ec2::Client::new(&config)),
        rds: RdsClient::new(aws_sdk_rds::Client::new(&config)),
        resolver: MapResolver(HashMap::from([(
            "pg.internal.lab".to_string(),
            ip.parse().expect("an address"),
        )])),
        source_checks_group: None,
    };

    let rule = format!("{db_group} <- {} tcp/{PORT}", network.dms_group);
    let out = handle(state(&instance_arn, "pg.internal.lab"), &clients, &stack)
        .await
        .expect("the handler adds the rule");
    assert_eq!(
        out["results"]["sgAutofix"]["sourceGroups"],
        json!([db_group])
    );
    assert_eq!(out["results"]["sgAutofix"]["added"], json!([rule]));
    assert_one_rule(
        &network.tagged_rules(&stack).await,
        &db_group,
        &network.dms_group,
    );

    // The built binary, given the address itself (it resolves to itself), finds the same interface and
    // adds nothing.
    let lambda = sg_autofix_lambda(&lab, &dms, &stack).await;
    let again = lambda
        .invoke(&state(&instance_arn, &ip))
        .await
        .expect("sg-autofix answers");
    assert_eq!(
        again["results"]["sgAutofix"]["sourceGroups"],
        json!([db_group])
    );
    assert_eq!(again["results"]["sgAutofix"]["added"], json!([]));
    assert_eq!(again["results"]["sgAutofix"]["present"], json!([rule]));
    assert_one_rule(
        &network.tagged_rules(&stack).await,
        &db_group,
        &network.dms_group,
    );
}

#[tokio::test]
async fn an_unresolvable_host_and_a_missing_security_group_are_named_errors() {
    let Some(lab) = Lab::get().await else { return };
    let network = Network::create(&lab).await;
    let dms = DmsLocal::start(&lab).await;
    let instance_arn = dms_instance(&dms, &network).await;
    let stack = unique("lab-stack");
    let lambda = sg_autofix_lambda(&lab, &dms, &stack).await;

    // RFC 2606 reserves `.invalid`: no resolver answers it.
    let err = lambda
        .invoke(&state(&instance_arn, "source-db.example.invalid"))
        .await
        .expect_err("an unresolvable host is an error");
    assert_eq!(err.error_type, "Aws.NotFound");
    assert!(
        err.error_message.contains("source-db.example.invalid")
            && err.error_message.contains("does not resolve"),
        "{}",
        err.error_message
    );

    // An address no interface holds (the subnet's .240: the test created nothing there).
    let ip = format!("{}.240", network.subnet_prefix);
    let err = lambda
        .invoke(&state(&instance_arn, &ip))
        .await
        .expect_err("no group is an error");
    assert_eq!(err.error_type, "Aws.NotFound");
    assert!(
        err.error_message.contains("no security group found")
            && err
                .error_message
                .contains(&format!("addresses.private-ip-address {ip}")),
        "{}",
        err.error_message
    );
    assert!(network.tagged_rules(&stack).await.is_empty());
}
