//! The Kubernetes controller: the [`Context`] every reconcile shares, the reconcile entry point
//! (finalizer first, then apply or cleanup), the error policy with per-object exponential
//! backoff, and [`run`], which wires the watches (LiveStreams, the Secrets they use, registry
//! epoch changes) and the orphan collector together.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{Stream, StreamExt};
use k8s_openapi::{api::core::v1::Secret, jiff::Timestamp};
use kube::{
    Api, Client, Resource,
    api::{Patch, PatchParams},
    core::PartialObjectMeta,
    runtime::{
        Controller, WatchStreamExt,
        controller::{Action, Config as ControllerConfig},
        events::{Event as KubeEvent, EventType, Recorder, Reporter},
        finalizer::{Event as FinalizerEvent, finalizer},
        reflector::{self, ObjectRef, reflector},
        utils::Backoff,
        watcher::{self, watcher},
    },
};
use serde_json::json;
use streamfleet_registry::{
    KeyHasher, LiveChange, SharedOperatorRegistry, StreamId,
    api::{LiveStream, LiveStreamStatus, Phase},
    manifest::{RecordError, RecordErrorKind, record_for},
};
use tokio::time::Instant;
use tracing::Instrument;

use crate::{
    conflicts::{self, Claim},
    error::{Error, Result},
    gc, key_strength,
    metrics::Metrics,
    reconcile,
    scope::{Index, Scope, Streams},
    secrets::{self, MANAGER, SecretCache},
    status::{self, Change, Observed, Problem, READY, StatusInput},
};

/// The finalizer that keeps a LiveStream until its registry record is gone.
pub const FINALIZER: &str = "streamfleet.io/registry";
/// First and last retry delay after a failed reconcile.
const BACKOFF_MIN: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// First and last delay before a broken watch is retried.
const WATCH_BACKOFF_MIN: Duration = Duration::from_millis(250);
const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Retry delays of the controller's watches: 250 ms doubling to at most 5 s, reset by the next
/// event. kube's default (800 ms doubling to 30 s, with jitter that was seen reaching 47 s,
/// reset only after 2 min without error) kept the cache stale for up to a minute after an API
/// server restart: the watch then resumes with a 410 Gone, which is one more error before the
/// re-list, and every retry waited out the backoff built up during the outage. A retry every
/// 5 s at worst costs the API server nothing.
#[derive(Clone, Debug, Default)]
pub struct WatchBackoff {
    attempt: u32,
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = WATCH_BACKOFF_MIN.saturating_mul(2u32.saturating_pow(self.attempt.min(16))).min(WATCH_BACKOFF_MAX);
        self.attempt = self.attempt.saturating_add(1);
        Some(delay)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Timing of the steady-state loop.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Requeue of a live stream (how fresh viewers and bitrate are in status); sooner when the
    /// holder's lease expires sooner (see [`LEASE_EXPIRY_MARGIN`]).
    pub live_requeue: Duration,
    /// Requeue of every other stream (how soon a new publisher shows as Live).
    pub idle_requeue: Duration,
    /// Minimum time between two status patches that only change live counters.
    pub status_min_interval: Duration,
    /// How records hash publish keys (the key-hash secret, or the legacy SHA-256).
    pub key_hasher: KeyHasher,
    /// Refuse weak publish keys ([`crate::key_strength`]).
    pub require_strong_keys: bool,
    /// The namespaces this operator manages; records of others are never touched.
    pub scope: Scope,
    /// Most status patches per second, fleet-wide, that only change live counters; changes of
    /// phase, condition or spec are never held back by it.
    pub live_patch_rate: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            live_requeue: Duration::from_secs(5),
            idle_requeue: Duration::from_secs(30),
            status_min_interval: Duration::from_secs(5),
            key_hasher: KeyHasher::legacy(),
            require_strong_keys: true,
            scope: Scope::Cluster,
            live_patch_rate: 50.0,
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    /// Kubernetes client: Secrets, status patches, finalizers.
    pub client: Client,
    /// The registry the records are written to.
    pub registry: SharedOperatorRegistry,
    /// Publishes Events on LiveStreams (aggregated into series by kube).
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    /// Every LiveStream the controller knows: playback-name conflicts are judged against it.
    pub store: Streams,
    /// Secrets read for LiveStreams, invalidated by the Secret watch.
    pub secrets: SecretCache,
    /// Consecutive failures per stream, for the exponential backoff.
    failures: Mutex<HashMap<StreamId, u32>>,
    /// When each stream's status was last patched, for the live-counter rate limit.
    last_status_patch: Mutex<HashMap<StreamId, Instant>>,
    /// The fleet-wide budget of live-counter patches ([`Settings::live_patch_rate`]).
    live_patches: Mutex<TokenBucket>,
    /// Streams that took a token in debt, and when it is theirs to use.
    live_patch_reserved: Mutex<HashMap<StreamId, Instant>>,
    /// The status last written per stream, with the cached object's resourceVersion at that
    /// time: until the cache shows a newer version of the object, the written status, not the
    /// cached one, is what the server holds (see [`Context::current_status`]).
    written_status: Mutex<HashMap<StreamId, (Option<String>, LiveStreamStatus)>>,
}

