//! Strict parsing of the execution input the user pastes (docs/state-machine-contract.md). Every problem is collected, not just
//! the first, and each names the field, what was received (never a secret) and what is expected, so one
//! corrected paste is enough.

use serde_json::{Map, Value};

use crate::errors::StepError;
use crate::rules::arn::DmsArn;
use crate::rules::redact::redact_secrets;
use crate::rules::state::{Context, ExecutionState, Links, Monitor, Options, Results, StartMode};

const REQUIRED: [&str; 6] = [
    "replicationInstanceArn",
    "sourceEndpointArn",
    "targetEndpointArn",
    "replicationTaskArn",
    "sourceEndpointHost",
    "sourcePort",
];

/// Set by the state machine itself; a user pasting them has pasted an old execution's output.
const MACHINE_FIELDS: [&str; 4] = ["context", "monitor", "results", "error"];

/// Step Functions keeps at most 25,000 events per execution; one Wait → poll → Choice round without retries
/// is 9 (`crate::rules::history`). tests/tests/history_budget.rs checks that the longest path before monitoring,
/// this many rounds and the ending fit; retries beyond that are caught at run time by
/// `history::may_poll_again`.
pub const MAX_POLLS_LIMIT: u32 = 2500;

/// A Standard execution may run for one year
/// (https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html); past it the execution times
/// out with no email. Monitoring may last at most 90 days counted from the execution's start, which leaves
/// months for everything before it (the assessment loop: at most 120 waits of at most an hour, retries)
/// and after it (the last email).
pub const MAX_MONITOR_HOURS_LIMIT: u32 = 24 * 90;

struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, field: &str, received: Option<&Value>, expected: &str) {
        let received = match received {
            None => "nothing (the field is missing)".to_string(),
            Some(value) => describe(value),
        };
        self.0.push(format!(
            "`{field}`: received {received}; expected {expected}"
        ));
    }
}

/// How a received value is shown: short, quoted, and scrubbed of anything that looks like a credential.
fn describe(value: &Value) -> String {
    let text = match value {
        Value::String(s) if s.contains('@') && s.contains("://") => {
            return "a connection string (not shown: it may hold a password)".to_string()
        }
        Value::String(s) => format!("\"{s}\""),
        Value::Null => return "null".to_string(),
        Value::Object(_) => return "an object".to_string(),
        Value::Array(_) => return "a list".to_string(),
        other => other.to_string(),
    };
    let text = redact_secrets(&text);
    if text.chars().count() > 80 {
        let cut: String = text.chars().take(77).collect();
        format!("{cut}...")
    } else {
        text
    }
}

