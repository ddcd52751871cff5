"""The two records that cross fetch's seams: what fetching one photo gave, and what a run did.

:class:`FetchOutcome` is the only thing the per-photo fetcher (:mod:`.fetcher`, HTTP and pixels, no
catalog) hands to the committer (:mod:`.committer`, catalog and files, no HTTP). It carries plain
values only (the URL used, its status and timing, the rendered file or a reason code), so that it is
small to pickle back from a Ray task and so that the committer needs nothing from the HTTP client.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from photocorpus.fetch.worker import RenderResult
from photocorpus.notebook import HtmlReport


@dataclass(frozen=True, slots=True)
class FetchOutcome:
    """One photo, fetched: the rendered file (``result.ok``) or a reason code, and the URL it came from.

    ``size_key``, ``url``, ``http_status`` and ``elapsed_s`` describe the download that decided the
    outcome (the stored one, or the most telling failure); they are ``None`` when no URL was tried
    (``no_url``) or the photo hit an unexpected error (``internal_error``).
    """

    photo_id: int
    size_key: str | None = None
    url: str | None = None  # the URL finally requested, after redirects
    http_status: int | None = None
    elapsed_s: float | None = None
    result: RenderResult | None = None
    reason: str | None = None
    detail: str | None = None
    retries: int = 0

    @property
    def ok(self) -> bool:
        return self.result is not None and self.result.ok


@dataclass(slots=True)
class FetchReport(HtmlReport):
    """What one fetch run did."""

    visited: int = 0
    fetched: int = 0
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    bytes_downloaded: int = 0
    frames_removed: int = 0
    peak_inflight_bytes: int = 0
    interrupted: bool = False
    elapsed_s: float = 0.0
    retried_reasons: list[str] = field(default_factory=list)
    executor: str = "local"
    shards_failed: int = 0  # Ray shards lost after Ray's retries: their photos stay pending for a re-run
