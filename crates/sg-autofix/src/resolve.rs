//! Host name resolution behind a small trait, so tests can map a made-up name to an address in moto's VPC.

use std::future::Future;
use std::net::IpAddr;

pub trait Resolver {
    /// Every address `host` resolves to (an IP literal resolves to itself); the error is the resolver's text.
    fn resolve(&self, host: &str) -> impl Future<Output = Result<Vec<IpAddr>, String>> + Send;
}

/// The system resolver, as the Lambda sees it: it runs outside the VPC, so it sees public DNS only.
pub struct SystemResolver;

impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        let addresses = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|e| e.to_string())?;
        let mut ips: Vec<IpAddr> = Vec::new();
        for address in addresses {
            if !ips.contains(&address.ip()) {
                ips.push(address.ip());
            }
        }
        Ok(ips)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_ip_literal_resolves_to_itself_and_a_reserved_name_does_not_resolve() {
        let ips = SystemResolver.resolve("10.1.2.3").await.unwrap();
        assert_eq!(ips, vec!["10.1.2.3".parse::<IpAddr>().unwrap()]);
        // RFC 2606 reserves `.invalid`: no resolver answers it.
        assert!(SystemResolver.resolve("db.example.invalid").await.is_err());
    }
}
