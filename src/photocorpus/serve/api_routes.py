"""JSON routes (``/api/...``), images by photo id, the health check and the error answers."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response

from photocorpus.errors import CorpusBusyError, DecisionError, ParameterError, PhotocorpusError
from photocorpus.serve.context import context_of, render
from photocorpus.serve.grid_rows import facet_counts, grid_page
from photocorpus.serve.photo_details import photo_details
from photocorpus.serve.photo_filters import FilterError, parse_grid_query, photo_condition
from photocorpus.serve.stamped_cache import app_cache
from photocorpus.serve.thumbnails import StoredImage, full_image, thumbnail

RETRY_AFTER_S = 2
MAX_JSON_BODY = 1_000_000
NEIGHBOURS = 12


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def photos_json(request: Request) -> Response:
    query = parse_grid_query(request.query_params)
    cache = app_cache(request.app.state)
    return JSONResponse(await context_of(request).run(lambda c: grid_page(c, query, cache)))


async def facets_json(request: Request) -> Response:
    """The grid's side counts for a filter, asked by the page after it has shown the photos (the
    first ask after a decision reads a facet's values for the whole catalog again, about 100 ms at
    100,000 photos, so the grid does not wait for it); see :func:`grid_rows.facet_counts`."""
    ctx = context_of(request)
    cache = app_cache(request.app.state)
    query = parse_grid_query(request.query_params)
    facets = await ctx.run(lambda c: facet_counts(c, query, cache))
    return JSONResponse(
        {name: [{"value": v, "count": n} for v, n in values] for name, values in facets.items()}
    )


async def photo_json(request: Request) -> Response:
    details = await full_photo(request, request.path_params["photo_id"])
    return JSONResponse(details)


async def full_photo(request: Request, photo_id: int) -> dict[str, Any]:
    """The photo page's data, neighbours and decision history included; 404 for an unknown id."""
    ctx = context_of(request)

    def read(corpus: Any) -> dict[str, Any] | None:
        details = photo_details(corpus, photo_id)
        if details is None:
            return None
        found = ctx.neighbours.neighbours(corpus, photo_id, NEIGHBOURS)
        details["neighbours"] = [pid for pid, _score in found]
        details["neighbour_scores"] = [round(score, 4) for _pid, score in found]
        details["history"] = decision_history(corpus, photo_id)
        return details

    details = await ctx.run(read)
    if details is None:
        raise HTTPException(404, f"no photo {photo_id} in this corpus; go back to the grid")
    return details


def decision_history(corpus: Any, photo_id: int) -> list[dict[str, Any]]:
    from photocorpus import decisions

    return [decision_json(d) for d in decisions.history(corpus, photo_id)]


def decision_json(decision: Any) -> dict[str, Any]:
    from dataclasses import asdict

    out = asdict(decision)
    out["photo_ids"] = list(out["photo_ids"])
    return out


def _image_response(image: StoredImage | None, photo_id: int, max_age: int, request: Request) -> Response:
    if image is None:
        raise HTTPException(404, f"photo {photo_id} has no readable image")
    headers = {"Cache-Control": f"private, max-age={max_age}"}
    if image.etag is not None:
        headers["ETag"] = image.etag
        if image.matches(request.headers.get("if-none-match")):
            return Response(status_code=304, headers=headers)
    if image.path is not None:
        return FileResponse(image.path, media_type=image.media_type, headers=headers)
    return Response(image.data, media_type=image.media_type, headers=headers)


async def image_thumb(request: Request) -> Response:
    photo_id = request.path_params["photo_id"]
    image = await context_of(request).run(lambda c: thumbnail(c, photo_id))
    return _image_response(image, photo_id, 3600, request)


