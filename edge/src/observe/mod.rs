//! What the edge measures: the Prometheus [`metrics`] (which also observe every write and
//! every stream leaving the edge, through the traits fan-out and streams define), the
//! [`sharded_counter`] every write adds bytes to, and the [`sessions`] table behind
//! `/api/v1/sessions`, and how client-supplied text and refusals are logged ([`log_text`]). Serving them (HTTP, readiness, viewer reports) is the process's job
//! ([`crate::app`]), which holds the context they need.

pub(crate) mod log_text;
mod metrics;
mod sessions;
mod sharded_counter;

pub(crate) use metrics::Metrics;
pub(crate) use sessions::{SessionInfo, SessionRole, SessionSnapshot, SessionTable};
