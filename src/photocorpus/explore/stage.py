"""The explore stage: features -> 2-D map(s) -> k-means clusters -> a static report (and PNGs).

``explore(corpus)`` is what ``photocorpus explore`` runs. For the chosen feature set (by default the
CNN features, ``efficientnet-lite0``) it

1. takes every photo with a row and a stored image (or a stable, seeded sample of ``sample``);
2. reduces the rows to 50 dims with a seeded PCA and maps them to 2-D (t-SNE, UMAP or PCA), reusing
   the stored map when nothing changed (:mod:`photocorpus.explore.embed2d`);
3. clusters them with k-means (``k="auto"``: best silhouette) and stores the clusters in the catalog
   (:mod:`photocorpus.explore.cluster`);
4. does the same for the raw-pixel features when the corpus has them for the same photos, so the
   report shows seed 004's two maps side by side;
5. makes the missing thumbnails (:mod:`photocorpus.explore.thumbs`) and writes
   ``reports/<name>/index.html`` (:mod:`photocorpus.explore.report`), plus ``map.png`` and
   ``clusters.png`` with ``png=True`` (:mod:`photocorpus.explore.figures`).

Every step that costs time is cached (map, clusters, thumbnails), so a second run with the same
options only rewrites the report. Ctrl-C (``stop``) stops between steps or batches without storing
anything partial.
"""

from __future__ import annotations

import functools
import json
import os
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from photocorpus import corpus_paths, feature_store
from photocorpus.explore import cluster as clustering
from photocorpus.explore.embed2d import METHODS, MapParams, StoredMap, ensure_map, reduce_pca
from photocorpus.explore.errors import ExploreError, ExploreInterrupted
from photocorpus.explore.thumbs import report_relpath
from photocorpus.notebook import HtmlReport

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus
    from photocorpus.explore.report import Facet
    from photocorpus.interrupt import StopFlag
    from photocorpus.progress import Progress
    from photocorpus.search_index import SearchIndex

__all__ = ["COLOR_BY", "DEFAULT_FEATURES", "ExploreResult", "default_features", "explore", "stable_sample"]

DEFAULT_FEATURES = "efficientnet-lite0"
# Computes a missing feature set (corpus, set name, progress, stop) and says whether it did. Explore
# does not import the featurize stage: the public API (``pc.explore_photos``) passes one in, so that
# exploring a fresh corpus featurizes it first, while the two stages stay independent.
Featurizer = Callable[["Corpus", str, "Progress", "StopFlag | None"], bool]
IMAGE_SETS = ("efficientnet-lite0", "vgg19", "resnet50", "vgg19.fc2")  # preferred map sources, in order
RAW_PREFIX = "raw-pixels"
COLOR_BY = ("cluster", "label", "ontology", "imagenet", "split", "quality")
DEFAULT_ONTOLOGY = "seed004"


@dataclass
class ExploreResult(HtmlReport):
    """What one run did and where the report is."""

    index_html: Path | None  # None when interrupted before the report was written
    photos: int
    features: str
    compared_with: str | None
    maps: list[dict[str, Any]] = field(default_factory=list)
    clusters: list[dict[str, Any]] = field(default_factory=list)
    thumbnails: dict[str, int] = field(default_factory=dict)
    pngs: list[Path] = field(default_factory=list)
    featurized: bool = False
    seconds: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False  # stopped before the report was written (see ``interruption``)
    interruption: str = ""  # which step was stopped, and that a re-run continues from it

    def as_dict(self) -> dict[str, Any]:
        return {
            "index_html": str(self.index_html),
            "photos": self.photos,
            "features": self.features,
            "compared_with": self.compared_with,
            "maps": self.maps,
            "clusters": self.clusters,
            "thumbnails": self.thumbnails,
            "pngs": [str(p) for p in self.pngs],
            "featurized": self.featurized,
            "seconds": round(self.seconds, 2),
            "steps": {k: round(v, 2) for k, v in self.steps.items()},
        }


