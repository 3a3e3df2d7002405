//! Pure status computation: from what reconcile observed (the registry's live state, or the
//! problem that blocks the stream) to the `LiveStream` status, with standard conditions. No IO,
//! and the clock is an argument, so every rule here is unit-tested.
//!
//! Two rules keep the controller from re-triggering itself and the API server from flooding:
//! a condition's `lastTransitionTime` changes only when its `status` flips, and [`classify`]
//! tells a change that must be written now from a change in live counters that can wait.

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use streamfleet_registry::{
    HolderMedia, LiveStatus,
    api::{LiveStreamStatus, MediaStatus, Phase, PublisherStatus},
};

/// Condition type: the stream is in the registry and accepts a publisher.
pub const READY: &str = "Ready";
/// Condition type: a publisher is connected.
pub const LIVE: &str = "Live";
/// Condition type: the live encoder sends healthy media (measured by the edge holding it).
pub const ENCODER_HEALTHY: &str = "EncoderHealthy";

/// Why a LiveStream cannot be served. Not an operator error: it is reported in the `Ready`
/// condition and as a Warning Event, and fixing the input resolves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The referenced (or generated) Secret does not exist.
    SecretNotFound { secret: String },
    /// The Secret exists but lacks the key named by `publishKeySecretRef.key`.
    SecretKeyMissing { secret: String, key: String },
    /// The Secret's value cannot be a publish key (empty, or has '/', '?', spaces).
    InvalidPublishKey { secret: String, message: String },
    /// The publish key is too weak to stand guessing ([`crate::key_strength`]); `message` says
    /// why without quoting the key.
    WeakPublishKey { secret: String, message: String },
    /// The spec cannot become a stream record (admission should have caught it).
    InvalidSpec { field: String, message: String },
    /// An older LiveStream (or a record the operator may not evict) owns the playback name.
    PlaybackNameConflict { playback_name: String, owner: String },
    /// Another stream uses the same publish key.
    PublishKeyConflict { owner: String },
    /// The Secret's `srtPassphrase` is unusable (not 10 to 79 characters, not UTF-8); `message`
    /// says why without quoting it.
    InvalidSrtPassphrase { secret: String, message: String },
}

impl Problem {
    /// The condition reason and Event reason (PascalCase).
    pub fn reason(&self) -> &'static str {
        match self {
            Problem::SecretNotFound { .. } => "SecretNotFound",
            Problem::SecretKeyMissing { .. } => "SecretKeyMissing",
            Problem::InvalidPublishKey { .. } => "InvalidPublishKey",
            Problem::WeakPublishKey { .. } => "WeakPublishKey",
            Problem::InvalidSpec { .. } => "InvalidSpec",
            Problem::PlaybackNameConflict { .. } => "PlaybackNameConflict",
            Problem::PublishKeyConflict { .. } => "PublishKeyConflict",
            Problem::InvalidSrtPassphrase { .. } => "InvalidSrtPassphrase",
        }
    }

    /// What a user reads in `kubectl describe`: what is wrong and what to do.
    pub fn message(&self) -> String {
        match self {
            Problem::SecretNotFound { secret } => {
                format!("Secret {secret} does not exist; create it (or fix publishKeySecretRef.name)")
            }
            Problem::SecretKeyMissing { secret, key } => {
                format!("Secret {secret} has no key {key:?}; add it (or fix publishKeySecretRef.key)")
            }
            Problem::InvalidPublishKey { secret, message } => {
                format!("the publish key in Secret {secret} is unusable: {message}")
            }
            Problem::WeakPublishKey { secret, message } => format!(
                "the publish key in Secret {secret} is too weak: {message}; use at least {} random characters (e.g. `openssl rand -hex 24`), or delete publishKeySecretRef to have one generated",
                crate::key_strength::MIN_KEY_BYTES
            ),
            Problem::InvalidSpec { field, message } => format!("{field}: {message}"),
            Problem::PlaybackNameConflict { playback_name, owner } => {
                format!("playback name {playback_name:?} is already used by {owner}; choose another spec.playbackName")
            }
            Problem::PublishKeyConflict { owner } => {
                format!("the publish key is already used by {owner}; give each LiveStream its own key")
            }
            Problem::InvalidSrtPassphrase { secret, message } => format!(
                "the key srtPassphrase of Secret {secret} is unusable: {message}; fix it or remove the key (the stream is not served until then)"
            ),
        }
    }

    /// `Pending` while waiting for something the user is expected to create (the Secret);
    /// `Error` for input that will not fix itself.
    pub fn phase(&self) -> Phase {
        match self {
            Problem::SecretNotFound { .. } | Problem::SecretKeyMissing { .. } => Phase::Pending,
            _ => Phase::Error,
        }
    }
}

