//! `make upload-artifacts` (the `aws cloudformation package` half of `make package`) against moto S3.
//! CI does no release arm64 build, so the test packages a temporary copy of the template and the ASL with
//! zips of the debug binaries (a placeholder zip for a Lambda crate not written yet): nothing is written
//! to target/lambda. It asserts that the packaged template, the file the user uploads in the console,
//! points every Lambda and the state machine at S3 objects that exist with the uploaded sizes.

use std::path::{Path, PathBuf};
use std::process::Command;

use integration_tests::lab::{workspace_root, Lab};
use integration_tests::template::{lambda_functions, load, STATE_MACHINE, TEMPLATE};
use integration_tests::unique_name;

/// Zips `binary` (or placeholder text when None) as `bootstrap`, the entry the provided.al2023 runtime
/// runs, into `zip`. Fast deflate: the debug binaries are large and only their upload is under test.
fn zip_bootstrap(binary: Option<&Path>, zip: &Path) {
    std::fs::create_dir_all(zip.parent().expect("parent")).expect("zip directory");
    let script = r##"
import sys, zipfile
binary, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
    if binary:
        z.write(binary, "bootstrap")
    else:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        z.writestr(info, "#!/bin/sh\necho 'placeholder: this Lambda crate is not written yet' >&2; exit 1\n")
"##;
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(binary.map(|b| b.display().to_string()).unwrap_or_default())
        .arg(zip)
        .status()
        .expect("python3 runs (the lab scripts need it too)");
    assert!(status.success(), "zipping {}", zip.display());
}

fn debug_binary(name: &str) -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let path = target.join("debug").join(name);
    path.exists().then_some(path)
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn make_package_uploads_every_artifact_and_the_packaged_template_points_at_them() {
    let Some(lab) = Lab::get().await else { return };
    let root = workspace_root();
    let aws = root.join(".tools/awscli/bin/aws");
    if !aws.exists() {
        // The lab is up (Lab::get checked), so the tools are expected: make deps installs both.
        panic!("{} missing: run `make deps`", aws.display());
    }

    // A copy of the layout the template's relative paths expect: cloudformation/ next to target/lambda/
    // and statemachine.asl.json.
    let work = TempDir(std::env::temp_dir().join(unique_name("packaging")));
    let template = work.0.join(TEMPLATE);
    std::fs::create_dir_all(template.parent().expect("parent")).expect("temp dir");
    std::fs::copy(root.join(TEMPLATE), &template).expect("copy template");
    std::fs::copy(root.join(STATE_MACHINE), work.0.join(STATE_MACHINE)).expect("copy ASL");
    let source = load(&root.join(TEMPLATE));
    let functions = lambda_functions(&source);
    for function in &functions {
        let zip = work
            .0
            .join("target/lambda")
            .join(&function.crate_name)
            .join("bootstrap.zip");
        let binary = debug_binary(&function.crate_name);
        if binary.is_none() {
            eprintln!(
                "note: no debug binary for {}: a placeholder zip stands in",
                function.crate_name
            );
        }
        zip_bootstrap(binary.as_deref(), &zip);
    }

    let config = lab.aws_config().await;
    let s3 = aws_sdk_s3::Client::new(&config);
    let bucket = unique_name("artifacts");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("artifact bucket");

    let packaged = work.0.join("packaged.yaml");
    let output = Command::new("make")
        .current_dir(&root)
        .args(["--no-print-directory", "upload-artifacts"])
        .arg(format!("ARTIFACT_BUCKET={bucket}"))
        .arg(format!("TEMPLATE={}", template.display()))
        .arg(format!("PACKAGED={}", packaged.display()))
        .envs(lab.aws_env())
        .env("AWS_DEFAULT_REGION", lab.var("AWS_REGION"))
        .output()
        .expect("make runs");
    assert!(
        output.status.success(),
        "make upload-artifacts failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    let packaged = load(&packaged);
    let resources = packaged["Resources"].as_object().expect("Resources");
    assert_eq!(
        resources.len(),
        source["Resources"].as_object().expect("Resources").len(),
        "packaging keeps every resource"
    );
    let mut checked = 0;
    for function in &functions {
        let code = &resources[&function.logical_id]["Properties"]["Code"];
        assert_eq!(
            code["S3Bucket"], bucket,
            "{}: Code {code}",
            function.logical_id
        );
        let key = code["S3Key"].as_str().expect("S3Key");
        let zip = work
            .0
            .join("target/lambda")
            .join(&function.crate_name)
            .join("bootstrap.zip");
        assert_object_size(&s3, &bucket, key, &zip, &function.logical_id).await;
        checked += 1;
    }
    assert_eq!(checked, 8, "the eight Lambdas (source-checks among them)");
    let location = &resources["MigrationStateMachine"]["Properties"]["DefinitionS3Location"];
    assert_eq!(location["Bucket"], bucket, "{location}");
    let key = location["Key"].as_str().expect("Key");
    assert_object_size(
        &s3,
        &bucket,
        key,
        &work.0.join(STATE_MACHINE),
        "MigrationStateMachine",
    )
    .await;

    let text = serde_json::to_string(&packaged).expect("json");
    assert!(
        !text.contains("../"),
        "no local path is left in the packaged template"
    );
    assert_eq!(
        resources["MigrationStateMachine"]["Properties"]["DefinitionSubstitutions"],
        source["Resources"]["MigrationStateMachine"]["Properties"]["DefinitionSubstitutions"],
        "the substitutions survive packaging"
    );
}

async fn assert_object_size(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    local: &Path,
    what: &str,
) {
    let head = s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: s3://{bucket}/{key} does not exist: {e}"));
    let size = std::fs::metadata(local).expect("local artifact").len() as i64;
    assert_eq!(
        head.content_length(),
        Some(size),
        "{what}: s3://{bucket}/{key} is not the uploaded {}",
        local.display()
    );
}

#[test]
fn the_packaged_shape_is_what_the_template_loader_reads() {
    // `aws cloudformation package` writes long-form intrinsics; the loader reads both forms alike.
    let short = integration_tests::template::parse("A: !GetAtt R.Arn\n").expect("yaml");
    let long = integration_tests::template::parse("A:\n  Fn::GetAtt: [R, Arn]\n").expect("yaml");
    assert_eq!(short, long);
}
