//! `dms-migrate plan` against the lab: on a 5,000,000-row table whose keys are skewed (4,000,000 dense keys,
//! then 1,000,000 keys 1,000 apart), every parallel-load segment holds within ±15% of the mean number of
//! rows, with boundaries from pg_stats when the table is analysed and from a page sample when it is not;
//! the mapping validates against the schema derived from the DMS pages and asks only for `ranges`;
//! MaxFullLoadSubTasks counts segments; LOB sizes are counted as DMS counts them (UTF-16 for NCLOB, 4
//! bytes for a character outside the BMP); a big table without a primary key or keyed on a float is left
//! in one segment with a warning saying why.

use integration_tests::lab::{self, workspace_root, Lab};
use serde_json::{json, Value};
use tokio_postgres::{Client, NoTls};

/// The errors Python's `jsonschema` (an implementation nobody here wrote, installed by `make deps` in
/// .tools/py) finds in `doc` against crates/cli/schemas/dms-table-mapping.schema.json.
fn schema_errors(doc: &Value) -> Vec<String> {
    use std::io::Write;
    let python = workspace_root().join(".tools/py/bin/python");
    assert!(
        python.exists(),
        "{} missing: run `make deps`",
        python.display()
    );
    let schema = workspace_root().join("crates/cli/schemas/dms-table-mapping.schema.json");
    let script = "import json, sys, jsonschema\n\
schema = json.load(open(sys.argv[1]))\n\
jsonschema.Draft202012Validator.check_schema(schema)\n\
v = jsonschema.Draft202012Validator(schema)\n\
print(json.dumps([e.message for e in v.iter_errors(json.load(sys.stdin))]))\n";
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .arg(schema)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(doc.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The schema is not a formality: the documented shape passes, and what DMS refuses does not (11 range
/// columns, an unknown parallel-load type, ranges without boundaries, a non-numeric rule-id, a
/// selection without an action).
#[test]
fn the_table_mapping_schema_accepts_the_documented_shape_and_refuses_the_rest() {
    let good = json!({"rules": [
        {"rule-type": "selection", "rule-id": "1", "rule-name": "include-1",
         "object-locator": {"schema-name": "app", "table-name": "%"}, "rule-action": "include"},
        {"rule-type": "table-settings", "rule-id": "2", "rule-name": "parallel-load-2",
         "object-locator": {"schema-name": "app", "table-name": "orders"},
         "parallel-load": {"type": "ranges", "columns": ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"],
                           "boundaries": [["1", "1", "1", "1", "1", "1", "1", "1", "1", "1"]]}}
    ]});
    assert_eq!(schema_errors(&good), Vec::<String>::new());
    let bad = |pointer: &str, value: Value| {
        let mut doc = good.clone();
        *doc.pointer_mut(pointer).unwrap() = value;
        let errors = schema_errors(&doc);
        assert!(!errors.is_empty(), "{pointer} = accepted: {doc}");
    };
    bad(
        "/rules/1/parallel-load/columns",
        json!(["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"]),
    );
    bad("/rules/1/parallel-load/type", json!("segments"));
    bad(
        "/rules/1/parallel-load",
        json!({"type": "ranges", "columns": ["id"]}),
    );
    bad("/rules/0/rule-id", json!("one"));
    bad(
        "/rules/0",
        json!({"rule-type": "selection", "rule-id": "1", "rule-name": "1",
        "object-locator": {"schema-name": "app", "table-name": "%"}}),
    );
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

fn plan(url: &str, extra: &[&str]) -> (i32, Value, String) {
    let out = lab::dms_migrate()
        .args(["plan", "--source", url, "--format", "json"])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn table_plan<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == name)
        .unwrap_or_else(|| panic!("{name} not segmented in {}", plan["tables"]))
}

/// Rows per segment as DMS cuts them: the first segment holds keys up to and including the first
/// boundary, each next one the keys above the previous boundary up to its own, the last one the rest.
async fn segment_rows(client: &Client, table: &str, boundaries: &[i64]) -> Vec<i64> {
    let mut counts = Vec::new();
    let mut lower: Option<i64> = None;
    for upper in boundaries.iter().map(|b| Some(*b)).chain([None]) {
        let sql = format!(
            "SELECT count(*) FROM {table} WHERE ($1::int8 IS NULL OR id > $1) AND ($2::int8 IS NULL OR id <= $2)"
        );
        counts.push(
            client
                .query_one(&sql, &[&lower, &upper])
                .await
                .unwrap()
                .get(0),
        );
        lower = upper;
    }
    counts
}

fn assert_even(name: &str, counts: &[i64]) {
    let total: i64 = counts.iter().sum();
    assert_eq!(total, 5_000_000, "{name}: every row in exactly one segment");
    let mean = total as f64 / counts.len() as f64;
    for (i, c) in counts.iter().enumerate() {
        let off = (*c as f64 - mean).abs() / mean;
        assert!(
            off <= 0.15,
            "{name}: segment {} holds {c} rows, {:.1}% off the mean {mean:.0} ({counts:?})",
            i + 1,
            off * 100.0
        );
    }
}

#[tokio::test]
async fn segments_of_a_skewed_table_hold_even_row_counts_and_dms_limits_hold() {
    let Some(lab) = Lab::get().await else { return };
    let dbs = lab.fresh_databases("plan").await;
    let source = connect(&dbs.source_url).await;
    source
        .batch_execute(
            "CREATE SCHEMA app;
             CREATE TABLE app.analysed_keys (id int8, v int4) WITH (autovacuum_enabled = false);
             INSERT INTO app.analysed_keys
               SELECT g, g % 97 FROM generate_series(1, 4000000) g
               UNION ALL SELECT 10000000 + g * 1000, g % 89 FROM generate_series(1, 1000000) g;
             ALTER TABLE app.analysed_keys ADD PRIMARY KEY (id);
             CREATE TABLE app.sampled_keys WITH (autovacuum_enabled = false) AS SELECT * FROM app.analysed_keys;
             ALTER TABLE app.sampled_keys ADD PRIMARY KEY (id);
             ANALYZE app.analysed_keys;
             CREATE TABLE app.no_key (v int4) WITH (autovacuum_enabled = false);
             INSERT INTO app.no_key SELECT g FROM generate_series(1, 600000) g;
             CREATE TABLE app.float_key (k float8 PRIMARY KEY) WITH (autovacuum_enabled = false);
             INSERT INTO app.float_key SELECT g FROM generate_series(1, 600000) g;
             ANALYZE app.no_key, app.float_key;
             CREATE TABLE app.docs (id int4 PRIMARY KEY, body text, blob bytea, meta jsonb, note varchar, code varchar(20));
             INSERT INTO app.docs VALUES
               (1, repeat('a', 100), '\\x00', '{}', 'n', 'c'),
               (2, repeat(U&'\\+01F600', 1000) || repeat('a', 500), decode(repeat('ff', 7000), 'hex'), '{\"k\": \"\\u00e9\"}', repeat('n', 300), 'c');",
        )
        .await
        .unwrap();

    let (code, plan, stderr) = plan(
        &dbs.source_url,
        &["--max-segment-rows", "500000", "--exact-lobs"],
    );
    assert_eq!(code, 0, "{stderr}");

    // Boundaries: pg_stats for the analysed table, a sample for the other; each segment within ±15%.
    for (name, source_kind) in [("analysed_keys", "pg-stats"), ("sampled_keys", "sample")] {
        let t = table_plan(&plan, name);
        assert_eq!(t["boundarySource"], source_kind, "{t}");
        assert_eq!(t["rangeColumns"], serde_json::json!(["id"]));
        let boundaries: Vec<i64> = t["boundaries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(boundaries.len(), 9, "10 segments of 500,000 rows: {t}");
        assert!(boundaries.windows(2).all(|w| w[0] < w[1]), "{boundaries:?}");
        let counts = segment_rows(&source, &format!("app.{name}"), &boundaries).await;
        assert_even(name, &counts);
    }

    // The mapping: valid against the schema derived from the DMS pages, ranges only, one boundary value
    // per range column; MaxFullLoadSubTasks counts the 20 segments.
    let errors = schema_errors(&plan["tableMappings"]);
    assert!(errors.is_empty(), "{errors:?}");
    let settings_rules: Vec<&Value> = plan["tableMappings"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["rule-type"] == "table-settings")
        .collect();
    assert_eq!(settings_rules.len(), 2, "only the two keyed big tables");
    for r in settings_rules {
        assert_eq!(r["parallel-load"]["type"], "ranges");
    }
    assert_eq!(
        plan["taskSettings"]["FullLoadSettings"]["MaxFullLoadSubTasks"],
        20
    );

    // What the plan cannot fix is said.
    let warnings = plan["warnings"].to_string();
    assert!(
        warnings.contains("app.no_key") && warnings.contains("no primary key"),
        "{warnings}"
    );
    assert!(
        warnings.contains("app.float_key") && warnings.contains("floating-point"),
        "{warnings}"
    );

    // LOBs as DMS counts them: 1,000 emoji (4 bytes each in UTF-16) + 500 ASCII = 5,000 bytes of NCLOB;
    // 7,000 bytes of BLOB; LobMaxSize 7,000 bytes + 10% = 8 KB, raised to DMS's default 32 KB.
    let columns = plan["lob"]["columns"].as_array().unwrap();
    let size = |c: &str| {
        columns
            .iter()
            .find(|l| l["column"] == c)
            .unwrap_or_else(|| panic!("{c} not measured"))["maxBytes"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(size("body"), 5000);
    // varchar without a length is an NCLOB for DMS; varchar(20) is not a LOB.
    assert_eq!(size("note"), 600);
    assert!(columns.iter().all(|l| l["column"] != "code"), "{columns:?}");
    assert_eq!(size("blob"), 7000);
    assert!(columns.iter().all(|l| l["exact"] == true));
    assert_eq!(plan["taskSettings"]["TargetMetadata"]["LobMaxSize"], 32);
    assert_eq!(plan["estimate"]["region"], "us-east-1");
    assert!(plan["estimate"]["fullLoadHoursMax"].as_f64().unwrap() > 0.0);

    // The text form runs too, and a region the price table lacks is refused (exit 2), naming the ones it has.
    let out = lab::dms_migrate()
        .args([
            "plan",
            "--source",
            &dbs.source_url,
            "--region",
            "xx-nowhere-1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("us-east-1"));

    drop(source);
    lab.drop_databases(&dbs).await;
}
