//! The registry contract, written once and run against both backends: every case below is a
//! `#[tokio::test]` in `memory::` (the in-memory registry) and in `redis::` (a private
//! redis-server per test). An edge or the operator must not be able to tell them apart.

mod common;

use std::time::Duration;

use common::*;
use streamfleet_registry::{
    ConflictKind, HolderMedia, HolderUpdate, IngestProtocol, KeyHashSecret, KeyHasher, KeyScheme, Lease, LiveChange,
    LossReason, RegistryError, RenewOutcome, SharedRegistry, SrtPassphrase, StreamRecord, TakeoverPolicy,
};

/// A hasher with a fleet secret, as operator and edges have once configured.
fn keyed() -> KeyHasher {
    KeyHasher::new(Some(KeyHashSecret::new("contract-test-key-hash-secret").unwrap()))
}

/// Instantiates every case for both backends.
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    let backend = crate::common::Backend::memory();
                    super::cases::$case(backend.registry()).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $case() {
                    let backend = crate::common::Backend::redis().await;
                    super::cases::$case(backend.registry()).await;
                }
            )*
        }
    };
}

contract!(
    put_get_list_delete,
    invalid_playback_name_is_refused,
    conflicts_on_key_and_playback_name,
    changing_key_or_playback_name_frees_the_old_ones,
    lookup_errors_name_the_problem,
    second_publisher_is_already_active_and_sees_the_holder,
    release_is_compare_and_delete,
    renew_outcomes,
    replace_idle_takes_over_an_idle_holder,
    reject_never_replaces,
    replace_honours_the_takeover_cooldown,
    update_holder_is_fenced,
    viewers_sum_over_edges_and_expire_per_edge,
    viewer_slots_hold_max_across_edges_and_expire_per_player,
    live_status_reports_the_holder,
    revoke_is_seen_at_the_next_renew,
    fencing_tokens_strictly_increase,
    delete_stream_drops_its_lease_and_viewers,
    a_lease_expires_after_its_ttl,
    reclaim_takes_back_a_free_stream_only,
    epoch_is_stable_while_the_backend_runs,
    keyed_records_are_found_by_their_keyed_hash_only,
    a_reclaim_follows_a_record_rehashed_from_its_legacy_hash,
    live_changes_are_signalled_once_per_change,
    the_holder_records_the_ingest_protocol,
    a_record_carries_its_srt_passphrase_until_it_is_removed,
);

fn assert_conflict(r: Result<(), RegistryError>, what: ConflictKind, owner: &str) {
    match r {
        Err(RegistryError::Conflict { what: w, owner: o }) => {
            assert_eq!(w, what);
            assert_eq!(o, id(owner));
        }
        other => panic!("expected a conflict on {what}, got {other:?}"),
    }
}

async fn holder_edge(reg: &SharedRegistry, name: &str) -> Option<String> {
    reg.live_status(&id(name)).await.unwrap().holder.map(|h| h.edge)
}

/// The next stream id on the change feed, skipping the probe and resyncs; panics after 5 s.
async fn next_change(feed: &mut futures::stream::BoxStream<'static, LiveChange>) -> LiveChange {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, futures::StreamExt::next(feed)).await {
            Err(_) => panic!("no change signalled within 5 s"),
            Ok(None) => panic!("the change feed ended"),
            Ok(Some(LiveChange::Stream(s) | LiveChange::Viewers(s))) if s == id("probe") => {}
            Ok(Some(LiveChange::Resync)) => {}
            Ok(Some(change)) => return change,
        }
    }
}

/// Waits until `feed` delivers: a Redis subscription is opened when the feed is first polled
/// and misses what was published before, so a probe stream's viewer count is changed until its
/// signal comes through.
async fn feed_is_open(reg: &SharedRegistry, feed: &mut futures::stream::BoxStream<'static, LiveChange>) {
    for n in 1..=50u32 {
        reg.set_viewers("probe-edge", &[(id("probe"), n)], Duration::from_secs(30)).await.unwrap();
        if let Ok(Some(LiveChange::Viewers(s))) =
            tokio::time::timeout(Duration::from_millis(100), futures::StreamExt::next(feed)).await
            && s == id("probe")
        {
            return;
        }
    }
    panic!("the change feed never delivered the probe's signal");
}

mod cases {
    use super::*;

    pub async fn a_record_carries_its_srt_passphrase_until_it_is_removed(reg: SharedRegistry) {
        let plain = rec("alpha");
        let secure =
            StreamRecord { srt_passphrase: Some(SrtPassphrase::new("alpha-srt-passphrase").unwrap()), ..plain.clone() };
        reg.put_stream(&secure).await.unwrap();
        assert_eq!(reg.get_stream(&secure.id).await.unwrap(), Some(secure.clone()));
        assert_eq!(reg.lookup(&secure.key_hash).await.unwrap(), secure, "publishers' look-up has it");
        assert_eq!(reg.lookup_playback("alpha").await.unwrap(), secure, "players' look-up has it");
        assert_eq!(reg.list_streams().await.unwrap(), vec![secure.clone()]);
        // Removed from the Secret: the record is plain again.
        reg.put_stream(&plain).await.unwrap();
        assert_eq!(reg.lookup_playback("alpha").await.unwrap().srt_passphrase, None);
        assert_eq!(reg.get_stream(&plain.id).await.unwrap(), Some(plain));
    }

