"""Load benchmark of `photocorpus serve`: 50 concurrent browsers for 60 s on a 100,000-photo corpus,
with a `photocorpus curate` run on the same corpus meanwhile (issue #22's acceptance).

    python benchmarks/serve_load.py                              # 100k photos, 50 clients, 60 s, curate
    python benchmarks/serve_load.py --photos 20000 --seconds 20 --clients 10 --no-curate   # a quick run
    python benchmarks/serve_load.py --think-s 0                  # closed loop: saturation throughput

What runs:

1. the cached corpus (``benchmarks/serve_corpus.py``: 8,007 real photos through the real stages, grown
   to ``--photos`` by copies under new ids) is copied for this run (catalog copied, files hard-linked);
2. ``photocorpus serve`` starts in a subprocess on a free loopback port; the token is read from the
   URL it prints and ``/healthz`` is polled until it answers;
3. each client is its own browser: it opens ``/?token=T`` (the token cookie and the csrf cookie are
   set, the redirect to ``/grid`` is followed) and then, until the time is up, picks a request kind at
   random by ``--mix`` weights: a grid page (HTML, random filters, sort and page), a photo page
   (HTML), a thumbnail, a text search (``/api/search``) or a decision (``POST /api/decisions`` with the
   ``X-CSRF-Token`` header and a unique ``request_id``; a 503 ``retry`` answer is retried with the same
   ``request_id`` after its Retry-After, as the page's JS does), then waits a random think time
   (uniform in 0..2 x ``--think-s``: people click, they do not loop);
4. one warm-up request per kind runs before the clock starts and is reported apart (the first search
   loads the text model and builds the search index; that is a once-per-server cost, not load);
5. ``photocorpus curate`` starts with the clock (``--no-curate``: not at all);
6. afterwards: p50/p95/max and errors per kind, throughput, and the lost-decision check. Every
   decision answered 200 must be in the audit table, read twice: through ``GET /api/decisions``
   (paged by ``after_id``) and straight from the catalog (by ``request_id``, with the id the server
   answered). Then the server stops and ``photocorpus verify`` runs on the corpus.

Targets (issue #22): p95 < 200 ms for grid and photo pages, < 500 ms for search, zero errors, zero
lost decisions. The process exits 1 when a target is missed, so a run can gate a change.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_corpus import DEFAULT_WORK, build, fresh_copy

KINDS = ("grid", "photo", "thumb", "search", "decision")
TARGET_P95_MS = {"grid": 200.0, "photo": 200.0, "search": 500.0}
DEFAULT_MIX = "grid=35,photo=25,thumb=15,search=10,decision=15"
SEARCH_QUERIES = [
    "dog", "cat on a sofa", "sunset over the river", "night city lights", "flowers", "portrait of a woman",
    "baby", "car", "birds in the sky", "clouds", "beach and sea", "tree in autumn", "people at a party",
    "pizza", "new york skyline", "bridge", "coffee", "street art", "snow", "a plate of food",
]  # fmt: skip
DECISION_KINDS = ["exclude", "include", "set_label", "note", "set_bot", "set_quality", "not_duplicate",
                  "confirm_group", "split_group"]  # fmt: skip
RETRY_LIMIT = 10
REQUEST_TIMEOUT_S = 60.0


@dataclass
class Sample:
    """What the catalog holds, read once before the run, to build requests a person could make."""

    photo_ids: list[int]
    labels: list[str]
    sources: list[str]
    imagenet: list[str]
    categories: list[str]
    licenses: list[str]
    clusters: list[str]
    flags: list[str]
    groups: list[list[int]]  # duplicate groups of 3+ photos (decisions on groups)


@dataclass
class Result:
    kind: str
    status: int  # 0: no answer (timeout, connection error)
    ms: float
    error: str = ""


@dataclass
class Acked:
    request_id: str
    decision_id: int
    kind: str


@dataclass
class Tally:
    results: list[Result] = field(default_factory=list)
    acked: list[Acked] = field(default_factory=list)
    unacked_request_ids: list[str] = field(default_factory=list)
    retries_503: int = 0
    warmup: dict[str, Result] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds in the measured window, by who


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------ corpus
def read_sample(corpus_dir: Path, seed: int) -> Sample:
    conn = sqlite3.connect(f"file:{corpus_dir / 'catalog.sqlite'}?mode=ro", uri=True)
    try:

        def col(sql: str) -> list[Any]:
            return [r[0] for r in conn.execute(sql) if r[0] is not None]

        flags: set[str] = set()
        for text in col("SELECT DISTINCT quality_flags FROM curation WHERE quality_flags IS NOT NULL"):
            flags.update(json.loads(text))
        rng = random.Random(seed)
        group_rows = conn.execute(
            "SELECT dup_group, photo_id FROM curation WHERE dup_group IS NOT NULL "
            "ORDER BY dup_group, photo_id"
        ).fetchall()
        groups: dict[int, list[int]] = defaultdict(list)
        for g, pid in group_rows:
            groups[g].append(pid)
        big = [members for members in groups.values() if len(members) >= 3]
        rng.shuffle(big)
        return Sample(
            photo_ids=col("SELECT id FROM photos"),
            labels=col("SELECT DISTINCT label FROM photo_labels"),
            sources=col("SELECT DISTINCT source FROM photos"),
            imagenet=col("SELECT DISTINCT class_name FROM image_labels WHERE rank = 1 LIMIT 200"),
            categories=col("SELECT DISTINCT category FROM image_categories"),
            licenses=col("SELECT DISTINCT license FROM photos"),
            clusters=col("SELECT DISTINCT run || ':' || cluster FROM clusters LIMIT 100"),
            flags=sorted(flags),
            groups=big,
        )
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------ server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``photocorpus serve`` in a subprocess; its printed URL gives the token."""

    def __init__(self, corpus_dir: Path, port: int, log_path: Path) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.token: str | None = None
        self._found = threading.Event()
        self._log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "photocorpus",
                "serve",
                "-C",
                str(corpus_dir),
                "--port",
                str(port),
                "--no-browser",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},  # the URL line must not wait in a pipe buffer
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._log.write(line)
            self._log.flush()
            match = re.search(r"[?&]token=([A-Za-z0-9_\-]+)", line)
            if match and self.token is None:
                self.token = match.group(1)
                self._found.set()

    def wait_ready(self, timeout_s: float = 180) -> float:
        import httpx

        started = time.perf_counter()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(
                    f"photocorpus serve exited with {self.proc.returncode}; see {self._log.name}"
                )
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200 and self._found.wait(0.1):
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"photocorpus serve did not answer /healthz (or print its token) in {timeout_s} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# ----------------------------------------------------------------------------------------- clients
def grid_params(rng: random.Random, s: Sample) -> dict[str, Any]:
    """Zero to two filters a person would combine, a sort, and mostly early pages."""
    choices: list[tuple[str, Any]] = [
        ("label", lambda: rng.choice(s.labels)),
        ("source", lambda: rng.choice(s.sources)),
        ("split", lambda: rng.choice(["train", "val", "test", "none"])),
        ("dup", lambda: rng.choice(["unique", "duplicate", "representative", "grouped"])),
        ("bot", lambda: rng.choice(["0", "1"])),
        ("has_caption", lambda: rng.choice(["0", "1"])),
        ("excluded", lambda: rng.choice(["0", "1"])),
        ("reviewed", lambda: rng.choice(["0", "1"])),
        ("date_from", lambda: f"20{rng.randint(5, 15):02d}-01-01"),
    ]
    for name, values in (
        ("imagenet", s.imagenet),
        ("category", s.categories),
        ("license", s.licenses),
        ("cluster", s.clusters),
        ("flag", s.flags),
    ):
        if values:
            choices.append((name, lambda v=values: rng.choice(v)))
    params: dict[str, Any] = {}
    for name, pick in rng.sample(choices, rng.choice([0, 1, 1, 2])):
        params[name] = pick()
    params["sort"] = rng.choice(["date", "-date", "score", "size"])
    params["page"] = rng.choice([1, 1, 1, 2, 3, 5, 10, 50])
    params["per_page"] = rng.choice([60, 60, 100])
    return params


