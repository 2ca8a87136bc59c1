//! Tags this project puts on AWS resources. The CloudFormation template tags every resource it creates
//! with the same key, and its IAM conditions (`aws:RequestTag/<key>` on sg-autofix's `ec2:CreateTags`) name
//! it literally: a test (tests/tests/iam_actions.rs) keeps the template in step with this constant.

/// Key of the tag `sg-autofix` puts on every security-group rule it adds, with the stack name as value;
/// `stack-cleanup` revokes exactly the rules carrying it with its own stack's name when the stack is deleted.
pub const SG_RULE_TAG_KEY: &str = "aurora-to-ps-dms:stack";
