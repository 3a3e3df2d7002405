//! Cross-edge play. A viewer can land on any edge; the stream is published on one (the lease
//! holder, which advertises its relay address in the registry). Every other edge with players
//! pulls the stream from the owner over RTMP, once per stream, and feeds it into its local
//! stream hub like a local publisher's media, so its players get the same fast start and
//! slow-player rules.
//!
//! - [`auth`]: the shared-secret token a pulling edge presents (HMAC of the playback name).
//! - [`serve`]: a play on the internal `--relay-listen` listener: authenticated, play only,
//!   streams published on this edge only (the listener itself is the process's, in
//!   [`crate::app::server`]).
//! - [`pull`]: where an edge pulls a stream from its owner: one pull per stream per edge,
//!   shared by its local players, following the publisher to whichever edge holds it next.
//! - [`pulls`]: the table of this edge's pulls and their idle timers (a pull stops
//!   `--relay-idle-timeout` after the last local player left).
//! - [`upstream`]: the RTMP client side of one pull (rml_rtmp `ClientSession` over tokio); it
//!   hands out [`Media`](crate::media::Media) like a local publisher's connection.
//!
//! No relay secret configured: no relay listener, no pulls, no relay address advertised.

mod auth;
pub(crate) mod pull;
mod pulls;
pub(crate) mod serve;
mod upstream;

use std::time::Duration;

pub(crate) use auth::RelaySecret;

/// The RTMP application served on the relay listener (`rtmp://owner:1936/relay/<name>`).
const APP: &str = "relay";

/// Cross-edge play state of one edge (present only when a relay secret is configured).
pub(crate) struct Relay {
    secret: RelaySecret,
    pulls: pulls::Pulls,
}

impl Relay {
    pub(crate) fn new(secret: RelaySecret, idle_timeout: Duration) -> Relay {
        Relay { secret, pulls: pulls::Pulls::new(idle_timeout) }
    }
}
