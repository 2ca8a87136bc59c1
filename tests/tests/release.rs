//! `make release`'s template (scripts/release.py): the one file a console user uploads.
//!
//! A dist/ is built by the same generator (`make release-files`) from small stand-in zips, one per Lambda
//! of the template: the arm64 release build takes far longer than a test may, and what is under test here
//! is the generator, the template and the copy, not the binaries. The copying custom resource runs as the
//! stack would run it: its inline code is read out of the release template, run with python3 (boto3, as in
//! the Lambda Python runtime) against a local HTTP server holding that dist/ and moto S3, and answers a
//! local stand-in of the pre-signed ResponseURL.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use integration_tests::cfn::ResponseServer;
use integration_tests::lab::{binary, workspace_root, Lab};
use integration_tests::lambda::LocalLambda;
use integration_tests::template::{
    lambda_functions, load, role_allowed_actions, template_path, STATE_MACHINE,
};
use integration_tests::unique_name;
use serde_json::{json, Value};

const VERSION: &str = "v0.0.0-test";
/// The releases' base URL: this release's files are at `<base>/<VERSION>/<file>`, as on GitHub.
const RELEASE_URL: &str = "https://github.com/example/aurora-to-ps-dms/releases/download";
/// Where the local server publishes the releases, and this one's files.
const BASE: &str = "/releases/download";
const PREFIX: &str = "/releases/download/v0.0.0-test";

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A release built from stand-in zips: `dir/dist` as `make release` writes it.
struct Release {
    dir: TempDir,
    template: Value,
}

impl Release {
    fn dist(&self) -> PathBuf {
        self.dir.0.join("dist")
    }

    fn template_file(&self) -> PathBuf {
        self.dist().join(format!("aurora-to-ps-dms-{VERSION}.yaml"))
    }

    fn copy_properties(&self) -> &Value {
        &self.template["Resources"]["ReleaseArtifacts"]["Properties"]
    }

    /// Every file the template lists for the copy, with its digest.
    fn listed_files(&self) -> BTreeMap<String, String> {
        self.copy_properties()["Files"]
            .as_array()
            .expect("Files")
            .iter()
            .map(|f| {
                (
                    f["Name"].as_str().expect("Name").to_string(),
                    f["Sha256"].as_str().expect("Sha256").to_string(),
                )
            })
            .collect()
    }
}

/// Zips `content` as an executable `bootstrap` into `lambda_dir/<crate>/bootstrap.zip`, with the time of
/// `year` (the generator must not carry it into dist/).
fn stand_in_zip(lambda_dir: &Path, crate_name: &str, content: &str, year: u32) {
    let zip = lambda_dir.join(crate_name).join("bootstrap.zip");
    std::fs::create_dir_all(zip.parent().expect("parent")).expect("zip dir");
    let script = r#"
import sys, zipfile
out, content, year = sys.argv[1], sys.argv[2], int(sys.argv[3])
with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
    info = zipfile.ZipInfo("bootstrap", date_time=(year, 6, 1, 12, 0, 0))
    info.external_attr = 0o100755 << 16
    z.writestr(info, content)
"#;
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(&zip)
        .arg(content)
        .arg(year.to_string())
        .status()
        .expect("python3 runs");
    assert!(status.success(), "zipping {}", zip.display());
}

/// The Lambda crates of the source template (the generator derives the same set).
fn template_crates() -> Vec<String> {
    lambda_functions(&load(&template_path()))
        .into_iter()
        .map(|f| f.crate_name)
        .collect()
}

fn stand_in_lambdas(lambda_dir: &Path, year: u32) {
    for name in template_crates() {
        let content = format!("#!/bin/sh\necho 'stand-in for {name}'\n");
        stand_in_zip(lambda_dir, &name, &content, year);
    }
}

/// scripts/release.py on stand-in zips (fast: no lint).
fn release_from(lambda_dir: &Path, out: &Path) {
    let output = Command::new("python3")
        .arg(workspace_root().join("scripts/release.py"))
        .args(["--version", VERSION, "--release-url", RELEASE_URL])
        .arg("--lambdas")
        .arg(template_crates().join(" "))
        .arg("--lambda-dir")
        .arg(lambda_dir)
        .arg("--out")
        .arg(out)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "release.py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn release() -> Release {
    let dir = TempDir(std::env::temp_dir().join(unique_name("release")));
    stand_in_lambdas(&dir.0.join("lambda"), 2001);
    release_in(dir, &PathBuf::from("lambda"))
}

/// A release of the zips in `lambda_dir` (relative to `dir`, or absolute), written to `dir/dist`.
fn release_in(dir: TempDir, lambda_dir: &Path) -> Release {
    release_from(&dir.0.join(lambda_dir), &dir.0.join("dist"));
    let template = load(
        &dir.0
            .join("dist")
            .join(format!("aurora-to-ps-dms-{VERSION}.yaml")),
    );
    Release { dir, template }
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum runs");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_string()
}

fn get_att_bucket() -> Value {
    json!({"Fn::GetAtt": ["ReleaseArtifacts", "BucketName"]})
}

// ------------------------------------------------------------------------------------------ contract

