//! Connecting to an endpoint exactly as registered (host, port, database, user, password, SSL mode), keeping
//! the raw `tokio_postgres::Error` so TestConnection can word DMS's `LastFailureMessage` from it.
//! The replication engine's own connections go through dms-core's `PgConnectOptions` instead.

use std::time::Duration;

use dms_core::pg::{tls_client_config, SslMode};

use crate::model::Endpoint;

/// DMS gives up on a connection test after about this long; the lab's "dropped packets" trick needs a
/// bound well under the test timeouts.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub enum AttemptError {
    Postgres(tokio_postgres::Error),
    /// TCP connected but TLS or authentication never finished.
    TimedOut,
    /// The TLS client could not even be set up (a bad CA file).
    TlsSetup(String),
}

/// Extra trusted CA certificates (PEM) for verify-full, e.g. the lab CA: `DMS_LOCAL_CA_FILE`.
#[derive(Clone, Default)]
pub struct TrustedCas(pub Option<Vec<u8>>);

pub async fn connect(
    endpoint: &Endpoint,
    cas: &TrustedCas,
) -> Result<tokio_postgres::Client, AttemptError> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&endpoint.host)
        .port(endpoint.port)
        .user(&endpoint.username)
        .password(endpoint.password.0.as_bytes())
        .dbname(&endpoint.database)
        .application_name("dms-local")
        .connect_timeout(CONNECT_TIMEOUT);
    let attempt = async {
        if endpoint.ssl_mode == "none" {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let (client, connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(AttemptError::Postgres)?;
            tokio::spawn(connection);
            Ok(client)
        } else {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            let tls =
                tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(&endpoint.ssl_mode, cas)?);
            let (client, connection) = config.connect(tls).await.map_err(AttemptError::Postgres)?;
            tokio::spawn(connection);
            Ok(client)
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT * 2, attempt)
        .await
        .unwrap_or(Err(AttemptError::TimedOut))
}

/// `require` encrypts without checking the certificate (libpq's meaning, which DMS follows);
/// `verify-ca` and `verify-full` both check chain and host name here (dms-local does not separate them).
fn tls_config(ssl_mode: &str, cas: &TrustedCas) -> Result<rustls::ClientConfig, AttemptError> {
    let mode = if ssl_mode == "require" {
        SslMode::Require
    } else {
        SslMode::VerifyFull
    };
    tls_client_config(mode, cas.0.as_deref()).map_err(|e| AttemptError::TlsSetup(e.message))
}
