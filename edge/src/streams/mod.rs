//! Per-stream state on this edge, between the ingest side (publishers, relay pulls) and
//! fan-out:
//!
//! - [`stream`]: one stream: the publisher slot, the players and the fan-out of each message;
//! - [`fast_start`]: what a new player gets first (metadata, configuration packets, the GOP),
//!   within the bounds of [`gop_budget`] (per stream and over the edge);
//! - [`health`]: what the encoder really sends (frame rate, bitrate, keyframe interval, stalls)
//!   and a verdict in plain words;
//! - [`timeline`]: timestamps continuous for players across a change of publisher;
//! - [`hub`]: the streams present on this edge, by id, and when one goes;
//! - [`local_release`]: the lease hand-off between publishers of one stream on this edge.
//!
//! Streams know frames and outboxes, not protocols or the registry's wire format; the hub
//! reports a stream leaving through [`HubObserver`] (the metrics forget its series).

mod fast_start;
mod gop_budget;
pub(crate) mod health;
mod hub;
mod local_release;
pub(crate) mod stream;
mod timeline;

pub(crate) use gop_budget::{GopBudget, GopLimits};
pub(crate) use hub::{HeldStream, HubObserver, StreamHub};
pub(crate) use local_release::{LeaseCounts, releases_done};
pub(crate) use stream::{Kick, LiveState, PublisherMeta, Stream, StreamSnapshot};