/// What one reconcile found.
#[derive(Clone, Debug, PartialEq)]
pub enum Observed {
    /// The record is in the registry (enabled or not); `live` is the stream's live state.
    Registered { live: LiveStatus },
    /// The stream is not (or no longer) in the registry because of this problem.
    Blocked(Problem),
}

/// Everything [`desired_status`] depends on.
#[derive(Clone, Debug)]
pub struct StatusInput<'a> {
    /// `metadata.generation` of the LiveStream.
    pub generation: Option<i64>,
    pub playback_name: String,
    pub enabled: bool,
    /// Name of the Secret holding the key (generated or referenced).
    pub publish_key_secret: Option<String>,
    pub observed: &'a Observed,
    /// The status currently on the object: carries `lastTransitionTime` and `lastPublishedAt`.
    pub previous: Option<&'a LiveStreamStatus>,
    pub now: Timestamp,
}

/// The phase for what was observed.
pub fn phase(enabled: bool, observed: &Observed) -> Phase {
    match observed {
        Observed::Blocked(p) => p.phase(),
        Observed::Registered { .. } if !enabled => Phase::Disabled,
        Observed::Registered { live } if live.holder.is_some() => Phase::Live,
        Observed::Registered { .. } => Phase::Ready,
    }
}

/// The full status the object should have. Deterministic for equal inputs, and equal to
/// `previous` when nothing changed (so no patch is sent).
pub fn desired_status(input: &StatusInput<'_>) -> LiveStreamStatus {
    let previous_conditions = input.previous.map(|p| p.conditions.as_slice()).unwrap_or_default();
    let cond3 = |type_: &str, status: &str, reason: &str, message: String| {
        condition(previous_conditions, type_, status, reason, message, input.generation, input.now)
    };
    let cond = |type_: &str, status: bool, reason: &str, message: String| {
        cond3(type_, if status { "True" } else { "False" }, reason, message)
    };
    let (ready, live_cond) = match input.observed {
        Observed::Blocked(p) => (
            cond(READY, false, p.reason(), p.message()),
            cond(LIVE, false, "NotReady", "the stream is not ready; see the Ready condition".into()),
        ),
        Observed::Registered { .. } if !input.enabled => (
            cond(READY, false, "Disabled", "spec.enabled is false: publishers are refused".into()),
            cond(LIVE, false, "Disabled", "spec.enabled is false".into()),
        ),
        Observed::Registered { live } => {
            let secret = input.publish_key_secret.as_deref().unwrap_or("(unknown)");
            let ready = cond(
                READY,
                true,
                "Registered",
                format!(
                    "in the registry: publish to rtmp://<edge>/live/<key in Secret {secret}>, play rtmp://<edge>/live/{}",
                    input.playback_name
                ),
            );
            let live_cond = match &live.holder {
                Some(h) => cond(
                    LIVE,
                    true,
                    "Publishing",
                    format!(
                        "publisher{} connected to edge {}",
                        h.remote_addr.as_deref().map(|a| format!(" {a}")).unwrap_or_default(),
                        h.edge
                    ),
                ),
                None => cond(LIVE, false, "NoPublisher", "no encoder is connected".into()),
            };
            (ready, live_cond)
        }
    };

    let live = match input.observed {
        Observed::Registered { live } => Some(live),
        Observed::Blocked(_) => None,
    };
    let holder = live.and_then(|l| l.holder.as_ref());
    let media = holder.and_then(|h| h.media.as_deref());
    let encoder = match (holder, media) {
        (Some(_), Some(m)) if m.healthy => {
            cond3(ENCODER_HEALTHY, "True", "Healthy", format!("the encoder sends healthy media{}", describe(m)))
        }
        (Some(_), Some(m)) => cond3(
            ENCODER_HEALTHY,
            "False",
            m.reason.as_deref().unwrap_or("Unhealthy"),
            m.message.clone().unwrap_or_else(|| "the edge flags the encoder's media as unhealthy".into()),
        ),
        (Some(_), None) => {
            cond3(ENCODER_HEALTHY, "Unknown", "NotMeasured", "the edge has not reported the encoder's media yet".into())
        }
        (None, _) => cond3(ENCODER_HEALTHY, "Unknown", "NoPublisher", "no encoder is connected".into()),
    };
    let last_published_at =
        holder.map(|h| rfc3339_ms(h.since_ms)).or_else(|| input.previous.and_then(|p| p.last_published_at.clone()));
    LiveStreamStatus {
        phase: Some(phase(input.enabled, input.observed)),
        observed_generation: input.generation,
        conditions: vec![ready, live_cond, encoder],
        playback_name: Some(input.playback_name.clone()),
        publisher: holder.map(|h| PublisherStatus {
            edge: h.edge.clone(),
            remote_addr: h.remote_addr.clone(),
            protocol: h.protocol.map(|p| p.as_str().to_string()),
            since: Some(rfc3339_ms(h.since_ms)),
        }),
        viewers: live.map(|l| l.viewers),
        ingest_bitrate_kbps: holder.and_then(|h| h.ingest_kbps),
        media: media.map(media_status),
        last_published_at,
        publish_key_secret: input.publish_key_secret.clone(),
    }
}

