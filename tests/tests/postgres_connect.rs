//! dms-core's Postgres connect helper against the lab clusters: each TLS mode, and each failure named by what
//! the user can do about it, with the password nowhere in the error.

use std::time::Duration;

use dms_core::pg::{PgConnectOptions, SslMode};
use dms_core::ErrorName;
use integration_tests::lab::Lab;

fn options(lab: &Lab, port_key: &str, password: &str, db: &str, ssl: SslMode) -> PgConnectOptions {
    let port: u16 = lab.var(port_key).parse().expect("port");
    let mut o = PgConnectOptions::from_parts(
        "127.0.0.1",
        port,
        &lab.var("LAB_ADMIN_USER"),
        Some(password),
        db,
    );
    o.ssl_mode = ssl;
    o.connect_timeout = Duration::from_secs(3);
    o
}

#[tokio::test]
async fn tls_modes() {
    let Some(lab) = Lab::get().await else { return };
    let password = lab.var("LAB_ADMIN_PASSWORD");

    let client = options(&lab, "TARGET_PORT", &password, "postgres", SslMode::Require)
        .connect()
        .await
        .expect("require connects");
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("query");
    assert!(row.get::<_, bool>(0), "require means encrypted");

    let client = options(&lab, "SOURCE_PORT", &password, "postgres", SslMode::Disable)
        .connect()
        .await
        .expect("disable connects");
    let row = client
        .query_one("SELECT current_setting('statement_timeout')", &[])
        .await
        .expect("query");
    assert_eq!(
        row.get::<_, String>(0),
        "1min",
        "the statement timeout is set on every session"
    );

    // The lab CA is not a public one: verify-full without it must refuse the server.
    let err = options(
        &lab,
        "TARGET_PORT",
        &password,
        "postgres",
        SslMode::VerifyFull,
    )
    .connect()
    .await
    .expect_err("untrusted cert");
    assert_eq!(err.name, ErrorName::PostgresUnreachable, "{}", err.message);
    assert!(
        err.message.to_lowercase().contains("certificate"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn verify_full_accepts_the_server_with_its_ca_given() {
    let Some(lab) = Lab::get().await else { return };
    let pem = std::fs::read(lab.var("LAB_CA_CERT")).expect("lab CA certificate");
    let mut o = options(
        &lab,
        "TARGET_PORT",
        &lab.var("LAB_ADMIN_PASSWORD"),
        "postgres",
        SslMode::VerifyFull,
    );
    o.host = "localhost".to_string();
    o.root_cert_pem = Some(pem.clone());
    let client = o
        .connect()
        .await
        .expect("verify-full with the right CA connects");
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("query");
    assert!(row.get::<_, bool>(0));

    // The certificate names localhost only: the same server reached as 127.0.0.1 must be refused.
    let mut o = options(
        &lab,
        "TARGET_PORT",
        &lab.var("LAB_ADMIN_PASSWORD"),
        "postgres",
        SslMode::VerifyFull,
    );
    o.root_cert_pem = Some(pem);
    let err = o.connect().await.expect_err("name mismatch");
    assert_eq!(err.name, ErrorName::PostgresUnreachable, "{}", err.message);
    assert!(
        err.message.contains("not valid for name"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn failures_are_named_and_never_show_the_password() {
    let Some(lab) = Lab::get().await else { return };
    let err = options(
        &lab,
        "SOURCE_PORT",
        "wrong-Pa55",
        "postgres",
        SslMode::Disable,
    )
    .connect()
    .await
    .expect_err("bad password");
    assert_eq!(err.name, ErrorName::PostgresAuthFailed, "{}", err.message);
    assert!(!err.message.contains("wrong-Pa55"), "{}", err.message);

    let err = options(
        &lab,
        "SOURCE_PORT",
        &lab.var("LAB_ADMIN_PASSWORD"),
        "no_such_db",
        SslMode::Disable,
    )
    .connect()
    .await
    .expect_err("missing database");
    assert_eq!(err.name, ErrorName::PostgresUnreachable, "{}", err.message);
    assert!(err.message.contains("no_such_db"), "{}", err.message);

    let closed = integration_tests::lambda::free_port();
    let mut o = options(
        &lab,
        "SOURCE_PORT",
        "Secret-1",
        "postgres",
        SslMode::Disable,
    );
    o.port = closed;
    let err = o.connect().await.expect_err("nobody listens");
    assert_eq!(err.name, ErrorName::PostgresUnreachable, "{}", err.message);
    assert!(!err.message.contains("Secret-1") && !format!("{o:?}").contains("Secret-1"));
}