impl Context {
    pub fn new(
        client: Client,
        registry: SharedOperatorRegistry,
        reporter: Reporter,
        metrics: Arc<Metrics>,
        settings: Settings,
        store: Streams,
        secrets: SecretCache,
    ) -> Self {
        let live_patch_rate = settings.live_patch_rate;
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            registry,
            metrics,
            settings,
            store,
            secrets,
            failures: Mutex::default(),
            last_status_patch: Mutex::default(),
            live_patches: Mutex::new(TokenBucket::new(live_patch_rate)),
            live_patch_reserved: Mutex::default(),
            written_status: Mutex::default(),
        }
    }

    /// The delay before retrying `id` after one more failure.
    fn next_backoff(&self, id: Option<&StreamId>) -> Duration {
        let attempt = match id {
            Some(id) => {
                let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
                let n = f.entry(id.clone()).or_insert(0);
                *n = n.saturating_add(1);
                *n - 1
            }
            None => 0,
        };
        backoff_delay(attempt, rand::random::<f64>())
    }

    fn reset_backoff(&self, id: &StreamId) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// `None` when a live-only status patch may go out now (and it is then counted against
    /// the fleet-wide budget), else how long to wait: the stream's own minimum interval, or
    /// until the budget has room.
    fn status_patch_wait(&self, id: &StreamId) -> Option<Duration> {
        let last = self.last_status_patch.lock().unwrap_or_else(|p| p.into_inner()).get(id).copied();
        let now = Instant::now();
        if let Some(next) = last.map(|l| l + self.settings.status_min_interval)
            && next > now
        {
            return Some(next - now);
        }
        let mut reserved = self.live_patch_reserved.lock().unwrap_or_else(|p| p.into_inner());
        match reserved.get(id).copied() {
            Some(at) if at <= now => {
                reserved.remove(id);
                None
            }
            Some(at) => Some(at - now),
            None => {
                let wait = self.live_patches.lock().unwrap_or_else(|p| p.into_inner()).take(now)?;
                reserved.insert(id.clone(), now + wait);
                Some(wait)
            }
        }
    }

    fn note_status_patch(&self, id: &StreamId) {
        self.last_status_patch.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), Instant::now());
    }

    /// The status the server holds for `ls`, as far as this replica knows: the cached object's,
    /// unless this replica wrote one since that version of the object was cached. The cache
    /// lags behind the writes by a watch event, and much longer while its watch is broken (an
    /// API server restart: the watch resumes only after a 410 Gone and a re-list, seconds to
    /// tens of seconds later); comparing against the stale cached status would then skip
    /// patches that are needed (a stream that went Live and back to Ready while the cache still
    /// says Ready stays Live) and repeat patches that are not.
    fn current_status(&self, ls: &LiveStream, id: &StreamId) -> Option<LiveStreamStatus> {
        let mut written = self.written_status.lock().unwrap_or_else(|p| p.into_inner());
        match written.get(id) {
            Some((seen, status)) if *seen == ls.metadata.resource_version => return Some(status.clone()),
            Some(_) => {
                // The cache has a newer version of the object, which includes our write.
                written.remove(id);
            }
            None => {}
        }
        ls.status.clone()
    }

    fn note_written_status(&self, ls: &LiveStream, id: &StreamId, status: &LiveStreamStatus) {
        self.written_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), (ls.metadata.resource_version.clone(), status.clone()));
    }

    fn forget(&self, id: &StreamId) {
        self.written_status.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        self.reset_backoff(id);
        self.last_status_patch.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        self.live_patch_reserved.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        self.metrics.set_phase(id, None);
    }

    async fn publish(&self, ls: &LiveStream, type_: EventType, reason: &str, note: String) {
        let ev = KubeEvent {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: "Reconcile".to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &ls.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not publish an Event");
        }
    }
}

