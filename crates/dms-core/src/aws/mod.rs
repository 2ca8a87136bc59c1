//! The AWS adapters, one module per service behind its capability trait, and the AWS configuration they
//! share, loaded once per cold start. `aws-config` honours `AWS_ENDPOINT_URL` and
//! `AWS_ENDPOINT_URL_<SERVICE>`, which is how the lab points the Lambdas at moto and dms-local.

pub mod assessment_runs;
pub mod db_secret;
pub mod dms;
pub mod ec2;
pub mod metrics;
pub mod notifier;
pub mod rds;
pub mod s3;
pub mod sg_rules;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_config::environment::{
    EnvironmentVariableCredentialsProvider, EnvironmentVariableRegionProvider,
};
use aws_config::meta::region::ProvideRegion;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::provider::ProvideCredentials;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use rustls::pki_types::{pem::PemObject, CertificateDer};

use crate::errors::StepError;

/// One attempt may not hang for the whole Lambda timeout: a stuck call becomes `Aws.Transient`, which the
/// state machine retries, instead of a Lambda timeout (`Sandbox.Timedout`,
/// https://docs.aws.amazon.com/lambda/latest/dg/troubleshooting-invocation.html#troubleshooting-timeouts),
/// which it does not.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest one SDK call may take, its retried attempts included. Every Lambda's `Timeout` in the
/// template is at least this plus a margin, and every Task's `TimeoutSeconds` is at least that `Timeout`
/// plus a margin (tests/tests/template_contract.rs checks both).
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);

/// The platform's whole trust store as one PEM file, first match wins.
const PLATFORM_CA_BUNDLES: [&str; 2] = [
    // Amazon Linux 2023 (the Lambda runtime), RHEL, Fedora.
    "/etc/pki/tls/certs/ca-bundle.crt",
    // Debian, Ubuntu.
    "/etc/ssl/certs/ca-certificates.crt",
];

pub async fn load_config() -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        );
    // The default chains try the environment first and stop there when it answers, and Lambda always puts
    // the region and the role's credentials there. Taking them straight from it skips building the rest of
    // the chains (an STS client for web identity, an IMDS client), a tenth of a cold start's CPU time.
    if let Some(region) = EnvironmentVariableRegionProvider::new().region().await {
        loader = loader.region(region);
    }
    let env_credentials = EnvironmentVariableCredentialsProvider::new();
    if env_credentials.provide_credentials().await.is_ok() {
        loader = loader.credentials_provider(env_credentials);
    }
    loader.load().await
}

/// The SDK's default HTTPS client, with the same crypto provider, trusting the same roots, but read from the
/// platform's CA bundle alone. The default also reads every file of the certificate directory (about 150 on
/// Debian, each a root the bundle already holds), which was the largest single cost of a cold start.
fn https_client() -> SharedHttpClient {
    let builder =
        aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::AwsLc));
    let bundle = ca_bundle_path(
        std::env::var_os("SSL_CERT_FILE"),
        std::env::var_os("SSL_CERT_DIR"),
        &PLATFORM_CA_BUNDLES.map(Path::new),
    );
    let Some(path) = bundle else {
        return builder.build_https();
    };
    match bundle_tls_context(&path) {
        Ok(context) => SharedHttpClient::new(ConnectAtFirstRequest(
            builder.tls_context(context).build_https(),
        )),
        Err(reason) => {
            tracing::warn!(
                bundle = %path.display(),
                %reason,
                "CA bundle not usable; falling back to the SDK's own search for trusted roots"
            );
            builder.build_https()
        }
    }
}

fn bundle_tls_context(path: &Path) -> Result<TlsContext, String> {
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    let store = bundle_trust_store(pem).map_err(|e| e.to_string())?;
    TlsContext::builder()
        .with_trust_store(store)
        .build()
        .map_err(|e| e.to_string())
}

/// The SDK's client builds a connector, trust store and all, at every SDK client's construction only to load
/// the native roots early, then throws it away and builds another at the first request. Read from one bundle
/// the roots cost the same every time, so that early build is a whole extra pass per client; this client
/// builds its connector at the first request only.
#[derive(Debug)]
struct ConnectAtFirstRequest(SharedHttpClient);

