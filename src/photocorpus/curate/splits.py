"""Leak-free, stable train/val/test splits per label (80/5/15 by default, as InstaCities1M).

Rules:

* **Excluded photos get no split** (``split`` NULL, ``exclusion`` says why): no stored file,
  not deduplicated yet (or undecodable), excluded by a person (``human``), a duplicate of another
  photo, a bot (``exclude_bots``), a quality flag in ``drop_flags`` (or ``quality:human``: a person
  said its quality is bad), a language outside ``languages``.
* **People's decisions hold** (:mod:`photocorpus.decisions`): a photo a person included is in
  despite a bot, quality or language rule (never despite being a duplicate or having no file); a
  photo whose quality a person accepted ignores ``drop_flags``.
* **A duplicate group is one unit.** Only its representative enters a split; every member carries the
  group's split in ``split_assigned``, so whichever member represents the group later keeps it. No
  near-duplicate pair can straddle train and test.
* **Stable.** Each photo has a position in [0, 1): a hash of ``(source, source_id)`` (BLAKE2b), not
  of anything that changes. A photo's split, once given, is stored (``split_assigned``) and never
  changes; adding photos and re-splitting only assigns the new ones.
* **Balanced per label.** New photos of a label are taken in position order and each goes to the
  split furthest below its target share of the label (largest deficit, ties to train, val, test), so
  every label sits within one photo of 80/5/15 however few photos it has. A pure threshold on the
  position would drift by sampling noise (±1.3% for train at 1,000 photos).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from photocorpus.config import CurateSettings
from photocorpus.corpus import Corpus
from photocorpus.decisions import HumanOverrides, overrides
from photocorpus.notebook import HtmlReport
from photocorpus.records import utc_now
from photocorpus.stable_split import split_position

SPLITS = ("train", "val", "test")


@dataclass(slots=True)
class SplitReport(HtmlReport):
    """Per label: photos per split; and why the others were left out."""

    per_label: dict[str, dict[str, int]] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)
    newly_assigned: int = 0


def _targets(settings: CurateSettings) -> tuple[float, float, float]:
    train, val = settings.train_fraction, settings.val_fraction
    if train + val > 1.0:
        from photocorpus.errors import ConfigError

        raise ConfigError(f"train_fraction + val_fraction = {train + val:.3f} exceeds 1; lower one of them")
    return train, val, 1.0 - train - val


def choose_split(counts: list[int], targets: tuple[float, float, float]) -> int:
    """Index of the split furthest below its target share once one more photo is added."""
    total = sum(counts) + 1
    deficits = [targets[i] * total - counts[i] for i in range(3)]
    return max(range(3), key=lambda i: (deficits[i], -i))


def exclusion(row: dict, settings: CurateSettings, languages: set[str]) -> str | None:
    """Why a photo stays out of the splits, or ``None`` when it is in.

    ``row`` may carry a person's verdicts: ``human_exclude`` (True: excluded, False: included) and
    ``human_quality_ok`` (True: quality accepted, False: rejected); absent or None: no verdict.
    """
    if row["path"] is None:
        return "no_file"
    if row["phash"] is None:
        return "not_deduplicated"
    verdict = row.get("human_exclude")
    if verdict is True:
        return "human"
    if row["duplicate_of"] is not None:
        return "duplicate"
    if verdict is False:
        return None
    if settings.exclude_bots and row["bot"]:
        return "bot"
    quality_ok = row.get("human_quality_ok")
    if quality_ok is False:
        return "quality:human"
    flags = json.loads(row["quality_flags"] or "[]")
    for flag in settings.drop_flags:
        if flag in flags and quality_ok is not True:
            return f"quality:{flag}"
    if languages and row["language"] not in languages:
        return "language"
    return None


def _take_verdicts(row: dict, human: HumanOverrides) -> bool:
    """Put a person's verdicts on a photo's row (see :func:`exclusion`); True if they changed it."""
    pid = row["id"]
    verdicts = (
        True if pid in human.excluded else False if pid in human.included else None,
        human.quality_ok.get(pid),
        int(human.bot[pid]) if pid in human.bot else row.get("bot"),
    )
    before = (row.get("human_exclude"), row.get("human_quality_ok"), row.get("bot"))
    row["human_exclude"], row["human_quality_ok"], row["bot"] = verdicts
    return verdicts != before


def run_splits(
    corpus: Corpus, settings: CurateSettings | None = None, *, languages: list[str] | None = None
) -> SplitReport:
    """Assign splits to every eligible photo that has none, and (re)derive every photo's ``split``."""
    settings = settings or corpus.settings.curate
    targets = _targets(settings)
    wanted = {lang.strip().lower() for lang in (languages if languages is not None else settings.languages)}
    wanted.discard("")
    rows = [
        dict(r)
        for r in corpus.conn.execute(
            """SELECT p.id, p.source, p.source_id, p.primary_label, f.path, c.phash, c.duplicate_of,
                      c.dup_group, c.bot, c.quality_flags, c.language, c.split_assigned, c.split_position
               FROM photos p LEFT JOIN files f ON f.photo_id = p.id
               LEFT JOIN curation c ON c.photo_id = p.id ORDER BY p.id"""
        )
    ]
    by_id = {r["id"]: r for r in rows}
    human = overrides(corpus)
    for r in rows:
        _take_verdicts(r, human)
    for r in rows:
        if r["split_position"] is None:
            r["split_position"] = split_position(r["source"], r["source_id"])

    # a group's split: its representative's, else the one a former representative left behind
    group_split: dict[int, str] = {}
    for r in sorted(rows, key=lambda r: r["id"]):
        group = r["dup_group"]
        if group is not None and r["split_assigned"] and group not in group_split:
            rep = by_id.get(group)
            group_split[group] = (
                rep["split_assigned"] if rep and rep["split_assigned"] else r["split_assigned"]
            )
    for r in rows:
        group = r["dup_group"]
        if group is not None and group in group_split:
            r["split_assigned"] = group_split[group]

    report = SplitReport()
    eligible: defaultdict[str, list[dict]] = defaultdict(list)
    for r in rows:
        r["excluded"] = exclusion(r, settings, wanted)
        if r["excluded"] is None:
            eligible[r["primary_label"]].append(r)
        else:
            report.excluded[r["excluded"]] = report.excluded.get(r["excluded"], 0) + 1

    for label, members in eligible.items():
        counts = [0, 0, 0]
        for r in members:
            if r["split_assigned"]:
                counts[SPLITS.index(r["split_assigned"])] += 1
        fresh = sorted(
            (r for r in members if not r["split_assigned"]), key=lambda r: (r["split_position"], r["id"])
        )
        for r in fresh:
            k = choose_split(counts, targets)
            counts[k] += 1
            r["split_assigned"] = SPLITS[k]
            if r["dup_group"] is not None:
                group_split[r["dup_group"]] = SPLITS[k]
            report.newly_assigned += 1
        report.per_label[label] = dict(zip(SPLITS, counts, strict=True))
    # members of a group that got its split just now carry it too
    for r in rows:
        group = r["dup_group"]
        if group is not None and group in group_split:
            r["split_assigned"] = group_split[group]

    now = utc_now()
    with corpus.transaction() as conn:
        # The verdicts again, under the write lock: a photo a person excluded, included or judged
        # while this ran keeps that decision's effect instead of getting this run's older answer.
        fresh = overrides(corpus)
        for r in rows:
            if _take_verdicts(r, fresh):
                r["excluded"] = exclusion(r, settings, wanted)
        conn.executemany(
            """INSERT INTO curation (photo_id, split_position, split_assigned, split, exclusion, updated_at)
               VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT (photo_id) DO UPDATE SET split_position = excluded.split_position,
                   split_assigned = excluded.split_assigned, split = excluded.split,
                   exclusion = excluded.exclusion, updated_at = excluded.updated_at""",
            [
                (
                    r["id"],
                    r["split_position"],
                    r["split_assigned"],
                    r["split_assigned"] if r["excluded"] is None else None,
                    r["excluded"],
                    now,
                )
                for r in rows
            ],
        )
    report.per_label = dict(sorted(report.per_label.items()))
    report.excluded = dict(Counter(report.excluded).most_common())
    return report
