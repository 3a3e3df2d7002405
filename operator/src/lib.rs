//! The Streamfleet operator: makes the registry match the cluster's `LiveStream` resources and
//! reports each stream's live state back in its status.
//!
//! Layout:
//! - [`controller`]: the kube-rs controller (Context, reconcile entry, error policy, watches).
//! - [`reconcile`]: the reconcile core shared with `sync`: records, revocations, evictions.
//! - [`status`]: pure status and conditions from what reconcile observed.
//! - [`secrets`]: publish-key Secrets (generation, reading, cache, Secret → LiveStream mapping).
//! - [`key_strength`]: the strength required of publish keys.
//! - [`conflicts`]: who owns a playback name (the oldest claim).
//! - [`gc`]: orphaned registry records.
//! - [`scope`]: the namespaces watched (cluster-wide or a list) and the stores over them.
//! - [`leader`]: leader election on a coordination.k8s.io Lease.
//! - [`serve`]: the `run` subcommand (HTTP + leader election + controller).
//! - [`sync`]: the `sync` subcommand (the same core over a manifest file, no Kubernetes).
//! - [`crd`]: the CRD YAML; the types live in `streamfleet_registry::api`.
//! - [`config`], [`registry_client`], [`metrics`], [`http`], [`error`].

pub mod config;
pub mod conflicts;
pub mod controller;
pub mod crd;
pub mod error;
pub mod gc;
pub mod http;
pub mod key_strength;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod registry_client;
pub mod scope;
pub mod secrets;
pub mod serve;
pub mod status;
pub mod sync;

#[cfg(test)]
pub mod fixtures;