/// A token bucket: `rate` tokens a second, holding at most one second's worth, so a burst after
/// a quiet spell is bounded too. A taker that finds it empty goes into debt and is told when its
/// token will have been refilled: waiters are spread out at the rate instead of all retrying at
/// the next refill (with 1,000 live streams and 50 tokens a second, retrying at the next refill
/// meant thousands of reconciles a second that patched nothing).
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl TokenBucket {
    pub fn new(rate: f64) -> Self {
        let rate = rate.max(0.001);
        TokenBucket { rate, tokens: rate.max(1.0), at: None }
    }

    /// Takes a token at `now`: `None` when one was there, else how long until one is.
    pub fn take(&mut self, now: Instant) -> Option<Duration> {
        let capacity = self.rate.max(1.0);
        if let Some(at) = self.at {
            self.tokens = (self.tokens + now.saturating_duration_since(at).as_secs_f64() * self.rate).min(capacity);
        }
        self.at = Some(now);
        self.tokens -= 1.0;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
    }
}

/// `min(5 s · 2^attempt, 5 min)`, spread by ±10 % (`jitter` in [0, 1)) so objects that failed
/// together do not retry together.
pub fn backoff_delay(attempt: u32, jitter: f64) -> Duration {
    let base = BACKOFF_MIN.saturating_mul(2u32.saturating_pow(attempt.min(16))).min(BACKOFF_MAX);
    base.mul_f64(0.9 + 0.2 * jitter.clamp(0.0, 1.0))
}

/// `namespace/name` of a LiveStream.
pub fn stream_id(ls: &LiveStream) -> Result<StreamId> {
    // Objects from the API server always have a namespace; one without is refused rather than
    // taken for the default namespace.
    ls.meta().namespace.as_ref().ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    ls.stream_id().ok_or(Error::MissingObjectKey("metadata.name"))
}

/// Reconciles one LiveStream: the finalizer is the only top-level action, so a record is never
/// written for an object that could be deleted without the operator noticing.
/// Everything it logs carries the stream id (span `reconcile`).
pub async fn reconcile(ls: Arc<LiveStream>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started();
    let id = stream_id(&ls)?;
    let span = tracing::info_span!("reconcile", stream = %id);
    async {
        let api: Api<LiveStream> = Api::namespaced(ctx.client.clone(), &id.namespace);
        let action = finalizer(&api, FINALIZER, ls, |event| async {
            match event {
                FinalizerEvent::Apply(ls) => apply(&ls, &ctx).await,
                FinalizerEvent::Cleanup(ls) => cleanup(&ls, &ctx).await,
            }
        })
        .await
        .map_err(|e| Error::Finalizer(Box::new(e)))?;
        ctx.reset_backoff(&id);
        Ok(action)
    }
    .instrument(span)
    .await
}

