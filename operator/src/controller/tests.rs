//! Reconcile scenarios against a mocked API server (every request checked in order) and a
//! registry: the memory backend here, the same scenarios against a real redis-server in
//! `redis_scenarios` when the Redis backend is available.

use std::{sync::Arc, time::Duration};

use base64::Engine as _;
use kube::runtime::controller::Action;
use serde_json::Value;
use streamfleet_registry::{
    AcquireOptions, KeyHash, KeyHashSecret, Lease, LeaseTiming, MemoryRegistry, PublisherInfo, RenewOutcome,
    SharedRegistry, StreamId, StreamRecord, TakeoverPolicy,
};

use super::*;
use crate::fixtures::{LiveStreamExt, livestream, secret};

const LS_PATH: &str = "/apis/streamfleet.io/v1alpha1/namespaces/default/livestreams";

async fn run(ls: &LiveStream, ctx: &Arc<Context>) -> tokio::task::JoinHandle<Result<Action>> {
    tokio::spawn(reconcile(Arc::new(ls.clone()), ctx.clone()))
}

async fn finish(task: tokio::task::JoinHandle<Result<Action>>) -> Result<Action> {
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("reconcile finishes").expect("no panic")
}

fn record(ns: &str, name: &str, key: &str, playback: &str) -> StreamRecord {
    StreamRecord {
        id: StreamId::new(ns, name),
        key_hash: KeyHash::of_key(key),
        key_scheme: streamfleet_registry::KeyScheme::Sha256,
        playback_name: playback.into(),
        enabled: true,
        max_viewers: None,
        takeover: TakeoverPolicy::ReplaceIdle,
        generation: 1,
        srt_passphrase: None,
    }
}

async fn publish(reg: &SharedRegistry, key: &str) -> Lease {
    let who = PublisherInfo {
        edge: "edge-a".into(),
        remote_addr: Some("192.0.2.7:50000".into()),
        relay_addr: None,
        protocol: None,
    };
    reg.acquire(&KeyHash::of_key(key), &who, &AcquireOptions::new(&LeaseTiming::default())).await.expect("admitted")
}

async fn still_held(reg: &SharedRegistry, lease: &Lease) -> bool {
    reg.renew(lease, Duration::from_secs(15)).await.expect("renew answered") == RenewOutcome::Renewed
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

fn memory() -> SharedRegistry {
    Arc::new(MemoryRegistry::new())
}

// ---- scenarios (registry-agnostic) ------------------------------------------------------------

pub(crate) async fn an_unhealthy_encoder_is_a_condition_a_media_block_and_one_warning(reg: SharedRegistry) {
    let key = "health-publish-key-0123456789";
    reg.put_stream(&record("default", "news", key, "news")).await.expect("put");
    let lease = publish(&reg, key).await;
    let media = streamfleet_registry::HolderMedia {
        video_codec: Some("h264".into()),
        width: Some(1280),
        height: Some(720),
        fps_centi: Some(3000),
        keyframe_interval_ms: Some(8000),
        audio_codec: Some("aac".into()),
        healthy: false,
        reason: Some("KeyframeInterval".into()),
        message: Some("keyframe interval is 8.0 s; set 2 s".into()),
    };
    let update = streamfleet_registry::HolderUpdate { media: Some(media), ..Default::default() };
    reg.update_holder(&lease, update).await.expect("holder update");
    let ls = livestream("news").finalized().with_secret("news-key", "publishKey");
    let (ctx, mut api) = Context::test(reg.clone(), std::slice::from_ref(&ls));
    let task = run(&ls, &ctx).await;
    api.serve_publish_key("default", "news-key", key).await;
    let (type_, reason, note) = api.expect_event("default").await;
    assert_eq!((type_.as_str(), reason.as_str()), ("Warning", "KeyframeInterval"));
    assert!(note.contains("set 2 s"), "{note}");
    let status = api.expect_status_patch(&ls).await;
    assert_eq!(status["phase"], "Live");
    let healthy = condition(&status, "EncoderHealthy");
    assert_eq!((healthy["status"].as_str(), healthy["reason"].as_str()), (Some("False"), Some("KeyframeInterval")));
    assert_eq!(status["media"]["resolution"], "1280x720");
    assert_eq!(status["media"]["fps"], 30.0);
    assert_eq!(status["media"]["keyframeIntervalSeconds"], 8.0);
    assert_eq!(
        (status["media"]["videoCodec"].as_str(), status["media"]["audioCodec"].as_str()),
        (Some("h264"), Some("aac"))
    );
    finish(task).await.expect("ok");
    api.expect_nothing_more().await;

    // Still unhealthy on the next pass (the status now says so): no second Warning.
    let mut seen = ls.clone();
    seen.status = Some(serde_json::from_value(status).expect("status"));
    let (ctx, mut api) = Context::test(reg.clone(), std::slice::from_ref(&seen));
    let task = run(&seen, &ctx).await;
    api.serve_publish_key("default", "news-key", key).await;
    finish(task).await.expect("ok");
    api.expect_nothing_more().await;
}

pub(crate) async fn finalizer_is_added_before_anything_else(reg: SharedRegistry) {
    let ls = livestream("news");
    let (ctx, mut api) = Context::test(reg.clone(), std::slice::from_ref(&ls));
    let task = run(&ls, &ctx).await;
    let seen = api
        .expect("PATCH", &format!("{LS_PATH}/news"), |s| {
            let mut obj = serde_json::to_value(&ls).expect("JSON");
            obj["metadata"]["finalizers"] = serde_json::json!([FINALIZER]);
            let _ = s;
            (200, obj)
        })
        .await;
    assert_eq!(seen.body[1]["op"], "add", "{}", seen.body);
    assert_eq!(seen.body[1]["value"], serde_json::json!([FINALIZER]));
    assert_eq!(finish(task).await.expect("ok"), Action::await_change());
    api.expect_nothing_more().await;
    assert!(reg.list_streams().await.expect("list").is_empty(), "no record before the finalizer is in place");
}

pub(crate) async fn create_generates_the_secret_writes_the_record_and_status(reg: SharedRegistry) {
    let ls = livestream("news").finalized();
    let (ctx, mut api) = Context::test(reg.clone(), std::slice::from_ref(&ls));
    let task = run(&ls, &ctx).await;
    api.expect_secret_get("default", "news-publish-key", None).await;
    let created = api.expect("POST", "/api/v1/namespaces/default/secrets", |s| (201, s.body.clone())).await;
    let owner = &created.body["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["name"].as_str(), owner["uid"].as_str()),
        (Some("LiveStream"), Some("news"), Some("uid-news"))
    );
    let encoded = created.body["data"]["publishKey"].as_str().expect("key in data");
    let key =
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).expect("base64")).expect("utf8");
    assert_eq!(key.len(), 43);
    assert!(!key.contains(['/', '?']));

    let (type_, reason, _) = api.expect_event("default").await;
    assert_eq!((type_.as_str(), reason.as_str()), ("Normal", "SecretCreated"));
    let status = api.expect_status_patch(&ls).await;
    assert_eq!(status["phase"], "Ready");
    assert_eq!(status["publishKeySecret"], "news-publish-key");
    assert_eq!(status["playbackName"], "news");
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(condition(&status, "Ready")["status"], "True");
    assert_eq!(condition(&status, "Live")["reason"], "NoPublisher");
    assert!(!status.to_string().contains(&key), "status must never carry the key");

    assert_eq!(finish(task).await.expect("ok"), Action::requeue(Settings::default().idle_requeue));
    api.expect_nothing_more().await;
    let rec = reg.get_stream(&StreamId::new("default", "news")).await.expect("get").expect("record written");
    assert_eq!(rec.key_hash, KeyHash::of_key(&key));
    assert_eq!(rec.playback_name, "news");
    assert!(rec.enabled);
}

