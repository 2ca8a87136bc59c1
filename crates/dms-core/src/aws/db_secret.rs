//! Database credentials for direct SQL from a Lambda: the Secrets Manager secret a DMS endpoint names
//! (DescribeEndpoints → `PostgreSQLSettings.SecretsManagerSecretId`). DMS never returns an endpoint's
//! password, so without a secret a Lambda cannot connect. The secret JSON carries `host`, `port`,
//! `username`, `password` and `dbname` (docs/template.md); the password never reaches a log line or an error.

use std::fmt;
use std::future::Future;

use serde_json::Value;

use crate::aws::dms::EndpointInfo;
use crate::errors::{classify_sdk_error, StepError};
use crate::pg::{PgConnectOptions, SslMode};

/// The IAM action the adapter needs (the stack's policy is derived from these strings).
pub const GET_SECRET_VALUE_ACTION: &str = "secretsmanager:GetSecretValue";

/// Reads a secret's text. The real adapter is `SecretsManagerStore`; tests pass a fake.
pub trait SecretStore {
    fn secret_string(
        &self,
        secret_id: &str,
    ) -> impl Future<Output = Result<String, StepError>> + Send;
}

#[derive(Clone)]
pub struct SecretsManagerStore {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManagerStore {
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        SecretsManagerStore { client }
    }
}

impl SecretStore for SecretsManagerStore {
    async fn secret_string(&self, secret_id: &str) -> Result<String, StepError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| classify_sdk_error(GET_SECRET_VALUE_ACTION, secret_id, &e))?;
        out.secret_string().map(str::to_string).ok_or_else(|| {
            StepError::config(format!(
                "secret {secret_id} holds binary data; expected JSON text with host, port, username, password and dbname"
            ))
        })
    }
}

/// A database secret as parsed; `Debug` masks the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DbSecret {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub username: Option<String>,
    password: Option<String>,
    pub dbname: Option<String>,
}

impl fmt::Debug for DbSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbSecret")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field(
                "password",
                &self.password.as_ref().map(|_| crate::rules::redact::MASK),
            )
            .field("dbname", &self.dbname)
            .finish()
    }
}

impl DbSecret {
    /// Parses the secret's JSON. The error names the secret and the field, never the content.
    pub fn parse(secret_id: &str, text: &str) -> Result<DbSecret, StepError> {
        let bad = |why: &str| {
            StepError::config(format!(
                "secret {secret_id}: {why}; expected JSON with host, port, username, password and dbname"
            ))
        };
        let value: Value = serde_json::from_str(text).map_err(|_| bad("not JSON"))?;
        let object = value.as_object().ok_or_else(|| bad("not a JSON object"))?;
        let text_field = |key: &str| -> Result<Option<String>, StepError> {
            match object.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
                Some(_) => Err(bad(&format!("`{key}` is not text"))),
            }
        };
        // RDS-managed secrets store the port as a number, hand-made ones often as text.
        let port = match object.get("port") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(
                n.as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| bad("`port` is not a port number"))?,
            ),
            Some(Value::String(s)) => Some(
                s.trim()
                    .parse::<u16>()
                    .map_err(|_| bad("`port` is not a port number"))?,
            ),
            Some(_) => return Err(bad("`port` is not a port number")),
        };
        Ok(DbSecret {
            host: text_field("host")?,
            port,
            username: text_field("username")?,
            password: match object.get("password") {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                _ => None,
            },
            dbname: text_field("dbname")?,
        })
    }

    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }
}

/// How the Lambda connects, following the endpoint's `SslMode`. `verify-ca` becomes `require`: the CA
/// DMS was given (an `AWS::DMS::Certificate`) is not readable from here, so only encryption is kept.
fn ssl_mode_for(endpoint: &EndpointInfo) -> SslMode {
    match endpoint.ssl_mode.as_deref() {
        Some("verify-full") => SslMode::VerifyFull,
        Some("require") | Some("verify-ca") => SslMode::Require,
        _ => SslMode::Disable,
    }
}

