//! `Custom::UpdateGuard` through the built `stack-cleanup` binary, against dms-local (a task whose status
//! and LobMaxSize the test sets) and moto S3: an update DMS would refuse (the task runs) or that would
//! orphan a non-empty bucket is refused up front; the same update once the task is stopped, a
//! rollback-shaped request, Create and Delete all succeed.

use std::path::PathBuf;

use aws_sdk_s3::primitives::ByteStream;
use integration_tests::cfn::ResponseServer;
use integration_tests::dms_local::DmsLocal;
use integration_tests::lab::{binary, Lab};
use integration_tests::lambda::LocalLambda;
use integration_tests::unique_name;
use serde_json::{json, Value};

struct Rig {
    dms: DmsLocal,
    task_arn: String,
    task_id: String,
    server: ResponseServer,
    lambda: LocalLambda,
    stack: String,
}

async fn rig(lab: &Lab) -> Rig {
    let dms = DmsLocal::start(lab).await;
    let stack = unique_name("guard");
    let instance = dms.register_instance("guard-instance").await;
    let mut endpoints = Vec::new();
    for (role, engine) in [("source", "aurora-postgresql"), ("target", "postgres")] {
        endpoints.push(
            dms.register_endpoint(&json!({"identifier": format!("guard-{role}"),
                "endpointType": role, "engine": engine, "host": "127.0.0.1", "port": 1,
                "database": "d", "username": "u", "password": "p"}))
                .await,
        );
    }
    let task_id = format!("{stack}-task");
    let task_arn = dms
        .try_control(
            "tasks",
            &json!({"identifier": task_id, "instanceArn": instance,
                "sourceEndpointArn": endpoints[0], "targetEndpointArn": endpoints[1],
                "migrationType": "full-load-and-cdc", "lobMaxSizeKb": 64,
                "tableMappings": integration_tests::dms_local::all_public_tables()}),
        )
        .await
        .expect("task registered")["arn"]
        .as_str()
        .expect("task ARN")
        .to_string();
    let mut env = lab.aws_env();
    env.extend(dms.env());
    env.push(("STACK_NAME".into(), stack.clone()));
    let lambda = LocalLambda::start(
        &PathBuf::from(lab.var("CARGO_LAMBDA")),
        "stack-cleanup",
        &binary("stack-cleanup"),
        &env,
    )
    .await;
    Rig {
        dms,
        task_arn,
        task_id,
        server: ResponseServer::start().await,
        lambda,
        stack,
    }
}

fn props(rig: &Rig, migration_type: &str, lob_kb: &str, bucket: &str) -> Value {
    json!({"ServiceToken": "x", "StackName": rig.stack, "TaskIdentifier": rig.task_id,
        "MigrationType": migration_type, "LobMaxSizeKb": lob_kb, "BucketName": bucket})
}

impl Rig {
    async fn hold(&self, status: &str) {
        self.dms
            .fault(json!({"taskArn": self.task_arn, "holdStatus": status}))
            .await;
    }

    /// Invokes and returns the one answer CloudFormation received for it.
    async fn answer(&self, kind: &str, new: Value, old: Option<Value>) -> Value {
        let mut event = json!({
            "RequestType": kind,
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:x-stack-cleanup",
            "ResponseURL": self.server.url(&kind.to_lowercase()),
            "StackId": format!("arn:aws:cloudformation:us-east-1:123456789012:stack/{}/guid", self.stack),
            "RequestId": format!("request-{kind}"),
            "ResourceType": "Custom::UpdateGuard",
            "LogicalResourceId": "UpdateGuard",
            "ResourceProperties": new,
        });
        if kind != "Create" {
            event["PhysicalResourceId"] = json!(format!("{}-update-guard", self.stack));
        }
        if let Some(old) = old {
            event["OldResourceProperties"] = old;
        }
        let before = self.server.received().len();
        self.lambda
            .invoke(&event)
            .await
            .expect("answered, not a function error");
        let received = self.server.received();
        assert_eq!(
            received.len(),
            before + 1,
            "exactly one answer: {received:?}"
        );
        received[before].body.clone()
    }
}

