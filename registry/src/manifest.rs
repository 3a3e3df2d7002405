//! Turns `LiveStream` and `Secret` manifests, exactly as a user would `kubectl apply` them, into
//! stream records. Used by the edge's `--streams FILE` and by `streamfleet-operator sync`, and
//! `record_for` is what the operator's reconcile uses, so a manifest means the same everywhere.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;

use crate::{
    api::LiveStream,
    key_hash::{KeyDigests, KeyHasher},
    record::{SrtPassphrase, StreamRecord, valid_playback_name},
};

pub use crate::api::DEFAULT_NAMESPACE;

/// A manifest problem, naming the document (1-based, in file order) and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("document {document}{}: {field}: {message}", object.as_ref().map(|o| format!(" ({o})")).unwrap_or_default())]
pub struct ManifestError {
    pub document: usize,
    /// `Kind namespace/name` when known.
    pub object: Option<String>,
    pub field: String,
    pub message: String,
}

/// Why a LiveStream cannot become a record (without document context).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RecordError {
    /// What is wrong, for callers that act on it (the operator reports a bad publish key
    /// against the Secret, anything else against the spec).
    pub kind: RecordErrorKind,
    /// The field as the user wrote it, for messages.
    pub field: String,
    pub message: String,
}

/// The part of a LiveStream (or its Secret) a [`RecordError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordErrorKind {
    /// `metadata.name` is missing.
    Name,
    /// The playback name in effect is not a DNS label.
    PlaybackName,
    /// `spec.maxViewers` is 0.
    MaxViewers,
    /// The publish key read from the Secret is empty or cannot be part of an RTMP URL.
    PublishKey,
    /// The Secret's `srtPassphrase` is not 10 to 79 characters.
    SrtPassphrase,
}

/// The key of the publish-key Secret that holds a stream's own SRT passphrase (optional): SRT
/// publishers and players of that stream must encrypt with it (docs/edge.md, "SRT").
pub const SRT_PASSPHRASE_KEY: &str = "srtPassphrase";

/// Builds the registry record for a LiveStream whose publish key (and, when its Secret has one,
/// SRT passphrase: [`SRT_PASSPHRASE_KEY`]) has been read from its Secret. The key is hashed with
/// `hasher` (see [`crate::key_hash`]).
pub fn record_for(
    ls: &LiveStream,
    publish_key: &str,
    srt_passphrase: Option<&str>,
    hasher: &KeyHasher,
) -> Result<StreamRecord, RecordError> {
    let err =
        |kind: RecordErrorKind, field: &str, message: String| RecordError { kind, field: field.to_string(), message };
    let id = ls.stream_id().ok_or_else(|| err(RecordErrorKind::Name, "metadata.name", "is required".into()))?;
    let playback_name = ls.effective_playback_name().unwrap_or_else(|| id.name.clone());
    if !valid_playback_name(&playback_name) {
        let field = if ls.spec.playback_name.is_some() { "spec.playbackName" } else { "metadata.name" };
        return Err(err(
            RecordErrorKind::PlaybackName,
            field,
            format!(
                "{playback_name:?} is not a valid playback name: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
            ),
        ));
    }
    if ls.spec.max_viewers == Some(0) {
        return Err(err(
            RecordErrorKind::MaxViewers,
            "spec.maxViewers",
            "must be at least 1 (omit it for no limit)".into(),
        ));
    }
    if publish_key.is_empty() {
        return Err(err(RecordErrorKind::PublishKey, "publish key", "the Secret's value is empty".into()));
    }
    if publish_key.contains(['/', '?', ' ']) || publish_key.chars().any(|c| c.is_control()) {
        return Err(err(
            RecordErrorKind::PublishKey,
            "publish key",
            "must not contain '/', '?', spaces or control characters (it is the last segment of the RTMP URL)".into(),
        ));
    }
    let srt_passphrase = match srt_passphrase {
        None => None,
        Some(p) => Some(SrtPassphrase::new(p).map_err(|e| err(RecordErrorKind::SrtPassphrase, SRT_PASSPHRASE_KEY, e))?),
    };
    let hashed = hasher.record_hash(publish_key);
    Ok(StreamRecord {
        id,
        key_hash: hashed.hash,
        key_scheme: hashed.scheme,
        playback_name,
        enabled: ls.spec.is_enabled(),
        max_viewers: ls.spec.max_viewers,
        takeover: ls.spec.takeover(),
        generation: ls.metadata.generation.unwrap_or(1),
        srt_passphrase,
    })
}

