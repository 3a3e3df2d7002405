//! Stream health: what the encoder is really sending, measured on the ingest path from packet
//! headers only, and a verdict in plain words. Every media message costs a few comparisons and
//! a push into small bounded queues, under the stream lock the message takes anyway; the report
//! is built only when someone asks (the streams API, the metrics tick).
//!
//! Measured: frame rate from video timestamps, bitrate per track in 1 s, 10 s and 1 min windows
//! of wall-clock seconds, keyframe interval (last, and the longest in the last minute), B-frames,
//! stalls (no media for more than [`HealthRules::stall`] while connected), timestamps going
//! backwards or jumping ahead of the wall clock, and audio/video drift. Configuration packets and
//! `onMetaData` add resolution, profile, sample rate and what the encoder announced.

use std::{collections::VecDeque, time::Duration};

use tokio::time::Instant;

use crate::media::{
    codec::TagInfo,
    describe::{self, Announced, AudioConfig, VideoConfig},
};

/// When a stream counts as unhealthy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HealthRules {
    /// Longest keyframe interval before fast start suffers (a new viewer waits up to one).
    pub(crate) keyframe_interval: Duration,
    /// Silence that counts as a stall.
    pub(crate) stall: Duration,
    /// The 10 s bitrate below this fraction of the 1-minute average is a drop.
    pub(crate) bitrate_floor: f64,
    /// Audio and video timestamps further apart than this.
    pub(crate) drift: Duration,
}

impl Default for HealthRules {
    fn default() -> Self {
        HealthRules {
            keyframe_interval: Duration::from_secs(4),
            stall: Duration::from_secs(1),
            bitrate_floor: 0.5,
            drift: Duration::from_millis(500),
        }
    }
}

/// Video timestamps kept for the frame rate: two seconds of media, at most this many.
const FPS_WINDOW_MS: u32 = 2000;
const FPS_WINDOW_FRAMES: usize = 512;
/// Seconds of byte counts kept (the 1-minute average, plus the second in progress).
const SECONDS_KEPT: u64 = 61;
/// A timestamp further ahead of the previous one than the wall-clock gap plus this is a jump.
const JUMP_TOLERANCE_MS: u64 = 1000;
/// How long anomalies keep a stream unhealthy, and the window of the longest keyframe interval.
const RECENT: Duration = Duration::from_secs(60);
/// The bitrate-drop rule needs this much history to have a meaningful average.
const BITRATE_HISTORY: u64 = 20;

#[derive(Debug, Clone, Copy, Default)]
struct SecondBytes {
    index: u64,
    video: u64,
    audio: u64,
}

#[derive(Debug, Clone, Copy)]
struct Last {
    ts: u32,
    /// Since the publish started.
    at: Duration,
}

/// Times are kept as offsets from `started`, taken once per message: comparing offsets is a few
/// inline instructions, where each `Instant` difference is a call into the clock arithmetic
/// (several per message).
pub(crate) struct Health {
    rules: HealthRules,
    started: Instant,
    last_media: Option<Duration>,
    stalls: u64,
    video: VideoConfig,
    audio: AudioConfig,
    announced: Announced,
    b_frames: bool,
    video_ts: VecDeque<u32>,
    last_video: Option<Last>,
    last_audio: Option<Last>,
    keyframe: Option<Last>,
    /// Since when a keyframe is awaited without one: the start, or the end of the last stall (an
    /// interval across a stall measures the outage, not the encoder's GOP).
    keyframe_awaited_since: Duration,
    keyframe_interval_ms: Option<u32>,
    intervals: VecDeque<(Duration, u32)>,
    seconds: VecDeque<SecondBytes>,
    backwards: u64,
    jumps: u64,
    anomalies: VecDeque<Duration>,
}

