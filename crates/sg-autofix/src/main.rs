use dms_core::aws::dms::DmsClient;
use dms_core::aws::ec2::Ec2Client;
use dms_core::aws::rds::RdsClient;
use dms_core::aws::{load_config, required_env};
use dms_core::defect::catch_defects;
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};
use serde_json::Value;
use sg_autofix::handler::{handle, Clients};
use sg_autofix::resolve::SystemResolver;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    // Names the stack in each rule's description and is the value of the cleanup tag.
    let stack_name = required_env("STACK_NAME")?;
    // The in-VPC source-checks function's group: admitted on Aurora's groups like the DMS instance's.
    let source_checks_group = std::env::var("SOURCE_CHECKS_SECURITY_GROUP")
        .ok()
        .filter(|g| !g.trim().is_empty());
    let config = load_config().await;
    let clients = Clients {
        dms: DmsClient::new(aws_sdk_databasemigration::Client::new(&config)),
        ec2: Ec2Client::new(aws_sdk_ec2::Client::new(&config)),
        rds: RdsClient::new(aws_sdk_rds::Client::new(&config)),
        resolver: SystemResolver,
        source_checks_group,
    };
    let (clients, stack_name) = (&clients, stack_name.as_str());
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        catch_defects(handle(event.payload, clients, stack_name)).await
    }))
    .await
}