fn reason(answer: &Value) -> String {
    answer["Reason"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_task_setting_change_is_refused_while_the_task_runs_and_passes_once_it_is_stopped() {
    let Some(lab) = Lab::get().await else { return };
    let rig = rig(&lab).await;
    let bucket = unique_name("guard-b");
    let current = props(&rig, "full-load-and-cdc", "64", &bucket);
    let bigger_lobs = props(&rig, "full-load-and-cdc", "128", &bucket);

    let create = rig.answer("Create", current.clone(), None).await;
    assert_eq!(create["Status"], "SUCCESS", "{create}");
    assert_eq!(
        create["PhysicalResourceId"],
        format!("{}-update-guard", rig.stack)
    );

    rig.hold("running").await;
    let refused = rig
        .answer("Update", bigger_lobs.clone(), Some(current.clone()))
        .await;
    assert_eq!(refused["Status"], "FAILED", "{refused}");
    let text = reason(&refused);
    assert!(
        text.contains("LobMaxSizeKb 64 -> 128")
            && text.contains("running")
            && text.contains("Stop the task first"),
        "{text}"
    );

    let other_type = props(&rig, "cdc", "64", &bucket);
    let refused = rig
        .answer("Update", other_type.clone(), Some(current.clone()))
        .await;
    assert_eq!(refused["Status"], "FAILED", "{refused}");
    assert!(reason(&refused).contains("MigrationType full-load-and-cdc -> cdc"));

    // The rollback of that refused update asks for what the task has: it must pass while the task runs.
    let rollback = rig
        .answer("Update", current.clone(), Some(bigger_lobs.clone()))
        .await;
    assert_eq!(rollback["Status"], "SUCCESS", "{rollback}");

    rig.hold("stopped").await;
    let accepted = rig
        .answer("Update", bigger_lobs.clone(), Some(current.clone()))
        .await;
    assert_eq!(accepted["Status"], "SUCCESS", "{accepted}");

    rig.hold("running").await;
    let delete = rig.answer("Delete", current, None).await;
    assert_eq!(delete["Status"], "SUCCESS", "{delete}");
}

#[tokio::test]
async fn a_bucket_rename_is_refused_while_the_old_bucket_holds_reports() {
    let Some(lab) = Lab::get().await else { return };
    let rig = rig(&lab).await;
    let s3 = aws_sdk_s3::Client::new(&lab.aws_config().await);
    let old_bucket = unique_name("guard-old");
    let new_bucket = unique_name("guard-new");
    s3.create_bucket()
        .bucket(&old_bucket)
        .send()
        .await
        .expect("create bucket");
    s3.put_object()
        .bucket(&old_bucket)
        .key("assessment/report.json")
        .body(ByteStream::from_static(b"{}"))
        .send()
        .await
        .expect("put a report");
    let current = props(&rig, "full-load-and-cdc", "64", &old_bucket);
    let renamed = props(&rig, "full-load-and-cdc", "64", &new_bucket);

    let refused = rig
        .answer("Update", renamed.clone(), Some(current.clone()))
        .await;
    assert_eq!(refused["Status"], "FAILED", "{refused}");
    let text = reason(&refused);
    assert!(
        text.contains(&old_bucket) && text.contains("holds 1") && text.contains("Empty"),
        "{text}"
    );

    // Rollback shape: back to the old (still existing) bucket from the new one.
    s3.create_bucket()
        .bucket(&new_bucket)
        .send()
        .await
        .expect("the new bucket, as a half-done update leaves it");
    let rollback = rig
        .answer("Update", current.clone(), Some(renamed.clone()))
        .await;
    assert_eq!(rollback["Status"], "SUCCESS", "{rollback}");
    s3.delete_bucket()
        .bucket(&new_bucket)
        .send()
        .await
        .expect("drop the new bucket");

    // Emptied, the rename is accepted.
    s3.delete_object()
        .bucket(&old_bucket)
        .key("assessment/report.json")
        .send()
        .await
        .expect("empty the bucket");
    let accepted = rig.answer("Update", renamed, Some(current)).await;
    assert_eq!(accepted["Status"], "SUCCESS", "{accepted}");
}
