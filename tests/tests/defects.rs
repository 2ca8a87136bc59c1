//! A panic in a built Lambda binary reaches its caller as our own `Tool.Defect`, never as lambda_runtime's
//! `&alloc::boxed::Box<dyn core::any::Any + core::marker::Send>`, with the panic message scrubbed of
//! secrets. The panic comes from the debug-only switch `DMS_MIGRATE_TEST_PANIC` (see `dms_core::defect`):
//! release builds have no way to make a Lambda panic on purpose.

use std::path::PathBuf;

use integration_tests::lab::{binary, Lab};
use integration_tests::lambda::LocalLambda;
use serde_json::json;

#[tokio::test]
async fn every_lambda_reports_a_panic_as_tool_defect() {
    let Some(lab) = Lab::get().await else { return };
    for (name, extra_env) in [
        ("poll-progress", vec![]),
        ("start-task", vec![]),
        (
            "notify",
            vec![("TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:unused")],
        ),
        ("connectivity-check", vec![]),
        ("premigration-assessment", vec![]),
        ("sg-autofix", vec![("STACK_NAME", "lab")]),
    ] {
        let mut env = lab.aws_env();
        env.extend(
            extra_env
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        env.push((
            "DMS_MIGRATE_TEST_PANIC".into(),
            "called `Option::unwrap()` on a `None` value near postgres://app:hunter2@db.internal/app".into(),
        ));
        let lambda = LocalLambda::start(
            &PathBuf::from(lab.var("CARGO_LAMBDA")),
            name,
            &binary(name),
            &env,
        )
        .await;
        let err = lambda
            .invoke(&json!({"state": {}}))
            .await
            .expect_err("a panicking Lambda answers with an error");
        assert_eq!(err.error_type, "Tool.Defect", "{name}: {err:?}");
        assert!(
            err.error_message.contains("panicked")
                && err
                    .error_message
                    .contains("called `Option::unwrap()` on a `None` value"),
            "{name}: {}",
            err.error_message
        );
        assert!(
            !err.error_message.contains("hunter2"),
            "{name}: {}",
            err.error_message
        );
    }
}
