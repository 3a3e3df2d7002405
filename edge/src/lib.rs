//! Streamfleet edge: RTMP publish and play with lease-guarded admission.
//!
//! The folders are the code map, from the bottom layer up; a subsystem imports only its own
//! layer and the ones below it (checked by `tests/module_deps.rs`, which also fails on any
//! `use crate::` cycle between files):
//!
//! 1. [`rtmp`]: the RTMP wire format the edge owns (chunk reader with limits, chunk writer,
//!    AMF0 guard, the messages the edge writes itself).
//!    Beside it, [`workers`]: the worker threads and which one a connection runs on (connections
//!    fill the first thread before the next takes any); and [`allocator`]: how long freed memory
//!    is kept before it goes back to the OS.
//! 2. [`media`]: what a publisher sends, independent of the protocol it came in over (media
//!    messages, codec inspection) and the frame every player shares (serialised once).
//!    [`mpegts`] sits just above it: MPEG-TS (SRT's payload) to and from that media.
//! 3. [`fanout`]: how bytes leave: per-connection outboxes, the drop and audio-hold policy, the
//!    writer (every `unsafe` of the write path, in one file), the write window and its frame log.
//! 4. [`streams`]: per-stream state: the publisher slot, fast-start cache, timeline, players,
//!    the hub of streams on this edge and the local lease hand-off.
//! 5. [`observe`]: what is measured: Prometheus metrics, the sharded byte counter, the session
//!    table.
//! 6. [`transport`]: what carries a connection's bytes below RTMP: plain TCP or TLS (RTMPS,
//!    with certificate rotation), the PROXY protocol header in front of either, and the
//!    receive low-water mark (the read path's only `unsafe`, in one file).
//! 7. [`connection`]: one RTMP connection: the sans-IO protocol (config, events, errors, state
//!    machine) and the session handle a role drives on a socket.
//! 8. The roles and the process, which share the [`app`] context: [`publish`] (admission, the
//!    publisher's life), [`play`] (player admission and the player loop), [`relay`] (cross-edge
//!    play), [`srt`] (the SRT listener: handshake decisions, SRT publishers and players), and
//!    [`app`] (configuration, context, listeners, drain, HTTP, health, viewer reports).
//!
//! Why this shape: the hot path runs bottom-up through fan-out and streams, which know nothing
//! about RTMP sessions, the registry or the process, so a new ingest protocol (RTMPS, SRT) is a
//! sibling of [`rtmp`] and [`connection`] that produces [`media`] and feeds [`streams`] and
//! [`fanout`] unchanged. Lower layers report upwards through small traits they define
//! (`fanout::WriteObserver`, `streams::HubObserver`, `fanout::Windowed`), implemented above.
//!
//! Everything is `pub(crate)` unless the binary, the fuzz target or the tests need it, so the
//! dead-code lint sees the whole crate.

pub mod allocator;
mod app;
pub mod connection;
mod fanout;
mod media;
mod mpegts;
mod observe;
mod play;
mod publish;
mod relay;
mod rtmp;
mod srt;
mod streams;
mod sync;
mod transport;
mod workers;

pub use app::{config, server};
pub use transport::{ProxyMode, TrustedCidrs, fuzz_proxy_header};

/// For the fuzz tests: arbitrary bytes through the SRT publisher's MPEG-TS path and the stream-ID parser.
pub mod fuzz {
    pub use crate::mpegts::fuzz_feed as mpegts_feed;
    pub use crate::srt::stream_id::fuzz_parse as srt_stream_id;
}
