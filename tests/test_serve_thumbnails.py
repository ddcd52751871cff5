"""Thumbnails and full images carry an ETag from the stored file's hash: a browser asking again
with ``If-None-Match`` gets an empty 304."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from photocorpus.serve.app import create_app
from tests.serve_helpers import TOKEN, build_corpus, copy_corpus


@pytest.fixture()
def client(
    tmp_path_factory: pytest.TempPathFactory, instany_images: Path, tmp_path: Path
) -> Iterator[TestClient]:
    built = build_corpus(tmp_path_factory.mktemp("serve-built"), instany_images)
    corpus = copy_corpus(built, tmp_path / "corpus")
    with TestClient(create_app(corpus, token=TOKEN), base_url="http://127.0.0.1:8765") as c:
        yield c


@pytest.mark.parametrize("kind", ["thumb", "full"])
def test_an_image_asked_again_with_its_etag_answers_304_without_bytes(client: TestClient, kind: str) -> None:
    first = client.get(f"/image/2/{kind}")
    assert first.status_code == 200 and first.content
    etag = first.headers["etag"]
    again = client.get(f"/image/2/{kind}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag and "max-age" in again.headers["cache-control"]
    assert client.get(f"/image/3/{kind}", headers={"If-None-Match": etag}).status_code == 200
