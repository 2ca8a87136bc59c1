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

/// The template as CloudFormation deploys it for the given parameter values (the others at their
/// `Default`), as far as the static tests need: `Conditions` evaluated (`Fn::Equals`, `Fn::And`, `Fn::Or`,
/// `Fn::Not`, `Condition`), resources and outputs whose condition is false left out, every `Fn::If` replaced
/// by its branch and `AWS::NoValue` removing the property or list element it stands for
/// (https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/intrinsic-function-reference-conditions.html,
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/pseudo-parameter-reference.html).
/// Other intrinsic functions stay as written; [`text`] evaluates the ones that make a string.
pub fn deployed(template: &Value, parameters: &[(&str, &str)]) -> Value {
    let mut values: std::collections::BTreeMap<String, String> = template["Parameters"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, p)| {
            let default = match &p["Default"] {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            Some((name.clone(), default))
        })
        .collect();
    for (name, value) in parameters {
        assert!(
            template["Parameters"].get(*name).is_some(),
            "no parameter {name}"
        );
        values.insert(name.to_string(), value.to_string());
    }
    let definitions = template["Conditions"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let conditions: std::collections::BTreeMap<String, bool> = definitions
        .iter()
        .map(|(name, _)| {
            (
                name.clone(),
                condition(&definitions, name, &values, definitions.len()),
            )
        })
        .collect();
    let mut out = template.clone();
    for section in ["Resources", "Outputs"] {
        let Some(entries) = template[section].as_object() else {
            continue;
        };
        let kept: Map<String, Value> = entries
            .iter()
            .filter(|(_, entry)| {
                entry["Condition"]
                    .as_str()
                    .is_none_or(|name| conditions[name])
            })
            .filter_map(|(name, entry)| Some((name.clone(), choose(entry, &conditions)?)))
            .collect();
        out[section] = Value::Object(kept);
    }
    out
}

/// A named condition's value; `depth` bounds the chain of `Condition` references (a template cannot
/// have more links than conditions).
fn condition(
    definitions: &Map<String, Value>,
    name: &str,
    parameters: &std::collections::BTreeMap<String, String>,
    depth: usize,
) -> bool {
    let definition = definitions
        .get(name)
        .unwrap_or_else(|| panic!("no condition {name}"));
    truth(definition, definitions, parameters, depth)
}

fn truth(
    expr: &Value,
    definitions: &Map<String, Value>,
    parameters: &std::collections::BTreeMap<String, String>,
    depth: usize,
) -> bool {
    assert!(depth > 0, "condition chain loops: {expr}");
    let operand = |v: &Value| -> String {
        match v {
            Value::String(s) => s.clone(),
            other => {
                let name = other["Ref"]
                    .as_str()
                    .unwrap_or_else(|| panic!("unsupported Fn::Equals operand {other}"));
                parameters
                    .get(name)
                    .unwrap_or_else(|| panic!("no value for parameter {name}"))
                    .clone()
            }
        }
    };
    let list = |key: &str| expr[key].as_array().cloned().unwrap_or_default();
    if let Some(name) = expr["Condition"].as_str() {
        condition(definitions, name, parameters, depth - 1)
    } else if expr.get("Fn::Equals").is_some() {
        let pair = list("Fn::Equals");
        operand(&pair[0]) == operand(&pair[1])
    } else if expr.get("Fn::And").is_some() {
        list("Fn::And")
            .iter()
            .all(|e| truth(e, definitions, parameters, depth - 1))
    } else if expr.get("Fn::Or").is_some() {
        list("Fn::Or")
            .iter()
            .any(|e| truth(e, definitions, parameters, depth - 1))
    } else if expr.get("Fn::Not").is_some() {
        !truth(&list("Fn::Not")[0], definitions, parameters, depth - 1)
    } else {
        panic!("unsupported condition {expr}")
    }
}

/// `value` with every `Fn::If` replaced by its branch; `None` where `AWS::NoValue` removes it.
fn choose(value: &Value, conditions: &std::collections::BTreeMap<String, bool>) -> Option<Value> {
    match value {
        Value::Object(map) => {
            if map.len() == 1 && map.get("Ref").and_then(Value::as_str) == Some("AWS::NoValue") {
                return None;
            }
            if let (1, Some(Value::Array(branches))) = (map.len(), map.get("Fn::If")) {
                let name = branches[0].as_str().expect("Fn::If names a condition");
                let taken = if conditions[name] {
                    &branches[1]
                } else {
                    &branches[2]
                };
                return choose(taken, conditions);
            }
            Some(Value::Object(
                map.iter()
                    .filter_map(|(k, v)| Some((k.clone(), choose(v, conditions)?)))
                    .collect(),
            ))
        }
        Value::Array(items) => Some(Value::Array(
            items.iter().filter_map(|v| choose(v, conditions)).collect(),
        )),
        other => Some(other.clone()),
    }
}

/// The stand-in a resource's `Ref` (and `!GetAtt <resource>.Arn`) evaluates to in [`text`]: an ARN whose
/// resource id, the seventh `:`-separated field as in a DMS task ARN, is the logical id.
pub fn stand_in_arn(logical_id: &str) -> String {
    format!("arn:aws:dms:us-east-1:123456789012:task:{logical_id}")
}

/// The string a deployed value evaluates to, for a stack named `stack` in us-east-1: `Fn::Sub` (with its
/// variable map), `Fn::Select`, `Fn::Split`, `Fn::Join`, `Ref` (a parameter's value as given to
/// [`deployed`] is not known here, so parameters and resources both become [`stand_in_arn`]-style names;
/// pseudo parameters `AWS::StackName` and `AWS::Region` their values) and `Fn::GetAtt` (`Arn` as
/// [`stand_in_arn`], any other attribute as `<resource>.<attribute>`).
pub fn text(value: &Value, stack: &str) -> String {
    match evaluate(value, stack) {
        Value::String(s) => s,
        other => panic!("{value} is not a string: {other}"),
    }
}

fn evaluate(value: &Value, stack: &str) -> Value {
    let reference = |name: &str| -> String {
        match name {
            "AWS::StackName" => stack.to_string(),
            "AWS::Region" => "us-east-1".to_string(),
            "AWS::AccountId" => "123456789012".to_string(),
            "AWS::Partition" => "aws".to_string(),
            other => match other.split_once('.') {
                Some((resource, "Arn")) => stand_in_arn(resource),
                Some((resource, attribute)) => format!("{resource}.{attribute}"),
                None => stand_in_arn(other),
            },
        }
    };
    let Value::Object(map) = value else {
        return value.clone();
    };
    if let Some(name) = map.get("Ref").and_then(Value::as_str) {
        return Value::String(reference(name));
    }
    if let Some(Value::Array(parts)) = map.get("Fn::GetAtt") {
        let resource = parts[0].as_str().unwrap_or_default();
        let attribute = parts[1].as_str().unwrap_or_default();
        return Value::String(reference(&format!("{resource}.{attribute}")));
    }
    if let Some(Value::Array(parts)) = map.get("Fn::Split") {
        let separator = parts[0].as_str().unwrap_or_default();
        let whole = text(&parts[1], stack);
        return Value::Array(
            whole
                .split(separator)
                .map(|p| Value::String(p.into()))
                .collect(),
        );
    }
    if let Some(Value::Array(parts)) = map.get("Fn::Select") {
        let index = parts[0]
            .as_u64()
            .or_else(|| parts[0].as_str().and_then(|s| s.parse().ok()))
            .expect("Fn::Select index") as usize;
        let list = evaluate(&parts[1], stack);
        return list[index].clone();
    }
    if let Some(Value::Array(parts)) = map.get("Fn::Join") {
        let separator = parts[0].as_str().unwrap_or_default();
        let items = evaluate(&parts[1], stack);
        let items: Vec<String> = items
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| text(v, stack))
            .collect();
        return Value::String(items.join(separator));
    }
    if let Some(sub) = map.get("Fn::Sub") {
        let (template, variables) = match sub {
            Value::String(s) => (s.clone(), Map::new()),
            Value::Array(parts) => (
                parts[0].as_str().expect("Fn::Sub text").to_string(),
                parts[1].as_object().cloned().unwrap_or_default(),
            ),
            other => panic!("Fn::Sub {other}"),
        };
        // One pass, as CloudFormation substitutes: a value put in is not read again; `${!x}` is `${x}`.
        let mut out = String::new();
        let mut rest = template.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').expect("unclosed ${ in Fn::Sub");
            let name = &after[..end];
            match name.strip_prefix('!') {
                Some(literal) => {
                    out.push_str("${");
                    out.push_str(literal);
                    out.push('}');
                }
                None => match variables.get(name) {
                    Some(v) => out.push_str(&text(v, stack)),
                    None => out.push_str(&reference(name)),
                },
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        return Value::String(out);
    }
    value.clone()
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

    /// Conditions decide which resources exist and which `Fn::If` branch is taken; `AWS::NoValue` removes
    /// the property or list element; `text` substitutes like CloudFormation, once.
    #[test]
    fn deployed_applies_conditions_like_cloudformation() {
        let template = parse(
            r#"
Parameters:
  A: {Type: String, Default: 'true'}
  B: {Type: String, Default: 'true'}
  Port: {Type: Number, Default: 5432}
Conditions:
  ACond: !Equals [!Ref A, 'true']
  Both: !And [!Condition ACond, !Equals [!Ref B, 'true']]
  NotA: !Not [!Condition ACond]
  Default: !Equals [!Ref Port, '5432']
Resources:
  Always:
    Type: T
    Properties:
      List: [one, !If [Both, two, !Ref AWS::NoValue]]
      Prop: !If [NotA, x, !Ref AWS::NoValue]
      Port: !If [Default, standard, other]
      Name: !Sub
        - '${AWS::StackName}-${Id}${Extra}'
        - Id: !Select [6, !Split [':', !Ref Task]]
          Extra: !If [Both, !Sub '-${!literal}', '']
  Task:
    Type: T
    Condition: Both
"#,
        )
        .unwrap();
        let both = deployed(&template, &[]);
        let only_a = deployed(&template, &[("B", "false")]);
        let neither = deployed(&template, &[("A", "false"), ("B", "false")]);
        assert!(both["Resources"].get("Task").is_some());
        assert!(only_a["Resources"].get("Task").is_none());
        let props = |t: &Value| t["Resources"]["Always"]["Properties"].clone();
        assert_eq!(props(&both)["List"], serde_json::json!(["one", "two"]));
        assert_eq!(props(&only_a)["List"], serde_json::json!(["one"]));
        assert!(props(&both).get("Prop").is_none());
        assert_eq!(props(&neither)["Prop"], "x");
        assert_eq!(props(&both)["Port"], "standard");
        assert_eq!(text(&props(&both)["Name"], "s"), "s-Task-${literal}");
        assert_eq!(text(&props(&only_a)["Name"], "s"), "s-Task");
    }
}
