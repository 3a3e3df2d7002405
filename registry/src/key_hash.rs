//! How a publish key becomes the hash a stream record stores: HMAC-SHA256 under the fleet's
//! key-hash secret (scheme `hmac-sha256:<secret id>`), or, for records written before a secret
//! was configured, the plain SHA-256 of the key (scheme `sha256`, legacy). Owns the secret, the
//! schemes and their wire names, and the order in which an edge tries them.
//!
//! Why a keyed hash: whoever reads Redis (a backup, a replica, a debugging session) can test
//! guesses against an unsalted SHA-256 offline, at billions a second for weak keys. Without the
//! secret, an HMAC tells them nothing.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::record::KeyHash;

type HmacSha256 = Hmac<Sha256>;

/// Fewest bytes a key-hash secret may have: below this an attacker who reads Redis could
/// search the secret instead of the keys.
pub const MIN_SECRET_BYTES: usize = 16;

/// The environment variable that may hold the secret itself (the file flag wins).
pub const SECRET_ENV: &str = "STREAMFLEET_KEY_HASH_SECRET";

/// The fleet-wide key-hash secret (never logged, never shown by `Debug`).
#[derive(Clone)]
pub struct KeyHashSecret(Vec<u8>);

impl fmt::Debug for KeyHashSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHashSecret(id {})", self.id())
    }
}

impl KeyHashSecret {
    /// A secret as read from a file or the environment; surrounding whitespace (a file's final
    /// newline) is not part of it. Refused when shorter than [`MIN_SECRET_BYTES`].
    pub fn new(secret: &str) -> Result<Self, String> {
        let s = secret.trim();
        if s.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the key-hash secret has {} bytes; it needs at least {MIN_SECRET_BYTES} (e.g. `openssl rand -hex 32`)",
                s.len()
            ));
        }
        Ok(KeyHashSecret(s.as_bytes().to_vec()))
    }

    /// The secret from `file` (`--key-hash-secret-file`), else from the environment variable
    /// [`SECRET_ENV`]; `Ok(None)` when neither gives one. Blocking: call it off the async
    /// workers. Errors name the file or the variable, never the secret.
    pub fn from_file_or_env(file: Option<&std::path::Path>) -> Result<Option<Self>, String> {
        let (value, source) = match file {
            Some(path) => (
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
                path.display().to_string(),
            ),
            None => match std::env::var(SECRET_ENV) {
                Ok(v) if !v.trim().is_empty() => (v, SECRET_ENV.to_string()),
                _ => return Ok(None),
            },
        };
        KeyHashSecret::new(&value).map(Some).map_err(|e| format!("{source}: {e}"))
    }

    /// A random secret for a registry that never leaves this process (the edge's `--streams`).
    pub fn random() -> Self {
        KeyHashSecret(rand::random::<[u8; 32]>().to_vec())
    }

    fn mac(&self) -> HmacSha256 {
        match HmacSha256::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        }
    }

    fn hash(&self, key: &str) -> KeyHash {
        let mut mac = self.mac();
        mac.update(key.as_bytes());
        KeyHash::from_bytes(mac.finalize().into_bytes().into())
    }

    /// Names the secret without revealing it, so that operator and edges can be checked to
    /// share one (logs, records): the first 4 bytes of its HMAC over a fixed label.
    pub fn id(&self) -> SecretId {
        let mut mac = self.mac();
        mac.update(b"streamfleet key-hash secret id");
        let out = mac.finalize().into_bytes();
        SecretId([out[0], out[1], out[2], out[3]])
    }
}

/// The public name of a key-hash secret: 8 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretId([u8; 4]);

impl SecretId {
    pub fn parse(s: &str) -> Option<Self> {
        let mut out = [0u8; 4];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(SecretId(out))
    }
}

impl fmt::Display for SecretId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for SecretId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretId({self})")
    }
}

/// How a record's `key_hash` was made from the publish key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyScheme {
    /// SHA-256 of the key, unsalted: records written before the key-hash secret existed.
    Sha256,
    /// HMAC-SHA256 of the key under the secret with this id.
    Hmac(SecretId),
}

impl KeyScheme {
    /// The record field's value: `sha256` or `hmac-sha256:<secret id>`.
    pub fn to_wire(&self) -> String {
        match self {
            KeyScheme::Sha256 => "sha256".into(),
            KeyScheme::Hmac(id) => format!("hmac-sha256:{id}"),
        }
    }

