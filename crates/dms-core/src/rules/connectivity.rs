//! What a failed DMS connection test means. DMS reports a connection failure as free text in
//! `Connection.LastFailureMessage`: an ODBC wrapper (`Test Endpoint failed: Application-Status: 1020912,
//! Application-Message: ..., Application-Detailed-Message: RetCode: SQL_ERROR SqlState: 08001 NativeError: 101
//! Message: [unixODBC]...`) around what libpq said, sometimes followed by `Additional info: Code: [DMS-00100]`.
//! The cause is in the libpq part, so the classifier reads the phrases libpq (and tokio-postgres, which
//! dms-local uses) produce for each cause. The real messages it was built from are the fixtures in
//! `crates/dms-core/tests/fixtures/dms_connection_messages.json`, each with its source.

use std::sync::LazyLock;

use crate::string_enum::string_enum;
use regex::Regex;

string_enum! {
    /// The cause of a failed connection test, as the state and the emails name it.
    pub enum FailureClass {
        /// The connect timed out or the network had no path: what a security group (or network ACL, or a
        /// missing route) that drops the traffic looks like. AWS security groups drop silently, so a blocked
        /// port never answers "refused".
        SecurityGroup => "security-group",
        /// The host answered but nothing listens on the port, or the server is stopped / starting / stopping.
        NoListener => "no-listener",
        /// Wrong user name or password.
        Auth => "auth",
        /// The TLS handshake or certificate check failed.
        Tls => "tls",
        /// The host name does not resolve.
        Dns => "dns",
        /// `pg_hba.conf` has no entry for this client (on RDS/Aurora with `rds.force_ssl=1`: a non-TLS client).
        PgHba => "pg-hba",
        /// The endpoint names a database that does not exist on the server.
        DatabaseMissing => "database-missing",
        /// None of the above; the raw message is reported as it is.
        Unknown => "unknown",
        /// No test ran: DMS refused TestConnection because the replication instance or the endpoint was not
        /// available (or another test of the pair was running) for as long as the step could wait. Never the
        /// result of `classify_failure`: connectivity-check sets it from the resources' status.
        DmsUnavailable => "dms-unavailable",
    }
}

impl FailureClass {
    /// What the user should do, in one or two sentences.
    pub fn fix(self) -> &'static str {
        match self {
            FailureClass::SecurityGroup => {
                "The connection attempt timed out, which is what a security group or network ACL that drops the traffic looks like: allow inbound TCP on the database port from the DMS replication instance's security group and, on the source, also from the stack's source-checks security group (`<stack>-source-checks`, where the premigration source checks run); sg-autofix adds both rules to the source's group when autoFixSecurityGroup is on. For a database outside the VPC, also check that the instance's subnets route to it (Internet Gateway with a public instance, or a NAT gateway)."
            }
            FailureClass::NoListener => {
                "The host answered but nothing accepts connections on that port: check that the cluster is running (not stopped, starting or rebooting) and that the endpoint's port is the one the database listens on."
            }
            FailureClass::Auth => {
                "The database rejected the user name or password: correct them in the endpoint's Secrets Manager secret (or the endpoint itself) and run the execution again."
            }
            FailureClass::Tls => {
                "The TLS handshake or certificate check failed: set the endpoint's SSL mode to one the server supports (`require` for Aurora), and for `verify-full` import the server's CA certificate into DMS and name the host exactly as the certificate does."
            }
            FailureClass::Dns => {
                "The host name does not resolve from the replication instance: check the spelling of the endpoint's server name, and for a private hosted zone that the instance's VPC uses it (DNS resolution and hostnames enabled)."
            }
            FailureClass::PgHba => {
                "The server's pg_hba.conf refused this client: a refusal ending in \"no encryption\" means the server requires TLS (Aurora with rds.force_ssl=1), so set the endpoint's SSL mode to `require`; otherwise add an entry for the replication instance's address."
            }
            FailureClass::DatabaseMissing => {
                "The database named on the endpoint does not exist on that server: correct the endpoint's database name (it is case-sensitive) or create the database."
            }
            FailureClass::Unknown => {
                "DMS reported a failure this tool does not recognise: read the message, correct the endpoint or the network, and run the execution again."
            }
            FailureClass::DmsUnavailable => {
                "DMS did not run the test, so nothing is known about the network or the database yet: wait until the DMS console shows the replication instance Available and both endpoints Active (a modification, reboot or maintenance ends by itself), then run the execution again."
            }
        }
    }
}

