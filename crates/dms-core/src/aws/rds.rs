//! The RDS capability sg-autofix needs: which Aurora cluster or RDS instance answers on a host name, and
//! its VPC security groups. A public Aurora name resolves to a public address outside the VPC, so for
//! `*.rds.amazonaws.com` hosts RDS is asked first. `RdsClient` is the real adapter (moto in the lab);
//! tests pass a fake implementing `Rds`.

use std::future::Future;

use aws_sdk_rds::Client;

use crate::errors::{classify_sdk_error, ErrorName, StepError};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DbClusterInfo {
    pub identifier: String,
    /// The writer (cluster) endpoint.
    pub endpoint: Option<String>,
    pub reader_endpoint: Option<String>,
    pub custom_endpoints: Vec<String>,
    pub security_group_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DbInstanceInfo {
    pub identifier: String,
    pub endpoint: Option<String>,
    pub cluster_identifier: Option<String>,
    pub vpc_id: Option<String>,
    pub security_group_ids: Vec<String>,
}

/// The RDS resource a host name belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct DbTarget {
    /// e.g. `Aurora cluster app-db (reader endpoint)` or `DB instance app-db-1`.
    pub description: String,
    pub security_group_ids: Vec<String>,
}

pub trait Rds {
    /// Every DB cluster in the region, across all pages.
    fn db_clusters(&self) -> impl Future<Output = Result<Vec<DbClusterInfo>, StepError>> + Send;
    /// Every DB instance in the region, across all pages.
    fn db_instances(&self) -> impl Future<Output = Result<Vec<DbInstanceInfo>, StepError>> + Send;
}

