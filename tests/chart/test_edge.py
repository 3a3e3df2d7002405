"""Edge Deployment and Services: ports, probes, drain timing, the contract's environment, spread."""

import re

import helm_python as helm
import pytest

from chartkit import (
    CHART,
    FULLNAME,
    chart,
    container,
    duration_seconds,
    env_map,
    mount_for_path,
    render,
    secret_value,
    volume,
)

EDGE = f"{FULLNAME}-edge"


def edge_pod(values=None):
    out = render(values)
    return out, out.get("Deployment", EDGE)["spec"]["template"]["spec"]


def test_container_ports():
    _, pod = edge_pod()
    ports = {p["name"]: (p["containerPort"], p["protocol"]) for p in container(pod, "edge")["ports"]}
    assert ports == {"rtmp": (1935, "TCP"), "relay": (1936, "TCP"), "http": (9090, "TCP")}


def test_listen_addresses_follow_the_ports():
    _, pod = edge_pod({"edge": {"ports": {"rtmp": 11935, "relay": 11936, "http": 19090}}})
    c = container(pod, "edge")
    env = env_map(c)
    assert env["STREAMFLEET_RTMP_LISTEN"] == "0.0.0.0:11935"
    assert env["STREAMFLEET_RELAY_LISTEN"] == "0.0.0.0:11936"
    assert env["STREAMFLEET_HTTP_LISTEN"] == "0.0.0.0:19090"
    assert env["STREAMFLEET_ADVERTISE_ADDR"] == "$(POD_IP):11936"
    assert {p["containerPort"] for p in c["ports"]} == {11935, 11936, 19090}


def test_probes_hit_the_http_endpoints():
    _, pod = edge_pod()
    c = container(pod, "edge")
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # A pod that cannot reach Redis must leave the LoadBalancer quickly.
    ready = c["readinessProbe"]
    assert ready["periodSeconds"] * ready["failureThreshold"] <= 10


@pytest.mark.parametrize(
    "timing",
    [{}, {"drainTimeoutSeconds": 60}, {"preStopSleepSeconds": 0}, {"drainTimeoutSeconds": 5, "preStopSleepSeconds": 15}],
)
def test_termination_grace_covers_prestop_and_drain(timing):
    values = {"edge": timing}
    _, pod = edge_pod(values)
    merged = chart().merge_values(values)["edge"]
    c = container(pod, "edge")
    drain = duration_seconds(env_map(c)["STREAMFLEET_DRAIN_TIMEOUT"])
    assert drain == merged["drainTimeoutSeconds"]
    sleep = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    assert sleep == merged["preStopSleepSeconds"]
    if merged["preStopSleepSeconds"] == 0:
        assert "lifecycle" not in c
    grace = pod["terminationGracePeriodSeconds"]
    assert grace >= sleep + drain + 1, "SIGKILL would cut the drain short"
    assert grace == sleep + drain + merged["terminationGraceMarginSeconds"]


def test_explicit_grace_period_is_honoured_and_checked():
    _, pod = edge_pod({"edge": {"terminationGracePeriodSeconds": 120}})
    assert pod["terminationGracePeriodSeconds"] == 120
    with pytest.raises(helm.HelmError, match="at least preStopSleepSeconds"):
        render({"edge": {"terminationGracePeriodSeconds": 10}})


def test_prestop_uses_the_kubelet_sleep_action_not_a_shell():
    _, pod = edge_pod()
    pre = container(pod, "edge")["lifecycle"]["preStop"]
    assert list(pre) == ["sleep"], "the distroless image has no shell for an exec hook"


def test_contract_environment():
    out, pod = edge_pod()
    c = container(pod, "edge")
    env = env_map(c)
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["STREAMFLEET_EDGE_ID"] == "$(POD_NAME)"
    assert env["STREAMFLEET_ADVERTISE_ADDR"] == "$(POD_IP):1936"
    assert duration_seconds(env["STREAMFLEET_LEASE_TTL"]) == 15
    assert env["STREAMFLEET_LOG_FORMAT"] in ("json", "text")
    names = [e["name"] for e in c["env"]]
    # $(VAR) references only resolve to variables defined earlier in the list.
    for i, e in enumerate(c["env"]):
        for ref in re.findall(r"\$\((\w+)\)", e.get("value", "")):
            assert ref in names[:i], f"{e['name']} references {ref} before it is defined"
    assert env["STREAMFLEET_REDIS_URL"] == f"redis://{FULLNAME}-redis.streamfleet.svc:6379/0"
    assert "STREAMFLEET_STREAMS" not in env, "a fleet uses Redis, never a static streams file"