/// The status's `media` block from the holder's report.
fn media_status(m: &HolderMedia) -> MediaStatus {
    MediaStatus {
        video_codec: m.video_codec.clone(),
        resolution: m.width.zip(m.height).map(|(w, h)| format!("{w}x{h}")),
        fps: m.fps_centi.map(|f| f64::from(f) / 100.0),
        keyframe_interval_seconds: m.keyframe_interval_ms.map(|k| f64::from(k) / 1000.0),
        audio_codec: m.audio_codec.clone(),
    }
}

/// `: 1280x720 h264 at 30 fps, a keyframe every 2.0 s, aac` (what is known of it).
fn describe(m: &HolderMedia) -> String {
    let mut parts = Vec::new();
    let video = [m.width.zip(m.height).map(|(w, h)| format!("{w}x{h}")), m.video_codec.clone()];
    let video: Vec<String> = video.into_iter().flatten().collect();
    if !video.is_empty() {
        let fps = m.fps_centi.map(|f| format!(" at {} fps", f64::from(f) / 100.0)).unwrap_or_default();
        parts.push(format!("{}{fps}", video.join(" ")));
    }
    if let Some(k) = m.keyframe_interval_ms {
        parts.push(format!("a keyframe every {:.1} s", f64::from(k) / 1000.0));
    }
    parts.extend(m.audio_codec.clone());
    if parts.is_empty() { String::new() } else { format!(": {}", parts.join(", ")) }
}

