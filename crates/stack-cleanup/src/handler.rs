//! The CloudFormation custom resources of the stack, one function: `Custom::DmsServiceRoles` (dms_roles.rs),
//! `Custom::UpdateGuard` (update_guard.rs), and `Custom::StackCleanup` (this file), told apart by the
//! request's `ResourceType`.
//!
//! `Custom::StackCleanup`: on stack Delete, empties the versioned assessment bucket (every object version
//! and delete marker) and revokes the ingress rules `sg-autofix` tagged with this stack's name, so the
//! bucket and the DMS security group can be deleted after it. Create and Update do nothing.
//!
//! Every request is answered exactly once, before the Lambda's deadline, whatever happens: a cleanup that
//! fails, hangs or panics answers FAILED with what was done and what is left.
//!
//! Why FAILED and not SUCCESS when something could not be cleaned: answering SUCCESS would not let the
//! stack delete finish — CloudFormation would then fail to delete the non-empty bucket (BucketNotEmpty) or
//! the DMS security group still referenced by the tagged rule (DependencyViolation), with a vaguer message
//! — and a SUCCESS after an unrevoked rule leaves an ingress opening on the Aurora security group without
//! anyone being told. DELETE_FAILED is recoverable: the reason names the IAM action or resource to fix,
//! the cleanup is idempotent (a retried delete resumes where it stopped), and the console's "Retry delete"
//! lets the user retain StackCleanup and finish by hand. Nothing to clean (bucket already gone, no tagged
//! rule, rule already revoked) is SUCCESS.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, SystemTime};

use dms_core::aws::s3::{VersionedBucket, VersionsPageMarker, MAX_KEYS_PER_REQUEST};
use dms_core::aws::sg_rules::{RevokeOutcome, SecurityGroupRules};
use dms_core::rules::tags::SG_RULE_TAG_KEY;
use dms_core::{ErrorName, StepError};
use futures_util::FutureExt;
use serde_json::{json, Value};

use crate::dms_roles::{self, AccountRoles, SubnetGroups};
use crate::response::{CfnRequest, CfnResponse, RequestType, Responder, Status};
use crate::update_guard::{self, TaskReader};

/// Time kept free before the Lambda's deadline to answer CloudFormation (the PUT's attempts fit in it).
pub const RESPONSE_MARGIN: Duration = Duration::from_secs(20);
/// 10,000 pages of 1,000 entries: far beyond an assessment bucket; the deadline bounds it first anyway.
const MAX_PAGES: usize = 10_000;
/// How many individual failures the reason lists (all of them go to the log).
const LISTED_FAILURES: usize = 5;

pub struct Cleaners<B, R> {
    pub bucket: B,
    pub rules: R,
    /// The function's STACK_NAME, used when the resource has no StackName property.
    pub default_stack_name: String,
}

/// Answers one custom resource request (whatever happens: it never fails to produce an answer).
pub trait Provider {
    fn respond(
        &self,
        request: &CfnRequest,
        budget: Duration,
    ) -> impl Future<Output = CfnResponse> + Send;
}

impl<B, R> Provider for Cleaners<B, R>
where
    B: VersionedBucket + Sync,
    R: SecurityGroupRules + Sync,
{
    async fn respond(&self, request: &CfnRequest, budget: Duration) -> CfnResponse {
        respond_to(request, self, budget).await
    }
}

/// Every resource type this function serves, with the clients each needs.
pub struct Resources<B, R, I, D> {
    pub cleaners: Cleaners<B, R>,
    pub roles: I,
    pub dms: D,
}

