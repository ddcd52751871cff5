"""``photocorpus serve`` over plain HTTP (httpx), against the real app on uvicorn and a real corpus:
who may write (token, CSRF double-submit, Origin, Host), the security headers, files by id only,
filters as bound parameters, idempotent decisions, a busy catalog, exports of a filter, uploads."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serve_helpers import TOKEN, RunningServer, build_corpus, catalog_rows, copy_corpus, start_server


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory, instany_images: Path) -> Path:
    built = build_corpus(tmp_path_factory.mktemp("serve-built"), instany_images)
    return copy_corpus(built, tmp_path_factory.mktemp("serve-api") / "corpus")


@pytest.fixture(scope="module")
def server(corpus_dir: Path) -> Iterator[RunningServer]:
    running = start_server(corpus_dir, busy_timeout_ms=300)
    yield running
    running.stop()


def session(server: RunningServer) -> httpx.Client:
    """A client that did what the browser does: opened /?token= and holds both cookies."""
    client = httpx.Client(base_url=server.url, timeout=30)
    assert client.get(f"/?token={server.token}").status_code == 303
    assert client.get("/grid").status_code == 200
    return client


def csrf_of(client: httpx.Client, server: RunningServer) -> str:
    port = server.url.rsplit(":", 1)[1]
    return client.cookies[f"pc_csrf_{port}"]


def decisions_count(corpus: Path) -> int:
    return catalog_rows(corpus, "SELECT COUNT(*) FROM decisions")[0][0]


def exclude_body(photo_id: int) -> dict:
    return {"kind": "exclude", "photo_ids": [photo_id], "request_id": uuid.uuid4().hex}


def test_a_write_needs_the_token_the_csrf_header_and_our_origin(server: RunningServer) -> None:
    client = session(server)
    csrf = csrf_of(client, server)
    before = decisions_count(server.corpus)
    anonymous = httpx.post(
        f"{server.url}/api/decisions", json=exclude_body(1), headers={"X-CSRF-Token": csrf}
    )
    assert anonymous.status_code == 403 and "token" in anonymous.json()["error"]
    wrong_token = httpx.post(
        f"{server.url}/api/decisions", json=exclude_body(1), headers={"X-Photocorpus-Token": "guess"}
    )
    assert wrong_token.status_code == 403
    no_csrf = client.post("/api/decisions", json=exclude_body(1))
    assert no_csrf.status_code == 403 and "X-CSRF-Token" in no_csrf.json()["error"]
    bad_csrf = client.post("/api/decisions", json=exclude_body(1), headers={"X-CSRF-Token": csrf + "x"})
    assert bad_csrf.status_code == 403
    foreign = client.post(
        "/api/decisions",
        json=exclude_body(1),
        headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"},
    )
    assert foreign.status_code == 403 and "Origin" in foreign.json()["error"]
    assert decisions_count(server.corpus) == before, "a refused write wrote nothing"
    ok = client.post(
        "/api/decisions", json=exclude_body(1), headers={"X-CSRF-Token": csrf, "Origin": server.url}
    )
    assert ok.status_code == 200, ok.text
    assert decisions_count(server.corpus) == before + 1
    undo = client.post(
        f"/api/decisions/{ok.json()['decision']['id']}/undo", json={}, headers={"X-CSRF-Token": csrf}
    )
    assert undo.status_code == 200, undo.text


def test_a_foreign_host_header_is_refused_even_for_reads(server: RunningServer) -> None:
    """DNS rebinding: a hostile page re-pointed to 127.0.0.1 arrives with its own name as Host."""
    answer = httpx.get(f"{server.url}/api/photos", headers={"Host": "attacker.example"})
    assert answer.status_code == 400
    assert httpx.get(f"{server.url}/api/photos", headers={"Host": "localhost"}).status_code == 200


def test_bound_beyond_loopback_every_request_needs_the_token(corpus_dir: Path) -> None:
    exposed = start_server(corpus_dir, host="0.0.0.0")
    try:
        assert httpx.get(f"{exposed.url}/healthz").status_code == 200
        assert httpx.get(f"{exposed.url}/api/photos").status_code == 403
        assert httpx.get(f"{exposed.url}/image/1/thumb").status_code == 403
        with_token = httpx.get(f"{exposed.url}/api/photos", headers={"X-Photocorpus-Token": TOKEN})
        assert with_token.status_code == 200 and with_token.json()["count"] > 0
    finally:
        exposed.stop()


def test_pages_carry_a_strict_content_security_policy(server: RunningServer) -> None:
    page = session(server).get("/grid")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in page.text  # all script comes from static files


def test_the_token_cookie_is_httponly_and_strict(server: RunningServer) -> None:
    answer = httpx.get(f"{server.url}/?token={server.token}")
    assert answer.status_code == 303 and answer.headers["location"] == "/grid"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert httpx.get(f"{server.url}/?token=wrong").status_code == 403


def test_images_are_served_by_photo_id_only(server: RunningServer) -> None:
    client = session(server)
    thumb = client.get("/image/1/thumb")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content[:2] == b"\xff\xd8"
    full = client.get("/image/1/full")
    assert full.status_code == 200 and len(full.content) > len(thumb.content)
    for path in (
        "/image/999999/full",
        "/image/..%2F..%2Fcatalog.sqlite/full",
        "/image/1/../../catalog.sqlite",
    ):
        assert client.get(path).status_code == 404, path


def test_filters_are_bound_parameters_and_unknown_ones_are_refused(server: RunningServer) -> None:
    client = session(server)
    everything = client.get("/api/photos").json()["count"]
    injected = client.get("/api/photos", params={"label": "nyc' OR '1'='1"})
    assert injected.status_code == 200 and injected.json()["count"] == 0
    assert client.get("/api/photos", params={"label;DROP TABLE photos": "x"}).status_code == 400
    assert client.get("/api/photos", params={"sort": "id; DROP TABLE photos"}).status_code == 400
    assert client.get("/api/photos", params={"date_from": "yesterday"}).status_code == 400
    brooklyn = client.get("/api/photos", params={"label": "brooklyn", "per_page": 500}).json()
    expected = catalog_rows(server.corpus, "SELECT COUNT(*) FROM photos WHERE primary_label = 'brooklyn'")[0][
        0
    ]
    assert brooklyn["count"] == expected and len(brooklyn["photos"]) == expected
    duplicates = client.get("/api/photos", params={"dup": "duplicate"}).json()["count"]
    expected_dups = catalog_rows(
        server.corpus, "SELECT COUNT(*) FROM curation WHERE duplicate_of IS NOT NULL"
    )[0][0]
    assert duplicates == expected_dups > 0
    assert client.get("/api/photos").json()["count"] == everything


def test_a_repeated_request_id_writes_one_decision(server: RunningServer) -> None:
    client = session(server)
    headers = {"X-CSRF-Token": csrf_of(client, server)}
    body = {"kind": "note", "photo_ids": [2], "text": "seen twice?", "request_id": uuid.uuid4().hex}
    first = client.post("/api/decisions", json=body, headers=headers).json()["decision"]
    again = client.post("/api/decisions", json=body, headers=headers).json()["decision"]
    assert first["id"] == again["id"]
    rows = catalog_rows(
        server.corpus, "SELECT COUNT(*) FROM decisions WHERE request_id = ?", body["request_id"]
    )
    assert rows[0][0] == 1


def test_a_busy_catalog_answers_503_and_the_retry_writes_once(server: RunningServer) -> None:
    client = session(server)
    headers = {"X-CSRF-Token": csrf_of(client, server)}
    body = exclude_body(3)
    blocker = sqlite3.connect(server.corpus / "catalog.sqlite", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock past the server's busy timeout
    try:
        busy = client.post("/api/decisions", json=body, headers=headers)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert busy.status_code == 503, busy.text
    assert busy.json()["retry"] is True and int(busy.headers["retry-after"]) >= 1
    retried = client.post("/api/decisions", json=body, headers=headers)
    assert retried.status_code == 200
    assert (
        catalog_rows(
            server.corpus, "SELECT COUNT(*) FROM decisions WHERE request_id = ?", body["request_id"]
        )[0][0]
        == 1
    )


def test_bad_decisions_are_400_with_a_message(server: RunningServer) -> None:
    client = session(server)
    headers = {"X-CSRF-Token": csrf_of(client, server)}
    for body in (
        {"kind": "explode", "photo_ids": [1]},
        {"kind": "exclude", "photo_ids": []},
        {"kind": "exclude", "photo_ids": [987654]},
        {"kind": "set_label", "photo_ids": [1]},
    ):
        answer = client.post("/api/decisions", json=body, headers=headers)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["error"]
    assert client.post("/api/decisions/987654/undo", json={}, headers=headers).status_code == 400


def test_export_of_a_filter_runs_as_a_job_with_progress(server: RunningServer) -> None:
    import pyarrow.parquet as pq

    client = session(server)
    headers = {"X-CSRF-Token": csrf_of(client, server)}
    started = client.post(
        "/api/exports", json={"format": "parquet", "filters": {"label": "brooklyn"}}, headers=headers
    )
    assert started.status_code == 200, started.text
    job_id = started.json()["job"]
    deadline = time.monotonic() + 60
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("done", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert job["state"] == "done", job
    table = pq.read_table(job["path"]).to_pandas()
    expected = catalog_rows(server.corpus, "SELECT COUNT(*) FROM photos WHERE primary_label = 'brooklyn'")[0][
        0
    ]
    assert len(table) == expected and set(table["label"]) == {"brooklyn"}
    assert job["done"] == job["total"] == expected


def _png_header_claiming(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_upload_search_validates_like_import_and_stores_nothing(
    server: RunningServer, instany_images: Path
) -> None:
    client = session(server)
    csrf = csrf_of(client, server)
    before = sorted(
        p.relative_to(server.corpus)
        for p in server.corpus.rglob("*")
        if p.is_file() and "reports" not in p.parts
    )
    bomb = client.post(
        "/search",
        files={"image": ("bomb.png", _png_header_claiming(30_000, 30_000), "image/png")},
        data={"csrf": csrf},
    )
    assert bomb.status_code == 400 and "decompression_bomb" in bomb.text
    junk = client.post(
        "/search", files={"image": ("x.jpg", b"<html>not an image</html>", "image/jpeg")}, data={"csrf": csrf}
    )
    assert junk.status_code == 400 and "not_an_image" in junk.text
    no_csrf = client.post("/search", files={"image": ("x.jpg", b"x", "image/jpeg")})
    assert no_csrf.status_code == 403
    photo = sorted(instany_images.glob("*.jpg"))[0].read_bytes()
    found = client.post(
        "/search?k=5", files={"image": ("mine.jpg", photo, "image/jpeg")}, data={"csrf": csrf}
    )
    assert found.status_code == 200 and found.text.count('class="pc-cell"') == 5
    after = sorted(
        p.relative_to(server.corpus)
        for p in server.corpus.rglob("*")
        if p.is_file() and "reports" not in p.parts
    )
    assert [
        p for p in after if p not in before and "catalog.sqlite" not in str(p) and "models" not in p.parts
    ] == []


def test_text_search_json_gives_hits_with_thumbnails(server: RunningServer) -> None:
    client = session(server)
    answer = client.get("/api/search", params={"q": "bridge", "k": 5})
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["method"] and len(data["hits"]) == 5
    assert all(h["thumb"] == f"/image/{h['id']}/thumb" for h in data["hits"])
    filtered = client.get("/api/search", params={"q": "bridge", "k": 5, "label": "brooklyn"}).json()["hits"]
    brooklyn = {
        r[0] for r in catalog_rows(server.corpus, "SELECT id FROM photos WHERE primary_label = 'brooklyn'")
    }
    assert filtered and all(h["id"] in brooklyn for h in filtered)


def test_photo_json_has_neighbours_history_and_the_attribution_line(server: RunningServer) -> None:
    client = session(server)
    photo = client.get("/api/photo/1").json()
    assert len(photo["neighbours"]) == 12 and 1 not in photo["neighbours"]
    assert photo["attribution"].startswith('"') and " by " in photo["attribution"]
    assert isinstance(photo["history"], list)
    assert photo["imagenet"] and len(photo["imagenet"][0]["classes"]) == 5
    assert client.get("/api/photo/999999").status_code == 404


def test_concurrent_writes_are_all_kept(server: RunningServer) -> None:
    client = session(server)
    headers = {"X-CSRF-Token": csrf_of(client, server)}
    before = decisions_count(server.corpus)
    errors: list[str] = []

    def burst(n: int) -> None:
        for i in range(5):
            body = {"kind": "note", "photo_ids": [4], "text": f"note {n}-{i}", "request_id": f"burst-{n}-{i}"}
            answer = client.post("/api/decisions", json=body, headers=headers)
            if answer.status_code != 200:
                errors.append(answer.text)

    threads = [threading.Thread(target=burst, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert decisions_count(server.corpus) == before + 20
    notes = json.loads(client.get("/api/decisions", params={"after_id": before}).text)["decisions"]
    assert len(notes) == 20 and all(d["kind"] == "note" for d in notes)