def test_write_window_defaults_to_off_and_is_configurable():
    _, pod = edge_pod()
    assert env_map(container(pod, "edge"))["STREAMFLEET_WRITE_BATCH"] == "0s"
    _, pod = edge_pod({"edge": {"writeBatch": "100ms"}})
    assert env_map(container(pod, "edge"))["STREAMFLEET_WRITE_BATCH"] == "100ms"


def test_worker_threads_default_to_one_per_cpu_and_are_configurable():
    _, pod = edge_pod()
    assert env_map(container(pod, "edge"))["STREAMFLEET_WORKER_THREADS"] == "0"
    _, pod = edge_pod({"edge": {"workerThreads": 2}})
    assert env_map(container(pod, "edge"))["STREAMFLEET_WORKER_THREADS"] == "2"


def test_lease_ttl_is_configurable():
    _, pod = edge_pod({"edge": {"leaseTTL": "6s"}})
    assert env_map(container(pod, "edge"))["STREAMFLEET_LEASE_TTL"] == "6s"


def test_relay_secret_is_mounted_as_a_file():
    out, pod = edge_pod()
    c = container(pod, "edge")
    path = env_map(c)["STREAMFLEET_RELAY_SECRET_FILE"]
    mount = mount_for_path(c, path)
    assert mount.get("readOnly") is True
    vol = volume(pod, mount["name"])
    secret = out.get("Secret", vol["secret"]["secretName"])
    item = vol["secret"]["items"][0]
    assert path.endswith("/" + item["path"])
    assert secret_value(secret, item["key"])


def test_relay_secret_is_generated_once_and_kept():
    out = render({})
    secret = out.get("Secret", f"{FULLNAME}-relay")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    value = secret_value(secret, "relay-secret")
    assert re.fullmatch(r"[A-Za-z0-9]{48}", value)
    # Reused on upgrade: the template looks the live Secret up before generating a new one.
    source = (CHART / "templates" / "_helpers.tpl").read_text()
    assert 'lookup "v1" "Secret"' in source
    relay_template = (CHART / "templates" / "edge" / "relay-secret.yaml").read_text()
    assert "streamfleet.keptSecretValue" in relay_template


def test_api_token_is_generated_once_kept_and_mounted_as_a_file():
    out, pod = edge_pod()
    c = container(pod, "edge")
    path = env_map(c)["STREAMFLEET_API_TOKEN_FILE"]
    mount = mount_for_path(c, path)
    assert mount.get("readOnly") is True
    vol = volume(pod, mount["name"])
    secret = out.get("Secret", vol["secret"]["secretName"])
    assert secret["metadata"]["name"] == f"{FULLNAME}-api"
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    item = vol["secret"]["items"][0]
    assert path.endswith("/" + item["path"])
    assert re.fullmatch(r"[A-Za-z0-9]{48}", secret_value(secret, item["key"]))
    template = (CHART / "templates" / "edge" / "api-token-secret.yaml").read_text()
    assert "streamfleet.keptSecretValue" in template
    # The probes stay token-free.
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_api_existing_secret():
    out, pod = edge_pod({"edge": {"api": {"existingSecret": "fleet-api", "existingSecretKey": "token"}}})
    assert out.find("Secret", f"{FULLNAME}-api") is None
    vol = volume(pod, "api-token")
    assert vol["secret"]["secretName"] == "fleet-api"
    assert vol["secret"]["items"] == [{"key": "token", "path": "token"}]


def test_relay_existing_secret():
    out, pod = edge_pod({"edge": {"relay": {"existingSecret": "fleet-relay", "existingSecretKey": "token"}}})
    assert out.find("Secret", f"{FULLNAME}-relay") is None
    vol = volume(pod, "relay-secret")
    assert vol["secret"]["secretName"] == "fleet-relay"
    assert vol["secret"]["items"] == [{"key": "token", "path": "secret"}]


