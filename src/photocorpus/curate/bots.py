"""Bots and reposts: captions repeated across many photos, owners who keep reposting their own images.

InstaCities1M was hurt by bots ("don't try this experiment with twitter, bots will ruin them"). Two
signals, both with thresholds in ``corpus.toml``:

* ``repeated_caption``: one normalised caption (the cleaned caption, case-folded, digits folded to 0
  so numbered spam matches) on at least ``bot_caption_repeats`` photos. Captions of fewer than
  :data:`MIN_CAPTION_TOKENS` words are ignored: a bare ``#nyc`` or a heart is common, not a bot.
* ``owner_reposts``: an owner whose photos include at least ``bot_owner_reposts`` near-duplicates of
  their own other photos (same duplicate group). All of that owner's photos are flagged.

Run after dedup and the caption step; the flags are recomputed from scratch each time, and then a
person's verdict (:func:`photocorpus.decisions.set_bot`) wins: "not a bot" is never flagged again,
"bot" is flagged with reason ``human``.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from photocorpus.caption_text import tokenize
from photocorpus.config import CurateSettings
from photocorpus.corpus import Corpus
from photocorpus.decisions import overrides
from photocorpus.notebook import HtmlReport
from photocorpus.records import utc_now

MIN_CAPTION_TOKENS = 4
_DIGITS = re.compile(r"\d+")


@dataclass(slots=True)
class BotReport(HtmlReport):
    flagged: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    repeated_captions: int = 0  # distinct captions over the threshold
    reposting_owners: int = 0
    overruled: int = 0  # photos the rules flag that a person said are not bots


def caption_key(clean_caption: str | None) -> str | None:
    """The form under which captions count as "the same", or ``None`` if too short to judge."""
    if not clean_caption:
        return None
    tokens = tokenize(clean_caption, stop_words=False)
    if len(tokens) < MIN_CAPTION_TOKENS:
        return None
    return _DIGITS.sub("0", " ".join(tokens))


def run_bots(corpus: Corpus, settings: CurateSettings | None = None) -> BotReport:
    """Flag bot photos (see the module docstring) and write ``curation.bot`` / ``bot_reason``."""
    settings = settings or corpus.settings.curate
    report = BotReport()
    rows = corpus.conn.execute(
        "SELECT p.id, COALESCE(p.owner_id, p.owner) AS who, c.caption_clean, c.dup_group "
        "FROM photos p LEFT JOIN curation c ON c.photo_id = p.id"
    ).fetchall()
    reason: dict[int, str] = {}

    keys = {int(r["id"]): caption_key(r["caption_clean"]) for r in rows}
    counts = Counter(k for k in keys.values() if k is not None)
    repeated = {k for k, n in counts.items() if n >= settings.bot_caption_repeats}
    report.repeated_captions = len(repeated)
    for pid, key in keys.items():
        if key in repeated:
            reason[pid] = "repeated_caption"

    per_owner_group: Counter[tuple[str, int]] = Counter()
    photos_of: defaultdict[str, list[int]] = defaultdict(list)
    for r in rows:
        if r["who"]:
            photos_of[r["who"]].append(int(r["id"]))
            if r["dup_group"] is not None:
                per_owner_group[(r["who"], int(r["dup_group"]))] += 1
    reposts: Counter[str] = Counter()
    for (who, _group), n in per_owner_group.items():
        if n >= 2:
            reposts[who] += n - 1
    owners = {who for who, n in reposts.items() if n >= settings.bot_owner_reposts}
    report.reposting_owners = len(owners)
    for who in owners:
        for pid in photos_of[who]:
            reason.setdefault(pid, "owner_reposts")

    now = utc_now()
    with corpus.transaction() as conn:
        # read under the write lock: a verdict given while the rules ran is kept, not overwritten
        for pid, is_bot in overrides(corpus).bot.items():
            if is_bot:
                reason[pid] = "human"
            elif reason.pop(pid, None) is not None:
                report.overruled += 1
        conn.execute(
            "UPDATE curation SET bot = 0, bot_reason = NULL WHERE bot != 0 OR bot_reason IS NOT NULL"
        )
        conn.executemany(
            """INSERT INTO curation (photo_id, bot, bot_reason, updated_at) VALUES (?, 1, ?, ?)
               ON CONFLICT (photo_id) DO UPDATE SET bot = 1, bot_reason = excluded.bot_reason""",
            [(pid, why, now) for pid, why in sorted(reason.items())],
        )
    report.flagged = len(reason)
    report.by_reason = dict(Counter(reason.values()))
    return report
