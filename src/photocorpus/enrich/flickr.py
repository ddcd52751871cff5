"""``photocorpus enrich flickr``: the MIRFLICKR-1M s16a metadata, per photo, politely and resumably.

For every harvested Flickr photo and every requested kind, one API call:

=========  =================================  ===========================================
kind       method                             stored as
=========  =================================  ===========================================
exif       flickr.photos.getExif              ``photo_exif`` columns (source "api")
info       flickr.photos.getInfo              notes, views, comment count (``photo_social``)
comments   flickr.photos.comments.getList     ``photo_comments`` + comment count
contexts   flickr.photos.getAllContexts       albums and groups (``photo_contexts``)
=========  =================================  ===========================================

Each answer, available or not, is committed as an ``enrichment`` row keyed on (photo, kind) together
with its structured rows, so a re-run asks only what is missing and never repeats a stored call.
"Not available" answers (hidden EXIF, deleted photo) are stored too, so they are never asked again.

The calls go through :class:`FlickrClient`, so the harvest's process-wide rate limit and backoff apply.
Several keys of the same user can share the work: one client (and one rate limit) per key, one thread
per key, photos split by id.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from photocorpus.corpus import Corpus
from photocorpus.errors import ConfigError
from photocorpus.exif import fields_from_api, store_exif
from photocorpus.flickr_api import FlickrAuthError, FlickrClient, FlickrError
from photocorpus.interrupt import StopFlag
from photocorpus.notebook import HtmlReport
from photocorpus.progress import ProgressHandle
from photocorpus.records import utc_iso, utc_now

log = logging.getLogger(__name__)

METHODS = {
    "exif": "flickr.photos.getExif",
    "info": "flickr.photos.getInfo",
    "comments": "flickr.photos.comments.getList",
    "contexts": "flickr.photos.getAllContexts",
}
KINDS = tuple(METHODS)
# Flickr's "this photo's data is not available to you" codes: 1 photo not found, 2 permission denied.
UNAVAILABLE_CODES = frozenset({1, 2})


def parse_kinds(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``exif,comments`` → ("exif", "comments"); all kinds when empty."""
    if not value:
        return KINDS
    items = value.split(",") if isinstance(value, str) else [k for v in value for k in v.split(",")]
    kinds = tuple(dict.fromkeys(k.strip() for k in items if k.strip()))
    unknown = [k for k in kinds if k not in METHODS]
    if unknown:
        raise ConfigError(f"unknown enrichment kind(s) {', '.join(unknown)}; choose from {', '.join(KINDS)}")
    return kinds


@dataclass(frozen=True)
class EnrichPlan:
    """What is left to ask, and how long it will take at the configured rates."""

    photos: int
    calls: int
    keys: int
    calls_per_hour: float

    @property
    def hours(self) -> float:
        return self.calls / (self.calls_per_hour * max(1, self.keys)) if self.calls else 0.0

    def describe(self) -> str:
        hours = self.hours
        when = (
            f"{hours * 60:.0f} minutes"
            if hours < 2
            else f"{hours:.1f} hours"
            if hours < 48
            else (f"{hours / 24:.1f} days")
        )
        return (
            f"{self.calls:,} API calls for {self.photos:,} photos; at {self.calls_per_hour:,.0f} calls/hour "
            f"with {self.keys} key(s) that takes about {when}"
        )


def pending_calls(
    corpus: Corpus, kinds: Sequence[str], max_photos: int | None = None
) -> list[tuple[int, str, str]]:
    """(photo id, Flickr id, kind) still to ask, ordered by photo; at most ``max_photos`` photos."""
    marks = ",".join("?" * len(kinds))
    rows = corpus.conn.execute(
        f"""SELECT p.id, p.source_id, k.kind FROM photos p
            CROSS JOIN (SELECT value AS kind FROM json_each(?)) k
            WHERE p.source = 'flickr' AND k.kind IN ({marks})
              AND NOT EXISTS (SELECT 1 FROM enrichment e WHERE e.photo_id = p.id AND e.kind = k.kind)
            ORDER BY p.id""",
        (json.dumps(list(kinds)), *kinds),
    ).fetchall()
    order = {k: i for i, k in enumerate(kinds)}
    out = sorted(((r[0], r[1], r[2]) for r in rows), key=lambda r: (r[0], order[r[2]]))
    if max_photos is not None:
        keep: set[int] = set()
        limited = []
        for item in out:
            if item[0] not in keep:
                if len(keep) >= max_photos:
                    continue
                keep.add(item[0])
            limited.append(item)
        out = limited
    return out


def plan(
    corpus: Corpus, kinds: Sequence[str], keys: int, calls_per_hour: float, max_photos: int | None
) -> EnrichPlan:
    todo = pending_calls(corpus, kinds, max_photos)
    return EnrichPlan(len({t[0] for t in todo}), len(todo), keys, calls_per_hour)


@dataclass
class EnrichReport(HtmlReport):
    calls: int = 0
    stored: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> status -> count
    errors: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False
    plan: EnrichPlan | None = None  # what was left to ask when the run started

    def count(self, kind: str, status: str) -> None:
        by_status = self.stored.setdefault(kind, {})
        by_status[status] = by_status.get(status, 0) + 1


