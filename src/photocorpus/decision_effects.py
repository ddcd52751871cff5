"""What a human decision changes in the catalog *now*, and how that change is put back on undo.

:mod:`photocorpus.decisions` records a decision and its verdicts; this module applies the verdict to
the rows every reader already reads (``curation``, ``photos``, ``photo_labels``), inside the
decision's own transaction, so a person sees the effect at once instead of after the next ``curate``
run. The stages then keep it: they read the verdicts (:func:`photocorpus.decisions.overrides`) and
never undo a person's choice.

Why apply now *and* have the stages read verdicts: the catalog is what the grid, the exports and
``corpus.photos()`` show, so the effect must be there immediately; and a re-run of a stage recomputes
its columns from scratch, so it must know the verdicts or it would overwrite them.

Every function here runs inside the caller's transaction (``conn`` is the corpus connection while
``corpus.transaction()`` is open) and writes nothing else. A core module: it reads the catalog's
tables only, never a stage. The representative rule is dedup's (most original pixels, earliest
upload, lowest photo id; :func:`photocorpus.curate.dedup.representative_order` is its vectorised twin),
so a split applied here picks the representative that the next dedup run would pick.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

# An unknown upload time sorts after every real one (dedup's representative rule uses the same).
NEVER_UPLOADED = "9999-12-31T23:59:59Z"
# Exclusions a person's include lifts. Never duplicate, no_file or not_deduplicated: leak-free splits
# (one split per duplicate group) and "a split photo has a file" win over any person.
LIFTABLE = ("bot", "language", "human")
DUP_COLUMNS = ("dup_group", "duplicate_of", "dup_method", "split", "exclusion")
PHOTO_COLUMNS = ("split", "exclusion", "bot", "bot_reason", "split_assigned")


def _rows(conn: sqlite3.Connection, sql: str, ids: Sequence[int]) -> list[sqlite3.Row]:
    """``sql`` (one ``{marks}``) for ``ids``, in chunks under SQLite's parameter cap."""
    out: list[sqlite3.Row] = []
    for start in range(0, len(ids), 900):
        part = list(ids[start : start + 900])
        out += conn.execute(sql.format(marks=",".join("?" * len(part))), part).fetchall()
    return out


# ------------------------------------------------------------------------------ duplicate groups
def representative(conn: sqlite3.Connection, photo_ids: Iterable[int]) -> int:
    """The member dedup would choose: most original pixels, then earliest upload, then lowest id."""
    ids = sorted(set(photo_ids))
    rows = _rows(
        conn,
        f"""SELECT p.id, COALESCE(f.original_width, f.width, 0) * COALESCE(f.original_height, f.height, 0),
                   COALESCE(p.uploaded_at, '{NEVER_UPLOADED}') FROM photos p
            LEFT JOIN files f ON f.photo_id = p.id WHERE p.id IN ({{marks}})""",
        ids,
    )
    return int(min(rows, key=lambda r: (-int(r[1] or 0), r[2], int(r[0])))[0])


def dup_state(conn: sqlite3.Connection, photo_ids: Iterable[int]) -> dict[int, list[Any]]:
    """The duplicate columns (and split/exclusion) of the photos that dedup has hashed."""
    rows = _rows(
        conn,
        f"SELECT photo_id, {', '.join(DUP_COLUMNS)} FROM curation "
        "WHERE phash IS NOT NULL AND photo_id IN ({marks})",
        sorted(set(photo_ids)),
    )
    return {int(r[0]): [r[i + 1] for i in range(len(DUP_COLUMNS))] for r in rows}


def group_members(conn: sqlite3.Connection, groups: Iterable[int]) -> set[int]:
    """Every photo in these duplicate groups."""
    rows = _rows(conn, "SELECT photo_id FROM curation WHERE dup_group IN ({marks})", sorted(set(groups)))
    return {int(r[0]) for r in rows}


def write_dup_state(conn: sqlite3.Connection, state: dict[int, list[Any]], now: str) -> None:
    """Write a :func:`dup_state` snapshot back (undo), row by row."""
    sets = ", ".join(f"{c} = ?" for c in DUP_COLUMNS)
    conn.executemany(
        f"UPDATE curation SET {sets}, updated_at = ? WHERE photo_id = ?",
        [(*values, now, int(pid)) for pid, values in state.items()],
    )


