//! End to end on a real cluster: apply the CRD, run the operator binary against the cluster
//! (out of cluster, with leader election on), apply a LiveStream, and follow status and
//! registry through create, publish, disable and delete.
//!
//! Runs only when `STREAMFLEET_E2E_KUBECONFIG` names a kubeconfig (kind or k3d; see
//! docs/operator.md); otherwise it prints why it is skipped. It works in its own namespace and
//! deletes it afterwards.

use std::{
    future::Future,
    process::Stdio,
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::core::v1::{Namespace, Secret},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, CustomResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde_json::json;
use streamfleet_registry::{
    AcquireOptions, EdgeRegistry, KeyHash, LeaseTiming, OperatorRegistry, PublisherInfo, RenewOutcome, StreamId,
    api::{LiveStream, Phase},
    redis::{RedisConfig, RedisRegistry},
};
use streamfleet_testkit::RedisServer;

const ENV: &str = "STREAMFLEET_E2E_KUBECONFIG";

async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Deletes the test namespace even when an assertion fails.
struct NamespaceGuard(Api<Namespace>, String);

impl Drop for NamespaceGuard {
    fn drop(&mut self) {
        let (api, name) = (self.0.clone(), self.1.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = api.delete(&name, &DeleteParams::default()).await;
            });
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livestream_lifecycle_on_a_real_cluster() {
    let Ok(kubeconfig) = std::env::var(ENV) else {
        eprintln!(
            "skipped: {ENV} is not set (point it at a kind or k3d kubeconfig to run this test; see docs/operator.md)"
        );
        return;
    };
    let config = Kubeconfig::read_from(&kubeconfig).expect("kubeconfig readable");
    let config =
        kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default()).await.expect("kubeconfig valid");
    let client = Client::try_from(config).expect("client");

    // CRD, applied as the chart would, and established.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply("streamfleet-e2e").force();
    crds.patch("livestreams.streamfleet.io", &pp, &Patch::Apply(LiveStream::crd())).await.expect("CRD applied");
    eventually("the CRD is established", Duration::from_secs(30), || async {
        let crd = crds.get("livestreams.streamfleet.io").await.ok()?;
        let established = crd.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True");
        established.then_some(())
    })
    .await;

    let ns = format!("sf-e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace");
    namespaces.create(&PostParams::default(), &namespace).await.expect("namespace created");
    let _cleanup = NamespaceGuard(namespaces, ns.clone());

    // Registry and operator.
    let redis = RedisServer::start();
    let registry = RedisRegistry::connect(RedisConfig::new(redis.url())).await.expect("registry");
    registry.end_quarantine().await.expect("fresh registry");
    let http_port = streamfleet_testkit::free_port();
    let _operator = tokio::process::Command::new(env!("CARGO_BIN_EXE_streamfleet-operator"))
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAMESPACE", &ns)
        .env("POD_NAME", "e2e-operator")
        .args(["run", "--redis-url", &redis.url(), "--http-listen", &format!("127.0.0.1:{http_port}")])
        .args(["--idle-requeue", "2s", "--live-requeue", "1s", "--status-min-interval", "1s"])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("operator starts");

    // Create: Secret generated, record written, status Ready.
    let streams: Api<LiveStream> = Api::namespaced(client.clone(), &ns);
    let ls: LiveStream = serde_json::from_value(json!({
        "apiVersion": "streamfleet.io/v1alpha1", "kind": "LiveStream",
        "metadata": {"name": "news"}, "spec": {"maxViewers": 10}
    }))
    .expect("livestream");
    streams.create(&PostParams::default(), &ls).await.expect("LiveStream created");
    let status = eventually("the LiveStream is Ready", Duration::from_secs(60), || async {
        let s = streams.get("news").await.ok()?.status?;
        (s.phase == Some(Phase::Ready)).then_some(s)
    })
    .await;
    assert_eq!(status.publish_key_secret.as_deref(), Some("news-publish-key"));
    let secret =
        Api::<Secret>::namespaced(client.clone(), &ns).get("news-publish-key").await.expect("Secret generated");
    let key = secret.data.and_then(|d| d.get("publishKey").cloned()).expect("key in Secret");
    let key = String::from_utf8(key.0).expect("text key");
    let id = StreamId::new(&ns, "news");
    let record = registry.get_stream(&id).await.expect("get").expect("record written");
    assert_eq!(record.key_hash, KeyHash::of_key(&key));
    assert_eq!(record.max_viewers, Some(10));

    // Publish: status goes Live with the publisher's edge.
    let who = PublisherInfo { edge: "edge-e2e".into(), remote_addr: Some("192.0.2.1:5000".into()), relay_addr: None };
    let lease = registry
        .acquire(&KeyHash::of_key(&key), &who, &AcquireOptions::new(&LeaseTiming::default()))
        .await
        .expect("admitted");
    eventually("the LiveStream is Live", Duration::from_secs(30), || async {
        let s = streams.get("news").await.ok()?.status?;
        (s.phase == Some(Phase::Live) && s.publisher.as_ref().is_some_and(|p| p.edge == "edge-e2e")).then_some(())
    })
    .await;

    // Disable: the lease is revoked and status says Disabled.
    let patch = Patch::Merge(json!({"spec": {"enabled": false}}));
    streams.patch("news", &PatchParams::default(), &patch).await.expect("disabled");
    eventually("the publisher is revoked", Duration::from_secs(30), || async {
        let renewed = registry.renew(&lease, Duration::from_secs(15)).await.ok()?;
        let disabled = streams.get("news").await.ok()?.status?.phase == Some(Phase::Disabled);
        (renewed != RenewOutcome::Renewed && disabled).then_some(())
    })
    .await;

    // Delete: the finalizer removes the record, then the object goes.
    streams.delete("news", &DeleteParams::default()).await.expect("deleted");
    eventually("the LiveStream and its record are gone", Duration::from_secs(30), || async {
        let gone = matches!(streams.get_opt("news").await, Ok(None));
        let no_record = matches!(registry.get_stream(&id).await, Ok(None));
        (gone && no_record).then_some(())
    })
    .await;
}
