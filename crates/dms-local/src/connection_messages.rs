//! The `LastFailureMessage` DMS reports when TestConnection to a PostgreSQL endpoint fails.
//!
//! The shapes follow real DMS messages (the fixtures in
//! `crates/dms-core/tests/fixtures/dms_connection_messages.json`, with their sources), so the
//! connectivity-check Lambda reads dms-local's messages exactly as it reads DMS's. DMS wraps what libpq
//! said in its ODBC driver's text:
//!
//! ```text
//! Test Endpoint failed: Application-Status: 1020912, Application-Message: Failed to connect Network error
//! has occurred, Application-Detailed-Message: RetCode: SQL_ERROR  SqlState: 08001 NativeError: 101 Message:
//! [unixODBC]FATAL:  no pg_hba.conf entry for host "172.31.1.64", user "postgres", database "postgres", no
//! encryption
//!
//! Additional info:
//! Code: [DMS-00100], Message: [no pg_hba.conf entry for ...], NativeErrorCode: [28000]
//! ```
//!
//! The ODBC SqlState is 08001 whatever the cause; a server's own SQLSTATE appears only as
//! `NativeErrorCode` in the `Additional info` DMS adds to server errors. A connect that never completes
//! reads `timeout expired` (DMS connects with a libpq connect_timeout). The libpq texts are PostgreSQL 13's
//! wording, which DMS's driver uses (`could not connect to server: ...`, `Is the server running on host`).
//! Never put the password or a connection string in these messages.

use std::error::Error as _;
use std::io;

use crate::model::{Endpoint, Instance};

/// DMS's Application-Message when the server answered and refused (FATAL from PostgreSQL).
const SERVER_REFUSED: &str = "Failed to connect Network error has occurred";
/// DMS's Application-Message when no PostgreSQL session could be reached (network, DNS, TLS).
const NO_SESSION: &str = "Cannot connect to ODBC provider Network error has occurred";

fn test_endpoint_failed(application_message: &str, libpq_text: &str) -> String {
    format!(
        "Test Endpoint failed: Application-Status: 1020912, Application-Message: {application_message}, \
         Application-Detailed-Message: RetCode: SQL_ERROR  SqlState: 08001 NativeError: 101 Message: [unixODBC]{libpq_text}"
    )
}

fn io_error(err: &tokio_postgres::Error) -> Option<&io::Error> {
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return Some(io);
        }
        source = cause.source();
    }
    None
}

/// libpq 13's hint after a failed TCP connect. The address in parentheses appears when the host is a name.
fn is_the_server_running(endpoint: &Endpoint) -> String {
    format!(
        "\n\tIs the server running on host \"{}\" and accepting\n\tTCP/IP connections on port {}?",
        endpoint.host, endpoint.port
    )
}

/// What libpq reports when the connect gives up (`connect_timeout`), as DMS shows it.
fn timeout_expired() -> String {
    "timeout expired".to_string()
}

fn network_text(io: &io::Error, endpoint: &Endpoint) -> String {
    let detail = io.to_string();
    match io.kind() {
        io::ErrorKind::TimedOut => timeout_expired(),
        io::ErrorKind::ConnectionRefused => format!(
            "could not connect to server: Connection refused{}",
            is_the_server_running(endpoint)
        ),
        io::ErrorKind::NetworkUnreachable => format!(
            "could not connect to server: Network is unreachable{}",
            is_the_server_running(endpoint)
        ),
        io::ErrorKind::HostUnreachable => format!(
            "could not connect to server: No route to host{}",
            is_the_server_running(endpoint)
        ),
        // Rust's resolver: "failed to lookup address information: Name or service not known"; libpq
        // prints the same gai_strerror text after its own words.
        _ if detail.contains("lookup address") || detail.contains("resolve") => {
            let reason = detail
                .rsplit_once(": ")
                .map_or("Name or service not known", |(_, r)| r);
            format!(
                "could not translate host name \"{}\" to address: {reason}",
                endpoint.host
            )
        }
        _ => format!(
            "could not connect to server: {detail}{}",
            is_the_server_running(endpoint)
        ),
    }
}

/// libpq's words for a failed TLS negotiation, from tokio-postgres's (rustls) cause.
fn tls_text(detail: &str) -> String {
    if detail.contains("does not support") {
        // tokio-postgres: "server does not support TLS" for a server answering 'N' to SSLRequest.
        "server does not support SSL, but SSL was required".to_string()
    } else if detail.to_lowercase().contains("certificate") {
        format!("SSL error: certificate verify failed ({detail})")
    } else {
        format!("SSL error: {detail}")
    }
}

/// The message for a connection attempt that failed with `err`.
pub fn failure_message(
    err: &tokio_postgres::Error,
    endpoint: &Endpoint,
    _instance: &Instance,
) -> String {
    if let Some(db) = err.as_db_error() {
        // The server answered: wrong password (28P01), pg_hba (28000), missing database (3D000),
        // shutting down / starting up (57P01 / 57P03)...
        let message = db.message();
        return format!(
            "{}\n\nAdditional info:\nCode: [DMS-00100], Message: [{message}], NativeErrorCode: [{}]",
            test_endpoint_failed(SERVER_REFUSED, &format!("FATAL:  {message}")),
            db.code().code()
        );
    }
    if let Some(io) = io_error(err) {
        return test_endpoint_failed(NO_SESSION, &network_text(io, endpoint));
    }
    let text = err.to_string();
    let detail = err.source().map_or_else(|| text.clone(), |s| s.to_string());
    let lower = text.to_lowercase();
    let libpq = if lower.contains("tls") || lower.contains("ssl") {
        tls_text(&detail)
    } else if lower.contains("timeout") || lower.contains("timed out") {
        timeout_expired()
    } else if err.is_closed() {
        // The server hung up before answering, as libpq words it.
        "server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally\n\tbefore or while processing the request.".to_string()
    } else {
        format!("{text}: {detail}")
    };
    test_endpoint_failed(NO_SESSION, &libpq)
}

