use dms_core::defect::catch_defects;
use lambda_runtime::{run, service_fn, tracing, Error, LambdaEvent};
use serde_json::Value;

mod handler;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    // No AWS client: this function runs inside the VPC and calls no AWS API (dms_core::pg::source_checks).
    run(service_fn(|event: LambdaEvent<Value>| async move {
        catch_defects(handler::handle(event.payload, &handler::Postgres)).await
    }))
    .await
}
