"""The featurize modules depend on each other one way, through public names only.

Read from the source (every import, module level or inside a function, as import-linter sees them),
so the check needs nothing imported: the Ray twin (``distributed``) shares public pieces with the
local driver instead of reaching into it, and no module of the package imports another's
underscore name.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "photocorpus" / "features"
PREFIX = "photocorpus.features"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join((PREFIX, *parts))] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, str]]:
    """``(module imported, name)`` for every ``from photocorpus.features... import name`` in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PREFIX):
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                out.append((submodule, "") if submodule in modules else (node.module, alias.name))
        elif isinstance(node, ast.Import):
            out.extend((alias.name, "") for alias in node.names if alias.name in modules)
    return out


def test_no_module_of_the_package_imports_another_modules_underscore_name() -> None:
    modules = _modules()
    private = [
        f"{name} imports {target}.{imported}"
        for name, path in modules.items()
        for target, imported in _imports(path, modules)
        if imported.startswith("_") and not imported.startswith("__")
    ]
    assert private == []


def test_the_imports_between_featurize_modules_form_no_cycle() -> None:
    modules = _modules()
    graph = {
        name: sorted(t for t, _ in _imports(path, modules) if t != name) for name, path in modules.items()
    }
    cycles: list[list[str]] = []
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:  # depth first; a module on the path again is a cycle
        if name in path:
            cycles.append([*path[path.index(name) :], name])
            return
        if name in done:
            return
        for target in graph.get(name, []):
            visit(target, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert cycles == []


def test_the_ray_twin_does_not_import_the_local_driver() -> None:
    modules = _modules()
    targets = {target for target, _ in _imports(modules[f"{PREFIX}.distributed"], modules)}
    assert f"{PREFIX}.pipeline" not in targets
    # what it shares with the local loop instead: the decode and inference steps
    assert {f"{PREFIX}.decode", f"{PREFIX}.runners"} <= targets
