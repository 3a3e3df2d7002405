//! Test support shared by every crate's tests: a private `redis-server` per test on a free
//! loopback port (so a test can kill, restart or cut it without touching any other Redis), a TCP
//! proxy a test can cut to simulate a partition, and helpers to find binaries and free ports.
//!
//! - [`child_output`]: a child process's output lines, and the addresses it logged.
//! - [`doc_flags`]: the flag tables of a document checked against a binary's clap `Command`.
//! - [`wait`]: polling a condition with a deadline (never a sleep in place of synchronisation).
//! - [`http`]: a minimal HTTP GET for the edges' endpoints and Prometheus exposition parsing.
//! - [`sentinel`]: three Redis and three Sentinels on loopback, to kill, freeze and fail over.
//! - [`rtmp_client`]: a raw RTMP client (handshake, publish/play outcomes, background sessions)
//!   for what ffmpeg cannot do or time.
//! - [`udp_relay`]: a lossy UDP relay (drops and reorders a set share of datagrams) for SRT.
//! - [`tls`]: a TLS client configuration that trusts any certificate (test certificates) and
//!   says which one it was shown.
//!
//! Everything here binds to 127.0.0.1 only and kills what it starts when dropped.

pub mod child_output;
pub mod doc_flags;
pub mod http;
pub mod proxy;
pub mod redis_server;
pub mod rtmp_client;
pub mod sentinel;
pub mod tls;
pub mod udp_relay;
pub mod wait;

pub use proxy::TcpProxy;
pub use redis_server::RedisServer;
pub use sentinel::{SentinelCluster, SentinelTiming};

use std::net::{SocketAddr, TcpListener};

/// A loopback port that was free a moment ago. Racy by nature; callers that can bind port 0
/// themselves should.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a: SocketAddr| a.port())
        .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"))
}

/// Path of an executable on PATH, or `None`.
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Panics with the exact install command when a required tool is missing: the test suite's
/// runner (`scripts/test`) installs them, so a missing tool is a setup error, not a skip.
pub fn require_tool(name: &str) -> std::path::PathBuf {
    which(name).unwrap_or_else(|| {
        panic!("`{name}` is not on PATH: run scripts/test (it installs it) or `apt-get install redis-server ffmpeg`")
    })
}
