//! Every crate is compiled once per profile only if every cargo invocation the project runs resolves the
//! same features for it: `cargo build --workspace --bins` (make test, make demo), the test binaries (which
//! add dev-dependencies) and `cargo run -p integration-tests --bin demo`. A feature enabled in one of them
//! only (a `test-util` in a dev-dependency, a tokio feature one crate adds) recompiles that crate and
//! everything above it, the AWS SDK included, for several minutes. Hence features are declared once, in
//! the root `[workspace.dependencies]`, and this test compares the three resolutions.

use std::collections::BTreeMap;
use std::process::Command;

use integration_tests::lab::workspace_root;

/// `package version -> features` as `cargo tree` resolves them for one invocation.
fn resolved_features(args: &[&str]) -> BTreeMap<String, String> {
    let out = Command::new(env!("CARGO"))
        .current_dir(workspace_root())
        .args([
            "tree",
            "--offline",
            "--locked",
            "--prefix",
            "none",
            "-f",
            "{p}|{f}",
        ])
        .args(args)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.trim_end_matches(" (*)").split_once('|'))
        .map(|(package, features)| {
            // A path dependency prints its directory after the version: the name and version identify it.
            let id = package.split(" (").next().unwrap_or(package).to_string();
            (id, features.to_string())
        })
        .collect()
}

fn differences(base: &BTreeMap<String, String>, other: &BTreeMap<String, String>) -> Vec<String> {
    other
        .iter()
        .filter_map(|(package, features)| match base.get(package) {
            Some(base_features) if base_features != features => Some(format!(
                "{package}: [{base_features}] in the workspace build, [{features}] here"
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn the_tests_and_the_demo_resolve_the_features_of_the_workspace_build() {
    let workspace = resolved_features(&["--workspace", "-e", "normal,build"]);
    assert!(
        workspace.keys().any(|p| p.starts_with("aws-sdk-ec2 ")),
        "cargo tree listed no AWS SDK crate: {workspace:?}"
    );
    let with_tests = resolved_features(&["--workspace", "-e", "normal,build,dev"]);
    let demo = resolved_features(&["-p", "integration-tests", "-e", "normal,build"]);
    let mut problems = differences(&workspace, &with_tests);
    problems.extend(differences(&workspace, &demo));
    assert!(
        problems.is_empty(),
        "a crate would be compiled twice; declare its features once in [workspace.dependencies]:\n{}",
        problems.join("\n")
    );
}
