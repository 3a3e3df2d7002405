//! What carries RTMP bytes to and from a connection, below the RTMP session: plain TCP, TLS
//! (RTMPS) and the PROXY protocol header a load balancer puts in front of either.
//!
//! - `reader.rs`: a connection's read side, plain or TLS, as the session handle reads it.
//! - `tls.rs`: the certificate pair (loading, checking, hot reload) and the server config.
//! - `tls_stream.rs`: an established TLS connection split into that read side and a
//!   [`crate::fanout`] sink, sharing one rustls state, so the fan-out's non-blocking writes
//!   work over TLS as over TCP.
//! - `low_water.rs`: a socket's receive low-water mark, which lets a publisher's socket gather
//!   bytes before it wakes the edge; the read path's only `unsafe` (one `setsockopt`).
//! - `proxy_header.rs`: the PROXY protocol v1/v2 header (a sans-IO reader over the `ppp`
//!   parser, trusted source ranges).
//!
//! Nothing here knows about RTMP, streams or the process: the accept loops in `app/` decide
//! when to use what, and count what fails.

pub(crate) mod low_water;
pub(crate) mod proxy_header;
pub(crate) mod reader;
pub(crate) mod tls;
pub(crate) mod tls_stream;

pub use proxy_header::{ProxyMode, TrustedCidrs, fuzz_proxy_header};
