"""Redis high availability: `redis.mode: sentinel` for the bundled Redis (3 Redis + 3 Sentinel pods,
anti-affinity, PDBs, the clients' redis+sentinel:// URL) and `redis.external.sentinel` for your
own Sentinels. The default stays one Redis pod."""

import helm_python as helm
import pytest

from chartkit import FULLNAME, container, env_map, render
from scenarios import EXTERNAL_SENTINEL, SENTINEL

REDIS = f"{FULLNAME}-redis"
SENTINELS = f"{FULLNAME}-sentinel"
CLIENTS = ((f"{FULLNAME}-edge", "edge"), (f"{FULLNAME}-operator", "operator"))
NS = "streamfleet"


def client_urls(out):
    urls = set()
    for deployment, name in CLIENTS:
        pod = out.get("Deployment", deployment)["spec"]["template"]["spec"]
        urls.add(env_map(container(pod, name))["STREAMFLEET_REDIS_URL"])
    (url,) = urls
    return url


def test_default_is_one_redis_pod_and_no_sentinel():
    out = render({})
    assert out.get("StatefulSet", REDIS)["spec"]["replicas"] == 1
    assert out.find("StatefulSet", SENTINELS) is None
    assert out.find("PodDisruptionBudget", REDIS) is None
    assert client_urls(out).startswith("redis://")


def test_sentinel_mode_runs_three_redis_and_three_sentinels():
    out = render(SENTINEL)
    redis = out.get("StatefulSet", REDIS)
    sentinels = out.get("StatefulSet", SENTINELS)
    assert redis["spec"]["replicas"] == 3 and sentinels["spec"]["replicas"] == 3
    # Stable per-pod DNS names through headless Services; no Service in front of all three Redis.
    assert redis["spec"]["serviceName"] == f"{REDIS}-headless"
    assert out.get("Service", f"{REDIS}-headless")["spec"]["clusterIP"] == "None"
    assert out.get("Service", SENTINELS)["spec"]["clusterIP"] == "None"
    assert out.find("Service", REDIS) is None
    script = container(redis["spec"]["template"]["spec"], "redis")["args"][0]
    for flag in ("--replica-announce-ip", "--min-replicas-to-write 1", "--maxmemory-policy noeviction",
                 '--masterauth "$REDIS_PASSWORD"', "SENTINEL get-master-addr-by-name streamfleet"):
        assert flag in script, flag
    conf = container(sentinels["spec"]["template"]["spec"], "sentinel")["args"][0]
    for line in ("sentinel monitor streamfleet $primary 6379 2", "sentinel down-after-milliseconds streamfleet 2000",
                 "sentinel failover-timeout streamfleet 10000", "sentinel auth-pass streamfleet $REDIS_PASSWORD",
                 "sentinel announce-hostnames yes"):
        assert line in conf, line


def test_clients_find_the_primary_through_the_three_sentinels():
    url = client_urls(render(SENTINEL))
    hosts = ",".join(f"{SENTINELS}-{i}.{SENTINELS}.{NS}.svc:26379" for i in range(3))
    assert url == f"redis+sentinel://{hosts}/streamfleet/0?replica_ack_ms=100"
    assert "@" not in url, "the password is a mounted file, never in the URL"


def pod_spec(out, name):
    return out.get("StatefulSet", name)["spec"]["template"]["spec"]


def test_anti_affinity_is_soft_by_default_and_hard_on_request():
    for name, component in ((REDIS, "redis"), (SENTINELS, "sentinel")):
        soft = pod_spec(render(SENTINEL), name)["affinity"]["podAntiAffinity"]
        (term,) = soft["preferredDuringSchedulingIgnoredDuringExecution"]
        assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
        assert term["podAffinityTerm"]["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == component
        hard = pod_spec(render({"redis": {"mode": "sentinel", "sentinel": {"antiAffinity": "hard"}}}), name)
        (req,) = hard["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert req["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == component


def test_an_explicit_redis_affinity_wins():
    mine = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["redis"]}]}]}}}
    spec = pod_spec(render({"redis": {"mode": "sentinel", "affinity": mine}}), REDIS)
    assert spec["affinity"] == mine


def test_pod_disruption_budgets_allow_one_pod_at_a_time():
    out = render(SENTINEL)
    for name, component in ((REDIS, "redis"), (SENTINELS, "sentinel")):
        pdb = out.get("PodDisruptionBudget", name)
        assert pdb["spec"]["maxUnavailable"] == 1
        assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == component
    off = render({"redis": {"mode": "sentinel", "sentinel": {"podDisruptionBudget": {"enabled": False}}}})
    assert off.find("PodDisruptionBudget", REDIS) is None


def test_network_policy_lets_replicas_and_sentinels_in():
    out = render({"redis": {"mode": "sentinel"}, "networkPolicy": {"enabled": True}})
    redis_from = out.get("NetworkPolicy", REDIS)["spec"]["ingress"][0]["from"]
    components = {p["podSelector"]["matchLabels"].get("app.kubernetes.io/component") for p in redis_from}
    assert {"edge", "operator", "redis", "sentinel"} <= components
    sentinel_np = out.get("NetworkPolicy", SENTINELS)
    assert sentinel_np["spec"]["ingress"][0]["ports"] == [{"port": "sentinel", "protocol": "TCP"}]


def test_external_sentinels():
    url = client_urls(render(EXTERNAL_SENTINEL))
    assert url == (
        "rediss+sentinel://s1.redis.example.internal:26379,s2.redis.example.internal:26379,[fd00::3]:26379"
        "/registry/2?replica_ack_ms=50&sentinel_auth=same"
    )
    out = render(EXTERNAL_SENTINEL)
    assert out.find("StatefulSet", REDIS) is None and out.find("StatefulSet", SENTINELS) is None


def test_external_sentinels_need_a_master_name():
    with pytest.raises(helm.HelmError, match="masterName is required"):
        render({"redis": {"bundled": False, "external": {"sentinel": {"hosts": ["s1:26379"]}}}})


def test_sentinel_mode_is_ignored_for_an_external_redis():
    out = render({"redis": {"bundled": False, "mode": "sentinel", "external": {"url": "redis://r:6379/0"}}})
    assert out.find("StatefulSet", SENTINELS) is None
    assert client_urls(out) == "redis://r:6379/0"
