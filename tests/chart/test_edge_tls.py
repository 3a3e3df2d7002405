"""RTMPS and the PROXY protocol in the chart: the certificate (an existing Secret or
cert-manager), the Service's 443, TLS-only edges, the PROXY protocol settings, NOTES."""

import helm_python as helm
import pytest

from chartkit import FULLNAME, container, env_map, mount_for_path, render, volume

EDGE = f"{FULLNAME}-edge"
TLS_SECRET = {"edge": {"tls": {"enabled": True, "existingSecret": "edge-cert"}}}
CERT_MANAGER = {
    "edge": {
        "tls": {
            "enabled": True,
            "certManager": {
                "enabled": True,
                "issuerRef": {"name": "letsencrypt", "kind": "Issuer"},
                "dnsNames": ["ingest.example.com"],
            },
        }
    }
}


def edge(values):
    out = render(values)
    pod = out.get("Deployment", EDGE)["spec"]["template"]["spec"]
    return out, pod, container(pod, "edge")


def service_ports(out):
    return {p["name"]: (p["port"], p["targetPort"]) for p in out.get("Service", EDGE)["spec"]["ports"]}


def test_off_by_default_plain_rtmp_only():
    out, pod, c = edge({})
    env = env_map(c)
    assert not any(k.startswith(("STREAMFLEET_RTMPS", "STREAMFLEET_TLS", "STREAMFLEET_PROXY")) for k in env)
    assert "STREAMFLEET_RTMP_ENABLED" not in env
    assert service_ports(out) == {"rtmp": (1935, "rtmp")}
    assert "tls" not in {v["name"] for v in pod["volumes"]}
    assert out.of_kind("Certificate") == []


def test_an_existing_secret_is_mounted_and_served_on_443():
    out, pod, c = edge(TLS_SECRET)
    env = env_map(c)
    assert env["STREAMFLEET_RTMPS_LISTEN"] == "0.0.0.0:1443"
    assert env["STREAMFLEET_TLS_CERT_FILE"] == "/etc/streamfleet/tls/tls.crt"
    assert env["STREAMFLEET_TLS_KEY_FILE"] == "/etc/streamfleet/tls/tls.key"
    assert env["STREAMFLEET_TLS_RELOAD_INTERVAL"] == "10s"
    assert volume(pod, "tls")["secret"]["secretName"] == "edge-cert"
    mount = mount_for_path(c, "/etc/streamfleet/tls/tls.crt")
    # A subPath mount would never see the Secret's updates: rotation needs the directory.
    assert mount["name"] == "tls" and "subPath" not in mount and mount["readOnly"] is True
    assert service_ports(out) == {"rtmp": (1935, "rtmp"), "rtmps": (443, "rtmps")}
    assert {p["name"]: p["containerPort"] for p in c["ports"]}["rtmps"] == 1443
    assert out.of_kind("Certificate") == []


def test_cert_manager_issues_the_secret_the_edges_mount():
    out, pod, _ = edge(CERT_MANAGER)
    cert = out.get("Certificate", f"{EDGE}-tls")
    assert cert["apiVersion"] == "cert-manager.io/v1"
    assert cert["spec"]["dnsNames"] == ["ingest.example.com"]
    assert cert["spec"]["issuerRef"] == {"name": "letsencrypt", "kind": "Issuer", "group": "cert-manager.io"}
    assert cert["spec"]["privateKey"]["rotationPolicy"] == "Always"
    assert volume(pod, "tls")["secret"]["secretName"] == cert["spec"]["secretName"]


def test_tls_only_drops_the_plain_port_everywhere():
    values = {**TLS_SECRET, "networkPolicy": {"enabled": True}}
    values["edge"] = {**TLS_SECRET["edge"], "rtmp": {"enabled": False}}
    out, _, c = edge(values)
    assert env_map(c)["STREAMFLEET_RTMP_ENABLED"] == "false"
    assert service_ports(out) == {"rtmps": (443, "rtmps")}
    assert "rtmp" not in {p["name"] for p in c["ports"]}
    policy = out.get("NetworkPolicy", EDGE)
    public = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert "rtmps" in public and "rtmp" not in public


