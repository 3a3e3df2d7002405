//! The process and what its tasks share: the command line ([`config`]), the [`context`] every
//! connection task takes (settings, registry, streams, metrics, the drain signal), the
//! listeners and accept loops ([`server`]), the public listeners' PROXY header, limits and TLS
//! handshake ([`accept`], with the limits in [`gate`] and certificate rotation in
//! [`tls_reload`]), one connection from accept to role ([`serve`]),
//! the drain ([`shutdown`]), the registry backend, and what the edge reports outward: the HTTP
//! endpoints ([`http`], served by [`http_server`] with its timeouts and cap), registry reachability ([`health`]) and viewer counts to the registry
//! ([`viewers`]). Those three read the context, which is why they live here and not in
//! [`crate::observe`].

mod accept;
pub mod config;
pub(crate) mod context;
pub(crate) mod gate;
mod health;
mod http;
mod http_server;
mod registry_backend;
mod serve;
pub mod server;
pub(crate) mod shutdown;
mod tls_reload;
mod viewers;
