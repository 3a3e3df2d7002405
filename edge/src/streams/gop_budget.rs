//! How much the GOP caches may hold: at most `--gop-cache-max-bytes` per stream, and at most
//! `--gop-cache-total-bytes` over all the streams of the edge together ([`GopBudget`]), so the
//! caches' memory is bounded whatever the number of streams and their bitrates. A stream whose
//! GOP does not fit has no cache until its next keyframe, when it tries again: its new players
//! start at that keyframe, as on a server without a cache, and nothing else changes.

use std::sync::{
    Arc,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};

/// The GOP bytes every stream's cache takes from and gives back to.
#[derive(Debug)]
pub(crate) struct GopBudget {
    max: usize,
    used: AtomicUsize,
    refused: AtomicU64,
}

impl Default for GopBudget {
    /// No bound over the streams (each stream's own bound still applies).
    fn default() -> Self {
        GopBudget::new(usize::MAX)
    }
}

impl GopBudget {
    pub(crate) fn new(max: usize) -> GopBudget {
        GopBudget { max, used: AtomicUsize::new(0), refused: AtomicU64::new(0) }
    }

    /// Takes `n` bytes if they fit; a refusal is counted.
    pub(super) fn try_take(&self, n: usize) -> bool {
        let taken = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| used.checked_add(n).filter(|&u| u <= self.max))
            .is_ok();
        if !taken {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    pub(super) fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }

    /// Bytes the caches hold now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The most the caches may hold together (`usize::MAX`: no bound).
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// How many times a cache's GOP did not fit (each time, one stream restarted its cache at its
    /// next keyframe).
    pub(crate) fn refusals(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// The bounds of one stream's cache.
#[derive(Debug, Clone, Default)]
pub(crate) struct GopLimits {
    /// Most bytes of this stream's GOP (0: the stream keeps no GOP).
    pub(crate) per_stream: usize,
    pub(crate) budget: Arc<GopBudget>,
}

impl GopLimits {
    /// A bound per stream and none over the streams.
    #[cfg(test)]
    pub(crate) fn per_stream(max: usize) -> GopLimits {
        GopLimits { per_stream: max, budget: Arc::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_what_fits_and_counts_refusals() {
        let b = GopBudget::new(100);
        assert!(b.try_take(60));
        assert!(!b.try_take(41), "60 + 41 is over 100");
        assert!(b.try_take(40));
        assert_eq!((b.used(), b.refusals()), (100, 1));
        b.give_back(60);
        assert!(b.try_take(60));
        let unbounded = GopBudget::default();
        assert!(unbounded.try_take(1 << 40) && unbounded.try_take(1 << 40));
    }
}
