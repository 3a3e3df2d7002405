//! Test-only helpers: LiveStream and Secret builders, a [`Context`] wired to a mocked API
//! server, and [`ApiServerVerifier`], which checks each request the reconcile sends (method,
//! path, body) and answers it, in the order a scenario expects (the controller-rs pattern).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use http::{Request, Response};
use k8s_openapi::{
    ByteString,
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    jiff::Timestamp,
};
use kube::{
    Client,
    client::Body,
    runtime::{events::Reporter, reflector, watcher},
};
use serde_json::{Value, json};
use streamfleet_registry::{
    SharedRegistry,
    api::{LiveStream, LiveStreamSpec, SecretKeyRef},
};

use crate::{
    controller::{Context, FINALIZER, Settings},
    metrics::Metrics,
    scope::Streams,
    secrets::SecretCache,
};

/// A LiveStream `default/<name>` as the API server would return it.
pub fn livestream(name: &str) -> LiveStream {
    let mut ls = LiveStream::new(name, LiveStreamSpec::default());
    ls.metadata.namespace = Some("default".into());
    ls.metadata.uid = Some(format!("uid-{name}"));
    ls.metadata.generation = Some(1);
    ls.metadata.resource_version = Some("1".into());
    ls.metadata.creation_timestamp = Some(Time(Timestamp::from_second(1_700_000_000).expect("valid")));
    ls
}

/// Builder-style tweaks for test LiveStreams.
pub trait LiveStreamExt: Sized {
    fn finalized(self) -> Self;
    fn in_namespace(self, ns: &str) -> Self;
    fn with_secret(self, secret: &str, key: &str) -> Self;
    fn disabled(self) -> Self;
    fn deleting(self) -> Self;
    fn created_at(self, secs: i64) -> Self;
    fn playback(self, name: &str) -> Self;
}

impl LiveStreamExt for LiveStream {
    fn finalized(mut self) -> Self {
        self.metadata.finalizers = Some(vec![FINALIZER.to_string()]);
        self
    }
    fn in_namespace(mut self, ns: &str) -> Self {
        self.metadata.namespace = Some(ns.into());
        self
    }
    fn with_secret(mut self, secret: &str, key: &str) -> Self {
        self.spec.publish_key_secret_ref = Some(SecretKeyRef { name: secret.into(), key: key.into() });
        self
    }
    fn disabled(mut self) -> Self {
        self.spec.enabled = Some(false);
        self
    }
    fn deleting(mut self) -> Self {
        self.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1_800_000_000).expect("valid")));
        self
    }
    fn created_at(mut self, secs: i64) -> Self {
        self.metadata.creation_timestamp = Some(Time(Timestamp::from_second(secs).expect("valid")));
        self
    }
    fn playback(mut self, name: &str) -> Self {
        self.spec.playback_name = Some(name.into());
        self
    }
}

/// A Secret `<ns>/<name>` holding `key: value`.
pub fn secret(ns: &str, name: &str, key: &str, value: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            resource_version: Some("7".into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(key.to_string(), ByteString(value.as_bytes().to_vec()))])),
        ..Secret::default()
    }
}

/// A Kubernetes `Status` error body.
pub fn status_error(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// Answers the reconcile's API calls one by one, asserting what each one is.
pub struct ApiServerVerifier(Handle);

/// One request as seen by the verifier.
#[derive(Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Value,
}

