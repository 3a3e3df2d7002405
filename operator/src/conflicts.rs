//! Who owns a playback name when several LiveStreams claim it: the oldest (creationTimestamp,
//! then `namespace/name` as the tie-break), so an existing stream never loses its name to a
//! newcomer. Pure: callers pass the LiveStreams they know (the controller's reflector store).

use k8s_openapi::jiff::Timestamp;
use streamfleet_registry::{StreamId, api::LiveStream};

/// One LiveStream's claim on a playback name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub id: StreamId,
    pub playback_name: String,
    /// `None` sorts last: an object the API server has not stamped yet is the newest.
    pub created: Option<Timestamp>,
}

impl Claim {
    /// The claim a LiveStream makes, or `None` when it makes none (no name, or being deleted:
    /// a deleting stream gives its name up).
    pub fn of(ls: &LiveStream) -> Option<Claim> {
        if ls.metadata.deletion_timestamp.is_some() {
            return None;
        }
        let id = ls.stream_id()?;
        Some(Claim {
            playback_name: ls.effective_playback_name().unwrap_or_else(|| id.name.clone()),
            id,
            created: ls.metadata.creation_timestamp.as_ref().map(|t| t.0),
        })
    }

    /// Whether this claim wins over `other` for the same name.
    pub fn precedes(&self, other: &Claim) -> bool {
        let key = |c: &Claim| (c.created.is_none(), c.created, c.id.clone());
        key(self) < key(other)
    }
}

/// The claim that beats `me` for its playback name, if any (the oldest other claimant).
pub fn rival<'a>(me: &Claim, others: impl IntoIterator<Item = &'a Claim>) -> Option<&'a Claim> {
    others
        .into_iter()
        .filter(|c| c.id != me.id && c.playback_name == me.playback_name && c.precedes(me))
        .min_by(|a, b| if a.precedes(b) { std::cmp::Ordering::Less } else { std::cmp::Ordering::Greater })
}

/// Whether the registry record of `owner` may be evicted so that `me` can take the name:
/// only when `owner` no longer makes a claim that beats `me` (it is newer, renamed, deleted, or
/// unknown to the cluster).
pub fn may_evict<'a>(me: &Claim, owner: &StreamId, claims: impl IntoIterator<Item = &'a Claim>) -> bool {
    !claims.into_iter().any(|c| &c.id == owner && c.playback_name == me.playback_name && c.precedes(me))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(ns: &str, name: &str, playback: &str, created: Option<i64>) -> Claim {
        Claim {
            id: StreamId::new(ns, name),
            playback_name: playback.into(),
            created: created.map(|s| Timestamp::from_second(s).expect("valid")),
        }
    }

    #[test]
    fn older_claim_wins_then_name_breaks_ties() {
        let old = claim("b", "news", "news", Some(100));
        let new = claim("a", "news", "news", Some(200));
        let same_time = claim("a", "other", "news", Some(100));
        assert!(old.precedes(&new));
        assert!(!new.precedes(&old));
        assert!(same_time.precedes(&old), "a/other sorts before b/news at the same second");
        assert!(old.precedes(&claim("c", "x", "news", None)), "unstamped objects are newest");

        let all = [old.clone(), new.clone(), same_time.clone()];
        assert_eq!(rival(&new, &all), Some(&same_time));
        assert_eq!(rival(&same_time, &all), None);
        assert_eq!(rival(&claim("z", "solo", "solo", Some(1)), &all), None);
    }

    #[test]
    fn eviction_only_of_claims_that_do_not_beat_me() {
        let me = claim("a", "news", "news", Some(100));
        let newer = claim("b", "news", "news", Some(200));
        let older = claim("c", "news", "news", Some(50));
        let renamed = claim("d", "news", "sport", Some(10));
        let claims = [newer.clone(), older.clone(), renamed.clone()];
        assert!(may_evict(&me, &newer.id, &claims));
        assert!(!may_evict(&me, &older.id, &claims));
        assert!(may_evict(&me, &renamed.id, &claims));
        assert!(may_evict(&me, &StreamId::new("gone", "x"), &claims));
    }

    #[test]
    fn deleting_streams_make_no_claim() {
        let mut ls = LiveStream::new("news", Default::default());
        ls.metadata.namespace = Some("media".into());
        assert_eq!(Claim::of(&ls).map(|c| c.playback_name), Some("news".into()));
        ls.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()));
        assert_eq!(Claim::of(&ls), None);
    }
}
