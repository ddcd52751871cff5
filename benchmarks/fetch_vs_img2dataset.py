"""Fetch throughput and memory: ``photocorpus fetch`` against img2dataset on the same URL list.

What it does, in one command:

1. builds N test JPEGs at 1024 px (the shared InstaNY100K photos upscaled, quality 90; cached);
2. serves them from the test image server on 127.0.0.1, in its own process;
3. runs img2dataset (``processes_count=2``, 300x300 ``center_crop``, ``output_format=files``) and
   photocorpus (``init`` + ``harvest urls`` + ``fetch --size 300x300 --resize-mode center_crop``) on
   the same URL list, alternating, ``--rounds`` times each;
4. prints images/s for each (wall clock of the whole command, start-up included), the ratio, and the
   peak RSS of each tool's whole process tree (sum over the processes, sampled every 50 ms).

img2dataset lives in its own virtual environment (default ``/tmp/img2dataset-venv``; created with pip if
missing, or pass ``--img2dataset-python``). It gets 1,000 samples per shard so that both of its
processes have a shard to work on (with the default 10,000, one process would do all 2,000), JPEG
quality 95 (its default) and its default 256 threads; photocorpus is given the same JPEG quality,
``--host-rate 0`` (img2dataset has no rate limit) and ``--allow-private-urls`` (the server is local).
Everything else is each tool's default: photocorpus also removes frames and fsyncs every file.

    python benchmarks/fetch_vs_img2dataset.py [--photos 2000] [--rounds 2] [--img2dataset-python PATH]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "instany100k" / "images"
DEFAULT_I2D_VENV = Path("/tmp/img2dataset-venv")
SIZE = 300

I2D_SCRIPT = """
import json, sys
from img2dataset import download
a = json.loads(sys.argv[1])
download(url_list=a["urls"], input_format="txt", output_folder=a["out"], output_format="files",
         processes_count=2, image_size=a["size"], resize_mode="center_crop", encode_quality=95,
         number_sample_per_shard=1000, timeout=10, retries=0, enable_wandb=False,
         distributor="multiprocessing")
