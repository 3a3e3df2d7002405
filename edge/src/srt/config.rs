//! The SRT listener's command-line flags (flattened into [`crate::config::Config`], kept here so
//! the SRT listener's settings live beside it).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct SrtArgs {
    /// SRT listener (UDP) for encoders: srt://HOST:PORT?streamid=publish:<publishKey>. Off unless
    /// set; the chart and docs use port 8890.
    #[arg(long, env = "STREAMFLEET_SRT_LISTEN", value_name = "ADDR")]
    pub srt_listen: Option<SocketAddr>,

    /// SRT receiver latency: how long lost packets may be retransmitted before they are given up
    /// (the larger of this and the caller's own latency applies).
    #[arg(long, env = "STREAMFLEET_SRT_LATENCY", default_value = "120ms", value_parser = humantime::parse_duration)]
    pub srt_latency: Duration,

    /// Most bits per second the edge sends on one SRT connection, in Mbit/s (players; a publisher
    /// only gets acknowledgements back). Paces a new player's fast-start burst, which unpaced
    /// overflows the receiver's UDP buffer and arrives too late to be retransmitted.
    #[arg(long, env = "STREAMFLEET_SRT_MAX_BANDWIDTH", default_value_t = 100)]
    pub srt_max_bandwidth: u64,

    /// Most simultaneous SRT connections, those being decided at the handshake included.
    #[arg(long, env = "STREAMFLEET_SRT_MAX_CONNECTIONS", default_value_t = 1000)]
    pub srt_max_connections: usize,

    /// Most simultaneous SRT connections from one IP address.
    #[arg(long, env = "STREAMFLEET_SRT_MAX_CONNECTIONS_PER_IP", default_value_t = 20)]
    pub srt_max_connections_per_ip: usize,

    /// File with the passphrase (10 to 79 characters) every SRT caller must encrypt with (AES,
    /// the caller's key length), or set STREAMFLEET_SRT_PASSPHRASE. None: unencrypted callers
    /// only.
    #[arg(long, env = "STREAMFLEET_SRT_PASSPHRASE_FILE", value_name = "FILE")]
    pub srt_passphrase_file: Option<PathBuf>,
}

impl SrtArgs {
    /// The passphrase from the file or the environment (blocking: reads a file), checked for
    /// SRT's length rule.
    pub fn passphrase(&self) -> Result<Option<String>, String> {
        let p = match &self.srt_passphrase_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read --srt-passphrase-file {}: {e}", path.display()))?,
            None => std::env::var("STREAMFLEET_SRT_PASSPHRASE").unwrap_or_default(),
        };
        let p = p.trim();
        if p.is_empty() {
            return Ok(None);
        }
        if !(10..=79).contains(&p.len()) {
            return Err(format!("the SRT passphrase must be 10 to 79 characters, not {}", p.len()));
        }
        Ok(Some(p.to_string()))
    }
}
