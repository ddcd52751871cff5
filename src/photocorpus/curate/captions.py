"""Caption text per photo: the cleaned caption and its language, stored beside the raw text.

The raw title, caption and hashtags stay untouched in ``photos``; ``curation.caption_clean`` is what
exports and later stages read (see :func:`photocorpus.caption_text.curated_caption`), and
``curation.language`` is py3langid's guess (offline), or NULL when the text is too short to tell.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from photocorpus.caption_text import curated_caption, detect_language
from photocorpus.corpus import Corpus
from photocorpus.interrupt import StopFlag
from photocorpus.notebook import HtmlReport
from photocorpus.progress import Advance
from photocorpus.records import utc_now

BATCH = 2000


@dataclass(slots=True)
class CaptionReport(HtmlReport):
    cleaned: int = 0
    languages: dict[str, int] | None = None
    interrupted: bool = False


def pending_captions(corpus: Corpus, redo: bool = False) -> list[int]:
    """Photos whose clean caption has not been computed yet."""
    where = "" if redo else "WHERE c.caption_clean IS NULL"
    return [
        int(r[0])
        for r in corpus.conn.execute(
            f"SELECT p.id FROM photos p LEFT JOIN curation c ON c.photo_id = p.id {where} ORDER BY p.id"
        )
    ]


def _clean_rows(corpus: Corpus, ids: Sequence[int]) -> list[tuple[int, str, str | None, float]]:
    out = []
    for r in corpus.select_in("SELECT id, title, caption, hashtags FROM photos WHERE id IN ({marks})", ids):
        clean = curated_caption(r["title"], r["caption"], json.loads(r["hashtags"] or "[]"))
        lang, prob = detect_language(clean)
        out.append((int(r["id"]), clean, lang, round(prob, 4)))
    return out


def run_captions(
    corpus: Corpus,
    *,
    redo: bool = False,
    stop: StopFlag | None = None,
    advance: Advance | None = None,
) -> CaptionReport:
    """Clean every caption not cleaned yet and identify its language, batch by batch (resumable)."""
    report = CaptionReport()
    todo = pending_captions(corpus, redo)
    for lo in range(0, len(todo), BATCH):
        rows = _clean_rows(corpus, todo[lo : lo + BATCH])
        now = utc_now()
        with corpus.transaction() as conn:
            conn.executemany(
                """INSERT INTO curation (photo_id, caption_clean, language, language_score, updated_at)
                   VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (photo_id) DO UPDATE SET caption_clean = excluded.caption_clean,
                       language = excluded.language, language_score = excluded.language_score,
                       updated_at = excluded.updated_at""",
                [(pid, clean, lang, prob, now) for pid, clean, lang, prob in rows],
            )
        report.cleaned += len(rows)
        if advance:
            advance(len(rows))
        if stop:
            report.interrupted = True
            break
    report.languages = {
        (r[0] or "unknown"): int(r[1])
        for r in corpus.conn.execute(
            "SELECT language, COUNT(*) FROM curation WHERE caption_clean IS NOT NULL GROUP BY language "
            "ORDER BY COUNT(*) DESC"
        )
    }
    return report
