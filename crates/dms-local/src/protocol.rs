//! The DMS JSON 1.1 wire protocol: `POST /` with `X-Amz-Target: AmazonDMSv20160101.<Operation>`, a JSON
//! body, and errors as HTTP 400 `{"__type": "...Fault", "message": "..."}` (the SDK reads `__type`).

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

pub const TARGET_PREFIX: &str = "AmazonDMSv20160101.";
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmsError {
    pub code: &'static str,
    pub message: String,
}

impl DmsError {
    pub fn not_found(message: impl Into<String>) -> DmsError {
        DmsError {
            code: "ResourceNotFoundFault",
            message: message.into(),
        }
    }

    pub fn invalid_state(message: impl Into<String>) -> DmsError {
        DmsError {
            code: "InvalidResourceStateFault",
            message: message.into(),
        }
    }

    pub fn invalid_parameter(message: impl Into<String>) -> DmsError {
        DmsError {
            code: "InvalidParameterValueException",
            message: message.into(),
        }
    }

    pub fn invalid_combination(message: impl Into<String>) -> DmsError {
        DmsError {
            code: "InvalidParameterCombinationException",
            message: message.into(),
        }
    }

    pub fn throttled() -> DmsError {
        DmsError {
            code: "ThrottlingException",
            message: "Rate exceeded".to_string(),
        }
    }
}

impl IntoResponse for DmsError {
    fn into_response(self) -> Response {
        let mut response = (
            StatusCode::BAD_REQUEST,
            json!({"__type": self.code, "message": self.message}).to_string(),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        response
    }
}

pub fn ok(body: Value) -> Response {
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// The operation name from `X-Amz-Target`, or the error DMS gives a request that names none.
pub fn operation(headers: &HeaderMap) -> Result<String, DmsError> {
    headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix(TARGET_PREFIX))
        .map(str::to_string)
        .ok_or(DmsError {
            code: "UnknownOperationException",
            message: format!("X-Amz-Target must be {TARGET_PREFIX}<Operation>"),
        })
}

pub fn parse_body(body: &[u8]) -> Result<Value, DmsError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or(DmsError {
            code: "SerializationException",
            message: "the request body is not a JSON object".to_string(),
        })
}

/// A required string member, or the validation error the service answers.
pub fn required_str<'a>(input: &'a Value, member: &str) -> Result<&'a str, DmsError> {
    input[member]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| DmsError::invalid_parameter(format!("{member} is required")))
}

/// `Filters: [{"Name": ..., "Values": [...]}]` → (name, values), rejecting names the operation does not
/// know (DMS answers InvalidParameterValueException, which keeps a typo from matching everything).
pub fn filters(input: &Value, known: &[&str]) -> Result<Vec<(String, Vec<String>)>, DmsError> {
    let mut out = Vec::new();
    for filter in input["Filters"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let name = filter["Name"].as_str().unwrap_or_default();
        if !known.contains(&name) {
            return Err(DmsError::invalid_parameter(format!(
                "Invalid filter name: {name}. Supported: {}",
                known.join(", ")
            )));
        }
        let values = filter["Values"]
            .as_array()
            .map(|vs| {
                vs.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        out.push((name.to_string(), values));
    }
    Ok(out)
}

/// True when every filter naming `name` contains one of `candidates` (DMS ANDs filters, ORs values).
pub fn filter_matches(filters: &[(String, Vec<String>)], name: &str, candidate: &str) -> bool {
    filters
        .iter()
        .filter(|(n, _)| n == name)
        .all(|(_, values)| values.iter().any(|v| v == candidate))
}

/// One page of `items` after `Marker` (an opaque offset, as far as clients know), with the next marker.
pub fn page<T: Clone>(
    items: &[T],
    input: &Value,
    default_max: usize,
    max_max: usize,
) -> Result<(Vec<T>, Option<String>), DmsError> {
    let start = match input["Marker"].as_str().filter(|m| !m.is_empty()) {
        None => 0,
        Some(marker) => marker
            .parse::<usize>()
            .map_err(|_| DmsError::invalid_parameter(format!("Invalid Marker: {marker}")))?,
    };
    let max = input["MaxRecords"]
        .as_u64()
        .map(|m| (m as usize).clamp(1, max_max))
        .unwrap_or(default_max);
    let end = (start + max).min(items.len());
    let slice = items.get(start..end).unwrap_or(&[]).to_vec();
    let next = (end < items.len()).then(|| end.to_string());
    Ok((slice, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_walk_every_item_once() {
        let items: Vec<u32> = (0..7).collect();
        let mut seen = Vec::new();
        let mut input = json!({"MaxRecords": 3});
        for _ in 0..10 {
            let (part, next) = page(&items, &input, 100, 100).expect("page");
            seen.extend(part);
            match next {
                Some(m) => input["Marker"] = json!(m),
                None => break,
            }
        }
        assert_eq!(seen, items);
    }

    #[test]
    fn unknown_filter_names_are_rejected() {
        let input = json!({"Filters": [{"Name": "replication-task-arm", "Values": ["x"]}]});
        let err = filters(&input, &["replication-task-arn"]).expect_err("typo rejected");
        assert_eq!(err.code, "InvalidParameterValueException");
        let input = json!({"Filters": [{"Name": "replication-task-arn", "Values": ["a", "b"]}]});
        let parsed = filters(&input, &["replication-task-arn"]).expect("known");
        assert!(filter_matches(&parsed, "replication-task-arn", "b"));
        assert!(!filter_matches(&parsed, "replication-task-arn", "c"));
        assert!(filter_matches(&parsed, "other", "c"));
    }
}
