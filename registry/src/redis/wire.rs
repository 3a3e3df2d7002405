//! How the Redis backend stores records and holders and decodes script replies. Anything
//! malformed (a hand-edited key, a reply from an incompatible script) becomes an error that says
//! what was wrong, never a panic.

use std::collections::HashMap;

use redis::Value;

use crate::{
    error::{RegistryError, Result},
    lease::{HolderInfo, HolderMedia, IngestProtocol},
    record::{KeyHash, KeyScheme, SrtPassphrase, StreamId, StreamRecord, TakeoverPolicy},
};

/// Low bits of a fencing token that count grants within one epoch (see `scripts/prelude.lua`).
pub(super) const FENCE_BITS: u32 = 20;

/// `epoch_ms * 2^20 + counter`, computed here because Lua numbers are doubles. Saturates
/// instead of wrapping: an epoch that large would be thousands of years away.
pub(super) fn fence(epoch: u64, counter: u64) -> u64 {
    epoch.saturating_mul(1 << FENCE_BITS).saturating_add(counter)
}

fn malformed(what: impl std::fmt::Display) -> RegistryError {
    RegistryError::Invalid(format!("registry data in Redis is malformed: {what}"))
}

/// One scalar of a script reply as text (Lua numbers arrive as integers, `false` as nil).
pub(super) fn text(v: Value) -> Result<String> {
    match v {
        Value::Nil => Ok(String::new()),
        Value::Int(n) => Ok(n.to_string()),
        Value::Okay => Ok("OK".to_string()),
        Value::SimpleString(s) => Ok(s),
        Value::BulkString(b) => String::from_utf8(b).map_err(|_| malformed("a reply is not UTF-8")),
        Value::VerbatimString { text, .. } => Ok(text),
        other => Err(malformed(format!("expected a scalar reply, got {other:?}"))),
    }
}

/// A script reply that is a flat array of scalars.
pub(super) fn texts(v: Value) -> Result<Vec<String>> {
    match v {
        Value::Array(items) => items.into_iter().map(text).collect(),
        Value::Nil => Ok(Vec::new()),
        other => Err(malformed(format!("expected an array reply, got {other:?}"))),
    }
}

/// A script reply that is an array of arrays.
pub(super) fn nested(v: Value) -> Result<Vec<Vec<String>>> {
    match v {
        Value::Array(items) => items.into_iter().map(texts).collect(),
        other => Err(malformed(format!("expected an array of arrays, got {other:?}"))),
    }
}

pub(super) fn u64_field(what: &str, s: &str) -> Result<u64> {
    s.parse().map_err(|_| malformed(format!("{what} {s:?} is not a number")))
}

fn opt_u64(what: &str, s: &str) -> Result<Option<u64>> {
    if s.is_empty() { Ok(None) } else { u64_field(what, s).map(Some) }
}

