"""Featurize throughput on the 3,007 shared InstaNY100K JPEGs: end to end vs bare onnxruntime.

    python benchmarks/featurize.py [--model efficientnet-lite0] [--workers N] [--threads N]
                                   [--batch-size N] [--repeat N]

``--model`` is any EfficientNet-Lite (``efficientnet-lite0``, ``-lite1``, ``-lite2``): the bare run
uses that model's cached export and input side, the stage runs ``featurize --model`` with it.

1. Imports the photos into a fresh corpus (hard links; not timed).
2. Bare onnxruntime: every photo decoded and normalised in advance (not timed), then only
   ``session.run`` over the whole set, with the same threads, in batches of the same size and of one
   image; the faster counts.
3. End to end: ``photocorpus featurize --model MODEL`` in a subprocess on a fresh copy
   of the corpus, ``--runs`` times (default 3): decode in worker processes, inference, labels,
   ontology categories, store shards, catalog commits, compaction. Reported both as the stage's own
   rate (from its start, model load and worker start-up included) and as the whole command's wall
   time (Python start-up and imports included); the median run counts, every run is listed.
4. Bare onnxruntime again, so that a change in machine load during the run shows up.

Prints one JSON object with the rates, their ratio, peak RSS of the featurize process and of its
largest worker, and the load average before and after (other processes on the same cores make
every number here lower; compare the ratio, which is measured in one run). It also prints CPU time
per image (all threads and processes) for bare onnxruntime and for the whole command: their ratio
(``cpu_efficiency``) says how much work the pipeline adds on top of inference, and unlike the
rates it hardly depends on what else the machine is running.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from photocorpus.backbones.onnx_runtime import OnnxImageModel

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "instany100k" / "images"


def bare_onnxruntime(
    x: np.ndarray, model_name: str, threads: int, batch_size: int, repeat: int
) -> list[float]:
    """``session.run`` alone, with onnxruntime's default spin-waiting threads and without, on batches of
    ``batch_size`` and of one image (what the stage runs on the CPU); the fastest is the bare speed
    (spinning wins on an idle machine, loses when cores are shared)."""
    from photocorpus.backbones.onnx_runtime import OnnxImageModel, ensure_efficientnet_lite_onnx

    rates = []
    for spin in ("1", "0"):
        config = {"session.intra_op.allow_spinning": spin}
        onnx_file = ensure_efficientnet_lite_onnx(model_name)
        model = OnnxImageModel(onnx_file, num_threads=threads, session_config=config)
        for size in sorted({1, batch_size}):
            rates.append(_timed_runs(model, x, size, repeat))
    return max(rates, key=lambda r: float(np.mean(r)))


def _timed_runs(model: OnnxImageModel, x: np.ndarray, batch_size: int, repeat: int) -> list[float]:
    model.run(x[:batch_size])  # warm-up: arena allocation, kernel selection
    rates = []
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(x), batch_size):
            model.run(x[i : i + batch_size])
        rates.append(len(x) / (time.perf_counter() - start))
        CPU_MS_PER_IMAGE.append(1000 * (time.process_time() - cpu) / len(x))
    return rates


CPU_MS_PER_IMAGE: list[float] = []  # bare runs: CPU time (all threads) per image, lowest is used


def predecode(paths: list[Path], crop: int) -> tuple[np.ndarray, float]:
    """The photos as the model's normalised input (``crop`` px), and the seconds decoding took."""
    from photocorpus.image_preprocess import load_rgb, normalize, resize_center_crop, resize_size_for

    resize = resize_size_for(crop)
    start = time.perf_counter()
    crops = np.stack(
        [np.asarray(resize_center_crop(load_rgb(p, min_side=resize), resize, crop)) for p in paths]
    )
    decode_s = time.perf_counter() - start
    return normalize(crops), decode_s