#[derive(Deserialize)]
struct TypeMeta {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
}

/// Minimal Secret: only what holds a publish key.
#[derive(Deserialize)]
struct SecretDoc {
    metadata: SecretMeta,
    #[serde(default)]
    data: BTreeMap<String, String>,
    #[serde(default, rename = "stringData")]
    string_data: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct SecretMeta {
    name: String,
    namespace: Option<String>,
}

/// One LiveStream of a manifest file with the record built from it and its Secret.
#[derive(Debug, Clone)]
pub struct ManifestStream {
    /// 1-based position of the LiveStream's document in the file.
    pub document: usize,
    pub stream: LiveStream,
    pub record: StreamRecord,
    /// The key's hashes under every scheme the loader's hasher knows: whether an existing
    /// record was made from the same key (a rehash, not a rotation) is judged by them.
    pub key_digests: KeyDigests,
}

/// Parses a multi-document YAML of LiveStreams and Secrets into records. Other kinds are
/// ignored. Every problem found is returned, not just the first. Keys are hashed with `hasher`.
pub fn load_manifests(yaml: &str, hasher: &KeyHasher) -> Result<Vec<StreamRecord>, Vec<ManifestError>> {
    load_manifest_streams(yaml, hasher).map(|streams| streams.into_iter().map(|s| s.record).collect())
}

/// Like [`load_manifests`], keeping each LiveStream and its document number next to its record
/// (what `streamfleet-operator sync` needs to report per stream).
pub fn load_manifest_streams(yaml: &str, hasher: &KeyHasher) -> Result<Vec<ManifestStream>, Vec<ManifestError>> {
    let mut errors = Vec::new();
    let mut streams: Vec<(usize, LiveStream)> = Vec::new();
    // (namespace, name) -> key -> value
    let mut secrets: BTreeMap<(String, String), BTreeMap<String, String>> = BTreeMap::new();

    for (i, doc) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let document = i + 1;
        let value = match serde_yaml::Value::deserialize(doc) {
            Ok(serde_yaml::Value::Null) => continue, // empty document (e.g. a trailing `---`)
            Ok(v) => v,
            Err(e) => {
                errors.push(ManifestError { document, object: None, field: "(yaml)".into(), message: e.to_string() });
                // A syntax error ends the stream of documents.
                break;
            }
        };
        let tm: TypeMeta = serde_yaml::from_value(value.clone()).unwrap_or(TypeMeta { api_version: None, kind: None });
        match (tm.api_version.as_deref(), tm.kind.as_deref()) {
            (Some("streamfleet.io/v1alpha1"), Some("LiveStream")) => {
                match serde_path_to_error::deserialize::<_, LiveStream>(value) {
                    Ok(ls) => streams.push((document, ls)),
                    Err(e) => errors.push(ManifestError {
                        document,
                        object: Some("LiveStream".into()),
                        field: e.path().to_string(),
                        message: e.inner().to_string(),
                    }),
                }
            }
            (Some(av), Some("LiveStream")) => errors.push(ManifestError {
                document,
                object: Some("LiveStream".into()),
                field: "apiVersion".into(),
                message: format!("{av:?} is not served; use streamfleet.io/v1alpha1"),
            }),
            (Some("v1"), Some("Secret")) => match serde_path_to_error::deserialize::<_, SecretDoc>(value) {
                Ok(s) => {
                    let ns = s.metadata.namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.into());
                    let mut keys = BTreeMap::new();
                    for (k, v) in s.data {
                        match base64::engine::general_purpose::STANDARD
                            .decode(v.trim())
                            .ok()
                            .and_then(|b| String::from_utf8(b).ok())
                        {
                            Some(decoded) => {
                                keys.insert(k, decoded);
                            }
                            None => errors.push(ManifestError {
                                document,
                                object: Some(format!("Secret {ns}/{}", s.metadata.name)),
                                field: format!("data.{k}"),
                                message: "is not base64-encoded UTF-8 (use stringData for plain text)".into(),
                            }),
                        }
                    }
                    // stringData wins over data, as on the API server.
                    keys.extend(s.string_data);
                    secrets.insert((ns, s.metadata.name), keys);
                }
                Err(e) => errors.push(ManifestError {
                    document,
                    object: Some("Secret".into()),
                    field: e.path().to_string(),
                    message: e.inner().to_string(),
                }),
            },
            _ => {}
        }
    }

    let mut records: Vec<ManifestStream> = Vec::new();
    for (document, ls) in streams {
        let ns = ls.metadata.namespace.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.into());
        let name = ls.metadata.name.clone().unwrap_or_default();
        let object = Some(format!("LiveStream {ns}/{name}"));
        let mk = |field: &str, message: String| ManifestError {
            document,
            object: object.clone(),
            field: field.into(),
            message,
        };
        let Some(sref) = ls.spec.publish_key_secret_ref.clone() else {
            errors.push(mk(
                "spec.publishKeySecretRef",
                "is required here: without Kubernetes nothing can generate the key, so name a Secret in this file"
                    .into(),
            ));
            continue;
        };
        let Some(secret) = secrets.get(&(ns.clone(), sref.name.clone())) else {
            errors.push(mk("spec.publishKeySecretRef.name", format!("Secret {ns}/{} is not in this file", sref.name)));
            continue;
        };
        let Some(key) = secret.get(&sref.key) else {
            errors.push(mk(
                "spec.publishKeySecretRef.key",
                format!("Secret {ns}/{} has no key {:?}", sref.name, sref.key),
            ));
            continue;
        };
        match record_for(&ls, key, secret.get(SRT_PASSPHRASE_KEY).map(String::as_str), hasher) {
            Ok(rec) => {
                if let Some(other) = records.iter().find(|r| r.record.id == rec.id) {
                    errors.push(mk("metadata.name", format!("LiveStream {} is defined twice", other.record.id)));
                } else if let Some(other) = records.iter().find(|r| r.record.playback_name == rec.playback_name) {
                    errors.push(mk(
                        "spec.playbackName",
                        format!(
                            "{:?} is already used by {} (document {})",
                            rec.playback_name, other.record.id, other.document
                        ),
                    ));
                } else if let Some(other) = records.iter().find(|r| r.record.key_hash == rec.key_hash) {
                    errors.push(mk(
                        "spec.publishKeySecretRef",
                        format!("the publish key is already used by {} (document {})", other.record.id, other.document),
                    ));
                } else {
                    let key_digests = hasher.digests(key);
                    records.push(ManifestStream { document, stream: ls, record: rec, key_digests });
                }
            }
            Err(e) => errors.push(mk(&e.field, e.message)),
        }
    }
    if errors.is_empty() { Ok(records) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{KeyHash, StreamId, TakeoverPolicy};

    const GOOD: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: news-key, namespace: media}
