"""``POST /api/decisions``, ``POST /api/decisions/{id}/undo`` and ``GET /api/decisions``: the app's
writes, each one call of :mod:`photocorpus.decisions` (one short ``BEGIN IMMEDIATE`` that applies the
effect and appends the audit row together).

Every click carries a client-made ``request_id``; the decisions module stores it UNIQUE and answers a
repeat with the first decision, so a retry after a timeout or a 503 never writes twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from photocorpus.corpus import Corpus
from photocorpus.serve.api_routes import decision_json, json_body
from photocorpus.serve.context import context_of

KINDS = (
    "confirm_group", "split_group", "not_duplicate", "exclude", "include", "set_label", "set_bot",
    "set_quality", "note",
)  # fmt: skip
MAX_REQUEST_ID_CHARS = 200


def _ids(body: dict[str, Any], key: str, *, required: bool = True) -> list[int]:
    value = body.get(key)
    if value is None and not required:
        return []
    if not (
        isinstance(value, list)
        and value
        and all(isinstance(i, int) and not isinstance(i, bool) for i in value)
    ):
        raise HTTPException(400, f'"{key}" must be a non-empty list of photo ids')
    return value


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise HTTPException(400, f'"{key}" must be a string')
    return value


def _bool(body: dict[str, Any]) -> bool:
    value = body.get("value")
    if not isinstance(value, bool):
        raise HTTPException(400, '"value" must be true or false')
    return value


def decision_call(body: dict[str, Any]) -> Callable[..., Any]:
    """The decisions function and its arguments for one request body (checked, or a 400)."""
    from photocorpus import decisions

    kind = body.get("kind")
    if kind not in KINDS:
        raise HTTPException(400, f'"kind" must be one of {", ".join(KINDS)}')
    ids = _ids(body, "photo_ids")
    if kind == "confirm_group":
        return lambda c, **kw: decisions.confirm_group(c, ids, **kw)
    if kind == "split_group":
        split_off = _ids(body, "split_off")
        return lambda c, **kw: decisions.split_group(c, ids, split_off, **kw)
    if kind == "not_duplicate":
        if len(ids) != 2:
            raise HTTPException(400, '"not_duplicate" takes exactly two "photo_ids"')
        return lambda c, **kw: decisions.mark_not_duplicate(c, ids[0], ids[1], **kw)
    if kind == "exclude":
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise HTTPException(400, '"reason" must be a string')
        return lambda c, **kw: decisions.exclude_photos(c, ids, reason=reason, **kw)
    if kind == "include":
        return lambda c, **kw: decisions.include_photos(c, ids, **kw)
    if kind == "set_label":
        label = _text(body, "label")
        return lambda c, **kw: decisions.set_label(c, ids, label, **kw)
    if kind == "set_bot":
        is_bot = _bool(body)
        return lambda c, **kw: decisions.set_bot(c, ids, is_bot, **kw)
    if kind == "set_quality":
        ok = _bool(body)
        return lambda c, **kw: decisions.set_quality(c, ids, ok, **kw)
    text = _text(body, "text")
    if len(ids) != 1:
        raise HTTPException(400, '"note" takes exactly one photo id in "photo_ids"')
    return lambda c, **kw: decisions.add_note(c, ids[0], text, **kw)


def _who(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    request_id = body.get("request_id")
    if request_id is not None and not (
        isinstance(request_id, str) and 0 < len(request_id) <= MAX_REQUEST_ID_CHARS
    ):
        raise HTTPException(400, f'"request_id" must be a string of 1 to {MAX_REQUEST_ID_CHARS} characters')
    reviewer = body.get("reviewer")
    if reviewer is not None and not isinstance(reviewer, str):
        raise HTTPException(400, '"reviewer" must be a string')
    return {"reviewer": reviewer or context_of(request).reviewer, "request_id": request_id}


async def decisions_json(request: Request) -> Response:
    ctx = context_of(request)
    if request.method == "GET":
        from photocorpus import decisions

        after_id = _query_int(request, "after_id", 0)
        limit = min(_query_int(request, "limit", 1000), 10_000)
        rows = await ctx.run(lambda c: decisions.audit(c, after_id=after_id, limit=limit))
        return JSONResponse({"decisions": [decision_json(d) for d in rows]})
    body = await json_body(request)
    call = decision_call(body)
    who = _who(request, body)

    def write(corpus: Corpus) -> Any:
        return call(corpus, **who)

    decision = await ctx.run(write, snapshot=False)
    return JSONResponse({"decision": decision_json(decision)})


async def undo_json(request: Request) -> Response:
    from photocorpus import decisions

    ctx = context_of(request)
    body = await json_body(request)
    who = _who(request, body)
    decision_id = request.path_params["decision_id"]
    decision = await ctx.run(lambda c: decisions.undo(c, decision_id, **who), snapshot=False)
    return JSONResponse({"decision": decision_json(decision)})


def _query_int(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value in (None, ""):
        return default
    try:
        number = int(value)  # type: ignore[arg-type]
    except ValueError:
        raise HTTPException(400, f"{name} must be a whole number") from None
    if number < 0:
        raise HTTPException(400, f"{name} must not be negative")
    return number
