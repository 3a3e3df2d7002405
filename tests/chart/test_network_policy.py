"""NetworkPolicies: RTMP open, the relay port only from edges (on by default), Redis only from the fleet."""

from chartkit import FULLNAME, render

EDGE = f"{FULLNAME}-edge"
OPERATOR = f"{FULLNAME}-operator"
REDIS = f"{FULLNAME}-redis"


def pod_labels(out, kind, name):
    return out.get(kind, name)["spec"]["template"]["metadata"]["labels"]


def allowed_from(policy, port):
    """The `from` peers of the rule(s) opening `port`; None means from anywhere."""
    peers = []
    for rule in policy["spec"]["ingress"]:
        if any(p["port"] == port for p in rule["ports"]):
            if "from" not in rule:
                return None
            peers.extend(rule["from"])
    assert peers, f"port {port} not opened"
    return peers


def selects(peer, labels):
    return set(peer) == {"podSelector"} and peer["podSelector"]["matchLabels"].items() <= labels.items()


def test_only_the_edges_relay_policy_by_default():
    """The relay port is closed to everything but edges out of the box; nothing else an edge
    serves is restricted, and no other workload gets a policy."""
    out = render({})
    policies = out.of_kind("NetworkPolicy")
    assert [p["metadata"]["name"] for p in policies] == [EDGE]
    policy = policies[0]
    edge_labels = pod_labels(out, "Deployment", EDGE)
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= edge_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    relay_peers = allowed_from(policy, "relay")
    assert relay_peers and all(selects(p, edge_labels) for p in relay_peers)
    assert not any(selects(p, pod_labels(out, "Deployment", OPERATOR)) for p in relay_peers)
    # Every other port an edge container serves stays open to everyone: the policy must never
    # cut RTMP, metrics or the API by being on.
    container_ports = {
        p["name"] for c in out.get("Deployment", EDGE)["spec"]["template"]["spec"]["containers"] for p in c["ports"]
    }
    assert container_ports == {"rtmp", "relay", "http"}
    for port in container_ports - {"relay"}:
        assert allowed_from(policy, port) is None, port


def test_the_relay_policy_can_be_turned_off():
    assert render({"networkPolicy": {"relay": {"enabled": False}}}).of_kind("NetworkPolicy") == []


def test_the_default_relay_policy_honours_rtmp_and_metrics_sources():
    rtmp_from = [{"ipBlock": {"cidr": "203.0.113.0/24"}}]
    out = render({"networkPolicy": {"rtmpFrom": rtmp_from}})
    assert allowed_from(out.get("NetworkPolicy", EDGE), "rtmp") == rtmp_from
    assert out.find("NetworkPolicy", OPERATOR) is None


def test_policies_cover_every_workload():
    out = render({"networkPolicy": {"enabled": True}})
    workloads = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in out.docs if d["kind"] in ("Deployment", "StatefulSet")}
    for name, labels in workloads.items():
        matching = [p for p in out.of_kind("NetworkPolicy") if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]
        assert len(matching) == 1, name
        assert matching[0]["spec"]["policyTypes"] == ["Ingress"]


def test_relay_only_from_edges_and_rtmp_from_anywhere():
    out = render({"networkPolicy": {"enabled": True}})
    policy = out.get("NetworkPolicy", EDGE)
    edge_labels = pod_labels(out, "Deployment", EDGE)
    operator_labels = pod_labels(out, "Deployment", OPERATOR)
    assert allowed_from(policy, "rtmp") is None
    relay_peers = allowed_from(policy, "relay")
    assert all(selects(p, edge_labels) for p in relay_peers)
    assert not any(selects(p, operator_labels) for p in relay_peers)


def test_redis_only_from_edges_and_operator():
    out = render({"networkPolicy": {"enabled": True}})
    peers = allowed_from(out.get("NetworkPolicy", REDIS), "redis")
    edge_labels = pod_labels(out, "Deployment", EDGE)
    operator_labels = pod_labels(out, "Deployment", OPERATOR)
    assert len(peers) == 2
    assert any(selects(p, edge_labels) for p in peers)
    assert any(selects(p, operator_labels) for p in peers)
    assert all(selects(p, edge_labels) or selects(p, operator_labels) for p in peers)
    # Named ports resolve against the pods' container ports.
    redis_ports = {p["name"] for c in out.get("StatefulSet", REDIS)["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
    assert "redis" in redis_ports


def test_restricted_sources():
    rtmp_from = [{"ipBlock": {"cidr": "203.0.113.0/24"}}]
    metrics_from = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    out = render({"networkPolicy": {"enabled": True, "rtmpFrom": rtmp_from, "metricsFrom": metrics_from}})
    edge = out.get("NetworkPolicy", EDGE)
    assert allowed_from(edge, "rtmp") == rtmp_from
    assert allowed_from(edge, "http") == metrics_from
    assert allowed_from(out.get("NetworkPolicy", OPERATOR), "http") == metrics_from


def test_no_redis_policy_for_external_redis():
    out = render({"networkPolicy": {"enabled": True}, "redis": {"bundled": False, "external": {"url": "redis://r:6379"}}})
    assert out.find("NetworkPolicy", REDIS) is None
    assert out.find("NetworkPolicy", EDGE) is not None


def test_an_edge_only_release_reaches_the_main_release_relay_and_redis():
    from scenarios import SCENARIOS

    main = render({"networkPolicy": {"enabled": True}})
    pool = render(SCENARIOS["edge-pool"], release="eu")
    pool_labels = pod_labels(pool, "Deployment", "eu-streamfleet-edge")
    assert pool_labels["app.kubernetes.io/instance"] == "eu"
    assert any(selects(p, pool_labels) for p in allowed_from(main.get("NetworkPolicy", EDGE), "relay"))
    assert any(selects(p, pool_labels) for p in allowed_from(main.get("NetworkPolicy", REDIS), "redis"))
    # ... and nothing that is not a Streamfleet edge or operator does.
    stranger = {"app.kubernetes.io/name": "other", "app.kubernetes.io/component": "edge"}
    assert not any(selects(p, stranger) for p in allowed_from(main.get("NetworkPolicy", REDIS), "redis"))
    redis_by_edge = {"app.kubernetes.io/name": "streamfleet", "app.kubernetes.io/component": "redis"}
    assert not any(selects(p, redis_by_edge) for p in allowed_from(main.get("NetworkPolicy", EDGE), "relay"))
