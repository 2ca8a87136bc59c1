//! A panic in a Lambda is a defect of this tool. lambda_runtime reports a handler panic with the panic
//! payload's Rust type name as `errorType` (`&alloc::boxed::Box<dyn core::any::Any + core::marker::Send>`),
//! which no Retry or failure email can recognise. Every Lambda's `main` runs its handler through
//! `catch_defects`, so a panic reaches Step Functions as `Tool.Defect` with the panic message (scrubbed of
//! secrets and bounded like every message), is never retried, and the failure email says it is a bug to
//! report.
//!
//! Debug builds only: when the environment variable `DMS_MIGRATE_TEST_PANIC` is set (read once per cold
//! start), every invocation panics with its value, so a test can prove the path with a real binary. Release
//! builds (what the stack deploys) contain no such switch.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

use crate::errors::{ErrorName, StepError};
use crate::rules::bounds::{cap_text, CUT, MAX_TEXT_BYTES};

/// Runs one invocation's handler; a panic inside it becomes `Tool.Defect`.
pub async fn catch_defects<T, F>(handler: F) -> Result<T, StepError>
where
    F: Future<Output = Result<T, StepError>>,
{
    let guarded = async {
        #[cfg(debug_assertions)]
        test_trigger::panic_if_asked();
        handler.await
    };
    match AssertUnwindSafe(guarded).catch_unwind().await {
        Ok(result) => result,
        Err(payload) => Err(defect_error(payload.as_ref())),
    }
}

/// The message a panic carries (`panic!` with a literal or with format arguments), or a placeholder.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// The `Tool.Defect` error for a panic payload.
pub fn defect_error(payload: &(dyn Any + Send)) -> StepError {
    let message = panic_message(payload);
    StepError::new(
        ErrorName::ToolDefect,
        cap_text(
            &format!("the Lambda panicked (a defect in the migration tool): {message}"),
            MAX_TEXT_BYTES,
            CUT,
        ),
    )
}

#[cfg(debug_assertions)]
mod test_trigger {
    use std::sync::OnceLock;

    pub const VARIABLE: &str = "DMS_MIGRATE_TEST_PANIC";

    static MESSAGE: OnceLock<Option<String>> = OnceLock::new();

    pub fn panic_if_asked() {
        let message =
            MESSAGE.get_or_init(|| std::env::var(VARIABLE).ok().filter(|v| !v.is_empty()));
        if let Some(message) = message {
            panic!("{message}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_a_named_defect_with_its_message_scrubbed() {
        let outcome = catch_defects(async {
            let url = "postgres://app:hunter2@db.example.com/app";
            let none: Vec<&str> = Vec::new();
            let first = none
                .first()
                .copied()
                .unwrap_or_else(|| panic!("index out of range while reading {url}"));
            Ok::<&str, StepError>(first)
        })
        .await;
        let err = outcome.expect_err("a panic is an error");
        assert_eq!(err.name, ErrorName::ToolDefect);
        assert_eq!(err.name.as_str(), "Tool.Defect");
        assert!(!err.name.is_retried());
        assert!(
            err.message.contains("index out of range"),
            "{}",
            err.message
        );
        assert!(!err.message.contains("hunter2"), "{}", err.message);
        let diagnostic = lambda_runtime::Diagnostic::from(err);
        assert_eq!(diagnostic.error_type, "Tool.Defect");
    }

    #[tokio::test]
    async fn answers_and_errors_pass_through_unchanged() {
        assert_eq!(catch_defects(async { Ok::<_, StepError>(7) }).await, Ok(7));
        let err = StepError::config("missing TOPIC_ARN");
        assert_eq!(
            catch_defects(async { Err::<(), _>(err.clone()) }).await,
            Err(err)
        );
    }

    #[test]
    fn a_huge_panic_message_is_bounded() {
        let payload: Box<dyn Any + Send> = Box::new("x".repeat(100_000));
        assert!(defect_error(payload.as_ref()).message.len() <= MAX_TEXT_BYTES);
    }
}
