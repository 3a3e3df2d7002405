"""Every pod of every scenario runs non-root, read-only, without capabilities or escalation."""

import pytest

from chartkit import render
from scenarios import SCENARIOS


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_pods_are_locked_down(scenario):
    pods = render(SCENARIOS[scenario]).pod_specs()
    assert pods, "no workloads rendered"
    for name, pod in pods:
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True, name
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert psc.get("runAsUser", 1) != 0, name
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(key), (name, key)
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert sc["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert sc["capabilities"]["drop"] == ["ALL"], (name, c["name"])
            assert "add" not in sc["capabilities"], (name, c["name"])
            assert not sc.get("privileged"), (name, c["name"])
            # A read-only root needs somewhere writable for temporary files.
            assert any(m["mountPath"] == "/tmp" for m in c.get("volumeMounts", [])), (name, c["name"])


def test_images_run_as_the_distroless_nonroot_user():
    for name, pod in render({}).pod_specs():
        if "redis" in name:
            continue
        assert pod["securityContext"]["runAsUser"] == 65532, name
        assert pod["securityContext"]["runAsGroup"] == 65532, name


def test_no_secret_values_in_pod_specs():
    out = render({})
    secrets = [v for s in out.of_kind("Secret") for v in s.get("data", {}).values()]
    assert secrets
    text = repr([d for d in out.docs if d["kind"] != "Secret"])
    for value in secrets:
        assert value not in text