/// The execution input as pasted → the normalised state with every default filled in.
/// `execution_id` is the Step Functions execution ARN; `now` is the current time in epoch seconds.
pub fn parse_payload(
    raw: &Value,
    execution_id: &str,
    now: i64,
) -> Result<ExecutionState, StepError> {
    let Some(object) = raw.as_object() else {
        return Err(StepError::payload(format!(
            "The execution input must be a JSON object (the stack output StepFunctionsPayloadTemplate); received {}.",
            describe(raw)
        )));
    };
    let mut problems = Problems(Vec::new());

    for key in object.keys() {
        if MACHINE_FIELDS.contains(&key.as_str()) {
            problems.0.push(format!(
                "`{key}`: is set by the state machine, not by the input; paste the stack output StepFunctionsPayloadTemplate as it is"
            ));
        } else if !REQUIRED.contains(&key.as_str()) && key != "options" {
            problems.0.push(format!(
                "`{key}`: unknown field (a typo?); the input takes {} and options",
                REQUIRED.join(", ")
            ));
        }
    }

    let instance = arn_field(object, "replicationInstanceArn", "rep", &mut problems);
    let source = arn_field(object, "sourceEndpointArn", "endpoint", &mut problems);
    let target = arn_field(object, "targetEndpointArn", "endpoint", &mut problems);
    let task = arn_field(object, "replicationTaskArn", "task", &mut problems);
    if let (Some(s), Some(t)) = (&source, &target) {
        if s == t {
            problems.0.push(
                "`targetEndpointArn`: is the same endpoint as sourceEndpointArn; expected the PlanetScale target endpoint".to_string(),
            );
        }
    }
    let arns: Vec<(&str, &DmsArn)> = [
        ("replicationInstanceArn", &instance),
        ("sourceEndpointArn", &source),
        ("targetEndpointArn", &target),
        ("replicationTaskArn", &task),
    ]
    .into_iter()
    .filter_map(|(name, arn)| arn.as_ref().map(|a| (name, a)))
    .collect();
    if let Some((first_name, first)) = arns.first() {
        for (name, arn) in &arns[1..] {
            if (
                arn.partition.as_str(),
                arn.region.as_str(),
                arn.account.as_str(),
            ) != (
                first.partition.as_str(),
                first.region.as_str(),
                first.account.as_str(),
            ) {
                problems.0.push(format!(
                    "`{name}`: is in {}/{} but {first_name} is in {}/{}; expected all four ARNs from the same stack (one region and account)",
                    arn.region, arn.account, first.region, first.account
                ));
            }
        }
    }

    let host = host_field(object, &mut problems);
    let port = port_field(object.get("sourcePort"), "sourcePort", &mut problems);
    let options = options_field(object.get("options"), &mut problems);

    if !problems.0.is_empty() {
        let count = problems.0.len();
        let list = problems
            .0
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}) {p}", i + 1))
            .collect::<Vec<_>>()
            .join("\n");
        let noun = if count == 1 { "problem" } else { "problems" };
        return Err(StepError::payload(format!(
            "The execution input has {count} {noun}:\n{list}\nFix: copy the stack output StepFunctionsPayloadTemplate again and start a new execution with it."
        )));
    }

    // Every Option below is Some when `problems` is empty; the let-else keeps that honest without unwrap.
    let (
        Some(instance),
        Some(source),
        Some(target),
        Some(task),
        Some(host),
        Some(port),
        Some(options),
    ) = (instance, source, target, task, host, port, options)
    else {
        return Err(StepError::payload("The execution input could not be read."));
    };
    let context = build_context(&task, execution_id, now);
    let monitor = Monitor {
        deadline_epoch_seconds: now + i64::from(options.max_monitor_hours) * 3600,
        polls: 0,
        consecutive_ready_polls: 0,
        full_load_announced: false,
        next_poll_seconds: options.poll_interval_seconds,
        recovering_since_epoch_seconds: None,
        recovery_announced: false,
    };
    Ok(ExecutionState {
        replication_instance_arn: instance.to_string(),
        source_endpoint_arn: source.to_string(),
        target_endpoint_arn: target.to_string(),
        replication_task_arn: task.to_string(),
        source_endpoint_host: host,
        source_port: port,
        options,
        context,
        monitor,
        results: Results::default(),
        error: None,
    })
}

fn arn_field(
    object: &Map<String, Value>,
    field: &str,
    rtype: &str,
    problems: &mut Problems,
) -> Option<DmsArn> {
    let value = object.get(field);
    let Some(Value::String(text)) = value else {
        problems.add(
            field,
            value.filter(|v| !v.is_null()),
            &format!("a DMS ARN arn:aws:dms:REGION:ACCOUNT:{rtype}:ID"),
        );
        return None;
    };
    match DmsArn::parse(text.trim(), rtype) {
        Ok(arn) => Some(arn),
        Err(why) => {
            problems.add(field, value, &why);
            None
        }
    }
}

fn host_field(object: &Map<String, Value>, problems: &mut Problems) -> Option<String> {
    const FIELD: &str = "sourceEndpointHost";
    const EXPECTED: &str = "the source host name alone, e.g. mycluster.cluster-abc123.us-east-1.rds.amazonaws.com (no scheme, port, path or user)";
    let value = object.get(FIELD);
    let Some(Value::String(text)) = value else {
        problems.add(FIELD, value.filter(|v| !v.is_null()), EXPECTED);
        return None;
    };
    let host = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let well_formed = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if well_formed {
        Some(host)
    } else {
        let why = if host.contains("://") {
            format!("{EXPECTED}; remove the scheme")
        } else if host.contains(':') {
            format!("{EXPECTED}; put the port in sourcePort")
        } else {
            EXPECTED.to_string()
        };
        problems.add(FIELD, value, &why);
        None
    }
}

