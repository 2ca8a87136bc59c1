//! The S3 capability `stack-cleanup` needs to empty the versioned assessment bucket: list every object
//! version and delete marker, delete them by version id. `S3VersionedBucket` is the real adapter; tests
//! pass a fake implementing `VersionedBucket`.
//!
//! A versioned bucket is empty only when every version and every delete marker is gone: a plain
//! DeleteObject only adds a delete marker, and CloudFormation cannot delete a bucket that still holds
//! either (https://docs.aws.amazon.com/AmazonS3/latest/userguide/DeletingObjectVersions.html).

use std::future::Future;

use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use aws_sdk_s3::Client;

use crate::errors::{classify_sdk_error, ErrorName, StepError};

/// DeleteObjects takes at most 1,000 keys per request, and ListObjectVersions returns at most 1,000 entries
/// (versions and delete markers together) per page.
pub const MAX_KEYS_PER_REQUEST: usize = 1000;

/// One object version or delete marker, addressed by key and version id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersionRef {
    pub key: String,
    /// As S3 reports it; `null` for an object written before versioning was enabled.
    pub version_id: Option<String>,
    pub is_delete_marker: bool,
}

/// Where the next ListObjectVersions page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionsPageMarker {
    pub key_marker: String,
    pub version_id_marker: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionsPage {
    pub versions: Vec<ObjectVersionRef>,
    /// None on the last page.
    pub next: Option<VersionsPageMarker>,
}

/// A version DeleteObjects reported as not deleted (DeleteObjects answers 200 and lists per-key errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteFailure {
    pub key: String,
    pub version_id: Option<String>,
    /// S3's error code, e.g. `AccessDenied`.
    pub code: String,
    pub message: String,
}

pub trait VersionedBucket {
    /// One page of versions and delete markers, starting after `after` (None: from the beginning).
    fn list_object_versions(
        &self,
        bucket: &str,
        after: Option<&VersionsPageMarker>,
    ) -> impl Future<Output = Result<VersionsPage, StepError>> + Send;

    /// Permanently deletes at most `MAX_KEYS_PER_REQUEST` versions; returns the ones S3 did not delete.
    fn delete_object_versions(
        &self,
        bucket: &str,
        versions: &[ObjectVersionRef],
    ) -> impl Future<Output = Result<Vec<DeleteFailure>, StepError>> + Send;
}

pub struct S3VersionedBucket {
    client: Client,
}

impl S3VersionedBucket {
    pub fn new(client: Client) -> Self {
        S3VersionedBucket { client }
    }
}

fn rejected(what: &str, err: impl std::fmt::Display) -> StepError {
    StepError::new(ErrorName::AwsRejected, format!("{what}: {err}"))
}

impl VersionedBucket for S3VersionedBucket {
    async fn list_object_versions(
        &self,
        bucket: &str,
        after: Option<&VersionsPageMarker>,
    ) -> Result<VersionsPage, StepError> {
        let out = self
            .client
            .list_object_versions()
            .bucket(bucket)
            .max_keys(MAX_KEYS_PER_REQUEST as i32)
            .set_key_marker(after.map(|m| m.key_marker.clone()))
            .set_version_id_marker(after.and_then(|m| m.version_id_marker.clone()))
            .send()
            .await
            // The IAM action of ListObjectVersions is s3:ListBucketVersions.
            .map_err(|e| classify_sdk_error("s3:ListBucketVersions", bucket, &e))?;
        let mut versions: Vec<ObjectVersionRef> = out
            .versions()
            .iter()
            .filter_map(|v| {
                Some(ObjectVersionRef {
                    key: v.key()?.to_string(),
                    version_id: v.version_id().map(str::to_string),
                    is_delete_marker: false,
                })
            })
            .collect();
        versions.extend(out.delete_markers().iter().filter_map(|m| {
            Some(ObjectVersionRef {
                key: m.key()?.to_string(),
                version_id: m.version_id().map(str::to_string),
                is_delete_marker: true,
            })
        }));
        let next = match (out.is_truncated(), out.next_key_marker()) {
            (Some(true), Some(key_marker)) => Some(VersionsPageMarker {
                key_marker: key_marker.to_string(),
                version_id_marker: out.next_version_id_marker().map(str::to_string),
            }),
            _ => None,
        };
        Ok(VersionsPage { versions, next })
    }

    async fn delete_object_versions(
        &self,
        bucket: &str,
        versions: &[ObjectVersionRef],
    ) -> Result<Vec<DeleteFailure>, StepError> {
        if versions.is_empty() {
            return Ok(Vec::new());
        }
        if versions.len() > MAX_KEYS_PER_REQUEST {
            return Err(rejected(
                "DeleteObjects",
                format!(
                    "{} keys in one request, S3 accepts at most {MAX_KEYS_PER_REQUEST}",
                    versions.len()
                ),
            ));
        }
        let objects = versions
            .iter()
            .map(|v| {
                ObjectIdentifier::builder()
                    .key(&v.key)
                    .set_version_id(v.version_id.clone())
                    .build()
                    .map_err(|e| rejected("object identifier", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Quiet mode: the answer lists only the keys that were not deleted.
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| rejected("delete request", e))?;
        // Deleting a version needs s3:DeleteObjectVersion (and s3:DeleteObject, which every DeleteObjects
        // needs: https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObjects.html).
        let out = self
            .client
            .delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| classify_sdk_error("s3:DeleteObjectVersion", bucket, &e))?;
        Ok(out
            .errors()
            .iter()
            .map(|e| DeleteFailure {
                key: e.key().unwrap_or_default().to_string(),
                version_id: e.version_id().map(str::to_string),
                code: e.code().unwrap_or("unknown").to_string(),
                message: e.message().unwrap_or_default().to_string(),
            })
            .collect())
    }
}
