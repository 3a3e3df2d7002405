//! The `LiveStream` custom resource (`streamfleet.io/v1alpha1`): the one definition of what a
//! stream is. The operator generates the CRD from these types, and the edge's `--streams FILE`
//! loader parses manifests with them, so a manifest means the same thing everywhere.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired state of one live stream: who may publish it and how it is played.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "streamfleet.io",
    version = "v1alpha1",
    kind = "LiveStream",
    plural = "livestreams",
    shortname = "lst",
    namespaced,
    status = "LiveStreamStatus",
    doc = "A live stream that encoders publish to over RTMP and players watch through any Streamfleet edge.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Pending, Ready, Live, Disabled or Error"
    ),
    printcolumn(
        name = "Playback",
        type_ = "string",
        json_path = ".status.playbackName",
        description = "Name players use: rtmp://HOST/live/<playback>"
    ),
    printcolumn(
        name = "Publisher",
        type_ = "string",
        json_path = ".status.publisher.edge",
        description = "Edge pod holding the publisher"
    ),
    printcolumn(
        name = "Viewers",
        type_ = "integer",
        json_path = ".status.viewers",
        description = "Players on all edges"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "Protocol",
        type_ = "string",
        json_path = ".status.publisher.protocol",
        description = "What the encoder publishes over: rtmp, rtmps or srt",
        priority = "1"
    ),
    printcolumn(
        name = "Resolution",
        type_ = "string",
        json_path = ".status.media.resolution",
        description = "Video resolution the encoder sends",
        priority = "1"
    ),
    printcolumn(
        name = "FPS",
        type_ = "number",
        json_path = ".status.media.fps",
        description = "Frame rate measured by the edge",
        priority = "1"
    ),
    printcolumn(
        name = "Kbps",
        type_ = "integer",
        json_path = ".status.ingestBitrateKbps",
        description = "Ingest bitrate measured by the edge",
        priority = "1"
    ),
    printcolumn(
        name = "Healthy",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"EncoderHealthy\")].status",
        description = "Whether the encoder sends healthy media (see the EncoderHealthy condition)",
        priority = "1"
    ),
    // No fieldPath: a real API server accepts only paths declared in the schema, and a CRD's
    // schema cannot declare metadata.name; the message names the field instead.
    validation = kube::core::Rule::new(
        "has(self.spec.playbackName) || (size(self.metadata.name) <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))"
    ).message("metadata.name is the playback name when spec.playbackName is absent, so it must then be a DNS label (at most 63 lowercase letters, digits and '-'); or set spec.playbackName")
)]
#[serde(rename_all = "camelCase")]
pub struct LiveStreamSpec {
    /// The Secret key that holds the publish key (the last path segment of
    /// `rtmp://HOST/live/<publishKey>`). When absent, the operator creates a Secret
    /// `<name>-publish-key` with a random 32-byte key and names it in `status.publishKeySecret`.
    /// The same Secret may hold the stream's own SRT passphrase under the key `srtPassphrase`
    /// (10 to 79 characters): SRT publishers and players of the stream must then use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_key_secret_ref: Option<SecretKeyRef>,

    /// Name players use in `rtmp://HOST/live/<playbackName>`. Defaults to `metadata.name`.
    /// Must be a DNS label and unique across the cluster; knowing it never lets anyone publish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("playbackName must be a DNS label: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"))]
    pub playback_name: Option<String>,

    /// Whether publishing is allowed. Setting `false` rejects new publishers and drops the current
    /// one within one lease renew interval. Defaults to `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,

    /// Most players allowed at once, counted over all edges; at least 1. Absent means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self >= 1").message("maxViewers must be at least 1; omit it for no limit"))]
    pub max_viewers: Option<u32>,

    /// What happens when a second encoder publishes with the valid key while the stream is live
    /// (see the values below). Defaults to `ReplaceIdle`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub takeover_policy: Option<TakeoverPolicy>,

    /// Free text for the people running the stream (at most 1024 characters); not used by
    /// Streamfleet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,

    /// Restrict the stream to edges whose labels match all of these `key: value` pairs (at most
    /// 32; keys are label keys such as `region` or `example.com/tier`, values are label values of
    /// at most 63 characters). Empty or absent means every edge serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "edge_selector_schema")]
    #[x_kube(validation = kube::core::Rule::new("self.all(k, size(k) > 0 && size(k) <= 317)").message("edgeSelector keys must be label keys: 1 to 317 characters ([prefix/]name)"))]
    pub edge_selector: Option<std::collections::BTreeMap<String, String>>,
}

/// A reference to one key of a Secret in the LiveStream's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret, in the same namespace as the LiveStream.
    #[schemars(length(max = 253))]
    #[x_kube(validation = kube::core::Rule::new("size(self) > 0").message("publishKeySecretRef.name must not be empty"))]
    #[x_kube(validation = kube::core::Rule::new("size(self) == 0 || self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("publishKeySecretRef.name must be a Secret name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"))]
    pub name: String,
    /// Key inside the Secret's `data` (or `stringData`) whose value is the publish key.
    /// Defaults to `publishKey`.
    #[serde(default = "default_secret_key")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[-._a-zA-Z0-9]+$')").message("publishKeySecretRef.key must be a Secret data key: letters, digits, '-', '_' and '.'"))]
    pub key: String,
}

fn default_secret_key() -> String {
    "publishKey".to_string()
}