pub(crate) async fn key_rotation_updates_the_record_and_revokes_the_publisher(reg: SharedRegistry) {
    reg.put_stream(&record("default", "news", "old-publish-key-0123", "news")).await.expect("put");
    let lease = publish(&reg, "old-publish-key-0123").await;
    let ls = livestream("news").finalized().with_secret("news-key", "publishKey");
    let (ctx, mut api) = Context::test(reg.clone(), std::slice::from_ref(&ls));
    let task = run(&ls, &ctx).await;
    api.serve_publish_key("default", "news-key", "new-publish-key-4567").await;
    let (type_, reason, note) = api.expect_event("default").await;
    assert_eq!((type_.as_str(), reason.as_str()), ("Normal", "KeyRotated"));
    assert!(note.contains("disconnected"), "{note}");
    let status = api.expect_status_patch(&ls).await;
    assert_eq!(status["phase"], "Ready");
    finish(task).await.expect("ok");
    api.expect_nothing_more().await;

    let rec = reg.get_stream(&StreamId::new("default", "news")).await.expect("get").expect("record");
    assert_eq!(rec.key_hash, KeyHash::of_key("new-publish-key-4567"));
    assert!(!still_held(&reg, &lease).await, "the publisher that used the old key lost its lease");
    assert!(reg.lookup(&KeyHash::of_key("old-publish-key-0123")).await.is_err(), "the old key no longer admits anyone");
}

pub(crate) async fn disabling_revokes_the_publisher(reg: SharedRegistry) {
    reg.put_stream(&record("default", "news", "news-publish-key-89ab", "news")).await.expect("put");
    let lease = publish(&reg, "news-publish-key-89ab").await;
    let ls = livestream("news").finalized().with_secret("news-key", "publishKey").disabled();
    let (ctx, mut api) = Context::test(reg.clone(), std::slice::from_ref(&ls));
    let task = run(&ls, &ctx).await;
    api.serve_publish_key("default", "news-key", "news-publish-key-89ab").await;
    let (_, reason, _) = api.expect_event("default").await;
    assert_eq!(reason, "PublisherRevoked");
    let status = api.expect_status_patch(&ls).await;
    assert_eq!(status["phase"], "Disabled");
    assert_eq!(condition(&status, "Ready")["reason"], "Disabled");
    finish(task).await.expect("ok");
    api.expect_nothing_more().await;

    assert!(!still_held(&reg, &lease).await, "disabling drops the publisher");
    let rec = reg.get_stream(&StreamId::new("default", "news")).await.expect("get").expect("record kept");
    assert!(!rec.enabled);
}

