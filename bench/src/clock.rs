//! One monotonic clock for the whole process. Publishers stamp each frame with "nanoseconds since
//! the process epoch" and players subtract it from their own reading: both ends share this clock,
//! so a frame's latency needs no clock synchronisation and no lookup table.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The instant every timestamp in this process is measured from.
pub fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`]. Never 0 after the first call returns (0 means "unset" elsewhere).
pub fn now_ns() -> u64 {
    ns_of(Instant::now())
}

/// Nanoseconds from [`epoch`] to `t` (0 if `t` is before it).
pub fn ns_of(t: Instant) -> u64 {
    let d = t.saturating_duration_since(epoch());
    // u64 nanoseconds last 584 years; the cast cannot truncate in a benchmark run.
    (d.as_nanos() as u64).max(1)
}

/// The instant `ns` nanoseconds after [`epoch`].
pub fn instant_of(ns: u64) -> Instant {
    epoch() + Duration::from_nanos(ns)
}
