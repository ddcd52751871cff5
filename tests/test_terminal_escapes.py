"""Terminal escape injection (issue #23, item B): source text printed by the CLI cannot drive the terminal.

A label holding ``ESC ] 0 ; ... BEL`` retitles the user's terminal window, ``ESC [ 2 J`` clears it, and
the single C1 byte 0x9B is CSI on terminals that honour C1 controls. ``status``, ``curate``, progress
bars and error lines must show such text escaped (``\\x1b``), never send the control bytes.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from photocorpus import progress
from photocorpus.corpus import Corpus
from photocorpus.importing import import_folder
from photocorpus.textsafety import terminal_safe
from tests.conftest import run_cli

pytestmark = pytest.mark.reliability

OSC_TITLE = "\x1b]0;pwned\x07"
CLEAR = "\x1b[2J"
C1_CSI = "\x9b31m"
HOSTILE_LABEL = f"city{OSC_TITLE}{CLEAR}{C1_CSI}\x00end"
HOSTILE_CAPTION = f"sunset {OSC_TITLE} over {CLEAR} the {C1_CSI} river\x00"
# What may reach the terminal: printable text, tab and newline. No C0 control but those, no DEL, no C1.
FORBIDDEN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Plain output, as in a pipe or a log: rich then emits no styling of its own.
PLAIN = {"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"}


def _assert_clean(text: str) -> None:
    found = sorted({f"\\x{ord(c):02x}" for c in FORBIDDEN.findall(text)})
    assert not found, f"control characters reached the terminal: {found}\n{text!r}"


@pytest.fixture(scope="module")
def hostile_corpus(tmp_path_factory: pytest.TempPathFactory, instany_images: Path) -> Path:
    """Real photos imported under a hostile label, with hostile captions and titles."""
    root = tmp_path_factory.mktemp("termesc")
    src = root / "src"
    src.mkdir()
    for i, photo in enumerate(sorted(instany_images.glob("*.jpg"))[500:506]):
        (src / photo.name).write_bytes(photo.read_bytes())
        meta = {
            "title": f"title {OSC_TITLE}",
            "caption": f"{HOSTILE_CAPTION} {i}",
            "owner": f"owner{i}{CLEAR}",
        }
        (src / f"{photo.stem}.json").write_text(json.dumps(meta), encoding="utf-8")
    corpus = root / "corpus"
    # The Python API: a NUL cannot travel in a command-line argument, but a source can store one.
    with Corpus.create(corpus) as c:
        report = import_folder(c, src, label=HOSTILE_LABEL, workers=1)
    assert report.imported == 6
    return corpus


def test_terminal_safe_escapes_c0_del_and_c1() -> None:
    assert terminal_safe(HOSTILE_LABEL) == r"city\x1b]0;pwned\x07\x1b[2J\x9b31m\x00end"
    assert terminal_safe("a\tb\nc\rd\x7f") == r"a\tb\nc\rd\x7f"
    assert terminal_safe("two\nlines\x1b", keep_newlines=True) == "two\nlines\\x1b"
    assert terminal_safe("café 東京 😍 C:\\photos") == "café 東京 😍 C:\\photos"
    _assert_clean(terminal_safe("".join(map(chr, range(0xA0)))))


def test_status_escapes_a_hostile_label(hostile_corpus: Path) -> None:
    proc = run_cli("status", "-C", str(hostile_corpus), env=PLAIN)
    _assert_clean(proc.stdout + proc.stderr)
    assert r"city\x1b]0;pwned\x07\x1b[2J\x9b31m\x00end" in proc.stdout
    # --json was already safe (json.dumps escapes control characters) and keeps its format.
    status = json.loads(run_cli("status", "--json", "-C", str(hostile_corpus), env=PLAIN).stdout)
    assert status["labels"] == {HOSTILE_LABEL: 6}


def test_curate_escapes_a_hostile_label(hostile_corpus: Path) -> None:
    args = ("curate", "-C", str(hostile_corpus), "--workers", "1", "--no-semantic", "--keep-bots")
    proc = run_cli(*args, env=PLAIN)
    _assert_clean(proc.stdout + proc.stderr)
    assert r"split city\x1b]0;pwned\x07\x1b[2J\x9b31m\x00end:" in proc.stdout


def test_error_lines_are_escaped(tmp_path: Path) -> None:
    run_cli("init", str(tmp_path / "c"))
    missing = tmp_path / f"no{OSC_TITLE}such"
    proc = run_cli("import", str(missing), "-C", str(tmp_path / "c"), check=False, env=PLAIN)
    assert proc.returncode == 2
    _assert_clean(proc.stdout + proc.stderr)
    assert r"no\x1b]0;pwned\x07such" in proc.stderr


def test_progress_descriptions_are_escaped(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.StringIO()
    monkeypatch.setattr(progress, "stderr_console", Console(file=buf, force_terminal=False, width=200))
    with progress.progress_bar(f"harvest {HOSTILE_LABEL} [/]", 1) as advance:
        advance(1)
    _assert_clean(buf.getvalue())
    assert r"harvest city\x1b]0;pwned\x07" in buf.getvalue() and "[/]" in buf.getvalue()
