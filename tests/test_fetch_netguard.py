"""The SSRF guard: only http(s), no private/loopback/link-local destinations, before and after DNS and
after every redirect, unless explicitly allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from photocorpus import reasons
from photocorpus.config import FetchSettings
from photocorpus.corpus import Corpus
from photocorpus.fetch.stage import fetch_photos
from photocorpus.netguard import AddressPolicy, BlockedURLError, check_resolved, check_url, is_public_address
from photocorpus.records import ImageURL, PhotoRecord
from tests.fixtures.image_server import ImageServer, Route, real_jpeg

STRICT = AddressPolicy()


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.9", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
     "::1", "fe80::1", "fc00::5", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:7f00:1::1", "224.0.0.251",
     "239.1.2.3"],
)  # fmt: skip
def test_non_public_addresses(address: str) -> None:
    assert not is_public_address(address)
    with pytest.raises(BlockedURLError, match="--allow-private-urls"):
        check_url(f"http://{address if ':' not in address else '[' + address + ']'}/x.jpg", STRICT)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses(address: str) -> None:
    assert is_public_address(address)


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.com/a.jpg", "gopher://example.com/", "data:image/png;base64,AAAA",
     "//example.com/a.jpg", "http:///nohost.jpg", "http://user:pw@example.com/a.jpg", "http://example.com:99999/"],
)  # fmt: skip
def test_refused_url_shapes(url: str) -> None:
    with pytest.raises(BlockedURLError):
        check_url(url, STRICT)


def test_names_are_checked_after_resolution() -> None:
    assert check_url("https://images.example.com/a.jpg", STRICT).raw_host == "images.example.com"  # no DNS
    with pytest.raises(BlockedURLError, match="private"):
        check_resolved(
            "sneaky.example.com", ["93.184.216.34", "10.0.0.7"], STRICT
        )  # one bad answer spoils all
    check_resolved("ok.example.com", ["93.184.216.34"], STRICT)
    mirror = AddressPolicy.build(allowed_networks=["10.1.2.3/32"])
    check_resolved("mirror.lan", ["10.1.2.3"], mirror)
    with pytest.raises(BlockedURLError):
        check_resolved("other.lan", ["10.1.2.4"], mirror)


def test_environment_variable_allows_private(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOTOCORPUS_ALLOW_PRIVATE_URLS", "1")
    assert AddressPolicy.build().permits("127.0.0.1")
    monkeypatch.setenv("PHOTOCORPUS_ALLOW_PRIVATE_URLS", "0")
    assert not AddressPolicy.build().permits("127.0.0.1")


def _run(
    tmp_path: Path, urls: dict[str, str], **settings: object
) -> dict[str, tuple[str | None, str | None]]:
    corpus = Corpus.create(tmp_path / "c")
    ids = corpus.add_photos(
        [PhotoRecord("t", sid, ["x"], urls=[ImageURL("url_l", u)]) for sid, u in urls.items()]
    )
    fetch_photos(corpus, FetchSettings.model_validate({"host_rate_per_s": 0, "workers": 1, **settings}))
    out = {}
    for sid, pid in zip(urls, ids, strict=True):
        stage = corpus.photo(pid)["stages"]["fetch"]
        out[sid] = (stage["reason"], stage["detail"])
    return out


def test_fetch_refuses_local_servers_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, instany_images: Path
) -> None:
    monkeypatch.delenv("PHOTOCORPUS_ALLOW_PRIVATE_URLS", raising=False)
    body = real_jpeg(sorted(instany_images.glob("*.jpg"))[0], (600, 600))
    with ImageServer() as server:
        port = server.port
        urls = {
            "literal": server.add("/a.jpg", Route(body)),
            "by_name": f"http://localhost:{port}/a.jpg",  # refused after DNS
            "scheme": "file:///etc/passwd",
        }
        result = _run(tmp_path, urls)
        assert {k: v[0] for k, v in result.items()} == dict.fromkeys(urls, reasons.BLOCKED_URL)
        assert server.requests_to("/a.jpg") == 0  # nothing ever reached the server
        assert "localhost" in result["by_name"][1]


def test_every_redirect_is_checked_again(tmp_path: Path, instany_images: Path) -> None:
    body = real_jpeg(sorted(instany_images.glob("*.jpg"))[0], (600, 600))
    with ImageServer() as server:
        port = server.port
        server.add("/img.jpg", Route(body))
        urls = {
            "ok": server.add("/r-ok", Route(status=302, location="/img.jpg")),
            "to_file": server.add("/r-file", Route(status=302, location="file:///etc/passwd")),
            "to_other_loopback": server.add(
                "/r-lo", Route(status=307, location=f"http://127.0.0.2:{port}/img.jpg")
            ),
            "to_metadata": server.add(
                "/r-meta", Route(status=301, location="http://169.254.169.254/latest/")
            ),
            "loop": server.add("/r-loop", Route(status=302, location="/r-loop")),
        }
        # only this one loopback address is allowed (a "local mirror"); everything else private is not
        result = _run(tmp_path, urls, allowed_networks=["127.0.0.1/32"], max_redirects=3)
        reasons_by = {k: v[0] for k, v in result.items()}
        assert reasons_by == {
            "ok": None,
            "to_file": reasons.BLOCKED_URL,
            "to_other_loopback": reasons.BLOCKED_URL,
            "to_metadata": reasons.BLOCKED_URL,
            "loop": reasons.TOO_MANY_REDIRECTS,
        }
        assert server.requests_to("/r-loop") == 4  # the first request and three redirects, then stop