def _regroup(conn: sqlite3.Connection, members: set[int], rep: int | None, now: str, human: set[int]) -> None:
    """Make ``members`` one group (or unique photos, under two members) and fix their exclusion:
    a photo that stops being a duplicate loses the ``duplicate`` exclusion and gets back its group's
    sticky split; a photo that becomes one leaves the splits."""
    if len(members) < 2:
        for pid in members:
            conn.execute(
                "UPDATE curation SET dup_group = NULL, duplicate_of = NULL, dup_method = NULL, "
                "updated_at = ? WHERE photo_id = ?",
                (now, pid),
            )
    else:
        rep = rep if rep in members else representative(conn, members)
        for pid in members:
            conn.execute(
                "UPDATE curation SET dup_group = ?, duplicate_of = ?, updated_at = ?, "
                "dup_method = CASE WHEN ? THEN COALESCE(dup_method, 'human') ELSE dup_method END "
                "WHERE photo_id = ?",
                (rep, None if pid == rep else rep, now, int(pid in human), pid),
            )
    for pid in members:
        conn.execute(
            """UPDATE curation SET
                   exclusion = CASE WHEN duplicate_of IS NOT NULL AND exclusion IS NULL THEN 'duplicate'
                                    WHEN duplicate_of IS NULL AND exclusion = 'duplicate' THEN NULL
                                    ELSE exclusion END,
                   split = CASE WHEN duplicate_of IS NOT NULL THEN NULL
                                WHEN exclusion = 'duplicate' THEN split_assigned ELSE split END
               WHERE photo_id = ?""",
            (pid,),
        )


def split_off(conn: sqlite3.Connection, keep: Sequence[int], leaving: Sequence[int], now: str) -> None:
    """Apply a split now: ``leaving`` becomes a group of its own (or a unique photo), the rest of the
    group keeps its representative (or, if it left, gets the next one by dedup's rule)."""
    state = dup_state(conn, [*keep, *leaving])
    groups = {values[0] for values in state.values() if values[0] is not None}
    if len(groups) != 1:
        return  # not one group in the catalog (yet): the next dedup run applies the verdicts
    group = groups.pop()
    members = group_members(conn, [group])
    gone = set(leaving) & members
    _regroup(conn, gone, None, now, set())
    _regroup(conn, members - gone, group, now, set())


def merge(conn: sqlite3.Connection, photo_ids: Sequence[int], now: str) -> None:
    """Apply a confirmation now: the named photos and the groups they are in become one group."""
    state = dup_state(conn, photo_ids)
    if len(state) < 2:
        return
    members = set(state) | group_members(conn, [v[0] for v in state.values() if v[0] is not None])
    _regroup(conn, members, None, now, set(state))


