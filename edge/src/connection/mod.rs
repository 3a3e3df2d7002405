//! One RTMP connection, split the way `rml_rtmp` splits its sessions: the sans-IO state
//! machine ([`protocol`]: bytes in; bytes out, events and a close request) with its
//! [`config`], [`events`] and [`errors`], and the [`session`] handle that runs it on a socket
//! for whichever role the connection takes. The roles (publish, play, relay) and the process
//! that accepts connections sit above; a new protocol (RTMPS, SRT) gets a sibling of this
//! module that hands the roles the same events and media.
//!
//! Public for the fuzz target and the corpus test: [`Connection`] and [`fuzz_harness`].

mod config;
mod errors;
mod events;
pub mod fuzz_harness;
mod protocol;
pub(crate) mod session;

pub use config::ProtocolConfig;
pub use errors::ConnError;
pub use events::{Event, Output};
pub use protocol::Connection;
