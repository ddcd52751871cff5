"""Featurize on a GPU: the torch CUDA backend against onnxruntime on the CPU, on the same photos.

What it checks: that ``featurize`` picks CUDA by itself when a GPU is present (``backend auto``:
onnxruntime's CUDA provider if installed, else torch CUDA), how fast the stage runs there end to end
(decode workers, inference, store, catalog commits), and that the features do not depend on the device
(largest absolute difference of the stored float16 features and logits, and top-1 / top-5 agreement
of the ImageNet labels).

Each backend gets its own fresh corpus of the same photos; a 64-photo warm-up run (model build, ONNX
export, CUDA context) comes first and is not timed.

    python benchmarks/featurize_gpu.py [--images DIR] [--limit N] [--workers 8] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "instany100k" / "images"


def _matrix(corpus: Corpus, name: str) -> np.ndarray:
    from photocorpus import feature_store

    fs = feature_store.open_feature_set(corpus, name)
    return np.asarray(fs.matrix(), dtype=np.float32)[np.argsort(fs.photo_ids())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--limit", type=int, default=1500, help="photos (first N by name)")
    parser.add_argument("--workers", type=int, default=8, help="decode workers")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cpu-threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    from photocorpus.corpus import Corpus
    from photocorpus.features.backends import choose_backend
    from photocorpus.features.pipeline import featurize_images
    from photocorpus.importing import import_folder

    work = Path(tempfile.mkdtemp(prefix="featurize-gpu-"))
    os.environ.setdefault("PHOTOCORPUS_CACHE_DIR", str(work / "cache"))
    src = work / "src" / "photos"
    src.mkdir(parents=True)
    for p in sorted(args.images.glob("*.jpg"))[: args.limit]:
        os.symlink(p.resolve(), src / p.name)
    result: dict = {
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpus": os.cpu_count(),
        "auto_backend": "/".join(choose_backend("auto")),
    }
    corpora = {}
    for name, backend, threads in (("gpu", "auto", None), ("cpu_onnx", "onnx", args.cpu_threads)):
        corpus = Corpus.create(work / name)
        import_folder(corpus, src.parent, follow_symlinks=True, workers=args.workers)
        common = {
            "workers": args.workers,
            "batch_size": args.batch_size,
            "backend": backend,
            "threads": threads,
        }
        featurize_images(corpus, limit=64, **common)  # warm-up, not timed
        started = time.perf_counter()
        report = featurize_images(corpus, **common)
        seconds = time.perf_counter() - started
        corpora[name] = corpus
        result[name] = {
            "backend": report.backend,
            "photos": report.computed,
            "seconds": round(seconds, 2),
            "img_per_s": round(report.computed / seconds, 1),
            "peak_rss_mb": round(report.peak_rss_mb, 1),
        }
        print(name, result[name], flush=True)
    for fname in ("efficientnet-lite0", "efficientnet-lite0.logits"):
        a, b = _matrix(corpora["gpu"], fname), _matrix(corpora["cpu_onnx"], fname)
        entry = {
            "rows": a.shape[0],
            "max_abs_diff": float(np.abs(a - b).max()),
            "max_abs": float(np.abs(b).max()),
        }
        if fname.endswith("logits"):
            top5a, top5b = np.argsort(-a, axis=1)[:, :5], np.argsort(-b, axis=1)[:, :5]
            entry["top1_agreement"] = float((a.argmax(1) == b.argmax(1)).mean())
            entry["top5_set_agreement"] = float(
                np.mean([set(x) == set(y) for x, y in zip(top5a, top5b, strict=True)])
            )
        result[fname] = entry
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
