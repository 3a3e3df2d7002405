//! One media message from a publisher as the edge passes it on: its kind, timestamp and the
//! untouched payload. Every ingest protocol produces these (the RTMP connection and the relay
//! pull today), and streams take nothing else.

use bytes::Bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Audio,
    Video,
    /// `onMetaData` (sent by encoders as `@setDataFrame`; the wrapper is stripped).
    Metadata,
    /// Other script data (cue points, captions): passed through, not cached.
    Data,
}

/// One media message from a publisher, payload untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub kind: MediaKind,
    pub timestamp: u32,
    /// Kept as it is by the stream's frame, and so by the GOP cache for seconds: it must be an
    /// allocation of its own (about its size), never a slice of a buffer its producer reuses or
    /// that holds much more, which the cache would keep alive with it. The RTMP chunk reader,
    /// the relay pull and the MPEG-TS demuxer each hand on such allocations.
    pub payload: Bytes,
}
