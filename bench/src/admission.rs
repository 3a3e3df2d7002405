//! Admission round trips: sequential connect → `createStream` → `publish` →
//! `NetStream.Publish.Start`, each on a fresh TCP connection, timed from the TCP connect. This is
//! what an encoder waits for before its first frame, and on the edge it includes the registry
//! lookup and the lease acquisition.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::rtmp::{RtmpConnection, RtmpUrl};

/// What to run.
#[derive(Debug, Clone)]
pub struct AdmissionConfig {
    /// Publish URL; `{i}` is replaced by the attempt number (distinct keys per attempt).
    pub url_template: String,
    pub count: usize,
    pub timeout: Duration,
    /// Added to the attempt number in `{i}`.
    pub first_index: usize,
}

/// Round-trip times of accepted publishes, and refusals by reason.
#[derive(Debug, Default, Clone)]
pub struct AdmissionOutcome {
    pub accepted_ms: Vec<f64>,
    pub failures: BTreeMap<String, usize>,
}

/// Runs `count` round trips one after the other.
pub async fn run(cfg: &AdmissionConfig) -> Result<AdmissionOutcome, String> {
    let mut out = AdmissionOutcome::default();
    for i in 0..cfg.count {
        let url = RtmpUrl::parse_indexed(&cfg.url_template, cfg.first_index + i)?;
        let t0 = Instant::now();
        let attempt = RtmpConnection::open_publishing(&url, 8 * 1024);
        match tokio::time::timeout(cfg.timeout, attempt).await {
            Ok(Ok((mut conn, id))) => {
                out.accepted_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
                // Unpublish cleanly so the server frees the name (and the edge its lease).
                let _ = conn.delete_stream(id).await;
                conn.shutdown().await;
            }
            Ok(Err(e)) => *out.failures.entry(e.to_string()).or_default() += 1,
            Err(_) => *out.failures.entry("timed out before NetStream.Publish.Start".into()).or_default() += 1,
        }
    }
    Ok(out)
}