    pub async fn the_holder_records_the_ingest_protocol(reg: SharedRegistry) {
        let a = rec_with("alpha", TakeoverPolicy::Reject);
        reg.put_stream(&a).await.unwrap();
        let mut lease = reg.acquire(&a.key_hash, &who_over("edge-1", IngestProtocol::Srt), &opts()).await.unwrap();
        assert_eq!(lease.holder.protocol, Some(IngestProtocol::Srt));
        let seen = reg.live_status(&a.id).await.unwrap().holder.unwrap();
        assert_eq!(seen.protocol, Some(IngestProtocol::Srt), "live status shows it");
        // A holder report (bitrate, media) leaves it alone.
        reg.update_holder(&lease, HolderUpdate { ingest_kbps: Some(900), ..HolderUpdate::default() }).await.unwrap();
        match reg.acquire(&a.key_hash, &who_over("edge-2", IngestProtocol::Rtmps), &opts()).await {
            Err(RegistryError::AlreadyActive { holder, .. }) => {
                assert_eq!(holder.protocol, Some(IngestProtocol::Srt), "a refused newcomer sees it")
            }
            other => panic!("expected AlreadyActive, got {other:?}"),
        }
        // A reclaim (the registry lost the lease) keeps it.
        assert!(reg.release(&lease).await.unwrap());
        reg.reclaim(&mut lease, opts().ttl).await.unwrap();
        assert_eq!(reg.live_status(&a.id).await.unwrap().holder.unwrap().protocol, Some(IngestProtocol::Srt));
        assert!(reg.release(&lease).await.unwrap());
        // A publisher that does not say (an edge before the field existed) is unknown, and does
        // not inherit the previous holder's.
        let plain = reg.acquire(&a.key_hash, &who("edge-3"), &opts()).await.unwrap();
        assert_eq!(plain.holder.protocol, None);
        let seen = reg.live_status(&a.id).await.unwrap().holder.unwrap();
        assert_eq!((seen.edge.as_str(), seen.protocol), ("edge-3", None));
        assert!(reg.release(&plain).await.unwrap());
        let rtmps = reg.acquire(&a.key_hash, &who_over("edge-1", IngestProtocol::Rtmps), &opts()).await.unwrap();
        assert_eq!(reg.live_status(&a.id).await.unwrap().holder.unwrap().protocol, Some(IngestProtocol::Rtmps));
        assert!(reg.release(&rtmps).await.unwrap());
    }

    pub async fn live_changes_are_signalled_once_per_change(reg: SharedRegistry) {
        let mut feed = reg.changes();
        feed_is_open(&reg, &mut feed).await;
        let (a, b) = (rec("alpha"), rec("beta"));
        reg.put_stream(&a).await.unwrap();
        reg.put_stream(&b).await.unwrap();
        let lease = reg.acquire(&a.key_hash, &who("edge-1"), &opts()).await.unwrap();
        assert_eq!(next_change(&mut feed).await, LiveChange::Stream(a.id.clone()), "a publisher admitted");

        let ttl = Duration::from_secs(30);
        reg.set_viewers("edge-1", &[(a.id.clone(), 3)], ttl).await.unwrap();
        assert_eq!(next_change(&mut feed).await, LiveChange::Viewers(a.id.clone()), "viewers 0 → 3");
        // An unchanged report (edges repeat theirs) and a figure alone signal nothing: the next
        // signal is beta's.
        reg.set_viewers("edge-1", &[(a.id.clone(), 3)], ttl).await.unwrap();
        reg.update_holder(&lease, HolderUpdate { ingest_kbps: Some(2500), ..HolderUpdate::default() }).await.unwrap();
        let b_lease = reg.acquire(&b.key_hash, &who("edge-2"), &opts()).await.unwrap();
        assert_eq!(
            next_change(&mut feed).await,
            LiveChange::Stream(b.id.clone()),
            "only beta's admission was signalled"
        );

        reg.update_holder(&lease, HolderUpdate { idle: Some(true), ..HolderUpdate::default() }).await.unwrap();
        assert_eq!(next_change(&mut feed).await, LiveChange::Stream(a.id.clone()), "the holder went idle");
        let healthy = HolderMedia { healthy: true, ..HolderMedia::default() };
        reg.update_holder(&lease, HolderUpdate { media: Some(healthy.clone()), ..HolderUpdate::default() })
            .await
            .unwrap();
        assert_eq!(next_change(&mut feed).await, LiveChange::Stream(a.id.clone()), "a first health verdict");
        let stalled = HolderMedia { healthy: false, reason: Some("Stalled".into()), ..HolderMedia::default() };
        reg.update_holder(&lease, HolderUpdate { media: Some(healthy), ..HolderUpdate::default() }).await.unwrap();
        reg.update_holder(&lease, HolderUpdate { media: Some(stalled), ..HolderUpdate::default() }).await.unwrap();
        assert_eq!(
            next_change(&mut feed).await,
            LiveChange::Stream(a.id.clone()),
            "the verdict turned (the same verdict again was silent)"
        );
        reg.set_viewers("edge-1", &[(b.id.clone(), 1)], ttl).await.unwrap();
        assert_eq!(
            next_change(&mut feed).await,
            LiveChange::Viewers(b.id.clone()),
            "nothing else of alpha's was signalled"
        );

        assert!(reg.release(&lease).await.unwrap());
        assert_eq!(next_change(&mut feed).await, LiveChange::Stream(a.id.clone()), "released");
        assert!(reg.revoke(&b.id).await.unwrap());
        assert_eq!(next_change(&mut feed).await, LiveChange::Stream(b.id.clone()), "revoked");
        // Revoking a free stream changes nothing; the next signal is alpha's new admission.
        assert!(!reg.revoke(&b.id).await.unwrap());
        drop(b_lease);
        reg.acquire(&a.key_hash, &who("edge-1"), &opts()).await.unwrap();
        assert_eq!(next_change(&mut feed).await, LiveChange::Stream(a.id.clone()));
    }