class FlickrEnricher:
    """Asks each pending (photo, kind), one thread per API key, and commits every answer."""

    def __init__(
        self,
        corpus: Corpus,
        clients: Sequence[FlickrClient],
        kinds: Sequence[str] = KINDS,
        *,
        stop: StopFlag | None = None,
        progress: ProgressHandle | None = None,
    ) -> None:
        if not clients:
            raise ConfigError("enrichment needs at least one Flickr API key")
        self.corpus = corpus
        self.clients = list(clients)
        self.kinds = tuple(kinds)
        self.stop = stop
        self.progress = progress or ProgressHandle()
        self.report = EnrichReport()
        self._write_lock = threading.Lock()
        self._fatal: BaseException | None = None

    def run(self, max_photos: int | None = None) -> EnrichReport:
        todo = pending_calls(self.corpus, self.kinds, max_photos)
        n = len(self.clients)
        shards = [[t for t in todo if t[0] % n == k] for k in range(n)]
        if n == 1:
            self._work(self.clients[0], shards[0])
        else:
            threads = [
                threading.Thread(target=self._work, args=(client, shard), name=f"enrich-key-{k}", daemon=True)
                for k, (client, shard) in enumerate(zip(self.clients, shards, strict=True))
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        self.report.interrupted = bool(self.stop)
        with self.corpus.transaction():
            self.corpus.bump_counter("enrich", "api_calls", self.report.calls)
            for cause, count in self.report.errors.items():
                self.corpus.bump_counter("enrich", cause, count)
        if self._fatal is not None:
            raise self._fatal
        return self.report

    def _work(self, client: FlickrClient, todo: list[tuple[int, str, str]]) -> None:
        for photo_id, flickr_id, kind in todo:
            if self.stop or self._fatal is not None:
                return
            try:
                payload = client.call(METHODS[kind], photo_id=flickr_id)
                status, reason = "ok", None
            except FlickrAuthError as exc:
                self._fatal = exc
                return
            except FlickrError as exc:
                if exc.code not in UNAVAILABLE_CODES:
                    # Unknown hard errors are not recorded: the next run asks again.
                    log.warning("enrich %s for photo %s: %s", kind, flickr_id, exc)
                    with self._write_lock:
                        self.report.errors[f"errors_flickr_{exc.code}"] = (
                            self.report.errors.get(f"errors_flickr_{exc.code}", 0) + 1
                        )
                    continue
                payload, status, reason = {}, "unavailable", f"flickr_{exc.code}"
            except Exception as exc:  # FlickrUnavailableError and friends: stop the run, keep what we have
                self._fatal = exc
                return
            with self._write_lock:
                self.report.calls += 1
                status = self._store(photo_id, kind, payload, status, reason)
                self.report.count(kind, status)
            self.progress(1)

    # -- storing one answer
    def _store(
        self, photo_id: int, kind: str, payload: dict[str, Any], status: str, reason: str | None
    ) -> str:
        with self.corpus.transaction() as conn:
            if status == "ok":
                status = getattr(self, f"_store_{kind}")(conn, photo_id, payload)
            conn.execute(
                "INSERT OR REPLACE INTO enrichment (photo_id, kind, status, reason, raw, fetched_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (photo_id, kind, status, reason, json.dumps(payload, ensure_ascii=False) if payload else None,
                 utc_now()),
            )  # fmt: skip
        return status

    def _store_exif(self, conn: Any, photo_id: int, payload: dict[str, Any]) -> str:
        fields = fields_from_api(payload)
        store_exif(self.corpus, photo_id, fields, "api")
        return "ok" if fields else "empty"

    def _store_info(self, conn: Any, photo_id: int, payload: dict[str, Any]) -> str:
        photo = payload.get("photo") or {}
        notes = ((photo.get("notes") or {}).get("note")) or []
        comments = _int((photo.get("comments") or {}).get("_content"))
        _upsert_social(
            conn, photo_id, note_count=len(notes), views=_int(photo.get("views")), comment_count=comments
        )
        return "ok"

    def _store_comments(self, conn: Any, photo_id: int, payload: dict[str, Any]) -> str:
        comments = (payload.get("comments") or {}).get("comment") or []
        rows = [
            (photo_id, str(c["id"]), c.get("author"), c.get("authorname"), utc_iso(c.get("datecreate")),
             c.get("_content"))
            for c in comments
            if isinstance(c, dict) and c.get("id") is not None
        ]  # fmt: skip
        conn.executemany(
            "INSERT OR REPLACE INTO photo_comments (photo_id, comment_id, author, authorname, created_at,"
            " text) VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )  # fmt: skip
        _upsert_social(conn, photo_id, comment_count=len(comments))
        return "ok" if comments else "empty"

    def _store_contexts(self, conn: Any, photo_id: int, payload: dict[str, Any]) -> str:
        rows = [("album", s) for s in payload.get("set") or []] + [
            ("group", g) for g in payload.get("pool") or []
        ]
        conn.executemany(
            "INSERT OR REPLACE INTO photo_contexts (photo_id, kind, context_id, title) VALUES (?, ?, ?, ?)",
            [(photo_id, kind, str(c.get("id")), c.get("title")) for kind, c in rows if isinstance(c, dict)],
        )
        return "ok" if rows else "empty"


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _upsert_social(conn: Any, photo_id: int, **values: int | None) -> None:
    conn.execute("INSERT OR IGNORE INTO photo_social (photo_id) VALUES (?)", (photo_id,))
    for column, value in values.items():
        if value is not None:
            conn.execute(f"UPDATE photo_social SET {column} = ? WHERE photo_id = ?", (value, photo_id))


def api_keys_from(
    env_value: str | None, settings_key: str | None, extra_keys: Sequence[str] = ()
) -> list[str]:
    """All configured keys, deduplicated: $FLICKR_API_KEY (comma-separated allowed), settings, extras."""
    keys = [k.strip() for k in (env_value or "").split(",") if k.strip()]
    keys += [k for k in [settings_key, *extra_keys] if k]
    return list(dict.fromkeys(keys))
