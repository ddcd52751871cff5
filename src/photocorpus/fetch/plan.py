"""What to fetch: which photos are still to do, and which of their URLs to try in which order.

A photo is to do when its ``fetch`` stage has no row yet (or is ``pending``), when it failed with a
reason the user asked to retry (``--retry-failed``), or when it failed as ``url_expired`` and its URLs
were re-harvested since. Photos are visited in id order with keyset paging, so a million-photo corpus
is walked in constant memory and a resumed run simply starts over the same query.

Size rules: try the preferred sizes in order (Flickr Large, then Original), then anything else the
source gave, largest first. ``size_policy = "strict"`` is im2gps's rule: the preferred sizes only, and a
photo with none of them fails as ``no_allowed_size`` instead of falling back to a smaller size.
``default_size_only`` takes just the source's default size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from photocorpus import reasons
from photocorpus.config import FetchSettings
from photocorpus.corpus import Corpus

STAGE = "fetch"
PAGE_SIZE = 512  # photo ids read from the catalog at a time, by the local and the Ray fetch loops alike


@dataclass(frozen=True, slots=True)
class UrlOption:
    """One candidate URL of a photo, as the catalog's ``image_urls`` row has it."""

    size_key: str
    url: str
    width: int | None = None
    height: int | None = None
    harvested_at: str | None = None

    @property
    def max_edge(self) -> int:
        return max(self.width or 0, self.height or 0)


def candidate_urls(options: Sequence[UrlOption], settings: FetchSettings) -> list[UrlOption]:
    """The URLs to try for one photo, best first, without repeats."""
    by_key = {o.size_key: o for o in options if o.url}
    if settings.default_size_only:
        for key in settings.default_size_keys:
            if key in by_key:
                return [by_key[key]]
        known = sorted((o for o in by_key.values() if o.max_edge), key=lambda o: o.max_edge)
        return known[:1] or list(by_key.values())[:1]
    ordered = [by_key[key] for key in settings.size_keys if key in by_key]
    if settings.size_policy != "strict":
        rest = [o for key, o in by_key.items() if key not in settings.size_keys]
        ordered += sorted(rest, key=lambda o: -o.max_edge)
    seen: set[str] = set()
    unique = []
    for option in ordered:
        if option.url not in seen:
            seen.add(option.url)
            unique.append(option)
    return unique


def no_candidate_failure(options: Sequence[UrlOption], settings: FetchSettings) -> tuple[str, str]:
    """(reason, detail) of a photo that :func:`candidate_urls` gave nothing to try.

    ``no_url`` when the source gave no URL at all; ``no_allowed_size`` when it gave sizes, but the
    strict size policy allows none of them (im2gps drops such a photo rather than store a small size).
    """
    given = sorted({o.size_key for o in options if o.url})
    if not given:
        return reasons.NO_URL, "the source gave no image URL"
    return (
        reasons.NO_ALLOWED_SIZE,
        f"size_policy strict allows {', '.join(settings.size_keys) or 'no size'}; "
        f"the source gave {', '.join(given)}"[:300],
    )


# ---------------------------------------------------------------------------------------------- queue
def failed_reasons(corpus: Corpus) -> dict[str, int]:
    """Fetch failures by reason (photos that have URLs only: an import failure is not ours to retry)."""
    rows = corpus.conn.execute(
        """SELECT s.reason, COUNT(*) FROM stages s
           WHERE s.stage = ? AND s.status = 'failed'
             AND EXISTS (SELECT 1 FROM image_urls u WHERE u.photo_id = s.photo_id)
           GROUP BY s.reason""",
        (STAGE,),
    ).fetchall()
    return {r[0] or "unknown": int(r[1]) for r in rows}


def retry_reasons(corpus: Corpus, requested: Sequence[str] | None) -> list[str]:
    """The failure reasons a run retries: none (``None``), the transient ones (``[]``), or as named."""
    if requested is None:
        return []
    if requested:
        return sorted(set(requested))
    return sorted(r for r in failed_reasons(corpus) if reasons.is_transient(r))


