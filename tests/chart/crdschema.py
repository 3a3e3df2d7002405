"""Validate LiveStream manifests the way the API server would: the CRD's OpenAPI v3 schema
(turned into JSON Schema, unknown fields rejected like `kubectl apply --validate=strict`) and
its CEL rules (`x-kubernetes-validations`, evaluated with cel-python)."""

from __future__ import annotations

import copy
from typing import Any

import celpy
import jsonschema


def _to_json_schema(node: Any) -> Any:
    if isinstance(node, list):
        return [_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _to_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in out and "additionalProperties" not in out and not node.get(
        "x-kubernetes-preserve-unknown-fields"
    ):
        out["additionalProperties"] = False
    return out


class LiveStreamValidator:
    def __init__(self, crd: dict[str, Any]):
        version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
        self.api_version = f"{crd['spec']['group']}/{version['name']}"
        self.kind = crd["spec"]["names"]["kind"]
        self.openapi = version["schema"]["openAPIV3Schema"]
        schema = _to_json_schema(copy.deepcopy(self.openapi))
        schema["properties"].update(
            {
                "apiVersion": {"const": self.api_version},
                "kind": {"const": self.kind},
                "metadata": {"type": "object"},
            }
        )
        schema.setdefault("required", [])
        self.validator = jsonschema.Draft202012Validator(schema)
        self.cel = celpy.Environment()
        self._programs: dict[str, Any] = {}

    def errors(self, obj: dict[str, Any]) -> list[str]:
        """Every problem the API server would report for `obj` (empty when it is accepted)."""
        problems = [
            f"{'.'.join(str(p) for p in e.path) or '<root>'}: {e.message}"
            for e in self.validator.iter_errors(obj)
        ]
        if not problems:
            self._cel_errors(self.openapi, obj, "", problems)
        return problems

    def _program(self, rule: str):
        if rule not in self._programs:
            self._programs[rule] = self.cel.program(self.cel.compile(rule))
        return self._programs[rule]

    def _cel_errors(self, schema: dict[str, Any], value: Any, path: str, problems: list[str]):
        if value is None:
            return
        for v in schema.get("x-kubernetes-validations", []):
            ok = self._program(v["rule"]).evaluate({"self": celpy.json_to_cel(value)})
            if not bool(ok):
                problems.append(f"{path or '<root>'}: {v.get('message', v['rule'])}")
        if isinstance(value, dict):
            for key, sub in schema.get("properties", {}).items():
                if key in value:
                    self._cel_errors(sub, value[key], f"{path}.{key}".lstrip("."), problems)
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                for key, item in value.items():
                    self._cel_errors(extra, item, f"{path}.{key}".lstrip("."), problems)
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                self._cel_errors(schema["items"], item, f"{path}[{i}]", problems)
