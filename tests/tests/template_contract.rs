//! Static agreements between the template, the state machine definition and the code, checked directly
//! (no deployment: moto has no AWS::DMS::*).

use std::collections::BTreeSet;

use core_lib::tags::SG_RULE_TAG_KEY;
use integration_tests::lab::workspace_root;
use integration_tests::rig::FUNCTIONS;
use integration_tests::template::{lambda_functions, load, template_path, STATE_MACHINE};

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