    pub async fn put_get_list_delete(reg: SharedRegistry) {
        let (a, b) = (rec("alpha"), rec("beta"));
        reg.put_stream(&b).await.unwrap();
        reg.put_stream(&a).await.unwrap();
        assert_eq!(reg.get_stream(&a.id).await.unwrap(), Some(a.clone()));
        assert_eq!(reg.list_streams().await.unwrap(), vec![a.clone(), b.clone()], "sorted by id");

        // Replacing keeps one record per id and every field round-trips.
        let a2 = StreamRecord {
            generation: 2,
            max_viewers: None,
            takeover: TakeoverPolicy::Reject,
            enabled: false,
            ..a.clone()
        };
        reg.put_stream(&a2).await.unwrap();
        assert_eq!(reg.get_stream(&a.id).await.unwrap(), Some(a2.clone()));
        assert_eq!(reg.list_streams().await.unwrap(), vec![a2, b.clone()]);

        assert!(reg.delete_stream(&a.id).await.unwrap());
        assert!(!reg.delete_stream(&a.id).await.unwrap(), "second delete finds nothing");
        assert_eq!(reg.get_stream(&a.id).await.unwrap(), None);
        assert_eq!(reg.list_streams().await.unwrap(), vec![b]);
        assert!(matches!(reg.lookup(&a.key_hash).await, Err(RegistryError::NotFound { .. })));
        assert!(matches!(reg.lookup_playback("alpha").await, Err(RegistryError::NotFound { .. })));
    }

    pub async fn invalid_playback_name_is_refused(reg: SharedRegistry) {
        let bad = StreamRecord { playback_name: "Not_A_Label".into(), ..rec("alpha") };
        assert!(matches!(reg.put_stream(&bad).await, Err(RegistryError::Invalid(m)) if m.contains("Not_A_Label")));
        assert_eq!(reg.list_streams().await.unwrap(), vec![], "nothing written");
    }

    pub async fn conflicts_on_key_and_playback_name(reg: SharedRegistry) {
        let a = rec("alpha");
        reg.put_stream(&a).await.unwrap();
        let same_key = StreamRecord { key_hash: a.key_hash, ..rec("beta") };
        assert_conflict(reg.put_stream(&same_key).await, ConflictKind::PublishKey(a.key_hash), "alpha");
        let same_name = StreamRecord { playback_name: "alpha".into(), ..rec("beta") };
        assert_conflict(reg.put_stream(&same_name).await, ConflictKind::PlaybackName("alpha".into()), "alpha");
        // A refused record leaves no trace and the owner is intact.
        assert_eq!(reg.get_stream(&id("beta")).await.unwrap(), None);
        assert_eq!(reg.lookup(&a.key_hash).await.unwrap(), a);
        assert_eq!(reg.lookup_playback("alpha").await.unwrap(), a);
    }

    pub async fn changing_key_or_playback_name_frees_the_old_ones(reg: SharedRegistry) {
        let a = rec("alpha");
        reg.put_stream(&a).await.unwrap();
        let moved = StreamRecord { key_hash: key("rotated"), playback_name: "alpha-tv".into(), ..a.clone() };
        reg.put_stream(&moved).await.unwrap();
        assert!(matches!(reg.lookup(&a.key_hash).await, Err(RegistryError::NotFound { .. })));
        assert!(matches!(reg.lookup_playback("alpha").await, Err(RegistryError::NotFound { .. })));
        assert_eq!(reg.lookup(&key("rotated")).await.unwrap(), moved);
        assert_eq!(reg.lookup_playback("alpha-tv").await.unwrap(), moved);
        // Another stream may now take the freed key and name.
        let b = StreamRecord { key_hash: a.key_hash, playback_name: "alpha".into(), ..rec("beta") };
        reg.put_stream(&b).await.unwrap();
        assert_eq!(reg.lookup(&a.key_hash).await.unwrap(), b);
    }

    pub async fn lookup_errors_name_the_problem(reg: SharedRegistry) {
        let unknown = key("nobody");
        match reg.lookup(&unknown).await {
            Err(RegistryError::NotFound { what }) => assert!(what.contains(&unknown.short()), "{what}"),
            other => panic!("expected NotFound, got {other:?}"),
        }
        assert!(matches!(reg.acquire(&unknown, &who("e1"), &opts()).await, Err(RegistryError::NotFound { .. })));
        assert!(
            matches!(reg.lookup_playback("nope").await, Err(RegistryError::NotFound { what }) if what.contains("nope"))
        );

        let off = StreamRecord { enabled: false, ..rec("off") };
        reg.put_stream(&off).await.unwrap();
        assert!(matches!(reg.lookup(&off.key_hash).await, Err(RegistryError::Disabled { stream }) if stream == off.id));
        assert!(matches!(
            reg.acquire(&off.key_hash, &who("e1"), &opts()).await,
            Err(RegistryError::Disabled { stream }) if stream == off.id
        ));
        // Players get the record and see for themselves that it is disabled.
        assert_eq!(reg.lookup_playback("off").await.unwrap(), off);
        assert_eq!(reg.live_status(&off.id).await.unwrap().holder, None, "a refused acquire leaves no lease");
    }

