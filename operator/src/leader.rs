//! Leader election on a `coordination.k8s.io` Lease (kube-lease-manager): every replica serves
//! HTTP, only the holder of the Lease runs the controller. Losing the Lease stops the controller
//! at once (in-flight reconciles are cancelled; they are idempotent), and the replica goes back
//! to waiting.

use std::{future::Future, sync::Arc, time::Duration};

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;

use crate::metrics::Metrics;

/// Where the Lease lives and who we are.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    pub lease_name: String,
    pub namespace: String,
    pub identity: String,
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    #[error("leader election stopped unexpectedly")]
    Stopped,
}

/// Runs `work` whenever this replica holds the Lease, until `shutdown` resolves while waiting,
/// `work` returns (it watches `shutdown` itself, to stop gracefully) or the election machinery
/// fails (the caller exits and Kubernetes restarts the pod).
pub async fn lead<F, Fut>(
    client: Client,
    cfg: LeaderConfig,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
    mut work: F,
) -> Result<(), LeaderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    tokio::pin!(shutdown);
    let secs = cfg.duration.as_secs().max(3);
    let manager = LeaseManagerBuilder::new(client, &cfg.lease_name)
        .with_namespace(&cfg.namespace)
        .with_identity(&cfg.identity)
        .with_duration(secs)
        // Renew a third of the duration before expiry: two renew attempts fit before a standby
        // may take over.
        .with_grace((secs / 3).max(1))
        .build()
        .await?;
    let (mut leading, task) = manager.watch().await;
    tracing::info!(lease = %cfg.lease_name, namespace = %cfg.namespace, identity = %cfg.identity, "waiting for leadership");
    let result = loop {
        tokio::select! {
            became = leading.wait_for(|l| *l) => if became.is_err() {
                break Err(LeaderError::Stopped);
            },
            () = &mut shutdown => break Ok(()),
        }
        tracing::info!(identity = %cfg.identity, "became leader: starting the controller");
        metrics.is_leader.set(1);
        let lost = leading.wait_for(|l| !*l);
        tokio::select! {
            () = work() => {
                metrics.is_leader.set(0);
                break Ok(());
            }
            lost = lost => {
                metrics.is_leader.set(0);
                metrics.clear_phases();
                if lost.is_err() {
                    break Err(LeaderError::Stopped);
                }
                tracing::warn!(identity = %cfg.identity, "lost leadership: controller stopped");
            }
        }
    };
    // Dropping the receiver makes the manager release the Lease, so a standby takes over at
    // once instead of after the Lease duration.
    drop(leading);
    match tokio::time::timeout(Duration::from_secs(5), task).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "releasing the leader lease failed"),
        Ok(Err(e)) => tracing::warn!(error = %e, "leader election task failed"),
        Err(_) => tracing::warn!("releasing the leader lease timed out"),
        Ok(Ok(Ok(_))) => tracing::info!("leader lease released"),
    }
    result
}
