//! The lease keeper against the memory backend under tokio's paused clock: renew cadence,
//! the stop deadline when the backend hangs or fails, loss reasons, and reclaim after a registry
//! restart. A test double wraps the memory registry to make renew hang, fail or report a
//! restart; virtual time makes every instant exact.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use common::*;
use streamfleet_registry::{
    AcquireOptions, EdgeRegistry, HolderUpdate, KeeperEvent, KeyHash, Lease, LeaseKeeper, LeaseTiming, LiveStatus,
    LossReason, MemoryRegistry, OperatorRegistry, PublisherInfo, RegistryError, RegistryStatus, RenewOutcome,
    SharedRegistry, StreamId, StreamRecord, TakeoverPolicy, lease_keeper::KeeperObserver,
};
use tokio::time::Instant;

/// How the double answers `renew`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RenewMode {
    Pass,
    /// Never answers (a black-holed Redis without client timeouts).
    Hang,
    /// `Unavailable` for the next n calls, then `Pass`.
    Fail(u32),
    /// Redis restarted empty: drops the lease in the inner registry, then behaves as
    /// `AfterRestart`.
    RestartOnce,
    /// Like Redis after a restart: a missing lease is reported as `registry_restarted` (its
    /// epoch is older than the data set).
    AfterRestart,
}

struct Double {
    inner: Arc<MemoryRegistry>,
    mode: Mutex<RenewMode>,
    renews: Mutex<Vec<Instant>>,
}

impl Double {
    fn new() -> Arc<Self> {
        Arc::new(Double {
            inner: Arc::new(MemoryRegistry::new()),
            mode: Mutex::new(RenewMode::Pass),
            renews: Mutex::default(),
        })
    }

    fn set(&self, mode: RenewMode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn renew_times(&self) -> Vec<Instant> {
        self.renews.lock().unwrap().clone()
    }
}

#[async_trait]
impl OperatorRegistry for Double {
    async fn put_stream(&self, r: &StreamRecord) -> Result<(), RegistryError> {
        self.inner.put_stream(r).await
    }

    async fn delete_stream(&self, id: &StreamId) -> Result<bool, RegistryError> {
        self.inner.delete_stream(id).await
    }

    async fn get_stream(&self, id: &StreamId) -> Result<Option<StreamRecord>, RegistryError> {
        self.inner.get_stream(id).await
    }

    async fn list_streams(&self) -> Result<Vec<StreamRecord>, RegistryError> {
        self.inner.list_streams().await
    }

    async fn revoke(&self, id: &StreamId) -> Result<bool, RegistryError> {
        self.inner.revoke(id).await
    }

    async fn epoch(&self) -> Result<u64, RegistryError> {
        self.inner.epoch().await
    }
}

#[async_trait]
impl EdgeRegistry for Double {
    async fn lookup(&self, key: &KeyHash) -> Result<StreamRecord, RegistryError> {
        self.inner.lookup(key).await
    }

    async fn stream_records(&self) -> Result<Vec<StreamRecord>, RegistryError> {
        self.inner.stream_records().await
    }

    async fn lookup_playback(&self, name: &str) -> Result<StreamRecord, RegistryError> {
        self.inner.lookup_playback(name).await
    }

    async fn acquire_as(
        &self,
        key: &KeyHash,
        who: &PublisherInfo,
        o: &AcquireOptions,
        token: &str,
    ) -> Result<Lease, RegistryError> {
        self.inner.acquire_as(key, who, o, token).await
    }

    async fn reclaim(&self, lease: &mut Lease, ttl: Duration) -> Result<(), RegistryError> {
        self.inner.reclaim(lease, ttl).await
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<RenewOutcome, RegistryError> {
        self.renews.lock().unwrap().push(Instant::now());
        let mode = *self.mode.lock().unwrap();
        match mode {
            RenewMode::Pass => self.inner.renew(lease, ttl).await,
            RenewMode::Hang => std::future::pending().await,
            RenewMode::Fail(n) => {
                self.set(if n > 1 { RenewMode::Fail(n - 1) } else { RenewMode::Pass });
                Err(RegistryError::Unavailable("test double: Redis unreachable".into()))
            }
            RenewMode::RestartOnce => {
                self.set(RenewMode::AfterRestart);
                self.inner.release(lease).await?;
                Ok(RenewOutcome::Missing { registry_restarted: true })
            }
            RenewMode::AfterRestart => match self.inner.renew(lease, ttl).await? {
                RenewOutcome::Missing { .. } => Ok(RenewOutcome::Missing { registry_restarted: true }),
                other => Ok(other),
            },
        }
    }

    async fn release(&self, lease: &Lease) -> Result<bool, RegistryError> {
        self.inner.release(lease).await
    }

    async fn update_holder(&self, lease: &Lease, u: HolderUpdate) -> Result<(), RegistryError> {
        self.inner.update_holder(lease, u).await
    }

    async fn reserve_viewer(
        &self,
        id: &StreamId,
        player: &str,
        max: u32,
        ttl: Duration,
    ) -> Result<bool, RegistryError> {
        self.inner.reserve_viewer(id, player, max, ttl).await
    }

    async fn release_viewer(&self, id: &StreamId, player: &str) -> Result<bool, RegistryError> {
        self.inner.release_viewer(id, player).await
    }

    async fn renew_viewers(&self, players: &[(StreamId, String)], ttl: Duration) -> Result<(), RegistryError> {
        self.inner.renew_viewers(players, ttl).await
    }

    async fn set_viewers(&self, edge: &str, c: &[(StreamId, u32)], ttl: Duration) -> Result<(), RegistryError> {
        self.inner.set_viewers(edge, c, ttl).await
    }
}

#[async_trait]
impl RegistryStatus for Double {
    async fn live_status(&self, id: &StreamId) -> Result<LiveStatus, RegistryError> {
        self.inner.live_status(id).await
    }