def _pending_where(retry: Sequence[str]) -> tuple[str, list[object]]:
    clauses = [
        "s.status IS NULL",
        "s.status = 'pending'",
        # an expired signed URL (or a missing one, or sizes strict allowed none of) comes back by itself
        # once the photo is re-harvested
        f"""(s.status = 'failed'
             AND s.reason IN ('{reasons.URL_EXPIRED}', '{reasons.NO_URL}', '{reasons.NO_ALLOWED_SIZE}')
             AND EXISTS (
               SELECT 1 FROM image_urls u WHERE u.photo_id = p.id AND u.harvested_at > s.updated_at))""",
    ]
    params: list[object] = []
    if retry:
        marks = ",".join("?" * len(retry))
        clauses.append(
            f"""(s.status = 'failed' AND s.reason IN ({marks})
                 AND EXISTS (SELECT 1 FROM image_urls u WHERE u.photo_id = p.id))"""
        )
        params.extend(retry)
    return "(" + " OR ".join(clauses) + ")", params


def count_pending(corpus: Corpus, retry: Sequence[str] = ()) -> int:
    """How many photos a run would visit."""
    where, params = _pending_where(retry)
    sql = f"""SELECT COUNT(*) FROM photos p
              LEFT JOIN stages s ON s.photo_id = p.id AND s.stage = ?
              WHERE {where}"""
    return int(corpus.conn.execute(sql, (STAGE, *params)).fetchone()[0])


def pending_ids(corpus: Corpus, after_id: int, limit: int, retry: Sequence[str] = ()) -> list[int]:
    """The next ``limit`` photo ids to visit, after ``after_id``, in id order."""
    where, params = _pending_where(retry)
    sql = f"""SELECT p.id FROM photos p
              LEFT JOIN stages s ON s.photo_id = p.id AND s.stage = ?
              WHERE p.id > ? AND {where}
              ORDER BY p.id LIMIT ?"""
    return [int(r[0]) for r in corpus.conn.execute(sql, (STAGE, after_id, *params, limit))]


def pending_pages(
    corpus: Corpus,
    page_size: int,
    retry: Sequence[str] = (),
    limit: int | None = None,
    stopping: Callable[[], bool] = lambda: False,
) -> Iterator[tuple[list[int], dict[int, list[UrlOption]]]]:
    """Pages of the photo ids still to visit, in id order, each with its photos' candidate URLs: at
    most ``limit`` ids in all, and no further page once ``stopping()`` says so.

    Why one walk for the local and the Ray fetch loops: the keyset paging (each page starts after the
    last id given, so commits between pages neither skip nor repeat a photo) and the limit must be the
    same in both; only what they do with a page differs. The caller is expected to visit every id it
    is given unless it is stopping.
    """
    after = 0
    given = 0
    while not stopping() and (limit is None or given < limit):
        size = page_size if limit is None else min(page_size, limit - given)
        ids = pending_ids(corpus, after, size, retry)
        if not ids:
            return
        after = ids[-1]
        given += len(ids)
        yield ids, load_urls(corpus, ids)


def load_urls(corpus: Corpus, photo_ids: Sequence[int]) -> dict[int, list[UrlOption]]:
    """Every photo's candidate URLs (batched lookup); photos without any are absent."""
    found: dict[int, list[UrlOption]] = {}
    sql = """SELECT photo_id, size_key, url, width, height, harvested_at FROM image_urls
             WHERE photo_id IN ({marks}) ORDER BY photo_id, size_key"""
    for row in corpus.select_in(sql, photo_ids):  # a photo's rows share a chunk: its order holds
        found.setdefault(int(row[0]), []).append(
            UrlOption(row[1], row[2], _as_int(row[3]), _as_int(row[4]), row[5])
        )
    return found


def _as_int(value: object) -> int | None:
    try:
        return int(value) if value is not None else None  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
