"""Packaging: each install command asks for one TensorFlow; without one, seqvg says what to install.

tensorflow-cpu and tensorflow are two distributions of one package: installed
together they overwrite each other's files. The requirements are read from
pyproject.toml and their markers evaluated as pip evaluates them (the base
with ``extra == ""``, each requested extra with its name), for each platform.
Offline: this checks what pip is asked for, not that an index has the wheels.
"""

import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from packaging.markers import default_environment
from packaging.requirements import Requirement

from seqvg.cli import cli

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
TF = {"tensorflow", "tensorflow-cpu"}
PLATFORMS = {"linux": ("linux", "Linux"), "darwin": ("darwin", "Darwin"), "win32": ("win32", "Windows")}


def requested(extras: tuple[str, ...], platform: str) -> dict[str, set[str]]:
    """Distribution name -> extras of it that ``pip install 'seqvg[extras]'`` asks for on ``platform``."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    env = {**default_environment(), "sys_platform": PLATFORMS[platform][0],
           "platform_system": PLATFORMS[platform][1]}
    todo = [(r, "") for r in project["dependencies"]]
    seen, out = set(), {}
    for extra in extras:
        todo += [(r, extra) for r in project["optional-dependencies"][extra]]
    while todo:
        text, extra = todo.pop()
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({**env, "extra": extra}):
            continue
        if req.name == "seqvg":  # an extra naming others: seqvg[a,b]
            todo += [(r, e) for e in req.extras - seen for r in project["optional-dependencies"][e]]
            seen |= req.extras
            continue
        out.setdefault(req.name, set()).update(req.extras)
    return out


@pytest.mark.parametrize("extras", [("cpu",), ("gpu",), ("test",), ("cpu", "ray", "tensorboard"), ("gpu", "ray")],
                         ids=lambda e: ",".join(e))
@pytest.mark.parametrize("platform", list(PLATFORMS))
def test_one_tensorflow_per_install_command(extras, platform):
    reqs = requested(extras, platform)
    tensorflows = TF & set(reqs)
    assert len(tensorflows) == 1, (extras, platform, reqs)
    if platform == "linux":
        assert tensorflows == {"tensorflow" if "gpu" in extras else "tensorflow-cpu"}
        if "gpu" in extras:
            assert reqs["tensorflow"] == {"and-cuda"}


@pytest.mark.parametrize("platform", list(PLATFORMS))
def test_plain_install_has_tensorflow_except_on_linux(platform):
    """On Linux the TensorFlow build is chosen with an extra; elsewhere there is one."""
    tensorflows = TF & set(requested((), platform))
    assert tensorflows == (set() if platform == "linux" else {"tensorflow" if platform == "darwin" else "tensorflow-cpu"})


def test_test_extra_has_the_linter():
    assert "ruff" in requested(("test",), "linux")


def test_missing_tensorflow_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` now fails as if not installed
    r = CliRunner().invoke(cli, ["probe", "--length", "5"])
    assert r.exit_code == 1, r.output
    assert r.output.strip().splitlines() == ["Error: seqvg needs TensorFlow, which is not installed: "
                                             "pip install 'seqvg[cpu]', or 'seqvg[gpu]' for an NVIDIA GPU on Linux"]