    pub async fn second_publisher_is_already_active_and_sees_the_holder(reg: SharedRegistry) {
        let a = rec("alpha");
        reg.put_stream(&a).await.unwrap();
        let first = reg.acquire(&a.key_hash, &who("edge-1"), &opts()).await.unwrap();
        assert_eq!(first.stream, a.id);
        assert_eq!(first.key_hash, a.key_hash);
        assert!(!first.took_over);
        assert_eq!(first.holder.edge, "edge-1");
        assert_eq!(first.holder.relay_addr, who("edge-1").relay_addr);
        assert_eq!(first.holder.fence, first.fence);
        assert!(first.holder.since_ms > 0);

        match reg.acquire(&a.key_hash, &who("edge-2"), &opts()).await {
            Err(RegistryError::AlreadyActive { stream, holder, retry_in }) => {
                assert_eq!(stream, a.id);
                assert_eq!(holder, first.holder, "losers see exactly who holds it");
                // ReplaceIdle with a holder that is not idle: asking again after one threshold may help.
                assert_eq!(retry_in, Some(opts().idle_threshold));
            }
            other => panic!("expected AlreadyActive, got {other:?}"),
        }
        // The refused attempt changed nothing.
        assert_eq!(reg.renew(&first, opts().ttl).await.unwrap(), RenewOutcome::Renewed);
        assert_eq!(holder_edge(&reg, "alpha").await.as_deref(), Some("edge-1"));
        assert_eq!(reg.lookup(&a.key_hash).await.unwrap(), a);
    }

    pub async fn release_is_compare_and_delete(reg: SharedRegistry) {
        let a = rec("alpha");
        reg.put_stream(&a).await.unwrap();
        let first = reg.acquire(&a.key_hash, &who("edge-1"), &opts()).await.unwrap();
        let forged = Lease { token: "0123456789abcdef".into(), ..first.clone() };
        assert!(!reg.release(&forged).await.unwrap(), "a wrong token frees nothing");
        assert_eq!(reg.renew(&first, opts().ttl).await.unwrap(), RenewOutcome::Renewed);

        assert!(reg.release(&first).await.unwrap());
        assert!(!reg.release(&first).await.unwrap(), "releasing twice is safe");
        assert_eq!(holder_edge(&reg, "alpha").await, None);

        // Free at once for the next publisher; the stale lease cannot free the new one.
        let second = reg.acquire(&a.key_hash, &who("edge-2"), &opts()).await.unwrap();
        assert!(!second.took_over);
        assert!(!reg.release(&first).await.unwrap());
        assert_eq!(reg.live_status(&a.id).await.unwrap().holder.map(|h| h.fence), Some(second.fence));

        // Releasing on a stream that was never acquired at all.
        let b = rec("beta");
        reg.put_stream(&b).await.unwrap();
        let never = Lease { stream: b.id.clone(), key_hash: b.key_hash, ..first };
        assert!(!reg.release(&never).await.unwrap());
        assert_eq!(holder_edge(&reg, "beta").await, None);
    }

    pub async fn renew_outcomes(reg: SharedRegistry) {
        let a = rec_with("alpha", TakeoverPolicy::Replace);
        reg.put_stream(&a).await.unwrap();
        let first = reg.acquire(&a.key_hash, &who("edge-1"), &opts()).await.unwrap();
        assert_eq!(reg.renew(&first, opts().ttl).await.unwrap(), RenewOutcome::Renewed);

        let second = reg.acquire(&a.key_hash, &who("edge-2"), &opts()).await.unwrap();
        assert!(second.took_over);
        assert_eq!(reg.renew(&first, opts().ttl).await.unwrap(), RenewOutcome::HeldByOther);
        assert_eq!(reg.renew(&second, opts().ttl).await.unwrap(), RenewOutcome::Renewed);

        assert!(reg.release(&second).await.unwrap());
        assert_eq!(reg.renew(&second, opts().ttl).await.unwrap(), RenewOutcome::Missing { registry_restarted: false });
        assert_eq!(holder_edge(&reg, "alpha").await, None, "a failed renew does not resurrect the lease");
    }

    pub async fn replace_idle_takes_over_an_idle_holder(reg: SharedRegistry) {
        let a = rec_with("alpha", TakeoverPolicy::ReplaceIdle);
        reg.put_stream(&a).await.unwrap();
        let o = opts(); // idle threshold 1 s
        let first = reg.acquire(&a.key_hash, &who("edge-1"), &o).await.unwrap();
        reg.update_holder(&first, HolderUpdate { idle: Some(true), ingest_kbps: None, ..Default::default() })
            .await
            .unwrap();
        assert!(reg.live_status(&a.id).await.unwrap().holder.unwrap().idle_since_ms.is_some());

        // Idle, but not yet for the threshold: refused with the time left.
        match reg.acquire(&a.key_hash, &who("edge-2"), &o).await {
            Err(RegistryError::AlreadyActive { holder, retry_in: Some(left), .. }) => {
                assert_eq!(holder.edge, "edge-1");
                assert!(holder.idle_since_ms.is_some());
                assert!(left <= o.idle_threshold, "{left:?}");
            }
            other => panic!("expected AlreadyActive with retry_in, got {other:?}"),
        }
        let second = poll_until("the idle holder to be replaceable", Duration::from_secs(5), || async {
            reg.acquire(&a.key_hash, &who("edge-2"), &o).await.ok()
        })
        .await;
        assert!(second.took_over);
        assert!(second.fence > first.fence);
        assert_eq!(reg.renew(&first, o.ttl).await.unwrap(), RenewOutcome::HeldByOther);
        assert!(matches!(
            reg.update_holder(&first, HolderUpdate::default()).await,
            Err(RegistryError::LeaseLost { reason: LossReason::Stolen, .. })
        ));
        let holder = reg.live_status(&a.id).await.unwrap().holder.unwrap();
        assert_eq!((holder.edge.as_str(), holder.idle_since_ms), ("edge-2", None), "the new holder starts active");
    }

