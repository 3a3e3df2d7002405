//! Reports this edge's viewer counts to the registry (what makes `maxViewers` cluster-wide and
//! what the operator shows in status): within [`MIN_SPACING`] of a change, and at least every
//! renew interval so the entries (which expire after three intervals) stay alive; and renews
//! the `maxViewers` slots its players hold (same expiry).

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::time::{sleep, timeout};

use super::context::Context;
use crate::sync::lock;

/// Changes are batched: at most one report per this interval.
pub(crate) const MIN_SPACING: Duration = Duration::from_millis(250);

pub(crate) async fn run(ctx: Arc<Context>) {
    let every = ctx.settings.lease_timing.renew_every;
    let ttl = every * 3;
    loop {
        let counts = ctx.hub.viewer_counts();
        let mut report: HashMap<_, u32> = counts.into_iter().collect();
        {
            let last = lock(&ctx.reported_viewers);
            // Streams that left this edge are reported once as zero so their count drops now,
            // not when the entry expires.
            for id in last.keys() {
                report.entry(id.clone()).or_insert(0);
            }
        }
        let list: Vec<_> = report.iter().map(|(k, v)| (k.clone(), *v)).collect();
        if !list.is_empty() {
            match timeout(every, ctx.registry.set_viewers(&ctx.settings.edge_id, &list, ttl)).await {
                Ok(Ok(())) => {
                    let mut last = lock(&ctx.reported_viewers);
                    *last = report.into_iter().filter(|(_, n)| *n > 0).collect();
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "viewer count report failed"),
                Err(_) => tracing::debug!("viewer count report timed out"),
            }
        }
        // Keeps this edge's maxViewers slots alive (they expire after `ttl` without it).
        let slots: Vec<_> = lock(&ctx.viewer_slots)
            .iter()
            .flat_map(|(id, names)| names.iter().map(|n| (id.clone(), n.clone())))
            .collect();
        if !slots.is_empty() {
            match timeout(every, ctx.registry.renew_viewers(&slots, ttl)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "viewer slot renewal failed"),
                Err(_) => tracing::debug!("viewer slot renewal timed out"),
            }
        }
        if *ctx.shutdown.borrow() {
            return;
        }
        tokio::select! {
            _ = ctx.viewers_changed.notified() => {}
            _ = sleep(every) => {}
        }
        sleep(MIN_SPACING).await;
    }
}
