//! Where an edge pulls a stream from its owner. A player asking for a stream that is not
//! published on this edge attaches to the stream's pull ([`attach`]); the first attach starts
//! it, later ones share it, so there is one upstream connection per stream per edge however
//! many players watch it here. The pull:
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
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use streamfleet_registry::{StreamId, StreamRecord};
use tokio::task::AbortHandle;

use super::upstream::Upstream;
use crate::{
    context::Context,
    stream::{PublisherMeta, Stream},
};

/// Pause between owner look-ups while the stream has no reachable owner.
pub const RETRY: Duration = Duration::from_millis(250);
/// Most time to connect to an owner and get `Play.Start`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Most time one registry look-up of the owner may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

/// Publisher-slot session ids of relay feeds, apart from connection ids (which count from 0).
static NEXT_FEED_SESSION: AtomicU64 = AtomicU64::new(1 << 62);

/// Idle timer generations (see [`Entry::idle_generation`]).
static NEXT_IDLE_GENERATION: AtomicU64 = AtomicU64::new(1);

struct Entry {
    /// Local players attached.
    users: usize,
    /// Set anew whenever the count drops to zero: only the latest idle timer may stop the pull.
    idle_generation: u64,
    task: AbortHandle,
}

struct Inner {
    entries: Mutex<HashMap<StreamId, Entry>>,
    idle_timeout: Duration,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamId, Entry>> {
        // Inserts, removes and counter updates only: a poisoned map is still consistent.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stop_if_idle(&self, id: &StreamId, generation: u64) {
        let mut map = self.lock();
        if map.get(id).is_some_and(|e| e.users == 0 && e.idle_generation == generation)
            && let Some(e) = map.remove(id)
        {
            e.task.abort();
            tracing::info!(stream = %id, "relay pull stopped: no local players");
        }
    }
}

/// The pulls of one edge, by stream.
pub struct Pulls {
    inner: Arc<Inner>,
}

/// A local player's hold on its stream's pull; dropping it may start the idle timer.
pub struct PullGuard {
    inner: Arc<Inner>,
    id: StreamId,
}

impl Drop for PullGuard {
    fn drop(&mut self) {
        let generation = {
            let mut map = self.inner.lock();
            let Some(e) = map.get_mut(&self.id) else { return };
            e.users = e.users.saturating_sub(1);
            if e.users > 0 {
                return;
            }
            // Unique across entries, so a timer of a removed entry can never match its successor.
            e.idle_generation = NEXT_IDLE_GENERATION.fetch_add(1, Ordering::Relaxed);
            e.idle_generation
        };
        let inner = self.inner.clone();
        let id = self.id.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    tokio::time::sleep(inner.idle_timeout).await;
                    inner.stop_if_idle(&id, generation);
                });
            }
            // Outside a runtime (process teardown) there is nothing left to wait for.
            Err(_) => inner.stop_if_idle(&id, generation),
        }
    }
}

impl Pulls {
    pub fn new(idle_timeout: Duration) -> Pulls {
        Pulls { inner: Arc::new(Inner { entries: Mutex::new(HashMap::new()), idle_timeout }) }
    }

    /// Streams with a pull (started or idle-waiting), for tests and diagnostics.
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Attaches a local player of `stream` to its pull, starting the pull if it is the first.
/// `None` when the relay is disabled (no secret).
pub fn attach(ctx: &Arc<Context>, record: &StreamRecord, stream: &Arc<Stream>) -> Option<PullGuard> {
    let relay = ctx.relay.get()?;
    let inner = &relay.pulls.inner;
    let mut map = inner.lock();
    match map.get_mut(&record.id) {
        Some(e) => e.users += 1,
        None => {
            let task = tokio::spawn(run(ctx.clone(), record.clone(), stream.clone()));
            map.insert(record.id.clone(), Entry { users: 1, idle_generation: 0, task: task.abort_handle() });
        }
    }
    Some(PullGuard { inner: inner.clone(), id: record.id.clone() })
}

/// Undoes what a pull did to the stream when the pull ends, including when its task is
/// aborted by the idle timer: frees the publisher slot and gives the stream back to the hub.
struct Cleanup {
    ctx: Arc<Context>,
    /// The only reference to the stream the pull holds (so the hub can drop it after us).
    stream: Option<Arc<Stream>>,
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

async fn run(ctx: Arc<Context>, record: StreamRecord, stream: Arc<Stream>) {
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
    };
    // A local publisher got in between the check and now: it serves the players.
    let Some(mut kick) = stream.try_begin_publish(meta) else { return };
    cleanup.session.store(session, Ordering::Relaxed);
    ctx.metrics.relay_pulls_active.inc();
    tracing::info!(stream = %stream.id, playback = %stream.playback, %owner, "relay pull started");
    let why = loop {
        tokio::select! {
            m = up.next_media() => match m {
                Ok(Some(media)) => ctx.deliver(stream, session, media),
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
