"""Measuring dedup on real photos: build a folder of originals + repost variants + other photos, run the
real pipeline on it, and score per-variant recall and pair precision against the known truth.

Used by the acceptance tests and ``benchmarks/dedup_acceptance.py``; useful to anyone choosing
thresholds for their own photos. The truth is only what we made: a variant belongs with its
original. Photos that were already duplicates of each other in the source data (reposts, spam
templates) are not errors; pass them as ``reviewed_duplicates`` (clusters of file stems) after looking
at them, as docs/benchmarks.md lists for InstaNY100K.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from photocorpus.corpus import Corpus
from photocorpus.corpus_files import image_input
from photocorpus.curate.variants import VARIANTS, make_variant

ORIGINAL = "original"
OTHER = "other"


@dataclass(frozen=True, slots=True)
class Truth:
    """What one file in the evaluation folder is: ``kind`` (original, other, or a variant name),
    the stem of the real photo it comes from, and its relative path (the plain-layout source id)."""

    source_id: str
    kind: str
    photo_stem: str


def build_variant_folder(
    images: Sequence[Path],
    out_dir: Path,
    *,
    originals: int,
    others: int,
    seed: int = 0,
    labels: Sequence[str] = ("alpha", "beta"),
    kinds: Iterable[str] = tuple(VARIANTS),
) -> list[Truth]:
    """Write ``originals`` real photos with every variant of each, plus ``others`` real photos, into
    ``out_dir/<label>/...jpg`` (labels at random), and return the truth for every file."""
    rng = np.random.default_rng(seed)
    chosen = [images[i] for i in rng.permutation(len(images))[: originals + others]]
    if len(chosen) < originals + others:
        raise ValueError(f"need {originals + others} photos, found {len(images)}")
    kinds = list(kinds)
    truth: list[Truth] = []

    def put(name: str, data: bytes, kind: str, stem: str) -> None:
        label = labels[int(rng.integers(0, len(labels)))]
        path = out_dir / label / f"{name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        truth.append(Truth(f"{label}/{name}", kind, stem))

    for index, src in enumerate(chosen):
        data = src.read_bytes()
        if index < originals:
            put(f"{src.stem}", data, ORIGINAL, src.stem)
            for kind in kinds:
                put(f"{src.stem}-{kind}", make_variant(data, kind, seed, index), kind, src.stem)
        else:
            put(f"{src.stem}", data, OTHER, src.stem)
    return truth


def compute_features(
    corpus: Corpus,
    name: str = "efficientnet-lite0",
    *,
    batch: int = 64,
    advance: Callable[[int], None] | None = None,
) -> int:
    """EfficientNet-Lite0 pooled features (onnxruntime) of every stored image, into feature set ``name``.

    The featurize stage computes the same features for real corpora; this is its minimal form for
    evaluation folders (no resume, no workers).
    """
    from photocorpus.backbones.onnx_runtime import OnnxImageModel
    from photocorpus.feature_store import append_rows
    from photocorpus.image_preprocess import preprocess_batch

    rows = corpus.conn.execute("SELECT photo_id, path FROM files ORDER BY photo_id").fetchall()
    model = OnnxImageModel.efficientnet_lite0()
    ids: list[int] = []
    feats: list[np.ndarray] = []
    for lo in range(0, len(rows), batch):
        chunk = rows[lo : lo + batch]
        prepared = preprocess_batch(
            [image_input(loc) for loc in corpus.image_locations([r["path"] for r in chunk])]
        )
        if prepared.indices:
            pooled, _logits = model.run(prepared.pixels)
            ids.extend(int(chunk[i]["photo_id"]) for i in prepared.indices)
            feats.append(pooled.astype(np.float16))
        if advance:
            advance(len(chunk))
    if ids:  # one shard for the whole folder
        append_rows(corpus, name, ids, np.concatenate(feats), model_id="efficientnet-lite0")
    return len(ids)


@dataclass(slots=True)
class DedupScores:
    """Per-variant recall, pair precision and the pairs that count as errors."""

    recall: dict[str, float] = field(default_factory=dict)
    found: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    predicted_pairs: int = 0
    true_pairs: int = 0
    reviewed_pairs: int = 0  # pairs of real photos that were duplicates already (not errors)
    false_pairs: list[tuple[str, str]] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return 1.0 if self.predicted_pairs == 0 else 1.0 - len(self.false_pairs) / self.predicted_pairs


def score_dedup(
    corpus: Corpus, truth: Sequence[Truth], reviewed_duplicates: Iterable[Iterable[str]] = ()
) -> DedupScores:
    """Score the corpus's duplicate groups against ``truth``.

    Recall of a variant kind: the share of variants in the same group as their original. Precision:
    every pair of photos inside a group is a predicted pair; it is right when both come from one real
    photo, or from two real photos in one reviewed cluster.
    """
    by_source = {t.source_id: t for t in truth}
    cluster_of: dict[str, int] = {}
    for k, cluster in enumerate(reviewed_duplicates):
        for stem in cluster:
            cluster_of[stem] = k
    group: dict[str, int | None] = {}
    members: defaultdict[int, list[Truth]] = defaultdict(list)
    for row in corpus.conn.execute(
        "SELECT p.source_id, c.dup_group FROM photos p LEFT JOIN curation c ON c.photo_id = p.id"
    ):
        t = by_source.get(row["source_id"])
        if t is None:
            continue
        group[t.source_id] = row["dup_group"]
        if row["dup_group"] is not None:
            members[int(row["dup_group"])].append(t)
    scores = DedupScores()
    originals = {t.photo_stem: t for t in truth if t.kind == ORIGINAL}
    for t in truth:
        if t.kind in (ORIGINAL, OTHER):
            continue
        scores.total[t.kind] = scores.total.get(t.kind, 0) + 1
        g, g0 = group.get(t.source_id), group.get(originals[t.photo_stem].source_id)
        if g is not None and g == g0:
            scores.found[t.kind] = scores.found.get(t.kind, 0) + 1
    scores.recall = {k: scores.found.get(k, 0) / n for k, n in sorted(scores.total.items())}
    for group_members in members.values():
        for a, b in itertools.combinations(group_members, 2):
            scores.predicted_pairs += 1
            if a.photo_stem == b.photo_stem:
                scores.true_pairs += 1
            elif a.photo_stem in cluster_of and cluster_of[a.photo_stem] == cluster_of.get(b.photo_stem):
                scores.reviewed_pairs += 1
            else:
                scores.false_pairs.append((a.source_id, b.source_id))
    return scores