# ------------------------------------------------------------------------------ one photo's fields
def photo_state(conn: sqlite3.Connection, photo_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The curation columns a photo decision changes, per photo that has a curation row."""
    rows = _rows(
        conn,
        f"SELECT photo_id, {', '.join(PHOTO_COLUMNS)} FROM curation WHERE photo_id IN ({{marks}})",
        photo_ids,
    )
    return {int(r[0]): {c: r[i + 1] for i, c in enumerate(PHOTO_COLUMNS)} for r in rows}


def label_state(conn: sqlite3.Connection, photo_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Each photo's primary label and label list, as a label decision finds them."""
    out = {
        int(r[0]): {"primary_label": r[1], "labels": []}
        for r in _rows(conn, "SELECT id, primary_label FROM photos WHERE id IN ({marks})", photo_ids)
    }
    for r in _rows(conn, "SELECT photo_id, label FROM photo_labels WHERE photo_id IN ({marks})", photo_ids):
        out[int(r[0])]["labels"].append(r[1])
    for state in out.values():
        state["labels"].sort()
    return out


def restore_photo(conn: sqlite3.Connection, photo_id: int, state: dict[str, Any], now: str) -> None:
    """Put back a :func:`photo_state` snapshot (undo with no other verdict left on the photo)."""
    sets = ", ".join(f"{c} = ?" for c in PHOTO_COLUMNS if c != "split_assigned")
    values = [state[c] for c in PHOTO_COLUMNS if c != "split_assigned"]
    conn.execute(f"UPDATE curation SET {sets}, updated_at = ? WHERE photo_id = ?", (*values, now, photo_id))


def set_labels(conn: sqlite3.Connection, photo_id: int, primary: str, labels: Sequence[str]) -> None:
    """Give a photo this primary label and exactly these labels (the primary among them)."""
    conn.execute("UPDATE photos SET primary_label = ? WHERE id = ?", (primary, photo_id))
    conn.execute("DELETE FROM photo_labels WHERE photo_id = ?", (photo_id,))
    conn.executemany(
        "INSERT OR IGNORE INTO photo_labels (photo_id, label) VALUES (?, ?)",
        [(photo_id, label) for label in dict.fromkeys([primary, *labels])],
    )


def relabel(conn: sqlite3.Connection, photo_id: int, label: str, old: dict[str, Any]) -> None:
    """The corrected label replaces the photo's primary label (the other labels stay)."""
    rest = [x for x in old["labels"] if x != old["primary_label"]]
    set_labels(conn, photo_id, label, rest)


def apply_photo_verdict(
    conn: sqlite3.Connection, photo_id: int, field: str, value: Any, exclude_bots: bool, now: str
) -> None:
    """What a photo verdict does to ``curation`` now (the splits step keeps it on re-runs).

    ``exclude``: True takes the photo out of the splits as ``human`` (even a duplicate: the person's
    reason shows; never a photo without a file or hashes, whose reason stays the first one); False
    (include) lifts a bot, quality, language or human exclusion and gives back the photo's sticky
    split, if it has one.
    ``bot``: True flags it with reason ``human`` (and excludes it when ``exclude_bots``); False clears
    the flag and a ``bot`` exclusion. ``quality``: True (ok) lifts a quality exclusion; False excludes
    it as ``quality:human``.
    """
    if field == "exclude" and value:
        conn.execute(
            "UPDATE curation SET split = NULL, exclusion = 'human', updated_at = ? WHERE photo_id = ? "
            "AND (exclusion IS NULL OR exclusion NOT IN ('no_file', 'not_deduplicated'))",
            (now, photo_id),
        )
    elif field == "exclude":
        _lift(conn, photo_id, LIFTABLE, now, quality=True)
    elif field == "bot":
        conn.execute(
            "UPDATE curation SET bot = ?, bot_reason = ?, updated_at = ? WHERE photo_id = ?",
            (int(bool(value)), "human" if value else None, now, photo_id),
        )
        if value and exclude_bots:
            conn.execute(
                "UPDATE curation SET split = NULL, exclusion = 'bot' "
                "WHERE photo_id = ? AND exclusion IS NULL",
                (photo_id,),
            )
        elif not value:
            _lift(conn, photo_id, ("bot",), now, quality=False)
    elif field == "quality" and value:
        _lift(conn, photo_id, (), now, quality=True)
    elif field == "quality":
        conn.execute(
            "UPDATE curation SET split = NULL, exclusion = 'quality:human', updated_at = ? "
            "WHERE photo_id = ? AND (exclusion IS NULL OR exclusion LIKE 'quality:%')",
            (now, photo_id),
        )


def _lift(
    conn: sqlite3.Connection, photo_id: int, exclusions: Sequence[str], now: str, *, quality: bool
) -> None:
    """Clear these exclusions (and any ``quality:*`` one if ``quality``); the photo gets back its sticky
    split, or none until the splits step gives it one."""
    marks = ",".join("?" * len(exclusions)) or "NULL"
    also = " OR exclusion LIKE 'quality:%'" if quality else ""
    conn.execute(
        f"UPDATE curation SET exclusion = NULL, split = split_assigned, updated_at = ? "
        f"WHERE photo_id = ? AND (exclusion IN ({marks}){also})",
        (now, photo_id, *exclusions),
    )


def dumps(value: Any) -> str:
    """JSON as the decision tables store it: compact, keys sorted, non-ASCII kept."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