impl<B, R, I, D> Provider for Resources<B, R, I, D>
where
    B: VersionedBucket + Sync,
    R: SecurityGroupRules + Sync,
    I: AccountRoles + Sync,
    D: SubnetGroups + TaskReader + Sync,
{
    async fn respond(&self, request: &CfnRequest, budget: Duration) -> CfnResponse {
        let stack = self.cleaners.default_stack_name.as_str();
        let (physical_id, work) = match request.resource_type.as_str() {
            dms_roles::RESOURCE_TYPE => (
                dms_roles::physical_resource_id(request, stack),
                dms_roles::respond(
                    request,
                    &self.roles,
                    &self.dms,
                    stack,
                    budget,
                    &dms_roles::PROBE_BACKOFF,
                )
                .boxed(),
            ),
            update_guard::RESOURCE_TYPE => (
                update_guard::physical_resource_id(request, stack),
                update_guard::respond(request, &self.dms, &self.cleaners.bucket, stack).boxed(),
            ),
            // Custom::StackCleanup has its own time and panic guard.
            _ => return respond_to(request, &self.cleaners, budget).await,
        };
        match tokio::time::timeout(budget, AssertUnwindSafe(work).catch_unwind()).await {
            Ok(Ok(response)) => response,
            Ok(Err(panic)) => answer(
                request,
                physical_id,
                Status::Failed,
                format!(
                    "{} stopped on an internal error ({})",
                    request.resource_type,
                    dms_core::defect::panic_message(panic.as_ref())
                ),
                BTreeMap::new(),
            ),
            Err(_) => answer(
                request,
                physical_id,
                Status::Failed,
                format!(
                    "{} ran out of time (it stops {} ms before the Lambda's deadline)",
                    request.resource_type,
                    RESPONSE_MARGIN.as_millis()
                ),
                BTreeMap::new(),
            ),
        }
    }
}

/// The response to `request` with the given outcome.
pub fn answer(
    request: &CfnRequest,
    physical_resource_id: String,
    status: Status,
    reason: String,
    data: BTreeMap<String, String>,
) -> CfnResponse {
    CfnResponse {
        status,
        reason,
        physical_resource_id,
        stack_id: request.stack_id.clone(),
        request_id: request.request_id.clone(),
        logical_resource_id: request.logical_resource_id.clone(),
        data,
    }
}

/// How long the cleanup may run: until the Lambda's deadline minus the margin to answer.
pub fn cleanup_budget(deadline: SystemTime, now: SystemTime) -> Duration {
    dms_core::clock::time_left(deadline, now).saturating_sub(RESPONSE_MARGIN)
}

/// What the cleanup did and could not do; becomes the response's Reason and Data and the log line.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CleanupReport {
    pub bucket: Option<String>,
    pub bucket_missing: bool,
    pub versions_deleted: usize,
    pub delete_markers_deleted: usize,
    pub revoked: Vec<String>,
    pub already_gone: Vec<String>,
    pub egress_left: Vec<String>,
    pub problems: Vec<String>,
}

impl CleanupReport {
    fn done_text(&self) -> String {
        let mut parts = Vec::new();
        match (&self.bucket, self.bucket_missing) {
            (None, _) => parts.push("no bucket to empty".to_string()),
            (Some(b), true) => parts.push(format!("bucket {b} does not exist (nothing to empty)")),
            (Some(b), false) => parts.push(format!(
                "deleted {} object version(s) and {} delete marker(s) from bucket {b}",
                self.versions_deleted, self.delete_markers_deleted
            )),
        }
        parts.push(format!(
            "revoked {} security group rule(s) tagged {SG_RULE_TAG_KEY}{}",
            self.revoked.len(),
            list_suffix(&self.revoked)
        ));
        if !self.already_gone.is_empty() {
            parts.push(format!(
                "{} tagged rule(s) were already gone{}",
                self.already_gone.len(),
                list_suffix(&self.already_gone)
            ));
        }
        if !self.egress_left.is_empty() {
            parts.push(format!(
                "left {} tagged egress rule(s) alone (sg-autofix adds only ingress rules){}",
                self.egress_left.len(),
                list_suffix(&self.egress_left)
            ));
        }
        parts.join("; ")
    }

