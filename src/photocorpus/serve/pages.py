"""The HTML pages: landing (``?token=``), grid, photo, review queues and audit.

Pages are rendered on the server with autoescaped Jinja2; their scripts are static files
(``static/serve.js``) that read what they need from ``data-`` attributes and the JSON routes, so the
Content-Security-Policy can forbid inline script entirely.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from photocorpus.serve.api_routes import full_photo
from photocorpus.serve.catalog_stamps import QUEUE_KINDS, Stamps
from photocorpus.serve.context import context_of, render
from photocorpus.serve.grid_rows import filter_choices, grid_page
from photocorpus.serve.photo_details import geo_point
from photocorpus.serve.photo_filters import SORTS, parse_grid_query
from photocorpus.serve.review_queues import FLAG_PAGE, duplicate_groups, flagged_photos
from photocorpus.serve.review_queues import PAGE as QUEUE_PAGE
from photocorpus.serve.security import cookie_header
from photocorpus.serve.stamped_cache import app_cache

EXPORT_FORMATS = (
    "parquet", "imagefolder", "instacities", "webdataset", "mirflickr-json", "mirflickr-images",
    "attribution",
)  # fmt: skip
# The filter form's choices (stages, reasons, flags, licences...) change only as stages run, and an
# out-of-date choice selects nothing: kept for minutes whatever decisions are made.
CHOICES_TTL_S = 300.0
# A review queue is made again after any decision of a kind that changes it (every process sees it:
# the stamp is read from the catalog); curate's new groups and flags show within this long.
QUEUE_TTL_S = 30.0


async def landing(request: Request) -> Response:
    """``/?token=T``: keep the token in an HttpOnly cookie and go to the grid (the token leaves the URL)."""
    ctx = context_of(request)
    token = request.query_params.get("token")
    response = RedirectResponse("/grid", status_code=303)
    if token is not None:
        if not ctx.policy.token_ok(token):
            raise HTTPException(
                403, "this token is not the server's; use the URL `photocorpus serve` printed"
            )
        response.headers.append("set-cookie", cookie_header(ctx.policy.token_cookie, token, http_only=True))
    return response


async def grid(request: Request) -> Response:
    ctx = context_of(request)
    query = parse_grid_query(request.query_params)

    cache = app_cache(request.app.state)

    def read(corpus: Any) -> dict[str, Any]:
        page = grid_page(corpus, query, cache)
        page["choices"] = cache.get("choices", (), lambda: filter_choices(corpus), CHOICES_TTL_S)
        return page

    page = await ctx.run(read)
    pages = max(1, -(-page["count"] // query.per_page))
    return render(
        request, "grid.html", title="Photos", query=query, page=page, pages=pages, sorts=list(SORTS),
        export_formats=EXPORT_FORMATS,
    )  # fmt: skip


async def photo_page(request: Request) -> Response:
    photo_id = request.path_params["photo_id"]
    photo = await full_photo(request, photo_id)
    return render(
        request, "photo.html", title=photo["title"] or f"Photo {photo_id}", photo=photo,
        geo=geo_point(photo["lat"], photo["lon"]),
    )  # fmt: skip


def _offset(request: Request) -> int:
    try:
        return max(0, int(request.query_params.get("offset") or 0))
    except ValueError:
        raise HTTPException(400, "offset must be a whole number") from None


async def review_duplicates(request: Request) -> Response:
    order = request.query_params.get("order") or "largest"
    if order not in ("largest", "uncertain"):
        raise HTTPException(400, "order must be largest or uncertain")
    offset = _offset(request)
    ctx = context_of(request)
    cache = app_cache(request.app.state)
    # the whole ordered queue, kept until a duplicate decision (or 30 s): paging does not recompute it
    whole = await ctx.run(
        lambda c: cache.get(
            ("duplicates", order),
            Stamps(c).of_kinds(QUEUE_KINDS["duplicates"]),
            lambda: duplicate_groups(c, order, 0, limit=None),
            QUEUE_TTL_S,
        )
    )
    queue = {"total": whole["total"], "groups": whole["groups"][offset : offset + QUEUE_PAGE]}
    return render(
        request, "review_duplicates.html", title="Review duplicates", queue=queue, order=order, offset=offset
    )


async def review_bots(request: Request) -> Response:
    return await _flag_queue(request, "bots", "Review bot candidates")


async def review_quality(request: Request) -> Response:
    return await _flag_queue(request, "quality", "Review quality flags")


async def _flag_queue(request: Request, queue_name: str, title: str) -> Response:
    offset = _offset(request)
    ctx = context_of(request)
    cache = app_cache(request.app.state)
    whole = await ctx.run(
        lambda c: cache.get(
            ("flags", queue_name),
            Stamps(c).of_kinds(QUEUE_KINDS[queue_name]),
            lambda: flagged_photos(c, queue_name, 0, limit=None),
            QUEUE_TTL_S,
        )
    )
    queue = {"total": whole["total"], "items": whole["items"][offset : offset + FLAG_PAGE]}
    return render(
        request, "review_flags.html", title=title, queue=queue, queue_name=queue_name, offset=offset
    )


async def audit_page(request: Request) -> Response:
    from photocorpus import decisions
    from photocorpus.serve.api_routes import decision_json

    offset = _offset(request)
    rows = await context_of(request).run(lambda c: decisions.audit(c, after_id=offset, limit=200))
    return render(
        request, "audit.html", title="Decisions", decisions=[decision_json(d) for d in rows],
        next_after=rows[-1].id if len(rows) == 200 else None,
    )  # fmt: skip