/// Messages that name a quoted object followed by `does not exist`: libpq's `role "..." does not exist`
/// (SQLSTATE 28000, an auth failure) and `database "..." does not exist` (3D000).
static ROLE_MISSING: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"role "[^"]*" does not exist"#).expect("a valid pattern"));
static DATABASE_MISSING: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"database "[^"]*" does not exist"#).expect("a valid pattern"));

/// The classes in the order they are tried: the first that matches wins. The order matters where one
/// message carries two signals — a pg_hba refusal says "no encryption" / "SSL off" (not a TLS failure),
/// and a Secrets Manager timeout inside DMS is not the database's network.
const ORDER: [FailureClass; 8] = [
    FailureClass::Unknown,
    FailureClass::PgHba,
    FailureClass::Auth,
    FailureClass::DatabaseMissing,
    FailureClass::Dns,
    FailureClass::Tls,
    FailureClass::NoListener,
    FailureClass::SecurityGroup,
];

fn any_of(text: &str, phrases: &[&str]) -> bool {
    phrases.iter().any(|p| text.contains(p))
}

/// Whether `text` (lowercase) carries the signal of `class`.
fn signals(class: FailureClass, text: &str) -> bool {
    match class {
        // DMS could not read the endpoint's secret: not a database connection at all, and its
        // "Timeout was reached" must not read as a blocked database port.
        FailureClass::Unknown => any_of(text, &["secrets manager", "secretsmanager"]),
        // Set from the resources' status, never read from a failure message.
        FailureClass::DmsUnavailable => false,
        // libpq: `no pg_hba.conf entry for host "...", user "...", database "...", no encryption` (PG 15+)
        // or `..., SSL off` (older); `pg_hba.conf rejects connection for host ...`.
        FailureClass::PgHba => any_of(
            text,
            &["no pg_hba.conf entry", "pg_hba.conf rejects connection"],
        ),
        // libpq: `password authentication failed for user "..."` (28P01), `role "..." does not exist`,
        // `no password supplied`; tokio-postgres: `password missing`, `invalid password`.
        FailureClass::Auth => {
            ROLE_MISSING.is_match(text)
                || any_of(
                    text,
                    &[
                        "password authentication failed",
                        "authentication failed for user",
                        "sasl authentication failed",
                        "no password supplied",
                        "password missing",
                        "invalid password",
                    ],
                )
        }
        FailureClass::DatabaseMissing => DATABASE_MISSING.is_match(text),
        // libpq: `could not translate host name "..." to address: Name or service not known`;
        // tokio-postgres / Rust std: `failed to lookup address information: ...`.
        FailureClass::Dns => any_of(
            text,
            &[
                "could not translate host name",
                "name or service not known",
                "temporary failure in name resolution",
                "nodename nor servname",
                "failed to lookup address",
                "no address associated with hostname",
                "unknown host",
            ],
        ),
        // libpq: `SSL error: certificate verify failed`, `server does not support SSL, but SSL was
        // required`, `SSL SYSCALL error`, `root certificate file ... does not exist`; tokio-postgres:
        // `error performing TLS handshake`, `server does not support TLS`.
        FailureClass::Tls => any_of(
            text,
            &[
                "ssl error",
                "ssl syscall",
                "does not support ssl",
                "does not support tls",
                "tls handshake",
                "certificate",
                "ssl negotiation",
            ],
        ),
        // libpq: `Connection refused ... Is the server running on host ... and accepting TCP/IP
        // connections`; the server itself while stopping or starting: `the database system is shutting
        // down` / `is starting up` / `is not yet accepting connections`.
        FailureClass::NoListener => any_of(
            text,
            &[
                "connection refused",
                "econnrefused",
                "os error 111",
                "the database system is shutting down",
                "the database system is starting up",
                "the database system is not yet accepting connections",
                "the database system is not accepting connections",
            ],
        ),
        // libpq: `timeout expired` (connect_timeout) or `Connection timed out`; `Network is unreachable`,
        // `No route to host`; tokio-postgres: `timeout waiting for server`, `os error 110`.
        FailureClass::SecurityGroup => any_of(
            text,
            &[
                "timeout expired",
                "timed out",
                "timeout waiting for server",
                "etimedout",
                "os error 110",
                "network is unreachable",
                "no route to host",
            ],
        ),
    }
}

/// Classifies a DMS `LastFailureMessage` (or a libpq / tokio-postgres connect error).
pub fn classify_failure(message: &str) -> FailureClass {
    let text = message.to_lowercase();
    ORDER
        .into_iter()
        .find(|class| signals(*class, &text))
        .unwrap_or(FailureClass::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for class in FailureClass::ALL {
            assert_eq!(FailureClass::parse(class.as_str()), Some(class));
            assert!(!class.fix().is_empty());
        }
        assert_eq!(FailureClass::parse("firewall"), None);
    }

    #[test]
    fn pg_hba_wins_over_its_ssl_words() {
        assert_eq!(
            classify_failure(
                "FATAL: no pg_hba.conf entry for host \"10.0.0.1\", user \"u\", database \"d\", SSL off"
            ),
            FailureClass::PgHba
        );
    }

    #[test]
    fn a_role_that_does_not_exist_is_auth_and_a_database_is_not() {
        assert_eq!(
            classify_failure("FATAL:  role \"migrator\" does not exist"),
            FailureClass::Auth
        );
        assert_eq!(
            classify_failure("FATAL:  database \"app\" does not exist"),
            FailureClass::DatabaseMissing
        );
    }

    #[test]
    fn empty_and_unrelated_text_is_unknown() {
        assert_eq!(classify_failure(""), FailureClass::Unknown);
        assert_eq!(
            classify_failure("Test Endpoint failed: Application-Status: 1020912, Application-Message: Failed to connect to database."),
            FailureClass::Unknown
        );
    }
}
