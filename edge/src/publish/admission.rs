//! Where a publish is admitted. An encoder's `publish(key)` becomes: look the key up (unknown
//! or disabled keys are refused without touching any lease), then acquire the stream's
//! cluster-wide lease under its takeover policy, retrying while the registry says waiting may
//! help (the current holder may be idle soon, or a cooldown ends) until the publish deadline,
//! then start the [`LeaseKeeper`] that renews it. Only then is `NetStream.Publish.Start` sent.
//! A lease still held by a publisher on this edge that has just ended is waited for (see
//! [`crate::streams`]' local release), so an encoder that reconnects at once is never refused for it.
//!
//! Every refusal has a metric label and a description the encoder shows to its user; none of
//! them disturbs the live publisher.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use streamfleet_registry::{
    IngestProtocol, KeeperEvent, KeyCandidate, KeyHash, Lease, LeaseKeeper, PublisherInfo, RegistryError, StreamRecord,
    lease_keeper::KeeperObserver, new_lease_token,
};
use tokio::{
    sync::watch,
    time::{Instant, sleep, timeout_at},
};

use crate::{
    app::context::Context,
    observe::Metrics,
    streams::{LeaseCounts, releases_done},
};

/// How often a newcomer asks again while the registry says waiting may help. Short, so a
/// reconnecting encoder gets in as soon as the old publisher counts as idle.
const RETRY_POLL: Duration = Duration::from_millis(100);
/// Backoff while the registry is unreachable.
const UNAVAILABLE_BACKOFF: Duration = Duration::from_millis(250);
/// How long an unreachable registry is retried before the encoder is told so (a brief blip
/// should not fail a publish; an outage should not keep encoders waiting for the full
/// publish timeout).
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(3);
/// How long a newcomer refused because a live publisher *on this edge* holds the stream waits
/// for that publisher to end before the refusal stands. An encoder that drops its connection and
/// reconnects at once can reach admission before this edge has read the old connection's close;
/// the old publisher then ends within milliseconds (an event the wait follows). A genuine second
/// encoder is refused this much later.
const LOCAL_HOLDER_GRACE: Duration = Duration::from_millis(250);

/// Not this key, or not now for a reason the encoder cannot change by retrying.
pub(crate) const PUBLISH_DENIED: &str = "NetStream.Publish.Denied";
/// Someone else publishes this stream.
pub(crate) const PUBLISH_BAD_NAME: &str = "NetStream.Publish.BadName";
/// The edge cannot decide now (registry unreachable or restarting, edge draining): retry.
pub(crate) const FAILED: &str = "NetStream.Failed";

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rejection {
    UnknownKey,
    Disabled { stream: String },
    AlreadyActive { stream: String, edge: String, since_ms: u64, protocol: Option<IngestProtocol> },
    Unavailable(String),
    Other { label: &'static str, message: String },
}

impl Rejection {
    /// Metric label (`publish_rejections_total{reason}`).
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Rejection::UnknownKey => "unknown_key",
            Rejection::Disabled { .. } => "disabled",
            Rejection::AlreadyActive { .. } => "already_active",
            Rejection::Unavailable(_) => "unavailable",
            Rejection::Other { label, .. } => label,
        }
    }

    /// The `code` of the error `onStatus` the encoder receives, chosen for how clients read it
    /// (docs/edge.md, "Refusals as clients report them"): GStreamer's rtmp2sink reports
    /// `Publish.BadName` as "stream already exists" and `Publish.Denied` as "publish denied";
    /// OBS's librtmp closes and logs the description on both and on `NetStream.Failed`, and
    /// rtmpdump's librtmp logs `NetStream.Failed` only. FFmpeg prints the description whatever
    /// the code.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Rejection::UnknownKey | Rejection::Disabled { .. } => PUBLISH_DENIED,
            Rejection::AlreadyActive { .. } => PUBLISH_BAD_NAME,
            Rejection::Unavailable(_) | Rejection::Other { .. } => FAILED,
        }
    }

    /// The `description` of the status the encoder receives.
    pub(crate) fn description(&self) -> String {
        match self {
            Rejection::UnknownKey => "unknown stream key: no LiveStream uses this publish key".into(),
            Rejection::Disabled { stream } => format!("stream {stream} is disabled (spec.enabled is false)"),
            Rejection::AlreadyActive { stream, edge, since_ms, protocol } => {
                let age = now_ms().saturating_sub(*since_ms) / 1000;
                // The live publisher's protocol, as its edge recorded it (unknown from edges
                // that predate the field).
                let over = protocol.map(|p| format!("over {p} ")).unwrap_or_default();
                format!(
                    "stream {stream} is already being published ({over}on edge {edge}, for {age}s); its takeover policy does not allow replacing it now"
                )
            }
            Rejection::Unavailable(e) => format!("stream registry unavailable, try again: {e}"),
            Rejection::Other { message, .. } => message.clone(),
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl From<RegistryError> for Rejection {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NotFound { .. } => Rejection::UnknownKey,
            RegistryError::Disabled { stream } => Rejection::Disabled { stream: stream.to_string() },
            RegistryError::AlreadyActive { stream, holder, .. } => Rejection::AlreadyActive {
                stream: stream.to_string(),
                edge: holder.edge,
                since_ms: holder.since_ms,
                protocol: holder.protocol,
            },
            RegistryError::Unavailable(m) => Rejection::Unavailable(m.to_string()),
            RegistryError::Quarantined { retry_in } => Rejection::Other {
                label: "quarantined",
                message: format!(
                    "stream registry restarted; new publishers are admitted again in {} ms",
                    retry_in.as_millis()
                ),
            },
            other => Rejection::Other { label: other.label(), message: other.to_string() },
        }
    }
}

