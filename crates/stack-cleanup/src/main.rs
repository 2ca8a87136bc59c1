// The nested futures of the SDK calls (S3, EC2, IAM, DMS) behind the resource traits exceed the default
// depth rustc uses to compute the layout of main's future.
#![recursion_limit = "256"]

use dms_core::aws::s3::S3VersionedBucket;
use dms_core::aws::sg_rules::Ec2SecurityGroupRules;
use dms_core::aws::{load_config, required_env};
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};
use serde_json::Value;

mod aws_clients;
mod dms_roles;
mod handler;
mod response;
mod update_guard;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let stack_name = required_env("STACK_NAME")?;
    let config = load_config().await;
    let resources = handler::Resources {
        cleaners: handler::Cleaners {
            bucket: S3VersionedBucket::new(aws_sdk_s3::Client::new(&config)),
            rules: Ec2SecurityGroupRules::new(aws_sdk_ec2::Client::new(&config)),
            default_stack_name: stack_name,
        },
        roles: aws_clients::IamRoles::new(aws_sdk_iam::Client::new(&config)),
        dms: aws_clients::DmsApi::new(aws_sdk_databasemigration::Client::new(&config)),
    };
    let responder = response::HttpResponder::new()?;
    let (resources, responder) = (&resources, &responder);
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let budget =
            handler::cleanup_budget(event.context.deadline(), std::time::SystemTime::now());
        handler::handle(event.payload, resources, responder, budget).await
    }))
    .await
}