/// Failed reconciles retry with per-object exponential backoff (5 s → 5 min).
pub fn error_policy(ls: Arc<LiveStream>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(err.metric_label());
    let id = stream_id(&ls).ok();
    let delay = ctx.next_backoff(id.as_ref());
    tracing::warn!(stream = %id.map(|i| i.to_string()).unwrap_or_default(), error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Maps a record-building failure to the problem shown in status.
fn record_problem(e: RecordError, secret: &str) -> Problem {
    match e.kind {
        RecordErrorKind::PublishKey => Problem::InvalidPublishKey { secret: secret.to_string(), message: e.message },
        RecordErrorKind::SrtPassphrase => {
            Problem::InvalidSrtPassphrase { secret: secret.to_string(), message: e.message }
        }
        _ => Problem::InvalidSpec { field: e.field, message: e.message },
    }
}

/// Makes the registry match the LiveStream and reports the result in status.
async fn apply(ls: &LiveStream, ctx: &Context) -> Result<Action> {
    let id = stream_id(ls)?;
    let me = Claim::of(ls).ok_or(Error::MissingObjectKey("metadata.name"))?;
    // Only claims on the same name matter (a rival, or an owner that may be evicted): the
    // index by playback name finds them without walking the cache (at 10,000 streams that walk,
    // once per reconcile, cost the operator more CPU than the API server spent).
    let claims: Vec<Claim> = ctx.store.claiming(&me.playback_name).iter().filter_map(|o| Claim::of(o)).collect();
    let (secret_name, key_name) = secrets::key_location(ls);

    let desired = match conflicts::rival(&me, &claims) {
        Some(older) => {
            Err(Problem::PlaybackNameConflict { playback_name: me.playback_name.clone(), owner: older.id.to_string() })
        }
        None => {
            let secret = if ls.spec.publish_key_secret_ref.is_some() {
                secrets::fetch(&ctx.client, &ctx.secrets, &id.namespace, &secret_name).await?
            } else {
                let (secret, created) = secrets::ensure_generated(&ctx.client, &ctx.secrets, ls).await?;
                if created {
                    tracing::info!(stream = %id, secret = %secret_name, "generated a publish-key Secret");
                    let note = format!("generated Secret {secret_name} with a random publish key");
                    ctx.publish(ls, EventType::Normal, "SecretCreated", note).await;
                }
                Some(secret)
            };
            match secret {
                None => Err(Problem::SecretNotFound { secret: secret_name.clone() }),
                Some(s) => secrets::read_key(&s, &key_name).and_then(|key| {
                    // An unusable key (empty, '/', spaces) is reported as such before its strength.
                    let hasher = &ctx.settings.key_hasher;
                    let srt_passphrase = secrets::read_srt_passphrase(&s)?;
                    let record = record_for(ls, &key, srt_passphrase.as_deref(), hasher)
                        .map_err(|e| record_problem(e, &secret_name))?;
                    if ctx.settings.require_strong_keys
                        && let Some(weakness) = key_strength::weakness(&key)
                    {
                        return Err(Problem::WeakPublishKey { secret: secret_name.clone(), message: weakness });
                    }
                    Ok((record, hasher.digests(&key)))
                }),
            }
        }
    };
    let (desired, digests) = match desired {
        Ok((record, digests)) => (Ok(record), Some(digests)),
        Err(p) => (Err(p), None),
    };
    let same_key = |previous: &streamfleet_registry::StreamRecord| {
        digests.and_then(|d| d.matches(previous.key_scheme, &previous.key_hash))
    };

    // A record of a namespace outside the scope is not this operator's: its LiveStream is
    // invisible here, so it would always look evictable.
    let scope = &ctx.settings.scope;
    let may_evict = |owner: &StreamId| scope.owns(owner) && conflicts::may_evict(&me, owner, &claims);
    let outcome = reconcile::apply_stream(ctx.registry.as_ref(), &id, desired, &same_key, &may_evict).await?;
    announce(ls, ctx, &outcome, &me.playback_name).await;

    let current = ctx.current_status(ls, &id);
    let desired_status = status::desired_status(&StatusInput {
        generation: ls.metadata.generation,
        playback_name: me.playback_name.clone(),
        enabled: ls.spec.is_enabled(),
        publish_key_secret: Some(secret_name),
        observed: &outcome.observed,
        previous: current.as_ref(),
        now: Timestamp::now(),
    });
    ctx.metrics.set_phase(&id, desired_status.phase);
    announce_encoder_health(ls, ctx, current.as_ref(), &desired_status).await;
    let wait = match status::classify(current.as_ref(), &desired_status) {
        Change::None => None,
        Change::LiveOnly if let Some(wait) = ctx.status_patch_wait(&id) => Some(wait),
        Change::LiveOnly | Change::Significant => {
            patch_status(&ctx.client, &id, &desired_status).await?;
            ctx.note_status_patch(&id);
            ctx.note_written_status(ls, &id, &desired_status);
            None
        }
    };
    let every = match desired_status.phase {
        Some(Phase::Live) => ctx.settings.live_requeue.min(lease_deadline(&outcome.observed).unwrap_or(Duration::MAX)),
        _ => ctx.settings.idle_requeue,
    };
    Ok(Action::requeue(wait.map_or(every, |w| w.min(every))))
}

/// How long after a lease's expiry the operator looks at the stream again.
pub const LEASE_EXPIRY_MARGIN: Duration = Duration::from_millis(250);

/// When to look again at a live stream so that its holder's lease, should the holder stop
/// renewing it (its edge died without releasing), is seen gone at its expiry: the time it had
/// left, plus [`LEASE_EXPIRY_MARGIN`]. No other signal exists for an expiry (Redis keyspace
/// notifications need server configuration and are lost on every reconnect); a holder that
/// renews just moves the next look further out.
fn lease_deadline(observed: &Observed) -> Option<Duration> {
    match observed {
        Observed::Registered { live } if live.holder.is_some() => {
            live.lease_ms_left.map(|ms| Duration::from_millis(ms) + LEASE_EXPIRY_MARGIN)
        }
        _ => None,
    }
}

/// Events for what changed: a new problem (Warning, once per reason change), a key rotation,
/// a revoked publisher, an evicted record.
async fn announce(ls: &LiveStream, ctx: &Context, outcome: &reconcile::ApplyOutcome, playback: &str) {
    let previous_reason =
        ls.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == READY)).map(|c| c.reason.as_str());
    if let Observed::Blocked(p) = &outcome.observed
        && previous_reason != Some(p.reason())
    {
        ctx.publish(ls, EventType::Warning, p.reason(), p.message()).await;
    }
    let applied = &outcome.applied;
    if applied.rehashed {
        ctx.metrics.key_rehashes.inc();
    }
    if applied.key_rotated {
        let note = if applied.revoked {
            "publish key changed: the connected publisher was disconnected and must reconnect with the new key"
        } else {
            "publish key changed"
        };
        ctx.publish(ls, EventType::Normal, "KeyRotated", note.to_string()).await;
    } else if applied.revoked && !ls.spec.is_enabled() {
        let note = "spec.enabled is false: the connected publisher was disconnected".to_string();
        ctx.publish(ls, EventType::Normal, "PublisherRevoked", note).await;
    }
    for owner in &applied.evicted {
        let note = format!("removed the registry record of {owner}, which claimed playback name {playback:?} later");
        ctx.publish(ls, EventType::Normal, "PlaybackNameReclaimed", note).await;
    }
}

