//! A publisher census: samples every edge's `/api/v1/streams` in the background (every 50 ms)
//! and remembers the largest number of edges that had a live local publisher for the same
//! stream at once. "Never two publishers for one stream" is then checked over a whole fault,
//! not only at its end.
//!
//! A stream counts on an edge while the edge ingests it from its own publisher (`live` with a
//! `publisher_remote_addr`); the edge clears that before it releases the lease, so a clean
//! handoff never counts twice.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::watch, task::JoinHandle};

use streamfleet_testkit::http;

const SAMPLE_EVERY: Duration = Duration::from_millis(50);

#[derive(Debug, Default, Clone)]
pub struct CensusReport {
    /// Per playback name: the most edges seen publishing it in one sample, and on which edges.
    pub max_publishers: BTreeMap<String, (usize, Vec<String>)>,
    pub samples: u64,
}

pub struct Census {
    report: Arc<Mutex<CensusReport>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Census {
    /// Starts sampling the edges at these HTTP addresses (edges that do not answer count as
    /// publishing nothing).
    pub fn start(edges: Vec<(String, SocketAddr)>) -> Census {
        let report: Arc<Mutex<CensusReport>> = Arc::default();
        let (stop, mut stopped) = watch::channel(false);
        let shared = report.clone();
        let task = tokio::spawn(async move {
            loop {
                let mut now: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for (id, addr) in &edges {
                    for name in publishing(*addr).await {
                        now.entry(name).or_default().push(id.clone());
                    }
                }
                {
                    let mut r = shared.lock().unwrap_or_else(|p| p.into_inner());
                    r.samples += 1;
                    for (name, on) in now {
                        let entry = r.max_publishers.entry(name).or_default();
                        if on.len() > entry.0 {
                            *entry = (on.len(), on);
                        }
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(SAMPLE_EVERY) => {}
                    _ = stopped.wait_for(|s| *s) => return,
                }
            }
        });
        Census { report, stop, task }
    }

    /// Stops sampling and returns what was seen.
    pub async fn finish(self) -> CensusReport {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        self.report.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Playback names this edge ingests from a local publisher right now.
async fn publishing(addr: SocketAddr) -> Vec<String> {
    let Some((200, body)) = http::get(addr, "/api/v1/streams").await else { return Vec::new() };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) else { return Vec::new() };
    v["streams"]
        .as_array()
        .map(|streams| {
            streams
                .iter()
                .filter(|s| s["live"] == true && s["publisher_remote_addr"].is_string())
                .filter_map(|s| s["playback_name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}
