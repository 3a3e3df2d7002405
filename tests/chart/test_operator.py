"""Operator Deployment, leader election and least-privilege RBAC (exactly the verbs it uses)."""

import helm_python as helm
import pytest

from chartkit import FULLNAME, NAMESPACE, container, env_map, render
from scenarios import SCENARIOS

OPERATOR = f"{FULLNAME}-operator"

# What the operator does with the API server, and nothing else (see issue 4 and
# templates/operator/_rbac-rules.tpl).
EXPECTED_CLUSTER_RULES = {
    ("streamfleet.io", "livestreams"): {"get", "list", "watch", "patch", "update"},
    ("streamfleet.io", "livestreams/status"): {"get", "patch"},
    ("streamfleet.io", "livestreams/finalizers"): {"update"},
    ("", "secrets"): {"get", "list", "watch", "create"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
EXPECTED_NAMESPACE_RULES = {
    ("coordination.k8s.io", "leases"): {"get", "create", "update", "patch"},
}


def flatten(rules):
    """(apiGroup, resource) -> verbs; a wildcard or resourceName-less duplicate is a failure."""
    out = {}
    for rule in rules:
        assert "*" not in rule["verbs"], rule
        assert "nonResourceURLs" not in rule, rule
        for group in rule["apiGroups"]:
            assert group != "*", rule
            for resource in rule["resources"]:
                assert resource != "*", rule
                key = (group, resource)
                assert key not in out, f"{key} granted twice"
                assert len(rule["verbs"]) == len(set(rule["verbs"])), rule
                out[key] = set(rule["verbs"])
    return out


def operator_pod(values=None):
    out = render(values)
    return out, out.get("Deployment", OPERATOR)["spec"]["template"]["spec"]


def test_cluster_role_is_exactly_what_the_operator_uses():
    role = render({}).get("ClusterRole", OPERATOR)
    assert flatten(role["rules"]) == EXPECTED_CLUSTER_RULES


def test_leases_only_in_the_release_namespace():
    out = render({})
    role = out.get("Role", OPERATOR)
    assert role["metadata"]["namespace"] == NAMESPACE
    assert flatten(role["rules"]) == EXPECTED_NAMESPACE_RULES


def test_no_other_roles():
    out = render({})
    assert [r["metadata"]["name"] for r in out.of_kind("ClusterRole")] == [OPERATOR]
    assert [r["metadata"]["name"] for r in out.of_kind("Role")] == [OPERATOR]


def test_bindings_grant_the_roles_to_the_operator_service_account():
    out, pod = operator_pod()
    sa = pod["serviceAccountName"]
    assert out.get("ServiceAccount", sa)
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        binding = out.get(kind, OPERATOR)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": OPERATOR}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]


def test_namespace_scoped_install_has_roles_in_each_watched_namespace_and_no_cluster_role():
    out, pod = operator_pod({"operator": {"watchNamespaces": ["media", "news"]}})
    assert out.of_kind("ClusterRole") == [] and out.of_kind("ClusterRoleBinding") == []
    sa = pod["serviceAccountName"]
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in out.of_kind("Role")}
    assert set(roles) == {("media", f"{OPERATOR}-watch"), ("news", f"{OPERATOR}-watch"), (NAMESPACE, OPERATOR)}
    for ns in ("media", "news"):
        assert flatten(roles[(ns, f"{OPERATOR}-watch")]["rules"]) == EXPECTED_CLUSTER_RULES
        (binding,) = [b for b in out.of_kind("RoleBinding") if b["metadata"]["namespace"] == ns]
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"{OPERATOR}-watch"}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
    # The Lease Role stays in the release namespace.
    assert flatten(roles[(NAMESPACE, OPERATOR)]["rules"]) == EXPECTED_NAMESPACE_RULES
    assert env_map(container(pod, "operator"))["STREAMFLEET_WATCH_NAMESPACES"] == "media,news"


def test_cluster_wide_by_default():
    _, pod = operator_pod()
    assert "STREAMFLEET_WATCH_NAMESPACES" not in env_map(container(pod, "operator"))


def test_watch_namespaces_must_be_namespace_names():
    with pytest.raises(helm.HelmError):
        render({"operator": {"watchNamespaces": ["Not_A_Namespace"]}})


def test_rbac_can_be_left_to_the_cluster_admin():
    out = render({"operator": {"rbac": {"create": False}}})
    for kind in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
        assert out.of_kind(kind) == []


def test_two_replicas_with_leader_election():
    out, pod = operator_pod()
    assert out.get("Deployment", OPERATOR)["spec"]["replicas"] == 2
    c = container(pod, "operator")
    env = env_map(c)
    assert env["STREAMFLEET_LEADER_ELECTION"] == "true"
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert c["args"][0] == "run"
    term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"


def test_several_replicas_without_leader_election_is_refused():
    with pytest.raises(helm.HelmError, match="leaderElection"):
        render({"operator": {"leaderElection": {"enabled": False}}})
    _, pod = operator_pod({"operator": {"replicaCount": 1, "leaderElection": {"enabled": False}}})
    assert env_map(container(pod, "operator"))["STREAMFLEET_LEADER_ELECTION"] == "false"


def test_http_port_probes_and_metrics_service():
    out, pod = operator_pod()
    c = container(pod, "operator")
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert env_map(c)["STREAMFLEET_HTTP_LISTEN"] == "0.0.0.0:8080"
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    svc = out.get("Service", f"{OPERATOR}-metrics")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"][0]["targetPort"] == "http"


def test_operator_pdb():
    out = render({})
    pdb = out.get("PodDisruptionBudget", OPERATOR)
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == out.get("Deployment", OPERATOR)["spec"]["selector"]
    assert render({"operator": {"replicaCount": 1, "leaderElection": {"enabled": True}}}).find(
        "PodDisruptionBudget", OPERATOR
    ) is None


def test_operator_image():
    out, pod = operator_pod()
    version = out.get("Deployment", OPERATOR)["metadata"]["labels"]["app.kubernetes.io/version"]
    assert container(pod, "operator")["image"] == f"ghcr.io/streamfleet/streamfleet-operator:{version}"


def test_edge_only_release_has_no_operator():
    out = render(SCENARIOS["edge-pool"])
    operator_objects = [
        n for n in out.names()
        if "operator" in n or n.split("/")[0] in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    ]
    assert operator_objects == []
    assert out.of_kind("CustomResourceDefinition") == []
    (rule,) = out.of_kind("PrometheusRule")
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert alerts and not [a for a in alerts if "Operator" in a]
    assert out.find("Deployment", f"{FULLNAME}-edge") is not None


def test_leader_lease_is_named_after_the_release():
    _, pod = operator_pod()
    assert env_map(container(pod, "operator"))["STREAMFLEET_LEASE_NAME"] == OPERATOR