    /// Parses [`to_wire`](Self::to_wire)'s output; an absent field (a record written before
    /// schemes existed) is [`KeyScheme::Sha256`], which the caller decides.
    pub fn parse(s: &str) -> Option<Self> {
        match s.split_once(':') {
            None if s == "sha256" => Some(KeyScheme::Sha256),
            Some(("hmac-sha256", id)) => SecretId::parse(id).map(KeyScheme::Hmac),
            _ => None,
        }
    }

    pub fn is_legacy(&self) -> bool {
        matches!(self, KeyScheme::Sha256)
    }
}

impl fmt::Display for KeyScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_wire())
    }
}

impl serde::Serialize for KeyScheme {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_wire())
    }
}

impl<'de> serde::Deserialize<'de> for KeyScheme {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        KeyScheme::parse(&s).ok_or_else(|| serde::de::Error::custom("expected sha256 or hmac-sha256:<8 hex digits>"))
    }
}

/// One hash a record of a presented key may carry, with its scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyCandidate {
    pub scheme: KeyScheme,
    pub hash: KeyHash,
}

/// What the operator, `sync` and the edges hash publish keys with.
#[derive(Clone, Debug)]
pub struct KeyHasher {
    secret: Option<KeyHashSecret>,
    accept_legacy: bool,
}

impl KeyHasher {
    /// Hashes with `secret` when there is one, else with the legacy unsalted SHA-256. Legacy
    /// records are accepted (see [`accept_legacy`](Self::accept_legacy)).
    pub fn new(secret: Option<KeyHashSecret>) -> Self {
        KeyHasher { secret, accept_legacy: true }
    }

    /// No secret: records get the legacy SHA-256 (tests, and deployments not yet given one).
    pub fn legacy() -> Self {
        KeyHasher::new(None)
    }

    /// Whether an edge still looks keys up under their legacy SHA-256 (the migration from
    /// records written before the secret; on by default). Without a secret it always does.
    pub fn accept_legacy(mut self, accept: bool) -> Self {
        self.accept_legacy = accept;
        self
    }

    pub fn secret_id(&self) -> Option<SecretId> {
        self.secret.as_ref().map(KeyHashSecret::id)
    }

    pub fn has_secret(&self) -> bool {
        self.secret.is_some()
    }

    /// The scheme and hash a record of `key` is written with now.
    pub fn record_hash(&self, key: &str) -> KeyCandidate {
        match &self.secret {
            Some(s) => KeyCandidate { scheme: KeyScheme::Hmac(s.id()), hash: s.hash(key) },
            None => KeyCandidate { scheme: KeyScheme::Sha256, hash: legacy_hash(key) },
        }
    }

    /// The hashes a record of `key` may be found under, in the order an edge tries them: the
    /// keyed hash first (every record once the migration is done), then the legacy one.
    pub fn candidates(&self, key: &str) -> Vec<KeyCandidate> {
        let mut out = Vec::with_capacity(2);
        if let Some(s) = &self.secret {
            out.push(KeyCandidate { scheme: KeyScheme::Hmac(s.id()), hash: s.hash(key) });
        }
        if self.accept_legacy || self.secret.is_none() {
            out.push(KeyCandidate { scheme: KeyScheme::Sha256, hash: legacy_hash(key) });
        }
        out
    }

    /// Whether a record's `hash` (made with `scheme`) is the hash of `key`: `None` when this
    /// hasher cannot tell (the record was made with another secret, or with one while this
    /// hasher has none). The operator uses it to tell a rehash (same key, new scheme: the
    /// publisher stays) from a key rotation (the publisher is revoked).
    pub fn matches(&self, scheme: KeyScheme, hash: &KeyHash, key: &str) -> Option<bool> {
        self.digests(key).matches(scheme, hash)
    }

    /// `key`'s hash under every scheme this hasher knows, to compare records with later
    /// without keeping the key.
    pub fn digests(&self, key: &str) -> KeyDigests {
        KeyDigests {
            keyed: self.secret.as_ref().map(|s| KeyCandidate { scheme: KeyScheme::Hmac(s.id()), hash: s.hash(key) }),
            legacy: legacy_hash(key),
        }
    }
}

/// One publish key's hashes under the schemes a [`KeyHasher`] knows (not the key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyDigests {
    keyed: Option<KeyCandidate>,
    legacy: KeyHash,
}

impl KeyDigests {
    /// Whether a record's `hash` (made with `scheme`) is this key's; `None` when it was made
    /// with a secret these digests were not.
    pub fn matches(&self, scheme: KeyScheme, hash: &KeyHash) -> Option<bool> {
        match (scheme, &self.keyed) {
            (KeyScheme::Sha256, _) => Some(self.legacy == *hash),
            (KeyScheme::Hmac(id), Some(k)) if k.scheme == KeyScheme::Hmac(id) => Some(k.hash == *hash),
            (KeyScheme::Hmac(_), _) => None,
        }
    }
}