def test_network_policy_opens_rtmps_like_rtmp():
    out = render({**TLS_SECRET, "networkPolicy": {"enabled": True, "rtmpFrom": [{"ipBlock": {"cidr": "203.0.113.0/24"}}]}})
    policy = out.get("NetworkPolicy", EDGE)
    rule = next(r for r in policy["spec"]["ingress"] if any(p["port"] == "rtmps" for p in r["ports"]))
    assert {p["port"] for p in rule["ports"]} == {"rtmp", "rtmps"}
    assert rule["from"] == [{"ipBlock": {"cidr": "203.0.113.0/24"}}]


def test_proxy_protocol_values_reach_the_edge():
    values = {
        "edge": {
            "proxyProtocol": {"mode": "v2", "trustedCIDRs": ["10.0.0.0/16", "10.1.0.0/16"]},
            "service": {"annotations": {"service.beta.kubernetes.io/aws-load-balancer-proxy-protocol": "*"}},
        }
    }
    out, _, c = edge(values)
    env = env_map(c)
    assert env["STREAMFLEET_PROXY_PROTOCOL"] == "v2"
    assert env["STREAMFLEET_PROXY_TRUSTED_CIDRS"] == "10.0.0.0/16,10.1.0.0/16"
    assert env["STREAMFLEET_PROXY_HEADER_TIMEOUT"] == "3s"
    annotations = out.get("Service", EDGE)["metadata"]["annotations"]
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-proxy-protocol"] == "*"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"edge": {"rtmp": {"enabled": False}}}, "needs edge.tls.enabled"),
        ({"edge": {"tls": {"enabled": True}}}, "needs a certificate"),
        (
            {"edge": {"tls": {"enabled": True, "existingSecret": "x", "certManager": {"enabled": True}}}},
            "not both",
        ),
        ({"edge": {"tls": {"enabled": True, "certManager": {"enabled": True, "dnsNames": ["a"]}}}}, "issuerRef.name"),
        (
            {"edge": {"tls": {"enabled": True, "certManager": {"enabled": True, "issuerRef": {"name": "i"}}}}},
            "dnsNames",
        ),
        ({"edge": {"proxyProtocol": {"mode": "any"}}}, "trustedCIDRs is empty"),
    ],
)
def test_settings_that_cannot_work_are_refused(values, message):
    with pytest.raises(helm.HelmError, match=message):
        render(values)


def test_bad_proxy_mode_is_rejected_by_the_schema():
    with pytest.raises(helm.HelmError):
        render({"edge": {"proxyProtocol": {"mode": "v3", "trustedCIDRs": ["10.0.0.0/8"]}}})


def test_notes_print_rtmps_urls():
    notes = render(TLS_SECRET).notes
    assert "rtmps://$RTMP_HOST:443/live/<publishKey>" in notes
    assert "rtmps://$RTMP_HOST:443/live/<playbackName>" in notes
    assert "Server rtmps://$RTMP_HOST:443/live" in notes
    assert "rtmp://$RTMP_HOST:1935/live/<publishKey>" in notes
    only = render({"edge": {**TLS_SECRET["edge"], "rtmp": {"enabled": False}}}).notes
    assert "rtmps://$RTMP_HOST:443/live/<publishKey>" in only
    assert "rtmp://" not in only
    assert "rtmps://" not in render({}).notes


def test_a_refused_certificate_rotation_alerts():
    rule = render({**TLS_SECRET, "metrics": {"prometheusRule": {"enabled": True}}}).of_kind("PrometheusRule")[0]
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert "streamfleet_edge_tls_certificate_stale" in alerts["StreamfleetTLSCertificateStale"]["expr"]
    plain = render({"metrics": {"prometheusRule": {"enabled": True}}}).of_kind("PrometheusRule")[0]
    assert "StreamfleetTLSCertificateStale" not in {r["alert"] for g in plain["spec"]["groups"] for r in g["rules"]}
