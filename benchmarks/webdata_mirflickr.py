"""Learning from web data on the shared MIRFLICKR photos: train on real Flickr tags, query concept names.

    python benchmarks/webdata_mirflickr.py [--corpus DIR] [--seeds 0,1,2] [--variants NAME,...] [--json F]

The InstaCities1M paper's MIRFlickr experiment (Gomez et al., ECCV-W 2018), on what we have:

* the 5,000 shared MIRFLICKR-25K photos are imported from a folder laid out like the original download
  (``im<N>.jpg`` + ``meta/tags/tags<N>.txt``), so the real tags of the 3,840 tagged photos reach
  ``photos.tags`` through the ordinary importer; featurized with EfficientNet-Lite0, Lite2, and the
  fused Lite1+Lite2 set. The corpus is kept in ``--corpus``: a rerun only trains and scores;
* the tagged photos are split by the stable hash of the photo (``hash:80/20``: 80 % train, an eighth
  of which validates, 20 % test); the 1,160 untagged photos are never trained on;
* a semantic model (frozen image features -> head -> caption-embedding space) is trained on the train
  photos' tags; each of the 14 concept names of ``labels.csv``, embedded as a one-tag caption, ranks
  (a) the tagged test photos and (b) the untagged photos, reported apart: AP per concept, mean (mAP);
* every variant runs once per seed (init and shuffling; the split never moves) and the figures are
  medians over the seeds;
* ``+bridge``: the semantic score fused with the caption-free ImageNet bridge's score
  (:mod:`photocorpus.learn.bridge`) as ``(1 - w) z(semantic) + w z(bridge)`` (``z``: standardised with
  the train photos' mean and spread); ``w`` in {0, 0.1, ..., 1} chosen on the validation photos (part of
  the train split), never on test.

``... ft<N>`` variants also fine-tune the last N blocks of EfficientNet-Lite0 with the head, as
``train semantic --finetune-blocks N`` does (:mod:`photocorpus.learn.finetune`: the frozen trunk is run
once per photo on the image files, the tail learns at a tenth of the head's rate, batch-norm statistics
frozen).

Variants: the target of a photo is its tags ``joined`` into one string for MiniLM, the ``mean`` of the
per-tag MiniLM vectors, or a ``tfidf``-weighted mean (idf over the train photos' tags; measured here,
not shipped); losses ``cosine`` and ``sigmoid-ce`` (the paper's), ``infonce`` (contrastive), and
``hard-negative`` (VSE++); ``linear`` or ``mlp`` head; Lite0, Lite2 or fused features. The production
default (``photocorpus train semantic`` on a corpus whose text is tags) is also trained through the
library's own :func:`~photocorpus.learn.semantic.train_semantic` and must give the same test mAP as the
matching variant.

Protocol differences from the paper's 0.756 (trained on InstaCities1M captions) and 0.883 (trained on
MIRFlickr tags): 14 concepts here against their 24 (our labels.csv), 3,072 training photos against
about 1M Instagram posts (or MIRFlickr's 25,000 with tags), 128 px photos, a frozen ImageNet CNN with a
small head against a fine-tuned CNN, and held-out photos from the same 5,000 (theirs: MIRFlickr's own
test protocol).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mirflickr_shared as shared

SPLIT = "hash:80/20"
FEATURES = {"lite0": "efficientnet-lite0", "lite2": "efficientnet-lite2", "fused": shared.LITE_FUSED}
LOGITS = {
    "lite0": "efficientnet-lite0.logits",
    "lite2": "efficientnet-lite2.logits",
    "fused": "efficientnet-lite2.logits",
}
FUSION_WEIGHTS = [round(0.1 * i, 1) for i in range(11)]
# name -> (features, target, loss, head[, InfoNCE temperature, default 0.05[, fine-tuned Lite0 blocks]]); the
# first measurements decided
# which to carry on (docs/benchmarks.md); t0.1 was chosen by val mAP among 0.02, 0.05, 0.1, 0.2, 0.3
VARIANTS: dict[str, tuple[Any, ...]] = {
    "lite0 joined cosine linear": ("lite0", "joined", "cosine", "linear"),  # the default before issue #20
    "lite0 mean cosine linear": ("lite0", "mean", "cosine", "linear"),
    "lite0 tfidf cosine linear": ("lite0", "tfidf", "cosine", "linear"),
    "lite0 mean sigmoid-ce linear": ("lite0", "mean", "sigmoid-ce", "linear"),
    "lite0 mean hard-negative linear": ("lite0", "mean", "hard-negative", "linear"),
    "lite0 joined infonce linear": ("lite0", "joined", "infonce", "linear"),
    "lite0 mean infonce linear": ("lite0", "mean", "infonce", "linear"),
    "lite0 tfidf infonce linear": ("lite0", "tfidf", "infonce", "linear"),
    "lite0 mean infonce mlp": ("lite0", "mean", "infonce", "mlp"),
    "lite2 mean infonce linear": ("lite2", "mean", "infonce", "linear"),
    "fused mean infonce linear": ("fused", "mean", "infonce", "linear"),
    "lite0 mean infonce linear t0.02": ("lite0", "mean", "infonce", "linear", 0.02),
    "lite0 mean infonce linear t0.1": ("lite0", "mean", "infonce", "linear", 0.1),  # the default for tags
    "lite0 mean infonce linear t0.2": ("lite0", "mean", "infonce", "linear", 0.2),
    "lite0 mean infonce linear t0.3": ("lite0", "mean", "infonce", "linear", 0.3),
    "lite2 mean infonce linear t0.1": ("lite2", "mean", "infonce", "linear", 0.1),
    "fused mean infonce linear t0.1": ("fused", "mean", "infonce", "linear", 0.1),
    "lite0 mean infonce linear t0.1 ft1": ("lite0", "mean", "infonce", "linear", 0.1, 1),
    "lite0 mean infonce linear t0.1 ft2": ("lite0", "mean", "infonce", "linear", 0.1, 2),
}
PAPER = {"InstaCities1M captions (paper)": 0.756, "MIRFlickr tags (paper)": 0.883}


class Data:
    """Everything the variants share: features, labels, tags, the split, the query vectors."""

    def __init__(self, corpus_dir: Path, feature_keys: set[str]) -> None:
        from photocorpus import feature_store
        from photocorpus.corpus import Corpus
        from photocorpus.features.tag_embed import TagPooler
        from photocorpus.learn.dataset import feature_rows
        from photocorpus.learn.splits import assign_splits
        from photocorpus.learn.text_space import minilm_encoder

        self.corpus_dir = corpus_dir
        self.concepts, labels = shared.load_concepts()
        tags = shared.load_tags()
        by_source = shared.photo_ids_by_source(corpus_dir)
        self.sources = sorted(labels, key=int)
        self.ids = np.array([by_source[s] for s in self.sources], dtype=np.int64)
        self.truth = np.stack([labels[s] for s in self.sources])
        self.tagged = np.array([s in tags for s in self.sources])
        with Corpus.open(corpus_dir) as corpus:
            split = assign_splits(corpus, self.ids, SPLIT)
            self.features = {
                k: feature_rows(feature_store.open_feature_set(corpus, FEATURES[k]), self.ids)
                for k in sorted(feature_keys)
            }
        self.parts = {
            "train": self.tagged & (split == "train"),
            "val": self.tagged & (split == "val"),
            "tagged test": self.tagged & (split == "test"),
            "untagged": ~self.tagged,
        }
        self.encode = minilm_encoder()
        tag_lists = [tags.get(s, []) for s in self.sources]
        self.targets = {
            "joined": TagPooler(self.encode, "joined").pool(tag_lists),
            "mean": TagPooler(self.encode, "mean").pool(tag_lists),
            "tfidf": self._tfidf_targets(tag_lists),
        }
        queries = np.asarray(self.encode(self.concepts), dtype=np.float32)
        self.queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        self._bridge: dict[str, np.ndarray] = {}
        self._activations: dict[int, np.ndarray] = {}

    def activations(self, blocks: int) -> np.ndarray:
        """Every photo's frozen-trunk activations (the fine-tuned tail's input), computed once."""
        if blocks not in self._activations:
            from photocorpus.corpus import Corpus
            from photocorpus.learn.dataset import photo_meta
            from photocorpus.learn.finetune import load_base, trunk_activations

            base, _ = load_base()
            with Corpus.open(self.corpus_dir) as corpus:
                meta = photo_meta(corpus, self.ids.tolist())
                locations = corpus.image_locations(meta.paths)  # type: ignore[arg-type]
                acts, ok, errors = trunk_activations(base, blocks, locations)
            assert ok.all(), errors
            self._activations[blocks] = acts
        return self._activations[blocks]

    def _tfidf_targets(self, tag_lists: list[list[str]]) -> np.ndarray:
        """idf-weighted mean of per-tag vectors; idf from the train+val photos only (never test)."""
        from photocorpus.features.tag_embed import TagPooler

        seen = self.parts["train"] | self.parts["val"]
        df: dict[str, int] = {}
        for tags, use in zip(tag_lists, seen, strict=True):
            for t in set(tags) if use else ():
                df[t] = df.get(t, 0) + 1
        n = int(seen.sum())
        pooler = TagPooler(self.encode, "mean")
        out = np.zeros((len(tag_lists), self.targets_dim()), dtype=np.float32)
        for row, tags in enumerate(tag_lists):
            unique = list(dict.fromkeys(tags))
            if unique:
                w = np.array([np.log((1 + n) / (1 + df.get(t, 0))) + 1 for t in unique])
                v = (w[:, None] * pooler.tag_vectors(unique)).sum(axis=0) / w.sum()
                out[row] = v / max(float(np.linalg.norm(v)), 1e-12)
        return out

    def targets_dim(self) -> int:
        return int(np.asarray(self.encode(["x"])).shape[1])

    def bridge_scores(self, feature_key: str) -> np.ndarray:
        """(photos x concepts) ImageNet-bridge scores from the logits of the variant's backbone."""
        if feature_key not in self._bridge:
            from photocorpus.corpus import Corpus
            from photocorpus.learn.bridge import ImageNetBridge
            from photocorpus.learn.query import parse_query

            with Corpus.open(self.corpus_dir) as corpus:
                bridge = ImageNetBridge(corpus, LOGITS[feature_key], encode=self.encode)
                self._bridge[feature_key] = np.stack(
                    [bridge.score_ids(parse_query(c), self.ids) for c in self.concepts], axis=1
                )
        return self._bridge[feature_key]

    def concept_aps(self, scores: np.ndarray, part: str) -> list[float]:
        from photocorpus.learn.metrics import average_precision

        m = self.parts[part]
        return [float(average_precision(scores[m, k], self.truth[m, k])) for k in range(len(self.concepts))]


