//! Where an edge pulls a stream from its owner. A player asking for a stream that is not
//! published on this edge attaches to the stream's pull ([`attach`]); the first attach starts
//! it, later ones share it, so there is one upstream connection per stream per edge however
//! many players watch it here ([`super::pulls`] keeps the table). The pull:
//!
//! 1. looks the stream's lease holder up in the registry (`live_status`); a holder on another
//!    edge with a relay address is the owner;
//! 2. plays the stream from the owner's relay listener ([`super::upstream`]) and feeds what
//!    arrives into the local [`Stream`] in the publisher slot, marked as a relay, so local
//!    players get the same fast start (GOP cache) and slow-player rules as with a local
//!    publisher, and a republish-style timestamp rebase when the source changes;
//! 3. when the upstream ends or fails (owner died, publisher moved), frees the slot (players
//!    stay and wait, as across a republish on one edge) and goes back to 1 every
//!    [`RETRY`], so the players continue on the same connections with whichever edge holds
//!    the stream next. While an encoder publishes the stream on this edge, the pull stays idle
//!    (and a local publisher arriving replaces the relay feed at once).
//!
//! When the last local player leaves, the pull is stopped `--relay-idle-timeout` later, unless
//! a player attached again meanwhile.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use streamfleet_registry::{StreamId, StreamRecord};

use super::{pulls::PullGuard, upstream::Upstream};
use crate::{
    app::context::Context,
    streams::{HeldStream, PublisherMeta, Stream},
};

/// Pause between owner look-ups while the stream has no reachable owner.
pub(crate) const RETRY: Duration = Duration::from_millis(250);
/// Most time to connect to an owner and get `Play.Start`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Most time one registry look-up of the owner may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

/// Publisher-slot session ids of relay feeds, apart from connection ids (which count from 0).
static NEXT_FEED_SESSION: AtomicU64 = AtomicU64::new(1 << 62);

/// Attaches a local player of `stream` to its pull, starting the pull if it is the first.
/// `None` when the relay is disabled (no secret).
pub(crate) fn attach(ctx: &Arc<Context>, record: &StreamRecord, stream: &HeldStream) -> Option<PullGuard> {
    let relay = ctx.relay.get()?;
    Some(
        relay
            .pulls
            .attach(&record.id, || tokio::spawn(run(ctx.clone(), record.clone(), stream.clone())).abort_handle()),
    )
}

/// Undoes what a pull did to the stream when the pull ends, including when its task is
/// aborted by the idle timer: frees the publisher slot and gives the stream back to the hub.
struct Cleanup {
    ctx: Arc<Context>,
    /// The pull's hold on the stream (given back when the pull ends).
    stream: Option<HeldStream>,
    /// The relay feed's publisher session while it holds the slot (0: none; feed sessions
    /// start at 2^62).
    session: AtomicU64,
}

impl Cleanup {
    fn end_feed(&self) {
        let session = self.session.swap(0, Ordering::Relaxed);
        if let (true, Some(stream)) = (session != 0, &self.stream) {
            stream.end_publish(session);
            self.ctx.metrics.relay_pulls_active.dec();
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.end_feed();
        if let Some(stream) = self.stream.take() {
            self.ctx.hub.release(stream);
        }
    }
}

async fn run(ctx: Arc<Context>, record: StreamRecord, stream: HeldStream) {
    let cleanup = Cleanup { ctx: ctx.clone(), stream: Some(stream), session: AtomicU64::new(0) };
    let Some(stream) = cleanup.stream.as_ref() else { return };
    let Some(relay) = ctx.relay.get() else { return };
    let token = relay.secret.token(&record.playback_name);
    loop {
        if !stream.has_local_publisher()
            && let Some(owner) = owner(&ctx, &record.id).await
        {
            match Upstream::play(&owner, &record.playback_name, &token, CONNECT_TIMEOUT).await {
                Ok(up) => follow(&ctx, stream, &cleanup, up, &owner).await,
                Err(e) => {
                    ctx.metrics.relay_upstream_errors.with_label_values(&[e.stage()]).inc();
                    tracing::debug!(stream = %record.id, %owner, error = %e, "relay pull failed; retrying");
                }
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// The relay address of the edge holding the stream's lease, if that is another edge.
async fn owner(ctx: &Context, id: &StreamId) -> Option<String> {
    let status = tokio::time::timeout(LOOKUP_TIMEOUT, ctx.registry.live_status(id)).await.ok()?.ok()?;
    let holder = status.holder?;
    if holder.edge == ctx.settings.edge_id {
        return None;
    }
    holder.relay_addr.filter(|a| !a.is_empty())
}

/// Feeds one upstream into the stream until it ends or a local publisher takes the slot.
async fn follow(ctx: &Context, stream: &Arc<Stream>, cleanup: &Cleanup, mut up: Upstream, owner: &str) {
    let session = NEXT_FEED_SESSION.fetch_add(1, Ordering::Relaxed);
    let meta = PublisherMeta {
        session,
        remote_addr: owner.to_string(),
        since: SystemTime::now(),
        relay_source: Some(owner.to_string()),
        protocol: None,
    };
    // A local publisher got in between the check and now: it serves the players.
    let Some(mut kick) = stream.try_begin_publish(meta) else { return };
    cleanup.session.store(session, Ordering::Relaxed);
    ctx.metrics.relay_pulls_active.inc();
    tracing::info!(stream = %stream.id, playback = %stream.playback, %owner, "relay pull started");
    let why = loop {
        tokio::select! {
            m = up.next_media() => match m {
                Ok(Some(media)) => ctx.deliver(stream, session, media, tokio::time::Instant::now()),
                Ok(None) => break up.end_reason().unwrap_or("upstream ended").to_string(),
                Err(e) => {
                    ctx.metrics.relay_upstream_errors.with_label_values(&[e.stage()]).inc();
                    break e.to_string();
                }
            },
            _ = &mut kick => break "a publisher on this edge took over".to_string(),
        }
    };
    cleanup.end_feed();
    tracing::info!(stream = %stream.id, %owner, reason = %why, "relay pull ended; looking for the stream's owner");
}