/// A Warning Event when the live encoder's media turns unhealthy (once per turn: the condition's
/// status is what is compared, so a changing figure in the message raises nothing new).
async fn announce_encoder_health(
    ls: &LiveStream,
    ctx: &Context,
    current: Option<&LiveStreamStatus>,
    desired: &LiveStreamStatus,
) {
    let encoder = |s: &LiveStreamStatus| s.conditions.iter().find(|c| c.type_ == status::ENCODER_HEALTHY).cloned();
    let before = current.and_then(encoder).map(|c| c.status);
    if let Some(now) = encoder(desired)
        && now.status == "False"
        && before.as_deref() != Some("False")
    {
        ctx.publish(ls, EventType::Warning, &now.reason, now.message).await;
    }
}

/// Writes the whole status with server-side apply, as the operator's field manager.
async fn patch_status(client: &Client, id: &StreamId, status: &LiveStreamStatus) -> Result<()> {
    let api: Api<LiveStream> = Api::namespaced(client.clone(), &id.namespace);
    let body = json!({
        "apiVersion": LiveStream::api_version(&()),
        "kind": LiveStream::kind(&()),
        "status": serde_json::to_value(status).map_err(Error::Serialization)?,
    });
    api.patch_status(&id.name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(body)).await?;
    Ok(())
}

/// Removes the record and any live lease; the finalizer is released only when this succeeds.
async fn cleanup(ls: &LiveStream, ctx: &Context) -> Result<Action> {
    let id = stream_id(ls)?;
    if let Err(e) = reconcile::remove_record(ctx.registry.as_ref(), &id).await {
        let note = format!(
            "cannot remove the stream from the registry ({e}); the deletion completes once the registry is reachable"
        );
        ctx.publish(ls, EventType::Warning, "CleanupBlocked", note).await;
        return Err(e);
    }
    tracing::info!(stream = %id, "removed from the registry");
    ctx.forget(&id);
    Ok(Action::await_change())
}

