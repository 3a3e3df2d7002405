//! One running `streamfleet-edge` process: started with loopback listeners on free ports (the
//! RTMP and HTTP listeners bind port 0 and the harness reads the bound addresses from the
//! edge's log), its log lines kept with the instant they arrived, its HTTP endpoints, and the
//! signals a test sends it (SIGKILL, SIGTERM). Killed on drop.

use std::{
    net::SocketAddr,
    path::Path,
    process::{ExitStatus, Stdio},
    time::Duration,
};

use streamfleet_testkit::{
    child_output::OutputLines,
    http,
    wait::{try_wait_until, wait_until},
};
use tokio::{
    process::{Child, Command},
    time::{Instant, timeout},
};

pub struct EdgeProcess {
    /// `--edge-id`, as it appears in the registry's holder info.
    pub id: String,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    /// `--relay-listen` (and the advertised relay address).
    pub relay: SocketAddr,
    pub pid: u32,
    child: Child,
    logs: OutputLines,
}

impl EdgeProcess {
    /// Spawns `binary` with `args` (the harness adds the listeners and the edge id) and waits
    /// until it logs its RTMP and HTTP addresses.
    ///
    /// The relay listener gets a free loopback port the harness picks, because the edge
    /// advertises it to other edges as given. Another process can take that port between the
    /// pick and the edge's bind; the edge then exits with "Address already in use" on
    /// `--relay-listen`, and the harness starts it again on a new port (up to five times).
    pub async fn spawn(binary: &Path, id: &str, args: &[String], envs: &[(&str, &str)]) -> Self {
        const ATTEMPTS: usize = 5;
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            let relay: SocketAddr = ([127, 0, 0, 1], streamfleet_testkit::free_port()).into();
            match EdgeProcess::try_spawn(binary, id, relay, args, envs).await {
                Ok(edge) => return edge,
                Err(exited) if exited.contains("cannot listen on --relay-listen") && exited.contains("in use") => {
                    last = exited;
                }
                Err(exited) => panic!("{exited}"),
            }
        }
        panic!("edge {id}: the relay port was taken {ATTEMPTS} times in a row; last attempt:\n{last}")
    }

    /// One start of the edge with its relay listener on `relay`: the edge, or what it said
    /// before it exited.
    async fn try_spawn(
        binary: &Path,
        id: &str,
        relay: SocketAddr,
        args: &[String],
        envs: &[(&str, &str)],
    ) -> Result<Self, String> {
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .args(["--edge-id", id, "--rtmp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .args(["--relay-listen", &relay.to_string(), "--advertise-addr", &relay.to_string()])
            .args(["--log-format", "text"])
            .env("RUST_LOG", "info")
            .env_remove("POD_NAME")
            .env_remove("POD_IP")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        let pid = child.id().unwrap_or_else(|| panic!("edge {id} exited at once"));
        let logs = OutputLines::capture(&mut child);
        let [rtmp, http] = logs
            .try_wait_addrs(
                &mut child,
                &format!("edge {id}"),
                ["rtmp listening addr=", "http listening addr="],
                Duration::from_secs(20),
            )
            .await?;
        Ok(EdgeProcess { id: id.to_string(), rtmp, http, relay, pid, child, logs })
    }

    /// `rtmp://<edge>/live/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("rtmp://{}/live/{name}", self.rtmp)
    }

    /// Every log line so far.
    pub fn logs(&self) -> String {
        self.logs.text()
    }

    /// The instant the first log line containing `needle` arrived, if one has.
    pub fn log_instant(&self, needle: &str) -> Option<Instant> {
        self.logs.first(needle)
    }

    /// How many log lines contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.logs.count(needle)
    }

    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        http::get(self.http, path).await
    }

    /// `/readyz` status, `None` if the edge does not answer.
    pub async fn readyz(&self) -> Option<u16> {
        self.get("/readyz").await.map(|(status, _)| status)
    }

    /// Waits until `/readyz` answers `status`.
    pub async fn wait_readyz(&self, status: u16, limit: Duration) -> Instant {
        wait_until(&format!("edge {} /readyz {status}", self.id), limit, || async {
            (self.readyz().await == Some(status)).then(Instant::now)
        })
        .await
    }

    /// The whole `/metrics` exposition (empty if the edge does not answer).
    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.map(|(_, body)| body).unwrap_or_default()
    }

    /// One series' value (0 when absent or the edge does not answer).
    pub async fn metric(&self, series: &str) -> f64 {
        http::metric_value(&self.metrics().await, series)
    }

    /// `/api/v1/streams` entry for a playback name.
    pub async fn stream(&self, playback: &str) -> Option<serde_json::Value> {
        let (status, body) = self.get("/api/v1/streams").await?;
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["streams"].as_array()?.iter().find(|s| s["playback_name"] == playback).cloned()
    }

    /// Frames the local publisher of `playback` has sent, if it is live here.
    pub async fn live_frames(&self, playback: &str) -> Option<u64> {
        self.stream(playback).await.filter(|s| s["live"] == true).and_then(|s| s["frames_in"].as_u64())
    }

    /// Waits until `playback` is live here with at least `frames` frames received.
    pub async fn wait_live(&self, playback: &str, frames: u64, limit: Duration) -> u64 {
        wait_until(&format!("{playback} live on {} with {frames} frames", self.id), limit, || async {
            self.live_frames(playback).await.filter(|n| *n >= frames)
        })
        .await
    }

    /// SIGKILL: the process dies without draining (no lease is released). Returns the instant
    /// the signal was sent, after the process is gone.
    pub async fn sigkill(&mut self) -> Instant {
        let at = Instant::now();
        self.child.start_kill().unwrap_or_else(|e| panic!("kill edge {}: {e}", self.id));
        let _ = timeout(Duration::from_secs(10), self.child.wait()).await;
        at
    }

    /// SIGTERM: starts the drain. Returns the instant the signal was sent.
    pub fn sigterm(&self) -> Instant {
        let pid = libc::pid_t::try_from(self.pid).unwrap_or_else(|_| panic!("pid {} out of range", self.pid));
        let at = Instant::now();
        // SAFETY: kill(2) on our own child's pid; the child is not reaped until we wait on it,
        // so the pid cannot have been reused.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "SIGTERM to edge {}: {}", self.id, std::io::Error::last_os_error());
        at
    }

    /// Waits for the process to exit; `None` if it is still running after `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<(ExitStatus, Instant)> {
        match timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => Some((status, Instant::now())),
            Ok(Err(e)) => panic!("waiting for edge {}: {e}", self.id),
            Err(_) => None,
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until a log line contains `needle`; returns the instant it arrived.
    pub async fn wait_log(&self, needle: &str, limit: Duration) -> Instant {
        match try_wait_until(limit, || async { self.log_instant(needle) }).await {
            Some(at) => at,
            None => panic!("edge {} never logged {needle:?} within {limit:?}:\n{}", self.id, self.logs()),
        }
    }
}
