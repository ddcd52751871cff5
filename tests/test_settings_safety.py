"""Settings from a shared ``corpus.toml`` are checked for safety (issue #23, item 6).

* ``images_url`` outside the corpus: only an object store, or with ``allow_outside_corpus``; a
  ``file://`` URL to another folder used to make ``import`` write there and ``verify`` list it.
* ``workers = 100000``: capped at 4 per core with a warning; it used to hang, then BrokenProcessPool.
* a plain-http ``api_url``: refused before the key is sent, unless loopback or explicitly allowed.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pytest

from photocorpus.config import FlickrSettings, ImportSettings, Settings, StorageSettings
from photocorpus.corpus import Corpus
from photocorpus.errors import ConfigError
from photocorpus.executors import LocalExecutor
from photocorpus.importing import import_folder
from photocorpus.worker_counts import MAX_WORKERS_PER_CORE, default_workers
from tests.conftest import run_cli

pytestmark = pytest.mark.reliability


@pytest.fixture()
def photos(instany_images: Path, tmp_path: Path) -> Path:
    src = tmp_path / "src" / "nyc"
    src.mkdir(parents=True)
    for path in sorted(instany_images.glob("*.jpg"))[:4]:
        shutil.copy(path, src / path.name)
    return src.parent


def _set(toml: Path, section: str, key: str, value: str) -> None:
    """Set ``key`` in ``[section]`` of a corpus.toml that ``init`` wrote (every key is there)."""
    text = toml.read_text(encoding="utf-8")
    head, sep, rest = text.partition(f"[{section}]\n")
    assert sep, section
    rest, n = re.subn(rf"(?m)^{key} = [^#\n]*", f"{key} = {value} ", rest, count=1)
    assert n == 1, key
    toml.write_text(head + sep + rest, encoding="utf-8")


# ------------------------------------------------------------------------------------ images_url
def test_a_file_url_outside_the_corpus_is_refused_and_nothing_is_written_there(
    photos: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    settings = Settings(storage=StorageSettings(images_url=elsewhere.as_uri()))
    with Corpus.create(tmp_path / "corpus", settings) as corpus:
        with pytest.raises(ConfigError, match=r"images_url.*outside the corpus.*allow_outside_corpus"):
            import_folder(corpus, photos, workers=1)
        with pytest.raises(ConfigError, match="allow_outside_corpus"):
            corpus.verify()  # used to list the other folder's files as orphans
    assert not elsewhere.exists()
    proc = run_cli("import", str(photos), "--corpus", str(tmp_path / "corpus"), "--quiet", check=False)
    assert proc.returncode == 2 and "[storage] images_url" in proc.stderr and "Traceback" not in proc.stderr
    assert not elsewhere.exists()


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("file://{corpus}/../elsewhere", id="dot-dot"),
        pytest.param("file://{corpus}/link-out", id="symlink-out"),
        pytest.param("sftp://example.com/images", id="not-an-object-store"),
    ],
)
def test_other_ways_out_of_the_corpus_are_refused_too(url: str, tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "link-out").symlink_to(tmp_path)
    settings = Settings(storage=StorageSettings(images_url=url.format(corpus=root)))
    with Corpus.create(root, settings) as corpus, pytest.raises(ConfigError, match="allow_outside_corpus"):
        _ = corpus.image_store


def test_inside_the_corpus_an_object_store_or_the_opt_in_are_accepted(photos: Path, tmp_path: Path) -> None:
    inside = tmp_path / "a" / "store" / "images"
    outside = tmp_path / "b-bucket" / "images"
    for root, storage in (
        (tmp_path / "a", StorageSettings(images_url=inside.as_uri())),
        (tmp_path / "b", StorageSettings(images_url=outside.as_uri(), allow_outside_corpus=True)),
        (tmp_path / "c", StorageSettings(images_url="memory://pc-settings-safety/images")),
    ):
        with Corpus.create(root, Settings(storage=storage)) as corpus:
            assert import_folder(corpus, photos, workers=1).imported == 4
            assert corpus.verify().ok
    assert len(list(inside.rglob("*.jpg"))) == len(list(outside.rglob("*.jpg"))) == 4


# ------------------------------------------------------------------------------------ workers
def test_workers_are_capped_at_a_multiple_of_the_cores_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limit = MAX_WORKERS_PER_CORE * default_workers()
    with caplog.at_level(logging.WARNING, logger="photocorpus"):
        assert ImportSettings(workers=100_000).workers == limit
        assert Settings.model_validate({"fetch": {"workers": 100_000}}).fetch.workers == limit
        assert LocalExecutor(100_000).workers == limit  # what --workers passes directly
    assert "[import] workers = 100000" in caplog.text and "[fetch] workers = 100000" in caplog.text
    assert "--workers = 100000" in caplog.text
    assert ImportSettings(workers=limit).workers == limit  # a sane value is kept as it is


def test_an_import_with_workers_100000_in_corpus_toml_runs(photos: Path, tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    run_cli("init", str(root))
    _set(root / "corpus.toml", "import", "workers", "100000")
    proc = run_cli("import", str(photos), "--corpus", str(root), "--quiet", timeout=120)
    assert "4 imported" in proc.stdout
    assert "[import] workers = 100000 is more than" in proc.stderr


# ------------------------------------------------------------------------------------ api_url
@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8123/services/rest/", "http://localhost/rest", "http://[::1]:80/", "https://a.b/c"],
)
def test_https_and_loopback_endpoints_are_accepted(url: str) -> None:
    assert FlickrSettings().endpoint(url) == url
    assert FlickrSettings(api_url=url).endpoint() == url


def test_a_plain_http_endpoint_is_refused_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "http://flickr-mirror.example/services/rest/"
    monkeypatch.delenv("PHOTOCORPUS_ALLOW_HTTP_API_URL", raising=False)
    with pytest.raises(ConfigError, match=r"^--api-url.*plain http.*allow_http_api_url"):
        FlickrSettings().endpoint(url)
    with pytest.raises(ConfigError, match=r"^\[flickr\] api_url.*plain http"):
        FlickrSettings(api_url=url).endpoint()
    with pytest.raises(ConfigError, match="https://"):
        FlickrSettings().endpoint("ftp://flickr-mirror.example/rest")
    assert FlickrSettings(allow_http_api_url=True).endpoint(url) == url
    monkeypatch.setenv("PHOTOCORPUS_ALLOW_HTTP_API_URL", "1")
    assert FlickrSettings().endpoint(url) == url


def test_the_python_client_refuses_a_plain_http_endpoint_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """``FlickrClient.from_settings`` is how Python callers build a client: the same rule holds there."""
    from photocorpus.flickr_api import FlickrClient

    monkeypatch.delenv("PHOTOCORPUS_ALLOW_HTTP_API_URL", raising=False)
    with pytest.raises(ConfigError, match="plain http"):
        FlickrClient.from_settings("k" * 32, FlickrSettings(api_url="http://flickr-mirror.example/rest/"))
    with pytest.raises(ConfigError, match="plain http"):
        FlickrClient.from_settings("k" * 32, FlickrSettings(), "http://flickr-mirror.example/rest/")
    with FlickrClient.from_settings("k" * 32, FlickrSettings(), "http://127.0.0.1:9/rest/") as client:
        assert client.api_url == "http://127.0.0.1:9/rest/"


def test_harvest_and_enrich_refuse_to_send_the_key_over_plain_http(tmp_path: Path) -> None:
    """Through the CLI, from corpus.toml and from $PHOTOCORPUS_FLICKR_API_URL: refused before any
    request (no retries configured, so a request would fail fast with another message)."""
    root = tmp_path / "corpus"
    run_cli("init", str(root))
    _set(root / "corpus.toml", "flickr", "api_url", '"http://flickr-mirror.invalid/services/rest/"')
    _set(root / "corpus.toml", "flickr", "max_retries", "0")
    env = {"FLICKR_API_KEY": "0123456789abcdef", "PHOTOCORPUS_ALLOW_HTTP_API_URL": ""}
    harvest = run_cli("harvest", "flickr", "--query", "cat", "--corpus", str(root), env=env, check=False)
    assert harvest.returncode == 2, harvest.stderr
    assert "error: [flickr] api_url is plain http to flickr-mirror.invalid" in harvest.stderr
    env["PHOTOCORPUS_FLICKR_API_URL"] = "http://10.1.2.3/services/rest/"
    enrich = run_cli("enrich", "flickr", "--corpus", str(root), env=env, check=False)
    assert enrich.returncode == 2 and "error: --api-url" in enrich.stderr and "10.1.2.3" in enrich.stderr
    assert "0123456789abcdef" not in harvest.stderr + enrich.stderr
