"""Text -> image retrieval on the shared MIRFLICKR subset: semantic model, ImageNet bridge, classifier.

    python benchmarks/retrieval_mirflickr.py [--corpus DIR] [--losses cosine,infonce] [--heads linear]

The protocol of the issue (and of Gomez et al.'s MIRFlickr experiment, on our 5,000-photo subset):

* the 5,000 photos are imported (source ``mirflickr``, id N for ``imN.jpg``) and featurized with
  EfficientNet-Lite0 by the featurize stage;
* each photo's text is the names of its concepts in ``labels.csv`` (the only text we have for
  them), embedded with MiniLM into ``text.minilm``;
* split 80/20 by the stable hash of (source, source id) (``--split hash:80/20``; early stopping uses
  an eighth of the 80 %, carved out by a second hash, so the 20 % test part is untouched);
* each of the 14 concept names is a query; the held-out photos are ranked by it and AP computed
  against the concept's column; mAP is the mean over the 14 concepts.

Reported: the semantic model(s) (``train semantic``), the caption-free ImageNet-label bridge (no
training at all, so it is evaluated on the same held-out photos), and a multi-label classifier trained
on the concepts themselves (``train classifier --target concepts``; supervised, an upper reference).
The corpus is kept in ``--corpus`` so a second run only trains and scores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mirflickr_shared as shared

DATA = shared.DATA
SPLIT = "hash:80/20"


def build_corpus(path: Path) -> None:
    from photocorpus import feature_store
    from photocorpus.corpus import Corpus
    from photocorpus.learn.text_space import minilm_encoder

    started = time.perf_counter()
    shared.build_corpus(path, ("efficientnet-lite0",))
    corpus = Corpus.open(path)
    names, labels = shared.load_concepts()
    text_by_sid = {
        sid: " ".join(n for n, v in zip(names, row, strict=True) if v) for sid, row in labels.items()
    }
    ids = np.unique(feature_store.open_feature_set(corpus, "efficientnet-lite0").photo_ids())
    have = (
        np.unique(feature_store.open_feature_set(corpus, "text.minilm").photo_ids())
        if feature_store.has_feature_set(corpus, "text.minilm")
        else np.zeros(0, np.int64)
    )
    todo = np.setdiff1d(ids, have)
    if len(todo):
        sid = dict(corpus.conn.execute("SELECT id, source_id FROM photos"))
        vectors = minilm_encoder()([text_by_sid[sid[int(i)]] for i in todo])
        feature_store.append_rows(
            corpus, "text.minilm", todo, vectors, model_id="all-MiniLM-L6-v2 (MIRFLICKR concept names)"
        )
    print(f"corpus ready: {len(ids)} photos featurized ({time.perf_counter() - started:.0f} s)", flush=True)
    corpus.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("/tmp/photocorpus-bench/mirflickr-learn"))
    parser.add_argument("--losses", default="cosine", help="comma-separated: cosine, sigmoid-ce, infonce")
    parser.add_argument("--heads", default="linear", help="comma-separated: linear, mlp")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from photocorpus.corpus import Corpus
    from photocorpus.learn.classifier import train_classifier
    from photocorpus.learn.dataset import read_label_file
    from photocorpus.learn.evaluate import evaluate_label_queries
    from photocorpus.learn.search import Searcher
    from photocorpus.learn.semantic import train_semantic

    build_corpus(args.corpus)
    labels = read_label_file(DATA / "labels.csv")
    results: dict[str, dict] = {}
    with Corpus.open(args.corpus) as corpus:
        for loss in args.losses.split(","):
            for head in args.heads.split(","):
                name = f"semantic-{loss}-{head}"
                t = time.perf_counter()
                report = train_semantic(
                    corpus, "minilm", loss=loss, head=head, name=name, split=SPLIT, labels=labels
                )
                mean_ap = report.metrics["test"]["concepts"]["mAP"]
                check = evaluate_label_queries(corpus, Searcher(corpus, model=name), labels, split=SPLIT)
                assert abs(check["mAP"] - mean_ap) < 1e-6  # the CLI path ranks the same
                results[name] = {
                    "mAP": mean_ap,
                    "per_concept": {q: r["ap"] for q, r in check["queries"].items()},
                    "epochs": report.metrics["best_epoch"],
                    "train_seconds": round(time.perf_counter() - t, 1),
                    "test_photos": check["photos"],
                    "photos": report.metrics["photos"],
                }
                print(f"{name}: test mAP {mean_ap:.4f}", flush=True)
        bridge = evaluate_label_queries(corpus, Searcher(corpus, method="bridge"), labels, split=SPLIT)
        results["imagenet-bridge"] = {
            "mAP": bridge["mAP"],
            "per_concept": {q: r["ap"] for q, r in bridge["queries"].items()},
            "test_photos": bridge["photos"],
        }
        print(f"imagenet-bridge: test mAP {bridge['mAP']:.4f}", flush=True)
        for head in ("linear", "mlp"):
            report = train_classifier(
                corpus, "concepts", labels=labels, head=head, name=f"classifier-concepts-{head}", split=SPLIT
            )
            test = report.metrics["test"]
            results[f"classifier-concepts-{head}"] = {
                "mAP": test["mAP"],
                "per_concept": test["per_label_ap"],
                "test_photos": test["n"],
                "epochs": report.metrics["best_epoch"],
            }
            print(f"classifier-concepts-{head}: test mAP {test['mAP']:.4f}", flush=True)
        prevalence = float(np.mean([r["positives"] / bridge["photos"] for r in bridge["queries"].values()]))
        results["prevalence (random ranking)"] = {"mAP": prevalence}
    print()
    concepts = labels.names
    print("| method | test mAP | " + " | ".join(concepts) + " |")
    print("|---|---:|" + "---:|" * len(concepts))
    for name, r in results.items():
        per = r.get("per_concept") or {}
        cells = " | ".join(f"{per[c]:.2f}" if per.get(c) is not None else "" for c in concepts)
        print(f"| {name} | {r['mAP']:.3f} | {cells} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
