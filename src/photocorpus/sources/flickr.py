"""Flickr keyword search in dynamic upload-date windows (``photocorpus harvest flickr``).

Flickr's search returns at most 4,000 results per query: past that, pages repeat earlier results
(im2gps's README saw this after ~1,500 with an older API). So, like im2gps's ``get_imgs_geo_gps_search``,
we walk the upload-date range in windows sized to hold at most a target count, page through each, and
move on; unlike it, we size windows from the ``total`` that every probe returns, reuse each probe as the
window's first page, never page past the cap, and log every completed (query, window, page) in the
catalog, so a killed harvest resumes without asking for a logged page again.

Window sizing: a probe over ``[start, start + width)`` reports ``total``. Over the cap, the window shrinks
to ``width * target / total`` (at least halving) and is probed again; at or under the cap, it is paged
and the next window's width becomes ``width * target / total`` (at most ×8). The default target of
3,000 leaves 25% headroom under the cap, because the next window's density is only an estimate: a
target near 4,000 would overshoot (and waste a probe) on every burst, and a small target like im2gps's
250 would multiply the calls. With 500 results per page, that costs about one call per 500 photos plus
one wasted probe per density change.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from photocorpus.caption_text import extract_hashtags
from photocorpus.corpus import Corpus
from photocorpus.errors import ConfigError
from photocorpus.flickr_api import FlickrClient
from photocorpus.interrupt import StopFlag
from photocorpus.notebook import HtmlReport
from photocorpus.progress import ProgressHandle
from photocorpus.records import ImageURL, PhotoRecord, utc_iso, utc_now

log = logging.getLogger(__name__)

SOURCE = "flickr"
RESULT_CAP = 4000
MAX_PER_PAGE = 500
FLICKR_EPOCH = int(datetime(2004, 1, 1, tzinfo=UTC).timestamp())

# Every size Flickr can return as an extra, smallest first. A size absent from a photo does not exist.
SIZE_SUFFIXES = (
    "sq",
    "t",
    "s",
    "q",
    "m",
    "n",
    "w",
    "z",
    "c",
    "l",
    "b",
    "h",
    "k",
    "3k",
    "4k",
    "5k",
    "6k",
    "o",
)
EXTRAS = (
    "description,license,date_upload,date_taken,owner_name,geo,tags,machine_tags,o_dims,views,media,"
    + ",".join(f"url_{s}" for s in SIZE_SUFFIXES if s != "b")
)

# flickr.photos.licenses.getInfo
LICENSES = {
    "0": "All Rights Reserved",
    "1": "CC BY-NC-SA 2.0",
    "2": "CC BY-NC 2.0",
    "3": "CC BY-NC-ND 2.0",
    "4": "CC BY 2.0",
    "5": "CC BY-SA 2.0",
    "6": "CC BY-ND 2.0",
    "7": "No known copyright restrictions",
    "8": "United States Government Work",
    "9": "CC0 1.0",
    "10": "Public Domain Mark 1.0",
    "11": "CC BY 4.0",
    "12": "CC BY-SA 4.0",
    "13": "CC BY-ND 4.0",
    "14": "CC BY-NC 4.0",
    "15": "CC BY-NC-SA 4.0",
    "16": "CC BY-NC-ND 4.0",
}
CC_LICENSES = ("1", "2", "3", "4", "5", "6", "9", "10", "11", "12", "13", "14", "15", "16")
_LICENSE_ALIASES = {
    "all-rights-reserved": "0",
    "by-nc-sa": "1",
    "by-nc": "2",
    "by-nc-nd": "3",
    "by": "4",
    "by-sa": "5",
    "by-nd": "6",
    "no-known-restrictions": "7",
    "us-gov": "8",
    "cc0": "9",
    "pdm": "10",
}


# ---------------------------------------------------------------------------------------------- parsing
_TAG = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"[ \t\r\f\v]+")


def html_to_text(raw: str | None) -> str | None:
    """Flickr descriptions are HTML with entities: strip tags, unescape, tidy whitespace."""
    if raw is None:
        return None
    text = re.sub(r"(?i)<br\s*/?>", "\n", raw)
    text = html.unescape(_TAG.sub("", text))
    lines = [_SPACES.sub(" ", line).strip() for line in text.splitlines()]
    return "\n".join(line for line in lines if line) or None


def _int(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def parse_search_photo(photo: dict[str, Any], labels: list[str]) -> PhotoRecord:
    """Turn one ``photos.photo[]`` entry of ``flickr.photos.search`` into a record, defensively.

    Sizes and totals may be strings, a missing ``url_X`` means that size does not exist, and lat/lon of
    0 with accuracy 0 means "not geotagged", not a photo in the Gulf of Guinea.
    """
    photo_id = str(photo["id"])
    owner_id = photo.get("owner")
    description = photo.get("description")
    raw_description = description.get("_content") if isinstance(description, dict) else description
    raw_description = raw_description if isinstance(raw_description, str) and raw_description else None
    clean = html_to_text(raw_description)
    lat, lon = _float(photo.get("latitude")), _float(photo.get("longitude"))
    accuracy = _int(photo.get("accuracy"))
    if not lat and not lon:
        lat = lon = accuracy = None
    urls = []
    for suffix in SIZE_SUFFIXES:
        url = photo.get(f"url_{suffix}")
        if isinstance(url, str) and url:
            urls.append(
                ImageURL(
                    f"url_{suffix}",
                    url,
                    _int(photo.get(f"width_{suffix}")),
                    _int(photo.get(f"height_{suffix}")),
                )
            )
    license_id = str(photo["license"]) if photo.get("license") is not None else None
    taken_unknown = str(photo.get("datetakenunknown", "0")) == "1"
    extra = {
        k: photo[k]
        for k in (
            "secret",
            "server",
            "farm",
            "media",
            "originalformat",
            "originalsecret",
            "datetakengranularity",
        )
        if k in photo
    }
    extra.update(
        {
            "views": _int(photo.get("views")),
            "o_width": _int(photo.get("o_width")),
            "o_height": _int(photo.get("o_height")),
            "license_id": license_id,
            "description_text": clean,
            "machine_tags": str(photo.get("machine_tags") or "").split(),
            "datetaken_unknown": taken_unknown,
        }
    )
    return PhotoRecord(
        source=SOURCE,
        source_id=photo_id,
        labels=labels,
        title=str(photo.get("title") or "") or None,
        caption=raw_description,
        tags=str(photo.get("tags") or "").split(),
        hashtags=extract_hashtags(clean),
        owner=photo.get("ownername") or None,
        owner_id=owner_id,
        lat=lat,
        lon=lon,
        geo_accuracy=accuracy,
        license=LICENSES.get(license_id, license_id) if license_id is not None else None,
        taken_at=None if taken_unknown else utc_iso(photo.get("datetaken")),
        uploaded_at=utc_iso(photo.get("dateupload")),
        page_url=f"https://www.flickr.com/photos/{owner_id}/{photo_id}" if owner_id else None,
        urls=urls,
        extra={k: v for k, v in extra.items() if v not in (None, [], "")},
    )


# ---------------------------------------------------------------------------------------------- queries
@dataclass(frozen=True)
class HarvestQuery:
    """One positive query, the negative terms sent with it, and the label its photos get."""

    label: str
    text: str
    negatives: tuple[str, ...] = ()

    def search_text(self) -> str:
        return " ".join([self.text, *(f"-{n}" for n in self.negatives)])


def read_query_file(path: Path) -> list[HarvestQuery]:
    """Read an im2gps ``place_rec_queries.txt``-style file.

    One positive query per line (``label<TAB>query`` to choose the label); lines starting with ``-`` are
    negative terms appended to every query; ``#`` starts a comment line.
    """
    positives: list[tuple[str, str]] = []
    negatives: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            negatives.extend(term.lstrip("-") for term in line.split() if term.lstrip("-"))
            continue
        label, _, query = raw.strip("\r\n").partition("\t")
        positives.append((label.strip(), query.strip()) if query.strip() else (line, line))
    if not positives:
        raise ConfigError(f"{path} has no positive queries (one per line; '-term' lines are negatives)")
    return [HarvestQuery(label, text, tuple(negatives)) for label, text in positives]


@dataclass(frozen=True)
class SearchFilters:
    """Search parameters shared by all queries of a harvest."""

    min_upload: int | None = None  # epoch seconds, inclusive
    max_upload: int | None = None
    min_taken: str | None = None  # "YYYY-MM-DD HH:MM:SS" as Flickr takes it
    max_taken: str | None = None
    has_geo: bool = False
    accuracy: int | None = None
    bbox: str | None = None
    licenses: tuple[str, ...] = ()
    sort: str = "date-posted-asc"
    search_by: str = "text"  # or "tags"
    tags_mode: str = "all"
    per_page: int = MAX_PER_PAGE

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sort": self.sort, "per_page": self.per_page, "media": "photos"}
        out["extras"] = EXTRAS
        if self.min_taken:
            out["min_taken_date"] = self.min_taken
        if self.max_taken:
            out["max_taken_date"] = self.max_taken
        if self.has_geo:
            out["has_geo"] = 1
        if self.accuracy:
            out["accuracy"] = self.accuracy
        if self.bbox:
            out["bbox"] = self.bbox
        if self.licenses:
            out["license"] = ",".join(self.licenses)
        if self.search_by == "tags":
            out["tag_mode"] = self.tags_mode
        return out


def parse_licenses(values: Iterable[str]) -> tuple[str, ...]:
    """Licence names or ids → Flickr ids; ``cc`` means every Creative Commons licence."""
    out: list[str] = []
    by_name = {name.lower(): lid for lid, name in LICENSES.items()}
    for value in values:
        for item in (v.strip() for v in value.split(",")):
            if not item:
                continue
            key = item.lower()
            if key == "cc":
                out.extend(CC_LICENSES)
            elif item in LICENSES:
                out.append(item)
            elif key in _LICENSE_ALIASES:
                out.append(_LICENSE_ALIASES[key])
            elif key in by_name:
                out.append(by_name[key])
            else:
                known = ", ".join(["cc", *_LICENSE_ALIASES, *LICENSES])
                raise ConfigError(f"unknown licence {item!r}; use an id or one of: {known}")
    return tuple(dict.fromkeys(out))


def parse_date(value: str | None) -> int | None:
    """A CLI date (``2015-01-31``, ISO-8601 or epoch seconds) → epoch seconds, UTC."""
    if value is None:
        return None
    iso = utc_iso(value)
    if iso is None:
        raise ConfigError(f"cannot read date {value!r}; use YYYY-MM-DD, ISO-8601 or epoch seconds")
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def query_key(query: HarvestQuery, filters: SearchFilters) -> str:
    """The identity of a query in the harvest log: what was asked, never the key, never the clock."""
    spec = {
        "text": query.search_text(),
        **{k: v for k, v in filters.params().items() if k != "extras"},
        "search_by": filters.search_by,
        "min_upload": filters.min_upload,
        "max_upload": filters.max_upload,
    }
    return json.dumps(spec, sort_keys=True, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------- harvest
@dataclass
class HarvestReport(HtmlReport):
    """What one harvest run did, per query and in total."""

    api_calls: int = 0
    retries: int = 0
    photos_new: int = 0
    pages: int = 0
    interrupted: bool = False
    per_query: dict[str, int] = field(default_factory=dict)
    capped_windows: int = 0


@dataclass
class _WindowState:
    start: int
    end: int
    width: int
    range_end: int


class FlickrHarvester:
    """Runs the windowed, logged, resumable search for a list of queries."""

    def __init__(
        self,
        corpus: Corpus,
        client: FlickrClient,
        filters: SearchFilters,
        *,
        window_target: int = 3000,
        per_query: int | None = None,
        now: int | None = None,
        stop: StopFlag | None = None,
        progress: ProgressHandle | None = None,
    ) -> None:
        if not 0 < window_target <= RESULT_CAP:
            raise ConfigError(f"window_target must be between 1 and {RESULT_CAP}")
        if not 0 < filters.per_page <= MAX_PER_PAGE:
            raise ConfigError(f"per_page must be between 1 and {MAX_PER_PAGE}")
        self.corpus = corpus
        self.client = client
        self.filters = filters
        self.target = window_target
        self.per_query = per_query
        self.now = now if now is not None else int(datetime.now(UTC).timestamp())
        self.stop = stop
        self.progress = progress or ProgressHandle()
        self.report = HarvestReport()
        self._collected = 0
        self._expected = 0
        self._sized_queries: dict[str, bool] = {}

    # -- public
    def run(self, queries: list[HarvestQuery], refresh: bool = False) -> HarvestReport:
        calls_before, retries_before = self.client.stats.calls, self.client.stats.retries
        try:
            for query in queries:
                if self.stop:
                    break
                self._run_query(query, refresh)
        finally:
            self.report.api_calls = self.client.stats.calls - calls_before
            self.report.retries = self.client.stats.retries - retries_before
            self.report.interrupted = bool(self.stop)
            self._record_counters()
        return self.report

    # -- one query
    def _run_query(self, query: HarvestQuery, refresh: bool) -> None:
        key = query_key(query, self.filters)
        logged = self.corpus.harvest_pages(SOURCE, key)
        self._collected = sum(int(r["result_count"]) for r in logged)
        try:
            state = self._resume_state(logged, refresh)
            if state is not None:  # None: complete, and no refresh asked
                self._walk(query, key, logged, state)
        finally:
            self.report.per_query[query.label] = self._collected

    def _walk(self, query: HarvestQuery, key: str, logged: list[dict[str, Any]], state: _WindowState) -> None:
        done_pages = {
            (int(r["window_start"]), int(r["window_end"]), int(r["page"]))
            for r in logged
            if r["window_start"]
        }
        while state.start <= state.range_end:
            if self._should_stop():
                return
            state.end = min(state.start + state.width - 1, state.range_end)
            pending = self._pending_window(logged, state)
            if pending is not None:  # a window cut short by a crash: finish its missing pages
                total, pages = pending
            else:
                probe = self._search(query, state.start, state.end, page=1)
                total = _int(probe.get("total")) or 0
                if not logged and state.end == state.range_end and not self._sized_queries.get(key):
                    # The first probe spans the whole range: its total sizes the progress bar.
                    self._sized_queries[key] = True
                    self._expected += min(total, self.per_query or total)
                    self.progress.set_total(self._expected)
                if total > RESULT_CAP and state.end > state.start:
                    state.width = max(1, math.floor(state.width * min(0.5, self.target / total)))
                    continue
                if total > RESULT_CAP:
                    self.report.capped_windows += 1
                    log.warning("one second holds %d > %d results for %s; keeping the first %d",
                                total, RESULT_CAP, query.label, RESULT_CAP)  # fmt: skip
                pages = max(1, math.ceil(min(total, RESULT_CAP) / self.filters.per_page))
                next_width = self._next_width(state.width, total)
                self._store_page(query, key, state, 1, probe, total, pages, next_width)
            for page in range(2, pages + 1):
                if self._should_stop():
                    return
                if (state.start, state.end, page) in done_pages:
                    continue
                resp = self._search(query, state.start, state.end, page=page)
                self._store_page(
                    query, key, state, page, resp, total, pages, self._next_width(state.width, total)
                )
            state.width = self._next_width(state.width, total)
            state.start = state.end + 1

    def _should_stop(self) -> bool:
        return bool(self.stop) or (self.per_query is not None and self._collected >= self.per_query)

    def _resume_state(self, logged: list[dict[str, Any]], refresh: bool) -> _WindowState | None:
        lower = self.filters.min_upload if self.filters.min_upload is not None else FLICKR_EPOCH
        upper = self.filters.max_upload if self.filters.max_upload is not None else self.now
        if not logged:
            return _WindowState(lower, lower, max(1, upper - lower + 1), upper)
        last = logged[-1]
        info = json.loads(last["state"] or "{}")
        range_end = int(info.get("range_end", upper))
        # Continue after the last window whose pages were all logged; an unfinished window is re-entered.
        windows: dict[tuple[int, int], set[int]] = {}
        pages_needed: dict[tuple[int, int], int] = {}
        widths: dict[tuple[int, int], int] = {}
        for row in logged:
            win = (int(row["window_start"]), int(row["window_end"]))
            windows.setdefault(win, set()).add(int(row["page"]))
            st = json.loads(row["state"] or "{}")
            pages_needed[win] = int(st.get("pages", 1))
            widths[win] = int(st.get("next_width", win[1] - win[0] + 1))
        complete = [w for w, pages in windows.items() if len(pages) >= pages_needed[w]]
        incomplete = sorted(w for w in windows if w not in complete)
        if incomplete:
            start, end = incomplete[0]
            return _WindowState(start, end, end - start + 1, range_end)
        last_win = max(complete, key=lambda w: w[1])
        start = last_win[1] + 1
        if start > range_end:
            if not refresh or self.filters.max_upload is not None:
                return None
            range_end = self.now
            if start > range_end:
                return None
        return _WindowState(start, start, widths[last_win], range_end)

    def _pending_window(self, logged: list[dict[str, Any]], state: _WindowState) -> tuple[int, int] | None:
        for row in logged:
            if int(row["window_start"] or -1) == state.start and int(row["page"]) == 1:
                info = json.loads(row["state"] or "{}")
                state.end = int(row["window_end"])
                state.width = state.end - state.start + 1
                return int(info.get("total", 0)), int(info.get("pages", 1))
        return None

    def _next_width(self, width: int, total: int) -> int:
        if total <= 0:
            return width * 8
        return max(1, math.floor(width * min(8.0, self.target / total)))

    def _search(self, query: HarvestQuery, start: int, end: int, page: int) -> dict[str, Any]:
        params = self.filters.params()
        if self.filters.search_by == "tags":
            params["tags"] = ",".join(query.text.split())
        else:
            params["text"] = query.search_text()
        payload = self.client.call(
            "flickr.photos.search", min_upload_date=start, max_upload_date=end, page=page, **params
        )
        photos = payload.get("photos")
        if not isinstance(photos, dict):
            return {"total": 0, "photo": []}
        return photos

    def _store_page(
        self,
        query: HarvestQuery,
        key: str,
        state: _WindowState,
        page: int,
        resp: dict[str, Any],
        total: int,
        pages: int,
        next_width: int,
    ) -> None:
        records = []
        for item in resp.get("photo") or []:
            if not isinstance(item, dict) or "id" not in item:
                continue
            try:
                records.append(parse_search_photo(item, [query.label]))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("skipping an unreadable Flickr photo entry: %s", exc)
        with self.corpus.transaction() as conn:
            known = self.corpus.photo_ids(SOURCE, [r.source_id for r in records])
            ids = self.corpus.add_photos(records)
            new = len({r.source_id for r in records} - set(known))
            conn.executemany(
                "INSERT INTO stages (photo_id, stage, status, updated_at) VALUES (?, 'harvest', 'done', ?)"
                " ON CONFLICT (photo_id, stage) DO NOTHING",
                [(pid, utc_now()) for pid in ids],
            )
            self.corpus.log_harvest_page(
                SOURCE,
                key,
                page,
                len(records),
                window_start=str(state.start),
                window_end=str(state.end),
                total=total,
                state={
                    "pages": pages,
                    "total": total,
                    "next_width": next_width,
                    "range_end": state.range_end,
                },
            )
        self.report.photos_new += new
        self.report.pages += 1
        self._collected += len(records)
        self.progress(len(records))

    def _record_counters(self) -> None:
        stats = self.client.stats
        with self.corpus.transaction():
            self.corpus.bump_counter("harvest", "api_calls", self.report.api_calls)
            for cause, n in stats.by_cause.items():
                self.corpus.bump_counter("harvest", f"retries_{cause}", n)
            stats.by_cause.clear()
            if self.report.retries:
                self.corpus.bump_counter("harvest", "retries", self.report.retries)