/// Yields once each time the registry's epoch changes (Redis restarted empty): every record
/// must then be rewritten.
pub fn epoch_changes(registry: SharedOperatorRegistry, every: Duration) -> impl Stream<Item = ()> + Send + 'static {
    futures::stream::unfold((registry, None::<u64>), move |(registry, mut last)| async move {
        loop {
            tokio::time::sleep(every).await;
            match registry.epoch().await {
                Ok(epoch) if last.is_some_and(|l| l != epoch) => {
                    tracing::warn!(epoch, "registry epoch changed (restarted empty): rewriting every record");
                    return Some(((), (registry, Some(epoch))));
                }
                Ok(epoch) => last = Some(epoch),
                Err(e) => tracing::debug!(error = %e, "registry epoch unavailable"),
            }
        }
    })
}

/// What [`controller`] needs besides the client and registry.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    pub settings: Settings,
    pub identity: String,
    pub gc_interval: Duration,
    pub epoch_poll: Duration,
    /// Most LiveStreams reconciled at once (`--reconcile-concurrency`): bounds the load on
    /// Redis and the API server, and how many status patches of a burst are in flight.
    pub concurrency: u16,
}

/// The controller with its watches and the orphan collector; resolves when `shutdown` does.
///
/// One kube `Controller` per watch of the scope (one cluster-wide, or one per namespace), all
/// sharing one [`Context`]: a namespace-scoped operator then needs only Roles in its namespaces.
/// Secrets are watched by metadata only (`metadata_watcher`): a change is all the operator
/// needs to learn from the watch, and the data of a Secret that no LiveStream references
/// (TLS keys, passwords) never reaches its memory. The data of referenced Secrets is read by
/// `get` when a reconcile needs it ([`secrets::fetch`]).
pub async fn controller(
    client: Client,
    registry: SharedOperatorRegistry,
    metrics: Arc<Metrics>,
    opts: ControllerOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let shutdown = futures::FutureExt::shared(futures::FutureExt::boxed(shutdown));
    let cache = SecretCache::default();
    let streams: Vec<Api<LiveStream>> = opts.settings.scope.apis(&client);
    // `Api<PartialObjectMeta<_>>` lists and watches with metadata-only requests.
    let secret_apis: Vec<Api<PartialObjectMeta<Secret>>> = opts.settings.scope.apis(&client);
    // Each controller's reflector, as `Controller::new` builds it, plus an index by playback
    // name and key Secret kept from the same events (`Index::observe`).
    let mut parts = Vec::new();
    let controllers: Vec<Controller<LiveStream>> = streams
        .into_iter()
        .map(|api| {
            let (reader, writer) = reflector::store();
            let index = Index::default();
            parts.push((reader.clone(), index.clone()));
            let events =
                reflector(writer, watcher(api, watcher::Config::default().any_semantic())).inspect(move |event| {
                    if let Ok(event) = event {
                        index.observe(event);
                    }
                });
            Controller::for_stream(events.applied_objects(), reader)
                .with_config(ControllerConfig::default().concurrency(opts.concurrency.max(1)))
                .trigger_backoff(WatchBackoff::default())
        })
        .collect();
    let store = Streams::new(parts);
    // One subscription to the registry's change feed, fanned out to the controllers (one per
    // namespace in a namespace-scoped install).
    let (signals, _) = tokio::sync::broadcast::channel(SIGNAL_BACKLOG);
    let forward = forward_changes(registry.changes(), signals.clone());
    let controllers: Vec<Controller<LiveStream>> = controllers
        .into_iter()
        .zip(secret_apis)
        .zip(watched_namespaces(&opts.settings.scope))
        .map(|((controller, secrets_api), namespace)| {
            let (changed, resync) = live_changes(signals.subscribe(), namespace, opts.settings.status_min_interval);
            let (map_store, map_cache) = (store.clone(), cache.clone());
            controller
                .watches(secrets_api, watcher::Config::default(), move |secret: PartialObjectMeta<Secret>| {
                    let (Some(ns), Some(name)) =
                        (secret.metadata.namespace.as_deref(), secret.metadata.name.as_deref())
                    else {
                        return Vec::new();
                    };
                    map_cache.invalidate(ns, name);
                    map_store.using_secret(ns, name)
                })
                .reconcile_all_on(epoch_changes(registry.clone(), opts.epoch_poll))
                .reconcile_on(changed)
                .reconcile_all_on(resync)
                .graceful_shutdown_on(shutdown.clone())
        })
        .collect();
    let reporter = Reporter { controller: MANAGER.to_string(), instance: Some(opts.identity.clone()) };
    let ctx = Arc::new(Context::new(
        client,
        registry.clone(),
        reporter,
        metrics,
        opts.settings.clone(),
        store.clone(),
        cache,
    ));
    let runs = controllers.into_iter().map(|c| c.run(reconcile, error_policy, ctx.clone()).boxed());
    let run = futures::stream::select_all(runs).for_each(|res| async move {
        if let Err(e) = res {
            tracing::debug!(error = %e, "controller event");
        }
    });
    let collect = gc::run(registry.as_ref(), store, opts.settings.scope.clone(), opts.gc_interval);
    tokio::select! {
        () = run => {}
        () = collect => {}
        () = forward => {}
    }
}

