"""The command line as a user meets it: init, import, status --json, verify, demo, lazy imports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import run_cli


def test_init_import_status_json(tmp_path: Path, instany_images: Path) -> None:
    corpus = tmp_path / "c"
    out = run_cli("init", str(corpus))
    assert "Created corpus" in out.stdout
    src = tmp_path / "src" / "nyc"
    src.mkdir(parents=True)
    for p in sorted(instany_images.glob("*.jpg"))[:25]:
        (src / p.name).write_bytes(p.read_bytes())
    (src / "broken.jpg").write_bytes(b"")
    out = run_cli("import", str(src), "--corpus", str(corpus), "--quiet")
    assert "25 imported" in out.stdout and "1 failed" in out.stdout
    status = json.loads(run_cli("status", "--json", "--corpus", str(corpus)).stdout)
    assert status["photos"] == 26
    assert status["labels"] == {"nyc": 26}
    assert status["stages"] == {"fetch": {"done": 25, "failed": 1}}
    assert status["failures"] == {"empty_file": 1}
    # $PHOTOCORPUS_CORPUS is the default corpus
    env_status = json.loads(run_cli("status", "--json", env={"PHOTOCORPUS_CORPUS": str(corpus)}).stdout)
    assert env_status["photos"] == 26
    table = run_cli("status", "--corpus", str(corpus)).stdout
    assert "nyc" in table and "empty_file" in table
    assert "integrity_check: ok" in run_cli("verify", "--corpus", str(corpus)).stdout


def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    proc = run_cli("status", "--corpus", str(tmp_path / "nope"), check=False)
    assert proc.returncode == 2
    assert "is not a photocorpus corpus" in proc.stderr and "photocorpus init" in proc.stderr
    assert "Traceback" not in proc.stderr
    run_cli("init", str(tmp_path / "c"))
    proc = run_cli("init", str(tmp_path / "c"), check=False)
    assert proc.returncode == 2 and "already holds a corpus" in proc.stderr
    proc = run_cli("import", str(tmp_path / "missing"), "--corpus", str(tmp_path / "c"), check=False)
    assert proc.returncode == 2 and "is not a folder" in proc.stderr


def test_fast_commands_do_not_import_heavy_libraries(tmp_path: Path) -> None:
    run_cli("init", str(tmp_path / "c"))
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from photocorpus.cli import app\n"
        "r = CliRunner()\n"
        f"assert r.invoke(app, ['--help']).exit_code == 0\n"
        f"assert r.invoke(app, ['status', '--corpus', {str(tmp_path / 'c')!r}]).exit_code == 0\n"
        "heavy = {'torch', 'onnxruntime', 'faiss', 'ray', 'sentence_transformers', 'sklearn', 'skimage'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_demo_builds_a_corpus_that_status_describes(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"
    out = run_cli("demo", str(demo_dir), "--quiet")
    assert "Done." in out.stdout
    status = json.loads(run_cli("status", "--json", "--corpus", str(demo_dir)).stdout)
    assert status["photos"] >= 50
    assert {"food", "animals", "space", "street", "textures", "science"} <= set(status["labels"])
    assert status["failures"] == {"corrupt_image": 1, "empty_file": 1, "not_an_image": 1}
    assert status["stages"]["fetch"]["done"] == status["photos"] - 3
    # The demo curates: its generated reposts (re-encoded, cropped, framed, watermarked...) are found
    # as duplicates of their originals, and the unique ratios appear in status.
    reposts = int(re.search(r"(\d+) reposts", out.stdout).group(1))
    assert reposts > 0
    curate = status["curate"]
    assert curate["hashed"] == status["photos"] - 3
    assert curate["duplicates"] >= reposts * 0.9, (curate, reposts)
    assert curate["unique_ratio"] < curate["unique_ratio_sha256"] <= 1
    assert sum(curate["splits"].values()) > 0
    # Running the demo again resumes instead of duplicating.
    run_cli("demo", str(demo_dir), "--quiet")
    assert (
        json.loads(run_cli("status", "--json", "--corpus", str(demo_dir)).stdout)["photos"]
        == status["photos"]
    )


def _commands(group: object, path: tuple[str, ...] = ()) -> list[tuple[str, object]]:
    """Every leaf command of the CLI with its full name, e.g. ('harvest flickr', <Command>)."""
    subcommands = getattr(group, "commands", None)  # a group (typer ships its own copy of click)
    if subcommands is not None:
        return [found for name, sub in sorted(subcommands.items()) for found in _commands(sub, (*path, name))]
    return [(" ".join(path), group)]


def test_every_short_flag_means_one_thing_and_q_is_quiet_everywhere() -> None:
    """A short flag declared by two options of one command parses as only one of them (``harvest
    flickr -q cat`` failed: ``-q`` was both --query and --quiet); and scripts written against one
    command expect ``-q`` to mean the same (--quiet, no progress bar) in every other."""
    import typer

    from photocorpus.cli import app

    commands = _commands(typer.main.get_command(app))
    assert len(commands) > 20 and "harvest flickr" in dict(commands)
    for name, command in commands:
        owners: dict[str, list[str]] = {}
        for param in command.params:
            if param.param_type_name == "option":
                for flag in (*param.opts, *param.secondary_opts):
                    if not flag.startswith("--"):
                        owners.setdefault(flag, []).append(param.name)
        assert all(len(names) == 1 for names in owners.values()), (name, owners)
        if "-q" in owners:
            assert owners["-q"] == ["quiet"], name
    flickr_help = run_cli("harvest", "flickr", "--help").stdout
    assert re.search(r"--query\s+<", flickr_help) and not re.search(r"--query\s+-q", flickr_help)