# ------------------------------------------------------------------------------------ selection
def default_features(corpus: Corpus) -> str | None:
    """The feature set a report maps when none is named: CNN features first, raw pixels last."""
    names = [e["name"] for e in corpus.feature_sets()]
    for name in IMAGE_SETS:
        if name in names:
            return name
    raw = sorted(n for n in names if n.startswith(RAW_PREFIX) and ".map-" not in n)
    return raw[0] if raw else None


def _raw_set_for(corpus: Corpus, features: str) -> str | None:
    if features.startswith(RAW_PREFIX):
        return None
    names = sorted(e["name"] for e in corpus.feature_sets())
    raw = [n for n in names if n.startswith(RAW_PREFIX) and ".map-" not in n]
    return ("raw-pixels" if "raw-pixels" in raw else raw[0]) if raw else None


def stable_sample(photo_ids: np.ndarray, n: int, seed: int) -> np.ndarray:
    """The ``n`` photos with the smallest seeded hash of their id, sorted by id.

    A hash, not a random draw: growing the corpus keeps most of an earlier sample, so maps and
    clusters of ``--sample`` runs stay comparable.
    """
    ids = np.asarray(photo_ids, dtype=np.uint64)
    if n >= len(ids):
        return np.sort(photo_ids).astype(np.int64)
    with np.errstate(over="ignore"):  # splitmix64: wrap-around is the point
        z = ids + np.uint64(0x9E3779B97F4A7C15) * np.uint64(seed + 1)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    chosen = np.argsort(z, kind="stable")[:n]
    return np.sort(ids[chosen]).astype(np.int64)


def _with_files(corpus: Corpus, ids: np.ndarray) -> np.ndarray:
    have = np.fromiter((r[0] for r in corpus.conn.execute("SELECT photo_id FROM files")), dtype=np.int64)
    return np.intersect1d(ids, have)


# ------------------------------------------------------------------------------------- per-photo facts
def _photo_rows(corpus: Corpus, ids: np.ndarray) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    lst = ids.tolist()
    for start in range(0, len(lst), 500):
        chunk = lst[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for r in corpus.conn.execute(
            f"""SELECT p.id, p.source, p.primary_label, p.title, p.caption, p.tags, p.hashtags, p.owner,
                       p.taken_at, p.page_url, f.path
                FROM photos p LEFT JOIN files f ON f.photo_id = p.id WHERE p.id IN ({marks})""",
            chunk,
        ):
            out[int(r["id"])] = dict(r)
    return out


def _terms(row: dict[str, Any]) -> list[str]:
    tags = [str(t).casefold() for t in json.loads(row["tags"] or "[]")]
    hashtags = [f"#{str(h).casefold().lstrip('#')}" for h in json.loads(row["hashtags"] or "[]")]
    return [t for t in dict.fromkeys(tags + hashtags) if t.strip("#")]


def _classifier(corpus: Corpus, features: str) -> str | None:
    """The model whose ImageNet labels the report shows: the mapped CNN's own, else any."""
    names = {e["name"] for e in corpus.feature_sets()}
    if f"{features}.logits" in names:
        return features
    row = corpus.conn.execute(
        "SELECT model FROM image_labels GROUP BY model ORDER BY COUNT(*) DESC"
    ).fetchone()
    if row is not None:
        return str(row[0])
    for name in IMAGE_SETS:
        if f"{name}.logits" in names:
            return name
    return None


def _imagenet_facts(
    corpus: Corpus, ids: np.ndarray, model: str | None, ontology: str
) -> tuple[list[str | None], list[str | None]]:
    """Top-1 ImageNet class name and its ontology category per photo.

    Read from the featurize stage's ``image_labels``/``image_categories``; photos missing there (an
    older featurize run, or features stored without labels) are decoded from ``<model>.logits``.
    """
    n = len(ids)
    top1: list[str | None] = [None] * n
    category: list[str | None] = [None] * n
    if model is None:
        return top1, category
    pos = {int(p): i for i, p in enumerate(ids)}
    for r in corpus.conn.execute(
        "SELECT photo_id, class_name FROM image_labels WHERE model = ? AND rank = 1", (model,)
    ):
        i = pos.get(int(r[0]))
        if i is not None:
            top1[i] = r[1]
    for r in corpus.conn.execute(
        "SELECT photo_id, category FROM image_categories WHERE model = ? AND ontology = ?", (model, ontology)
    ):
        i = pos.get(int(r[0]))
        if i is not None:
            category[i] = r[1]
    missing = [i for i in range(n) if top1[i] is None or category[i] is None]
    logits_set = f"{model}.logits"
    if missing and feature_store.has_feature_set(corpus, logits_set):
        from photocorpus.imagenet_labels import imagenet_classes, load_ontology, topk

        fs = feature_store.open_feature_set(corpus, logits_set)
        rows = fs.rows_for(ids[missing])
        ok = rows >= 0
        if ok.any():
            classes = imagenet_classes()
            by_index = load_ontology(ontology).by_index
            matrix = fs.matrix()
            have = np.asarray(missing)[ok]
            for start in range(0, len(have), 4096):
                sel = rows[ok][start : start + 4096]
                top, _probs = topk(np.asarray(matrix[sel], dtype=np.float32), 1)
                for i, c in zip(have[start : start + 4096], top[:, 0], strict=True):
                    top1[i] = top1[i] or classes[int(c)]
                    category[i] = category[i] or by_index[int(c)]
    return top1, category


def _curation_facts(corpus: Corpus, ids: np.ndarray) -> tuple[list[str | None], list[str | None]] | None:
    """Split and quality per photo from the curate stage's ``curation`` table, if it exists."""
    exists = corpus.conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'curation'"
    ).fetchone()
    if not exists:
        return None
    pos = {int(p): i for i, p in enumerate(ids)}
    split: list[str | None] = [None] * len(ids)
    quality: list[str | None] = [None] * len(ids)
    for r in corpus.conn.execute("SELECT photo_id, split, exclusion, quality_flags FROM curation"):
        i = pos.get(int(r[0]))
        if i is None:
            continue
        split[i] = r[1] or (f"excluded: {r[2].split(':')[0]}" if r[2] else None)
        if r[3] is not None:
            flags = json.loads(r[3] or "[]")
            quality[i] = ", ".join(sorted(flags)) if flags else "ok"
    return split, quality


