//! A private Sentinel-managed Redis for one test: three `redis-server`s (one primary, two
//! replicas) and three `redis-sentinel`s on free loopback ports, with a short
//! `down-after-milliseconds`, all killed on drop. Tests kill (`SIGKILL`), freeze (`SIGSTOP`) and
//! resume (`SIGCONT`) single processes and wait for Sentinel to finish a failover.
//!
//! Queries go through `redis-cli` (installed with `redis-server`), so the helper needs no Redis
//! client of its own. Every wait polls a condition with a deadline.

use std::{
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The name the Sentinels monitor the primary under.
pub const MASTER_NAME: &str = "sfmaster";

/// One child process on a fixed loopback port.
struct Node {
    port: u16,
    child: Option<Child>,
    frozen: bool,
}

impl Node {
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            if self.frozen {
                signal(c.id(), "CONT");
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.frozen = false;
    }
}

/// Timing of the Sentinels (the failover bound follows from these: see docs/deploy.md).
#[derive(Clone, Copy, Debug)]
pub struct SentinelTiming {
    /// `down-after-milliseconds`: silence after which a Sentinel deems the primary down.
    pub down_after: Duration,
    /// `failover-timeout`.
    pub failover_timeout: Duration,
}

/// `down-after-milliseconds` 1500: the shortest that leaves a Sentinel one reconnect (it retries
/// once a second) to reach a just-promoted primary before deeming it down again.
impl Default for SentinelTiming {
    fn default() -> Self {
        SentinelTiming { down_after: Duration::from_millis(1500), failover_timeout: Duration::from_secs(5) }
    }
}

pub struct SentinelCluster {
    dir: PathBuf,
    redis: Vec<Node>,
    sentinels: Vec<Node>,
    timing: SentinelTiming,
    redis_args: Vec<String>,
}

impl SentinelCluster {
    /// Three Redis (the first one primary) and three Sentinels (quorum 2), replicas in sync.
    pub fn start(timing: SentinelTiming) -> Self {
        Self::start_with(timing, &[])
    }

    /// Like [`start`](Self::start) with extra `redis-server` arguments for all three servers
    /// (e.g. `--min-replicas-to-write 1`).
    pub fn start_with(timing: SentinelTiming, redis_args: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("sf-sentinel-{}-{}", std::process::id(), crate::free_port()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let mut c = SentinelCluster {
            dir,
            redis: Vec::new(),
            sentinels: Vec::new(),
            timing,
            redis_args: redis_args.iter().map(|a| a.to_string()).collect(),
        };
        for i in 0..3 {
            let port = crate::free_port();
            c.redis.push(Node { port, child: None, frozen: false });
            let primary = if i == 0 { None } else { Some(c.redis[0].port) };
            c.spawn_redis(i, primary);
        }
        c.wait_replicas_in_sync(Duration::from_secs(10));
        for i in 0..3 {
            c.sentinels.push(Node { port: crate::free_port(), child: None, frozen: false });
            c.spawn_sentinel(i);
        }
        // Every Sentinel must know the others before a failover can be authorised.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let known: Vec<usize> = (0..3)
                .map(|i| {
                    cli(c.sentinels[i].port, &["SENTINEL", "SENTINELS", MASTER_NAME])
                        .map(|out| out.lines().filter(|l| *l == "runid").count())
                        .unwrap_or(0)
                })
                .collect();
            let replicas: Vec<usize> = (0..3).map(|i| healthy_replicas(c.sentinels[i].port)).collect();
            if known.iter().all(|n| *n == 2) && replicas.iter().all(|n| *n == 2) {
                break;
            }
            assert!(Instant::now() < deadline, "Sentinels did not discover each other: {known:?} {replicas:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        c
    }

    pub fn timing(&self) -> SentinelTiming {
        self.timing
    }

    /// `redis+sentinel://127.0.0.1:a,127.0.0.1:b,127.0.0.1:c/sfmaster`
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", hosts.join(","))
    }

    pub fn redis_port(&self, i: usize) -> u16 {
        self.redis[i].port
    }

    /// A plain URL of Redis server `i` (for direct inspection).
    pub fn redis_url(&self, i: usize) -> String {
        format!("redis://127.0.0.1:{}/", self.redis[i].port)
    }

    /// Which server the running Sentinels agree is the primary (all of them), if they agree.
    pub fn agreed_primary(&self) -> Option<usize> {
        let mut seen = None;
        for s in self.sentinels.iter().filter(|s| s.child.is_some() && !s.frozen) {
            let out = cli(s.port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME])?;
            let port: u16 = out.lines().nth(1)?.trim().parse().ok()?;
            let i = self.redis.iter().position(|r| r.port == port)?;
            if seen.is_some_and(|p| p != i) {
                return None;
            }
            seen = Some(i);
        }
        seen
    }

    /// The Sentinels' primary, which must also answer `ROLE` as master.
    pub fn primary(&self) -> Option<usize> {
        let i = self.agreed_primary()?;
        (self.role(i).as_deref() == Some("master")).then_some(i)
    }

    /// What server `i` answers to `ROLE` (`master`, `slave`), `None` when it does not answer.
    pub fn role(&self, i: usize) -> Option<String> {
        if self.redis[i].child.is_none() || self.redis[i].frozen {
            return None;
        }
        cli(self.redis[i].port, &["ROLE"]).and_then(|o| o.lines().next().map(str::to_string))
    }

    /// Runs a command on server `i` with `redis-cli` and returns its output.
    pub fn redis_cli(&self, i: usize, args: &[&str]) -> Option<String> {
        cli(self.redis[i].port, args)
    }

    /// SIGKILL server `i` (all its data is gone: no persistence).
    pub fn kill_redis(&mut self, i: usize) {
        self.redis[i].kill();
    }

    /// Starts server `i` again (empty) as a replica of the current primary.
    pub fn restart_redis_as_replica(&mut self, i: usize) {
        let primary = self.wait_primary(Duration::from_secs(30));
        assert_ne!(primary, i, "server {i} is still the primary");
        self.redis[i].kill();
        self.spawn_redis(i, Some(self.redis[primary].port));
    }

    /// SIGSTOP server `i`: it keeps its sockets but answers nothing.
    pub fn freeze_redis(&mut self, i: usize) {
        let pid = self.redis[i].pid().unwrap_or_else(|| panic!("redis {i} is not running"));
        signal(pid, "STOP");
        self.redis[i].frozen = true;
    }

    /// SIGCONT server `i`.
    pub fn resume_redis(&mut self, i: usize) {
        let pid = self.redis[i].pid().unwrap_or_else(|| panic!("redis {i} is not running"));
        signal(pid, "CONT");
        self.redis[i].frozen = false;
    }

    /// SIGKILL Sentinel `i`.
    pub fn kill_sentinel(&mut self, i: usize) {
        self.sentinels[i].kill();
    }

    /// SIGSTOP Sentinel `i`: it keeps accepting TCP connections (the kernel does) but answers
    /// nothing, like a black-holed host.
    pub fn freeze_sentinel(&mut self, i: usize) {
        let pid = self.sentinels[i].pid().unwrap_or_else(|| panic!("sentinel {i} is not running"));
        signal(pid, "STOP");
        self.sentinels[i].frozen = true;
    }

    /// Waits until the Sentinels agree on a primary that answers as one; returns it.
    pub fn wait_primary(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            if let Some(p) = self.primary() {
                return p;
            }
            assert!(Instant::now() < deadline, "no agreed primary within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the Sentinels agree on a primary other than `old` and it answers as one.
    pub fn wait_failover_from(&self, old: usize, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            if let Some(p) = self.primary().filter(|p| *p != old) {
                return p;
            }
            assert!(Instant::now() < deadline, "no failover away from redis {old} within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until server `i` answers as a replica whose link to the primary is up.
    pub fn wait_replica_in_sync(&self, i: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let ok = self
                .redis_cli(i, &["INFO", "replication"])
                .is_some_and(|o| o.contains("role:slave") && o.contains("master_link_status:up"));
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "redis {i} did not become an in-sync replica within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every running Sentinel sees `n` healthy replicas of the primary (flags just
    /// `slave`, link to the primary up). Sentinels discover a replica from the primary's `INFO`,
    /// polled every 10 s, and reconfigure only replicas they know when they fail over: a
    /// restarted replica they have not seen yet would be left following a dead primary. Tests
    /// that fail over repeatedly wait for this steady state before the next fault, as a
    /// production deployment is between faults.
    pub fn wait_sentinels_see_replicas(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let seen: Vec<usize> = self
                .sentinels
                .iter()
                .filter(|s| s.child.is_some() && !s.frozen)
                .map(|s| healthy_replicas(s.port))
                .collect();
            if seen.iter().all(|k| *k >= n) {
                return;
            }
            assert!(Instant::now() < deadline, "Sentinels see {seen:?} healthy replicas after {within:?}, not {n}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_replicas_in_sync(&self, within: Duration) {
        for i in 1..self.redis.len() {
            self.wait_replica_in_sync(i, within);
        }
    }

    fn spawn_redis(&mut self, i: usize, replica_of: Option<u16>) {
        let dir = self.dir.join(format!("redis-{i}"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let port = self.redis[i].port.to_string();
        let mut cmd = Command::new(crate::require_tool("redis-server"));
        cmd.args(["--bind", "127.0.0.1", "--port", &port, "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .args(["--maxmemory-policy", "noeviction"])
            // As the chart: a replica that cannot resume replication after a failover (it was
            // ahead of the promoted one) needs a full sync, which Redis otherwise delays by 5 s
            // waiting for more replicas, long enough to make the new primary refuse writes
            // (`NOREPLICAS`) past the holders' deadlines.
            .args(["--repl-diskless-sync-delay", "0"])
            // Appended to across restarts; its tail is printed if the test fails (see Drop).
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .args(&self.redis_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = replica_of {
            cmd.args(["--replicaof", "127.0.0.1", &p.to_string()]);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn redis-server: {e}"));
        self.redis[i].child = Some(child);
        wait_listening(&mut self.redis[i], "redis-server");
    }

    fn spawn_sentinel(&mut self, i: usize) {
        let dir = self.dir.join(format!("sentinel-{i}"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let conf = dir.join("sentinel.conf");
        write_sentinel_conf(&conf, &dir, self.sentinels[i].port, self.redis[0].port, self.timing);
        let child = Command::new(crate::require_tool("redis-sentinel"))
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn redis-sentinel: {e}"));
        self.sentinels[i].child = Some(child);
        wait_listening(&mut self.sentinels[i], "redis-sentinel");
    }
}

impl Drop for SentinelCluster {
    fn drop(&mut self) {
        for n in self.sentinels.iter_mut().chain(self.redis.iter_mut()) {
            n.kill();
        }
        if std::thread::panicking() {
            self.print_log_tails();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl SentinelCluster {
    /// What each server and Sentinel logged last (a failed test's evidence: who was promoted,
    /// which replica resynced how, when).
    fn print_log_tails(&self) {
        const LINES: usize = 60;
        let logs = (0..self.redis.len())
            .map(|i| {
                (format!("redis-{i} (port {})", self.redis[i].port), self.dir.join(format!("redis-{i}/redis.log")))
            })
            .chain((0..self.sentinels.len()).map(|i| {
                (
                    format!("sentinel-{i} (port {})", self.sentinels[i].port),
                    self.dir.join(format!("sentinel-{i}/sentinel.log")),
                )
            }));
        for (name, path) in logs {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("---- {name}: last {LINES} lines of {}", path.display());
            for l in &lines[lines.len().saturating_sub(LINES)..] {
                eprintln!("{l}");
            }
        }
    }
}

fn write_sentinel_conf(conf: &Path, dir: &Path, port: u16, primary: u16, t: SentinelTiming) {
    let text = format!(
        "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\nsentinel resolve-hostnames no\n\
         sentinel monitor {MASTER_NAME} 127.0.0.1 {primary} 2\n\
         sentinel down-after-milliseconds {MASTER_NAME} {down}\n\
         sentinel failover-timeout {MASTER_NAME} {failover}\n\
         sentinel parallel-syncs {MASTER_NAME} 1\nlogfile {dir}/sentinel.log\n",
        dir = dir.display(),
        down = t.down_after.as_millis(),
        failover = t.failover_timeout.as_millis(),
    );
    std::fs::write(conf, text).unwrap_or_else(|e| panic!("write {}: {e}", conf.display()));
}

fn wait_listening(node: &mut Node, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(Ok(Some(status))) = node.child.as_mut().map(|c| c.try_wait()) {
            panic!("{what} on port {} exited at start: {status}", node.port);
        }
        if TcpStream::connect(("127.0.0.1", node.port)).is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "{what} did not listen on port {} within 5 s", node.port);
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `redis-cli -p PORT ARGS...` under `timeout 2` (this redis-cli has no timeout of its own);
/// `None` when it fails or times out.
/// How many replicas Sentinel `port` lists as healthy: flags exactly `slave` (not `s_down` or
/// `disconnected`) and `master-link-status` `ok`. `redis-cli` prints `SENTINEL REPLICAS` as one
/// field name or value per line, each replica starting with `name`.
fn healthy_replicas(port: u16) -> usize {
    let Some(out) = cli(port, &["SENTINEL", "REPLICAS", MASTER_NAME]) else { return 0 };
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    fn field<'a>(replica: &[&'a str], name: &str) -> Option<&'a str> {
        replica.iter().position(|l| *l == name).and_then(|i| replica.get(i + 1).copied())
    }
    lines
        .split(|l| *l == "name")
        .skip(1)
        .filter(|r| field(r, "flags") == Some("slave") && field(r, "master-link-status") == Some("ok"))
        .count()
}

fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new(crate::require_tool("timeout"))
        .arg("2")
        .arg(crate::require_tool("redis-cli"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success() && !text.starts_with("Could not connect") && !text.starts_with("ERR")).then_some(text)
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill -{sig}: {e}"));
    assert!(status.success(), "kill -{sig} {pid} failed");
}