class Client:
    """One browser: its own cookies (token + csrf), its own random stream, its own duplicate groups."""

    def __init__(self, n: int, server: Server, sample: Sample, tally: Tally, seed: int, groups: list) -> None:
        import httpx

        self.n = n
        self.server = server
        self.s = sample
        self.tally = tally
        self.rng = random.Random(seed * 1000 + n)
        self.groups = groups  # this client's alone: no two clients split the same group
        self.http = httpx.AsyncClient(base_url=server.base, timeout=REQUEST_TIMEOUT_S, follow_redirects=True)
        self.csrf = ""

    async def login(self) -> None:
        """``GET /?token=`` as the printed URL does; the redirect's own answer carries both cookies,
        and the grid it points to is left to the measured requests (50 cold grids at once would
        only time the start-up)."""
        r = await self.http.get("/", params={"token": self.server.token}, follow_redirects=False)
        if r.status_code not in (200, 302, 303, 307):
            raise SystemExit(f"GET /?token= answered {r.status_code}: {r.text[:200]}")
        names = [name for name in self.http.cookies if "csrf" in name]
        if not names:
            raise SystemExit(f"no csrf cookie after GET /?token= (cookies: {list(self.http.cookies)})")
        self.csrf = self.http.cookies[names[0]]

    async def timed(self, kind: str, method: str, url: str, **kw: Any) -> tuple[Result, Any]:
        t = time.perf_counter()
        try:
            r = await self.http.request(method, url, **kw)
            await r.aread()
            res = Result(kind, r.status_code, (time.perf_counter() - t) * 1000)
            if r.status_code != 200:
                res.error = r.text[:200]
            return res, r
        except Exception as exc:  # a timeout or a dropped connection is a result, not a crash
            return Result(
                kind, 0, (time.perf_counter() - t) * 1000, f"{type(exc).__name__}: {exc}"[:200]
            ), None

    def decision_body(self) -> dict[str, Any]:
        rng, s = self.rng, self.s
        kind = rng.choice(DECISION_KINDS)
        ids = rng.sample(s.photo_ids, rng.choice([1, 1, 2, 3]))
        body: dict[str, Any] = {"kind": kind, "photo_ids": ids, "reviewer": f"load-{self.n}"}
        if kind in ("confirm_group", "split_group") and not self.groups:
            kind = body["kind"] = "note"
        if kind == "set_label":
            body["label"] = rng.choice(s.labels)
        elif kind == "note":
            body["photo_ids"] = ids[:1]
            body["text"] = f"load test note {uuid.uuid4().hex[:8]}"
        elif kind in ("set_bot", "set_quality"):
            body["value"] = rng.choice([True, False])
        elif kind == "not_duplicate":
            body["photo_ids"] = rng.sample(s.photo_ids, 2)
        elif kind == "confirm_group":
            body["photo_ids"] = rng.choice(self.groups)
        elif kind == "split_group":
            members = self.groups.pop()
            body["photo_ids"] = members[1:]
            body["split_off"] = members[:1]
        body["request_id"] = f"load-{uuid.uuid4().hex}"
        return body

    async def decide(self) -> Result:
        body = self.decision_body()
        headers = {"X-CSRF-Token": self.csrf}
        t = time.perf_counter()
        for _ in range(RETRY_LIMIT):
            res, r = await self.timed("decision", "POST", "/api/decisions", json=body, headers=headers)
            if r is not None and r.status_code == 503:
                self.tally.retries_503 += 1
                await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                continue
            break
        res.ms = (time.perf_counter() - t) * 1000  # what the person waited, retries included
        if res.status == 200:
            self.tally.acked.append(Acked(body["request_id"], int(r.json()["decision"]["id"]), body["kind"]))
        else:
            self.tally.unacked_request_ids.append(body["request_id"])
            res.error = f"{body['kind']}: {res.error}"
        return res

    async def one(self, kind: str) -> Result:
        rng, s = self.rng, self.s
        if kind == "grid":
            return (await self.timed(kind, "GET", "/grid", params=grid_params(rng, s)))[0]
        if kind == "photo":
            return (await self.timed(kind, "GET", f"/photo/{rng.choice(s.photo_ids)}"))[0]
        if kind == "thumb":
            return (await self.timed(kind, "GET", f"/image/{rng.choice(s.photo_ids)}/thumb"))[0]
        if kind == "search":
            params = {"q": rng.choice(SEARCH_QUERIES), "k": rng.choice([20, 60])}
            return (await self.timed(kind, "GET", "/api/search", params=params))[0]
        return await self.decide()

    async def run(self, kinds: list[str], weights: list[float], until: float, think_s: float) -> None:
        while time.monotonic() < until:
            self.tally.results.append(await self.one(self.rng.choices(kinds, weights)[0]))
            if think_s > 0:
                await asyncio.sleep(self.rng.uniform(0, 2 * think_s))

    async def close(self) -> None:
        await self.http.aclose()