fn opt_string(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

pub(super) fn stream_id(s: &str) -> Result<StreamId> {
    StreamId::parse(s).ok_or_else(|| malformed(format!("stream id {s:?} is not namespace/name")))
}

/// The script arguments that store a record (after the prefix):
/// id, key hash, playback name, enabled, max viewers, takeover policy, generation, key scheme,
/// SRT passphrase ('' when none).
pub(super) fn record_args(rec: &StreamRecord) -> [String; 9] {
    [
        rec.id.to_string(),
        rec.key_hash.to_hex(),
        rec.playback_name.clone(),
        if rec.enabled { "1" } else { "0" }.to_string(),
        rec.max_viewers.map(|n| n.to_string()).unwrap_or_default(),
        rec.takeover.as_str().to_string(),
        rec.generation.to_string(),
        rec.key_scheme.to_wire(),
        rec.srt_passphrase.as_ref().map(|p| p.expose().to_string()).unwrap_or_default(),
    ]
}

/// A record from its hash (`HGETALL`); `None` for an empty hash (no such record).
pub(super) fn record_from_hash(fields: &HashMap<String, String>) -> Result<Option<StreamRecord>> {
    if fields.is_empty() {
        return Ok(None);
    }
    let get = |name: &str| {
        fields.get(name).map(String::as_str).ok_or_else(|| malformed(format!("record field {name} missing")))
    };
    let id = stream_id(get("id")?)?;
    let bad = |field: &str, value: &str| malformed(format!("record {id}: {field} {value:?}"));
    let key_hash = KeyHash::from_hex(get("key_hash")?).ok_or_else(|| bad("key_hash", "<not 64 hex digits>"))?;
    // Records written before schemes existed have no field: their hash is the legacy SHA-256.
    let key_scheme = match fields.get("key_scheme") {
        None => KeyScheme::Sha256,
        Some(s) => KeyScheme::parse(s).ok_or_else(|| bad("key_scheme", s))?,
    };
    let enabled = match get("enabled")? {
        "1" => true,
        "0" => false,
        other => return Err(bad("enabled", other)),
    };
    let max_viewers = match get("max_viewers")? {
        "" => None,
        n => Some(n.parse().map_err(|_| bad("max_viewers", n))?),
    };
    let takeover = get("takeover")?;
    let takeover = TakeoverPolicy::parse(takeover).ok_or_else(|| bad("takeover", takeover))?;
    let generation = get("generation")?;
    let generation = generation.parse().map_err(|_| bad("generation", generation))?;
    // Absent (records written before it existed) or empty: none. Never quoted in an error.
    let srt_passphrase = match fields.get("srt_passphrase").map(String::as_str) {
        None | Some("") => None,
        Some(p) => Some(SrtPassphrase::new(p).map_err(|e| malformed(format!("record {id}: srt_passphrase: {e}")))?),
    };
    Ok(Some(StreamRecord {
        id: id.clone(),
        key_hash,
        key_scheme,
        playback_name: get("playback_name")?.to_string(),
        enabled,
        max_viewers,
        takeover,
        generation,
        srt_passphrase,
    }))
}

/// A record from a flat field/value list (what `lookup.lua` returns).
pub(super) fn record_from_flat(flat: Vec<String>) -> Result<Option<StreamRecord>> {
    let mut fields = HashMap::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        fields.insert(k, v);
    }
    record_from_hash(&fields)
}

/// Number of holder fields in script replies (`HOLDER_FIELDS` in `scripts/prelude.lua`).
pub(super) const HOLDER_FIELDS: usize = 10;