    pub async fn reject_never_replaces(reg: SharedRegistry) {
        let a = rec_with("alpha", TakeoverPolicy::Reject);
        reg.put_stream(&a).await.unwrap();
        let o = streamfleet_registry::AcquireOptions { idle_threshold: Duration::ZERO, ..opts() };
        let first = reg.acquire(&a.key_hash, &who("edge-1"), &o).await.unwrap();
        reg.update_holder(&first, HolderUpdate { idle: Some(true), ingest_kbps: None, ..Default::default() })
            .await
            .unwrap();
        for _ in 0..3 {
            match reg.acquire(&a.key_hash, &who("edge-2"), &o).await {
                Err(RegistryError::AlreadyActive { holder, retry_in, .. }) => {
                    assert_eq!(holder.edge, "edge-1");
                    assert_eq!(retry_in, None, "waiting never helps under Reject");
                }
                other => panic!("expected AlreadyActive, got {other:?}"),
            }
        }
        assert_eq!(reg.renew(&first, o.ttl).await.unwrap(), RenewOutcome::Renewed);
    }

    pub async fn replace_honours_the_takeover_cooldown(reg: SharedRegistry) {
        let a = rec_with("alpha", TakeoverPolicy::Replace);
        reg.put_stream(&a).await.unwrap();
        let o = streamfleet_registry::AcquireOptions { takeover_cooldown: Duration::from_millis(800), ..opts() };
        let first = reg.acquire(&a.key_hash, &who("edge-1"), &o).await.unwrap();
        let second = reg.acquire(&a.key_hash, &who("edge-2"), &o).await.unwrap();
        assert!(second.took_over, "Replace takes over a live holder at once");
        match reg.acquire(&a.key_hash, &who("edge-3"), &o).await {
            Err(RegistryError::AlreadyActive { holder, retry_in: Some(left), .. }) => {
                assert_eq!(holder.edge, "edge-2");
                assert!(left > Duration::ZERO && left <= o.takeover_cooldown, "{left:?}");
            }
            other => panic!("expected the cooldown to refuse, got {other:?}"),
        }
        let third = poll_until("the takeover cooldown to end", Duration::from_secs(5), || async {
            reg.acquire(&a.key_hash, &who("edge-3"), &o).await.ok()
        })
        .await;
        assert!(third.took_over);
        assert!(first.fence < second.fence && second.fence < third.fence);
        assert_eq!(reg.renew(&second, o.ttl).await.unwrap(), RenewOutcome::HeldByOther);
    }

    pub async fn update_holder_is_fenced(reg: SharedRegistry) {
        let a = rec("alpha");
        reg.put_stream(&a).await.unwrap();
        let lease = reg.acquire(&a.key_hash, &who("edge-1"), &opts()).await.unwrap();
        reg.update_holder(&lease, HolderUpdate { idle: None, ingest_kbps: Some(2500), ..Default::default() })
            .await
            .unwrap();
        let h = reg.live_status(&a.id).await.unwrap().holder.unwrap();
        assert_eq!((h.ingest_kbps, h.idle_since_ms), (Some(2500), None));

        reg.update_holder(&lease, HolderUpdate { idle: Some(true), ingest_kbps: None, ..Default::default() })
            .await
            .unwrap();
        let idle_since = reg.live_status(&a.id).await.unwrap().holder.unwrap().idle_since_ms;
        assert!(idle_since.is_some());
        reg.update_holder(&lease, HolderUpdate { idle: Some(true), ingest_kbps: Some(10), ..Default::default() })
            .await
            .unwrap();
        let h = reg.live_status(&a.id).await.unwrap().holder.unwrap();
        assert_eq!(h.idle_since_ms, idle_since, "idleness counts from its first report");
        assert_eq!(h.ingest_kbps, Some(10));
        reg.update_holder(&lease, HolderUpdate { idle: Some(false), ingest_kbps: None, ..Default::default() })
            .await
            .unwrap();
        assert_eq!(reg.live_status(&a.id).await.unwrap().holder.unwrap().idle_since_ms, None);

        // The encoder summary is stored as reported and kept until the next report carries one.
        let media = HolderMedia {
            video_codec: Some("h264".into()),
            width: Some(1280),
            height: Some(720),
            fps_centi: Some(2997),
            keyframe_interval_ms: Some(8000),
            audio_codec: Some("aac".into()),
            healthy: false,
            reason: Some("KeyframeInterval".into()),
            message: Some("keyframe interval is 8.0 s; set 2 s".into()),
        };
        let update = HolderUpdate { media: Some(media.clone()), ..Default::default() };
        reg.update_holder(&lease, update).await.unwrap();
        reg.update_holder(&lease, HolderUpdate { ingest_kbps: Some(10), ..Default::default() }).await.unwrap();
        assert_eq!(reg.live_status(&a.id).await.unwrap().holder.unwrap().media.as_deref(), Some(&media));
        // One that cannot be stored whole is dropped, never half-written.
        let huge = HolderMedia { message: Some("x".repeat(HolderMedia::MAX_ENCODED)), ..media.clone() };
        reg.update_holder(&lease, HolderUpdate { media: Some(huge), ..Default::default() }).await.unwrap();
        assert_eq!(reg.live_status(&a.id).await.unwrap().holder.unwrap().media.as_deref(), Some(&media));

        let forged = Lease { token: "not-the-token".into(), ..lease.clone() };
        assert!(matches!(
            reg.update_holder(&forged, HolderUpdate { idle: Some(true), ingest_kbps: Some(1), ..Default::default() })
                .await,
            Err(RegistryError::LeaseLost { reason: LossReason::Stolen, .. })
        ));
        let h = reg.live_status(&a.id).await.unwrap().holder.unwrap();
        assert_eq!((h.ingest_kbps, h.idle_since_ms), (Some(10), None), "a stale holder cannot write");

        assert!(reg.release(&lease).await.unwrap());
        assert!(matches!(
            reg.update_holder(&lease, HolderUpdate::default()).await,
            Err(RegistryError::LeaseLost { reason: LossReason::Revoked, .. })
        ));
        assert_eq!(holder_edge(&reg, "alpha").await, None, "an update never recreates a holder");
    }