def test_key_hash_secret_is_generated_once_kept_and_shared_by_operator_and_edges():
    out = render({})
    secret = out.get("Secret", f"{FULLNAME}-key-hash")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    value = secret_value(secret, "key-hash-secret")
    assert re.fullmatch(r"[A-Za-z0-9]{48}", value)
    template = (CHART / "templates" / "key-hash-secret.yaml").read_text()
    assert "streamfleet.keptSecretValue" in template
    for name, cname in ((EDGE, "edge"), (f"{FULLNAME}-operator", "operator")):
        pod = out.get("Deployment", name)["spec"]["template"]["spec"]
        c = container(pod, cname)
        path = env_map(c)["STREAMFLEET_KEY_HASH_SECRET_FILE"]
        mount = mount_for_path(c, path)
        assert mount.get("readOnly") is True
        vol = volume(pod, mount["name"])
        assert vol["secret"]["secretName"] == f"{FULLNAME}-key-hash", name
        item = vol["secret"]["items"][0]
        assert path.endswith("/" + item["path"]) and item["key"] == "key-hash-secret"
        assert "STREAMFLEET_KEY_HASH_SECRET" not in env_map(c), "the value never goes into the environment"
    assert env_map(container(out.get("Deployment", EDGE)["spec"]["template"]["spec"], "edge"))[
        "STREAMFLEET_LEGACY_KEY_HASHES"
    ] == "true"


def test_key_hash_existing_secret_and_legacy_off():
    values = {"keyHash": {"existingSecret": "fleet-key-hash", "existingSecretKey": "hmac", "acceptLegacy": False}}
    out, pod = edge_pod(values)
    assert out.find("Secret", f"{FULLNAME}-key-hash") is None
    for p in (pod, out.get("Deployment", f"{FULLNAME}-operator")["spec"]["template"]["spec"]):
        vol = volume(p, "key-hash-secret")
        assert vol["secret"]["secretName"] == "fleet-key-hash"
        assert vol["secret"]["items"] == [{"key": "hmac", "path": "secret"}]
    assert env_map(container(pod, "edge"))["STREAMFLEET_LEGACY_KEY_HASHES"] == "false"


def test_the_first_step_of_a_two_step_upgrade_keeps_the_secret_from_the_operator_only():
    out, pod = edge_pod({"keyHash": {"rewriteRecords": False}})
    assert volume(pod, "key-hash-secret")["secret"]["secretName"] == f"{FULLNAME}-key-hash"
    operator = out.get("Deployment", f"{FULLNAME}-operator")["spec"]["template"]["spec"]
    assert "STREAMFLEET_KEY_HASH_SECRET_FILE" not in env_map(container(operator, "operator"))
    assert all(v["name"] != "key-hash-secret" for v in operator["volumes"])


def test_an_edge_only_release_mounts_the_main_releases_key_hash_secret():
    out, pod = edge_pod({"operator": {"enabled": False}, "keyHash": {"existingSecret": "main-key-hash"}})
    assert volume(pod, "key-hash-secret")["secret"]["secretName"] == "main-key-hash"
    assert out.find("Secret", f"{FULLNAME}-key-hash") is None
    # A secret of its own would silently differ from the operator's: refused at render.
    with pytest.raises(helm.HelmError, match="keyHash.existingSecret is required for an edge-only release"):
        render({"operator": {"enabled": False}})


def test_public_service_exposes_rtmp_only():
    out = render({})
    svc = out.get("Service", EDGE)
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["spec"]["ports"] == [{"name": "rtmp", "port": 1935, "targetPort": "rtmp", "protocol": "TCP"}]
    assert svc["spec"]["externalTrafficPolicy"] == "Local"
    pod_labels = out.get("Deployment", EDGE)["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    for other in out.of_kind("Service"):
        for port in other["spec"]["ports"]:
            if port["targetPort"] in ("relay", 1936):
                assert other["spec"].get("clusterIP") == "None", "relay must stay internal"
                assert other["spec"]["type"] == "ClusterIP"


def test_load_balancer_options():
    options = {
        "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"},
        "loadBalancerSourceRanges": ["198.51.100.0/24"],
        "loadBalancerClass": "service.k8s.aws/nlb",
        "externalTrafficPolicy": "Cluster",
        "allocateLoadBalancerNodePorts": False,
    }
    svc = render({"edge": {"service": options}}).get("Service", EDGE)
    assert svc["metadata"]["annotations"] == options["annotations"]
    for key in ("loadBalancerSourceRanges", "loadBalancerClass", "externalTrafficPolicy", "allocateLoadBalancerNodePorts"):
        assert svc["spec"][key] == options[key], key


