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

/// poll-progress bounds its wait for DMS's own restart of a task with the recoverable-error settings it
/// believes the task has (`core_lib::recoverable_errors::STACK_SETTINGS`): they must be the template's.
#[test]
fn the_tasks_recoverable_error_settings_are_the_ones_core_bounds_its_wait_with() {
    let template = load(&template_path());
    let settings =
        &template["Resources"]["ReplicationTask"]["Properties"]["ReplicationTaskSettings"];
    let text = settings["Fn::Sub"]
        .as_str()
        .or_else(|| settings.as_str())
        .expect("ReplicationTaskSettings is a JSON text");
    // The only substitution is a number (LobMaxSizeKb); any number keeps the JSON valid.
    let mut json_text = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        json_text.push_str(&rest[..start]);
        json_text.push('0');
        let end = rest[start..].find('}').expect("a closed ${...}");
        rest = &rest[start + end + 1..];
    }
    json_text.push_str(rest);
    let parsed: serde_json::Value = serde_json::from_str(&json_text).expect("the settings parse");
    let behavior = &parsed["ErrorBehavior"];
    let core = core_lib::recoverable_errors::STACK_SETTINGS;
    assert_eq!(
        behavior["RecoverableErrorCount"],
        serde_json::json!(core.count)
    );
    assert_eq!(
        behavior["RecoverableErrorInterval"],
        serde_json::json!(core.interval_seconds)
    );
    assert_eq!(
        behavior["RecoverableErrorThrottling"],
        serde_json::json!(core.throttling)
    );
    assert_eq!(
        behavior["RecoverableErrorThrottlingMax"],
        serde_json::json!(core.throttling_max_seconds)
    );
    assert_eq!(
        behavior["RecoverableErrorStopRetryAfterThrottlingMax"],
        serde_json::json!(core.stop_retry_after_throttling_max),
        "set deliberately, not left to DMS's default"
    );
}
