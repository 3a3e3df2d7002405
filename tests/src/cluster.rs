//! The local Kubernetes control plane of `scripts/cluster` (docs/cluster.md), as the
//! end-to-end suite uses it: kubectl and helm of the cluster's own build, the admin kubeconfig,
//! a kubeconfig for a ServiceAccount (TokenRequest), the operator as a local process, and
//! stopping and starting the API server.
//!
//! The cluster is found through `STREAMFLEET_CLUSTER_DIR` (exported by `scripts/cluster up`
//! and by `scripts/test`), else `<workspace>/target/cluster`. Never through `KUBECONFIG`: the
//! suite must not run against whatever cluster a developer's shell points at.

use std::{
    future::Future,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use serde_json::Value;
use streamfleet_testkit::child_output::OutputLines;
use tokio::{
    io::AsyncWriteExt,
    process::{Child, Command},
    time::{Instant, sleep, timeout},
};

use crate::manifest::ScratchDir;

/// How often [`eventually`] polls the API server.
const POLL: Duration = Duration::from_millis(300);
/// Longest any single kubectl or helm call may take.
const CALL_LIMIT: Duration = Duration::from_secs(60);

/// What a kubectl or helm call printed and whether it exited 0.
#[derive(Debug, Clone)]
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// The stdout; panics with both streams unless the call succeeded.
    pub fn expect_ok(self, what: &str) -> String {
        assert!(self.ok, "{what} failed:\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self.stdout
    }

    pub fn json(&self) -> Option<Value> {
        if !self.ok {
            return None;
        }
        serde_json::from_str(&self.stdout).ok()
    }
}

pub struct Cluster {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    bin: PathBuf,
    scratch: ScratchDir,
}

impl Cluster {
    /// The running cluster. `None` (the caller skips) when there is none and `CI` is not set;
    /// under `CI=true` a missing cluster fails: CI always brings one up (`scripts/test`).
    pub fn find() -> Option<Cluster> {
        let dir = std::env::var_os("STREAMFLEET_CLUSTER_DIR").map(PathBuf::from).unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(|p| p.join("target/cluster")).unwrap_or_default()
        });
        let kubeconfig = dir.join("kubeconfig");
        let bin = dir.join("bin");
        if !kubeconfig.is_file() || !bin.join("sfcluster").exists() {
            let why = format!(
                "no local cluster in {} (start one with `scripts/cluster up`, or run scripts/test)",
                dir.display()
            );
            if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0") {
                panic!("{why}: under CI the end-to-end suite must run, not be skipped");
            }
            eprintln!("skipped: {why}");
            return None;
        }
        Some(Cluster { dir, kubeconfig, bin, scratch: ScratchDir::new() })
    }

    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// A kubectl command of the cluster's own build, as the admin, for callers that stream its
    /// output or outlast [`CALL_LIMIT`] (the scale benchmark's bulk applies and watches).
    pub fn kubectl_command(&self) -> Command {
        let mut cmd = Command::new(self.bin.join("kubectl"));
        cmd.env("KUBECONFIG", &self.kubeconfig).kill_on_drop(true);
        cmd
    }

    async fn run(&self, program: &str, args: &[&str], stdin: Option<&str>, kubeconfig: &Path) -> Out {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("HELM_CACHE_HOME", self.scratch.path().join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.scratch.path().join("helm/config"))
            .env("HELM_DATA_HOME", self.scratch.path().join("helm/data"))
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes()).await.unwrap_or_else(|e| panic!("write {program} stdin: {e}"));
        }
        let out = timeout(CALL_LIMIT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("`{program} {}` took more than {CALL_LIMIT:?}", args.join(" ")))
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// kubectl as the cluster admin.
    pub async fn kubectl(&self, args: &[&str]) -> Out {
        self.run("kubectl", args, None, &self.kubeconfig).await
    }

    /// kubectl as the cluster admin, with `stdin` (for `-f -`).
    pub async fn kubectl_in(&self, args: &[&str], stdin: &str) -> Out {
        self.run("kubectl", args, Some(stdin), &self.kubeconfig).await
    }

    /// kubectl with another kubeconfig (e.g. a ServiceAccount's).
    pub async fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> Out {
        self.run("kubectl", args, None, kubeconfig).await
    }

    /// `kubectl get ... -o json`, parsed; `None` when it fails (e.g. not found).
    pub async fn get_json(&self, args: &[&str]) -> Option<Value> {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        self.kubectl(&a).await.json()
    }

    /// helm as the cluster admin.
    pub async fn helm(&self, args: &[&str]) -> Out {
        self.run("helm", args, None, &self.kubeconfig).await
    }

    /// A kubeconfig for ServiceAccount `sa` in `namespace`: the admin kubeconfig's server and
    /// CA with a token from the TokenRequest API (`kubectl create token`).
    pub async fn service_account_kubeconfig(&self, namespace: &str, sa: &str) -> PathBuf {
        let token = self
            .kubectl(&["create", "token", sa, "-n", namespace, "--duration=2h"])
            .await
            .expect_ok("kubectl create token");
        let view = self
            .kubectl(&["config", "view", "--raw", "-o", "json"])
            .await
            .json()
            .unwrap_or_else(|| panic!("kubectl config view"));
        let cluster = &view["clusters"][0]["cluster"];
        let server = cluster["server"].as_str().unwrap_or_else(|| panic!("server in kubeconfig"));
        let ca = cluster["certificate-authority-data"].as_str().unwrap_or_else(|| panic!("CA in kubeconfig"));
        let path = self.scratch.path().join(format!("{namespace}-{sa}.kubeconfig"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    \
             certificate-authority-data: {ca}\nusers:\n- name: {sa}\n  user:\n    token: {}\ncontexts:\n- name: c\n  \
             context:\n    cluster: c\n    user: {sa}\n    namespace: {namespace}\ncurrent-context: c\n",
            token.trim()
        );
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    async fn supervisor(&self, sub: &str) {
        let out = timeout(
            Duration::from_secs(120),
            Command::new(self.bin.join("sfcluster"))
                .args([sub, "--dir"])
                .arg(&self.dir)
                .args(["--timeout", "90s"])
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("sfcluster {sub} hung"))
        .unwrap_or_else(|e| panic!("run sfcluster {sub}: {e}"));
        assert!(out.status.success(), "sfcluster {sub}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Stops the API server (connections are refused until [`Cluster::start_apiserver`]);
    /// etcd and the controller manager keep running.
    pub async fn stop_apiserver(&self) {
        self.supervisor("stop-apiserver").await;
    }

    /// Starts the API server again and waits until /readyz is ok.
    pub async fn start_apiserver(&self) {
        self.supervisor("start-apiserver").await;
    }
}

/// Polls `check` every 300 ms until it yields a value; panics with `what` after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting until {what}");
        sleep(POLL).await;
    }
}

/// One `streamfleet-operator run` process on the host, killed on drop (its log is printed
/// then if the test is failing).
pub struct OperatorProcess {
    pub name: String,
    pub http: std::net::SocketAddr,
    child: Child,
    logs: OutputLines,
}

impl OperatorProcess {
    /// Starts the operator as `name` (its Lease identity) with `kubeconfig`, leader election in
    /// `namespace`, the registry at `redis_url`, and short requeues so that the suite is fast.
    pub fn start(binary: &Path, name: &str, kubeconfig: &Path, namespace: &str, redis_url: &str) -> Self {
        Self::start_with_env(binary, name, kubeconfig, namespace, redis_url, &[], true)
    }

    /// [`OperatorProcess::start`] with extra environment (e.g. `STREAMFLEET_WATCH_NAMESPACES`),
    /// and the default requeues unless `short_requeues` (then status can only follow the
    /// registry promptly through its change signals).
    pub fn start_with_env(
        binary: &Path,
        name: &str,
        kubeconfig: &Path,
        namespace: &str,
        redis_url: &str,
        env: &[(&str, &str)],
        short_requeues: bool,
    ) -> Self {
        let port = streamfleet_testkit::free_port();
        let http: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let mut child = Command::new(binary)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAMESPACE", namespace)
            .env("POD_NAME", name)
            .env("RUST_LOG", operator_log_filter())
            .envs(env.iter().copied())
            .args(["run", "--redis-url", redis_url, "--http-listen", &http.to_string(), "--log-format", "text"])
            .args(if short_requeues {
                &["--idle-requeue", "2s", "--live-requeue", "1s", "--status-min-interval", "1s"][..]
            } else {
                &[][..]
            })
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        let logs = OutputLines::capture(&mut child);
        OperatorProcess { name: name.to_string(), http, child, logs }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        self.logs.text()
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// One series of its /metrics (0 when absent or unreachable).
    pub async fn metric(&self, series: &str) -> f64 {
        match streamfleet_testkit::http::get(self.http, "/metrics").await {
            Some((200, body)) => streamfleet_testkit::http::metric_value(&body, series),
            _ => 0.0,
        }
    }

    /// SIGKILL, as a crash: it cannot release its Lease.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- operator {} log ----\n{}", self.name, self.logs.text());
        } else if let Some(dir) = std::env::var_os("STREAMFLEET_E2E_LOG_DIR") {
            let path = std::path::Path::new(&dir).join(format!("operator-{}.log", self.name));
            let _ = std::fs::write(&path, self.logs.text());
        }
    }
}

/// `RUST_LOG` of the operators the suite starts (`STREAMFLEET_E2E_OPERATOR_LOG` overrides it;
/// `STREAMFLEET_E2E_LOG_DIR` keeps their logs of a passing run, a failing run prints them).
fn operator_log_filter() -> String {
    std::env::var("STREAMFLEET_E2E_OPERATOR_LOG").unwrap_or_else(|_| "info".to_string())
}
