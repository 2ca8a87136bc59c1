//! The IAM and DMS calls behind `dms_roles` and `update_guard`. Every call names its IAM action once, in
//! `classify_sdk_error`, so the stack-cleanup role's actions can be derived from this code.

use aws_sdk_databasemigration::types::Filter;
use dms_core::errors::classify_sdk_error;
use dms_core::{ErrorName, StepError};

use crate::dms_roles::{AccountRoles, CreateOutcome, FoundRole, ProbeError, SubnetGroups};
use crate::update_guard::{lob_max_size_kb, TaskFacts, TaskReader};

pub struct IamRoles {
    client: aws_sdk_iam::Client,
}

impl IamRoles {
    pub fn new(client: aws_sdk_iam::Client) -> Self {
        IamRoles { client }
    }
}

/// IAM returns policy documents URL-encoded (RFC 3986)
/// (https://docs.aws.amazon.com/IAM/latest/APIReference/API_Role.html, AssumeRolePolicyDocument).
pub fn url_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl AccountRoles for IamRoles {
    async fn find_role(&self, name: &str) -> Result<Option<FoundRole>, StepError> {
        let role = match self.client.get_role().role_name(name).send().await {
            Ok(out) => out.role,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_entity_exception()) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(classify_sdk_error("iam:GetRole", name, &e)),
        };
        let trust_policy = role
            .and_then(|r| r.assume_role_policy_document)
            .map(|doc| url_decode(&doc))
            .unwrap_or_default();
        // A DMS role has one or two policies; 100 is the most one page returns.
        let attached = self
            .client
            .list_attached_role_policies()
            .role_name(name)
            .max_items(100)
            .send()
            .await
            .map_err(|e| classify_sdk_error("iam:ListAttachedRolePolicies", name, &e))?;
        Ok(Some(FoundRole {
            trust_policy,
            attached_policy_arns: attached
                .attached_policies()
                .iter()
                .filter_map(|p| p.policy_arn().map(str::to_string))
                .collect(),
        }))
    }

    async fn create_role(
        &self,
        name: &str,
        trust_policy: &str,
        description: &str,
    ) -> Result<CreateOutcome, StepError> {
        match self
            .client
            .create_role()
            .role_name(name)
            .assume_role_policy_document(trust_policy)
            .description(description)
            .send()
            .await
        {
            Ok(_) => Ok(CreateOutcome::Created),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_already_exists_exception()) =>
            {
                Ok(CreateOutcome::AlreadyExisted)
            }
            Err(e) => Err(classify_sdk_error("iam:CreateRole", name, &e)),
        }
    }

    async fn attach_managed_policy(&self, name: &str, policy_arn: &str) -> Result<(), StepError> {
        self.client
            .attach_role_policy()
            .role_name(name)
            .policy_arn(policy_arn)
            .send()
            .await
            .map_err(|e| classify_sdk_error("iam:AttachRolePolicy", name, &e))?;
        Ok(())
    }
}

#[derive(Clone)]
pub struct DmsApi {
    client: aws_sdk_databasemigration::Client,
}

impl DmsApi {
    pub fn new(client: aws_sdk_databasemigration::Client) -> Self {
        DmsApi { client }
    }
}

impl SubnetGroups for DmsApi {
    async fn create_probe_group(
        &self,
        identifier: &str,
        description: &str,
        subnet_ids: &[String],
    ) -> Result<(), ProbeError> {
        let result = self
            .client
            .create_replication_subnet_group()
            .replication_subnet_group_identifier(identifier)
            .replication_subnet_group_description(description)
            .set_subnet_ids(Some(subnet_ids.to_vec()))
            .send()
            .await;
        let Err(e) = result else { return Ok(()) };
        match e.as_service_error() {
            Some(s) if s.is_access_denied_fault() => Err(ProbeError::RoleNotUsable(
                s.meta()
                    .message()
                    .unwrap_or("AccessDeniedFault")
                    .to_string(),
            )),
            Some(s) if s.is_resource_already_exists_fault() => Err(ProbeError::AlreadyExists),
            _ => Err(ProbeError::Failed(classify_sdk_error(
                "dms:CreateReplicationSubnetGroup",
                identifier,
                &e,
            ))),
        }
    }

    async fn delete_probe_group(&self, identifier: &str) -> Result<(), StepError> {
        match self
            .client
            .delete_replication_subnet_group()
            .replication_subnet_group_identifier(identifier)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_fault()) =>
            {
                Ok(())
            }
            Err(e) => Err(classify_sdk_error(
                "dms:DeleteReplicationSubnetGroup",
                identifier,
                &e,
            )),
        }
    }
}

impl TaskReader for DmsApi {
    async fn task_by_identifier(&self, identifier: &str) -> Result<Option<TaskFacts>, StepError> {
        let filter = Filter::builder()
            .name("replication-task-id")
            .values(identifier)
            .build()
            .map_err(|e| StepError::new(ErrorName::AwsRejected, format!("DMS filter: {e}")))?;
        // DescribeReplicationTasks answers ResourceNotFoundFault when no task matches.
        let out = match self
            .client
            .describe_replication_tasks()
            .filters(filter)
            .without_settings(false)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_fault()) =>
            {
                return Ok(None)
            }
            Err(e) => {
                return Err(classify_sdk_error(
                    "dms:DescribeReplicationTasks",
                    identifier,
                    &e,
                ))
            }
        };
        Ok(out
            .replication_tasks()
            .iter()
            .find(|t| t.replication_task_identifier() == Some(identifier))
            .map(|t| TaskFacts {
                status: t.status().unwrap_or_default().to_string(),
                migration_type: t
                    .migration_type()
                    .map(|m| m.as_str().to_string())
                    .unwrap_or_default(),
                lob_max_size_kb: t.replication_task_settings().and_then(lob_max_size_kb),
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::url_decode;

    #[test]
    fn iam_policy_documents_are_url_decoded() {
        assert_eq!(
            url_decode("%7B%22Service%22%3A%22dms.amazonaws.com%22%7D"),
            r#"{"Service":"dms.amazonaws.com"}"#
        );
        assert_eq!(url_decode("plain{}"), "plain{}");
        assert_eq!(url_decode("100%"), "100%");
    }
}
