"""A small real corpus and a real running server for the ``photocorpus serve`` tests.

The corpus: 20 real InstaNY100K photos each with a resized, recompressed copy (20 duplicate groups
that curate finds by pHash), 12 more real photos as singletons, two labels, captions on some, and
captions/titles/owners/tags crafted to run script on two. Featurized (efficientnet-lite0 features and
ImageNet labels, for "more like this" and text search through the ImageNet bridge) and curated. Built
once per test session and copied per test module, so each module's decisions start from the same
catalog.

The server: the real app on uvicorn in a thread, on 127.0.0.1 and a free port.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GROUPS = 20
SINGLES = 12
TOKEN = "test-token-0123456789"
INJECTED = {
    "caption": (
        '<img src=x onerror="window.__pwned=1;alert(1)"> </script><script>window.__pwned=2</script> #x'
    ),
    "title": '"><svg onload=alert(3)>',
    "owner": "<b onmouseover=alert(4)>owner</b>",
    "tags": ["</script><script>alert(5)</script>", "pizza"],
}
CAPTIONS = (
    "Morning light on the Brooklyn Bridge",
    "Coffee and a croissant before work",
    "Yellow cabs waiting at the lights",
    "",
    "My dog loves Central Park in autumn",
    "Skyline from the ferry at dusk",
)
_BUILT: dict[str, Path] = {}


def _variant(path: Path) -> bytes:
    """A near-duplicate as reposts make them: downscaled and recompressed."""
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").resize((220, 220))
        out = io.BytesIO()
        small.save(out, "JPEG", quality=60)
    return out.getvalue()


def build_corpus(base: Path, images: Path) -> Path:
    """The session's corpus (see the module docstring); returns its folder."""
    if "corpus" in _BUILT:
        return _BUILT["corpus"]
    import photocorpus as pc

    src = base / "src"
    files = sorted(images.glob("*.jpg"))[: GROUPS + SINGLES]
    for i, path in enumerate(files):
        label = "brooklyn" if i % 4 == 0 else "nyc"
        folder = src / label
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / path.name)
        meta: dict[str, Any] | None = (
            {"caption": CAPTIONS[i], "tags": ["street"]} if i < len(CAPTIONS) else None
        )
        if i in (3, GROUPS + 1):
            meta = INJECTED
        if meta is not None:
            (folder / f"{path.stem}.json").write_text(json.dumps(meta), encoding="utf-8")
        if i < GROUPS:
            (folder / f"{path.stem}-copy.jpg").write_bytes(_variant(path))
    root = base / "corpus"
    with pc.init(root) as corpus:
        report = pc.import_folder(corpus, src, workers=1)
        assert report.imported == 2 * GROUPS + SINGLES, report
        pc.featurize(corpus, workers=0)
        pc.curate_photos(corpus, workers=1)
        groups = corpus.conn.execute("SELECT COUNT(DISTINCT dup_group) FROM curation").fetchone()[0]
        assert groups == GROUPS, f"curate found {groups} duplicate groups, the test needs {GROUPS}"
    _BUILT["corpus"] = root
    return root


def copy_corpus(built: Path, dest: Path) -> Path:
    """A private copy of the built corpus (its catalog, images and features) for one test module.

    The catalog goes through SQLite's backup API, not a file copy: a consistent snapshot even while
    another module still has the built catalog open (its -wal/-shm files may vanish mid-copy when
    that connection closes).
    """
    shutil.copytree(built, dest, symlinks=True, ignore=shutil.ignore_patterns("catalog.sqlite*"))
    with (
        contextlib.closing(sqlite3.connect(built / "catalog.sqlite")) as source,
        contextlib.closing(sqlite3.connect(dest / "catalog.sqlite")) as target,
    ):
        source.backup(target)
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    token: str
    corpus: Path
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_server(
    corpus: Path, *, host: str = "127.0.0.1", token: str = TOKEN, **options: Any
) -> RunningServer:
    """The real app on uvicorn in a thread; returns once it answers /healthz."""
    import httpx
    import uvicorn

    from photocorpus.serve.app import create_app

    port = free_port()
    app = create_app(corpus, token=token, host=host, port=port, **options)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="photocorpus-serve-test", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return RunningServer(url, token, corpus, server, thread)
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    server.should_exit = True
    raise AssertionError("the server did not start within 30 s")


def catalog_rows(corpus: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows read by a fresh connection (what another process would see)."""
    import sqlite3

    conn = sqlite3.connect(corpus / "catalog.sqlite")
    try:
        return [tuple(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def env_without_proxy() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