def import_corpus(cli: list[str], paths: list[Path], dest: Path) -> None:
    """A corpus at ``dest`` holding ``paths``, imported the way a user would (not timed)."""
    src = dest.parent / "src" / "nyc"
    src.mkdir(parents=True)
    for p in paths:
        (src / p.name).symlink_to(p)
    subprocess.run([*cli, "init", str(dest)], check=True, stdout=subprocess.DEVNULL)
    # the links point outside the imported folder: import refuses them unless told to follow
    subprocess.run([*cli, "import", str(src.parent), "-C", str(dest), "--quiet", "--follow-symlinks"],
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip


def featurize_command(
    cli: list[str], corpus: Path, model: str, threads: int, batch_size: int, workers: int | None, photos: int
) -> dict[str, Any]:
    """One ``photocorpus featurize`` run: the stage's rate, the command's rate and CPU per image."""
    cmd = [*cli, "featurize", "-C", str(corpus), "--model", model, "--json", "--quiet", "--threads",
           str(threads), "--batch-size", str(batch_size)]  # fmt: skip
    if workers is not None:
        cmd += ["--workers", str(workers)]
    start, usage = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    done = resource.getrusage(resource.RUSAGE_CHILDREN)  # the command and its worker processes
    cpu_s = (done.ru_utime - usage.ru_utime) + (done.ru_stime - usage.ru_stime)
    report = json.loads(out.stdout)
    return {
        "stage": float(report["images_per_s"]),
        "command": photos / wall,
        "cpu_ms": 1000 * cpu_s / photos,
        "report": report,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="efficientnet-lite0", help="efficientnet-lite0, -lite1 or -lite2")
    parser.add_argument("--workers", type=int, default=None, help="decode workers (default: the setting)")
    parser.add_argument("--threads", type=int, default=None, help="inference threads (default: all cores)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=1, help="bare-onnxruntime passes before and after")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N photos")
    parser.add_argument("--runs", type=int, default=3, help="featurize runs (the median counts)")
    args = parser.parse_args()

    from photocorpus.backbones import LITE_VARIANTS
    from photocorpus.backbones.onnx_runtime import default_num_threads, ensure_efficientnet_lite_onnx
    from photocorpus.config import FeaturizeSettings

    defaults = FeaturizeSettings()
    threads = args.threads or default_num_threads()
    batch_size = args.batch_size or defaults.batch_size
    paths = sorted(DATA.glob("*.jpg"))[: args.limit]
    if args.model not in LITE_VARIANTS:
        parser.error(f"--model must be one of {', '.join(LITE_VARIANTS)}")
    crop = LITE_VARIANTS[args.model].input_size
    ensure_efficientnet_lite_onnx(args.model)  # the one-off export is not what we measure

    result: dict[str, object] = {
        "model": args.model,
        "input_px": crop,
        "photos": len(paths),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "threads": threads,
        "batch_size": batch_size,
        "workers": args.workers if args.workers is not None else "setting (0 = one per core)",
        "load_before": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="featurize-bench-") as tmp:
        base = Path(tmp) / "base"
        cli = [sys.executable, "-m", "photocorpus"]
        import_corpus(cli, paths, base)

        x, decode_s = predecode(paths, crop)
        result["decode_only_img_per_s_1_core"] = round(len(paths) / decode_s, 1)
        before = bare_onnxruntime(x, args.model, threads, batch_size, args.repeat)
        del x

        runs = []
        for run in range(max(1, args.runs)):
            corpus = Path(tmp) / f"run{run}"
            shutil.copytree(base, corpus, symlinks=True)  # a fresh corpus each time (not timed)
            runs.append(
                featurize_command(cli, corpus, args.model, threads, batch_size, args.workers, len(paths))
            )
            shutil.rmtree(corpus)

        x, _ = predecode(paths, crop)
        after = bare_onnxruntime(x, args.model, threads, batch_size, args.repeat)

    bare = float(np.mean(before + after))
    median = sorted(runs, key=lambda r: r["stage"])[len(runs) // 2]
    result.update(
        bare_onnxruntime_img_per_s=round(bare, 1),
        bare_runs=[round(r, 1) for r in before + after],
        featurize_stage_img_per_s=round(median["stage"], 1),
        featurize_command_img_per_s=round(median["command"], 1),
        stage_runs=[round(r["stage"], 1) for r in runs],
        command_runs=[round(r["command"], 1) for r in runs],
        stage_over_bare=round(median["stage"] / bare, 3),
        command_over_bare=round(median["command"] / bare, 3),
        bare_cpu_ms_per_img=round(min(CPU_MS_PER_IMAGE), 2),
        command_cpu_ms_per_img=round(median["cpu_ms"], 2),
        cpu_efficiency=round(min(CPU_MS_PER_IMAGE) / median["cpu_ms"], 3),
        computed=median["report"]["computed"],
        backend=median["report"]["backend"],
        peak_rss_mb=max(r["report"]["peak_rss_mb"] for r in runs),
        workers_peak_rss_mb=max(r["report"]["workers_peak_rss_mb"] for r in runs),
        load_after=os.getloadavg(),
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