#[test]
fn every_lambda_and_the_state_machine_read_the_copied_objects_and_nothing_else_changes() {
    let release = release();
    let source = load(&template_path());
    let resources = release.template["Resources"]
        .as_object()
        .expect("Resources");
    let listed = release.listed_files();
    assert_eq!(release.copy_properties()["Version"], VERSION);

    let mut referenced = BTreeSet::new();
    for function in lambda_functions(&source) {
        let code = &resources[&function.logical_id]["Properties"]["Code"];
        let key = format!("{VERSION}/{}.zip", function.crate_name);
        assert_eq!(
            code,
            &json!({"S3Bucket": get_att_bucket(), "S3Key": key}),
            "{}",
            function.logical_id
        );
        referenced.insert(format!("{}.zip", function.crate_name));
    }
    let location = &resources["MigrationStateMachine"]["Properties"]["DefinitionS3Location"];
    assert_eq!(
        location,
        &json!({"Bucket": get_att_bucket(), "Key": format!("{VERSION}/{STATE_MACHINE}")})
    );
    referenced.insert(STATE_MACHINE.to_string());
    assert_eq!(
        listed.keys().cloned().collect::<BTreeSet<_>>(),
        referenced,
        "the copy lists exactly the files the template reads"
    );

    // Every resource of the source template is in the release template, changed only where it reads the
    // copied objects.
    for (id, resource) in source["Resources"].as_object().expect("Resources") {
        let mut expected = resource.clone();
        let mut actual = resources
            .get(id)
            .unwrap_or_else(|| panic!("{id} missing from the release template"))
            .clone();
        for (props, field) in [(&mut expected, "Code"), (&mut actual, "Code")] {
            if let Some(p) = props["Properties"].as_object_mut() {
                p.remove(field);
                p.remove("DefinitionS3Location");
            }
        }
        // Besides, a resource may wait for ReleaseArtifactsCleanup (tested below).
        let mut waits = depends_on(&actual);
        waits.retain(|d| d != CLEANUP);
        assert_eq!(waits, depends_on(&expected), "{id}: DependsOn");
        for r in [&mut expected, &mut actual] {
            if let Some(r) = r.as_object_mut() {
                r.remove("DependsOn");
            }
        }
        assert_eq!(actual, expected, "{id} differs beyond its code location");
    }
    assert_eq!(release.template["Outputs"], source["Outputs"]);
    assert_eq!(release.template["Rules"], source["Rules"]);
    let parameter = &release.template["Parameters"]["ReleaseLocation"];
    assert_eq!(parameter["Default"], RELEASE_URL);
    assert_eq!(
        release.copy_properties()["ReleaseLocation"],
        json!({"Ref": "ReleaseLocation"})
    );
    let text = std::fs::read_to_string(release.template_file()).expect("template");
    assert!(!text.contains("../"), "no local path is left");
}

#[test]
fn the_template_digests_and_sha256sums_equal_the_files_in_dist() {
    let release = release();
    let dist = release.dist();
    for (name, digest) in release.listed_files() {
        assert_eq!(digest, sha256_of(&dist.join(&name)), "{name}");
    }
    let sums = std::fs::read_to_string(dist.join("SHA256SUMS")).expect("SHA256SUMS");
    let listed: BTreeMap<String, String> = sums
        .lines()
        .map(|l| {
            let (digest, name) = l.split_once("  ").expect("sha256sum format");
            (name.to_string(), digest.to_string())
        })
        .collect();
    let mut files: BTreeSet<String> = std::fs::read_dir(&dist)
        .expect("dist")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.remove("SHA256SUMS");
    assert_eq!(listed.keys().cloned().collect::<BTreeSet<_>>(), files);
    for (name, digest) in &listed {
        assert_eq!(digest, &sha256_of(&dist.join(name)), "SHA256SUMS: {name}");
    }
}

#[test]
fn two_releases_of_the_same_binaries_have_the_same_digests() {
    // Zips written at different times (as two builds would) give byte-identical release zips.
    let dir = TempDir(std::env::temp_dir().join(unique_name("release-twice")));
    stand_in_lambdas(&dir.0.join("a"), 2001);
    stand_in_lambdas(&dir.0.join("b"), 2024);
    release_from(&dir.0.join("a"), &dir.0.join("dist-a"));
    release_from(&dir.0.join("b"), &dir.0.join("dist-b"));
    let a = std::fs::read_to_string(dir.0.join("dist-a/SHA256SUMS")).expect("a");
    let b = std::fs::read_to_string(dir.0.join("dist-b/SHA256SUMS")).expect("b");
    assert_eq!(a, b);
    assert_ne!(
        sha256_of(&dir.0.join("a/notify/bootstrap.zip")),
        sha256_of(&dir.0.join("b/notify/bootstrap.zip")),
        "the inputs do differ"
    );
    // The bootstrap stays executable: Lambda runs it as the provided.al2023 entry point.
    let mode = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; print(oct(zipfile.ZipFile(sys.argv[1]).getinfo('bootstrap').external_attr >> 16))",
        ])
        .arg(dir.0.join("dist-a/notify.zip"))
        .output()
        .expect("python3");
    assert_eq!(String::from_utf8_lossy(&mode.stdout).trim(), "0o100755");
}

