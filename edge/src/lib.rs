//! Streamfleet edge: RTMP publish and play with lease-guarded admission.
//!
//! Where things happen:
//! - [`server`]: listeners, accept loop and connection limits, drain on SIGTERM ([`shutdown`]).
//! - [`connection`]: one RTMP connection ([`connection::protocol`] is the sans-IO state machine
//!   over `rml_rtmp`, [`connection::driver`] runs it on a socket).
//! - [`rtmp`]: the wire layer the edge owns (chunk reader with limits, chunk writer, AMF0 guard).
//! - [`admission`]: where a publish is admitted (registry lookup, lease acquire, takeover policy).
//! - [`publisher`]: a publisher's life while it holds the lease.
//! - [`play`]: player admission (maxViewers, waiting for the stream) and its life.
//! - [`stream`] / [`stream_hub`]: per-stream state (fast-start caches, players).
//! - [`relay`]: cross-edge play (the internal relay listener, and pulling a stream from the
//!   edge that holds it).
//! - [`fanout`]: where bytes fan out (shared serialized frames, bounded per-player queues).
//! - [`codec`]: FLV tag inspection (keyframes, sequence headers, Enhanced RTMP FourCC).
//! - [`metrics`], [`http`], [`health`], [`viewers`], [`sessions`]: observability and reporting
//!   ([`sharded_counter`]: the counter every write adds to, one cache line per thread).

pub mod admission;
pub mod codec;
pub mod config;
pub mod connection;
pub mod context;
pub mod fanout;
pub mod frame_log;
pub mod health;
pub mod http;
pub mod local_release;
pub mod metrics;
pub mod play;
pub mod publisher;
pub mod registry_backend;
pub mod relay;
pub mod rtmp;
pub mod server;
pub mod sessions;
pub mod sharded_counter;
pub mod shutdown;
pub mod stream;
pub mod stream_hub;
pub mod viewers;
pub mod write_window;
