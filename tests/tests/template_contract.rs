//! Static agreements between the template, the state machine definition and the code, checked directly
//! (no deployment: moto has no AWS::DMS::*).

use std::collections::BTreeSet;

use dms_core::rules::tags::SG_RULE_TAG_KEY;
use integration_tests::lab::workspace_root;
use integration_tests::rig::FUNCTIONS;
use integration_tests::template::{
    deployed, lambda_functions, load, stand_in_arn, template_path, text, STATE_MACHINE,
};

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
    // sg-autofix may only tag rules with this stack's name under dms-core's key (tag-on-create condition)...
    assert!(
        text.contains(&format!(
            "aws:RequestTag/{SG_RULE_TAG_KEY}: !Ref AWS::StackName"
        )),
        "the sg-autofix CreateTags condition must name dms-core's key {SG_RULE_TAG_KEY}"
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
/// believes the task has (`dms_core::rules::recoverable_errors::STACK_SETTINGS`): they must be the template's.
#[test]
fn the_tasks_recoverable_error_settings_are_the_ones_core_bounds_its_wait_with() {
    let template = load(&template_path());
    // The way back's task is watched the same way once it runs.
    for task in ["ReplicationTask", "FallbackReplicationTask"] {
        let parsed = task_settings(&template, task);
        let behavior = &parsed["ErrorBehavior"];
        let core = dms_core::rules::recoverable_errors::STACK_SETTINGS;
        assert_eq!(
            behavior["RecoverableErrorCount"],
            serde_json::json!(core.count),
            "{task}"
        );
        assert_eq!(
            behavior["RecoverableErrorInterval"],
            serde_json::json!(core.interval_seconds),
            "{task}"
        );
        assert_eq!(
            behavior["RecoverableErrorThrottling"],
            serde_json::json!(core.throttling),
            "{task}"
        );
        assert_eq!(
            behavior["RecoverableErrorThrottlingMax"],
            serde_json::json!(core.throttling_max_seconds),
            "{task}"
        );
        assert_eq!(
            behavior["RecoverableErrorStopRetryAfterThrottlingMax"],
            serde_json::json!(core.stop_retry_after_throttling_max),
            "{task}: set deliberately, not left to DMS's default"
        );
    }
}

/// A task's `ReplicationTaskSettings`, parsed (its only substitution, a number, replaced by 0).
fn task_settings(template: &serde_json::Value, task: &str) -> serde_json::Value {
    let settings = &template["Resources"][task]["Properties"]["ReplicationTaskSettings"];
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
    serde_json::from_str(&json_text).unwrap_or_else(|e| panic!("{task}'s settings parse: {e}"))
}

/// The way back (docs/fallback.md): created ahead only with `EnableFallback` (default `true`), a CDC-only
/// task from PlanetScale to Aurora on the forward endpoints' secrets, reading through `test_decoding`
/// from the slot the cutover creates, applying transactionally to an Aurora whose triggers and foreign
/// keys stay quiet; nothing in the stack starts it.
#[test]
fn the_way_back_is_a_cdc_only_task_created_ahead_with_enable_fallback() {
    let template = load(&template_path());
    let parameter = &template["Parameters"]["EnableFallback"];
    assert_eq!(parameter["Default"], "true");
    assert_eq!(
        parameter["AllowedValues"],
        serde_json::json!(["true", "false"])
    );
    assert_eq!(
        template["Conditions"]["EnableFallbackCondition"]["Fn::Equals"],
        serde_json::json!([{"Ref": "EnableFallback"}, "true"])
    );
    let resources = template["Resources"].as_object().expect("Resources");
    let way_back: Vec<&String> = resources
        .iter()
        .filter(|(_, r)| r["Condition"] == "EnableFallbackCondition")
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        way_back,
        [
            "FallbackCdcLatencySourceAlarm",
            "FallbackCdcLatencyTargetAlarm",
            "FallbackReplicationTask",
            "FallbackSourceEndpoint",
            "FallbackTargetEndpoint"
        ],
        "the way back's resources and its alarms, and only they, hang on EnableFallback"
    );

    let source = &resources["FallbackSourceEndpoint"]["Properties"];
    assert_eq!(source["EndpointType"], "source");
    let settings = &source["PostgreSqlSettings"];
    assert_eq!(
        settings["SecretsManagerSecretId"]["Ref"],
        "TargetEndpointSecret"
    );
    assert_eq!(
        settings["PluginName"], "test-decoding",
        "DMS has no pgoutput"
    );
    assert_eq!(
        settings["CaptureDdls"], false,
        "no event trigger: no superuser"
    );
    assert_eq!(settings["SlotName"], dms_core::rules::way_back::SLOT);
    assert_eq!(source["DatabaseName"]["Ref"], "TargetDatabaseName");

    let target = &resources["FallbackTargetEndpoint"]["Properties"];
    assert_eq!(target["EndpointType"], "target");
    assert_eq!(target["DatabaseName"]["Ref"], "SourceDatabaseName");
    let settings = &target["PostgreSqlSettings"];
    assert_eq!(
        settings["SecretsManagerSecretId"]["Ref"],
        "SourceEndpointSecret"
    );
    assert_eq!(
        settings["AfterConnectScript"],
        "SET session_replication_role = replica"
    );

    let task = &resources["FallbackReplicationTask"]["Properties"];
    assert_eq!(task["MigrationType"], "cdc");
    assert_eq!(task["SourceEndpointArn"]["Ref"], "FallbackSourceEndpoint");
    assert_eq!(task["TargetEndpointArn"]["Ref"], "FallbackTargetEndpoint");
    assert_eq!(
        task["ReplicationInstanceArn"],
        resources["ReplicationTask"]["Properties"]["ReplicationInstanceArn"],
        "the forward task's replication instance: no new instance to pay for"
    );
    assert_eq!(
        task["TableMappings"], resources["ReplicationTask"]["Properties"]["TableMappings"],
        "the same tables flow back"
    );
    assert!(
        task.get("CdcStartPosition").is_none() && task.get("CdcStartTime").is_none(),
        "the start position is the slot's, known only at the cutover"
    );
    let parsed = task_settings(&template, "FallbackReplicationTask");
    assert_eq!(
        parsed["TargetMetadata"]["BatchApplyEnabled"], false,
        "Aurora keeps its unique constraints, which batch apply does not support"
    );
    // Only what watches the task or names it in an email refers to it: no custom resource starts it;
    // the output gives its ARN.
    let named_by: Vec<&String> = resources
        .iter()
        .filter(|(name, r)| {
            *name != "FallbackReplicationTask"
                && r.to_string().contains("\"FallbackReplicationTask\"")
        })
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        named_by,
        [
            "FallbackCdcLatencySourceAlarm",
            "FallbackCdcLatencyTargetAlarm",
            "FallbackTaskStateChangeRule",
            "MigrationDashboard",
            "NotifyFunction",
            "StartTaskFunction"
        ]
    );
    let output = &template["Outputs"]["FallbackReplicationTaskArn"];
    assert_eq!(output["Condition"], "EnableFallbackCondition");
    assert_eq!(output["Value"]["Ref"], "FallbackReplicationTask");
}

