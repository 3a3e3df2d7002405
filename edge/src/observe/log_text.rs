//! Client-supplied text in log lines, and how often refusals are logged. A name, key or URL a
//! client sends is shown truncated to [`LOG_TEXT_MAX`] characters with control characters
//! escaped, so no client can write long or forged lines into the log ([`shown`]). Refusals
//! (rejected publishes and plays, connections closed on bad input) are logged at most
//! [`REFUSALS_PER_SECOND`] a second over the whole process ([`refusal_logged`]); the metrics
//! still count every one.

use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

/// Most characters of client-supplied text shown in one log field.
pub(crate) const LOG_TEXT_MAX: usize = 96;
/// Most refusal log lines per second.
pub(crate) const REFUSALS_PER_SECOND: u64 = 20;

/// Client-supplied text as a log field: at most [`LOG_TEXT_MAX`] characters, control
/// characters (newlines included) and backslashes escaped, the length noted when cut.
pub(crate) struct Shown<'a>(&'a str);

pub(crate) fn shown(s: &str) -> Shown<'_> {
    Shown(s)
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shown, c) in self.0.chars().enumerate() {
            if shown >= LOG_TEXT_MAX {
                return write!(f, "...({} bytes in all)", self.0.len());
            }
            if c.is_control() || c == '\\' {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// The second of the current window and the refusals seen in it (high and low 32 bits).
static WINDOW: AtomicU64 = AtomicU64::new(0);
/// Refusals not logged since the last note about them.
static SUPPRESSED: AtomicU64 = AtomicU64::new(0);

/// Whether this refusal may be logged. When a new second begins after refusals were left out,
/// says how many once.
pub(crate) fn refusal_logged() -> bool {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) & 0xFFFF_FFFF;
    let mut seen = WINDOW.load(Ordering::Relaxed);
    loop {
        let (second, count) = (seen >> 32, seen & 0xFFFF_FFFF);
        let next = if second == now { (now << 32) | (count + 1).min(0xFFFF_FFFF) } else { (now << 32) | 1 };
        match WINDOW.compare_exchange_weak(seen, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => {
                if second != now {
                    let left_out = SUPPRESSED.swap(0, Ordering::Relaxed);
                    if left_out > 0 {
                        tracing::warn!(
                            left_out,
                            "refusals not logged (at most {REFUSALS_PER_SECOND} a second; the metrics count every one)"
                        );
                    }
                }
                let allowed = (next & 0xFFFF_FFFF) <= REFUSALS_PER_SECOND;
                if !allowed {
                    SUPPRESSED.fetch_add(1, Ordering::Relaxed);
                }
                return allowed;
            }
            Err(actual) => seen = actual,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_and_escaped() {
        assert_eq!(shown("demo").to_string(), "demo");
        assert_eq!(shown("a\nINFO forged line\r\t\\").to_string(), "a\\nINFO forged line\\r\\t\\\\");
        let long = "x".repeat(65_000);
        let s = shown(&long).to_string();
        assert!(s.len() < LOG_TEXT_MAX + 40, "{}", s.len());
        assert!(s.ends_with("...(65000 bytes in all)"), "{s}");
    }

    #[test]
    fn refusals_are_logged_at_a_bounded_rate() {
        let logged = (0..10_000).filter(|_| refusal_logged()).count() as u64;
        // The loop may straddle a second boundary (two windows) but never more.
        assert!(logged <= 2 * REFUSALS_PER_SECOND, "{logged} of 10 000 refusals logged");
        assert!(logged >= 1);
    }
}
