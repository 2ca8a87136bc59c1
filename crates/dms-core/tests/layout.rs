//! The layout shows the architecture: `src/rules` holds the pure rules every Lambda and the CLI share (what
//! a DMS reading means, the execution state, the pasted payload, events, bounds), `src/aws` the AWS
//! adapters and `src/pg` the PostgreSQL plumbing. A rule imports no adapter and no SDK or driver, so it is
//! tested without any and a change to an adapter cannot change a rule. docs/architecture.md describes the
//! groups.

use std::path::{Path, PathBuf};

/// What a pure rule may not name: the adapter groups, and the crates that reach an outside capability.
const ADAPTERS: &[&str] = &[
    "crate::aws",
    "crate::pg",
    "crate::envelope",
    "crate::defect",
    "aws_sdk_",
    "aws_smithy",
    "aws_config",
    "tokio_postgres",
    "lambda_runtime",
    "rustls",
];

/// The modules that stay at the top of `src`, outside the three groups: the error names (which convert SDK
/// and driver errors, so they are not pure), the Lambda envelope, the panic guard, the clock and the macro
/// the enums are written with.
const TOP_LEVEL: &[&str] = &[
    "clock.rs",
    "defect.rs",
    "envelope.rs",
    "errors.rs",
    "lib.rs",
    "string_enum.rs",
];

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn pure_rules_import_no_adapter() {
    let mut pure = rust_files(&src().join("rules"));
    pure.push(src().join("string_enum.rs"));
    assert!(pure.len() > 10, "src/rules was not found");
    let mut found = Vec::new();
    for module in &pure {
        let text = std::fs::read_to_string(module).expect("readable module");
        for (number, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            if let Some(adapter) = ADAPTERS.iter().find(|a| line.contains(*a)) {
                found.push(format!(
                    "{}:{}: {adapter} in `{}`",
                    module.strip_prefix(src()).unwrap_or(module).display(),
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

#[test]
fn every_module_belongs_to_a_group() {
    let mut loose = Vec::new();
    for entry in std::fs::read_dir(src()).expect("src") {
        let path = entry.expect("directory entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if path.is_dir() {
            if !["rules", "aws", "pg"].contains(&name.as_str()) {
                loose.push(format!("{name}/ (a folder outside rules, aws and pg)"));
            }
        } else if !TOP_LEVEL.contains(&name.as_str()) {
            loose.push(name);
        }
    }
    assert!(
        loose.is_empty(),
        "put each module in src/rules (pure), src/aws (an AWS adapter) or src/pg (PostgreSQL), \
         or add it to TOP_LEVEL with the reason: {loose:?}"
    );
}