fn port_field(value: Option<&Value>, field: &str, problems: &mut Problems) -> Option<u16> {
    const EXPECTED: &str = "a port number from 1 to 65535, e.g. 5432";
    let number = match value {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match number
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| *n > 0)
    {
        Some(port) => Some(port),
        None => {
            problems.add(field, value.filter(|v| !v.is_null()), EXPECTED);
            None
        }
    }
}

fn options_field(value: Option<&Value>, problems: &mut Problems) -> Option<Options> {
    let mut options = Options::default();
    let object = match value {
        None | Some(Value::Null) => return Some(options),
        Some(Value::Object(object)) => object,
        Some(other) => {
            problems.add(
                "options",
                Some(other),
                "an object such as {\"pollIntervalSeconds\": 60}, or no options at all",
            );
            return None;
        }
    };
    let before = problems.0.len();
    for (key, value) in object {
        let field = format!("options.{key}");
        let value = Some(value).filter(|v| !v.is_null());
        match key.as_str() {
            "autoFixSecurityGroup" => set(&mut options.auto_fix_security_group, bool_value(value), &field, value, "true or false", problems),
            "truncateTarget" => set(&mut options.truncate_target, bool_value(value), &field, value, "true or false", problems),
            "pollIntervalSeconds" => int(&mut options.poll_interval_seconds, value, &field, 1, 3600, problems),
            "assessmentPollSeconds" => int(&mut options.assessment_poll_seconds, value, &field, 1, 3600, problems),
            "maxMonitorHours" => int(&mut options.max_monitor_hours, value, &field, 1, MAX_MONITOR_HOURS_LIMIT, problems),
            "maxPolls" => int(&mut options.max_polls, value, &field, 1, MAX_POLLS_LIMIT, problems),
            "cdcLatencyTargetSeconds" => int(&mut options.cdc_latency_target_seconds, value, &field, 1, 3600, problems),
            "readyAfterConsecutivePolls" => int(&mut options.ready_after_consecutive_polls, value, &field, 1, 100, problems),
            "startMode" => {
                let mode = value.and_then(Value::as_str).map(str::trim).and_then(|s| match s {
                    "auto" => Some(StartMode::Auto),
                    "reload" => Some(StartMode::Reload),
                    _ => None,
                });
                set(&mut options.start_mode, mode, &field, value, "\"auto\" (start or resume as the task's state calls for) or \"reload\"", problems);
            }
            _ => problems.0.push(format!(
                "`{field}`: unknown option (a typo?); options are autoFixSecurityGroup, pollIntervalSeconds, assessmentPollSeconds, maxMonitorHours, maxPolls, cdcLatencyTargetSeconds, readyAfterConsecutivePolls, startMode, truncateTarget"
            )),
        }
    }
    if options.truncate_target && options.start_mode != StartMode::Reload {
        problems.0.push(
            "`options.truncateTarget`: received true with startMode \"auto\"; expected truncateTarget only together with startMode \"reload\" (it empties the mapped target tables before a reload)".to_string(),
        );
    }
    (problems.0.len() == before).then_some(options)
}