# ------------------------------------------------------------------------------------------ the stage
def explore(
    corpus: Corpus,
    *,
    features: str | None = None,
    method: str = "tsne",
    k: int | str = "auto",
    color_by: str = "cluster",
    sample: int | None = None,
    seed: int = 0,
    png: bool = False,
    name: str | None = None,
    ontology: str = DEFAULT_ONTOLOGY,
    compare_raw: bool = True,
    search: SearchIndex | None = None,
    featurizer: Featurizer | None = None,
    progress: Progress = False,
    stop: StopFlag | None = None,
) -> ExploreResult:
    """Build ``reports/<name>/index.html`` for a feature set; see the module docstring.

    ``progress`` shows each long step (featurize, map, thumbnails) as :data:`~photocorpus.progress.
    Progress` says. Without features (none stored, or the default set missing) ``featurizer``
    computes them, or, when there is none, an error says to run ``photocorpus featurize``. A ``stop``
    between steps raises :class:`ExploreInterrupted` (nothing partial is stored);
    :func:`photocorpus.api.explore_photos` turns that into a result with ``interrupted``.
    """
    from photocorpus.progress import progress_phase

    started = time.perf_counter()
    steps: dict[str, float] = {}
    if method not in METHODS:
        raise ExploreError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if color_by not in COLOR_BY:
        raise ExploreError(f"unknown color_by {color_by!r}; choose one of {', '.join(COLOR_BY)}")
    if sample is not None and sample < 4:
        raise ExploreError(f"sample must be at least 4 photos, got {sample}")
    params = MapParams(method=method, seed=seed)
    halt = (lambda: bool(stop)) if stop is not None else None

    featurized = False
    features = features or default_features(corpus)
    if features is None or (
        features == DEFAULT_FEATURES and not feature_store.has_feature_set(corpus, features)
    ):
        if featurizer is None:
            raise ExploreError(
                f"{corpus.root} has no image features yet; compute them with `photocorpus featurize`"
            )
        features = DEFAULT_FEATURES
        featurized = featurizer(corpus, DEFAULT_FEATURES, progress, stop)
        steps["featurize"] = time.perf_counter() - started
    fs = feature_store.open_feature_set(corpus, features)  # raises with the list of known sets

    ids = _with_files(corpus, np.unique(fs.photo_ids()))
    if sample is not None:
        ids = stable_sample(ids, sample, seed)
    if len(ids) < 4:
        raise ExploreError(
            f"feature set {features!r} covers {len(ids)} photos with images; a map needs at least 4"
        )

    sets = [features]
    raw = _raw_set_for(corpus, features) if compare_raw else None
    if raw is not None:
        raw_ids = feature_store.open_feature_set(corpus, raw).photo_ids()
        if np.isin(ids, raw_ids).all():
            sets.append(raw)
        else:
            raw = None

    maps: dict[str, StoredMap] = {}
    runs: dict[str, clustering.ClusterRun] = {}
    for set_name in sets:
        t = time.perf_counter()
        reduced = _reducer(corpus, set_name, ids, params)
        total = params.early_exaggeration_iter + params.tsne_iter if method == "tsne" else None
        with progress_phase(progress, f"map {set_name} ({method})", total, unit="steps") as bar:
            maps[set_name] = ensure_map(corpus, set_name, ids, params, z=reduced, progress=bar, stop=halt)
        steps[f"map {set_name}"] = time.perf_counter() - t
        if halt and halt():
            raise ExploreInterrupted("interrupted after the map; re-run to continue")
        t = time.perf_counter()
        runs[set_name] = clustering.ensure_clusters(corpus, set_name, ids, k, z=reduced, seed=seed)
        steps[f"clusters {set_name}"] = time.perf_counter() - t

    t = time.perf_counter()
    with progress_phase(progress, "thumbnails", len(ids)) as bar:
        from photocorpus.explore.thumbs import ensure_thumbnails

        thumbs = ensure_thumbnails(corpus, ids, progress=bar, stop=halt)
    steps["thumbnails"] = time.perf_counter() - t

    t = time.perf_counter()
    report_name = name or _default_name(features, method, sample)
    out_dir = corpus.root / corpus_paths.REPORTS_DIR / corpus_paths.safe_component(report_name)
    data = _report_data(corpus, ids, sets, maps, runs, thumbs.paths, out_dir, ontology, color_by, search)
    from photocorpus.explore.report import write_report

    index_html = write_report(data, out_dir)
    steps["report"] = time.perf_counter() - t

    result = ExploreResult(
        index_html=index_html,
        photos=len(ids),
        features=features,
        compared_with=raw,
        featurized=featurized,
        thumbnails={"made": thumbs.made, "cached": thumbs.cached, "failed": len(thumbs.failed)},
    )
    for set_name in sets:
        m, run = maps[set_name], runs[set_name]
        result.maps.append(
            {"feature_set": set_name, "map_set": m.name, "method": method,
             "trustworthiness": round(m.trustworthiness, 4), "reused": m.reused}
        )  # fmt: skip
        result.clusters.append(
            {"run": run.run, "k": run.k, "method": run.method, "reused": run.reused,
             "silhouettes": run.params.get("silhouettes", {}),
             "weak": run.params.get("k_request") == "auto"
             and clustering.auto_k_is_weak(run.params.get("silhouettes", {}))}
        )  # fmt: skip
    if png:
        t = time.perf_counter()
        from photocorpus.explore.figures import write_pngs

        result.pngs = write_pngs(data, out_dir)
        steps["png"] = time.perf_counter() - t
    result.seconds = time.perf_counter() - started
    result.steps = steps
    return result


