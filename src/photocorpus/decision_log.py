"""The audit table of human decisions: the record type, the checks of untrusted input, the reads, and
the one writer that puts a decision's audit row, verdicts and effect into ONE transaction.

Split from :mod:`photocorpus.decisions` (what each decision does and how it is undone) so that each
file does one job: this one knows the ``decisions`` and verdict tables and nothing of duplicate groups
or labels. Why one transaction per decision, idempotent ``request_id`` and the verdict tables: see
:mod:`photocorpus.decisions`.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from photocorpus.decision_effects import dumps
from photocorpus.errors import CorpusBusyError, DecisionError
from photocorpus.records import utc_now

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus

PAIR_KINDS = ("confirm_group", "split_group", "mark_not_duplicate")
FIELD_OF_KIND = {"exclude": "exclude", "include": "exclude", "set_label": "label", "set_bot": "bot"}
FIELD_OF_KIND["set_quality"] = "quality"
KINDS = (*PAIR_KINDS, *FIELD_OF_KIND, "note", "undo")
MAX_REVIEWER_CHARS = 100
MAX_REQUEST_ID_CHARS = 200
MAX_LABEL_CHARS = 200
MAX_NOTE_CHARS = 10_000
MAX_REASON_CHARS = 1_000
# Pair decisions store every pair: 500 photos are 124,750 pairs, a transaction of well under a second.
MAX_GROUP_PHOTOS = 500
MAX_PHOTOS = 100_000  # photos per exclude/include/label/bot/quality decision
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class Decision:
    """One row of the audit table. ``undone_by`` is the id of the undo that reverted it, if any;
    an undo has ``kind == "undo"`` and ``undoes`` = the decision it reverted."""

    id: int
    kind: str
    photo_ids: tuple[int, ...]
    value: Any
    reviewer: str | None
    created_at: str
    undone_by: int | None = None
    undoes: int | None = None

    @property
    def undone(self) -> bool:
        return self.undone_by is not None


@dataclass(frozen=True, slots=True)
class HumanOverrides:
    """The effective human verdicts, as every stage reads them (pairs as ``(a, b)`` with a < b)."""

    same_pairs: set[tuple[int, int]] = field(default_factory=set)
    different_pairs: set[tuple[int, int]] = field(default_factory=set)
    excluded: set[int] = field(default_factory=set)
    included: set[int] = field(default_factory=set)
    labels: dict[int, str] = field(default_factory=dict)
    bot: dict[int, bool] = field(default_factory=dict)
    quality_ok: dict[int, bool] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ checks
def check_text(name: str, value: str | None, max_chars: int, *, lines: bool = False) -> str | None:
    """Untrusted text as stored: stripped, at most ``max_chars``, no control characters."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise DecisionError(f"{name} must be text, not {type(value).__name__}")
    value = value.strip()
    if (_CONTROL_BUT_LINES if lines else _CONTROL).search(value):
        raise DecisionError(f"{name} holds control characters; send plain text")
    if len(value) > max_chars:
        raise DecisionError(f"{name} is {len(value)} characters long; send at most {max_chars}")
    return value or None


def check_ids(name: str, values: Iterable[int], max_photos: int = MAX_PHOTOS) -> list[int]:
    """Photo ids as ints, each once, in the order given; an empty list is refused."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise DecisionError(f"{name} must be a list of photo ids, not {type(values).__name__}")
    out: list[int] = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DecisionError(f"{name} must hold photo ids (integers), not {value!r}")
        out.append(int(value))
    out = list(dict.fromkeys(out))
    if not out:
        raise DecisionError(f"{name} is empty; name at least one photo id")
    if len(out) > max_photos:
        raise DecisionError(f"{name} names {len(out)} photos; one decision takes at most {max_photos}")
    return out


def check_label(label: str) -> str:
    """A label as a person may set it: non-empty text, at most 200 characters, no control characters.

    Any such text is safe: a label becomes a folder name only through
    :func:`photocorpus.corpus_paths.safe_component`, never as it is.
    """
    checked = check_text("label", label, MAX_LABEL_CHARS)
    if checked is None:
        raise DecisionError("label is empty; send the corrected label, e.g. 'london'")
    return checked


def check_known(conn: sqlite3.Connection, photo_ids: Sequence[int]) -> None:
    known: set[int] = set()
    for start in range(0, len(photo_ids), 900):
        part = photo_ids[start : start + 900]
        marks = ",".join("?" * len(part))
        known |= {int(r[0]) for r in conn.execute(f"SELECT id FROM photos WHERE id IN ({marks})", part)}
    unknown = [pid for pid in photo_ids if pid not in known]
    if unknown:
        shown = ", ".join(map(str, unknown[:5])) + (" ..." if len(unknown) > 5 else "")
        raise DecisionError(
            f"no photo with id {shown} in this corpus; nothing was recorded. Send ids from the "
            "catalog (photos.id, the photo_id column of corpus.photos())"
        )


# ------------------------------------------------------------------------------------ reading
def decision_from_row(row: sqlite3.Row | tuple) -> Decision:
    return Decision(
        id=int(row[0]),
        kind=row[1],
        photo_ids=tuple(json.loads(row[2])),
        value=json.loads(row[3]) if row[3] is not None else None,
        reviewer=row[4],
        created_at=row[5],
        undone_by=row[6],
        undoes=row[7],
    )


DECISION_COLUMNS = "id, kind, photo_ids, value, reviewer, created_at, undone_by, undoes"


def get_decision(corpus: Corpus, decision_id: int) -> Decision | None:
    """One decision by id, or None."""
    row = corpus.conn.execute(
        f"SELECT {DECISION_COLUMNS} FROM decisions WHERE id = ?", (int(decision_id),)
    ).fetchone()
    return decision_from_row(row) if row else None


def history(corpus: Corpus, photo_id: int) -> list[Decision]:
    """Every decision that named this photo, newest first, undone ones included (``undone_by`` set)."""
    rows = corpus.conn.execute(
        f"SELECT {', '.join('d.' + c for c in DECISION_COLUMNS.split(', '))} FROM decision_photos x "
        "JOIN decisions d ON d.id = x.decision WHERE x.photo_id = ? ORDER BY d.id DESC",
        (int(photo_id),),
    )
    return [decision_from_row(r) for r in rows]


def audit(corpus: Corpus, *, after_id: int = 0, limit: int = 1000) -> list[Decision]:
    """The audit table in order, from the decision after ``after_id`` (page on with the last id)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise DecisionError(f"limit must be a positive integer, not {limit!r}")
    rows = corpus.conn.execute(
        f"SELECT {DECISION_COLUMNS} FROM decisions WHERE id > ? ORDER BY id LIMIT ?", (int(after_id), limit)
    )
    return [decision_from_row(r) for r in rows]