async def image_full(request: Request) -> Response:
    photo_id = request.path_params["photo_id"]
    image = await context_of(request).run(lambda c: full_image(c, photo_id))
    return _image_response(image, photo_id, 3600, request)


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object (at most 1 MB), or a 400 that says what was expected."""
    raw = await request.body()
    if len(raw) > MAX_JSON_BODY:
        raise HTTPException(413, "the JSON body is larger than 1 MB; send fewer photo ids per request")
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise HTTPException(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "the body must be a JSON object")
    return body


async def start_export(request: Request) -> Response:
    """``{"format", "photo_ids"}`` or ``{"format", "filters": {...}}`` (the grid's filters) -> job."""
    ctx = context_of(request)
    body = await json_body(request)
    fmt = body.get("format")
    if not isinstance(fmt, str):
        raise HTTPException(400, 'give "format", e.g. {"format": "parquet", "filters": {"label": "nyc"}}')
    splits = body.get("splits")
    if splits is not None and not (isinstance(splits, list) and all(isinstance(s, str) for s in splits)):
        raise HTTPException(400, '"splits" must be a list such as ["train", "val"]')
    ids = body.get("photo_ids")
    if ids is not None:
        if not (isinstance(ids, list) and all(isinstance(i, int) for i in ids)):
            raise HTTPException(400, '"photo_ids" must be a list of photo ids')
    else:
        filters = body.get("filters") or {}
        if not isinstance(filters, dict) or not all(isinstance(v, str) for v in filters.values()):
            raise HTTPException(400, '"filters" must be an object of grid filters, e.g. {"label": "nyc"}')
        query = parse_grid_query(filters)
        if query.filters:
            condition, values = photo_condition(query.filters)
            ids = await ctx.run(
                lambda c: [
                    int(r[0])
                    for r in c.conn.execute(
                        f"SELECT p.id FROM photos p LEFT JOIN curation c ON c.photo_id = p.id "
                        f"WHERE {condition}",
                        values,
                    )
                ]
            )
    assert ctx.jobs is not None
    job = ctx.jobs.start(fmt, photo_ids=ids, splits=splits)
    return JSONResponse({"job": job.id, **job.as_dict()})


async def job_json(request: Request) -> Response:
    ctx = context_of(request)
    assert ctx.jobs is not None
    job = ctx.jobs.get(request.path_params["job_id"])
    if job is None:
        raise HTTPException(404, "no such export job (jobs are forgotten when the server restarts)")
    return JSONResponse(job.as_dict())


# ------------------------------------------------------------------------------------------ errors
def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", "")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if _wants_json(request):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    return error_page(request, exc.status_code, str(exc.detail))


async def _bad_input(request: Request, exc: Exception) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": str(exc)}, status_code=400)
    return error_page(request, 400, str(exc))


async def _busy(request: Request, exc: Exception) -> Response:
    body = {"error": f"the catalog is busy (another process is writing): {exc}; retry", "retry": True}
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


def error_page(request: Request, status: int, message: str) -> Response:
    return render(request, "error.html", status, code=status, message=message, title="Error")


async def _our_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, CorpusBusyError):
        return await _busy(request, exc)
    if isinstance(exc, (DecisionError, FilterError, ParameterError)):
        return await _bad_input(request, exc)
    if _wants_json(request):
        return JSONResponse({"error": str(exc)}, status_code=500)
    return error_page(request, 500, str(exc))


async def _sqlite_error(request: Request, exc: Exception) -> Response:
    """A read that met a locked catalog (a checkpoint, a writer's schema migration) is a 503 to retry,
    like a busy write; any other SQLite error is a server error."""
    message = str(exc)
    if "locked" in message or "busy" in message:
        return await _busy(request, exc)
    if _wants_json(request):
        return JSONResponse({"error": f"catalog error: {message}"}, status_code=500)
    return error_page(request, 500, f"catalog error: {message}; run `photocorpus verify` if it persists")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    HTTPException: _http_error,
    PhotocorpusError: _our_error,
    sqlite3.OperationalError: _sqlite_error,
}