    fn data(&self) -> BTreeMap<String, String> {
        let rule_ids: Vec<&str> = self
            .revoked
            .iter()
            .filter_map(|r| r.split_whitespace().next())
            .collect();
        [
            ("BucketName", self.bucket.clone().unwrap_or_default()),
            ("ObjectVersionsDeleted", self.versions_deleted.to_string()),
            (
                "DeleteMarkersDeleted",
                self.delete_markers_deleted.to_string(),
            ),
            ("SecurityGroupRulesRevoked", self.revoked.len().to_string()),
            ("RevokedRuleIds", rule_ids.join(",")),
            ("Problems", self.problems.len().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

fn list_suffix(items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = items
        .iter()
        .take(LISTED_FAILURES)
        .map(String::as_str)
        .collect();
    let more = items.len().saturating_sub(LISTED_FAILURES);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!(" ({}{more})", shown.join(", "))
}

/// Handles one custom resource request: always answers CloudFormation, then returns what it answered.
/// Returns an error only when the answer could not be delivered (or there is nowhere to deliver it), so
/// the asynchronous invocation is retried by Lambda.
pub async fn handle<V, P>(
    event: Value,
    provider: &V,
    responder: &P,
    budget: Duration,
) -> Result<Value, StepError>
where
    V: Provider + Sync,
    P: Responder + Sync,
{
    let response = match serde_json::from_value::<CfnRequest>(event.clone()) {
        Ok(request) => {
            let response_url = request.response_url.clone();
            let response = provider.respond(&request, budget).await;
            (response_url, response)
        }
        Err(e) => {
            let Some(url) = event.get("ResponseURL").and_then(Value::as_str) else {
                return Err(StepError::new(
                    ErrorName::PayloadInvalid,
                    format!("not a CloudFormation custom resource request (no ResponseURL): {e}"),
                ));
            };
            (url.to_string(), malformed_request_response(&event, &e))
        }
    };
    let (url, response) = response;
    let body = response.body();
    match response.status {
        Status::Success => tracing::info!(reason = %response.reason, "answering SUCCESS"),
        Status::Failed => tracing::error!(reason = %response.reason, "answering FAILED"),
    }
    responder.put(&url, &body).await?;
    Ok(json!({
        "status": response.status,
        "reason": response.reason,
        "physicalResourceId": response.physical_resource_id,
        "data": response.data,
    }))
}

fn malformed_request_response(event: &Value, err: &serde_json::Error) -> CfnResponse {
    let field = |name: &str| {
        event
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let logical = field("LogicalResourceId");
    CfnResponse {
        status: Status::Failed,
        reason: format!("stack-cleanup cannot read this request: {err}"),
        physical_resource_id: Some(field("PhysicalResourceId"))
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| format!("stack-cleanup-{logical}")),
        stack_id: field("StackId"),
        request_id: field("RequestId"),
        logical_resource_id: logical,
        data: BTreeMap::new(),
    }
}

async fn respond_to<B, R>(
    request: &CfnRequest,
    cleaners: &Cleaners<B, R>,
    budget: Duration,
) -> CfnResponse
where
    B: VersionedBucket + Sync,
    R: SecurityGroupRules + Sync,
{
    let stack_name = request
        .property("StackName")
        .unwrap_or(&cleaners.default_stack_name)
        .to_string();
    // The same physical id on every Update: a new one would make CloudFormation Delete the "old" resource,
    // which would empty the bucket of a live stack.
    let physical_resource_id = request
        .physical_resource_id
        .clone()
        .unwrap_or_else(|| format!("{stack_name}-stack-cleanup"));
    let answer = |status, reason: String, data| CfnResponse {
        status,
        reason,
        physical_resource_id: physical_resource_id.clone(),
        stack_id: request.stack_id.clone(),
        request_id: request.request_id.clone(),
        logical_resource_id: request.logical_resource_id.clone(),
        data,
    };
    if request.request_type != RequestType::Delete {
        return answer(
            Status::Success,
            format!(
                "{:?}: nothing to do; the cleanup runs when the stack is deleted",
                request.request_type
            ),
            BTreeMap::new(),
        );
    }

    let mut report = CleanupReport {
        bucket: request.property("BucketName").map(str::to_string),
        ..CleanupReport::default()
    };
    let work = AssertUnwindSafe(cleanup(cleaners, &stack_name, &mut report)).catch_unwind();
    let interruption = match tokio::time::timeout(budget, work).await {
        Ok(Ok(())) => None,
        Ok(Err(panic)) => Some(format!(
            "stack-cleanup stopped on an internal error ({})",
            dms_core::defect::panic_message(panic.as_ref())
        )),
        Err(_) => Some(format!(
            "stack-cleanup ran out of time (it stops {} ms before the Lambda's deadline, after {} ms)",
            RESPONSE_MARGIN.as_millis(),
            budget.as_millis()
        )),
    };
    if let Some(text) = interruption {
        report.problems.push(text);
    }
    tracing::info!(report = ?report, stack = %stack_name, "cleanup report");

    if report.problems.is_empty() {
        let reason = format!("Cleaned up: {}.", report.done_text());
        return answer(Status::Success, reason, report.data());
    }
    let reason = format!(
        "Cleanup incomplete: {}. Done so far: {}. Fix the cause and retry the stack delete (the cleanup \
         resumes where it stopped), or retry the delete retaining StackCleanup and then delete every object \
         version of the bucket and the security group rules tagged {SG_RULE_TAG_KEY}={stack_name} yourself.",
        report.problems.join("; "),
        report.done_text()
    );
    answer(Status::Failed, reason, report.data())
}

/// Both halves run even when the first fails: each leftover is reported on its own.
async fn cleanup<B, R>(cleaners: &Cleaners<B, R>, stack_name: &str, report: &mut CleanupReport)
where
    B: VersionedBucket + Sync,
    R: SecurityGroupRules + Sync,
{
    if let Some(bucket) = report.bucket.clone() {
        empty_bucket(&cleaners.bucket, &bucket, report).await;
    }
    revoke_tagged_rules(&cleaners.rules, stack_name, report).await;
}

async fn empty_bucket<B: VersionedBucket>(bucket: &B, name: &str, report: &mut CleanupReport) {
    let mut after: Option<VersionsPageMarker> = None;
    for _ in 0..MAX_PAGES {
        let page = match bucket.list_object_versions(name, after.as_ref()).await {
            Ok(page) => page,
            // Already deleted (by hand, or a retried delete): nothing left to empty.
            Err(e) if e.name == ErrorName::AwsNotFound && after.is_none() => {
                report.bucket_missing = true;
                return;
            }
            Err(e) => {
                report
                    .problems
                    .push(format!("bucket {name} not emptied: {}", e.message));
                return;
            }
        };
        for batch in page.versions.chunks(MAX_KEYS_PER_REQUEST) {
            let failures = match bucket.delete_object_versions(name, batch).await {
                Ok(failures) => failures,
                Err(e) => {
                    report
                        .problems
                        .push(format!("bucket {name} not emptied: {}", e.message));
                    return;
                }
            };
            let failed: HashSet<(&str, Option<&str>)> = failures
                .iter()
                .map(|f| (f.key.as_str(), f.version_id.as_deref()))
                .collect();
            for version in batch {
                if failed.contains(&(version.key.as_str(), version.version_id.as_deref())) {
                    continue;
                }
                if version.is_delete_marker {
                    report.delete_markers_deleted += 1;
                } else {
                    report.versions_deleted += 1;
                }
            }
            if !failures.is_empty() {
                let listed: Vec<String> = failures
                    .iter()
                    .map(|f| {
                        format!(
                            "{} (version {}): {} {}",
                            f.key,
                            f.version_id.as_deref().unwrap_or("null"),
                            f.code,
                            f.message
                        )
                    })
                    .collect();
                tracing::error!(bucket = name, failures = ?listed, "object versions not deleted");
                report.problems.push(format!(
                    "{} object version(s) of bucket {name} not deleted{} — the role needs \
                     s3:DeleteObject and s3:DeleteObjectVersion on the bucket's objects",
                    failures.len(),
                    list_suffix(&listed)
                ));
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return,
        }
    }
    report.problems.push(format!(
        "bucket {name} still had versions after {MAX_PAGES} pages"
    ));
}

async fn revoke_tagged_rules<R: SecurityGroupRules>(
    rules: &R,
    stack_name: &str,
    report: &mut CleanupReport,
) {
    let tagged = match rules.rules_tagged(SG_RULE_TAG_KEY, stack_name).await {
        Ok(tagged) => tagged,
        Err(e) => {
            report.problems.push(format!(
                "tagged security group rules not revoked: {}",
                e.message
            ));
            return;
        }
    };
    for rule in tagged {
        let label = format!("{} on {}: {}", rule.rule_id, rule.group_id, rule.summary);
        if rule.is_egress {
            report.egress_left.push(label);
            continue;
        }
        match rules
            .revoke_ingress_rule(&rule.group_id, &rule.rule_id)
            .await
        {
            Ok(RevokeOutcome::Revoked) => report.revoked.push(label),
            Ok(RevokeOutcome::AlreadyGone) => report.already_gone.push(label),
            Err(e) => report
                .problems
                .push(format!("rule {label} not revoked: {}", e.message)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use dms_core::aws::s3::{DeleteFailure, ObjectVersionRef, VersionsPage};
    use dms_core::aws::sg_rules::TaggedRule;

    use super::*;
    use crate::response::MAX_RESPONSE_BYTES;

    const URL: &str = "https://cloudformation-custom-resource-response.example/presigned?sig=x";

    /// An in-memory versioned bucket served in pages of `page_size`; a marker is an index into the
    /// listing, which (like S3's key and version markers) stays valid while entries are deleted.
    #[derive(Default)]
    struct FakeBucket {
        listing: Vec<ObjectVersionRef>,
        deleted: Mutex<Vec<ObjectVersionRef>>,
        page_size: usize,
        list_error: Option<StepError>,
        undeletable_keys: Vec<String>,
        hang: bool,
        panic: bool,
        batches: Mutex<Vec<usize>>,
    }

    impl FakeBucket {
        fn with(versions: usize, markers: usize, page_size: usize) -> Self {
            let mut listing = Vec::new();
            for i in 0..versions {
                listing.push(ObjectVersionRef {
                    key: format!("report-{}", i % 3),
                    version_id: Some(format!("v{i}")),
                    is_delete_marker: false,
                });
            }
            for i in 0..markers {
                listing.push(ObjectVersionRef {
                    key: format!("report-{i}"),
                    version_id: Some(format!("m{i}")),
                    is_delete_marker: true,
                });
            }
            FakeBucket {
                listing,
                page_size,
                ..FakeBucket::default()
            }
        }
        fn left(&self) -> usize {
            self.listing.len() - self.deleted.lock().unwrap().len()
        }
    }

    impl VersionedBucket for FakeBucket {
        async fn list_object_versions(
            &self,
            _bucket: &str,
            after: Option<&VersionsPageMarker>,
        ) -> Result<VersionsPage, StepError> {
            if self.hang {
                std::future::pending::<()>().await;
            }
            if self.panic {
                panic!("fake bucket exploded");
            }
            if let Some(e) = &self.list_error {
                return Err(e.clone());
            }
            let deleted = self.deleted.lock().unwrap().clone();
            let start: usize = after.map_or(0, |m| m.key_marker.parse().unwrap());
            let end = (start + self.page_size).min(self.listing.len());
            Ok(VersionsPage {
                versions: self.listing[start..end]
                    .iter()
                    .filter(|v| !deleted.contains(v))
                    .cloned()
                    .collect(),
                next: (end < self.listing.len()).then(|| VersionsPageMarker {
                    key_marker: end.to_string(),
                    version_id_marker: None,
                }),
            })
        }

        async fn delete_object_versions(
            &self,
            _bucket: &str,
            versions: &[ObjectVersionRef],
        ) -> Result<Vec<DeleteFailure>, StepError> {
            assert!(versions.len() <= MAX_KEYS_PER_REQUEST);
            self.batches.lock().unwrap().push(versions.len());
            let mut failures = Vec::new();
            for v in versions {
                if self.undeletable_keys.contains(&v.key) {
                    failures.push(DeleteFailure {
                        key: v.key.clone(),
                        version_id: v.version_id.clone(),
                        code: "AccessDenied".into(),
                        message: "Access Denied".into(),
                    });
                } else {
                    self.deleted.lock().unwrap().push(v.clone());
                }
            }
            Ok(failures)
        }
    }

    #[derive(Default)]
    struct FakeRules {
        rules: Vec<TaggedRule>,
        gone: Vec<String>,
        describe_error: Option<StepError>,
        revoke_error: Option<StepError>,
        revoked: Mutex<Vec<String>>,
        asked_tag: Mutex<Option<(String, String)>>,
    }

    fn rule(id: &str, egress: bool) -> TaggedRule {
        TaggedRule {
            rule_id: id.into(),
            group_id: "sg-aurora".into(),
            is_egress: egress,
            summary: "tcp 5432 from sg-dms".into(),
        }
    }

    impl SecurityGroupRules for FakeRules {
        async fn rules_tagged(
            &self,
            tag_key: &str,
            tag_value: &str,
        ) -> Result<Vec<TaggedRule>, StepError> {
            *self.asked_tag.lock().unwrap() = Some((tag_key.into(), tag_value.into()));
            match &self.describe_error {
                Some(e) => Err(e.clone()),
                None => Ok(self.rules.clone()),
            }
        }

        async fn revoke_ingress_rule(
            &self,
            _group_id: &str,
            rule_id: &str,
        ) -> Result<RevokeOutcome, StepError> {
            if let Some(e) = &self.revoke_error {
                return Err(e.clone());
            }
            if self.gone.iter().any(|g| g == rule_id) {
                return Ok(RevokeOutcome::AlreadyGone);
            }
            self.revoked.lock().unwrap().push(rule_id.into());
            Ok(RevokeOutcome::Revoked)
        }
    }

    #[derive(Default)]
    struct FakeResponder {
        bodies: Mutex<Vec<(String, String)>>,
        fail: bool,
    }

    impl Responder for FakeResponder {
        async fn put(&self, url: &str, body: &str) -> Result<(), StepError> {
            if self.fail {
                return Err(StepError::new(ErrorName::AwsTransient, "could not connect"));
            }
            self.bodies
                .lock()
                .unwrap()
                .push((url.to_string(), body.to_string()));
            Ok(())
        }
    }

    impl FakeResponder {
        fn only_answer(&self) -> Value {
            let bodies = self.bodies.lock().unwrap();
            assert_eq!(bodies.len(), 1, "exactly one answer: {bodies:?}");
            assert_eq!(bodies[0].0, URL);
            assert!(bodies[0].1.len() < MAX_RESPONSE_BYTES);
            serde_json::from_str(&bodies[0].1).unwrap()
        }
    }

    fn request(kind: &str) -> Value {
        let mut r = json!({
            "RequestType": kind,
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:mig-stack-cleanup",
            "ResponseURL": URL,
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/mig/guid",
            "RequestId": "req-1",
            "ResourceType": "Custom::StackCleanup",
            "LogicalResourceId": "StackCleanup",
            "ResourceProperties": {"ServiceToken": "x", "BucketName": "reports-bucket", "StackName": "mig"}
        });
        if kind != "Create" {
            r["PhysicalResourceId"] = json!("mig-stack-cleanup");
        }
        r
    }

    fn cleaners(bucket: FakeBucket, rules: FakeRules) -> Cleaners<FakeBucket, FakeRules> {
        Cleaners {
            bucket,
            rules,
            default_stack_name: "env-stack".into(),
        }
    }

    const BUDGET: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn create_and_update_do_nothing_and_keep_one_physical_id() {
        for kind in ["Create", "Update"] {
            let c = cleaners(
                FakeBucket::with(3, 1, 10),
                FakeRules {
                    rules: vec![rule("sgr-1", false)],
                    ..Default::default()
                },
            );
            let responder = FakeResponder::default();
            let out = handle(request(kind), &c, &responder, BUDGET).await.unwrap();
            let answer = responder.only_answer();
            assert_eq!(answer["Status"], "SUCCESS", "{kind}");
            assert_eq!(answer["PhysicalResourceId"], "mig-stack-cleanup", "{kind}");
            assert_eq!(
                answer["StackId"],
                "arn:aws:cloudformation:us-east-1:123456789012:stack/mig/guid"
            );
            assert_eq!(answer["RequestId"], "req-1");
            assert_eq!(answer["LogicalResourceId"], "StackCleanup");
            assert_eq!(out["status"], "SUCCESS");
            assert_eq!(c.bucket.left(), 4, "{kind} touches nothing");
            assert!(c.rules.revoked.lock().unwrap().is_empty());
        }
    }

    #[tokio::test]
    async fn delete_empties_every_version_and_marker_across_pages_and_revokes_tagged_ingress() {
        // 2,400 entries in pages of 1,000 (as S3 serves them): batches never exceed 1,000.
        let bucket = FakeBucket::with(2300, 100, 1000);
        let rules = FakeRules {
            rules: vec![
                rule("sgr-in", false),
                rule("sgr-gone", false),
                rule("sgr-out", true),
            ],
            gone: vec!["sgr-gone".into()],
            ..Default::default()
        };
        let c = cleaners(bucket, rules);
        let responder = FakeResponder::default();
        handle(request("Delete"), &c, &responder, BUDGET)
            .await
            .unwrap();
        let answer = responder.only_answer();
        assert_eq!(answer["Status"], "SUCCESS", "{answer}");
        assert_eq!(answer["PhysicalResourceId"], "mig-stack-cleanup");
        assert_eq!(answer["Data"]["ObjectVersionsDeleted"], "2300");
        assert_eq!(answer["Data"]["DeleteMarkersDeleted"], "100");
        assert_eq!(answer["Data"]["SecurityGroupRulesRevoked"], "1");
        assert_eq!(answer["Data"]["RevokedRuleIds"], "sgr-in");
        assert_eq!(c.bucket.left(), 0);
        assert!(c.bucket.batches.lock().unwrap().iter().all(|n| *n <= 1000));
        assert_eq!(*c.rules.revoked.lock().unwrap(), vec!["sgr-in".to_string()]);
        assert_eq!(
            *c.rules.asked_tag.lock().unwrap(),
            Some((SG_RULE_TAG_KEY.to_string(), "mig".to_string())),
            "the rules are found by dms-core's tag key and the stack name"
        );
        let reason = answer["Reason"].as_str().unwrap();
        assert!(
            reason.contains("already gone") && reason.contains("egress"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn the_stack_name_falls_back_to_the_function_environment() {
        let c = cleaners(FakeBucket::with(0, 0, 10), FakeRules::default());
        let mut event = request("Delete");
        event["ResourceProperties"] = json!({"BucketName": "reports-bucket"});
        handle(event, &c, &FakeResponder::default(), BUDGET)
            .await
            .unwrap();
        assert_eq!(
            c.rules
                .asked_tag
                .lock()
                .unwrap()
                .as_ref()
                .map(|t| t.1.clone()),
            Some("env-stack".to_string())
        );
    }

    #[tokio::test]
    async fn a_bucket_already_gone_is_nothing_to_clean() {
        let bucket = FakeBucket {
            list_error: Some(StepError::new(ErrorName::AwsNotFound, "NoSuchBucket")),
            ..FakeBucket::with(0, 0, 10)
        };
        let c = cleaners(bucket, FakeRules::default());
        let responder = FakeResponder::default();
        handle(request("Delete"), &c, &responder, BUDGET)
            .await
            .unwrap();
        let answer = responder.only_answer();
        assert_eq!(answer["Status"], "SUCCESS");
        assert!(answer["Reason"]
            .as_str()
            .unwrap()
            .contains("does not exist"));
    }

    #[tokio::test]
    async fn access_denied_answers_failed_naming_the_action_and_still_revokes_the_rules() {
        let bucket = FakeBucket {
            list_error: Some(StepError::new(
                ErrorName::AwsAccessDenied,
                "s3:ListBucketVersions on reports-bucket failed: AccessDenied — the Lambda's IAM role must allow `s3:ListBucketVersions`",
            )),
            ..FakeBucket::with(5, 0, 10)
        };
        let rules = FakeRules {
            rules: vec![rule("sgr-in", false)],
            ..Default::default()
        };
        let c = cleaners(bucket, rules);
        let responder = FakeResponder::default();
        let out = handle(request("Delete"), &c, &responder, BUDGET)
            .await
            .unwrap();
        let answer = responder.only_answer();
        assert_eq!(answer["Status"], "FAILED");
        assert_eq!(out["status"], "FAILED");
        let reason = answer["Reason"].as_str().unwrap();
        assert!(reason.contains("s3:ListBucketVersions"), "{reason}");
        assert!(reason.contains("retry the stack delete"), "{reason}");
        assert_eq!(*c.rules.revoked.lock().unwrap(), vec!["sgr-in".to_string()]);
        assert_eq!(answer["Data"]["SecurityGroupRulesRevoked"], "1");
    }

    #[tokio::test]
    async fn versions_s3_would_not_delete_are_listed_and_fail_the_delete() {
        let bucket = FakeBucket {
            undeletable_keys: vec!["report-1".into()],
            ..FakeBucket::with(6, 0, 4)
        };
        let c = cleaners(bucket, FakeRules::default());
        let responder = FakeResponder::default();
        handle(request("Delete"), &c, &responder, BUDGET)
            .await
            .unwrap();
        let answer = responder.only_answer();
        assert_eq!(answer["Status"], "FAILED");
        let reason = answer["Reason"].as_str().unwrap();
        assert!(
            reason.contains("report-1") && reason.contains("AccessDenied"),
            "{reason}"
        );
        assert_eq!(answer["Data"]["ObjectVersionsDeleted"], "4");
    }

    #[tokio::test]
    async fn a_revoke_error_fails_the_delete() {
        let rules = FakeRules {
            rules: vec![rule("sgr-in", false)],
            revoke_error: Some(StepError::new(
                ErrorName::AwsAccessDenied,
                "ec2:RevokeSecurityGroupIngress on rule sgr-in of sg-aurora failed: UnauthorizedOperation",
            )),
            ..Default::default()
        };
        let c = cleaners(FakeBucket::with(1, 0, 10), rules);
        let responder = FakeResponder::default();
        handle(request("Delete"), &c, &responder, BUDGET)
            .await
            .unwrap();
        let answer = responder.only_answer();
        assert_eq!(answer["Status"], "FAILED");
        assert!(answer["Reason"]
            .as_str()
            .unwrap()
            .contains("ec2:RevokeSecurityGroupIngress"));
        assert_eq!(c.bucket.left(), 0, "the bucket half still ran");
    }

    #[tokio::test]
    async fn a_hanging_cleanup_answers_failed_within_the_budget() {
        let bucket = FakeBucket {
            hang: true,
            ..FakeBucket::with(1, 0, 10)
        };
        let c = cleaners(bucket, FakeRules::default());
        let responder = FakeResponder::default();
        handle(request("Delete"), &c, &responder, Duration::from_millis(20))
            .await
            .unwrap();
        let answer = responder.only_answer();
        assert_eq!(answer["Status"], "FAILED");
        assert!(answer["Reason"]
            .as_str()
            .unwrap()
            .contains("ran out of time"));
    }

    #[tokio::test]
    async fn a_panicking_cleanup_still_answers() {
        let bucket = FakeBucket {
            panic: true,
            ..FakeBucket::with(1, 0, 10)
        };
        let c = cleaners(bucket, FakeRules::default());
        let responder = FakeResponder::default();
        handle(request("Delete"), &c, &responder, BUDGET)
            .await
            .unwrap();
        let answer = responder.only_answer();
        assert_eq!(answer["Status"], "FAILED");
        assert!(answer["Reason"]
            .as_str()
            .unwrap()
            .contains("fake bucket exploded"));
    }

    #[tokio::test]
    async fn a_malformed_request_is_answered_when_it_has_a_response_url() {
        let c = cleaners(FakeBucket::with(1, 0, 10), FakeRules::default());
        let responder = FakeResponder::default();
        let mut event = request("Delete");
        event["RequestType"] = json!("Explode");
        handle(event, &c, &responder, BUDGET).await.unwrap();
        let answer = responder.only_answer();
        assert_eq!(answer["Status"], "FAILED");
        assert_eq!(answer["RequestId"], "req-1");
        assert_eq!(c.bucket.left(), 1);

        let err = handle(json!({"hello": 1}), &c, &responder, BUDGET)
            .await
            .unwrap_err();
        assert_eq!(err.name, ErrorName::PayloadInvalid);
    }

    #[tokio::test]
    async fn an_undeliverable_answer_is_an_error_so_lambda_retries_the_invocation() {
        let c = cleaners(FakeBucket::with(0, 0, 10), FakeRules::default());
        let responder = FakeResponder {
            fail: true,
            ..Default::default()
        };
        let err = handle(request("Create"), &c, &responder, BUDGET)
            .await
            .unwrap_err();
        assert_eq!(err.name, ErrorName::AwsTransient);
    }

    #[test]
    fn the_budget_keeps_the_margin_before_the_deadline() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(
            cleanup_budget(now + Duration::from_secs(600), now),
            Duration::from_secs(580)
        );
        assert_eq!(
            cleanup_budget(now + Duration::from_secs(10), now),
            Duration::ZERO
        );
        assert_eq!(
            cleanup_budget(now - Duration::from_secs(5), now),
            Duration::ZERO
        );
    }
}
