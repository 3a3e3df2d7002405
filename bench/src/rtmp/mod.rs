//! The client side of RTMP as the load tool needs it. Handshake, outbound chunking and AMF0
//! command encoding come from `rml_rtmp`; inbound chunks go through our own [`chunk_reader`],
//! which finds message boundaries and keeps only the first bytes of media messages, because a
//! player that fully deserializes every message would cost more CPU than the server under test.

pub mod chunk_reader;
pub mod command;
pub mod connection;
pub mod tls;
pub mod url;

pub use connection::{ConnectError, RtmpConnection};
pub use url::RtmpUrl;
