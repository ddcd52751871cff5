"""Search: by text (:func:`photocorpus.search`: the semantic model or the ImageNet bridge, as
``photocorpus search``), by a photo of the corpus (``like=ID``: its stored features' nearest
neighbours) or by an uploaded file (``POST /search``).

An upload is validated the way ``import`` validates a file (:func:`photocorpus.fetch.imaging.probe_image`:
an image signature, every byte decoded, more pixels than ``[import] max_image_pixels`` refused as a
decompression bomb) after a size cap on the request itself, then searched from a private temporary
file that is deleted before the answer is sent: uploads are never stored.

The grid's filters apply to every search: more hits are asked for, and those outside the filter
dropped, so a filtered search still answers ``k`` photos when the corpus has them.
"""

from __future__ import annotations

import hmac
import os
import tempfile
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from photocorpus.corpus import Corpus
from photocorpus.serve.context import context_of, render
from photocorpus.serve.photo_filters import parse_grid_query, photo_condition

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_K = 500
FILTER_WIDENING = 5  # with filters, ask for this many times k hits before filtering


def _k(request: Request) -> int:
    value = request.query_params.get("k") or "40"
    try:
        k = int(value)
    except ValueError:
        raise HTTPException(400, f"k must be a whole number from 1 to {MAX_K}") from None
    if not 1 <= k <= MAX_K:
        raise HTTPException(400, f"k must be from 1 to {MAX_K}")
    return k


def _keep_filtered(
    corpus: Corpus, hits: list[tuple[int, float]], filters: dict[str, str], k: int
) -> list[tuple[int, float]]:
    if not filters:
        return hits[:k]
    import json

    condition, values = photo_condition(filters)
    ids = [pid for pid, _ in hits]
    allowed = {
        int(r[0])
        for r in corpus.conn.execute(
            f"SELECT p.id FROM photos p LEFT JOIN curation c ON c.photo_id = p.id "
            f"WHERE p.id IN (SELECT value FROM json_each(?)) AND {condition}",
            [json.dumps(ids), *values],
        )
    }
    return [(pid, s) for pid, s in hits if pid in allowed][:k]


def _text_hits(
    corpus: Corpus, q: str, k: int, filters: dict[str, str]
) -> tuple[str, str, list[tuple[int, float]]]:
    import photocorpus as pc

    ask = min(10_000, k * FILTER_WIDENING) if filters else k
    results = pc.search(corpus, q, k=ask)
    hits = [(h.photo_id, float(h.score)) for h in results]
    return results.method, results.explanation, _keep_filtered(corpus, hits, filters, k)


def _like_hits(
    ctx: Any, corpus: Corpus, photo_id: int, k: int, filters: dict[str, str]
) -> tuple[str, str, list[tuple[int, float]]]:
    name = ctx.neighbours.default_set(corpus)
    if name is None:
        raise HTTPException(400, "no feature set to compare photos with; run `photocorpus featurize` first")
    ask = min(10_000, k * FILTER_WIDENING) if filters else k
    hits = ctx.neighbours.neighbours(corpus, photo_id, ask, name)
    if not hits and corpus.photo(photo_id) is None:
        raise HTTPException(404, f"no photo {photo_id} in this corpus")
    return f"features:{name}", f"photos most like photo {photo_id}", _keep_filtered(corpus, hits, filters, k)


def _file_hits(
    corpus: Corpus, data: bytes, k: int, filters: dict[str, str]
) -> tuple[str, str, list[tuple[int, float]]]:
    import photocorpus as pc
    from photocorpus.fetch.imaging import probe_image

    probe = probe_image(data, corpus.settings.import_.max_image_pixels)
    if not probe.ok:
        raise HTTPException(
            400, f"the uploaded file was refused ({probe.reason}: {probe.detail}); upload a JPEG or PNG photo"
        )
    ask = min(10_000, k * FILTER_WIDENING) if filters else k
    fd, tmp = tempfile.mkstemp(prefix="photocorpus-upload-", suffix=f".{(probe.format or 'img').lower()}")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        results = pc.search(corpus, image=tmp, k=ask)
    finally:
        os.unlink(tmp)
    hits = [(h.photo_id, float(h.score)) for h in results]
    return results.method, "photos most like the uploaded image", _keep_filtered(corpus, hits, filters, k)


def _hits_json(method: str, explanation: str, hits: list[tuple[int, float]]) -> dict[str, Any]:
    return {
        "method": method,
        "explanation": explanation,
        "hits": [
            {"id": pid, "score": round(score, 5), "thumb": f"/image/{pid}/thumb"} for pid, score in hits
        ],
    }


async def _search(request: Request, upload: bytes | None) -> dict[str, Any] | None:
    ctx = context_of(request)
    query = parse_grid_query(request.query_params)
    k = _k(request)
    q = (request.query_params.get("q") or "").strip()
    like = request.query_params.get("like")
    if upload is not None:
        found = await ctx.run(lambda c: _file_hits(c, upload, k, query.filters))
    elif like:
        try:
            photo_id = int(like)
        except ValueError:
            raise HTTPException(400, "like must be a photo id") from None
        found = await ctx.run(lambda c: _like_hits(ctx, c, photo_id, k, query.filters))
    elif q:
        if len(q) > 500:
            raise HTTPException(400, "the query is longer than 500 characters")
        found = await ctx.run(lambda c: _text_hits(c, q, k, query.filters))
    else:
        return None
    return _hits_json(*found)


async def search_json(request: Request) -> Response:
    result = await _search(request, None)
    if result is None:
        raise HTTPException(400, "give q=TEXT or like=PHOTO_ID (or POST an image to /search)")
    return JSONResponse(result)


async def search_page(request: Request) -> Response:
    upload = await _upload(request) if request.method == "POST" else None
    result = await _search(request, upload)
    query = parse_grid_query(request.query_params)
    return render(
        request, "search.html", title="Search", result=result, q=request.query_params.get("q") or "",
        like=request.query_params.get("like") or "", k=_k(request), filters=query.filters,
        uploaded=upload is not None,
    )  # fmt: skip


async def _upload(request: Request) -> bytes:
    """The uploaded image's bytes: the request size-capped, the form's csrf field checked."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES + 65536:
        raise HTTPException(413, f"the upload is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    async with request.form(max_files=1, max_fields=5, max_part_size=MAX_UPLOAD_BYTES) as form:
        ctx = context_of(request)
        sent = form.get("csrf")
        cookie = request.cookies.get(ctx.policy.csrf_cookie, "")
        if not (
            isinstance(sent, str) and sent and cookie and hmac.compare_digest(sent.encode(), cookie.encode())
        ):
            raise HTTPException(
                403, "the upload form's csrf field does not match the csrf cookie; reload the page"
            )
        image = form.get("image")
        if image is None or isinstance(image, str):
            raise HTTPException(400, 'send the photo as the multipart file field "image"')
        data = await image.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f"the upload is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    return data
