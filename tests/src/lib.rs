//! The fleet harness shared by the cross-process tests in `tests/tests/fleet_*.rs`: several
//! real `streamfleet-edge` processes on one private `redis-server`, streams applied by the
//! real `streamfleet-operator sync`, and real clients (a light RTMP client for precise timing
//! and large numbers, ffmpeg as the real encoder and player).
//!
//! - [`fleet`]: starts and owns a fleet ([`fleet::Fleet`]); [`edge`]: one edge process.
//! - [`operator`]: `sync` once or `--watch`; [`manifest`]: the LiveStream/Secret files.
//! - [`rtmp_client`]: publish/play outcomes and background sessions; [`ffmpeg`]: real clients.
//! - [`binaries`]: builds and locates the binaries under test.
//! - [`census`]: samples the edges for two publishers of one stream at once.
//! - [`http`], [`wait`]: endpoints, metrics, and waiting with deadlines.

pub mod binaries;
pub mod census;
pub mod edge;
pub mod ffmpeg;
pub mod fleet;
pub mod http;
pub mod manifest;
pub mod operator;
pub mod rtmp_client;
pub mod wait;
