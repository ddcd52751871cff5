"""Text-query latency and recall of the search index over 1,000,000 clustered 384-d vectors.

    python benchmarks/search.py [--n 1000000] [--queries 300] [--kinds ivf] [--threads 2]

What it measures, with the production code (``photocorpus.learn.index.ensure_index`` builds, saves and
reloads the index exactly as ``photocorpus search`` does):

* data: ``--n`` unit vectors in 384-d around 2,000 cluster centres of uneven size and spread
  (clustered, as real photo embeddings are, not uniform noise); the centres are random directions;
* the index ``auto`` picks at this size (IVF, float16 storage, nprobe calibrated at build time for
  recall@10 >= 0.97 on probe queries), its build time, size on disk, load time and the process's RSS;
* recall@10 against exact search (brute force over the same array) on fresh query points drawn
  from the data distribution (not the calibration probes);
* per text query, end to end: parse the query, embed it with MiniLM (loaded once, as a long-lived
  process such as the report does), combine the terms, search the index; p50/p95/max. Because the
  synthetic space is not MiniLM's, the vector searched is a data-distribution point combined with
  the text vector at negligible weight: every step runs, the neighbours stay meaningful;
* for comparison, exact (flat) search latency at the ``exact_search_max`` size (200k) and at ``--n``.

Run it when the machine is otherwise idle; ``uptime`` load is printed at start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DIMS = 384
CENTRES = 2000
TEXT_QUERIES = [
    "car", "skyline", "bike", "sunrise", "snow", "rain", "icecream", "cake", "pizza", "woman", "man",
    "kid", "yellow car", "skyline night", "bike park", "sunrise beach", "snow ski", "rain umbrella",
    "icecream beach", "chocolate cake", "pizza wine", "woman bag", "man boat", "kid dog",
    "beach +sunset -people", "skyline at night", "dog +park -car^0.5", "a plate of pasta",
    "street art", "wedding dress", "coffee latte art", "mountain lake", "city lights at night",
]  # fmt: skip


def clustered(n: int, seed: int, centres: np.ndarray) -> np.ndarray:
    """Unit vectors around the centres; cluster sizes follow a Zipf-like law, spreads vary per cluster."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(centres) + 1) ** 0.7
    which = rng.choice(len(centres), size=n, p=weights / weights.sum())
    spread = 0.04 + 0.05 * np.random.default_rng(7).random(len(centres)).astype(np.float32)
    out = np.empty((n, DIMS), dtype=np.float32)
    for start in range(0, n, 100_000):
        part = slice(start, start + 100_000)
        w = which[part]
        x = centres[w] + spread[w, None] * rng.standard_normal((len(w), DIMS)).astype(np.float32)
        out[part] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _grown_ids(ids: np.ndarray, extra: int):  # type: ignore[no-untyped-def]
    grown = np.concatenate([ids, np.arange(len(ids) + 1, len(ids) + extra + 1, dtype=np.int64)])
    return lambda: grown