/// What a stream carries, for `/api/v1/streams`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub(crate) struct MediaReport {
    pub(crate) video: VideoReport,
    pub(crate) audio: AudioReport,
    pub(crate) announced: Announced,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub(crate) struct VideoReport {
    #[serde(flatten)]
    pub(crate) config: VideoConfig,
    /// Measured from timestamps over the last two seconds of media.
    pub(crate) fps: Option<f64>,
    pub(crate) keyframe_interval_s: Option<f64>,
    pub(crate) keyframe_interval_max_s: Option<f64>,
    pub(crate) b_frames: bool,
    pub(crate) kbps_1s: u64,
    pub(crate) kbps_10s: u64,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub(crate) struct AudioReport {
    #[serde(flatten)]
    pub(crate) config: AudioConfig,
    pub(crate) kbps_1s: u64,
    pub(crate) kbps_10s: u64,
}

/// The verdict, with what to do about it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct HealthReport {
    pub(crate) healthy: bool,
    /// `Stalled`, `KeyframeInterval`, `BitrateDrop`, `TimestampAnomalies`, `AudioVideoDrift`.
    pub(crate) reason: Option<&'static str>,
    pub(crate) message: Option<String>,
    pub(crate) stalls: u64,
    pub(crate) timestamps_backwards: u64,
    pub(crate) timestamp_jumps: u64,
    /// Video minus audio timestamp of the latest frames, while both tracks flow.
    pub(crate) av_drift_ms: Option<i64>,
}

impl Health {
    pub(crate) fn new(rules: HealthRules, now: Instant) -> Health {
        Health {
            rules,
            started: now,
            last_media: None,
            stalls: 0,
            video: VideoConfig::default(),
            audio: AudioConfig::default(),
            announced: Announced::default(),
            b_frames: false,
            video_ts: VecDeque::new(),
            last_video: None,
            last_audio: None,
            keyframe: None,
            keyframe_awaited_since: Duration::ZERO,
            keyframe_interval_ms: None,
            intervals: VecDeque::new(),
            seconds: VecDeque::new(),
            backwards: 0,
            jumps: 0,
            anomalies: VecDeque::new(),
        }
    }

    /// A new publisher: everything measured so far belongs to the old one.
    pub(crate) fn reset(&mut self, now: Instant) {
        *self = Health::new(self.rules, now);
    }

    pub(crate) fn metadata(&mut self, payload: &[u8]) {
        self.announced = describe::announced(payload);
    }

