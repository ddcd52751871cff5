"""Politeness: per-host pacing, Retry-After, backoff, X-Robots-Tag and the expiry of signed URLs."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from photocorpus.config import FetchSettings
from photocorpus.corpus import Corpus
from photocorpus.fetch.http import Download, Downloader
from photocorpus.fetch.politeness import HostLimiter, instagram_expiry, url_expired, x_robots_disallows
from photocorpus.fetch.stage import fetch_photos
from photocorpus.netguard import AddressPolicy
from photocorpus.records import ImageURL, PhotoRecord
from tests.fixtures.image_server import ImageServer, Route, real_jpeg

REFUSE = ["noai", "noimageai", "noindex", "noimageindex"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["noai"], "noai"),
        (["NoIndex, nofollow"], "noindex"),
        (["none"], "noindex"),
        (["photocorpus: noimageai"], "noimageai"),
        (["otherbot: noai"], None),
        (["unavailable_after: 25 Jun 2030 15:00:00 PST"], None),
        (["nofollow", "noarchive"], None),
        ([], None),
    ],
)
def test_x_robots_tag(values: list[str], expected: str | None) -> None:
    assert x_robots_disallows(values, REFUSE) == expected


def test_url_expiry() -> None:
    now = datetime(2026, 1, 10, tzinfo=UTC)
    past = format(int((now - timedelta(hours=1)).timestamp()), "x")
    future = format(int((now + timedelta(days=3)).timestamp()), "x")
    assert instagram_expiry(f"https://scontent.cdninstagram.com/a.jpg?oe={past}") == now - timedelta(hours=1)
    assert url_expired(f"https://cdn/a.jpg?oh=1&oe={past}", "2026-01-10T00:00:00Z", 24, now)
    assert not url_expired(f"https://cdn/a.jpg?oe={future}", "2026-01-10T00:00:00Z", 24, now)
    assert url_expired("https://cdn/a.jpg", "2026-01-08T00:00:00Z", 24, now)  # an old harvest
    assert not url_expired("https://cdn/a.jpg", "2026-01-09T12:00:00Z", 24, now)
    assert not url_expired("https://cdn/a.jpg?oe=nothex", None, 24, now)


def test_host_limiter_spaces_requests_per_host_and_honours_pauses() -> None:
    async def scenario() -> tuple[list[float], list[float], float]:
        limiter = HostLimiter(rate_per_s=20)
        loop = asyncio.get_running_loop()
        start = loop.time()
        a_times: list[float] = []
        b_times: list[float] = []

        async def go(host: str, out: list[float]) -> None:
            await limiter.wait_turn(host)
            out.append(loop.time() - start)

        await asyncio.gather(*(go("a", a_times) for _ in range(6)), *(go("b", b_times) for _ in range(3)))
        limiter.pause("a", 0.3)
        t0 = loop.time()
        await limiter.wait_turn("a")
        return a_times, b_times, loop.time() - t0

    a_times, b_times, paused = asyncio.run(scenario())
    assert a_times[-1] >= 5 * 0.05 - 0.01  # six requests to one host: at least five intervals apart
    assert b_times[-1] < a_times[-1]  # another host is not held back by the first one's queue
    assert paused >= 0.29


def _corpus(tmp_path: Path, server: ImageServer, routes: dict[str, Route]) -> Corpus:
    corpus = Corpus.create(tmp_path / "c")
    corpus.add_photos(
        [PhotoRecord("t", p, ["x"], urls=[ImageURL("url_l", server.add(p, r))]) for p, r in routes.items()]
    )
    return corpus


def test_retry_after_is_honoured_and_backoff_grows(tmp_path: Path, instany_images: Path) -> None:
    body = real_jpeg(sorted(instany_images.glob("*.jpg"))[0], (600, 600))
    with ImageServer() as server:
        corpus = _corpus(
            tmp_path,
            server,
            {
                "/limited.jpg": Route(body, fault="status", fault_status=429, retry_after="1", fail_times=1),
                "/flaky.jpg": Route(body, fault="status", fault_status=503, fail_times=3),
            },
        )
        settings = FetchSettings(
            allow_private_urls=True, host_rate_per_s=0, backoff_base_s=0.2, backoff_cap_s=5
        )
        report = fetch_photos(corpus, settings, seed=7)
        assert report.fetched == 2 and report.retries == 4
        limited = [h.at for h in server.hits if h.path == "/limited.jpg"]
        assert limited[1] - limited[0] >= 0.95  # Retry-After: 1
        flaky = [h.at for h in server.hits if h.path == "/flaky.jpg"]
        assert len(flaky) == 4
        # full-jitter backoff: waits drawn from [0, 0.2 * 2**n], 1.4 s at most in all (plus request time)
        assert flaky[-1] - flaky[0] <= 0.2 + 0.4 + 0.8 + 5.0


class _CeilingRandom(random.Random):
    """Full jitter always drawing its ceiling, so each backoff wait is known exactly."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_backoff_waits_between_retries_and_doubles(tmp_path: Path, instany_images: Path) -> None:
    body = real_jpeg(sorted(instany_images.glob("*.jpg"))[0], (600, 600))
    settings = FetchSettings(
        allow_private_urls=True, host_rate_per_s=0, max_retries=3, backoff_base_s=0.1, backoff_cap_s=5
    )

    async def fetch(url: str) -> Download:
        async with Downloader(settings, AddressPolicy(allow_private=True), rng=_CeilingRandom()) as dl:
            return await dl.fetch(url)

    with ImageServer() as server:
        url = server.add("/flaky.jpg", Route(body, fault="status", fault_status=503, fail_times=3))
        result = asyncio.run(fetch(url))
        hits = [h.at for h in server.hits if h.path == "/flaky.jpg"]
    assert result.ok and result.retries == 3
    assert result.waited_s == pytest.approx(0.1 + 0.2 + 0.4)  # base * 2**n, n = 0, 1, 2
    gaps = [b - a for a, b in itertools.pairwise(hits)]
    assert len(gaps) == 3
    assert all(gap >= wait - 0.01 for gap, wait in zip(gaps, (0.1, 0.2, 0.4), strict=True)), gaps


