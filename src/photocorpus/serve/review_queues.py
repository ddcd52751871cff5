"""The review queues: duplicate groups, bot candidates and quality flags, with what a person needs
to judge each (members, how each was linked and how close, the flag or rule that fired).

Duplicate groups are ordered ``largest`` first, or ``uncertain`` first: the group whose weakest link
is the least sure. A link's score is the Hamming distance between the member's 64-bit pHash and the
representative's (0 = identical; ``exact`` links are byte-identical files); semantic links (CNN
near-duplicates) count as less certain than any hash link. Groups a person already decided on
(a ``confirm_group``/``split_group``/``not_duplicate`` decision not undone) go to the end.
"""

from __future__ import annotations

from typing import Any

from photocorpus.corpus import Corpus

METHOD_RANK = {"exact": 0, "phash": 1, "semantic": 2}
PAGE = 20
FLAG_PAGE = 60


def _distance(a: int | None, b: int | None) -> int | None:
    if a is None or b is None:
        return None
    return ((a ^ b) & 0xFFFFFFFFFFFFFFFF).bit_count()


def _decided_photos(corpus: Corpus, kinds: tuple[str, ...]) -> set[int]:
    """Photos named by an active decision of these kinds (the queues' "reviewed" mark)."""
    marks = ",".join("?" * len(kinds))
    rows = corpus.conn.execute(
        f"SELECT DISTINCT x.photo_id FROM decisions d JOIN decision_photos x ON x.decision = d.id "
        f"WHERE d.kind IN ({marks}) AND d.undone_by IS NULL",
        kinds,
    )
    return {int(r[0]) for r in rows}


def duplicate_groups(
    corpus: Corpus, order: str = "largest", offset: int = 0, limit: int | None = PAGE
) -> dict[str, Any]:
    """A page of duplicate groups: ``{"total", "groups": [{"group", "size", "reviewed", "members":
    [{"id", "method", "distance", "width", "height", "title"}]}]}``."""
    rows = corpus.conn.execute(
        """SELECT c.photo_id, c.dup_group, c.duplicate_of, c.dup_method, c.phash, f.width, f.height, p.title
           FROM curation c JOIN photos p ON p.id = c.photo_id LEFT JOIN files f ON f.photo_id = c.photo_id
           WHERE c.dup_group IS NOT NULL ORDER BY c.dup_group, c.duplicate_of IS NOT NULL, c.photo_id"""
    ).fetchall()
    groups: dict[int, list[Any]] = {}
    for r in rows:
        groups.setdefault(int(r["dup_group"]), []).append(r)
    decided = _decided_photos(corpus, ("confirm_group", "split_group", "mark_not_duplicate"))
    out = []
    for group, members in groups.items():
        rep = next((m for m in members if m["duplicate_of"] is None), members[0])
        shown = []
        for m in members:
            is_rep = m["photo_id"] == rep["photo_id"]
            shown.append({
                "id": int(m["photo_id"]),
                "representative": is_rep,
                "method": None if is_rep else m["dup_method"],
                "distance": None if is_rep else _distance(m["phash"], rep["phash"]),
                "width": m["width"],
                "height": m["height"],
                "title": m["title"] or "",
            })  # fmt: skip
        links = [s for s in shown if not s["representative"]]
        weakest = max(
            ((METHOD_RANK.get(s["method"] or "", 3), s["distance"] or 0) for s in links), default=(0, 0)
        )
        out.append({
            "group": group,
            "size": len(members),
            "reviewed": all(s["id"] in decided for s in shown),
            "members": shown,
            "weakest": weakest,
        })  # fmt: skip
    if order == "uncertain":
        out.sort(key=lambda g: (g["reviewed"], tuple(-x for x in g["weakest"]), -g["size"], g["group"]))
    else:
        out.sort(key=lambda g: (g["reviewed"], -g["size"], g["group"]))
    for g in out:
        del g["weakest"]
    end = None if limit is None else offset + limit
    return {"total": len(out), "groups": out[offset:end]}


def flagged_photos(
    corpus: Corpus, queue: str, offset: int = 0, limit: int | None = FLAG_PAGE
) -> dict[str, Any]:
    """Bot candidates (``bots``: ``curation.bot = 1``) or quality-flagged photos (``quality``), the
    unreviewed first, each with the rule or flags that put it here."""
    if queue == "bots":
        where, kinds, field = "c.bot = 1", ("set_bot",), "bot_reason"
    else:
        where, kinds, field = (
            "c.quality_flags IS NOT NULL AND c.quality_flags NOT IN ('[]', '')",
            ("set_quality",),
            "quality_flags",
        )
    rows = corpus.conn.execute(
        f"""SELECT c.photo_id, c.{field} AS why, p.title, p.caption, p.owner FROM curation c
            JOIN photos p ON p.id = c.photo_id WHERE {where} ORDER BY c.photo_id"""
    ).fetchall()
    decided = _decided_photos(corpus, kinds)
    items = [
        {
            "id": int(r["photo_id"]),
            "why": r["why"],
            "title": r["title"] or "",
            "caption": (r["caption"] or "")[:200],
            "owner": r["owner"] or "",
            "reviewed": int(r["photo_id"]) in decided,
        }
        for r in rows
    ]
    items.sort(key=lambda i: (i["reviewed"], i["id"]))
    end = None if limit is None else offset + limit
    return {"total": len(items), "items": items[offset:end]}
