//! The CloudFormation template as data for the static tests: its YAML, where CloudFormation's short-form
//! tags (`!Sub`, `!Ref`, `!GetAtt`...) are read into their long JSON form (`{"Fn::Sub": ...}`,
//! `{"Ref": ...}`), the same shape `aws cloudformation package` writes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::lab::workspace_root;

pub const TEMPLATE: &str = "cloudformation/aurora-to-ps-dms.yaml";
pub const STATE_MACHINE: &str = "statemachine.asl.json";

pub fn template_path() -> PathBuf {
    workspace_root().join(TEMPLATE)
}

/// Reads a template (source or packaged) into JSON.
pub fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    parse(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

pub fn parse(text: &str) -> Result<Value, serde_yaml::Error> {
    Ok(to_json(serde_yaml::from_str(text)?))
}

fn to_json(yaml: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(n).unwrap_or(Value::Null),
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s,
                        other => serde_yaml::to_string(&other)
                            .unwrap_or_default()
                            .trim()
                            .to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let value = to_json(tagged.value);
            let (key, value) = match name {
                "Ref" | "Condition" => (name.to_string(), value),
                // `!GetAtt Resource.Attribute` is the string form of ["Resource", "Attribute"].
                "GetAtt" => match value {
                    Value::String(s) => {
                        let (resource, attribute) = s.split_once('.').unwrap_or((&s, ""));
                        (
                            "Fn::GetAtt".to_string(),
                            Value::Array(vec![resource.into(), attribute.into()]),
                        )
                    }
                    other => ("Fn::GetAtt".to_string(), other),
                },
                other => (format!("Fn::{other}"), value),
            };
            let mut object = Map::new();
            object.insert(key, value);
            Value::Object(object)
        }
    }
}

/// A Lambda function of the template: its crate (from the `Code` path) and its role's logical id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaFunction {
    pub logical_id: String,
    pub crate_name: String,
    pub role_logical_id: String,
}

/// Every `AWS::Lambda::Function` whose Code is `../target/lambda/<crate>/bootstrap.zip` and whose Role is
/// `!GetAtt <Role>.Arn`.
pub fn lambda_functions(template: &Value) -> Vec<LambdaFunction> {
    let resources = template["Resources"].as_object().expect("Resources");
    let mut functions = Vec::new();
    for (logical_id, resource) in resources {
        if resource["Type"] != "AWS::Lambda::Function" {
            continue;
        }
        let props = &resource["Properties"];
        let code = props["Code"].as_str().unwrap_or_else(|| {
            panic!(
                "{logical_id}: Code is not a local zip path: {}",
                props["Code"]
            )
        });
        let crate_name = code
            .strip_prefix("../target/lambda/")
            .and_then(|rest| rest.strip_suffix("/bootstrap.zip"))
            .unwrap_or_else(|| panic!("{logical_id}: unexpected Code path {code}"));
        let role = props["Role"]["Fn::GetAtt"][0]
            .as_str()
            .unwrap_or_else(|| panic!("{logical_id}: Role is not !GetAtt <Role>.Arn"));
        functions.push(LambdaFunction {
            logical_id: logical_id.clone(),
            crate_name: crate_name.to_string(),
            role_logical_id: role.to_string(),
        });
    }
    functions
}

/// What Lambda needs in a VPC function's own role to create and remove its network interfaces: the EC2
/// actions of the AWS managed policy AWSLambdaVPCAccessExecutionRole but `ec2:DescribeSubnets`, which the
/// Lambda guide's list of required permissions does not name
/// (https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html,
/// https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSLambdaVPCAccessExecutionRole.html).
pub const VPC_ENI_ACTIONS: [&str; 5] = [
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
];

/// Every statement of the role's inline policies.
pub fn role_statements(template: &Value, role_logical_id: &str) -> Vec<Value> {
    template["Resources"][role_logical_id]["Properties"]["Policies"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| {
            p["PolicyDocument"]["Statement"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

/// The actions the role's inline policies Allow (statements' `Action`, string or list).
pub fn role_allowed_actions(template: &Value, role_logical_id: &str) -> BTreeSet<String> {
    let role = &template["Resources"][role_logical_id];
    assert_eq!(
        role["Type"], "AWS::IAM::Role",
        "{role_logical_id} is not a role"
    );
    assert!(
        role["Properties"].get("ManagedPolicyArns").is_none(),
        "{role_logical_id}: managed policies would grant actions no test can see; use inline policies"
    );
    let mut actions = BTreeSet::new();
    for policy in role["Properties"]["Policies"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let statements = &policy["PolicyDocument"]["Statement"];
        for statement in statements.as_array().into_iter().flatten() {
            if statement["Effect"] != "Allow" {
                continue;
            }
            assert!(
                statement.get("NotAction").is_none(),
                "{role_logical_id}: NotAction allows everything else"
            );
            match &statement["Action"] {
                Value::String(a) => {
                    actions.insert(a.clone());
                }
                Value::Array(list) => {
                    actions.extend(list.iter().filter_map(Value::as_str).map(str::to_string))
                }
                other => panic!("{role_logical_id}: unexpected Action {other}"),
            }
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_form_tags_become_long_form() {
        let json = parse(
            "A: !Ref X\nB: !GetAtt R.Arn\nC: !Sub 'a-${X}'\nD: !If [Cond, !Ref Y, !Ref AWS::NoValue]\n",
        )
        .unwrap();
        assert_eq!(json["A"], serde_json::json!({"Ref": "X"}));
        assert_eq!(json["B"], serde_json::json!({"Fn::GetAtt": ["R", "Arn"]}));
        assert_eq!(json["C"], serde_json::json!({"Fn::Sub": "a-${X}"}));
        assert_eq!(
            json["D"],
            serde_json::json!({"Fn::If": ["Cond", {"Ref": "Y"}, {"Ref": "AWS::NoValue"}]})
        );
    }
}
