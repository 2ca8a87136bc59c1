//! The built `connectivity-check` binary against dms-local, whose TestConnection makes a real connection
//! to the lab clusters: each cause of failure is produced for real (a wrong password, a missing database,
//! a port nobody listens on, a connect that times out) and must come back classified with its fix.

use std::path::PathBuf;
use test_doubles::StateFixture;

use integration_tests::dms_local::DmsLocal;
use integration_tests::lab::{binary, Lab, TestDatabases};
use integration_tests::lambda::{free_port, LocalLambda};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

struct Setup {
    _dms: DmsLocal,
    lambda: LocalLambda,
    instance_arn: String,
    target_endpoint_arn: String,
}

async fn setup(lab: &Lab, dbs: &TestDatabases) -> Setup {
    let dms = DmsLocal::start(lab).await;
    let instance_arn = dms.register_instance("lab-connectivity").await;
    let target_endpoint_arn = dms
        .register_endpoint(&DmsLocal::lab_endpoint_spec(lab, dbs, "target"))
        .await;
    let mut env = lab.aws_env();
    env.extend(dms.env());
    // Poll dms-local every 200 ms instead of DMS's 5 s, and answer within 20 s (not the emulator's 600).
    env.push(("CONNECTION_POLL_INTERVAL_MS".into(), "200".into()));
    env.push(("CONNECTION_TIME_LIMIT_SECONDS".into(), "20".into()));
    let lambda = LocalLambda::start(
        &PathBuf::from(lab.var("CARGO_LAMBDA")),
        "connectivity-check",
        &binary("connectivity-check"),
        &env,
    )
    .await;
    Setup {
        _dms: dms,
        lambda,
        instance_arn,
        target_endpoint_arn,
    }
}

/// The normalised state notify would hand over, for these ARNs.
fn state(instance_arn: &str, source_endpoint_arn: &str, target_endpoint_arn: &str) -> Value {
    StateFixture::default()
        .with("replicationInstanceArn", instance_arn)
        .with("sourceEndpointArn", source_endpoint_arn)
        .with("targetEndpointArn", target_endpoint_arn)
        .with("sourceEndpointHost", "127.0.0.1")
        .state()
}

/// Registers a source endpoint changed by `edit` from the lab's, runs the Lambda, returns its result.
async fn check_source(lab: &Lab, test: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let dbs = lab.fresh_databases(test).await;
    let setup = setup(lab, &dbs).await;
    let mut spec = DmsLocal::lab_endpoint_spec(lab, &dbs, "source");
    edit(&mut spec);
    let source_arn = setup._dms.register_endpoint(&spec).await;
    let out = setup
        .lambda
        .invoke(
            &json!({"state": state(&setup.instance_arn, &source_arn, &setup.target_endpoint_arn)}),
        )
        .await
        .expect("connectivity-check answers");
    let result = out["results"]["connectivity"].clone();
    assert_eq!(
        result["target"]["status"],
        json!("successful"),
        "the lab target is reachable: {result}"
    );
    assert_eq!(result["attempts"], json!(1));
    result
}

fn assert_failed_as(result: &Value, class: &str) {
    let source = &result["source"];
    assert_eq!(result["ok"], json!(false), "{result}");
    assert_eq!(source["status"], json!("failed"), "{result}");
    assert_eq!(source["classification"], json!(class), "{result}");
    assert!(
        source["fix"].as_str().is_some_and(|f| !f.is_empty()),
        "{result}"
    );
    let message = source["message"].as_str().expect("the raw message");
    assert!(
        message.starts_with("Test Endpoint failed: Application-Status: 1020912"),
        "reads like DMS: {message}"
    );
}

#[tokio::test]
async fn reachable_source_and_target_are_both_successful() {
    let Some(lab) = Lab::get().await else { return };
    let result = check_source(&lab, "conn_ok", |_| {}).await;
    assert_eq!(result["ok"], json!(true), "{result}");
    assert_eq!(result["autofixEligible"], json!(false));
    assert_eq!(result["source"]["status"], json!("successful"));
    assert!(result["source"].get("classification").is_none(), "{result}");
}

#[tokio::test]
async fn a_wrong_password_is_auth() {
    let Some(lab) = Lab::get().await else { return };
    let result = check_source(&lab, "conn_auth", |spec| {
        spec["password"] = json!("not-the-password");
    })
    .await;
    assert_failed_as(&result, "auth");
    assert_eq!(result["autofixEligible"], json!(false));
    let message = result["source"]["message"].as_str().unwrap_or_default();
    assert!(!message.contains("not-the-password"), "{message}");
}

#[tokio::test]
async fn a_missing_database_is_database_missing() {
    let Some(lab) = Lab::get().await else { return };
    let result = check_source(&lab, "conn_nodb", |spec| {
        spec["database"] = json!("no_such_database_here");
    })
    .await;
    assert_failed_as(&result, "database-missing");
}

#[tokio::test]
async fn a_port_nobody_listens_on_is_no_listener() {
    let Some(lab) = Lab::get().await else { return };
    let port = free_port();
    let result = check_source(&lab, "conn_nolisten", |spec| {
        spec["host"] = json!("127.0.0.1");
        spec["port"] = json!(port);
    })
    .await;
    assert_failed_as(&result, "no-listener");
    assert_eq!(result["autofixEligible"], json!(false));
}

