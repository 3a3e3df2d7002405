//! The operator at scale on the local API server of `scripts/cluster` (docs/benchmarks.md,
//! "Operator at scale"): a measurement, not a CI test, so every case is `#[ignore]`d and run by
//! `scripts/operator-scale`. Each prints a report; figures are not asserted beyond the work
//! having completed (every LiveStream Ready, Live, back to Ready, deleted).
//!
//! - `operator_memory_with_unrelated_secrets`: 20,000 Secrets of 4 KiB in one namespace, then
//!   each operator binary of `SCALE_OPERATOR_BINS` (comma-separated; default: this build) runs
//!   next to them with one LiveStream elsewhere; its resident memory is sampled.
//! - `operator_at_scale`: `SCALE_N` LiveStreams (default 1,000) with their Secrets across 100
//!   namespaces by server-side apply, 8 kubectl processes in parallel; time to all Ready, rates,
//!   CPU, memory; ten publishes one at a time; then up to 1,000 of them live at once (leases
//!   taken through the registry's edge API, viewer counts changing every second): status lag,
//!   patch rate, CPU by process; ten more publishes one at a time while those are live and
//!   their counts keep changing (ten probe LiveStreams outside the `SCALE_N`); then delete-all. `SCALE_REPORT=file.json` writes the run's
//!   numbers (docs/benchmarks/operator-scale/plot.py draws them); `SCALE_PROFILE_DIR=dir`
//!   records the operator with `perf` over the live phase.

use std::{
    collections::HashMap,
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use streamfleet_registry::{
    AcquireOptions, EdgeRegistry, KeyHash, Lease, LeaseTiming, PublisherInfo, StreamId,
    redis::{RedisConfig, RedisRegistry},
};
use streamfleet_testkit::RedisServer;
use streamfleet_tests::{
    binaries::binaries_async,
    cluster::{Cluster, OperatorProcess, eventually},
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    time::Instant,
};

const NAMESPACES: usize = 100;
const PARALLEL_APPLIES: usize = 8;
/// LiveStreams published one at a time while the others are live.
const PROBES: usize = 10;

/// CPU seconds (user + system) and peak resident KiB of a process, from /proc.
fn proc_usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command: utime is the 12th, stime the 13th.
    let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    (cpu, kib("VmHWM:").unwrap_or(0))
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The kube-apiserver process of this cluster (its command line names the cluster's state dir).
fn apiserver_pid(cluster: &Cluster) -> Option<u32> {
    let dir = cluster.dir.to_string_lossy().to_string();
    std::fs::read_dir("/proc").ok()?.filter_map(Result::ok).find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        (cmd.contains("kube-apiserver") && cmd.contains("--etcd-servers") && cmd.contains(&dir)).then_some(pid)
    })
}

/// The first process whose command line (arguments joined by spaces) satisfies `pred`.
fn pid_where(pred: impl Fn(&str) -> bool) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.filter_map(Result::ok).find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        pred(&String::from_utf8_lossy(&cmd).replace('\0', " ")).then_some(pid)
    })
}