/// A publisher that holds its stream's lease.
pub(crate) struct Admitted {
    pub(crate) record: StreamRecord,
    pub(crate) lease: Lease,
    pub(crate) keeper: LeaseKeeper,
}

/// Admits a publisher whose key hashes to `candidates` (the keyed hash first, then the legacy
/// one while accepted: [`streamfleet_registry::KeyHasher::candidates`]) from `remote`, or says
/// why not, by `deadline`: the key is looked up, then the stream's lease acquired (see the
/// module docs). `protocol` is recorded in the holder info (what `kubectl get lst` shows).
pub(crate) async fn admit(
    ctx: &Context,
    candidates: &[KeyCandidate],
    remote: SocketAddr,
    protocol: IngestProtocol,
    deadline: Instant,
) -> Result<Admitted, Rejection> {
    admit_checked(ctx, candidates, remote, protocol, deadline, |_| Ok(())).await
}

/// [`admit`], with `check` deciding on the stream's record after the look-up and before the
/// lease is taken (SRT: a caller without the stream's passphrase is refused there).
pub(crate) async fn admit_checked(
    ctx: &Context,
    candidates: &[KeyCandidate],
    remote: SocketAddr,
    protocol: IngestProtocol,
    deadline: Instant,
    check: impl FnOnce(&StreamRecord) -> Result<(), Rejection>,
) -> Result<Admitted, Rejection> {
    let unavailable_deadline = deadline.min(Instant::now() + UNAVAILABLE_RETRY);
    let (record, matched) = lookup_any(ctx, candidates, deadline, unavailable_deadline).await?;
    check(&record)?;
    // A lease on a legacy record also carries the keyed hash: once the operator rewrites the
    // record with it, a reclaim (after a registry restart) must still find the record.
    let alt = if matched.scheme.is_legacy() {
        candidates.iter().find(|c| !c.scheme.is_legacy()).map(|c| c.hash)
    } else {
        None
    };
    let who = PublisherInfo {
        edge: ctx.settings.edge_id.clone(),
        remote_addr: Some(remote.to_string()),
        // Advertised only when this edge serves the relay (no secret, no relay).
        relay_addr: ctx.settings.advertise_addr.clone().filter(|_| ctx.relay.get().is_some()),
        protocol: Some(protocol),
    };
    let admitted = acquire(ctx, (&matched.hash, alt), record, &who, deadline, unavailable_deadline).await?;
    if matched.scheme.is_legacy() {
        ctx.metrics.publish_legacy_key_hash.inc();
    }
    Ok(admitted)
}

