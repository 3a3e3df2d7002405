//! SIGTERM/SIGINT handling and the drain: the signal flips a watch channel every connection
//! task follows (publishers and players are told with an `onStatus`, leases are released), the
//! accept loop stops, and the process waits for connections to finish, at most
//! `--drain-timeout`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::{Notify, watch};

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub(crate) async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: draining"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C drains");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Resolves once draining has started (at once if it already has).
pub(crate) async fn draining(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here rather than in a caller's
    // `select!`.
    if rx.wait_for(|d| *d).await.is_err() {
        // The switch was dropped (process ending): nothing left to wait for.
        std::future::pending::<()>().await;
    }
}

/// The drain switch.
pub(crate) struct Shutdown {
    tx: watch::Sender<bool>,
}

impl Shutdown {
    pub(crate) fn new() -> (Shutdown, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(false);
        (Shutdown { tx }, rx)
    }

    pub(crate) fn start(&self) {
        self.tx.send_replace(true);
    }
}

/// Counts live connection tasks so the drain knows when they are all done.
#[derive(Default)]
pub(crate) struct ConnTracker {
    active: AtomicUsize,
    idle: Notify,
}

impl ConnTracker {
    pub(crate) fn new() -> Arc<ConnTracker> {
        Arc::new(ConnTracker::default())
    }

    /// Takes a slot if fewer than `max` are taken, in one atomic step: two accept loops (the
    /// public and the relay listener) can never both take the last one.
    pub(crate) fn try_enter(self: &Arc<Self>, max: usize) -> Option<TrackedConn> {
        self.active.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1)).ok()?;
        Some(TrackedConn { tracker: self.clone() })
    }

    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Waits until no connection is left, at most `limit`. Returns whether all finished.
    pub(crate) async fn wait_idle(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.idle.notified();
                let mut notified = std::pin::pin!(notified);
                notified.as_mut().enable();
                if self.active() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

/// Held by a connection task; its drop is the task's end.
pub(crate) struct TrackedConn {
    tracker: Arc<ConnTracker>,
}

impl Drop for TrackedConn {
    fn drop(&mut self) {
        if self.tracker.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.tracker.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_taken_atomically_under_racing_accept_loops() {
        // Four threads play accept loops racing for 1 slot, counting holders. With a separate
        // check (`active() < max`) and take, two threads pass the check together.
        let t = ConnTracker::new();
        let holders = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(std::sync::Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (t, holders, most, start) = (t.clone(), holders.clone(), most.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    for _ in 0..2_000_000 {
                        if let Some(slot) = t.try_enter(1) {
                            let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            holders.fetch_sub(1, Ordering::SeqCst);
                            drop(slot);
                        }
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1, "connections held at once under a limit of 1");
        assert_eq!(t.active(), 0);
    }

    #[tokio::test]
    async fn tracker_waits_for_the_last_connection() {
        let t = ConnTracker::new();
        let a = t.try_enter(usize::MAX).unwrap();
        let b = t.try_enter(usize::MAX).unwrap();
        assert!(!t.wait_idle(Duration::from_millis(20)).await);
        drop(a);
        let waiter = tokio::spawn({
            let t = t.clone();
            async move { t.wait_idle(Duration::from_secs(5)).await }
        });
        drop(b);
        assert!(waiter.await.unwrap());
    }
}
