//! The classifier over real DMS failure messages and what libpq / tokio-postgres say for each cause
//! (`tests/fixtures/dms_connection_messages.json`, each message with its source).

use dms_core::rules::connectivity::{classify_failure, FailureClass};
use serde_json::Value;

const FIXTURES: &str = include_str!("fixtures/dms_connection_messages.json");

#[test]
fn every_fixture_message_gets_its_expected_class() {
    let fixtures: Value = serde_json::from_str(FIXTURES).expect("the fixture file is JSON");
    let messages = fixtures["messages"].as_array().expect("a messages array");
    let mut wrong = Vec::new();
    for entry in messages {
        let message = entry["message"].as_str().expect("message");
        let expected = entry["expected"].as_str().expect("expected");
        assert!(
            entry["source"].as_str().is_some_and(|s| !s.is_empty()),
            "every fixture names its source: {message}"
        );
        let expected = FailureClass::parse(expected)
            .unwrap_or_else(|| panic!("`{expected}` is not a class name"));
        let got = classify_failure(message);
        if got != expected {
            wrong.push(format!("expected {expected}, got {got}: {message}"));
        }
    }
    assert!(wrong.is_empty(), "misclassified:\n{}", wrong.join("\n"));
}

#[test]
fn the_fixtures_cover_every_class_and_real_dms_text() {
    let fixtures: Value = serde_json::from_str(FIXTURES).expect("the fixture file is JSON");
    let messages = fixtures["messages"].as_array().expect("a messages array");
    // `dms-unavailable` is set from the resources' status when DMS ran no test: no message to classify.
    for class in FailureClass::ALL
        .into_iter()
        .filter(|c| *c != FailureClass::DmsUnavailable)
    {
        assert!(
            messages.iter().any(|m| m["expected"] == class.as_str()),
            "no fixture for {class}"
        );
    }
    let real_dms = messages.iter().filter(|m| m["origin"] == "dms").count();
    assert!(real_dms >= 8, "only {real_dms} real DMS messages");
}
