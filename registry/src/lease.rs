//! Publisher leases: the value types of "one active publisher per stream, cluster-wide", and
//! the timing rules that make a holder stop before anyone else can be admitted.
//!
//! A lease is granted by [`Registry::acquire`](crate::Registry::acquire), kept alive by the
//! [`LeaseKeeper`](crate::lease_keeper::LeaseKeeper) and freed by
//! [`Registry::release`](crate::Registry::release).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::record::{KeyHash, StreamId};

/// The protocol an encoder publishes over, as the holder records it (`rtmp`, `rtmps`, `srt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IngestProtocol {
    /// RTMP over plain TCP.
    Rtmp,
    /// RTMP over TLS.
    Rtmps,
    /// MPEG-TS over SRT.
    Srt,
}

impl IngestProtocol {
    /// Stable wire name, as stored in the registry and shown in status.
    pub fn as_str(self) -> &'static str {
        match self {
            IngestProtocol::Rtmp => "rtmp",
            IngestProtocol::Rtmps => "rtmps",
            IngestProtocol::Srt => "srt",
        }
    }

    /// Parses the wire name; `None` for anything else (a name a newer version wrote reads as
    /// unknown rather than as an error: the protocol is informational).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "rtmp" => Some(IngestProtocol::Rtmp),
            "rtmps" => Some(IngestProtocol::Rtmps),
            "srt" => Some(IngestProtocol::Srt),
            _ => None,
        }
    }
}

impl std::fmt::Display for IngestProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads an optional protocol leniently: absent (a holder written before the field existed),
/// or a name this version does not know, is `None`.
fn lenient_protocol<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<IngestProtocol>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    Ok(s.as_deref().and_then(IngestProtocol::parse))
}

/// Who asks for a lease: filled in by the edge when an encoder sends `publish`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublisherInfo {
    /// `--edge-id` of the edge pod.
    pub edge: String,
    /// The encoder's address as the edge saw it.
    pub remote_addr: Option<String>,
    /// Internal address other edges pull this stream from (`--advertise-addr`).
    pub relay_addr: Option<String>,
    /// What the encoder publishes over; `None` when the caller does not say.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_protocol")]
    pub protocol: Option<IngestProtocol>,
}

/// What everyone else can see about the current holder of a stream's lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderInfo {
    pub edge: String,
    pub remote_addr: Option<String>,
    pub relay_addr: Option<String>,
    /// What the holder's encoder publishes over. `None` on holders written by edges that did
    /// not record it (before the field existed), or with a name this version does not know.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_protocol")]
    pub protocol: Option<IngestProtocol>,
    /// Wall-clock time of admission, ms since the Unix epoch (the registry's clock).
    pub since_ms: u64,
    /// Fencing token of the holder's grant.
    pub fence: u64,
    /// Set while the holder has sent no media for the idle threshold (ms since the Unix epoch).
    pub idle_since_ms: Option<u64>,
    /// Ingest bitrate last reported by the holder.
    pub ingest_kbps: Option<u64>,
    /// What the holder's encoder sends and whether it is healthy, as last reported.
    /// Boxed: it is the largest field, and most holders are passed around without looking at it.
    #[serde(default)]
    pub media: Option<Box<HolderMedia>>,
}

/// A summary of what a publisher's encoder sends, reported by the edge holding it (measured
/// there: docs/edge.md "Stream health") and shown by the operator in the LiveStream's status.
/// Whole numbers only, so a holder compares exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderMedia {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_codec: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Frames per second × 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps_centi: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyframe_interval_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_codec: Option<String>,
    pub healthy: bool,
    /// Why not healthy (`Stalled`, `KeyframeInterval`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What to change, in plain words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl HolderMedia {
    /// Longest encoded form a holder may store (it is written on every report).
    pub const MAX_ENCODED: usize = 2048;

    /// JSON, as stored in the registry; `None` when it would exceed [`Self::MAX_ENCODED`].
    pub fn encode(&self) -> Option<String> {
        serde_json::to_string(self).ok().filter(|s| s.len() <= Self::MAX_ENCODED)
    }

    /// The stored form back; anything unreadable reads as no report (it is informational).
    pub fn decode(s: &str) -> Option<HolderMedia> {
        if s.is_empty() || s.len() > Self::MAX_ENCODED {
            return None;
        }
        serde_json::from_str(s).ok()
    }
}

/// A granted lease. Only the holder knows `token`; renew, release and holder updates present it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub stream: StreamId,
    /// Key hash the publisher presented; a reclaim after a registry restart re-checks it.
    pub key_hash: KeyHash,
    /// The same key's hash under the other scheme, when the edge knows it: a grant that
    /// matched a legacy (SHA-256) record sets the keyed hash here, so that a reclaim still
    /// finds the record after the operator rewrote it with the keyed hash (docs/registry.md,
    /// "Key hashes").
    pub key_hash_alt: Option<KeyHash>,
    /// Random per grant: proves ownership to the compare-and-set scripts.
    pub token: String,
    /// Strictly increasing across all grants of the registry, even across Redis restarts that
    /// lose the counter (see docs/registry.md, "Fencing").
    pub fence: u64,
    /// The registry epoch the grant was made in; a changed epoch means the registry restarted.
    pub epoch: u64,
    pub holder: HolderInfo,
    /// True when this grant replaced a previous holder under the stream's takeover policy.
    pub took_over: bool,
}

