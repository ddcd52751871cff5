"""``photocorpus serve --workers N``: several processes must behave as one server.

Two apps on one corpus stand for two workers (the same code each uvicorn worker runs): a decision
answered by one must show in the other's cached pages, an export started on one must be visible
from the other. The CLI test starts real worker processes and kills the command with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from photocorpus.serve.app import create_app
from tests.serve_helpers import TOKEN, build_corpus, catalog_rows, copy_corpus
from tests.test_serve_cli import start_cli

PORT = 8765


@pytest.fixture()
def corpus_dir(tmp_path_factory: pytest.TempPathFactory, instany_images: Path, tmp_path: Path) -> Path:
    built = build_corpus(tmp_path_factory.mktemp("serve-built"), instany_images)
    return copy_corpus(built, tmp_path / "corpus")


def browser(corpus: Path, server_id: str) -> TestClient:
    """One worker's app, opened the way a browser opens it (token cookie, csrf cookie)."""
    client = TestClient(
        create_app(corpus, token=TOKEN, port=PORT, server_id=server_id), base_url="http://127.0.0.1:8765"
    )
    client.get(f"/?token={TOKEN}")
    client.get("/grid")
    return client


def csrf(client: TestClient) -> dict[str, str]:
    return {"X-CSRF-Token": client.cookies[f"pc_csrf_{PORT}"]}


@pytest.fixture()
def two_workers(corpus_dir: Path) -> Iterator[tuple[TestClient, TestClient]]:
    first, second = browser(corpus_dir, "run-1"), browser(corpus_dir, "run-1")
    with first, second:
        yield first, second


def test_a_decision_on_one_worker_clears_the_cached_values_of_another(
    two_workers: tuple[TestClient, TestClient],
) -> None:
    first, second = two_workers
    other = second.app.state.ctx  # type: ignore[attr-defined]
    assert other.cached("queue", lambda: "before") == "before"
    assert other.cached("queue", lambda: "recomputed") == "before", "no decision: the value is kept"
    assert other.cached("keep:map", lambda: "map") == "map"
    answer = first.post("/api/decisions", json={"kind": "exclude", "photo_ids": [3]}, headers=csrf(first))
    assert answer.status_code == 200, answer.text
    assert other.cached("queue", lambda: "after") == "after"
    assert other.cached("keep:map", lambda: "map again") == "map", "keep: values survive decisions"


def test_a_decision_on_one_worker_shows_in_the_facet_counts_of_another(
    two_workers: tuple[TestClient, TestClient], corpus_dir: Path
) -> None:
    first, second = two_workers
    ((included,),) = catalog_rows(corpus_dir, "SELECT photo_id FROM curation WHERE exclusion IS NULL LIMIT 1")

    def included_per_label() -> int:
        facets = second.get("/api/facets?excluded=0").json()
        return sum(f["count"] for f in facets["label"])

    before = included_per_label()
    assert included_per_label() == before  # now cached in the second worker
    answer = first.post(
        "/api/decisions", json={"kind": "exclude", "photo_ids": [included]}, headers=csrf(first)
    )
    assert answer.status_code == 200, answer.text
    assert included_per_label() == before - 1


def test_an_export_started_on_one_worker_is_polled_from_another(
    two_workers: tuple[TestClient, TestClient], corpus_dir: Path
) -> None:
    first, second = two_workers
    started = first.post("/api/exports", json={"format": "attribution"}, headers=csrf(first))
    assert started.status_code == 200, started.text
    job_id = started.json()["job"]
    seen = second.get(f"/api/jobs/{job_id}")
    assert seen.status_code == 200, seen.text
    assert seen.json()["id"] == job_id and seen.json()["format"] == "attribution"
    with browser(corpus_dir, "run-2") as restarted:
        assert restarted.get(f"/api/jobs/{job_id}").status_code == 404, "a new server forgets old jobs"
    again = first.post("/api/exports", json={"format": "attribution"}, headers=csrf(first))
    assert again.json()["job"] != job_id


def test_the_cli_runs_two_workers_that_die_with_it(corpus_dir: Path) -> None:
    proc, url = start_cli(corpus_dir, "--workers", "2", "--token", "two-workers-token")
    try:
        base = url.split("/?", 1)[0].replace("localhost", "127.0.0.1")
        client = httpx.Client(base_url=base, timeout=10)
        assert client.get("/?token=two-workers-token").status_code == 303
        assert client.get("/grid").status_code == 200
        token = {"X-CSRF-Token": next(v for k, v in client.cookies.items() if k.startswith("pc_csrf_"))}
        for i in range(6):  # answered by either worker: all accept the one token
            answer = client.post(
                "/api/decisions", json={"kind": "note", "photo_ids": [1], "text": f"n{i}"}, headers=token
            )
            assert answer.status_code == 200, answer.text
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{base}/healthz", timeout=1)
            except httpx.TransportError:
                break
            time.sleep(0.1)
        else:
            pytest.fail("a worker still answers after the command was killed")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
