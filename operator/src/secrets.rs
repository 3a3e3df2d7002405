//! Publish-key Secrets: the generated `<name>-publish-key` Secret (a random 32-byte key owned by
//! its LiveStream), reading a key out of a Secret, the small cache that spares the API server a
//! GET per reconcile. Which LiveStreams a changed Secret concerns (how a key rotation reaches the
//! registry without touching the LiveStream) is looked up in the index of [`crate::scope`].

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use base64::Engine as _;
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ObjectMeta, PostParams},
};
use streamfleet_registry::api::LiveStream;

use crate::{
    error::{Error, Result},
    status::Problem,
};

/// Data key of the generated Secret (and the default of `publishKeySecretRef.key`).
pub const PUBLISH_KEY: &str = "publishKey";
/// Field manager for everything the operator writes.
pub const MANAGER: &str = "streamfleet-operator";

/// Name of the Secret generated for a LiveStream without `publishKeySecretRef`.
pub fn generated_name(livestream: &str) -> String {
    format!("{livestream}{GENERATED_SUFFIX}")
}

/// What [`generated_name`] appends to the LiveStream's name.
const GENERATED_SUFFIX: &str = "-publish-key";

/// A new random publish key: 32 bytes from the OS-seeded CSPRNG, URL-safe base64 without
/// padding, so it never contains '/' or '?' (it is the last segment of the RTMP URL).
pub fn new_publish_key() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Where a LiveStream's key lives: `(secret name, data key)`.
pub fn key_location(ls: &LiveStream) -> (String, String) {
    match &ls.spec.publish_key_secret_ref {
        Some(r) => (r.name.clone(), r.key.clone()),
        None => (generated_name(&ls.name_any()), PUBLISH_KEY.to_string()),
    }
}

/// The Secret generated for `ls`, owned by it (deleted with it by the garbage collector). The
/// ownerReference blocks the owner's foreground deletion until the Secret is gone; setting it
/// needs `update` on `livestreams/finalizers` where OwnerReferencesPermissionEnforcement runs
/// (the chart grants it).
pub fn generated_secret(ls: &LiveStream) -> Result<Secret> {
    let mut owner = ls.controller_owner_ref(&()).ok_or(Error::MissingObjectKey("metadata.uid"))?;
    owner.block_owner_deletion = Some(true);
    let name = ls.meta().name.clone().ok_or(Error::MissingObjectKey("metadata.name"))?;
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(generated_name(&name)),
            namespace: ls.meta().namespace.clone(),
            owner_references: Some(vec![owner]),
            labels: Some(BTreeMap::from([
                ("app.kubernetes.io/managed-by".to_string(), MANAGER.to_string()),
                ("streamfleet.io/livestream".to_string(), name),
            ])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([(PUBLISH_KEY.to_string(), ByteString(new_publish_key().into_bytes()))])),
        ..Secret::default()
    })
}

/// The publish key stored under `key`, or the problem that prevents using it.
pub fn read_key(secret: &Secret, key: &str) -> std::result::Result<String, Problem> {
    let name = secret.name_any();
    let from_string_data = secret.string_data.as_ref().and_then(|d| d.get(key)).cloned();
    let raw = match from_string_data {
        Some(v) => v.into_bytes(),
        None => match secret.data.as_ref().and_then(|d| d.get(key)) {
            Some(v) => v.0.clone(),
            None => return Err(Problem::SecretKeyMissing { secret: name, key: key.to_string() }),
        },
    };
    String::from_utf8(raw)
        .map_err(|_| Problem::InvalidPublishKey { secret: name, message: "the value is not UTF-8 text".into() })
}

/// The stream's own SRT passphrase, if its Secret has the key
/// [`streamfleet_registry::manifest::SRT_PASSPHRASE_KEY`]; its length is checked with the rest
/// of the record. The value is never put in a message.
pub fn read_srt_passphrase(secret: &Secret) -> std::result::Result<Option<String>, Problem> {
    let key = streamfleet_registry::manifest::SRT_PASSPHRASE_KEY;
    match read_key(secret, key) {
        Ok(p) => Ok(Some(p)),
        Err(Problem::SecretKeyMissing { .. }) => Ok(None),
        Err(_) => Err(Problem::InvalidSrtPassphrase {
            secret: secret.name_any(),
            message: "the value is not UTF-8 text".into(),
        }),
    }
}

/// Secrets read for LiveStreams, by `(namespace, name)`. Entries are dropped whenever the
/// Secret watch reports a change, so a cached value is never older than the last event.
#[derive(Default, Clone)]
pub struct SecretCache {
    inner: Arc<Mutex<SecretMap>>,
}

