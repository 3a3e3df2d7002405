//! The output of a child process under test (an edge, the operator's `sync --watch`), kept line
//! by line, stdout and stderr together, with the instant each line arrived: the harnesses read
//! bound addresses and progress from it, and print it when a test fails.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::Child,
    time::Instant,
};

use crate::wait::POLL;

/// The lines a child has printed so far, shared with the tasks that read its pipes.
#[derive(Clone, Default)]
pub struct OutputLines(Arc<Mutex<Vec<(Instant, String)>>>);

impl OutputLines {
    /// Takes `child`'s piped stdout and stderr (those that are piped) and reads them line by
    /// line in background tasks until they close. Must run inside a tokio runtime.
    pub fn capture(child: &mut Child) -> OutputLines {
        let lines = OutputLines::default();
        let pipes: [Option<Box<dyn AsyncRead + Unpin + Send>>; 2] = [
            child.stdout.take().map(|p| Box::new(p) as Box<dyn AsyncRead + Unpin + Send>),
            child.stderr.take().map(|p| Box::new(p) as Box<dyn AsyncRead + Unpin + Send>),
        ];
        for pipe in pipes.into_iter().flatten() {
            let lines = lines.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    lines.lock().push((Instant::now(), line));
                }
            });
        }
        lines
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(Instant, String)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every line so far, joined with newlines.
    pub fn text(&self) -> String {
        self.lock().iter().map(|(_, line)| line.as_str()).collect::<Vec<_>>().join("\n")
    }

    /// The instant the first line containing `needle` arrived, if one has.
    pub fn first(&self, needle: &str) -> Option<Instant> {
        self.lock().iter().find(|(_, line)| line.contains(needle)).map(|(at, _)| *at)
    }

    /// How many lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lock().iter().filter(|(_, line)| line.contains(needle)).count()
    }

    /// The address in the first line that has one right after `marker` (e.g.
    /// `rtmp listening addr=`).
    pub fn logged_addr(&self, marker: &str) -> Option<SocketAddr> {
        self.lock().iter().find_map(|(_, l)| l.split(marker).nth(1)?.split_whitespace().next()?.parse().ok())
    }

    /// Waits until an address has been logged after each of `markers` (a server that binds port
    /// 0 and logs where it listens) and returns them in order. Panics, with the output so far,
    /// if `child` (called `who`) exits first or `limit` passes.
    pub async fn wait_addrs<const N: usize>(
        &self,
        child: &mut Child,
        who: &str,
        markers: [&str; N],
        limit: Duration,
    ) -> [SocketAddr; N] {
        match self.try_wait_addrs(child, who, markers, limit).await {
            Ok(addrs) => addrs,
            Err(exited) => panic!("{exited}"),
        }
    }

    /// [`OutputLines::wait_addrs`], with a `child` that exits first as an error (what it said,
    /// for a caller that can start it again); panics only if `limit` passes.
    pub async fn try_wait_addrs<const N: usize>(
        &self,
        child: &mut Child,
        who: &str,
        markers: [&str; N],
        limit: Duration,
    ) -> Result<[SocketAddr; N], String> {
        let deadline = Instant::now() + limit;
        loop {
            let found: Vec<SocketAddr> = markers.iter().filter_map(|m| self.logged_addr(m)).collect();
            if let Ok(addrs) = <[SocketAddr; N]>::try_from(found) {
                return Ok(addrs);
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("{who} exited with {status} before listening:\n{}", self.text()));
            }
            assert!(Instant::now() < deadline, "{who} did not start listening:\n{}", self.text());
            tokio::time::sleep(POLL).await;
        }
    }
}
