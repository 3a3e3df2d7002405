//! Cost of admitting a publisher: one acquire + release round trip on the Redis registry,
//! against a bare PING over the same connection (the floor any Redis call pays). Starts its own
//! redis-server on loopback.
//!
//! `cargo bench -p streamfleet-registry --bench lease_roundtrip` runs criterion for both, then an
//! interleaved run that times acquire, renew and release one by one against PING (p50/mean/p99
//! and each operation's p50 ratio, the figures docs/registry.md quotes), and Redis's own time per
//! call from `INFO commandstats`.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use streamfleet_registry::{
    AcquireOptions, EdgeRegistry, KeyHash, Lease, LeaseTiming, OperatorRegistry, PublisherInfo, RegistryStatus,
    RenewOutcome, StreamId, StreamRecord, TakeoverPolicy,
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
            key_scheme: streamfleet_registry::KeyScheme::Sha256,
            playback_name: "stream".into(),
            enabled: true,
            max_viewers: None,
            takeover: TakeoverPolicy::Reject,
            generation: 1,
            srt_passphrase: None,
        };
        reg.put_stream(&record).await.expect("put stream");
        reg
    });
    let who = PublisherInfo {
        edge: "bench-edge".into(),
        remote_addr: Some("127.0.0.1:50000".into()),
        relay_addr: Some("127.0.0.1:1936".into()),
        protocol: Some(streamfleet_registry::IngestProtocol::Rtmp),
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

/// The lease operations timed one by one, interleaved with PINGs so drift (CPU frequency, other
/// load) hits all alike; then Redis's own time per call, which says how much of each operation is
/// script work rather than the round trip.
fn summary(rt: &tokio::runtime::Runtime, f: &Fixture) {
    let full = std::env::args().any(|a| a == "--bench");
    let rounds = if full { 5000 } else { 50 };
    let mut samples: [Vec<Duration>; 5] = std::array::from_fn(|_| Vec::with_capacity(rounds));
    let [ping, acquire, renew, release, both] = &mut samples;
    rt.block_on(async {
        for _ in 0..rounds {
            let t = Instant::now();
            f.registry.ping().await.expect("ping");
            ping.push(t.elapsed());
            let t = Instant::now();
            let lease = f.registry.acquire(&f.key, &f.who, &f.opts).await.expect("acquire");
            let acquired = t.elapsed();
            acquire.push(acquired);
            let t = Instant::now();
            let renewed = f.registry.renew(&lease, f.opts.ttl).await.expect("renew");
            renew.push(t.elapsed());
            assert_eq!(renewed, RenewOutcome::Renewed);
            let t = Instant::now();
            assert!(f.registry.release(&lease).await.expect("release"));
            let released = t.elapsed();
            release.push(released);
            both.push(acquired + released);
        }
    });
    let [p, a, n, r, b] = samples.map(|mut s| Stats::of(&mut s));
    println!("\nlease_roundtrip summary ({rounds} interleaved rounds, one connection, loopback redis-server)");
    println!("  machine: {}", machine());
    println!("  redis:   {}", redis_version());
    println!("  {:<22} {:>10} {:>10} {:>10} {:>10}", "operation", "p50", "mean", "p99", "p50/PING");
    for (name, s) in [("PING", &p), ("acquire", &a), ("renew", &n), ("release", &r), ("acquire+release", &b)] {
        let x = s.p50.as_secs_f64() / p.p50.as_secs_f64();
        println!("  {name:<22} {:>10.1?} {:>10.1?} {:>10.1?} {x:>9.2}x", s.p50, s.mean, s.p99);
    }
    let x = |s: &Stats| s.p50.as_secs_f64() / p.p50.as_secs_f64();
    println!(
        "  ratio acquire+release / PING: p50 {:.2}x, mean {:.2}x",
        x(&b),
        b.mean.as_secs_f64() / p.mean.as_secs_f64()
    );
    println!("  per operation / PING (p50): acquire {:.2}x, renew {:.2}x, release {:.2}x", x(&a), x(&n), x(&r));
    match rt.block_on(server_time(f, rounds.min(2000))) {
        Ok(line) => println!("  redis-server time per call (INFO commandstats): {line}"),
        Err(e) => println!("  redis-server time per call: not measured ({e})"),
    }
}

/// Redis's own microseconds per call for PING and for each script, from `INFO commandstats`
/// (every script counts as `evalsha`, so each phase runs one kind; release is what acquire+release
/// costs beyond acquire alone).
async fn server_time(f: &Fixture, rounds: usize) -> redis::RedisResult<String> {
    let client = redis::Client::open(f._server.url())?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let lease_key = |lease: &Lease| format!("sf:v1:lease:{}", lease.stream);
    let mut usec = Vec::new();
    for phase in 0..4 {
        let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut con).await?;
        match phase {
            0 => {
                for _ in 0..rounds {
                    f.registry.ping().await.expect("ping");
                }
            }
            1 => {
                for _ in 0..rounds {
                    let lease = f.registry.acquire(&f.key, &f.who, &f.opts).await.expect("acquire");
                    // Freed by a plain DEL, which commandstats counts apart from the scripts.
                    let _: () = redis::cmd("DEL").arg(lease_key(&lease)).query_async(&mut con).await?;
                }
            }
            2 => {
                let lease = f.registry.acquire(&f.key, &f.who, &f.opts).await.expect("acquire");
                let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut con).await?;
                for _ in 0..rounds {
                    assert_eq!(f.registry.renew(&lease, f.opts.ttl).await.expect("renew"), RenewOutcome::Renewed);
                }
                let _: () = redis::cmd("DEL").arg(lease_key(&lease)).query_async(&mut con).await?;
            }
            _ => {
                for _ in 0..rounds {
                    acquire_release(f).await;
                }
            }
        }
        let stats: String = redis::cmd("INFO").arg("commandstats").query_async(&mut con).await?;
        let cmd = if phase == 0 { "cmdstat_ping:" } else { "cmdstat_evalsha:" };
        usec.push(total_usec(&stats, cmd).map(|u| u / rounds as f64));
    }
    let [ping, acquire, renew, both] = [usec[0], usec[1], usec[2], usec[3]];
    let release = both.zip(acquire).map(|(b, a)| b - a);
    let show = |u: Option<f64>| u.map_or("?".to_string(), |u| format!("{u:.1} µs"));
    Ok(format!("PING {}, acquire {}, renew {}, release {}", show(ping), show(acquire), show(renew), show(release)))
}

/// The `usec=` total of one `cmdstat_*:` line.
fn total_usec(stats: &str, prefix: &str) -> Option<f64> {
    let line = stats.lines().find(|l| l.starts_with(prefix))?;
    let rest = &line[line.find("usec=")? + 5..];
    rest.split(',').next()?.parse().ok()
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
