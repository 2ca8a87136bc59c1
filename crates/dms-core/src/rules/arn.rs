//! DMS ARNs as the payload carries them: `arn:PARTITION:dms:REGION:ACCOUNT:TYPE:ID`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmsArn {
    pub partition: String,
    pub region: String,
    pub account: String,
    pub resource_type: String,
    pub resource_id: String,
}

impl DmsArn {
    /// Parses and checks the shape; `expected_type` is `rep`, `endpoint` or `task`.
    /// The error text says what is wrong in words a person pasting into the console understands.
    pub fn parse(text: &str, expected_type: &str) -> Result<DmsArn, String> {
        let parts: Vec<&str> = text.split(':').collect();
        if parts.len() != 7 || parts[0] != "arn" {
            return Err(format!(
                "expected an ARN of the form arn:aws:dms:REGION:ACCOUNT:{expected_type}:ID (7 parts separated by ':')"
            ));
        }
        let (partition, service, region, account, rtype, id) =
            (parts[1], parts[2], parts[3], parts[4], parts[5], parts[6]);
        if !matches!(partition, "aws" | "aws-cn" | "aws-us-gov") {
            return Err(format!(
                "unknown partition `{partition}` (aws, aws-cn or aws-us-gov)"
            ));
        }
        if service != "dms" {
            return Err(format!(
                "this is an ARN of service `{service}`, expected a DMS ARN (arn:aws:dms:...)"
            ));
        }
        if !is_region(region) {
            return Err(format!(
                "`{region}` is not an AWS region name such as us-east-1"
            ));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("`{account}` is not a 12-digit AWS account id"));
        }
        if rtype != expected_type {
            return Err(format!(
                "this is a DMS `{rtype}` ARN, expected a `{expected_type}` ARN ({})",
                type_description(expected_type)
            ));
        }
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(format!(
                "`{id}` is not a DMS resource id (letters, digits and '-')"
            ));
        }
        Ok(DmsArn {
            partition: partition.to_string(),
            region: region.to_string(),
            account: account.to_string(),
            resource_type: rtype.to_string(),
            resource_id: id.to_string(),
        })
    }
}

impl fmt::Display for DmsArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:dms:{}:{}:{}:{}",
            self.partition, self.region, self.account, self.resource_type, self.resource_id
        )
    }
}

fn type_description(rtype: &str) -> &'static str {
    match rtype {
        "rep" => "a replication instance",
        "endpoint" => "a source or target endpoint",
        "task" => "a replication task",
        _ => "a DMS resource",
    }
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`, `ap-southeast-5`, `cn-north-1`.
pub fn is_region(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    if parts.len() < 3 || parts.len() > 4 {
        return false;
    }
    let (last, rest) = parts.split_last().expect("len checked");
    !last.is_empty()
        && last.bytes().all(|b| b.is_ascii_digit())
        && rest
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_type() {
        let arn =
            DmsArn::parse("arn:aws:dms:us-east-1:123456789012:task:ABCDEF123", "task").unwrap();
        assert_eq!(arn.region, "us-east-1");
        assert_eq!(arn.resource_id, "ABCDEF123");
        assert_eq!(
            arn.to_string(),
            "arn:aws:dms:us-east-1:123456789012:task:ABCDEF123"
        );
        assert!(DmsArn::parse(
            "arn:aws-us-gov:dms:us-gov-west-1:123456789012:rep:X1",
            "rep"
        )
        .is_ok());
    }

    #[test]
    fn says_what_is_wrong() {
        let err =
            DmsArn::parse("arn:aws:dms:us-east-1:123456789012:endpoint:ABC", "task").unwrap_err();
        assert!(err.contains("`endpoint` ARN, expected a `task`"), "{err}");
        let err = DmsArn::parse("arn:aws:rds:us-east-1:123456789012:task:ABC", "task").unwrap_err();
        assert!(err.contains("service `rds`"), "{err}");
        let err = DmsArn::parse("arn:aws:dms:us-east-1:1234:task:ABC", "task").unwrap_err();
        assert!(err.contains("12-digit"), "{err}");
        let err = DmsArn::parse("arn:aws:dms:useast1:123456789012:task:ABC", "task").unwrap_err();
        assert!(err.contains("region"), "{err}");
        let err = DmsArn::parse("task:ABC", "task").unwrap_err();
        assert!(err.contains("7 parts"), "{err}");
        let err =
            DmsArn::parse("arn:aws:dms:us-east-1:123456789012:task:AB C", "task").unwrap_err();
        assert!(err.contains("resource id"), "{err}");
    }
}
