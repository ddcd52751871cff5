"""What every route shares: the catalog connections, caches, templates, jobs and the access policy.

One :class:`ServeContext` per app, stored as ``app.state.ctx``; routes reach it through
:func:`context_of`. Blocking work (SQLite, numpy, Pillow) runs through :meth:`ServeContext.run`, in
Starlette's thread pool, so the event loop keeps answering while a query runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse

from photocorpus.corpus import Corpus
from photocorpus.serve.catalog_access import CatalogConnections
from photocorpus.serve.export_jobs import ExportJobs
from photocorpus.serve.neighbours import NeighbourIndex
from photocorpus.serve.security import AccessPolicy

T = TypeVar("T")
CACHE_TTL_S = 30.0


@dataclass
class ServeContext:
    catalog: CatalogConnections
    policy: AccessPolicy
    templates: jinja2.Environment
    reviewer: str | None = None
    neighbours: NeighbourIndex = field(default_factory=NeighbourIndex)
    jobs: ExportJobs | None = None
    _cache: dict[str, tuple[float, int, Any]] = field(default_factory=dict)
    _cache_lock: threading.Lock = field(default_factory=threading.Lock)

    async def run(self, work: Callable[[Corpus], T], *, snapshot: bool = True) -> T:
        """``work(corpus)`` on this thread's connection in the thread pool (in a read snapshot, or,
        for writes, outside one: decisions open their own ``BEGIN IMMEDIATE``)."""

        def call() -> T:
            if not snapshot:
                return work(self.catalog.corpus())
            with self.catalog.snapshot() as corpus:
                return work(corpus)

        return await run_in_threadpool(call)

    def decision_stamp(self) -> int:
        """The id of the catalog's latest decision (an undo is a decision too): it changes with every
        decision made through any worker of the server, or by the CLI, so a cached value made before
        it is known stale without any message between processes. One rowid lookup (microseconds)."""
        row = self.catalog.corpus().conn.execute("SELECT MAX(id) FROM decisions").fetchone()
        return int(row[0] or 0)

    def cached(self, key: str, make: Callable[[], T], ttl_s: float = CACHE_TTL_S) -> T:
        """A value recomputed at most every ``ttl_s`` seconds (filter choices, facet counts, queues:
        whole-catalog queries that need not be exact to the second), and at once after a decision
        (:meth:`decision_stamp`: with ``--workers``, a decision answered by another worker must show
        on the next page too). Keys starting with ``keep:`` survive decisions (the map's payload:
        seconds to rebuild at 100,000 photos)."""
        now = time.monotonic()
        stamp = 0 if key.startswith("keep:") else self.decision_stamp()
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < ttl_s and hit[1] == stamp:
                return hit[2]  # type: ignore[no-any-return]
        value = make()
        with self._cache_lock:
            if len(self._cache) > 500:
                self._cache.clear()
            self._cache[key] = (now, stamp, value)
        return value


def context_of(request: Request) -> ServeContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


def render(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    """A page: the template with the csrf token (for forms and <meta>) and the reviewer filled in."""
    ctx = context_of(request)
    html = ctx.templates.get_template(template).render(
        csrf=request.scope.get("state", {}).get("csrf", ""), reviewer=ctx.reviewer or "", **values
    )
    return HTMLResponse(html, status_code=status)
