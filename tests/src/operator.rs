//! `streamfleet-operator sync`, run the way a VM or compose user runs it: once to apply a
//! manifest file, or with `--watch` in the background so that it follows edits and rewrites
//! every record after a Redis restart (a new registry epoch).

use std::{path::Path, process::Stdio, time::Duration};

use streamfleet_testkit::{child_output::OutputLines, wait::try_wait_until};
use tokio::{
    process::{Child, Command},
    time::timeout,
};

/// `sync --manifests FILE --redis-url URL` once; panics unless it applies everything (exit 0).
/// Returns its report (one line per stream, never a key).
pub async fn sync_once(binary: &Path, manifests: &Path, redis_url: &str) -> String {
    let out = timeout(
        Duration::from_secs(30),
        Command::new(binary)
            .arg("sync")
            .arg("--manifests")
            .arg(manifests)
            .args(["--redis-url", redis_url])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("streamfleet-operator sync did not finish within 30 s"))
    .unwrap_or_else(|e| panic!("run streamfleet-operator sync: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "streamfleet-operator sync failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A running `sync --watch`, killed on drop.
pub struct SyncWatch {
    _child: Child,
    lines: OutputLines,
}

impl SyncWatch {
    /// Starts `sync --watch` (checking the file and the registry epoch every `poll`) and waits
    /// for its first pass to apply the file.
    pub async fn start(binary: &Path, manifests: &Path, redis_url: &str, poll: Duration) -> SyncWatch {
        SyncWatch::start_with_env(binary, manifests, redis_url, poll, &[]).await
    }

    /// [`SyncWatch::start`] with these environment variables (the key-hash secret, say).
    pub async fn start_with_env(
        binary: &Path,
        manifests: &Path,
        redis_url: &str,
        poll: Duration,
        env: &[(&str, &str)],
    ) -> SyncWatch {
        let mut child = Command::new(binary)
            .arg("sync")
            .arg("--watch")
            .arg("--manifests")
            .arg(manifests)
            .args(["--redis-url", redis_url, "--poll-interval", &format!("{}ms", poll.as_millis())])
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn streamfleet-operator sync --watch: {e}"));
        let lines = OutputLines::capture(&mut child);
        let watch = SyncWatch { _child: child, lines };
        watch.wait_passes(1, Duration::from_secs(30)).await;
        watch
    }

    /// How many passes have applied the whole file (`N applied, 0 failed, …` lines).
    pub fn passes(&self) -> usize {
        self.lines.count(" applied, 0 failed")
    }

    /// Waits until at least `n` passes have applied the whole file.
    pub async fn wait_passes(&self, n: usize, limit: Duration) {
        if try_wait_until(limit, || async { (self.passes() >= n).then_some(()) }).await.is_none() {
            panic!("sync --watch did not complete pass {n} within {limit:?}:\n{}", self.output());
        }
    }

    /// Everything it printed.
    pub fn output(&self) -> String {
        self.lines.text()
    }
}
