"""Bundled Redis (password, persistence, noeviction) or an external one, wired into edges and the
operator; the bundled container's command line is run against a real redis-server."""

import os
import shlex
import shutil
import socket
import subprocess
import time

import helm_python as helm
import pytest

from chartkit import FULLNAME, container, env_map, mount_for_path, render, secret_value, volume
from scenarios import EXTERNAL_REDIS

REDIS = f"{FULLNAME}-redis"
CLIENTS = ((f"{FULLNAME}-edge", "edge"), (f"{FULLNAME}-operator", "operator"))


def redis_container(values=None):
    out = render(values)
    sts = out.get("StatefulSet", REDIS)
    pod = sts["spec"]["template"]["spec"]
    return out, sts, pod, container(pod, "redis")


def command_line(c) -> str:
    assert c["command"] == ["sh", "-c"]
    (script,) = c["args"]
    return script


def redis_args(c) -> list[str]:
    words = shlex.split(command_line(c))
    assert words[:2] == ["exec", "redis-server"]
    return words[2:]


def option(args, name):
    values = [args[i + 1] for i, a in enumerate(args) if a == name]
    assert values, f"{name} not set"
    return values[-1]


def test_noeviction_always():
    for values in ({}, {"redis": {"persistence": {"enabled": True}}}, {"redis": {"maxmemory": "100mb"}}):
        _, _, _, c = redis_container(values)
        assert option(redis_args(c), "--maxmemory-policy") == "noeviction"


def test_persistence_off_uses_empty_dir_and_no_aof():
    _, sts, pod, c = redis_container()
    args = redis_args(c)
    assert option(args, "--appendonly") == "no"
    assert "volumeClaimTemplates" not in sts["spec"]
    assert volume(pod, "data") == {"name": "data", "emptyDir": {}}
    assert sts["spec"]["replicas"] == 1


def test_persistence_on_uses_a_pvc_and_aof():
    _, sts, pod, c = redis_container({"redis": {"persistence": {"enabled": True, "storageClass": "fast", "size": "5Gi"}}})
    args = redis_args(c)
    assert option(args, "--appendonly") == "yes"
    assert option(args, "--appendfsync") == "always"
    assert option(args, "--dir") == "/data"
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["storageClassName"] == "fast"
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert all(v["name"] != "data" for v in pod["volumes"])
    assert mount_for_path(c, "/data/appendonlydir")["name"] == "data"


def test_generated_password_is_kept_and_shared():
    out, _, _, c = redis_container()
    secret = out.get("Secret", REDIS)
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert len(secret_value(secret, "redis-password")) == 32
    env = env_map(c)
    assert env["REDIS_PASSWORD"] == {"secretKeyRef": {"name": REDIS, "key": "redis-password"}}
    assert '--requirepass "$REDIS_PASSWORD"' in command_line(c)
    assert_clients_read_password_from(out, REDIS, "redis-password")


def assert_clients_read_password_from(out, secret_name, key):
    for deployment, name in CLIENTS:
        pod = out.get("Deployment", deployment)["spec"]["template"]["spec"]
        c = container(pod, name)
        path = env_map(c)["STREAMFLEET_REDIS_PASSWORD_FILE"]
        mount = mount_for_path(c, path)
        vol = volume(pod, mount["name"])
        assert vol["secret"]["secretName"] == secret_name, deployment
        (item,) = vol["secret"]["items"]
        assert item["key"] == key and path.endswith("/" + item["path"]), deployment
        assert "@" not in env_map(c)["STREAMFLEET_REDIS_URL"], "no password in the URL"


def test_existing_password_secret():
    out, _, _, c = redis_container({"redis": {"auth": {"existingSecret": "my-redis", "existingSecretPasswordKey": "pw"}}})
    assert out.find("Secret", REDIS) is None
    assert env_map(c)["REDIS_PASSWORD"] == {"secretKeyRef": {"name": "my-redis", "key": "pw"}}
    assert_clients_read_password_from(out, "my-redis", "pw")