/// Options that shape a grant; the takeover *policy* comes from the stream record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcquireOptions {
    pub ttl: Duration,
    /// A holder idle (no media) for this long may be replaced under `ReplaceIdle`.
    pub idle_threshold: Duration,
    /// After a takeover, the stream cannot be taken over again for this long.
    pub takeover_cooldown: Duration,
}

impl AcquireOptions {
    pub fn new(timing: &LeaseTiming) -> Self {
        AcquireOptions {
            ttl: timing.ttl,
            idle_threshold: Duration::from_secs(1),
            takeover_cooldown: Duration::from_secs(5),
        }
    }
}

/// Outcome of one renew attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenewOutcome {
    /// The lease is ours and its expiry was pushed back by one TTL.
    Renewed,
    /// The lease key is gone. With `registry_restarted` the registry lost its data (new epoch)
    /// and the holder should reclaim; otherwise it was revoked (or expired).
    Missing { registry_restarted: bool },
    /// Someone else holds the lease now.
    HeldByOther,
}

/// Lease timing, all derived from the TTL so that the invariants hold for any TTL:
/// `ttl > ttl − margin (the stop deadline) > renew interval > retry interval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long Redis keeps a lease without a renew.
    pub ttl: Duration,
    /// Renew this often while things are fine (TTL/3).
    pub renew_every: Duration,
    /// Stop publishing this long before the lease could expire in Redis (TTL/3): absorbs clock
    /// rate drift, scheduling stalls and one round trip.
    pub safety_margin: Duration,
    /// Retry this often (±20 % jitter) while renews fail (TTL/15, at most 1 s).
    pub retry_every: Duration,
}

impl LeaseTiming {
    /// Default TTL: 15 s (renew every 5 s, hard stop 10 s after the last good renew was sent).
    pub const DEFAULT_TTL: Duration = Duration::from_secs(15);

    pub fn from_ttl(ttl: Duration) -> Self {
        LeaseTiming {
            ttl,
            renew_every: ttl / 3,
            safety_margin: ttl / 3,
            retry_every: (ttl / 15).min(Duration::from_secs(1)),
        }
    }

    /// How long after the *send* time of a successful acquire/renew the holder may keep
    /// publishing.
    pub fn hold_for(&self) -> Duration {
        self.ttl.saturating_sub(self.safety_margin)
    }
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming::from_ttl(Self::DEFAULT_TTL)
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A fresh lease token (128 random bits, hex) for [`crate::EdgeRegistry::acquire_as`]: make one
/// per admission and present it on every ask of that admission.
pub fn new_lease_token() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

/// Live state of a stream as the operator reports it in status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveStatus {
    pub holder: Option<HolderInfo>,
    /// Sum of the unexpired per-edge viewer counts.
    pub viewers: u32,
    pub viewers_by_edge: std::collections::BTreeMap<String, u32>,
    /// How long the holder's lease had left when read (ms), unless renewed: when the operator
    /// looks again, so that a holder that stopped renewing (its edge died) is shown gone at
    /// its lease's expiry rather than at the next poll. `None` without a holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms_left: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_invariants_hold_for_defaults_and_fast_profile() {
        for ttl in [Duration::from_secs(15), Duration::from_secs(6), Duration::from_millis(900)] {
            let t = LeaseTiming::from_ttl(ttl);
            assert!(t.ttl > t.hold_for());
            assert!(t.hold_for() > t.renew_every);
            assert!(t.renew_every > t.retry_every);
        }
        let d = LeaseTiming::default();
        assert_eq!(d.renew_every, Duration::from_secs(5));
        assert_eq!(d.hold_for(), Duration::from_secs(10));
        assert_eq!(d.retry_every, Duration::from_secs(1));
    }

    #[test]
    fn protocols_round_trip_and_old_or_unknown_ones_read_as_none() {
        for p in [IngestProtocol::Rtmp, IngestProtocol::Rtmps, IngestProtocol::Srt] {
            assert_eq!(IngestProtocol::parse(p.as_str()), Some(p));
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{p}\""));
        }
        assert_eq!(IngestProtocol::parse("webrtc"), None);
        // A holder serialized before the field existed, and one from a newer version.
        let old = r#"{"edge":"e","remote_addr":null,"relay_addr":null,"since_ms":1,"fence":2,"idle_since_ms":null,"ingest_kbps":null}"#;
        let h: HolderInfo = serde_json::from_str(old).unwrap();
        assert_eq!(h.protocol, None);
        let newer = old.replace(r#""edge":"e""#, r#""edge":"e","protocol":"webrtc""#);
        assert_eq!(serde_json::from_str::<HolderInfo>(&newer).unwrap().protocol, None);
        let srt = old.replace(r#""edge":"e""#, r#""edge":"e","protocol":"srt""#);
        let h: HolderInfo = serde_json::from_str(&srt).unwrap();
        assert_eq!(h.protocol, Some(IngestProtocol::Srt));
        assert_eq!(serde_json::from_str::<HolderInfo>(&serde_json::to_string(&h).unwrap()).unwrap(), h);
    }
}
