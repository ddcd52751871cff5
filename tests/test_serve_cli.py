"""``photocorpus serve`` as a user starts it: the CLI in its own process, killed with SIGKILL in the
middle of a burst of decisions (issue #22: nothing acknowledged is lost, the catalog stays intact)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import run_cli
from tests.serve_helpers import build_corpus, catalog_rows, copy_corpus, free_port


@pytest.fixture()
def corpus_dir(tmp_path_factory: pytest.TempPathFactory, instany_images: Path, tmp_path: Path) -> Path:
    built = build_corpus(tmp_path_factory.mktemp("serve-built"), instany_images)
    return copy_corpus(built, tmp_path / "corpus")


def start_cli(corpus: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """``photocorpus serve`` in a subprocess; returns it and the URL it printed."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "photocorpus",
            "serve",
            "-C",
            str(corpus),
            "--port",
            str(port),
            "--no-browser",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(http://\S+)", line)
    assert match, f"no URL in {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, match.group(1)
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("photocorpus serve did not answer within 30 s")


@pytest.fixture()
def stop_later() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_the_cli_prints_a_url_with_a_fresh_random_token(corpus_dir: Path, stop_later: list) -> None:
    proc, url = start_cli(corpus_dir)
    stop_later.append(proc)
    match = re.fullmatch(r"http://localhost:(\d+)/\?token=([A-Za-z0-9_-]{20,})", url)
    assert match, url
    token = match.group(2)
    base = f"http://127.0.0.1:{match.group(1)}"
    landing = httpx.get(f"{base}/?token={token}")
    assert landing.status_code == 303 and "HttpOnly" in landing.headers["set-cookie"]
    assert (
        httpx.post(f"{base}/api/decisions", json={"kind": "note", "photo_ids": [1], "text": "x"}).status_code
        == 403
    )
    second, other = start_cli(corpus_dir)
    stop_later.append(second)
    assert other.rsplit("=", 1)[1] != token, "every start makes a new token"


def test_kill_9_during_a_burst_of_decisions_loses_nothing_acknowledged(
    corpus_dir: Path, stop_later: list
) -> None:
    proc, url = start_cli(corpus_dir, "--token", "burst-token")
    stop_later.append(proc)
    base = url.split("/?", 1)[0].replace("localhost", "127.0.0.1")
    client = httpx.Client(base_url=base, timeout=10)
    client.get("/?token=burst-token")
    client.get("/grid")
    csrf = next(v for k, v in client.cookies.items() if k.startswith("pc_csrf_"))
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def burst(worker: int) -> None:
        for i in range(10_000):
            if stop.is_set():
                return
            request_id = f"kill-{worker}-{i}"
            body = {
                "kind": "exclude" if i % 2 else "include",
                "photo_ids": [1 + (i % 40)],
                "request_id": request_id,
            }
            try:
                answer = client.post("/api/decisions", json=body, headers={"X-CSRF-Token": csrf})
            except httpx.TransportError:
                return  # the server is gone: this request was never acknowledged
            if answer.status_code == 200:
                with lock:
                    acknowledged.append(request_id)

    threads = [threading.Thread(target=burst, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 60 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(acknowledged) >= 60
    stored = {r[0] for r in catalog_rows(corpus_dir, "SELECT request_id FROM decisions")}
    assert set(acknowledged) <= stored, "an acknowledged decision was lost"
    verify = run_cli("verify", "-C", str(corpus_dir), check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # every stored decision left its effect with it: the newest exclusion verdict per photo matches
    latest = catalog_rows(
        corpus_dir,
        "SELECT v.photo_id, v.value, d.kind FROM photo_verdicts v JOIN decisions d ON d.id = v.decision "
        "WHERE v.field = 'exclude'",
    )
    assert latest and all((kind == "exclude") == (value == "true") for _pid, value, kind in latest)
