//! source-checks (docs/architecture.md): runs inside the stack's VPC, in the replication instance's subnets,
//! with a security group of its own that Aurora's group admits on the source port. It receives the source
//! connection from premigration-assessment (`dms_core::pg::source_checks`), runs the source checks of
//! docs/checks.md (dms-core's `checks`), and the way back's checks read on Aurora when the request asks
//! (`fallback`), and answers them with the facts the target checks need. It calls no AWS
//! API, so nothing outside the VPC must be reachable. The event holds the source password: it is never
//! logged, and an unreadable event is reported without its content.

use std::future::Future;

use dms_core::pg::checks::{self, CheckConfig};
use dms_core::pg::source_checks::{SourceChecksRequest, SourceChecksResponse};
use dms_core::pg::PgConnectOptions;
use dms_core::StepError;
use serde_json::Value;

/// Runs the source checks on one database (with the way back's Aurora checks when `fallback`); a trait so
/// the event handling is tested without one.
pub trait SourceDatabase {
    fn check(
        &self,
        source: &PgConnectOptions,
        config: &CheckConfig,
        fallback: bool,
    ) -> impl Future<Output = Result<SourceChecksResponse, StepError>> + Send;
}

pub struct Postgres;

impl SourceDatabase for Postgres {
    async fn check(
        &self,
        source: &PgConnectOptions,
        config: &CheckConfig,
        fallback: bool,
    ) -> Result<SourceChecksResponse, StepError> {
        let client = source.connect().await?;
        let report = checks::run_source_checks_and_fallback(&client, config, fallback).await?;
        Ok(SourceChecksResponse {
            checks: report.checks,
            facts: report.facts,
        })
    }
}

pub async fn handle<D: SourceDatabase>(event: Value, database: &D) -> Result<Value, StepError> {
    // serde's message could quote a value of the event (the password among them): say only where it broke.
    let request: SourceChecksRequest = serde_json::from_value(event).map_err(|e| {
        StepError::payload(format!(
            "source-checks expects {{\"source\": {{host, port, user, password, dbname, sslMode, ...}}, \"config\": {{...}}}} from premigration-assessment; the event does not match (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let source = PgConnectOptions::try_from(request.source)?;
    tracing::info!(source = %source.describe(), fallback = request.fallback, "running the source checks");
    let response = database
        .check(&source, &request.config, request.fallback)
        .await?;
    tracing::info!(checks = response.checks.len(), "source checks done");
    serde_json::to_value(&response).map_err(|e| {
        StepError::new(
            dms_core::ErrorName::ToolDefect,
            format!("the source checks' answer could not be serialized: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use dms_core::pg::checks::{Check, SourceFacts};
    use dms_core::pg::PgConnectWire;
    use dms_core::ErrorName;
    use serde_json::json;

    use super::*;

    struct Fake(
        Result<SourceChecksResponse, StepError>,
        std::sync::Mutex<Option<bool>>,
    );

    impl Fake {
        fn new(answer: Result<SourceChecksResponse, StepError>) -> Fake {
            Fake(answer, std::sync::Mutex::new(None))
        }

        /// The `fallback` flag the last check was asked with.
        fn fallback(&self) -> Option<bool> {
            *self.1.lock().unwrap()
        }
    }

    impl SourceDatabase for Fake {
        async fn check(
            &self,
            source: &PgConnectOptions,
            config: &CheckConfig,
            fallback: bool,
        ) -> Result<SourceChecksResponse, StepError> {
            assert_eq!(source.describe(), "app@aurora.internal:5432/shop");
            assert_eq!(source.password(), Some("s3cret"));
            assert!(!config.cdc);
            *self.1.lock().unwrap() = Some(fallback);
            self.0.clone()
        }
    }

    fn event() -> Value {
        let options =
            PgConnectOptions::from_parts("aurora.internal", 5432, "app", Some("s3cret"), "shop");
        let config = CheckConfig {
            cdc: false,
            ..CheckConfig::default()
        };
        json!({"source": PgConnectWire::from(&options), "config": config})
    }

    #[tokio::test]
    async fn answers_the_checks_and_facts_for_the_connection_it_was_given() {
        let facts = SourceFacts {
            version_num: 160004,
            tables: vec!["public.orders".into()],
            ..SourceFacts::default()
        };
        let fake = Fake::new(Ok(SourceChecksResponse {
            checks: vec![Check::pass("source.version", "PostgreSQL 16.4")],
            facts,
        }));
        let answer = handle(event(), &fake).await.unwrap();
        assert_eq!(answer["checks"][0]["id"], "source.version");
        assert_eq!(answer["checks"][0]["status"], "pass");
        assert_eq!(answer["facts"]["versionNum"], 160004);
        assert_eq!(answer["facts"]["tables"], json!(["public.orders"]));
        assert_eq!(
            fake.fallback(),
            Some(false),
            "a request without the flag (an older assessment's) runs no way-back check"
        );
    }

    #[tokio::test]
    async fn the_fallback_flag_asks_for_the_way_backs_aurora_checks() {
        let fake = Fake::new(Ok(SourceChecksResponse {
            checks: Vec::new(),
            facts: SourceFacts::default(),
        }));
        let mut asked = event();
        asked["fallback"] = json!(true);
        handle(asked, &fake).await.unwrap();
        assert_eq!(fake.fallback(), Some(true));
    }

    #[tokio::test]
    async fn an_unreachable_source_is_the_named_error_the_assessment_reads() {
        let fake = Fake::new(Err(StepError::new(
            ErrorName::PostgresUnreachable,
            "connect to aurora.internal:5432 timed out",
        )));
        let err = handle(event(), &fake).await.unwrap_err();
        assert_eq!(err.name, ErrorName::PostgresUnreachable);
    }

    #[tokio::test]
    async fn a_malformed_event_never_echoes_its_content() {
        let fake = Fake::new(Err(StepError::payload("not called")));
        let err = handle(json!({"source": {"password": "s3cret"}}), &fake)
            .await
            .unwrap_err();
        assert_eq!(err.name, ErrorName::PayloadInvalid);
        assert!(!err.message.contains("s3cret"), "{}", err.message);
    }
}
