//! Static agreements between the template, the state machine definition and the code, checked directly
//! (no deployment: moto has no AWS::DMS::*).

use std::collections::BTreeSet;

use core_lib::tags::SG_RULE_TAG_KEY;
use integration_tests::lab::workspace_root;
use integration_tests::template::{load, template_path, STATE_MACHINE};

/// The `${Name}` placeholders of a DefinitionSubstitutions-style text.
fn placeholders(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        names.insert(after[..end].to_string());
        rest = &after[end + 1..];
    }
    names
}

#[test]
fn every_asl_substitution_is_provided_by_the_template_and_vice_versa() {
    let asl = std::fs::read_to_string(workspace_root().join(STATE_MACHINE)).expect("the ASL");
    let used = placeholders(&asl);
    assert!(
        !used.is_empty(),
        "the ASL names its Lambdas through ${{...}}"
    );
    let template = load(&template_path());
    let provided: BTreeSet<String> = template["Resources"]["MigrationStateMachine"]["Properties"]
        ["DefinitionSubstitutions"]
        .as_object()
        .expect("MigrationStateMachine.DefinitionSubstitutions")
        .keys()
        .cloned()
        .collect();
    let unprovided: Vec<_> = used.difference(&provided).collect();
    let unused: Vec<_> = provided.difference(&used).collect();
    assert!(
        unprovided.is_empty() && unused.is_empty(),
        "the ASL uses {unprovided:?} that the template does not substitute; the template substitutes \
         {unused:?} that the ASL never uses"
    );
}

#[test]
fn placeholders_are_read_like_step_functions_reads_them() {
    assert_eq!(
        placeholders(r#"{"Resource": "${A}", "B": "x${B_2}y", "C": "$.c"}"#),
        ["A", "B_2"].map(String::from).into()
    );
}

#[test]
fn the_template_uses_cores_tag_key_where_the_code_relies_on_it() {
    let text = std::fs::read_to_string(template_path()).expect("template");
    // sg-autofix may only tag rules with this stack's name under core's key (tag-on-create condition)...
    assert!(
        text.contains(&format!(
            "aws:RequestTag/{SG_RULE_TAG_KEY}: !Ref AWS::StackName"
        )),
        "the sg-autofix CreateTags condition must name core's key {SG_RULE_TAG_KEY}"
    );
    // ...and stack-cleanup finds them with it: its custom resource passes the properties it reads.
    let template = load(&template_path());
    let cleanup = &template["Resources"]["StackCleanup"];
    assert_eq!(cleanup["Type"], "Custom::StackCleanup");
    let props = &cleanup["Properties"];
    assert_eq!(props["BucketName"]["Ref"], "PreMigrationAssessmentBucket");
    assert_eq!(props["StackName"]["Ref"], "AWS::StackName");
    assert_eq!(
        props["ServiceToken"]["Fn::GetAtt"][0], "StackCleanupFunction",
        "{props}"
    );
}

/// `DependsOn` as a list (CloudFormation accepts a string or a list).
fn depends_on(resource: &serde_json::Value) -> Vec<String> {
    match &resource["DependsOn"] {
        serde_json::Value::String(one) => vec![one.clone()],
        serde_json::Value::Array(many) => many
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

#[test]
fn the_dms_account_roles_are_not_stack_resources_and_dms_waits_for_them() {
    let template = load(&template_path());
    let resources = template["Resources"].as_object().expect("Resources");
    // An AWS::IAM::Role with a fixed account-wide name fails with EntityAlreadyExists wherever it exists.
    for (name, resource) in resources {
        if resource["Type"] == "AWS::IAM::Role" {
            let role_name = resource["Properties"]["RoleName"]
                .as_str()
                .unwrap_or_default();
            assert!(
                role_name != "dms-vpc-role" && role_name != "dms-cloudwatch-logs-role",
                "{name} creates the account role {role_name} as a stack resource"
            );
        }
    }
    assert!(
        template["Parameters"].get("CreateDMSRoles").is_none(),
        "no parameter decides whether the DMS roles exist"
    );
    let text = std::fs::read_to_string(template_path()).expect("template");
    assert!(
        !text.contains("CreateDMSRoles"),
        "CreateDMSRoles is gone everywhere"
    );

    let roles: Vec<&String> = resources
        .iter()
        .filter(|(_, r)| r["Type"] == "Custom::DmsServiceRoles")
        .map(|(name, _)| name)
        .collect();
    assert_eq!(roles.len(), 1, "one Custom::DmsServiceRoles: {roles:?}");
    let roles_resource = &resources[roles[0].as_str()];
    assert_eq!(
        roles_resource["Properties"]["ServiceToken"]["Fn::GetAtt"][0], "StackCleanupFunction",
        "served by the stack-cleanup function"
    );
    assert_eq!(
        roles_resource["Properties"]["SubnetIds"]["Ref"], "SubnetIds",
        "the probe uses the stack's subnets"
    );
    assert!(
        depends_on(&resources["DMSReplicationSubnetGroup"]).contains(roles[0]),
        "the replication subnet group (the first resource DMS checks dms-vpc-role for) waits for {}",
        roles[0]
    );
}

#[test]
fn the_task_and_the_bucket_wait_for_the_update_guard_which_names_them_by_value() {
    let template = load(&template_path());
    let resources = template["Resources"].as_object().expect("Resources");
    let guards: Vec<&String> = resources
        .iter()
        .filter(|(_, r)| r["Type"] == "Custom::UpdateGuard")
        .map(|(name, _)| name)
        .collect();
    assert_eq!(guards.len(), 1, "one Custom::UpdateGuard: {guards:?}");
    let guard = &resources[guards[0].as_str()]["Properties"];
    assert_eq!(
        guard["ServiceToken"]["Fn::GetAtt"][0],
        "StackCleanupFunction"
    );
    for dependent in ["ReplicationTask", "PreMigrationAssessmentBucket"] {
        assert!(
            depends_on(&resources[dependent]).contains(guards[0]),
            "{dependent} is updated only after the guard accepted the update"
        );
    }
    assert_eq!(guard["MigrationType"]["Ref"], "MigrationType");
    assert_eq!(guard["LobMaxSizeKb"]["Ref"], "LobMaxSizeKb");
    let task = &resources["ReplicationTask"]["Properties"];
    assert_eq!(task["MigrationType"]["Ref"], "MigrationType");
    assert!(
        task["ReplicationTaskSettings"]["Fn::Sub"]
            .as_str()
            .is_some_and(|s| s.contains("\"LobMaxSize\": ${LobMaxSizeKb}")),
        "the task's LobMaxSize is the parameter the guard carries"
    );
    assert_eq!(
        guard["TaskIdentifier"], task["ReplicationTaskIdentifier"],
        "the guard reads the task the template names"
    );
    assert_eq!(
        guard["BucketName"], resources["PreMigrationAssessmentBucket"]["Properties"]["BucketName"],
        "the guard checks the bucket the template names"
    );
}
