//! CreateReplicationSubnetGroup and DeleteReplicationSubnetGroup, as the DMS API reference defines them
//! (https://docs.aws.amazon.com/dms/latest/APIReference/API_CreateReplicationSubnetGroup.html,
//! https://docs.aws.amazon.com/dms/latest/APIReference/API_DeleteReplicationSubnetGroup.html).
//! dms-local knows no subnet's VPC or Availability Zone, so it never answers `InvalidSubnet` or
//! `ReplicationSubnetGroupDoesNotCoverEnoughAZs`; the `accessDenied` fault answers `AccessDeniedFault` the
//! way DMS does while it cannot use `dms-vpc-role` (README.md).

use serde_json::{json, Value};

use crate::model::SubnetGroup;
use crate::protocol::{required_str, DmsError};
use crate::App;

/// The message DMS gives when it cannot use `dms-vpc-role` (quoted in aws/aws-cdk#7632 and
/// hashicorp/terraform-provider-aws#11025).
pub fn vpc_role_not_ready() -> DmsError {
    DmsError {
        code: "AccessDeniedFault",
        message:
            "The IAM Role arn:aws:iam::123456789012:role/dms-vpc-role is not configured properly."
                .to_string(),
    }
}

fn wire(group: &SubnetGroup) -> Value {
    json!({
        "ReplicationSubnetGroupIdentifier": group.identifier,
        "ReplicationSubnetGroupDescription": group.description,
        "SubnetGroupStatus": "Complete",
        "Subnets": group.subnet_ids.iter()
            .map(|id| json!({"SubnetIdentifier": id, "SubnetStatus": "Active"}))
            .collect::<Vec<_>>(),
    })
}

pub fn create(app: &App, input: &Value) -> Result<Value, DmsError> {
    // DMS stores the identifier lowercase; "default" is reserved.
    let identifier = required_str(input, "ReplicationSubnetGroupIdentifier")?.to_ascii_lowercase();
    let description = required_str(input, "ReplicationSubnetGroupDescription")?;
    if identifier == "default" {
        return Err(DmsError::invalid_parameter(
            "The parameter ReplicationSubnetGroupIdentifier must not be \"default\"",
        ));
    }
    let subnet_ids: Vec<String> = input["SubnetIds"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if subnet_ids.is_empty() {
        return Err(DmsError::invalid_parameter(
            "SubnetIds must name at least one subnet",
        ));
    }
    let mut inner = app.registry.lock();
    if inner
        .subnet_groups
        .iter()
        .any(|g| g.identifier == identifier)
    {
        return Err(DmsError {
            code: "ResourceAlreadyExistsFault",
            message: "The Replication Subnet Group already exists".to_string(),
        });
    }
    let group = SubnetGroup {
        identifier,
        description: description.to_string(),
        subnet_ids,
    };
    let answer = wire(&group);
    inner.subnet_groups.push(group);
    Ok(json!({"ReplicationSubnetGroup": answer}))
}

pub fn delete(app: &App, input: &Value) -> Result<Value, DmsError> {
    let identifier = required_str(input, "ReplicationSubnetGroupIdentifier")?.to_ascii_lowercase();
    let mut inner = app.registry.lock();
    let before = inner.subnet_groups.len();
    inner.subnet_groups.retain(|g| g.identifier != identifier);
    if inner.subnet_groups.len() == before {
        return Err(DmsError::not_found(format!(
            "Replication Subnet Group {identifier} not found"
        )));
    }
    Ok(json!({}))
}
