//! `dms-migrate sequences sync` against the lab, on the hard sample schema (mixed-case names, identity
//! columns, three schemas): every target sequence ends ahead of the source, none ever moves backwards, a
//! re-run changes nothing, and the failure paths (missing on the target, would overflow) exit 1 without
//! writing. Also dms-core's catalog read (`sequences::read_sequences`) and `behind` on real catalogs.

use dms_core::pg::sequences::{self, BehindReason};
use integration_tests::lab::{self, workspace_root, Lab};
use serde_json::Value;
use tokio_postgres::{Client, NoTls};

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

fn hard_schema() -> String {
    std::fs::read_to_string(workspace_root().join("tests/fixtures/hard_schema.sql")).unwrap()
}

fn sync(source: &str, target: &str, extra: &[&str]) -> (i32, Value, String) {
    let out = lab::dms_migrate()
        .args(["sequences", "sync", "--source", source, "--target", target])
        .args(["--format", "json"])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), json, stderr)
}

async fn last_value(client: &Client, qualified: &str) -> Option<i64> {
    client
        .query_one(
            "SELECT pg_sequence_last_value($1::text::regclass)",
            &[&qualified],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn sync_moves_every_target_sequence_ahead_and_never_back() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("seq_sync").await;
    let (source, target) = (
        connect(&dbs.source_url).await,
        connect(&dbs.target_url).await,
    );
    let extra = r#"
        CREATE SEQUENCE "Sales"."Invoice No" START 500;
        CREATE SEQUENCE inventory.countdown INCREMENT -1 MINVALUE -1000000 MAXVALUE -1 START -1;
        CREATE SEQUENCE "order".far_ahead;
        CREATE SEQUENCE "order".never_used;"#;
    for c in [&source, &target] {
        c.batch_execute(&hard_schema()).await.unwrap();
        c.batch_execute(extra).await.unwrap();
    }
    source
        .batch_execute(
            r#"SELECT nextval('"Sales"."Invoice No"') FROM generate_series(1, 40);
               SELECT nextval('inventory.countdown') FROM generate_series(1, 30);
               SELECT setval('"order".far_ahead', 50);
               INSERT INTO "Sales".addresses ("accountId", line1, city)
               SELECT 1, 'x', 'y' FROM generate_series(1, 25);"#,
        )
        .await
        .unwrap();
    target
        .batch_execute("SELECT setval('\"order\".far_ahead', 1000000)")
        .await
        .unwrap();

    // dms-core's read and comparison before the sync: the used sequences are behind, the idle one is not.
    let s = sequences::read_sequences(&source, &[]).await.unwrap();
    let t = sequences::read_sequences(&target, &[]).await.unwrap();
    let identity = s
        .iter()
        .find(|q| q.name == "addresses_id_seq")
        .expect("identity sequence read");
    assert_eq!(identity.owned_by.as_deref(), Some("\"Sales\".addresses.id"));
    assert_eq!(identity.last_value, Some(27));
    let before: Vec<String> = sequences::behind(&s, &t)
        .iter()
        .filter(|b| b.reason == BehindReason::NotAhead)
        .map(|b| b.qualified())
        .collect();
    assert!(
        before.contains(&"\"Sales\".\"Invoice No\"".to_string())
            && before.contains(&"inventory.countdown".to_string())
            && before.contains(&"\"Sales\".addresses_id_seq".to_string())
            && !before.contains(&"\"order\".far_ahead".to_string())
            && !before.contains(&"\"order\".never_used".to_string()),
        "{before:?}"
    );

    let (code, report, stderr) = sync(&dbs.source_url, &dbs.target_url, &["--margin", "100"]);
    assert_eq!(code, 0, "{report} {stderr}");
    let changed: Vec<&str> = report["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["sequence"].as_str().unwrap())
        .collect();
    assert!(changed.contains(&"\"Sales\".\"Invoice No\""), "{changed:?}");
    assert!(!changed.contains(&"\"order\".far_ahead"), "{changed:?}");
    assert_eq!(
        last_value(&target, "\"Sales\".\"Invoice No\"").await,
        Some(539 + 100)
    );
    assert_eq!(
        last_value(&target, "inventory.countdown").await,
        Some(-30 - 100)
    );
    assert_eq!(
        last_value(&target, "\"order\".far_ahead").await,
        Some(1_000_000),
        "moved backwards"
    );
    assert_eq!(last_value(&target, "\"order\".never_used").await, None);
    // The identity column hands out a value the source never used.
    let id: i64 = target
        .query_one(
            "INSERT INTO \"Sales\".addresses (\"accountId\", line1, city) VALUES (1, 'n', 'c') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, 27 + 100 + 1);
    let after = sequences::behind(
        &sequences::read_sequences(&source, &[]).await.unwrap(),
        &sequences::read_sequences(&target, &[]).await.unwrap(),
    );
    assert!(after.is_empty(), "{after:?}");

    // Re-running is safe: nothing is behind, nothing changes.
    let (code, report, _) = sync(&dbs.source_url, &dbs.target_url, &["--margin", "100"]);
    assert_eq!(code, 0);
    assert_eq!(report["changed"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(
        last_value(&target, "\"Sales\".\"Invoice No\"").await,
        Some(639)
    );
}

#[tokio::test]
async fn missing_and_overflowing_sequences_fail_and_dry_run_writes_nothing() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("seq_sync_fail").await;
    let (source, target) = (
        connect(&dbs.source_url).await,
        connect(&dbs.target_url).await,
    );
    let both = r#"CREATE SCHEMA "Mixed";
        CREATE SEQUENCE "Mixed"."Small" AS smallint;
        CREATE SEQUENCE "Mixed".plain;"#;
    source.batch_execute(both).await.unwrap();
    target.batch_execute(both).await.unwrap();
    source
        .batch_execute(
            r#"CREATE SEQUENCE "Mixed"."Only Here";
               SELECT nextval('"Mixed"."Only Here"');
               SELECT setval('"Mixed"."Small"', 32000);
               SELECT setval('"Mixed".plain', 10);"#,
        )
        .await
        .unwrap();

    let (code, report, stderr) = sync(
        &dbs.source_url,
        &dbs.target_url,
        &["--margin", "1000", "--dry-run", "--schemas", "Mixed"],
    );
    assert_eq!(code, 1, "{report} {stderr}");
    let problems: Vec<(String, String)> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["sequence"].as_str().unwrap().to_string(),
                p["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        problems,
        vec![
            ("\"Mixed\".\"Only Here\"".into(), "missing-on-target".into()),
            ("\"Mixed\".\"Small\"".into(), "would-overflow".into()),
        ]
    );
    assert_eq!(report["changed"][0]["sequence"], "\"Mixed\".plain");
    assert_eq!(report["changed"][0]["set_to"], 1010);
    assert_eq!(
        last_value(&target, "\"Mixed\".plain").await,
        None,
        "dry run wrote"
    );

    // Without --dry-run the healthy one is set, the overflowing one is left alone (never wrapped).
    let (code, _, _) = sync(
        &dbs.source_url,
        &dbs.target_url,
        &[
            "--margin",
            "1000",
            "--rate-window",
            "1",
            "--schemas",
            "Mixed",
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(last_value(&target, "\"Mixed\".plain").await, Some(1010));
    assert_eq!(last_value(&target, "\"Mixed\".\"Small\"").await, None);

    // Could not run: exit 2 with the reason on stderr, no password in it.
    let bad = dbs
        .target_url
        .replace(&format!(":{}/", lab.var("TARGET_PORT")), ":1/");
    assert_ne!(bad, dbs.target_url);
    let (code, _, stderr) = sync(&dbs.source_url, &bad, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(!stderr.contains(&lab.var("LAB_ADMIN_PASSWORD")), "{stderr}");
}
