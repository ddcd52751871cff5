"""``photocorpus serve``: a local web app to look at a corpus, search it and correct it by hand.

Pages (server-rendered): the grid with every catalog filter, the photo page, search (text, like a
photo, an uploaded file), the explore map with lasso selection, review queues with keyboard shortcuts
(duplicate groups, bot candidates, quality flags), the audit of decisions, and exports of the current
filter as background jobs. Writes are human decisions (:mod:`photocorpus.decisions`), which every
later stage respects. docs/serve.md is the user's guide; the routes are listed in :mod:`.app`.

Why Starlette on uvicorn rather than FastAPI: the app is a few dozen routes of server-rendered
Jinja2 pages and small JSON answers for its own scripts; it needs no OpenAPI schema, no dependency
injection and no request models (bodies are a handful of fields, checked by hand with messages that
say what to send), and pydantic is already used for settings, not for HTTP. Starlette is the small
ASGI core FastAPI itself is built on: routing, static files, multipart forms, a thread pool for our
blocking SQLite work, with one dependency less and nothing to learn beyond it.

Modules: :mod:`.app` (the factory), :mod:`.security` (token, CSRF, Origin/Host, headers),
:mod:`.catalog_access` (a connection per thread, read snapshots), :mod:`.photo_filters` (filters to
parameterised SQL), :mod:`.grid_rows`, :mod:`.photo_details`, :mod:`.neighbours`, :mod:`.thumbnails`,
:mod:`.review_queues`, :mod:`.export_jobs`, and the route modules :mod:`.pages`, :mod:`.api_routes`,
:mod:`.decision_routes`, :mod:`.search_routes`, :mod:`.map_routes`.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from starlette.applications import Starlette


def create_app(corpus_path: str, *, token: str, reviewer: str | None = None, **where: object) -> Starlette:
    """See :func:`photocorpus.serve.app.create_app` (imported on call: Starlette loads only when used)."""
    from photocorpus.serve.app import create_app as make

    return make(corpus_path, token=token, reviewer=reviewer, **where)  # type: ignore[arg-type]


__all__ = ["create_app"]