/// `(namespace, name)` → Secret.
type SecretMap = HashMap<(String, String), Arc<Secret>>;

impl SecretCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, SecretMap> {
        // Entries are whole values: a panic elsewhere cannot leave one half-written.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, ns: &str, name: &str) -> Option<Arc<Secret>> {
        self.lock().get(&(ns.to_string(), name.to_string())).cloned()
    }

    pub fn insert(&self, ns: &str, name: &str, secret: Arc<Secret>) {
        self.lock().insert((ns.to_string(), name.to_string()), secret);
    }

    /// Forgets a Secret (it changed, or was deleted).
    pub fn invalidate(&self, ns: &str, name: &str) {
        self.lock().remove(&(ns.to_string(), name.to_string()));
    }
}

/// Reads a Secret through the cache; `None` when it does not exist.
pub async fn fetch(client: &Client, cache: &SecretCache, ns: &str, name: &str) -> Result<Option<Arc<Secret>>> {
    if let Some(s) = cache.get(ns, name) {
        return Ok(Some(s));
    }
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await? {
        Some(s) => {
            let s = Arc::new(s);
            cache.insert(ns, name, s.clone());
            Ok(Some(s))
        }
        None => Ok(None),
    }
}

/// The generated Secret of `ls`, created when missing. Returns it and whether it was created.
/// An existing Secret of that name is used as it is, so a key is never regenerated behind a
/// running encoder's back.
pub async fn ensure_generated(client: &Client, cache: &SecretCache, ls: &LiveStream) -> Result<(Arc<Secret>, bool)> {
    let ns = ls.meta().namespace.clone().ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    let name = generated_name(&ls.name_any());
    if let Some(s) = fetch(client, cache, &ns, &name).await? {
        return Ok((s, false));
    }
    let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams { field_manager: Some(MANAGER.to_string()), ..PostParams::default() };
    match api.create(&pp, &generated_secret(ls)?).await {
        Ok(created) => {
            let created = Arc::new(created);
            cache.insert(&ns, &name, created.clone());
            Ok((created, true))
        }
        // Someone (an earlier, cancelled reconcile) created it meanwhile: use theirs.
        Err(kube::Error::Api(s)) if s.is_already_exists() => {
            let existing = Arc::new(api.get(&name).await?);
            cache.insert(&ns, &name, existing.clone());
            Ok((existing, false))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamfleet_registry::api::{LiveStreamSpec, SecretKeyRef};

    #[test]
    fn generated_keys_are_32_random_url_safe_bytes() {
        let a = new_publish_key();
        let b = new_publish_key();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43, "32 bytes in unpadded base64");
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{a}");
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&a).expect("decodes");
        assert_eq!(decoded.len(), 32);
    }

    fn stream(ns: &str, name: &str, secret_ref: Option<&str>) -> Arc<LiveStream> {
        let mut ls = LiveStream::new(
            name,
            LiveStreamSpec {
                publish_key_secret_ref: secret_ref
                    .map(|s| SecretKeyRef { name: s.to_string(), key: PUBLISH_KEY.to_string() }),
                ..LiveStreamSpec::default()
            },
        );
        ls.metadata.namespace = Some(ns.into());
        ls.metadata.uid = Some(format!("uid-{name}"));
        Arc::new(ls)
    }

    fn secret(ns: &str, name: &str) -> Secret {
        Secret {
            metadata: ObjectMeta { name: Some(name.into()), namespace: Some(ns.into()), ..ObjectMeta::default() },
            ..Secret::default()
        }
    }

    #[test]
    fn generated_secret_is_owned_and_holds_a_key() {
        let ls = stream("media", "news", None);
        let s = generated_secret(&ls).expect("has uid");
        assert_eq!(s.metadata.name.as_deref(), Some("news-publish-key"));
        let owner = &s.metadata.owner_references.as_ref().expect("owned")[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()), ("LiveStream", "news", "uid-news"));
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
        let key = read_key(&s, PUBLISH_KEY).expect("key present");
        assert_eq!(key.len(), 43);
        assert_eq!(
            read_key(&s, "other"),
            Err(Problem::SecretKeyMissing { secret: "news-publish-key".into(), key: "other".into() })
        );
    }

    #[test]
    fn string_data_wins_and_binary_values_are_rejected() {
        let mut s = secret("media", "k");
        s.data = Some(BTreeMap::from([("publishKey".into(), ByteString(vec![0xff, 0xfe]))]));
        assert!(matches!(read_key(&s, "publishKey"), Err(Problem::InvalidPublishKey { .. })));
        s.string_data = Some(BTreeMap::from([("publishKey".into(), "plain".into())]));
        assert_eq!(read_key(&s, "publishKey").as_deref(), Ok("plain"));
    }
}
