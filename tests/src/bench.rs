//! What the `make bench` binaries share: a database of the bench's own on both lab clusters, the
//! `dms-migrate` build to time, and how durations are printed.

use std::path::PathBuf;
use std::time::Duration;

use crate::lab::{workspace_root, Lab};

pub use crate::lab::connect;

/// The lab admin URL (`.../postgres?...`) pointed at `database`.
pub fn database_url(admin_url: &str, database: &str) -> String {
    admin_url.replacen("/postgres?", &format!("/{database}?"), 1)
}

/// `database` dropped on both clusters and, unless `drop_only`, created empty again.
pub async fn recreate(lab: &Lab, database: &str, drop_only: bool) {
    for key in ["SOURCE_URL", "TARGET_URL"] {
        let client = connect(&lab.var(key)).await;
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            .await
            .expect("drop the bench database");
        if !drop_only {
            client
                .batch_execute(&format!("CREATE DATABASE {database}"))
                .await
                .expect("create the bench database");
        }
    }
}

/// The release `dms-migrate` when built (make bench builds it), else the debug one; the output says which.
pub fn dms_migrate() -> (PathBuf, &'static str) {
    let target = workspace_root().join("target");
    let release = target.join("release/dms-migrate");
    if release.exists() {
        (release, "release")
    } else {
        (target.join("debug/dms-migrate"), "DEBUG")
    }
}

pub fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

pub fn seconds(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// A fresh `database` on both clusters with `generate` run on each side at once: the URLs and a connection
/// to each.
pub async fn generated(
    lab: &Lab,
    database: &str,
    generate: &str,
) -> (
    String,
    String,
    tokio_postgres::Client,
    tokio_postgres::Client,
) {
    recreate(lab, database, false).await;
    let source_url = database_url(&lab.var("SOURCE_URL"), database);
    let target_url = database_url(&lab.var("TARGET_URL"), database);
    let (source, target) = (connect(&source_url).await, connect(&target_url).await);
    let (a, b) = tokio::join!(
        source.batch_execute(generate),
        target.batch_execute(generate)
    );
    a.expect("generate on the source");
    b.expect("generate on the target");
    (source_url, target_url, source, target)
}
