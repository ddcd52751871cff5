"""Human decisions: a person's verdict on duplicates, bots, quality, labels and exclusions, kept for good.

A dataset builder looks, judges and fixes: this group is not one set of duplicates, that photo is spam,
this label is wrong. Each such fix is a *decision*: one row of the ``decisions`` audit table (kind,
photos, value, reviewer, time), never deleted; an :func:`undo` is a decision of its own. Every later
stage respects them, because what a decision says lives in two small *verdict* tables that the stages
read (:func:`overrides`):

* ``pair_verdicts`` (a < b): ``same`` or ``different``, the newest active decision per pair. Dedup
  links ``same`` pairs first (method ``human``) and never joins a ``different`` pair, not even through
  a third photo.
* ``photo_verdicts`` (photo, field): ``exclude`` (true: excluded, false: included), ``label``, ``bot``
  and ``quality`` (true: ok), the newest active decision per photo and field. Bots, splits and the
  readers of labels keep them.

Why verdict tables beside the audit table: at a million photos a stage must read "what did people
decide" in one small query, not replay a history; and "the newest active decision wins" is kept true
by each write, so the tables are always exactly what the history says.

**One transaction per decision.** The audit row, the verdicts and the effect on the catalog rows
everyone reads (:mod:`photocorpus.decision_effects`: the split applied to ``curation`` now, the label
written to ``photos``) are one ``corpus.transaction()`` (``BEGIN IMMEDIATE``): a kill -9 keeps all of
it or none. ``request_id`` (unique) makes a call idempotent: the web app sends one per click, so a
client's retry returns the first decision instead of writing a second. A catalog busy for longer than
the busy timeout raises :class:`~photocorpus.errors.CorpusBusyError`, saying to retry: never a lost
write.

**Labels** are corrected where every reader already looks: ``photos.primary_label`` and
``photo_labels``, in the decision's transaction. Exports, classifier training, ``corpus.photos()``
and the splits' per-label balancing all read those, so no reader needs to know about decisions; a
re-harvest or re-import never overwrites a photo's metadata, and :meth:`Corpus.add_photos` adds no
label to a photo a person labelled. The stored image does not move (its path is in ``files``).

``reviewer``, ``request_id``, notes and labels are untrusted text: capped in length, control
characters refused, stored as data and never used as a path.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from itertools import combinations
from typing import TYPE_CHECKING, Any

from photocorpus import decision_effects as effects
from photocorpus.decision_log import (
    FIELD_OF_KIND,
    MAX_GROUP_PHOTOS,
    MAX_NOTE_CHARS,
    MAX_REASON_CHARS,
    PAIR_KINDS,
    Decision,
    HumanOverrides,
    active_decisions,
    audit,
    check_ids,
    check_label,
    check_text,
    get_decision,
    history,
    overrides,
    record_decision,
)
from photocorpus.errors import DecisionError

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus

__all__ = [
    "Decision",
    "HumanOverrides",
    "add_note",
    "audit",
    "confirm_group",
    "exclude_photos",
    "get_decision",
    "history",
    "include_photos",
    "mark_not_duplicate",
    "overrides",
    "set_bot",
    "set_label",
    "set_quality",
    "split_group",
    "undo",
]


def _write_pairs(conn: sqlite3.Connection, pairs: Iterable[tuple[int, int]], verdict: str, did: int) -> None:
    conn.executemany(
        "INSERT INTO pair_verdicts (a, b, verdict, decision) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (a, b) DO UPDATE SET verdict = excluded.verdict, decision = excluded.decision",
        [(a, b, verdict, did) for a, b in pairs],
    )


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


def _all_pairs(ids: Sequence[int]) -> list[tuple[int, int]]:
    return [_pair(a, b) for a, b in combinations(ids, 2)]


def _cross_pairs(left: Sequence[int], right: Sequence[int]) -> list[tuple[int, int]]:
    return [_pair(a, b) for a in left for b in right]


def _grouping_snapshot(conn: sqlite3.Connection, photo_ids: Sequence[int]) -> dict[int, list[Any]]:
    """The duplicate columns of these photos and of every member of their groups."""
    state = effects.dup_state(conn, photo_ids)
    groups = {v[0] for v in state.values() if v[0] is not None}
    return effects.dup_state(conn, set(state) | effects.group_members(conn, groups))


def confirm_group(
    corpus: Corpus, photo_ids: Sequence[int], *, reviewer: str | None = None, request_id: str | None = None
) -> Decision:
    """These photos ARE duplicates of one another: every pair becomes ``same``.

    Dedup links them (method ``human``) on every later run, whatever its thresholds; in the catalog
    they (and the groups they are in) become one group now, represented by dedup's rule.
    """
    ids = check_ids("photo_ids", photo_ids, MAX_GROUP_PHOTOS)
    if len(ids) < 2:
        raise DecisionError("confirm_group needs at least two photo ids: the photos that are duplicates")

    def effect(conn: sqlite3.Connection, did: int, now: str) -> Any:
        _write_pairs(conn, _all_pairs(ids), "same", did)
        before = _grouping_snapshot(conn, ids)
        effects.merge(conn, ids, now)
        return {"curation": before, "after": effects.dup_state(conn, before)}

    return record_decision(
        corpus, "confirm_group", ids, None, effect, reviewer=reviewer, request_id=request_id
    )


def split_group(
    corpus: Corpus,
    keep_ids: Sequence[int],
    split_off_ids: Sequence[int],
    *,
    reviewer: str | None = None,
    request_id: str | None = None,
) -> Decision:
    """Split a duplicate group: no photo of ``split_off_ids`` is a duplicate of one in ``keep_ids``.

    Every pair across the two parts becomes ``different``, and the split applies to the catalog now:
    the split-off part leaves the group (a group of its own when it has two or more members,
    represented by dedup's rule; unique photos otherwise), the rest keeps its representative or gets
    the next one. Both parts must be in one duplicate group of the catalog; to say that photos in no
    common group must never be linked, use :func:`mark_not_duplicate`.
    """
    keep = check_ids("keep_ids", keep_ids, MAX_GROUP_PHOTOS)
    leaving = check_ids("split_off_ids", split_off_ids, MAX_GROUP_PHOTOS)
    both = set(keep) & set(leaving)
    if both:
        raise DecisionError(
            f"photo {min(both)} is in both keep_ids and split_off_ids; put each photo in one part only"
        )

    def effect(conn: sqlite3.Connection, did: int, now: str) -> Any:
        state = effects.dup_state(conn, [*keep, *leaving])
        groups = {state[pid][0] if pid in state else None for pid in (*keep, *leaving)}
        if len(groups) != 1 or None in groups:
            raise DecisionError(
                "split_group splits one duplicate group, but these photos are not all in one group "
                f"(groups: {sorted(map(str, groups))}); reload the group and send its members, or use "
                "mark_not_duplicate for two photos in different groups"
            )
        _write_pairs(conn, _cross_pairs(keep, leaving), "different", did)
        before = _grouping_snapshot(conn, keep)
        effects.split_off(conn, keep, leaving, now)
        return {"curation": before, "after": effects.dup_state(conn, before)}

    value = {"keep": keep, "split_off": leaving}
    return record_decision(
        corpus, "split_group", [*keep, *leaving], value, effect, reviewer=reviewer, request_id=request_id
    )


def mark_not_duplicate(
    corpus: Corpus, a: int, b: int, *, reviewer: str | None = None, request_id: str | None = None
) -> Decision:
    """Photos ``a`` and ``b`` are not duplicates: dedup never links them, even through a third photo.

    If they are in one group now, the one that is not the representative (``b`` when neither is)
    leaves it at once, as :func:`split_group` would; the next dedup run regroups the rest exactly.
    """
    ids = check_ids("photo ids", [a, b], 2)
    if len(ids) != 2:
        raise DecisionError("mark_not_duplicate needs two different photo ids")

    def effect(conn: sqlite3.Connection, did: int, now: str) -> Any:
        _write_pairs(conn, [_pair(*ids)], "different", did)
        state = effects.dup_state(conn, ids)
        if len(state) < 2 or state[ids[0]][0] is None or state[ids[0]][0] != state[ids[1]][0]:
            return None
        before = _grouping_snapshot(conn, ids)
        leaver = ids[0] if state[ids[1]][0] == ids[1] and state[ids[0]][0] != ids[0] else ids[1]
        effects.split_off(conn, [pid for pid in ids if pid != leaver], [leaver], now)
        return {"curation": before, "after": effects.dup_state(conn, before)}

    return record_decision(
        corpus, "mark_not_duplicate", ids, None, effect, reviewer=reviewer, request_id=request_id
    )


def _photodecision_from_row(
    corpus: Corpus,
    kind: str,
    photo_ids: Sequence[int],
    value: Any,
    verdict: Any,
    *,
    reviewer: str | None,
    request_id: str | None,
) -> Decision:
    """A decision about single photos: one verdict per photo, applied to the catalog now."""
    ids = check_ids("photo_ids", photo_ids)
    name = FIELD_OF_KIND[kind]
    exclude_bots = corpus.settings.curate.exclude_bots

    def effect(conn: sqlite3.Connection, did: int, now: str) -> Any:
        before: dict[str, Any] = {"photos": effects.photo_state(conn, ids)}
        if name == "label":
            before["labels"] = effects.label_state(conn, ids)
        conn.executemany(
            "INSERT INTO photo_verdicts (photo_id, field, value, decision) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (photo_id, field) DO UPDATE SET value = excluded.value, "
            "decision = excluded.decision",
            [(pid, name, effects.dumps(verdict), did) for pid in ids],
        )
        for pid in ids:
            if name == "label":
                effects.relabel(conn, pid, verdict, before["labels"][pid])
            else:
                effects.apply_photo_verdict(conn, pid, name, verdict, exclude_bots, now)
        return before

    return record_decision(corpus, kind, ids, value, effect, reviewer=reviewer, request_id=request_id)


def exclude_photos(
    corpus: Corpus,
    photo_ids: Sequence[int],
    *,
    reason: str | None = None,
    reviewer: str | None = None,
    request_id: str | None = None,
) -> Decision:
    """Keep these photos out of every split: ``split`` NULL, ``exclusion = 'human'``, now and after
    every later splits run (``reason`` is kept in the audit table for people, not interpreted)."""
    value = {"reason": check_text("reason", reason, MAX_REASON_CHARS, lines=True)}
    return _photodecision_from_row(
        corpus, "exclude", photo_ids, value, True, reviewer=reviewer, request_id=request_id
    )


def include_photos(
    corpus: Corpus, photo_ids: Sequence[int], *, reviewer: str | None = None, request_id: str | None = None
) -> Decision:
    """Put these photos back in the splits despite a bot, quality, language or human exclusion.

    Never despite ``duplicate``, ``no_file`` or ``not_deduplicated``: leak-free splits win (split a
    wrongly merged group instead). The photo gets back its sticky split now if it had one; otherwise
    the next splits run assigns it.
    """
    return _photodecision_from_row(
        corpus, "include", photo_ids, None, False, reviewer=reviewer, request_id=request_id
    )


def set_label(
    corpus: Corpus,
    photo_ids: Sequence[int],
    label: str,
    *,
    reviewer: str | None = None,
    request_id: str | None = None,
) -> Decision:
    """Correct these photos' primary label (see the module docstring: written to ``photos`` and
    ``photo_labels`` now, so every reader sees it; the other labels stay; the image does not move)."""
    checked = check_label(label)
    return _photodecision_from_row(
        corpus, "set_label", photo_ids, {"label": checked}, checked, reviewer=reviewer, request_id=request_id
    )


def set_bot(
    corpus: Corpus,
    photo_ids: Sequence[int],
    is_bot: bool,
    *,
    reviewer: str | None = None,
    request_id: str | None = None,
) -> Decision:
    """A person's verdict on a bot candidate: ``True`` flags it (``bot_reason = 'human'``), ``False``
    clears the flag; the bot step keeps the verdict on every re-run."""
    if not isinstance(is_bot, bool):
        raise DecisionError(f"is_bot must be True or False, not {is_bot!r}")
    return _photodecision_from_row(
        corpus, "set_bot", photo_ids, {"bot": is_bot}, is_bot, reviewer=reviewer, request_id=request_id
    )


def set_quality(
    corpus: Corpus,
    photo_ids: Sequence[int],
    ok: bool,
    *,
    reviewer: str | None = None,
    request_id: str | None = None,
) -> Decision:
    """A person's verdict on quality: ``True`` (ok) makes the splits ignore its dropping quality flags,
    ``False`` excludes it as ``quality:human``; the flags themselves stay as measured."""
    if not isinstance(ok, bool):
        raise DecisionError(f"ok must be True or False, not {ok!r}")
    return _photodecision_from_row(
        corpus, "set_quality", photo_ids, {"ok": ok}, ok, reviewer=reviewer, request_id=request_id
    )


def add_note(
    corpus: Corpus, photo_id: int, text: str, *, reviewer: str | None = None, request_id: str | None = None
) -> Decision:
    """A free-text note on a photo, for people (its history shows it); no stage reads it."""
    note = check_text("text", text, MAX_NOTE_CHARS, lines=True)
    if note is None:
        raise DecisionError("text is empty; send the note's text")
    ids = check_ids("photo_id", [photo_id], 1)
    return record_decision(
        corpus, "note", ids, {"text": note}, lambda *_: None, reviewer=reviewer, request_id=request_id
    )


# ------------------------------------------------------------------------------------ undo
def _pair_judge(decision: Decision) -> Callable[[int, int], str | None]:
    """What a pair decision says about a pair (a, b): ``same``, ``different`` or None (not about it)."""
    if decision.kind == "confirm_group":
        members = set(decision.photo_ids)
        return lambda a, b: "same" if a in members and b in members else None
    if decision.kind == "split_group":
        keep, off = set(decision.value["keep"]), set(decision.value["split_off"])
        return lambda a, b: "different" if (a in keep and b in off) or (a in off and b in keep) else None
    pair = set(decision.photo_ids)
    return lambda a, b: "different" if {a, b} == pair else None


def _photo_verdict(decision: Decision) -> Any:
    if decision.kind == "exclude":
        return True
    if decision.kind == "include":
        return False
    key = {"set_label": "label", "set_bot": "bot", "set_quality": "ok"}[decision.kind]
    return decision.value[key]


def _undo_pairs(conn: sqlite3.Connection, target: Decision, before: Any, now: str) -> None:
    owned = [
        (int(a), int(b))
        for a, b in conn.execute("SELECT a, b FROM pair_verdicts WHERE decision = ?", (target.id,))
    ]
    judges = [(d.id, _pair_judge(d)) for d in active_decisions(conn, list(target.photo_ids), PAIR_KINDS)]
    for a, b in owned:
        newest = next(((did, v) for did, judge in judges if (v := judge(a, b)) is not None), None)
        if newest is None:
            conn.execute("DELETE FROM pair_verdicts WHERE a = ? AND b = ?", (a, b))
        else:
            _write_pairs(conn, [(a, b)], newest[1], newest[0])
    if before:
        snapshot = {int(k): v for k, v in before["curation"].items()}
        after = {int(k): v for k, v in before["after"].items()}
        if effects.dup_state(conn, snapshot) == after:  # nothing (no dedup run) changed them since
            effects.write_dup_state(conn, snapshot, now)


def _undo_photos(
    conn: sqlite3.Connection, target: Decision, before: Any, now: str, exclude_bots: bool
) -> None:
    """Each photo verdict the target still owns goes to the newest remaining decision about it, or
    away; the catalog follows. Every lookup is batched: an undo of 100,000 photos is one pass."""
    name = FIELD_OF_KIND[target.kind]
    kinds = [k for k, f in FIELD_OF_KIND.items() if f == name]
    owned = [
        int(r[0])
        for r in conn.execute(
            "SELECT photo_id FROM photo_verdicts WHERE field = ? AND decision = ?", (name, target.id)
        )
    ]  # the others are owned by a later decision: undoing this one changes nothing visible there
    remaining = [(d, set(d.photo_ids)) for d in active_decisions(conn, owned, kinds)]  # newest first
    originals = _original_labels(conn, owned) if name == "label" else {}
    for pid in owned:
        newest = next((d for d, members in remaining if pid in members), None)
        if newest is not None:
            verdict = _photo_verdict(newest)
            conn.execute(
                "UPDATE photo_verdicts SET value = ?, decision = ? WHERE photo_id = ? AND field = ?",
                (effects.dumps(verdict), newest.id, pid, name),
            )
            if name == "label":
                effects.relabel(conn, pid, verdict, effects.label_state(conn, [pid])[pid])
            else:
                effects.apply_photo_verdict(conn, pid, name, verdict, exclude_bots, now)
            continue
        conn.execute("DELETE FROM photo_verdicts WHERE photo_id = ? AND field = ?", (pid, name))
        if name == "label":
            original = originals.get(pid) or before["labels"][str(pid)]
            effects.set_labels(conn, pid, original["primary_label"], original["labels"])
        elif str(pid) in before["photos"]:
            effects.restore_photo(conn, pid, before["photos"][str(pid)], now)


def _original_labels(conn: sqlite3.Connection, photo_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Each photo's labels before any person labelled it: the snapshot of its first label decision
    (undone or not), each snapshot parsed once."""
    first: dict[int, int] = {}
    for start in range(0, len(photo_ids), 900):
        part = list(photo_ids[start : start + 900])
        rows = conn.execute(
            "SELECT x.photo_id, MIN(d.id) FROM decision_photos x JOIN decisions d ON d.id = x.decision "
            f"WHERE x.photo_id IN ({','.join('?' * len(part))}) AND d.kind = 'set_label' GROUP BY x.photo_id",
            part,
        )
        first.update({int(pid): int(did) for pid, did in rows})
    out: dict[int, dict[str, Any]] = {}
    for did in set(first.values()):
        raw = conn.execute("SELECT before FROM decisions WHERE id = ?", (did,)).fetchone()[0]
        labels = json.loads(raw)["labels"] if raw is not None else {}
        out.update({pid: labels[str(pid)] for pid, d in first.items() if d == did and str(pid) in labels})
    return out


