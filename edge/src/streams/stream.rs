//! One stream on this edge: the publisher slot (a local encoder or this edge's relay pull),
//! the players, and the path of each message from the publisher to them: classified, put on
//! the [timeline](super::timeline), kept for [fast start](super::fast_start), offered to
//! every player under the stream's lock and then written from the publisher's own task.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use streamfleet_registry::{StreamId, StreamRecord};
use tokio::{
    sync::{oneshot, watch},
    time::Instant,
};

use super::{
    fast_start::FastStart,
    gop_budget::GopLimits,
    health::{Health, HealthReport, HealthRules, MediaReport},
    local_release::LocalLeases,
    timeline::Timeline,
};
use crate::{
    fanout::{FrameLog, Offer, Outbox, write_spread},
    media::{
        Frame, FrameKind, Media, MediaKind,
        codec::{self, Codec},
    },
    rtmp::messages::{Level, on_status_payload},
    sync::lock,
};

/// Why a local publisher is told to stop by the stream itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kick {
    /// A newer publisher for the same stream was admitted (takeover).
    Replaced,
}

/// Whether the stream has a publisher on this edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LiveState {
    Offline,
    Live { publisher: u64 },
}

/// What the stream knows about its current publisher, for the HTTP API.
#[derive(Debug, Clone)]
pub(crate) struct PublisherMeta {
    pub(crate) session: u64,
    pub(crate) remote_addr: String,
    pub(crate) since: SystemTime,
    /// Set when the "publisher" is this edge's relay pull from the owner edge (its relay
    /// address): the stream is live here but published elsewhere.
    pub(crate) relay_source: Option<String>,
    /// The protocol the encoder publishes over (`rtmp`, `srt`); none for a relay pull.
    pub(crate) protocol: Option<&'static str>,
}

struct PublisherSlot {
    meta: PublisherMeta,
    kick: Option<oneshot::Sender<Kick>>,
}

struct Player {
    session: u64,
    outbox: Arc<Outbox>,
    /// Another edge pulling the stream through the relay: served like a player, but not a
    /// viewer (the pulling edge counts its own players).
    relay: bool,
    /// Writes under a write window: offered frames with their number in the stream's log.
    windowed: bool,
    /// Takes its frames from the stream's log now (see [`Outbox::offer_logged`]): not offered
    /// frames any more.
    follows: bool,
}

struct State {
    publisher: Option<PublisherSlot>,
    cache: FastStart,
    players: Vec<Player>,
    /// Players with a write window: while there are any, frames go into the log.
    windowed_players: usize,
    timeline: Timeline,
    video_codec: Codec,
    audio_codec: Codec,
    health: Health,
}

/// Counters readable without the lock.
#[derive(Debug, Default)]
pub(crate) struct StreamStats {
    pub(crate) bytes_in: AtomicU64,
    pub(crate) frames_in: AtomicU64,
    pub(crate) dropped_messages: AtomicU64,
}

/// Snapshot for `/api/v1/streams`.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct StreamSnapshot {
    pub(crate) stream: String,
    pub(crate) playback_name: String,
    /// `live` (a publisher on this edge, or relayed to it), `idle` (known here or configured in
    /// the registry, nothing live on this edge), `disabled` (configured with `enabled: false`).
    pub(crate) state: &'static str,
    pub(crate) live: bool,
    /// The publisher has paused sending media (a takeover under ReplaceIdle may replace it).
    pub(crate) publisher_idle: bool,
    /// The encoder's address, for a publisher on this edge (absent for a relayed stream).
    pub(crate) publisher_remote_addr: Option<String>,
    pub(crate) publisher_since: Option<String>,
    /// `rtmp` or `srt`, for a publisher on this edge.
    pub(crate) publisher_protocol: Option<&'static str>,
    /// For a stream relayed from its owner edge: the owner's relay address.
    pub(crate) relay_source: Option<String>,
    pub(crate) players: usize,
    /// Other edges pulling this stream from here through the relay.
    pub(crate) relay_pulls: usize,
    pub(crate) video_codec: String,
    pub(crate) audio_codec: String,
    pub(crate) gop_cache_frames: usize,
    pub(crate) gop_cache_bytes: usize,
    pub(crate) bytes_in: u64,
    pub(crate) frames_in: u64,
    pub(crate) dropped_messages: u64,
    /// What the encoder sends (resolution, frame rate, bitrates, keyframe interval, ...); absent
    /// for a stream that is only configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) media: Option<MediaReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) health: Option<HealthReport>,
}

