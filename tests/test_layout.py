"""The layout's one rule, checked on the source: imports flow blueprints → services → clients and models.

Every ``import`` is read from the code (function-level ones too, since a local import that dodges a
cycle is still a cycle), resolved to a module under ``portal``, and checked against these layers:

- clients (``portal.mpesa``, ``portal.routeros``) import no models, no service and no blueprint;
- services (``core``, ``money``, ``hotspot``, ``owners``, and the packages that land beside them)
  import no blueprint, and neither the CLI nor the scheduler (those sit above them);
- nothing in production imports the sandbox;
- no import circle among the portal's modules.

A submodule importing its own parent package (a blueprint's ``bp``) is not counted as an edge:
Python has always run the parent first, so it cannot close a circle at import time.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PORTAL = Path(__file__).resolve().parent.parent / "portal"
CLIENTS = ("portal.mpesa", "portal.routeros")
BLUEPRINTS = ("portal.captive", "portal.dashboard", "portal.webhooks")
APP_LEVEL = ("portal.cli", "portal.jobs")
SERVICES = ("portal.core", "portal.money", "portal.hotspot", "portal.owners", "portal.notify", "portal.tunnel")
SANDBOX = "portal.sandbox"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PORTAL.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PORTAL.rglob("*.py") if "migrations" not in p.parts}


def _imports(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """The portal modules ``name`` imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # "from pkg import mod" imports the submodule when there is one
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        else:
            continue
        for target in targets:
            if target.startswith("portal") and target in known:
                yield target


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = {t for t in _imports(name, path, known) if t != name and not name.startswith(t + ".")}
        graph[name] = edges
    return graph


def _in(name: str, groups: tuple[str, ...]) -> bool:
    return any(name == g or name.startswith(g + ".") for g in groups)


def test_clients_know_no_tables_no_services_and_no_pages() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in _graph().items() if _in(module, CLIENTS)
        for target in targets
        if not _in(target, CLIENTS) or target == "portal.models"
    ]
    assert wrong == []


def test_services_import_no_blueprint_and_nothing_above_them() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in _graph().items() if _in(module, SERVICES)
        for target in targets
        if _in(target, BLUEPRINTS + APP_LEVEL)
    ]
    assert wrong == []


def test_production_code_never_imports_the_sandbox() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in _graph().items() if not _in(module, (SANDBOX,))
        for target in targets
        if _in(target, (SANDBOX,))
    ]
    assert wrong == []


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_there_is_no_import_circle_among_the_portals_modules() -> None:
    cycle = _find_cycle(_graph())
    assert cycle is None, " → ".join(cycle or [])


@pytest.mark.parametrize("graph, circle", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
])
def test_the_circle_finder_finds_circles(graph: dict[str, set[str]], circle: bool) -> None:
    assert (_find_cycle(graph) is not None) is circle


def test_only_app_wide_modules_sit_in_the_portal_root() -> None:
    root = sorted(p.name for p in PORTAL.glob("*.py"))
    assert root == ["__init__.py", "cli.py", "jobs.py", "models.py"]