    async fn ping(&self) -> Result<(), RegistryError> {
        self.inner.ping().await
    }
}

type Events = Arc<Mutex<Vec<(Instant, KeeperEvent)>>>;

fn recorder() -> (Events, KeeperObserver) {
    let events: Events = Arc::default();
    let sink = events.clone();
    (events, Arc::new(move |e| sink.lock().unwrap().push((Instant::now(), e))))
}

fn count(events: &Events, want: KeeperEvent) -> usize {
    events.lock().unwrap().iter().filter(|(_, e)| *e == want).count()
}

/// A double with stream `media/alpha` (policy `policy`) and a keeper on a fresh lease.
async fn kept(policy: TakeoverPolicy, timing: LeaseTiming) -> (Arc<Double>, LeaseKeeper, Events, Instant) {
    let double = Double::new();
    double.put_stream(&rec_with("alpha", policy)).await.unwrap();
    let sent_at = Instant::now();
    let o = AcquireOptions { ttl: timing.ttl, ..opts() };
    let lease = double.acquire(&key("alpha"), &who("edge-1"), &o).await.unwrap();
    let (events, observer) = recorder();
    let registry: SharedRegistry = double.clone();
    let keeper = LeaseKeeper::start(registry, lease, sent_at, timing, Some(observer));
    (double, keeper, events, sent_at)
}

#[tokio::test(start_paused = true)]
async fn renews_every_third_of_the_ttl_and_pushes_the_deadline() {
    let timing = LeaseTiming::default();
    let (double, keeper, events, start) = kept(TakeoverPolicy::Reject, timing).await;
    assert_eq!(keeper.deadline(), start + Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(31)).await; // virtual time: runs the keeper's timers
    let at: Vec<Duration> = double.renew_times().iter().map(|t| *t - start).collect();
    assert_eq!(at, (1..=6).map(|i| Duration::from_secs(5 * i)).collect::<Vec<_>>());
    assert_eq!(count(&events, KeeperEvent::Renewed), 6);
    assert_eq!(keeper.lost_reason(), None);
    // The deadline counts from the send time of the last good renew (30 s), never from a reply.
    assert_eq!(keeper.deadline(), start + Duration::from_secs(40));
}

#[tokio::test(start_paused = true)]
async fn declares_lost_at_the_deadline_when_the_backend_never_answers() {
    let timing = LeaseTiming::default();
    let (double, mut keeper, events, start) = kept(TakeoverPolicy::Reject, timing).await;
    double.set(RenewMode::Hang);
    assert_eq!(keeper.lost().await, LossReason::Expired);
    let lost_after = Instant::now() - start;
    assert_eq!(lost_after, timing.hold_for(), "stops exactly at the deadline");
    assert!(lost_after < timing.ttl, "before the lease can have expired in Redis");
    assert_eq!(double.renew_times().len(), 1, "one hung renew, no pile-up");
    assert_eq!(events.lock().unwrap().last().map(|(_, e)| *e), Some(KeeperEvent::Lost(LossReason::Expired)));
}

#[tokio::test(start_paused = true)]
async fn retries_failing_renews_with_jitter_until_the_deadline() {
    let timing = LeaseTiming::default();
    let (double, mut keeper, events, start) = kept(TakeoverPolicy::Reject, timing).await;
    double.set(RenewMode::Fail(u32::MAX));
    assert_eq!(keeper.lost().await, LossReason::Expired);
    assert_eq!(Instant::now() - start, timing.hold_for());
    let times = double.renew_times();
    assert_eq!(times[0] - start, timing.renew_every);
    let deadline = start + timing.hold_for();
    for w in times.windows(2) {
        let (gap, left) = (w[1] - w[0], deadline - w[0]);
        // One retry interval (±20 % jitter), closing in on the deadline: at most a quarter of
        // what was left, at least 50 ms (plus tokio's 1 ms timer resolution).
        let most =
            timing.retry_every.mul_f64(1.2).min(left / 4).max(Duration::from_millis(50)) + Duration::from_millis(1);
        let least = timing.retry_every.mul_f64(0.8).min(left / 4).max(Duration::from_millis(50));
        assert!(gap >= least && gap <= most, "gap {gap:?} with {left:?} left");
    }
    // 5 s between the first failure and the deadline: about four 0.8–1.2 s retries, then a
    // handful in the last second, each at most a quarter of the time left.
    assert!((7..=16).contains(&times.len()), "{} attempts", times.len());
    assert!(deadline - *times.last().unwrap() <= Duration::from_millis(100), "the last try was close to the deadline");
    assert_eq!(count(&events, KeeperEvent::RenewFailed), times.len());
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_succeeds_keeps_the_lease() {
    let timing = LeaseTiming::default();
    let (double, keeper, events, start) = kept(TakeoverPolicy::Reject, timing).await;
    double.set(RenewMode::Fail(2));
    // Attempts at 5 s, then two jittered retries: the good one lands in 6.6–7.4 s and the next
    // regular renew no earlier than 11.6 s.
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(keeper.lost_reason(), None);
    assert_eq!(count(&events, KeeperEvent::RenewFailed), 2);
    let good = double.renew_times()[2];
    assert!(good - start < timing.hold_for(), "the third attempt came before the deadline");
    assert_eq!(keeper.deadline(), good + timing.hold_for());
}

#[tokio::test(start_paused = true)]
async fn reports_stolen_after_a_takeover() {
    let timing = LeaseTiming::default();
    let (double, mut keeper, _, start) = kept(TakeoverPolicy::Replace, timing).await;
    let o = AcquireOptions { ttl: timing.ttl, ..opts() };
    let thief = double.acquire(&key("alpha"), &who("edge-2"), &o).await.unwrap();
    assert!(thief.took_over);
    assert_eq!(keeper.lost().await, LossReason::Stolen);
    assert_eq!(Instant::now() - start, timing.renew_every, "noticed at the next renew");
}

#[tokio::test(start_paused = true)]
async fn reports_revoked_when_the_operator_revokes() {
    let timing = LeaseTiming::default();
    let (double, mut keeper, _, _) = kept(TakeoverPolicy::Reject, timing).await;
    assert!(double.revoke(&id("alpha")).await.unwrap());
    assert_eq!(keeper.lost().await, LossReason::Revoked);
}

#[tokio::test(start_paused = true)]
async fn reclaims_after_a_registry_restart() {
    let timing = LeaseTiming::default();
    let (double, keeper, events, _) = kept(TakeoverPolicy::Reject, timing).await;
    let before = keeper.lease();
    double.set(RenewMode::RestartOnce);
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(count(&events, KeeperEvent::Reclaimed), 1);
    assert_eq!(keeper.lost_reason(), None);
    let after = keeper.lease();
    assert!(after.fence > before.fence);
    assert_eq!(after.token, before.token);
    // Renewing continues with the reclaimed lease.
    assert_eq!(count(&events, KeeperEvent::Renewed), 1);
    assert_eq!(double.live_status(&id("alpha")).await.unwrap().holder.map(|h| h.fence), Some(after.fence));
}

#[tokio::test(start_paused = true)]
async fn reclaim_waits_for_the_record_until_the_deadline() {
    let timing = LeaseTiming::default();
    let (double, keeper, events, start) = kept(TakeoverPolicy::Reject, timing).await;
    // The restarted registry is empty; the operator rewrites the record 2 s after the first renew.
    double.set(RenewMode::RestartOnce);
    double.delete_stream(&id("alpha")).await.unwrap();
    tokio::time::sleep_until(start + timing.renew_every + Duration::from_secs(2)).await;
    assert!(count(&events, KeeperEvent::RenewFailed) >= 1, "reclaim failed while the record was missing");
    assert_eq!(count(&events, KeeperEvent::Reclaimed), 0);
    double.put_stream(&rec_with("alpha", TakeoverPolicy::Reject)).await.unwrap();
    tokio::time::sleep_until(start + timing.hold_for()).await;
    assert_eq!(count(&events, KeeperEvent::Reclaimed), 1);
    assert_eq!(keeper.lost_reason(), None);
}

#[tokio::test(start_paused = true)]
async fn reclaim_refused_by_a_new_holder_is_stolen() {
    let timing = LeaseTiming::default();
    let (double, mut keeper, _, _) = kept(TakeoverPolicy::Reject, timing).await;
    let lease = keeper.lease();
    // Redis restarted empty and another publisher got in before this holder's renew.
    double.release(&lease).await.unwrap();
    let o = AcquireOptions { ttl: timing.ttl, ..opts() };
    double.acquire(&key("alpha"), &who("edge-2"), &o).await.unwrap();
    double.set(RenewMode::RestartOnce);
    assert_eq!(keeper.lost().await, LossReason::Stolen);
}

#[tokio::test(start_paused = true)]
async fn release_frees_the_stream_at_once() {
    let timing = LeaseTiming::default();
    let (double, keeper, _, _) = kept(TakeoverPolicy::Reject, timing).await;
    assert!(keeper.release().await.unwrap());
    let o = AcquireOptions { ttl: timing.ttl, ..opts() };
    let next = double.acquire(&key("alpha"), &who("edge-2"), &o).await.unwrap();
    assert!(!next.took_over);
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(double.renew_times().len(), 0, "a released keeper renews no more");
}