def standardised(scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return (scores - reference.mean(axis=0)) / np.maximum(reference.std(axis=0), 1e-9)


def run_variant(data: Data, variant: tuple[Any, ...], seed: int) -> dict[str, Any]:
    """Train one variant with one seed; AP per concept per part, alone and fused with the bridge."""
    import torch

    from photocorpus.learn.heads import FitSettings, fit
    from photocorpus.learn.semantic import FinetunedSemanticModel, SemanticModel, semantic_loss

    feature_key, target_kind, loss, head = variant[:4]
    temperature = variant[4] if len(variant) > 4 else 0.05
    blocks = variant[5] if len(variant) > 5 else 0
    x, y = data.features[feature_key], data.targets[target_kind]
    train, val = data.parts["train"], data.parts["val"]
    torch.manual_seed(seed)
    spec = {"kind": head, "in_dim": x.shape[1], "out_dim": y.shape[1], "hidden": 1024, "dropout": 0.2}
    params = None
    if blocks:  # as train_semantic(finetune_blocks=blocks)
        from photocorpus.learn.finetune import load_base, param_groups, pooled_features

        x = data.activations(blocks)
        model: SemanticModel = FinetunedSemanticModel({**spec, "in_dim": 1280}, loss, load_base()[0], blocks)
        model.head.fit_standardiser(pooled_features(model.tail, x[train]))  # type: ignore[arg-type]
        params = param_groups(model.tail, 1e-3)  # type: ignore[arg-type]
    else:
        model = SemanticModel(spec, loss)
        model.head.fit_standardiser(x[train])
    target = y
    if loss == "sigmoid-ce":  # as train_semantic: targets scaled to [0, 1] with the train photos' range
        lo = y[train].min(axis=0)
        span = np.maximum(y[train].max(axis=0) - lo, 1e-6)
        model.lo.copy_(torch.from_numpy(lo))
        model.span.copy_(torch.from_numpy(span))
        target = np.clip((y - lo) / span, 0.0, 1.0).astype(np.float32)
    settings = FitSettings(200, 10, 256, 1e-3, 1e-4, seed)  # the [learn] defaults
    loss_fn = semantic_loss(model, temperature)
    result = fit(model, loss_fn, x[train], target[train], x[val], target[val], settings, params=params)
    semantic = model.embed(x, batch_size=256) @ data.queries.T
    bridge = data.bridge_scores(feature_key)
    z_sem, z_bridge = standardised(semantic, semantic[train]), standardised(bridge, bridge[train])
    val_maps = [np.mean(data.concept_aps((1 - w) * z_sem + w * z_bridge, "val")) for w in FUSION_WEIGHTS]
    weight = FUSION_WEIGHTS[int(np.argmax(val_maps))]
    fused = (1 - weight) * z_sem + weight * z_bridge
    out: dict[str, Any] = {"seed": seed, "best_epoch": result.best_epoch, "bridge_weight": weight}
    for part in ("val", "tagged test", "untagged"):
        out[part] = data.concept_aps(semantic, part)
        out[f"{part} +bridge"] = data.concept_aps(fused, part)
    return out


def production_default(corpus_dir: Path, seed: int) -> tuple[dict[str, Any], float]:
    """``train semantic`` with no text, loss or head given, as a user would run it on this corpus."""
    from photocorpus.corpus import Corpus
    from photocorpus.features.text_embed import embed_captions
    from photocorpus.learn.dataset import read_label_file
    from photocorpus.learn.heads import FitSettings
    from photocorpus.learn.semantic import train_semantic

    with Corpus.open(corpus_dir) as corpus:
        embed_captions(corpus, "minilm-tags")
        report = train_semantic(
            corpus, name=f"webdata-default-seed{seed}", split=SPLIT,
            fit_settings=FitSettings(200, 10, 256, 1e-3, 1e-4, seed),
            labels=read_label_file(shared.DATA / "labels.csv"),
        )  # fmt: skip
    return report.settings, float(report.metrics["test"]["concepts"]["mAP"])


def median_map(runs: list[dict[str, Any]], part: str) -> float:
    return float(np.median([np.mean(r[part]) for r in runs]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("/tmp/photocorpus-bench/mirflickr-webdata"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names of VARIANTS")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write every run here")
    parser.add_argument(
        "--no-build", action="store_true", help="the corpus is complete: skip import/featurize"
    )
    parser.add_argument(
        "--no-default-check", action="store_true", help="skip training train_semantic's default per seed"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    if not args.no_build:
        source = shared.staged_with_tags(args.corpus.parent / "mirflickr-with-tags")
        keys = {VARIANTS[n][0] for n in names}
        models = ("efficientnet-lite0", "efficientnet-lite2") if keys - {"lite0"} else ("efficientnet-lite0",)
        shared.build_corpus(args.corpus, models, fuse="fused" in keys, source=source)
    data = Data(args.corpus, {VARIANTS[n][0] for n in names})
    print({p: int(m.sum()) for p, m in data.parts.items()}, flush=True)
    results: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        started = time.perf_counter()
        results[name] = [run_variant(data, VARIANTS[name], seed) for seed in seeds]
        runs = results[name]
        m = {part: median_map(runs, part) for part in runs[0] if isinstance(runs[0][part], list)}
        print(
            f"{name}: tagged test {m['tagged test']:.3f} (+bridge {m['tagged test +bridge']:.3f}), "
            f"untagged {m['untagged']:.3f} (+bridge {m['untagged +bridge']:.3f}), val {m['val']:.3f}; "
            f"epochs {[r['best_epoch'] for r in runs]}, bridge w {[r['bridge_weight'] for r in runs]} "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    if not args.no_default_check:
        defaults = [production_default(args.corpus, seed) for seed in seeds]
        settings = defaults[0][0]
        pooling = "mean" if settings["text"] == "minilm-tags" else "joined"
        default_name = f"lite0 {pooling} {settings['loss']} {settings['head']['kind']}"
        if settings["loss"] == "infonce" and settings["temperature"] != 0.05:
            default_name += f" t{settings['temperature']:g}"
        print(f"train semantic defaults on this corpus: {default_name}; tagged test mAP per seed "
              f"{[round(m, 4) for _, m in defaults]}", flush=True)  # fmt: skip
        if default_name in results:
            measured = [float(np.mean(r["tagged test"])) for r in results[default_name]]
            assert np.allclose(measured, [m for _, m in defaults], atol=2e-3), (measured, defaults)

    print("\nmedian over seeds " + ",".join(map(str, seeds)) + "; per-concept AP: tagged test part\n")
    header = "| variant | tagged test mAP | +bridge | untagged mAP | +bridge | "
    print(header + " | ".join(data.concepts) + " |")
    print("|---|---:|---:|---:|---:|" + "---:|" * len(data.concepts))
    for name, runs in results.items():
        per = np.median(np.array([r["tagged test"] for r in runs]), axis=0)
        print(
            f"| {name} | {median_map(runs, 'tagged test'):.3f} "
            f"| {median_map(runs, 'tagged test +bridge'):.3f} "
            f"| {median_map(runs, 'untagged'):.3f} | {median_map(runs, 'untagged +bridge'):.3f} | "
            + " | ".join(f"{a:.2f}" for a in per)
            + " |"
        )
    for label, value in PAPER.items():
        print(f"| {label} | {value:.3f} | | | |" + " |" * len(data.concepts))
    if args.json:
        dump = {"concepts": data.concepts, "seeds": seeds, "runs": results}
        args.json.write_text(json.dumps(dump, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