pub(crate) async fn delete_removes_the_record_then_the_finalizer(reg: SharedRegistry) {
    reg.put_stream(&record("default", "news", "news-publish-key-89ab", "news")).await.expect("put");
    let lease = publish(&reg, "news-publish-key-89ab").await;
    let ls = livestream("news").finalized().deleting();
    let (ctx, mut api) = Context::test(reg.clone(), std::slice::from_ref(&ls));
    let task = run(&ls, &ctx).await;
    let seen = api
        .expect("PATCH", &format!("{LS_PATH}/news"), |_| {
            let mut obj = serde_json::to_value(&ls).expect("JSON");
            obj["metadata"]["finalizers"] = serde_json::json!([]);
            (200, obj)
        })
        .await;
    assert_eq!(seen.body[0], serde_json::json!({"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER}));
    assert_eq!(seen.body[1], serde_json::json!({"op": "remove", "path": "/metadata/finalizers/0"}));
    assert_eq!(finish(task).await.expect("ok"), Action::await_change());
    api.expect_nothing_more().await;
    assert_eq!(reg.get_stream(&StreamId::new("default", "news")).await.expect("get"), None);
    assert!(!still_held(&reg, &lease).await);
}

pub(crate) async fn the_older_stream_keeps_a_contested_playback_name(reg: SharedRegistry) {
    // The newer stream got into the registry first (say, the older one was just fixed).
    reg.put_stream(&record("default", "news", "new-publish-key-4567", "news")).await.expect("put");
    let older = livestream("anchor")
        .in_namespace("media")
        .finalized()
        .playback("news")
        .created_at(1_600_000_000)
        .with_secret("anchor-key", "publishKey");
    let newer = livestream("news").finalized().with_secret("news-key", "publishKey");
    let known = [older.clone(), newer.clone()];

    // The newer one learns it lost: Warning Event, Ready=False, and its record is evicted.
    let (ctx, mut api) = Context::test(reg.clone(), &known);
    let task = run(&newer, &ctx).await;
    let (type_, reason, note) = api.expect_event("default").await;
    assert_eq!((type_.as_str(), reason.as_str()), ("Warning", "PlaybackNameConflict"));
    assert!(note.contains("media/anchor"), "{note}");
    let status = api.expect_status_patch(&newer).await;
    assert_eq!(status["phase"], "Error");
    let ready = condition(&status, "Ready");
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("PlaybackNameConflict")));
    finish(task).await.expect("a conflict is reported, not an error");
    api.expect_nothing_more().await;
    assert_eq!(reg.get_stream(&StreamId::new("default", "news")).await.expect("get"), None);

    // The older one takes the name.
    let (ctx, mut api) = Context::test(reg.clone(), &known);
    let task = run(&older, &ctx).await;
    api.serve_publish_key("media", "anchor-key", "anchor-publish-key-cdef").await;
    let status = api.expect_status_patch(&older).await;
    assert_eq!(status["phase"], "Ready");
    finish(task).await.expect("ok");
    api.expect_nothing_more().await;
    assert_eq!(reg.lookup_playback("news").await.expect("owner").id, StreamId::new("media", "anchor"));
}

pub(crate) async fn the_older_stream_evicts_a_newer_record_holding_its_name(reg: SharedRegistry) {
    reg.put_stream(&record("default", "news", "new-publish-key-4567", "news")).await.expect("put");
    let older = livestream("anchor")
        .in_namespace("media")
        .finalized()
        .playback("news")
        .created_at(1_600_000_000)
        .with_secret("anchor-key", "publishKey");
    let newer = livestream("news").finalized();
    let (ctx, mut api) = Context::test(reg.clone(), &[older.clone(), newer]);
    let task = run(&older, &ctx).await;
    api.serve_publish_key("media", "anchor-key", "anchor-publish-key-cdef").await;
    let (_, reason, note) = api.expect_event("media").await;
    assert_eq!(reason, "PlaybackNameReclaimed");
    assert!(note.contains("default/news"), "{note}");
    api.expect_status_patch(&older).await;
    finish(task).await.expect("ok");
    assert_eq!(reg.lookup_playback("news").await.expect("owner").id, StreamId::new("media", "anchor"));
    assert_eq!(reg.get_stream(&StreamId::new("default", "news")).await.expect("get"), None);
}

pub(crate) async fn a_namespace_scoped_operator_never_evicts_a_record_outside_its_scope(reg: SharedRegistry) {
    // Another operator, watching "default", wrote this record; it is invisible from "media".
    reg.put_stream(&record("default", "news", "new-publish-key-4567", "news")).await.expect("put");
    let older = livestream("anchor")
        .in_namespace("media")
        .finalized()
        .playback("news")
        .created_at(1_600_000_000)
        .with_secret("anchor-key", "publishKey");
    let settings = Settings { scope: Scope::from_list(&["media".to_string()]), ..Settings::default() };
    let (ctx, mut api) = Context::test_with(reg.clone(), std::slice::from_ref(&older), settings);
    let task = run(&older, &ctx).await;
    api.serve_publish_key("media", "anchor-key", "anchor-publish-key-cdef").await;
    let (_, reason, _) = api.expect_event("media").await;
    assert_eq!(reason, "PlaybackNameConflict");
    let status = api.expect_status_patch(&older).await;
    assert_eq!(condition(&status, "Ready")["reason"], "PlaybackNameConflict");
    finish(task).await.expect("a conflict is reported, not an error");
    assert_eq!(reg.lookup_playback("news").await.expect("owner").id, StreamId::new("default", "news"));
}

pub(crate) async fn a_missing_secret_is_a_condition_not_a_crash(reg: SharedRegistry) {
    let ls = livestream("news").finalized().with_secret("nope", "publishKey");
    let (ctx, mut api) = Context::test(reg.clone(), std::slice::from_ref(&ls));
    let task = run(&ls, &ctx).await;
    api.expect_secret_get("default", "nope", None).await;
    let (type_, reason, note) = api.expect_event("default").await;
    assert_eq!((type_.as_str(), reason.as_str()), ("Warning", "SecretNotFound"));
    assert!(note.contains("nope"), "{note}");
    let status = api.expect_status_patch(&ls).await;
    assert_eq!(status["phase"], "Pending");
    let ready = condition(&status, "Ready");
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("SecretNotFound")));
    // Requeued (the Secret watch also wakes it up as soon as the Secret appears).
    assert_eq!(finish(task).await.expect("ok"), Action::requeue(Settings::default().idle_requeue));
    api.expect_nothing_more().await;
    assert!(reg.list_streams().await.expect("list").is_empty());
}

