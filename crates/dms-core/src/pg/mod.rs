//! The PostgreSQL plumbing (the SQL checks, sequences, `.pgpass`, the in-VPC source checks' request and
//! answer) and connecting to PostgreSQL: from a URL or from parts (a Secrets Manager secret), with TLS that verifies
//! the server by default, bounded connect and statement times, and a password that never reaches a
//! `Debug`, a log line or an error message.

pub mod checks;
pub mod pgpass;
pub mod sequences;
pub mod source_checks;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::error::SqlState;

use crate::errors::{ErrorName, StepError};
use crate::string_enum::string_enum;

string_enum! {
    pub enum SslMode {
        /// No TLS: only for the local lab.
        Disable => "disable",
        /// TLS without checking who answers (libpq's `require`): encrypted, not authenticated.
        Require => "require",
        /// TLS with the certificate chain and the host name checked (the default for the target).
        VerifyFull => "verify-full",
    }
}

#[derive(Clone)]
pub struct PgConnectOptions {
    pub host: String,
    pub port: u16,
    pub user: String,
    password: Option<String>,
    pub dbname: String,
    pub ssl_mode: SslMode,
    /// Extra trusted CA certificates (PEM), e.g. the RDS CA bundle for verify-full to Aurora.
    pub root_cert_pem: Option<Vec<u8>>,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
    pub application_name: String,
}

impl fmt::Debug for PgConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnectOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field(
                "password",
                &self.password.as_ref().map(|_| crate::rules::redact::MASK),
            )
            .field("dbname", &self.dbname)
            .field("ssl_mode", &self.ssl_mode)
            .field(
                "root_cert_pem",
                &self.root_cert_pem.as_ref().map(|p| p.len()),
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

/// Connection options as JSON, for one purpose: the assessment hands the source's connection to the
/// function that runs the source checks inside the VPC, in the synchronous `lambda:Invoke` payload (never
/// through Step Functions, whose history would keep it). The password is in it: no `Debug`, never logged.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PgConnectWire {
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
    dbname: String,
    ssl_mode: String,
    root_cert_pem: Option<String>,
    connect_timeout_seconds: u64,
    statement_timeout_seconds: u64,
    application_name: String,
}

impl From<&PgConnectOptions> for PgConnectWire {
    fn from(o: &PgConnectOptions) -> Self {
        PgConnectWire {
            host: o.host.clone(),
            port: o.port,
            user: o.user.clone(),
            password: o.password.clone(),
            dbname: o.dbname.clone(),
            ssl_mode: o.ssl_mode.as_str().to_string(),
            root_cert_pem: o
                .root_cert_pem
                .as_ref()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            connect_timeout_seconds: o.connect_timeout.as_secs(),
            statement_timeout_seconds: o.statement_timeout.as_secs(),
            application_name: o.application_name.clone(),
        }
    }
}

impl TryFrom<PgConnectWire> for PgConnectOptions {
    type Error = StepError;

    fn try_from(w: PgConnectWire) -> Result<Self, StepError> {
        let ssl_mode = SslMode::parse(&w.ssl_mode).ok_or_else(|| {
            StepError::payload(format!(
                "sslMode `{}` is not one of disable, require, verify-full",
                w.ssl_mode
            ))
        })?;
        let mut options = PgConnectOptions::from_parts(
            &w.host,
            w.port,
            &w.user,
            w.password.as_deref(),
            &w.dbname,
        );
        options.ssl_mode = ssl_mode;
        options.root_cert_pem = w.root_cert_pem.map(String::into_bytes);
        options.connect_timeout = Duration::from_secs(w.connect_timeout_seconds.max(1));
        options.statement_timeout = Duration::from_secs(w.statement_timeout_seconds.max(1));
        options.application_name = w.application_name;
        Ok(options)
    }
}

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);

impl PgConnectOptions {
    pub fn from_parts(
        host: &str,
        port: u16,
        user: &str,
        password: Option<&str>,
        dbname: &str,
    ) -> Self {
        PgConnectOptions {
            host: host.to_string(),
            port,
            user: user.to_string(),
            password: password.map(str::to_string),
            dbname: dbname.to_string(),
            ssl_mode: SslMode::VerifyFull,
            root_cert_pem: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
            application_name: "aurora-to-ps-dms".to_string(),
        }
    }