/// Every combination of the two switches the way back's monitoring depends on.
const AUTOMATION_AND_FALLBACK: [(&str, &str); 4] = [
    ("true", "true"),
    ("true", "false"),
    ("false", "true"),
    ("false", "false"),
];

fn deployed_with(
    template: &serde_json::Value,
    automation: &str,
    fallback: &str,
) -> serde_json::Value {
    deployed(
        template,
        &[
            ("EnableAutomation", automation),
            ("EnableFallback", fallback),
        ],
    )
}

/// The EventBridge rules of a deployed template that send the given task's state changes to the topic,
/// with the topic policy letting that rule publish.
fn rules_emailing_task_state_changes(deployed: &serde_json::Value, task: &str) -> Vec<String> {
    let resources = deployed["Resources"].as_object().expect("Resources");
    let policy_sources: Vec<serde_json::Value> = resources
        .get("MigrationNotificationsTopicPolicy")
        .map(|policy| {
            policy["Properties"]["PolicyDocument"]["Statement"]
                .as_array()
                .expect("Statement")
                .iter()
                .filter(|st| {
                    st["Effect"] == "Allow" && st["Principal"]["Service"] == "events.amazonaws.com"
                })
                .flat_map(|st| match &st["Condition"]["ArnEquals"]["aws:SourceArn"] {
                    serde_json::Value::Array(many) => many.clone(),
                    one => vec![one.clone()],
                })
                .collect()
        })
        .unwrap_or_default();
    resources
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Events::Rule")
        .filter(|(_, r)| {
            let pattern = &r["Properties"]["EventPattern"];
            pattern["source"] == serde_json::json!(["aws.dms"])
                && pattern["detail-type"]
                    == serde_json::json!(["DMS Replication Task State Change"])
                && pattern["resources"]
                    .as_array()
                    .is_some_and(|list| list.contains(&serde_json::json!({"Ref": task})))
        })
        .filter(|(_, r)| {
            r["Properties"]["Targets"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| t["Arn"] == serde_json::json!({"Ref": "MigrationNotificationsTopic"}))
        })
        .filter(|(name, _)| {
            policy_sources.contains(&serde_json::json!({"Fn::GetAtt": [name, "Arn"]}))
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// The way back's reverse task runs after the switch, when no workflow execution watches: its failures
/// and stops reach the email (a rule whose message says it is the WAY BACK's task, what its stop costs
/// and how to resume it) exactly when the stack has both the way back and the topic; the forward task's
/// rule never sends them as if they were the forward task's.
#[test]
fn the_way_backs_task_state_changes_reach_the_topic_only_with_automation_and_the_way_back() {
    let template = load(&template_path());
    for (automation, fallback) in AUTOMATION_AND_FALLBACK {
        let stack = deployed_with(&template, automation, fallback);
        let rules = rules_emailing_task_state_changes(&stack, "FallbackReplicationTask");
        let forward = rules_emailing_task_state_changes(&stack, "ReplicationTask");
        assert!(
            rules.iter().all(|r| !forward.contains(r)),
            "one rule for both tasks would call the way back's stop the forward task's: {rules:?}"
        );
        if automation == "true" && fallback == "true" {
            assert_eq!(rules, ["FallbackTaskStateChangeRule"]);
        } else {
            assert!(rules.is_empty(), "{automation}/{fallback}: {rules:?}");
            continue;
        }
        let rule = &stack["Resources"]["FallbackTaskStateChangeRule"]["Properties"];
        let ignored = &rule["EventPattern"]["detail"]["eventType"][0]["anything-but"];
        assert_eq!(
            ignored,
            &serde_json::json!([
                "REPLICATION_TASK_CREATED",
                "REPLICATION_TASK_STARTED",
                "REPLICATION_TASK_DELETED"
            ]),
            "failures and stops pass"
        );
        let message = text(
            &rule["Targets"][0]["InputTransformer"]["InputTemplate"],
            "shop",
        );
        for needed in [
            "WAY BACK",
            "PlanetScale to Aurora",
            "lose",
            "--start-replication-task-type resume-processing",
            "dms-migrate fallback end",
            "dms-migrate fallback status",
        ] {
            assert!(message.contains(needed), "{needed}: {message}");
        }
        // Rule names: at most 64 characters
        // (https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutRule.html).
        let name = text(&rule["Name"], &"a".repeat(LONGEST_STACK_NAME));
        assert!(name.len() <= 64, "{name}");
    }
}

/// Alarms on the reverse task's CDC latency exist with the way back, point at its task by the same
/// dimensions as the forward task's alarms, email when there is a topic, and the dashboard shows its
/// latency and alarms; without the way back none of it exists and the dashboard is still valid JSON.
#[test]
fn the_way_back_has_latency_alarms_and_dashboard_widgets_exactly_when_it_exists() {
    let template = load(&template_path());
    for (automation, fallback) in AUTOMATION_AND_FALLBACK {
        let stack = deployed_with(&template, automation, fallback);
        let resources = stack["Resources"].as_object().expect("Resources");
        let alarm_on = |task: &str, metric: &str| -> Vec<&serde_json::Value> {
            resources
                .values()
                .filter(|r| r["Type"] == "AWS::CloudWatch::Alarm")
                .map(|r| &r["Properties"])
                .filter(|p| p["Namespace"] == "AWS/DMS" && p["MetricName"] == metric)
                .filter(|p| {
                    p["Dimensions"].as_array().into_iter().flatten().any(|d| {
                        d["Name"] == "ReplicationTaskIdentifier"
                            && text(&d["Value"], "shop") == task
                    })
                })
                .collect()
        };
        for metric in ["CDCLatencySource", "CDCLatencyTarget"] {
            let way_back = alarm_on("FallbackReplicationTask", metric);
            if fallback == "false" {
                assert!(way_back.is_empty(), "{metric}: {way_back:?}");
                continue;
            }
            assert_eq!(way_back.len(), 1, "{automation}/{fallback} {metric}");
            let alarm = way_back[0];
            let forward = alarm_on("ReplicationTask", metric);
            let forward = forward.first().expect("the forward task's alarm");
            let instance = |p: &serde_json::Value| {
                p["Dimensions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|d| d["Name"] == "ReplicationInstanceIdentifier")
                    .map(|d| d["Value"].clone())
            };
            assert_eq!(instance(alarm), instance(forward), "{metric}");
            assert!(instance(alarm).is_some(), "{metric}");
            for same in [
                "Statistic",
                "Period",
                "EvaluationPeriods",
                "DatapointsToAlarm",
                "Threshold",
                "ComparisonOperator",
                "TreatMissingData",
            ] {
                assert_eq!(alarm[same], forward[same], "{metric}.{same}");
            }
            let description = alarm["AlarmDescription"].as_str().expect("description");
            assert!(
                description.starts_with("WAY BACK:") && description.contains("Check"),
                "{description}"
            );
            let topic = serde_json::json!([{"Ref": "MigrationNotificationsTopic"}]);
            if automation == "true" {
                assert_eq!(alarm["AlarmActions"], topic, "{metric}");
                assert_eq!(alarm["OKActions"], topic, "{metric}");
            } else {
                assert!(alarm.get("AlarmActions").is_none(), "no topic to send to");
            }
        }

        let body = text(
            &resources["MigrationDashboard"]["Properties"]["DashboardBody"],
            "shop",
        );
        let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| {
            panic!("EnableFallback {fallback}: dashboard is not JSON: {e}\n{body}")
        });
        let widgets = body["widgets"].as_array().expect("widgets");
        let metrics_of = |task: &str| -> BTreeSet<String> {
            widgets
                .iter()
                .flat_map(|w| {
                    w["properties"]["metrics"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                })
                .filter(|m| {
                    m.as_array()
                        .is_some_and(|m| m.contains(&serde_json::json!(task)))
                })
                .filter_map(|m| m[1].as_str().map(str::to_string))
                .collect()
        };
        let alarms: BTreeSet<String> = widgets
            .iter()
            .flat_map(|w| {
                w["properties"]["alarms"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        let way_back_alarms = BTreeSet::from([
            stand_in_arn("FallbackCdcLatencySourceAlarm"),
            stand_in_arn("FallbackCdcLatencyTargetAlarm"),
        ]);
        if fallback == "true" {
            assert_eq!(
                metrics_of("FallbackReplicationTask"),
                BTreeSet::from([
                    "CDCLatencySource".to_string(),
                    "CDCLatencyTarget".to_string()
                ])
            );
            assert!(alarms.is_superset(&way_back_alarms), "{alarms:?}");
        } else {
            assert!(metrics_of("FallbackReplicationTask").is_empty());
            assert!(alarms.is_disjoint(&way_back_alarms), "{alarms:?}");
        }
        assert!(
            metrics_of("ReplicationTask").contains("CDCLatencySource"),
            "the forward task's widgets stay"
        );
    }
}

/// notify names the way back in the ready-for-cutover email from `WAY_BACK_TASK_ARN`, read once at cold
/// start: the stack's reverse task with the way back, empty without it.
#[test]
fn notifys_way_back_variable_follows_enable_fallback() {
    let template = load(&template_path());
    // notify names the way back in its email; start-task holds the forward task while it runs or ran.
    for (crate_dir, function) in [
        ("notify", "NotifyFunction"),
        ("start-task", "StartTaskFunction"),
    ] {
        let main = std::fs::read_to_string(
            workspace_root().join(format!("crates/{crate_dir}/src/main.rs")),
        )
        .expect("main.rs");
        assert!(
            main.contains("\"WAY_BACK_TASK_ARN\""),
            "{crate_dir} reads the variable the template sets"
        );
        for (fallback, expected) in [
            (
                "true",
                serde_json::json!({"Ref": "FallbackReplicationTask"}),
            ),
            ("false", serde_json::json!("")),
        ] {
            let stack = deployed_with(&template, "true", fallback);
            assert_eq!(
                stack["Resources"][function]["Properties"]["Environment"]["Variables"]
                    ["WAY_BACK_TASK_ARN"],
                expected,
                "{function}, EnableFallback {fallback}"
            );
        }
    }
}

/// Whatever the switches, the deployed template refers only to resources it creates (a `Ref`, `!GetAtt`
/// or `${...}` naming a resource its condition left out fails the stack).
#[test]
fn no_combination_of_the_switches_refers_to_a_resource_it_leaves_out() {
    fn names(value: &serde_json::Value, out: &mut BTreeSet<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(name) = map.get("Ref").and_then(|v| v.as_str()) {
                    out.insert(name.to_string());
                }
                if let Some(resource) = map.get("Fn::GetAtt").and_then(|v| v[0].as_str()) {
                    out.insert(resource.to_string());
                }
                match map.get("Fn::Sub") {
                    Some(serde_json::Value::String(t)) => out.extend(
                        placeholders(t)
                            .into_iter()
                            .map(|p| p.split('.').next().unwrap_or_default().to_string()),
                    ),
                    Some(serde_json::Value::Array(parts)) => {
                        let local: BTreeSet<String> = parts[1]
                            .as_object()
                            .map(|m| m.keys().cloned().collect())
                            .unwrap_or_default();
                        out.extend(
                            placeholders(parts[0].as_str().unwrap_or_default())
                                .into_iter()
                                .filter(|p| !local.contains(p))
                                .map(|p| p.split('.').next().unwrap_or_default().to_string()),
                        );
                        names(&parts[1], out);
                    }
                    _ => {}
                }
                for (key, v) in map {
                    if key != "Fn::Sub" {
                        names(v, out);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| names(v, out)),
            _ => {}
        }
    }
    let template = load(&template_path());
    for (automation, fallback) in AUTOMATION_AND_FALLBACK {
        let stack = deployed_with(&template, automation, fallback);
        let mut known: BTreeSet<String> = stack["Resources"]
            .as_object()
            .into_iter()
            .chain(stack["Parameters"].as_object())
            .flat_map(|m| m.keys().cloned())
            .collect();
        known.extend(
            [
                "AWS::StackName",
                "AWS::Region",
                "AWS::AccountId",
                "AWS::Partition",
                "AWS::URLSuffix",
                "AWS::NoValue",
            ]
            .map(str::to_string),
        );
        let mut referred = BTreeSet::new();
        names(&stack["Resources"], &mut referred);
        names(&stack["Outputs"], &mut referred);
        for resource in stack["Resources"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
        {
            referred.extend(depends_on(resource));
        }
        let missing: Vec<&String> = referred.difference(&known).collect();
        assert!(missing.is_empty(), "{automation}/{fallback}: {missing:?}");
    }
}

/// The way back's checks run in the assessment exactly when the stack creates the way back: the
/// premigration-assessment function's `ENABLE_FALLBACK` is the `EnableFallback` parameter itself (the
/// function reads `true` or `false`, the parameter's only values), and no other function reads it (the
/// source-checks function is told per request).
#[test]
fn the_assessment_runs_the_way_backs_checks_when_enable_fallback_is_on() {
    let template = load(&template_path());
    let resources = template["Resources"].as_object().expect("Resources");
    let readers: Vec<&String> = resources
        .iter()
        .filter(|(_, r)| {
            r["Properties"]["Environment"]["Variables"]
                .get("ENABLE_FALLBACK")
                .is_some()
        })
        .map(|(name, _)| name)
        .collect();
    assert_eq!(readers, ["PremigrationAssessmentFunction"]);
    assert_eq!(
        resources["PremigrationAssessmentFunction"]["Properties"]["Environment"]["Variables"]
            ["ENABLE_FALLBACK"],
        serde_json::json!({"Ref": "EnableFallback"})
    );
    assert_eq!(
        template["Parameters"]["EnableFallback"]["AllowedValues"],
        serde_json::json!(["true", "false"])
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
    for dependent in [
        "ReplicationTask",
        "FallbackReplicationTask",
        "PreMigrationAssessmentBucket",
    ] {
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
        guard["FallbackTaskIdentifier"],
        resources["FallbackReplicationTask"]["Properties"]["ReplicationTaskIdentifier"],
        "the guard reads the way back's task the template names"
    );
    assert_eq!(guard["EnableFallback"]["Ref"], "EnableFallback");
    assert!(
        resources["FallbackReplicationTask"]["Properties"]["ReplicationTaskSettings"]["Fn::Sub"]
            .as_str()
            .is_some_and(|s| s.contains("\"LobMaxSize\": ${LobMaxSizeKb}")),
        "the way back's LobMaxSize is the parameter the guard carries"
    );
    assert_eq!(
        guard["BucketName"], resources["PreMigrationAssessmentBucket"]["Properties"]["BucketName"],
        "the guard checks the bucket the template names"
    );
}

// ------------------------------------------------------------------------------------------------------
// DMS engine versions: the parameter offers exactly the versions of cloudformation/dms-engine-versions.json,
// and none of them is past the date after which DMS refuses new replication instances of it.
// ------------------------------------------------------------------------------------------------------

const ENGINE_VERSIONS: &str = "cloudformation/dms-engine-versions.json";

fn engine_versions_file() -> serde_json::Value {
    let path = workspace_root().join(ENGINE_VERSIONS);
    let text = std::fs::read_to_string(&path).expect("the engine versions file");
    serde_json::from_str(&text).expect("the engine versions file is JSON")
}

/// "3.6.1" → [3, 6, 1], so versions compare numerically (3.10 after 3.9).
fn version_key(version: &str) -> Vec<u32> {
    version
        .split('.')
        .map(|part| {
            part.parse()
                .unwrap_or_else(|_| panic!("{version}: not a dotted number"))
        })
        .collect()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the civil-from-days inverse of H. Hinnant).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// "2027-01-31" → days since the epoch.
fn parse_day(date: &str) -> i64 {
    let parts: Vec<i64> = date
        .split('-')
        .map(|p| {
            p.parse()
                .unwrap_or_else(|_| panic!("{date}: not YYYY-MM-DD"))
        })
        .collect();
    let [year, month, day] = parts[..] else {
        panic!("{date}: not YYYY-MM-DD")
    };
    assert!(
        (1..=12).contains(&month) && (1..=31).contains(&day),
        "{date}: not a date"
    );
    days_from_civil(year, month, day)
}

fn today() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    (secs / 86_400) as i64
}

/// The listed versions whose "no new instance" date is before `today` (on the date itself DMS still
/// creates them: it is "the date after which you can't create new instances with the version").
fn versions_past_cutoff(file: &serde_json::Value, today: i64) -> Vec<String> {
    file["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter_map(|v| {
            let cutoff = v["noNewInstancesAfter"].as_str()?;
            let version = v["version"].as_str().unwrap_or("?");
            (today > parse_day(cutoff)).then(|| format!("{version} (after {cutoff})"))
        })
        .collect()
}

#[test]
fn the_engine_version_parameter_offers_exactly_the_listed_versions_and_defaults_to_the_newest() {
    let file = engine_versions_file();
    let listed: BTreeSet<String> = file["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| v["version"].as_str().expect("version").to_string())
        .collect();
    assert!(!listed.is_empty(), "{ENGINE_VERSIONS} lists no version");
    let template = load(&template_path());
    let parameter = &template["Parameters"]["DMSEngineVersion"];
    let allowed: BTreeSet<String> = parameter["AllowedValues"]
        .as_array()
        .expect("DMSEngineVersion.AllowedValues")
        .iter()
        .map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => panic!("AllowedValues entry {other} is not a string"),
        })
        .collect();
    assert_eq!(
        allowed, listed,
        "DMSEngineVersion's AllowedValues must be exactly the versions of {ENGINE_VERSIONS}"
    );
    let newest = listed
        .iter()
        .max_by_key(|v| version_key(v))
        .expect("a version");
    assert_eq!(
        parameter["Default"].as_str(),
        Some(newest.as_str()),
        "DMSEngineVersion must default to the newest listed version"
    );
}

#[test]
fn no_listed_engine_version_is_past_its_last_date_for_new_instances() {
    let file = engine_versions_file();
    let read = file["source"]["read"].as_str().expect("source.read");
    assert!(
        parse_day(read) <= today(),
        "source.read {read} is in the future"
    );
    assert!(
        file["source"]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://docs.aws.amazon.com/")),
        "source.url must be the AWS page the dates were read from"
    );
    let expired = versions_past_cutoff(&file, today());
    assert!(
        expired.is_empty(),
        "DMS no longer creates replication instances of {expired:?}: choosing one rolls the stack back. \
         Refresh {ENGINE_VERSIONS} from the release notes ({}) or from \
         `aws dms describe-engine-versions --query 'EngineVersions[].[Version,Lifecycle,DeprecationDate]'`: \
         drop the expired versions, add newer ones with their dates, set source.read, and make the template's \
         DMSEngineVersion AllowedValues and Default (the newest) match.",
        file["source"]["url"]
    );
}

#[test]
fn a_version_counts_as_expired_from_the_day_after_its_cutoff() {
    let file = serde_json::json!({"versions": [
        {"version": "3.5.4", "noNewInstancesAfter": "2027-01-31"},
        {"version": "3.6.1", "noNewInstancesAfter": null}
    ]});
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(
        parse_day("2000-03-01") - parse_day("2000-02-28"),
        2,
        "leap year"
    );
    assert!(versions_past_cutoff(&file, parse_day("2027-01-31")).is_empty());
    assert_eq!(
        versions_past_cutoff(&file, parse_day("2027-02-01")),
        vec!["3.5.4 (after 2027-01-31)".to_string()]
    );
}

// ------------------------------------------------------------------------------------------------------
// IAM names are account-wide ("Names of users, groups, roles, and instance profiles must be unique within
// the account", https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html; RoleName is "up
// to 64 characters in length",
// https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-iam-role.html): the same
// stack name deployed in two regions of one account must not collide, and the longest stack name the
// template's Description allows must fit in the longest region code.
// ------------------------------------------------------------------------------------------------------

/// The template's Description: "Use a stack name of at most 40 characters".
const LONGEST_STACK_NAME: usize = 40;
const IAM_NAME_LIMIT: usize = 64;
/// The longest region codes of each partition (aws, aws-cn, aws-us-gov), from
/// https://docs.aws.amazon.com/global-infrastructure/latest/regions/aws-region-billing-codes.html, and a
/// short one: 14 characters is the longest code of these partitions.
const REGIONS: [&str; 5] = [
    "us-east-1",
    "ap-southeast-7",
    "ap-northeast-3",
    "cn-northwest-1",
    "us-gov-west-1",
];
/// Names DMS itself requires, account-wide by design (kept on stack delete; never derived from the stack).
const DMS_FIXED_ROLE_NAMES: [&str; 2] = ["dms-vpc-role", "dms-cloudwatch-logs-role"];

/// IAM resource types whose name is account-wide, and the property that names them.
const IAM_NAMED_TYPES: [(&str, &str); 5] = [
    ("AWS::IAM::Role", "RoleName"),
    ("AWS::IAM::ManagedPolicy", "ManagedPolicyName"),
    ("AWS::IAM::InstanceProfile", "InstanceProfileName"),
    ("AWS::IAM::User", "UserName"),
    ("AWS::IAM::Group", "GroupName"),
];

/// A `!Sub` text with the pseudo parameters a name may use replaced; any other `${...}` is refused (a name
/// must be computable from the stack name and region alone).
fn substitute_name(text: &str, stack: &str, region: &str) -> String {
    let name = text
        .replace("${AWS::StackName}", stack)
        .replace("${AWS::Region}", region);
    assert!(
        !name.contains("${"),
        "{text}: an IAM name may use only ${{AWS::StackName}} and ${{AWS::Region}}"
    );
    name
}

/// Every account-wide IAM name the template sets: (logical id, the name's `!Sub` text or literal, is_sub).
fn iam_names(template: &serde_json::Value) -> Vec<(String, String, bool)> {
    let mut names = Vec::new();
    for (logical_id, resource) in template["Resources"].as_object().expect("Resources") {
        let Some((_, property)) = IAM_NAMED_TYPES
            .iter()
            .find(|(kind, _)| resource["Type"] == *kind)
        else {
            continue;
        };
        match &resource["Properties"][*property] {
            // No name: CloudFormation generates a unique one.
            serde_json::Value::Null => {}
            serde_json::Value::String(literal) => {
                names.push((logical_id.clone(), literal.clone(), false))
            }
            other => {
                let text = other["Fn::Sub"].as_str().unwrap_or_else(|| {
                    panic!("{logical_id}.{property} is neither a literal nor a !Sub text: {other}")
                });
                names.push((logical_id.clone(), text.to_string(), true));
            }
        }
    }
    names
}

#[test]
fn every_iam_name_is_unique_per_region_and_fits_for_the_longest_stack_and_region() {
    let template = load(&template_path());
    let names = iam_names(&template);
    assert!(
        names.iter().filter(|(_, _, is_sub)| *is_sub).count() >= 10,
        "the template names its ten stack roles: {names:?}"
    );
    let stack = "a".repeat(LONGEST_STACK_NAME);
    let mut seen: std::collections::BTreeMap<String, (String, &str)> = Default::default();
    let mut problems = Vec::new();
    for region in REGIONS {
        for (logical_id, text, is_sub) in &names {
            if !is_sub {
                if !DMS_FIXED_ROLE_NAMES.contains(&text.as_str()) {
                    problems.push(format!(
                        "{logical_id}: the fixed name {text} collides with any other stack in the account"
                    ));
                }
                continue;
            }
            let name = substitute_name(text, &stack, region);
            if name.len() > IAM_NAME_LIMIT {
                problems.push(format!(
                    "{logical_id}: {name} is {} characters (limit {IAM_NAME_LIMIT})",
                    name.len()
                ));
            }
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
            {
                problems.push(format!("{logical_id}: {name} has a character IAM refuses"));
            }
            // IAM names are case-insensitive.
            if let Some((other, other_region)) =
                seen.insert(name.to_lowercase(), (logical_id.clone(), region))
            {
                problems.push(format!(
                    "{logical_id} in {region} and {other} in {other_region} are both named {name}"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn every_role_arn_the_template_spells_out_names_one_of_its_roles() {
    // A policy may name a role by ARN (the KMS key policy names the notify role that way, since a
    // !GetAtt would make the key and the role depend on each other): it must follow the role's name.
    let template = load(&template_path());
    // DMS's two account roles have the fixed names DMS requires; the DMSServiceRoles custom resource
    // makes sure they exist, and the stack-cleanup role names them by ARN to do so.
    let role_names: BTreeSet<String> = iam_names(&template)
        .into_iter()
        .filter(|(_, _, is_sub)| *is_sub)
        .map(|(_, text, _)| text)
        .chain(["dms-vpc-role", "dms-cloudwatch-logs-role"].map(String::from))
        .collect();
    let mut spelled = Vec::new();
    collect_subs(&template["Resources"], &mut spelled);
    let role_arns: Vec<&String> = spelled.iter().filter(|t| t.contains(":role/")).collect();
    assert!(
        !role_arns.is_empty(),
        "the key policy names the notify role"
    );
    for text in role_arns {
        let (_, role) = text.split_once(":role/").expect(":role/");
        assert!(
            role_names.contains(role),
            "{text} names a role the template does not create under that name ({role_names:?})"
        );
    }
}

fn collect_subs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(text)) = map.get("Fn::Sub") {
                out.push(text.clone());
            }
            map.values().for_each(|v| collect_subs(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_subs(v, out)),
        _ => {}
    }
}

// ------------------------------------------------------------------------------------------------------
// Timeouts line up: SDK operation timeout + margin <= Lambda Timeout, and Lambda Timeout + margin <= the
// timeout of whatever waits for it (the Task's TimeoutSeconds, the custom resource's ServiceTimeout).
// ------------------------------------------------------------------------------------------------------

/// Over one SDK call's operation timeout (retried attempts included), a Lambda needs time for the rest of
/// its work and its answer. Less, and a slow call ends as `Sandbox.Timedout` (Lambda's timeout error,
/// https://docs.aws.amazon.com/lambda/latest/dg/troubleshooting-invocation.html#troubleshooting-timeouts),
/// which the state machine does not retry, instead of the `Aws.Transient` it does.
const LAMBDA_OVER_SDK: u64 = 30;
/// Over the Lambda's own timeout, its caller also waits for the Init phase, which is not counted in the
/// function timeout and may take up to 10 s
/// (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html), and for the Invoke
/// request and its answer. Less, and the state ends as `States.Timeout`
/// (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html) while the
/// function may still be running and about to answer.
const CALLER_OVER_LAMBDA: u64 = 30;

fn lambda_timeouts(template: &serde_json::Value) -> std::collections::BTreeMap<String, u64> {
    template["Resources"]
        .as_object()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Lambda::Function")
        .map(|(id, r)| {
            let timeout = r["Properties"]["Timeout"].as_u64().unwrap_or_else(|| {
                panic!("{id}: no numeric Timeout (the default 3 s is too short)")
            });
            (id.clone(), timeout)
        })
        .collect()
}

/// Every Task state, nested ones included: (state name, the `${Substitution}` it invokes, TimeoutSeconds).
fn task_states(states: &serde_json::Value, out: &mut Vec<(String, String, Option<u64>)>) {
    for (name, state) in states.as_object().expect("States") {
        if state["Type"] == "Task" {
            let target = state["Resource"]
                .as_str()
                .filter(|r| r.starts_with("${"))
                .or_else(|| state["Parameters"]["FunctionName"].as_str())
                .unwrap_or_else(|| panic!("{name}: invokes no ${{...FunctionArn}}"));
            let substitution = target
                .trim_start_matches("${")
                .trim_end_matches('}')
                .to_string();
            out.push((name.clone(), substitution, state["TimeoutSeconds"].as_u64()));
        }
        for branch in state["Branches"].as_array().into_iter().flatten() {
            task_states(&branch["States"], out);
        }
        for key in ["ItemProcessor", "Iterator"] {
            if state[key].is_object() {
                task_states(&state[key]["States"], out);
            }
        }
    }
}

/// The timeouts that must line up, as violations (empty when they do).
fn timeout_violations(
    template: &serde_json::Value,
    asl: &serde_json::Value,
    sdk_operation_timeout: u64,
) -> Vec<String> {
    let lambdas = lambda_timeouts(template);
    let substitutions =
        &template["Resources"]["MigrationStateMachine"]["Properties"]["DefinitionSubstitutions"];
    let mut problems = Vec::new();
    let mut waited_on = BTreeSet::new();
    for (id, timeout) in &lambdas {
        if sdk_operation_timeout + LAMBDA_OVER_SDK > *timeout {
            problems.push(format!(
                "{id}: Timeout {timeout} s leaves less than {LAMBDA_OVER_SDK} s over the SDK's \
                 {sdk_operation_timeout} s operation timeout"
            ));
        }
    }
    let mut tasks = Vec::new();
    task_states(&asl["States"], &mut tasks);
    for (state, substitution, timeout_seconds) in tasks {
        let function = substitutions[&substitution]["Fn::GetAtt"][0]
            .as_str()
            .unwrap_or_else(|| {
                panic!("{state}: ${{{substitution}}} is not !GetAtt <Function>.Arn")
            });
        let lambda = lambdas[function];
        waited_on.insert(function.to_string());
        match timeout_seconds {
            None => problems.push(format!(
                "{state}: no TimeoutSeconds (the default is 99999999 s)"
            )),
            Some(t) if lambda + CALLER_OVER_LAMBDA > t => problems.push(format!(
                "{state}: TimeoutSeconds {t} leaves less than {CALLER_OVER_LAMBDA} s over {function}'s \
                 Timeout {lambda} s"
            )),
            Some(_) => {}
        }
    }
    for (id, resource) in template["Resources"].as_object().expect("Resources") {
        let Some(function) = resource["Properties"]["ServiceToken"]["Fn::GetAtt"][0].as_str()
        else {
            continue;
        };
        let Some(lambda) = lambdas.get(function) else {
            continue;
        };
        waited_on.insert(function.to_string());
        // Without ServiceTimeout CloudFormation waits an hour; with it, that many seconds.
        if let Some(service_timeout) = resource["Properties"]["ServiceTimeout"].as_u64() {
            if lambda + CALLER_OVER_LAMBDA > service_timeout {
                problems.push(format!(
                    "{id}: ServiceTimeout {service_timeout} leaves less than {CALLER_OVER_LAMBDA} s over \
                     {function}'s Timeout {lambda} s"
                ));
            }
        }
    }
    // A function another one invokes synchronously (its role may `lambda:InvokeFunction` on it): the
    // invoker's Timeout must cover the invoked one's, with the same margin as a state's.
    for invoker in lambda_functions(template) {
        for statement in
            integration_tests::template::role_statements(template, &invoker.role_logical_id)
        {
            if statement["Action"] != "lambda:InvokeFunction" {
                continue;
            }
            let Some(function) = statement["Resource"]["Fn::GetAtt"][0].as_str() else {
                continue;
            };
            let (Some(invoked), Some(caller)) =
                (lambdas.get(function), lambdas.get(&invoker.logical_id))
            else {
                continue;
            };
            waited_on.insert(function.to_string());
            if invoked + CALLER_OVER_LAMBDA > *caller {
                problems.push(format!(
                    "{}: Timeout {caller} s leaves less than {CALLER_OVER_LAMBDA} s over {function}'s \
                     Timeout {invoked} s, which it invokes synchronously",
                    invoker.logical_id
                ));
            }
        }
    }
    for id in lambdas.keys().filter(|id| !waited_on.contains(*id)) {
        problems.push(format!(
            "{id}: no Task, custom resource or invoking function waits for it, so nothing is checked"
        ));
    }
    problems
}

fn asl() -> serde_json::Value {
    let text = std::fs::read_to_string(workspace_root().join(STATE_MACHINE)).expect("the ASL");
    serde_json::from_str(&text).expect("the ASL is JSON")
}

#[test]
fn sdk_lambda_and_state_timeouts_line_up_for_every_function() {
    let problems = timeout_violations(
        &load(&template_path()),
        &asl(),
        dms_core::aws::OPERATION_TIMEOUT.as_secs(),
    );
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_timeout_check_sees_a_state_shorter_than_its_lambda_and_a_lambda_shorter_than_the_sdk() {
    let mut template = load(&template_path());
    let mut asl = asl();
    template["Resources"]["NotifyFunction"]["Properties"]["Timeout"] = 30.into();
    asl["States"]["SgAutofix"]["TimeoutSeconds"] = 120.into();
    template["Resources"]["PremigrationAssessmentFunction"]["Properties"]["Timeout"] = 200.into();
    let problems = timeout_violations(&template, &asl, 60);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("NotifyFunction: Timeout 30 s")),
        "{problems:#?}"
    );
    assert!(
        problems.iter().any(|p| p.starts_with(
            "PremigrationAssessmentFunction: Timeout 200 s leaves less than 30 s over SourceChecksFunction's"
        )),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("SgAutofix: TimeoutSeconds 120")),
        "{problems:#?}"
    );
    assert!(
        !problems
            .iter()
            .any(|p| p.starts_with("NotifyStarted: TimeoutSeconds")),
        "a notify Task still waits long enough for a 30 s function: {problems:#?}"
    );
}

/// The crates under `crates/` that are Lambdas: a binary (`src/main.rs`) depending on `lambda_runtime`
/// (core depends on it too, for the error type, but has no binary).
fn lambda_crates() -> BTreeSet<String> {
    let crates_dir = workspace_root().join("crates");
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(&crates_dir).expect("crates/") {
        let dir = entry.expect("crates/ entry").path();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
        let is_lambda = dir.join("src/main.rs").is_file()
            && manifest
                .lines()
                .any(|l| l.trim_start().starts_with("lambda_runtime"));
        if is_lambda {
            let name = dir.file_name().expect("a name").to_string_lossy();
            names.insert(name.into_owned());
        }
    }
    names
}

/// docs/architecture.md, "Adding a Lambda": every place a Lambda crate must appear, checked for each crate
/// under `crates/` that is a Lambda, and the template naming no Lambda without a crate.
#[test]
fn every_lambda_crate_is_wired_everywhere() {
    let root = workspace_root();
    let read = |path: &str| {
        std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let crates = lambda_crates();
    assert!(
        crates.contains("notify") && crates.contains("stack-cleanup"),
        "the Lambda crates are found: {crates:?}"
    );
    let template = load(&template_path());
    let resources = &template["Resources"];
    let functions = lambda_functions(&template);
    let in_template: BTreeSet<String> = functions.iter().map(|f| f.crate_name.clone()).collect();

    let workspace = read("Cargo.toml");
    let members = workspace
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("the workspace members line");
    let makefile = read("Makefile");
    let lambdas = makefile
        .lines()
        .find(|l| l.starts_with("LAMBDAS :="))
        .expect("the Makefile's LAMBDAS line");
    let lint = read("scripts/lint-cfn.sh");
    let readme = read("README.md");
    let contract = read("docs/state-machine-contract.md");
    let names_section = contract
        .split("## Lambda function names")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("docs/state-machine-contract.md has a `Lambda function names` section");
    let architecture = read("docs/architecture.md");

    let mut missing = Vec::new();
    for name in &crates {
        let mut check = |ok: bool, place: &str| {
            if !ok {
                missing.push(format!("{name}: {place}"));
            }
        };
        check(
            members.contains(&format!("\"crates/{name}\"")),
            "root Cargo.toml members",
        );
        check(
            lambdas
                .split(|c: char| c.is_whitespace() || c == ',')
                .any(|w| w.trim_end_matches(')') == name.as_str()),
            "Makefile LAMBDAS",
        );
        check(
            in_template.contains(name),
            "a template AWS::Lambda::Function with Code ../target/lambda/<name>/bootstrap.zip",
        );
        check(
            lint.contains(&format!("\"{name}\"")),
            "the Code-path list of scripts/lint-cfn.sh",
        );
        check(
            readme
                .lines()
                .any(|l| l.starts_with(&format!("| `{name}` |"))),
            "a row of the README's Lambda table",
        );
        check(
            names_section.contains(&format!("`{name}`")),
            "docs/state-machine-contract.md, Lambda function names",
        );
        check(
            architecture.contains(&format!("`crates/{name}`")),
            "the crate table of docs/architecture.md",
        );
    }
    for function in &functions {
        if !crates.contains(&function.crate_name) {
            missing.push(format!(
                "{}: the template's {} has no Lambda crate crates/{}",
                function.crate_name, function.logical_id, function.crate_name
            ));
        }
        let props = &resources[&function.logical_id]["Properties"];
        let log_group = props["LoggingConfig"]["LogGroup"]["Ref"].as_str();
        if log_group.map(|id| &resources[id]["Type"]) != Some(&"AWS::Logs::LogGroup".into()) {
            missing.push(format!(
                "{}: {} logs to no log group of the template's own (LoggingConfig.LogGroup: !Ref ...)",
                function.crate_name, function.logical_id
            ));
        }
        if resources[&function.role_logical_id]["Type"] != "AWS::IAM::Role" {
            missing.push(format!(
                "{}: {} has no role of its own in the template",
                function.crate_name, function.logical_id
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "a Lambda is missing from places docs/architecture.md lists:\n  {}",
        missing.join("\n  ")
    );
}

/// The state machine's Lambdas, as the template substitutes them into the ASL, are the ones the state
/// machine tests run (tests/src/rig.rs), under the same placeholders.
#[test]
fn the_state_machine_rig_runs_the_functions_the_template_substitutes() {
    let template = load(&template_path());
    let by_logical_id: std::collections::BTreeMap<String, String> = lambda_functions(&template)
        .into_iter()
        .map(|f| (f.logical_id, f.crate_name))
        .collect();
    let substituted: BTreeSet<(String, String)> = template["Resources"]["MigrationStateMachine"]
        ["Properties"]["DefinitionSubstitutions"]
        .as_object()
        .expect("DefinitionSubstitutions")
        .iter()
        .map(|(placeholder, value)| {
            let logical_id = value["Fn::GetAtt"][0]
                .as_str()
                .unwrap_or_else(|| panic!("{placeholder} is not !GetAtt <Function>.Arn"));
            let name = by_logical_id.get(logical_id).unwrap_or_else(|| {
                panic!("{placeholder} names {logical_id}, not a Lambda function")
            });
            (name.clone(), placeholder.clone())
        })
        .collect();
    let rig: BTreeSet<(String, String)> = FUNCTIONS
        .iter()
        .map(|(name, placeholder)| (name.to_string(), placeholder.to_string()))
        .collect();
    assert_eq!(
        substituted, rig,
        "template substitutions (left) versus tests/src/rig.rs FUNCTIONS (right)"
    );
}

/// The source checks run inside the VPC (docs/template.md, "Networking"): the function sits in the stack's
/// subnets with its own group, which allows only the source port out and nothing in; premigration-assessment
/// may invoke it and knows its name and group, sg-autofix admits that group, and StackCleanup runs before
/// the group is deleted so the rules naming it are revoked first.
#[test]
fn the_source_checks_run_in_the_stacks_subnets_with_a_group_of_their_own() {
    let template = load(&template_path());
    let resources = &template["Resources"];
    let function = &resources["SourceChecksFunction"]["Properties"];
    assert_eq!(
        function["VpcConfig"]["SubnetIds"],
        serde_json::json!({"Ref": "SubnetIds"}),
        "the replication instance's subnets"
    );
    assert_eq!(
        function["VpcConfig"]["SecurityGroupIds"],
        serde_json::json!([{"Ref": "SourceChecksSecurityGroup"}])
    );
    assert_eq!(
        resources["DMSReplicationSubnetGroup"]["Properties"]["SubnetIds"],
        function["VpcConfig"]["SubnetIds"],
        "the same subnets as the replication instance"
    );
    // Its own group: no inbound rule, egress only TCP on the source port.
    let group = &resources["SourceChecksSecurityGroup"];
    assert_eq!(group["Type"], "AWS::EC2::SecurityGroup");
    assert_eq!(
        group["Properties"]["VpcId"],
        serde_json::json!({"Ref": "VpcId"})
    );
    assert!(group["Properties"].get("SecurityGroupIngress").is_none());
    let egress = group["Properties"]["SecurityGroupEgress"]
        .as_array()
        .expect("explicit egress (the default allows everything)");
    assert_eq!(egress.len(), 1, "{egress:?}");
    assert_eq!(egress[0]["IpProtocol"], "tcp");
    for port in ["FromPort", "ToPort"] {
        assert_eq!(
            egress[0][port],
            serde_json::json!({"Ref": "SourceEndpointPort"})
        );
    }
    let group_id = serde_json::json!({"Fn::GetAtt": ["SourceChecksSecurityGroup", "GroupId"]});
    for (function, variable) in [
        ("SgAutofixFunction", "SOURCE_CHECKS_SECURITY_GROUP"),
        (
            "PremigrationAssessmentFunction",
            "SOURCE_CHECKS_SECURITY_GROUP",
        ),
    ] {
        assert_eq!(
            resources[function]["Properties"]["Environment"]["Variables"][variable], group_id,
            "{function}.{variable}"
        );
    }
    assert_eq!(
        resources["PremigrationAssessmentFunction"]["Properties"]["Environment"]["Variables"]
            ["SOURCE_CHECKS_FUNCTION"],
        serde_json::json!({"Ref": "SourceChecksFunction"})
    );
    let invoke =
        integration_tests::template::role_statements(&template, "PremigrationAssessmentRole")
            .into_iter()
            .filter(|s| s["Action"] == "lambda:InvokeFunction")
            .map(|s| s["Resource"].clone())
            .collect::<Vec<_>>();
    assert_eq!(
        invoke,
        [serde_json::json!({"Fn::GetAtt": ["SourceChecksFunction", "Arn"]})],
        "premigration-assessment invokes exactly the source-checks function"
    );
    assert!(
        depends_on(&resources["StackCleanup"]).contains(&"SourceChecksSecurityGroup".to_string()),
        "StackCleanup revokes the rules naming the group before the group is deleted"
    );
    // No secret in the in-VPC function's environment, and no AWS permission but its ENIs and logs.
    let variables = function["Environment"]["Variables"]
        .as_object()
        .expect("variables");
    assert!(
        variables
            .keys()
            .all(|k| k == "RUST_LOG" || k == "AWS_LAMBDA_LOG_FORMAT"),
        "{variables:?}"
    );
    // The function's timeout is the one the assessment's invoke budget is built on.
    assert_eq!(
        function["Timeout"].as_u64(),
        Some(dms_core::pg::source_checks::FUNCTION_TIMEOUT_SECONDS)
    );
    let assessment_timeout = resources["PremigrationAssessmentFunction"]["Properties"]["Timeout"]
        .as_u64()
        .expect("a timeout");
    let waiting = dms_core::pg::source_checks::NOT_READY_RETRY_SECONDS
        * u64::from(dms_core::pg::source_checks::NOT_READY_ATTEMPTS - 1);
    let needed = dms_core::pg::source_checks::INVOKE_TIMEOUT_SECONDS
        + waiting
        + dms_core::aws::OPERATION_TIMEOUT.as_secs()
        + 30;
    assert!(
        assessment_timeout >= needed,
        "premigration-assessment's Timeout {assessment_timeout} s < invoke + not-ready wait + one SDK call + 30 s = {needed} s"
    );
}

/// Lambda manages a VPC function's network interfaces with the function's own role, and CloudFormation can
/// only wait for their removal on stack delete while that role allows ec2:DescribeNetworkInterfaces: the
/// actions are inline in the role the function references (so they outlive the function), and only a
/// function with VpcConfig has them.
#[test]
fn only_the_vpc_function_may_manage_network_interfaces_and_the_permission_outlives_it() {
    let template = load(&template_path());
    let resources = &template["Resources"];
    let eni: BTreeSet<String> = integration_tests::template::VPC_ENI_ACTIONS
        .iter()
        .map(|a| a.to_string())
        .collect();
    for function in lambda_functions(&template) {
        let in_vpc = resources[&function.logical_id]["Properties"]
            .get("VpcConfig")
            .is_some();
        let allowed =
            integration_tests::template::role_allowed_actions(&template, &function.role_logical_id);
        let managed: BTreeSet<String> = allowed.into_iter().filter(|a| eni.contains(a)).collect();
        if in_vpc {
            assert_eq!(managed, eni, "{}: the ENI actions", function.logical_id);
        } else if function.crate_name != "sg-autofix" {
            // sg-autofix describes interfaces to find the source's groups, nothing else.
            assert!(managed.is_empty(), "{}: {managed:?}", function.logical_id);
        }
    }
    for (id, resource) in resources.as_object().expect("resources") {
        assert_ne!(
            resource["Type"], "AWS::IAM::Policy",
            "{id}: a separate policy could be deleted before the function; keep actions inline"
        );
    }
}