pub(crate) async fn a_weak_publish_key_is_a_condition_and_is_not_served(reg: SharedRegistry) {
    // A stream served with a weak key before this check existed: its record goes, its
    // publisher is revoked, and the LiveStream says why without quoting the key.
    let weak = "short-key-1";
    reg.put_stream(&record("default", "news", weak, "news")).await.expect("put");
    let lease = publish(&reg, weak).await;
    let ls = livestream("news").finalized().with_secret("news-key", "publishKey");
    let (ctx, mut api) = Context::test(reg.clone(), std::slice::from_ref(&ls));
    let task = run(&ls, &ctx).await;
    api.serve_publish_key("default", "news-key", weak).await;
    let (type_, reason, note) = api.expect_event("default").await;
    assert_eq!((type_.as_str(), reason.as_str()), ("Warning", "WeakPublishKey"));
    assert!(note.contains("11 bytes, fewer than 16") && !note.contains(weak), "{note}");
    let status = api.expect_status_patch(&ls).await;
    assert_eq!(status["phase"], "Error");
    let ready = condition(&status, "Ready");
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("WeakPublishKey")));
    assert!(!status.to_string().contains(weak), "status must never carry the key");
    finish(task).await.expect("ok");
    api.expect_nothing_more().await;
    assert!(reg.list_streams().await.expect("list").is_empty(), "a weak key is not served");
    assert!(!still_held(&reg, &lease).await, "its publisher is revoked");
}

pub(crate) async fn a_legacy_record_is_rewritten_with_the_keyed_hash_and_keeps_its_publisher(reg: SharedRegistry) {
    // Written by an operator without a key-hash secret; this one has the secret.
    let key = "news-publish-key-89ab";
    reg.put_stream(&record("default", "news", key, "news")).await.expect("put");
    let lease = publish(&reg, key).await;
    let ls = livestream("news").finalized().with_secret("news-key", "publishKey");
    let hasher = KeyHasher::new(Some(KeyHashSecret::new("controller-test-key-hash-secret").unwrap()));
    let settings = Settings { key_hasher: hasher.clone(), ..Settings::default() };
    let (ctx, mut api) = Context::test_with(reg.clone(), std::slice::from_ref(&ls), settings);
    let task = run(&ls, &ctx).await;
    api.serve_publish_key("default", "news-key", key).await;
    let status = api.expect_status_patch(&ls).await;
    assert_eq!(status["phase"], "Live", "no KeyRotated, no revocation: the publisher stays");
    finish(task).await.expect("ok");
    api.expect_nothing_more().await;

    let rec = reg.get_stream(&StreamId::new("default", "news")).await.expect("get").expect("record");
    let keyed = hasher.record_hash(key);
    assert_eq!((rec.key_hash, rec.key_scheme), (keyed.hash, keyed.scheme));
    assert!(still_held(&reg, &lease).await, "the live publisher kept its lease");
    assert!(ctx.metrics.render().contains("streamfleet_operator_key_rehashes_total 1"));
    assert!(reg.lookup(&KeyHash::of_key(key)).await.is_err(), "the unsalted hash is gone from the registry");
    assert_eq!(reg.lookup(&keyed.hash).await.expect("found by the keyed hash").id, rec.id);
}

/// When a [`reconcile`] asked to run again (`Action` keeps it private; its `Debug` shows it).
fn requeue_after(action: &Action) -> Option<Duration> {
    let text = format!("{action:?}");
    let inner = text.strip_prefix("Action { requeue_after: Some(")?.strip_suffix(") }")?;
    let (number, unit) = inner.split_at(inner.find(|c: char| c.is_ascii_alphabetic() || c == 'µ')?);
    let value: f64 = number.parse().ok()?;
    let scale = match unit {
        "s" => 1.0,
        "ms" => 1e-3,
        "µs" => 1e-6,
        "ns" => 1e-9,
        _ => return None,
    };
    Some(Duration::from_secs_f64(value * scale))
}

