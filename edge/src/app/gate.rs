//! A listener's connection limits: a total and a per-address count, each listener (or group
//! of listeners) its own, so one cannot use up another's.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
};

use super::{
    context::Context,
    shutdown::{ConnTracker, TrackedConn},
};
use crate::sync::lock;

/// Connections per source address (the TCP listeners' gates and the SRT listener each keep one).
#[derive(Default)]
pub(crate) struct PerIp {
    counts: Mutex<HashMap<IpAddr, usize>>,
}

pub(crate) struct IpSlot {
    per_ip: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    pub(crate) fn try_enter(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut counts = lock(&self.counts);
        let n = counts.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot { per_ip: self.clone(), ip })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.per_ip.counts);
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

pub(super) struct Gate {
    slots: Arc<ConnTracker>,
    per_ip: Arc<PerIp>,
    max: usize,
    max_per_ip: usize,
    /// `connections_refused_total` reasons for the two limits.
    reasons: [&'static str; 2],
}

impl Gate {
    pub(super) fn new(max: usize, max_per_ip: usize, reasons: [&'static str; 2]) -> Gate {
        Gate { slots: ConnTracker::new(), per_ip: Arc::new(PerIp::default()), max, max_per_ip, reasons }
    }

    /// Takes a total and a per-address slot (each checked and taken in one step), or counts
    /// the refusal.
    pub(super) fn enter(&self, ctx: &Context, remote: SocketAddr) -> Option<(TrackedConn, IpSlot)> {
        let slot = self.enter_total(ctx, remote)?;
        let ip_slot = self.enter_ip(ctx, remote)?;
        Some((slot, ip_slot))
    }

    /// Takes a slot of the total, or counts the refusal.
    pub(super) fn enter_total(&self, ctx: &Context, remote: SocketAddr) -> Option<TrackedConn> {
        let slot = self.slots.try_enter(self.max);
        if slot.is_none() {
            ctx.metrics.connections_refused.with_label_values(&[self.reasons[0]]).inc();
            tracing::debug!(%remote, reason = self.reasons[0], "connection refused");
        }
        slot
    }

    /// Takes a slot of `client`'s address, or counts the refusal.
    pub(super) fn enter_ip(&self, ctx: &Context, client: SocketAddr) -> Option<IpSlot> {
        let slot = self.per_ip.try_enter(client.ip().to_canonical(), self.max_per_ip);
        if slot.is_none() {
            ctx.metrics.connections_refused.with_label_values(&[self.reasons[1]]).inc();
            tracing::debug!(remote = %client, reason = self.reasons[1], "connection refused");
        }
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_slots_are_counted_and_returned() {
        let p = Arc::new(PerIp::default());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = p.try_enter(ip, 2).unwrap();
        let _b = p.try_enter(ip, 2).unwrap();
        assert!(p.try_enter(ip, 2).is_none());
        assert!(p.try_enter("10.0.0.2".parse().unwrap(), 2).is_some());
        drop(a);
        assert!(p.try_enter(ip, 2).is_some());
    }
}