/// `edgeSelector`: a bounded map of label values, so the API server can cost its CEL rule.
fn edge_selector_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "nullable": true,
        "maxProperties": 32,
        "additionalProperties": {
            "type": "string",
            "maxLength": 63,
            "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
        }
    })
}

/// What happens when a second encoder publishes with the valid key while the stream is live:
/// `ReplaceIdle` (the default) replaces the current publisher only if it has sent no media for a
/// second (a silently dead encoder reconnecting), `Reject` always refuses the newcomer, `Replace`
/// always hands the stream to the newcomer. A cooldown stops two live encoders from knocking each
/// other off in a loop.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum TakeoverPolicy {
    /// Replace the current publisher only when it has sent no media for the idle threshold.
    #[default]
    ReplaceIdle,
    /// Never replace a live publisher.
    Reject,
    /// Always replace the current publisher (subject to the takeover cooldown).
    Replace,
}

impl TakeoverPolicy {
    /// Stable wire name, as written in manifests and in the registry.
    pub fn as_str(self) -> &'static str {
        match self {
            TakeoverPolicy::ReplaceIdle => "ReplaceIdle",
            TakeoverPolicy::Reject => "Reject",
            TakeoverPolicy::Replace => "Replace",
        }
    }

    /// Parses the wire name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ReplaceIdle" => Some(TakeoverPolicy::ReplaceIdle),
            "Reject" => Some(TakeoverPolicy::Reject),
            "Replace" => Some(TakeoverPolicy::Replace),
            _ => None,
        }
    }
}

/// Observed state, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LiveStreamStatus {
    /// Lifecycle phase (see the type description).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions. `Ready`: the stream is in the registry and accepts a publisher (False
    /// with reason `SecretNotFound`, `SecretKeyMissing`, `InvalidPublishKey`, `WeakPublishKey`,
    /// `InvalidSrtPassphrase`, `PlaybackNameConflict`, `PublishKeyConflict`, `InvalidSpec` or
    /// `Disabled`). `Live`: a
    /// publisher is connected (reason `Publishing`, else `NoPublisher` or `NotReady`).
    /// `EncoderHealthy`: while live, whether the encoder sends healthy media (False with reason
    /// `Stalled`, `KeyframeInterval`, `BitrateDrop`, `TimestampAnomalies` or `AudioVideoDrift`
    /// and a message saying what to change; Unknown when nothing is live or measured yet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The playback name in effect (`spec.playbackName` or `metadata.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playback_name: Option<String>,
    /// The current publisher, while live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<PublisherStatus>,
    /// Players on all edges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub viewers: Option<u32>,
    /// Ingest bitrate measured by the edge holding the publisher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest_bitrate_kbps: Option<u64>,
    /// What the encoder sends, measured by the edge holding the publisher, while live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaStatus>,
    /// When a publisher was last admitted (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_published_at: Option<String>,
    /// Name of the Secret holding the publish key (never the key itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_key_secret: Option<String>,
}

/// Lifecycle phase shown by `kubectl get lst`: `Pending` (not in the registry yet, e.g. the
/// publish-key Secret is missing), `Ready` (registered, waiting for a publisher), `Live` (a
/// publisher is connected), `Disabled` (`spec.enabled` is false) or `Error` (the spec cannot be
/// served, e.g. a playback-name conflict; see the `Ready` condition).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Not yet written to the registry (e.g. the Secret is missing).
    Pending,
    /// In the registry, waiting for a publisher.
    Ready,
    /// A publisher is connected.
    Live,
    /// `spec.enabled` is false.
    Disabled,
    /// The spec cannot be served; see the conditions.
    Error,
}

/// What the encoder sends, as the edge holding the publisher measured it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MediaStatus {
    /// `h264`, `hevc`, `av1`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_codec: Option<String>,
    /// `<width>x<height>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// Frames per second, measured from timestamps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    /// Seconds between the last two keyframes (2 s is what fast start needs; above 4 s the
    /// `EncoderHealthy` condition turns False).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyframe_interval_seconds: Option<f64>,
    /// `aac`, `opus`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_codec: Option<String>,
}

/// Where the current publisher is connected.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PublisherStatus {
    /// Edge pod holding the publisher's lease.
    pub edge: String,
    /// The encoder's address as the edge saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_addr: Option<String>,
    /// What the encoder publishes over: `rtmp`, `rtmps` or `srt` (absent while the edge
    /// holding it does not report it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// When the publisher was admitted (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

impl LiveStreamSpec {
    /// `spec.enabled`, defaulting to true.
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }

    /// `spec.takeoverPolicy`, defaulting to `ReplaceIdle`.
    pub fn takeover(&self) -> TakeoverPolicy {
        self.takeover_policy.unwrap_or_default()
    }
}

/// Namespace assumed for manifests without `metadata.namespace` (as kubectl does).
pub const DEFAULT_NAMESPACE: &str = "default";

impl LiveStream {
    /// The registry's id of this stream: `metadata.namespace` (default [`DEFAULT_NAMESPACE`])
    /// and `metadata.name`; `None` without a name. The one place a LiveStream becomes an id.
    pub fn stream_id(&self) -> Option<crate::record::StreamId> {
        let name = self.metadata.name.clone()?;
        let namespace = self.metadata.namespace.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        Some(crate::record::StreamId::new(namespace, name))
    }

    /// The playback name in effect: `spec.playbackName`, else `metadata.name`.
    pub fn effective_playback_name(&self) -> Option<String> {
        self.spec.playback_name.clone().or_else(|| self.metadata.name.clone())
    }
}
