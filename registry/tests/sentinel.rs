//! The registry on a Sentinel-managed Redis (three `redis-server`s, three `redis-sentinel`s on
//! loopback, `down-after-milliseconds` 1500): every client reaches the primary through a
//! `redis+sentinel://` URL. A holder keeps its lease across a failover (primary killed, or frozen
//! past `down-after-milliseconds`), a second acquirer is refused throughout, new grants resume
//! after the failover quarantine, the frozen primary comes back as a replica nobody writes to,
//! and one Sentinel down changes nothing. The stress variant repeats the failover ten times and
//! counts double holders and grants the failover lost (with and without the `WAIT 1` rule).

mod common;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use common::*;
use streamfleet_registry::{
    AcquireOptions, EdgeRegistry, KeeperEvent, Lease, LeaseKeeper, LeaseTiming, OperatorRegistry, RegistryError,
    RegistryStatus, SharedRegistry, StreamId,
    redis::{RedisConfig, RedisRegistry},
};
use streamfleet_testkit::{
    SentinelCluster, SentinelTiming,
    wait::{ms, wait_until},
};
use tokio::time::Instant;

/// The edges' default lease: renew every 5 s, stop 10 s after the last good renew was sent, so a
/// failover must be over within TTL/3 = 5 s of the kill even in the worst renew phase.
const TTL: Duration = LeaseTiming::DEFAULT_TTL;

/// What docs/deploy.md recommends for the registry's Redis under Sentinel: a primary cut off
/// from every replica (a demoted one that has not been reconfigured yet) refuses writes.
const MIN_REPLICAS: &[&str] = &["--min-replicas-to-write", "1", "--min-replicas-max-lag", "5"];

/// 1500 ms, not 1000: a Sentinel pings a newly promoted primary 1 s after switching to it when
/// its first connection attempt misses, and with 1000 it declares the new primary down in that
/// very tick. On a loaded 2-core machine all three did so 1.0 s after a switch, failed over
/// again and split the data set (docs/deploy.md, "Timing rules").
fn sentinel_timing() -> SentinelTiming {
    SentinelTiming::default()
}

async fn start_cluster(extra: &'static [&'static str]) -> SentinelCluster {
    start_cluster_timed(sentinel_timing(), extra).await
}

async fn start_cluster_timed(timing: SentinelTiming, extra: &'static [&'static str]) -> SentinelCluster {
    tokio::task::spawn_blocking(move || SentinelCluster::start_with(timing, extra))
        .await
        .expect("starting the Sentinel cluster panicked")
}

async fn client(url: &str) -> Arc<RedisRegistry> {
    Arc::new(RedisRegistry::connect(RedisConfig::new(url)).await.expect("connect through Sentinel"))
}

fn ttl_opts() -> AcquireOptions {
    AcquireOptions { ttl: TTL, ..opts() }
}

/// Streams `alpha` and `beta`, quarantine ended (a first install).
async fn setup(url: &str) -> Arc<RedisRegistry> {
    let admin = client(url).await;
    admin.put_stream(&rec("alpha")).await.unwrap();
    admin.put_stream(&rec("beta")).await.unwrap();
    admin.end_quarantine().await.unwrap();
    admin
}

/// A holder: `alpha` acquired by edge-1 and kept by a [`LeaseKeeper`] with the default timing.
struct Holder {
    keeper: LeaseKeeper,
    tap: EventTap,
    first: Lease,
}

async fn hold_alpha(url: &str) -> Holder {
    let reg: SharedRegistry = client(url).await;
    let sent_at = Instant::now();
    let first = reg.acquire(&key("alpha"), &who("edge-1"), &ttl_opts()).await.expect("acquire alpha");
    let (tap, observer) = EventTap::new();
    let keeper = LeaseKeeper::start(reg, first.clone(), sent_at, LeaseTiming::from_ttl(TTL), Some(observer));
    Holder { keeper, tap, first }
}

/// The scene of the failover tests: a cluster, alpha held by edge-1 and renewed once, and a
/// contender trying to take it all along.
struct Contested {
    cluster: SentinelCluster,
    url: String,
    admin: Arc<RedisRegistry>,
    holder: Holder,
    contender: Contender,
}

