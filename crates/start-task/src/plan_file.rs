//! The plan file a console user uploads to the stack's bucket (docs/console.md, *Applying a plan*): the
//! JSON `dms-migrate plan --format json` prints. start-task reads its `tableMappings` and `taskSettings`,
//! checks them, and applies them to the task with ModifyReplicationTask before a fresh start or a reload.
//! The rules here are pure; the reads are in `plan_source.rs` and the handler.
//!
//! A plan may set only what depends on the data: the table mappings and the settings below. Anything else
//! (the target table preparation mode, logging, the stack's LOB truncation guard...) stays the stack's,
//! so a plan is refused when it sets another key.

use dms_core::rules::table_mapping::TableMappings;
use serde_json::Value;

/// The key under which the plan file is read in the stack's bucket.
pub const PLAN_KEY: &str = "dms-plan.json";
/// A plan for tens of thousands of tables is a few MB; a larger object is not a plan.
pub const MAX_PLAN_BYTES: usize = 16 * 1024 * 1024;

/// https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TaskSettings.FullLoad.html:
/// MaxFullLoadSubTasks "The default is 8; the maximum value is 49".
const MAX_SUBTASKS: u64 = 49;
/// Limited LOB mode's largest LobMaxSize in KB
/// (https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.LOBSupport.html).
const MAX_LOB_KB: u64 = 102_400;
/// Range columns of one `parallel-load` rule
/// (https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TableMapping.SelectionTransformation.Tablesettings.html).
const MAX_RANGE_COLUMNS: usize = 10;

/// The settings a plan may set, as (section, key).
const PLAN_SETTINGS: [(&str, &str); 6] = [
    ("FullLoadSettings", "MaxFullLoadSubTasks"),
    ("TargetMetadata", "SupportLobs"),
    ("TargetMetadata", "FullLobMode"),
    ("TargetMetadata", "LimitedSizeLobMode"),
    ("TargetMetadata", "LobMaxSize"),
    ("TargetMetadata", "LobChunkSize"),
];

/// A plan that passed its checks: the two documents as ModifyReplicationTask takes them.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedPlan {
    pub table_mappings: Value,
    pub settings: Value,
    /// One line for the task-started email.
    pub summary: String,
}

/// Parses and checks the plan file against the target's tables (the task's target table preparation
/// mode is DO_NOTHING, so every mapped table must exist there; start-task reaches the target, not always
/// the source). Every error names the problem, for the failure email.
pub fn check(bytes: &[u8], target_tables: &[(String, String)]) -> Result<CheckedPlan, String> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| {
        format!("{PLAN_KEY} is not JSON ({e}); write it with `dms-migrate plan --format json`")
    })?;
    let mappings = doc
        .get("tableMappings")
        .filter(|m| m.is_object())
        .ok_or_else(|| format!("{PLAN_KEY} has no tableMappings object"))?;
    let parsed = TableMappings::parse(&mappings.to_string())
        .map_err(|e| format!("{PLAN_KEY}: tableMappings: {e}"))?;
    if parsed.select(target_tables).is_empty() {
        return Err(format!(
            "{PLAN_KEY}: tableMappings selects none of the target's tables; run `dms-migrate schema apply` first, or plan the right schemas"
        ));
    }
    let rules = mappings["rules"].as_array().cloned().unwrap_or_default();
    let mut segmented = 0;
    for rule in rules.iter().filter(|r| r["rule-type"] == "table-settings") {
        check_table_settings(rule, target_tables)?;
        if rule.get("parallel-load").is_some() {
            segmented += 1;
        }
    }
    let settings = doc
        .get("taskSettings")
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()));
    check_settings(&settings)?;
    let mut summary = format!(
        "{} table mapping rules, {segmented} table(s) loaded in parallel-load ranges",
        rules.len()
    );
    if let Some(n) = settings.pointer("/FullLoadSettings/MaxFullLoadSubTasks") {
        summary.push_str(&format!(", MaxFullLoadSubTasks {n}"));
    }
    if settings.pointer("/TargetMetadata/FullLobMode") == Some(&Value::Bool(true)) {
        summary.push_str(", full LOB mode");
    } else if let Some(kb) = settings.pointer("/TargetMetadata/LobMaxSize") {
        summary.push_str(&format!(", LobMaxSize {kb} KB"));
    }
    Ok(CheckedPlan {
        table_mappings: mappings.clone(),
        settings,
        summary,
    })
}