pub(crate) async fn a_holder_that_stops_renewing_is_shown_gone_at_its_lease_expiry(reg: SharedRegistry) {
    let key = "expiry-publish-key-0123456789";
    reg.put_stream(&record("default", "news", key, "news")).await.expect("put");
    let ls = livestream("news").finalized().with_secret("news-key", "publishKey");
    // Both polls far out: only the lease's own deadline can bring the stream back to Ready.
    let long = Duration::from_secs(600);
    let settings = Settings { live_requeue: long, idle_requeue: long, ..Settings::default() };
    let (ctx, mut api) = Context::test_with(reg.clone(), std::slice::from_ref(&ls), settings);
    ctx.secrets.insert("default", "news-key", Arc::new(secret("default", "news-key", "publishKey", key)));

    // An edge takes the lease (a short TTL keeps the test short).
    let ttl = Duration::from_millis(1500);
    let who = PublisherInfo { edge: "edge-a".into(), remote_addr: None, relay_addr: None, protocol: None };
    let opts = AcquireOptions::new(&LeaseTiming::from_ttl(ttl));
    let lease = reg.acquire(&KeyHash::of_key(key), &who, &opts).await.expect("admitted");
    let task = run(&ls, &ctx).await;
    let status = api.expect_status_patch(&ls).await;
    assert_eq!(status["phase"], "Live");
    let first = requeue_after(&finish(task).await.expect("ok")).expect("a requeue");
    assert!(first <= ttl + LEASE_EXPIRY_MARGIN, "looked at again by the lease's expiry, not in {first:?}");
    let mut ls = ls;
    ls.status = Some(serde_json::from_value(status).expect("status parses"));

    // A third of the TTL later the edge renews (its cadence) and something else (a viewer
    // signal) has the stream reconciled: the next look moves out to the new deadline.
    tokio::time::sleep(ttl / 3).await;
    assert_eq!(reg.renew(&lease, ttl).await.expect("renew"), RenewOutcome::Renewed);
    let last_renew = std::time::Instant::now();
    let task = run(&ls, &ctx).await;
    let next = requeue_after(&finish(task).await.expect("ok, nothing to write")).expect("a requeue");
    assert!(next > ttl / 2 && next <= ttl + LEASE_EXPIRY_MARGIN, "{next:?}");
    // Then the edge dies without releasing. The requeue that pass asked for, run as the
    // controller's scheduler runs it, finds the lease expired.
    tokio::time::sleep(next).await;
    let task = run(&ls, &ctx).await;
    let status = api.expect_status_patch(&ls).await;
    assert_eq!(status["phase"], "Ready", "{status}");
    assert_eq!(condition(&status, "Live")["status"], "False");
    finish(task).await.expect("ok");
    let after = last_renew.elapsed();
    assert!(after <= ttl + Duration::from_secs(2), "not Live {after:?} after the last renew, lease TTL {ttl:?}");
    api.expect_nothing_more().await;
}

// ---- memory-backend runs ----------------------------------------------------------------------

#[tokio::test]
async fn lease_expiry() {
    a_holder_that_stops_renewing_is_shown_gone_at_its_lease_expiry(memory()).await;
}

#[tokio::test]
async fn weak_publish_key() {
    a_weak_publish_key_is_a_condition_and_is_not_served(memory()).await;
}

#[tokio::test]
async fn unhealthy_encoder() {
    an_unhealthy_encoder_is_a_condition_a_media_block_and_one_warning(memory()).await;
}

#[tokio::test]
async fn weak_publish_keys_are_served_when_allowed() {
    let reg = memory();
    let ls = livestream("news").finalized().with_secret("news-key", "publishKey");
    let settings = Settings { require_strong_keys: false, ..Settings::default() };
    let (ctx, mut api) = Context::test_with(reg.clone(), std::slice::from_ref(&ls), settings);
    let task = run(&ls, &ctx).await;
    api.serve_publish_key("default", "news-key", "weak").await;
    let status = api.expect_status_patch(&ls).await;
    assert_eq!(status["phase"], "Ready");
    finish(task).await.expect("ok");
    assert_eq!(reg.list_streams().await.expect("list").len(), 1);
}

/// `secret` with a second key, `srtPassphrase`.
fn secret_with_srt_passphrase(name: &str, key: &str, passphrase: &str) -> k8s_openapi::api::core::v1::Secret {
    let mut s = secret("default", name, "publishKey", key);
    if let Some(data) = s.data.as_mut() {
        data.insert("srtPassphrase".into(), k8s_openapi::ByteString(passphrase.as_bytes().to_vec()));
    }
    s
}

#[tokio::test]
async fn an_srt_passphrase_in_the_secret_reaches_the_record_and_a_bad_one_is_a_condition() {
    let key = "news-publish-key-0123456789abcdef";
    let reg = memory();
    let ls = livestream("news").finalized().with_secret("news-key", "publishKey");
    let (ctx, mut api) = Context::test(reg.clone(), std::slice::from_ref(&ls));
    let task = run(&ls, &ctx).await;
    let good = secret_with_srt_passphrase("news-key", key, "news-srt-passphrase");
    api.expect_secret_get("default", "news-key", Some(&good)).await;
    let status = api.expect_status_patch(&ls).await;
    assert_eq!(status["phase"], "Ready", "{status:#}");
    finish(task).await.expect("ok");
    let records = reg.list_streams().await.expect("list");
    assert_eq!(records[0].srt_passphrase.as_ref().map(|p| p.expose()), Some("news-srt-passphrase"));

    // Too short for libsrt: the stream is not served (rather than served unencrypted), and
    // the LiveStream says why without quoting it.
    let (ctx, mut api) = Context::test(reg.clone(), std::slice::from_ref(&ls));
    let task = run(&ls, &ctx).await;
    let bad = secret_with_srt_passphrase("news-key", key, "tiny-pass");
    api.expect_secret_get("default", "news-key", Some(&bad)).await;
    let (type_, reason, note) = api.expect_event("default").await;
    assert_eq!((type_.as_str(), reason.as_str()), ("Warning", "InvalidSrtPassphrase"));
    assert!(note.contains("10 to 79 characters, not 9") && !note.contains("tiny-pass"), "{note}");
    let status = api.expect_status_patch(&ls).await;
    assert_eq!(status["phase"], "Error");
    let ready = condition(&status, "Ready");
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("InvalidSrtPassphrase")));
    assert!(!status.to_string().contains("tiny-pass"), "status must never carry the passphrase");
    finish(task).await.expect("ok");
    assert!(reg.list_streams().await.expect("list").is_empty(), "not served with a bad passphrase");
}