fn same_host(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// Finds the cluster (by its cluster, reader or custom endpoint) or instance (by its endpoint address)
/// answering on `host`. Clusters first: an Aurora instance's groups are the cluster's.
pub async fn find_db_by_endpoint<R: Rds>(
    rds: &R,
    host: &str,
) -> Result<Option<DbTarget>, StepError> {
    for cluster in rds.db_clusters().await? {
        let role = if cluster
            .endpoint
            .as_deref()
            .is_some_and(|e| same_host(e, host))
        {
            Some("cluster endpoint")
        } else if cluster
            .reader_endpoint
            .as_deref()
            .is_some_and(|e| same_host(e, host))
        {
            Some("reader endpoint")
        } else if cluster.custom_endpoints.iter().any(|e| same_host(e, host)) {
            Some("custom endpoint")
        } else {
            None
        };
        if let Some(role) = role {
            return Ok(Some(DbTarget {
                description: format!("Aurora cluster {} ({role})", cluster.identifier),
                security_group_ids: cluster.security_group_ids,
            }));
        }
    }
    for instance in rds.db_instances().await? {
        if instance
            .endpoint
            .as_deref()
            .is_some_and(|e| same_host(e, host))
        {
            let description = match &instance.cluster_identifier {
                Some(cluster) => {
                    format!("DB instance {} of cluster {cluster}", instance.identifier)
                }
                None => format!("DB instance {}", instance.identifier),
            };
            return Ok(Some(DbTarget {
                description,
                security_group_ids: instance.security_group_ids,
            }));
        }
    }
    Ok(None)
}

#[derive(Clone)]
pub struct RdsClient {
    client: Client,
}

impl RdsClient {
    pub fn new(client: Client) -> Self {
        RdsClient { client }
    }
}

/// 100 records per page (the RDS maximum) × 1,000 pages.
const MAX_PAGES: usize = 1000;

fn unending(action: &str) -> StepError {
    StepError::new(
        ErrorName::AwsRejected,
        format!("{action} never ended its pagination"),
    )
}

impl Rds for RdsClient {
    async fn db_clusters(&self) -> Result<Vec<DbClusterInfo>, StepError> {
        let mut clusters = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let out = self
                .client
                .describe_db_clusters()
                .max_records(100)
                .set_marker(marker.clone())
                .send()
                .await
                .map_err(|e| classify_sdk_error("rds:DescribeDBClusters", "all DB clusters", &e))?;
            clusters.extend(out.db_clusters().iter().map(|c| {
                DbClusterInfo {
                    identifier: c.db_cluster_identifier().unwrap_or_default().to_string(),
                    endpoint: c.endpoint().map(str::to_string),
                    reader_endpoint: c.reader_endpoint().map(str::to_string),
                    custom_endpoints: c.custom_endpoints().to_vec(),
                    security_group_ids: c
                        .vpc_security_groups()
                        .iter()
                        .filter_map(|g| g.vpc_security_group_id().map(str::to_string))
                        .collect(),
                }
            }));
            marker = out.marker().filter(|m| !m.is_empty()).map(str::to_string);
            if marker.is_none() {
                return Ok(clusters);
            }
        }
        Err(unending("rds:DescribeDBClusters"))
    }

    async fn db_instances(&self) -> Result<Vec<DbInstanceInfo>, StepError> {
        let mut instances = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let out = self
                .client
                .describe_db_instances()
                .max_records(100)
                .set_marker(marker.clone())
                .send()
                .await
                .map_err(|e| {
                    classify_sdk_error("rds:DescribeDBInstances", "all DB instances", &e)
                })?;
            instances.extend(out.db_instances().iter().map(|i| {
                DbInstanceInfo {
                    identifier: i.db_instance_identifier().unwrap_or_default().to_string(),
                    endpoint: i.endpoint().and_then(|e| e.address()).map(str::to_string),
                    cluster_identifier: i.db_cluster_identifier().map(str::to_string),
                    vpc_id: i
                        .db_subnet_group()
                        .and_then(|g| g.vpc_id())
                        .map(str::to_string),
                    security_group_ids: i
                        .vpc_security_groups()
                        .iter()
                        .filter_map(|g| g.vpc_security_group_id().map(str::to_string))
                        .collect(),
                }
            }));
            marker = out.marker().filter(|m| !m.is_empty()).map(str::to_string);
            if marker.is_none() {
                return Ok(instances);
            }
        }
        Err(unending("rds:DescribeDBInstances"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeRds {
        clusters: Vec<DbClusterInfo>,
        instances: Vec<DbInstanceInfo>,
    }

    impl Rds for FakeRds {
        async fn db_clusters(&self) -> Result<Vec<DbClusterInfo>, StepError> {
            Ok(self.clusters.clone())
        }
        async fn db_instances(&self) -> Result<Vec<DbInstanceInfo>, StepError> {
            Ok(self.instances.clone())
        }
    }

    fn fake() -> FakeRds {
        FakeRds {
            clusters: vec![DbClusterInfo {
                identifier: "app".into(),
                endpoint: Some("app.cluster-abc.us-east-1.rds.amazonaws.com".into()),
                reader_endpoint: Some("app.cluster-ro-abc.us-east-1.rds.amazonaws.com".into()),
                custom_endpoints: vec!["etl.cluster-custom-abc.us-east-1.rds.amazonaws.com".into()],
                security_group_ids: vec!["sg-cluster".into()],
            }],
            instances: vec![DbInstanceInfo {
                identifier: "solo".into(),
                endpoint: Some("solo.abc.us-east-1.rds.amazonaws.com".into()),
                security_group_ids: vec!["sg-solo".into()],
                ..Default::default()
            }],
        }
    }

    #[tokio::test]
    async fn finds_a_cluster_by_any_of_its_endpoints_ignoring_case_and_a_trailing_dot() {
        let rds = fake();
        for (host, role) in [
            (
                "APP.cluster-abc.us-east-1.rds.amazonaws.com.",
                "cluster endpoint",
            ),
            (
                "app.cluster-ro-abc.us-east-1.rds.amazonaws.com",
                "reader endpoint",
            ),
            (
                "etl.cluster-custom-abc.us-east-1.rds.amazonaws.com",
                "custom endpoint",
            ),
        ] {
            let found = find_db_by_endpoint(&rds, host).await.unwrap().unwrap();
            assert_eq!(found.security_group_ids, vec!["sg-cluster".to_string()]);
            assert!(found.description.contains(role), "{}", found.description);
        }
    }

    #[tokio::test]
    async fn finds_an_instance_by_its_address_and_nothing_for_an_unknown_host() {
        let rds = fake();
        let found = find_db_by_endpoint(&rds, "solo.abc.us-east-1.rds.amazonaws.com")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.security_group_ids, vec!["sg-solo".to_string()]);
        assert_eq!(
            find_db_by_endpoint(&rds, "other.abc.us-east-1.rds.amazonaws.com")
                .await
                .unwrap(),
            None
        );
    }
}
