//! Leases under contention and faults, against a real redis-server per test: 200 concurrent
//! acquirers on separate connections, Redis killed mid-lease, Redis restarted empty, Redis
//! restored from an older snapshot (as after a failover), a network partition, and registry keys
//! lost or left behind one by one.

mod common;

use std::{sync::Arc, time::Duration};

use common::*;
use streamfleet_registry::{
    AcquireOptions, EdgeRegistry, HolderUpdate, KeeperEvent, Lease, LeaseKeeper, LeaseTiming, LossReason,
    OperatorRegistry, RegistryError, RegistryStatus, RenewOutcome, SharedRegistry, TakeoverPolicy,
    redis::RedisRegistry,
};
use streamfleet_testkit::{RedisServer, TcpProxy};
use tokio::time::Instant;

fn opts_with_ttl(ttl: Duration) -> AcquireOptions {
    AcquireOptions { ttl, ..opts() }
}

fn is_unavailable<T: std::fmt::Debug>(r: &Result<T, RegistryError>) -> bool {
    matches!(r, Err(RegistryError::Unavailable(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_acquirers_exactly_one_wins() {
    let server = RedisServer::start();
    let admin = connect(&server.url()).await;
    admin.end_quarantine().await.unwrap();
    admin.put_stream(&rec("alpha")).await.unwrap();

    // 200 edges, each with its own registry and therefore its own connection.
    let mut connecting = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let url = server.url();
        connecting.spawn(async move { Arc::new(connect(&url).await) });
    }
    let registries: Vec<Arc<RedisRegistry>> = connecting.join_all().await;
    let clients: String = redis::cmd("INFO").arg("clients").query_async(&mut raw(&server.url()).await).await.unwrap();
    let connected: usize =
        clients.lines().find_map(|l| l.strip_prefix("connected_clients:")).and_then(|n| n.trim().parse().ok()).unwrap();
    assert!(connected > 200, "{connected} client connections");

    let start = Arc::new(tokio::sync::Barrier::new(registries.len()));
    let mut racing = tokio::task::JoinSet::new();
    for (i, reg) in registries.iter().enumerate() {
        let (reg, start) = (reg.clone(), start.clone());
        racing.spawn(async move {
            start.wait().await;
            (i, reg.acquire(&key("alpha"), &who(&format!("edge-{i}")), &opts()).await)
        });
    }
    let results = racing.join_all().await;
    let winners: Vec<_> = results.iter().filter_map(|(i, r)| r.as_ref().ok().map(|l| (*i, l.clone()))).collect();
    assert_eq!(winners.len(), 1, "exactly one publisher is admitted");
    let (winner, lease) = winners.into_iter().next().unwrap();
    for (i, r) in &results {
        if *i == winner {
            continue;
        }
        match r {
            Err(RegistryError::AlreadyActive { holder, .. }) => assert_eq!(holder.edge, format!("edge-{winner}")),
            other => panic!("edge-{i}: expected AlreadyActive, got {other:?}"),
        }
    }

    // Successive holders on different connections: fences strictly increase.
    let mut fences = vec![lease.fence];
    let mut current = (winner, lease);
    for round in 1..=40 {
        let (i, held) = current;
        assert!(registries[i].release(&held).await.unwrap());
        let next = (i + 37 * round) % registries.len();
        let lease = registries[next].acquire(&key("alpha"), &who(&format!("edge-{next}")), &opts()).await.unwrap();
        fences.push(lease.fence);
        current = (next, lease);
    }
    assert!(fences.windows(2).all(|w| w[0] < w[1]), "{fences:?}");
}

#[tokio::test]
async fn redis_killed_mid_lease_fails_fast_and_the_keeper_stops_before_the_ttl() {
    let mut server = RedisServer::start();
    let reg = Arc::new(RedisRegistry::connect(config(&server.url(), 200)).await.unwrap());
    reg.end_quarantine().await.unwrap();
    reg.put_stream(&rec("alpha")).await.unwrap();
    reg.put_stream(&rec("beta")).await.unwrap();

    let timing = LeaseTiming::from_ttl(Duration::from_secs(3));
    let sent_at = Instant::now();
    let lease = reg.acquire(&key("alpha"), &who("edge-1"), &opts_with_ttl(timing.ttl)).await.unwrap();
    let (mut events, observer) = EventTap::new();
    let shared: SharedRegistry = reg.clone();
    let mut keeper = LeaseKeeper::start(shared, lease.clone(), sent_at, timing, Some(observer));
    events.wait_for(KeeperEvent::Renewed, Duration::from_secs(5)).await;

    server.kill();
    let t = Instant::now();
    assert!(is_unavailable(&reg.ping().await));
    assert!(is_unavailable(&reg.acquire(&key("beta"), &who("edge-1"), &opts()).await));
    assert!(is_unavailable(&reg.renew(&lease, timing.ttl).await));
    assert!(is_unavailable(&reg.live_status(&id("alpha")).await));
    assert!(t.elapsed() < Duration::from_secs(2), "four calls took {:?}", t.elapsed());

    let reason = tokio::time::timeout(Duration::from_secs(10), keeper.lost()).await.expect("keeper never gave up");
    let lost_at = Instant::now();
    assert_eq!(reason, LossReason::Expired);
    // The deadline no longer moves: it is the send time of the last good renew + hold_for.
    let last_good_send = keeper.deadline() - timing.hold_for();
    assert!(lost_at >= keeper.deadline());
    assert!(
        lost_at < last_good_send + timing.ttl,
        "lost {:?} after the last good renew; the lease lives {:?} in Redis",
        lost_at - last_good_send,
        timing.ttl
    );
}

#[tokio::test]
async fn redis_restarted_empty_the_keeper_reclaims_and_newcomers_wait_out_the_quarantine() {
    let mut server = RedisServer::start();
    let reg = Arc::new(RedisRegistry::connect(config(&server.url(), 200)).await.unwrap());
    reg.end_quarantine().await.unwrap();
    reg.put_stream(&rec("alpha")).await.unwrap();

    let timing = LeaseTiming::from_ttl(Duration::from_secs(4));
    let sent_at = Instant::now();
    let lease = reg.acquire(&key("alpha"), &who("edge-1"), &opts_with_ttl(timing.ttl)).await.unwrap();
    let (mut events, observer) = EventTap::new();
    let shared: SharedRegistry = reg.clone();
    let keeper = LeaseKeeper::start(shared, lease.clone(), sent_at, timing, Some(observer));
    events.wait_for(KeeperEvent::Renewed, Duration::from_secs(5)).await;
    let old_epoch = reg.epoch().await.unwrap();

    server.restart(); // same port, no data
    // The operator sees a new epoch and rewrites every record.
    let new_epoch = poll_until("the registry to see the new epoch", Duration::from_secs(5), || async {
        reg.epoch().await.ok().filter(|e| *e != old_epoch)
    })
    .await;
    assert!(new_epoch > old_epoch);
    reg.put_stream(&rec("alpha")).await.unwrap();
    reg.put_stream(&rec("beta")).await.unwrap();

    events.wait_for(KeeperEvent::Reclaimed, Duration::from_secs(5)).await;
    let reclaimed = keeper.lease();
    assert!(reclaimed.fence > lease.fence, "fences stay monotonic across the restart");
    assert_eq!(reclaimed.epoch, new_epoch);
    assert_eq!(keeper.lost_reason(), None);

    // Newcomers wait one TTL: a holder Redis forgot may still be publishing.
    match reg.acquire(&key("beta"), &who("edge-2"), &opts_with_ttl(timing.ttl)).await {
        Err(RegistryError::Quarantined { retry_in }) => assert!(retry_in > Duration::ZERO && retry_in <= timing.ttl),
        other => panic!("expected Quarantined, got {other:?}"),
    }
    match reg.acquire(&key("alpha"), &who("edge-2"), &opts_with_ttl(timing.ttl)).await {
        Err(RegistryError::AlreadyActive { holder, .. }) => assert_eq!(holder.fence, reclaimed.fence),
        other => panic!("expected AlreadyActive, got {other:?}"),
    }
    events.wait_for(KeeperEvent::Renewed, Duration::from_secs(5)).await;

    // After one TTL the newcomer is admitted.
    let late = poll_until("the quarantine to end", Duration::from_secs(10), || async {
        reg.acquire(&key("beta"), &who("edge-2"), &opts_with_ttl(timing.ttl)).await.ok()
    })
    .await;
    assert!(late.fence > reclaimed.fence);
}

#[tokio::test]
async fn a_restore_from_an_older_snapshot_starts_a_new_epoch() {
    let mut server = RedisServer::start();
    let reg = RedisRegistry::connect(config(&server.url(), 300)).await.unwrap();
    reg.end_quarantine().await.unwrap();
    for n in ["alpha", "beta", "gamma"] {
        reg.put_stream(&rec(n)).await.unwrap();
    }
    let long = opts_with_ttl(Duration::from_secs(60));
    let kept = reg.acquire(&key("alpha"), &who("edge-1"), &long).await.unwrap();
    let _: () = redis::cmd("SAVE").query_async(&mut raw(&server.url()).await).await.unwrap();
    let mut lost = reg.acquire(&key("beta"), &who("edge-2"), &long).await.unwrap();
    let lost_fence = lost.fence;

    // A different redis-server process now serves the data set as of the snapshot (this is what a
    // failover to a lagging replica looks like): the fence counter went back, beta's lease is gone.
    server.restart();
    poll_until("Redis to be back", Duration::from_secs(5), || async { reg.ping().await.ok() }).await;

    assert_eq!(reg.renew(&kept, long.ttl).await.unwrap(), RenewOutcome::Renewed, "alpha's lease survived");
    assert_eq!(reg.renew(&lost, long.ttl).await.unwrap(), RenewOutcome::Missing { registry_restarted: true });
    reg.reclaim(&mut lost, long.ttl).await.unwrap();
    assert!(lost.fence > lost_fence, "a rolled-back counter must not repeat a fence: {} vs {lost_fence}", lost.fence);
    assert!(matches!(reg.acquire(&key("gamma"), &who("edge-3"), &long).await, Err(RegistryError::Quarantined { .. })));
}

#[tokio::test]
async fn a_partitioned_holder_stops_before_its_lease_expires_in_redis() {
    let server = RedisServer::start();
    let proxy = TcpProxy::start(server.addr().parse().unwrap()).await.unwrap();
    let far = Arc::new(RedisRegistry::connect(config(&proxy.url(), 200)).await.unwrap());
    let near = connect(&server.url()).await;
    near.end_quarantine().await.unwrap();
    near.put_stream(&rec_with("alpha", TakeoverPolicy::Reject)).await.unwrap();

    let timing = LeaseTiming::from_ttl(Duration::from_secs(3));
    let sent_at = Instant::now();
    let lease = far.acquire(&key("alpha"), &who("edge-far"), &opts_with_ttl(timing.ttl)).await.unwrap();
    let (mut events, observer) = EventTap::new();
    let shared: SharedRegistry = far.clone();
    let mut keeper = LeaseKeeper::start(shared, lease.clone(), sent_at, timing, Some(observer));
    events.wait_for(KeeperEvent::Renewed, Duration::from_secs(5)).await;

    proxy.cut();
    // Black-holed, not refused: only the timeouts notice, and they do.
    let t = Instant::now();
    assert!(is_unavailable(&far.ping().await));
    assert!(is_unavailable(&far.ping().await), "a new connection hangs too");
    assert!(t.elapsed() < Duration::from_secs(2), "two calls took {:?}", t.elapsed());

    let reason = tokio::time::timeout(Duration::from_secs(10), keeper.lost()).await.expect("keeper never gave up");
    assert_eq!(reason, LossReason::Expired);
    // At that instant Redis still holds the lease, so nobody else can have been admitted yet.
    let lease_key = "sf:v1:lease:media/alpha";
    let pttl: i64 = redis::cmd("PTTL").arg(lease_key).query_async(&mut raw(&server.url()).await).await.unwrap();
    assert!(pttl > 0, "the lease must outlive the holder's own deadline (PTTL {pttl})");
    match near.acquire(&key("alpha"), &who("edge-near"), &opts()).await {
        Err(RegistryError::AlreadyActive { holder, .. }) => assert_eq!(holder.edge, "edge-far"),
        other => panic!("expected the far holder to still hold it, got {other:?}"),
    }
    // Only once Redis expires it does the other side get in.
    let next = poll_until("the far lease to expire", Duration::from_secs(5), || async {
        near.acquire(&key("alpha"), &who("edge-near"), &opts()).await.ok()
    })
    .await;
    assert!(next.fence > lease.fence);

    proxy.heal();
    poll_until("the far side to reconnect", Duration::from_secs(5), || async { far.ping().await.ok() }).await;
    assert_eq!(far.renew(&lease, timing.ttl).await.unwrap(), RenewOutcome::HeldByOther);
    assert!(!far.release(&lease).await.unwrap());
    assert_eq!(near.renew(&next, timing.ttl).await.unwrap(), RenewOutcome::Renewed);
}

/// A registry on its own redis-server, past the quarantine, with stream `alpha` held by `edge-1`.
async fn alpha_held_by_edge_1() -> (RedisServer, RedisRegistry, Lease) {
    let server = RedisServer::start();
    let reg = connect(&server.url()).await;
    reg.end_quarantine().await.unwrap();
    reg.put_stream(&rec("alpha")).await.unwrap();
    let lease = reg.acquire(&key("alpha"), &who("edge-1"), &opts()).await.unwrap();
    (server, reg, lease)
}

/// Deletes one registry key behind the registry's back (by hand, or lost by Redis).
async fn delete_key(server: &RedisServer, key: &str) {
    let _: () = redis::cmd("DEL").arg(key).query_async(&mut raw(&server.url()).await).await.unwrap();
}

#[tokio::test]
async fn a_lost_fence_counter_starts_a_new_epoch_so_fences_never_repeat() {
    let (server, reg, first) = alpha_held_by_edge_1().await;
    assert!(reg.release(&first).await.unwrap());

    // The counter alone vanishes (evicted, or deleted by hand) while the epoch survives.
    delete_key(&server, "sf:v1:fence").await;
    let second = reg.acquire(&key("alpha"), &who("edge-1"), &opts()).await.unwrap();
    assert!(second.epoch > first.epoch, "a new epoch: {} vs {}", second.epoch, first.epoch);
    assert!(second.fence > first.fence, "fences stay monotonic: {} vs {}", second.fence, first.fence);
}

#[tokio::test]
async fn a_holder_record_left_behind_without_its_lease_is_not_inherited() {
    let (server, reg, first) = alpha_held_by_edge_1().await;
    reg.update_holder(&first, HolderUpdate { idle: Some(true), ingest_kbps: Some(2500), ..Default::default() })
        .await
        .unwrap();

    // Only the lease key vanishes (deleted by hand); its holder record, idle and with a bitrate,
    // stays. The next grant must not inherit it: an inherited idle mark would let a ReplaceIdle
    // newcomer take over a publisher that is sending.
    delete_key(&server, "sf:v1:lease:media/alpha").await;
    let second = reg.acquire(&key("alpha"), &who("edge-2"), &opts()).await.unwrap();
    assert!(!second.took_over);
    let holder = reg.live_status(&id("alpha")).await.unwrap().holder.unwrap();
    assert_eq!(
        (holder.edge.as_str(), holder.idle_since_ms, holder.ingest_kbps),
        ("edge-2", None, None),
        "the new holder starts afresh"
    );
}
