//! The takeover decision: may a new publisher with the valid key replace the live one?
//! Pure, so the memory backend, the Redis script's documentation and the tests agree on it.

use std::time::Duration;

use crate::record::TakeoverPolicy;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Replace,
    /// `retry_in`: when asking again may succeed (holder may have gone idle, or the cooldown
    /// ended); `None` when it never will on its own.
    Refuse {
        retry_in: Option<Duration>,
    },
}

/// `idle_for`: how long the holder has reported no media (`None` while media flows).
/// `cooldown_left`: time until another takeover is allowed (`None` if none is pending).
pub fn decide(
    policy: TakeoverPolicy,
    idle_for: Option<Duration>,
    idle_threshold: Duration,
    cooldown_left: Option<Duration>,
) -> Decision {
    let wait_for_idle = match (policy, idle_for) {
        (TakeoverPolicy::Reject, _) => return Decision::Refuse { retry_in: None },
        (TakeoverPolicy::Replace, _) => Duration::ZERO,
        (TakeoverPolicy::ReplaceIdle, Some(idle)) => idle_threshold.saturating_sub(idle),
        // The holder reports idleness once it has been silent for the threshold; until then the
        // best guess is one threshold from now.
        (TakeoverPolicy::ReplaceIdle, None) => idle_threshold,
    };
    let wait = wait_for_idle.max(cooldown_left.unwrap_or(Duration::ZERO));
    if wait.is_zero() { Decision::Replace } else { Decision::Refuse { retry_in: Some(wait) } }
}

#[cfg(test)]
mod tests {
    use super::*;
    const S: Duration = Duration::from_secs(1);

    #[test]
    fn reject_never_replaces() {
        assert_eq!(decide(TakeoverPolicy::Reject, Some(S * 100), S, None), Decision::Refuse { retry_in: None });
    }

    #[test]
    fn replace_idle_waits_for_silence() {
        assert_eq!(decide(TakeoverPolicy::ReplaceIdle, None, S, None), Decision::Refuse { retry_in: Some(S) });
        assert_eq!(
            decide(TakeoverPolicy::ReplaceIdle, Some(S / 4), S, None),
            Decision::Refuse { retry_in: Some(S * 3 / 4) }
        );
        assert_eq!(decide(TakeoverPolicy::ReplaceIdle, Some(S), S, None), Decision::Replace);
    }

    #[test]
    fn cooldown_blocks_replace() {
        assert_eq!(decide(TakeoverPolicy::Replace, None, S, None), Decision::Replace);
        assert_eq!(decide(TakeoverPolicy::Replace, None, S, Some(S * 2)), Decision::Refuse { retry_in: Some(S * 2) });
    }
}
