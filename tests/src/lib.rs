//! The fleet harness shared by the cross-process tests in `tests/tests/fleet_*.rs`: several
//! real `streamfleet-edge` processes on one private `redis-server`, streams applied by the
//! real `streamfleet-operator sync`, and real clients (a light RTMP client for precise timing
//! and large numbers, ffmpeg as the real encoder and player).
//!
//! - [`fleet`]: starts and owns a fleet ([`fleet::Fleet`]); [`edge`]: one edge process.
//! - [`operator`]: `sync` once or `--watch`; [`manifest`]: the LiveStream/Secret files.
//! - [`ffmpeg`]: real clients.
//! - [`cluster`]: the local Kubernetes control plane of `scripts/cluster`, for `tests/cluster_e2e.rs`.
//! - [`binaries`]: builds and locates the binaries under test.
//! - [`census`]: samples the edges for two publishers of one stream at once.
//!
//! The light RTMP client, the HTTP/metrics helpers and waiting with deadlines are shared with
//! the edge's own tests and live in `streamfleet-testkit` (`rtmp_client`, `http`, `wait`).

pub mod binaries;
pub mod census;
pub mod cluster;
pub mod edge;
pub mod ffmpeg;
pub mod fleet;
pub mod manifest;
pub mod operator;