impl StreamSnapshot {
    /// A stream the registry knows that nothing on this edge uses right now.
    pub(crate) fn configured(record: &StreamRecord) -> StreamSnapshot {
        StreamSnapshot {
            stream: record.id.to_string(),
            playback_name: record.playback_name.clone(),
            state: if record.enabled { "idle" } else { "disabled" },
            live: false,
            publisher_idle: false,
            publisher_remote_addr: None,
            publisher_since: None,
            publisher_protocol: None,
            relay_source: None,
            players: 0,
            relay_pulls: 0,
            video_codec: Codec::Unknown.name(),
            audio_codec: Codec::Unknown.name(),
            gop_cache_frames: 0,
            gop_cache_bytes: 0,
            bytes_in: 0,
            frames_in: 0,
            dropped_messages: 0,
            media: None,
            health: None,
        }
    }
}

pub(crate) struct Stream {
    pub(crate) id: StreamId,
    pub(crate) playback: String,
    /// The registry record as last seen (lets players in while the registry is unreachable).
    record: Mutex<StreamRecord>,
    state: Mutex<State>,
    live: watch::Sender<LiveState>,
    pub(crate) stats: StreamStats,
    /// The local publisher has sent no media for the idle-report threshold (it may be replaced
    /// under `ReplaceIdle`).
    pub(crate) publisher_idle: std::sync::atomic::AtomicBool,
    /// Local publishers holding or releasing the stream's lease (admission waits on a release).
    pub(crate) local_leases: LocalLeases,
    /// Recent frames for players under a write window.
    log: Arc<FrameLog>,
}

impl Stream {
    #[cfg(test)]
    pub(crate) fn new(record: StreamRecord, max_gop_bytes: usize) -> Stream {
        Stream::with_rules(record, GopLimits::per_stream(max_gop_bytes), HealthRules::default())
    }

