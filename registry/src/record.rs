//! Stream records: what the operator writes for each LiveStream and what edges look up when an
//! encoder or a player arrives. A record carries a hash of the publish key (see [`crate::key_hash`]),
//! never the key.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::api::TakeoverPolicy;
pub use crate::key_hash::KeyScheme;

/// `namespace/name` of a LiveStream: the identity of a stream everywhere in the fleet.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StreamId {
    pub namespace: String,
    pub name: String,
}

impl StreamId {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        StreamId { namespace: namespace.into(), name: name.into() }
    }

    /// Parses `namespace/name`.
    pub fn parse(s: &str) -> Option<Self> {
        let (ns, name) = s.split_once('/')?;
        if ns.is_empty() || name.is_empty() || name.contains('/') {
            return None;
        }
        Some(StreamId::new(ns, name))
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A 32-byte hash of a publish key (HMAC-SHA256 under the fleet's secret, or the legacy plain
/// SHA-256: [`crate::key_hash`]). The registry indexes streams by it so that Redis, logs and
/// metrics never see a key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// The legacy (unsalted SHA-256) hash of a publish key: what records written without a
    /// key-hash secret carry. New code hashes through [`crate::KeyHasher`].
    pub fn of_key(key: &str) -> Self {
        KeyHash(Sha256::digest(key.as_bytes()).into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        KeyHash(bytes)
    }

    /// Parses 64 lowercase or uppercase hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(KeyHash(out))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// First 8 hex digits: enough to tell keys apart in a log line, useless to an attacker.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({}…)", self.short())
    }
}

impl Serialize for KeyHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for KeyHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        KeyHash::from_hex(&s).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// Everything an edge needs to admit a publisher or a player for one stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRecord {
    pub id: StreamId,
    pub key_hash: KeyHash,
    /// How `key_hash` was made from the key; records written before schemes existed are
    /// [`KeyScheme::Sha256`].
    pub key_scheme: KeyScheme,
    pub playback_name: String,
    pub enabled: bool,
    /// Players allowed over all edges; `None` is unlimited.
    pub max_viewers: Option<u32>,
    pub takeover: TakeoverPolicy,
    /// `metadata.generation` of the LiveStream this record came from.
    pub generation: i64,
    /// The stream's own SRT passphrase (the `srtPassphrase` key of its publish-key Secret):
    /// SRT publishers and players of this stream must encrypt with it, instead of with the
    /// edge's `--srt-passphrase-file`. Absent on records written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srt_passphrase: Option<SrtPassphrase>,
}

/// An SRT passphrase: 10 to 79 characters, as libsrt requires. Its `Debug` never shows it, so
/// a record can be logged; [`SrtPassphrase::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SrtPassphrase(String);

impl SrtPassphrase {
    /// Shortest and longest passphrase libsrt accepts (`SRTO_PASSPHRASE`), in bytes.
    pub const MIN: usize = 10;
    pub const MAX: usize = 79;

    /// Checks libsrt's length rule; the error names the length, never the passphrase.
    pub fn new(s: impl Into<String>) -> Result<Self, String> {
        let s = s.into();
        if !(Self::MIN..=Self::MAX).contains(&s.len()) {
            return Err(format!(
                "an SRT passphrase must be {} to {} characters, not {}",
                Self::MIN,
                Self::MAX,
                s.len()
            ));
        }
        Ok(SrtPassphrase(s))
    }

    /// The passphrase itself: hand it to SRT, never to a log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SrtPassphrase {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        SrtPassphrase::new(s)
    }
}

impl From<SrtPassphrase> for String {
    fn from(p: SrtPassphrase) -> String {
        p.0
    }
}

impl fmt::Debug for SrtPassphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SrtPassphrase(<redacted>)")
    }
}

/// Checks a playback name: a DNS label (what the CRD schema enforces too).
pub fn valid_playback_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_is_sha256_hex() {
        // sha256("abc")
        assert_eq!(KeyHash::of_key("abc").to_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(KeyHash::of_key("abc").short(), "ba7816bf");
        let h = KeyHash::of_key("k");
        assert_eq!(KeyHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(KeyHash::from_hex("zz"), None);
    }

    #[test]
    fn srt_passphrases_follow_libsrt_length_rule_and_never_show_in_debug() {
        assert!(SrtPassphrase::new("short").is_err());
        assert!(SrtPassphrase::new("x".repeat(80)).is_err());
        let p = SrtPassphrase::new("0123456789").unwrap();
        assert_eq!(p.expose(), "0123456789");
        assert!(SrtPassphrase::new("x".repeat(79)).is_ok());
        assert!(!format!("{p:?}").contains("0123"));
        let err = SrtPassphrase::new("secret").unwrap_err();
        assert!(!err.contains("secret") && err.contains("not 6"), "{err}");
        assert!(serde_json::from_str::<SrtPassphrase>("\"short\"").is_err());
    }

    #[test]
    fn playback_names_are_dns_labels() {
        assert!(valid_playback_name("news-1"));
        assert!(!valid_playback_name("-news"));
        assert!(!valid_playback_name("News"));
        assert!(!valid_playback_name(""));
        assert!(!valid_playback_name(&"a".repeat(64)));
    }

    #[test]
    fn stream_id_round_trips() {
        let id = StreamId::new("media", "news");
        assert_eq!(StreamId::parse(&id.to_string()), Some(id));
        assert_eq!(StreamId::parse("nonamespace"), None);
        assert_eq!(StreamId::parse("a/b/c"), None);
    }
}
