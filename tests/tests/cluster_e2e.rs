//! End to end on a real Kubernetes API server (the local control plane of `scripts/cluster`,
//! docs/cluster.md): the chart installed, upgraded and uninstalled with helm, the CRD served
//! (schema, `kubectl explain`, every CEL rule), and the operator running as a local process
//! with the chart's own ServiceAccount token, against real edges on a real redis-server with
//! ffmpeg as encoder and players; then two operators with leader election, and the API server
//! stopped for 20 s.
//!
//! One test, in steps: the operator reconciles LiveStreams in every namespace, so two suites
//! with their own operators cannot share the cluster, and the API server outage would break
//! anything running next to it. Each step prints how long it took.
//!
//! `scripts/test` starts a fresh cluster, runs this suite and stops the cluster (a trap). Run by
//! hand: `scripts/cluster up`, then `cargo test -p streamfleet-tests --test cluster_e2e -- --nocapture`.
//! Without a cluster it prints `skipped: …` and passes, except under `CI=true`, where it fails.

use std::{collections::BTreeSet, time::Duration};

use serde_json::{Value, json};
use streamfleet_registry::{
    AcquireOptions, EdgeRegistry, KeyHash, LeaseTiming, OperatorRegistry, PublisherInfo, StreamId,
    redis::{RedisConfig, RedisRegistry},
};
use streamfleet_testkit::RedisServer;
use streamfleet_tests::{
    binaries::binaries_async,
    cluster::{Cluster, OperatorProcess, Out, eventually},
    edge::EdgeProcess,
    ffmpeg,
};
use tokio::time::{Instant, sleep};

/// The release every step but the chart ones uses, with default values (it owns the CRD).
const RELEASE: &str = "streamfleet";
const SYSTEM_NS: &str = "streamfleet-e2e";
/// LiveStreams live here (and a second namespace for the cross-namespace conflict).
const NS: &str = "e2e-media";
const NS2: &str = "e2e-other";
const CRD: &str = "livestreams.streamfleet.io";
const RELAY_SECRET: &str = "cluster-e2e-relay-secret";
/// The key in examples/basic.yaml.
const BASIC_KEY: &str = "replace-me-with-a-long-random-key";
/// The operator's documented Lease duration (docs/operator.md, "High availability").
const LEASE_DURATION: Duration = Duration::from_secs(15);

fn chart() -> String {
    format!("{}/../charts/streamfleet", env!("CARGO_MANIFEST_DIR"))
}

fn example(name: &str) -> String {
    let path = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

struct Step(&'static str, Instant);

impl Step {
    fn new(name: &'static str) -> Step {
        eprintln!("==> {name}");
        Step(name, Instant::now())
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            eprintln!("    {} took {:.1} s", self.0, self.1.elapsed().as_secs_f64());
        }
    }
}

/// What the suite shares between steps.
struct World {
    cluster: Cluster,
    registry: RedisRegistry,
    edges: Vec<EdgeProcess>,
    operator_kubeconfig: std::path::PathBuf,
    redis_url: String,
}

impl World {
    async fn lst(&self, ns: &str, name: &str) -> Option<Value> {
        self.cluster.get_json(&["livestream", name, "-n", ns]).await
    }

    async fn record_exists(&self, ns: &str, name: &str) -> Option<bool> {
        self.registry.get_stream(&StreamId::new(ns, name)).await.ok().map(|r| r.is_some())
    }

    async fn apply(&self, ns: &str, yaml: &str) {
        self.cluster.kubectl_in(&["apply", "-n", ns, "-f", "-"], yaml).await.expect_ok("kubectl apply");
    }

    /// Waits until `ns/name` reports `phase`, and returns the LiveStream.
    async fn wait_phase(&self, ns: &str, name: &str, phase: &str, limit: Duration) -> Value {
        eventually(&format!("{ns}/{name} is {phase}"), limit, || async {
            let v = self.lst(ns, name).await?;
            (v["status"]["phase"] == phase).then_some(v)
        })
        .await
    }

    fn edge(&self, id: &str) -> &EdgeProcess {
        self.edges.iter().find(|e| e.id == id).unwrap_or_else(|| panic!("no edge {id}"))
    }
}

fn condition<'a>(lst: &'a Value, kind: &str) -> &'a Value {
    lst["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == kind)).unwrap_or(&Value::Null)
}

