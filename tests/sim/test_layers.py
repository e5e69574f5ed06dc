"""The simulator's layers import only downwards, even counting imports inside functions (which
``tests/test_layout.py`` leaves out): frames and codecs below typed requests, requests below
handlers and models, all of them below the server and its control endpoint. An import deferred
into a function to dodge a cycle would hide a layer breach, so ``twsbus.sim`` has none: the only
deferred loading is of IB's protobuf schemas (``codec.schema``; ibapi 9.81 has none)."""

from __future__ import annotations

import ast
from pathlib import Path

import twsbus.sim

SIM = Path(twsbus.sim.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in SIM.rglob("*.py"):
        parts = path.relative_to(SIM.parent.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(tree: ast.Module, modules: dict[str, Path]) -> set[str]:
    """The simulator modules a module imports at run time, wherever the import statement sits
    (not under ``TYPE_CHECKING``). The simulator imports itself by absolute names only."""
    checking = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in checking:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            subs = {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
            found.update(subs or {node.module})
    return found & modules.keys()


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(ast.parse(path.read_text()), modules) - {name}
            for name, path in modules.items()}


def _reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for w in graph[todo.pop()] - seen:
            seen.add(w)
            todo.append(w)
    return seen


def test_no_import_cycle_even_inside_functions() -> None:
    graph = _graph()
    assert "twsbus.sim.requests" in graph["twsbus.sim.session"]  # the reader reads imports
    assert {m for m in graph if m in _reaches(graph, m)} == set()


def test_no_import_is_deferred_into_a_function() -> None:
    deferred = [f"{name}:{node.lineno}" for name, path in _modules().items()
                for fn in ast.walk(ast.parse(path.read_text()))
                if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
                for node in ast.walk(fn) if isinstance(node, ast.Import | ast.ImportFrom)]
    assert deferred == []


def test_each_layer_imports_only_below_itself() -> None:
    graph = _graph()
    below_requests = _reaches(graph, "twsbus.sim.codec") | _reaches(graph, "twsbus.sim.wire")
    assert not {m for m in below_requests if m.startswith("twsbus.sim.requests")}
    top = {"twsbus.sim.server", "twsbus.sim.control", "twsbus.sim.loadgen"}
    for name in graph:
        if name.rpartition(".")[2].startswith("h_") or name == "twsbus.sim.handlers":
            assert not _reaches(graph, name) & top, name
    assert "twsbus.sim.server" not in _reaches(graph, "twsbus.sim.control")