#[tokio::test]
async fn legacy_record_rehashed() {
    a_legacy_record_is_rewritten_with_the_keyed_hash_and_keeps_its_publisher(memory()).await;
}

#[tokio::test]
async fn finalizer_first() {
    finalizer_is_added_before_anything_else(memory()).await;
}

#[tokio::test]
async fn create() {
    create_generates_the_secret_writes_the_record_and_status(memory()).await;
}

#[tokio::test]
async fn key_rotation() {
    key_rotation_updates_the_record_and_revokes_the_publisher(memory()).await;
}

#[tokio::test]
async fn disable() {
    disabling_revokes_the_publisher(memory()).await;
}

#[tokio::test]
async fn delete_with_finalizer() {
    delete_removes_the_record_then_the_finalizer(memory()).await;
}

#[tokio::test]
async fn playback_name_conflict() {
    the_older_stream_keeps_a_contested_playback_name(memory()).await;
}

#[tokio::test]
async fn no_eviction_outside_the_scope() {
    a_namespace_scoped_operator_never_evicts_a_record_outside_its_scope(memory()).await;
}

#[tokio::test]
async fn playback_name_eviction() {
    the_older_stream_evicts_a_newer_record_holding_its_name(memory()).await;
}

#[tokio::test]
async fn secret_missing() {
    a_missing_secret_is_a_condition_not_a_crash(memory()).await;
}

#[tokio::test]
async fn unchanged_status_is_not_patched_and_live_counters_are_rate_limited() {
    let reg = memory();
    let ls = livestream("news").finalized().with_secret("k", "publishKey");
    let (ctx, mut api) = Context::test(reg.clone(), std::slice::from_ref(&ls));
    ctx.secrets.insert("default", "k", Arc::new(secret("default", "k", "publishKey", "key-1-publish-0123456")));

    // First pass writes the status.
    let task = run(&ls, &ctx).await;
    let status = api.expect_status_patch(&ls).await;
    finish(task).await.expect("ok");
    let mut ls = ls;
    ls.status = Some(serde_json::from_value(status).expect("status parses"));

    // Same state: no request at all (the Secret comes from the cache).
    let task = run(&ls, &ctx).await;
    finish(task).await.expect("ok");

    // Went live: a significant change, written at once.
    publish(&reg, "key-1-publish-0123456").await;
    let task = run(&ls, &ctx).await;
    let status = api.expect_status_patch(&ls).await;
    assert_eq!(status["phase"], "Live");
    assert_eq!(status["publisher"]["edge"], "edge-a");
    assert_eq!(finish(task).await.expect("ok"), Action::requeue(Settings::default().live_requeue));
    ls.status = Some(serde_json::from_value(status).expect("status parses"));

    // Only the viewer count moved, right after a patch: deferred, requeued within the interval.
    reg.set_viewers("edge-b", &[(StreamId::new("default", "news"), 12)], Duration::from_secs(30))
        .await
        .expect("viewers");
    let task = run(&ls, &ctx).await;
    let Action { .. } = finish(task).await.expect("ok");
    api.expect_nothing_more().await;
}

/// The cache lags behind status writes (a watch event; much longer while the watch is broken
/// after an API server restart). A status this replica wrote is what it compares against until
/// the cache shows a newer version of the object: found by the end-to-end suite, where a stream
/// that went Live and back to Ready during a stale cache stayed Live.
#[tokio::test]
async fn a_status_written_since_the_cached_version_is_what_counts() {
    let reg = memory();
    let mut ls = livestream("news").finalized().with_secret("k", "publishKey");
    let (ctx, mut api) = Context::test(reg.clone(), std::slice::from_ref(&ls));
    ctx.secrets.insert("default", "k", Arc::new(secret("default", "k", "publishKey", "key-1-publish-0123456")));

    // Ready written, and seen by the cache (version 2).
    let task = run(&ls, &ctx).await;
    let ready = api.expect_status_patch(&ls).await;
    finish(task).await.expect("ok");
    ls.status = Some(serde_json::from_value(ready).expect("status parses"));
    ls.metadata.resource_version = Some("2".into());

    // Live written; the cache still holds version 2 (Ready).
    let lease = publish(&reg, "key-1-publish-0123456").await;
    let task = run(&ls, &ctx).await;
    assert_eq!(api.expect_status_patch(&ls).await["phase"], "Live");
    finish(task).await.expect("ok");

    // Still live, cache unchanged: nothing to write (the cached Ready is not the truth).
    let task = run(&ls, &ctx).await;
    finish(task).await.expect("ok, without a request");

    // The publisher leaves: Ready must be written although the stale cache says Ready.
    reg.release(&lease).await.expect("released");
    let task = run(&ls, &ctx).await;
    assert_eq!(api.expect_status_patch(&ls).await["phase"], "Ready");
    finish(task).await.expect("ok");

    // The cache catches up (version 4 holds our Ready): compared against it, nothing to write.
    ls.metadata.resource_version = Some("4".into());
    let task = run(&ls, &ctx).await;
    finish(task).await.expect("ok, without a request");
    api.expect_nothing_more().await;
}

#[test]
fn watch_retries_double_from_250_ms_to_5_s_and_reset() {
    let mut b = WatchBackoff::default();
    let first: Vec<u64> = b.by_ref().take(7).map(|d| d.as_millis() as u64).collect();
    assert_eq!(first, [250, 500, 1000, 2000, 4000, 5000, 5000]);
    b.reset();
    assert_eq!(b.next(), Some(Duration::from_millis(250)));
}

