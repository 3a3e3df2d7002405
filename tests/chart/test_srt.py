"""SRT (edge.srt): off by default; when on, the UDP port reaches the pod, the LoadBalancer (on the
RTMP Service, or a second Service) and the NetworkPolicy, and NOTES print srt:// URLs."""

import pytest

from chartkit import FULLNAME, container, env_map, render

EDGE = f"{FULLNAME}-edge"


def edge_container(out):
    return container(out.get("Deployment", EDGE)["spec"]["template"]["spec"], "edge")


def udp_ports(service):
    return [p for p in service["spec"]["ports"] if p["protocol"] == "UDP"]


def test_srt_is_off_by_default():
    out = render({})
    env = env_map(edge_container(out))
    assert not any(k.startswith("STREAMFLEET_SRT") for k in env)
    assert not udp_ports(out.get("Service", EDGE))
    assert out.find("Service", f"{EDGE}-srt") is None


def test_mixed_puts_the_udp_port_on_the_rtmp_service():
    out = render({"edge": {"srt": {"enabled": True}}})
    c = edge_container(out)
    env = env_map(c)
    assert env["STREAMFLEET_SRT_LISTEN"] == "0.0.0.0:8890"
    assert env["STREAMFLEET_SRT_LATENCY"] == "120ms"
    assert {"name": "srt", "containerPort": 8890, "protocol": "UDP"} in c["ports"]
    svc = out.get("Service", EDGE)
    assert udp_ports(svc) == [{"name": "srt", "port": 8890, "targetPort": "srt", "protocol": "UDP"}]
    assert any(p["name"] == "rtmp" and p["protocol"] == "TCP" for p in svc["spec"]["ports"])
    assert out.find("Service", f"{EDGE}-srt") is None
    policy = out.get("NetworkPolicy", EDGE)
    rules = [r for r in policy["spec"]["ingress"] if any(p["port"] == "srt" for p in r["ports"])]
    assert rules and rules[0]["ports"] == [{"port": "srt", "protocol": "UDP"}] and "from" not in rules[0]


def test_separate_makes_a_second_service_with_the_udp_port_alone():
    out = render({"edge": {"srt": {"enabled": True, "service": "separate", "nodePort": 31890}}})
    rtmp = out.get("Service", EDGE)
    assert not udp_ports(rtmp)
    srt = out.get("Service", f"{EDGE}-srt")
    assert srt["spec"]["type"] == rtmp["spec"]["type"] == "LoadBalancer"
    assert srt["spec"]["selector"] == rtmp["spec"]["selector"]
    assert srt["spec"]["ports"] == [
        {"name": "srt", "port": 8890, "targetPort": "srt", "protocol": "UDP", "nodePort": 31890}
    ]
    assert srt["spec"].get("externalTrafficPolicy") == rtmp["spec"].get("externalTrafficPolicy")


def test_the_passphrase_comes_from_a_secret_never_the_pod_spec():
    out = render({"edge": {"srt": {"enabled": True, "passphraseSecret": "srt-pass"}}})
    env = {e["name"]: e for e in edge_container(out)["env"]}
    ref = env["STREAMFLEET_SRT_PASSPHRASE"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "srt-pass", "key": "passphrase"}
    assert "value" not in env["STREAMFLEET_SRT_PASSPHRASE"]


@pytest.mark.parametrize("service", ["mixed", "separate"])
def test_notes_print_srt_urls(service):
    out = render({"edge": {"srt": {"enabled": True, "service": service}}})
    notes = out.notes
    host = "$RTMP_HOST" if service == "mixed" else "$SRT_HOST"
    assert f"srt://{host}:8890?streamid=publish:<publishKey>" in notes, notes
    assert f"srt://{host}:8890?streamid=read:<playbackName>" in notes, notes
    assert ("-srt -o jsonpath" in notes) == (service == "separate"), notes
    assert "srt://" not in render({}).notes