/// The stream the key publishes and the hash that found it: each candidate in turn, so a
/// record not yet rewritten with the keyed hash is still found by its legacy one (one more
/// round trip, only for those and for wrong keys).
async fn lookup_any(
    ctx: &Context,
    candidates: &[KeyCandidate],
    deadline: Instant,
    unavailable_deadline: Instant,
) -> Result<(StreamRecord, KeyCandidate), Rejection> {
    for c in candidates {
        match lookup(ctx, &c.hash, deadline, unavailable_deadline).await {
            Ok(record) => return Ok((record, *c)),
            Err(Rejection::UnknownKey) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Rejection::UnknownKey)
}

/// The stream the key hash publishes, retrying a registry that is briefly unreachable.
async fn lookup(
    ctx: &Context,
    key: &KeyHash,
    deadline: Instant,
    unavailable_deadline: Instant,
) -> Result<StreamRecord, Rejection> {
    loop {
        match timeout_at(deadline, ctx.registry.lookup(key)).await {
            Err(_) => return Err(Rejection::Unavailable("registry did not answer in time".into())),
            Ok(Ok(r)) => return Ok(r),
            Ok(Err(e)) if e.is_transient() && Instant::now() + UNAVAILABLE_BACKOFF < unavailable_deadline => {
                tracing::debug!(error = %e, "lookup failed; retrying");
                sleep(UNAVAILABLE_BACKOFF).await;
            }
            Ok(Err(e)) => return Err(e.into()),
        }
    }
}

/// Acquires `record`'s lease under its takeover policy, asking again while the registry says
/// waiting may help, until the deadline; starts the lease keeper once it is held.
async fn acquire(
    ctx: &Context,
    (key, key_alt): (&KeyHash, Option<KeyHash>),
    record: StreamRecord,
    who: &PublisherInfo,
    deadline: Instant,
    unavailable_deadline: Instant,
) -> Result<Admitted, Rejection> {
    let registry = &ctx.registry;
    let opts = ctx.settings.acquire;
    // Waiting for a live holder to become replaceable is bounded separately: a holder that keeps
    // sending media will not become idle, and its challenger should hear so quickly.
    let takeover_deadline = deadline.min(Instant::now() + ctx.settings.takeover_wait);
    let mut grace_used = false;
    // One token for every ask of this admission: an ask that timed out may still have been
    // granted (the reply was late), and asking again with the same token gets that lease back
    // ("already mine") instead of finding it held by this very edge until its TTL runs out.
    let token = new_lease_token();
    loop {
        let sent_at = Instant::now();
        let result = match timeout_at(deadline, registry.acquire_as(key, who, &opts, &token)).await {
            Err(_) => return Err(Rejection::Unavailable("registry did not answer in time".into())),
            Ok(r) => r,
        };
        let mut local_holder = match wait_for_local_release(ctx, &result, deadline, &mut grace_used).await {
            LocalRelease::AskAgain => continue,
            LocalRelease::Holder(rx) => rx,
        };
        let mut wait_until = deadline;
        let wait = match result {
            Ok(mut lease) => {
                lease.key_hash_alt = key_alt;
                let keeper = LeaseKeeper::start(
                    registry.clone(),
                    lease.clone(),
                    sent_at,
                    ctx.settings.lease_timing,
                    Some(keeper_observer(ctx.metrics.clone())),
                );
                return Ok(Admitted { record, lease, keeper });
            }
            Err(RegistryError::AlreadyActive { retry_in: Some(d), .. }) => {
                wait_until = takeover_deadline;
                d.clamp(Duration::from_millis(10), RETRY_POLL)
            }
            Err(RegistryError::Quarantined { retry_in }) => retry_in.clamp(Duration::from_millis(10), RETRY_POLL * 5),
            Err(RegistryError::Unavailable(_)) => {
                wait_until = unavailable_deadline;
                UNAVAILABLE_BACKOFF
            }
            Err(e) => return Err(e.into()),
        };
        if Instant::now() + wait >= wait_until {
            // Report the last refusal as it was.
            return Err(match registry.acquire_as(key, who, &opts, &token).await {
                Ok(lease) => {
                    // Admitted at the last moment after all: release rather than race the
                    // deadline (the encoder is being told no).
                    let _ = registry.release(&lease).await;
                    Rejection::Other { label: "timeout", message: "publish admission timed out".into() }
                }
                Err(e) => e.into(),
            });
        }
        match local_holder.as_mut() {
            // A closed channel means the stream left this edge: its release is done too.
            Some(rx) => tokio::select! {
                _ = sleep(wait) => {}
                _ = rx.changed() => {}
            },
            None => sleep(wait).await,
        }
    }
}

/// What a refusal because of a publisher on this edge leaves to do.
enum LocalRelease {
    /// The local holder released the lease (or ended) meanwhile: ask the registry again.
    AskAgain,
    /// Go on with the refusal; a live local holder's counts, if any, to wake on when it ends.
    Holder(Option<watch::Receiver<LeaseCounts>>),
}

/// The lease is held by a publisher on this edge: one that has already ended is releasing it
/// right now, so wait for that release (an event, not a poll) and ask again, whatever the
/// takeover policy says. A live one is left to the policy, except that an outright refusal
/// waits once, for [`LOCAL_HOLDER_GRACE`], for that publisher to end (an encoder that has just
/// reconnected shows it so); a later wait also ends the moment it ends.
async fn wait_for_local_release(
    ctx: &Context,
    result: &Result<Lease, RegistryError>,
    deadline: Instant,
    grace_used: &mut bool,
) -> LocalRelease {
    let Err(RegistryError::AlreadyActive { stream, holder, retry_in }) = result else {
        return LocalRelease::Holder(None);
    };
    if holder.edge != ctx.settings.edge_id {
        return LocalRelease::Holder(None);
    }
    let Some(mut rx) = ctx.hub.get(stream).map(|s| s.local_leases.subscribe()) else {
        return LocalRelease::Holder(None);
    };
    if rx.borrow().releasing > 0 {
        tracing::debug!(%stream, "lease held by a publisher on this edge that is releasing it; waiting");
        if releases_done(rx, deadline).await {
            return LocalRelease::AskAgain;
        }
        return LocalRelease::Holder(None);
    }
    if retry_in.is_none() && !std::mem::replace(grace_used, true) {
        // Refused outright (Reject policy, or the cooldown): unless the local holder is an
        // encoder that has just gone, which it shows by ending within the grace.
        let grace_end = deadline.min(Instant::now() + LOCAL_HOLDER_GRACE);
        if timeout_at(grace_end, rx.wait_for(|c| c.live == 0)).await.is_ok() {
            tracing::debug!(%stream, "the local publisher holding the stream ended; asking again");
            return LocalRelease::AskAgain;
        }
    }
    LocalRelease::Holder(Some(rx))
}

fn keeper_observer(metrics: Arc<Metrics>) -> KeeperObserver {
    Arc::new(move |event| match event {
        KeeperEvent::Renewed | KeeperEvent::Reclaimed => metrics.lease_renewals.inc(),
        KeeperEvent::RenewFailed => metrics.lease_renew_failures.inc(),
        KeeperEvent::Lost(reason) => metrics.lease_losses.with_label_values(&[reason.as_str()]).inc(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{config::Config, context::Settings};
    use clap::Parser;
    use streamfleet_registry::{KeyHashSecret, KeyHasher, MemoryRegistry, OperatorRegistry, StreamId, TakeoverPolicy};

    const RTMP: IngestProtocol = IngestProtocol::Rtmp;

    async fn ctx(policy: TakeoverPolicy, extra: &[&str]) -> Arc<Context> {
        let mut args = vec!["streamfleet-edge", "--streams", "unused.yaml", "--edge-id", "e1"];
        args.extend_from_slice(extra);
        let config = Config::parse_from(args);
        let reg = Arc::new(MemoryRegistry::new());
        let rec = StreamRecord {
            id: StreamId::new("default", "demo"),
            key_hash: KeyHash::of_key("k"),
            key_scheme: streamfleet_registry::KeyScheme::Sha256,
            playback_name: "demo".into(),
            enabled: true,
            max_viewers: None,
            takeover: policy,
            generation: 1,
            srt_passphrase: None,
        };
        reg.put_stream(&rec).await.unwrap();
        let (_tx, rx) = tokio::sync::watch::channel(false);
        Context::new(Settings::from_config(&config), reg, Arc::new(Metrics::new().unwrap()), rx)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_acquire_whose_reply_came_too_late_is_still_this_admissions_lease() {
        // Real Redis behind a proxy: the acquire script runs and takes the lease, its reply
        // never arrives, the Redis link times out (500 ms) and admission asks again. With a new
        // token per ask the lease would be "already being published on this edge" until its
        // TTL ran out; with one token per admission the second ask finds it already its own.
        use streamfleet_registry::{
            AcquireOptions, EdgeRegistry, LeaseTiming, RegistryStatus,
            redis::{RedisConfig, RedisRegistry},
        };
        use streamfleet_testkit::{RedisServer, TcpProxy};
        let server = RedisServer::start();
        let upstream = server.addr().parse().expect("redis address");
        let proxy = TcpProxy::start(upstream).await.expect("proxy");
        let admin = RedisRegistry::connect(RedisConfig::new(server.url())).await.expect("admin registry");
        admin.end_quarantine().await.expect("end quarantine");
        let rec = StreamRecord {
            id: StreamId::new("default", "demo"),
            key_hash: KeyHash::of_key("k"),
            key_scheme: streamfleet_registry::KeyScheme::Sha256,
            playback_name: "demo".into(),
            enabled: true,
            max_viewers: None,
            takeover: TakeoverPolicy::Reject,
            generation: 1,
            srt_passphrase: None,
        };
        admin.put_stream(&rec).await.expect("put stream");
        // Load the acquire script into Redis first (an EVALSHA answered NOSCRIPT would not run).
        let warm = StreamRecord {
            id: StreamId::new("default", "warm"),
            key_hash: KeyHash::of_key("warm"),
            key_scheme: streamfleet_registry::KeyScheme::Sha256,
            playback_name: "warm".into(),
            ..rec.clone()
        };
        admin.put_stream(&warm).await.expect("put stream");
        let who = PublisherInfo { edge: "warm-up".into(), remote_addr: None, relay_addr: None, protocol: None };
        let lease = admin.acquire(&warm.key_hash, &who, &AcquireOptions::new(&LeaseTiming::default())).await;
        admin.release(&lease.expect("warm-up acquire")).await.expect("warm-up release");
        let edge_registry = RedisRegistry::connect(RedisConfig::new(proxy.url())).await.expect("edge registry");
        let config = Config::parse_from(["streamfleet-edge", "--streams", "unused.yaml"]);
        let mut settings = Settings::from_config(&config);
        // Only the acquire script carries the edge id (lookups carry a hex key hash).
        settings.edge_id = "edge-late-reply".into();
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let c = Context::new(settings, Arc::new(edge_registry), Arc::new(Metrics::new().unwrap()), rx);
        proxy.stall_reply_after(b"edge-late-reply");

        let deadline = Instant::now() + Duration::from_secs(6);
        let admitted = admit(&c, &legacy("k"), addr(), RTMP, deadline).await;
        assert!(proxy.stalled(), "the acquire's reply was not stalled");
        let admitted = admitted.unwrap_or_else(|r| panic!("refused its own lease: {}", r.description()));
        assert!(!admitted.lease.took_over);
        let status = admin.live_status(&rec.id).await.expect("live status");
        assert_eq!(status.holder.map(|h| (h.edge, h.protocol)), Some(("edge-late-reply".to_string(), Some(RTMP))));
        admitted.keeper.release().await.expect("release");
        assert!(admin.live_status(&rec.id).await.expect("live status").holder.is_none(), "the lease is released");
    }

    fn addr() -> SocketAddr {
        "127.0.0.1:4000".parse().unwrap()
    }

    /// The look-up hashes of `key` on an edge without a key-hash secret.
    fn legacy(key: &str) -> Vec<KeyCandidate> {
        KeyHasher::legacy().candidates(key)
    }

    fn keyed() -> KeyHasher {
        KeyHasher::new(Some(KeyHashSecret::new("admission-test-key-hash-secret").unwrap()))
    }

    #[tokio::test]
    async fn a_legacy_record_admits_its_key_during_the_migration_and_is_counted() {
        // The record `ctx` puts is a legacy one (unsalted SHA-256 of "k"); this edge has the
        // secret and still accepts legacy hashes.
        let c = ctx(TakeoverPolicy::Reject, &[]).await;
        let deadline = Instant::now() + Duration::from_secs(2);
        let admitted = admit(&c, &keyed().candidates("k"), addr(), RTMP, deadline).await.unwrap();
        assert_eq!(admitted.lease.key_hash, KeyHash::of_key("k"));
        assert_eq!(admitted.lease.key_hash_alt, Some(keyed().record_hash("k").hash), "the keyed hash rides along");
        assert_eq!(admitted.keeper.lease().key_hash_alt, admitted.lease.key_hash_alt, "the keeper reclaims with it");
        assert_eq!(c.metrics.publish_legacy_key_hash.get(), 1);
        admitted.keeper.release().await.unwrap();
        // Wrong keys stay wrong under both hashes.
        assert_eq!(
            admit(&c, &keyed().candidates("nope"), addr(), RTMP, deadline).await.err(),
            Some(Rejection::UnknownKey)
        );
        // After the migration (--legacy-key-hashes false) the legacy record no longer admits.
        let strict = keyed().accept_legacy(false).candidates("k");
        assert_eq!(admit(&c, &strict, addr(), RTMP, deadline).await.err(), Some(Rejection::UnknownKey));
        assert_eq!(c.metrics.publish_legacy_key_hash.get(), 1);
    }

    #[tokio::test]
    async fn a_keyed_record_admits_on_the_first_look_up_and_is_not_counted_as_legacy() {
        let c = ctx(TakeoverPolicy::Reject, &[]).await;
        let k = keyed().record_hash("keyed-key");
        let rec = StreamRecord {
            id: StreamId::new("default", "keyed"),
            key_hash: k.hash,
            key_scheme: k.scheme,
            playback_name: "keyed".into(),
            enabled: true,
            max_viewers: None,
            takeover: TakeoverPolicy::Reject,
            generation: 1,
            srt_passphrase: None,
        };
        let reg = MemoryRegistry::new();
        reg.put_stream(&rec).await.unwrap();
        let c = Context::new(c.settings.clone(), Arc::new(reg), Arc::new(Metrics::new().unwrap()), c.shutdown.clone());
        let deadline = Instant::now() + Duration::from_secs(2);
        // An edge without the secret cannot find it: the keyed hash is all the record holds.
        assert_eq!(admit(&c, &legacy("keyed-key"), addr(), RTMP, deadline).await.err(), Some(Rejection::UnknownKey));
        let admitted = admit(&c, &keyed().candidates("keyed-key"), addr(), RTMP, deadline).await.unwrap();
        assert_eq!((admitted.lease.key_hash, admitted.lease.key_hash_alt), (k.hash, None));
        assert_eq!(c.metrics.publish_legacy_key_hash.get(), 0);
        admitted.keeper.release().await.unwrap();
    }

    #[tokio::test]
    async fn unknown_key_and_busy_stream_are_refused() {
        let c = ctx(TakeoverPolicy::Reject, &[]).await;
        let deadline = Instant::now() + Duration::from_secs(2);
        assert_eq!(admit(&c, &legacy("nope"), addr(), RTMP, deadline).await.err(), Some(Rejection::UnknownKey));
        let first = admit(&c, &legacy("k"), addr(), RTMP, deadline).await.unwrap();
        let second = admit(&c, &legacy("k"), addr(), RTMP, deadline).await.err().unwrap();
        assert_eq!(second.reason(), "already_active");
        assert!(
            second.description().contains("already being published (over rtmp on edge"),
            "{}",
            second.description()
        );
        // Release frees it at once.
        first.keeper.release().await.unwrap();
        assert!(admit(&c, &legacy("k"), addr(), RTMP, deadline).await.is_ok());
    }

    #[tokio::test]
    async fn a_local_publisher_releasing_its_lease_is_waited_for_not_refused() {
        // Reject: a newcomer that finds the lease held would be refused at once, so only the
        // wait for the local release can admit it.
        let c = ctx(TakeoverPolicy::Reject, &[]).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        let first = admit(&c, &legacy("k"), addr(), RTMP, deadline).await.unwrap();
        let stream = c.hub.get_or_create(&first.record);
        let first_stream = first.lease.stream.clone();
        let (ending_tx, ending_rx) = tokio::sync::oneshot::channel();
        let holder = tokio::spawn(async move {
            let mut guard = stream.local_leases.hold();
            // While the publisher is live, it stays protected.
            ending_rx.await.unwrap();
            guard.releasing();
            // Release only once the newcomer is waiting on it.
            while stream.local_leases.followers() == 0 {
                assert!(Instant::now() < deadline, "the newcomer never waited for the release");
                tokio::task::yield_now().await;
            }
            first.keeper.release().await.unwrap();
            drop(guard);
        });
        // The holder task registers before this first attempt (it runs as soon as we yield).
        while c.hub.get(&first_stream).is_none_or(|s| s.local_leases.counts().live == 0) {
            tokio::task::yield_now().await;
        }
        let live = admit(&c, &legacy("k"), addr(), RTMP, deadline).await.err().unwrap();
        assert_eq!(live.reason(), "already_active");
        ending_tx.send(()).unwrap();
        let local = c.hub.get(&first_stream).unwrap();
        while local.local_leases.counts().releasing == 0 {
            tokio::task::yield_now().await;
        }
        drop(local);
        let second = admit(&c, &legacy("k"), addr(), RTMP, deadline).await.unwrap();
        assert!(!second.lease.took_over, "admitted after the release, not by a takeover");
        holder.await.unwrap();
    }

    #[tokio::test]
    async fn a_local_publisher_ending_just_after_the_newcomer_arrives_is_waited_for() {
        // Reject, and the local holder is still live when the newcomer asks: the encoder that
        // reconnected at once, before this edge read the old connection's close.
        let c = ctx(TakeoverPolicy::Reject, &[]).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        let first = admit(&c, &legacy("k"), addr(), RTMP, deadline).await.unwrap();
        let stream = c.hub.get_or_create(&first.record);
        let (held_tx, held_rx) = tokio::sync::oneshot::channel();
        let holder = {
            let stream = stream.clone();
            tokio::spawn(async move {
                let mut guard = stream.local_leases.hold();
                held_tx.send(()).unwrap();
                // The close is read only once the newcomer is already waiting.
                while stream.local_leases.followers() == 0 {
                    assert!(Instant::now() < deadline, "the newcomer never waited for the local holder");
                    tokio::task::yield_now().await;
                }
                guard.releasing();
                first.keeper.release().await.unwrap();
                drop(guard);
            })
        };
        held_rx.await.unwrap();
        let t0 = Instant::now();
        let second = admit(&c, &legacy("k"), addr(), RTMP, deadline).await.unwrap();
        assert!(!second.lease.took_over, "admitted after the release, not by a takeover");
        assert!(t0.elapsed() < LOCAL_HOLDER_GRACE, "{:?}", t0.elapsed());
        holder.await.unwrap();
        // A holder that stays live is still refused, after the grace.
        let _live = stream.local_leases.hold();
        let t0 = Instant::now();
        let third = admit(&c, &legacy("k"), addr(), RTMP, deadline).await.err().unwrap();
        assert_eq!(third.reason(), "already_active");
        assert!(t0.elapsed() >= LOCAL_HOLDER_GRACE, "{:?}", t0.elapsed());
    }

    #[tokio::test]
    async fn replace_idle_admits_once_holder_reports_idle() {
        let c = ctx(TakeoverPolicy::ReplaceIdle, &["--takeover-idle-threshold", "400ms"]).await;
        let deadline = Instant::now() + Duration::from_secs(3);
        let first = admit(&c, &legacy("k"), addr(), RTMP, deadline).await.unwrap();
        let lease = first.lease.clone();
        let reg = c.registry.clone();
        let marker = tokio::spawn(async move {
            sleep(Duration::from_millis(100)).await;
            reg.update_holder(
                &lease,
                streamfleet_registry::HolderUpdate { idle: Some(true), ingest_kbps: None, ..Default::default() },
            )
            .await
        });
        let t0 = Instant::now();
        let second = admit(&c, &legacy("k"), addr(), RTMP, deadline).await.unwrap();
        marker.await.unwrap().unwrap();
        assert!(second.lease.took_over);
        // Idle reported at ~100 ms, threshold 400 ms minus the 100 ms reporting delay.
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_millis(350) && waited < Duration::from_millis(1500), "{waited:?}");
    }
}
