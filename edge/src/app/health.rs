//! Registry reachability, for `/readyz` and the `registry_up` gauge: a ping every second with
//! a one-second timeout. An edge that cannot reach its registry cannot admit publishers, so it
//! asks the load balancer to send new clients elsewhere.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::time::{sleep, timeout};

use super::context::Context;

const PING_EVERY: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Default)]
pub(crate) struct Health {
    registry_up: AtomicBool,
}

impl Health {
    pub(crate) fn registry_up(&self) -> bool {
        self.registry_up.load(Ordering::Relaxed)
    }

    pub(crate) async fn check_once(&self, ctx: &Context) -> bool {
        let up = matches!(timeout(PING_TIMEOUT, ctx.registry.ping()).await, Ok(Ok(())));
        let was = self.registry_up.swap(up, Ordering::Relaxed);
        if was != up {
            if up {
                tracing::info!("registry reachable");
            } else {
                tracing::warn!("registry unreachable: not ready; new publishers cannot be admitted");
            }
        }
        ctx.metrics.registry_up.set(i64::from(up));
        up
    }
}

pub(crate) async fn run(ctx: Arc<Context>, health: Arc<Health>) {
    loop {
        health.check_once(&ctx).await;
        sleep(PING_EVERY).await;
    }
}
