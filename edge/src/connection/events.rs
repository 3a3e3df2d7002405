//! What the sans-IO [`Connection`](super::protocol::Connection) hands back for each input:
//! bytes to send, events for the role that drives it, and the request to close.

use bytes::Bytes;

use crate::media::Media;

/// Something the session handle (or whoever drives the protocol) must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Bytes to write to the peer, in this order.
    Send(Bytes),
    Event(Event),
    /// Write what came before, then close the connection.
    Close(String),
}

/// What happened on the connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `connect` to the served app was accepted.
    Connected {
        flash_ver: Option<String>,
        tc_url: Option<String>,
    },
    /// The peer wants to publish with this key; input waits for accept/reject.
    PublishRequested {
        key: String,
    },
    /// The peer wants to play this name on message stream `stream_id`; input waits.
    PlayRequested {
        name: String,
        /// What followed `?` in the requested name (the relay's authentication), else empty.
        query: String,
        stream_id: u32,
        /// How long the client asked to play (`play`'s len argument), if it did.
        duration: Option<std::time::Duration>,
    },
    /// Media from the admitted publisher.
    Media(Media),
    PublishFinished,
    PlayFinished,
}
