"""NOTES.txt tells the user how to reach the fleet, publish and play."""

import re

import yaml

from chartkit import CRD_SOURCE, FULLNAME, load_yaml_docs, render
from crdschema import LiveStreamValidator


def test_notes_print_publish_and_play_urls():
    notes = render({}).notes
    assert "rtmp://$RTMP_HOST:1935/live/<publishKey>" in notes
    assert "rtmp://$RTMP_HOST:1935/live/<playbackName>" in notes
    assert "kubectl get lst" in notes
    assert "It may take a few minutes for the load balancer IP to be available" in notes
    assert f"kubectl get service --namespace streamfleet {FULLNAME}-edge --watch" in notes
    assert "{.status.loadBalancer.ingress[0].ip}" in notes


def test_notes_follow_the_service_port_and_type():
    notes = render({"edge": {"service": {"type": "NodePort", "port": 19350}}}).notes
    assert "rtmp://$RTMP_HOST:19350/live/<publishKey>" in notes
    assert "nodePort" in notes
    assert "load balancer IP" not in notes
    notes = render({"edge": {"service": {"type": "ClusterIP"}}}).notes
    assert f"kubectl port-forward --namespace streamfleet service/{FULLNAME}-edge 1935:1935" in notes


def test_notes_warn_about_an_ephemeral_registry():
    assert "no persistence" in render({}).notes
    assert "no persistence" not in render({"redis": {"persistence": {"enabled": True}}}).notes
    assert "no persistence" not in render({"redis": {"bundled": False, "external": {"url": "redis://r:6379"}}}).notes
    # Sentinel mode survives a Redis pod restart without persistence (a replica is promoted).
    assert "no persistence" not in render({"redis": {"mode": "sentinel"}}).notes


def test_notes_point_at_the_dashboard_when_shipped():
    assert "Grafana dashboard" not in render({}).notes
    assert f"{FULLNAME}-dashboards" in render({"dashboards": {"enabled": True}}).notes


def test_notes_example_stream_is_a_valid_livestream():
    notes = render({}).notes
    heredoc = re.search(r"<<'EOF'\n(.*?)\n\s*EOF\n", notes, re.S)
    assert heredoc, "NOTES.txt has no example manifest"
    manifest = yaml.safe_load("\n".join(line[3:] for line in heredoc.group(1).splitlines()))
    (crd,) = load_yaml_docs(CRD_SOURCE)
    assert LiveStreamValidator(crd).errors(manifest) == []
    name = manifest["metadata"]["name"]
    assert f"{name}-publish-key" in notes, "NOTES must name the generated key Secret of its example"


def test_release_named_like_the_chart_gets_short_names():
    out = render({}, release="streamfleet")
    assert out.find("Service", "streamfleet-edge") is not None, out.names()
    assert "kubectl get service --namespace streamfleet streamfleet-edge --watch" in out.notes


def test_notes_remind_the_second_step_of_the_key_hash_upgrade():
    assert "keyHash.rewriteRecords is false" not in render({}).notes
    notes = render({"keyHash": {"rewriteRecords": False}}).notes
    assert "keyHash.rewriteRecords is false" in notes and "step 2" in notes
