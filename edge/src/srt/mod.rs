//! SRT (issue 19): a UDP listener (`--srt-listen`) whose callers publish MPEG-TS with a publish
//! key in their stream ID, or play a stream by its playback name. [`stream_id`] reads what a
//! caller asks for; [`listener`] decides each handshake (limits, registry look-up and lease or
//! viewer slot, rejection codes) and runs an admitted publisher through the same life as an
//! RTMP one ([`crate::publish`]), its media demuxed by [`crate::mpegts`]; [`play`] serves an
//! admitted player from the stream's fan-out, muxed back to MPEG-TS.
//!
//! srt-tokio (pure Rust) rather than libsrt through FFI: its listener hands each handshake to
//! us as a value we answer asynchronously, so the registry look-up and the lease happen *during*
//! the handshake without blocking the thread that receives every other caller's packets
//! (libsrt's listen callback runs synchronously on its receive thread); no C library in the
//! image and no `unsafe`. Its protocol crate is patched where input panicked it
//! (`third_party/srt-protocol/PATCHES.md`). Interoperability with ffmpeg's libsrt 1.5 is what
//! `edge/tests/edge_srt.rs` checks.

use std::time::Duration;

pub(crate) mod config;
pub(crate) mod listener;
pub(crate) mod play;
pub(crate) mod stream_id;

/// Most time an ending SRT connection waits for its shutdown to reach the caller (publishers and
/// players close their socket themselves rather than on drop, so that a draining process does
/// not exit before the caller is told).
pub(crate) const CLOSE_WAIT: Duration = Duration::from_secs(1);
