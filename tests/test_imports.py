"""The package's import graph: one direction, no cycles, nobody imports the CLI.

Read from the source with ``ast`` (imports inside functions count too: a
lazy import is still a dependency), so the test needs no TensorFlow.
"""

import ast
from pathlib import Path

import seqvg

PACKAGE = Path(seqvg.__file__).parent


def _graph() -> dict[str, set[str]]:
    """module -> the seqvg modules it imports."""
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    graph = {}
    for path in PACKAGE.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module == "seqvg":
                    deps |= {a.name for a in node.names if a.name in modules}
                elif node.module.startswith("seqvg."):
                    deps.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[1] for a in node.names if a.name.startswith("seqvg.")}
        graph[path.stem] = deps - {path.stem, "__init__"}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by depth-first search, as a path that closes on itself."""
    found, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                found.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_the_detector_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_nothing_imports_the_cli():
    """The CLI is cli.py and its cli_*.py modules; only they (and __main__) import them."""
    def is_cli(m):
        return m == "cli" or m.startswith("cli_")

    graph = _graph()
    importers = sorted(m for m, deps in graph.items()
                       if any(map(is_cli, deps)) and not is_cli(m) and m != "__main__")
    assert importers == []
    assert not any(map(is_cli, set().union(*(graph[m] for m in graph if m.startswith("cli_"))) - {"cli_options"}))


def test_leaves_import_nothing_heavy():
    """Options, data, the file contract and the decay figures are leaves:
    reports and diagnoses read run directories without the probe engine."""
    graph = _graph()
    leaves = {"config", "tasks", "generators", "mnist", "rundir"}
    for leaf in ("config", "tasks", "generators", "mnist", "rundir", "decay", "labels", "tfsetup", "why", "cellstep"):
        assert graph[leaf] <= leaves, (leaf, graph[leaf])
    for reader in ("report", "diagnose"):
        assert not graph[reader] & {"probe", "training", "models", "fastlstm", "kernels", "study", "cli"}, reader