stringData: {publishKey: s3cret-news}
---
apiVersion: v1
kind: Secret
metadata: {name: sports-key}
data: {key: c3BvcnRzLWtleQ==}
---
apiVersion: streamfleet.io/v1alpha1
kind: LiveStream
metadata: {name: news, namespace: media, generation: 3}
spec:
  publishKeySecretRef: {name: news-key, key: publishKey}
  maxViewers: 100
  takeoverPolicy: Reject
---
apiVersion: streamfleet.io/v1alpha1
kind: LiveStream
metadata: {name: sports}
spec:
  publishKeySecretRef: {name: sports-key, key: key}
  playbackName: sport-1
  enabled: false
---
"#;

    #[test]
    fn loads_streams_with_their_secrets() {
        let recs = load_manifests(GOOD, &KeyHasher::legacy()).expect("valid manifests");
        assert_eq!(recs.len(), 2);
        let news = &recs[0];
        assert_eq!(news.id, StreamId::new("media", "news"));
        assert_eq!(news.key_hash, KeyHash::of_key("s3cret-news"));
        assert_eq!(news.playback_name, "news");
        assert_eq!(news.max_viewers, Some(100));
        assert_eq!(news.takeover, TakeoverPolicy::Reject);
        assert_eq!(news.generation, 3);
        assert!(news.enabled);
        let sports = &recs[1];
        assert_eq!(sports.id, StreamId::new("default", "sports"));
        assert_eq!(sports.key_hash, KeyHash::of_key("sports-key"));
        assert_eq!(sports.playback_name, "sport-1");
        assert_eq!(sports.takeover, TakeoverPolicy::ReplaceIdle);
        assert!(!sports.enabled);

        let streams = load_manifest_streams(GOOD, &KeyHasher::legacy()).expect("valid manifests");
        assert_eq!(streams.iter().map(|s| s.document).collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(streams[1].stream.spec.playback_name.as_deref(), Some("sport-1"));
        assert_eq!(streams.into_iter().map(|s| s.record).collect::<Vec<_>>(), recs);
    }

    fn errors_of(yaml: &str) -> Vec<ManifestError> {
        load_manifests(yaml, &KeyHasher::legacy()).expect_err("manifest should be rejected")
    }

    #[test]
    fn names_document_and_field_of_bad_input() {
        let e = errors_of(
            "apiVersion: streamfleet.io/v1alpha1\nkind: LiveStream\nmetadata: {name: a}\nspec: {maxViewers: -3}\n",
        );
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].document, 1);
        assert_eq!(e[0].field, "spec.maxViewers");

        let e = errors_of(
            "kind: Namespace\napiVersion: v1\n---\napiVersion: streamfleet.io/v1alpha1\nkind: LiveStream\nmetadata: {name: a}\nspec: {publishKeySecretRef: {name: missing}}\n",
        );
        assert_eq!(e[0].document, 2);
        assert_eq!(e[0].field, "spec.publishKeySecretRef.name");
        assert!(e[0].to_string().contains("default/missing"), "{}", e[0]);
    }

    #[test]
    fn rejects_bad_playback_names_and_duplicate_keys() {
        let yaml = r#"
apiVersion: v1
kind: Secret
metadata: {name: k}
stringData: {publishKey: same}
---
apiVersion: streamfleet.io/v1alpha1
kind: LiveStream
metadata: {name: a}
spec: {publishKeySecretRef: {name: k}, playbackName: "Not_A_Label"}
---
apiVersion: streamfleet.io/v1alpha1
kind: LiveStream
metadata: {name: b}
spec: {publishKeySecretRef: {name: k}}
---
apiVersion: streamfleet.io/v1alpha1
kind: LiveStream
metadata: {name: c}
spec: {publishKeySecretRef: {name: k}}
"#;
        let e = errors_of(yaml);
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!((e[0].document, e[0].field.as_str()), (2, "spec.playbackName"));
        assert_eq!((e[1].document, e[1].field.as_str()), (4, "spec.publishKeySecretRef"));
    }

    #[test]
    fn a_secret_may_carry_the_streams_srt_passphrase_checked_for_length() {
        let recs = load_manifests(GOOD, &KeyHasher::legacy()).expect("valid manifests");
        assert!(recs.iter().all(|r| r.srt_passphrase.is_none()), "none unless the Secret has one");
        let with =
            GOOD.replace("{publishKey: s3cret-news}", "{publishKey: s3cret-news, srtPassphrase: news-srt-secret}");
        let recs = load_manifests(&with, &KeyHasher::legacy()).expect("valid manifests");
        assert_eq!(recs[0].srt_passphrase.as_ref().map(|p| p.expose()), Some("news-srt-secret"));
        assert_eq!(recs[1].srt_passphrase, None);
        let short = GOOD.replace("{publishKey: s3cret-news}", "{publishKey: s3cret-news, srtPassphrase: tooshort}");
        let errors = errors_of(&short);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "srtPassphrase");
        assert!(errors[0].message.contains("10 to 79 characters, not 8"), "{}", errors[0].message);
        assert!(!errors[0].to_string().contains("tooshort"), "the passphrase is never quoted");
    }

    #[test]
    fn yaml_syntax_errors_are_reported() {
        let e = errors_of("apiVersion: v1\nkind: [unclosed\n");
        assert_eq!(e[0].field, "(yaml)");
    }
}
