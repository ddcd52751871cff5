"""``scripts/install-browser``, the README's (and CI's) test set-up step: it installs Debian's
chromium, chromium-driver and exiftool when one of them is missing, and does nothing at all on a
machine that has the three (no apt-get, no sudo), so running it again is free.

Run against stand-ins on a PATH of their own: ``apt-get`` and ``sudo`` only write down how they were
called, so nothing is installed and no network is used.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "install-browser"


def _run(tmp_path: Path, present: tuple[str, ...], uid: int) -> tuple[int, list[str]]:
    """Run the script with only ``present`` (plus apt-get, sudo, id) on PATH; return its exit code
    and the apt-get/sudo calls it made."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.log"
    stubs = {name: "exit 0" for name in present}
    stubs |= {
        "apt-get": f'echo "apt-get $*" >> {calls}',
        "sudo": f'echo "sudo $1" >> {calls}; exec "$@"',
        "id": f"echo {uid}",
    }
    for name, body in stubs.items():
        stub = bin_dir / name
        stub.write_text(f"#!/bin/sh\n{body}\n")
        stub.chmod(0o755)
    proc = subprocess.run(
        ["/bin/bash", str(SCRIPT)], env={"PATH": str(bin_dir)}, capture_output=True, text=True, timeout=60
    )
    return proc.returncode, calls.read_text().splitlines() if calls.exists() else []


def test_a_machine_with_all_three_is_left_alone(tmp_path: Path) -> None:
    assert _run(tmp_path, ("chromium", "chromedriver", "exiftool"), uid=1000) == (0, [])


@pytest.mark.parametrize("missing", ["exiftool", "chromium", "chromedriver"])
def test_any_one_missing_installs_the_three_packages(tmp_path: Path, missing: str) -> None:
    present = tuple(name for name in ("chromium", "chromedriver", "exiftool") if name != missing)
    code, calls = _run(tmp_path, present, uid=0)
    assert code == 0
    assert calls == [
        "apt-get update -qq",
        "apt-get install -y -qq chromium chromium-driver libimage-exiftool-perl",
    ]


def test_not_root_goes_through_sudo(tmp_path: Path) -> None:
    code, calls = _run(tmp_path, ("chromium", "chromedriver"), uid=1000)
    assert code == 0
    assert calls == [
        "sudo apt-get",
        "apt-get update -qq",
        "sudo apt-get",
        "apt-get install -y -qq chromium chromium-driver libimage-exiftool-perl",
    ]
