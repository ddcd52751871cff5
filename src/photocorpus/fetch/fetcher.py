"""One photo in, one :class:`~photocorpus.fetch.outcome.FetchOutcome` out: the per-photo half of fetch.

:class:`PhotoFetcher` knows no corpus. Given a photo id and its URL options it tries the sizes best
first through a :class:`~photocorpus.fetch.http.Downloader` (redirects, SSRF checks, retries with
backoff, Retry-After, X-Robots-Tag, size and time limits), hands the chosen bytes to a renderer
(decode, validate, de-frame, resize, write the JPEG) and returns the rendered file or a reason code.
A photo's provenance stamp, when the driver read one from the catalog, travels with it: the fetcher
adds the URL the bytes really came from (after redirects) and passes it to the renderer, which embeds
it as the file is written (:func:`~photocorpus.fetch.worker.write_rendered`).
Both fetch loops are built on it: the local one (:mod:`.stage`), whose renderer is a process pool
(:mod:`.render_pool`), and the Ray task (:mod:`.distributed`), which renders in its own threads. So
the size preference and every failure rule are written once, and a Ray run and a local run choose the
same URL and record the same reason for every photo.

Why a renderer is passed in rather than a :class:`~photocorpus.fetch.spec.RenderSpec`: the rules of the
stored image are the spec's, but where the pixels are worked on differs by executor (a shared process
pool on one machine, the task's own threads on a Ray node, which is already the unit Ray schedules on
a CPU). Each renderer is built from the spec.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from photocorpus import reasons
from photocorpus.config import FetchSettings
from photocorpus.errors import StorageError
from photocorpus.fetch.http import Download, Downloader
from photocorpus.fetch.outcome import FetchOutcome
from photocorpus.fetch.plan import UrlOption, candidate_urls, no_candidate_failure
from photocorpus.fetch.politeness import url_expired
from photocorpus.fetch.worker import RenderResult
from photocorpus.provenance import Provenance

log = logging.getLogger("photocorpus.fetch")

# A failure of one size that says nothing about the photo's other sizes: try the next size.
# These say something about all of them: stop.
STOP_TRYING = frozenset({reasons.BLOCKED_URL, reasons.DISALLOWED_BY_X_ROBOTS_TAG, reasons.URL_EXPIRED})

# ``render(photo_id, data, stamp)``: downloaded bytes -> the stored file (or a reason), with ``stamp``
# (the photo's provenance, or None) embedded. Raises only what must stop the run (StorageError: the
# disk is full, the object store refuses puts).
Renderer = Callable[[int, bytes, Provenance | None], Awaitable[RenderResult]]


class PhotoFetcher:
    """Downloads, validates and renders one photo at a time; any number may run concurrently.

    The caller bounds the concurrency and waits for room in :attr:`budget` before each call; the
    fetcher releases every downloaded byte once the renderer is done with it.
    """

    def __init__(self, settings: FetchSettings, downloader: Downloader, render: Renderer) -> None:
        self.settings = settings
        self.downloader = downloader
        self.budget = downloader.budget
        self.render = render
        self.bytes_downloaded = 0

    async def fetch_photo(
        self, photo_id: int, options: list[UrlOption], stamp: Provenance | None = None
    ) -> FetchOutcome:
        """Never raises for the photo's own failure: that is a reason in the outcome.

        ``stamp``: the provenance to embed in the stored file (``None``: store the rendered bytes as
        they are).
        """
        try:
            return await self._try_sizes(photo_id, options, stamp)
        except (StorageError, asyncio.CancelledError):
            raise
        except Exception as exc:  # a bug must cost one photo, not the run; it is logged in full
            log.exception("photo %d: unexpected error", photo_id)
            return FetchOutcome(photo_id, reason=reasons.INTERNAL_ERROR, detail=repr(exc)[:300])

    async def _try_sizes(
        self, photo_id: int, options: list[UrlOption], stamp: Provenance | None
    ) -> FetchOutcome:
        candidates = candidate_urls(options, self.settings)
        if not candidates:  # no URL at all, or none that size_policy strict allows
            reason, detail = no_candidate_failure(options, self.settings)
            return FetchOutcome(photo_id, reason=reason, detail=detail)
        small: tuple[UrlOption, Download] | None = None
        failure: tuple[UrlOption, Download] | None = None
        retries = 0
        try:
            for index, option in enumerate(candidates):
                download = await self.downloader.fetch(option.url)
                retries += download.retries
                self.bytes_downloaded += len(download.body or b"")
                if download.ok:
                    assert download.body is not None
                    last = index == len(candidates) - 1
                    if len(download.body) < self.settings.min_preferred_bytes and not last:
                        # Flickr's "photo unavailable" placeholder is tiny: try the next size, keep this one
                        log.debug(
                            "photo %d: %s is only %d bytes, trying the next size",
                            photo_id,
                            option.size_key,
                            len(download.body),
                        )
                        if small is not None:
                            self.budget.release(len(small[1].body or b""))
                        small = (option, download)
                        continue
                    return await self._render(photo_id, option, download, retries, stamp)
                if download.reason == reasons.http_reason(403) and url_expired(
                    option.url, option.harvested_at, self.settings.url_expiry_age_h
                ):
                    download.detail = (
                        f"HTTP 403 on a signed URL past its expiry ({download.detail}); re-harvest"
                    )
                    download.reason = reasons.URL_EXPIRED
                if failure is None or (
                    reasons.is_transient(download.reason) and not reasons.is_transient(failure[1].reason)
                ):
                    failure = (option, download)
                if download.reason in STOP_TRYING or reasons.is_transient(download.reason):
                    break
            if small is not None:
                option, download = small
                small = None
                return await self._render(photo_id, option, download, retries, stamp)
        finally:
            if small is not None:
                self.budget.release(len(small[1].body or b""))
        assert failure is not None
        option, download = failure
        return _outcome(photo_id, option, download, None, download.reason, download.detail, retries)

    async def _render(
        self, photo_id: int, option: UrlOption, download: Download, retries: int, stamp: Provenance | None
    ) -> FetchOutcome:
        assert download.body is not None
        data, download.body = download.body, None  # the renderer holds the bytes now, and only it
        if stamp is not None:
            stamp = stamp.downloaded_from(download.url)
        try:
            result = await self.render(photo_id, data, stamp)
        finally:
            self.budget.release(len(data))
        return _outcome(photo_id, option, download, result, result.reason, result.detail, retries)


def _outcome(
    photo_id: int,
    option: UrlOption,
    download: Download,
    result: RenderResult | None,
    reason: str | None,
    detail: str | None,
    retries: int,
) -> FetchOutcome:
    return FetchOutcome(
        photo_id,
        size_key=option.size_key,
        url=download.url,
        http_status=download.status,
        elapsed_s=download.elapsed_s,
        result=result,
        reason=reason,
        detail=detail,
        retries=retries,
    )
