//! The hand-off of a stream's lease between publishers on this same edge. A publisher that ends
//! (its encoder closed the connection, or it was dropped) still holds the lease until its release
//! round trip to the registry returns. An encoder that reconnects at once can reach admission in
//! that gap and find the lease "already active" on this very edge; waiting for the release is
//! then correct, and the takeover policy (made to protect a *live* publisher) is not.
//!
//! [`LocalLeases`] counts, per stream, the local publishers that hold the lease and those that
//! are releasing it; admission waits on it (an event, not a timer) while one is releasing.

use tokio::{
    sync::watch,
    time::{Instant, timeout_at},
};

/// Local publishers of one stream by the state of their lease.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LeaseCounts {
    /// Admitted and still publishing.
    pub(crate) live: u32,
    /// Ended; their lease release has not returned yet.
    pub(crate) releasing: u32,
}

/// Per-stream counts of local lease holders, observable by admission.
#[derive(Debug)]
pub(crate) struct LocalLeases {
    counts: watch::Sender<LeaseCounts>,
}

impl Default for LocalLeases {
    fn default() -> Self {
        LocalLeases { counts: watch::channel(LeaseCounts::default()).0 }
    }
}

impl LocalLeases {
    /// Registers an admitted publisher; the guard follows its lease to the end of the release.
    pub(crate) fn hold(&self) -> LeaseGuard<'_> {
        self.counts.send_modify(|c| c.live += 1);
        LeaseGuard { leases: self, releasing: false }
    }

    #[cfg(test)]
    pub(crate) fn counts(&self) -> LeaseCounts {
        *self.counts.borrow()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<LeaseCounts> {
        self.counts.subscribe()
    }

    /// How many admissions are following these counts right now.
    #[cfg(test)]
    pub(crate) fn followers(&self) -> usize {
        self.counts.receiver_count()
    }
}

/// Waits until no local publisher of the stream `rx` follows is releasing the lease, or
/// `deadline`; returns whether the releases finished in time. Takes a receiver rather than the
/// stream so a waiting newcomer does not keep the stream object alive (a stream gone from this
/// edge has no release in flight).
pub(crate) async fn releases_done(mut rx: watch::Receiver<LeaseCounts>, deadline: Instant) -> bool {
    timeout_at(deadline, rx.wait_for(|c| c.releasing == 0)).await.is_ok()
}

/// One local publisher's hold on the stream's lease (see [`LocalLeases::hold`]).
pub(crate) struct LeaseGuard<'a> {
    leases: &'a LocalLeases,
    releasing: bool,
}

impl LeaseGuard<'_> {
    /// The publisher has ended and is about to release the lease.
    pub(crate) fn releasing(&mut self) {
        if !std::mem::replace(&mut self.releasing, true) {
            self.leases.counts.send_modify(|c| {
                c.live -= 1;
                c.releasing += 1;
            });
        }
    }
}

impl Drop for LeaseGuard<'_> {
    /// The release returned (or the publisher task ended some other way).
    fn drop(&mut self) {
        let releasing = self.releasing;
        self.leases.counts.send_modify(|c| {
            if releasing {
                c.releasing -= 1;
            } else {
                c.live -= 1;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn admission_waits_for_a_release_in_flight() {
        let leases = LocalLeases::default();
        let mut guard = leases.hold();
        assert_eq!(leases.counts(), LeaseCounts { live: 1, releasing: 0 });
        assert!(releases_done(leases.subscribe(), Instant::now()).await, "nothing is releasing");
        guard.releasing();
        assert_eq!(leases.counts(), LeaseCounts { live: 0, releasing: 1 });
        assert!(!releases_done(leases.subscribe(), Instant::now() + Duration::from_millis(20)).await);
        let (done, ()) =
            tokio::join!(releases_done(leases.subscribe(), Instant::now() + Duration::from_secs(5)), async {
                tokio::task::yield_now().await;
                drop(guard);
            });
        assert!(done);
        assert_eq!(leases.counts(), LeaseCounts::default());
    }
}
