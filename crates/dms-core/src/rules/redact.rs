//! Scrubs secrets from any text that may reach a log line, an error message or an email. Applied where
//! such text is built (StepError, the notify renderer), so a careless format string cannot leak a password.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

/// `scheme://user:password@host` → `scheme://user:***@host`
static URL_PASSWORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b([a-z][a-z0-9+.\-]*://[^:/@\s]*):[^@\s/]*@").expect("static regex")
});

/// `"password": "..."` and friends inside JSON text (a secret's SecretString, a Cause payload).
static JSON_SECRET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)("[a-z_\-]*(?:password|passwd|secret|token|credential)[a-z_\-]*"\s*:\s*)"(?:[^"\\]|\\.)*""#,
    )
    .expect("static regex")
});

/// `password=...`, `PGPASSWORD=...`, `secret: ...` in connection strings, env dumps and messages.
static KEY_VALUE_SECRET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)\b([a-z_]*(?:password|passwd|pwd|secret|token)[a-z_]*)(\\?"?\s*[=:]\s*)(\\"[^"\\]*\\"|'[^']*'|"[^"]*"|[^\s,;&'"}\\]+)"#,
    )
    .expect("static regex")
});

pub const MASK: &str = "***";

/// Every keyword the two key-based patterns need, in ASCII lower case.
const SECRET_KEYWORDS: [&str; 5] = ["passw", "pwd", "secret", "token", "credential"];

/// Compiling a pattern costs a notify cold start more than its whole handler, so text that cannot match the
/// key-based ones skips them. Only ASCII text is ruled out: under Unicode case folding `ſ` and the Kelvin
/// sign also spell the keywords.
fn may_name_a_secret(text: &str) -> bool {
    if !text.is_ascii() {
        return true;
    }
    let lower = text.to_ascii_lowercase();
    SECRET_KEYWORDS
        .iter()
        .any(|keyword| lower.contains(keyword))
}

/// `URL_PASSWORD` needs a `://` with an `@` somewhere after it; the links in every email have only the first.
fn may_hold_url_credentials(text: &str) -> bool {
    text.find("://").is_some_and(|at| text[at..].contains('@'))
}

pub fn redact_secrets(text: &str) -> String {
    let text = if may_hold_url_credentials(text) {
        URL_PASSWORD.replace_all(text, "${1}:***@")
    } else {
        Cow::Borrowed(text)
    };
    if !may_name_a_secret(&text) {
        return text.into_owned();
    }
    let text = JSON_SECRET.replace_all(&text, "${1}\"***\"");
    let text = KEY_VALUE_SECRET.replace_all(&text, |caps: &regex::Captures<'_>| {
        let value = &caps[3];
        if value == MASK || value == "\"***\"" {
            caps[0].to_string()
        } else {
            format!("{}{}{MASK}", &caps[1], &caps[2])
        }
    });
    text.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_masked_but_the_rest_stays_readable() {
        let out = redact_secrets(
            "could not connect to postgresql://migrator:s3cr%40t@db.example.com:5432/app",
        );
        assert_eq!(
            out,
            "could not connect to postgresql://migrator:***@db.example.com:5432/app"
        );
        let out = redact_secrets(
            "see https://console.aws.amazon.com/dms and postgres://app:hunter2@db:5432/app",
        );
        assert_eq!(
            out,
            "see https://console.aws.amazon.com/dms and postgres://app:***@db:5432/app"
        );
    }

    #[test]
    fn json_and_key_value_secrets_are_masked() {
        let out = redact_secrets(r#"{"username":"app","password":"p\"w","dbname":"x"}"#);
        assert_eq!(out, r#"{"username":"app","password":"***","dbname":"x"}"#);
        let out = redact_secrets("host=db user=app password=hunter2 sslmode=require");
        assert_eq!(out, "host=db user=app password=*** sslmode=require");
        let out = redact_secrets("PGPASSWORD='a b' psql");
        assert_eq!(out, "PGPASSWORD=*** psql");
        let out = redact_secrets(r#"{"SecretString": "{\"password\":\"x\"}"}"#);
        assert!(!out.contains("\\\"x\\\""), "{out}");
    }

    #[test]
    fn keywords_spelled_with_unicode_case_variants_are_still_masked() {
        // `ſ` (long s) and `K` (Kelvin sign) fold to `s` and `k`, so the patterns match them.
        assert_eq!(
            redact_secrets("pa\u{17f}\u{17f}word=hunter2"),
            "pa\u{17f}\u{17f}word=***"
        );
        assert_eq!(redact_secrets("to\u{212a}en: abc123"), "to\u{212a}en: ***");
        assert_eq!(
            redact_secrets("PassWd=hunter2 Checks: 3 passed"),
            "PassWd=*** Checks: 3 passed"
        );
    }

    #[test]
    fn ordinary_text_is_untouched() {
        let text =
            "Table public.orders: 1,204 rows; task arn:aws:dms:us-east-1:123456789012:task:ABC";
        assert_eq!(redact_secrets(text), text);
        assert_eq!(
            redact_secrets("password authentication failed for user \"app\""),
            "password authentication failed for user \"app\""
        );
    }
}