    /// `now` as an offset from the start.
    fn at(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    pub(crate) fn video(&mut self, ts: u32, info: &TagInfo, payload: &[u8], now: Instant) {
        let now = self.at(now);
        self.media(now, payload.len() as u64, 0);
        if let Some(slot) = info.config {
            if slot.packet_type == 0 && slot.track.is_none() {
                let config = describe::video_config(payload);
                if config != VideoConfig::default() {
                    self.video = config;
                }
            }
            return;
        }
        self.check_timestamp(self.last_video, ts, now);
        self.last_video = Some(Last { ts, at: now });
        self.b_frames |= describe::has_composition_offset(payload);
        self.video_ts.push_back(ts);
        while self.video_ts.len() > FPS_WINDOW_FRAMES
            || self.video_ts.front().is_some_and(|f| ts.wrapping_sub(*f) > FPS_WINDOW_MS)
        {
            self.video_ts.pop_front();
        }
        if info.keyframe {
            if let Some(k) = self.keyframe
                && ts > k.ts
            {
                let interval = ts - k.ts;
                self.keyframe_interval_ms = Some(interval);
                self.intervals.push_back((now, interval));
                while self.intervals.front().is_some_and(|(at, _)| now.saturating_sub(*at) > RECENT) {
                    self.intervals.pop_front();
                }
            }
            self.keyframe = Some(Last { ts, at: now });
        }
    }

    pub(crate) fn audio(&mut self, ts: u32, info: &TagInfo, payload: &[u8], now: Instant) {
        let now = self.at(now);
        self.media(now, 0, payload.len() as u64);
        if info.config.is_some() {
            let config = describe::audio_config(payload);
            if config != AudioConfig::default() {
                self.audio = config;
            }
            return;
        }
        self.check_timestamp(self.last_audio, ts, now);
        self.last_audio = Some(Last { ts, at: now });
    }

    /// Stall detection and byte counting, for any audio or video message.
    fn media(&mut self, now: Duration, video: u64, audio: u64) {
        if let Some(last) = self.last_media
            && now.saturating_sub(last) > self.rules.stall
        {
            self.stalls += 1;
            self.keyframe = None;
            self.keyframe_awaited_since = now;
        }
        self.last_media = Some(now);
        let index = now.as_secs();
        match self.seconds.back_mut() {
            Some(s) if s.index == index => {
                s.video += video;
                s.audio += audio;
            }
            _ => self.seconds.push_back(SecondBytes { index, video, audio }),
        }
        while self.seconds.front().is_some_and(|s| s.index + SECONDS_KEPT <= index) {
            self.seconds.pop_front();
        }
    }

    fn check_timestamp(&mut self, last: Option<Last>, ts: u32, now: Duration) {
        let Some(last) = last else { return };
        let anomaly = if ts < last.ts {
            self.backwards += 1;
            true
        } else {
            let wall = now.saturating_sub(last.at).as_millis() as u64;
            let jumped = u64::from(ts - last.ts) > wall + JUMP_TOLERANCE_MS;
            self.jumps += u64::from(jumped);
            jumped
        };
        if anomaly {
            self.anomalies.push_back(now);
            // An interval across a jump measures the jump, not the GOP.
            self.keyframe = None;
            self.keyframe_awaited_since = now;
        }
        while self.anomalies.front().is_some_and(|at| now.saturating_sub(*at) > RECENT) {
            self.anomalies.pop_front();
        }
    }

    /// Kilobits per second over the `n` complete seconds before `now` (fewer when the stream is
    /// younger), per track.
    fn kbps(&self, now: Duration, n: u64) -> (u64, u64) {
        let current = now.as_secs();
        let n = n.min(current).max(1);
        let from = current.saturating_sub(n);
        let (v, a) = self
            .seconds
            .iter()
            .filter(|s| s.index >= from && s.index < current)
            .fold((0, 0), |(v, a), s| (v + s.video, a + s.audio));
        (v * 8 / 1000 / n, a * 8 / 1000 / n)
    }

    pub(crate) fn media_report(&self, now: Instant) -> MediaReport {
        let now = self.at(now);
        let (v1, a1) = self.kbps(now, 1);
        let (v10, a10) = self.kbps(now, 10);
        let flowing = self.last_video.is_some_and(|l| now.saturating_sub(l.at) < Duration::from_secs(2));
        let fps = match (self.video_ts.front(), self.video_ts.back()) {
            (Some(first), Some(last)) if flowing && last > first && self.video_ts.len() >= 2 => {
                Some(((self.video_ts.len() - 1) as f64 * 1000.0 / f64::from(last - first) * 100.0).round() / 100.0)
            }
            _ => None,
        };
        let secs = |ms: u32| f64::from(ms) / 1000.0;
        MediaReport {
            video: VideoReport {
                config: self.video.clone(),
                fps,
                keyframe_interval_s: self.keyframe_interval_ms.map(secs),
                keyframe_interval_max_s: self.intervals.iter().map(|(_, i)| *i).max().map(secs),
                b_frames: self.b_frames,
                kbps_1s: v1,
                kbps_10s: v10,
            },
            audio: AudioReport { config: self.audio, kbps_1s: a1, kbps_10s: a10 },
            announced: self.announced,
        }
    }

    pub(crate) fn report(&self, now: Instant) -> HealthReport {
        let now = self.at(now);
        let drift = match (self.last_video, self.last_audio) {
            (Some(v), Some(a))
                if now.saturating_sub(v.at) < Duration::from_secs(2)
                    && now.saturating_sub(a.at) < Duration::from_secs(2) =>
            {
                Some(i64::from(v.ts) - i64::from(a.ts))
            }
            _ => None,
        };
        let (reason, message) = self.verdict(now, drift).map_or((None, None), |(r, m)| (Some(r), Some(m)));
        HealthReport {
            healthy: reason.is_none(),
            reason,
            message,
            stalls: self.stalls,
            timestamps_backwards: self.backwards,
            timestamp_jumps: self.jumps,
            av_drift_ms: drift,
        }
    }

    fn verdict(&self, now: Duration, drift: Option<i64>) -> Option<(&'static str, String)> {
        let rules = &self.rules;
        if let Some(last) = self.last_media {
            let silent = now.saturating_sub(last);
            if silent > rules.stall {
                return Some(("Stalled", format!("no media from the encoder for {:.1} s", silent.as_secs_f64())));
            }
        }
        let limit_ms = rules.keyframe_interval.as_millis() as u32;
        let advice = "set 2 s (OBS: Settings → Output → Keyframe Interval; ffmpeg: -g twice the frame rate)";
        if let Some(v) = self.last_video {
            let since = match self.keyframe {
                Some(k) => v.ts.saturating_sub(k.ts),
                None => u32::try_from(now.saturating_sub(self.keyframe_awaited_since).as_millis()).unwrap_or(u32::MAX),
            };
            let last_interval = if self.keyframe.is_some() { self.keyframe_interval_ms.unwrap_or(0) } else { 0 };
            let interval = last_interval.max(since);
            if interval > limit_ms {
                let what = if self.keyframe.is_none() { "no keyframe for" } else { "keyframe interval is" };
                return Some(("KeyframeInterval", format!("{what} {:.1} s; {advice}", f64::from(interval) / 1000.0)));
            }
        }
        let age = now.as_secs();
        if age >= BITRATE_HISTORY {
            let (v10, a10) = self.kbps(now, 10);
            let (v60, a60) = self.kbps(now, 60);
            let (recent, average) = (v10 + a10, v60 + a60);
            if average > 0 && (recent as f64) < rules.bitrate_floor * average as f64 {
                return Some((
                    "BitrateDrop",
                    format!(
                        "bitrate fell to {recent} kbit/s over 10 s, {} % of its 1-minute average of {average} kbit/s: the \
                         encoder's uplink may be saturated (lower its bitrate or check its network)",
                        recent * 100 / average
                    ),
                ));
            }
        }
        if !self.anomalies.is_empty() {
            return Some((
                "TimestampAnomalies",
                format!(
                    "timestamps went backwards {} times and jumped ahead {} times since the publish started ({} in the \
                     last minute): check the encoder's clock and its source",
                    self.backwards,
                    self.jumps,
                    self.anomalies.len()
                ),
            ));
        }
        if let Some(d) = drift
            && d.unsigned_abs() > rules.drift.as_millis() as u64
        {
            return Some(("AudioVideoDrift", format!("audio and video timestamps are {} ms apart", d.abs())));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec;

    const KEY: &[u8] = &[0x17, 1, 0, 0, 0, 0xAA];
    const INTER: &[u8] = &[0x27, 1, 0, 0, 0, 0xBB];
    const AAC: &[u8] = &[0xAF, 1, 0x21, 0x00];

    /// `secs` seconds of 25 fps video with a keyframe every `gop` frames and 50 audio frames a
    /// second, delivered in real time (paused clock).
    async fn feed(h: &mut Health, from_frame: u32, secs: u32, gop: u32) -> u32 {
        let frames = secs * 25;
        for f in from_frame..from_frame + frames {
            let ts = f * 40;
            let payload = if f % gop == 0 { KEY } else { INTER };
            h.video(ts, &codec::video(payload), payload, Instant::now());
            h.audio(ts, &codec::audio(AAC), AAC, Instant::now());
            h.audio(ts + 20, &codec::audio(AAC), AAC, Instant::now());
            tokio::time::advance(Duration::from_millis(40)).await;
        }
        from_frame + frames
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_encoder_is_healthy_and_measured() {
        let mut h = Health::new(HealthRules::default(), Instant::now());
        feed(&mut h, 0, 12, 50).await;
        let now = Instant::now();
        let m = h.media_report(now);
        assert_eq!(m.video.fps, Some(25.0));
        assert_eq!(m.video.keyframe_interval_s, Some(2.0));
        assert_eq!(m.video.keyframe_interval_max_s, Some(2.0));
        assert!(!m.video.b_frames);
        // 25 × 6 bytes a second of video (1.2 kbit/s), 50 × 4 of audio (1.6 kbit/s).
        assert_eq!((m.video.kbps_1s, m.audio.kbps_1s), (1, 1));
        let r = h.report(now);
        assert!(r.healthy, "{r:?}");
        assert_eq!((r.stalls, r.timestamps_backwards, r.timestamp_jumps), (0, 0, 0));
        assert_eq!(r.av_drift_ms, Some(-20), "video 20 ms behind the latest audio");
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_keyframe_interval_is_named_with_the_fix() {
        let mut h = Health::new(HealthRules::default(), Instant::now());
        // 10 s GOP: unhealthy as soon as 4 s pass without a keyframe, before the second one.
        feed(&mut h, 0, 5, 250).await;
        let r = h.report(Instant::now());
        assert_eq!(r.reason, Some("KeyframeInterval"));
        assert!(
            r.message.as_deref().is_some_and(|m| m.contains("keyframe interval is 5.0 s") && m.contains("OBS")),
            "{r:?}"
        );
        feed(&mut h, 125, 6, 250).await;
        assert_eq!(h.media_report(Instant::now()).video.keyframe_interval_s, Some(10.0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_is_counted_once_and_reported_while_it_lasts() {
        let mut h = Health::new(HealthRules::default(), Instant::now());
        let next = feed(&mut h, 0, 2, 50).await;
        tokio::time::advance(Duration::from_millis(2500)).await;
        let r = h.report(Instant::now());
        assert_eq!(r.reason, Some("Stalled"), "{r:?}");
        assert_eq!(h.media_report(Instant::now()).video.fps, None, "no frame rate while nothing flows");
        // The encoder resumes with timestamps that follow the wall clock: a stall, no jump, and
        // no keyframe interval measured across the gap.
        feed(&mut h, next + 65, 3, 50).await;
        let r = h.report(Instant::now());
        assert_eq!((r.stalls, r.timestamp_jumps, r.timestamps_backwards), (1, 0, 0), "{r:?}");
        assert!(r.healthy, "{r:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn timestamps_going_backwards_or_jumping_ahead_are_anomalies() {
        let mut h = Health::new(HealthRules::default(), Instant::now());
        let next = feed(&mut h, 0, 2, 50).await;
        // Jump 30 s ahead with no wall-clock gap, then go back.
        let after_jump = feed(&mut h, next + 750, 1, 50).await;
        feed(&mut h, after_jump - 700, 1, 50).await;
        let r = h.report(Instant::now());
        assert_eq!(r.reason, Some("TimestampAnomalies"), "{r:?}");
        assert!(r.timestamp_jumps >= 1 && r.timestamps_backwards >= 1, "{r:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_bitrate_drop_against_the_minute_average_is_reported() {
        let mut h = Health::new(HealthRules::default(), Instant::now());
        let big = [&[0x27u8, 1, 0, 0, 0][..], &[0u8; 2000]].concat();
        for f in 0..25 * 30u32 {
            let payload: &[u8] = if f % 50 == 0 { KEY } else { &big };
            h.video(f * 40, &codec::video(payload), payload, Instant::now());
            tokio::time::advance(Duration::from_millis(40)).await;
        }
        assert!(h.report(Instant::now()).healthy);
        // The same frame rate at a tenth of the size for 10 s.
        feed(&mut h, 25 * 30, 10, 50).await;
        let r = h.report(Instant::now());
        assert_eq!(r.reason, Some("BitrateDrop"), "{r:?}");
    }

    #[test]
    fn b_frames_and_configuration_are_read() {
        let now = Instant::now();
        let mut h = Health::new(HealthRules::default(), now);
        let with_cts = [0x27, 1, 0, 0, 0x50, 0xCC];
        h.video(0, &codec::video(KEY), KEY, now);
        h.video(40, &codec::video(&with_cts), &with_cts, now);
        h.audio(0, &codec::audio(&[0xAF, 0, 0x12, 0x10]), &[0xAF, 0, 0x12, 0x10], now);
        let m = h.media_report(now);
        assert!(m.video.b_frames);
        assert_eq!(m.audio.config.sample_rate, Some(44100));
        assert_eq!(m.audio.config.channels, Some(2));
    }
}