/// The rows of `kubectl get lst`, split on whitespace (columns are never empty in the rows
/// the suite reads, except PUBLISHER and VIEWERS of an idle stream, checked by position).
fn table(text: &str) -> Vec<Vec<String>> {
    text.lines().map(|l| l.split_whitespace().map(str::to_string).collect()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streamfleet_on_a_real_cluster() {
    let Some(cluster) = Cluster::find() else { return };
    let started = Instant::now();
    let leftover = cluster.kubectl(&["get", "namespace", SYSTEM_NS, "-o", "name"]).await;
    assert!(
        !leftover.ok,
        "namespace {SYSTEM_NS} is left from an earlier run: `scripts/cluster down && scripts/cluster up` for a fresh cluster"
    );
    let bins = binaries_async().await;

    chart_install_upgrade_uninstall(&cluster).await;
    install_default_release(&cluster).await;
    crd_schema_explain_and_cel(&cluster).await;

    // The registry and two edges, as the chart would run them, but as local processes.
    let redis = tokio::task::spawn_blocking(RedisServer::start).await.expect("redis-server starts");
    let registry = RedisRegistry::connect(RedisConfig::new(redis.url())).await.expect("registry");
    registry.end_quarantine().await.expect("fresh registry");
    let mut edges = Vec::new();
    for id in ["edge-a", "edge-b"] {
        let args: Vec<String> =
            ["--redis-url", &redis.url(), "--lease-ttl", "3s", "--drain-timeout", "5s"].map(String::from).to_vec();
        edges.push(EdgeProcess::spawn(&bins.edge, id, &args, &[("STREAMFLEET_RELAY_SECRET", RELAY_SECRET)]).await);
    }
    for e in &edges {
        e.wait_readyz(200, Duration::from_secs(20)).await;
    }

    // The operator's identity: the chart's ServiceAccount, so the chart's RBAC is what runs.
    let operator_kubeconfig = cluster.service_account_kubeconfig(SYSTEM_NS, &format!("{RELEASE}-operator")).await;
    let world = World { cluster, registry, edges, operator_kubeconfig, redis_url: redis.url() };
    for ns in [NS, NS2] {
        world.cluster.kubectl(&["create", "namespace", ns]).await.expect_ok("create namespace");
    }

    let mut op_a =
        OperatorProcess::start(&bins.operator, "op-a", &world.operator_kubeconfig, SYSTEM_NS, &world.redis_url);
    let lease_holder = || async {
        let out = world
            .cluster
            .kubectl(&[
                "get",
                "lease",
                "streamfleet-operator",
                "-n",
                SYSTEM_NS,
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ])
            .await;
        out.ok.then_some(out.stdout.trim().to_string())
    };
    eventually("op-a holds the leader Lease", Duration::from_secs(30), || async {
        (lease_holder().await.as_deref() == Some("op-a")).then_some(())
    })
    .await;
    // A standby from the start: it must not write anything while op-a leads.
    let mut op_b =
        OperatorProcess::start(&bins.operator, "op-b", &world.operator_kubeconfig, SYSTEM_NS, &world.redis_url);

    basic_example_live_viewers_and_columns(&world).await;
    key_rotation(&world).await;
    disable_ends_the_publisher(&world).await;
    generated_key_owned_and_collected(&world).await;
    playback_name_conflict(&world).await;
    namespace_deletion(&world).await;

    {
        let _s = Step::new("leader election: kill the leader, the standby takes over");
        assert!(op_b.is_running(), "op-b exited:\n{}", op_b.logs());
        assert_eq!(op_b.metric("streamfleet_operator_is_leader").await, 0.0, "op-b leads next to op-a");
        assert_eq!(
            op_b.metric("streamfleet_operator_reconciles_total").await,
            0.0,
            "the standby reconciled (duplicate writes)"
        );
        assert!(op_a.metric("streamfleet_operator_reconciles_total").await > 0.0, "op-a reconciled nothing");
        let killed = Instant::now();
        op_a.kill().await;
        eventually(
            "op-b holds the Lease and runs the controller",
            LEASE_DURATION + Duration::from_secs(10),
            || async {
                (lease_holder().await.as_deref() == Some("op-b")
                    && op_b.metric("streamfleet_operator_is_leader").await == 1.0)
                    .then_some(())
            },
        )
        .await;
        let took = killed.elapsed();
        eprintln!("    takeover after {:.1} s (Lease duration {LEASE_DURATION:?})", took.as_secs_f64());
        assert!(took <= LEASE_DURATION + Duration::from_secs(5), "takeover took {took:?}");

        // The new leader reconciles, once: one generated Secret, one SecretCreated Event.
        world
            .apply(
                NS,
                "apiVersion: streamfleet.io/v1alpha1\nkind: LiveStream\nmetadata: {name: after-failover}\nspec: {}\n",
            )
            .await;
        world.wait_phase(NS, "after-failover", "Ready", Duration::from_secs(30)).await;
        let events = events_of(&world.cluster, NS, "after-failover").await;
        let created: u64 = events
            .iter()
            .filter(|e| e["reason"] == "SecretCreated")
            .map(|e| e["series"]["count"].as_u64().unwrap_or(1))
            .sum();
        assert_eq!(created, 1, "SecretCreated events: {events:#?}");
    }

    apiserver_outage(&world, &mut op_b).await;

    {
        let _s = Step::new("cleanup: LiveStreams deleted through the finalizer");
        for ns in [NS, NS2] {
            world
                .cluster
                .kubectl(&["delete", "livestreams", "--all", "-n", ns, "--wait=false"])
                .await
                .expect_ok("delete");
        }
        eventually("no LiveStream and no registry record is left", Duration::from_secs(30), || async {
            let left = world.cluster.get_json(&["livestreams", "-A"]).await?;
            let records = world.registry.list_streams().await.ok()?;
            (left["items"].as_array().is_some_and(|i| i.is_empty()) && records.is_empty()).then_some(())
        })
        .await;
        drop(op_b);
    }
    namespace_scoped_install(&world, &bins.operator).await;
    for ns in [NS, NS2] {
        world.cluster.kubectl(&["delete", "namespace", ns, "--wait=false"]).await.expect_ok("delete namespace");
    }
    uninstall_default_release(&world.cluster).await;
    eprintln!("cluster suite: {:.1} s", started.elapsed().as_secs_f64());
}

/// The events.k8s.io Events about `name` in `ns`.
async fn events_of(cluster: &Cluster, ns: &str, name: &str) -> Vec<Value> {
    let all = cluster.get_json(&["events.events.k8s.io", "-n", ns]).await.expect("events");
    all["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["regarding"]["name"] == name)
        .collect()
}

/// Objects of a release as `kind/name` lines, asserting that every manifest object exists on
/// the server.
async fn assert_release_objects_exist(cluster: &Cluster, release: &str, ns: &str) -> String {
    let manifest = cluster.helm(&["get", "manifest", release, "-n", ns]).await.expect_ok("helm get manifest");
    cluster
        .kubectl_in(&["get", "-n", ns, "-f", "-", "-o", "name"], &manifest)
        .await
        .expect_ok("every object of the release exists")
}

/// The images every release here names: the chart has no default (they are not published),
/// and nothing pulls them (this cluster runs no kubelet).
const IMAGES: [&str; 2] = [
    "edge.image.repository=ghcr.io/streamfleet/streamfleet-edge",
    "operator.image.repository=ghcr.io/streamfleet/streamfleet-operator",
];

/// `helm ARGS --set V1 --set V2 …`, with the image repositories.
async fn helm_set(cluster: &Cluster, args: &[&str], values: &[&str]) -> Out {
    let mut all = args.to_vec();
    for v in IMAGES.iter().chain(values) {
        all.extend(["--set", v]);
    }
    cluster.helm(&all).await
}

async fn chart_install_upgrade_uninstall(cluster: &Cluster) {
    let _s = Step::new("chart: install with every toggle, upgrade, uninstall");
    let chart = chart();
    // Every toggle that needs no foreign CRD (ServiceMonitor, PodMonitor and PrometheusRule
    // need the Prometheus operator's). These releases share the cluster with the default one
    // installed next, which owns the CRD.
    let ns = "sf-toggles";
    let toggles = [
        "crds.enabled=false",
        "edge.autoscaling.enabled=true",
        "edge.autoscaling.targetMemoryUtilizationPercentage=70",
        "networkPolicy.enabled=true",
        "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring",
        "networkPolicy.rtmpFrom[0].ipBlock.cidr=192.0.2.0/24",
        "dashboards.enabled=true",
        "redis.persistence.enabled=true",
        "edge.service.type=NodePort",
        "edge.podAntiAffinity=hard",
    ];
    let out = helm_set(cluster, &["install", "toggles", &chart, "-n", ns, "--create-namespace"], &toggles).await;
    let out = out.expect_ok("helm install with every toggle");
    assert!(out.contains("STATUS: deployed"), "{out}");
    let objects = assert_release_objects_exist(cluster, "toggles", ns).await;
    for want in [
        "horizontalpodautoscaler.autoscaling/toggles-streamfleet-edge",
        "networkpolicy.networking.k8s.io/",
        "poddisruptionbudget.policy/toggles-streamfleet-edge",
        "poddisruptionbudget.policy/toggles-streamfleet-operator",
        "clusterrole.rbac.authorization.k8s.io/toggles-streamfleet-operator",
        "role.rbac.authorization.k8s.io/toggles-streamfleet-operator",
        "deployment.apps/toggles-streamfleet-edge",
        "deployment.apps/toggles-streamfleet-operator",
        "statefulset.apps/toggles-streamfleet-redis",
        "configmap/",
        "service/toggles-streamfleet-edge",
    ] {
        assert!(objects.contains(want), "{want} missing from the release:\n{objects}");
    }
    let secret_value = move |name: &'static str, key: &'static str| async move {
        let jsonpath = format!("jsonpath={{.data.{key}}}");
        cluster.kubectl(&["get", "secret", name, "-n", ns, "-o", &jsonpath]).await.expect_ok("kept secret")
    };
    let redis_password = secret_value("toggles-streamfleet-redis", "redis-password").await;
    let relay_secret = secret_value("toggles-streamfleet-relay", "relay-secret").await;
    let api_token = secret_value("toggles-streamfleet-api", "api-token").await;
    let key_hash_secret = secret_value("toggles-streamfleet-key-hash", "key-hash-secret").await;
    assert!(!redis_password.is_empty() && !relay_secret.is_empty() && !api_token.is_empty());
    assert!(!key_hash_secret.is_empty());

    // Bundled Redis off (an external URL, no Redis objects); one operator without election,
    // no PDBs, no ServiceAccounts and no RBAC from the chart.
    let external = [
        "crds.enabled=false",
        "redis.bundled=false",
        "redis.external.url=redis://redis.example:6379/0",
        "operator.leaderElection.enabled=false",
        "operator.replicaCount=1",
        "operator.podDisruptionBudget.enabled=false",
        "edge.podDisruptionBudget.enabled=false",
        "edge.serviceAccount.create=false",
        "operator.serviceAccount.create=false",
        "operator.serviceAccount.name=default",
        "operator.rbac.create=false",
    ];
    let out =
        helm_set(cluster, &["install", "external", &chart, "-n", "sf-external", "--create-namespace"], &external).await;
    out.expect_ok("helm install with an external Redis");
    let objects = assert_release_objects_exist(cluster, "external", "sf-external").await;
    assert!(!objects.contains("statefulset"), "bundled Redis rendered with redis.bundled=false:\n{objects}");
    assert!(!objects.contains("clusterrole"), "RBAC rendered with operator.rbac.create=false:\n{objects}");

    // Edges only: no operator, Redis without a password, the relay and API secrets brought by
    // the user.
    cluster.kubectl(&["create", "namespace", "sf-edges"]).await.expect_ok("create namespace");
    cluster
        .kubectl(&[
            "create",
            "secret",
            "generic",
            "own-relay",
            "-n",
            "sf-edges",
            "--from-literal=relay-secret=0123456789",
        ])
        .await
        .expect_ok("relay secret");
    cluster
        .kubectl(&[
            "create",
            "secret",
            "generic",
            "own-api",
            "-n",
            "sf-edges",
            "--from-literal=api-token=0123456789abcdef",
        ])
        .await
        .expect_ok("API token secret");
    // An edge-only release shares the main release's key-hash secret (here, one of its own).
    cluster
        .kubectl(&[
            "create",
            "secret",
            "generic",
            "own-key-hash",
            "-n",
            "sf-edges",
            "--from-literal=key-hash-secret=0123456789abcdef0123",
        ])
        .await
        .expect_ok("key-hash secret");
    let edges_only = [
        "crds.enabled=false",
        "operator.enabled=false",
        "redis.auth.enabled=false",
        "edge.relay.existingSecret=own-relay",
        "edge.api.existingSecret=own-api",
        "keyHash.existingSecret=own-key-hash",
    ];
    let out = helm_set(cluster, &["install", "edges", &chart, "-n", "sf-edges"], &edges_only).await;
    out.expect_ok("helm install without the operator");
    let objects = assert_release_objects_exist(cluster, "edges", "sf-edges").await;
    assert!(!objects.contains("operator"), "operator objects with operator.enabled=false:\n{objects}");
    assert!(
        !objects.contains("secret/"),
        "a Secret rendered, with the user's relay, API and key-hash secrets and no Redis password:\n{objects}"
    );
    cluster.helm(&["uninstall", "edges", "-n", "sf-edges"]).await.expect_ok("helm uninstall");

    // Upgrade with changed values: the HPA goes, replicas and the Service change, and the
    // generated Secrets keep their values (lookup).
    let changed = [
        "edge.autoscaling.enabled=false",
        "edge.replicaCount=3",
        "operator.replicaCount=3",
        "edge.service.type=LoadBalancer",
    ];
    let out = helm_set(cluster, &["upgrade", "toggles", &chart, "-n", ns, "--reuse-values"], &changed).await;
    let out = out.expect_ok("helm upgrade");
    assert!(out.contains("REVISION: 2"), "{out}");
    let objects = assert_release_objects_exist(cluster, "toggles", ns).await;
    assert!(!objects.contains("horizontalpodautoscaler"), "HPA kept after autoscaling was disabled:\n{objects}");
    let field = |kind: &'static str, jsonpath: &'static str| async move {
        let name = format!("{kind}/toggles-streamfleet-edge");
        cluster.kubectl(&["get", &name, "-n", ns, "-o", jsonpath]).await.expect_ok("edge object")
    };
    assert_eq!(field("deployment", "jsonpath={.spec.replicas}").await, "3");
    assert_eq!(field("service", "jsonpath={.spec.type}").await, "LoadBalancer");
    let redis_after = secret_value("toggles-streamfleet-redis", "redis-password").await;
    assert_eq!(redis_after, redis_password, "Redis password changed on upgrade");
    let relay_after = secret_value("toggles-streamfleet-relay", "relay-secret").await;
    assert_eq!(relay_after, relay_secret, "relay secret changed on upgrade");
    let api_after = secret_value("toggles-streamfleet-api", "api-token").await;
    assert_eq!(api_after, api_token, "API token changed on upgrade");
    let key_hash_after = secret_value("toggles-streamfleet-key-hash", "key-hash-secret").await;
    assert_eq!(key_hash_after, key_hash_secret, "key-hash secret changed on upgrade");

    // Uninstall: everything goes but what the chart promises to keep (the generated Secrets).
    cluster.helm(&["uninstall", "toggles", "-n", ns]).await.expect_ok("helm uninstall");
    cluster.helm(&["uninstall", "external", "-n", "sf-external"]).await.expect_ok("helm uninstall");
    let kinds = "deploy,statefulset,service,hpa,pdb,networkpolicy,configmap,serviceaccount,role,rolebinding,secret";
    let left = cluster
        .kubectl(&["get", kinds, "-n", ns, "-l", "app.kubernetes.io/instance=toggles", "-o", "name"])
        .await
        .expect_ok("list what is left");
    let left: BTreeSet<&str> = left.lines().collect();
    let kept: BTreeSet<&str> = [
        "secret/toggles-streamfleet-api",
        "secret/toggles-streamfleet-key-hash",
        "secret/toggles-streamfleet-redis",
        "secret/toggles-streamfleet-relay",
    ]
    .into();
    assert_eq!(left, kept, "after helm uninstall");
    let cluster_roles = cluster
        .kubectl(&["get", "clusterrole,clusterrolebinding", "-l", "app.kubernetes.io/instance=toggles", "-o", "name"])
        .await
        .expect_ok("cluster roles");
    assert!(cluster_roles.trim().is_empty(), "cluster-scoped objects left: {cluster_roles}");
    assert_eq!(secret_value("toggles-streamfleet-redis", "redis-password").await, redis_password);
}

async fn install_default_release(cluster: &Cluster) {
    let _s = Step::new("chart: install with default values (CRD, operator RBAC)");
    // Without images the install stops before it applies anything, saying what to set.
    let refused = cluster.helm(&["install", RELEASE, &chart(), "-n", SYSTEM_NS, "--create-namespace"]).await;
    assert!(!refused.ok, "installed without images: {}", refused.stdout);
    assert!(refused.stderr.contains("image.repository is not set"), "{}", refused.stderr);
    // Helm 4 lists releases in every status (failed, pending) by default.
    let releases = cluster.helm(&["list", "-n", SYSTEM_NS, "-q"]).await.expect_ok("helm list");
    assert!(!releases.contains(RELEASE), "a failed install left a release: {releases}");
    let out = helm_set(cluster, &["install", RELEASE, &chart(), "-n", SYSTEM_NS, "--create-namespace"], &[])
        .await
        .expect_ok("helm install with default values");
    assert!(out.contains("STATUS: deployed"), "{out}");
    let objects = assert_release_objects_exist(cluster, RELEASE, SYSTEM_NS).await;
    assert!(objects.contains(&format!("customresourcedefinition.apiextensions.k8s.io/{CRD}")), "{objects}");
    cluster
        .kubectl(&["wait", "--for=condition=Established", &format!("crd/{CRD}"), "--timeout=30s"])
        .await
        .expect_ok("the CRD is established");
}

/// Standard base64 (what kubectl prints for Secret data), without a dependency for it.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c).unwrap_or_else(|| panic!("not base64: {text}")) as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Every `x-kubernetes-validations` message in a schema.
fn cel_messages(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(rules)) = map.get("x-kubernetes-validations") {
                for r in rules {
                    if let Some(m) = r["message"].as_str() {
                        out.insert(m.to_string());
                    }
                }
            }
            map.values().for_each(|v| cel_messages(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| cel_messages(v, out)),
        _ => {}
    }
}

fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

async fn crd_schema_explain_and_cel(cluster: &Cluster) {
    let _s = Step::new("CRD: served schema, kubectl explain, every CEL rule");
    let crd = cluster.get_json(&["crd", CRD]).await.expect("CRD served");
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let spec_fields = schema["properties"]["spec"]["properties"].as_object().expect("spec properties").clone();
    assert!(spec_fields.len() >= 7, "spec fields: {:?}", spec_fields.keys());

    // `kubectl explain` reads the published OpenAPI v3, which follows the CRD within seconds.
    let explained = eventually("kubectl explain livestream.spec works", Duration::from_secs(30), || async {
        let out = cluster.kubectl(&["explain", "livestream.spec"]).await;
        (out.ok && out.stdout.contains("FIELDS:")).then_some(out.stdout)
    })
    .await;
    let flat = words(&explained);
    for (field, prop) in &spec_fields {
        assert!(explained.contains(&format!("\n  {field}\t")), "kubectl explain lacks {field}:\n{explained}");
        let description = prop["description"].as_str().unwrap_or_else(|| panic!("{field} has no description"));
        let head: String = words(description).chars().take(40).collect();
        assert!(flat.contains(&head), "kubectl explain lacks {field}'s description {head:?}:\n{explained}");
    }

    // Each rule rejects its own bad LiveStream, with its own message, from the API server.
    let mut all = BTreeSet::new();
    cel_messages(schema, &mut all);
    assert_eq!(all.len(), 7, "CEL rules: {all:#?}");
    let long_key = "k".repeat(318);
    let cases: Vec<(&str, Value, &str)> = vec![
        ("bad-selector", json!({"edgeSelector": {long_key.as_str(): "x"}}), "edgeSelector keys must be label keys"),
        ("bad-viewers", json!({"maxViewers": 0}), "maxViewers must be at least 1"),
        ("bad-playback", json!({"playbackName": "Bad_Name"}), "playbackName must be a DNS label"),
        (
            "bad-key",
            json!({"publishKeySecretRef": {"name": "s", "key": "a key"}}),
            "publishKeySecretRef.key must be a Secret data key",
        ),
        ("bad-empty-ref", json!({"publishKeySecretRef": {"name": ""}}), "publishKeySecretRef.name must not be empty"),
        (
            "bad-ref",
            json!({"publishKeySecretRef": {"name": "Bad_Secret"}}),
            "publishKeySecretRef.name must be a Secret name",
        ),
        ("bad.name", json!({}), "metadata.name is the playback name"),
    ];
    let mut seen = BTreeSet::new();
    for (name, spec, message) in &cases {
        let obj = json!({"apiVersion": "streamfleet.io/v1alpha1", "kind": "LiveStream", "metadata": {"name": name, "namespace": "default"}, "spec": spec});
        let out = cluster.kubectl_in(&["create", "--dry-run=server", "-f", "-"], &obj.to_string()).await;
        assert!(!out.ok, "{name} was accepted: {}", out.stdout);
        assert!(out.stderr.contains(message), "{name}: the API server said\n{}\nnot {message:?}", out.stderr);
        let full = all.iter().find(|m| m.starts_with(message)).unwrap_or_else(|| panic!("no rule says {message:?}"));
        seen.insert(full.clone());
    }
    assert_eq!(seen, all, "a CEL rule without a rejection case");
    // A good one passes the same path.
    let good = json!({"apiVersion": "streamfleet.io/v1alpha1", "kind": "LiveStream", "metadata": {"name": "good", "namespace": "default"}, "spec": {"playbackName": "good", "maxViewers": 1, "edgeSelector": {"example.com/region": "eu"}}});
    cluster
        .kubectl_in(&["create", "--dry-run=server", "-f", "-"], &good.to_string())
        .await
        .expect_ok("a valid LiveStream");
}

async fn basic_example_live_viewers_and_columns(w: &World) {
    let _s = Step::new("examples/basic.yaml: Ready, Live on its edge, 3 viewers, back to Ready");
    w.apply(NS, &example("basic.yaml")).await;
    let lst = w.wait_phase(NS, "lobby", "Ready", Duration::from_secs(30)).await;
    assert!(lst["metadata"]["finalizers"].as_array().is_some_and(|f| f.contains(&json!("streamfleet.io/registry"))));
    assert_eq!(w.record_exists(NS, "lobby").await, Some(true), "no registry record");
    let listing = w.cluster.kubectl(&["get", "lst", "-n", NS]).await.expect_ok("kubectl get lst");
    let rows = table(&listing);
    // The README's columns.
    assert_eq!(rows[0], ["NAME", "PHASE", "PLAYBACK", "PUBLISHER", "VIEWERS", "AGE"], "{listing}");
    assert_eq!(rows[1][..3], ["lobby", "Ready", "lobby"], "{listing}");

    let edge_a = w.edge("edge-a");
    let edge_b = w.edge("edge-b");
    let mut publisher = ffmpeg::publish(&edge_a.url(BASIC_KEY), 300);
    w.wait_phase(NS, "lobby", "Live", Duration::from_secs(30)).await;
    let lst = w.lst(NS, "lobby").await.expect("lobby");
    assert_eq!(lst["status"]["publisher"]["edge"], "edge-a", "{lst:#}");
    assert_eq!(lst["status"]["publisher"]["protocol"], "rtmp", "{lst:#}");
    assert_eq!(condition(&lst, "Live")["reason"], "Publishing");

    let players = [
        ffmpeg::play(&edge_a.url("lobby"), 300),
        ffmpeg::play(&edge_b.url("lobby"), 300),
        ffmpeg::play(&edge_b.url("lobby"), 300),
    ];
    eventually("status shows 3 viewers", Duration::from_secs(30), || async {
        (w.lst(NS, "lobby").await?["status"]["viewers"] == 3).then_some(())
    })
    .await;
    let listing = w.cluster.kubectl(&["get", "lst", "lobby", "-n", NS]).await.expect_ok("kubectl get lst");
    assert_eq!(table(&listing)[1][..5], ["lobby", "Live", "lobby", "edge-a", "3"], "{listing}");
    assert!(ffmpeg::running(&mut publisher), "the publisher ended");

    // What the encoder sends (160×90, 15 fps, a keyframe a second), measured by edge-a, in the
    // status and in `kubectl get lst -o wide`.
    let lst = eventually("status shows the encoder's media", Duration::from_secs(30), || async {
        let v = w.lst(NS, "lobby").await?;
        (v["status"]["media"]["resolution"] == "160x90").then_some(v)
    })
    .await;
    let media = &lst["status"]["media"];
    assert!(media["fps"].as_f64().is_some_and(|f| (14.0..=16.0).contains(&f)), "{lst:#}");
    assert!(media["keyframeIntervalSeconds"].as_f64().is_some_and(|k| (0.9..=1.1).contains(&k)), "{lst:#}");
    assert_eq!((media["videoCodec"].as_str(), media["audioCodec"].as_str()), (Some("h264"), Some("aac")));
    assert_eq!(condition(&lst, "EncoderHealthy")["status"], "True", "{lst:#}");
    let wide =
        w.cluster.kubectl(&["get", "lst", "lobby", "-n", NS, "-o", "wide"]).await.expect_ok("kubectl get lst -o wide");
    let rows = table(&wide);
    assert_eq!(rows[0][6..], ["PROTOCOL", "RESOLUTION", "FPS", "KBPS", "HEALTHY"], "{wide}");
    assert_eq!((rows[1][6].as_str(), rows[1][7].as_str(), rows[1][10].as_str()), ("rtmp", "160x90", "True"), "{wide}");

    // The encoder stops: status goes back to Ready, without publisher or viewers.
    let _ = publisher.start_kill();
    let _ = publisher.wait().await;
    let lst = w.wait_phase(NS, "lobby", "Ready", Duration::from_secs(30)).await;
    assert!(lst["status"]["publisher"].is_null(), "{lst:#}");
    assert_eq!(condition(&lst, "Live")["reason"], "NoPublisher");
    assert!(lst["status"]["lastPublishedAt"].is_string(), "{lst:#}");
    for p in players {
        // Players end with the stream.
        ffmpeg::wait_exit(p, Duration::from_secs(30)).await.expect("player ends with the stream");
    }
    eventually("viewers back to 0", Duration::from_secs(30), || async {
        let v = w.lst(NS, "lobby").await?;
        (v["status"]["viewers"].as_u64().unwrap_or(0) == 0).then_some(())
    })
    .await;
}

async fn key_rotation(w: &World) {
    let _s = Step::new("key rotation: the old key's publisher ends, the old key is refused");
    let edge_a = w.edge("edge-a");
    let publisher = ffmpeg::publish(&edge_a.url(BASIC_KEY), 300);
    w.wait_phase(NS, "lobby", "Live", Duration::from_secs(30)).await;
    let new_key = "rotated-key-0123456789abcdef";
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: lobby-publish-key}}\ntype: Opaque\nstringData: {{publishKey: {new_key}}}\n"
    );
    w.apply(NS, &secret).await;
    let exit = ffmpeg::wait_exit(publisher, Duration::from_secs(20)).await.expect("the old key's publisher is ended");
    assert!(!exit.success, "the publisher on the old key ended cleanly?\n{}", exit.stderr);
    let refused = ffmpeg::wait_exit(ffmpeg::publish(&edge_a.url(BASIC_KEY), 30), Duration::from_secs(20))
        .await
        .expect("the old key is refused at once");
    assert!(!refused.success, "the old key was accepted");
    let mut publisher = ffmpeg::publish(&edge_a.url(new_key), 300);
    let lst = w.wait_phase(NS, "lobby", "Live", Duration::from_secs(30)).await;
    assert_eq!(lst["status"]["publisher"]["edge"], "edge-a");
    assert!(ffmpeg::running(&mut publisher));
    let events = events_of(&w.cluster, NS, "lobby").await;
    assert!(events.iter().any(|e| e["reason"] == "KeyRotated"), "no KeyRotated Event: {events:#?}");
    let _ = publisher.start_kill();
    let _ = publisher.wait().await;
    w.wait_phase(NS, "lobby", "Ready", Duration::from_secs(30)).await;
    // Back to the example's key for the next steps.
    w.apply(NS, &example("basic.yaml")).await;
}

