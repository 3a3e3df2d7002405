//! What a new player needs before live frames, so its first picture does not wait for the next
//! keyframe: the stream's metadata, its sequence headers and the GOP since the last keyframe.
//! Emptied when the publisher changes (the next one sends its own).

use std::sync::Arc;

use tokio::time::Instant;

use crate::{fanout::Outbox, media::Frame};

#[derive(Default)]
pub(super) struct FastStart {
    metadata: Option<Arc<Frame>>,
    video_seq: Option<Arc<Frame>>,
    audio_seq: Option<Arc<Frame>>,
    gop: Vec<Arc<Frame>>,
    gop_bytes: usize,
}

impl FastStart {
    pub(super) fn clear(&mut self) {
        self.metadata = None;
        self.video_seq = None;
        self.audio_seq = None;
        self.gop.clear();
        self.gop_bytes = 0;
    }

    pub(super) fn metadata(&mut self, f: &Arc<Frame>) {
        self.metadata = Some(f.clone());
    }

    pub(super) fn video(&mut self, f: &Arc<Frame>, max_gop_bytes: usize) {
        if f.essential {
            self.video_seq = Some(f.clone());
        } else if f.keyframe {
            self.gop.clear();
            self.gop_bytes = 0;
            self.cache_gop(f, max_gop_bytes);
        } else if !self.gop.is_empty() {
            self.cache_gop(f, max_gop_bytes);
        }
    }

    pub(super) fn audio(&mut self, f: &Arc<Frame>, max_gop_bytes: usize) {
        if f.essential {
            self.audio_seq = Some(f.clone());
        } else if !self.gop.is_empty() {
            self.cache_gop(f, max_gop_bytes);
        }
    }

    fn cache_gop(&mut self, f: &Arc<Frame>, max_gop_bytes: usize) {
        if self.gop_bytes + f.payload.len() > max_gop_bytes {
            // A stream without keyframes (or absurdly long GOPs) must not grow memory: drop the
            // cache; it restarts at the next keyframe.
            self.gop.clear();
            self.gop_bytes = 0;
            return;
        }
        self.gop_bytes += f.payload.len();
        self.gop.push(f.clone());
    }

    /// Queues it all to a new player; the GOP is skipped when larger than the player's queue
    /// (it starts at the next keyframe instead).
    pub(super) fn offer_to(&self, outbox: &Arc<Outbox>, queue_limit: usize, now: Instant) {
        for f in [&self.metadata, &self.video_seq, &self.audio_seq].into_iter().flatten() {
            outbox.offer(f, now);
        }
        if self.gop_bytes <= queue_limit {
            for f in &self.gop {
                outbox.offer(f, now);
            }
        }
    }

    pub(super) fn gop_frames(&self) -> usize {
        self.gop.len()
    }

    pub(super) fn gop_bytes(&self) -> usize {
        self.gop_bytes
    }
}
