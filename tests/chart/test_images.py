"""The edge and operator images are not published, so the chart has no default for them: an
install without them stops with instructions, and the README's build, push and install commands
agree with the chart and the Dockerfile."""

import re
import shlex

import pytest
from helm_python.errors import HelmRenderError

from chartkit import ROOT, chart, container, render

README = (ROOT / "README.md").read_text()
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def kubernetes_section() -> str:
    start = README.index("## Kubernetes")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else len(README)]


def shell_commands(text: str) -> list[list[str]]:
    """The commands of the ```sh blocks, continuations joined, `$REGISTRY` kept literal."""
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                if part.strip() and not part.strip().startswith("#"):
                    out.append(shlex.split(part, comments=True))
    return out


def set_values(command: list[str]) -> dict:
    """`--set a.b=c` arguments as a values dict."""
    values: dict = {}
    for flag, arg in zip(command, command[1:]):
        if flag == "--set":
            path, value = arg.split("=", 1)
            node = values
            *parents, leaf = path.split(".")
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = value
    return values


@pytest.mark.parametrize(
    "values, missing",
    [
        ({}, r"(edge|operator)\.image\.repository"),
        ({"edge": {"image": {"repository": "r/streamfleet-edge"}}}, r"operator\.image\.repository"),
        ({"operator": {"image": {"repository": "r/streamfleet-operator"}}}, r"edge\.image\.repository"),
    ],
)
def test_an_install_without_images_fails_with_instructions(values, missing):
    with pytest.raises(HelmRenderError) as failure:
        render(values, images=False)
    message = str(failure.value)
    assert re.search(missing + r" is not set\. The Streamfleet images are not published yet", message), message
    assert 'docs/deploy.md, "Images and the Dockerfile"' in message, message
    assert "--set edge.image.repository=REGISTRY/streamfleet-edge" in message, message
    assert "--set operator.image.repository=REGISTRY/streamfleet-operator" in message, message


def test_an_edges_only_release_needs_only_the_edge_image():
    values = {
        "operator": {"enabled": False},
        "edge": {"image": {"repository": "r/streamfleet-edge"}},
        # An edges-only release shares the main release's key-hash Secret (docs/deploy.md).
        "keyHash": {"existingSecret": "main-streamfleet-key-hash"},
    }
    out = render(values, images=False)
    assert out.find("Deployment", "sf-streamfleet-operator") is None
    edge = out.get("Deployment", "sf-streamfleet-edge")["spec"]["template"]["spec"]
    assert container(edge, "edge")["image"] == f"r/streamfleet-edge:{chart().metadata['appVersion']}"


def test_the_readme_builds_pushes_and_installs_the_same_images():
    commands = shell_commands(kubernetes_section())
    builds = {c[c.index("--target") + 1]: c[c.index("-t") + 1] for c in commands if c[:2] == ["docker", "build"]}
    pushes = {c[2] for c in commands if c[:2] == ["docker", "push"]}
    installs = [c for c in commands if c[:2] == ["helm", "install"]]
    assert set(builds) == {"edge", "operator"}, commands
    for target in builds:
        assert re.search(rf"^FROM \S+ AS {target}$", DOCKERFILE, re.M), f"no Dockerfile target {target}"
    assert pushes == set(builds.values()), (pushes, builds)
    assert len(installs) == 1, installs

    # The README's install renders as is, and runs exactly the images it built and pushed.
    version = chart().metadata["appVersion"]
    out = render(set_values(installs[0]), images=False)
    edge = out.get("Deployment", "sf-streamfleet-edge")["spec"]["template"]["spec"]
    operator = out.get("Deployment", "sf-streamfleet-operator")["spec"]["template"]["spec"]
    assert container(edge, "edge")["image"] == builds["edge"] == f"$REGISTRY/streamfleet-edge:{version}"
    assert container(operator, "operator")["image"] == builds["operator"] == f"$REGISTRY/streamfleet-operator:{version}"
