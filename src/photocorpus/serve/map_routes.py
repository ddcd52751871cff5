"""The map page: a stored 2-D map of a feature set drawn by the explore report's own script.

``/map?features=SET`` redirects to ``/map/SET/``, a page with the report's DOM that loads the report's
``report.js`` and regl-scatterplot unchanged (WebGL scatter, hover tooltips with thumbnails, legend,
colouring). It reads ``data/points.js``, ``data/text-N.js`` and ``thumbs/DIR/ID.jpg`` relative to the
page, which the routes below answer from the catalog with the report's own payload builders
(:func:`photocorpus.explore.report.points_payload`, :func:`~photocorpus.explore.report.text_chunk_script`).
Hover links open the app's photo page. ``static/map.js`` adds what a static report cannot: a lasso
(shift-drag) selection opens the grid of the selected photos.

The map itself comes from ``photocorpus explore`` (stored as the feature set ``SET.map-tsne``,
``.map-umap`` or ``.map-pca``); the app computes none, since t-SNE of 100k photos takes minutes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import numpy as np
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from photocorpus import feature_store
from photocorpus.corpus import Corpus
from photocorpus.explore.report import (
    MapView,
    PointText,
    ReportData,
    make_facet,
    points_payload,
    script_json,
    text_chunk_script,
)
from photocorpus.serve.api_routes import image_thumb
from photocorpus.serve.context import context_of, render

MAP_METHODS = ("tsne", "umap", "pca")


def map_sets(corpus: Corpus) -> dict[str, str]:
    """Feature set -> its stored map set, for every set that has one."""
    names = {f["name"] for f in corpus.feature_sets()}
    out: dict[str, str] = {}
    for name in sorted(names):
        for method in MAP_METHODS:
            if f"{name}.map-{method}" in names:
                out[name] = f"{name}.map-{method}"
                break
    return out


def map_data(corpus: Corpus, features: str) -> ReportData:
    """The report data of the stored map of ``features``: points, colourings (label, split,
    duplicates, the latest clustering of the set) and hover text linking to the app's photo pages."""
    map_set = map_sets(corpus).get(features)
    if map_set is None:
        raise HTTPException(
            404, f"no stored map of {features!r}; run `photocorpus explore --features {features}` first"
        )
    fs = feature_store.open_feature_set(corpus, map_set)
    ids = fs.photo_ids()
    coords = np.asarray(fs.matrix(), dtype=np.float32)
    rows = {
        int(r["id"]): r
        for r in corpus.select_in(
            """SELECT p.id, p.primary_label, p.title, p.caption, p.owner, c.split,
                      CASE WHEN c.dup_group IS NULL THEN 'unique'
                           WHEN c.dup_group = p.id THEN 'representative' ELSE 'duplicate' END AS dup
               FROM photos p LEFT JOIN curation c ON c.photo_id = p.id WHERE p.id IN ({marks})""",
            ids.tolist(),
        )
    }
    keep = np.array([int(i) in rows for i in ids], dtype=bool)
    ids, coords = ids[keep], coords[keep]
    ordered = [rows[int(i)] for i in ids]
    facets = [
        make_facet("label", "label", [r["primary_label"] for r in ordered]),
        make_facet("split", "split", [r["split"] for r in ordered]),
        make_facet("dup", "duplicates", [r["dup"] for r in ordered]),
    ]
    run = corpus.conn.execute(
        "SELECT run FROM cluster_runs WHERE feature_set = ? ORDER BY created_at DESC LIMIT 1", (features,)
    ).fetchone()
    if run is not None:
        clusters = {
            int(r[0]): str(r[1])
            for r in corpus.conn.execute("SELECT photo_id, cluster FROM clusters WHERE run = ?", (run[0],))
        }
        facets.insert(0, make_facet("cluster", f"cluster ({run[0]})", [clusters.get(int(i)) for i in ids]))
    with_file = {
        int(r[0])
        for r in corpus.select_in("SELECT photo_id FROM files WHERE photo_id IN ({marks})", ids.tolist())
    }
    return ReportData(
        title=f"{features}: map",
        photo_ids=ids,
        maps=[MapView("map", f"{features} ({map_set.rsplit('-', 1)[-1]})", coords)],
        facets=facets,
        default_facet=facets[0].key,
        text=PointText(
            captions=[r["caption"] or "" for r in ordered],
            titles=[r["title"] or "" for r in ordered],
            owners=[r["owner"] or "" for r in ordered],
            links=[f"/photo/{int(i)}" for i in ids],
        ),
        thumb_paths={pid: None for pid in with_file},  # type: ignore[misc]  # served by id, no file to link
        tooltip_facets=[f.key for f in facets],
    )


def _cached_map(request: Request, features: str) -> Callable[[Corpus], tuple[ReportData, dict[str, Any]]]:
    """The work that reads the map of ``features`` (report data and points payload), kept 10 min."""
    ctx = context_of(request)

    def build(corpus: Corpus) -> tuple[ReportData, dict[str, Any]]:
        rows = next((f["rows"] for f in corpus.feature_sets() if f["name"] == f"{features}"), 0)
        key = f"keep:map:{features}:{rows}"

        def make() -> tuple[ReportData, dict[str, Any]]:
            data = map_data(corpus, features)
            thumb_ids = np.asarray(data.photo_ids, dtype=np.int64)
            has_thumb = np.fromiter(
                (int(t) in data.thumb_paths for t in thumb_ids), dtype=bool, count=len(thumb_ids)
            )
            return data, points_payload(data, thumb_ids, has_thumb)

        return ctx.cached(key, make, ttl_s=600)

    return build


async def map_page(request: Request) -> Response:
    ctx = context_of(request)
    features = request.query_params.get("features")
    if features:
        return RedirectResponse(f"/map/{quote(features, safe='')}/", status_code=303)
    sets = await ctx.run(map_sets)
    return render(request, "map_index.html", title="Maps", sets=sets)


async def map_view(request: Request) -> Response:
    features = request.path_params["features"]
    ctx = context_of(request)
    data, points = await ctx.run(_cached_map(request, features))
    return render(
        request, "map.html", title=data.title, features=features, maps=points["maps"],
        facets=[{"key": f.key, "title": f.title} for f in data.facets], default_facet=data.default_facet,
        n=points["n"],
    )  # fmt: skip


async def points_js(request: Request) -> Response:
    features = request.path_params["features"]
    _data, points = await context_of(request).run(_cached_map(request, features))
    return Response(f"window.PHOTOCORPUS_POINTS={script_json(points)};\n", media_type="text/javascript")


async def text_js(request: Request) -> Response:
    features = request.path_params["features"]
    chunk = request.path_params["chunk"]
    data, points = await context_of(request).run(_cached_map(request, features))
    if not 0 <= chunk < points["textChunks"]:
        raise HTTPException(404, "no such text chunk")
    return Response(text_chunk_script(data, chunk), media_type="text/javascript")


async def map_thumb(request: Request) -> Response:
    """``thumbs/DIR/ID.jpg`` as report.js asks for it: the thumbnail of photo ID (the folder is ignored)."""
    name = request.path_params["name"]
    stem = name[:-4] if name.endswith(".jpg") else ""
    if not stem.isdigit():
        raise HTTPException(404, "thumbnails are named by photo id")
    request.path_params["photo_id"] = int(stem)
    return await image_thumb(request)
