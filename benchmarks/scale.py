"""The million-photo path, measured without a million downloads (issue 10).

Builds a catalog of ``--photos`` synthetic photo records through the real :class:`Corpus` API and times
every step of the driver that grows with the corpus: catalog inserts, recording fetched files, status
queries, fetch shard planning, near-duplicate search over the pHashes, kNN over 384-d vectors and a
2-D map (openTSNE). Each step also records its peak RSS (``VmHWM``, reset before the step).

Steps that scale super-linearly (dedup, kNN, t-SNE) are measured at two sizes so their exponent is
fitted, not assumed; the 10M/100M projections use those exponents (linear for the SQLite steps) and
are labelled as projections. openTSNE at a million points does not fit a 20-minute budget on two
cores: it runs at two smaller sizes and its 1M time is extrapolated, and the table says so.

    python benchmarks/scale.py                    # 1,000,000 photos; writes docs/scale.md's table
    python benchmarks/scale.py --photos 20000 --no-write   # a quick smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from photocorpus.corpus import Corpus, StoredFile
from photocorpus.curate.mih import hamming_pairs
from photocorpus.fetch.plan import count_pending, pending_ids
from photocorpus.progress import progress_bar
from photocorpus.records import ImageURL, PhotoRecord

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "scale.md"
BEGIN, END = "<!-- scale.py:begin -->", "<!-- scale.py:end -->"
INSERT_BATCH = 10_000
SHARD_SIZE = 1_000  # the design's shard: photo ids per task
DIMS = 384  # MiniLM-sized embeddings
KNN_K = 10
MAX_QUERIES = 100_000  # kNN queries actually run per size
LABELS = [f"city{i:02d}" for i in range(20)]


@dataclass
class Step:
    """One measured step: seconds, peak RSS, and how it projects to 10M/100M photos."""

    name: str
    n: int
    seconds: float
    peak_rss_mb: float
    exponent: float = 1.0  # t ~ n ** exponent (fitted where measured at two sizes)
    how: str = "measured"
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    def projected(self, n: int) -> float:
        return self.seconds * (n / self.n) ** self.exponent


def _reset_peak() -> None:
    # Linux >= 4.0: writing 5 resets VmHWM, so each step's peak is its own
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_mb() -> float:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return int(re.search(r"VmHWM:\s+(\d+)", text).group(1)) / 1024  # type: ignore[union-attr]


def measure(fn: Callable[[], object]) -> tuple[float, float, object]:
    _reset_peak()
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, _peak_mb(), out


# ----------------------------------------------------------------------------------------- catalog
def _records(lo: int, hi: int) -> list[PhotoRecord]:
    return [
        PhotoRecord(
            "synthetic",
            str(i),
            [LABELS[i % len(LABELS)]],
            title=f"photo {i}",
            tags=["street", "night"] if i % 3 else ["food"],
            owner_id=f"u{i % 50_000}",
            uploaded_at="2020-01-01T00:00:00Z",
            urls=[ImageURL("url_l", f"https://photos.example.invalid/{i}_l.jpg", 1024, 768)],
        )
        for i in range(lo, hi)
    ]


def build_catalog(corpus: Corpus, n: int) -> tuple[Step, Step]:
    """add_photos in batches of 10k; returns the step and the rate over the last tenth (the slowest)."""
    tail_from = n - max(INSERT_BATCH, n // 10)
    tail_s = 0.0
    _reset_peak()
    t0 = time.perf_counter()
    with progress_bar("catalog inserts", n, unit="photos") as bar:
        for lo in range(0, n, INSERT_BATCH):
            hi = min(n, lo + INSERT_BATCH)
            recs = _records(lo, hi)
            t1 = time.perf_counter()
            corpus.add_photos(recs)
            if lo >= tail_from:
                tail_s += time.perf_counter() - t1
            bar(hi - lo)
    total = time.perf_counter() - t0
    step = Step("catalog insert (add_photos)", n, total, _peak_mb())
    step.extra["photos_per_s"] = n / total
    step.extra["photos_per_s_last_tenth"] = (n - tail_from) / tail_s if tail_s else 0.0
    step.note = (
        f"{n / total:,.0f} photos/s overall, {step.extra['photos_per_s_last_tenth']:,.0f}/s in the last tenth"
    )
    return step, step


def commit_files(corpus: Corpus, n: int) -> Step:
    """What the fetch driver writes per photo (files row + stage row), via commit_file in batches."""
    ids = [r[0] for r in corpus.conn.execute("SELECT id FROM photos ORDER BY id")]
    _reset_peak()
    t0 = time.perf_counter()
    with progress_bar("commit fetched files", len(ids), unit="photos") as bar:
        for lo in range(0, len(ids), INSERT_BATCH):
            batch = ids[lo : lo + INSERT_BATCH]
            with corpus.transaction():
                for pid in batch:
                    corpus.commit_file(
                        pid,
                        StoredFile(
                            path=f"images/x/{pid // 1000:05d}/{pid}.jpg",
                            sha256=f"{pid:064x}",
                            width=1024,
                            height=768,
                            bytes=150_000,
                            format="JPEG",
                        ),
                    )
            bar(len(batch))
    seconds = time.perf_counter() - t0
    return Step(
        "record fetched files (commit_file)", n, seconds, _peak_mb(), note=f"{n / seconds:,.0f} photos/s"
    )


def status_queries(corpus: Corpus, n: int) -> Step:
    seconds, peak, summary = measure(corpus.status_summary)
    assert isinstance(summary, dict)
    t_pending, _, pending = measure(lambda: count_pending(corpus, []))
    step = Step("status summary (all stages)", n, seconds, peak)
    step.note = f"count of photos still to fetch: {t_pending:.2f} s ({pending:,} pending)"
    step.extra["count_pending_s"] = t_pending
    return step


def plan_shards(corpus: Corpus, n: int) -> Step:
    """Walk every pending photo id in pages (as fetch does) and cut shards of SHARD_SIZE."""

    def plan() -> int:
        shards, after, current = 0, 0, 0
        while ids := pending_ids(corpus, after, 512, []):
            after = ids[-1]
            current += len(ids)
            shards += current // SHARD_SIZE
            current %= SHARD_SIZE
        return shards + (1 if current else 0)

    # fetch's planner reads photos without a fetch status; count it on a catalog where none is fetched
    seconds, peak, shards = measure(plan)
    return Step("fetch shard planning", n, seconds, peak, note=f"{shards:,} shards of {SHARD_SIZE}")


# ------------------------------------------------------------------------------------------- dedup
def synthetic_hashes(n: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Random 64-bit pHashes; 5% are near copies (0-4 flipped bits) of another photo's."""
    codes = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    copies = rng.choice(n, size=n // 20, replace=False)
    sources = rng.integers(0, n, size=copies.size)
    flips = np.zeros(copies.size, dtype=np.uint64)
    for _ in range(4):
        bit = rng.integers(0, 64, size=copies.size).astype(np.uint64)
        keep = rng.random(copies.size) < 0.75
        flips ^= np.where(keep, np.uint64(1) << bit, np.uint64(0))
    codes[copies] = codes[sources] ^ flips
    return codes, int(copies.size)


def dedup_step(n: int, rng: np.random.Generator) -> Step:
    hamming_pairs(synthetic_hashes(1000, rng)[0], 8)  # compile the numba kernels outside the timing
    timings = []
    for size in (n // 4, n):
        codes, planted = synthetic_hashes(size, rng)
        seconds, peak, pairs = measure(lambda codes=codes: hamming_pairs(codes, 8))
        timings.append((size, seconds, peak, len(pairs.left), planted))  # type: ignore[attr-defined]
    (n1, t1, _, _, _), (n2, t2, peak, links, planted) = timings
    exponent = math.log(t2 / t1) / math.log(n2 / n1) if t1 > 0 and t2 > 0 else 1.0
    step = Step("near-duplicate search (pHash <= 8 bits, MIH)", n, t2, peak, exponent=max(1.0, exponent))
    step.how = f"measured at {n1:,} and {n2:,}"
    step.note = f"{links:,} links for {planted:,} planted copies; fitted t ~ n^{exponent:.2f}"
    return step


# --------------------------------------------------------------------------------------------- kNN
def synthetic_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors around 2,000 topic centres (real embeddings are clustered, not uniform)."""
    centres = rng.standard_normal((2000, DIMS), dtype=np.float32)
    out = np.empty((n, DIMS), dtype=np.float32)
    for lo in range(0, n, 100_000):
        hi = min(n, lo + 100_000)
        x = centres[rng.integers(0, 2000, size=hi - lo)] + 0.8 * rng.standard_normal(
            (hi - lo, DIMS), dtype=np.float32
        )
        out[lo:hi] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def knn_step(vectors: np.ndarray, rng: np.random.Generator) -> tuple[Step, Step]:
    """IVF-Flat (nlist ~ 4 sqrt(n), nprobe 16) kNN of every vector, at n/4 and n; recall on a sample
    against exact search, whose all-pairs time is extrapolated from that sample."""
    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    n = vectors.shape[0]
    timings = []
    recall = 0.0
    for size in (n // 4, n):
        x = vectors[:size]
        nlist = int(4 * math.sqrt(size))

        def run(x: np.ndarray = x, nlist: int = nlist) -> tuple[object, np.ndarray]:
            quantizer = faiss.IndexFlatIP(DIMS)
            index = faiss.IndexIVFFlat(quantizer, DIMS, nlist, faiss.METRIC_INNER_PRODUCT)
            # 16 points per centroid and 10 k-means rounds: the training is not what is measured
            index.cp.niter = 10
            index.cp.min_points_per_centroid = 1
            train = x[rng.choice(x.shape[0], size=min(x.shape[0], 16 * nlist), replace=False)]
            index.train(train)
            index.add(x)
            index.nprobe = 16
            # at most 100k queries: the all-rows time is this one x (rows / queries), said in the table
            queries = x[: min(x.shape[0], MAX_QUERIES)]
            _d, idx = index.search(queries, KNN_K + 1)
            return index, idx

        seconds, peak, (_index, idx) = measure(run)  # type: ignore[misc]
        # build + search of MAX_QUERIES, scaled to every row (the build is counted once: conservative)
        seconds *= max(1.0, size / MAX_QUERIES)
        timings.append((size, seconds, peak))
        if size == n:
            sample = rng.choice(min(n, MAX_QUERIES), size=1000, replace=False)
            flat = faiss.IndexFlatIP(DIMS)
            flat.add(vectors)
            t_exact, _, (_, exact) = measure(lambda flat=flat, q=vectors[sample]: flat.search(q, KNN_K + 1))  # type: ignore[misc]
            hits = [len(set(exact[i]) & set(idx[s])) for i, s in enumerate(sample)]
            recall = float(np.mean(hits)) / (KNN_K + 1)
            del flat
    (n1, t1, _), (n2, t2, peak) = timings
    exponent = math.log(t2 / t1) / math.log(n2 / n1)
    step = Step(f"kNN (k={KNN_K}) of every vector, {DIMS}-d, faiss IVF-Flat", n, t2, peak, exponent=exponent)
    step.how = f"measured at {n1:,} and {n2:,}; >{MAX_QUERIES:,} queries extrapolated"
    step.note = f"recall@{KNN_K + 1} vs exact = {recall:.3f}; fitted t ~ n^{exponent:.2f}"
    exact_all = t_exact * n / 1000
    exact = Step(f"kNN exact (flat) of every vector, {DIMS}-d", n, exact_all, peak, exponent=2.0)
    exact.how = "extrapolated from 1,000 exact queries"
    exact.note = f"{t_exact:.1f} s for 1,000 queries over {n:,}; t ~ n^2"
    return step, exact


# -------------------------------------------------------------------------------------------- maps
def map_steps(vectors: np.ndarray, budget_s: float) -> list[Step]:
    """The explore stage's own map path: PCA to 50-d (all rows, measured), then openTSNE with faiss
    kNN (:func:`photocorpus.explore.embed2d.embed_2d`) at two sizes; 1M itself only if it fits."""
    from photocorpus.explore.embed2d import MapParams, embed_2d, reduce_pca

    n = vectors.shape[0]
    seconds, peak, z = measure(lambda: reduce_pca(vectors))
    pca = Step("PCA to 50-d (explore's first map step)", n, seconds, peak)
    assert isinstance(z, np.ndarray)
    timings = []
    for size in (min(20_000, n // 4), min(60_000, n)):
        t, p, _ = measure(lambda size=size: embed_2d(z[:size], MapParams(method="tsne")))
        timings.append((size, t, p))
        print(f"t-SNE: {t:.0f} s at {size:,}", file=sys.stderr)
    (n1, t1, _), (n2, t2, peak) = timings
    fitted = math.log(t2 / t1) / math.log(n2 / n1)
    # openTSNE's FFT gradient and the HNSW kNN are at least linear in n; a fitted exponent below 1
    # only says that fixed costs weigh more at 20k than at 60k. Trusting it once sent a full 1M run
    # (40+ min) into a 20-min budget, so both the decision and the projection use at least n^1.
    exponent = max(fitted, 1.0)
    projected = t2 * (n / n2) ** exponent
    if n2 == n or projected < budget_s:
        t, p, _ = (t2, peak, None) if n2 == n else measure(lambda: embed_2d(z, MapParams(method="tsne")))
        step = Step("2-D map (openTSNE, FFT)", n, t, p, exponent=exponent)
        step.note = f"fitted t ~ n^{fitted:.2f}, projected with n^{exponent:.2f}"
        return [pca, step]
    step = Step("2-D map (openTSNE, FFT)", n, projected, peak, exponent=exponent)
    step.how = f"EXTRAPOLATED from {n1:,} and {n2:,} (1M would exceed the budget)"
    step.note = f"{t1:.0f} s at {n1:,}, {t2:.0f} s at {n2:,}; fitted t ~ n^{fitted:.2f}"
    if exponent != fitted:
        step.note += ", extrapolated linearly (at least O(n) per step)"
    step.note += f"; peak RSS is the {n2:,} run's"
    return [pca, step]


# ------------------------------------------------------------------------------------------ output
def _fmt_s(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:,.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:,.1f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:,.1f} h"
    return f"{seconds / 86400:,.1f} days"


def table(steps: list[Step], meta: dict[str, object]) -> str:
    n = steps[0].n
    lines = [
        f"Measured by `benchmarks/scale.py` on {meta['machine']}, {meta['date']} "
        f"({meta['photos']:,} synthetic photos, total run {meta['total_s']:.0f} s, "
        f"catalog {meta['catalog_mb']:,.0f} MB on disk).",
        "",
        f"| step | {n:,} photos | peak RSS | how | projected 10M | projected 100M | notes |",
        "|---|---:|---:|---|---:|---:|---|",
    ]
    for s in steps:
        lines.append(
            f"| {s.name} | {_fmt_s(s.seconds)} | {s.peak_rss_mb:,.0f} MB | {s.how} | "
            f"{_fmt_s(s.projected(10_000_000))} | {_fmt_s(s.projected(100_000_000))} | {s.note} |"
        )
    lines += [
        "",
        "Projections: t(N) = t(1M) x (N / 1M)^e, with e fitted from two measured sizes where the table "
        "says so and e = 1 for the SQLite steps (B-tree inserts and scans are n log n; the log factor "
        "is within the noise here). They are arithmetic on the measured numbers, not measurements.",
    ]
    return "\n".join(lines)


def write_doc(text: str) -> None:
    doc = DOC.read_text(encoding="utf-8")
    if BEGIN not in doc:
        raise SystemExit(f"{DOC} lacks the {BEGIN} marker")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=1_000_000)
    parser.add_argument(
        "--budget-s", type=float, default=1200.0, help="whole-run budget (t-SNE is sized to it)"
    )
    parser.add_argument("--no-write", action="store_true", help="print the table, leave docs/scale.md alone")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    steps: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="photocorpus-scale-") as tmp:
        corpus = Corpus.create(Path(tmp) / "c")
        insert, _ = build_catalog(corpus, args.photos)
        steps.append(insert)
        print(f"insert: {insert.note}", file=sys.stderr)
        steps.append(plan_shards(corpus, args.photos))
        steps.append(commit_files(corpus, args.photos))
        steps.append(status_queries(corpus, args.photos))
        catalog_mb = sum(p.stat().st_size for p in (Path(tmp) / "c").glob("catalog.sqlite*")) / 1e6
        corpus.close()
    print("catalog steps done", file=sys.stderr)
    steps.append(dedup_step(args.photos, rng))
    print(f"dedup: {steps[-1].note}", file=sys.stderr)
    _reset_peak()
    vectors = synthetic_vectors(args.photos, rng)
    ivf, exact = knn_step(vectors, rng)
    steps += [ivf, exact]
    print(f"knn: {ivf.note}", file=sys.stderr)
    left = args.budget_s - (time.perf_counter() - started)
    steps += map_steps(vectors, left)
    total = time.perf_counter() - started
    meta = {
        "machine": f"{os.cpu_count()} CPU cores" + (f" (under nice -n {os.nice(0)})" if os.nice(0) else ""),
        "date": time.strftime("%Y-%m-%d"),
        "photos": args.photos,
        "total_s": total,
        "catalog_mb": catalog_mb,
    }
    text = table(steps, meta)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "steps": [s.__dict__ for s in steps]}, indent=2))
    if not args.no_write:
        write_doc(text)


if __name__ == "__main__":
    main()
