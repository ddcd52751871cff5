"""Where a featurize run spends its wall time: start-up, steady state, the end.

    python benchmarks/featurize_timeline.py [--runs N]

Imports the 3,007 shared InstaNY100K JPEGs into a corpus once (not timed), then, per run, featurizes
a fresh copy of it in this process (``featurize_images``, the stage's defaults) and prints one line:
the stage's rate, the driver's own CPU time, when the first and the last batch came back, and how
long the final commit and the worker pool's close took.

For an A/B against an older checkout, alternate it with that checkout's code, run by run:
``PYTHONPATH=<old checkout>/src python benchmarks/featurize_timeline.py --runs 1`` (the host's speed
drifts by 10 % within the hour, so only runs taken in the same minutes compare).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from featurize import DATA, import_corpus  # the corpus set-up of benchmarks/featurize.py (same folder)


def _timed(owner: Any, name: str, events: list[tuple[str, float, float]]) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            events.append((name, start, time.perf_counter()))

    setattr(owner, name, wrapper)


def one_run(base: Path, dest: Path) -> str:
    from photocorpus.corpus import Corpus
    from photocorpus.features import pipeline
    from photocorpus.features.inference_pool import InferencePool
    from photocorpus.features.shard_writer import ShardWriter

    shutil.copytree(base, dest, symlinks=True)
    events: list[tuple[str, float, float]] = []
    _timed(ShardWriter, "commit", events)
    _timed(InferencePool, "close", events)
    returned: list[float] = []

    class Progress:
        def set_total(self, total: int) -> None:
            pass

        def __call__(self, done: int) -> None:
            returned.append(time.perf_counter())

    with Corpus.open(dest) as corpus:
        start, cpu = time.perf_counter(), time.process_time()
        report = pipeline.featurize_images(corpus, progress=Progress())  # type: ignore[arg-type]
        wall, driver_cpu = time.perf_counter() - start, time.process_time() - cpu
    shutil.rmtree(dest)
    last = {name: end - begin for name, begin, end in events}
    return (
        f"stage {report.images_per_s:.1f} img/s ({wall:.2f} s); driver CPU {driver_cpu:.2f} s; "
        f"first batch at {returned[0] - start:.2f} s, last at {returned[-1] - start:.2f} s; "
        f"final commit {last.get('commit', 0):.3f} s, pool close {last.get('close', 0):.3f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="featurize-timeline-") as tmp:
        base = Path(tmp) / "base"
        import_corpus([sys.executable, "-m", "photocorpus"], sorted(DATA.glob("*.jpg")), base)
        for run in range(args.runs):
            print(one_run(base, Path(tmp) / f"run{run}"), flush=True)


if __name__ == "__main__":
    main()