    pub(crate) fn with_rules(record: StreamRecord, gop: GopLimits, rules: HealthRules) -> Stream {
        Stream {
            id: record.id.clone(),
            playback: record.playback_name.clone(),
            record: Mutex::new(record),
            state: Mutex::new(State {
                publisher: None,
                cache: FastStart::new(gop),
                players: Vec::new(),
                windowed_players: 0,
                timeline: Timeline::default(),
                video_codec: Codec::Unknown,
                audio_codec: Codec::Unknown,
                health: Health::new(rules, Instant::now()),
            }),
            live: watch::channel(LiveState::Offline).0,
            stats: StreamStats::default(),
            publisher_idle: std::sync::atomic::AtomicBool::new(false),
            local_leases: Default::default(),
            log: FrameLog::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub(crate) fn record(&self) -> StreamRecord {
        lock(&self.record).clone()
    }

    pub(crate) fn set_record(&self, record: &StreamRecord) {
        *lock(&self.record) = record.clone();
    }

    /// Follows publisher changes (players wait on it).
    pub(crate) fn watch_live(&self) -> watch::Receiver<LiveState> {
        self.live.subscribe()
    }

    pub(crate) fn is_live(&self) -> bool {
        matches!(*self.live.borrow(), LiveState::Live { .. })
    }

    /// Installs a new local publisher, replacing (kicking) any previous one at once. Returns the
    /// receiver the publisher's task selects on, and whether someone was replaced.
    pub(crate) fn begin_publish(&self, meta: PublisherMeta) -> (oneshot::Receiver<Kick>, bool) {
        let (tx, rx) = oneshot::channel();
        let mut st = self.lock();
        let replaced = match st.publisher.take() {
            Some(mut old) => {
                if let Some(kick) = old.kick.take() {
                    let _ = kick.send(Kick::Replaced);
                }
                true
            }
            None => false,
        };
        self.install(st, PublisherSlot { meta, kick: Some(tx) });
        (rx, replaced)
    }

    /// Makes `slot` the stream's publisher: its caches start empty (the new publisher sends its
    /// own metadata and sequence headers), timestamps are rebased if players saw earlier ones,
    /// and players are told.
    fn install(&self, mut st: std::sync::MutexGuard<'_, State>, slot: PublisherSlot) {
        let session = slot.meta.session;
        st.publisher = Some(slot);
        st.cache.clear();
        st.health.reset(Instant::now());
        st.timeline.new_publisher();
        self.publisher_idle.store(false, Ordering::Relaxed);
        let notice = status_frame("NetStream.Play.PublishNotify", &format!("{} is now published", self.playback));
        let mut to_flush = Vec::new();
        fan_out(&mut st, &notice, Instant::now(), &self.stats, &self.log, &mut to_flush);
        drop(st);
        flush_all(&mut to_flush);
        self.live.send_replace(LiveState::Live { publisher: session });
    }

    /// Like [`Stream::begin_publish`], but only while no publisher holds the slot: a relay pull
    /// never replaces a publisher on this edge (the reverse, a local publisher replacing the
    /// relay pull, goes through `begin_publish`).
    pub(crate) fn try_begin_publish(&self, meta: PublisherMeta) -> Option<oneshot::Receiver<Kick>> {
        let (tx, rx) = oneshot::channel();
        let st = self.lock();
        if st.publisher.is_some() {
            return None;
        }
        self.install(st, PublisherSlot { meta, kick: Some(tx) });
        Some(rx)
    }

    /// Whether an encoder publishes this stream on this edge (not a relay pull).
    pub(crate) fn has_local_publisher(&self) -> bool {
        self.lock().publisher.as_ref().is_some_and(|p| p.meta.relay_source.is_none())
    }

    /// Removes the publisher if `session` still holds the slot (a replaced publisher must not
    /// end its successor's stream). Players stay and wait for a republish.
    pub(crate) fn end_publish(&self, session: u64) -> bool {
        let mut st = self.lock();
        if st.publisher.as_ref().map(|p| p.meta.session) != Some(session) {
            return false;
        }
        st.publisher = None;
        st.cache.clear();
        // Players are deliberately not sent NetStream.Play.UnpublishNotify: FFmpeg-based players
        // take it as the end of the stream, and players are meant to wait for a republish.
        drop(st);
        self.live.send_replace(LiveState::Offline);
        true
    }

    /// [`publish_at`](Self::publish_at) now.
    #[cfg(test)]
    pub(crate) fn publish(&self, session: u64, media: Media) -> Option<usize> {
        self.publish_at(session, media, Instant::now())
    }

    /// Takes one message from the publisher `session`, received at `now`: classifies it,
    /// updates the fast-start caches and offers it to every player. Returns how many players
    /// had to drop it; `None` for a message of a replaced publisher, which is ignored. The clock
    /// is the caller's: the publisher's loop reads it once per message for its own idle clock.
    pub(crate) fn publish_at(&self, session: u64, media: Media, now: Instant) -> Option<usize> {
        let len = media.payload.len();
        let mut st = self.lock();
        if st.publisher.as_ref().map(|p| p.meta.session) != Some(session) {
            return None;
        }
        let ts = st.timeline.map(media.timestamp);
        let frame = match media.kind {
            MediaKind::Video => {
                let info = codec::video(&media.payload);
                st.video_codec = info.codec;
                st.health.video(media.timestamp, &info, &media.payload, now);
                let essential = info.config.is_some();
                let f = Arc::new(Frame::new(FrameKind::Video, ts, info.keyframe, essential, media.payload));
                st.cache.video(&f, info.config);
                f
            }
            MediaKind::Audio => {
                let info = codec::audio(&media.payload);
                st.audio_codec = info.codec;
                st.health.audio(media.timestamp, &info, &media.payload, now);
                let f = Arc::new(Frame::new(FrameKind::Audio, ts, false, info.config.is_some(), media.payload));
                st.cache.audio(&f, info.config);
                f
            }
            MediaKind::Metadata => {
                // Timestamp 0: FFmpeg's FLV demuxer reads onMetaData at any time but turns one
                // with a non-zero timestamp (e.g. after rebasing) into an extra data stream.
                st.health.metadata(&media.payload);
                let f = Arc::new(Frame::new(FrameKind::Data, 0, false, true, media.payload));
                st.cache.metadata(&f);
                f
            }
            MediaKind::Data => Arc::new(Frame::new(FrameKind::Data, ts, false, false, media.payload)),
        };
        let mut to_flush = TO_FLUSH.take();
        let dropped = fan_out(&mut st, &frame, now, &self.stats, &self.log, &mut to_flush);
        drop(st);
        // The publisher's task writes to its players' sockets itself, after letting go of the
        // stream: one system call per player per frame, no writer task woken.
        flush_all(&mut to_flush);
        // `replace`, not `set`: `set` goes through the key's lazy initialisation every time.
        TO_FLUSH.replace(to_flush);
        self.stats.bytes_in.fetch_add(len as u64, Ordering::Relaxed);
        self.stats.frames_in.fetch_add(1, Ordering::Relaxed);
        Some(dropped)
    }

    /// Adds a player whose `play` was accepted: queues metadata, sequence headers and the
    /// cached GOP first (so its first picture does not wait for the next keyframe), then live
    /// frames as they come. A GOP larger than the player's queue is skipped (the player starts
    /// at the next keyframe instead).
    ///
    /// `cap`: the most players this edge may have on the stream (maxViewers minus the other
    /// edges' viewers); checked under the lock so local admissions cannot overshoot it.
    pub(crate) fn add_player(
        &self,
        session: u64,
        outbox: Arc<Outbox>,
        queue_limit: usize,
        cap: Option<usize>,
    ) -> Result<usize, usize> {
        let now = Instant::now();
        let mut st = self.lock();
        if cap.is_some_and(|cap| count_viewers(&st) >= cap) {
            return Err(count_viewers(&st));
        }
        st.cache.offer_to(&outbox, queue_limit, now);
        self.push_player(&mut st, session, outbox, false);
        Ok(count_viewers(&st))
    }

    /// Adds another edge's relay pull: the same fast start and slow-player rules as a player,
    /// outside `maxViewers` and the viewer counts.
    pub(crate) fn add_relay_player(&self, session: u64, outbox: Arc<Outbox>, queue_limit: usize) {
        let now = Instant::now();
        let mut st = self.lock();
        st.cache.offer_to(&outbox, queue_limit, now);
        self.push_player(&mut st, session, outbox, true);
    }

    fn push_player(&self, st: &mut State, session: u64, outbox: Arc<Outbox>, relay: bool) {
        let window = outbox.windowed();
        if let Some(window) = window {
            self.log.retain_for(window);
            st.windowed_players += 1;
        }
        st.players.push(Player { session, outbox, relay, windowed: window.is_some(), follows: false });
    }

    pub(crate) fn remove_player(&self, session: u64) -> usize {
        let mut st = self.lock();
        let mut gone = 0;
        st.players.retain(|p| {
            let keep = p.session != session;
            if !keep && p.windowed {
                p.outbox.unfollow();
                gone += 1;
            }
            keep
        });
        forget_windowed(&mut st, gone, &self.log);
        count_viewers(&st)
    }

    /// Viewers on this edge (relay pulls from other edges are not viewers).
    pub(crate) fn player_count(&self) -> usize {
        count_viewers(&self.lock())
    }

    /// The health figures alone (the publisher's metrics tick), codec names included.
    pub(crate) fn health(&self) -> (String, String, MediaReport, HealthReport) {
        let now = Instant::now();
        let st = self.lock();
        (st.video_codec.name(), st.audio_codec.name(), st.health.media_report(now), st.health.report(now))
    }

    pub(crate) fn snapshot(&self) -> StreamSnapshot {
        let now = Instant::now();
        let st = self.lock();
        StreamSnapshot {
            stream: self.id.to_string(),
            playback_name: self.playback.clone(),
            state: if st.publisher.is_some() { "live" } else { "idle" },
            live: st.publisher.is_some(),
            publisher_idle: st.publisher.is_some() && self.publisher_idle.load(Ordering::Relaxed),
            publisher_remote_addr: st
                .publisher
                .as_ref()
                .filter(|p| p.meta.relay_source.is_none())
                .map(|p| p.meta.remote_addr.clone()),
            publisher_since: st.publisher.as_ref().map(|p| humantime::format_rfc3339_millis(p.meta.since).to_string()),
            relay_source: st.publisher.as_ref().and_then(|p| p.meta.relay_source.clone()),
            publisher_protocol: st.publisher.as_ref().and_then(|p| p.meta.protocol),
            players: count_viewers(&st),
            relay_pulls: st.players.len() - count_viewers(&st),
            video_codec: st.video_codec.name(),
            audio_codec: st.audio_codec.name(),
            gop_cache_frames: st.cache.gop_frames(),
            gop_cache_bytes: st.cache.gop_bytes(),
            bytes_in: self.stats.bytes_in.load(Ordering::Relaxed),
            frames_in: self.stats.frames_in.load(Ordering::Relaxed),
            dropped_messages: self.stats.dropped_messages.load(Ordering::Relaxed)
                + self.log.dropped.load(Ordering::Relaxed),
            media: Some(st.health.media_report(now)),
            health: Some(st.health.report(now)),
        }
    }
}

/// `gone` windowed players left; the log is emptied when none are left.
fn forget_windowed(st: &mut State, gone: usize, log: &FrameLog) {
    st.windowed_players = st.windowed_players.saturating_sub(gone);
    if gone > 0 && st.windowed_players == 0 {
        log.clear();
    }
}

fn count_viewers(st: &State) -> usize {
    st.players.iter().filter(|p| !p.relay).count()
}

fn status_frame(code: &str, description: &str) -> Arc<Frame> {
    Arc::new(Frame::new(FrameKind::Status, 0, false, true, on_status_payload(Level::Status, code, description)))
}

thread_local! {
    /// Outboxes a fan-out left to flush, reused by every publish on this thread.
    static TO_FLUSH: std::cell::RefCell<Vec<Arc<Outbox>>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn flush_all(to_flush: &mut Vec<Arc<Outbox>>) {
    write_spread(to_flush, |outbox| outbox.flush());
}

/// Offers `frame` to every player; the outboxes it is due in now are added to `to_flush`, for
/// the caller to flush once the stream lock is released. While players with a write window are
/// connected the frame also goes into the stream's log, where those that follow it take it.
fn fan_out(
    st: &mut State,
    frame: &Arc<Frame>,
    now: Instant,
    stats: &StreamStats,
    log: &Arc<FrameLog>,
    to_flush: &mut Vec<Arc<Outbox>>,
) -> usize {
    let mut dropped = 0;
    let seq = (st.windowed_players > 0).then(|| log.append(frame, now));
    let mut windowed_gone = 0;
    st.players.retain_mut(|p| {
        if p.follows {
            return true;
        }
        let offer = match seq {
            Some(seq) if p.windowed => p.outbox.offer_logged(frame, now, log, seq),
            _ => p.outbox.offer_deferred(frame, now),
        };
        match offer {
            Offer::Queued { flush } | Offer::Follows { flush } => {
                if flush {
                    to_flush.push(p.outbox.clone());
                }
                p.follows = matches!(offer, Offer::Follows { .. });
                true
            }
            Offer::Dropped => {
                dropped += 1;
                true
            }
            Offer::Waiting => true,
            Offer::Closed => {
                windowed_gone += usize::from(p.windowed);
                false
            }
        }
    });
    forget_windowed(st, windowed_gone, log);
    if dropped > 0 {
        stats.dropped_messages.fetch_add(dropped as u64, Ordering::Relaxed);
    }
    dropped
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::fanout::OutboxLimits;
    use bytes::Bytes;
    use std::time::Duration;

    fn stream() -> Stream {
        Stream::new(record("default", "demo"), 1 << 20)
    }

    pub(crate) fn record(ns: &str, name: &str) -> StreamRecord {
        StreamRecord {
            id: StreamId::new(ns, name),
            key_hash: streamfleet_registry::KeyHash::of_key(name),
            key_scheme: streamfleet_registry::KeyScheme::Sha256,
            playback_name: name.into(),
            enabled: true,
            max_viewers: None,
            takeover: streamfleet_registry::TakeoverPolicy::ReplaceIdle,
            generation: 1,
            srt_passphrase: None,
        }
    }

    fn meta(session: u64) -> PublisherMeta {
        PublisherMeta {
            session,
            remote_addr: "127.0.0.1:1".into(),
            since: SystemTime::now(),
            relay_source: None,
            protocol: Some("rtmp"),
        }
    }

    fn video(ts: u32, bytes: &[u8]) -> Media {
        Media { kind: MediaKind::Video, timestamp: ts, payload: Bytes::copy_from_slice(bytes) }
    }

    fn audio(ts: u32, bytes: &[u8]) -> Media {
        Media { kind: MediaKind::Audio, timestamp: ts, payload: Bytes::copy_from_slice(bytes) }
    }

    fn outbox() -> Arc<Outbox> {
        Outbox::new(OutboxLimits::new(1 << 20, Duration::from_secs(10)))
    }

    #[test]
    fn gop_cache_starts_at_last_keyframe() {
        let s = stream();
        let _kick = s.begin_publish(meta(1));
        s.publish(1, video(0, &[0x17, 0, 0xAA])); // sequence header
        s.publish(1, audio(0, &[0xAF, 0, 0x12])); // AAC config
        s.publish(1, video(0, &[0x17, 1, 1])); // key
        s.publish(1, video(33, &[0x27, 1, 2]));
        s.publish(1, audio(40, &[0xAF, 1, 3]));
        s.publish(1, video(66, &[0x17, 1, 4])); // new key: cache restarts
        s.publish(1, video(99, &[0x27, 1, 5]));
        let snap = s.snapshot();
        assert_eq!(snap.gop_cache_frames, 2);
        assert_eq!(snap.video_codec, "h264");
        assert_eq!(snap.audio_codec, "aac");

        // A new player gets sequence headers, then the GOP from the last keyframe.
        let ob = outbox();
        s.add_player(9, ob.clone(), 1 << 20, None).unwrap();
        let frames: Vec<(u32, bool, bool)> =
            ob.queued_frames().iter().map(|f| (f.timestamp, f.essential, f.keyframe)).collect();
        assert_eq!(frames, vec![(0, true, false), (0, true, false), (66, false, true), (99, false, false)]);
    }

    #[test]
    fn a_late_player_gets_every_configuration_packet_in_the_order_they_came() {
        let s = stream();
        let _kick = s.begin_publish(meta(1));
        let opus_head = audio(0, &[0x90, b'O', b'p', b'u', b's', 0x4F, 0x70]); // sequence start
        let multichannel = audio(0, &[0x94, b'O', b'p', b'u', b's', 0, 2]); // multichannel config
        s.publish(1, video(0, &[0x17, 0, 0xAA]));
        s.publish(1, opus_head.clone());
        s.publish(1, multichannel.clone());
        s.publish(1, video(0, &[0x17, 1, 1])); // key
        s.publish(1, audio(20, &[0x91, b'O', b'p', b'u', b's', 9]));
        // A new AVC configuration replaces only the old one, in its place.
        s.publish(1, video(40, &[0x17, 0, 0xBB]));
        let ob = outbox();
        s.add_player(9, ob.clone(), 1 << 20, None).unwrap();
        let payloads: Vec<Bytes> = ob.queued_frames().iter().map(|f| f.payload.clone()).collect();
        assert_eq!(
            payloads[..3],
            [Bytes::from_static(&[0x17, 0, 0xBB]), opus_head.payload, multichannel.payload],
            "the video configuration, the OpusHead and the multichannel config, before any frame"
        );
        assert_eq!(payloads.len(), 5, "then the GOP: keyframe and audio frame");
    }

    #[test]
    fn configuration_slots_are_bounded() {
        let s = stream();
        let _kick = s.begin_publish(meta(1));
        // A publisher inventing multitrack track ids: only the first slots are cached.
        for track in 0..=255u8 {
            s.publish(1, video(0, &[0x80 | 0x10 | 6, 0, b'a', b'v', b'c', b'1', track, 1]));
        }
        let ob = outbox();
        s.add_player(9, ob.clone(), 1 << 20, None).unwrap();
        assert_eq!(ob.queued_frames().len(), 16);
    }

    #[test]
    fn takeover_kicks_old_publisher_and_ignores_its_stragglers() {
        let s = stream();
        let (mut kick1, replaced) = s.begin_publish(meta(1));
        assert!(!replaced);
        s.publish(1, video(1000, &[0x17, 1, 1]));
        let (_kick2, replaced) = s.begin_publish(meta(2));
        assert!(replaced);
        assert_eq!(kick1.try_recv(), Ok(Kick::Replaced));
        assert!(s.publish(1, video(1033, &[0x27, 1, 2])).is_none(), "old publisher is ignored");
        assert!(!s.end_publish(1), "old publisher cannot end the new one's stream");
        assert!(s.is_live());
        // The new publisher starts at 0: rebased to continue after 1000.
        let ob = outbox();
        s.add_player(7, ob.clone(), 1 << 20, None).unwrap();
        s.publish(2, video(0, &[0x17, 1, 3]));
        assert_eq!(s.snapshot().gop_cache_frames, 1);
        let f = ob.queued_frames().pop().expect("expected a frame");
        assert_eq!(f.timestamp, 1001);
    }

    #[test]
    fn gop_cache_is_bounded() {
        let s = Stream::new(record("d", "x"), 100);
        let _k = s.begin_publish(meta(1));
        s.publish(1, video(0, &[0x17, 1, 0]));
        for i in 0..10 {
            s.publish(1, video(i, &[0x27; 20]));
        }
        assert!(s.snapshot().gop_cache_bytes <= 100);
    }

    /// Streams share the edge's GOP budget: a GOP that does not fit is not kept (that stream's
    /// new players start at its next keyframe), and what a stream gives back when it ends or
    /// restarts its GOP is there for the others.
    #[test]
    fn gop_caches_share_the_edges_budget() {
        let budget = Arc::new(super::super::GopBudget::new(100));
        let limits = || GopLimits { per_stream: 1 << 20, budget: budget.clone() };
        let a = Stream::with_rules(record("d", "a"), limits(), HealthRules::default());
        let b = Stream::with_rules(record("d", "b"), limits(), HealthRules::default());
        let (_ka, _kb) = (a.begin_publish(meta(1)), b.begin_publish(meta(2)));
        a.publish(1, video(0, &[0x17, 1, 0].repeat(20))); // 60 bytes: a keyframe
        b.publish(2, video(0, &[0x17, 1, 0].repeat(20))); // 60 more do not fit
        assert_eq!((a.snapshot().gop_cache_bytes, b.snapshot().gop_cache_bytes), (60, 0));
        assert_eq!((budget.used(), budget.refusals()), (60, 1));
        let ob = outbox();
        b.add_player(9, ob.clone(), 1 << 20, None).unwrap();
        assert!(ob.queued_frames().is_empty(), "no GOP to start from: the player waits for b's next keyframe");
        // b's next frame is no keyframe: nothing to cache from.
        b.publish(2, video(33, &[0x27; 10]));
        assert_eq!(b.snapshot().gop_cache_frames, 0);
        // a's publisher leaves: its GOP goes back to the budget, and b's next keyframe fits.
        a.end_publish(1);
        assert_eq!(budget.used(), 0);
        b.publish(2, video(66, &[0x17, 1, 0].repeat(20)));
        assert_eq!((b.snapshot().gop_cache_frames, budget.used()), (1, 60));
        drop(b);
        assert_eq!(budget.used(), 0, "a stream that goes gives its GOP back");
    }

    #[test]
    fn unpublish_keeps_players_waiting() {
        let s = stream();
        let _k = s.begin_publish(meta(1));
        let ob = outbox();
        s.add_player(5, ob, 1 << 20, Some(1)).unwrap();
        assert_eq!(s.add_player(6, outbox(), 1 << 20, Some(1)), Err(1), "cap reached");
        assert!(s.end_publish(1));
        assert!(!s.is_live());
        assert_eq!(s.player_count(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_frame_reaches_every_player_when_its_writes_are_spread_over_tasks() {
        use crate::fanout::tests::FakeSink;
        let s = stream();
        let _kick = s.begin_publish(meta(1));
        let players = 2 * crate::fanout::WRITE_PER_TASK + 88;
        let sinks: Vec<Arc<FakeSink>> = (0..players)
            .map(|i| {
                let ob = outbox();
                let sink = FakeSink::with_room(1 << 20);
                ob.attach(sink.clone(), Arc::new(()), None);
                s.add_player(100 + i as u64, ob, 1 << 20, None).unwrap();
                sink
            })
            .collect();
        let key = [0x17, 1, 1, 7];
        s.publish(1, video(0, &key));
        let want = Frame::new(FrameKind::Video, 0, true, false, Bytes::copy_from_slice(&key)).wire();
        // The publisher wrote the first players itself; helper tasks write the rest.
        streamfleet_testkit::wait::wait_until("every player's write", Duration::from_secs(5), || async {
            sinks.iter().all(|k| !k.data().is_empty()).then_some(())
        })
        .await;
        for (i, sink) in sinks.iter().enumerate() {
            assert_eq!(sink.data(), want, "player {i} got the frame exactly once");
        }
    }

    /// A player with a write window on a fake socket with `room` bytes, its writer running.
    fn windowed_player(
        s: &Stream,
        session: u64,
        flusher: &Arc<crate::fanout::WindowFlusher>,
        room: usize,
        max_bytes: usize,
    ) -> (Arc<Outbox>, Arc<crate::fanout::tests::FakeSink>) {
        let limits = OutboxLimits {
            write_window: Duration::from_millis(100),
            ..OutboxLimits::new(max_bytes, Duration::from_secs(2))
        };
        let ob = Outbox::new(limits);
        let sink = crate::fanout::tests::FakeSink::with_room(room);
        ob.attach(sink.clone(), Arc::new(()), Some(flusher.clone()));
        tokio::spawn(crate::fanout::run_writer(ob.clone()));
        s.add_player(session, ob.clone(), max_bytes, None).unwrap();
        (ob, sink)
    }

    /// The chunk bytes players get for this media, as the stream would serialize it.
    fn wire(m: &Media) -> Vec<u8> {
        let (kind, keyframe, essential) = match m.kind {
            MediaKind::Video => (FrameKind::Video, m.payload[0] >> 4 == 1, m.payload[1] == 0),
            _ => (FrameKind::Audio, false, m.payload[1] == 0),
        };
        Frame::new(kind, m.timestamp, keyframe, essential, m.payload.clone()).wire().to_vec()
    }

    /// 33 ms of media: a video frame (a keyframe every 30) and an audio frame.
    fn media_at(i: u32) -> [Media; 2] {
        let head = if i.is_multiple_of(30) { 0x17 } else { 0x27 };
        [video(i * 33, &[head, 1, 0, 0, 0, i as u8]), audio(i * 33, &[0xAF, 1, i as u8])]
    }

    #[tokio::test(start_paused = true)]
    async fn players_under_a_write_window_take_every_frame_from_the_log_once_in_order() {
        let s = stream();
        let flusher = crate::fanout::WindowFlusher::new(Duration::from_millis(100));
        let _kick = s.begin_publish(meta(1));
        let mut sent = Vec::new();
        for m in [video(0, &[0x17, 0, 1, 2]), audio(0, &[0xAF, 0, 0x12])] {
            s.publish(1, m.clone());
        }
        let early = windowed_player(&s, 10, &flusher, 1 << 20, 1 << 20);
        for i in 0..40 {
            for m in media_at(i) {
                sent.push(wire(&m));
                s.publish(1, m);
            }
            tokio::time::sleep(Duration::from_millis(33)).await;
        }
        // A player joining mid-GOP starts with the cached GOP, then follows the log too.
        let late = windowed_player(&s, 11, &flusher, 1 << 20, 1 << 20);
        let late_from = sent.len();
        for i in 40..90 {
            for m in media_at(i) {
                sent.push(wire(&m));
                s.publish(1, m);
            }
            tokio::time::sleep(Duration::from_millis(33)).await;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(s.lock().players.iter().all(|p| p.follows), "both players follow the log");

        let seq_headers = [wire(&video(0, &[0x17, 0, 1, 2])), wire(&audio(0, &[0xAF, 0, 0x12]))].concat();
        assert_eq!(early.1.data(), [seq_headers.clone(), sent.concat()].concat(), "early player");
        // The late player's fast start: sequence headers, then the GOP from the keyframe at 990 ms.
        let gop_start = 2 * 30;
        assert!(late_from > gop_start);
        assert_eq!(late.1.data(), [seq_headers, sent[gop_start..].concat()].concat(), "late player");
        // 3 s of media in 100 ms windows: about one write per window, not one per frame.
        let writes = early.1.calls();
        assert!((28..=40).contains(&writes), "{writes} writes for 180 frames");
        assert_eq!(s.snapshot().dropped_messages, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_publishers_messages_write_the_players_whose_window_ended_and_nothing_else_wakes() {
        let s = stream();
        let window = Duration::from_millis(100);
        let flusher = crate::fanout::WindowFlusher::new(window);
        let _kick = s.begin_publish(meta(1));
        let (_ob, sink) = windowed_player(&s, 10, &flusher, 1 << 20, 1 << 20);
        // What a publisher's task does for each message (`Context::deliver`).
        let deliver = |m: Media| {
            s.publish(1, m);
            flusher.write_due(Instant::now());
        };
        let mut sent = Vec::new();
        for i in 0..30 {
            for m in media_at(i) {
                sent.push(wire(&m));
                deliver(m);
            }
            let (calls, bytes) = (sink.calls(), sink.data().len());
            tokio::time::sleep(Duration::from_millis(33)).await;
            if i > 0 {
                assert_eq!((sink.calls(), sink.data().len()), (calls, bytes), "a write between messages at {i}");
            }
        }
        // Windows end at messages: 30 frames 33 ms apart are about 8 writes, not 30.
        let writes = sink.calls();
        assert!((6..=12).contains(&writes), "{writes} writes");
        let written = sink.data().len();
        assert!(written < sent.concat().len(), "the last window's media waits for its end");
        // The publisher pauses: the flusher's own task writes the rest within two windows.
        tokio::time::sleep(2 * window + Duration::from_millis(10)).await;
        assert_eq!(sink.data(), sent.concat());
    }

    #[tokio::test(start_paused = true)]
    async fn a_player_that_leaves_stops_taking_frames_and_the_log_empties_with_the_last() {
        let s = stream();
        let flusher = crate::fanout::WindowFlusher::new(Duration::from_millis(100));
        let _kick = s.begin_publish(meta(1));
        let (_ob, leaver) = windowed_player(&s, 10, &flusher, 1 << 20, 1 << 20);
        let (_ob2, stayer) = windowed_player(&s, 11, &flusher, 1 << 20, 1 << 20);
        let publish = |from: u32, to: u32| {
            let s = &s;
            async move {
                for i in from..to {
                    for m in media_at(i) {
                        s.publish(1, m);
                    }
                    tokio::time::sleep(Duration::from_millis(33)).await;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        };
        publish(0, 10).await;
        assert!(s.lock().players.iter().all(|p| p.follows));
        let had = leaver.data().len();
        assert_eq!(s.remove_player(10), 1);
        publish(10, 20).await;
        assert_eq!(leaver.data().len(), had, "a player that left gets nothing more");
        assert_eq!(stayer.data().len(), (0..20).flat_map(media_at).map(|m| wire(&m).len()).sum::<usize>());
        assert!(s.log.len() > 0);
        assert_eq!(s.remove_player(11), 0);
        assert_eq!(s.log.len(), 0, "no windowed player left: nothing kept");
        publish(20, 30).await;
        assert_eq!(s.log.len(), 0, "the log is not filled without windowed players");
    }

    #[tokio::test(start_paused = true)]
    async fn a_follower_that_cannot_keep_up_drops_to_the_next_keyframe_and_is_closed() {
        let s = stream();
        let flusher = crate::fanout::WindowFlusher::new(Duration::from_millis(100));
        let _kick = s.begin_publish(meta(1));
        let first = media_at(0);
        // Room for the first picture only; then the socket stays full.
        let room = wire(&first[0]).len();
        let (ob, sink) = windowed_player(&s, 10, &flusher, room, 300);
        let healthy = windowed_player(&s, 11, &flusher, 1 << 20, 1 << 20);
        for m in first {
            s.publish(1, m);
        }
        let mut i = 1;
        while ob.closed_reason().is_none() && i < 200 {
            for m in media_at(i) {
                s.publish(1, m);
            }
            tokio::time::sleep(Duration::from_millis(33)).await;
            i += 1;
        }
        assert!(s.lock().players.iter().all(|p| p.follows));
        assert_eq!(ob.closed_reason(), Some(crate::fanout::CloseReason::SlowPlayer));
        // Behind from its first overflow, closed 2 s (the slow-player timeout) later.
        assert!((60..=80).contains(&i), "closed after {i} frames");
        assert_eq!(sink.data().len(), room);
        assert!(ob.stats.dropped_messages.load(Ordering::Relaxed) > 100);
        assert_eq!(s.snapshot().dropped_messages, ob.stats.dropped_messages.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(healthy.1.data().len(), (0..i).flat_map(media_at).map(|m| wire(&m).len()).sum::<usize>());
    }
}
