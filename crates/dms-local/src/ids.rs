//! Resource ids and ARNs shaped like DMS's: 26 uppercase alphanumeric characters after the resource type,
//! e.g. `arn:aws:dms:us-east-1:123456789012:task:7OZ2A3EEBVSG2NT5EHJUBSTWQQ`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

pub const ACCOUNT: &str = "123456789012";
const ID_LEN: usize = 26;
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Random enough for a test server: std's per-process random hasher keys mixed with a counter.
pub fn resource_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut id = String::with_capacity(ID_LEN);
    let mut state = RandomState::new().build_hasher();
    state.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let mut bits = state.finish();
    for i in 0..ID_LEN {
        if i % 12 == 0 {
            state.write_u64(bits ^ i as u64);
            bits = state.finish();
        }
        id.push(ALPHABET[(bits % ALPHABET.len() as u64) as usize] as char);
        bits /= ALPHABET.len() as u64;
    }
    id
}

pub fn arn(region: &str, resource_type: &str, id: &str) -> String {
    format!("arn:aws:dms:{region}:{ACCOUNT}:{resource_type}:{id}")
}

/// The resource id after the last `:` of an ARN (the CloudWatch `ReplicationTaskIdentifier`).
pub fn resource_id_of(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or(arn)
}

pub fn now_epoch_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_millis() as f64) / 1000.0)
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_dms_ids_and_differ() {
        let a = resource_id();
        let b = resource_id();
        assert_eq!(a.len(), 26);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()),
            "{a}"
        );
        assert_ne!(a, b);
        assert_eq!(resource_id_of(&arn("us-east-1", "task", &a)), a);
    }
}
