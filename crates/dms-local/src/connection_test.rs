//! TestConnection: a real connection attempt from this machine to the endpoint as registered. The answer
//! says `testing` at once; DescribeConnections shows `successful` or `failed` with LastFailureMessage once
//! the attempt ends (bounded by pg_connect::CONNECT_TIMEOUT).

use std::sync::Arc;

use serde_json::{json, Value};

use crate::connection_messages;
use crate::model::Connection;
use crate::pg_connect::{self, AttemptError};
use crate::protocol::{required_str, DmsError};
use crate::{wire, App};

pub fn start(app: &Arc<App>, input: &Value) -> Result<Value, DmsError> {
    let instance_arn = required_str(input, "ReplicationInstanceArn")?;
    let endpoint_arn = required_str(input, "EndpointArn")?;
    let mut inner = app.registry.lock();
    let instance = inner.instance(instance_arn).cloned().ok_or_else(|| {
        DmsError::not_found(format!("Replication instance {instance_arn} not found"))
    })?;
    let endpoint = inner
        .endpoint(endpoint_arn)
        .cloned()
        .ok_or_else(|| DmsError::not_found(format!("Endpoint {endpoint_arn} not found")))?;
    // DMS starts no test while the instance or the endpoint is in a state that forbids one
    // (InvalidResourceStateFault, "The resource is in a state that prevents it from being used for database
    // migration": https://docs.aws.amazon.com/dms/latest/APIReference/API_TestConnection.html). The API
    // reference gives no message text; this one is modelled on DMS's other state refusals ("... is in
    // MODIFYING state and cannot start"). The saved record of the pair is left as it was.
    if instance.status() != "available" {
        return Err(DmsError::invalid_state(format!(
            "Test connection cannot be performed: Replication Instance {} is in {} state",
            instance.identifier,
            instance.status().to_ascii_uppercase()
        )));
    }
    if endpoint.status() != "active" {
        return Err(DmsError::invalid_state(format!(
            "Test connection cannot be performed: Endpoint {} is in {} state",
            endpoint.identifier,
            endpoint.status().to_ascii_uppercase()
        )));
    }
    let existing = inner
        .connections
        .iter_mut()
        .find(|c| c.instance_arn == instance_arn && c.endpoint_arn == endpoint_arn);
    let connection = Connection {
        instance_arn: instance_arn.to_string(),
        endpoint_arn: endpoint_arn.to_string(),
        status: "testing".to_string(),
        last_failure_message: None,
    };
    match existing {
        Some(c) if c.status == "testing" => return Err(DmsError::invalid_state(
            "A test connection is already in progress for this endpoint and replication instance",
        )),
        Some(c) => *c = connection.clone(),
        None => inner.connections.push(connection.clone()),
    }
    drop(inner);
    let answer = wire::connection(&connection, &endpoint.identifier, &instance.identifier);
    let app = Arc::clone(app);
    tokio::spawn(async move {
        let outcome = match pg_connect::connect(&endpoint, &app.cas).await {
            Ok(client) => client
                .simple_query("SELECT 1")
                .await
                .map(|_| ())
                .map_err(|e| connection_messages::failure_message(&e, &endpoint, &instance)),
            Err(AttemptError::Postgres(e)) => Err(connection_messages::failure_message(
                &e, &endpoint, &instance,
            )),
            Err(AttemptError::TimedOut) => {
                Err(connection_messages::timeout_message(&endpoint, &instance))
            }
            Err(AttemptError::TlsSetup(detail)) => Err(connection_messages::tls_setup_message(
                &detail, &endpoint, &instance,
            )),
        };
        tracing::info!(endpoint = %endpoint.identifier, ok = outcome.is_ok(), "connection test finished");
        let mut inner = app.registry.lock();
        if let Some(c) = inner
            .connections
            .iter_mut()
            .find(|c| c.instance_arn == instance.arn && c.endpoint_arn == endpoint.arn)
        {
            match outcome {
                Ok(()) => c.status = "successful".to_string(),
                Err(message) => {
                    c.status = "failed".to_string();
                    c.last_failure_message = Some(message);
                }
            }
        }
    });
    Ok(json!({"Connection": answer}))
}
