//! The size bounds of everything that travels through Step Functions state or an email, in one place.
//!
//! Step Functions refuses a state input or output larger than 256 KiB of UTF-8 with
//! `States.DataLimitExceeded`, a terminal error that `States.ALL` does not catch: the execution dies with no
//! failure email (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html,
//! https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html). SNS refuses a message over
//! 256 KB (https://docs.aws.amazon.com/sns/latest/api/API_Publish.html). So every list is cut to its first
//! `MAX_NAMES` entries with its count kept beside it, and every free text (a check's summary and fix, a DMS
//! message, a panic message) is cut to a byte bound; the full lists stay in the Lambda's log, the
//! `dms-migrate preflight` output and the DMS assessment report.

/// At most this many names of any list travel in the state or an email.
pub const MAX_NAMES: usize = 20;

/// One name (a qualified table or column, a slot, a security group rule): PostgreSQL identifiers are at
/// most 63 bytes, so a quoted `schema.table` fits.
pub const MAX_NAME_BYTES: usize = 200;

/// The names shown of one list, together (so 20 long names cannot add up).
pub const MAX_LIST_BYTES: usize = 1_000;

/// A check's summary, a DMS message, a reason, an error message.
pub const MAX_TEXT_BYTES: usize = 800;

/// An error message (a step's `errorMessage`, which Step Functions hands on as `Cause`).
pub const MAX_ERROR_BYTES: usize = 4_000;

/// A check's fix (SQL or steps), after it was cut to `MAX_NAMES` lines.
pub const MAX_FIX_BYTES: usize = 1_500;

/// The whole state a Lambda returns must stay under this; 256 KiB is Step Functions' limit, the rest is
/// kept for what Step Functions adds (`error` from a Catch, up to 32,768 characters of `Cause`).
pub const MAX_STATE_BYTES: usize = 200 * 1024;

/// An email body. SNS's limit is 256 KB for the whole message; a readable email is far shorter.
pub const MAX_EMAIL_BYTES: usize = 64 * 1024;

/// The per-check and per-object part of an email (the rest is a few fixed lines and links).
pub const MAX_EMAIL_DETAILS_BYTES: usize = 48 * 1024;

/// `text` cut to at most `max` bytes at a character boundary; a cut text ends with `marker` (which is
/// counted within `max`), so a reader sees that something is missing and where to find it.
pub fn cap_text(text: &str, max: usize, marker: &str) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(marker.len());
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{marker}", &text[..end])
}

/// The marker a cut free text ends with.
pub const CUT: &str = " ... (cut)";

/// Keeps the first entries (at most `MAX_NAMES`, each cut to `MAX_NAME_BYTES`, together at most
/// `MAX_LIST_BYTES`) and says how many there were.
pub fn capped_names(items: &[String]) -> (Vec<String>, u32) {
    let total = u32::try_from(items.len()).unwrap_or(u32::MAX);
    let mut shown = Vec::new();
    let mut bytes = 0;
    for name in items.iter().take(MAX_NAMES) {
        let name = cap_text(name, MAX_NAME_BYTES, CUT);
        bytes += name.len();
        if bytes > MAX_LIST_BYTES && !shown.is_empty() {
            break;
        }
        shown.push(name);
    }
    (shown, total)
}

/// `capped_names` in place, for lists whose count is kept elsewhere (or is not needed).
pub fn cap_names(items: &mut Vec<String>) {
    if items.len() > MAX_NAMES
        || items.iter().map(String::len).sum::<usize>() > MAX_LIST_BYTES
        || items.iter().any(|n| n.len() > MAX_NAME_BYTES)
    {
        *items = capped_names(items).0;
    }
}

/// `cap_text` in place with the usual marker.
pub fn cap_in_place(text: &mut String, max: usize) {
    if text.len() > max {
        *text = cap_text(text, max, CUT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_and_long_text_is_cut_at_a_character_boundary() {
        assert_eq!(cap_text("abc", 10, CUT), "abc");
        let long = "é".repeat(100);
        let cut = cap_text(&long, 51, "~");
        assert!(cut.len() <= 51, "{}", cut.len());
        assert!(cut.ends_with('~'));
        assert!(cut.starts_with("éé"));
    }

    #[test]
    fn names_keep_the_count_and_the_first_few() {
        let names: Vec<String> = (0..1000).map(|i| format!("t{i}")).collect();
        let (shown, total) = capped_names(&names);
        assert_eq!(total, 1000);
        assert_eq!(shown.len(), MAX_NAMES);
        assert_eq!(shown[0], "t0");
        let huge = vec!["x".repeat(10_000)];
        assert!(capped_names(&huge).0[0].len() <= MAX_NAME_BYTES);
        let long: Vec<String> = (0..50).map(|i| format!("{i:0>190}")).collect();
        let (shown, total) = capped_names(&long);
        assert_eq!(total, 50);
        assert!(shown.iter().map(String::len).sum::<usize>() <= MAX_LIST_BYTES);
        assert!(!shown.is_empty());
    }
}