def test_retry_after_beyond_the_cap_fails_fast_as_transient(tmp_path: Path) -> None:
    with ImageServer() as server:
        corpus = _corpus(
            tmp_path,
            server,
            {"/slow.jpg": Route(b"x", fault="status", fault_status=503, retry_after="3600", fail_times=-1)},
        )
        started = time.monotonic()
        report = fetch_photos(corpus, FetchSettings(allow_private_urls=True, max_retry_after_s=10))
        assert time.monotonic() - started < 30
        assert report.failures == {"http_503": 1} and server.requests_to("/slow.jpg") == 1
        detail = corpus.photo(1)["stages"]["fetch"]["detail"]
        assert "Retry-After 3600 s" in detail and "--retry-failed" in detail


def test_per_host_rate_limit_over_http(tmp_path: Path, instany_images: Path) -> None:
    body = real_jpeg(sorted(instany_images.glob("*.jpg"))[0], (600, 600))
    with ImageServer() as server:
        corpus = _corpus(tmp_path, server, {f"/{i}.jpg": Route(body) for i in range(12)})
        fetch_photos(corpus, FetchSettings(allow_private_urls=True, host_rate_per_s=10, workers=1))
        times = sorted(h.at for h in server.hits)
        assert len(times) == 12 and times[-1] - times[0] >= 11 * 0.1 - 0.05


def test_x_robots_tag_refuses_unless_told_otherwise(tmp_path: Path, instany_images: Path) -> None:
    body = real_jpeg(sorted(instany_images.glob("*.jpg"))[0], (600, 600))
    with ImageServer() as server:
        routes = {
            "/noai.jpg": Route(body, headers={"X-Robots-Tag": "noai"}),
            "/ours.jpg": Route(body, headers={"X-Robots-Tag": "photocorpus: noimageindex"}),
            "/theirs.jpg": Route(body, headers={"X-Robots-Tag": "otherbot: noai"}),
        }
        corpus = _corpus(tmp_path, server, routes)
        report = fetch_photos(corpus, FetchSettings(allow_private_urls=True, host_rate_per_s=0))
        assert report.failures == {"disallowed_by_x_robots_tag": 2} and report.fetched == 1
        again = fetch_photos(
            corpus,
            FetchSettings(allow_private_urls=True, respect_x_robots_tag=False),
            retry_failed=["disallowed_by_x_robots_tag"],
        )
        assert again.fetched == 2