/// Connection options for an endpoint's database: the secret's values first, the endpoint's where the
/// secret is silent. Fails with `Config.Invalid` when no password is available, naming what to set.
pub async fn endpoint_connect_options<S: SecretStore>(
    endpoint: &EndpointInfo,
    secrets: &S,
) -> Result<PgConnectOptions, StepError> {
    let Some(secret_id) = endpoint.secret_id.as_deref().filter(|s| !s.is_empty()) else {
        let shown = format!(
            "{}@{}:{}/{}",
            endpoint.username.as_deref().unwrap_or("?"),
            endpoint.server.as_deref().unwrap_or("?"),
            endpoint.port.map_or("?".to_string(), |p| p.to_string()),
            endpoint.database.as_deref().unwrap_or("?"),
        );
        return Err(StepError::config(format!(
            "endpoint {} ({shown}) names no Secrets Manager secret (PostgreSQLSettings.SecretsManagerSecretId), and DMS never returns an endpoint's password, so the password for {shown} is unavailable to this Lambda. Give the endpoint a secret with host, port, username, password and dbname (the stack does), or do this step by hand",
            endpoint.arn
        )));
    };
    let secret = DbSecret::parse(secret_id, &secrets.secret_string(secret_id).await?)?;
    let missing = |field: &str| {
        StepError::config(format!(
            "secret {secret_id} of endpoint {} has no `{field}`, and the endpoint does not name one either",
            endpoint.arn
        ))
    };
    let host = secret
        .host
        .clone()
        .or_else(|| endpoint.server.clone())
        .ok_or_else(|| missing("host"))?;
    let port = secret
        .port
        .or_else(|| endpoint.port.and_then(|p| u16::try_from(p).ok()))
        .unwrap_or(5432);
    let user = secret
        .username
        .clone()
        .or_else(|| endpoint.username.clone())
        .ok_or_else(|| missing("username"))?;
    let dbname = secret
        .dbname
        .clone()
        .or_else(|| endpoint.database.clone())
        .ok_or_else(|| missing("dbname"))?;
    if secret.password.is_none() {
        return Err(missing("password"));
    }
    let mut options = PgConnectOptions::from_parts(&host, port, &user, None, &dbname)
        .with_password(secret.password.clone());
    options.ssl_mode = ssl_mode_for(endpoint);
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::ErrorName;

    struct FakeSecrets(Result<String, StepError>);

    impl SecretStore for FakeSecrets {
        async fn secret_string(&self, _secret_id: &str) -> Result<String, StepError> {
            self.0.clone()
        }
    }

    fn endpoint(secret: Option<&str>) -> EndpointInfo {
        EndpointInfo {
            arn: "arn:aws:dms:us-east-1:123456789012:endpoint:TGT".into(),
            server: Some("endpoint.example.com".into()),
            port: Some(6432),
            database: Some("app".into()),
            username: Some("dms_user".into()),
            ssl_mode: Some("verify-full".into()),
            secret_id: secret.map(str::to_string),
            ..EndpointInfo::default()
        }
    }

    #[tokio::test]
    async fn the_secret_wins_and_the_endpoint_fills_gaps() {
        let secrets = FakeSecrets(Ok(
            r#"{"host":"db.example.com","port":"5433","username":"migrator","password":"hunter2"}"#
                .into(),
        ));
        let o = endpoint_connect_options(&endpoint(Some("tgt-secret")), &secrets)
            .await
            .unwrap();
        assert_eq!(o.describe(), "migrator@db.example.com:5433/app");
        assert!(o.has_password());
        assert_eq!(o.ssl_mode, SslMode::VerifyFull);
        assert!(!format!("{o:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn no_secret_means_no_password_and_says_so() {
        let secrets = FakeSecrets(Ok("{}".into()));
        let err = endpoint_connect_options(&endpoint(None), &secrets)
            .await
            .unwrap_err();
        assert_eq!(err.name, ErrorName::ConfigInvalid);
        assert!(
            err.message
                .contains("password for dms_user@endpoint.example.com:6432/app is unavailable"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn bad_secrets_are_named_without_their_content() {
        for text in [
            "not json hunter2",
            r#"{"port": "x", "password": "hunter2"}"#,
            r#"{"host": "h", "username": "u", "dbname": "d"}"#,
        ] {
            let secrets = FakeSecrets(Ok(text.into()));
            let err = endpoint_connect_options(&endpoint(Some("s1")), &secrets)
                .await
                .unwrap_err();
            assert_eq!(err.name, ErrorName::ConfigInvalid, "{text}");
            assert!(err.message.contains("s1"), "{}", err.message);
            assert!(!err.message.contains("hunter2"), "{}", err.message);
        }
        let secrets = FakeSecrets(Err(StepError::new(ErrorName::AwsAccessDenied, "denied")));
        let err = endpoint_connect_options(&endpoint(Some("s1")), &secrets)
            .await
            .unwrap_err();
        assert_eq!(err.name, ErrorName::AwsAccessDenied);
    }

    #[test]
    fn debug_masks_the_password() {
        let s = DbSecret::parse("s", r#"{"password":"hunter2","port":5432}"#).unwrap();
        assert!(s.has_password());
        assert_eq!(s.port, Some(5432));
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