fn check_table_settings(rule: &Value, target_tables: &[(String, String)]) -> Result<(), String> {
    let id = rule["rule-id"].as_str().unwrap_or("?");
    let schema = rule
        .pointer("/object-locator/schema-name")
        .and_then(Value::as_str);
    let table = rule
        .pointer("/object-locator/table-name")
        .and_then(Value::as_str);
    let (Some(schema), Some(table)) = (schema, table) else {
        return Err(format!(
            "{PLAN_KEY}: table-settings rule {id} has no object-locator schema-name and table-name"
        ));
    };
    if !target_tables.iter().any(|(s, t)| s == schema && t == table) {
        return Err(format!(
            "{PLAN_KEY}: table-settings rule {id} names {schema}.{table}, which does not exist on the target"
        ));
    }
    let Some(load) = rule.get("parallel-load") else {
        return Ok(());
    };
    // A PostgreSQL source is segmented only by ranges: the partition types are for other engines.
    match load["type"].as_str() {
        Some("ranges") => {}
        Some("none") => return Ok(()),
        other => {
            return Err(format!(
                "{PLAN_KEY}: table-settings rule {id} ({schema}.{table}): parallel-load type {other:?}; a PostgreSQL source takes only \"ranges\" or \"none\""
            ))
        }
    }
    let columns = load["columns"].as_array().map(Vec::len).unwrap_or(0);
    if columns == 0 || columns > MAX_RANGE_COLUMNS {
        return Err(format!(
            "{PLAN_KEY}: table-settings rule {id} ({schema}.{table}): {columns} range columns; DMS takes 1 to {MAX_RANGE_COLUMNS}"
        ));
    }
    let boundaries = load["boundaries"].as_array().cloned().unwrap_or_default();
    if boundaries.is_empty() {
        return Err(format!(
            "{PLAN_KEY}: table-settings rule {id} ({schema}.{table}): ranges without boundaries"
        ));
    }
    if let Some(i) = boundaries
        .iter()
        .position(|b| b.as_array().map(Vec::len) != Some(columns))
    {
        return Err(format!(
            "{PLAN_KEY}: table-settings rule {id} ({schema}.{table}): boundary {} does not hold one value per range column ({columns})",
            i + 1
        ));
    }
    Ok(())
}

fn check_settings(settings: &Value) -> Result<(), String> {
    let Some(sections) = settings.as_object() else {
        return Err(format!("{PLAN_KEY}: taskSettings is not an object"));
    };
    for (section, keys) in sections {
        let Some(keys) = keys.as_object() else {
            return Err(format!(
                "{PLAN_KEY}: taskSettings.{section} is not an object"
            ));
        };
        for (key, value) in keys {
            if !PLAN_SETTINGS.contains(&(section.as_str(), key.as_str())) {
                return Err(format!(
                    "{PLAN_KEY}: taskSettings.{section}.{key} is not a setting a plan may change (only MaxFullLoadSubTasks and the LOB settings of TargetMetadata)"
                ));
            }
            let ok = match key.as_str() {
                "MaxFullLoadSubTasks" => value
                    .as_u64()
                    .is_some_and(|n| (1..=MAX_SUBTASKS).contains(&n)),
                "LobMaxSize" => value.as_u64().is_some_and(|n| n <= MAX_LOB_KB),
                "LobChunkSize" => value.as_u64().is_some_and(|n| n > 0),
                _ => value.is_boolean(),
            };
            if !ok {
                return Err(format!(
                    "{PLAN_KEY}: taskSettings.{section}.{key} = {value} is out of range (MaxFullLoadSubTasks 1-{MAX_SUBTASKS}, LobMaxSize 0-{MAX_LOB_KB} KB, LobChunkSize > 0, the others true or false)"
                ));
            }
        }
    }
    Ok(())
}

/// Whether `held` holds everything `given` says: the same scalars, arrays of the same length element by
/// element, objects with at least `given`'s keys. DMS may store a document with members added (defaults
/// such as an empty `filters`); it never drops what it was given.
fn holds(held: &Value, given: &Value) -> bool {
    match (held, given) {
        (Value::Object(h), Value::Object(g)) => g
            .iter()
            .all(|(k, v)| h.get(k).is_some_and(|hv| holds(hv, v))),
        (Value::Array(h), Value::Array(g)) => {
            h.len() == g.len() && h.iter().zip(g).all(|(hv, gv)| holds(hv, gv))
        }
        _ => held == given,
    }
}

