"""Fetch's two public pieces, each used on its own, and the one-way dependency between its two loops.

:class:`~photocorpus.fetch.fetcher.PhotoFetcher` fetches a photo with no corpus anywhere;
:class:`~photocorpus.fetch.committer.Committer` commits outcomes that no HTTP client made. The local
loop (``fetch/stage.py``) and the Ray task (``fetch/distributed.py``) are built from these two and
``plan.pending_pages``; the Ray twin must not reach into the local driver.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import io
import json
import random
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from photocorpus import reasons
from photocorpus.config import FetchSettings
from photocorpus.corpus import Corpus
from photocorpus.fetch.committer import STORED_FORMAT, Committer
from photocorpus.fetch.fetcher import PhotoFetcher
from photocorpus.fetch.http import ByteBudget, Downloader
from photocorpus.fetch.outcome import FetchOutcome, FetchReport
from photocorpus.fetch.plan import UrlOption
from photocorpus.fetch.spec import render_spec
from photocorpus.fetch.worker import RenderResult, render_batch
from photocorpus.netguard import AddressPolicy
from photocorpus.provenance import Provenance
from photocorpus.records import PhotoRecord
from tests.fixtures.image_server import ImageServer, Route, real_jpeg

FETCH = Path(__file__).resolve().parents[1] / "src" / "photocorpus" / "fetch"


def _settings(**changes: object) -> FetchSettings:
    base = {"allow_private_urls": True, "host_rate_per_s": 0, "backoff_base_s": 0.01, "max_retries": 0}
    return FetchSettings.model_validate({**base, **changes})


def test_fetcher_fetches_a_photo_without_any_corpus(instany_images: Path, tmp_path: Path) -> None:
    """Size preference and failure rules in one object that is given URLs, not a catalog."""
    jpeg = real_jpeg(sorted(instany_images.glob("*.jpg"))[0], (1024, 768))
    settings = _settings(max_edge_px=256)
    spec = render_spec(settings)
    rendered: list[int] = []

    async def render(photo_id: int, data: bytes, stamp: Provenance | None) -> RenderResult:
        rendered.append(photo_id)
        [result] = await asyncio.to_thread(render_batch, spec, str(tmp_path), [data], stamps=[stamp])
        return result

    async def fetch(options: dict[int, list[UrlOption]]) -> tuple[dict[int, FetchOutcome], int, int]:
        budget = ByteBudget(50_000_000)
        policy = AddressPolicy.build(True, [])
        async with Downloader(settings, policy, budget, random.Random(1)) as downloader:
            fetcher = PhotoFetcher(settings, downloader, render)
            stamp = Provenance("flickr", "7", title="Pier 17")  # photo 7's, as a driver read it
            outcomes = {
                pid: await fetcher.fetch_photo(pid, opts, stamp if pid == 7 else None)
                for pid, opts in options.items()
            }
        return outcomes, budget.used, fetcher.bytes_downloaded

    with ImageServer() as server:
        missing = server.add("/large-gone.jpg", Route(status=404, body=b"gone"))
        original = server.add("/original.jpg", Route(body=jpeg))
        expired = server.add("/signed.jpg", Route(status=403, body=b"no"))
        outcomes, held, downloaded = asyncio.run(
            fetch(
                {
                    7: [UrlOption("l", missing), UrlOption("o", original)],
                    8: [],
                    9: [
                        UrlOption("l", expired, harvested_at="2000-01-01T00:00:00Z"),
                        UrlOption("o", original),
                    ],
                }
            )
        )
        original_requests = server.requests_to("/original.jpg")

    # a 404 on the preferred size falls back to the next one; the outcome names the URL that was stored
    stored = outcomes[7]
    assert stored.ok and stored.reason is None
    assert (stored.size_key, stored.url, stored.http_status) == ("o", original, 200)
    assert stored.result is not None and stored.result.sha256 == hashlib.sha256(jpeg).hexdigest()
    assert stored.result.tmp_path is not None and Path(stored.result.tmp_path).parent == tmp_path
    assert max(stored.result.width or 0, stored.result.height or 0) == 256
    # the stamp reached the file as it was written, naming the URL the bytes came from (not the 404)
    stored_file = Path(stored.result.tmp_path).read_bytes()
    assert stored.result.stored_bytes == len(stored_file)
    with Image.open(io.BytesIO(stored_file)) as im:
        assert json.loads(im.info["comment"])["image_url"] == original
    # no URL: a reason, not an exception, and nothing rendered
    assert (outcomes[8].reason, outcomes[8].url, outcomes[8].ok) == (reasons.NO_URL, None, False)
    # an expired signed URL says nothing good about the other sizes: stop, and say re-harvest
    assert outcomes[9].reason == reasons.URL_EXPIRED and outcomes[9].size_key == "l"
    assert "re-harvest" in (outcomes[9].detail or "")
    assert original_requests == 1 and rendered == [7]
    assert held == 0, "every downloaded byte is released once rendered"
    assert downloaded >= len(jpeg)


def test_committer_commits_outcomes_that_no_http_client_made(instany_images: Path, tmp_path: Path) -> None:
    """Rows, files and intents from hand-made outcomes: the committer needs only the outcome's values."""
    jpeg = real_jpeg(sorted(instany_images.glob("*.jpg"))[1], (1024, 768))
    with Corpus.create(tmp_path / "c") as corpus:
        ok_id, failed_id = corpus.add_photos(
            [PhotoRecord("test", "a", ["nyc"]), PhotoRecord("test", "b", ["nyc"])]
        )
        [result] = render_batch(render_spec(_settings()), str(corpus.tmp_dir()), [jpeg])
        assert result.ok and result.tmp_path is not None
        outcomes = [
            FetchOutcome(ok_id, "o", "https://example.org/a.jpg", 200, 0.25, result, retries=2),
            FetchOutcome(
                failed_id, "l", "https://example.org/b.jpg", 404, 0.5, None, reasons.http_reason(404)
            ),
        ]
        report = FetchReport()
        advanced: list[int] = []
        committer = Committer(corpus, report, batch_size=100, advance=advanced.append)
        try:
            reserved = committer.reserve_paths([failed_id])  # as the Ray driver does before a task
            committer.add(outcomes)
            asyncio.run(committer.commit())
        finally:
            committer.close()

        file = corpus.photo(ok_id)["file"]
        assert (file["origin"], file["http_status"], file["format"]) == (
            "https://example.org/a.jpg",
            200,
            STORED_FORMAT,
        )
        stored = corpus.root / file["path"]
        assert stored.read_bytes() and not Path(result.tmp_path).exists(), "renamed out of the scratch folder"
        assert file["sha256"] == hashlib.sha256(jpeg).hexdigest() and file["bytes"] == stored.stat().st_size
        failed = corpus.photo(failed_id)
        assert failed["file"] is None
        assert failed["stages"]["fetch"]["status"] == "failed"
        assert failed["stages"]["fetch"]["reason"] == reasons.http_reason(404)
        log = sqlite3.connect(corpus.root / "catalog.sqlite").execute(
            "SELECT photo_id, size_key, url, http_status, retries, elapsed_ms FROM fetch_log ORDER BY 1"
        )
        assert log.fetchall() == [
            (ok_id, "o", "https://example.org/a.jpg", 200, 2, 250),
            (failed_id, "l", "https://example.org/b.jpg", 404, 0, 500),
        ]
        assert (report.fetched, report.failed, report.retries) == (1, 1, 2)
        assert report.failures == {reasons.http_reason(404): 1} and advanced == [2]
        # the path reserved for the photo that then failed is released, not left dangling
        assert reserved[failed_id] != file["path"]
        assert corpus.verify().dangling_intents == 0 and corpus.verify().ok


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every ``import``/``from ... import`` in a file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names)
    return found


@pytest.mark.parametrize("path", sorted(FETCH.glob("*.py")), ids=lambda p: p.name)
def test_fetch_modules_import_no_private_names(path: Path) -> None:
    private = [
        f"{module}.{name}"
        for module, names in _imports(path)
        if module.startswith("photocorpus")
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert private == [], f"{path.name} reaches into another module's private names"


def test_the_pieces_depend_one_way() -> None:
    """The Ray loop does not import the local driver; the fetcher knows no catalog; the committer no HTTP."""

    def modules(name: str) -> set[str]:
        return {module for module, _ in _imports(FETCH / name)}

    assert "photocorpus.fetch.stage" not in modules("distributed.py")
    catalog = {"photocorpus.corpus", "photocorpus.fetch.committer", "photocorpus.catalog_provenance"}
    for piece in ("fetcher.py", "render_pool.py", "worker.py", "outcome.py"):
        assert not catalog & modules(piece), piece
    # the provenance stamp that the fetcher side applies is bytes in, bytes out: no catalog either
    stamp = {module for module, _ in _imports(FETCH.parent / "provenance.py")}
    assert not catalog & stamp
    assert not {"photocorpus.fetch.http", "photocorpus.fetch.fetcher", "aiohttp"} & modules("committer.py")