    pub async fn viewer_slots_hold_max_across_edges_and_expire_per_player(reg: SharedRegistry) {
        let (a, b) = (rec("alpha"), rec("beta"));
        reg.put_stream(&a).await.unwrap();
        reg.put_stream(&b).await.unwrap();
        let long = Duration::from_secs(30);
        let short = Duration::from_millis(400);
        // Two edges race for 3 slots: exactly 3 of 8 get one, whatever the interleaving.
        let asks: Vec<_> = (0..8)
            .map(|i| {
                let reg = reg.clone();
                let id = a.id.clone();
                tokio::spawn(async move { reg.reserve_viewer(&id, &format!("edge-{}/p{i}", i % 2), 3, long).await })
            })
            .collect();
        let mut granted = Vec::new();
        for ask in asks {
            granted.push(ask.await.unwrap().unwrap());
        }
        assert_eq!(granted.iter().filter(|g| **g).count(), 3, "{granted:?}");
        let holders: Vec<String> = (0..8).filter(|i| granted[*i]).map(|i| format!("edge-{}/p{i}", i % 2)).collect();
        // Asking again for a held slot refreshes it (a retried ask), it does not take another.
        assert!(reg.reserve_viewer(&a.id, &holders[0], 3, long).await.unwrap());
        assert!(!reg.reserve_viewer(&a.id, "edge-1/new", 3, long).await.unwrap());
        // Slots are per stream.
        assert!(reg.reserve_viewer(&b.id, "edge-1/new", 1, long).await.unwrap());
        assert!(!reg.reserve_viewer(&b.id, "edge-0/other", 1, long).await.unwrap());

        // A player leaving frees its slot at once; releasing twice is harmless.
        assert!(reg.release_viewer(&a.id, &holders[1]).await.unwrap());
        assert!(!reg.release_viewer(&a.id, &holders[1]).await.unwrap());
        assert!(reg.reserve_viewer(&a.id, "edge-1/new", 3, long).await.unwrap());
        assert!(!reg.reserve_viewer(&a.id, "edge-0/late", 3, long).await.unwrap());

        // A slot of an edge that stopped renewing (it died) expires; renewed ones stay, and a
        // renew never brings back a released slot.
        assert!(reg.release_viewer(&a.id, "edge-1/new").await.unwrap());
        assert!(reg.reserve_viewer(&a.id, "edge-9/dying", 3, short).await.unwrap());
        assert!(!reg.reserve_viewer(&a.id, "edge-0/late", 3, long).await.unwrap());
        reg.renew_viewers(&[(a.id.clone(), holders[0].clone()), (a.id.clone(), "edge-1/new".into())], long)
            .await
            .unwrap();
        poll_until("the dead edge's slot to expire", Duration::from_secs(5), || async {
            reg.reserve_viewer(&a.id, "edge-0/late", 3, long).await.unwrap().then_some(())
        })
        .await;
        assert!(!reg.reserve_viewer(&a.id, "edge-0/later", 3, long).await.unwrap(), "the renewed slots held");
        reg.renew_viewers(&[], long).await.unwrap();
    }

    pub async fn viewers_sum_over_edges_and_expire_per_edge(reg: SharedRegistry) {
        let (a, b) = (rec("alpha"), rec("beta"));
        reg.put_stream(&a).await.unwrap();
        reg.put_stream(&b).await.unwrap();
        let long = Duration::from_secs(30);
        reg.set_viewers("edge-1", &[(a.id.clone(), 3), (b.id.clone(), 1)], long).await.unwrap();
        reg.set_viewers("edge-2", &[(a.id.clone(), 4)], Duration::from_millis(400)).await.unwrap();
        let s = reg.live_status(&a.id).await.unwrap();
        assert_eq!(s.viewers, 7);
        assert_eq!(s.viewers_by_edge, [("edge-1".to_string(), 3), ("edge-2".to_string(), 4)].into());
        assert_eq!(reg.live_status(&b.id).await.unwrap().viewers, 1);

        // edge-2 stops reporting (it crashed): its viewers vanish by themselves, edge-1's stay.
        let s = poll_until("edge-2's viewer report to expire", Duration::from_secs(5), || async {
            let s = reg.live_status(&a.id).await.unwrap();
            (s.viewers == 3).then_some(s)
        })
        .await;
        assert_eq!(s.viewers_by_edge, [("edge-1".to_string(), 3)].into());

        // A new report replaces the edge's previous one, per stream.
        reg.set_viewers("edge-1", &[(a.id.clone(), 0)], long).await.unwrap();
        let s = reg.live_status(&a.id).await.unwrap();
        assert_eq!((s.viewers, s.viewers_by_edge.len()), (0, 0));
        reg.set_viewers("edge-1", &[(b.id.clone(), 5)], long).await.unwrap();
        assert_eq!(reg.live_status(&b.id).await.unwrap().viewers, 5);
        reg.set_viewers("edge-1", &[], long).await.unwrap();
        assert_eq!(reg.live_status(&b.id).await.unwrap().viewers, 5, "an empty report changes nothing");
    }

    pub async fn live_status_reports_the_holder(reg: SharedRegistry) {
        let a = rec("alpha");
        reg.put_stream(&a).await.unwrap();
        let s = reg.live_status(&a.id).await.unwrap();
        assert_eq!((s.holder, s.viewers), (None, 0));
        let lease = reg.acquire(&a.key_hash, &who("edge-1"), &opts()).await.unwrap();
        assert_eq!(reg.live_status(&a.id).await.unwrap().holder, Some(lease.holder.clone()));
        assert!(reg.release(&lease).await.unwrap());
        assert_eq!(reg.live_status(&a.id).await.unwrap().holder, None);
        // A stream nobody registered simply has no live state.
        assert_eq!(reg.live_status(&id("ghost")).await.unwrap(), Default::default());
    }