def overrides(corpus: Corpus) -> HumanOverrides:
    """The effective verdicts every stage reads: two small tables, read whole (people decide about
    thousands of photos, not millions)."""
    out = HumanOverrides()
    for a, b, verdict in corpus.conn.execute("SELECT a, b, verdict FROM pair_verdicts"):
        (out.same_pairs if verdict == "same" else out.different_pairs).add((int(a), int(b)))
    for pid, name, raw in corpus.conn.execute("SELECT photo_id, field, value FROM photo_verdicts"):
        value = json.loads(raw)
        if name == "exclude":
            (out.excluded if value else out.included).add(int(pid))
        elif name == "label":
            out.labels[int(pid)] = str(value)
        elif name == "bot":
            out.bot[int(pid)] = bool(value)
        elif name == "quality":
            out.quality_ok[int(pid)] = bool(value)
    return out


def human_labelled(conn: sqlite3.Connection, photo_id: int) -> bool:
    """Whether a person set this photo's label (then no harvest or import adds labels to it)."""
    row = conn.execute(
        "SELECT 1 FROM photo_verdicts WHERE photo_id = ? AND field = 'label'", (photo_id,)
    ).fetchone()
    return row is not None


# ------------------------------------------------------------------------------------ writing
Effect = Callable[[sqlite3.Connection, int, str], Any]


def record_decision(
    corpus: Corpus,
    kind: str,
    photo_ids: Sequence[int],
    value: Any,
    effect: Effect,
    *,
    reviewer: str | None,
    request_id: str | None,
    undoes: int | None = None,
) -> Decision:
    """Write one decision: audit row, verdicts and effect in ONE transaction; ``effect(conn, id, now)``
    applies it and returns the ``before`` snapshot for undo."""
    reviewer = check_text("reviewer", reviewer, MAX_REVIEWER_CHARS)
    request_id = check_text("request_id", request_id, MAX_REQUEST_ID_CHARS)
    try:
        with corpus.transaction() as conn:
            if request_id is not None:
                row = conn.execute(
                    f"SELECT {DECISION_COLUMNS} FROM decisions WHERE request_id = ?", (request_id,)
                ).fetchone()
                if row is not None:
                    first = decision_from_row(row)
                    if first.kind != kind:
                        raise DecisionError(
                            f"request_id {request_id!r} was already used for a {first.kind} decision "
                            f"(#{first.id}); send a new request_id for a new decision"
                        )
                    return first
            check_known(conn, photo_ids)
            now = utc_now()
            cur = conn.execute(
                "INSERT INTO decisions (kind, photo_ids, value, reviewer, request_id, created_at, undoes) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    kind,
                    dumps(list(photo_ids)),
                    dumps(value),
                    reviewer,
                    request_id,
                    now,
                    undoes,
                ),
            )
            decision_id = int(cur.lastrowid)  # type: ignore[arg-type]
            conn.executemany(
                "INSERT OR IGNORE INTO decision_photos (photo_id, decision) VALUES (?, ?)",
                [(pid, decision_id) for pid in photo_ids],
            )
            before = effect(conn, decision_id, now)
            if before is not None:
                conn.execute("UPDATE decisions SET before = ? WHERE id = ?", (dumps(before), decision_id))
            row = conn.execute(
                f"SELECT {DECISION_COLUMNS} FROM decisions WHERE id = ?", (decision_id,)
            ).fetchone()
            return decision_from_row(row)
    except CorpusBusyError as exc:
        raise CorpusBusyError(
            f"the catalog of {corpus.root} is busy (another process has held its write lock for longer than "
            f"the busy timeout); the {kind} decision was NOT recorded: retry it (with the same request_id)"
        ) from exc


def active_decisions(
    conn: sqlite3.Connection, photo_ids: Sequence[int], kinds: Sequence[str]
) -> list[Decision]:
    """The decisions of these kinds that name any of these photos and are not undone, newest first."""
    found: dict[int, Decision] = {}
    kind_marks = ",".join("?" * len(kinds))
    for start in range(0, len(photo_ids), 900):
        part = list(photo_ids[start : start + 900])
        rows = conn.execute(
            f"SELECT {', '.join('d.' + c for c in DECISION_COLUMNS.split(', '))} FROM decision_photos x "
            f"JOIN decisions d ON d.id = x.decision WHERE x.photo_id IN ({','.join('?' * len(part))}) "
            f"AND d.kind IN ({kind_marks}) AND d.undone_by IS NULL",
            (*part, *kinds),
        )
        for r in rows:
            found[int(r[0])] = decision_from_row(r)
    return [found[k] for k in sorted(found, reverse=True)]
