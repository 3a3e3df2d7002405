//! The strength the operator requires of a publish key before it serves a LiveStream with it.
//!
//! A publish key is the only thing between the public and a stream's ingest, and an edge slows
//! wrong keys from one address but cannot stop a patient, distributed guesser. The rules are a
//! floor that catches placeholders, short keys and patterns; they cannot tell a dictionary
//! phrase from a random string. Generated keys (no `publishKeySecretRef`) are 32 random bytes.

/// Fewest bytes a publish key may have.
pub const MIN_KEY_BYTES: usize = 16;
/// Fewest different characters (a random 16-character hex key has fewer than 6 about once in
/// 20 000 draws).
pub const MIN_DISTINCT: usize = 6;

/// Why `key` is too weak, in words that never quote it; `None` when it passes.
pub fn weakness(key: &str) -> Option<String> {
    let bytes = key.as_bytes();
    if bytes.len() < MIN_KEY_BYTES {
        return Some(format!("it has {} bytes, fewer than {MIN_KEY_BYTES}", bytes.len()));
    }
    let mut counts = [0usize; 256];
    for b in bytes {
        counts[usize::from(*b)] += 1;
    }
    let distinct = counts.iter().filter(|c| **c > 0).count();
    if distinct < MIN_DISTINCT {
        return Some(format!("it has {distinct} different characters, fewer than {MIN_DISTINCT}"));
    }
    if counts.iter().any(|c| 2 * c > bytes.len()) {
        return Some("one character makes up more than half of it".into());
    }
    if let Some(period) =
        (1..=bytes.len() / 2).find(|p| bytes.len().is_multiple_of(*p) && bytes.chunks(*p).all(|c| c == &bytes[..*p]))
    {
        return Some(format!("it repeats a string of {period} characters"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_keys_are_refused_with_a_reason_that_never_quotes_them() {
        for (key, why) in [
            ("", "0 bytes"),
            ("news-key-1", "10 bytes"),
            ("aaaaaaaaaaaaaaaaaaaa", "1 different"),
            ("abababababababababab", "2 different"),
            ("aaaaaaaaaaaaaaaaaaaaabcdefg", "more than half"),
            ("passwordpassword", "repeats a string of 8"),
            ("hunter2!hunter2!hunter2!", "repeats a string of 8"),
        ] {
            let reason = weakness(key).unwrap_or_else(|| panic!("{key:?} passed"));
            assert!(reason.contains(why), "{key:?}: {reason}");
            assert!(key.len() < 3 || !reason.contains(key), "{reason}");
        }
    }

    #[test]
    fn real_keys_pass() {
        for key in [
            "demo-publish-key",
            "replace-me-with-a-long-random-key",
            "rotated-key-0123456789abcdef",
            "4150929529889de4",
            "Lg-wPKE7y50pnydgE9ECfK1drKc2X-Z7SAjKayIYQGY",
        ] {
            assert_eq!(weakness(key), None, "{key:?}");
        }
        // What the operator generates.
        for _ in 0..100 {
            assert_eq!(weakness(&crate::secrets::new_publish_key()), None);
        }
    }
}