    pub async fn revoke_is_seen_at_the_next_renew(reg: SharedRegistry) {
        let a = rec_with("alpha", TakeoverPolicy::Reject);
        reg.put_stream(&a).await.unwrap();
        assert!(!reg.revoke(&a.id).await.unwrap(), "nothing to revoke yet");
        let lease = reg.acquire(&a.key_hash, &who("edge-1"), &opts()).await.unwrap();
        assert!(reg.revoke(&a.id).await.unwrap());
        assert_eq!(reg.renew(&lease, opts().ttl).await.unwrap(), RenewOutcome::Missing { registry_restarted: false });
        assert!(matches!(
            reg.update_holder(&lease, HolderUpdate::default()).await,
            Err(RegistryError::LeaseLost { reason: LossReason::Revoked, .. })
        ));
        let next = reg.acquire(&a.key_hash, &who("edge-2"), &opts()).await.unwrap();
        assert!(!next.took_over, "after a revoke the stream is free, even under Reject");
        assert!(next.fence > lease.fence);
    }

    pub async fn fencing_tokens_strictly_increase(reg: SharedRegistry) {
        let names = ["alpha", "beta", "gamma"];
        for n in names {
            reg.put_stream(&rec_with(n, TakeoverPolicy::Replace)).await.unwrap();
        }
        let o = streamfleet_registry::AcquireOptions { takeover_cooldown: Duration::ZERO, ..opts() };
        let mut fences = Vec::new();
        for round in 0..30 {
            let n = names[round % names.len()];
            let lease = reg.acquire(&key(n), &who(&format!("edge-{round}")), &o).await.unwrap();
            assert_eq!(lease.holder.fence, lease.fence);
            fences.push(lease.fence);
            // Mix fresh grants, takeovers (no release) and reclaims.
            match round % 3 {
                0 => assert!(reg.release(&lease).await.unwrap()),
                1 => {}
                _ => {
                    let mut lease = lease;
                    assert!(reg.release(&lease).await.unwrap());
                    reg.reclaim(&mut lease, o.ttl).await.unwrap();
                    fences.push(lease.fence);
                }
            }
        }
        assert!(fences.windows(2).all(|w| w[0] < w[1]), "fences must strictly increase: {fences:?}");
    }

    pub async fn delete_stream_drops_its_lease_and_viewers(reg: SharedRegistry) {
        let a = rec_with("alpha", TakeoverPolicy::Reject);
        reg.put_stream(&a).await.unwrap();
        let lease = reg.acquire(&a.key_hash, &who("edge-1"), &opts()).await.unwrap();
        reg.set_viewers("edge-1", &[(a.id.clone(), 2)], Duration::from_secs(30)).await.unwrap();
        assert!(reg.delete_stream(&a.id).await.unwrap());
        assert_eq!(reg.renew(&lease, opts().ttl).await.unwrap(), RenewOutcome::Missing { registry_restarted: false });
        assert_eq!(reg.live_status(&a.id).await.unwrap(), Default::default());
        // Recreated, the stream starts free.
        reg.put_stream(&a).await.unwrap();
        let again = reg.acquire(&a.key_hash, &who("edge-2"), &opts()).await.unwrap();
        assert!(!again.took_over);
    }

    pub async fn a_lease_expires_after_its_ttl(reg: SharedRegistry) {
        let a = rec_with("alpha", TakeoverPolicy::Reject);
        reg.put_stream(&a).await.unwrap();
        let short = streamfleet_registry::AcquireOptions { ttl: Duration::from_millis(300), ..opts() };
        let old = reg.acquire(&a.key_hash, &who("edge-1"), &short).await.unwrap();
        assert!(matches!(
            reg.acquire(&a.key_hash, &who("edge-2"), &opts()).await,
            Err(RegistryError::AlreadyActive { .. })
        ));
        // The holder stops renewing (it hung or died): the lease disappears by itself.
        poll_until("the lease to expire", Duration::from_secs(5), || async {
            reg.live_status(&a.id).await.unwrap().holder.is_none().then_some(())
        })
        .await;
        assert_eq!(reg.renew(&old, short.ttl).await.unwrap(), RenewOutcome::Missing { registry_restarted: false });

        let new = reg.acquire(&a.key_hash, &who("edge-2"), &opts()).await.unwrap();
        assert!(!new.took_over && new.fence > old.fence);
        // The old holder wakes up: it can neither extend, free nor write the new holder's lease.
        assert_eq!(reg.renew(&old, opts().ttl).await.unwrap(), RenewOutcome::HeldByOther);
        assert!(!reg.release(&old).await.unwrap());
        assert!(matches!(
            reg.update_holder(&old, HolderUpdate { idle: Some(true), ingest_kbps: None, ..Default::default() }).await,
            Err(RegistryError::LeaseLost { reason: LossReason::Stolen, .. })
        ));
        assert_eq!(reg.renew(&new, opts().ttl).await.unwrap(), RenewOutcome::Renewed);
        let h = reg.live_status(&a.id).await.unwrap().holder.unwrap();
        assert_eq!((h.edge.as_str(), h.fence, h.idle_since_ms), ("edge-2", new.fence, None));
    }