/// Signals a controller may fall behind by before it reconciles everything instead.
const SIGNAL_BACKLOG: usize = 16_384;

/// Feeds the registry's change signals to every subscribed controller; never returns while the
/// feed runs (a backend without one never yields).
async fn forward_changes(
    mut feed: futures::stream::BoxStream<'static, LiveChange>,
    to: tokio::sync::broadcast::Sender<LiveChange>,
) {
    while let Some(change) = feed.next().await {
        // No receiver: the controllers are stopping.
        let _ = to.send(change);
    }
    futures::future::pending().await
}

/// The namespace each controller of `scope` watches (`None`: every namespace), in the order of
/// [`Scope::apis`].
fn watched_namespaces(scope: &Scope) -> Vec<Option<String>> {
    match scope {
        Scope::Cluster => vec![None],
        Scope::Namespaces(list) => list.iter().cloned().map(Some).collect(),
    }
}

/// Splits the change signals for one controller: the LiveStreams to reconcile now (those of
/// `namespace`, or of every namespace), and a tick whenever signals may have been lost (the
/// feed reconnected, or this controller fell behind), on which it reconciles everything.
///
/// A viewer-count signal reconciles its stream at most once per `viewers_every` (the live
/// counter pace, `--status-min-interval`): its status could not show a newer count sooner
/// anyway, and at 1,000 live streams whose counts change every second, reconciling on each
/// signal cost the operator more CPU than the API server spent on all of it. A count that
/// changed after the last forwarded signal is picked up by the live requeue.
pub fn live_changes(
    rx: tokio::sync::broadcast::Receiver<LiveChange>,
    namespace: Option<String>,
    viewers_every: Duration,
) -> (impl Stream<Item = ObjectRef<LiveStream>> + Send + 'static, impl Stream<Item = ()> + Send + 'static) {
    let (resync_tx, resync_rx) = tokio::sync::mpsc::channel::<()>(1);
    let last_viewers: HashMap<StreamId, Instant> = HashMap::new();
    let changed = futures::stream::unfold((rx, resync_tx, last_viewers), move |(mut rx, resync_tx, mut last)| {
        let namespace = namespace.clone();
        async move {
            loop {
                use tokio::sync::broadcast::error::RecvError;
                let ours = |id: &StreamId| namespace.as_ref().is_none_or(|n| *n == id.namespace);
                match rx.recv().await {
                    Ok(LiveChange::Stream(id)) if ours(&id) => {
                        let obj = ObjectRef::new(&id.name).within(&id.namespace);
                        return Some((obj, (rx, resync_tx, last)));
                    }
                    Ok(LiveChange::Viewers(id)) if ours(&id) => {
                        let now = Instant::now();
                        if last.get(&id).is_some_and(|t| now.saturating_duration_since(*t) < viewers_every) {
                            continue;
                        }
                        // Entries older than the interval decide nothing any more.
                        if last.len() > 4 * SIGNAL_BACKLOG {
                            last.retain(|_, t| now.saturating_duration_since(*t) < viewers_every);
                        }
                        last.insert(id.clone(), now);
                        let obj = ObjectRef::new(&id.name).within(&id.namespace);
                        return Some((obj, (rx, resync_tx, last)));
                    }
                    Ok(LiveChange::Stream(_) | LiveChange::Viewers(_)) => {}
                    Ok(LiveChange::Resync) | Err(RecvError::Lagged(_)) => {
                        tracing::info!("registry change signals may have been lost: reconciling every LiveStream");
                        // A resync already pending covers this one.
                        let _ = resync_tx.try_send(());
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    let resync = futures::stream::unfold(resync_rx, |mut rx| async move { rx.recv().await.map(|()| ((), rx)) });
    (changed, resync)
}

#[cfg(test)]
mod tests;
