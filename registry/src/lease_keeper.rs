//! Where a lease is renewed. The keeper renews a held lease every TTL/3 and declares it lost
//! *before* it can have expired in Redis: the deadline is the send time of the last successful
//! renew plus TTL minus the safety margin, and it is never extended from a reply time. A holder
//! that cannot reach Redis therefore stops publishing before anyone else can be admitted.
//!
//! After a Redis restart that lost the lease (a new registry epoch), the keeper reclaims it if
//! the stream is still free and the key still valid, and reports it lost otherwise.

use std::{sync::Arc, time::Duration};

use tokio::{
    sync::watch,
    task::JoinHandle,
    time::{Instant, sleep_until, timeout_at},
};

use crate::{
    backend::SharedEdgeRegistry,
    error::{LossReason, RegistryError},
    lease::{Lease, LeaseTiming, RenewOutcome},
};

/// What the keeper did, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeeperEvent {
    Renewed,
    /// A renew failed for a transient reason; the keeper retries until the deadline.
    RenewFailed,
    /// The lease was taken back after a registry restart (the fence token changed).
    Reclaimed,
    Lost(LossReason),
}

pub type KeeperObserver = Arc<dyn Fn(KeeperEvent) + Send + Sync>;

/// Keeps one lease alive in the background until it is released or lost.
pub struct LeaseKeeper {
    registry: SharedEdgeRegistry,
    lease: watch::Receiver<Lease>,
    lost: watch::Receiver<Option<LossReason>>,
    deadline: watch::Receiver<Instant>,
    task: JoinHandle<()>,
}

impl LeaseKeeper {
    /// Starts keeping `lease`. `sent_at` is the instant *before* the acquire request was sent:
    /// the first deadline counts from it.
    pub fn start(
        registry: SharedEdgeRegistry,
        lease: Lease,
        sent_at: Instant,
        timing: LeaseTiming,
        observer: Option<KeeperObserver>,
    ) -> Self {
        let (lease_tx, lease_rx) = watch::channel(lease);
        let (lost_tx, lost_rx) = watch::channel(None);
        let (deadline_tx, deadline_rx) = watch::channel(sent_at + timing.hold_for());
        let task = tokio::spawn(keep(
            registry.clone(),
            timing,
            sent_at,
            Channels { lease: lease_tx, lost: lost_tx, deadline: deadline_tx },
            observer,
        ));
        LeaseKeeper { registry, lease: lease_rx, lost: lost_rx, deadline: deadline_rx, task }
    }

    /// The lease as currently held (the fence token changes after a reclaim).
    pub fn lease(&self) -> Lease {
        self.lease.borrow().clone()
    }

    /// The instant by which the holder must have stopped unless a renew succeeds first.
    pub fn deadline(&self) -> Instant {
        *self.deadline.borrow()
    }

    /// `Some(reason)` once the lease is lost.
    pub fn lost_reason(&self) -> Option<LossReason> {
        *self.lost.borrow()
    }

    /// Resolves when the lease is lost. Cancel-safe: use it in a `select!` loop.
    pub async fn lost(&mut self) -> LossReason {
        loop {
            if let Some(reason) = *self.lost.borrow_and_update() {
                return reason;
            }
            if self.lost.changed().await.is_err() {
                // The keeper task ended without a verdict: it was aborted by `release`, which
                // consumes `self`, so this cannot be observed; treat it as expired to be safe.
                return LossReason::Expired;
            }
        }
    }

    /// Stops renewing and frees the lease at once (compare-and-delete: never someone else's),
    /// so the next publisher can be admitted immediately rather than after the TTL.
    pub async fn release(self) -> Result<bool, RegistryError> {
        self.task.abort();
        let lease = self.lease.borrow().clone();
        self.registry.release(&lease).await
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Channels {
    lease: watch::Sender<Lease>,
    lost: watch::Sender<Option<LossReason>>,
    deadline: watch::Sender<Instant>,
}

async fn keep(
    registry: SharedEdgeRegistry,
    timing: LeaseTiming,
    sent_at: Instant,
    ch: Channels,
    observer: Option<KeeperObserver>,
) {
    let notify = |e: KeeperEvent| {
        if let Some(o) = &observer {
            o(e)
        }
    };
    let lose = |reason: LossReason| {
        let stream = ch.lease.borrow().stream.clone();
        tracing::warn!(%stream, %reason, "publisher lease lost");
        notify(KeeperEvent::Lost(reason));
        let _ = ch.lost.send(Some(reason));
    };
    let mut deadline = sent_at + timing.hold_for();
    let mut next = sent_at + timing.renew_every;
    loop {
        sleep_until(next.min(deadline)).await;
        if Instant::now() >= deadline {
            return lose(LossReason::Expired);
        }
        let t0 = Instant::now();
        let lease = ch.lease.borrow().clone();
        let outcome = match timeout_at(deadline, registry.renew(&lease, timing.ttl)).await {
            Err(_) => return lose(LossReason::Expired),
            Ok(r) => r,
        };
        match outcome {
            Ok(RenewOutcome::Renewed) => {
                deadline = t0 + timing.hold_for();
                next = t0 + timing.renew_every;
                let _ = ch.deadline.send(deadline);
                notify(KeeperEvent::Renewed);
            }
            Ok(RenewOutcome::HeldByOther) => return lose(LossReason::Stolen),
            Ok(RenewOutcome::Missing { registry_restarted: false }) => return lose(LossReason::Revoked),
            Ok(RenewOutcome::Missing { registry_restarted: true }) => {
                let mut lease = lease;
                match timeout_at(deadline, registry.reclaim(&mut lease, timing.ttl)).await {
                    Err(_) => return lose(LossReason::Expired),
                    Ok(Ok(())) => {
                        tracing::info!(stream = %lease.stream, fence = lease.fence, "lease reclaimed after registry restart");
                        deadline = t0 + timing.hold_for();
                        next = t0 + timing.renew_every;
                        let _ = ch.lease.send(lease);
                        let _ = ch.deadline.send(deadline);
                        notify(KeeperEvent::Reclaimed);
                    }
                    Ok(Err(RegistryError::AlreadyActive { .. })) => return lose(LossReason::Stolen),
                    // After a restart the operator may not have rewritten the record yet, and the
                    // registry may still be starting: keep trying until the deadline.
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "reclaim failed; retrying");
                        notify(KeeperEvent::RenewFailed);
                        next = retry_at(timing.retry_every, deadline);
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "lease renew failed; retrying");
                notify(KeeperEvent::RenewFailed);
                next = retry_at(timing.retry_every, deadline);
            }
        }
    }
}

/// When to try again after a failed renew: one retry interval away, but never more than a
/// quarter of the time left before the deadline (and at least 50 ms). A Redis failover ends at
/// an unknown moment inside the last interval; with a fixed interval the holder could miss the
/// new primary by up to a full second and lose a lease it could have kept. Shrinking the gap
/// costs only a few extra attempts, and only for a holder already about to stop.
fn retry_at(every: Duration, deadline: Instant) -> Instant {
    let now = Instant::now();
    let left = deadline.saturating_duration_since(now);
    now + jitter(every).min(left / 4).max(MIN_RETRY_GAP)
}

const MIN_RETRY_GAP: Duration = Duration::from_millis(50);

/// ±20 % so that edges cut off together do not retry in lockstep.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.8..1.2))
}
