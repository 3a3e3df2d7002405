"""values.schema.json: rejects typos and bad values, accepts every scenario, matches values.yaml."""

import json

import helm_python as helm
import pytest
import yaml

from chartkit import CHART, chart, render
from scenarios import SCENARIOS

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())

BAD_VALUES = {
    "typo at the top": {"edgee": {}},
    "typo in edge": {"edge": {"replicaCont": 3}},
    "typo in a nested block": {"edge": {"service": {"externalTraficPolicy": "Local"}}},
    "typo in redis": {"redis": {"persistance": {"enabled": True}}},
    "typo in monitoring": {"metrics": {"serviceMonitor": {"enable": True}}},
    "bad service type": {"edge": {"service": {"type": "Ingress"}}},
    "bad traffic policy": {"edge": {"service": {"externalTrafficPolicy": "local"}}},
    "port out of range": {"edge": {"ports": {"rtmp": 70000}}},
    "lease ttl without unit": {"edge": {"leaseTTL": "15"}},
    "write window without unit": {"edge": {"writeBatch": "100"}},
    "negative worker threads": {"edge": {"workerThreads": -1}},
    "worker threads as text": {"edge": {"workerThreads": "two"}},
    "negative drain": {"edge": {"drainTimeoutSeconds": -1}},
    "bad appendfsync": {"redis": {"persistence": {"appendfsync": "no"}}},
    "external url scheme": {"redis": {"external": {"url": "http://redis:6379"}}},
    "bad anti-affinity preset": {"edge": {"podAntiAffinity": "sometimes"}},
    "bad log format": {"operator": {"logFormat": "yaml"}},
    "string replicas": {"operator": {"replicaCount": "two"}},
    "redis cluster mode": {"redis": {"mode": "cluster"}},
    "typo in sentinel": {"redis": {"mode": "sentinel", "sentinel": {"downAfterMs": 2000}}},
    "sentinel anti-affinity preset": {"redis": {"sentinel": {"antiAffinity": "sometimes"}}},
    "replica ack too long": {"redis": {"sentinel": {"replicaAckMs": 1000}}},
    "external sentinel auth": {"redis": {"external": {"sentinel": {"auth": "password"}}}},
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_schema_rejects(case):
    with pytest.raises(helm.HelmValuesError):
        chart().validate_schema(BAD_VALUES[case])
    # and an install would fail, not silently ignore it
    with pytest.raises(helm.HelmError):
        render(BAD_VALUES[case])


def test_typo_error_names_the_key():
    with pytest.raises(helm.HelmValuesError, match="replicaCont"):
        chart().validate_schema({"edge": {"replicaCont": 3}})


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_schema_accepts_scenario(scenario):
    chart().validate_schema(SCENARIOS[scenario])


def walk_schema_and_values(schema, values, path):
    """Every key in values.yaml is declared, and every declared key has a default in values.yaml."""
    if schema.get("type") != "object" or "properties" not in schema:
        return
    declared = set(schema["properties"])
    present = set(values)
    assert present <= declared, f"{path}: undeclared keys {present - declared}"
    assert declared <= present, f"{path}: keys without a default in values.yaml {declared - present}"
    for key in declared:
        sub = schema["properties"][key]
        if isinstance(values.get(key), dict):
            walk_schema_and_values(sub, values[key], f"{path}.{key}")


def test_schema_and_values_yaml_agree():
    walk_schema_and_values(SCHEMA, DEFAULTS, "values")


def test_objects_are_closed_where_it_matters():
    open_objects = []

    def visit(node, path):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and node.get("additionalProperties") is not False:
                open_objects.append(path)
            for key, sub in node.get("properties", {}).items():
                visit(sub, f"{path}.{key}")

    visit(SCHEMA, "values")
    assert open_objects == []
