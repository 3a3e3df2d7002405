//! One RTMP connection: [`protocol`] is the sans-IO state machine (handshake, chunk stream,
//! commands through `rml_rtmp`'s `ServerSession`), [`driver`] runs it on a socket.

pub mod driver;
pub mod fuzz_harness;
pub mod protocol;

pub use protocol::{ConnError, Connection, Event, Media, MediaKind, Output, ProtocolConfig};
