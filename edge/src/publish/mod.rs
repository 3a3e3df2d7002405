//! Publishing: [`admission`] is where a `publish(key)` is admitted (look-up, lease acquire,
//! takeover retries, waiting for a local release); [`publisher`] is the publisher's life while
//! it holds the lease; [`read_pacing`] decides how much a publisher's socket gathers before it
//! wakes the edge; [`key_failures`] slows down wrong keys from one address.

pub(crate) mod admission;
pub(crate) mod key_failures;
pub(crate) mod publisher;
pub(crate) mod read_pacing;

pub(crate) use publisher::run;
