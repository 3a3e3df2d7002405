//! Cost of admitting a publisher: one acquire + release round trip on the Redis registry,
//! against a bare PING over the same connection (the floor any Redis call pays). Starts its own
//! redis-server on loopback.
//!
//! `cargo bench -p streamfleet-registry --bench lease_roundtrip` runs criterion for both, then an
//! interleaved run that prints p50/mean/p99 per operation and the acquire+release : PING ratio
//! (the figure docs/registry.md quotes).

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use streamfleet_registry::{
    AcquireOptions, KeyHash, LeaseTiming, PublisherInfo, Registry, StreamId, StreamRecord, TakeoverPolicy,
    redis::{RedisConfig, RedisRegistry},
};
use streamfleet_testkit::RedisServer;

struct Fixture {
    _server: RedisServer,
    registry: RedisRegistry,
    key: KeyHash,
    who: PublisherInfo,
    opts: AcquireOptions,
}

fn fixture(rt: &tokio::runtime::Runtime) -> Fixture {
    let server = RedisServer::start();
    let key = KeyHash::of_key("bench-publish-key");
    let registry = rt.block_on(async {
        let reg = RedisRegistry::connect(RedisConfig::new(server.url())).await.expect("connect");
        reg.end_quarantine().await.expect("end quarantine");
        let record = StreamRecord {
            id: StreamId::new("bench", "stream"),
            key_hash: key,
            playback_name: "stream".into(),
            enabled: true,
            max_viewers: None,
            takeover: TakeoverPolicy::Reject,
            generation: 1,
        };
        reg.put_stream(&record).await.expect("put stream");
        reg
    });
    let who = PublisherInfo {
        edge: "bench-edge".into(),
        remote_addr: Some("127.0.0.1:50000".into()),
        relay_addr: Some("127.0.0.1:1936".into()),
    };
    Fixture { _server: server, registry, key, who, opts: AcquireOptions::new(&LeaseTiming::default()) }
}

async fn acquire_release(f: &Fixture) {
    let lease = f.registry.acquire(&f.key, &f.who, &f.opts).await.expect("acquire");
    assert!(f.registry.release(&lease).await.expect("release"));
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let f = fixture(&rt);
    // Loads the scripts into Redis so no measured call pays for SCRIPT LOAD.
    rt.block_on(acquire_release(&f));

    let mut group = c.benchmark_group("lease_roundtrip");
    group.bench_function("ping", |b| b.to_async(&rt).iter(|| async { f.registry.ping().await.expect("ping") }));
    group.bench_function("acquire_release", |b| b.to_async(&rt).iter(|| acquire_release(&f)));
    group.finish();

    summary(&rt, &f);
}

/// Interleaved samples of both operations, so drift (CPU frequency, other load) hits both alike.
fn summary(rt: &tokio::runtime::Runtime, f: &Fixture) {
    let full = std::env::args().any(|a| a == "--bench");
    let rounds = if full { 5000 } else { 50 };
    let (mut ping, mut lease) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    rt.block_on(async {
        for _ in 0..rounds {
            let t = Instant::now();
            f.registry.ping().await.expect("ping");
            ping.push(t.elapsed());
            let t = Instant::now();
            acquire_release(f).await;
            lease.push(t.elapsed());
        }
    });
    let (p, l) = (Stats::of(&mut ping), Stats::of(&mut lease));
    println!("\nlease_roundtrip summary ({rounds} interleaved rounds, one connection, loopback redis-server)");
    println!("  machine: {}", machine());
    println!("  redis:   {}", redis_version());
    println!("  {:<22} {:>10} {:>10} {:>10}", "operation", "p50", "mean", "p99");
    println!("  {:<22} {:>10.1?} {:>10.1?} {:>10.1?}", "PING", p.p50, p.mean, p.p99);
    println!("  {:<22} {:>10.1?} {:>10.1?} {:>10.1?}", "acquire+release", l.p50, l.mean, l.p99);
    println!(
        "  ratio acquire+release / PING: p50 {:.2}x, mean {:.2}x",
        l.p50.as_secs_f64() / p.p50.as_secs_f64(),
        l.mean.as_secs_f64() / p.mean.as_secs_f64()
    );
}

struct Stats {
    p50: Duration,
    mean: Duration,
    p99: Duration,
}

impl Stats {
    fn of(samples: &mut [Duration]) -> Stats {
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
        Stats { p50: at(0.5), mean, p99: at(0.99) }
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{cpu}, {cores} cores, {} {}", std::env::consts::OS, std::env::consts::ARCH)
}

fn redis_version() -> String {
    std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(50);
    targets = bench
}
criterion_main!(benches);