/// A loopback listener with a backlog of one that never accepts: two connects fill its queue, after which
/// a connect hangs until its timeout — what a security group that drops the traffic looks like
/// (docs/lab.md). The returned values must live as long as the test.
async fn black_hole() -> (TcpListener, Vec<TcpStream>, u16) {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket
        .bind("127.0.0.1:0".parse().expect("an address"))
        .expect("bind");
    let listener = socket.listen(1).expect("listen");
    let port = listener.local_addr().expect("an address").port();
    let mut held = Vec::new();
    for _ in 0..2 {
        if let Ok(Ok(stream)) = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        {
            held.push(stream);
        }
    }
    (listener, held, port)
}

#[tokio::test]
async fn a_connect_that_times_out_is_security_group_and_eligible_for_autofix() {
    let Some(lab) = Lab::get().await else { return };
    let (_listener, _held, port) = black_hole().await;
    let result = check_source(&lab, "conn_timeout", |spec| {
        spec["host"] = json!("127.0.0.1");
        spec["port"] = json!(port);
    })
    .await;
    assert_failed_as(&result, "security-group");
    assert_eq!(
        result["autofixEligible"],
        json!(true),
        "source timed out, autofix on, not tried yet: {result}"
    );
}

/// Runs the Lambda for these endpoints and returns `results.connectivity`.
async fn run_check(setup: &Setup, source_arn: &str) -> Value {
    let out = setup
        .lambda
        .invoke(
            &json!({"state": state(&setup.instance_arn, source_arn, &setup.target_endpoint_arn)}),
        )
        .await
        .expect("connectivity-check answers");
    out["results"]["connectivity"].clone()
}

/// DMS keeps the pair's last verdict: a refused TestConnection (the instance is `modifying`) leaves a
/// `successful` from an earlier run in DescribeConnections. The step must not accept it, and must name
/// the instance and its status instead.
#[tokio::test]
async fn a_modifying_instance_is_named_and_the_last_saved_success_is_not_accepted() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("conn_held_instance").await;
    let setup = setup(&lab, &dbs).await;
    let source_arn = setup
        ._dms
        .register_endpoint(&DmsLocal::lab_endpoint_spec(&lab, &dbs, "source"))
        .await;
    let first = run_check(&setup, &source_arn).await;
    assert_eq!(first["ok"], json!(true), "{first}");

    setup
        ._dms
        .fault(json!({"instanceArn": setup.instance_arn, "holdStatus": "modifying"}))
        .await;
    let result = run_check(&setup, &source_arn).await;
    assert_eq!(
        result["ok"],
        json!(false),
        "a stale verdict was accepted: {result}"
    );
    for role in ["source", "target"] {
        let check = &result[role];
        assert_eq!(check["status"], json!("not-tested"), "{result}");
        assert_eq!(
            check["classification"],
            json!("dms-unavailable"),
            "{result}"
        );
        let message = check["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("`lab-connectivity` is `modifying`"),
            "{message}"
        );
        assert!(!check["fix"]
            .as_str()
            .unwrap_or_default()
            .contains("security group"));
    }
    assert_eq!(result["autofixEligible"], json!(false));
}

/// An endpoint that never had a verdict and is held `modifying`: today's code waited and blamed a
/// security group; the step names the endpoint and its status.
#[tokio::test]
async fn a_modifying_endpoint_without_a_verdict_is_not_a_security_group() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("conn_held_endpoint").await;
    let setup = setup(&lab, &dbs).await;
    let mut spec = DmsLocal::lab_endpoint_spec(&lab, &dbs, "source");
    spec["identifier"] = json!("held-source");
    let source_arn = setup._dms.register_endpoint(&spec).await;
    setup
        ._dms
        .fault(json!({"endpointArn": source_arn, "holdStatus": "modifying"}))
        .await;
    let result = run_check(&setup, &source_arn).await;
    let source = &result["source"];
    assert_eq!(source["status"], json!("not-tested"), "{result}");
    assert!(
        source["message"]
            .as_str()
            .unwrap_or_default()
            .contains("endpoint `held-source` is `modifying`"),
        "{result}"
    );
    assert_eq!(result["target"]["status"], json!("successful"), "{result}");
}

/// The instance becomes available while the step waits: the step starts its own test then and reports
/// that test's verdict (a wrong password, which only a test run after the release can see).
#[tokio::test]
async fn the_step_waits_for_the_instance_then_reports_its_own_test() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("conn_held_then_released").await;
    let setup = setup(&lab, &dbs).await;
    let mut bad = DmsLocal::lab_endpoint_spec(&lab, &dbs, "source");
    bad["password"] = json!("not-the-password");
    let bad_arn = setup._dms.register_endpoint(&bad).await;
    setup
        ._dms
        .fault(json!({"instanceArn": setup.instance_arn, "holdStatus": "rebooting"}))
        .await;
    let dms_url = setup._dms.endpoint_url();
    let instance_arn = setup.instance_arn.clone();
    let release = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        reqwest::Client::new()
            .post(format!("{dms_url}/control/faults"))
            .json(&json!({"instanceArn": instance_arn, "holdStatus": null}))
            .send()
            .await
            .expect("release the instance");
    });
    let result = run_check(&setup, &bad_arn).await;
    release.await.expect("the release ran");
    assert_eq!(result["source"]["status"], json!("failed"), "{result}");
    assert_eq!(
        result["source"]["classification"],
        json!("auth"),
        "{result}"
    );
    assert_eq!(result["target"]["status"], json!("successful"), "{result}");
}
