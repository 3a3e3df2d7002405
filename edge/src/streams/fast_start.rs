//! What a new player needs before live frames, so its first picture does not wait for the next
//! keyframe: the stream's metadata, its decoder configuration packets (one per slot: sequence
//! headers, Opus multichannel config, one per multitrack track, in the order they came) and the
//! GOP since the last keyframe. Emptied when the publisher changes (the next one sends its own).

use std::sync::Arc;

use tokio::time::Instant;

use super::gop_budget::GopLimits;
use crate::{
    fanout::Outbox,
    media::{ConfigSlot, Frame},
};

/// Most configuration slots kept per stream. Real streams use one or two per track (Opus: two);
/// the bound keeps a publisher that invents slots (every multitrack track id) from growing memory.
/// A packet for a new slot beyond it is still fanned out, only not cached.
const MAX_CONFIG_SLOTS: usize = 16;

#[derive(Default)]
pub(super) struct FastStart {
    metadata: Option<Arc<Frame>>,
    configs: Vec<(ConfigSlot, Arc<Frame>)>,
    gop: Vec<Arc<Frame>>,
    /// Payload bytes of `gop`, all taken from `limits.budget`.
    gop_bytes: usize,
    limits: GopLimits,
}

impl Drop for FastStart {
    fn drop(&mut self) {
        self.drop_gop();
    }
}

impl FastStart {
    pub(super) fn new(limits: GopLimits) -> FastStart {
        FastStart { metadata: None, configs: Vec::new(), gop: Vec::new(), gop_bytes: 0, limits }
    }

    pub(super) fn clear(&mut self) {
        self.metadata = None;
        self.configs.clear();
        self.drop_gop();
    }

    /// Empties the GOP and gives its bytes back to the edge's budget.
    fn drop_gop(&mut self) {
        self.gop.clear();
        self.limits.budget.give_back(std::mem::take(&mut self.gop_bytes));
    }

    /// Keeps `f` in `slot`: it replaces the slot's previous packet where that one stood, so the
    /// replay order stays the order the kinds first came in.
    fn config(&mut self, slot: ConfigSlot, f: &Arc<Frame>) {
        if let Some(kept) = self.configs.iter_mut().find(|(s, _)| *s == slot) {
            kept.1 = f.clone();
        } else if self.configs.len() < MAX_CONFIG_SLOTS {
            self.configs.push((slot, f.clone()));
        }
    }

    pub(super) fn metadata(&mut self, f: &Arc<Frame>) {
        self.metadata = Some(f.clone());
    }

    pub(super) fn video(&mut self, f: &Arc<Frame>, config: Option<ConfigSlot>) {
        if let Some(slot) = config {
            self.config(slot, f);
        } else if f.keyframe {
            self.drop_gop();
            self.cache_gop(f);
        } else if !self.gop.is_empty() {
            self.cache_gop(f);
        }
    }

    pub(super) fn audio(&mut self, f: &Arc<Frame>, config: Option<ConfigSlot>) {
        if let Some(slot) = config {
            self.config(slot, f);
        } else if !self.gop.is_empty() {
            self.cache_gop(f);
        }
    }

    fn cache_gop(&mut self, f: &Arc<Frame>) {
        // A stream without keyframes (or absurdly long GOPs) must not grow memory, nor may all
        // the caches together outgrow the edge's budget: drop the cache; it restarts at the
        // next keyframe.
        if self.gop_bytes + f.payload.len() > self.limits.per_stream || !self.limits.budget.try_take(f.payload.len()) {
            self.drop_gop();
            return;
        }
        self.gop_bytes += f.payload.len();
        self.gop.push(f.clone());
    }

    /// Queues it all to a new player. Without a GOP to start from (none cached, or larger than
    /// the player's queue) the player starts at the stream's next keyframe: the pictures before
    /// it could not be decoded.
    pub(super) fn offer_to(&self, outbox: &Arc<Outbox>, queue_limit: usize, now: Instant) {
        for f in self.metadata.iter().chain(self.configs.iter().map(|(_, f)| f)) {
            outbox.offer(f, now);
        }
        if self.gop.is_empty() || self.gop_bytes > queue_limit {
            outbox.start_at_next_keyframe();
            return;
        }
        for f in &self.gop {
            outbox.offer(f, now);
        }
    }

    pub(super) fn gop_frames(&self) -> usize {
        self.gop.len()
    }

    pub(super) fn gop_bytes(&self) -> usize {
        self.gop_bytes
    }
}
