"""docs/architecture.md cannot go stale silently (issue #19).

Its "Every module" tables name each module by its path relative to ``src/photocorpus`` in backticks,
in the first cell of its row. These tests hold the page to the code: every module file has a row,
every module path the page names exists, and the Core table lists exactly the core of the
import-linter contract "the core imports no stage" in ``pyproject.toml``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "photocorpus"
DOC = ROOT / "docs" / "architecture.md"

_FIRST_CELL = re.compile(r"^\|\s*`([^`]+)`\s*\|")
_BACKTICKED_PY = re.compile(r"`([A-Za-z0-9_./]+\.py)`")


def module_files() -> set[str]:
    """Every ``.py`` file of the package, relative to ``src/photocorpus`` (``fetch/stage.py``)."""
    return {p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py")}


def table_rows(text: str) -> dict[str, list[str]]:
    """The module paths of the table rows, per ``###`` section (``####`` subsections included)."""
    sections: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("### "):
            section = line[4:].strip()
        match = _FIRST_CELL.match(line)
        if match and match.group(1) != "module":
            sections.setdefault(section, []).append(match.group(1))
    return sections


def missing_from_doc(text: str, files: set[str]) -> list[str]:
    """Module files that no table row names."""
    listed = {path for rows in table_rows(text).values() for path in rows}
    return sorted(files - listed)


def named_but_absent(text: str, files: set[str]) -> list[str]:
    """Module paths the page names (a table's first cell, or any backticked ``*.py``) that do not exist.

    Placeholders such as ``commands/<stage>.py`` are not paths and are left out; so are paths outside
    the package that exist from the repository root (``tests/test_architecture.py``).
    """
    named = {path for rows in table_rows(text).values() for path in rows}
    named |= {m for m in _BACKTICKED_PY.findall(text) if not (ROOT / m).is_file()}
    return sorted(path for path in named if path not in files)


def top_level(path: str) -> str:
    """``photocorpus.backbones`` for ``backbones/vgg.py``, ``photocorpus.corpus`` for ``corpus.py``."""
    return "photocorpus." + path.split("/")[0].removesuffix(".py")


def core_contract() -> set[str]:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    (forbidden,) = [c for c in contracts["contracts"] if c.get("type") == "forbidden"]
    return set(forbidden["source_modules"])


def test_every_module_file_has_a_row() -> None:
    assert missing_from_doc(DOC.read_text(encoding="utf-8"), module_files()) == []


def test_every_module_path_the_doc_names_exists() -> None:
    assert named_but_absent(DOC.read_text(encoding="utf-8"), module_files()) == []


def test_each_module_has_one_row() -> None:
    rows = [path for paths in table_rows(DOC.read_text(encoding="utf-8")).values() for path in paths]
    assert sorted({path for path in rows if rows.count(path) > 1}) == []


def test_the_core_table_is_the_contracts_core() -> None:
    sections = table_rows(DOC.read_text(encoding="utf-8"))
    core = {top_level(path) for path in sections.get("Core", [])}
    elsewhere = {top_level(path) for name, paths in sections.items() if name != "Core" for path in paths}
    assert sorted(core ^ core_contract()) == []
    assert sorted(elsewhere & core_contract()) == []


def test_the_checks_can_fail() -> None:
    """A page from before the renames (``layout.py``, ``storage.py``, a ``fetch/`` row) fails both."""
    stale = (
        "### Core\n\n| module | what lives there |\n| --- | --- |\n"
        "| `layout.py` | Where files go. |\n| `fetch/` | The fetch stage. |\n"
        "Atomic writes: `storage.py`; a placeholder: `commands/<stage>.py`.\n"
    )
    files = {"corpus_paths.py", "corpus_files.py", "fetch/stage.py"}
    assert missing_from_doc(stale, files) == ["corpus_files.py", "corpus_paths.py", "fetch/stage.py"]
    assert named_but_absent(stale, files) == ["fetch/", "layout.py", "storage.py"]
