//! `dms-migrate verify` against the lab: identical copies of the demo schema (120,000 orders, so several
//! key ranges) and of the hard schema (mixed case, identity, no-PK table, partitioned table, FK cycle,
//! jsonb/bytea, 3 schemas) match after `sequences sync`; then one changed row and one missing row are
//! each named with their table and key range (and, with --exact, their key), a table without a primary
//! key is reported whole, and a dropped index shows in the schema diff.

use integration_tests::lab::{self, workspace_root, Lab, TestDatabases};
use serde_json::Value;
use tokio_postgres::{Client, NoTls};

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(workspace_root().join("tests/fixtures").join(name)).unwrap()
}

fn dms_migrate(dbs: &TestDatabases, args: &[&str]) -> (i32, Value, String) {
    let out = lab::dms_migrate()
        .args(args)
        .args(["--source", &dbs.source_url, "--target", &dbs.target_url])
        .args(["--format", "json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn table<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == name)
        .unwrap_or_else(|| panic!("{name} not in {report}"))
}

/// The range's bounds hold `key` (bounds are the first key column's text).
fn range_holds(range: &Value, key: i64) -> bool {
    let bound = |b: &Value| b.as_str().map(|s| s.parse::<i64>().unwrap());
    bound(&range["lower"]).is_none_or(|lo| lo <= key)
        && bound(&range["upper"]).is_none_or(|hi| key < hi)
}

#[tokio::test]
async fn demo_copy_matches_then_a_changed_and_a_missing_row_are_located() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("verify_demo").await;
    let load = format!(
        "{}\nSET demo.rows = '120000';\n{}\nANALYZE;",
        fixture("demo_schema.sql"),
        fixture("demo_data.sql")
    );
    let (source, target) = (
        connect(&dbs.source_url).await,
        connect(&dbs.target_url).await,
    );
    let (a, b) = tokio::join!(source.batch_execute(&load), target.batch_execute(&load));
    a.unwrap();
    b.unwrap();

    // The source handed out a value the target would repeat: verify fails until sequences sync ran.
    source
        .batch_execute("SELECT nextval('app.order_number_seq')")
        .await
        .unwrap();
    let (code, report, stderr) = dms_migrate(&dbs, &["verify"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(report["summary"]["sequences_behind"].as_u64().unwrap() > 0);
    assert_eq!(report["summary"]["tables_mismatched"], 0, "{report}");
    let (code, _, stderr) = dms_migrate(&dbs, &["sequences", "sync"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, report, stderr) = dms_migrate(&dbs, &["verify"]);
    assert_eq!(code, 0, "{report} {stderr}");
    let orders = table(&report, "app.orders");
    assert_eq!(orders["source_rows"], 120_000);
    assert!(orders["ranges"].as_u64().unwrap() >= 2, "{orders}");

    target
        .batch_execute(
            "DELETE FROM app.order_items WHERE order_id = 777;
             UPDATE app.orders SET status = 'changed' WHERE id = 100500;",
        )
        .await
        .unwrap();
    let (code, report, stderr) = dms_migrate(&dbs, &["verify", "--exact", "--jobs", "2"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(report["summary"]["tables_mismatched"], 2, "{report}");

    let items = table(&report, "app.order_items");
    assert_eq!(items["target_rows"], 119_999);
    let ranges = items["mismatches"].as_array().unwrap();
    assert_eq!(ranges.len(), 1, "{items}");
    assert!(range_holds(&ranges[0], 777), "{items}");
    assert_eq!(ranges[0]["rows"][0]["key"], "(777,1)");
    assert_eq!(ranges[0]["rows"][0]["problem"], "missing-on-target");

    let orders = table(&report, "app.orders");
    assert_eq!(orders["source_rows"], orders["target_rows"]);
    let ranges = orders["mismatches"].as_array().unwrap();
    assert_eq!(ranges.len(), 1, "{orders}");
    assert!(range_holds(&ranges[0], 100_500), "{orders}");
    assert!(ranges[0]["upper"].is_string() || ranges[0]["lower"].is_string());
    assert_eq!(ranges[0]["checksums_match"], false);
    assert_eq!(ranges[0]["rows"][0]["key"], "(100500)");
    assert_eq!(ranges[0]["rows"][0]["problem"], "different");

    // --sample checks fewer ranges but still counts every row exactly.
    let (code, report, _) = dms_migrate(&dbs, &["verify", "--sample", "1"]);
    assert_eq!(code, 1);
    let items = table(&report, "app.order_items");
    assert_eq!(items["ranges_compared"], 1);
    assert_eq!(items["target_rows"], 119_999);
}

#[tokio::test]
async fn hard_schema_matches_then_differences_are_named() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("verify_hard").await;
    let (source, target) = (
        connect(&dbs.source_url).await,
        connect(&dbs.target_url).await,
    );
    for c in [&source, &target] {
        c.batch_execute(&fixture("hard_schema.sql")).await.unwrap();
    }
    let (code, _, stderr) = dms_migrate(&dbs, &["sequences", "sync"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, report, stderr) = dms_migrate(&dbs, &["verify"]);
    assert_eq!(code, 0, "{report} {stderr}");
    assert_eq!(report["summary"]["schema_differences"], 0, "{report}");
    assert_eq!(table(&report, "\"order\".\"Line\"")["source_rows"], 3);
    let log = table(&report, "inventory.stock_log");
    assert_eq!(
        (log["source_rows"].as_i64(), log["localised"].as_bool()),
        (Some(3), Some(false))
    );

    target
        .batch_execute(
            r#"UPDATE "Sales"."Customer Accounts" SET avatar = '\x00ff11' WHERE "Id" = 1;
               INSERT INTO inventory.stock_log VALUES ('B-2', 1, '2024-01-03 00:00:00+00', NULL);
               DROP INDEX "order"."Line_sku_idx";"#,
        )
        .await
        .unwrap();
    let out = lab::dms_migrate()
        .args([
            "verify",
            "--source",
            &dbs.source_url,
            "--target",
            &dbs.target_url,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("  \"Sales\".\"Customer Accounts\": 2 source rows, 2 target rows\n    range the whole table: 2 source rows, 2 target rows, checksums differ\n"),
        "{text}"
    );
    assert!(
        text.contains("  inventory.stock_log: 3 source rows, 4 target rows (no primary key: compared whole, the difference cannot be located)"),
        "{text}"
    );
    assert!(
        text.contains("index \"order\".\"Line_sku_idx\" missing-on-target"),
        "{text}"
    );
    assert!(!text.contains(&lab.var("LAB_ADMIN_PASSWORD")));
}

/// A `--schemas` typo selects nothing: verify, preflight and sequences sync would compare nothing and exit
/// 0. Each refuses it instead (exit 2), naming the schema, and still runs with the right name.
#[tokio::test]
async fn a_schemas_name_the_source_lacks_is_refused() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("verify_schemas").await;
    for url in [&dbs.source_url, &dbs.target_url] {
        connect(url)
            .await
            .batch_execute(
                "CREATE SCHEMA \"Sales\"; CREATE TABLE \"Sales\".t (id int PRIMARY KEY);
                 INSERT INTO \"Sales\".t VALUES (1)",
            )
            .await
            .unwrap();
    }
    for command in [&["verify"][..], &["preflight"], &["sequences", "sync"]] {
        let args: Vec<&str> = command
            .iter()
            .copied()
            .chain(["--schemas", "sales,Sales"])
            .collect();
        let (code, json, stderr) = dms_migrate(&dbs, &args);
        assert_eq!(code, 2, "{command:?}: {json} {stderr}");
        assert!(
            stderr.contains("--schemas names a schema the source does not have: sales"),
            "{command:?}: {stderr}"
        );
    }
    let (code, json, stderr) = dms_migrate(&dbs, &["verify", "--schemas", "Sales"]);
    assert_eq!(code, 0, "{json} {stderr}");
    assert_eq!(json["tables"].as_array().map(Vec::len), Some(1), "{json}");
}
