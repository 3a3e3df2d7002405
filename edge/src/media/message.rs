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
    pub payload: Bytes,
}