impl ApiServerVerifier {
    /// Waits for the next request, checks its method and path, and answers with `respond`'s
    /// status code and body. Returns the request for further assertions.
    pub async fn expect(&mut self, method: &str, path: &str, respond: impl FnOnce(&Seen) -> (u16, Value)) -> Seen {
        let (request, send) = tokio::time::timeout(Duration::from_secs(5), self.0.next_request())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {method} {path}"))
            .unwrap_or_else(|| panic!("reconcile finished before sending {method} {path}"));
        let seen_method = request.method().to_string();
        let uri = request.uri().clone();
        let bytes = request.into_body().collect_bytes().await.expect("request body");
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
        let seen = Seen {
            method: seen_method,
            path: uri.path().to_string(),
            query: uri.query().unwrap_or_default().to_string(),
            body,
        };
        assert_eq!((seen.method.as_str(), seen.path.as_str()), (method, path), "unexpected request {seen:?}");
        let (code, reply) = respond(&seen);
        let response = Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(&reply).expect("JSON")))
            .expect("response");
        send.send_response(response);
        seen
    }

    /// Answers a status server-side apply, returning the applied status.
    pub async fn expect_status_patch(&mut self, ls: &LiveStream) -> Value {
        let path = format!(
            "/apis/streamfleet.io/v1alpha1/namespaces/{}/livestreams/{}/status",
            ls.metadata.namespace.as_deref().unwrap_or("default"),
            ls.metadata.name.as_deref().unwrap_or_default()
        );
        let answer = serde_json::to_value(ls).expect("JSON");
        let seen = self
            .expect("PATCH", &path, |s| {
                let mut a = answer;
                a["status"] = s.body["status"].clone();
                (200, a)
            })
            .await;
        assert!(seen.query.contains("fieldManager=streamfleet-operator"), "{}", seen.query);
        assert!(seen.query.contains("force=true"), "{}", seen.query);
        assert_eq!(seen.body["apiVersion"], "streamfleet.io/v1alpha1");
        assert_eq!(seen.body["kind"], "LiveStream");
        seen.body["status"].clone()
    }

    /// Answers an Event creation, returning `(type, reason, note)`.
    pub async fn expect_event(&mut self, ns: &str) -> (String, String, String) {
        let path = format!("/apis/events.k8s.io/v1/namespaces/{ns}/events");
        let seen = self.expect("POST", &path, |s| (201, s.body.clone())).await;
        let field = |f: &str| seen.body[f].as_str().unwrap_or_default().to_string();
        (field("type"), field("reason"), field("note"))
    }

    /// Answers a Secret read with `secret`, or 404 when `None`.
    pub async fn expect_secret_get(&mut self, ns: &str, name: &str, secret: Option<&Secret>) {
        let path = format!("/api/v1/namespaces/{ns}/secrets/{name}");
        let reply = match secret {
            Some(s) => (200, serde_json::to_value(s).expect("JSON")),
            None => (404, status_error(404, "NotFound", &format!("secrets \"{name}\" not found"))),
        };
        self.expect("GET", &path, |_| reply).await;
    }

    /// Answers a read of the Secret `ns/name` with one holding `key` under `publishKey`.
    pub async fn serve_publish_key(&mut self, ns: &str, name: &str, key: &str) {
        self.expect_secret_get(ns, name, Some(&secret(ns, name, "publishKey", key))).await;
    }

    /// Fails the test if the reconcile sends anything more.
    pub async fn expect_nothing_more(mut self) {
        if let Ok(Some((request, _))) = tokio::time::timeout(Duration::from_millis(100), self.0.next_request()).await {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    }
}

impl Context {
    /// A Context on a mocked API server and the given registry; `known` LiveStreams fill the
    /// store conflicts are judged against.
    pub fn test(registry: SharedRegistry, known: &[LiveStream]) -> (Arc<Context>, ApiServerVerifier) {
        Context::test_with(registry, known, Settings::default())
    }

    /// [`Context::test`] with these settings (a key-hash secret, weak keys allowed, ...).
    pub fn test_with(
        registry: SharedRegistry,
        known: &[LiveStream],
        settings: Settings,
    ) -> (Arc<Context>, ApiServerVerifier) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let (store, mut writer) = reflector::store::<LiveStream>();
        let index = crate::scope::Index::default();
        for ls in known {
            let event = watcher::Event::Apply(ls.clone());
            writer.apply_watcher_event(&event);
            index.observe(&event);
        }
        let reporter = Reporter { controller: "streamfleet-operator".into(), instance: Some("test".into()) };
        let ctx = Context::new(
            client,
            registry,
            reporter,
            Metrics::new(),
            settings,
            Streams::new(vec![(store, index)]),
            SecretCache::default(),
        );
        (Arc::new(ctx), ApiServerVerifier(handle))
    }
}