    /// `postgres[ql]://user[:password]@host[:port]/dbname[?sslmode=&sslrootcert=&connect_timeout=]`.
    /// `default_ssl` applies when the URL names no `sslmode`. Errors never echo the URL (it may hold a password).
    pub fn from_url(text: &str, default_ssl: SslMode) -> Result<Self, StepError> {
        let bad = |why: &str| {
            StepError::new(
                ErrorName::PayloadInvalid,
                format!("connection URL: {why}; expected postgres://USER@HOST:PORT/DBNAME?sslmode=verify-full"),
            )
        };
        let url = url::Url::parse(text.trim()).map_err(|e| bad(&format!("not a URL ({e})")))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(bad(&format!("scheme `{}` is not postgres", url.scheme())));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let decode = |s: &str| {
            percent_decode(s)
                .ok_or_else(|| bad("user or password is not valid percent-encoded UTF-8"))
        };
        let user = decode(url.username())?;
        if user.is_empty() {
            return Err(bad("no user"));
        }
        let password = url.password().map(decode).transpose()?;
        let dbname = decode(url.path().trim_start_matches('/'))?;
        let dbname = if dbname.is_empty() {
            user.clone()
        } else {
            dbname
        };
        let mut options = PgConnectOptions::from_parts(
            &host,
            url.port().unwrap_or(5432),
            &user,
            password.as_deref(),
            &dbname,
        );
        options.ssl_mode = default_ssl;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "sslmode" => {
                    options.ssl_mode = SslMode::parse(&value).ok_or_else(|| {
                        bad(&format!(
                            "sslmode `{value}` is not one of disable, require, verify-full"
                        ))
                    })?
                }
                "sslrootcert" => {
                    let pem = std::fs::read(value.as_ref())
                        .map_err(|e| bad(&format!("sslrootcert `{value}` cannot be read ({e})")))?;
                    options.root_cert_pem = Some(pem);
                }
                "connect_timeout" => {
                    let secs: u64 = value
                        .parse()
                        .map_err(|_| bad("connect_timeout is not a number of seconds"))?;
                    options.connect_timeout = Duration::from_secs(secs.max(1));
                }
                "application_name" => options.application_name = value.into_owned(),
                other => return Err(bad(&format!("parameter `{other}` is not supported"))),
            }
        }
        Ok(options)
    }

    pub fn with_password(mut self, password: Option<String>) -> Self {
        if password.is_some() {
            self.password = password;
        }
        self
    }

    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// For a child process's environment (`PGPASSWORD` for `pg_dump`), never a command line or a message.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// `user@host:port/dbname`: safe to print.
    pub fn describe(&self) -> String {
        format!("{}@{}:{}/{}", self.user, self.host, self.port, self.dbname)
    }

    pub async fn connect(&self) -> Result<tokio_postgres::Client, StepError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name(&self.application_name)
            .connect_timeout(self.connect_timeout)
            .options(format!(
                "-c statement_timeout={}",
                self.statement_timeout.as_millis()
            ));
        if let Some(password) = &self.password {
            config.password(password);
        }
        // connect_timeout bounds the TCP connect; this bounds TLS and authentication too.
        let deadline = self.connect_timeout * 2;
        let attempt = async {
            match self.ssl_mode {
                SslMode::Disable => {
                    config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
                    tokio::spawn(drive(connection));
                    Ok(client)
                }
                SslMode::Require | SslMode::VerifyFull => {
                    config.ssl_mode(tokio_postgres::config::SslMode::Require);
                    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(self.tls_config()?);
                    let (client, connection) = config.connect(tls).await?;
                    tokio::spawn(drive(connection));
                    Ok(client)
                }
            }
        };
        match tokio::time::timeout(deadline, attempt).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(ConnectFailure::Tls(err))) => Err(err),
            Ok(Err(ConnectFailure::Postgres(err))) => Err(classify_pg_error(&self.describe(), &err)),
            Err(_) => Err(StepError::new(
                ErrorName::PostgresUnreachable,
                format!(
                    "connecting to {} did not complete within {} s (a firewall or security group dropping packets looks like this)",
                    self.describe(),
                    deadline.as_secs()
                ),
            )),
        }
    }

    fn tls_config(&self) -> Result<rustls::ClientConfig, StepError> {
        tls_client_config(self.ssl_mode, self.root_cert_pem.as_deref())
    }
}

