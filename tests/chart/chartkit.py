"""Shared helpers for the chart tests: render the chart with Helm's own engine (helm-python-sdk,
which binds Helm's Go SDK), split the output into objects, validate them against the Kubernetes
JSON schemas, and the shared contracts (metric names) the chart must agree with."""

from __future__ import annotations

import base64
import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "streamfleet"
CRD_SOURCE = ROOT / "crds" / "livestream.yaml"
CRD_CHART_COPY = CHART / "files" / "livestream.crd.yaml"

RELEASE = "sf"
NAMESPACE = "streamfleet"
FULLNAME = "sf-streamfleet"

# Kubernetes versions every rendered object must be valid for: the chart's floor (kubeVersion
# >=1.30) and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS = ("1.30", "1.37")

# Kinds served by CRDs that kubernetes-validate has no schema for; the monitoring tests check
# their structure instead.
CRD_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule", "LiveStream", "Certificate"}

# The metric names of the shared contract (BRIEF "Metrics"). Dashboards and alerts may use only
# these (plus Prometheus' own `up`).
EDGE_METRICS = {
    "publishers_active",
    "players_active",
    "connections_active",
    "publish_rejections_total",
    "takeovers_total",
    "lease_renewals_total",
    "lease_renew_failures_total",
    "lease_losses_total",
    "bytes_received_total",
    "bytes_sent_total",
    "slow_player_dropped_messages_total",
    "slow_player_disconnects_total",
    "time_to_first_frame_seconds",
    "publish_admission_seconds",
    "handshake_failures_total",
    "connection_duration_seconds",
    "registry_up",
    "draining",
    "stream_players",
    "stream_ingest_bitrate_kbps",
    "relay_pulls_active",
    # stream health (docs/edge.md "Stream health")
    "stream_video_fps",
    "stream_keyframe_interval_seconds",
    "stream_healthy",
    "stream_media_info",
    "stream_stalls_total",
    "stream_timestamp_anomalies_total",
    "tls_certificate_stale",
}
OPERATOR_METRICS = {
    "reconciles_total",
    "reconcile_errors_total",
    "reconcile_duration_seconds",
    "streams",
    "is_leader",
}
HISTOGRAMS = {
    "streamfleet_edge_time_to_first_frame_seconds",
    "streamfleet_edge_publish_admission_seconds",
    "streamfleet_edge_connection_duration_seconds",
    "streamfleet_operator_reconcile_duration_seconds",
}
CONTRACT_METRICS = {f"streamfleet_edge_{m}" for m in EDGE_METRICS} | {
    f"streamfleet_operator_{m}" for m in OPERATOR_METRICS
}


def series_is_in_contract(name: str) -> bool:
    """A series name the exporters produce: a contract metric, or a histogram's _bucket/_sum/_count."""
    if name in CONTRACT_METRICS:
        return True
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in HISTOGRAMS:
            return True
    return False


@dataclass
class Rendered:
    """One `helm template` result: the objects, and NOTES.txt."""

    docs: list[dict[str, Any]]
    notes: str
    files: dict[str, str] = field(default_factory=dict)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}: {self.names()}"
        return found[0]

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        found = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name]
        return found[0] if found else None

    def names(self) -> list[str]:
        return sorted(f"{d['kind']}/{d['metadata']['name']}" for d in self.docs)

    def pod_specs(self) -> list[tuple[str, dict[str, Any]]]:
        """(workload name, pod spec) of every Deployment and StatefulSet."""
        return [
            (d["metadata"]["name"], d["spec"]["template"]["spec"])
            for d in self.docs
            if d["kind"] in ("Deployment", "StatefulSet")
        ]


@functools.lru_cache(maxsize=1)
def chart() -> helm.Chart:
    return helm.Chart.load(str(CHART))


# The edge and operator images have no default (they are not published; an install without them
# fails, see test_images.py), so every other test renders as a user who followed the README.
IMAGES = {
    "edge": {"image": {"repository": "ghcr.io/streamfleet/streamfleet-edge"}},
    "operator": {"image": {"repository": "ghcr.io/streamfleet/streamfleet-operator"}},
}


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` deep-merged onto `base` (as repeated `-f`/`--set` do)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def render(
    values: dict[str, Any] | None = None,
    *,
    namespace: str = NAMESPACE,
    release: str = RELEASE,
    images: bool = True,
) -> Rendered:
    """Render like `helm install <release> charts/streamfleet -n <namespace> --set
    edge.image.repository=… --set operator.image.repository=…` (offline: `lookup` finds
    nothing); `images=False` leaves the image repositories to `values`."""
    values = merged(IMAGES, values or {}) if images else (values or {})
    return _render_cached(json.dumps(values, sort_keys=True), namespace, release)


@functools.lru_cache(maxsize=None)
def _render_cached(values_json: str, namespace: str, release: str) -> Rendered:
    out = chart().render(
        values=json.loads(values_json), name=release, namespace=namespace, is_install=True
    )
    docs: list[dict[str, Any]] = []
    notes = ""
    for path, text in out.items():
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append(doc)
    return Rendered(docs=docs, notes=notes, files=dict(out))


def lint(values: dict[str, Any] | None = None) -> dict[str, Any]:
    values = merged(IMAGES, values or {})
    return helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE, kube_version="v1.30.0")


def validate_k8s(doc: dict[str, Any], version: str) -> None:
    """Validate against the Kubernetes OpenAPI schema (strict: unknown fields are errors)."""
    kubernetes_validate.validate(doc, version, strict=True)


def secret_value(secret: dict[str, Any], key: str) -> str:
    if "stringData" in secret and key in secret["stringData"]:
        return secret["stringData"][key]
    return base64.b64decode(secret["data"][key]).decode()


def container(pod_spec: dict[str, Any], name: str) -> dict[str, Any]:
    found = [c for c in pod_spec["containers"] if c["name"] == name]
    assert len(found) == 1, f"container {name} not in {[c['name'] for c in pod_spec['containers']]}"
    return found[0]


def env_map(c: dict[str, Any]) -> dict[str, Any]:
    """Env name -> value, or -> valueFrom for references. Duplicate names are a bug."""
    names = [e["name"] for e in c.get("env", [])]
    assert len(names) == len(set(names)), f"duplicate env vars in {c['name']}: {names}"
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def volume(pod_spec: dict[str, Any], name: str) -> dict[str, Any]:
    found = [v for v in pod_spec.get("volumes", []) if v["name"] == name]
    assert len(found) == 1, f"volume {name} not in pod spec"
    return found[0]


def mount_for_path(c: dict[str, Any], path: str) -> dict[str, Any]:
    """The volumeMount whose mountPath contains `path` (a file path inside a mounted dir)."""
    for m in c.get("volumeMounts", []):
        if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/"):
            return m
    raise AssertionError(f"{path} is not inside any volumeMount of {c['name']}")


def duration_seconds(text: str) -> float:
    """Parse a Go/humantime-style duration such as `25s`, `1m30s`, `500ms`."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"([0-9.]+)(ms|s|m|h)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]