fn bool_value(value: Option<&Value>) -> Option<bool> {
    match value {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) => match s.trim() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn set<T>(
    slot: &mut T,
    parsed: Option<T>,
    field: &str,
    value: Option<&Value>,
    expected: &str,
    problems: &mut Problems,
) {
    match parsed {
        Some(v) => *slot = v,
        None if value.is_none() => {} // null: keep the default
        None => problems.add(field, value, expected),
    }
}

fn int(
    slot: &mut u32,
    value: Option<&Value>,
    field: &str,
    min: u32,
    max: u32,
    problems: &mut Problems,
) {
    let parsed = match value {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        _ => None,
    }
    .and_then(|n| u32::try_from(n).ok())
    .filter(|n| (min..=max).contains(n));
    let expected = format!("a whole number from {min} to {max}");
    set(slot, parsed, field, value, &expected, problems);
}

fn build_context(task: &DmsArn, execution_id: &str, now: i64) -> Context {
    Context {
        execution_id: execution_id.to_string(),
        region: task.region.clone(),
        account_id: task.account.clone(),
        task_id: task.resource_id.clone(),
        started_at_epoch_seconds: now,
        links: Links::new(&task.partition, &task.region, execution_id),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::errors::ErrorName;

    const EXEC: &str = "arn:aws:states:us-east-1:123456789012:execution:demo-migration:run-1";

    fn valid() -> Value {
        json!({
            "replicationInstanceArn": "arn:aws:dms:us-east-1:123456789012:rep:INSTANCE1",
            "sourceEndpointArn": "arn:aws:dms:us-east-1:123456789012:endpoint:SOURCE1",
            "targetEndpointArn": "arn:aws:dms:us-east-1:123456789012:endpoint:TARGET1",
            "replicationTaskArn": "arn:aws:dms:us-east-1:123456789012:task:TASK1",
            "sourceEndpointHost": "db.cluster-abc.us-east-1.rds.amazonaws.com",
            "sourcePort": 5432
        })
    }

    fn error_of(raw: Value) -> String {
        let err = parse_payload(&raw, EXEC, 1_000).unwrap_err();
        assert_eq!(err.name, ErrorName::PayloadInvalid);
        err.message
    }

    #[test]
    fn minimal_payload_gets_every_default() {
        let state = parse_payload(&valid(), EXEC, 1_000).unwrap();
        assert_eq!(state.options, Options::default());
        assert_eq!(state.source_port, 5432);
        assert_eq!(state.context.region, "us-east-1");
        assert_eq!(state.context.account_id, "123456789012");
        assert_eq!(state.context.task_id, "TASK1");
        assert!(state.context.links.execution.contains(EXEC));
        assert_eq!(state.monitor.deadline_epoch_seconds, 1_000 + 72 * 3600);
        assert_eq!(state.monitor.next_poll_seconds, 60);
        // the normalised state must survive a round trip through the next Lambda
        let back: ExecutionState =
            serde_json::from_value(serde_json::to_value(&state).unwrap()).unwrap();
        assert_eq!(back, state);
    }

    #[test]
    fn full_template_as_the_stack_outputs_it_parses() {
        let mut raw = valid();
        raw["options"] = json!({ "autoFixSecurityGroup": true, "pollIntervalSeconds": 60, "assessmentPollSeconds": 30,
            "maxMonitorHours": 72, "maxPolls": 2500, "cdcLatencyTargetSeconds": 5,
            "readyAfterConsecutivePolls": 3, "startMode": "auto", "truncateTarget": false });
        assert_eq!(
            parse_payload(&raw, EXEC, 0).unwrap().options,
            Options::default()
        );
    }

    #[test]
    fn console_mistakes_string_port_and_trailing_spaces_are_forgiven() {
        let mut raw = valid();
        raw["sourcePort"] = json!(" 5433 ");
        raw["replicationTaskArn"] = json!("arn:aws:dms:us-east-1:123456789012:task:TASK1  ");
        raw["sourceEndpointHost"] = json!(" DB.example.com\n");
        let state = parse_payload(&raw, EXEC, 0).unwrap();
        assert_eq!(state.source_port, 5433);
        assert_eq!(
            state.replication_task_arn,
            "arn:aws:dms:us-east-1:123456789012:task:TASK1"
        );
        assert_eq!(state.source_endpoint_host, "db.example.com");
    }

    #[test]
    fn missing_field_is_named() {
        let mut raw = valid();
        raw.as_object_mut().unwrap().remove("targetEndpointArn");
        let msg = error_of(raw);
        assert!(
            msg.contains("`targetEndpointArn`: received nothing (the field is missing)"),
            "{msg}"
        );
        assert!(msg.contains("StepFunctionsPayloadTemplate"), "{msg}");
    }

    #[test]
    fn extra_field_is_rejected_without_echoing_its_value() {
        let mut raw = valid();
        raw["sourcePassword"] = json!("hunter2");
        let msg = error_of(raw);
        assert!(msg.contains("`sourcePassword`: unknown field"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn port_rules() {
        for bad in [
            json!(0),
            json!(65536),
            json!("54x"),
            json!(-1),
            json!(5432.5),
            json!(true),
        ] {
            let mut raw = valid();
            raw["sourcePort"] = bad.clone();
            let msg = error_of(raw);
            assert!(
                msg.contains("`sourcePort`") && msg.contains("1 to 65535"),
                "{bad}: {msg}"
            );
        }
        let mut raw = valid();
        raw["sourcePort"] = json!(65535);
        assert_eq!(parse_payload(&raw, EXEC, 0).unwrap().source_port, 65535);
    }

    #[test]
    fn arn_rules_name_the_field() {
        let mut raw = valid();
        raw["replicationTaskArn"] = json!("arn:aws:dms:us-east-1:123456789012:endpoint:X");
        let msg = error_of(raw);
        assert!(
            msg.contains("`replicationTaskArn`") && msg.contains("expected a `task` ARN"),
            "{msg}"
        );

        let mut raw = valid();
        raw["targetEndpointArn"] = json!("arn:aws:dms:eu-west-1:123456789012:endpoint:TARGET1");
        let msg = error_of(raw);
        assert!(
            msg.contains("`targetEndpointArn`: is in eu-west-1"),
            "{msg}"
        );

        let mut raw = valid();
        raw["replicationInstanceArn"] = json!("arn:aws:dms:us-east-1:999999999999:rep:INSTANCE1");
        let msg = error_of(raw);
        assert!(
            msg.contains("`sourceEndpointArn`") || msg.contains("`replicationInstanceArn`"),
            "{msg}"
        );

        let mut raw = valid();
        raw["targetEndpointArn"] = raw["sourceEndpointArn"].clone();
        assert!(error_of(raw).contains("same endpoint"));
    }

    #[test]
    fn host_rules() {
        for (bad, hint) in [
            ("postgres://db.example.com", "remove the scheme"),
            ("db.example.com:5432", "sourcePort"),
            ("db..example.com", "host name alone"),
            ("", "host name alone"),
        ] {
            let mut raw = valid();
            raw["sourceEndpointHost"] = json!(bad);
            let msg = error_of(raw);
            assert!(
                msg.contains("`sourceEndpointHost`") && msg.contains(hint),
                "{bad}: {msg}"
            );
        }
        let mut raw = valid();
        raw["sourceEndpointHost"] = json!("postgres://app:hunter2@db.example.com:5432/app");
        let msg = error_of(raw);
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(msg.contains("connection string (not shown"), "{msg}");
    }

    #[test]
    fn option_rules() {
        let cases = [
            (
                json!({"pollIntervalSeconds": 0}),
                "options.pollIntervalSeconds",
            ),
            (json!({"maxPolls": 99999}), "from 1 to 2500"),
            (json!({"startMode": "resume"}), "options.startMode"),
            (json!({"autoFixSecurityGroup": "yes"}), "true or false"),
            (
                json!({"pollIntervalSecs": 10}),
                "`options.pollIntervalSecs`: unknown option",
            ),
            (
                json!({"truncateTarget": true}),
                "only together with startMode \"reload\"",
            ),
            (json!([1]), "`options`: received a list"),
        ];
        for (options, needle) in cases {
            let mut raw = valid();
            raw["options"] = options.clone();
            let msg = error_of(raw);
            assert!(msg.contains(needle), "{options}: {msg}");
        }
        let mut raw = valid();
        raw["options"] = json!({"startMode": "reload", "truncateTarget": "true", "maxPolls": "3", "pollIntervalSeconds": null});
        let options = parse_payload(&raw, EXEC, 0).unwrap().options;
        assert_eq!(
            (
                options.start_mode,
                options.truncate_target,
                options.max_polls,
                options.poll_interval_seconds
            ),
            (StartMode::Reload, true, 3, 60)
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let raw = json!({"sourcePort": "x", "context": {}, "extra": 1});
        let msg = error_of(raw);
        for needle in [
            "replicationInstanceArn",
            "sourceEndpointArn",
            "targetEndpointArn",
            "replicationTaskArn",
            "sourceEndpointHost",
            "`sourcePort`",
            "`context`: is set by the state machine",
            "`extra`",
        ] {
            assert!(msg.contains(needle), "{needle}: {msg}");
        }
        assert!(
            msg.starts_with("The execution input has 8 problems"),
            "{msg}"
        );
    }

    #[test]
    fn non_object_input() {
        for raw in [json!("text"), json!([]), json!(null)] {
            assert!(
                error_of(raw.clone()).contains("must be a JSON object"),
                "{raw}"
            );
        }
    }
}
