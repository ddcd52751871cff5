"""Dedup speed: photocorpus against imagededup (PHash), and near-duplicate search at a million hashes.

1. **Hashing throughput** on the same real photos (default: the 3,007 InstaNY100K JPEGs): our
   reduced-scale decode + batched DCT pHash in a process pool, against imagededup's
   ``PHash.encode_images`` with the same number of workers, plus both duplicate searches over the
   encodings (imagededup's brute force, our multi-index hashing).
2. **Million-scale search**: 1,000,000 random 64-bit hashes with 5,000 planted pairs at Hamming
   distance 1-8, threshold 8: time, share of planted pairs found, peak RSS (measured in a child
   process that does only this).

imagededup lives in its own throwaway venv (it pulls torch and torchvision, which must never enter the
project's venv). Pass its python with ``--imagededup-python``, or let the script build
``/tmp/imagededup-venv`` (``pip install imagededup==0.3.3``, a few GB).

    python benchmarks/dedup_vs_imagededup.py --workers 2
    python benchmarks/dedup_vs_imagededup.py --skip-imagededup   # only our side and the 1M search
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = ROOT.parent / "shared" / "data" / "instany100k" / "images"
PEER_VENV = Path("/tmp/imagededup-venv")
PEER_VERSION = "0.3.3"


def ensure_peer_python(given: str | None) -> str:
    """The imagededup venv's python: the one given, or a fresh /tmp venv built once."""
    if given:
        return given
    python = PEER_VENV / "bin" / "python"
    check = [str(python), "-c", "import imagededup"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return str(python)
    print(f"building {PEER_VENV} (imagededup=={PEER_VERSION}, pulls torch)...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"imagededup=={PEER_VERSION}"], check=True)
    return str(python)


def ours_throughput(paths: list[Path], workers: int, repeats: int) -> dict:
    from photocorpus.curate.dedup import HASH_SHARD, _hash_shard
    from photocorpus.curate.mih import hamming_pairs
    from photocorpus.executors import LocalExecutor

    items = [(i, str(p), "") for i, p in enumerate(paths)]
    shards = [items[i : i + HASH_SHARD] for i in range(0, len(items), HASH_SHARD)]
    best = float("inf")
    codes = []
    with LocalExecutor(workers) as pool:
        list(pool.map_batches(_hash_shard, [shards[:workers]], shard_size=1))  # start the workers
        for _ in range(repeats):
            t0 = time.perf_counter()
            results = [
                r for _b, res in pool.map_batches(_hash_shard, [shards], shard_size=1) for s in res for r in s
            ]
            best = min(best, time.perf_counter() - t0)
            codes = [r.hashes.phash for r in results if r.hashes]
    import numpy as np

    arr = np.asarray(codes, dtype=np.uint64)
    t0 = time.perf_counter()
    pairs = hamming_pairs(arr, 10)
    search = time.perf_counter() - t0
    return {
        "images": len(paths),
        "seconds": round(best, 3),
        "images_per_s": round(len(paths) / best, 1),
        "search_s": round(search, 3),
        "pairs_within_10": len(pairs),
    }


PEER_SCRIPT = textwrap.dedent(
    """
    import json, sys, time, warnings
    warnings.simplefilter("ignore")
    # imagededup builds its CNN method's MobileNet (downloading weights) when imagededup.methods is
    # imported, even for PHash; offline, let it build that unused network without weights instead.
    import torchvision.models as tvm
    _small = tvm.mobilenet_v3_small
    tvm.mobilenet_v3_small = lambda *a, weights=None, **kw: _small(*a, weights=None, **kw)
    from imagededup.methods import PHash
    image_dir, workers, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    hasher = PHash(verbose=False)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        enc = hasher.encode_images(image_dir=image_dir, num_enc_workers=workers)
        best = min(best, time.perf_counter() - t0)
    t0 = time.perf_counter()
    dups = hasher.find_duplicates(encoding_map=enc, max_distance_threshold=10, num_dist_workers=workers)
    search = time.perf_counter() - t0
    pairs = sum(len(v) for v in dups.values()) // 2
    print(json.dumps({"images": len(enc), "seconds": round(best, 3),
                      "images_per_s": round(len(enc) / best, 1), "search_s": round(search, 3),
                      "pairs_within_10": pairs}))
    """
)


def peer_throughput(python: str, image_dir: Path, workers: int, repeats: int) -> dict:
    proc = subprocess.run(
        [python, "-c", PEER_SCRIPT, str(image_dir), str(workers), str(repeats)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"imagededup run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


MILLION_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, time
    import numpy as np
    from photocorpus.curate.mih import hamming_pairs
    n, planted, t, seed = (int(v) for v in sys.argv[1:5])
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)
    pick = rng.choice(n, size=2 * planted, replace=False)
    src, dst = pick[:planted], pick[planted:]
    for k in range(planted):
        flips = rng.choice(64, size=1 + k % t, replace=False).astype(np.uint64)
        codes[dst[k]] = codes[src[k]] ^ np.bitwise_or.reduce(np.uint64(1) << flips)
    hamming_pairs(codes[:1000], t)  # compile the kernel outside the timing (cached on disk after)
    t0 = time.perf_counter()
    pairs = hamming_pairs(codes, t)
    elapsed = time.perf_counter() - t0
    found = set(zip(pairs.left.tolist(), pairs.right.tolist()))
    hits = sum((min(a, b), max(a, b)) in found for a, b in zip(src.tolist(), dst.tolist()))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"hashes": n, "planted": planted, "threshold": t, "seconds": round(elapsed, 2),
                      "found": hits, "recall": round(hits / planted, 4), "pairs": len(pairs),
                      "peak_rss_mb": round(rss, 1)}))
    """
)


def million_search(n: int, planted: int, threshold: int, seed: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", MILLION_SCRIPT, str(n), str(planted), str(threshold), str(seed)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--images", type=Path, default=DEFAULT_IMAGES, help="folder of JPEGs (default: InstaNY100K)"
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    ap.add_argument("--imagededup-python", default=None, help="python of a venv with imagededup")
    ap.add_argument("--skip-imagededup", action="store_true")
    ap.add_argument("--million", type=int, default=1_000_000)
    ap.add_argument("--planted", type=int, default=5_000)
    ap.add_argument("--threshold", type=int, default=8)
    args = ap.parse_args(argv)

    paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    result: dict = {"machine": f"{os.cpu_count()} CPUs", "workers": args.workers}
    result["photocorpus"] = ours_throughput(paths, args.workers, args.repeats)
    if not args.skip_imagededup:
        with tempfile.TemporaryDirectory() as tmp:
            # imagededup reads a folder: give it exactly the same files (hard links, no copies)
            folder = Path(tmp) / "images"
            folder.mkdir()
            for p in paths:
                os.link(p, folder / p.name)
            python = ensure_peer_python(args.imagededup_python)
            result["imagededup"] = peer_throughput(python, folder, args.workers, args.repeats)
        ratio = result["photocorpus"]["images_per_s"] / result["imagededup"]["images_per_s"]
        result["throughput_ratio"] = round(ratio, 2)
    result["million"] = million_search(args.million, args.planted, args.threshold, seed=0)
    print(json.dumps(result, indent=1))
    ok = result["million"]["recall"] >= 0.99 and result["million"]["seconds"] <= 60
    ok = ok and result["million"]["peak_rss_mb"] <= 2048
    if "throughput_ratio" in result:
        ok = ok and result["throughput_ratio"] >= 3
    print("PASS" if ok else "FAIL", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
