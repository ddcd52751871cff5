"""The Starlette application: :func:`create_app` wires the routes, the security middleware, the
templates and the shared :class:`~photocorpus.serve.context.ServeContext`."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from photocorpus.serve import api_routes, decision_routes, map_routes, pages, search_routes
from photocorpus.serve.catalog_access import BUSY_TIMEOUT_MS, CatalogConnections
from photocorpus.serve.context import ServeContext
from photocorpus.serve.export_jobs import ExportJobs
from photocorpus.serve.security import AccessPolicy, SecurityMiddleware

MAX_REVIEWER_CHARS = 100


def check_reviewer(reviewer: str | None) -> str | None:
    """The ``--reviewer`` name, refused early when the decisions could not store it."""
    from photocorpus.errors import ParameterError

    if reviewer is None or not reviewer.strip():
        return None
    if len(reviewer) > MAX_REVIEWER_CHARS or any(ord(ch) < 32 or ord(ch) == 127 for ch in reviewer):
        raise ParameterError(
            f"reviewer must be a name of at most {MAX_REVIEWER_CHARS} characters without control characters"
        )
    return reviewer.strip()


def templates() -> jinja2.Environment:
    """Autoescaped templates (every user string becomes text; no ``|safe`` on data anywhere)."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("photocorpus.serve", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _warm_neighbours(ctx: ServeContext) -> None:
    """Load the "more like this" index while the server starts (on a large corpus built once, ~10 s,
    then saved): photo pages asked meanwhile wait for this load instead of starting their own."""
    try:
        ctx.neighbours.warm(ctx.catalog.corpus())  # no snapshot: a build must not pin a read transaction
    except Exception as exc:  # the photo page meets the same error and answers it; do not stop the server
        logging.getLogger(__name__).warning("could not load the 'more like this' index: %s", exc)


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    ctx = app.state.ctx
    warm = threading.Thread(target=_warm_neighbours, args=(ctx,), name="warm-neighbours", daemon=True)
    warm.start()
    yield
    ctx.catalog.close()


def create_app(
    corpus_path: str | os.PathLike[str],
    *,
    token: str,
    reviewer: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    server_id: str | None = None,
) -> Starlette:
    """The web app of one corpus. ``token`` guards writes (and every request when ``host`` is not a
    loopback address); ``reviewer`` is recorded on decisions that do not name one; ``host`` and
    ``port`` are where uvicorn binds it (the Host-header check and the cookie names use them);
    ``busy_timeout_ms``: how long a write waits for another writer's lock before answering 503;
    ``server_id``: shared by the worker processes of one server (their export jobs), new if None."""
    catalog = CatalogConnections(corpus_path, busy_timeout_ms)
    ctx = ServeContext(
        catalog=catalog,
        policy=AccessPolicy(token=token, host=host, port=port),
        templates=templates(),
        reviewer=check_reviewer(reviewer),
        jobs=ExportJobs(Path(catalog.root), server_id),
    )
    routes = [
        Route("/", pages.landing),
        Route("/healthz", api_routes.healthz),
        Route("/grid", pages.grid),
        Route("/photo/{photo_id:int}", pages.photo_page),
        Route("/image/{photo_id:int}/thumb", api_routes.image_thumb),
        Route("/image/{photo_id:int}/full", api_routes.image_full),
        Route("/search", search_routes.search_page, methods=["GET", "POST"]),
        Route("/map", map_routes.map_page),
        Route("/map/{features:str}/", map_routes.map_view),
        Route("/map/{features:str}/data/points.js", map_routes.points_js),
        Route("/map/{features:str}/data/text-{chunk:int}.js", map_routes.text_js),
        Route("/map/{features:str}/thumbs/{folder:str}/{name:str}", map_routes.map_thumb),
        Route("/review/duplicates", pages.review_duplicates),
        Route("/review/bots", pages.review_bots),
        Route("/review/quality", pages.review_quality),
        Route("/audit", pages.audit_page),
        Route("/api/photos", api_routes.photos_json),
        Route("/api/facets", api_routes.facets_json),
        Route("/api/photo/{photo_id:int}", api_routes.photo_json),
        Route("/api/search", search_routes.search_json),
        Route("/api/decisions", decision_routes.decisions_json, methods=["GET", "POST"]),
        Route("/api/decisions/{decision_id:int}/undo", decision_routes.undo_json, methods=["POST"]),
        Route("/api/exports", api_routes.start_export, methods=["POST"]),
        Route("/api/jobs/{job_id:int}", api_routes.job_json),
        Mount(
            "/static/report", StaticFiles(packages=[("photocorpus.explore.report", "static")]), name="report"
        ),
        Mount("/static", StaticFiles(packages=[("photocorpus.serve", "static")]), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityMiddleware, policy=ctx.policy)],
        exception_handlers=api_routes.EXCEPTION_HANDLERS,
        lifespan=_lifespan,
    )
    app.state.ctx = ctx
    return app
