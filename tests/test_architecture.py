"""The shape of the code, kept by tests (issue #19): layers, independent stages, no import cycles, and
no module reaching into another's private names.

The layers and the stages' independence are import-linter contracts in ``pyproject.toml``
(``[tool.importlinter]``); this runs ``lint-imports`` on them. The other rules are checked here on the
import graph (grimp, import-linter's own) and on the source (``ast``). Imports under
``if TYPE_CHECKING:`` are annotations, not dependencies, and are left out, as the contracts leave them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "photocorpus"


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(
        "photocorpus", include_external_packages=False, exclude_type_checking_imports=True
    )


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"][
        "contracts"
    ]


def test_the_import_linter_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "broken" not in proc.stdout.lower().split("contracts:")[-1] or "0 broken" in proc.stdout


def test_every_top_level_module_has_its_place_in_the_contracts() -> None:
    """A new module must be put in a layer (or declared core), so the contracts keep covering it."""
    named: set[str] = set()
    for contract in _contracts():
        for layer in contract.get("layers", []):
            named.update(part.strip() for part in layer.replace("|", ":").split(":"))
        named.update(contract.get("source_modules", []))
    here = {f"photocorpus.{p.stem}" for p in SRC.glob("*.py") if p.stem != "__init__"}
    here |= {f"photocorpus.{p.name}" for p in SRC.iterdir() if (p / "__init__.py").is_file()}
    assert sorted(here - named) == []


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    # the package root imports its API lazily (PEP 562) and nothing imports the root back
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check above must be able to fail: a graph with a -> b -> c -> a has one cycle."""
    g = grimp.ImportGraph()
    for name in ("pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.d"):
        g.add_module(name)
    for importer, imported in (
        ("pkg.a", "pkg.b"),
        ("pkg.b", "pkg.c"),
        ("pkg.c", "pkg.a"),
        ("pkg.d", "pkg.a"),
    ):
        g.add_import(importer=importer, imported=imported)
    assert _cycles(g) == [["pkg.a", "pkg.b", "pkg.c"]]


def _private_imports(path: Path) -> list[str]:
    """``from photocorpus.x import _name`` and ``x._name`` on an imported photocorpus module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    modules: set[str] = set()  # local names bound to photocorpus modules
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "photocorpus":
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.name}:{node.lineno} from {node.module} import {alias.name}")
                elif alias.name.islower():
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "photocorpus" and alias.asname:
                    modules.add(alias.asname)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    offenders = [hit for path in sorted(SRC.rglob("*.py")) for hit in _private_imports(path)]
    assert offenders == []


def test_the_private_name_check_can_fail(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from photocorpus.fetch.stage import _PAGE, fetch_photos\n"
        "from photocorpus import corpus_paths\n"
        "corpus_paths._private()\n"
        "corpus_paths.safe_component('x')\n",
        encoding="utf-8",
    )
    assert _private_imports(sample) == [
        "sample.py:1 from photocorpus.fetch.stage import _PAGE",
        "sample.py:3 corpus_paths._private",
    ]


def test_long_modules_say_why_at_their_top() -> None:
    """Past ~600 lines a module must say, in its docstring, why it is not split (issue #19)."""
    unexplained = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 620:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if "600-line" not in doc:
                unexplained.append(str(path.relative_to(SRC)))
    assert unexplained == []
