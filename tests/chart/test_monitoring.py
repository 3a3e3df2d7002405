"""ServiceMonitor/PodMonitor targets, alert rules and the Grafana dashboard: they parse as PromQL
and use only the metric names of the shared contract."""

import json
import re

import promql_parser
import pytest

from chartkit import CHART, FULLNAME, NAMESPACE, render, series_is_in_contract

ALL_MONITORING = {
    "metrics": {
        "serviceMonitor": {"enabled": True},
        "podMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
    },
    "dashboards": {"enabled": True},
}
DASHBOARD_FILES = sorted((CHART / "dashboards").glob("*.json"))


def metric_names(expr: str) -> list[str]:
    """Every series an expression selects (raises on a PromQL syntax error)."""
    # Grafana's variables, as Grafana substitutes them before querying.
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
    names = []

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            names.append(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def test_monitors_are_off_by_default():
    out = render({})
    for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
        assert out.of_kind(kind) == []
    assert out.find("ConfigMap", f"{FULLNAME}-dashboards") is None


def test_service_monitors_select_the_metrics_services():
    out = render({"metrics": {"serviceMonitor": {"enabled": True}}})
    monitors = out.of_kind("ServiceMonitor")
    assert sorted(m["metadata"]["name"] for m in monitors) == [f"{FULLNAME}-edge", f"{FULLNAME}-operator"]
    for monitor in monitors:
        selector = monitor["spec"]["selector"]["matchLabels"]
        matched = [s for s in out.of_kind("Service") if selector.items() <= s["metadata"]["labels"].items()]
        assert len(matched) == 1, (monitor["metadata"]["name"], [s["metadata"]["name"] for s in matched])
        assert matched[0]["metadata"]["name"].endswith("-metrics")
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] in {p["name"] for p in matched[0]["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def test_pod_monitors_select_the_pods_http_port():
    out = render({"metrics": {"podMonitor": {"enabled": True}}})
    monitors = out.of_kind("PodMonitor")
    assert len(monitors) == 2
    for monitor in monitors:
        selector = monitor["spec"]["selector"]["matchLabels"]
        matched = [
            d for d in out.of_kind("Deployment")
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matched) == 1
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        ports = {p["name"] for c in matched[0]["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        assert endpoint["port"] in ports


def test_monitor_labels_and_namespace():
    values = {"metrics": {"serviceMonitor": {"enabled": True, "namespace": "monitoring", "additionalLabels": {"release": "kps"}}}}
    for monitor in render(values).of_kind("ServiceMonitor"):
        assert monitor["metadata"]["namespace"] == "monitoring"
        assert monitor["metadata"]["labels"]["release"] == "kps"
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


REQUIRED_ALERTS = {
    "StreamfleetEdgeDown": {"up"},
    "StreamfleetPublishRejectionsSpiking": {"streamfleet_edge_publish_rejections_total"},
    "StreamfleetLeaseLosses": {"streamfleet_edge_lease_losses_total"},
    "StreamfleetRegistryUnreachable": {"streamfleet_edge_registry_up"},
    "StreamfleetOperatorReconcileErrors": {"streamfleet_operator_reconcile_errors_total"},
}


def rules():
    (rule,) = render({"metrics": {"prometheusRule": {"enabled": True}}}).of_kind("PrometheusRule")
    return [r for g in rule["spec"]["groups"] for r in g["rules"]]


def test_required_alerts_exist_and_watch_the_right_metrics():
    by_name = {r["alert"]: r for r in rules()}
    for alert, metrics in REQUIRED_ALERTS.items():
        assert alert in by_name, f"missing alert {alert}"
        assert set(metric_names(by_name[alert]["expr"])) == metrics, alert


def test_registry_unreachable_means_registry_up_is_zero():
    expr = {r["alert"]: r for r in rules()}["StreamfleetRegistryUnreachable"]["expr"]
    assert re.search(r"streamfleet_edge_registry_up\{[^}]*\}\)?\s*==\s*0", expr), expr


def test_alert_rules_are_valid_and_use_contract_metrics():
    for rule in rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        for name in names:
            assert name == "up" or series_is_in_contract(name), f"{rule['alert']} uses unknown metric {name}"
        assert f'namespace="{NAMESPACE}"' in rule["expr"], "alerts must stay within the release"
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        # Prometheus' own templating survives Helm rendering intact.
        for text in rule["annotations"].values():
            assert text.count("$labels") == len(re.findall(r"\{\{ \$labels\.\w+ \}\}", text)), text


def test_alert_thresholds_are_configurable():
    values = {"metrics": {"prometheusRule": {"enabled": True, "publishRejectionsPerSecond": 7, "reconcileErrorsPerSecond": 0.5}}}
    (rule,) = render(values).of_kind("PrometheusRule")
    by_name = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert by_name["StreamfleetPublishRejectionsSpiking"]["expr"].endswith("> 7")
    assert by_name["StreamfleetOperatorReconcileErrors"]["expr"].endswith("> 0.5")


def dashboards():
    return [json.loads(p.read_text()) for p in DASHBOARD_FILES]


def panel_exprs(dashboard):
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def test_dashboard_queries_are_valid_and_use_contract_metrics():
    assert DASHBOARD_FILES, "no dashboard shipped"
    for dashboard in dashboards():
        count = 0
        for title, expr in panel_exprs(dashboard):
            for name in metric_names(expr):
                assert series_is_in_contract(name), f"panel {title!r} uses unknown metric {name}"
            count += 1
        assert count >= 10


DASHBOARD_MUST_SHOW = {
    "live streams": "streamfleet_edge_publishers_active",
    "viewers by stream": "streamfleet_edge_stream_players",
    "ingest bitrate": "streamfleet_edge_stream_ingest_bitrate_kbps",
    "bytes out": "streamfleet_edge_bytes_sent_total",
    "rejections by reason": "streamfleet_edge_publish_rejections_total",
    "lease renewals": "streamfleet_edge_lease_renewals_total",
    "lease losses": "streamfleet_edge_lease_losses_total",
    "slow-player drops": "streamfleet_edge_slow_player_dropped_messages_total",
    "reconcile rate": "streamfleet_operator_reconciles_total",
    "reconcile errors": "streamfleet_operator_reconcile_errors_total",
}


def test_dashboard_covers_the_required_views():
    used = {name for d in dashboards() for _, expr in panel_exprs(d) for name in metric_names(expr)}
    missing = {view: metric for view, metric in DASHBOARD_MUST_SHOW.items() if metric not in used}
    assert not missing
    (dashboard,) = dashboards()
    by_stream = [e for _, e in panel_exprs(dashboard) if "stream_players" in e]
    assert any("by (stream)" in e for e in by_stream)
    rejections = [e for _, e in panel_exprs(dashboard) if "publish_rejections_total" in e]
    assert any("by (protocol, reason)" in e for e in rejections), "publish rejections split by protocol (rtmp, srt) and reason"
    # Ingest and viewers split by protocol (the edge labels these series rtmp and srt).
    for metric in ("publishers_active", "players_active", "bytes_received_total"):
        split = [e for _, e in panel_exprs(dashboard) if metric in e and "by (protocol)" in e]
        assert split, f"no panel splits {metric} by protocol"


def test_protocol_panels_sit_in_their_own_row():
    (dashboard,) = dashboards()
    titles = [p["title"] for p in dashboard["panels"]]
    start = titles.index("Protocols")
    assert titles[start + 1 : start + 4] == ["Publishers by protocol", "Viewers by protocol", "Ingest by protocol"]
    ingest = dashboard["panels"][start + 3]
    assert ingest["fieldConfig"]["defaults"]["unit"] == "bps" and ingest["targets"][0]["expr"].endswith("* 8")


def test_dashboard_layout_is_sane():
    for dashboard in dashboards():
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids))
        assert dashboard["uid"] and dashboard["title"]
        variables = {v["name"] for v in dashboard["templating"]["list"]}
        assert {"datasource", "namespace"} <= variables
        cells = set()
        for panel in dashboard["panels"]:
            g = panel["gridPos"]
            assert g["x"] + g["w"] <= 24, panel["title"]
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, f"panel {panel['title']!r} overlaps another"
                    cells.add((x, y))
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == "${datasource}"


def test_dashboard_config_map_carries_the_sidecar_label_and_the_json():
    out = render({"dashboards": {"enabled": True}})
    cm = out.get("ConfigMap", f"{FULLNAME}-dashboards")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert set(cm["data"]) == {p.name for p in DASHBOARD_FILES}
    for p in DASHBOARD_FILES:
        assert json.loads(cm["data"][p.name]) == json.loads(p.read_text())


def test_dashboard_config_map_options():
    values = {"dashboards": {"enabled": True, "namespace": "grafana", "label": "dash", "labelValue": "yes", "annotations": {"grafana_folder": "Video"}}}
    cm = render(values).get("ConfigMap", f"{FULLNAME}-dashboards")
    assert cm["metadata"]["namespace"] == "grafana"
    assert cm["metadata"]["labels"]["dash"] == "yes"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Video"}


def test_promql_check_can_fail():
    with pytest.raises(ValueError):
        metric_names("sum by (reason (rate(x[5m]))")
    assert not series_is_in_contract("streamfleet_edge_publishers_total")
    assert series_is_in_contract("streamfleet_operator_reconcile_duration_seconds_bucket")


def test_everything_together():
    out = render(ALL_MONITORING)
    assert len(out.of_kind("ServiceMonitor")) == 2
    assert len(out.of_kind("PodMonitor")) == 2
    assert len(out.of_kind("PrometheusRule")) == 1


@pytest.mark.parametrize("component,names", [("edge", "EDGE_METRICS"), ("operator", "OPERATOR_METRICS")])
def test_contract_metrics_are_registered_by_the_binaries(component, names):
    """The names the dashboard and alerts rely on appear in the binary's sources, so a rename there
    fails here rather than silently blanking a panel."""
    import chartkit

    sources = "\n".join(p.read_text() for p in (chartkit.ROOT / component / "src").rglob("*.rs"))
    if "prometheus" not in sources:
        pytest.skip(f"{component} does not register metrics yet")
    prefix = f"streamfleet_{component}_"
    missing = [
        m for m in sorted(getattr(chartkit, names))
        if f'"{m}"' not in sources and f'"{prefix}{m}"' not in sources
    ]
    assert missing == [], f"{component} sources do not register {missing}"