/// The legacy scheme: SHA-256 of the key as the encoder sends it.
fn legacy_hash(key: &str) -> KeyHash {
    KeyHash::from_bytes(Sha256::digest(key.as_bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> KeyHashSecret {
        KeyHashSecret::new(s).unwrap()
    }

    #[test]
    fn the_keyed_hash_is_hmac_sha256_and_depends_on_the_secret() {
        // RFC 4231 test case 2 has a 4-byte key, below the minimum; this checks against an
        // HMAC computed independently (python3 -c "import hmac,hashlib;
        // print(hmac.new(b'0123456789abcdef', b'abc', hashlib.sha256).hexdigest())").
        let h = KeyHasher::new(Some(secret("0123456789abcdef")));
        let c = h.record_hash("abc");
        assert_eq!(c.hash.to_hex(), "bcaa92843247bc258080d2824bddeba4afb1bd61b4688ca65f60a214e1d9759e");
        assert!(matches!(c.scheme, KeyScheme::Hmac(_)));
        let other = KeyHasher::new(Some(secret("fedcba9876543210"))).record_hash("abc");
        assert_ne!(other.hash, c.hash);
        assert_ne!(other.scheme, c.scheme, "different secrets have different ids");
        assert_ne!(c.hash, KeyHasher::legacy().record_hash("abc").hash);
    }

    #[test]
    fn the_legacy_hash_is_plain_sha256() {
        let c = KeyHasher::legacy().record_hash("abc");
        assert_eq!(c.scheme, KeyScheme::Sha256);
        assert_eq!(c.hash.to_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(c.hash, KeyHash::of_key("abc"));
    }

    #[test]
    fn edges_try_the_keyed_hash_first_and_the_legacy_one_only_while_accepted() {
        let h = KeyHasher::new(Some(secret("0123456789abcdef")));
        let c = h.candidates("k");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0], h.record_hash("k"));
        assert_eq!(c[1], KeyHasher::legacy().record_hash("k"));
        assert_eq!(h.clone().accept_legacy(false).candidates("k"), vec![h.record_hash("k")]);
        // Without a secret, the legacy hash is all there is.
        assert_eq!(KeyHasher::legacy().accept_legacy(false).candidates("k").len(), 1);
    }

    #[test]
    fn matches_tells_a_rehash_from_a_rotation_and_admits_what_it_cannot_know() {
        let h = KeyHasher::new(Some(secret("0123456789abcdef")));
        let legacy = KeyHasher::legacy().record_hash("k");
        assert_eq!(h.matches(legacy.scheme, &legacy.hash, "k"), Some(true));
        assert_eq!(h.matches(legacy.scheme, &legacy.hash, "rotated"), Some(false));
        let keyed = h.record_hash("k");
        assert_eq!(h.matches(keyed.scheme, &keyed.hash, "k"), Some(true));
        assert_eq!(h.matches(keyed.scheme, &keyed.hash, "rotated"), Some(false));
        let other = KeyHasher::new(Some(secret("fedcba9876543210")));
        assert_eq!(other.matches(keyed.scheme, &keyed.hash, "k"), None);
        assert_eq!(KeyHasher::legacy().matches(keyed.scheme, &keyed.hash, "k"), None);
    }

    #[test]
    fn schemes_round_trip_their_wire_names() {
        let id = secret("0123456789abcdef").id();
        for s in [KeyScheme::Sha256, KeyScheme::Hmac(id)] {
            assert_eq!(KeyScheme::parse(&s.to_wire()), Some(s));
        }
        assert_eq!(KeyScheme::Hmac(id).to_wire().len(), "hmac-sha256:".len() + 8);
        for bad in ["", "md5", "hmac-sha256", "hmac-sha256:zz", "sha256:00000000"] {
            assert_eq!(KeyScheme::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn short_secrets_are_refused_and_secrets_never_show() {
        assert!(KeyHashSecret::new("short").is_err());
        assert!(KeyHashSecret::new("  0123456789abcde \n").is_err(), "whitespace does not count");
        let s = secret("0123456789abcdef\n");
        assert_eq!(s.id(), secret("0123456789abcdef").id(), "a file's newline is not part of it");
        assert!(!format!("{s:?}").contains("0123456789abcdef"));
    }
}
