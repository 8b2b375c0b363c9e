"""The shape of the code base, checked over the source (AST), not by hope: no import
circles in core/ or app/ (imports inside functions count), no oversized module, sampler
and data-set names spelled in exactly one module of core/, and no module replacing another
module's attributes at run time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import core.samplers
from core.data import DATASETS

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "app")
MAX_LINES = 500
MAIN_WINDOW_MAX_LINES = 350


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports anywhere in its body (lazy imports too)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                for alias in node.names:
                    for candidate in (f"{base}.{alias.name}", base):
                        if candidate in modules:
                            deps.add(candidate)
                            break
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names if alias.name in modules)
        deps.discard(name)
        graph[name] = deps
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_the_cycle_finder_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_core_or_app():
    cycles = find_cycles(import_graph())
    assert cycles == [], "modules that import each other (lazy imports count): " + "; ".join(
        " <-> ".join(cycle) for cycle in cycles)


def test_core_training_imports_nothing_that_imports_it_back():
    graph = import_graph()
    reachable, todo = set(), ["core.training"]
    while todo:
        for dep in graph[todo.pop()]:
            if dep not in reachable:
                reachable.add(dep)
                todo.append(dep)
    assert "core.training" not in reachable


def test_no_module_is_oversized():
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines())
             for name, path in _modules().items()}
    too_big = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert too_big == {}, f"modules over {MAX_LINES} lines: {too_big}"
    assert sizes["app.main_window"] <= MAIN_WINDOW_MAX_LINES, sizes["app.main_window"]


def _string_literals(path: Path) -> set[str]:
    return {node.value for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


CORE_LITERALS = {name: _string_literals(path) for name, path in _modules().items()
                 if name.startswith("core")}


@pytest.mark.parametrize("name", core.samplers.sampler_names())
def test_each_sampler_name_is_spelled_in_exactly_one_core_module(name):
    holders = sorted(module for module, literals in CORE_LITERALS.items() if name in literals)
    assert len(holders) == 1, f"{name!r} appears as a string literal in {holders}"


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_each_data_set_name_is_spelled_in_exactly_one_core_module(name):
    holders = sorted(module for module, literals in CORE_LITERALS.items() if name in literals)
    assert holders == ["core.data.registry"], f"{name!r} appears in {holders}"


def test_no_core_or_app_module_assigns_attributes_of_another_module():
    """e.g. `core.diffusion.extract = ...` (a monkey-patch at run time)."""
    found = []
    for name, path in _modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                imported.update(a.asname or a.name for a in node.names
                                if (a.asname or a.name)[:1].islower())
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else (
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
            for target in targets:
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) \
                        and target.value.id in imported:
                    found.append(f"{name}: {target.value.id}.{target.attr}")
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setattr" \
                    and node.args and isinstance(node.args[0], ast.Name) \
                    and node.args[0].id in imported:
                found.append(f"{name}: setattr({node.args[0].id}, ...)")
    assert found == []