def test_cluster_ip_service_drops_load_balancer_fields():
    svc = render({"edge": {"service": {"type": "ClusterIP", "loadBalancerSourceRanges": ["10.0.0.0/8"]}}}).get(
        "Service", EDGE
    )
    assert svc["spec"]["type"] == "ClusterIP"
    assert "externalTrafficPolicy" not in svc["spec"]
    assert "loadBalancerSourceRanges" not in svc["spec"]


def test_headless_relay_service():
    out = render({})
    svc = out.get("Service", f"{EDGE}-relay")
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["ports"] == [{"name": "relay", "port": 1936, "targetPort": "relay", "protocol": "TCP"}]


def test_metrics_service():
    svc = render({}).get("Service", f"{EDGE}-metrics")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    assert svc["spec"]["ports"][0]["port"] == 9090


def test_spread_over_nodes_and_zones():
    out, pod = edge_pod()
    labels = out.get("Deployment", EDGE)["spec"]["template"]["metadata"]["labels"]
    term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= labels.items()
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    assert spread["labelSelector"]["matchLabels"].items() <= labels.items()
    assert spread["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "edge"


def test_hard_anti_affinity_and_custom_affinity():
    _, pod = edge_pod({"edge": {"podAntiAffinity": "hard"}})
    assert "requiredDuringSchedulingIgnoredDuringExecution" in pod["affinity"]["podAntiAffinity"]
    _, pod = edge_pod({"edge": {"podAntiAffinity": "none"}})
    assert "affinity" not in pod
    custom = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}
    _, pod = edge_pod({"edge": {"affinity": custom}})
    assert pod["affinity"] == custom


def test_pdb_allows_one_edge_down():
    out = render({})
    pdb = out.get("PodDisruptionBudget", EDGE)
    assert pdb["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": out.get("Deployment", EDGE)["spec"]["selector"]["matchLabels"]},
    }


def test_pdb_only_with_more_than_one_edge():
    assert render({"edge": {"replicaCount": 1}}).find("PodDisruptionBudget", EDGE) is None
    assert render({"edge": {"podDisruptionBudget": {"enabled": False}}}).find("PodDisruptionBudget", EDGE) is None
    hpa_one = {"edge": {"replicaCount": 1, "autoscaling": {"enabled": True, "minReplicas": 2}}}
    assert render(hpa_one).find("PodDisruptionBudget", EDGE) is not None


def test_hpa_scales_down_conservatively():
    out = render({"edge": {"autoscaling": {"enabled": True}}})
    assert "replicas" not in out.get("Deployment", EDGE)["spec"], "the HPA owns the replica count"
    hpa = out.get("HorizontalPodAutoscaler", EDGE)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": EDGE}
    assert hpa["spec"]["minReplicas"] >= 2
    down = hpa["spec"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 600
    for policy in down["policies"]:
        assert policy["type"] == "Pods" and policy["value"] == 1 and policy["periodSeconds"] >= 300
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]


def test_hpa_rejects_inverted_bounds():
    with pytest.raises(helm.HelmError, match="minReplicas"):
        render({"edge": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}})


def test_rolling_update_replaces_one_edge_at_a_time():
    strategy = render({}).get("Deployment", EDGE)["spec"]["strategy"]
    assert strategy["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_image_defaults_to_app_version_and_brief_name():
    out, pod = edge_pod()
    chart_meta = chart().metadata
    assert container(pod, "edge")["image"] == f"ghcr.io/streamfleet/streamfleet-edge:{chart_meta['appVersion']}"
    digest = "sha256:" + "b" * 64
    _, pod = edge_pod({"edge": {"image": {"digest": digest}}})
    assert container(pod, "edge")["image"] == f"ghcr.io/streamfleet/streamfleet-edge@{digest}"


def test_edges_never_get_an_api_token():
    out, pod = edge_pod()
    assert pod["automountServiceAccountToken"] is False
    assert out.get("ServiceAccount", EDGE)["automountServiceAccountToken"] is False
    bound = {
        s["name"]
        for b in out.of_kind("RoleBinding") + out.of_kind("ClusterRoleBinding")
        for s in b["subjects"]
    }
    assert pod["serviceAccountName"] not in bound