async fn disable_ends_the_publisher(w: &World) {
    let _s = Step::new("enabled: false ends a live publisher");
    let edge_b = w.edge("edge-b");
    let publisher = ffmpeg::publish(&edge_b.url(BASIC_KEY), 300);
    let lst = w.wait_phase(NS, "lobby", "Live", Duration::from_secs(30)).await;
    assert_eq!(lst["status"]["publisher"]["edge"], "edge-b");
    w.cluster
        .kubectl(&["patch", "lst", "lobby", "-n", NS, "--type=merge", "-p", r#"{"spec":{"enabled":false}}"#])
        .await
        .expect_ok("disable");
    let exit = ffmpeg::wait_exit(publisher, Duration::from_secs(20)).await.expect("the publisher is ended");
    assert!(!exit.success, "{}", exit.stderr);
    let lst = w.wait_phase(NS, "lobby", "Disabled", Duration::from_secs(30)).await;
    assert_eq!(condition(&lst, "Ready")["reason"], "Disabled");
    let refused = ffmpeg::wait_exit(ffmpeg::publish(&edge_b.url(BASIC_KEY), 30), Duration::from_secs(20))
        .await
        .expect("a disabled stream refuses publishers");
    assert!(!refused.success);
    w.cluster
        .kubectl(&["patch", "lst", "lobby", "-n", NS, "--type=merge", "-p", r#"{"spec":{"enabled":true}}"#])
        .await
        .expect_ok("enable");
    w.wait_phase(NS, "lobby", "Ready", Duration::from_secs(30)).await;
}

async fn generated_key_owned_and_collected(w: &World) {
    let _s =
        Step::new("generated key: Secret owned by its LiveStream; delete runs the finalizer, GC removes the Secret");
    w.apply(NS, &example("generated-key.yaml")).await;
    let lst = w.wait_phase(NS, "town-hall", "Ready", Duration::from_secs(30)).await;
    let uid = lst["metadata"]["uid"].as_str().expect("uid").to_string();
    assert_eq!(lst["status"]["publishKeySecret"], "town-hall-publish-key");
    let secret = w.cluster.get_json(&["secret", "town-hall-publish-key", "-n", NS]).await.expect("generated Secret");
    let owner = &secret["metadata"]["ownerReferences"][0];
    assert_eq!(owner["uid"], uid.as_str(), "{secret:#}");
    assert_eq!(owner["kind"], "LiveStream");
    assert_eq!(owner["controller"], true);
    assert_eq!(owner["blockOwnerDeletion"], true);
    assert_eq!(w.record_exists(NS, "town-hall").await, Some(true));

    w.cluster.kubectl(&["delete", "lst", "town-hall", "-n", NS, "--wait=false"]).await.expect_ok("delete");
    // The record goes before the object: never is the object gone while the record remains.
    eventually("the LiveStream and its record are gone", Duration::from_secs(30), || async {
        // Object first: if it is gone, the record must already be gone when read after it.
        let object = w.cluster.kubectl(&["get", "lst", "town-hall", "-n", NS, "-o", "name"]).await;
        let object_gone = !object.ok && object.stderr.contains("NotFound");
        let record = w.record_exists(NS, "town-hall").await?;
        assert!(!(object_gone && record), "the LiveStream went before its registry record");
        (object_gone && !record).then_some(())
    })
    .await;
    eventually("the garbage collector removed the generated Secret", Duration::from_secs(60), || async {
        let out = w.cluster.kubectl(&["get", "secret", "town-hall-publish-key", "-n", NS, "-o", "name"]).await;
        (!out.ok && out.stderr.contains("NotFound")).then_some(())
    })
    .await;
}

async fn playback_name_conflict(w: &World) {
    let _s = Step::new("two LiveStreams with one playback name: PlaybackNameConflict");
    w.apply(NS2, "apiVersion: streamfleet.io/v1alpha1\nkind: LiveStream\nmetadata: {name: lobby-copy}\nspec: {playbackName: lobby}\n").await;
    let lst = eventually("the newer LiveStream reports the conflict", Duration::from_secs(30), || async {
        let v = w.lst(NS2, "lobby-copy").await?;
        (condition(&v, "Ready")["reason"] == "PlaybackNameConflict").then_some(v)
    })
    .await;
    assert_eq!(condition(&lst, "Ready")["status"], "False");
    assert_eq!(lst["status"]["phase"], "Error", "{lst:#}");
    // The older one keeps the name.
    let lobby = w.lst(NS, "lobby").await.expect("lobby");
    assert_eq!(condition(&lobby, "Ready")["reason"], "Registered", "{lobby:#}");
}

/// Checked before the API server outage: afterwards the controller manager's informers resume
/// on their own (client-go) backoff, and a namespace deletion then took 35 to over 60 s.
async fn namespace_deletion(w: &World) {
    let _s = Step::new("namespace deleted: its LiveStream's finalizer runs, the namespace controller removes it");
    let ns = "e2e-scratch";
    w.cluster.kubectl(&["create", "namespace", ns]).await.expect_ok("create namespace");
    w.apply(ns, &example("generated-key.yaml")).await;
    w.wait_phase(ns, "town-hall", "Ready", Duration::from_secs(30)).await;
    assert_eq!(w.record_exists(ns, "town-hall").await, Some(true));
    w.cluster.kubectl(&["delete", "namespace", ns, "--wait=false"]).await.expect_ok("delete namespace");
    eventually("the namespace and the stream's record are gone", Duration::from_secs(60), || async {
        let gone = !w.cluster.kubectl(&["get", "namespace", ns, "-o", "name"]).await.ok;
        (gone && w.record_exists(ns, "town-hall").await == Some(false)).then_some(())
    })
    .await;
}

async fn apiserver_outage(w: &World, op: &mut OperatorProcess) {
    let _s = Step::new("API server stopped for 20 s: the operator recovers without restart");
    let pid = op.pid();
    w.wait_phase(NS, "lobby", "Ready", Duration::from_secs(30)).await;
    w.cluster.stop_apiserver().await;
    let stopped = Instant::now();
    // A publisher arrives while the API server is away: the registry knows, status cannot.
    let mut publisher = ffmpeg::publish(&w.edge("edge-a").url(BASIC_KEY), 300);
    sleep(Duration::from_secs(20).saturating_sub(stopped.elapsed())).await; // the outage itself
    assert!(op.is_running(), "the operator exited during the outage:\n{}", op.logs());
    w.cluster.start_apiserver().await;
    let back = Instant::now();
    w.wait_phase(NS, "lobby", "Live", Duration::from_secs(60)).await;
    eprintln!("    status caught up {:.1} s after the API server was back", back.elapsed().as_secs_f64());
    assert!(op.is_running(), "the operator exited:\n{}", op.logs());
    assert_eq!(op.pid(), pid, "the operator was restarted");
    assert!(ffmpeg::running(&mut publisher), "the publisher was dropped");
    // The controller runs again: a change after the outage is reconciled.
    let _ = publisher.start_kill();
    let _ = publisher.wait().await;
    w.wait_phase(NS, "lobby", "Ready", Duration::from_secs(30)).await;
    assert_eq!(op.metric("streamfleet_operator_is_leader").await, 1.0);
}

/// A second release watching one namespace only (`operator.watchNamespaces`): its operator runs
/// with that release's ServiceAccount token, so the Roles the chart grants in the watched
/// namespace are all it has. It reconciles there, leaves LiveStreams elsewhere alone, and the
/// API server refuses it Secrets outside its namespace, by get, list and watch.
async fn namespace_scoped_install(w: &World, operator: &std::path::Path) {
    let _s = Step::new("namespace-scoped install: Roles only, nothing read outside its namespace");
    const SCOPED_RELEASE: &str = "streamfleet-scoped";
    const SCOPED_SYSTEM_NS: &str = "sf-scoped-system";
    const WATCHED: &str = "e2e-scoped";
    w.cluster.kubectl(&["create", "namespace", WATCHED]).await.expect_ok("create namespace");
    let values = ["crds.enabled=false", "redis.bundled=false", "redis.external.url=redis://127.0.0.1:1/0"];
    let watch = format!("operator.watchNamespaces={{{WATCHED}}}");
    let values: Vec<&str> = values.iter().copied().chain([watch.as_str()]).collect();
    helm_set(&w.cluster, &["install", SCOPED_RELEASE, &chart(), "-n", SCOPED_SYSTEM_NS, "--create-namespace"], &values)
        .await
        .expect_ok("helm install a namespace-scoped release");
    let manifest =
        w.cluster.helm(&["get", "manifest", SCOPED_RELEASE, "-n", SCOPED_SYSTEM_NS]).await.expect_ok("manifest");
    assert!(!manifest.contains("kind: ClusterRole"), "a namespace-scoped release grants cluster-wide:\n{manifest}");
    let kubeconfig =
        w.cluster.service_account_kubeconfig(SCOPED_SYSTEM_NS, &format!("{SCOPED_RELEASE}-operator")).await;

    // A Secret outside the scope: its token may neither read nor list nor watch it.
    w.cluster
        .kubectl(&[
            "create",
            "secret",
            "generic",
            "outside-key",
            "-n",
            NS,
            "--from-literal=publishKey=outside-publish-key-0123456789",
        ])
        .await
        .expect_ok("create a Secret outside the scope");
    let denied = w.cluster.kubectl_as(&kubeconfig, &["get", "secret", "outside-key", "-n", NS, "-o", "name"]).await;
    assert!(!denied.ok && denied.stderr.contains("forbidden"), "read a Secret outside its scope: {denied:?}");
    for args in [
        &["auth", "can-i", "get", "secrets", "-n", NS][..],
        &["auth", "can-i", "list", "secrets", "-A"],
        &["auth", "can-i", "watch", "secrets", "-A"],
        &["auth", "can-i", "list", "livestreams.streamfleet.io", "-A"],
    ] {
        let out = w.cluster.kubectl_as(&kubeconfig, args).await;
        assert_eq!(out.stdout.trim(), "no", "kubectl {}: {out:?}", args.join(" "));
    }
    for verb in ["get", "list", "watch"] {
        let out = w.cluster.kubectl_as(&kubeconfig, &["auth", "can-i", verb, "secrets", "-n", WATCHED]).await;
        assert_eq!(out.stdout.trim(), "yes", "{verb} secrets in the watched namespace: {out:?}");
    }

    let mut op = OperatorProcess::start_with_env(
        operator,
        "op-scoped",
        &kubeconfig,
        SCOPED_SYSTEM_NS,
        &w.redis_url,
        &[("STREAMFLEET_WATCH_NAMESPACES", WATCHED)],
        false,
    );
    let generated = "apiVersion: streamfleet.io/v1alpha1\nkind: LiveStream\nmetadata: {name: scoped}\nspec: {}\n";
    w.apply(WATCHED, generated).await;
    w.wait_phase(WATCHED, "scoped", "Ready", Duration::from_secs(30)).await;
    assert_eq!(w.record_exists(WATCHED, "scoped").await, Some(true));

    // Status follows the registry's change signals: with the default 30 s idle requeue, a
    // publisher admitted through the edges' API shows as Live, and its release as Ready, within
    // 2 s each (the target of issue 20), three times over.
    let key = w
        .cluster
        .kubectl(&["get", "secret", "scoped-publish-key", "-n", WATCHED, "-o", "jsonpath={.data.publishKey}"])
        .await
        .expect_ok("read the generated key");
    let key = String::from_utf8(base64_decode(key.trim())).expect("a UTF-8 key");
    let who = PublisherInfo {
        edge: "edge-signal".into(),
        remote_addr: Some("192.0.2.1:5000".into()),
        relay_addr: None,
        protocol: None,
    };
    for round in 0..3 {
        let admitted = Instant::now();
        let lease = w
            .registry
            .acquire(&KeyHash::of_key(&key), &who, &AcquireOptions::new(&LeaseTiming::default()))
            .await
            .expect("admitted through the edge API");
        w.wait_phase(WATCHED, "scoped", "Live", Duration::from_secs(10)).await;
        let to_live = admitted.elapsed();
        let released = Instant::now();
        assert!(w.registry.release(&lease).await.expect("released"));
        w.wait_phase(WATCHED, "scoped", "Ready", Duration::from_secs(10)).await;
        let to_ready = released.elapsed();
        eprintln!("    round {round}: publish → Live {to_live:.2?}, end → Ready {to_ready:.2?}");
        assert!(to_live <= Duration::from_secs(2), "publish → Live took {to_live:?}");
        assert!(to_ready <= Duration::from_secs(2), "end → Ready took {to_ready:?}");
    }
    // Outside the scope: a LiveStream referencing the Secret it may not read is never touched.
    let outside = "apiVersion: streamfleet.io/v1alpha1\nkind: LiveStream\nmetadata: {name: outside}\n\
                   spec: {publishKeySecretRef: {name: outside-key}}\n";
    w.apply(NS, outside).await;
    // The in-scope stream is reconciled after the outside one was created: had the operator
    // seen it, it would have been reconciled by now too.
    w.cluster.kubectl(&["annotate", "livestream", "scoped", "-n", WATCHED, "e2e/poke=1"]).await.expect_ok("annotate");
    let before = op.metric("streamfleet_operator_reconciles_total").await;
    eventually("the in-scope stream is reconciled again", Duration::from_secs(30), || async {
        (op.metric("streamfleet_operator_reconciles_total").await > before).then_some(())
    })
    .await;
    let lst = w.lst(NS, "outside").await.expect("the outside LiveStream exists");
    assert!(lst.get("status").is_none_or(Value::is_null), "an out-of-scope stream got a status: {lst:#}");
    assert!(lst["metadata"]["finalizers"].is_null(), "an out-of-scope stream got a finalizer: {lst:#}");
    assert_eq!(w.record_exists(NS, "outside").await, Some(false));
    assert!(op.is_running(), "the scoped operator exited:\n{}", op.logs());
    assert!(!op.logs().contains("forbidden"), "the scoped operator was refused something:\n{}", op.logs());

    w.cluster
        .kubectl(&["delete", "livestream", "scoped", "-n", WATCHED, "--wait=true", "--timeout=30s"])
        .await
        .expect_ok("delete through the finalizer");
    assert_eq!(w.record_exists(WATCHED, "scoped").await, Some(false));
    w.cluster.kubectl(&["delete", "livestream", "outside", "-n", NS]).await.expect_ok("delete");
    drop(op);
    w.cluster.helm(&["uninstall", SCOPED_RELEASE, "-n", SCOPED_SYSTEM_NS]).await.expect_ok("helm uninstall");
    for ns in [WATCHED, SCOPED_SYSTEM_NS] {
        w.cluster.kubectl(&["delete", "namespace", ns, "--wait=false"]).await.expect_ok("delete namespace");
    }
}

async fn uninstall_default_release(cluster: &Cluster) {
    let _s = Step::new("chart: uninstall keeps the CRD and the generated Secrets");
    cluster.helm(&["uninstall", RELEASE, "-n", SYSTEM_NS]).await.expect_ok("helm uninstall");
    let crd = cluster.get_json(&["crd", CRD]).await.expect("the CRD is kept after uninstall");
    assert_eq!(crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep");
    let left = cluster
        .kubectl(&[
            "get",
            "deploy,statefulset,service,serviceaccount,secret",
            "-n",
            SYSTEM_NS,
            "-l",
            &format!("app.kubernetes.io/instance={RELEASE}"),
            "-o",
            "name",
        ])
        .await
        .expect_ok("list");
    let left: BTreeSet<&str> = left.lines().collect();
    let kept: BTreeSet<&str> = [
        "secret/streamfleet-api",
        "secret/streamfleet-key-hash",
        "secret/streamfleet-redis",
        "secret/streamfleet-relay",
    ]
    .into();
    assert_eq!(left, kept);
}