def undo(
    corpus: Corpus, decision_id: int, *, reviewer: str | None = None, request_id: str | None = None
) -> Decision:
    """Revert exactly one decision and record an ``undo`` decision for it.

    Each verdict the decision still owns goes back to the newest remaining active decision about it
    (or away, if none); the catalog follows: a label goes back to that decision's label or the photo's
    original one, a photo's curation columns to their state before the decision, a group split or
    merge to its state before, if no dedup run has regrouped it since (else the next dedup run
    regroups it from the remaining verdicts). Undoing twice, or undoing an undo, is refused.
    """
    if isinstance(decision_id, bool) or not isinstance(decision_id, int):
        raise DecisionError(f"decision_id must be the integer id of a decision, not {decision_id!r}")
    target = get_decision(corpus, decision_id)
    if target is None:
        raise DecisionError(
            f"no decision #{decision_id} in this corpus; list them with `photocorpus decisions` or "
            "pc.decision_history(corpus, photo_id)"
        )
    if target.kind == "undo":
        raise DecisionError(
            f"decision #{decision_id} is itself an undo; to redo #{target.undoes}, make that decision again"
        )
    exclude_bots = corpus.settings.curate.exclude_bots

    def effect(conn: sqlite3.Connection, did: int, now: str) -> Any:
        marked = conn.execute(
            "UPDATE decisions SET undone_by = ? WHERE id = ? AND undone_by IS NULL", (did, target.id)
        )
        if marked.rowcount == 0:
            (by,) = conn.execute("SELECT undone_by FROM decisions WHERE id = ?", (target.id,)).fetchone()
            raise DecisionError(
                f"decision #{target.id} was already undone by #{by}; to apply it again, make the "
                "decision again"
            )
        raw = conn.execute("SELECT before FROM decisions WHERE id = ?", (target.id,)).fetchone()[0]
        before = json.loads(raw) if raw is not None else None
        if target.kind in PAIR_KINDS:
            _undo_pairs(conn, target, before, now)
        elif target.kind in FIELD_OF_KIND:
            _undo_photos(conn, target, before, now, exclude_bots)
        return None

    return record_decision(
        corpus,
        "undo",
        list(target.photo_ids),
        None,
        effect,
        reviewer=reviewer,
        request_id=request_id,
        undoes=target.id,
    )
