//! Relay authentication: a pulling edge proves it knows the cluster's shared relay secret by
//! presenting `auth=<hex HMAC-SHA256(secret, playbackName)>` with its play request. The token
//! is bound to one playback name, so a leaked token opens one stream's relay, never the secret.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The shared relay secret (never logged, never shown by `Debug`).
#[derive(Clone)]
pub(crate) struct RelaySecret(Vec<u8>);

impl std::fmt::Debug for RelaySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelaySecret(..)")
    }
}

impl RelaySecret {
    pub(crate) fn new(secret: &str) -> RelaySecret {
        RelaySecret(secret.as_bytes().to_vec())
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        match HmacSha256::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        }
    }

    /// The token a pulling edge presents for `playback`: lowercase hex HMAC-SHA256.
    pub(crate) fn token(&self, playback: &str) -> String {
        let mut mac = self.mac();
        mac.update(playback.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `query` (what followed `?` in the play request) carries a valid token for
    /// `playback`. The comparison is constant-time.
    pub(crate) fn verify(&self, playback: &str, query: &str) -> bool {
        let Some(token) = query.split('&').find_map(|kv| kv.strip_prefix("auth=")) else { return false };
        let Ok(bytes) = hex::decode(token) else { return false };
        let mut mac = self.mac();
        mac.update(playback.as_bytes());
        mac.verify_slice(&bytes).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_for_their_name_and_secret() {
        let s = RelaySecret::new("cluster-secret");
        let t = s.token("news");
        assert_eq!(t.len(), 64);
        assert!(s.verify("news", &format!("auth={t}")));
        assert!(s.verify("news", &format!("x=1&auth={t}")));
        assert!(!s.verify("sports", &format!("auth={t}")), "bound to the playback name");
        assert!(!RelaySecret::new("other").verify("news", &format!("auth={t}")), "bound to the secret");
        assert!(!s.verify("news", ""));
        assert!(!s.verify("news", "auth="));
        assert!(!s.verify("news", "auth=zz"));
        assert!(!s.verify("news", &format!("auth={}", &t[..62])));
        assert!(!format!("{s:?}").contains("cluster"), "Debug never shows the secret");
    }
}
