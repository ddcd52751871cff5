"""kill -9 of `photocorpus serve` during a burst of human decisions (issue #22's acceptance).

What must hold whatever moment the kill lands on: every decision the server acknowledged with 200 is
in the audit table under its ``request_id`` with its effect applied; no decision is half applied (an
effect without its audit row, or an audit row without its effect); ``photocorpus verify`` passes; and a
restarted server serves, accepts new decisions and answers a replayed ``request_id`` with the decision
it stored before the kill.

How the kill lands mid-burst: several clients send decisions back to back, and the server's whole
process group is SIGKILLed as soon as :data:`KILL_AFTER_ACKS` have been acknowledged, while the
others are still in flight. How many got through varies from run to run; the assertions are about
the outcome, so they hold for any number (none included).

Each decision names targets no other decision names (one label and one exclusion per photo, one
verdict per pair), so every effect in the verdict tables belongs to exactly one decision and each can
be checked against its own audit row.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import httpx
import pytest

from photocorpus.corpus import Corpus
from photocorpus.decisions import overrides
from tests.conftest import run_cli
from tests.serve_helpers import free_port

PHOTOS = 24
CLIENTS = 4
KILL_AFTER_ACKS = 10
START_TIMEOUT_S = 60.0
LABELS = ("street", "food", "skyline")


@dataclass
class Server:
    """`photocorpus serve` in its own process group; the token comes from the URL it prints."""

    proc: subprocess.Popen[str]
    base: str
    token: str
    output: list[str] = field(default_factory=list)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)


def start_server(corpus_dir: Path) -> Server:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "photocorpus",
            "serve",
            "-C",
            str(corpus_dir),
            "--port",
            str(port),
            "--no-browser",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # the URL line must not wait in a pipe buffer
    )
    output: list[str] = []
    found = threading.Event()
    token: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            match = re.search(r"[?&]token=([A-Za-z0-9_\-]+)", line)
            if match and not token:
                token.append(match.group(1))
                found.set()

    threading.Thread(target=read, daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"photocorpus serve exited with {proc.returncode}:\n{''.join(output)}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200 and found.wait(0.1):
                return Server(proc, base, token[0], output)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"photocorpus serve did not start in {START_TIMEOUT_S} s:\n{''.join(output)}")


def browser(server: Server) -> tuple[httpx.Client, dict[str, str]]:
    """A client logged in like a browser (GET /?token=, cookies kept) and its write headers."""
    client = httpx.Client(base_url=server.base, follow_redirects=True, timeout=30)
    client.get("/", params={"token": server.token}).raise_for_status()
    csrf = [value for name, value in client.cookies.items() if "csrf" in name]
    assert csrf, f"no csrf cookie after GET /?token= (cookies: {list(client.cookies)})"
    return client, {"X-CSRF-Token": csrf[0]}


def planned_decisions(photo_ids: list[int], clients: int) -> list[list[dict[str, Any]]]:
    """Per client, decisions on its own photos: a label and an exclusion per photo, every pair of its
    photos marked not a duplicate; each with a fresh request_id."""
    plans: list[list[dict[str, Any]]] = []
    for c in range(clients):
        mine = photo_ids[c::clients]
        plan: list[dict[str, Any]] = []
        for i, pid in enumerate(mine):
            plan.append({"kind": "set_label", "photo_ids": [pid], "label": LABELS[i % len(LABELS)]})
            plan.append({"kind": "exclude", "photo_ids": [pid]})
        plan += [{"kind": "not_duplicate", "photo_ids": [a, b]} for a, b in combinations(mine, 2)]
        for body in plan:
            body["request_id"] = f"kill-{uuid.uuid4().hex}"
            body["reviewer"] = f"client-{c}"
        plans.append(plan)
    return plans


@dataclass
class Burst:
    acked: dict[str, int] = field(default_factory=dict)  # request_id -> decision id the server answered
    refused: list[str] = field(default_factory=list)  # answers other than 200 or 503, for the test to fail on
    lock: threading.Lock = field(default_factory=threading.Lock)
    enough: threading.Event = field(default_factory=threading.Event)


def send_until_killed(server: Server, plan: list[dict[str, Any]], burst: Burst) -> None:
    client, headers = browser(server)
    try:
        for body in plan:
            try:
                r = client.post("/api/decisions", json=body, headers=headers)
            except httpx.HTTPError:
                return  # the server is gone
            if r.status_code == 503:  # busy catalog: not acknowledged, so nothing is owed
                continue
            if r.status_code != 200:  # an assert here would end the thread, not the test
                burst.refused.append(f"{body['kind']}: {r.status_code} {r.text[:200]}")
                return
            with burst.lock:
                burst.acked[body["request_id"]] = int(r.json()["decision"]["id"])
                if len(burst.acked) >= KILL_AFTER_ACKS:
                    burst.enough.set()
    finally:
        client.close()


@pytest.fixture
def corpus_dir(instany_images: Path, tmp_path: Path) -> Iterator[Path]:
    """A small corpus of real photos, imported and curated (so exclusions have splits to clear)."""
    src = tmp_path / "src"
    src.mkdir()
    for path in sorted(instany_images.glob("*.jpg"))[:PHOTOS]:
        shutil.copyfile(path, src / path.name)
    corpus = tmp_path / "corpus"
    run_cli("init", str(corpus))
    run_cli("import", str(src), "-C", str(corpus), "-q")
    run_cli("curate", "-C", str(corpus), "-q")
    yield corpus


def _rows(corpus_dir: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{corpus_dir / 'catalog.sqlite'}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_sigkill_mid_burst_loses_nothing_acknowledged(corpus_dir: Path) -> None:
    photo_ids = [r[0] for r in _rows(corpus_dir, "SELECT id FROM photos ORDER BY id")]
    assert len(photo_ids) == PHOTOS
    plans = planned_decisions(photo_ids, CLIENTS)
    by_request = {body["request_id"]: body for plan in plans for body in plan}

    server = start_server(corpus_dir)
    burst = Burst()
    threads = [threading.Thread(target=send_until_killed, args=(server, plan, burst)) for plan in plans]
    try:
        for t in threads:
            t.start()
        burst.enough.wait(60)
    finally:
        server.kill()
        for t in threads:
            t.join(60)
    assert burst.refused == []
    sent = sum(len(p) for p in plans)
    print(f"killed after {len(burst.acked)} of {sent} decisions were acknowledged")

    # 1. every acknowledged decision is in the audit table, under the id the server answered
    stored = {
        rid: (int(i), json.loads(ids), undone)
        for i, rid, ids, undone in _rows(
            corpus_dir, "SELECT id, request_id, photo_ids, undone_by FROM decisions"
        )
    }
    assert set(stored) <= set(by_request), "the audit table holds decisions nobody sent"
    for rid, decision_id in burst.acked.items():
        assert rid in stored, f"acknowledged decision {decision_id} ({by_request[rid]['kind']}) was lost"
        assert stored[rid][0] == decision_id
        assert sorted(stored[rid][1]) == sorted(by_request[rid]["photo_ids"])
        assert stored[rid][2] is None

    # 2. each stored decision has exactly its effect, and no effect lacks its decision
    decision_of = {rid: v[0] for rid, v in stored.items()}
    want_photo: dict[tuple[int, str], tuple[int, Any]] = {}
    want_pairs: dict[tuple[int, int], int] = {}
    for rid, did in decision_of.items():
        body = by_request[rid]
        if body["kind"] == "set_label":
            want_photo[(body["photo_ids"][0], "label")] = (did, body["label"])
        elif body["kind"] == "exclude":
            want_photo[(body["photo_ids"][0], "exclude")] = (did, True)
        else:
            a, b = sorted(body["photo_ids"])
            want_pairs[(a, b)] = did
    have_photo = {
        (pid, fld): (int(did), json.loads(value))
        for pid, fld, value, did in _rows(
            corpus_dir, "SELECT photo_id, field, value, decision FROM photo_verdicts"
        )
    }
    have_pairs = {
        (a, b): int(did)
        for a, b, verdict, did in _rows(corpus_dir, "SELECT a, b, verdict, decision FROM pair_verdicts")
        if verdict == "different"
    }
    assert have_photo == want_photo
    assert have_pairs == want_pairs
    assert len(_rows(corpus_dir, "SELECT 1 FROM pair_verdicts")) == len(want_pairs)
    excluded = {pid for (pid, fld) in want_photo if fld == "exclude"}
    curation = dict(
        ((pid, (exclusion, split)) for pid, exclusion, split in _rows(
            corpus_dir, "SELECT photo_id, exclusion, split FROM curation"
        ))
    )  # fmt: skip
    for pid in excluded:
        assert curation[pid] == ("human", None), f"photo {pid}: exclusion recorded without its effect"
    # the public read of the effective state agrees with the tables
    with Corpus.open(corpus_dir) as corpus:
        effective = overrides(corpus)
    assert effective.excluded == excluded
    assert effective.labels == {pid: v for (pid, fld), (_, v) in want_photo.items() if fld == "label"}
    assert effective.different_pairs == set(want_pairs)

    # 3. the catalog is intact
    verify = run_cli("verify", "-C", str(corpus_dir), check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # 4. a restarted server serves, answers a replayed request with the stored decision, accepts new ones
    server = start_server(corpus_dir)
    try:
        client, headers = browser(server)
        try:
            assert client.get("/grid").status_code == 200
            for rid, decision_id in list(burst.acked.items())[:3]:
                again = client.post("/api/decisions", json=by_request[rid], headers=headers)
                assert again.status_code == 200, again.text
                assert int(again.json()["decision"]["id"]) == decision_id
            fresh = {
                "kind": "note",
                "photo_ids": [photo_ids[0]],
                "text": "after the kill",
                "request_id": "after-kill",
            }
            r = client.post("/api/decisions", json=fresh, headers=headers)
            assert r.status_code == 200, r.text
            new_id = int(r.json()["decision"]["id"])
            audit = client.get("/api/decisions", params={"after_id": 0, "limit": 10_000}).json()
        finally:
            client.close()
    finally:
        server.kill()
    audit_rows = audit["decisions"] if isinstance(audit, dict) else audit
    assert {int(d["id"]) for d in audit_rows} == {v[0] for v in stored.values()} | {new_id}