#[test]
fn make_release_files_writes_a_release_template_cfn_lint_and_checkov_pass() {
    // The Makefile's path (its LAMBDAS, scripts/lint-cfn.sh on the result) on stand-in zips.
    let root = workspace_root();
    if !root.join(".tools/py/bin/cfn-lint").exists()
        || !root.join(".tools/checkov/bin/checkov").exists()
    {
        panic!("cfn-lint or checkov missing: run `make deps`");
    }
    let dir = TempDir(std::env::temp_dir().join(unique_name("release-make")));
    stand_in_lambdas(&dir.0.join("lambda"), 2001);
    let output = Command::new("make")
        .current_dir(&root)
        .args(["--no-print-directory", "release-files"])
        .arg(format!("VERSION={VERSION}"))
        .arg(format!("RELEASE_URL={RELEASE_URL}"))
        .arg(format!("LAMBDA_DIR={}", dir.0.join("lambda").display()))
        .arg(format!("DIST={}", dir.0.join("dist").display()))
        .output()
        .expect("make runs");
    assert!(
        output.status.success(),
        "make release-files failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("lint-cfn: ok"));
    assert!(dir
        .0
        .join(format!("dist/aurora-to-ps-dms-{VERSION}.yaml"))
        .exists());
}

#[test]
fn the_copy_function_may_only_put_objects_into_its_bucket() {
    let release = release();
    let t = &release.template;
    let actions = role_allowed_actions(t, "ReleaseCopyRole");
    assert_eq!(
        actions,
        ["s3:PutObject", "logs:CreateLogStream", "logs:PutLogEvents"]
            .into_iter()
            .map(str::to_string)
            .collect::<BTreeSet<_>>()
    );
    let statements = t["Resources"]["ReleaseCopyRole"]["Properties"]["Policies"][0]
        ["PolicyDocument"]["Statement"]
        .as_array()
        .expect("statements");
    let put = statements
        .iter()
        .find(|s| s["Action"] == "s3:PutObject")
        .expect("PutObject statement");
    assert_eq!(
        put["Resource"],
        json!({"Fn::Sub": "${ReleaseArtifactsBucket.Arn}/*"})
    );
    let function = &t["Resources"]["ReleaseCopyFunction"]["Properties"];
    assert_eq!(
        function["Handler"], "index.handler",
        "ZipFile code is index.py"
    );
    // The bucket is emptied on stack delete by stack-cleanup's own path, not by the copy.
    let cleanup = &t["Resources"]["ReleaseArtifactsCleanup"];
    assert_eq!(cleanup["Type"], "Custom::StackCleanup");
    assert_eq!(
        cleanup["Properties"]["ServiceToken"],
        json!({"Fn::GetAtt": ["StackCleanupFunction", "Arn"]})
    );
    assert_eq!(
        cleanup["Properties"]["BucketName"],
        json!({"Ref": "ReleaseArtifactsBucket"})
    );
}

#[test]
fn the_inline_runtime_is_the_newest_python_cfn_lint_knows_and_not_deprecated() {
    // cfn-lint's own runtime lifecycle data (installed by make deps): the runtime has no successor.
    let release = release();
    let runtime = release.template["Resources"]["ReleaseCopyFunction"]["Properties"]["Runtime"]
        .as_str()
        .expect("Runtime")
        .to_string();
    let lib = workspace_root().join(".tools/py/lib");
    let spec = std::fs::read_dir(&lib)
        .expect(".tools/py/lib: run `make deps`")
        .filter_map(|e| e.ok())
        .map(|e| {
            e.path()
                .join("site-packages/cfnlint/data/AdditionalSpecs/LmbdRuntimeLifecycle.json")
        })
        .find(|p| p.exists())
        .expect("cfn-lint's LmbdRuntimeLifecycle.json");
    let lifecycle: Value =
        serde_json::from_str(&std::fs::read_to_string(spec).expect("read")).expect("json");
    let entry = &lifecycle[&runtime];
    assert!(entry.is_object(), "cfn-lint does not know {runtime}");
    assert!(
        entry["successor"].is_null(),
        "{runtime} has a successor in cfn-lint: {}",
        entry["successor"]
    );
}

const CLEANUP: &str = "ReleaseArtifactsCleanup";

/// `DependsOn` as a list (CloudFormation accepts a string or a list).
fn depends_on(resource: &Value) -> Vec<String> {
    match &resource["DependsOn"] {
        Value::String(one) => vec![one.clone()],
        Value::Array(many) => many
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// The names `value` refers to through Ref, Fn::GetAtt and the `${Name}` / `${Name.Attribute}` of Fn::Sub
/// (not its own variables, not `${!literal}`).
fn references(value: &Value, out: &mut BTreeSet<String>) {
    fn sub_names(text: &str, local: &BTreeSet<String>, out: &mut BTreeSet<String>) {
        for part in text.split("${").skip(1) {
            let Some((name, _)) = part.split_once('}') else {
                continue;
            };
            let name = name.split('.').next().unwrap_or_default();
            if !name.starts_with('!') && !local.contains(name) {
                out.insert(name.to_string());
            }
        }
    }
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("Ref", Value::String(name)) => {
                        out.insert(name.clone());
                    }
                    ("Fn::GetAtt", Value::Array(parts)) => {
                        if let Some(name) = parts.first().and_then(Value::as_str) {
                            out.insert(name.to_string());
                        }
                    }
                    ("Fn::Sub", Value::String(text)) => sub_names(text, &BTreeSet::new(), out),
                    ("Fn::Sub", Value::Array(parts)) => {
                        let vars = parts.get(1).cloned().unwrap_or(Value::Null);
                        let local = vars
                            .as_object()
                            .map(|m| m.keys().cloned().collect())
                            .unwrap_or_default();
                        if let Some(text) = parts.first().and_then(Value::as_str) {
                            sub_names(text, &local, out);
                        }
                        references(&vars, out);
                    }
                    _ => references(inner, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

/// Every resource that `from` needs before it can be created, directly or not.
fn needs(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(next) = todo.pop() {
        for dep in &graph[&next] {
            if seen.insert(dep.clone()) {
                todo.push(dep.clone());
            }
        }
    }
    seen
}

#[test]
fn nothing_that_may_fail_is_created_between_the_copy_and_the_cleanup_of_its_bucket() {
    // Once the copy has put files, only ReleaseArtifactsCleanup can empty the bucket; a rollback that
    // reaches the bucket before that resource exists fails (S3 does not delete a bucket holding objects).
    let release = release();
    let resources = release.template["Resources"]
        .as_object()
        .expect("Resources");
    let graph: BTreeMap<String, BTreeSet<String>> = resources
        .iter()
        .map(|(id, r)| {
            let mut refs: BTreeSet<String> = depends_on(r).into_iter().collect();
            references(&r["Properties"], &mut refs);
            refs.retain(|n| resources.contains_key(n));
            (id.clone(), refs)
        })
        .collect();
    let cleanup_needs = needs(&graph, CLEANUP);
    assert!(
        cleanup_needs.contains("ReleaseArtifacts"),
        "stack-cleanup's code is a copied object"
    );
    // What the cleanup needs is its own machinery and the copy's: nothing of the migration itself.
    for id in &cleanup_needs {
        let kind = resources[id]["Type"].as_str().unwrap_or_default();
        assert!(
            [
                "AWS::KMS::Key",
                "AWS::Logs::LogGroup",
                "AWS::IAM::Role",
                "AWS::IAM::RolePolicy",
                "AWS::Lambda::Function",
                "AWS::S3::Bucket",
                "AWS::S3::BucketPolicy",
                "Custom::ReleaseArtifacts",
            ]
            .contains(&kind),
            "{CLEANUP} needs {id} ({kind})"
        );
    }
    for id in resources.keys() {
        if id == CLEANUP || cleanup_needs.contains(id) {
            continue;
        }
        assert!(
            needs(&graph, id).contains(CLEANUP),
            "{id} may be created (and fail) before {CLEANUP} exists"
        );
    }
}

// ------------------------------------------------------------------- the copy, run as the stack would

#[derive(Clone)]
enum Serve {
    Tampered,
    Missing,
    RedirectTo(String),
}

#[derive(Clone)]
struct Files {
    dist: PathBuf,
    overrides: Arc<Mutex<HashMap<String, Serve>>>,
    requests: Arc<Mutex<Vec<String>>>,
}

/// The release page's download URLs: `PREFIX/<file>`, and `PREFIX/blobs/<file>` (the same bytes, a
/// redirect target inside the release location).
async fn serve(State(files): State<Files>, UrlPath(path): UrlPath<String>) -> Response {
    files.requests.lock().expect("lock").push(path.clone());
    let Some(rest) = format!("/{path}")
        .strip_prefix(&format!("{PREFIX}/"))
        .map(str::to_string)
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let name = rest.strip_prefix("blobs/").unwrap_or(&rest).to_string();
    let special = if rest.starts_with("blobs/") {
        None
    } else {
        files.overrides.lock().expect("lock").get(&name).cloned()
    };
    let Ok(mut body) = std::fs::read(files.dist.join(&name)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match special {
        Some(Serve::Missing) => StatusCode::NOT_FOUND.into_response(),
        Some(Serve::RedirectTo(location)) => {
            (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
        }
        Some(Serve::Tampered) => {
            let last = body.len() - 1;
            body[last] ^= 0xff;
            body.into_response()
        }
        None => body.into_response(),
    }
}

struct ReleaseServer {
    port: u16,
    files: Files,
    _task: tokio::task::JoinHandle<()>,
}

impl ReleaseServer {
    async fn start(dist: PathBuf) -> ReleaseServer {
        let files = Files {
            dist,
            overrides: Arc::default(),
            requests: Arc::default(),
        };
        let app = Router::new()
            .route("/{*path}", get(serve))
            .with_state(files.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the release server");
        let port = listener.local_addr().expect("address").port();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("release server");
        });
        ReleaseServer {
            port,
            files,
            _task: task,
        }
    }

    /// The ReleaseLocation parameter: the releases' base URL.
    fn location(&self) -> String {
        format!("http://127.0.0.1:{}{BASE}", self.port)
    }

    fn set(&self, name: &str, how: Serve) {
        self.files
            .overrides
            .lock()
            .expect("lock")
            .insert(name.to_string(), how);
    }
}

/// The request CloudFormation sends for ReleaseArtifacts: its properties from the release template, with
/// the parameter and the bucket resolved.
fn copy_request(
    release: &Release,
    kind: &str,
    response_url: &str,
    location: &str,
    bucket: &str,
) -> Value {
    let mut props = release.copy_properties().clone();
    props["ServiceToken"] =
        json!("arn:aws:lambda:us-east-1:123456789012:function:mig-release-copy");
    props["ServiceTimeout"] = json!("360");
    props["ReleaseLocation"] = json!(location);
    props["BucketName"] = json!(bucket);
    let mut event = json!({
        "RequestType": kind,
        "ServiceToken": props["ServiceToken"],
        "ResponseURL": response_url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/mig/0b1c2d3e",
        "RequestId": format!("request-{kind}"),
        "ResourceType": "Custom::ReleaseArtifacts",
        "LogicalResourceId": "ReleaseArtifacts",
        "ResourceProperties": props,
    });
    if kind != "Create" {
        event["PhysicalResourceId"] = json!(format!("{bucket}/{VERSION}"));
    }
    event
}

/// Runs the template's inline code (Code.ZipFile, written as index.py as CloudFormation does) once. It
/// blocks its thread: the tests run on two worker threads so the local servers keep answering.
fn run_copy(lab: &Lab, release: &Release, event: &Value) {
    let code = release.template["Resources"]["ReleaseCopyFunction"]["Properties"]["Code"]
        ["ZipFile"]
        .as_str()
        .expect("inline ZipFile code");
    let dir = release.dir.0.join(unique_name("function"));
    std::fs::create_dir_all(&dir).expect("function dir");
    std::fs::write(dir.join("index.py"), code).expect("index.py");
    let python = workspace_root().join(".tools/py/bin/python");
    let mut child = Command::new(&python)
        .args([
            "-c",
            "import json, sys; sys.path.insert(0, sys.argv[1]); import index; index.handler(json.load(sys.stdin), None)",
        ])
        .arg(&dir)
        .envs(lab.aws_env())
        .env("AWS_DEFAULT_REGION", lab.var("AWS_REGION"))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} runs (make deps): {e}", python.display()));
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(event.to_string().as_bytes())
            .expect("write event");
    }
    let status = child.wait().expect("the copy ends");
    assert!(status.success(), "the handler itself must not raise");
}

async fn objects(s3: &aws_sdk_s3::Client, bucket: &str) -> BTreeMap<String, Vec<u8>> {
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .expect("list objects");
    let mut out = BTreeMap::new();
    for object in listed.contents() {
        let key = object.key().expect("key").to_string();
        let body = s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .expect("get object")
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes()
            .to_vec();
        out.insert(key, body);
    }
    out
}

struct CopyRig {
    lab: Lab,
    release: Release,
    server: ReleaseServer,
    responses: ResponseServer,
    s3: aws_sdk_s3::Client,
    bucket: String,
}

impl CopyRig {
    async fn start() -> Option<CopyRig> {
        let lab = Lab::get().await?;
        CopyRig::start_with(lab, release()).await
    }

    async fn start_with(lab: Lab, release: Release) -> Option<CopyRig> {
        let server = ReleaseServer::start(release.dist()).await;
        let responses = ResponseServer::start().await;
        let s3 = aws_sdk_s3::Client::new(&lab.aws_config().await);
        let bucket = unique_name("release-artifacts");
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("the stack's bucket");
        Some(CopyRig {
            lab,
            release,
            server,
            responses,
            s3,
            bucket,
        })
    }

    /// One request with the release location `location`; returns the one answer CloudFormation received.
    fn answer(&self, kind: &str, location: &str) -> Value {
        let id = unique_name(kind);
        let event = copy_request(
            &self.release,
            kind,
            &self.responses.url(&id),
            location,
            &self.bucket,
        );
        self.answer_to(&id, &event)
    }

    fn answer_to(&self, id: &str, event: &Value) -> Value {
        run_copy(&self.lab, &self.release, event);
        let answers: Vec<_> = self
            .responses
            .received()
            .into_iter()
            .filter(|r| r.path == id)
            .collect();
        assert_eq!(answers.len(), 1, "exactly one answer: {answers:?}");
        answers[0].body.clone()
    }

    fn failure(&self, location: &str) -> String {
        let answer = self.answer("Create", location);
        assert_eq!(answer["Status"], "FAILED", "{answer}");
        assert_eq!(answer["LogicalResourceId"], "ReleaseArtifacts");
        assert_eq!(answer["RequestId"], "request-Create");
        assert!(
            answer["PhysicalResourceId"]
                .as_str()
                .is_some_and(|p| !p.is_empty()),
            "{answer}"
        );
        answer["Reason"].as_str().expect("Reason").to_string()
    }

    async fn assert_nothing_copied(&self) {
        assert_eq!(
            objects(&self.s3, &self.bucket)
                .await
                .keys()
                .collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "a refused copy leaves the bucket empty, so its deletion on rollback succeeds"
        );
        self.s3
            .delete_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .expect("the empty bucket can be deleted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_copies_every_file_to_the_keys_the_template_reads() {
    let Some(rig) = CopyRig::start().await else {
        return;
    };
    // One file arrives through a redirect inside the release location (as a mirror may answer).
    rig.server.set(
        "notify.zip",
        Serve::RedirectTo(format!(
            "{}/{VERSION}/blobs/notify.zip",
            rig.server.location()
        )),
    );
    let answer = rig.answer("Create", &rig.server.location());
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(answer["Data"]["BucketName"], rig.bucket.as_str());
    assert_eq!(
        answer["PhysicalResourceId"],
        format!("{}/{VERSION}", rig.bucket)
    );
    assert!(rig
        .server
        .files
        .requests
        .lock()
        .expect("lock")
        .iter()
        .any(|p| p.ends_with("blobs/notify.zip")));

    let copied = objects(&rig.s3, &rig.bucket).await;
    let mut expected = BTreeMap::new();
    for name in rig.release.listed_files().keys() {
        let bytes = std::fs::read(rig.release.dist().join(name)).expect("dist file");
        expected.insert(format!("{VERSION}/{name}"), bytes);
    }
    assert_eq!(
        copied.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    assert!(
        copied == expected,
        "every object holds its dist/ file's bytes"
    );

    // The keys the Lambdas and the state machine read are among them.
    let resources = rig.release.template["Resources"]
        .as_object()
        .expect("Resources");
    for (id, r) in resources {
        let key = match r["Type"].as_str() {
            Some("AWS::Lambda::Function") if r["Properties"]["Code"]["S3Key"].is_string() => {
                &r["Properties"]["Code"]["S3Key"]
            }
            Some("AWS::StepFunctions::StateMachine") => {
                &r["Properties"]["DefinitionS3Location"]["Key"]
            }
            _ => continue,
        };
        let key = key.as_str().expect("key");
        assert!(copied.contains_key(key), "{id} reads {key}, not copied");
    }

    // An Update with the same files (a rollback sends the old properties) copies again and succeeds.
    let again = rig.answer("Update", &rig.server.location());
    assert_eq!(again["Status"], "SUCCESS", "{again}");
    assert_eq!(again["PhysicalResourceId"], answer["PhysicalResourceId"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_zip_fails_naming_the_file_and_both_digests_and_copies_nothing() {
    let Some(rig) = CopyRig::start().await else {
        return;
    };
    rig.server.set("poll-progress.zip", Serve::Tampered);
    let reason = rig.failure(&rig.server.location());
    let expected = &rig.release.listed_files()["poll-progress.zip"];
    let mut served = std::fs::read(rig.release.dist().join("poll-progress.zip")).expect("zip");
    let last = served.len() - 1;
    served[last] ^= 0xff;
    let tampered = rig.release.dir.0.join("tampered.zip");
    std::fs::write(&tampered, served).expect("write");
    let got = sha256_of(&tampered);
    assert!(reason.contains("poll-progress.zip"), "{reason}");
    assert!(
        reason.contains(expected.as_str()),
        "the template's digest: {reason}"
    );
    assert!(
        reason.contains(&got),
        "the downloaded file's digest: {reason}"
    );
    rig.assert_nothing_copied().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_file_fails_naming_it_and_copies_nothing() {
    let Some(rig) = CopyRig::start().await else {
        return;
    };
    rig.server.set(STATE_MACHINE, Serve::Missing);
    let reason = rig.failure(&rig.server.location());
    assert!(reason.contains(STATE_MACHINE), "{reason}");
    assert!(reason.contains("HTTP 404"), "{reason}");
    rig.assert_nothing_copied().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_fails_naming_the_url_and_copies_nothing() {
    let Some(rig) = CopyRig::start().await else {
        return;
    };
    let closed = integration_tests::lambda::free_port();
    let location = format!("http://127.0.0.1:{closed}{BASE}");
    let reason = rig.failure(&location);
    assert!(reason.contains("cannot download"), "{reason}");
    assert!(
        reason.contains(&format!("{location}/{VERSION}/")),
        "{reason}"
    );
    rig.assert_nothing_copied().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_outside_the_release_location_is_refused() {
    let Some(rig) = CopyRig::start().await else {
        return;
    };
    // Another host (localhost is not 127.0.0.1 by name), then another path on the same host.
    let elsewhere = format!(
        "http://localhost:{}{PREFIX}/blobs/sg-autofix.zip",
        rig.server.port
    );
    rig.server
        .set("sg-autofix.zip", Serve::RedirectTo(elsewhere));
    let reason = rig.failure(&rig.server.location());
    assert!(reason.contains("sg-autofix.zip"), "{reason}");
    assert!(reason.contains("redirect to localhost"), "{reason}");
    assert!(reason.contains("refused"), "{reason}");
    rig.assert_nothing_copied().await;

    let Some(rig) = CopyRig::start().await else {
        return;
    };
    let outside_path = format!(
        "http://127.0.0.1:{}/releases/download/v9.9.9/sg-autofix.zip",
        rig.server.port
    );
    rig.server
        .set("sg-autofix.zip", Serve::RedirectTo(outside_path));
    let reason = rig.failure(&rig.server.location());
    assert!(reason.contains("refused"), "{reason}");
    rig.assert_nothing_copied().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_always_succeeds_and_touches_nothing() {
    let Some(rig) = CopyRig::start().await else {
        return;
    };
    let created = rig.answer("Create", &rig.server.location());
    assert_eq!(created["Status"], "SUCCESS", "{created}");
    let before = objects(&rig.s3, &rig.bucket).await;

    // Unreachable location, then no properties at all: Delete still succeeds.
    let closed = integration_tests::lambda::free_port();
    let answer = rig.answer("Delete", &format!("http://127.0.0.1:{closed}{BASE}"));
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(
        answer["PhysicalResourceId"],
        format!("{}/{VERSION}", rig.bucket)
    );
    let id = unique_name("bare-delete");
    let bare = json!({
        "RequestType": "Delete",
        "ResponseURL": rig.responses.url(&id),
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/mig/0b1c2d3e",
        "RequestId": "request-bare",
        "ResourceType": "Custom::ReleaseArtifacts",
        "LogicalResourceId": "ReleaseArtifacts",
        "PhysicalResourceId": "ReleaseArtifacts",
        "ResourceProperties": {},
    });
    let answer = rig.answer_to(&id, &bare);
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(
        objects(&rig.s3, &rig.bucket).await,
        before,
        "Delete removes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_cleanup_empties_the_copied_bucket_so_the_stack_can_delete_it() {
    let Some(rig) = CopyRig::start().await else {
        return;
    };
    // Versioned, as the template declares it.
    rig.s3
        .put_bucket_versioning()
        .bucket(&rig.bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("versioning");
    for kind in ["Create", "Update"] {
        let answer = rig.answer(kind, &rig.server.location());
        assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    }
    assert!(!objects(&rig.s3, &rig.bucket).await.is_empty());

    let cleanup = &rig.release.template["Resources"]["ReleaseArtifactsCleanup"];
    let stack = unique_name("rel");
    let mut env = rig.lab.aws_env();
    env.push(("STACK_NAME".into(), stack.clone()));
    let lambda = LocalLambda::start(
        &PathBuf::from(rig.lab.var("CARGO_LAMBDA")),
        "stack-cleanup",
        &binary("stack-cleanup"),
        &env,
    )
    .await;
    let out = lambda
        .invoke(&json!({
            "RequestType": "Delete",
            "ServiceToken": "x",
            "ResponseURL": rig.responses.url("cleanup"),
            "StackId": format!("arn:aws:cloudformation:us-east-1:123456789012:stack/{stack}/0b1c2d3e"),
            "RequestId": "request-cleanup",
            "ResourceType": cleanup["Type"],
            "LogicalResourceId": "ReleaseArtifactsCleanup",
            "PhysicalResourceId": format!("{stack}-stack-cleanup"),
            "ResourceProperties": {"ServiceToken": "x", "BucketName": rig.bucket, "StackName": stack}
        }))
        .await
        .expect("stack-cleanup answers");
    assert_eq!(out["status"], "SUCCESS", "{out}");
    rig.s3
        .delete_bucket()
        .bucket(&rig.bucket)
        .send()
        .await
        .expect("the emptied bucket can be deleted");
}

#[test]
fn redirects_outside_the_location_are_refused_and_githubs_asset_hosts_allowed() {
    // The rule itself, on GitHub-shaped URLs no local server can play.
    let release = release();
    let code = release.template["Resources"]["ReleaseCopyFunction"]["Properties"]["Code"]
        ["ZipFile"]
        .as_str()
        .expect("ZipFile")
        .to_string();
    let dir = release.dir.0.join("rule");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("index.py"), code).expect("index.py");
    let cases = json!([
        ["https://github.com/o/r/releases/download/v1", "https://release-assets.githubusercontent.com/github-production-release-asset/1/abc?X-Amz-Signature=s", true],
        ["https://github.com/o/r/releases/download/v1", "https://objects.githubusercontent.com/github-production-release-asset-2e65be/1/abc", true],
        ["https://github.com/o/r/releases/download/v1", "https://github.com/o/r/releases/download/v1/x.zip", true],
        ["https://github.com/o/r/releases/download/v1", "http://release-assets.githubusercontent.com/x", false],
        ["https://github.com/o/r/releases/download/v1", "https://raw.githubusercontent.com/o/r/main/x.zip", false],
        ["https://github.com/o/r/releases/download/v1", "https://github.com/evil/r/releases/download/v1/x.zip", false],
        ["https://github.com/o/r/releases/download/v1", "https://github.com/o/r/releases/download/v1/../../../../evil/x.zip", false],
        ["https://github.com/o/r/releases/download/v1", "https://github.com/o/r/releases/download/v1/%2e%2e/%2E%2E/evil/x.zip", false],
        ["https://github.com/o/r/releases/download/v1", "https://github.com/o/r/releases/download/v10/x.zip", false],
        ["https://mirror.example/rel/v1", "https://objects.githubusercontent.com/x", false],
        ["https://mirror.example/rel/v1", "https://mirror.example/rel/v1/blobs/x", true],
        ["https://mirror.example/rel/v1", "http://mirror.example/rel/v1/x", false],
    ]);
    let script = "import json, sys; sys.path.insert(0, sys.argv[1]); import index\n\
                  print(json.dumps([index.allowed(l, u) for l, u, _ in json.loads(sys.argv[2])]))";
    let out = Command::new(workspace_root().join(".tools/py/bin/python"))
        .args(["-c", script])
        .arg(&dir)
        .arg(cases.to_string())
        .output()
        .expect("python runs (make deps)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<bool> = serde_json::from_slice(&out.stdout).expect("json");
    let want: Vec<bool> = cases
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| c[2].as_bool().expect("bool"))
        .collect();
    for ((case, g), w) in cases.as_array().expect("cases").iter().zip(&got).zip(&want) {
        assert_eq!(g, w, "{case}");
    }
}

/// `make build`'s arm64 zips (target/lambda), when they are there: `make test` does not cross-compile them
/// (the release build takes far longer than the test suite), so without them this test says so and passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_arm64_zips_are_released_and_copied_byte_for_byte() {
    let built = workspace_root().join("target/lambda");
    let missing: Vec<String> = template_crates()
        .into_iter()
        .filter(|name| !built.join(name).join("bootstrap.zip").is_file())
        .collect();
    if !missing.is_empty() {
        eprintln!("skipped: no `make build` zips in target/lambda for {missing:?}");
        return;
    }
    let Some(lab) = Lab::get().await else {
        return;
    };
    let dir = TempDir(std::env::temp_dir().join(unique_name("release-real")));
    let release = release_in(dir, &built);
    // Each release zip holds one executable `bootstrap`, an ELF for arm64 (e_machine 183, EM_AARCH64), as
    // the template's `Architectures: [arm64]` and `provided.al2023` runtime need.
    let check = r#"
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
assert z.namelist() == ["bootstrap"], z.namelist()
info = z.getinfo("bootstrap")
assert info.external_attr >> 16 == 0o100755, oct(info.external_attr >> 16)
head = z.read("bootstrap")[:20]
assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183, head
"#;
    for name in release
        .listed_files()
        .keys()
        .filter(|n| n.ends_with(".zip"))
    {
        let out = Command::new("python3")
            .args(["-c", check])
            .arg(release.dist().join(name))
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let Some(rig) = CopyRig::start_with(lab, release).await else {
        return;
    };
    let answer = rig.answer("Create", &rig.server.location());
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    let copied = objects(&rig.s3, &rig.bucket).await;
    let listed = rig.release.listed_files();
    assert_eq!(copied.len(), listed.len());
    for name in listed.keys() {
        let bytes = std::fs::read(rig.release.dist().join(name)).expect("dist file");
        assert!(
            copied.get(&format!("{VERSION}/{name}")) == Some(&bytes),
            "{name} copied byte for byte"
        );
    }
}

#[test]
fn the_generator_takes_its_lambdas_from_the_template_and_refuses_a_different_lambdas() {
    let dir = TempDir(std::env::temp_dir().join(unique_name("release-set")));
    let lambda_dir = dir.0.join("lambda");
    stand_in_lambdas(&lambda_dir, 2001);
    let source = std::fs::read_to_string(template_path()).expect("template");
    let run = |template: &str, lambdas: &str| {
        let path = dir.0.join("template.yaml");
        std::fs::write(&path, template).expect("write template");
        Command::new("python3")
            .arg(workspace_root().join("scripts/release.py"))
            .args(["--version", VERSION, "--release-url", RELEASE_URL])
            .args(["--lambdas", lambdas])
            .arg("--lambda-dir")
            .arg(&lambda_dir)
            .arg("--out")
            .arg(dir.0.join("dist"))
            .arg("--template")
            .arg(&path)
            .output()
            .expect("python3 runs")
    };
    let crates = template_crates();
    // The Makefile's LAMBDAS missing one of the template's functions.
    let out = run(&source, &crates[1..].join(" "));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("are not LAMBDAS"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A function whose code is neither a crate's zip nor inline.
    let elsewhere = source.replacen(
        "Code: ../target/lambda/notify/bootstrap.zip",
        "Code: ../elsewhere/notify.zip",
        1,
    );
    assert_ne!(elsewhere, source);
    let out = run(&elsewhere, &crates.join(" "));
    assert!(!out.status.success(), "a function with unknown code");
    // An inline (ZipFile) function needs no artifact and is carried as it is, waiting for the cleanup.
    let inline = source.replacen(
        "\nOutputs:\n",
        "  InlineFunction:\n    Type: AWS::Lambda::Function\n    Properties:\n      Runtime: python3.14\n      \
         Handler: index.handler\n      Role: !GetAtt NotifyRole.Arn\n      Code:\n        ZipFile: |\n          \
         def handler(event, context):\n              return None\n\nOutputs:\n",
        1,
    );
    assert_ne!(inline, source);
    let out = run(&inline, &crates.join(" "));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let released = load(&dir.0.join(format!("dist/aurora-to-ps-dms-{VERSION}.yaml")));
    let function = &released["Resources"]["InlineFunction"];
    assert!(function["Properties"]["Code"]["ZipFile"]
        .as_str()
        .is_some_and(|c| c.contains("def handler")));
    assert_eq!(depends_on(function), vec![CLEANUP.to_string()]);
}
