"""Process pools end with their driver: a command killed with SIGKILL leaves no worker behind.

A ``concurrent.futures`` worker blocks on its call queue and (spawned) holds both ends of that pipe,
so it never sees end-of-file when the driver dies; without a watchdog every ``kill -9`` of a command
left its workers waiting forever. Each pool initializer photocorpus uses is checked here in a real
child driver process, killed with SIGKILL while its workers are busy.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers import process_alive

DRIVER = textwrap.dedent(
    """
    import json, multiprocessing, os, sys, time
    from concurrent.futures import ProcessPoolExecutor

    def busy(_):
        time.sleep(600)

    if __name__ == "__main__":
        module, name = sys.argv[1].rsplit(".", 1)
        init = getattr(__import__(module, fromlist=[name]), name)
        args = tuple(json.loads(sys.argv[2]))
        # every photocorpus pool is made by spawn_pool, which runs worker_setup, then the pool's own
        from photocorpus.executors import spawn_pool

        pool = spawn_pool(2, None if name == "worker_setup" else init, args)
        pool.submit(os.getpid).result()  # the first worker has run its initializer
        pids = [pool.submit(os.getpid).result() for _ in range(4)]
        for _ in range(2):
            pool.submit(busy, None)
        print(" ".join(str(p) for p in sorted(set(pids) | set(pool._processes))), flush=True)
        time.sleep(600)
    """
)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from Linux /proc")
@pytest.mark.parametrize(
    ("initializer", "initargs"),
    [
        ("photocorpus.executors.worker_setup", []),  # LocalExecutor (import, dedup...), featurize decode
        ("photocorpus.fetch.worker.init_worker", []),  # fetch's render workers
        # featurize's model workers (raw pixels: the runner without a model file, loaded at once)
        ("photocorpus.features.inference_pool.init_inference_worker", ["raw-pixels", None, "auto", 1]),
    ],
)
def test_workers_exit_when_their_driver_is_killed(tmp_path: Path, initializer: str, initargs: list) -> None:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, str(script), initializer, json.dumps(initargs)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        workers = [int(p) for p in line.split()]
        assert len(workers) == 2 and all(process_alive(p) for p in workers), line
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 20
    while any(process_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in workers if process_alive(p)]
    info = {p: Path(f"/proc/{p}/status").read_text() for p in left}
    for p in left:  # do not leak them into the rest of the session
        os.kill(p, signal.SIGKILL)
    assert not left, f"workers {left} outlived their killed driver: {info}"
