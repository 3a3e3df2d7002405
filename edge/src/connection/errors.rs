//! Why the protocol gave up on a connection: malformed input, a library panic, or input that
//! arrived where none may. Each kind has a metric label.

use crate::rtmp::{amf0_guard, chunk_reader::ChunkError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnError {
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error("bad chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    #[error("bad AMF0 command: {0}")]
    Amf0(#[from] amf0_guard::Amf0Error),
    #[error("RTMP session error: {0}")]
    Session(String),
    #[error("{0} bytes arrived while a publish/play decision was pending")]
    PendingInputOverflow(usize),
    #[error("internal error in the RTMP library ({0}); connection closed")]
    Panic(&'static str),
    #[error("connection already closed")]
    Closed,
}

impl ConnError {
    /// Short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ConnError::Handshake(_) => "handshake",
            ConnError::Chunk(ChunkError::CommandTooLarge { .. }) => "command_too_large",
            ConnError::Chunk(ChunkError::MessageTooLarge { .. }) => "message_too_large",
            ConnError::Chunk(ChunkError::TooMuchPartialData { .. }) => "partial_too_large",
            ConnError::Chunk(ChunkError::InputBudgetExhausted { .. }) => "input_budget",
            ConnError::Amf0(amf0_guard::Amf0Error::TooManyValues(_)) => "command_values",
            ConnError::Chunk(_) => "chunk",
            ConnError::Amf0(_) => "amf0",
            ConnError::Session(_) => "session",
            ConnError::PendingInputOverflow(_) => "pending_overflow",
            ConnError::Panic(_) => "panic",
            ConnError::Closed => "closed",
        }
    }
}