"""


def build_images(dest: Path, count: int) -> list[Path]:
    """``count`` 1024x1024 JPEGs (quality 90) made from the shared InstaNY100K photos, cached."""
    from PIL import Image

    marker = dest / f".built-{count}-1024-q90"
    if marker.exists():
        return sorted(dest.glob("*.jpg"))
    if not SHARED.is_dir():
        sys.exit(f"the shared InstaNY100K photos are missing: {SHARED}")
    sources = sorted(SHARED.glob("*.jpg"))
    if len(sources) < count:
        sys.exit(f"need {count} photos, {SHARED} has {len(sources)}")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for src in sources[:count]:
        with Image.open(src) as im:
            big = im.convert("RGB").resize((1024, 1024), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        big.save(buf, "JPEG", quality=90)
        (dest / src.name).write_bytes(buf.getvalue())
    marker.touch()
    return sorted(dest.glob("*.jpg"))


def img2dataset_python(given: str | None) -> str:
    if given:
        return given
    python = DEFAULT_I2D_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {DEFAULT_I2D_VENV} and installing img2dataset ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(DEFAULT_I2D_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "img2dataset"], check=True)
    return str(python)


class TreeRSS:
    """Peak of the summed RSS of every process in one session (the command and all its children)."""

    def __init__(self, session: int) -> None:
        self.session = session
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            total = 0
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    stat = Path(f"/proc/{entry.name}/stat").read_text()
                    fields = stat[stat.rindex(")") + 2 :].split()
                    if int(fields[3]) != self.session:  # field 6 of stat: the session id
                        continue
                    for line in Path(f"/proc/{entry.name}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1]) * 1024
                            break
                except (OSError, ValueError, IndexError):
                    continue
            self.peak = max(self.peak, total)
            self._stop.wait(0.05)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def timed(
    commands: list[list[str]], log: Path, env: dict[str, str] | None = None
) -> tuple[float, int, list[float], float]:
    """Run commands one after another.

    Returns total wall seconds, peak tree RSS, wall seconds per command, and the CPU seconds (user +
    system) of the commands and all their children. The CPU figure hardly depends on how busy the
    machine is; the wall clock does.
    """
    peak = 0
    each = []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log, "ab") as out:
        for cmd in commands:
            start = time.perf_counter()
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=out,
                start_new_session=True,
                cwd=ROOT,
                env={**os.environ, **(env or {})},
            )
            sampler = TreeRSS(proc.pid)
            code = proc.wait()
            peak = max(peak, sampler.stop())
            each.append(time.perf_counter() - start)
            if code != 0:
                sys.exit(f"{' '.join(cmd)} failed ({code}); see {log}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return sum(each), peak, each, cpu


def run_img2dataset(python: str, urls: Path, out: Path, log: Path) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    args = json.dumps({"urls": str(urls), "out": str(out), "size": SIZE})
    env = {"NO_ALBUMENTATIONS_UPDATE": "1"}
    seconds, rss, _, cpu = timed([[python, "-c", I2D_SCRIPT, args]], log, env=env)
    ok = sum(json.loads(p.read_text()).get("successes", 0) for p in out.glob("*_stats.json"))
    return {"seconds": seconds, "images": ok, "rss": rss, "cpu": cpu}


def run_photocorpus(urls: Path, out: Path, log: Path) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    pc = [sys.executable, "-m", "photocorpus"]
    fetch = [*pc, "fetch", "-C", str(out), "-q", "--size", f"{SIZE}x{SIZE}", "--resize-mode", "center_crop"]
    fetch += ["--quality", "95", "--host-rate", "0", "--allow-private-urls"]
    harvest = [*pc, "harvest", "urls", str(urls), "-C", str(out), "-q"]
    seconds, rss, each, cpu = timed([[*pc, "init", str(out)], harvest, fetch], log)
    status = subprocess.run(
        [*pc, "status", "--json", "-C", str(out)], capture_output=True, text=True, check=True
    )
    done = json.loads(status.stdout)["stages"].get("fetch", {}).get("done", 0)
    return {"seconds": seconds, "fetch_seconds": each[2], "images": done, "rss": rss, "cpu": cpu}


def describe(tool: str, r: dict[str, float]) -> str:
    rate = r["images"] / r["seconds"]
    line = f"{tool}: {r['images']:.0f} images in {r['seconds']:.2f} s = {rate:.1f} images/s"
    if "fetch_seconds" in r:
        line += f" (fetch alone {r['fetch_seconds']:.2f} s)"
    return line + f", {r['cpu']:.1f} CPU s, peak RSS {r['rss'] / 2**20:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--img2dataset-python", help="python of a venv with img2dataset installed")
    parser.add_argument("--work", type=Path, default=Path("/tmp/photocorpus-bench-fetch"))
    args = parser.parse_args()

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    images = build_images(work / "images", args.photos)
    i2d = img2dataset_python(args.img2dataset_python)
    version = subprocess.run(
        [i2d, "-c", "import importlib.metadata as m; print(m.version('img2dataset'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.image_server", "--dir", str(work / "images")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(server.stdout.readline().split()[1])  # type: ignore[union-attr]
        urls = work / "urls.txt"
        urls.write_text("".join(f"http://127.0.0.1:{port}/files/{p.name}\n" for p in images))
        log = work / "runs.log"
        log.unlink(missing_ok=True)
        print(f"{len(images)} JPEGs at 1024x1024 q90 served from 127.0.0.1:{port}; img2dataset {version}")
        print(f"load average before: {os.getloadavg()[0]:.2f}; cores: {os.cpu_count()}")
        results: dict[str, list[dict[str, float]]] = {"img2dataset": [], "photocorpus": []}
        for round_no in range(1, args.rounds + 1):
            r = run_img2dataset(i2d, urls, work / "out-img2dataset", log)
            results["img2dataset"].append(r)
            print(f"round {round_no} " + describe("img2dataset", r), flush=True)
            r = run_photocorpus(urls, work / "out-photocorpus", log)
            results["photocorpus"].append(r)
            print(f"round {round_no} " + describe("photocorpus", r), flush=True)
    finally:
        server.terminate()
        server.wait()

    def rate(runs: list[dict[str, float]], key: str = "seconds") -> float:
        return statistics.mean(r["images"] / r[key] for r in runs)

    i2d_rate, pc_rate = rate(results["img2dataset"]), rate(results["photocorpus"])
    pc_fetch_rate = rate(results["photocorpus"], "fetch_seconds")
    i2d_rss = max(r["rss"] for r in results["img2dataset"])
    pc_rss = max(r["rss"] for r in results["photocorpus"])
    i2d_cpu = statistics.mean(1000 * r["cpu"] / r["images"] for r in results["img2dataset"])
    pc_cpu = statistics.mean(1000 * r["cpu"] / r["images"] for r in results["photocorpus"])
    print()
    print(f"{'tool':<28}{'images/s':>10}{'CPU ms/image':>14}{'peak RSS MiB':>14}")
    print(f"{'img2dataset ' + version:<28}{i2d_rate:>10.1f}{i2d_cpu:>14.1f}{i2d_rss / 2**20:>14.0f}")
    print(f"{'photocorpus (end to end)':<28}{pc_rate:>10.1f}{pc_cpu:>14.1f}{pc_rss / 2**20:>14.0f}")
    print(f"{'photocorpus (fetch alone)':<28}{pc_fetch_rate:>10.1f}")
    print(f"ratio photocorpus / img2dataset: {pc_rate / i2d_rate:.2f}x images/s end to end")
    print(f"                                 {pc_fetch_rate / i2d_rate:.2f}x images/s, fetch alone")
    print(f"                                 {i2d_cpu / pc_cpu:.2f}x less CPU per image")
    print(f"photocorpus peak RSS <= 1 GiB: {'yes' if pc_rss <= 2**30 else 'NO'}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    (work / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
