"""Every toggle renders, lints clean and produces objects the Kubernetes API would accept."""

import copy

import kubernetes_validate
import pytest

from chartkit import CRD_KINDS, KUBE_VERSIONS, lint, render, validate_k8s
from scenarios import SCENARIOS


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_scenario_renders_valid_objects(scenario):
    out = render(SCENARIOS[scenario])
    assert out.docs, "nothing rendered"
    seen = set()
    for doc in out.docs:
        meta = doc["metadata"]
        key = (doc["apiVersion"], doc["kind"], meta.get("namespace"), meta["name"])
        assert key not in seen, f"rendered twice: {key}"
        seen.add(key)
        assert len(meta["name"]) <= 63, meta["name"]
        assert meta["labels"]["app.kubernetes.io/instance"] == "sf", key
        if doc["kind"] in CRD_KINDS:
            continue
        for version in KUBE_VERSIONS:
            try:
                validate_k8s(doc, version)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                pytest.fail(f"{doc['kind']}/{meta['name']} invalid for Kubernetes {version}: {path}: {e.message}")


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_scenario_lints_without_errors_or_warnings(scenario):
    report = lint(SCENARIOS[scenario])
    assert report["errors"] == []
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert serious == []


def test_namespaced_objects_go_to_the_release_namespace():
    out = render({}, namespace="media")
    for doc in out.docs:
        if doc["kind"] in ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"):
            assert "namespace" not in doc["metadata"]
        else:
            assert doc["metadata"]["namespace"] == "media", doc["metadata"]["name"]


def test_schema_validation_is_live():
    """The validator used above must be able to fail: a typo in a rendered Deployment is caught."""
    deployment = copy.deepcopy(render({}).get("Deployment", "sf-streamfleet-edge"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_k8s(deployment, KUBE_VERSIONS[-1])


def test_lint_reports_an_invalid_value():
    report = lint({"edge": {"service": {"type": "Ingress"}}})
    assert report["errors"], "a bad Service type must be a lint error"


def test_default_object_inventory():
    names = render({}).names()
    expected = {
        "CustomResourceDefinition/livestreams.streamfleet.io",
        "ServiceAccount/sf-streamfleet-operator",
        "ClusterRole/sf-streamfleet-operator",
        "ClusterRoleBinding/sf-streamfleet-operator",
        "Role/sf-streamfleet-operator",
        "RoleBinding/sf-streamfleet-operator",
        "Deployment/sf-streamfleet-operator",
        "Service/sf-streamfleet-operator-metrics",
        "PodDisruptionBudget/sf-streamfleet-operator",
        "ServiceAccount/sf-streamfleet-edge",
        "Deployment/sf-streamfleet-edge",
        "Service/sf-streamfleet-edge",
        "Service/sf-streamfleet-edge-relay",
        "Service/sf-streamfleet-edge-metrics",
        "PodDisruptionBudget/sf-streamfleet-edge",
        "Secret/sf-streamfleet-relay",
        "Secret/sf-streamfleet-api",
        "Secret/sf-streamfleet-key-hash",
        "NetworkPolicy/sf-streamfleet-edge",
        "StatefulSet/sf-streamfleet-redis",
        "Service/sf-streamfleet-redis",
        "Secret/sf-streamfleet-redis",
    }
    assert set(names) == expected