    pub async fn reclaim_takes_back_a_free_stream_only(reg: SharedRegistry) {
        let a = rec_with("alpha", TakeoverPolicy::Reject);
        reg.put_stream(&a).await.unwrap();
        let mut lease = reg.acquire(&a.key_hash, &who("edge-1"), &opts()).await.unwrap();
        let before = lease.clone();
        assert!(reg.release(&lease).await.unwrap()); // as if the registry had lost it
        reg.reclaim(&mut lease, opts().ttl).await.unwrap();
        assert!(lease.fence > before.fence, "a reclaim is a new grant with a new fence");
        assert_eq!((lease.token.as_str(), lease.holder.edge.as_str()), (before.token.as_str(), "edge-1"));
        assert_eq!(lease.holder.since_ms, before.holder.since_ms, "still the same publish session");
        assert_eq!(reg.renew(&lease, opts().ttl).await.unwrap(), RenewOutcome::Renewed);
        assert_eq!(reg.live_status(&a.id).await.unwrap().holder.map(|h| h.fence), Some(lease.fence));

        // Someone else got in first: the reclaim must not steal it.
        assert!(reg.release(&lease).await.unwrap());
        let other = reg.acquire(&a.key_hash, &who("edge-2"), &opts()).await.unwrap();
        let mut stale = lease.clone();
        assert!(matches!(
            reg.reclaim(&mut stale, opts().ttl).await,
            Err(RegistryError::AlreadyActive { holder, .. }) if holder.edge == "edge-2"
        ));
        assert_eq!(reg.renew(&other, opts().ttl).await.unwrap(), RenewOutcome::Renewed);
        assert!(reg.release(&other).await.unwrap());

        // The key was rotated, or the stream disabled, meanwhile: no reclaim.
        reg.put_stream(&StreamRecord { key_hash: key("rotated"), ..a.clone() }).await.unwrap();
        assert!(matches!(reg.reclaim(&mut stale, opts().ttl).await, Err(RegistryError::NotFound { .. })));
        reg.put_stream(&StreamRecord { enabled: false, ..a.clone() }).await.unwrap();
        assert!(matches!(reg.reclaim(&mut stale, opts().ttl).await, Err(RegistryError::Disabled { .. })));
        assert_eq!(holder_edge(&reg, "alpha").await, None);
    }

    pub async fn epoch_is_stable_while_the_backend_runs(reg: SharedRegistry) {
        reg.ping().await.unwrap();
        let epoch = reg.epoch().await.unwrap();
        assert!(epoch > 0);
        let a = rec("alpha");
        reg.put_stream(&a).await.unwrap();
        let lease = reg.acquire(&a.key_hash, &who("edge-1"), &opts()).await.unwrap();
        assert_eq!(lease.epoch, epoch, "grants carry the current epoch");
        reg.release(&lease).await.unwrap();
        assert_eq!(reg.epoch().await.unwrap(), epoch);
    }

    pub async fn keyed_records_are_found_by_their_keyed_hash_only(reg: SharedRegistry) {
        let k = keyed().record_hash("publish-key-of-alpha");
        let a = StreamRecord { key_hash: k.hash, key_scheme: k.scheme, ..rec("alpha") };
        reg.put_stream(&a).await.unwrap();
        let got = reg.get_stream(&a.id).await.unwrap().unwrap();
        assert_eq!(got, a, "the scheme is stored with the record");
        assert!(matches!(got.key_scheme, KeyScheme::Hmac(_)));
        assert_eq!(reg.list_streams().await.unwrap(), vec![a.clone()]);
        assert_eq!(reg.lookup(&k.hash).await.unwrap(), a);
        // The legacy hash of the same key is no longer anywhere in the registry.
        let legacy = KeyHasher::legacy().record_hash("publish-key-of-alpha").hash;
        assert!(matches!(reg.lookup(&legacy).await, Err(RegistryError::NotFound { .. })));
        assert!(matches!(reg.acquire(&legacy, &who("edge-1"), &opts()).await, Err(RegistryError::NotFound { .. })));
        let lease = reg.acquire(&k.hash, &who("edge-1"), &opts()).await.unwrap();
        assert!(reg.release(&lease).await.unwrap());
    }

    pub async fn a_reclaim_follows_a_record_rehashed_from_its_legacy_hash(reg: SharedRegistry) {
        // A publisher admitted on a legacy record; the operator then rewrites the record with
        // the keyed hash of the same key while the registry has lost the lease (a restart).
        let a = rec_with("alpha", TakeoverPolicy::Reject);
        reg.put_stream(&a).await.unwrap();
        let keyed_hash = keyed().record_hash("publish-key-of-alpha");
        let mut lease = reg.acquire(&a.key_hash, &who("edge-1"), &opts()).await.unwrap();
        let mut without_alt = lease.clone();
        lease.key_hash_alt = Some(keyed_hash.hash);
        assert!(reg.release(&lease).await.unwrap());
        let rehashed = StreamRecord { key_hash: keyed_hash.hash, key_scheme: keyed_hash.scheme, ..a.clone() };
        reg.put_stream(&rehashed).await.unwrap();

        // Without the other hash the holder would be lost: its key's legacy index is gone.
        assert!(matches!(reg.reclaim(&mut without_alt, opts().ttl).await, Err(RegistryError::NotFound { .. })));
        reg.reclaim(&mut lease, opts().ttl).await.unwrap();
        assert_eq!(lease.key_hash, keyed_hash.hash, "the lease now names the record's hash");
        assert_eq!(lease.key_hash_alt, Some(a.key_hash));
        assert_eq!(reg.renew(&lease, opts().ttl).await.unwrap(), RenewOutcome::Renewed);
        assert_eq!(holder_edge(&reg, "alpha").await.as_deref(), Some("edge-1"));

        // A rotation is still a rotation: neither hash names the record any more.
        assert!(reg.release(&lease).await.unwrap());
        reg.put_stream(&StreamRecord { key_hash: key("rotated"), ..a.clone() }).await.unwrap();
        assert!(matches!(reg.reclaim(&mut lease, opts().ttl).await, Err(RegistryError::NotFound { .. })));
    }
}