impl HttpClient for ConnectAtFirstRequest {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

/// The one PEM file holding every root the platform trusts, chosen the way OpenSSL does: `SSL_CERT_FILE`
/// first, then the platform's bundle. `None` keeps the SDK's own search, which is the only one that honours
/// `SSL_CERT_DIR` (a directory someone chose on purpose must not be skipped).
fn ca_bundle_path(
    ssl_cert_file: Option<OsString>,
    ssl_cert_dir: Option<OsString>,
    platform_bundles: &[&Path],
) -> Option<PathBuf> {
    if ssl_cert_dir.is_some_and(|dir| !dir.is_empty()) {
        return None;
    }
    if let Some(file) = ssl_cert_file.filter(|file| !file.is_empty()) {
        return Some(PathBuf::from(file));
    }
    platform_bundles
        .iter()
        .find(|bundle| bundle.is_file())
        .map(|bundle| bundle.to_path_buf())
}

/// Why a CA bundle cannot be the trust store.
#[derive(Debug, thiserror::Error, PartialEq)]
enum BundleError {
    #[error("entry {index} is not valid PEM: {reason}")]
    Pem { index: usize, reason: String },
    #[error("certificate {index} is not usable as a trust anchor: {reason}")]
    Anchor { index: usize, reason: String },
    #[error("it holds no certificate")]
    Empty,
}

/// The SDK panics on a trust-store entry it cannot parse (it does not skip them as its own loader does), so
/// every entry is checked here first and a bad bundle leaves the SDK's default in place.
fn bundle_trust_store(pem: Vec<u8>) -> Result<TrustStore, BundleError> {
    let mut roots = rustls::RootCertStore::empty();
    for (index, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let cert = cert.map_err(|e| BundleError::Pem {
            index,
            reason: e.to_string(),
        })?;
        roots.add(cert).map_err(|e| BundleError::Anchor {
            index,
            reason: e.to_string(),
        })?;
    }
    if roots.is_empty() {
        return Err(BundleError::Empty);
    }
    Ok(TrustStore::empty().with_pem_certificate(pem))
}

/// Reads a required environment variable once at cold start; a missing one is a deployment fault.
pub fn required_env(name: &str) -> Result<String, StepError> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value.trim().to_string()),
        _ => Err(StepError::config(format!(
            "environment variable {name} is not set on this Lambda; the stack sets it — redeploy the stack"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use aws_smithy_runtime_api::box_error::BoxError;
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponentsBuilder;
    use aws_smithy_types::config_bag::ConfigBag;

    use super::*;

    /// ISRG Root X2, a public root shipped by every platform bundle.
    const ROOT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIICGzCCAaGgAwIBAgIQQdKd0XLq7qeAwSxs6S+HUjAKBggqhkjOPQQDAzBPMQsw
CQYDVQQGEwJVUzEpMCcGA1UEChMgSW50ZXJuZXQgU2VjdXJpdHkgUmVzZWFyY2gg
R3JvdXAxFTATBgNVBAMTDElTUkcgUm9vdCBYMjAeFw0yMDA5MDQwMDAwMDBaFw00
MDA5MTcxNjAwMDBaME8xCzAJBgNVBAYTAlVTMSkwJwYDVQQKEyBJbnRlcm5ldCBT
ZWN1cml0eSBSZXNlYXJjaCBHcm91cDEVMBMGA1UEAxMMSVNSRyBSb290IFgyMHYw
EAYHKoZIzj0CAQYFK4EEACIDYgAEzZvVn4CDCuwJSvMWSj5cz3es3mcFDR0HttwW
+1qLFNvicWDEukWVEYmO6gbf9yoWHKS5xcUy4APgHoIYOIvXRdgKam7mAHf7AlF9
ItgKbppbd9/w+kHsOdx1ymgHDB/qo0IwQDAOBgNVHQ8BAf8EBAMCAQYwDwYDVR0T
AQH/BAUwAwEB/zAdBgNVHQ4EFgQUfEKWrt5LSDv6kviejM9ti6lyN5UwCgYIKoZI
zj0EAwMDaAAwZQIwe3lORlCEwkSHRhtFcP9Ymd70/aTSVaYgLXTWNLxBo1BfASdW
tL4ndQavEi51mI38AjEAi/V3bNTIZargCyzuFJ0nN6T5U6VR5CmD1/iQMVtCnwr1
/q4AaOeMSQ+2b1tbFfLn
-----END CERTIFICATE-----
";

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dms-core-aws-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_first_platform_bundle_that_exists_is_chosen() {
        let dir = scratch_dir("platform");
        let (al2023, debian) = (dir.join("ca-bundle.crt"), dir.join("ca-certificates.crt"));
        std::fs::write(&debian, ROOT_PEM).unwrap();
        let candidates = [al2023.as_path(), debian.as_path()];
        assert_eq!(
            ca_bundle_path(None, None, &candidates),
            Some(debian.clone())
        );
        std::fs::write(&al2023, ROOT_PEM).unwrap();
        assert_eq!(ca_bundle_path(None, None, &candidates), Some(al2023));
        let missing = dir.join("missing.crt");
        assert_eq!(ca_bundle_path(None, None, &[missing.as_path()]), None);
        // A directory named like a bundle is not a bundle.
        assert_eq!(ca_bundle_path(None, None, &[dir.as_path()]), None);
    }

    #[test]
    fn ssl_cert_file_wins_and_ssl_cert_dir_keeps_the_sdk_search() {
        let dir = scratch_dir("env");
        let bundle = dir.join("ca-certificates.crt");
        std::fs::write(&bundle, ROOT_PEM).unwrap();
        let candidates = [bundle.as_path()];
        assert_eq!(
            ca_bundle_path(Some("/opt/corp/ca.pem".into()), None, &candidates),
            Some(PathBuf::from("/opt/corp/ca.pem"))
        );
        assert_eq!(
            ca_bundle_path(Some("".into()), Some("".into()), &candidates),
            Some(bundle.clone())
        );
        assert_eq!(
            ca_bundle_path(
                Some("/opt/corp/ca.pem".into()),
                Some(dir.into()),
                &candidates
            ),
            None
        );
    }

    #[test]
    fn a_bundle_is_used_only_when_every_entry_is_a_usable_root() {
        let two = format!("{ROOT_PEM}{ROOT_PEM}");
        assert!(bundle_trust_store(two.into_bytes()).is_ok());
        assert_eq!(
            bundle_trust_store(b"no certificates here\n".to_vec()).err(),
            Some(BundleError::Empty)
        );
        let truncated = ROOT_PEM.replace("-----END CERTIFICATE-----\n", "");
        assert!(matches!(
            bundle_trust_store(format!("{ROOT_PEM}{truncated}").into_bytes()),
            Err(BundleError::Pem { index: 1, .. })
        ));
        let not_a_cert = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            bundle_trust_store(format!("{ROOT_PEM}{not_a_cert}").into_bytes()),
            Err(BundleError::Anchor { index: 1, .. })
        ));
    }

    /// A Lambda's environment: the region and credentials come straight from it, and they are the values the
    /// default chains would have returned.
    #[tokio::test]
    async fn the_environment_supplies_region_and_credentials_without_the_chains() {
        // These names are read by no other test of this crate, and nextest gives each test its own process.
        std::env::set_var("AWS_REGION", "eu-west-3");
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDFROMENV");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "secret-from-env");
        let config = load_config().await;
        assert_eq!(config.region().map(|r| r.as_ref()), Some("eu-west-3"));
        let provider = config.credentials_provider().unwrap();
        let described = format!("{provider:?}");
        assert!(
            described.contains("EnvironmentVariableCredentialsProvider")
                && !described.contains("DefaultCredentialsChain"),
            "{described}"
        );
        let credentials = provider.provide_credentials().await.unwrap();
        assert_eq!(credentials.access_key_id(), "AKIDFROMENV");
    }

    /// Counts the early connector builds the SDK asks of it.
    #[derive(Debug)]
    struct CountingClient(Arc<AtomicUsize>);

    impl HttpClient for CountingClient {
        fn http_connector(
            &self,
            _: &HttpConnectorSettings,
            _: &RuntimeComponents,
        ) -> SharedHttpConnector {
            panic!("no request is sent in this test")
        }

        fn validate_base_client_config(
            &self,
            _: &RuntimeComponentsBuilder,
            _: &ConfigBag,
        ) -> Result<(), BoxError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    async fn build_an_sns_client(http_client: SharedHttpClient) {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_credential_types::Credentials::new(
                "AKID", "secret", None, None, "test",
            ))
            .load()
            .await;
        aws_sdk_sns::Client::new(&config);
    }

    #[tokio::test]
    async fn sdk_clients_build_no_connector_before_the_first_request() {
        let direct = Arc::new(AtomicUsize::new(0));
        build_an_sns_client(SharedHttpClient::new(CountingClient(direct.clone()))).await;
        assert!(
            direct.load(Ordering::SeqCst) > 0,
            "the SDK no longer builds early"
        );
        let wrapped = Arc::new(AtomicUsize::new(0));
        build_an_sns_client(SharedHttpClient::new(ConnectAtFirstRequest(
            SharedHttpClient::new(CountingClient(wrapped.clone())),
        )))
        .await;
        assert_eq!(wrapped.load(Ordering::SeqCst), 0);
    }

    /// The bundle this machine's platform ships must load whole, or every cold start here pays for the
    /// SDK's slow search again.
    #[test]
    fn the_platform_bundle_loads_whole() {
        let bundle = ca_bundle_path(None, None, &PLATFORM_CA_BUNDLES.map(Path::new))
            .expect("this platform ships one of the known CA bundles");
        let pem = std::fs::read(&bundle).unwrap();
        let roots = CertificateDer::pem_slice_iter(&pem).count();
        assert!(roots > 50, "{} holds only {roots} roots", bundle.display());
        bundle_trust_store(pem).unwrap();
    }
}
