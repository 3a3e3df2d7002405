//! The RTMP wire layer the edge owns itself, around `rml_rtmp`:
//!
//! - [`chunk_reader`]: inbound chunks → whole messages, with the limits `rml_rtmp` lacks (chunk
//!   size cap, message size cap, interleaved chunk streams, no arithmetic on untrusted lengths).
//!   It is the firewall in front of `rml_rtmp::sessions::ServerSession`.
//! - [`chunk_writer`]: one message → chunk bytes, used to serialize each media message once for
//!   every player (always a full header, so any message can be dropped or skipped safely).
//! - [`amf0_guard`]: bounded-depth AMF0 validation before anything recursive parses it.
//! - [`messages`]: the few messages the edge writes itself (onStatus, acknowledgements, ping
//!   responses).

pub mod amf0_guard;
pub mod chunk_reader;
pub mod chunk_writer;
pub mod messages;

/// Chunk size the edge sends with (announced by the session's initial `SetChunkSize`).
pub const OUT_CHUNK_SIZE: u32 = 4096;

/// Chunk stream ids written by the edge itself. `rml_rtmp`'s serializer uses 2..=6 with header
/// compression, so the edge must never write on those: a foreign header on one of them would
/// break the peer's decompression of the session's next message.
pub mod csid {
    /// onStatus commands and protocol control the edge writes (acks, ping responses).
    pub const CONTROL: u32 = 7;
    /// Data messages (onMetaData and other script data).
    pub const DATA: u32 = 8;
    pub const AUDIO: u32 = 9;
    pub const VIDEO: u32 = 10;
}

/// RTMP message type ids the edge looks at.
pub mod msg_type {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const ACKNOWLEDGEMENT: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const AMF3_COMMAND: u8 = 17;
    pub const AMF0_DATA: u8 = 18;
    pub const AMF0_COMMAND: u8 = 20;
}