/// The TLS client for `require` (encrypt only, as libpq) or `verify-full` (public roots plus the given CA
/// PEM, host name checked). Shared by every PostgreSQL client of the project, dms-local's included.
pub fn tls_client_config(
    ssl_mode: SslMode,
    root_cert_pem: Option<&[u8]>,
) -> Result<rustls::ClientConfig, StepError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StepError::config(format!("TLS setup: {e}")))?;
    let config = match ssl_mode {
        SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth(),
        _ => {
            let mut roots = RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            if let Some(pem) = root_cert_pem {
                let mut reader = pem;
                for cert in rustls_pemfile::certs(&mut reader) {
                    let cert = cert.map_err(|e| {
                        StepError::payload(format!("sslrootcert: not a PEM certificate ({e})"))
                    })?;
                    roots.add(cert).map_err(|e| {
                        StepError::payload(format!("sslrootcert: unusable certificate ({e})"))
                    })?;
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(config)
}

enum ConnectFailure {
    Tls(StepError),
    Postgres(tokio_postgres::Error),
}

impl From<StepError> for ConnectFailure {
    fn from(err: StepError) -> Self {
        ConnectFailure::Tls(err)
    }
}

impl From<tokio_postgres::Error> for ConnectFailure {
    fn from(err: tokio_postgres::Error) -> Self {
        ConnectFailure::Postgres(err)
    }
}

async fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio_postgres::tls::TlsStream + Unpin,
{
    if let Err(err) = connection.await {
        tracing::warn!(error = %crate::rules::redact::redact_secrets(&err.to_string()), "postgres connection closed");
    }
}

/// The whole chain of causes, e.g. "error performing TLS handshake: invalid peer certificate: UnknownIssuer".
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// Names a PostgreSQL error by what the caller can do about it, asserting on SQLSTATE, not message text.
pub fn classify_pg_error(target: &str, err: &tokio_postgres::Error) -> StepError {
    let detail = error_chain(err);
    let name = match err.code() {
        Some(code)
            if *code == SqlState::INVALID_PASSWORD
                || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            ErrorName::PostgresAuthFailed
        }
        Some(code)
            if *code == SqlState::INVALID_CATALOG_NAME
                || *code == SqlState::TOO_MANY_CONNECTIONS
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::ADMIN_SHUTDOWN =>
        {
            ErrorName::PostgresUnreachable
        }
        Some(_) => ErrorName::PostgresQueryFailed,
        None if err.is_closed() || err.as_db_error().is_none() => ErrorName::PostgresUnreachable,
        None => ErrorName::PostgresQueryFailed,
    };
    StepError::new(name, format!("{target}: {detail}"))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `sslmode=require`: the session is encrypted, but the certificate is not checked (as libpq does).
/// Signatures are still verified so the handshake itself is sound.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parts_and_defaults() {
        let o = PgConnectOptions::from_url(
            "postgresql://mig%40ra:p%2Fw@db.example.com:6432/app",
            SslMode::VerifyFull,
        )
        .unwrap();
        assert_eq!(
            (o.user.as_str(), o.host.as_str(), o.port, o.dbname.as_str()),
            ("mig@ra", "db.example.com", 6432, "app")
        );
        assert_eq!(o.password.as_deref(), Some("p/w"));
        assert_eq!(o.ssl_mode, SslMode::VerifyFull);
        let o = PgConnectOptions::from_url(
            "postgres://app@127.0.0.1/x?sslmode=disable&connect_timeout=3",
            SslMode::VerifyFull,
        )
        .unwrap();
        assert_eq!(
            (o.ssl_mode, o.connect_timeout, o.port),
            (SslMode::Disable, Duration::from_secs(3), 5432)
        );
        assert!(!o.has_password());
    }

    #[test]
    fn password_never_in_debug_describe_or_errors() {
        let o =
            PgConnectOptions::from_url("postgres://app:hunter2@db/x", SslMode::Require).unwrap();
        assert!(!format!("{o:?}").contains("hunter2"));
        assert!(!o.describe().contains("hunter2"));
        for bad in [
            "mysql://app:hunter2@db/x",
            "postgres://app:hunter2@db/x?sslmode=prefer",
            "postgres://app:hunter2@db/x?foo=1",
            "postgres://:hunter2@db/x",
        ] {
            let err = PgConnectOptions::from_url(bad, SslMode::Require).unwrap_err();
            assert!(!err.message.contains("hunter2"), "{bad}: {}", err.message);
            assert!(!format!("{err:?}").contains("hunter2"));
        }
    }
}
