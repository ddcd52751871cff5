"""Which photos train, which validate, which test.

Two sources of truth, chosen by a split spec:

* ``curate``: the ``curation.split`` column the curate stage writes (duplicates, bots and low-quality
  photos are excluded there, so near-copies never straddle train and test);
* ``hash:TRAIN/VAL/TEST`` (percentages): a stable hash of ``(source, source_id)``, so adding photos never
  moves old ones between splits and two corpora holding the same photos split them alike.
  ``hash:80/20`` is the MIRFlickr protocol: 80 % train, 20 % test; early stopping then needs a val
  part, which is carved out of train (one eighth of it, by a second, independent hash), so the test
  part stays exactly the stable 20 %.

``auto`` (the default) takes curate's splits when the curate stage has assigned any, else ``hash:80/5/15``
(InstaCities1M's proportions, curate's default).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from photocorpus.errors import ConfigError

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus

SPLITS = ("train", "val", "test")
DEFAULT_HASH = (0.8, 0.05, 0.15)  # InstaCities1M's 800K/50K/150K, as curate
VAL_SHARE_OF_TRAIN = 0.125  # with a two-part spec: val = 1/8 of train (10 % of all at 80/20)
_HASH_SPEC = re.compile(r"^hash:(\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)(?:/(\d+(?:\.\d+)?))?$")


@dataclass(frozen=True)
class SplitSpec:
    """How to split: ``kind`` is ``curate`` or ``hash``; fractions apply to ``hash``."""

    kind: str
    train: float = DEFAULT_HASH[0]
    val: float = DEFAULT_HASH[1]
    test: float = DEFAULT_HASH[2]
    carve_val: bool = False  # a two-part hash spec: val is carved out of train

    def describe(self) -> str:
        if self.kind == "curate":
            return "curate"
        if self.carve_val:
            return f"hash:{self.train * 100:g}/{self.test * 100:g} (val = 1/8 of train)"
        return f"hash:{self.train * 100:g}/{self.val * 100:g}/{self.test * 100:g}"


def parse_split_spec(text: str) -> SplitSpec:
    """Parse ``auto``, ``curate``, ``hash:80/5/15`` or ``hash:80/20`` (``auto`` is resolved later)."""
    spec = text.strip().lower()
    if spec in ("auto", "curate"):
        return SplitSpec(kind=spec)
    match = _HASH_SPEC.match(spec)
    if not match:
        raise ConfigError(
            f"unknown split spec {text!r}; use auto, curate, hash:TRAIN/VAL/TEST (e.g. hash:80/5/15) "
            "or hash:TRAIN/TEST (e.g. hash:80/20)"
        )
    parts = [float(g) for g in match.groups() if g is not None]
    if abs(sum(parts) - 100.0) > 1e-6 or any(p < 0 for p in parts):
        raise ConfigError(f"split percentages must add up to 100, got {text!r}")
    if len(parts) == 2:
        return SplitSpec("hash", parts[0] / 100, 0.0, parts[1] / 100, carve_val=True)
    return SplitSpec("hash", parts[0] / 100, parts[1] / 100, parts[2] / 100)


def stable_position(source: str, source_id: str, salt: str = "") -> float:
    """A photo's place in [0, 1): curate's ``split_position`` (BLAKE2b of source and id).

    A ``salt`` gives an independent second position (used to carve val out of train).
    """
    from photocorpus.stable_split import split_position

    return split_position(f"{salt}\x1f{source}" if salt else source, source_id)


def _photo_keys(corpus: Corpus, photo_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    keys: dict[int, tuple[str, str]] = {}
    ids = [int(i) for i in photo_ids]
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        marks = ",".join("?" * len(chunk))
        for row in corpus.conn.execute(
            f"SELECT id, source, source_id FROM photos WHERE id IN ({marks})", chunk
        ):
            keys[int(row[0])] = (row[1], row[2])
    return keys


def _curate_splits(corpus: Corpus, photo_ids: Sequence[int]) -> dict[int, str | None] | None:
    """curate's split per photo (None: excluded), or None when the curate stage has not run."""
    has_table = corpus.conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'curation'"
    ).fetchone()
    if not has_table:
        return None
    if not corpus.conn.execute("SELECT 1 FROM curation WHERE split IS NOT NULL LIMIT 1").fetchone():
        return None
    found: dict[int, str | None] = {}
    ids = [int(i) for i in photo_ids]
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        marks = ",".join("?" * len(chunk))
        for row in corpus.conn.execute(
            f"SELECT photo_id, split FROM curation WHERE photo_id IN ({marks})", chunk
        ):
            found[int(row[0])] = row[1]
    return found


def resolve_spec(corpus: Corpus, spec: SplitSpec | str) -> SplitSpec:
    """Turn ``auto`` into ``curate`` or the default hash split, depending on what the corpus has."""
    if isinstance(spec, str):
        spec = parse_split_spec(spec)
    if spec.kind != "auto":
        return spec
    return SplitSpec("curate") if _curate_splits(corpus, []) is not None else SplitSpec("hash")


def assign_splits(corpus: Corpus, photo_ids: Sequence[int], spec: SplitSpec | str) -> np.ndarray:
    """The split of each photo, in order: ``train``, ``val``, ``test``, or ``""`` (excluded).

    Photos curate has not seen (added after its run) are excluded under ``curate`` rather than
    guessed, so a split never silently mixes two rules; re-run ``photocorpus curate`` to place them.
    """
    spec = resolve_spec(corpus, spec)
    out = np.full(len(photo_ids), "", dtype=object)
    if spec.kind == "curate":
        found = _curate_splits(corpus, photo_ids)
        if found is None:
            raise ConfigError(
                "this corpus has no curate splits yet: run `photocorpus curate`, or pass a hash split "
                "such as --split hash:80/5/15"
            )
        for i, pid in enumerate(photo_ids):
            out[i] = found.get(int(pid)) or ""
        return out
    keys = _photo_keys(corpus, photo_ids)
    for i, pid in enumerate(photo_ids):
        key = keys.get(int(pid))
        if key is None:
            continue
        pos = stable_position(*key)
        if pos < spec.train:
            split = "train"
            if spec.carve_val and stable_position(*key, salt="val") < VAL_SHARE_OF_TRAIN:
                split = "val"
        elif pos < spec.train + spec.val:
            split = "val"
        else:
            split = "test"
        out[i] = split
    return out
