//! How much a publisher's socket gathers before it wakes the edge (sans-IO: it says which
//! receive low-water mark the socket should have; `transport/low_water.rs` sets it).
//!
//! Why: encoders write the audio and the video of the same instant as separate messages, and
//! an edge that is not busy wakes and reads for each of them. With audio held for the next
//! video frame (`--hold-audio`, the default) reading an audio message early buys nothing: its
//! players get it with the next picture anyway, or with the audio after the most the hold
//! keeps ([`MAX_HELD_AUDIO`]). So once a stream has video, its publisher's socket wakes the edge
//! only when more than that many of its largest recent audio messages are queued: audio waits in
//! the kernel for the video frame, and they are read at once. Measured: 58 % fewer reads and
//! 9–20 % less CPU per ingested GB at 50 and 200 publishers (docs/benchmarks.md, "Reads paced
//! by the socket").
//!
//! What it can cost: a video message smaller than the mark (a near-static picture at a low
//! bitrate, under about 900 bytes with 128 kbit/s AAC) waits for the messages after it, at most
//! two audio intervals (about 43 ms at 48 kHz).
//! A publisher that goes quiet with less than the mark queued (a last command, a stall) is read
//! once the publisher loop has seen no audio or video for 100 ms ([`ReadPacing::quiet`]): the
//! mark drops to one byte, which wakes the edge at once for what is there, and stays there until
//! the stream is steady again.

use crate::{fanout::MAX_HELD_AUDIO, media::MediaKind};

/// Audio messages a window's maximum is taken over; the mark follows the larger of the last two
/// windows, so one window's end never lowers it below what the stream just sent.
const WINDOW: u32 = 64;
/// Audio messages seen before the mark is first raised (the stream's sizes have settled).
const WARM_UP: u32 = 8;
/// Bytes above each audio payload: its chunk headers (12 bytes, an extended timestamp,
/// a continuation header per 128 bytes at the smallest chunk size) or its TLS record.
const HEADROOM: usize = 64;
/// The highest mark: a stream whose audio messages are larger than this (uncompressed audio)
/// wakes the edge for every 4 KiB.
const MAX_MARK: usize = 4096;
/// The mark is lowered only when it would drop by more than this, so sizes that wander do not
/// cost a system call each.
const LOWER_BY: usize = 128;

/// One publisher's pacing state.
#[derive(Debug)]
pub(crate) struct ReadPacing {
    enabled: bool,
    has_video: bool,
    audio_in_window: u32,
    audio_seen: u32,
    window_max: usize,
    previous_max: usize,
    /// The mark the socket has (1: the kernel's default).
    mark: usize,
}

impl ReadPacing {
    /// Pacing for a publisher whose audio the fan-out holds for video (`hold_audio`); without
    /// that it never raises the mark.
    pub(crate) fn new(hold_audio: bool) -> ReadPacing {
        ReadPacing {
            enabled: hold_audio,
            has_video: false,
            audio_in_window: 0,
            audio_seen: 0,
            window_max: 0,
            previous_max: 0,
            mark: 1,
        }
    }

    /// After a media message: the mark the socket should get, if it changed.
    pub(crate) fn media(&mut self, kind: MediaKind, payload_len: usize) -> Option<usize> {
        if !self.enabled {
            return None;
        }
        match kind {
            MediaKind::Video => self.has_video = true,
            MediaKind::Audio => self.audio(payload_len),
            MediaKind::Metadata | MediaKind::Data => return None,
        }
        let wanted = self.wanted();
        if wanted > self.mark || wanted + LOWER_BY < self.mark {
            self.mark = wanted;
            return Some(wanted);
        }
        None
    }

    /// After a quiet spell (no audio or video for the publisher loop's `QUIET`): whatever is
    /// queued should be read now, and what comes next too until the stream is steady again (a
    /// warm-up's worth of audio).
    pub(crate) fn quiet(&mut self) -> Option<usize> {
        self.audio_seen = 0;
        if self.mark > 1 {
            self.mark = 1;
            return Some(1);
        }
        None
    }

    /// The socket refused the option: stay at the kernel's default.
    pub(crate) fn disable(&mut self) {
        self.enabled = false;
        self.mark = 1;
    }