def process_tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, reaped children included) of a process and its live descendants,
    from /proc (Linux; 0.0 elsewhere). Why: on a small host the server shares the cores with the
    clients and curate, and the report should say who used them during the window."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = sum(int(f) for f in fields[11:15]) / tick
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0.0)
        todo.extend(child for child, parent in parents.items() if parent == current)
    return total


def host_busy_s() -> float:
    """CPU seconds every core of the host spent busy so far (/proc/stat; 0.0 elsewhere)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)


async def drive(
    server: Server, sample: Sample, args: argparse.Namespace, on_start: Any
) -> tuple[Tally, float]:
    tally = Tally()
    per_client: list[list[list[int]]] = [[] for _ in range(args.clients)]
    for i, members in enumerate(sample.groups[: args.clients * 50]):
        per_client[i % args.clients].append(members)
    clients = [Client(i, server, sample, tally, args.seed, per_client[i]) for i in range(args.clients)]
    await asyncio.gather(*(c.login() for c in clients))
    for kind in KINDS:  # warm-up: one of each, off the clock
        res = await clients[0].one(kind)
        tally.warmup[kind] = res
        log(f"warm-up {kind}: {res.status} in {res.ms:.0f} ms {res.error[:120]}")
    tally.results.clear()
    mix = dict(part.split("=") for part in args.mix.split(","))
    kinds = [k for k in KINDS if float(mix.get(k, 0)) > 0]
    weights = [float(mix[k]) for k in kinds]
    on_start()
    started = time.monotonic()
    cpu_before = (process_tree_cpu_s(server.proc.pid), time.process_time(), host_busy_s())
    await asyncio.gather(*(c.run(kinds, weights, started + args.seconds, args.think_s) for c in clients))
    elapsed = time.monotonic() - started
    tally.cpu_s = {
        "server": process_tree_cpu_s(server.proc.pid) - cpu_before[0],
        "clients": time.process_time() - cpu_before[1],
        "host": host_busy_s() - cpu_before[2],
    }
    await asyncio.gather(*(c.close() for c in clients))
    return tally, elapsed


# ----------------------------------------------------------------------------------------- checking
def audit_via_api(server: Server) -> dict[int, dict[str, Any]]:
    import httpx

    rows: dict[int, dict[str, Any]] = {}
    after = 0
    with httpx.Client(base_url=server.base, headers={"X-Photocorpus-Token": server.token or ""}) as http:
        while True:
            r = http.get("/api/decisions", params={"after_id": after, "limit": 1000}, timeout=60)
            r.raise_for_status()
            data = r.json()
            page = data["decisions"] if isinstance(data, dict) else data
            if not page:
                return rows
            for d in page:
                rows[int(d["id"])] = d
            after = max(int(d["id"]) for d in page)


def audit_via_catalog(corpus_dir: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{corpus_dir / 'catalog.sqlite'}?mode=ro", uri=True)
    try:
        return {rid: int(i) for i, rid in conn.execute("SELECT id, request_id FROM decisions") if rid}
    finally:
        conn.close()


def percentiles(values: list[float]) -> tuple[float, float, float]:
    if not values:
        return float("nan"), float("nan"), float("nan")
    arr = np.asarray(values)
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 95)), float(arr.max())


def report(tally: Tally, elapsed: float, curate: dict[str, Any], lost: dict[str, Any]) -> dict[str, Any]:
    """Per kind: counts, rate, p50/p95/max over every request (failed ones too: a person waited for
    them) and errors by status; then the missed targets, which decide the exit status."""
    by_kind: dict[str, list[Result]] = defaultdict(list)
    for r in tally.results:
        by_kind[r.kind].append(r)
    table = {}
    for kind in KINDS:
        rs = by_kind.get(kind, [])
        ok = [r.ms for r in rs if r.status == 200]
        p50, p95, mx = percentiles([r.ms for r in rs])
        errors = Counter(r.status for r in rs if r.status != 200)
        table[kind] = {
            "requests": len(rs),
            "per_s": len(rs) / elapsed,
            "p50_ms": p50,
            "p95_ms": p95,
            "max_ms": mx,
            "ok": len(ok),
            "errors": {str(k): v for k, v in errors.items()},
            "error_samples": sorted({r.error for r in rs if r.status != 200})[:5],
        }
    total = len(tally.results)
    misses = [
        f"{k} p95 {table[k]['p95_ms']:.0f} ms > {limit:.0f} ms ({table[k]['p95_ms'] / limit:.1f}x)"
        for k, limit in TARGET_P95_MS.items()
        if table[k]["requests"] and table[k]["p95_ms"] > limit
    ]
    errors = sum(sum(v["errors"].values()) for v in table.values())
    if errors:
        misses.append(f"{errors} errors")
    if lost["lost"]:
        misses.append(f"{lost['lost']} lost decisions")
    return {
        "kinds": table,
        "requests": total,
        "throughput_per_s": total / elapsed,
        "elapsed_s": elapsed,
        "retries_503": tally.retries_503,
        "warmup_ms": {k: round(r.ms) for k, r in tally.warmup.items()},
        "warmup_status": {k: r.status for k, r in tally.warmup.items()},
        "curate": curate,
        "cpu_s": {k: round(v, 1) for k, v in tally.cpu_s.items()},
        "decisions": lost,
        "misses": misses,
    }


def print_report(out: dict[str, Any]) -> None:
    print()
    print("| kind | requests | per s | p50 ms | p95 ms | max ms | errors (status: count) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for kind, v in out["kinds"].items():
        errs = ", ".join(f"{k}: {n}" for k, n in v["errors"].items()) or "0"
        print(
            f"| {kind} | {v['requests']:,} | {v['per_s']:.1f} | {v['p50_ms']:.0f} | {v['p95_ms']:.0f} "
            f"| {v['max_ms']:.0f} | {errs} |"
        )
    print(
        f"\nall: {out['requests']:,} requests in {out['elapsed_s']:.1f} s = {out['throughput_per_s']:.1f}/s"
    )
    print(f"warm-up (first request of each kind, ms): {out['warmup_ms']}")
    print(f"503 retries: {out['retries_503']}; curate during the run: {out['curate']}")
    cpu, window = out["cpu_s"], out["elapsed_s"]
    if cpu.get("host"):
        print(
            f"CPU during the window ({window:.0f} s, {os.cpu_count()} cores = "
            f"{window * (os.cpu_count() or 1):.0f}"
            f" core-s): host busy {cpu['host']:.0f} core-s; server {cpu['server']:.0f}, clients "
            f"{cpu['clients']:.0f}, everything else (curate, other jobs) "
            f"{cpu['host'] - cpu['server'] - cpu['clients']:.0f}"
        )
    print(f"decisions: {out['decisions']}")
    for kind, v in out["kinds"].items():
        for sample in v["error_samples"]:
            print(f"  {kind} error: {sample}")
    print("targets:", "all met" if not out["misses"] else "MISSED: " + "; ".join(out["misses"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="corpus cache (outside the repo)")
    parser.add_argument("--photos", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--think-s", type=float, default=0.5, help="mean pause between a client's requests")
    parser.add_argument("--mix", default=DEFAULT_MIX, help=f"kind=weight,... (default {DEFAULT_MIX})")
    parser.add_argument("--no-curate", action="store_true", help="no curate run during the test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    load_at_start = os.getloadavg()  # the host is shared: say how busy it was
    pristine = build(args.work, args.photos)
    run_dir = fresh_copy(pristine, args.work / "run")
    sample = read_sample(run_dir, args.seed)
    log(f"corpus {run_dir}: {len(sample.photo_ids):,} photos, {len(sample.groups):,} duplicate groups of 3+")
    server = Server(run_dir, free_port(), args.work / "serve.log")
    curate_proc: subprocess.Popen | None = None
    curate: dict[str, Any] = {"ran": False}
    curate_started = 0.0
    try:
        log(f"server ready in {server.wait_ready():.1f} s")

        def start_curate() -> None:
            nonlocal curate_proc, curate_started
            if not args.no_curate:
                curate_started = time.monotonic()
                curate_proc = subprocess.Popen(
                    [sys.executable, "-m", "photocorpus", "curate", "-C", str(run_dir), "-q"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )

        tally, elapsed = asyncio.run(drive(server, sample, args, start_curate))
        if curate_proc is not None:
            running_at_end = curate_proc.poll() is None
            _, err = curate_proc.communicate()
            curate = {
                "ran": True,
                "exit": curate_proc.returncode,
                "seconds": round(time.monotonic() - curate_started, 1),
                "still_running_at_end": running_at_end,
                "stderr": err.strip()[-300:],
            }
        api_rows = audit_via_api(server)
    finally:
        if curate_proc is not None and curate_proc.poll() is None:
            curate_proc.kill()
        server.stop()
    by_request = audit_via_catalog(run_dir)
    missing_api = [a for a in tally.acked if a.decision_id not in api_rows]
    missing_db = [a for a in tally.acked if by_request.get(a.request_id) != a.decision_id]
    lost = {
        "acknowledged": len(tally.acked),
        "by_kind": dict(Counter(a.kind for a in tally.acked)),
        "not_acknowledged": len(tally.unacked_request_ids),
        "not_acknowledged_but_stored": sum(rid in by_request for rid in tally.unacked_request_ids),
        "missing_from_api_audit": len(missing_api),
        "missing_from_catalog": len(missing_db),
        "lost": len({a.request_id for a in missing_api + missing_db}),
    }
    verify = subprocess.run(
        [sys.executable, "-m", "photocorpus", "verify", "-C", str(run_dir)], capture_output=True, text=True
    )
    out = report(tally, elapsed, curate, lost)
    out["verify_exit"] = verify.returncode
    if verify.returncode:
        out["misses"].append(f"photocorpus verify exited {verify.returncode}: {verify.stdout[-300:]}")
    out["setup"] = {
        "photos": len(sample.photo_ids),
        "clients": args.clients,
        "seconds": args.seconds,
        "think_s": args.think_s,
        "mix": args.mix,
        "curate": not args.no_curate,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_at_start": load_at_start,
        "load_at_end": os.getloadavg(),
    }
    print_report(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2), encoding="utf-8")
    sys.exit(1 if out["misses"] else 0)


if __name__ == "__main__":
    main()
