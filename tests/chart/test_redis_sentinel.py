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
    for flag in ("--replica-announce-ip", "--min-replicas-to-write 1", "--repl-diskless-sync-delay 0",
                 "--maxmemory-policy noeviction",
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


def test_down_after_below_1500_ms_is_refused():
    # Below that a Sentinel can deem a just-promoted primary down and fail over a second time.
    with pytest.raises(helm.HelmError, match="downAfterMilliseconds"):
        render({"redis": {"mode": "sentinel", "sentinel": {"downAfterMilliseconds": 1000}}})
    out = render({"redis": {"mode": "sentinel", "sentinel": {"downAfterMilliseconds": 1500}}})
    conf = container(out.get("StatefulSet", SENTINELS)["spec"]["template"]["spec"], "sentinel")["args"][0]
    assert "sentinel down-after-milliseconds streamfleet 1500" in conf


def test_sentinel_mode_is_ignored_for_an_external_redis():
    out = render({"redis": {"bundled": False, "mode": "sentinel", "external": {"url": "redis://r:6379/0"}}})
    assert out.find("StatefulSet", SENTINELS) is None
    assert client_urls(out) == "redis://r:6379/0"


# ---- the rendered Redis and Sentinel commands, run for real ----------------------------------
# Each "pod" gets its own loopback address (127.0.0.11-13 for Redis, .21-23 for Sentinels) standing
# in for its DNS name, on free ports, with its own directory instead of /data.

import os  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

REDIS_IPS = [f"127.0.0.{11 + i}" for i in range(3)]
SENTINEL_IPS = [f"127.0.0.{21 + i}" for i in range(3)]
PASSWORD = "chart-test-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(ip, port, *args):
    env = {**os.environ, "REDISCLI_AUTH": PASSWORD}
    try:
        return subprocess.run(
            ["redis-cli", "-h", ip, "-p", str(port), *args], capture_output=True, text=True, timeout=3, env=env
        ).stdout.strip()
    except subprocess.TimeoutExpired:
        return ""


def wait_for(what, check, within=20.0):
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def substitute(script: str, me: str, tmp) -> str:
    for i in range(3):
        script = script.replace(f"{SENTINELS}-{i}.{SENTINELS}.{NS}.svc", SENTINEL_IPS[i])
        script = script.replace(f"{REDIS}-{i}.{REDIS}-headless.{NS}.svc", REDIS_IPS[i])
    script = script.replace(f"$POD_NAME.{REDIS}-headless.{NS}.svc", me)
    script = script.replace(f"$POD_NAME.{SENTINELS}.{NS}.svc", me)
    script = script.replace("--dir /data", f"--dir {tmp}").replace("--protected-mode no", f"--protected-mode no --bind {me}")
    script = script.replace("/data/sentinel.conf", f"{tmp}/sentinel.conf").replace('echo "dir /data"', f'echo "dir {tmp}"')
    return script.replace('echo "sentinel resolve-hostnames yes"', f'echo "bind {me}"\n  echo "sentinel resolve-hostnames yes"')


def test_rendered_sentinel_mode_forms_a_cluster_that_fails_over_and_takes_its_old_primary_back(tmp_path):
    if not all(shutil.which(t) for t in ("redis-server", "redis-sentinel", "redis-cli", "timeout")):
        pytest.skip("redis-server/redis-sentinel/redis-cli not installed (scripts/test installs them)")
    redis_port, sentinel_port = free_port(), free_port()
    values = {"redis": {"mode": "sentinel", "port": redis_port,
                        "sentinel": {"port": sentinel_port, "downAfterMilliseconds": 1500, "failoverTimeout": 3000}}}
    out = render(values)
    redis_script = container(pod_spec(out, REDIS), "redis")["args"][0]
    sentinel_script = container(pod_spec(out, SENTINELS), "sentinel")["args"][0]
    env = {**os.environ, "REDIS_PASSWORD": PASSWORD}
    procs = {}

    def start(kind, i):
        ip = (REDIS_IPS if kind == "redis" else SENTINEL_IPS)[i]
        d = tmp_path / f"{kind}-{i}"
        d.mkdir(exist_ok=True)
        script = substitute(redis_script if kind == "redis" else sentinel_script, ip, d)
        procs[(kind, i)] = subprocess.Popen(["sh", "-c", script], env=env, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, start_new_session=True)

    def primary():
        answers = {cli(ip, sentinel_port, "SENTINEL", "get-master-addr-by-name", "streamfleet").split("\n")[0]
                   for ip in SENTINEL_IPS}
        return answers.pop() if len(answers) == 1 else None

    try:
        for i in range(3):
            start("redis", i)
            wait_for(f"redis {i} up", lambda i=i: cli(REDIS_IPS[i], redis_port, "ping") == "PONG")
        for i in range(3):
            start("sentinel", i)
        # A fresh install: redis-0 is the primary, the others replicate it, the Sentinels agree.
        assert wait_for("the Sentinels to agree", primary) == REDIS_IPS[0]
        for i in (1, 2):
            wait_for(f"redis {i} in sync", lambda i=i: "master_link_status:up" in cli(REDIS_IPS[i], redis_port, "info", "replication"))
        wait_for("3 Sentinels that know each other",
                 lambda: all(cli(ip, sentinel_port, "SENTINEL", "master", "streamfleet").count("\n") > 0
                             and "num-other-sentinels\n2" in cli(ip, sentinel_port, "SENTINEL", "master", "streamfleet")
                             for ip in SENTINEL_IPS))
        assert cli(REDIS_IPS[0], redis_port, "config", "get", "min-replicas-to-write").split() == ["min-replicas-to-write", "1"]

        # The primary dies: a replica is promoted.
        procs[("redis", 0)].kill()
        procs[("redis", 0)].wait(timeout=10)
        new = wait_for("a failover", lambda: (p := primary()) and p != REDIS_IPS[0] and p)
        assert cli(new, redis_port, "role").split("\n")[0] == "master"

        # The old primary's pod restarts (empty): it asks the Sentinels and follows the new primary.
        start("redis", 0)
        wait_for("the old primary back as an in-sync replica", lambda: (
            "role:slave" in (info := cli(REDIS_IPS[0], redis_port, "info", "replication"))
            and f"master_host:{new}" in info and "master_link_status:up" in info))
        assert primary() == new
    finally:
        for p in procs.values():
            try:
                os.killpg(p.pid, 9)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)
