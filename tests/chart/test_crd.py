"""The chart's CRD is the generated crds/livestream.yaml, and the examples are valid LiveStreams."""

import copy
import subprocess

import pytest
import yaml

from chartkit import CRD_CHART_COPY, CRD_SOURCE, ROOT, load_yaml_docs, render
from crdschema import LiveStreamValidator

CRD_NAME = "livestreams.streamfleet.io"
CHART_LABEL_KEYS = {
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
}


def generated_crd() -> dict:
    assert CRD_SOURCE.is_file(), (
        f"{CRD_SOURCE.relative_to(ROOT)} is missing: generate it with "
        "`cargo run -q -p streamfleet-operator -- crd > crds/livestream.yaml`"
    )
    docs = load_yaml_docs(CRD_SOURCE)
    assert len(docs) == 1, "crds/livestream.yaml must hold exactly the LiveStream CRD"
    return docs[0]


def without_chart_metadata(crd: dict) -> dict:
    """The rendered CRD minus what the chart adds (labels, the keep annotation)."""
    crd = copy.deepcopy(crd)
    meta = crd["metadata"]
    labels = {k: v for k, v in meta.pop("labels", {}).items() if k not in CHART_LABEL_KEYS}
    annotations = {
        k: v for k, v in meta.pop("annotations", {}).items() if k != "helm.sh/resource-policy"
    }
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    return crd


def test_chart_copy_is_byte_identical_to_generated_crd():
    generated_crd()
    assert CRD_CHART_COPY.read_bytes() == CRD_SOURCE.read_bytes(), (
        "charts/streamfleet/files/livestream.crd.yaml differs from crds/livestream.yaml: "
        "run scripts/sync-chart-crd"
    )


def test_rendered_crd_equals_generated_crd():
    rendered = render({}).get("CustomResourceDefinition", CRD_NAME)
    assert without_chart_metadata(rendered) == generated_crd()


def test_sync_script_check_mode_agrees():
    result = subprocess.run(
        [str(ROOT / "scripts" / "sync-chart-crd"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_crd_is_kept_by_default_and_on_request_only():
    kept = render({}).get("CustomResourceDefinition", CRD_NAME)
    assert kept["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    not_kept = render({"crds": {"keep": False}}).get("CustomResourceDefinition", CRD_NAME)
    assert "helm.sh/resource-policy" not in not_kept["metadata"].get("annotations", {})
    assert without_chart_metadata(not_kept) == generated_crd()


def test_crd_can_be_left_out():
    out = render({"crds": {"enabled": False}})
    assert out.of_kind("CustomResourceDefinition") == []
    assert "kubectl apply -f crds/livestream.yaml" in out.notes


def test_crd_names_match_the_rbac_and_docs():
    crd = render({}).get("CustomResourceDefinition", CRD_NAME)
    assert crd["spec"]["group"] == "streamfleet.io"
    assert crd["spec"]["names"]["plural"] == "livestreams"
    assert "lst" in crd["spec"]["names"]["shortNames"]
    assert crd["spec"]["scope"] == "Namespaced"
    storage = [v for v in crd["spec"]["versions"] if v.get("storage")]
    assert len(storage) == 1 and storage[0]["subresources"] == {"status": {}}


# ---- examples ----------------------------------------------------------------------------------

EXAMPLE_FILES = sorted((ROOT / "examples").glob("*.yaml"))
MY_EXAMPLES = {
    "basic.yaml",
    "generated-key.yaml",
    "viewer-limited.yaml",
    "reject-takeover.yaml",
    "disabled.yaml",
    "edge-selector.yaml",
}


@pytest.fixture(scope="module")
def validator():
    return LiveStreamValidator(generated_crd())


def test_every_documented_example_exists():
    assert MY_EXAMPLES <= {p.name for p in EXAMPLE_FILES}


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_is_valid(path, validator):
    docs = load_yaml_docs(path)
    streams = [d for d in docs if d.get("kind") == "LiveStream"]
    assert streams, f"{path.name} holds no LiveStream"
    secrets = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Secret"}
    for ls in streams:
        assert validator.errors(ls) == [], ls["metadata"]["name"]
        ref = ls["spec"].get("publishKeySecretRef")
        if ref and ref["name"] in secrets:
            secret = secrets[ref["name"]]
            data = {**secret.get("data", {}), **secret.get("stringData", {})}
            assert ref.get("key", "publishKey") in data, "the referenced key is not in the Secret"


def test_examples_cover_the_common_cases():
    specs = [
        d["spec"]
        for p in EXAMPLE_FILES
        if p.name in MY_EXAMPLES
        for d in load_yaml_docs(p)
        if d.get("kind") == "LiveStream"
    ]
    assert any("publishKeySecretRef" in s for s in specs)
    assert any("publishKeySecretRef" not in s for s in specs)
    assert any(s.get("maxViewers") for s in specs)
    assert any(s.get("takeoverPolicy") == "Reject" for s in specs)
    assert any(s.get("enabled") is False for s in specs)
    assert any(s.get("edgeSelector") for s in specs)


BAD = {
    "playback name not a DNS label": ({"playbackName": "Main_Stage"}, "playbackName"),
    "playback name too long": ({"playbackName": "a" * 64}, "playbackName"),
    "zero viewers": ({"maxViewers": 0}, "maxViewers"),
    "unknown takeover policy": ({"takeoverPolicy": "Steal"}, "takeoverPolicy"),
    "empty secret name": ({"publishKeySecretRef": {"name": ""}}, "publishKeySecretRef"),
    "secret ref without name": ({"publishKeySecretRef": {"key": "k"}}, "name"),
    "typo in a field": ({"maxViewer": 3}, "maxViewer"),
    "description too long": ({"description": "x" * 1025}, "description"),
    "edge selector not strings": ({"edgeSelector": {"region": 1}}, "edgeSelector"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_validator_rejects_bad_livestreams(case, validator):
    spec, expected = BAD[case]
    obj = {
        "apiVersion": "streamfleet.io/v1alpha1",
        "kind": "LiveStream",
        "metadata": {"name": "bad"},
        "spec": spec,
    }
    errors = validator.errors(obj)
    assert errors, f"{case} was accepted"
    assert any(expected in e for e in errors), errors


def test_crd_file_is_plain_yaml():
    # One document, no templating: `kubectl apply -f crds/livestream.yaml` must work as is.
    text = CRD_SOURCE.read_text()
    assert "{{" not in text
    assert len(list(yaml.safe_load_all(text))) == 1


def test_resource_name_must_be_a_dns_label_without_playback_name(validator):
    obj = {
        "apiVersion": "streamfleet.io/v1alpha1",
        "kind": "LiveStream",
        "metadata": {"name": "Main.Stage"},
        "spec": {},
    }
    assert validator.errors(obj), "a non-DNS-label name without spec.playbackName was accepted"
    obj["spec"]["playbackName"] = "main-stage"
    assert validator.errors(obj) == []