def _reducer(corpus: Corpus, set_name: str, ids: np.ndarray, params: MapParams) -> Any:
    """A cached callable: the PCA-reduced rows of ``ids`` (computed at most once, only if needed)."""

    @functools.cache
    def reduced() -> np.ndarray:
        fs = feature_store.open_feature_set(corpus, set_name)
        rows = fs.rows_for(ids)
        if (rows < 0).any():
            raise ExploreError(f"feature set {set_name!r} lacks rows for {int((rows < 0).sum())} photos")
        matrix = fs.matrix()
        if rows.size and np.array_equal(rows, np.arange(len(rows))) and len(rows) == len(matrix):
            data = matrix
        else:
            order = np.argsort(rows)  # read the memmap in file order, then restore the wanted order
            data = np.empty((len(rows), matrix.shape[1]), dtype=matrix.dtype)
            data[order] = matrix[rows[order]]
        return reduce_pca(data, params.pca_dims, seed=params.seed, normalize=params.normalize)

    return reduced


def _default_name(features: str, method: str, sample: int | None) -> str:
    name = features if method == "tsne" else f"{features}-{method}"
    return f"{name}-sample{sample}" if sample else name


def _link(corpus: Corpus, row: dict[str, Any] | None, out_dir: Path) -> str:
    """What a click opens: the stored image, relative to the report; else an http(s) page URL.

    The report is a static page opened from file://, so an image on an object store cannot be linked
    as a file: a click opens its https address where the store has one (public s3/gs objects), else
    the thumbnail the report already holds.
    """
    if row and row.get("path"):
        store = corpus.image_store
        if store is not None:
            url = store.browser_url(row["path"])
            return url if url else urllib.parse.quote(report_relpath(int(row["id"])))
        rel = os.path.relpath(corpus.abs_path(row["path"]), out_dir)
        return urllib.parse.quote(Path(rel).as_posix())
    url = (row or {}).get("page_url") or ""
    return url if url.startswith(("http://", "https://")) else ""