/// A condition whose `lastTransitionTime` is kept from `previous` unless the status flipped.
fn condition(
    previous: &[Condition],
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        // The API server keeps whole seconds; writing the same avoids a spurious diff.
        .unwrap_or_else(|| Time(Timestamp::from_second(now.as_second()).unwrap_or(now)));
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// Milliseconds since the Unix epoch as RFC 3339 (the registry keeps wall-clock ms).
fn rfc3339_ms(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// How urgently a status difference must reach the API server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing to write.
    None,
    /// Only live counters or publisher details changed: write at most every few seconds.
    LiveOnly,
    /// Phase, a condition's status or reason, the generation or the spec-derived fields
    /// changed: write now.
    Significant,
}

/// Compares the current status with the desired one.
pub fn classify(current: Option<&LiveStreamStatus>, desired: &LiveStreamStatus) -> Change {
    let default = LiveStreamStatus::default();
    let current = current.unwrap_or(&default);
    if current == desired {
        Change::None
    } else if skeleton(current) == skeleton(desired) {
        Change::LiveOnly
    } else {
        Change::Significant
    }
}

/// A status without the fields that move while a stream is live.
fn skeleton(s: &LiveStreamStatus) -> LiveStreamStatus {
    let mut s = s.clone();
    s.viewers = None;
    s.ingest_bitrate_kbps = None;
    s.media = None;
    s.last_published_at = None;
    // The protocol stays: it changes only with the publisher.
    s.publisher =
        s.publisher.map(|p| PublisherStatus { edge: p.edge, remote_addr: None, protocol: p.protocol, since: None });
    for c in &mut s.conditions {
        // Their messages carry live figures (addresses, frame rates, seconds without a
        // keyframe): a change of wording alone can wait; a change of status or reason cannot.
        if c.type_ == LIVE || c.type_ == ENCODER_HEALTHY {
            c.message.clear();
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamfleet_registry::HolderInfo;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("valid timestamp")
    }

    fn holder(edge: &str, kbps: Option<u64>) -> HolderInfo {
        HolderInfo {
            edge: edge.into(),
            remote_addr: Some("10.0.0.9:51000".into()),
            relay_addr: None,
            protocol: Some(streamfleet_registry::IngestProtocol::Srt),
            since_ms: 1_700_000_000_123,
            fence: 7,
            idle_since_ms: None,
            media: None,
            ingest_kbps: kbps,
        }
    }

    fn registered(holder: Option<HolderInfo>, viewers: u32) -> Observed {
        Observed::Registered {
            live: LiveStatus { holder, viewers, viewers_by_edge: Default::default(), lease_ms_left: None },
        }
    }

    fn input<'a>(observed: &'a Observed, previous: Option<&'a LiveStreamStatus>, now: i64) -> StatusInput<'a> {
        StatusInput {
            generation: Some(2),
            playback_name: "news".into(),
            enabled: true,
            publish_key_secret: Some("news-publish-key".into()),
            observed,
            previous,
            now: at(now),
        }
    }

    fn cond<'a>(s: &'a LiveStreamStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).expect("condition present")
    }

    #[test]
    fn phases_follow_what_was_observed() {
        let idle = registered(None, 0);
        let live = registered(Some(holder("edge-a", None)), 3);
        let missing = Observed::Blocked(Problem::SecretNotFound { secret: "k".into() });
        let conflict =
            Observed::Blocked(Problem::PlaybackNameConflict { playback_name: "news".into(), owner: "a/news".into() });
        assert_eq!(phase(true, &idle), Phase::Ready);
        assert_eq!(phase(true, &live), Phase::Live);
        assert_eq!(phase(false, &idle), Phase::Disabled);
        assert_eq!(phase(false, &live), Phase::Disabled);
        assert_eq!(phase(true, &missing), Phase::Pending);
        assert_eq!(phase(true, &conflict), Phase::Error);
        assert_eq!(phase(false, &conflict), Phase::Error);
    }

    #[test]
    fn live_status_fills_publisher_viewers_and_bitrate() {
        let obs = registered(Some(holder("edge-a", Some(2500))), 42);
        let s = desired_status(&input(&obs, None, 100));
        assert_eq!(s.phase, Some(Phase::Live));
        let p = s.publisher.as_ref().expect("publisher while live");
        assert_eq!(p.edge, "edge-a");
        assert_eq!(p.remote_addr.as_deref(), Some("10.0.0.9:51000"));
        assert_eq!(p.since.as_deref(), Some("2023-11-14T22:13:20.123Z"));
        assert_eq!(p.protocol.as_deref(), Some("srt"));
        assert_eq!(s.viewers, Some(42));
        assert_eq!(s.ingest_bitrate_kbps, Some(2500));
        assert_eq!(s.last_published_at.as_deref(), Some("2023-11-14T22:13:20.123Z"));
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!(cond(&s, READY).status, "True");
        assert_eq!(cond(&s, LIVE).reason, "Publishing");
        assert_eq!(cond(&s, LIVE).observed_generation, Some(2));
        assert_eq!(s.publish_key_secret.as_deref(), Some("news-publish-key"));
    }

    #[test]
    fn last_transition_time_changes_only_when_status_flips() {
        let idle = registered(None, 0);
        let first = desired_status(&input(&idle, None, 100));
        assert_eq!(cond(&first, READY).last_transition_time, Time(at(100)));

        // Same observation later: identical status, so nothing to patch.
        let again = desired_status(&input(&idle, Some(&first), 200));
        assert_eq!(again, first);
        assert_eq!(classify(Some(&first), &again), Change::None);

        // A publisher connects: Live flips (new time), Ready does not (old time).
        let live = registered(Some(holder("edge-a", None)), 0);
        let went_live = desired_status(&input(&live, Some(&again), 300));
        assert_eq!(cond(&went_live, READY).last_transition_time, Time(at(100)));
        assert_eq!(cond(&went_live, LIVE).last_transition_time, Time(at(300)));
        assert_eq!(classify(Some(&again), &went_live), Change::Significant);

        // The Secret disappears: Ready flips to False with a reason and a new time.
        let blocked = Observed::Blocked(Problem::SecretNotFound { secret: "news-key".into() });
        let pending = desired_status(&input(&blocked, Some(&went_live), 400));
        let ready = cond(&pending, READY);
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "SecretNotFound"));
        assert_eq!(ready.last_transition_time, Time(at(400)));
        assert!(ready.message.contains("news-key"), "{}", ready.message);
        assert_eq!(pending.publisher, None);
        // The last publish time survives the stream going offline.
        assert_eq!(pending.last_published_at, went_live.last_published_at);
    }

    #[test]
    fn viewer_counts_are_live_only_changes() {
        let a = registered(Some(holder("edge-a", Some(1000))), 1);
        let b = registered(Some(holder("edge-a", Some(1200))), 5);
        let first = desired_status(&input(&a, None, 100));
        let second = desired_status(&input(&b, Some(&first), 105));
        assert_eq!(classify(Some(&first), &second), Change::LiveOnly);
        // A new generation is always written at once.
        let mut newer = input(&b, Some(&first), 105);
        newer.generation = Some(3);
        assert_eq!(classify(Some(&first), &desired_status(&newer)), Change::Significant);
        // No status at all yet: write.
        assert_eq!(classify(None, &first), Change::Significant);
    }

    fn media(healthy: bool, fps_centi: u32, message: &str) -> streamfleet_registry::HolderMedia {
        streamfleet_registry::HolderMedia {
            video_codec: Some("h264".into()),
            width: Some(1920),
            height: Some(1080),
            fps_centi: Some(fps_centi),
            keyframe_interval_ms: Some(2000),
            audio_codec: Some("aac".into()),
            healthy,
            reason: (!healthy).then(|| "Stalled".to_string()),
            message: (!healthy).then(|| message.to_string()),
        }
    }

    #[test]
    fn encoder_health_is_a_condition_and_its_figures_are_live_only() {
        let with = |m: Option<streamfleet_registry::HolderMedia>| {
            registered(Some(HolderInfo { media: m.map(Box::new), ..holder("edge-a", Some(4500)) }), 0)
        };
        let healthy = with(Some(media(true, 3000, "")));
        let first = desired_status(&input(&healthy, None, 100));
        let c = cond(&first, ENCODER_HEALTHY);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Healthy"));
        assert!(c.message.contains("1920x1080 h264 at 30 fps, a keyframe every 2.0 s, aac"), "{}", c.message);
        let m = first.media.clone().expect("media block");
        assert_eq!(
            (m.resolution.as_deref(), m.fps, m.keyframe_interval_seconds),
            (Some("1920x1080"), Some(30.0), Some(2.0))
        );

        // A new frame rate changes the message and the block: a live-only change.
        let jitter = with(Some(media(true, 2997, "")));
        let second = desired_status(&input(&jitter, Some(&first), 101));
        assert_eq!(classify(Some(&first), &second), Change::LiveOnly);

        // Unhealthy: a significant change, its transition time set now.
        let stalled = with(Some(media(false, 0, "no media from the encoder for 2.0 s")));
        let third = desired_status(&input(&stalled, Some(&second), 105));
        let c = cond(&third, ENCODER_HEALTHY);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "Stalled"));
        assert_eq!(c.last_transition_time.0, at(105));
        assert_eq!(classify(Some(&second), &third), Change::Significant);
        // The same verdict in new words is not.
        let longer = with(Some(media(false, 0, "no media from the encoder for 3.0 s")));
        let fourth = desired_status(&input(&longer, Some(&third), 106));
        assert_eq!(classify(Some(&third), &fourth), Change::LiveOnly);

        // Not measured yet, and nothing live: Unknown, no media block.
        let unmeasured = desired_status(&input(&with(None), None, 100));
        assert_eq!(cond(&unmeasured, ENCODER_HEALTHY).reason, "NotMeasured");
        let idle = desired_status(&input(&registered(None, 0), None, 100));
        let c = cond(&idle, ENCODER_HEALTHY);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("Unknown", "NoPublisher"));
        assert_eq!(idle.media, None);
    }

    #[test]
    fn disabled_streams_say_so() {
        let idle = registered(None, 0);
        let mut i = input(&idle, None, 100);
        i.enabled = false;
        let s = desired_status(&i);
        assert_eq!(s.phase, Some(Phase::Disabled));
        assert_eq!(cond(&s, READY).reason, "Disabled");
        assert_eq!(cond(&s, READY).status, "False");
    }
}
