"""Cluster quality against MIRFLICKR's 14 human concept labels: raw pixels versus CNN features.

The 5,000 shared MIRFLICKR-25K photos are imported into a corpus; the featurize stage computes
EfficientNet-Lite0 features and seed 004's raw pixels (150 x 150 RGB); each set goes through the
explore stage's own path (L2-normalised rows, seeded PCA to 50 dims, k-means), for k = 14 (one
cluster per concept) and for k chosen automatically (best silhouette).

Scores (higher is better):
* NMI and purity on the single-label photos (exactly one of the 14 concepts);
* mean NMI over the 14 concepts on all photos (each concept's yes/no against the clusters), which
  also uses the multi-label and unlabelled photos.

Then it runs ``explore(k=14, png=True)`` on the corpus and copies the map to docs/img/ (downscaled),
for the docs.

    python benchmarks/cluster_quality_mirflickr.py [--work DIR] [--png-to docs/img/explore-mirflickr-map.png]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mirflickr25k"


def purity(truth: np.ndarray, clusters: np.ndarray) -> float:
    total = 0
    for c in np.unique(clusters):
        total += Counter(truth[clusters == c].tolist()).most_common(1)[0][1]
    return total / len(truth)


def main() -> None:
    from sklearn.metrics import normalized_mutual_info_score as nmi

    from photocorpus import feature_store
    from photocorpus.corpus import Corpus
    from photocorpus.explore.cluster import choose_k, kmeans
    from photocorpus.explore.embed2d import reduce_pca
    from photocorpus.explore.stage import explore
    from photocorpus.features.pipeline import featurize_images
    from photocorpus.importing import import_folder

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "photocorpus-bench-mirflickr"
    )
    parser.add_argument("--png-to", type=Path, default=None, help="copy the map PNG here (downscaled)")
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")

    root = args.work / "corpus"
    if (root / "catalog.sqlite").exists():
        corpus = Corpus.open(root)
    else:
        src = args.work / "src" / "mirflickr"
        src.mkdir(parents=True, exist_ok=True)
        for path in sorted((DATA / "images").glob("*.jpg")):
            if not (src / path.name).exists():
                os.symlink(path, src / path.name)
        corpus = Corpus.create(root)
        import_folder(corpus, src.parent, follow_symlinks=True)  # the links lead into the shared data
    for model in ("efficientnet-lite0", "raw-pixels"):
        t = time.perf_counter()
        report = featurize_images(corpus, model)
        print(f"featurize {model}: {report.computed} new rows in {time.perf_counter() - t:.1f} s")

    with open(DATA / "labels.csv", newline="") as fh:
        reader = csv.reader(fh)
        concepts = next(reader)[1:]
        by_file = {row[0]: np.array([int(v) for v in row[1:]], dtype=np.int8) for row in reader}
    origin = {int(r[0]): Path(r[1]).name for r in corpus.conn.execute("SELECT photo_id, origin FROM files")}

    rows: list[tuple[str, int, float, float, float, int]] = []
    for set_name in ("raw-pixels", "efficientnet-lite0"):
        fs = feature_store.open_feature_set(corpus, set_name)
        ids = fs.photo_ids()
        keep = np.array([origin.get(int(i)) in by_file for i in ids])
        ids = ids[keep]
        labels = np.stack([by_file[origin[int(i)]] for i in ids])
        single = labels.sum(axis=1) == 1
        truth_single = labels[single].argmax(axis=1)
        t = time.perf_counter()
        matrix = np.asarray(fs.matrix())[keep]
        z = reduce_pca(matrix, 50, seed=0)
        auto_k, _scores = choose_k(z, seed=0)
        for k in (14, auto_k):
            clusters = kmeans(z, k, seed=0).labels
            per_concept = float(np.mean([nmi(labels[:, j], clusters) for j in range(labels.shape[1])]))
            rows.append((
                set_name, k, nmi(truth_single, clusters[single]), purity(truth_single, clusters[single]),
                per_concept, int(single.sum()),
            ))  # fmt: skip
        print(
            f"{set_name}: {len(ids)} photos, {int(single.sum())} single-label; "
            f"{time.perf_counter() - t:.1f} s"
        )

    print(f"\nconcepts: {', '.join(concepts)}")
    print(f"{'features':<22}{'k':>4}{'NMI (single)':>14}{'purity (single)':>17}{'mean concept NMI':>18}")
    for set_name, k, n1, p1, pc, _ in rows:
        print(f"{set_name:<22}{k:>4}{n1:>14.4f}{p1:>17.4f}{pc:>18.4f}")

    t = time.perf_counter()
    result = explore(corpus, k=14, png=True, name="mirflickr-k14")
    print(f"\nexplore k=14 with PNGs: {time.perf_counter() - t:.1f} s -> {result.index_html}")
    if args.png_to:
        from PIL import Image

        args.png_to.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(result.index_html.parent / "map.png") as im:
            im.thumbnail((1400, 1400))
            im.convert("P", palette=Image.Palette.ADAPTIVE, colors=128).save(args.png_to, optimize=True)
        shutil.copystat(result.index_html.parent / "map.png", args.png_to)
        print(f"map copied to {args.png_to} ({args.png_to.stat().st_size / 1e3:.0f} kB)")
    print(f"load at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