/// A holder from `HOLDER_FIELDS` order: edge, remote, relay, since, epoch, counter, idle_since,
/// kbps, media, protocol (empty on holders written before it existed: unknown).
pub(super) fn holder_from(f: &[String]) -> Result<HolderInfo> {
    let [edge, remote, relay, since, epoch, counter, idle_since, kbps, media, protocol] = f else {
        return Err(malformed(format!("holder has {} fields, expected {HOLDER_FIELDS}", f.len())));
    };
    let epoch = opt_u64("holder epoch", epoch)?.unwrap_or(0);
    let counter = opt_u64("holder counter", counter)?.unwrap_or(0);
    Ok(HolderInfo {
        edge: edge.clone(),
        remote_addr: opt_string(remote),
        relay_addr: opt_string(relay),
        protocol: IngestProtocol::parse(protocol),
        since_ms: opt_u64("holder since", since)?.unwrap_or(0),
        fence: fence(epoch, counter),
        idle_since_ms: opt_u64("holder idle_since", idle_since)?,
        ingest_kbps: opt_u64("holder kbps", kbps)?,
        media: HolderMedia::decode(media).map(Box::new),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> StreamRecord {
        StreamRecord {
            id: StreamId::new("media", "news"),
            key_hash: KeyHash::of_key("k"),
            key_scheme: KeyScheme::Sha256,
            playback_name: "news".into(),
            enabled: true,
            max_viewers: Some(10),
            takeover: TakeoverPolicy::Reject,
            generation: 7,
            srt_passphrase: None,
        }
    }

    #[test]
    fn records_round_trip_through_their_hash() {
        let keyed =
            crate::KeyHasher::new(Some(crate::KeyHashSecret::new("0123456789abcdef").unwrap())).record_hash("k");
        for rec in [
            record(),
            StreamRecord { enabled: false, max_viewers: None, ..record() },
            StreamRecord { key_hash: keyed.hash, key_scheme: keyed.scheme, ..record() },
            StreamRecord { srt_passphrase: Some(SrtPassphrase::new("per-stream-secret").unwrap()), ..record() },
        ] {
            let names = [
                "id",
                "key_hash",
                "playback_name",
                "enabled",
                "max_viewers",
                "takeover",
                "generation",
                "key_scheme",
                "srt_passphrase",
            ];
            let flat: Vec<String> = names.iter().zip(record_args(&rec)).flat_map(|(k, v)| [k.to_string(), v]).collect();
            assert_eq!(record_from_flat(flat).unwrap(), Some(rec));
        }
        assert_eq!(record_from_flat(Vec::new()).unwrap(), None);
    }

    #[test]
    fn a_record_without_a_scheme_is_a_legacy_one_and_an_unknown_scheme_is_refused() {
        // What an operator before key schemes wrote: no key_scheme field.
        let mut fields: HashMap<String, String> = [
            ("id", "media/news"),
            ("key_hash", KeyHash::of_key("k").to_hex().as_str()),
            ("playback_name", "news"),
            ("enabled", "1"),
            ("max_viewers", "10"),
            ("takeover", "Reject"),
            ("generation", "7"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(record_from_hash(&fields).unwrap(), Some(record()));
        fields.insert("key_scheme".into(), "md5".into());
        let err = record_from_hash(&fields).unwrap_err().to_string();
        assert!(err.contains("key_scheme") && err.contains("md5"), "{err}");
    }

    #[test]
    fn malformed_records_name_the_field() {
        let mut fields: HashMap<String, String> = [
            ("id", "media/news"),
            ("key_hash", "zz"),
            ("playback_name", "news"),
            ("enabled", "1"),
            ("max_viewers", ""),
            ("takeover", "Reject"),
            ("generation", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let err = record_from_hash(&fields).unwrap_err().to_string();
        assert!(err.contains("key_hash"), "{err}");
        fields.insert("key_hash".into(), KeyHash::of_key("k").to_hex());
        fields.insert("takeover".into(), "Sometimes".into());
        let err = record_from_hash(&fields).unwrap_err().to_string();
        assert!(err.contains("takeover") && err.contains("Sometimes"), "{err}");
    }

    #[test]
    fn fence_puts_the_epoch_above_any_counter() {
        let epoch = 1_750_000_000_000u64;
        assert_eq!(fence(epoch, 1), epoch * 1_048_576 + 1);
        // The largest counter of one epoch stays below the first fence of the next.
        assert!(fence(epoch, (1 << FENCE_BITS) - 1) < fence(epoch + 1, 1));
        assert_eq!(fence(u64::MAX, 1), u64::MAX);
    }

    #[test]
    fn holders_parse_with_absent_fields() {
        let f: Vec<String> =
            ["edge-a", "", "10.0.0.1:1936", "5", "2", "3", "", "900", "", ""].iter().map(|s| s.to_string()).collect();
        let h = holder_from(&f).unwrap();
        assert_eq!(h.edge, "edge-a");
        assert_eq!(h.remote_addr, None);
        assert_eq!(h.relay_addr.as_deref(), Some("10.0.0.1:1936"));
        assert_eq!(h.fence, fence(2, 3));
        assert_eq!(h.idle_since_ms, None);
        assert_eq!(h.ingest_kbps, Some(900));
        assert_eq!(h.media, None, "no report yet");
        assert_eq!(h.protocol, None, "written before the protocol was recorded");
        assert!(holder_from(&f[..3]).is_err());
        let mut srt = f.clone();
        srt[9] = "srt".into();
        assert_eq!(holder_from(&srt).unwrap().protocol, Some(IngestProtocol::Srt));
    }
}