def _grown_embed(data: np.ndarray, more: np.ndarray):  # type: ignore[no-untyped-def]
    """Rows of the original array or of the 10k added ones, without copying 1.5 GB."""

    def embed(chunk: np.ndarray) -> np.ndarray:
        old = chunk <= len(data)
        out = np.empty((len(chunk), data.shape[1]), dtype=np.float32)
        out[old] = data[chunk[old] - 1]
        out[~old] = more[chunk[~old] - len(data) - 1]
        return out

    return embed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--kinds", default="auto", help="comma-separated: auto, ivf, hnsw, flat")
    parser.add_argument("--threads", type=int, default=2, help="faiss / torch threads (the 2-core target)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import faiss
    import torch

    from photocorpus.learn.index import IndexSource, choose_kind, ensure_index, recall_at_k
    from photocorpus.learn.query import parse_query, query_vector
    from photocorpus.learn.text_space import minilm_encoder

    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    results: dict[str, object] = {"n": args.n, "dims": DIMS, "threads": args.threads, "load_start": load()}
    print(f"load average at start: {load()}", flush=True)

    t = time.perf_counter()
    centres = np.random.default_rng(0).standard_normal((CENTRES, DIMS)).astype(np.float32)
    data = clustered(args.n, seed=1, centres=centres)
    ids = np.arange(1, args.n + 1, dtype=np.int64)
    queries = clustered(args.queries, seed=2, centres=centres)
    print(
        f"generated {args.n:,} vectors in {time.perf_counter() - t:.1f} s; RSS {rss_mb():.0f} MB", flush=True
    )

    t = time.perf_counter()
    _, exact = faiss.knn(queries, data, 10, metric=faiss.METRIC_INNER_PRODUCT)
    exact_ids = ids[exact]
    exact_full_ms = (time.perf_counter() - t) / len(queries) * 1000
    single = []
    for q in queries[:20]:
        t = time.perf_counter()
        faiss.knn(q[None, :], data, 10, metric=faiss.METRIC_INNER_PRODUCT)
        single.append((time.perf_counter() - t) * 1000)
    flat_200k = []
    for q in queries[:20]:
        t = time.perf_counter()
        faiss.knn(q[None, :], data[:200_000], 10, metric=faiss.METRIC_INNER_PRODUCT)
        flat_200k.append((time.perf_counter() - t) * 1000)
    results["exact_search_ms"] = {
        f"{args.n}": {"p50": statistics.median(single), "batched_per_query": exact_full_ms},
        "200000": {"p50": statistics.median(flat_200k), "p95": pct(flat_200k, 95)},
    }
    print(f"exact search: {statistics.median(single):.1f} ms/query at {args.n:,}, "
          f"{statistics.median(flat_200k):.1f} ms at 200k", flush=True)  # fmt: skip

    encode = minilm_encoder()
    encode(["warm up"])
    for kind in args.kinds.split(","):
        chosen = choose_kind(args.n, kind, 200_000)
        folder = Path(tempfile.mkdtemp(prefix=f"search-bench-{chosen}-"))
        source = IndexSource(
            name="bench",
            fingerprint="synthetic",
            dims=DIMS,
            photo_ids=lambda: ids,
            embed=lambda chunk: data[chunk - 1],
            signature=lambda: "v1",
        )
        rss_before = rss_mb()
        t = time.perf_counter()
        index, action = ensure_index(folder, source, setting=kind, exact_max=200_000, seed=0)
        build_s = time.perf_counter() - t
        size_mb = sum(p.stat().st_size for p in folder.glob("*")) / 2**20
        del index
        t = time.perf_counter()
        index, action = ensure_index(folder, source, setting=kind, exact_max=200_000, seed=0)
        load_s = time.perf_counter() - t
        assert action == "loaded"
        _, found = index.search(queries, 10)
        recall = recall_at_k(found, exact_ids)
        encode_ms, search_ms, total_ms = [], [], []
        for i, q in enumerate(queries):
            text = TEXT_QUERIES[i % len(TEXT_QUERIES)]
            t0 = time.perf_counter()
            qv = query_vector(parse_query(text), encode)
            t1 = time.perf_counter()
            vec = q + 1e-6 * qv  # see the module docstring
            index.search(vec[None, :], 20)
            t2 = time.perf_counter()
            encode_ms.append((t1 - t0) * 1000)
            search_ms.append((t2 - t1) * 1000)
            total_ms.append((t2 - t0) * 1000)
        t = time.perf_counter()
        more = clustered(10_000, seed=3, centres=centres)
        source.photo_ids = _grown_ids(ids, len(more))  # type: ignore[assignment]
        source.embed = _grown_embed(data, more)  # type: ignore[assignment]
        source.signature = lambda: "v2"  # type: ignore[assignment]
        _, action2 = ensure_index(folder, source, setting=kind, exact_max=200_000, seed=0)
        add_s = time.perf_counter() - t
        row = {
            "kind": index.info.kind,
            "params": index.info.params,
            "build_s": round(build_s, 1),
            "calibrated_recall_at_10": index.info.recall_at_10,
            "recall_at_10_vs_exact": round(recall, 4),
            "index_mb_on_disk": round(size_mb, 1),
            "load_s": round(load_s, 2),
            "rss_mb_after_build": round(rss_mb(), 0),
            "rss_mb_index_delta": round(rss_mb() - rss_before, 0),
            "peak_rss_mb": round(peak_rss_mb(), 0),
            "query_ms": {
                "encode_p50": round(statistics.median(encode_ms), 2),
                "encode_p95": round(pct(encode_ms, 95), 2),
                "search_p50": round(statistics.median(search_ms), 2),
                "search_p95": round(pct(search_ms, 95), 2),
                "total_p50": round(statistics.median(total_ms), 2),
                "total_p95": round(pct(total_ms, 95), 2),
                "total_max": round(max(total_ms), 2),
            },
            "incremental_add_10k_s": round(add_s, 1),
            "incremental_action": action2,
        }
        results[chosen] = row
        print(json.dumps({chosen: row}, indent=2), flush=True)
        shutil.rmtree(folder, ignore_errors=True)
        del index
    results["load_end"] = load()
    print(f"load average at end: {load()}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
