//! A Prometheus counter for figures that every write of every player adds to, from every worker
//! thread at once (`bytes_sent_total`). A plain counter is one atomic whose cache line then
//! bounces between the cores on each write: at 2000 players that alone was 1.7 % of the edge's
//! CPU samples. Here each thread adds to its own cache line and a scrape sums them, so the value
//! is exact at every scrape and never goes down.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};

use crate::sync::lock;
use prometheus::{
    IntCounter, Opts,
    core::{Collector, Desc},
    proto::MetricFamily,
};

/// Shards per counter: more than the worker threads an edge runs, so threads rarely share one.
const SHARDS: usize = 16;

/// One shard on its own cache line (128 bytes: adjacent-line prefetch pairs lines on x86).
#[repr(align(128))]
#[derive(Default)]
struct Shard(AtomicU64);

/// Cheap to clone; clones share the count.
#[derive(Clone)]
pub(crate) struct ShardedCounter {
    inner: Arc<Inner>,
}

struct Inner {
    shards: [Shard; SHARDS],
    /// What scrapes see: brought up to the shards' sum at each scrape.
    exported: IntCounter,
    /// Concurrent scrapes must not both add the same difference.
    sync: Mutex<()>,
}

impl ShardedCounter {
    pub(crate) fn with_opts(opts: Opts) -> Result<ShardedCounter, prometheus::Error> {
        Ok(ShardedCounter {
            inner: Arc::new(Inner {
                shards: Default::default(),
                exported: IntCounter::with_opts(opts)?,
                sync: Mutex::new(()),
            }),
        })
    }

    pub(crate) fn inc_by(&self, v: u64) {
        self.inner.shards[shard()].0.fetch_add(v, Ordering::Relaxed);
    }

    /// The count so far (the sum of the shards).
    pub(crate) fn get(&self) -> u64 {
        self.inner.shards.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// This thread's shard: threads take the next one in turn when they first count.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

impl Collector for ShardedCounter {
    fn desc(&self) -> Vec<&Desc> {
        self.inner.exported.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _one_scrape_at_a_time = lock(&self.inner.sync);
        let total = self.get();
        let shown = self.inner.exported.get();
        if total > shown {
            self.inner.exported.inc_by(total - shown);
        }
        self.inner.exported.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_are_summed_exactly_at_each_scrape() {
        let c = ShardedCounter::with_opts(Opts::new("bytes_total", "test")).unwrap();
        let registry = prometheus::Registry::new();
        registry.register(Box::new(c.clone())).unwrap();
        let scrape = |r: &prometheus::Registry| r.gather()[0].get_metric()[0].get_counter().get_value() as u64;
        std::thread::scope(|s| {
            for t in 0..8u64 {
                let c = c.clone();
                s.spawn(move || {
                    for _ in 0..1000 {
                        c.inc_by(t + 1);
                    }
                });
            }
        });
        assert_eq!(c.get(), 36_000);
        assert_eq!(scrape(&registry), 36_000);
        c.inc_by(5);
        assert_eq!(scrape(&registry), 36_005, "a later scrape sees later counts");
        assert_eq!(scrape(&registry), 36_005, "a scrape adds nothing by itself");
    }
}