/// The settings document to send: the task's current settings with the plan's keys laid over them. The
/// ModifyReplicationTask reference does not say whether DMS keeps the settings a document leaves out
/// (https://docs.aws.amazon.com/dms/latest/APIReference/API_ModifyReplicationTask.html), so the whole
/// document is sent and no setting of the task (BatchApplyEnabled, logging, validation) falls back to a
/// default behind the user's back.
pub fn full_settings(plan: &CheckedPlan, current: Option<&str>) -> Value {
    let mut settings = current
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| Value::Object(Default::default()));
    for (section, key) in PLAN_SETTINGS {
        if let Some(value) = plan.settings.get(section).and_then(|s| s.get(key)) {
            if !settings[section].is_object() {
                settings[section] = Value::Object(Default::default());
            }
            settings[section][key] = value.clone();
        }
    }
    settings
}

/// Whether the task already holds the plan: its mappings hold the plan's, and every setting the plan sets
/// has the plan's value. A re-run after the plan was applied then starts the task instead of modifying it
/// again.
pub fn already_applied(plan: &CheckedPlan, mappings: Option<&str>, settings: Option<&str>) -> bool {
    let same_mappings = mappings
        .and_then(|m| serde_json::from_str::<Value>(m).ok())
        .is_some_and(|m| holds(&m, &plan.table_mappings));
    let current: Value = settings
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null);
    let same_settings = PLAN_SETTINGS.iter().all(|(section, key)| {
        match plan.settings.get(section).and_then(|s| s.get(key)) {
            None => true,
            Some(want) => current.get(section).and_then(|s| s.get(key)) == Some(want),
        }
    });
    same_mappings && same_settings
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_plan_is_laid_over_the_tasks_whole_settings() {
        let plan = check(
            &plan_with(
                json!([select_app()]),
                json!({"FullLoadSettings": {"MaxFullLoadSubTasks": 12}}),
            ),
            &tables(),
        )
        .expect("a valid plan");
        let current = r#"{"TargetMetadata":{"BatchApplyEnabled":true},"FullLoadSettings":{"MaxFullLoadSubTasks":8,"CommitRate":10000}}"#;
        let sent = full_settings(&plan, Some(current));
        assert_eq!(sent["FullLoadSettings"]["MaxFullLoadSubTasks"], 12);
        assert_eq!(sent["FullLoadSettings"]["CommitRate"], 10000, "{sent}");
        assert_eq!(sent["TargetMetadata"]["BatchApplyEnabled"], true, "{sent}");
        assert_eq!(
            full_settings(&plan, None)["FullLoadSettings"]["MaxFullLoadSubTasks"],
            12
        );
    }

    fn tables() -> Vec<(String, String)> {
        vec![
            ("app".into(), "orders".into()),
            ("app".into(), "users".into()),
        ]
    }

    fn plan_with(rules: Value, settings: Value) -> Vec<u8> {
        json!({"tableMappings": {"rules": rules}, "taskSettings": settings, "estimate": {}})
            .to_string()
            .into_bytes()
    }

    fn select_app() -> Value {
        json!({"rule-type": "selection", "rule-id": "1", "rule-name": "include-1",
               "object-locator": {"schema-name": "app", "table-name": "%"}, "rule-action": "include"})
    }

    fn ranges(table: &str, columns: Value, boundaries: Value) -> Value {
        json!({"rule-type": "table-settings", "rule-id": "2", "rule-name": "parallel-load-2",
               "object-locator": {"schema-name": "app", "table-name": table},
               "parallel-load": {"type": "ranges", "columns": columns, "boundaries": boundaries}})
    }

    #[test]
    fn a_plan_from_dms_migrate_plan_passes_and_is_summarised() {
        let bytes = plan_with(
            json!([
                select_app(),
                ranges("orders", json!(["id"]), json!([["100"], ["200"]]))
            ]),
            json!({"FullLoadSettings": {"MaxFullLoadSubTasks": 12},
                   "TargetMetadata": {"SupportLobs": true, "FullLobMode": false, "LimitedSizeLobMode": true, "LobMaxSize": 8}}),
        );
        let plan = check(&bytes, &tables()).unwrap();
        assert_eq!(
            plan.summary,
            "2 table mapping rules, 1 table(s) loaded in parallel-load ranges, MaxFullLoadSubTasks 12, LobMaxSize 8 KB"
        );
        assert_eq!(plan.settings["TargetMetadata"]["LobMaxSize"], 8);
    }

    #[test]
    fn what_does_not_parse_or_names_a_missing_table_is_refused_by_name() {
        let err = check(b"{not json", &tables()).unwrap_err();
        assert!(err.contains("is not JSON"), "{err}");
        let err = check(br#"{"taskSettings": {}}"#, &tables()).unwrap_err();
        assert!(err.contains("no tableMappings"), "{err}");
        let err = check(
            &plan_with(
                json!([
                    select_app(),
                    ranges("invoices", json!(["id"]), json!([["1"]]))
                ]),
                json!({}),
            ),
            &tables(),
        )
        .unwrap_err();
        assert!(
            err.contains("app.invoices, which does not exist on the target"),
            "{err}"
        );
        let other_schema = json!({"rule-type": "selection", "rule-id": "1", "rule-name": "1",
            "object-locator": {"schema-name": "billing", "table-name": "%"}, "rule-action": "include"});
        let err = check(&plan_with(json!([other_schema]), json!({})), &tables()).unwrap_err();
        assert!(err.contains("selects none of the target's tables"), "{err}");
    }

    #[test]
    fn dms_limits_on_ranges_are_enforced_at_their_edges() {
        let ten: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
        let ok = plan_with(
            json!([
                select_app(),
                ranges("orders", json!(ten), json!([vec!["1"; 10]]))
            ]),
            json!({}),
        );
        assert!(check(&ok, &tables()).is_ok());
        let eleven: Vec<String> = (0..11).map(|i| format!("c{i}")).collect();
        let err = check(
            &plan_with(
                json!([
                    select_app(),
                    ranges("orders", json!(eleven), json!([vec!["1"; 11]]))
                ]),
                json!({}),
            ),
            &tables(),
        )
        .unwrap_err();
        assert!(err.contains("11 range columns"), "{err}");
        let err = check(
            &plan_with(
                json!([
                    select_app(),
                    ranges("orders", json!(["a", "b"]), json!([["1"]]))
                ]),
                json!({}),
            ),
            &tables(),
        )
        .unwrap_err();
        assert!(err.contains("boundary 1"), "{err}");
        let mut by_partition = ranges("orders", json!(["id"]), json!([["1"]]));
        by_partition["parallel-load"] = json!({"type": "partitions-auto"});
        let err = check(
            &plan_with(json!([select_app(), by_partition]), json!({})),
            &tables(),
        )
        .unwrap_err();
        assert!(err.contains("only \"ranges\""), "{err}");
    }

    #[test]
    fn a_plan_sets_only_the_data_dependent_settings_within_dms_limits() {
        let at = |settings: Value| check(&plan_with(json!([select_app()]), settings), &tables());
        assert!(at(json!({"FullLoadSettings": {"MaxFullLoadSubTasks": 49}})).is_ok());
        let err = at(json!({"FullLoadSettings": {"MaxFullLoadSubTasks": 50}})).unwrap_err();
        assert!(err.contains("out of range"), "{err}");
        assert!(at(json!({"TargetMetadata": {"LobMaxSize": 102400}})).is_ok());
        assert!(at(json!({"TargetMetadata": {"LobMaxSize": 102401}})).is_err());
        let err = at(json!({"FullLoadSettings": {"TargetTablePrepMode": "DROP_AND_CREATE"}}))
            .unwrap_err();
        assert!(
            err.contains("TargetTablePrepMode is not a setting a plan may change"),
            "{err}"
        );
    }

    #[test]
    fn a_task_holding_the_plan_is_not_modified_again() {
        let bytes = plan_with(
            json!([select_app()]),
            json!({"FullLoadSettings": {"MaxFullLoadSubTasks": 12}}),
        );
        let plan = check(&bytes, &tables()).unwrap();
        let mappings = plan.table_mappings.to_string();
        let holding = r#"{"FullLoadSettings": {"MaxFullLoadSubTasks": 12, "CommitRate": 10000}}"#;
        assert!(already_applied(&plan, Some(&mappings), Some(holding)));
        let older = r#"{"FullLoadSettings": {"MaxFullLoadSubTasks": 8}}"#;
        assert!(!already_applied(&plan, Some(&mappings), Some(older)));
        assert!(!already_applied(
            &plan,
            Some(r#"{"rules": []}"#),
            Some(holding)
        ));
        assert!(!already_applied(&plan, None, None));
        // DMS may add defaults to the stored mappings; what the plan gave is still there.
        let mut stored = plan.table_mappings.clone();
        stored["rules"][0]["filters"] = json!([]);
        assert!(already_applied(
            &plan,
            Some(&stored.to_string()),
            Some(holding)
        ));
        stored["rules"][0]["object-locator"]["table-name"] = json!("orders");
        assert!(!already_applied(
            &plan,
            Some(&stored.to_string()),
            Some(holding)
        ));
    }
}