#[test]
fn backoff_doubles_from_five_seconds_to_five_minutes() {
    let mid = |n| backoff_delay(n, 0.5);
    assert_eq!(mid(0), Duration::from_secs(5));
    assert_eq!(mid(1), Duration::from_secs(10));
    assert_eq!(mid(3), Duration::from_secs(40));
    assert_eq!(mid(7), Duration::from_secs(300));
    assert_eq!(mid(40), Duration::from_secs(300));
    assert!(backoff_delay(0, 0.0) >= Duration::from_millis(4500));
    assert!(backoff_delay(0, 0.999) <= Duration::from_millis(5500));
}

#[tokio::test]
async fn failures_back_off_per_object_and_reset_on_success() {
    let (ctx, _api) = Context::test(memory(), &[]);
    let a = StreamId::new("default", "a");
    let b = StreamId::new("default", "b");
    let d1 = ctx.next_backoff(Some(&a));
    let d2 = ctx.next_backoff(Some(&a));
    let d3 = ctx.next_backoff(Some(&a));
    assert!(d1 < d2 && d2 < d3, "{d1:?} {d2:?} {d3:?}");
    assert!(ctx.next_backoff(Some(&b)) < Duration::from_secs(6), "another object starts fresh");
    ctx.reset_backoff(&a);
    assert!(ctx.next_backoff(Some(&a)) < Duration::from_secs(6));
}

// ---- the same scenarios on a real redis-server ------------------------------------------------

mod on_redis {
    use super::*;
    use streamfleet_registry::redis::{RedisConfig, RedisRegistry};
    use streamfleet_testkit::RedisServer;

    /// A registry on a private redis-server (kept alive by the returned guard).
    async fn redis() -> (SharedRegistry, RedisServer) {
        let server = RedisServer::start();
        let reg = RedisRegistry::connect(RedisConfig::new(server.url())).await.expect("connects");
        // A fresh Redis never served edges: no lease from before can exist.
        reg.end_quarantine().await.expect("quarantine lifted");
        (Arc::new(reg), server)
    }

    #[tokio::test]
    async fn create() {
        let (reg, _server) = redis().await;
        create_generates_the_secret_writes_the_record_and_status(reg).await;
    }

    #[tokio::test]
    async fn key_rotation() {
        let (reg, _server) = redis().await;
        key_rotation_updates_the_record_and_revokes_the_publisher(reg).await;
    }

    #[tokio::test]
    async fn disable() {
        let (reg, _server) = redis().await;
        disabling_revokes_the_publisher(reg).await;
    }

    #[tokio::test]
    async fn delete_with_finalizer() {
        let (reg, _server) = redis().await;
        delete_removes_the_record_then_the_finalizer(reg).await;
    }

    #[tokio::test]
    async fn playback_name_conflict() {
        let (reg, _server) = redis().await;
        the_older_stream_keeps_a_contested_playback_name(reg).await;
    }

    #[tokio::test]
    async fn playback_name_eviction() {
        let (reg, _server) = redis().await;
        the_older_stream_evicts_a_newer_record_holding_its_name(reg).await;
    }

    #[tokio::test]
    async fn secret_missing() {
        let (reg, _server) = redis().await;
        a_missing_secret_is_a_condition_not_a_crash(reg).await;
    }

    #[tokio::test]
    async fn weak_publish_key() {
        let (reg, _server) = redis().await;
        a_weak_publish_key_is_a_condition_and_is_not_served(reg).await;
    }

    #[tokio::test]
    async fn unhealthy_encoder() {
        let (reg, _server) = redis().await;
        an_unhealthy_encoder_is_a_condition_a_media_block_and_one_warning(reg).await;
    }

    #[tokio::test]
    async fn legacy_record_rehashed() {
        let (reg, _server) = redis().await;
        a_legacy_record_is_rewritten_with_the_keyed_hash_and_keeps_its_publisher(reg).await;
    }

    #[tokio::test]
    async fn lease_expiry() {
        let (reg, _server) = redis().await;
        a_holder_that_stops_renewing_is_shown_gone_at_its_lease_expiry(reg).await;
    }

    #[tokio::test]
    async fn redis_down_is_a_transient_error_and_deletes_wait() {
        let (reg, mut server) = redis().await;
        reg.put_stream(&record("default", "news", "news-publish-key-89ab", "news")).await.expect("put");
        server.kill();
        let ls = livestream("news").finalized().deleting();
        let (ctx, mut api) = Context::test(reg.clone(), std::slice::from_ref(&ls));
        let task = run(&ls, &ctx).await;
        let (type_, reason, note) = api.expect_event("default").await;
        assert_eq!((type_.as_str(), reason.as_str()), ("Warning", "CleanupBlocked"));
        assert!(note.contains("registry"), "{note}");
        let err = finish(task).await.expect_err("cleanup cannot finish without the registry");
        assert_eq!(err.metric_label(), "registry_unavailable");
        // The finalizer stays (no PATCH was sent), and the retry backs off.
        api.expect_nothing_more().await;
        let first = error_policy(Arc::new(ls.clone()), &err, ctx.clone());
        let second = error_policy(Arc::new(ls), &err, ctx.clone());
        assert!(first != second, "consecutive failures back off further");
        assert!(
            ctx.metrics
                .render()
                .contains("streamfleet_operator_reconcile_errors_total{reason=\"registry_unavailable\"} 2")
        );
    }