/// The processes whose CPU the report splits: name and pid.
struct Components(Vec<(&'static str, u32)>);

impl Components {
    /// CPU seconds of each, in order.
    fn cpu(&self) -> Vec<f64> {
        self.0.iter().map(|(_, pid)| proc_usage(*pid).0).collect()
    }

    /// `name secs, …` for the CPU spent between two [`Components::cpu`] readings, and the same
    /// as JSON.
    fn spent(&self, before: &[f64], after: &[f64]) -> (String, serde_json::Value) {
        let mut text = Vec::new();
        let mut json = serde_json::Map::new();
        for (((name, _), b), a) in self.0.iter().zip(before).zip(after) {
            text.push(format!("{name} {:.2} s", a - b));
            json.insert((*name).to_string(), serde_json::json!(((a - b) * 100.0).round() / 100.0));
        }
        (text.join(", "), serde_json::Value::Object(json))
    }
}

/// `apiserver_request_total` summed by verb, for our resources only.
async fn requests_by_verb(cluster: &Cluster) -> HashMap<String, f64> {
    let out = cluster.kubectl(&["get", "--raw", "/metrics"]).await.expect_ok("apiserver metrics");
    let mut by = HashMap::new();
    for l in out.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let resource = l.split("resource=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("");
        if !matches!(resource, "livestreams" | "secrets" | "events" | "leases") {
            continue;
        }
        let verb = l.split("verb=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("?");
        let sub = l.split("subresource=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("");
        let key = if sub.is_empty() { format!("{verb} {resource}") } else { format!("{verb} {resource}/{sub}") };
        let v: f64 = l.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        *by.entry(key).or_insert(0.0) += v;
    }
    by
}

fn print_rates(before: &HashMap<String, f64>, after: &HashMap<String, f64>, secs: f64) {
    let mut keys: Vec<&String> = after.keys().collect();
    keys.sort();
    for k in keys {
        let d = after[k] - before.get(k).copied().unwrap_or(0.0);
        if d > 0.0 {
            println!("    {k:<34} {d:>8.0} requests  {:>8.1}/s", d / secs);
        }
    }
}

async fn redis_memory(redis: &RedisServer) -> String {
    let out = tokio::process::Command::new("redis-cli")
        .args(["-p", &redis.port().to_string(), "INFO", "memory"])
        .output()
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines().find_map(|l| l.strip_prefix("used_memory_human:")).unwrap_or("?").trim().to_string()
}

/// Server-side applies `docs` (YAML documents) with `PARALLEL_APPLIES` kubectl processes.
async fn apply_parallel(cluster: &Cluster, docs: Vec<String>) {
    let chunk = docs.len().div_ceil(PARALLEL_APPLIES).max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for part in docs.chunks(chunk) {
        let yaml = part.join("---\n");
        let mut cmd = cluster.kubectl_command();
        cmd.args(["apply", "--server-side", "--field-manager=scale-bench", "-f", "-", "-o", "name"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        tasks.spawn(async move {
            let mut child = cmd.spawn().expect("spawn kubectl");
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(yaml.as_bytes()).await.expect("write kubectl stdin");
            }
            let out = tokio::time::timeout(Duration::from_secs(900), child.wait_with_output())
                .await
                .expect("apply within 15 min")
                .expect("kubectl runs");
            assert!(out.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("apply task");
    }
}

/// The Secret and LiveStream of one benchmark stream, as one multi-document manifest.
fn stream_doc(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}-key, namespace: {ns}}}\nstringData: {{publishKey: {key}}}\n---\n\
         apiVersion: streamfleet.io/v1alpha1\nkind: LiveStream\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec: {{publishKeySecretRef: {{name: {name}-key}}}}\n",
        key = key_of(ns, name)
    )
}

fn key_of(ns: &str, name: &str) -> String {
    format!("scale-{ns}-{name}-Xq7pLm2Zt9")
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Installs the LiveStream CRD (a fresh cluster has none) and waits until it is served.
async fn install_crd(cluster: &Cluster) {
    let crd = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/livestream.yaml");
    let crd = crd.to_string_lossy().to_string();
    cluster.kubectl(&["apply", "--server-side", "-f", &crd]).await.expect_ok("install the CRD");
    cluster
        .kubectl(&["wait", "--for=condition=Established", "crd/livestreams.streamfleet.io", "--timeout=30s"])
        .await
        .expect_ok("the CRD is established");
}

fn operator_bins(default: PathBuf) -> Vec<PathBuf> {
    match std::env::var("SCALE_OPERATOR_BINS") {
        Ok(list) if !list.is_empty() => list.split(',').map(PathBuf::from).collect(),
        _ => vec![default],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: scripts/operator-scale"]
async fn operator_memory_with_unrelated_secrets() {
    let Some(cluster) = Cluster::find() else { return };
    install_crd(&cluster).await;
    let bins = binaries_async().await;
    let redis = tokio::task::spawn_blocking(RedisServer::start).await.expect("redis-server");
    let count: usize = std::env::var("SCALE_SECRETS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let filler = "x".repeat(4096);
    cluster.kubectl(&["create", "namespace", "scale-secrets"]).await.expect_ok("namespace");
    cluster.kubectl(&["create", "namespace", "scale-media"]).await.expect_ok("namespace");
    let docs: Vec<String> = (0..count)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: unrelated-{i}, namespace: scale-secrets}}\nstringData: {{blob: {filler}}}\n"
            )
        })
        .collect();
    let started = Instant::now();
    apply_parallel(&cluster, docs).await;
    println!("{count} Secrets of 4 KiB created in {:.1} s", started.elapsed().as_secs_f64());
    cluster
        .kubectl_in(
            &["apply", "-n", "scale-media", "-f", "-"],
            "apiVersion: streamfleet.io/v1alpha1\nkind: LiveStream\nmetadata: {name: probe}\nspec: {}\n",
        )
        .await
        .expect_ok("probe LiveStream");
    for (i, bin) in operator_bins(bins.operator.clone()).iter().enumerate() {
        let _ = cluster
            .kubectl(&["annotate", "livestream", "probe", "-n", "scale-media", &format!("run={i}"), "--overwrite"])
            .await;
        let op = OperatorProcess::start_with_env(
            bin,
            &format!("scale-mem-{i}"),
            &cluster.kubeconfig,
            "default",
            &redis.url(),
            &[("STREAMFLEET_LEADER_ELECTION", "false")],
            false,
        );
        let pid = op.pid().expect("operator pid");
        let t0 = Instant::now();
        eventually("the operator reconciles", Duration::from_secs(120), || async {
            (op.metric("streamfleet_operator_reconciles_total").await >= 1.0).then_some(())
        })
        .await;
        let first_reconcile = t0.elapsed();
        // The Secret watch lists all Secrets while the controller runs: sample over 30 s.
        let mut samples = Vec::new();
        while t0.elapsed() < Duration::from_secs(30) {
            samples.push(rss_kib(pid));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let (cpu, peak) = proc_usage(pid);
        let last = samples.last().copied().unwrap_or(0);
        println!(
            "{}: first reconcile after {:.1} s; RSS after 30 s {:.1} MiB, peak {:.1} MiB, CPU {:.2} s",
            bin.display(),
            first_reconcile.as_secs_f64(),
            last as f64 / 1024.0,
            peak as f64 / 1024.0,
            cpu
        );
        drop(op);
    }
    for ns in ["scale-secrets", "scale-media"] {
        let _ = cluster.kubectl(&["delete", "livestreams", "--all", "-n", ns, "--wait=false"]).await;
    }
    // Without an operator the finalizer stays: take it off, this is a scratch namespace.
    let _ = cluster
        .kubectl(&[
            "patch",
            "livestream",
            "probe",
            "-n",
            "scale-media",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ])
        .await;
    for ns in ["scale-secrets", "scale-media"] {
        let _ = cluster.kubectl(&["delete", "namespace", ns, "--wait=false"]).await;
    }
}

/// When a status was seen: (time, `namespace/name`, phase, viewers).
type Seen = (Instant, String, String, String);

/// Phase and viewers of every LiveStream as the API server reports changes, with the time each
/// change was seen: a `kubectl get --watch-only` of them all. Should kubectl exit (the API
/// server closes a watch whose reader falls behind), it is started again at once and every
/// object's current state is listed and recorded at that time, so a change made while it was
/// down is seen late (the figures can only get worse), never lost. The report says how often
/// that happened; kubectl's errors go to the test's output.
struct StatusWatch {
    seen: Arc<Mutex<Vec<Seen>>>,
    restarts: Arc<AtomicU32>,
    pid: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StatusWatch {
    fn drop(&mut self) {
        // Drops the running kubectl, which is killed on drop.
        self.task.abort();
    }
}

/// kubectl's `-o` for one line per LiveStream: `namespace/name phase viewers`.
const STATUS_LINE: &str = "{.metadata.namespace}/{.metadata.name} {.status.phase} {.status.viewers}{\"\\n\"}";

impl StatusWatch {
    fn start(cluster: &Cluster) -> StatusWatch {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let restarts = Arc::new(AtomicU32::new(0));
        let pid = Arc::new(AtomicU32::new(0));
        let (sink, count, current) = (seen.clone(), restarts.clone(), pid.clone());
        let mut watch = cluster.kubectl_command();
        watch
            .args(["get", "livestreams", "-A", "--watch-only", "-o", &format!("jsonpath={STATUS_LINE}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut list = cluster.kubectl_command();
        list.args(["get", "livestreams", "-A", "-o", &format!("jsonpath={{range .items[*]}}{STATUS_LINE}{{end}}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let record = move |l: &str| {
            let mut p = l.split(' ');
            let (id, phase, viewers) = (p.next().unwrap_or(""), p.next().unwrap_or(""), p.next().unwrap_or(""));
            sink.lock().unwrap_or_else(|e| e.into_inner()).push((
                Instant::now(),
                id.to_string(),
                phase.to_string(),
                viewers.to_string(),
            ));
        };
        let task = tokio::spawn(async move {
            loop {
                let Ok(mut child) = watch.spawn() else { return };
                current.store(child.id().unwrap_or(0), Ordering::Relaxed);
                let Some(stdout) = child.stdout.take() else { return };
                let mut lines = BufReader::new(stdout).lines();
                if count.load(Ordering::Relaxed) > 0 {
                    // What changed while no watch was open: the current state, seen now.
                    if let Ok(out) = list.output().await {
                        String::from_utf8_lossy(&out.stdout).lines().for_each(&record);
                    }
                }
                while let Ok(Some(l)) = lines.next_line().await {
                    record(&l);
                }
                let _ = child.wait().await;
                count.fetch_add(1, Ordering::Relaxed);
            }
        });
        StatusWatch { seen, restarts, pid, task }
    }

    fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// When each id first showed `phase` at or after `since`.
    fn first_phase(&self, phase: &str, since: Instant) -> HashMap<String, Instant> {
        let mut out = HashMap::new();
        for (t, id, p, _) in self.seen.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if *t >= since && p == phase {
                out.entry(id.clone()).or_insert(*t);
            }
        }
        out
    }
}

/// Publishes each of `streams` in turn through the edge API, waits until the watch sees it
/// `Live`, releases it and waits until it is `Ready` again. Returns the delays (s) from the
/// registry change to the status the watch saw: publish → Live, end → Ready.
async fn one_at_a_time(
    registry: &RedisRegistry,
    watch: &StatusWatch,
    who: &PublisherInfo,
    opts: &AcquireOptions,
    streams: &[&(String, String)],
) -> (Vec<f64>, Vec<f64>) {
    let (mut live, mut ready) = (Vec::new(), Vec::new());
    for (ns, name) in streams {
        let id = format!("{ns}/{name}");
        let since = Instant::now();
        let lease = registry.acquire(&KeyHash::of_key(&key_of(ns, name)), who, opts).await.expect("admitted");
        let lag = eventually("one stream shows Live", Duration::from_secs(60), || async {
            watch.first_phase("Live", since).get(&id).map(|t| t.saturating_duration_since(since).as_secs_f64())
        })
        .await;
        live.push(lag);
        let since = Instant::now();
        registry.release(&lease).await.expect("release");
        let lag = eventually("one stream is Ready again", Duration::from_secs(60), || async {
            watch.first_phase("Ready", since).get(&id).map(|t| t.saturating_duration_since(since).as_secs_f64())
        })
        .await;
        ready.push(lag);
    }
    (live, ready)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: scripts/operator-scale"]
async fn operator_at_scale() {
    let Some(cluster) = Cluster::find() else { return };
    let n: usize = std::env::var("SCALE_N").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let live_n = n.min(1000);
    install_crd(&cluster).await;
    let bins = binaries_async().await;
    let redis = tokio::task::spawn_blocking(RedisServer::start).await.expect("redis-server");
    // Shared with the viewer-count churn, which runs as its own task.
    let registry = Arc::new(RedisRegistry::connect(RedisConfig::new(redis.url())).await.expect("registry"));
    registry.end_quarantine().await.expect("fresh registry");
    let api_pid = apiserver_pid(&cluster).expect("the API server's pid");

    let ids: Vec<(String, String)> =
        (0..n).map(|i| (format!("scale-{:03}", i % NAMESPACES), format!("stream-{i:05}"))).collect();
    let ns_docs: Vec<String> = (0..NAMESPACES)
        .map(|i| format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: scale-{i:03}}}\n"))
        .collect();
    apply_parallel(&cluster, ns_docs).await;

    let bin = operator_bins(bins.operator.clone()).remove(0);
    let op = OperatorProcess::start_with_env(
        &bin,
        "scale-op",
        &cluster.kubeconfig,
        "default",
        &redis.url(),
        &[("STREAMFLEET_LEADER_ELECTION", "false"), ("RUST_LOG", "warn")],
        false,
    );
    let pid = op.pid().expect("operator pid");
    eventually("the operator serves metrics", Duration::from_secs(60), || async {
        streamfleet_testkit::http::get(op.http, "/metrics").await.map(|_| ())
    })
    .await;

    let docs: Vec<String> = ids.iter().map(|(ns, name)| stream_doc(ns, name)).collect();
    let (req0, (op_cpu0, _), (api_cpu0, _), rec0) = (
        requests_by_verb(&cluster).await,
        proc_usage(pid),
        proc_usage(api_pid),
        op.metric("streamfleet_operator_reconciles_total").await,
    );
    let t0 = Instant::now();
    apply_parallel(&cluster, docs).await;
    let created = t0.elapsed();
    let last_create = Instant::now();
    eventually("every LiveStream is Ready", Duration::from_secs(1800), || async {
        (op.metric("streamfleet_operator_streams{phase=\"Ready\"}").await >= n as f64).then_some(())
    })
    .await;
    let ready_after = last_create.elapsed();
    let total = t0.elapsed().as_secs_f64();
    let (req1, (op_cpu1, op_peak), (api_cpu1, _), rec1) = (
        requests_by_verb(&cluster).await,
        proc_usage(pid),
        proc_usage(api_pid),
        op.metric("streamfleet_operator_reconciles_total").await,
    );
    println!("== {n} LiveStreams + {n} Secrets in {NAMESPACES} namespaces");
    println!("  created (server-side apply, {PARALLEL_APPLIES} in parallel) in {:.1} s", created.as_secs_f64());
    println!("  all Ready {:.1} s after the last create", ready_after.as_secs_f64());
    println!("  reconciles {:.0} ({:.1}/s over {total:.1} s)", rec1 - rec0, (rec1 - rec0) / total);
    println!("  operator CPU {:.1} s, API server CPU {:.1} s", op_cpu1 - op_cpu0, api_cpu1 - api_cpu0);
    println!(
        "  operator peak RSS {:.1} MiB; Redis used_memory {}",
        op_peak as f64 / 1024.0,
        redis_memory(&redis).await
    );
    println!("  API requests (ours) by verb, whole phase:");
    print_rates(&req0, &req1, total);

    // PROBES more LiveStreams, outside the figures above, that the live phase leaves idle: one
    // at a time they are published and ended while the others are all live (at `SCALE_N=1000`
    // every one of the `n` is).
    let probes: Vec<(String, String)> =
        (0..PROBES).map(|i| (format!("scale-{:03}", i % NAMESPACES), format!("probe-{i:02}"))).collect();
    let probe_docs: Vec<String> = probes.iter().map(|(ns, name)| stream_doc(ns, name)).collect();
    apply_parallel(&cluster, probe_docs).await;
    eventually("the probe LiveStreams are Ready", Duration::from_secs(300), || async {
        (op.metric("streamfleet_operator_streams{phase=\"Ready\"}").await >= (n + PROBES) as f64).then_some(())
    })
    .await;

    // Live: holders through the edges' API, as an edge takes them.
    let watch = StatusWatch::start(&cluster);
    // The watch is open once it reports anything; poke one stream until it does.
    // Each poke must change the object, or a poke made before the watch opened is its last.
    let poke = std::sync::atomic::AtomicU32::new(0);
    eventually("the status watch is open", Duration::from_secs(30), || async {
        let n = poke.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = cluster
            .kubectl(&["annotate", "livestream", &ids[0].1, "-n", &ids[0].0, &format!("bench/poke={n}"), "--overwrite"])
            .await;
        (!watch.seen.lock().unwrap_or_else(|e| e.into_inner()).is_empty()).then_some(())
    })
    .await;
    let who = PublisherInfo {
        edge: "bench-edge".into(),
        remote_addr: Some("192.0.2.9:1935".into()),
        relay_addr: None,
        protocol: None,
    };
    let opts = AcquireOptions::new(&LeaseTiming::default());
    let dir = cluster.dir.to_string_lossy().to_string();
    let mut parts = vec![("operator", pid), ("kube-apiserver", api_pid)];
    let found = [
        ("etcd", pid_where(|c| c.contains(" serve ") && c.contains(&dir) && !c.contains("kube-"))),
        ("redis", pid_where(|c| c.contains("redis-server") && c.contains(&redis.port().to_string()))),
        ("kubectl watch", Some(watch.pid.load(Ordering::Relaxed)).filter(|p| *p != 0)),
    ];
    parts.extend(found.into_iter().filter_map(|(name, pid)| Some((name, pid?))));
    let components = Components(parts);
    let mut report = serde_json::json!({ "n": n, "live": live_n });

    // One stream at a time: publish, wait for Live, end, wait for Ready; ten times.
    let singles: Vec<&(String, String)> = ids.iter().skip(live_n.min(n - 1)).cycle().take(10).collect();
    let (mut one_live, mut one_ready) = one_at_a_time(&registry, &watch, &who, &opts, &singles).await;
    println!(
        "== one publish at a time (10): publish → Live max {:.2} s, p50 {:.2} s; end → Ready max {:.2} s, p50 {:.2} s",
        percentile(&mut one_live, 1.0),
        percentile(&mut one_live, 0.5),
        percentile(&mut one_ready, 1.0),
        percentile(&mut one_ready, 0.5)
    );
    report["single"] = serde_json::json!({ "live_s": one_live, "ready_s": one_ready });

    let (req2, (op_cpu2, _), (api_cpu2, _)) = (requests_by_verb(&cluster).await, proc_usage(pid), proc_usage(api_pid));
    let cpu_burst0 = components.cpu();
    // SCALE_PROFILE_DIR: `perf record` of the operator over the live phase (40 s), to find
    // where its time goes (the local API server serves no /debug/pprof).
    let mut profilers = Vec::new();
    if let Ok(dir) = std::env::var("SCALE_PROFILE_DIR") {
        let mut perf = tokio::process::Command::new("perf");
        perf.args(["record", "-F", "499", "-g", "-p", &pid.to_string(), "-o", &format!("{dir}/operator-live.perf")])
            .args(["--", "sleep", "40"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        profilers.extend(perf.spawn().ok());
    }
    let live_start = Instant::now();
    let mut admitted: HashMap<String, Instant> = HashMap::new();
    let mut leases: Vec<Lease> = Vec::new();
    for (ns, name) in ids.iter().take(live_n) {
        let lease = registry.acquire(&KeyHash::of_key(&key_of(ns, name)), &who, &opts).await.expect("admitted");
        admitted.insert(format!("{ns}/{name}"), Instant::now());
        leases.push(lease);
    }
    let all_admitted = live_start.elapsed();
    eventually("every live stream shows Live", Duration::from_secs(600), || async {
        (watch.first_phase("Live", live_start).len() >= live_n).then_some(())
    })
    .await;
    let (burst_cpu_text, burst_cpu) = components.spent(&cpu_burst0, &components.cpu());
    let burst_secs = live_start.elapsed().as_secs_f64();
    let live_seen = watch.first_phase("Live", live_start);
    let mut lag: Vec<f64> = admitted
        .iter()
        .filter_map(|(id, t)| Some(live_seen.get(id)?.saturating_duration_since(*t).as_secs_f64()))
        .collect();
    println!("== {live_n} live (leases through the edge API, admitted in {:.1} s)", all_admitted.as_secs_f64());
    println!(
        "  publish → Live: p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        percentile(&mut lag, 0.5),
        percentile(&mut lag, 0.99),
        percentile(&mut lag, 1.0)
    );
    println!("  CPU until all Live ({burst_secs:.1} s): {burst_cpu_text}");
    report["burst_live_s"] = serde_json::json!(lag);
    report["burst_cpu_s"] = serde_json::json!({ "secs": burst_secs, "by": burst_cpu });

    // The burst has settled: the operator counts every one of them Live too (its phase gauge
    // moves when it has decided the status, which the watch above saw written).
    eventually("the operator counts every live stream Live", Duration::from_secs(120), || async {
        (op.metric("streamfleet_operator_streams{phase=\"Live\"}").await >= live_n as f64).then_some(())
    })
    .await;

    // Viewers change every second (measured over the first 30 s, then on through the
    // one-at-a-time rounds below); leases are renewed as an edge would.
    let ttl = LeaseTiming::default().ttl;
    let ids_live: Vec<StreamId> = ids.iter().take(live_n).map(|(ns, name)| StreamId::new(ns, name)).collect();
    let set_at: Arc<Mutex<Vec<(Instant, u32)>>> = Arc::default();
    let viewers_start = Instant::now();
    let cpu_v0 = components.cpu();
    let req_v0 = requests_by_verb(&cluster).await;
    let churn = {
        let (registry, leases, set_at) = (registry.clone(), leases.clone(), set_at.clone());
        tokio::spawn(async move {
            for tick in 0u32.. {
                let count = tick % 7 + 1;
                let counts: Vec<(StreamId, u32)> = ids_live.iter().map(|id| (id.clone(), count)).collect();
                registry.set_viewers("bench-edge", &counts, Duration::from_secs(30)).await.expect("viewers");
                set_at.lock().unwrap_or_else(|e| e.into_inner()).push((Instant::now(), count));
                if tick % 5 == 0 {
                    for l in &leases {
                        registry.renew(l, ttl).await.expect("renew");
                    }
                }
                tokio::time::sleep_until(viewers_start + Duration::from_secs(u64::from(tick) + 1)).await;
            }
        })
    };
    tokio::time::sleep_until(viewers_start + Duration::from_secs(30)).await;
    let viewer_secs = viewers_start.elapsed().as_secs_f64();
    let (viewers_cpu_text, viewers_cpu) = components.spent(&cpu_v0, &components.cpu());
    let req_v1 = requests_by_verb(&cluster).await;
    // Server-side apply counts as verb APPLY.
    let status_patches = req_v1.get("APPLY livestreams/status").copied().unwrap_or(0.0)
        - req_v0.get("APPLY livestreams/status").copied().unwrap_or(0.0);
    // The age of the viewer count a status shows when it is written: from the latest setting of
    // that count before it was seen (counts cycle through 1..=7, so an age under 7 s is exact).
    let mut vlag: Vec<f64> = Vec::new();
    let set_at: Vec<(Instant, u32)> = set_at.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for (t, _, phase, viewers) in watch.seen.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        if *t < viewers_start || *t > viewers_start + Duration::from_secs(30) || phase != "Live" {
            continue;
        }
        let Ok(v) = viewers.parse::<u32>() else { continue };
        if let Some((at, _)) = set_at.iter().rev().find(|(at, c)| *c == v && at <= t) {
            vlag.push(t.saturating_duration_since(*at).as_secs_f64());
        }
    }
    println!(
        "  viewers changing every second for {viewer_secs:.0} s: status patches {status_patches:.0} ({:.1}/s); age of the count shown p50 {:.2} s, p99 {:.2} s",
        status_patches / viewer_secs,
        percentile(&mut vlag, 0.5),
        percentile(&mut vlag, 0.99)
    );
    println!("  CPU while viewers change ({viewer_secs:.0} s): {viewers_cpu_text}");
    report["viewers_cpu_s"] = serde_json::json!({ "secs": viewer_secs, "by": viewers_cpu });
    report["status_patches_per_s"] = serde_json::json!(status_patches / viewer_secs);

    // One publish at a time again, now with the others all live and their viewer counts still
    // changing every second (the live-counter budget busy): a probe is published, seen Live,
    // ended, seen Ready; then the next.
    let singles: Vec<&(String, String)> = probes.iter().collect();
    let t_singles = Instant::now();
    let (mut at_live, mut at_ready) = one_at_a_time(&registry, &watch, &who, &opts, &singles).await;
    churn.abort();
    let _ = churn.await;
    println!(
        "== one publish at a time ({PROBES}) with {live_n} live, viewer counts changing every second ({:.0} s): \
         publish → Live p50 {:.2} s, p99 {:.2} s, max {:.2} s; end → Ready p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        t_singles.elapsed().as_secs_f64(),
        percentile(&mut at_live, 0.5),
        percentile(&mut at_live, 0.99),
        percentile(&mut at_live, 1.0),
        percentile(&mut at_ready, 0.5),
        percentile(&mut at_ready, 0.99),
        percentile(&mut at_ready, 1.0)
    );
    report["single_while_live"] = serde_json::json!({ "live": live_n, "live_s": at_live, "ready_s": at_ready });

    let cpu_end0 = components.cpu();
    let end_start = Instant::now();
    let mut released: HashMap<String, Instant> = HashMap::new();
    for l in &leases {
        registry.release(l).await.expect("release");
        released.insert(l.stream.to_string(), Instant::now());
    }
    eventually("every stream is back to Ready", Duration::from_secs(600), || async {
        (watch.first_phase("Ready", end_start).len() >= live_n).then_some(())
    })
    .await;
    let (end_cpu_text, end_cpu) = components.spent(&cpu_end0, &components.cpu());
    let end_secs = end_start.elapsed().as_secs_f64();
    let ready_seen = watch.first_phase("Ready", end_start);
    let mut end_lag: Vec<f64> = released
        .iter()
        .filter_map(|(id, t)| Some(ready_seen.get(id)?.saturating_duration_since(*t).as_secs_f64()))
        .collect();
    println!(
        "  end → Ready: p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        percentile(&mut end_lag, 0.5),
        percentile(&mut end_lag, 0.99),
        percentile(&mut end_lag, 1.0)
    );
    println!("  CPU until all Ready ({end_secs:.1} s): {end_cpu_text}");
    report["burst_ready_s"] = serde_json::json!(end_lag);
    report["end_cpu_s"] = serde_json::json!({ "secs": end_secs, "by": end_cpu });
    let live_total = live_start.elapsed().as_secs_f64();
    let (req3, (op_cpu3, op_peak3), (api_cpu3, _)) =
        (requests_by_verb(&cluster).await, proc_usage(pid), proc_usage(api_pid));
    println!(
        "  live phase {live_total:.0} s: operator CPU {:.1} s, API server CPU {:.1} s, operator peak RSS {:.1} MiB",
        op_cpu3 - op_cpu2,
        api_cpu3 - api_cpu2,
        op_peak3 as f64 / 1024.0
    );
    print_rates(&req2, &req3, live_total);
    report["live_phase"] = serde_json::json!({
        "secs": live_total,
        "operator_cpu_s": op_cpu3 - op_cpu2,
        "apiserver_cpu_s": api_cpu3 - api_cpu2,
    });
    println!("  status watch restarts (the API server closed it): {}", watch.restarts());
    report["watch_restarts"] = serde_json::json!(watch.restarts());
    // The run's numbers, for docs/benchmarks/operator-scale.py (the plot in docs/benchmarks.md).
    if let Ok(path) = std::env::var("SCALE_REPORT") {
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        match std::fs::write(&path, text) {
            Ok(()) => println!("  report written to {path}"),
            Err(e) => println!("  cannot write the report to {path}: {e}"),
        }
    }

    for mut p in profilers {
        let _ = tokio::time::timeout(Duration::from_secs(60), p.wait()).await;
    }
    let d0 = Instant::now();
    let (req4, (op_cpu4, _), (api_cpu4, _)) = (requests_by_verb(&cluster).await, proc_usage(pid), proc_usage(api_pid));
    let mut cmd = cluster.kubectl_command();
    cmd.args(["delete", "livestreams", "--all", "-A", "--wait=false"]).stdout(Stdio::null());
    assert!(cmd.status().await.expect("kubectl delete").success());
    eventually("every LiveStream is gone", Duration::from_secs(1800), || async {
        let mut cmd = cluster.kubectl_command();
        cmd.args(["get", "livestreams", "-A", "--no-headers", "-o", "name"]).stdout(Stdio::piped());
        let out = cmd.output().await.ok()?;
        out.stdout.is_empty().then_some(())
    })
    .await;
    let del = d0.elapsed().as_secs_f64();
    let (req5, (op_cpu5, _), (api_cpu5, _)) = (requests_by_verb(&cluster).await, proc_usage(pid), proc_usage(api_pid));
    println!(
        "== delete all: {del:.1} s; operator CPU {:.1} s, API server CPU {:.1} s",
        op_cpu5 - op_cpu4,
        api_cpu5 - api_cpu4
    );
    print_rates(&req4, &req5, del);
    let records = streamfleet_registry::OperatorRegistry::list_streams(&*registry).await.expect("records");
    println!("  registry records left: {}", records.len());
    drop(op);
    let names: Vec<String> = (0..NAMESPACES).map(|i| format!("namespace/scale-{i:03}")).collect();
    let mut cmd = cluster.kubectl_command();
    cmd.arg("delete").args(&names).arg("--wait=false").stdout(Stdio::null());
    let _ = cmd.status().await;
}
