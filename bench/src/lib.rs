//! `streamfleet-bench`: a load tool that publishes real media over RTMP and plays it back with
//! many players in the same process, so every video frame's end-to-end latency is measured on one
//! clock, and a report generator that turns the runs' JSON lines into `docs/benchmarks.md`.
//!
//! Layout:
//! - [`cli`]: flags and subcommands (`fanout`, `join`, `ingest`, `admission`, `report`).
//! - [`media`]: where the published bytes come from: the FLV parser, ffmpeg generation and cache,
//!   synthetic media for tests, the per-frame marker that lets a player match a frame by content.
//! - [`rtmp`]: the client side of RTMP: URL parsing, the lean inbound chunk reader (message
//!   boundaries and first bytes only, so thousands of players stay cheap), command decoding and the
//!   connection (handshake, connect, createStream, play/publish, acks and pings).
//! - [`publisher`], [`player`], [`admission`]: what one simulated client does.
//! - [`scenario`]: runs a whole scenario (players ramped against one publisher, many publishers)
//!   and measures the steady window.
//! - [`procstat`]: the server's (and our own) CPU time and RSS from `/proc`.
//! - [`stats`]: percentile maths and the per-run report (JSON line + table).
//! - [`report`]: `docs/benchmarks.md` and the PNG charts from many runs.

pub mod admission;
pub mod app;
pub mod cli;
pub mod clock;
pub mod error;
pub mod media;
pub mod player;
pub mod procstat;
pub mod publisher;
pub mod report;
pub mod rtmp;
pub mod scenario;
pub mod stats;