async fn contested(timing: SentinelTiming) -> Contested {
    let cluster = start_cluster_timed(timing, MIN_REPLICAS).await;
    let url = cluster.url();
    let admin = setup(&url).await;
    let mut holder = hold_alpha(&url).await;
    let contender = Contender::start(&url).await;
    holder.tap.wait_for(KeeperEvent::Renewed, TTL).await;
    Contested { cluster, url, admin, holder, contender }
}

/// Another edge trying to publish `alpha` every 50 ms; counts admissions (there must be none
/// while the holder holds) and refusals.
struct Contender {
    stop: Arc<AtomicBool>,
    admitted: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Contender {
    async fn start(url: &str) -> Contender {
        let reg = client(url).await;
        let (stop, admitted, refused) = (Arc::new(AtomicBool::new(false)), Arc::default(), Arc::default());
        let task = tokio::spawn({
            let (stop, admitted, refused): (Arc<AtomicBool>, Arc<AtomicU64>, Arc<AtomicU64>) =
                (stop.clone(), Arc::clone(&admitted), Arc::clone(&refused));
            async move {
                while !stop.load(Ordering::Relaxed) {
                    match reg.acquire(&key("alpha"), &who("edge-2"), &ttl_opts()).await {
                        Ok(lease) => {
                            admitted.fetch_add(1, Ordering::Relaxed);
                            eprintln!("SECOND HOLDER admitted: fence {}", lease.fence);
                        }
                        Err(RegistryError::AlreadyActive { .. } | RegistryError::Quarantined { .. }) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {} // Redis unreachable mid-failover: neither admitted nor refused
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        Contender { stop, admitted, refused, task }
    }

    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("contender task");
        (self.admitted.load(Ordering::Relaxed), self.refused.load(Ordering::Relaxed))
    }
}

/// Polls `acquire` of `beta` on a fresh client until it is granted; returns when.
async fn admit_beta(url: &str, within: Duration) -> Instant {
    let reg = client(url).await;
    wait_until("a new publisher (beta) admitted after the failover", within, || {
        let reg = reg.clone();
        async move { reg.acquire(&key("beta"), &who("edge-3"), &ttl_opts()).await.ok().map(|_| Instant::now()) }
    })
    .await
}

/// One failover test at a time: each runs 3 Redis and 3 Sentinels with a 1.5 s
/// down-after-milliseconds, and six such clusters failing over at once on a 2-core machine
/// starved the Sentinels enough to push a failover past the holder's 5 s deadline.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

fn lease_key(id: &StreamId) -> String {
    format!("sf:v1:lease:{id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_primary_fails_over_the_holder_keeps_its_lease_and_nobody_else_is_admitted() {
    let _serial = serial().await;
    let Contested { mut cluster, url, admin: _admin, mut holder, contender } = contested(sentinel_timing()).await;

    let old = tokio::task::block_in_place(|| cluster.wait_primary(Duration::from_secs(5)));
    let killed_at = Instant::now();
    tokio::task::block_in_place(|| cluster.kill_redis(old));
    let new = tokio::task::block_in_place(|| cluster.wait_failover_from(old, Duration::from_secs(20)));
    let failover = killed_at.elapsed();
    // The new primary is a promoted replica and every grant and renewal waited for a replica: no
    // quarantine, a newcomer (beta) is admitted as soon as the failover is over.
    let newcomer = tokio::spawn({
        let url = url.clone();
        async move { admit_beta(&url, Duration::from_secs(10)).await }
    });

    // The holder's next renew (or reclaim) lands on the new primary, before its deadline.
    let event = holder.tap.wait_for_any(&[KeeperEvent::Renewed, KeeperEvent::Reclaimed], TTL).await;
    assert!(!matches!(event, KeeperEvent::Lost(_)), "the holder lost its lease: {event:?}");
    let renewed = killed_at.elapsed();
    assert_eq!(holder.keeper.lost_reason(), None, "the holder lost its lease across the failover");
    let on_new: Option<String> = redis::cmd("GET")
        .arg(lease_key(&id("alpha")))
        .query_async(&mut raw(&cluster.redis_url(new)).await)
        .await
        .unwrap();
    assert_eq!(on_new.as_deref(), Some(holder.keeper.lease().token.as_str()), "the new primary has the holder's lease");

    let admitted = newcomer.await.expect("newcomer task").duration_since(killed_at);
    let (second, refused) = contender.finish().await;
    eprintln!(
        "sentinel failover (kill -9): new primary agreed {} after the kill; holder {event:?} {} after the kill; \
         new publisher admitted {} after the kill (no quarantine); contender refused {refused} times, admitted {second}",
        ms(failover),
        ms(renewed),
        ms(admitted),
    );
    assert_eq!(second, 0, "a second holder was admitted for alpha");
    assert!(refused > 0, "the contender was never refused: the test did not test anything");
    assert!(admitted <= failover + Duration::from_secs(3), "new publishes resumed late: {admitted:?}");
    assert_eq!(holder.keeper.lost_reason(), None);
    assert!(holder.keeper.lease().fence >= holder.first.fence);
}

/// The worst moment for a crash, with the chart's Sentinel settings (`down-after-milliseconds`
/// 2000, `failover-timeout` 10000): the primary dies just before the holder's next renew, so the
/// holder's deadline is only TTL/3 (5 s) away. The failover and the holder's first renew on the
/// new primary must both fit in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_just_before_a_renew_with_the_charts_settings_keeps_the_holder() {
    let _serial = serial().await;
    let chart = SentinelTiming { down_after: Duration::from_millis(2000), failover_timeout: Duration::from_secs(10) };
    let Contested { mut cluster, url: _, admin: _admin, mut holder, contender } = contested(chart).await;
    let renewed_at = Instant::now();
    let old = tokio::task::block_in_place(|| cluster.wait_primary(Duration::from_secs(5)));
    // 100 ms before the next renew (every TTL/3 from the last one).
    tokio::time::sleep_until(renewed_at + TTL / 3 - Duration::from_millis(100)).await;
    holder.tap.take_log();
    let killed_at = Instant::now();
    let margin = holder.keeper.deadline().saturating_duration_since(killed_at);
    tokio::task::block_in_place(|| cluster.kill_redis(old));
    tokio::task::block_in_place(|| cluster.wait_failover_from(old, Duration::from_secs(20)));
    let failover = killed_at.elapsed();
    let event = holder.tap.wait_for_any(&[KeeperEvent::Renewed, KeeperEvent::Reclaimed], TTL).await;
    let kept = killed_at.elapsed();
    let timeline: Vec<String> = holder
        .tap
        .take_log()
        .iter()
        .map(|(at, e)| format!("{e:?} at +{}", ms(at.saturating_duration_since(killed_at))))
        .collect();
    assert_eq!(holder.keeper.lost_reason(), None, "the holder lost its lease: {timeline:?}");
    let (second, _) = contender.finish().await;
    assert_eq!(second, 0, "a second holder was admitted for alpha");
    eprintln!(
        "crash 100 ms before a renew, down-after 2000 ms: holder's deadline {} after the kill; new primary agreed \
         at +{}; holder {event:?} at +{} (spare {}); {timeline:?}",
        ms(margin),
        ms(failover),
        ms(kept),
        ms(margin.saturating_sub(kept)),
    );
}

/// `calls=N` of `cmdstat_evalsha` on server `i` (client calls only: scripts replicate as effects).
fn evalsha_calls(cluster: &SentinelCluster, i: usize) -> u64 {
    let stats = cluster.redis_cli(i, &["INFO", "commandstats"]).unwrap_or_default();
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_primary_is_replaced_comes_back_as_a_replica_and_nobody_writes_to_it() {
    let _serial = serial().await;
    let Contested { mut cluster, url: _, admin: _admin, mut holder, contender } = contested(sentinel_timing()).await;

    let old = tokio::task::block_in_place(|| cluster.wait_primary(Duration::from_secs(5)));
    let frozen_at = Instant::now();
    tokio::task::block_in_place(|| cluster.freeze_redis(old));
    let new = tokio::task::block_in_place(|| cluster.wait_failover_from(old, Duration::from_secs(20)));
    let failover = frozen_at.elapsed();
    holder.tap.wait_for_any(&[KeeperEvent::Renewed, KeeperEvent::Reclaimed], TTL).await;
    assert_eq!(holder.keeper.lost_reason(), None, "the holder lost its lease");

    // Resume the old primary: Sentinel turns it into a replica of the new one.
    tokio::task::block_in_place(|| {
        cluster.resume_redis(old);
        cluster.wait_replica_in_sync(old, Duration::from_secs(20));
    });
    let demoted = frozen_at.elapsed();
    let calls = evalsha_calls(&cluster, old);
    // Two more renews go to the new primary; none reaches the old one.
    for _ in 0..2 {
        holder.tap.wait_for(KeeperEvent::Renewed, TTL).await;
    }
    assert_eq!(evalsha_calls(&cluster, old), calls, "a client still runs registry scripts on the demoted primary");
    let token = holder.keeper.lease().token;
    let on_old: Option<String> = redis::cmd("GET")
        .arg(lease_key(&id("alpha")))
        .query_async(&mut raw(&cluster.redis_url(old)).await)
        .await
        .unwrap();
    assert_eq!(on_old.as_deref(), Some(token.as_str()), "the demoted primary replicates the holder's lease");
    assert_eq!(cluster.role(new).as_deref(), Some("master"));
    let (second, refused) = contender.finish().await;
    eprintln!(
        "sentinel failover (SIGSTOP): new primary agreed {} after the freeze; old primary an in-sync replica {} after \
         the freeze; contender refused {refused} times, admitted {second}",
        ms(failover),
        ms(demoted),
    );
    assert_eq!(second, 0, "a second holder was admitted for alpha");
    assert_eq!(holder.keeper.lost_reason(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sentinel_down_changes_nothing() {
    let _serial = serial().await;
    let mut cluster = start_cluster(MIN_REPLICAS).await;
    // The first Sentinel of the URL is the one that is gone.
    tokio::task::block_in_place(|| cluster.kill_sentinel(0));
    let url = cluster.url();
    let admin = setup(&url).await;
    let mut holder = hold_alpha(&url).await;
    holder.tap.wait_for(KeeperEvent::Renewed, TTL).await;
    let other = client(&url).await;
    assert!(matches!(
        other.acquire(&key("alpha"), &who("edge-2"), &ttl_opts()).await,
        Err(RegistryError::AlreadyActive { .. })
    ));
    let beta = other.acquire(&key("beta"), &who("edge-2"), &ttl_opts()).await.expect("beta granted");
    assert!(other.release(&beta).await.unwrap());

    // Two Sentinels are still a majority: a failover still happens, and the holder keeps alpha.
    let old = tokio::task::block_in_place(|| cluster.wait_primary(Duration::from_secs(5)));
    let killed_at = Instant::now();
    tokio::task::block_in_place(|| cluster.kill_redis(old));
    tokio::task::block_in_place(|| cluster.wait_failover_from(old, Duration::from_secs(20)));
    let failover = killed_at.elapsed();
    holder.tap.wait_for_any(&[KeeperEvent::Renewed, KeeperEvent::Reclaimed], TTL).await;
    assert_eq!(holder.keeper.lost_reason(), None);
    // The admin's connection went down with the old primary: its first call fails, the next
    // one dials the new primary through the Sentinels.
    let holder_edge = wait_until("alpha's holder read through the new primary", Duration::from_secs(5), || async {
        admin.live_status(&id("alpha")).await.ok().map(|s| s.holder.map(|h| h.edge))
    })
    .await;
    assert_eq!(holder_edge.as_deref(), Some("edge-1"));
    eprintln!("sentinel failover with 2 of 3 Sentinels: new primary agreed {} after the kill", ms(failover));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sentinel_frozen_changes_nothing() {
    let _serial = serial().await;
    let mut cluster = start_cluster(MIN_REPLICAS).await;
    let url = cluster.url();
    let admin = setup(&url).await;
    // The first Sentinel of the URL answers nothing (its TCP backlog still accepts).
    tokio::task::block_in_place(|| cluster.freeze_sentinel(0));
    let t = Instant::now();
    let fresh = client(&url).await;
    let beta = fresh.acquire(&key("beta"), &who("edge-2"), &ttl_opts()).await.expect("beta granted");
    let first_call = t.elapsed();
    assert!(fresh.release(&beta).await.unwrap());
    // An established client whose connection drops redials past the frozen Sentinel too.
    let mut holder = hold_alpha(&url).await;
    let old = tokio::task::block_in_place(|| cluster.wait_primary(Duration::from_secs(5)));
    tokio::task::block_in_place(|| cluster.kill_redis(old));
    tokio::task::block_in_place(|| cluster.wait_failover_from(old, Duration::from_secs(20)));
    let event = holder.tap.wait_for_any(&[KeeperEvent::Renewed, KeeperEvent::Reclaimed], TTL).await;
    assert_eq!(holder.keeper.lost_reason(), None, "{event:?}");
    let status = wait_until("alpha's holder through the new primary", Duration::from_secs(5), || async {
        admin.live_status(&id("alpha")).await.ok()
    })
    .await;
    assert_eq!(status.holder.map(|h| h.edge).as_deref(), Some("edge-1"));
    eprintln!("one Sentinel frozen: a new client's first acquire took {}", ms(first_call));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_replica_acks_a_failover_quarantines_newcomers() {
    let _serial = serial().await;
    let mut cluster = start_cluster(MIN_REPLICAS).await;
    let url = format!("{}?replica_ack_ms=0", cluster.url());
    let _admin = setup(&url).await;
    let mut holder = hold_alpha(&url).await;
    holder.tap.wait_for(KeeperEvent::Renewed, TTL).await;
    let old = tokio::task::block_in_place(|| cluster.wait_primary(Duration::from_secs(5)));
    tokio::task::block_in_place(|| cluster.kill_redis(old));
    tokio::task::block_in_place(|| cluster.wait_failover_from(old, Duration::from_secs(20)));
    // A grant the old primary acknowledged may be missing here: newcomers wait one TTL.
    let newcomer = client(&url).await;
    let refusal = wait_until("an answer from the new primary", Duration::from_secs(10), || async {
        match newcomer.acquire(&key("beta"), &who("edge-3"), &ttl_opts()).await {
            Err(RegistryError::Unavailable(_)) => None,
            other => Some(other),
        }
    })
    .await;
    assert!(matches!(refusal, Err(RegistryError::Quarantined { .. })), "{refusal:?}");
    let event = holder.tap.wait_for_any(&[KeeperEvent::Renewed, KeeperEvent::Reclaimed], TTL).await;
    assert_eq!(holder.keeper.lost_reason(), None, "{event:?}");
}

/// The asynchronous-replication window, shown rather than argued: both replicas are frozen and
/// the primary's replication stream is backed up behind 24 MiB (more than the kernel buffers
/// between them hold), so grants the primary acknowledges stay in its own output buffer. Then
/// the primary is killed and the replicas resumed: the promoted one has never seen those grants.
/// - Without replica acks (`replica_ack_ms=0`) the client was told "granted": the grant is lost.
///   What its holder sees: its next renew finds the lease gone on a new epoch, and it reclaims
///   it with its own token during the failover quarantine, which refuses everyone else.
/// - With `WAIT 1` the same grant is refused (`Unavailable`) and undone: nothing admitted is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_in_the_replication_window_are_lost_without_replica_acks_and_refused_with_them() {
    let _serial = serial().await;
    let mut cluster = start_cluster(MIN_REPLICAS).await;
    let plain = format!("{}?replica_ack_ms=0", cluster.url());
    let acked = format!("{}?replica_ack_ms=100", cluster.url());
    let admin = setup(&plain).await;
    admin.put_stream(&rec("gamma")).await.unwrap();
    let no_ack = client(&plain).await;
    let with_ack = client(&acked).await;
    let contender = client(&plain).await;
    // Every client has its connection before the fault.
    for c in [&no_ack, &with_ack, &contender] {
        c.ping().await.unwrap();
    }

    let old = tokio::task::block_in_place(|| cluster.wait_primary(Duration::from_secs(5)));
    let replicas: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let mut primary = raw(&cluster.redis_url(old)).await;
    tokio::task::block_in_place(|| replicas.iter().for_each(|r| cluster.freeze_redis(*r)));
    let junk = vec![b'x'; 8 << 20];
    for n in 0..3 {
        let _: () = redis::cmd("SET").arg(format!("junk-{n}")).arg(&junk).query_async(&mut primary).await.unwrap();
    }

    // Granted by the primary alone (no ack asked): the client admits its publisher.
    let sent_at = Instant::now();
    let lost_grant = no_ack.acquire(&key("alpha"), &who("edge-1"), &ttl_opts()).await.expect("granted without acks");
    let (mut tap, observer) = EventTap::new();
    let holder =
        LeaseKeeper::start(no_ack.clone(), lost_grant.clone(), sent_at, LeaseTiming::from_ttl(TTL), Some(observer));
    // The same request with WAIT 1: no replica answers within 100 ms, so it is undone.
    let refused = with_ack.acquire(&key("gamma"), &who("edge-2"), &ttl_opts()).await;
    assert!(matches!(refused, Err(RegistryError::Unavailable(_))), "{refused:?}");

    let killed_at = Instant::now();
    tokio::task::block_in_place(|| {
        cluster.kill_redis(old);
        replicas.iter().for_each(|r| cluster.resume_redis(*r));
    });
    let new = tokio::task::block_in_place(|| cluster.wait_failover_from(old, Duration::from_secs(20)));
    let failover = killed_at.elapsed();
    let mut conn = raw(&cluster.redis_url(new)).await;
    let on_new: Option<String> = redis::cmd("GET").arg(lease_key(&id("alpha"))).query_async(&mut conn).await.unwrap();
    assert_eq!(on_new, None, "the grant reached a replica after all: the test did not open the window");
    let gamma: Option<String> = redis::cmd("GET").arg(lease_key(&id("gamma"))).query_async(&mut conn).await.unwrap();
    assert_eq!(gamma, None, "the refused grant was kept");

    // What the edges see: the holder reclaims its lost grant during the failover quarantine, and
    // another edge is refused throughout.
    let mut contended = 0u32;
    let mut tap_event = None;
    let reclaim_deadline = Instant::now() + TTL;
    while tap_event.is_none() && Instant::now() < reclaim_deadline {
        match contender.acquire(&key("alpha"), &who("edge-3"), &ttl_opts()).await {
            Ok(l) => panic!("a second holder was admitted for alpha after the lost grant (fence {})", l.fence),
            Err(RegistryError::Quarantined { .. } | RegistryError::AlreadyActive { .. }) => contended += 1,
            Err(_) => {}
        }
        tap_event = tokio::time::timeout(Duration::from_millis(50), tap.wait_for_any(&[KeeperEvent::Reclaimed], TTL))
            .await
            .ok();
    }
    assert_eq!(tap_event, Some(KeeperEvent::Reclaimed), "the holder did not reclaim its lost grant");
    assert_eq!(holder.lost_reason(), None);
    let reclaimed_after = killed_at.elapsed();
    let on_new: Option<String> = redis::cmd("GET").arg(lease_key(&id("alpha"))).query_async(&mut conn).await.unwrap();
    assert_eq!(on_new.as_deref(), Some(lost_grant.token.as_str()));
    assert!(holder.lease().fence > lost_grant.fence, "the reclaimed grant has a larger fence");
    eprintln!(
        "replication window: the grant without acks was lost by the failover (new primary agreed {} after the kill) \
         and reclaimed by its holder {} after the kill; the grant with WAIT 1 was refused; another edge was refused \
         {contended} times, admitted 0 times",
        ms(failover),
        ms(reclaimed_after)
    );
}

/// Grants acknowledged shortly before a kill, and which of them the promoted replica lacks.
#[derive(Default)]
struct Probe {
    acked: Mutex<Vec<(StreamId, String)>>,
    last_error: Mutex<Option<String>>,
}

/// Acquires fresh streams `<prefix>-<n>` back to back until `stop` or the list runs out.
async fn probe_grants(reg: Arc<RedisRegistry>, prefix: String, count: usize, stop: Arc<AtomicBool>, probe: Arc<Probe>) {
    for n in 0..count {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let name = format!("{prefix}-{n}");
        match reg.acquire(&key(&name), &who("prober"), &ttl_opts()).await {
            Ok(lease) => probe.acked.lock().unwrap().push((lease.stream, lease.token)),
            Err(e) => {
                *probe.last_error.lock().unwrap() = Some(e.to_string());
                // Unavailable right after a failover (a dead connection): pace the retries.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Ten failovers (kill -9 of the primary at a random renew phase, then the killed server back as
/// a replica): the holder never loses `alpha`, the contender is never admitted, and grants
/// acknowledged in the last moments before each kill are checked on the promoted replica. With
/// replica acks there is no failover quarantine, so the contender meets only the holder's lease;
/// without, each round lifts the quarantine once the holder has renewed on the new primary.
async fn repeated_failovers(replica_ack_ms: u64, rounds: usize) -> (u64, usize, usize) {
    // RUST_LOG=streamfleet_registry=debug shows why each renew failed during a failover.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut cluster = start_cluster(MIN_REPLICAS).await;
    let url = format!("{}?replica_ack_ms={replica_ack_ms}", cluster.url());
    let admin = setup(&url).await;
    let mut holder = hold_alpha(&url).await;
    let contender = Contender::start(&url).await;
    let prober = client(&url).await;
    let (mut lost, mut checked) = (0usize, 0usize);
    let mut worst = Duration::ZERO;
    for round in 0..rounds {
        let prefix = format!("g{round}");
        // The admin's first call after a failover may meet its dead connection: retry.
        for n in 0..200 {
            let r = rec(&format!("{prefix}-{n}"));
            wait_until("put a probe stream", Duration::from_secs(5), || async { admin.put_stream(&r).await.ok() })
                .await;
        }
        // A random phase of the holder's renew cycle.
        let phase = Duration::from_millis(rand::random_range(0..5000));
        tokio::time::sleep(phase).await;
        let old = tokio::task::block_in_place(|| cluster.wait_primary(Duration::from_secs(10)));
        let probe = Arc::new(Probe::default());
        let stop = Arc::new(AtomicBool::new(false));
        let probing = tokio::spawn(probe_grants(prober.clone(), prefix, 200, stop.clone(), probe.clone()));
        let enough = streamfleet_testkit::wait::try_wait_until(Duration::from_secs(5), || async {
            (probe.acked.lock().unwrap().len() >= 20).then_some(())
        })
        .await;
        assert!(enough.is_some(), "round {round}: probe grants failed: {:?}", probe.last_error.lock().unwrap());
        holder.tap.take_log();
        let killed_at = Instant::now();
        let margin = holder.keeper.deadline().saturating_duration_since(killed_at);
        tokio::task::block_in_place(|| cluster.kill_redis(old));
        stop.store(true, Ordering::Relaxed);
        probing.await.unwrap();
        let new = tokio::task::block_in_place(|| cluster.wait_failover_from(old, Duration::from_secs(20)));
        let failover = killed_at.elapsed();
        worst = worst.max(failover);
        // Every grant acknowledged before the kill: is it on the new primary?
        let acked = probe.acked.lock().unwrap().clone();
        let mut conn = raw(&cluster.redis_url(new)).await;
        for (stream, token) in acked.iter().rev().take(20) {
            let v: Option<String> = redis::cmd("GET").arg(lease_key(stream)).query_async(&mut conn).await.unwrap();
            checked += 1;
            if v.as_deref() != Some(token.as_str()) {
                lost += 1;
            }
        }
        holder.tap.wait_for_any(&[KeeperEvent::Renewed, KeeperEvent::Reclaimed], TTL).await;
        // A full resync of the surviving replica (it was ahead of the promoted one) is what can
        // keep the new primary below min-replicas-to-write; shown with the timeline.
        let stats: String = redis::cmd("INFO").arg("stats").query_async(&mut conn).await.unwrap();
        let full_syncs = stats.lines().find_map(|l| l.strip_prefix("sync_full:")).unwrap_or("?").trim().to_string();
        let timeline = holder
            .tap
            .take_log()
            .iter()
            .map(|(at, e)| format!("{e:?} at +{}", ms(at.saturating_duration_since(killed_at))))
            .collect::<Vec<_>>()
            .join(", ");
        eprintln!(
            "round {round}: holder's deadline {} after the kill; new primary agreed at +{}, full syncs \
             {full_syncs}; {timeline}",
            ms(margin),
            ms(failover)
        );
        assert_eq!(holder.keeper.lost_reason(), None, "round {round}: the holder lost alpha: {timeline}");
        if replica_ack_ms == 0 {
            // Without replica acks the failover started a quarantine of one TTL (tested on its
            // own); the holder is back on the new primary, so lift it to keep each round short.
            wait_until("quarantine lifted", Duration::from_secs(5), || async { admin.end_quarantine().await.ok() })
                .await;
        }
        tokio::task::block_in_place(|| {
            cluster.restart_redis_as_replica(old);
            cluster.wait_replica_in_sync(old, Duration::from_secs(20));
            // Steady state before the next fault: the Sentinels know both replicas again.
            cluster.wait_sentinels_see_replicas(2, Duration::from_secs(30));
        });
    }
    let (second, refused) = contender.finish().await;
    assert!(refused > 0);
    eprintln!(
        "{rounds} failovers, replica_ack_ms={replica_ack_ms}: slowest failover {}; second holder admitted {second} \
         times; grants lost {lost} of the last {checked} acknowledged before the kills",
        ms(worst)
    );
    (second, lost, checked)
}

/// The suite's stress variant (about 140 s): ten failovers at random renew phases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_ten_failovers_with_replica_ack_no_second_holder_no_lost_grant() {
    let _serial = serial().await;
    let (second, lost, _) = repeated_failovers(100, 10).await;
    assert_eq!(second, 0, "double holders");
    assert_eq!(lost, 0, "grants acknowledged after WAIT 1 were lost by a failover");
}

/// The comparison figure for docs/deploy.md: the same without `WAIT 1` (lost grants are
/// expected here; the failover quarantine and the holder's reclaim keep them harmless).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement (about 110 s): cargo test -p streamfleet-registry --test sentinel -- --ignored measure_ten"]
async fn measure_ten_failovers_without_replica_ack() {
    let _serial = serial().await;
    let (second, _, _) = repeated_failovers(0, 10).await;
    assert_eq!(second, 0, "double holders");
}

/// The price of `WAIT 1`: acquire + release of one stream, 500 times, with and without replica
/// acks, on the same three loopback servers (figures for docs/deploy.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: cargo test -p streamfleet-registry --test sentinel -- --ignored measure_grant"]
async fn measure_grant_latency_with_and_without_replica_ack() {
    let _serial = serial().await;
    let cluster = start_cluster(MIN_REPLICAS).await;
    let _admin = setup(&cluster.url()).await;
    for ack in [0u64, 100] {
        let reg = client(&format!("{}?replica_ack_ms={ack}", cluster.url())).await;
        let mut took = Vec::with_capacity(500);
        for _ in 0..500 {
            let t = Instant::now();
            let lease = reg.acquire(&key("beta"), &who("edge-2"), &ttl_opts()).await.expect("beta granted");
            took.push(t.elapsed());
            assert!(reg.release(&lease).await.unwrap());
        }
        took.sort();
        eprintln!(
            "acquire with replica_ack_ms={ack}: p50 {} p99 {}",
            ms(took[took.len() / 2]),
            ms(took[took.len() * 99 / 100])
        );
    }
}