/// The message when the attempt did not finish in time (TCP accepted, TLS/auth never answered).
pub fn timeout_message(_endpoint: &Endpoint, _instance: &Instance) -> String {
    test_endpoint_failed(NO_SESSION, &timeout_expired())
}

/// The message when dms-local could not set up TLS at all (its own configuration, not the endpoint's).
pub fn tls_setup_message(detail: &str, _endpoint: &Endpoint, _instance: &Instance) -> String {
    test_endpoint_failed(NO_SESSION, &format!("SSL error: {detail}"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use dms_core::rules::connectivity::{classify_failure, FailureClass};

    use super::*;
    use crate::model::Password;

    fn endpoint(host: &str, port: u16) -> Endpoint {
        Endpoint {
            arn: "arn:aws:dms:us-east-1:123456789012:endpoint:SRC".into(),
            identifier: "src".into(),
            endpoint_type: "source".into(),
            engine: "aurora-postgresql".into(),
            host: host.into(),
            port,
            database: "app".into(),
            username: "postgres".into(),
            password: Password("not-in-any-message".into()),
            ssl_mode: "none".into(),
            secret_id: None,
            slot_name: None,
            plugin_name: None,
            held_status: None,
        }
    }

    fn instance() -> Instance {
        Instance {
            arn: "arn:aws:dms:us-east-1:123456789012:rep:REP".into(),
            identifier: "rep".into(),
            security_group_ids: vec![],
            vpc_id: "vpc-1".into(),
            publicly_accessible: false,
            created: 0.0,
            held_status: None,
        }
    }

    /// A real tokio-postgres connect error against `host:port`.
    async fn connect_error(host: &str, port: u16) -> tokio_postgres::Error {
        let mut config = tokio_postgres::Config::new();
        config
            .host(host)
            .port(port)
            .user("postgres")
            .dbname("app")
            .connect_timeout(Duration::from_secs(2));
        match config.connect(tokio_postgres::NoTls).await {
            Ok(_) => panic!("nothing should accept a PostgreSQL session on {host}:{port}"),
            Err(err) => err,
        }
    }

    #[tokio::test]
    async fn a_port_nobody_listens_on_reads_like_dms_and_is_no_listener() {
        // Bind then drop: the port is free, so the connect is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let err = connect_error("127.0.0.1", port).await;
        let message = failure_message(&err, &endpoint("127.0.0.1", port), &instance());
        assert!(
            message.starts_with("Test Endpoint failed: Application-Status: 1020912"),
            "{message}"
        );
        assert!(
            message.contains("[unixODBC]could not connect to server: Connection refused"),
            "{message}"
        );
        assert_eq!(classify_failure(&message), FailureClass::NoListener);
    }

    #[tokio::test]
    async fn a_host_that_does_not_resolve_is_dns() {
        let err = connect_error("db.example.invalid", 5432).await;
        let message = failure_message(&err, &endpoint("db.example.invalid", 5432), &instance());
        assert!(
            message.contains("could not translate host name \"db.example.invalid\" to address"),
            "{message}"
        );
        assert_eq!(classify_failure(&message), FailureClass::Dns);
    }

    #[tokio::test]
    async fn a_connect_that_times_out_is_security_group() {
        // A listener with a backlog of one that never accepts: once two connects fill its queue, the
        // next one hangs until its timeout (docs/lab.md) — what a dropping security group looks like.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let port = listener.local_addr().unwrap().port();
        let _fill: Vec<_> = fill_backlog(port).await;
        let err = connect_error("127.0.0.1", port).await;
        let message = failure_message(&err, &endpoint("127.0.0.1", port), &instance());
        assert!(message.ends_with("[unixODBC]timeout expired"), "{message}");
        assert_eq!(classify_failure(&message), FailureClass::SecurityGroup);
        assert_eq!(
            classify_failure(&timeout_message(&endpoint("127.0.0.1", port), &instance())),
            FailureClass::SecurityGroup
        );
        drop(listener);
    }

    async fn fill_backlog(port: u16) -> Vec<tokio::net::TcpStream> {
        let mut held = Vec::new();
        for _ in 0..2 {
            if let Ok(Ok(stream)) = tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect(("127.0.0.1", port)),
            )
            .await
            {
                held.push(stream);
            }
        }
        held
    }

    #[test]
    fn tls_failures_read_like_libpq_and_are_tls() {
        for detail in [
            "server does not support TLS",
            "invalid peer certificate: UnknownIssuer",
        ] {
            let message = test_endpoint_failed(NO_SESSION, &tls_text(detail));
            assert_eq!(classify_failure(&message), FailureClass::Tls, "{message}");
        }
        let message = tls_setup_message("no CA", &endpoint("h", 1), &instance());
        assert_eq!(classify_failure(&message), FailureClass::Tls, "{message}");
    }
}