def _cluster_facet(run: clustering.ClusterRun, top1: list[str | None], key: str, title: str) -> Facet:
    from photocorpus.explore.report import Facet

    names = []
    for c in range(run.k):
        members = [top1[i] for i in np.flatnonzero(run.clusters == c) if top1[i]]
        common = Counter(members).most_common(1)
        names.append(f"{c}: {common[0][0]}" if common else f"cluster {c}")
    return Facet(key, title, names, run.clusters.astype(np.int64))


def _report_data(
    corpus: Corpus,
    ids: np.ndarray,
    sets: list[str],
    maps: dict[str, StoredMap],
    runs: dict[str, clustering.ClusterRun],
    thumb_paths: dict[int, Path],
    out_dir: Path,
    ontology: str,
    color_by: str,
    search: SearchIndex | None,
) -> Any:
    from photocorpus.explore.report import Gallery, MapView, PointText, ReportData, make_facet

    features = sets[0]
    rows = _photo_rows(corpus, ids)
    ordered = [rows.get(int(p)) or {} for p in ids]
    model = _classifier(corpus, features)
    top1, categories = _imagenet_facts(corpus, ids, model, ontology)
    terms = [_terms(r) if r else [] for r in ordered]
    labels = [r.get("primary_label") for r in ordered]

    facets = []
    galleries = []
    for set_name in sets:
        run = runs[set_name]
        key = f"cluster:{set_name}"
        facets.append(_cluster_facet(run, top1, key, f"cluster ({set_name}, k = {run.k})"))
        summaries = clustering.summarize_clusters(
            run.clusters,
            run.distances,
            ids,
            imagenet=top1,
            categories=categories,
            terms=terms,
            source_labels=labels,
        )
        galleries.append(Gallery(key, f"Clusters of {set_name} (k-means, k = {run.k})", summaries))
    facets.append(make_facet("label", "label", labels))
    if any(categories):
        facets.append(make_facet("ontology", f"ontology ({ontology}, {model})", categories))
    if any(top1):
        facets.append(make_facet("imagenet", f"top ImageNet label ({model})", top1))
    curation = _curation_facts(corpus, ids)
    if curation is not None and any(curation[0]):
        facets.append(make_facet("split", "split", curation[0]))
    if curation is not None and any(curation[1]):
        facets.append(make_facet("quality", "quality flags", curation[1]))
    available = {f.key.split(":")[0] for f in facets}
    if color_by not in available:
        stage = "curate" if color_by in ("split", "quality") else "featurize"
        hint = f"photocorpus {stage}" if color_by != "label" else ""
        raise ExploreError(
            f"cannot colour by {color_by!r}: this corpus has no {color_by} data yet"
            + (f" (run `{hint}` first)" if hint else "")
            + f"; available: {', '.join(sorted(available))}"
        )
    default_facet = f"cluster:{features}" if color_by == "cluster" else color_by

    map_views = []
    for set_name in sets:
        m = maps[set_name]
        kind = "raw pixels" if set_name.startswith(RAW_PREFIX) else "CNN features"
        method = m.name.rsplit(".map-", 1)[-1]
        map_views.append(
            MapView(
                set_name,
                f"{kind}: {set_name}, {method}",
                m.coords,
                f"trustworthiness {m.trustworthiness:.3f}",
            )
        )
    text = PointText(
        captions=[r.get("caption") or "" for r in ordered],
        titles=[r.get("title") or "" for r in ordered],
        owners=[r.get("owner") or "" for r in ordered],
        links=[_link(corpus, r, out_dir) for r in ordered],
    )
    photo_text = {int(p): (text.captions[i] or text.titles[i], text.links[i]) for i, p in enumerate(ids)}
    stats = _stats(corpus, ids, labels, sets, maps, runs, model, ordered)
    notes = []
    failed_thumbs = len(ids) - len(thumb_paths)
    if failed_thumbs:
        notes.append(f"{failed_thumbs} photos have no thumbnail (their image could not be read).")
    tooltip = ["label", f"cluster:{features}", "imagenet"]
    return ReportData(
        title=f"{corpus.root.name}: {features}",
        photo_ids=ids,
        maps=map_views,
        facets=facets,
        default_facet=default_facet,
        text=text,
        thumb_paths=thumb_paths,
        tooltip_facets=tooltip,
        galleries=galleries,
        stats=stats,
        notes=notes,
        search=search,
        photo_text=photo_text,
    )