    fn audio(&mut self, payload_len: usize) {
        self.audio_seen = self.audio_seen.saturating_add(1);
        self.window_max = self.window_max.max(payload_len);
        self.audio_in_window += 1;
        if self.audio_in_window == WINDOW {
            self.previous_max = self.window_max;
            self.window_max = 0;
            self.audio_in_window = 0;
        }
    }

    fn wanted(&self) -> usize {
        if !self.has_video || self.audio_seen < WARM_UP {
            return 1;
        }
        let audio = self.window_max.max(self.previous_max) + HEADROOM;
        (audio * usize::from(MAX_HELD_AUDIO)).min(MAX_MARK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Audio and video as an encoder interleaves them: `rounds` video frames with an audio
    /// message of `audio` bytes before each; the marks the socket was given, in order.
    fn stream(p: &mut ReadPacing, rounds: usize, audio: usize, video: usize) -> Vec<usize> {
        let mut marks = Vec::new();
        for _ in 0..rounds {
            marks.extend(p.media(MediaKind::Audio, audio));
            marks.extend(p.media(MediaKind::Video, video));
        }
        marks
    }

    /// The mark for audio messages of `audio` bytes.
    fn mark(audio: usize) -> usize {
        (audio + HEADROOM) * usize::from(MAX_HELD_AUDIO)
    }

    #[test]
    fn the_mark_sits_above_the_held_audio_once_the_stream_has_video() {
        let mut p = ReadPacing::new(true);
        assert_eq!(stream(&mut p, 100, 372, 4000), vec![mark(372)], "raised once, after the warm-up");
        assert!(mark(372) > 2 * 372 && mark(372) < 4000, "two audio messages wait, a video frame wakes the edge");
    }

    #[test]
    fn audio_alone_never_raises_the_mark() {
        let mut p = ReadPacing::new(true);
        let marks: Vec<usize> = (0..200).filter_map(|_| p.media(MediaKind::Audio, 372)).collect();
        assert!(marks.is_empty(), "an audio-only stream is read as it arrives: {marks:?}");
    }

    #[test]
    fn without_held_audio_nothing_waits() {
        let mut p = ReadPacing::new(false);
        assert!(stream(&mut p, 100, 372, 4000).is_empty());
    }

    #[test]
    fn a_quiet_spell_drops_the_mark_until_the_stream_is_steady_again() {
        let mut p = ReadPacing::new(true);
        stream(&mut p, 20, 372, 4000);
        assert_eq!(p.quiet(), Some(1));
        assert_eq!(p.quiet(), None, "already at one byte: no second system call");
        assert!(stream(&mut p, WARM_UP as usize - 1, 372, 4000).is_empty(), "warming up again");
        assert_eq!(stream(&mut p, 1, 372, 4000), vec![mark(372)]);
    }

    #[test]
    fn larger_audio_raises_the_mark_at_once_and_smaller_lowers_it_two_windows_later() {
        let mut p = ReadPacing::new(true);
        stream(&mut p, 20, 372, 4000);
        assert_eq!(stream(&mut p, 1, 900, 4000), vec![mark(900)], "raised at the first larger message");
        // Back to small messages: the larger one counts until two windows have passed without it.
        let marks = stream(&mut p, 2 * WINDOW as usize, 372, 4000);
        assert_eq!(marks, vec![mark(372)]);
        // Sizes that wander by less than LOWER_BY cost no call.
        let wander: Vec<usize> =
            (0..3 * WINDOW as usize).flat_map(|i| stream(&mut p, 1, 372 - (i % 50), 4000)).collect();
        assert!(wander.is_empty(), "{wander:?}");
    }

    #[test]
    fn the_mark_is_capped() {
        let mut p = ReadPacing::new(true);
        assert_eq!(stream(&mut p, 20, 20_000, 60_000), vec![MAX_MARK]);
    }

    #[test]
    fn a_refused_option_turns_pacing_off() {
        let mut p = ReadPacing::new(true);
        stream(&mut p, 20, 372, 4000);
        p.disable();
        assert!(stream(&mut p, 100, 900, 4000).is_empty());
        assert_eq!(p.quiet(), None);
    }
}