    #[tokio::test]
    async fn orphans_are_collected_from_redis() {
        let (reg, _server) = redis().await;
        reg.put_stream(&record("default", "kept", "k1", "kept")).await.expect("put");
        reg.put_stream(&record("default", "gone", "k2", "gone")).await.expect("put");
        let removed = crate::gc::collect(
            reg.as_ref(),
            || [StreamId::new("default", "kept")].into(),
            &crate::scope::Scope::Cluster,
        )
        .await
        .expect("gc");
        assert_eq!(removed, vec![StreamId::new("default", "gone")]);
        assert_eq!(reg.list_streams().await.expect("list").len(), 1);
    }
}

#[tokio::test]
async fn registry_signals_reach_the_controller_of_their_namespace_and_a_loss_resyncs() {
    use futures::StreamExt;
    let (tx, _) = tokio::sync::broadcast::channel(4);
    let (changed, resync) = live_changes(tx.subscribe(), Some("media".to_string()), Duration::from_secs(3600));
    let (mut changed, mut resync) = (Box::pin(changed), Box::pin(resync));
    let limit = Duration::from_secs(5);
    tx.send(LiveChange::Stream(StreamId::new("elsewhere", "x"))).expect("a receiver");
    tx.send(LiveChange::Stream(StreamId::new("media", "news"))).expect("a receiver");
    let got = tokio::time::timeout(limit, changed.next()).await.expect("in time");
    assert_eq!(got, Some(ObjectRef::new("news").within("media")), "the other namespace's signal is skipped");
    tx.send(LiveChange::Resync).expect("a receiver");
    tx.send(LiveChange::Stream(StreamId::new("media", "sport"))).expect("a receiver");
    let got = tokio::time::timeout(limit, changed.next()).await.expect("in time");
    assert_eq!(got, Some(ObjectRef::new("sport").within("media")));
    assert_eq!(tokio::time::timeout(limit, resync.next()).await.expect("in time"), Some(()));
    // Viewer counts: the first reconciles, repeats within the interval are coalesced, while a
    // publisher change of the same stream still goes through at once.
    for _ in 0..3 {
        tx.send(LiveChange::Viewers(StreamId::new("media", "news"))).expect("a receiver");
    }
    tx.send(LiveChange::Stream(StreamId::new("media", "news"))).expect("a receiver");
    let got = tokio::time::timeout(limit, changed.next()).await.expect("in time");
    assert_eq!(got, Some(ObjectRef::new("news").within("media")));
    let got = tokio::time::timeout(limit, changed.next()).await.expect("in time");
    assert_eq!(got, Some(ObjectRef::new("news").within("media")), "the publisher change");
    tx.send(LiveChange::Stream(StreamId::new("media", "marker"))).expect("a receiver");
    let got = tokio::time::timeout(limit, changed.next()).await.expect("in time");
    assert_eq!(got, Some(ObjectRef::new("marker").within("media")), "the repeated viewer signals were dropped");
    // Falling behind the backlog is a loss too.
    for i in 0..10 {
        tx.send(LiveChange::Stream(StreamId::new("media", format!("s{i}")))).expect("a receiver");
    }
    let got = tokio::time::timeout(limit, changed.next()).await.expect("in time");
    assert!(matches!(got, Some(o) if o.name.starts_with('s')));
    assert_eq!(tokio::time::timeout(limit, resync.next()).await.expect("in time"), Some(()));
}

#[test]
fn the_live_patch_budget_refills_at_its_rate_and_spreads_waiters() {
    let t0 = Instant::now();
    let mut b = TokenBucket::new(2.0);
    assert_eq!(b.take(t0), None);
    assert_eq!(b.take(t0), None);
    let secs = |d: Option<Duration>| d.expect("a wait").as_secs_f64();
    assert!((secs(b.take(t0)) - 0.5).abs() < 1e-6, "the first waiter gets the next token");
    assert!((secs(b.take(t0)) - 1.0).abs() < 1e-6, "the second the one after");
    // A long quiet spell refills one second's worth, no more.
    let later = t0 + Duration::from_secs(60);
    assert_eq!(b.take(later), None);
    assert_eq!(b.take(later), None);
    assert!(b.take(later).is_some());
}

#[tokio::test]
async fn live_counter_patches_share_one_fleet_wide_budget() {
    let settings = Settings { live_patch_rate: 1.0, ..Settings::default() };
    let (ctx, _api) = Context::test_with(memory(), &[], settings);
    let (a, b, c) = (StreamId::new("media", "a"), StreamId::new("media", "b"), StreamId::new("media", "c"));
    assert_eq!(ctx.status_patch_wait(&a), None, "the budget's one token");
    let wait_b = ctx.status_patch_wait(&b).expect("another stream waits for the budget");
    assert!(wait_b <= Duration::from_secs(1) && wait_b > Duration::from_millis(900), "{wait_b:?}");
    let again = ctx.status_patch_wait(&b).expect("still waiting");
    assert!(again <= wait_b, "asking again keeps its reservation: {again:?}");
    let wait_c = ctx.status_patch_wait(&c).expect("the next waiter");
    assert!(wait_c > Duration::from_millis(1900), "waiters are spread at the rate: {wait_c:?}");
    // A stream's own minimum interval still applies on top.
    ctx.note_status_patch(&a);
    let own = ctx.status_patch_wait(&a).expect("within its interval");
    assert!(own > Duration::from_secs(4), "{own:?}");
}
