"""Our 2-D map path against scikit-learn's TSNE on the same features, in one run.

Features: 30,000 x 1280 float16 rows (the width of EfficientNet-Lite0's pooled features) made by
:func:`synthetic_features`: 60 groups in 12 families on a 24-d latent space, pushed through a random
linear map and a ReLU, plus noise, so that neighbourhoods are real but not trivial. Both methods get
the same seeded 50-d PCA of those rows (photocorpus.explore.embed2d.reduce_pca, timed separately).

Compared:
* ours: ``photocorpus.explore.embed2d.embed_2d`` (faiss kNN + openTSNE FFT gradients, 250 + 300
  steps, all cores);
* scikit-learn: ``TSNE(perplexity=30, init="pca", random_state=0)`` (Barnes-Hut, 1000 steps);
* openTSNE with its default settings (``--opentsne``), for reference.

Trustworthiness (k = 10) of every map on the same seeded 5,000-row sample.

    python benchmarks/tsne.py                 # 30k: ours vs scikit-learn (prints the time ratio)
    python benchmarks/tsne.py --opentsne      # ... and openTSNE's defaults
    python benchmarks/tsne.py --n 100000 --ours-only   # the 100k-photo map
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from photocorpus.explore.embed2d import MapParams, embed_2d, reduce_pca


def synthetic_features(n: int, dims: int = 1280, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` CNN-like float16 rows with a known group (0..59) per row; see the module docstring."""
    rng = np.random.default_rng(seed)
    families, per_family, latent = 12, 5, 24
    family_centres = rng.normal(0, 4.0, size=(families, latent))
    centres = family_centres.repeat(per_family, axis=0) + rng.normal(
        0, 1.6, size=(families * per_family, latent)
    )
    groups = rng.integers(0, len(centres), size=n)
    weights = rng.normal(0, 1.0 / np.sqrt(latent), size=(latent, dims)).astype(np.float32)
    out = np.empty((n, dims), dtype=np.float16)
    for start in range(0, n, 10_000):
        g = groups[start : start + 10_000]
        z = (centres[g] + rng.normal(0, 1.0, size=(len(g), latent))).astype(np.float32)
        noise = rng.normal(0, 0.6, size=(len(g), dims)).astype(np.float32)
        out[start : start + len(g)] = np.maximum(z @ weights + noise, 0)
    return out, groups


def trust(z: np.ndarray, coords: np.ndarray, rows: np.ndarray) -> float:
    from sklearn.manifold import trustworthiness

    return float(trustworthiness(z[rows], coords[rows], n_neighbors=10))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=30_000)
    parser.add_argument("--ours-only", action="store_true", help="skip scikit-learn")
    parser.add_argument("--opentsne", action="store_true", help="also run openTSNE with default settings")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()

    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    x, _groups = synthetic_features(args.n)
    t = time.perf_counter()
    z = reduce_pca(x, 50, seed=0)
    pca_s = time.perf_counter() - t
    rows = np.sort(np.random.default_rng(0).choice(args.n, min(5_000, args.n), replace=False))
    results: dict[str, dict[str, float]] = {}

    t = time.perf_counter()
    ours = embed_2d(z, MapParams(seed=0))
    results["ours"] = {"seconds": time.perf_counter() - t, "trustworthiness": trust(z, ours, rows)}
    print(
        f"ours: {results['ours']['seconds']:.1f} s, trustworthiness {results['ours']['trustworthiness']:.4f}"
    )

    if args.opentsne:
        from openTSNE import TSNE as OpenTSNE

        t = time.perf_counter()
        default = np.asarray(OpenTSNE(n_jobs=os.cpu_count() or 1, random_state=0).fit(z))
        results["opentsne-default"] = {
            "seconds": time.perf_counter() - t,
            "trustworthiness": trust(z, default, rows),
        }
        r = results["opentsne-default"]
        print(f"openTSNE defaults: {r['seconds']:.1f} s, trustworthiness {r['trustworthiness']:.4f}")

    if not args.ours_only:
        from sklearn.manifold import TSNE

        t = time.perf_counter()
        reference = TSNE(perplexity=30, init="pca", random_state=0, n_jobs=os.cpu_count()).fit_transform(z)
        results["sklearn"] = {
            "seconds": time.perf_counter() - t,
            "trustworthiness": trust(z, reference, rows),
        }
        r = results["sklearn"]
        print(f"scikit-learn: {r['seconds']:.1f} s, trustworthiness {r['trustworthiness']:.4f}")

    print(f"\n{args.n:,} x 1280 -> PCA 50 ({pca_s:.1f} s, shared) -> 2-D; load now {os.getloadavg()[0]:.2f}")
    print(f"{'method':<20}{'seconds':>10}{'trustworthiness':>18}")
    for name, r in results.items():
        print(f"{name:<20}{r['seconds']:>10.1f}{r['trustworthiness']:>18.4f}")
    if "sklearn" in results:
        ratio = results["sklearn"]["seconds"] / results["ours"]["seconds"]
        gap = results["sklearn"]["trustworthiness"] - results["ours"]["trustworthiness"]
        print(f"time ratio scikit-learn / ours: {ratio:.2f}x; trustworthiness gap {gap:+.4f}")
        results["ratio"] = {"sklearn_over_ours": ratio, "trust_gap": gap}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"n": args.n, "pca_seconds": pca_s, **results}, fh, indent=2)


if __name__ == "__main__":
    main()
