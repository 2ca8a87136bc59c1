//! The rules every Lambda and the CLI share (what a DMS reading means, the execution state, the pasted
//! payload, events, bounds) are pure: they import no adapter of an outside capability (DMS, EC2, RDS, S3,
//! CloudWatch, SNS, Secrets Manager, PostgreSQL) and no SDK or driver, so they are tested without any and a
//! change to an adapter cannot change a rule. docs/architecture.md lists the two groups.

use std::path::Path;

/// Modules of `crates/core/src` that hold pure rules.
const PURE_RULES: &[&str] = &[
    "arn.rs",
    "bounds.rs",
    "connectivity.rs",
    "dms_model.rs",
    "events.rs",
    "history.rs",
    "payload.rs",
    "recoverable_errors.rs",
    "redact.rs",
    "schema_objects.rs",
    "sql_ident.rs",
    "state.rs",
    "string_enum.rs",
    "table_mapping.rs",
    "tags.rs",
    "task_phase.rs",
    "checks/selection.rs",
];

/// Modules that reach an outside capability, and the crates that do.
const ADAPTERS: &[&str] = &[
    "crate::assessment_runs",
    "crate::aws",
    "crate::db_secret",
    "crate::dms::",
    "crate::dms;",
    "crate::ec2",
    "crate::metrics",
    "crate::notifier",
    "crate::pg",
    "crate::rds",
    "crate::s3",
    "crate::sequences",
    "crate::sg_rules",
    "aws_sdk_",
    "aws_smithy",
    "aws_config",
    "tokio_postgres",
];

#[test]
fn pure_rules_import_no_adapter() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for module in PURE_RULES {
        let text = std::fs::read_to_string(src.join(module))
            .unwrap_or_else(|e| panic!("{module}: {e} (update PURE_RULES when a module moves)"));
        for (number, line) in text.lines().enumerate() {
            if let Some(adapter) = ADAPTERS.iter().find(|a| line.contains(*a)) {
                found.push(format!(
                    "{module}:{}: {adapter} in `{}`",
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "pure rules reach an adapter; move the type they need into a pure module:\n{}",
        found.join("\n")
    );
}