def _stats(
    corpus: Corpus,
    ids: np.ndarray,
    labels: list[str | None],
    sets: list[str],
    maps: dict[str, StoredMap],
    runs: dict[str, clustering.ClusterRun],
    model: str | None,
    ordered: list[dict[str, Any]],
) -> list[tuple[str, str]]:
    total = corpus.count_photos()
    label_counts = Counter(v for v in labels if v)
    top = ", ".join(f"{lab} ({n:,})" for lab, n in label_counts.most_common(3))
    sources = Counter(r.get("source") for r in ordered if r)
    taken = sorted(r["taken_at"][:10] for r in ordered if r and r.get("taken_at"))
    fs = feature_store.open_feature_set(corpus, sets[0])
    run, main_map = runs[sets[0]], maps[sets[0]]
    k_note = f"k = {run.k}"
    if run.params.get("k_request") == "auto" and run.params.get("silhouettes"):
        best = run.params["silhouettes"].get(str(run.k))
        k_note += f" (auto: best silhouette {best:.3f})" if best is not None else " (auto)"
        if clustering.auto_k_is_weak(run.params["silhouettes"]):
            k_note += (
                f"; weak: no k separates these photos well (every silhouette under "
                f"{clustering.WEAK_SILHOUETTE}), pass --k N to choose"
            )
    stats = [
        ("Photos on the map", f"{len(ids):,} of {total:,}"),
        ("Labels", f"{len(label_counts):,}" + (f": {top}" if top else "")),
        ("Sources", ", ".join(f"{s} ({n:,})" for s, n in sources.most_common())),
        ("Features", f"{fs.name} ({fs.dims}-d)"),
        ("Map", f"{main_map.name.rsplit('.map-', 1)[-1]}, trustworthiness {main_map.trustworthiness:.3f}"),
        ("Clusters", k_note),
        ("With captions", f"{sum(1 for r in ordered if r and r.get('caption')):,}"),
    ]
    if taken:
        stats.append(("Taken", f"{taken[0]} to {taken[-1]}"))
    if model:
        stats.append(("ImageNet labels", model))
    if len(sets) > 1:
        stats.append(("Compared with", sets[1]))
    return stats