def test_no_password():
    out, _, _, c = redis_container({"redis": {"auth": {"enabled": False}}})
    assert out.find("Secret", REDIS) is None
    assert "REDIS_PASSWORD" not in env_map(c)
    assert "--requirepass" not in command_line(c)
    for deployment, name in CLIENTS:
        pod = out.get("Deployment", deployment)["spec"]["template"]["spec"]
        assert "STREAMFLEET_REDIS_PASSWORD_FILE" not in env_map(container(pod, name))
        assert all(v["name"] != "redis-password" for v in pod["volumes"])


def test_clients_reach_the_bundled_service():
    out = render({})
    svc = out.get("Service", REDIS)
    port = svc["spec"]["ports"][0]["port"]
    sts = out.get("StatefulSet", REDIS)
    assert svc["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    for deployment, name in CLIENTS:
        pod = out.get("Deployment", deployment)["spec"]["template"]["spec"]
        url = env_map(container(pod, name))["STREAMFLEET_REDIS_URL"]
        assert url == f"redis://{REDIS}.streamfleet.svc:{port}/0"


def test_external_redis():
    out = render(EXTERNAL_REDIS)
    assert out.find("StatefulSet", REDIS) is None
    assert out.find("Service", REDIS) is None
    assert out.find("Secret", REDIS) is None
    for deployment, name in CLIENTS:
        pod = out.get("Deployment", deployment)["spec"]["template"]["spec"]
        assert env_map(container(pod, name))["STREAMFLEET_REDIS_URL"] == "rediss://redis.example.internal:6380/0"
    assert_clients_read_password_from(out, "registry-redis", "password")


def test_external_redis_needs_a_url():
    with pytest.raises(helm.HelmError, match=r"redis.external.url \(or redis.external.sentinel.hosts\) is required"):
        render({"redis": {"bundled": False}})


# ---- the rendered command against a real redis-server ----------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_cli(port, *args, password=None):
    env = dict(os.environ)
    env.pop("REDISCLI_AUTH", None)
    if password:
        env["REDISCLI_AUTH"] = password
    return subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True, text=True, timeout=10, env=env,
    ).stdout.strip()


@pytest.mark.parametrize("persistence", [False, True], ids=["memory", "aof"])
def test_rendered_command_starts_a_working_redis(tmp_path, persistence):
    if not (shutil.which("redis-server") and shutil.which("redis-cli")):
        pytest.skip("redis-server/redis-cli not installed (scripts/test installs them)")
    values = {"redis": {"persistence": {"enabled": persistence}, "maxmemory": "64mb"}}
    out, _, _, c = redis_container(values)
    port = free_port()
    # The pod's command, pointed at a private port and directory and bound to loopback only.
    script = command_line(c).replace(f"--port {c['ports'][0]['containerPort']}", f"--port {port}")
    script = script.replace("--dir /data", f"--dir {tmp_path}") + " --bind 127.0.0.1"
    password = secret_value(out.get("Secret", REDIS), "redis-password")
    env = {**os.environ, "REDIS_PASSWORD": password}
    proc = subprocess.Popen(["sh", "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while redis_cli(port, "ping", password=password) != "PONG":
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "redis did not come up"
            time.sleep(0.05)
        assert "NOAUTH" in redis_cli(port, "ping") or "Authentication" in redis_cli(port, "ping")
        assert redis_cli(port, "config", "get", "maxmemory-policy", password=password).split() == ["maxmemory-policy", "noeviction"]
        aof = redis_cli(port, "config", "get", "appendonly", password=password).split()[1]
        assert aof == ("yes" if persistence else "no")
        # The readiness probe's command succeeds with REDISCLI_AUTH, as the pod sets it.
        probe = c["readinessProbe"]["exec"]["command"]
        assert probe[:2] == ["sh", "-c"]
        ok = subprocess.run(
            ["sh", "-c", probe[2].replace(f"-p {c['ports'][0]['containerPort']}", f"-h 127.0.0.1 -p {port}")],
            env={**os.environ, "REDISCLI_AUTH": password}, timeout=10,
        )
        assert ok.returncode == 0
        bad = subprocess.run(
            ["sh", "-c", probe[2].replace(f"-p {c['ports'][0]['containerPort']}", f"-h 127.0.0.1 -p {port}")],
            env={**os.environ, "REDISCLI_AUTH": "wrong"}, timeout=10,
        )
        assert bad.returncode != 0, "the probe must fail when Redis refuses the client"
    finally:
        proc.kill()
        proc.wait(timeout=10)
