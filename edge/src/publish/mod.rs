//! Publishing: [`admission`] is where a `publish(key)` is admitted (look-up, lease acquire,
//! takeover retries, waiting for a local release); [`publisher`] is the publisher's life while
//! it holds the lease.

mod admission;
mod publisher;

pub(crate) use publisher::run;
