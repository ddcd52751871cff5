"""The Python API: one function per stage, all with one convention. ``import photocorpus as pc``.

::

    corpus = pc.init("mycorpus")                      # or pc.open("mycorpus")
    pc.import_folder(corpus, "~/InstaNY100K")
    pc.featurize(corpus)                              # efficientnet-lite0 features + ImageNet labels
    pc.curate_photos(corpus)                          # duplicates, captions, bots, quality, splits
    corpus.photos(label="newyork", split="train")     # a pandas DataFrame
    pc.search(corpus, "sunset over the river", k=20)  # thumbnails in Jupyter

The convention, for every stage function:

* **The corpus first**: a :class:`~photocorpus.corpus.Corpus` (left open) or a path (opened for the
  call, closed after).
* **Settings as keywords.** A keyword named like a key of the stage's ``corpus.toml`` table
  overrides it for this call only (``pc.fetch_photos(corpus, jpeg_quality=95)``; the file is not
  rewritten). Every argument is checked before any work starts; a bad one raises
  :class:`~photocorpus.errors.ParameterError` (a ``ValueError``) that names it.
* ``progress=`` (:data:`~photocorpus.progress.Progress`): False (silent, the default), True (a
  progress bar per phase on stderr) or a callback that receives a
  :class:`~photocorpus.progress.ProgressUpdate` at each step.
* ``stop=`` (:class:`~photocorpus.interrupt.StopFlag`): ``stop.request()`` from another thread stops
  the stage after its current batch. Without one, the first Ctrl-C (or a notebook's interrupt
  button) does the same, and a second aborts.
* **A report back**: a dataclass with ``.interrupted``; an interrupted stage has committed what it
  did, and the same call again resumes. Reports, a corpus and search results show as tables and
  thumbnails in Jupyter.

Why ``fetch_photos``, ``curate_photos``, ``explore_photos`` and ``export_photos`` rather than
``fetch``, ``curate``...: those short names are the stage packages (``photocorpus.fetch``...), and
Python sets a package's attribute to a subpackage once it is imported, so ``pc.fetch`` would turn
from a function into a module the first time anything imported :mod:`photocorpus.fetch`.

The stages live in their packages and keep their own calling conventions; this module adapts them
and holds no stage logic. The CLI (:mod:`photocorpus.commands`) calls exactly these functions.

This module is longer than our ~600-line guide on purpose: it is the whole public surface, eighteen
documented stage adapters of 20 to 40 lines each and eleven thin ones for human decisions, and one
file is where a reader (and ``help()``) finds every argument of every stage. Its logic lives
elsewhere: checks in :mod:`photocorpus.params`, result types in :mod:`photocorpus.api_results`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from photocorpus.errors import ConfigError, ParameterError
from photocorpus.interrupt import StopFlag, graceful_interrupt
from photocorpus.params import check_choice, check_range, check_size, check_type, settings_for_call
from photocorpus.progress import Progress, progress_phase

if TYPE_CHECKING:
    from photocorpus.api_results import CaptionEmbeddingReport, EvaluationReport, ExportReport, SearchResults
    from photocorpus.corpus import Corpus
    from photocorpus.curate.stage import CurateReport
    from photocorpus.decision_log import Decision
    from photocorpus.enrich.flickr import EnrichReport
    from photocorpus.explore.stage import ExploreResult
    from photocorpus.features.fusion import FuseReport
    from photocorpus.features.run_report import FeaturizeReport
    from photocorpus.fetch.stage import FetchReport
    from photocorpus.importing import ImportReport
    from photocorpus.learn.classifier import ClassifierReport
    from photocorpus.learn.dataset import LabelFile
    from photocorpus.learn.semantic import SemanticReport
    from photocorpus.sources.flickr import HarvestQuery
    from photocorpus.sources.flickr import HarvestReport as FlickrHarvestReport
    from photocorpus.sources.instagram import HarvestReport as InstagramHarvestReport
    from photocorpus.sources.urls import UrlHarvestReport

PathLike = str | os.PathLike[str]
CURATE_STEPS = ("dedup", "captions", "bots", "quality", "split")
EXPORT_FORMATS = (
    "instacities", "imagefolder", "webdataset", "parquet", "mirflickr-json", "mirflickr-images", "attribution"
)  # fmt: skip
ENRICH_KINDS = ("exif", "info", "comments", "contexts")


# ------------------------------------------------------------------------------------------ plumbing
@contextlib.contextmanager
def _opened(corpus: Corpus | PathLike) -> Iterator[Corpus]:
    """The corpus a call works on: the caller's (left open) or one opened from a path (closed after)."""
    from photocorpus.corpus import Corpus

    if isinstance(corpus, Corpus):
        yield corpus
        return
    check_type("corpus", corpus, (str, os.PathLike), "a Corpus or the path of a corpus folder")
    with Corpus.open(corpus) as opened:
        yield opened


def _check_run(progress: Progress, stop: StopFlag | None) -> None:
    if not (isinstance(progress, bool) or callable(progress)):
        raise ParameterError(
            f"progress must be True, False or a callable taking a ProgressUpdate, not {progress!r}"
        )
    if stop is not None:
        check_type("stop", stop, StopFlag, "a photocorpus.StopFlag (or None)")


def _executor(executor: str | None, ray_address: str | None) -> dict[str, Any]:
    """The ``[executor]`` changes that ``executor=``/``ray_address=`` ask for (an address implies Ray)."""
    changes: dict[str, Any] = {}
    if executor is not None:
        changes["kind"] = check_choice("executor", executor, ("local", "ray"))
    if ray_address is not None:
        changes["ray_address"] = ray_address
        changes.setdefault("kind", "ray")
    return changes


@contextlib.contextmanager
def _stage(
    func: str,
    corpus: Corpus | PathLike,
    progress: Progress,
    stop: StopFlag | None,
    tables: Mapping[str, Mapping[str, Any]] | None = None,
) -> Iterator[tuple[Corpus, StopFlag]]:
    """What every stage call shares: its checks, the corpus, this call's settings, and Ctrl-C."""
    _check_run(progress, stop)
    with contextlib.ExitStack() as stack:
        c = stack.enter_context(_opened(corpus))
        for table, changes in (tables or {}).items():
            stack.enter_context(settings_for_call(c, table, changes, func=func))
        flag = stack.enter_context(graceful_interrupt(flag=stop))
        yield c, flag


def _names(name: str, value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    check_type(name, value, (list, tuple), "a string or a list of strings")
    return [str(v) for v in value]


# ----------------------------------------------------------------------------------------- corpora
def init(path: PathLike) -> Corpus:
    """Create a new, empty corpus folder (corpus.toml, catalog.sqlite, images/...) and open it.

    Refuses a folder that already holds a corpus: open that one with :func:`open`.
    """
    from photocorpus.corpus import Corpus

    check_type("path", path, (str, os.PathLike), "the path of a folder")
    return Corpus.create(path)


def open(path: PathLike, *, create: bool = False) -> Corpus:
    """Open the corpus in ``path`` (``create=True``: make it first when there is none).

    A :class:`~photocorpus.corpus.Corpus` is also a context manager: ``with pc.open(p) as corpus:``.
    """
    from photocorpus.corpus import Corpus

    check_type("path", path, (str, os.PathLike), "the path of a corpus folder")
    return Corpus.open(path, create=create)


# ----------------------------------------------------------------------------------------- sources
def import_folder(
    corpus: Corpus | PathLike,
    folder: PathLike,
    *,
    label: str | None = None,
    link: bool | None = None,
    follow_symlinks: bool | None = None,
    workers: int | None = None,
    progress: Progress = False,
    stop: StopFlag | None = None,
    **settings: Any,
) -> ImportReport:
    """Import the images of a local folder (InstaCities1M, MIRFLICKR, instaloader dumps or plain
    folders: the layout is detected) with their .txt/.json sidecars. Re-running adds nothing new.

    ``label`` labels every photo (default: from the layout); ``link`` hard-links instead of copying;
    ``follow_symlinks`` also imports symlinked files whose target is outside the folder (refused by
    default). Settings: the ``[import]`` table (``batch_size``, ``max_image_pixels``...).
    """
    from photocorpus.importing import import_folder as run_import
    from photocorpus.sources.folder import detect_layout, iter_candidates

    check_type("folder", folder, (str, os.PathLike), "the path of a folder")
    chosen = {**settings, "link": link, "follow_symlinks": follow_symlinks}
    changes = {k: v for k, v in chosen.items() if v is not None}
    with _stage("import_folder", corpus, progress, stop, {"import": changes}) as (c, flag):
        root = Path(folder).expanduser()
        layout = detect_layout(root)
        follow = c.settings.import_.follow_symlinks
        listing = iter_candidates(root, layout, label, follow_symlinks=follow) if progress else ()
        total = sum(1 for _ in listing) if progress else None
        with progress_phase(progress, f"import ({layout})", total) as advance:
            return run_import(c, root, label=label, workers=workers, stop=flag, advance=advance)


def harvest_flickr(
    corpus: Corpus | PathLike,
    queries: str | HarvestQuery | Sequence[str | HarvestQuery] = (),
    *,
    query_file: PathLike | None = None,
    min_upload: str | int | None = None,
    max_upload: str | int | None = None,
    min_taken: str | None = None,
    max_taken: str | None = None,
    has_geo: bool = False,
    accuracy: int | None = None,
    bbox: str | None = None,
    licenses: str | Sequence[str] = (),
    sort: str = "date-posted-asc",
    search_by: str = "text",
    tags_mode: str = "all",
    per_query: int | None = None,
    refresh: bool = False,
    api_key: str | None = None,
    api_url: str | None = None,
    progress: Progress = False,
    stop: StopFlag | None = None,
    **settings: Any,
) -> FlickrHarvestReport:
    """Search Flickr and record each photo found (ids, owner, caption, tags, geo, licence, dates,
    image URLs); no image is downloaded (that is :func:`fetch_photos`). Resumable per result page.

    ``queries``: search texts (each labels its photos) or :class:`~photocorpus.sources.flickr.
    HarvestQuery`; ``query_file``: an im2gps-style file (one query per line, ``-term`` negatives).
    Dates take ``YYYY-MM-DD``, ISO-8601 or epoch seconds; ``licenses`` takes ids or names (``"cc"``:
    every Creative Commons licence). ``api_key`` defaults to $FLICKR_API_KEY, then the settings;
    settings: the ``[flickr]`` table.
    """
    from photocorpus.flickr_api import FlickrClient
    from photocorpus.sources.flickr import (
        FlickrHarvester,
        HarvestQuery,
        SearchFilters,
        parse_date,
        parse_licenses,
        read_query_file,
    )

    check_choice("search_by", search_by, ("text", "tags"))
    check_choice("tags_mode", tags_mode, ("any", "all"))
    todo = read_query_file(Path(query_file)) if query_file is not None else []
    for q in [queries] if isinstance(queries, str | HarvestQuery) else list(queries):
        todo.append(q if isinstance(q, HarvestQuery) else HarvestQuery(str(q), str(q)))
    if not todo:
        raise ParameterError("queries is empty: give at least one query, or a query_file")
    with _stage("harvest_flickr", corpus, progress, stop, {"flickr": settings}) as (c, flag):
        cfg = c.settings.flickr
        filters = SearchFilters(
            min_upload=parse_date(None if min_upload is None else str(min_upload)),
            max_upload=parse_date(None if max_upload is None else str(max_upload)),
            min_taken=min_taken,
            max_taken=max_taken,
            has_geo=has_geo,
            accuracy=accuracy,
            bbox=bbox,
            licenses=parse_licenses(_names("licenses", licenses)),
            sort=sort,
            search_by=search_by,
            tags_mode=tags_mode,
            per_page=cfg.per_page,
        )
        key = api_key or os.environ.get("FLICKR_API_KEY") or cfg.api_key or ""
        url = cfg.endpoint(api_url or os.environ.get("PHOTOCORPUS_FLICKR_API_URL"))  # https, or loopback
        with (
            FlickrClient.from_settings(key, cfg, url) as client,
            progress_phase(progress, "harvest flickr") as advance,
        ):
            harvester = FlickrHarvester(
                c, client, filters, window_target=cfg.window_target, per_query=per_query, stop=flag,
                progress=advance,
            )  # fmt: skip
            return harvester.run(todo, refresh=refresh)


def harvest_instagram(
    corpus: Corpus | PathLike,
    *,
    hashtags: str | Sequence[str] = (),
    profiles: str | Sequence[str] = (),
    max_posts: int | None = None,
    login: str | None = None,
    session_file: PathLike | None = None,
    owner_names: bool | None = None,
    fresh: bool = False,
    progress: Progress = False,
    stop: StopFlag | None = None,
    **settings: Any,
) -> InstagramHarvestReport:
    """Record Instagram posts of hashtags and profiles through instaloader (ids, owners, captions,
    hashtags, dates, likes, location, image URLs), resumable. Hashtags need a session saved by
    ``instaloader --login USER`` (``login=USER``, or ``session_file``).

    ``max_posts`` stops each query after that many posts (a larger one continues); ``fresh`` ignores
    the saved position. Raises :class:`~photocorpus.sources.instagram.InstagramError` when Instagram
    stops the harvest, after committing what was read. Settings: the ``[instagram]`` table.
    """
    from photocorpus.sources.instagram import (
        InstaloaderPosts,
        open_instaloader,
        queries_from_options,
    )
    from photocorpus.sources.instagram import harvest_instagram as run_harvest

    if max_posts is not None:
        check_range("max_posts", max_posts, 1)
    queries = queries_from_options(_names("hashtags", hashtags), _names("profiles", profiles))
    if not queries:
        raise ParameterError("give at least one of hashtags or profiles")
    with _stage("harvest_instagram", corpus, progress, stop, {"instagram": settings}) as (c, flag):
        cfg = c.settings.instagram
        loader = open_instaloader(
            login=login,
            session_file=Path(session_file).expanduser() if session_file else None,
            max_connection_attempts=cfg.max_connection_attempts,
            request_timeout_s=cfg.request_timeout_s,
        )
        total = max_posts * len(queries) if max_posts else None
        try:
            with progress_phase(progress, "harvest instagram", total, unit="posts") as advance:
                return run_harvest(
                    c, queries, InstaloaderPosts(loader), max_posts=max_posts, fresh=fresh,
                    owner_lookup=owner_names, login=login, stop=flag, advance=advance,
                )  # fmt: skip
        finally:
            loader.close()


def harvest_urls(
    corpus: Corpus | PathLike,
    file: PathLike,
    *,
    url_col: str = "url",
    caption_col: str | None = None,
    label_col: str | None = None,
    label: str | None = None,
    input_format: str | None = None,
    progress: Progress = False,
    stop: StopFlag | None = None,
) -> UrlHarvestReport:
    """Add every URL of a list (img2dataset's formats: txt, csv, tsv, json, jsonl, parquet, .gz) as a
    photo to fetch later. ``label`` labels rows without a ``label_col`` (default: the file's name)."""
    from photocorpus.sources.urls import harvest_url_list

    with (
        _stage("harvest_urls", corpus, progress, stop) as (c, flag),
        progress_phase(progress, "harvest urls", unit="rows") as advance,
    ):
        return harvest_url_list(
            c, file, url_col=url_col, caption_col=caption_col, label_col=label_col, label=label,
            input_format=input_format, stop=flag, advance=advance,
        )  # fmt: skip


# ------------------------------------------------------------------------------------------- fetch
def fetch_photos(
    corpus: Corpus | PathLike,
    *,
    retry_failed: bool | str | Sequence[str] = False,
    limit: int | None = None,
    preset: str | None = None,
    executor: str | None = None,
    ray_address: str | None = None,
    progress: Progress = False,
    stop: StopFlag | None = None,
    **settings: Any,
) -> FetchReport:
    """Download every harvested photo not fetched yet; validate, de-frame, resize and store it.

    ``retry_failed``: True retries failures that could be transient (timeouts, 5xx...), a reason or
    a list of reasons retries exactly those. ``limit`` caps the photos of this call. ``preset``:
    ``"im2gps"`` sets im2gps's download rules at once (``size_policy="strict"``: Large, else Original,
    else the photo fails as ``no_allowed_size``; longest side 1024, shorter side at least 500,
    width/height 0.625..1.6, ``frame_rule="im2gps"``); settings given beside it win. ``executor``:
    ``"local"`` or ``"ray"``. Settings: the ``[fetch]`` table (``size="300x300"``, ``min_side_px``,
    ``size_policy``, ``frame_rule``, ``host_rate_per_s``, ``allow_private_urls``...);
    ``embed_provenance`` names the sources whose stored JPEGs carry their provenance as XMP + a JPEG
    comment (default ``["flickr"]``; True: every source, False: none).
    """
    from photocorpus.config import FETCH_PRESETS
    from photocorpus.fetch.stage import fetch_photos as run_fetch

    if preset is not None:
        settings = {**FETCH_PRESETS[check_choice("preset", preset, FETCH_PRESETS)], **settings}
    if settings.get("size") is not None:
        check_size("size", settings["size"], 65_535)
    if limit is not None:
        check_range("limit", limit, 0)
    if retry_failed is True:
        reasons: list[str] | None = []
    elif retry_failed is False:
        reasons = None
    else:
        reasons = _names("retry_failed", retry_failed)
    tables = {"fetch": settings, "executor": _executor(executor, ray_address)}
    with (
        _stage("fetch_photos", corpus, progress, stop, tables) as (c, flag),
        progress_phase(progress, "fetch") as advance,
    ):
        return run_fetch(
            c, c.settings.fetch, retry_failed=reasons, limit=limit, stop=flag, advance=advance,
            on_total=advance.set_total,
        )  # fmt: skip


# ------------------------------------------------------------------------------------------ curate
def curate_photos(
    corpus: Corpus | PathLike,
    *,
    steps: str | Sequence[str] = CURATE_STEPS,
    languages: str | Sequence[str] | None = None,
    delete_duplicates: bool = False,
    redo: bool = False,
    workers: int | None = None,
    executor: str | None = None,
    ray_address: str | None = None,
    progress: Progress = False,
    stop: StopFlag | None = None,
    **settings: Any,
) -> CurateReport:
    """Curate: find exact and near duplicates, clean captions and tell their language, flag bots,
    score image quality, and assign stable, leak-free train/val/test splits per label.

    ``steps``: some of ``dedup``, ``captions``, ``bots``, ``quality``, ``split`` (always run in that
    order). ``delete_duplicates`` removes the stored files of duplicates (never by default);
    ``languages`` keeps only captions in these languages in the splits. Settings: the ``[curate]``
    table (``phash_max_distance``, ``semantic``, ``exclude_bots``, ``train_fraction``...).
    """
    from photocorpus.curate.stage import check_steps, curate

    wanted = check_steps(_names("steps", steps))
    langs = None if languages is None else _names("languages", languages)
    tables = {"curate": settings, "executor": _executor(executor, ray_address)}
    with _stage("curate_photos", corpus, progress, stop, tables) as (c, flag):
        return curate(
            c, c.settings.curate, steps=wanted, languages=langs, delete_duplicates=delete_duplicates,
            redo=redo, workers=workers, stop=flag, progress=progress,
        )  # fmt: skip


# ---------------------------------------------------------------------------------------- features
def featurize(
    corpus: Corpus | PathLike,
    model: str = "efficientnet-lite0",
    *,
    weights: PathLike | None = None,
    workers: int | None = None,
    ontologies: Sequence[PathLike] = (),
    limit: int | None = None,
    executor: str | None = None,
    ray_address: str | None = None,
    progress: Progress = False,
    stop: StopFlag | None = None,
    **settings: Any,
) -> FeaturizeReport:
    """Compute image features (and ImageNet labels, ontology categories) for every stored photo
    that lacks them; re-running does only what is left.

    ``model``: ``efficientnet-lite0`` (default), ``efficientnet-lite1`` (240 px), ``efficientnet-lite2``
    (260 px), ``raw-pixels``, ``vgg19`` or ``resnet50`` (these two need ``weights``, a torchvision-format
    state dict). ``workers=0`` decodes in this process (default:
    the ``[featurize]`` setting, where 0 means one process per core). Settings: the ``[featurize]``
    table (``batch_size``, ``threads``, ``dtype``, ``backend``, ``raw_pixels_pca``...).
    """
    from photocorpus.features.pipeline import featurize_images

    check_type("model", model, str, "a model name such as 'efficientnet-lite0'")
    if settings.get("raw_pixels_pca") and model != "raw-pixels":
        raise ParameterError("raw_pixels_pca only applies to model='raw-pixels'")
    if limit is not None:
        check_range("limit", limit, 0)
    if workers is not None:
        check_range("workers", workers, 0)
    tables = {"featurize": settings, "executor": _executor(executor, ray_address)}
    with (
        _stage("featurize", corpus, progress, stop, tables) as (c, flag),
        progress_phase(progress, f"featurize {model}", unit="img") as handle,
    ):
        return featurize_images(
            c, model, weights=weights, workers=workers, ontologies=[str(p) for p in ontologies],
            limit=limit, stop=flag, progress=handle,
        )  # fmt: skip


def fuse_features(
    corpus: Corpus | PathLike,
    sets: Sequence[str],
    *,
    name: str,
    progress: Progress = False,
    stop: StopFlag | None = None,
) -> FuseReport:
    """Fuse two or more feature sets into a new set ``name``: per photo present in all of them, the
    concatenation of its L2-normalised rows (a zero row stays zero). The fused set is an ordinary
    feature set (``explore_photos(features=name)``, ``train_classifier(image_features=name)``...).
    Photos missing from any input are left out (``report.missing``); re-running with the same
    inputs fuses only new photos, and an existing set fused from other inputs is refused.
    """
    from photocorpus.features.fusion import fuse_feature_sets

    check_type("name", name, str, "the name of the new feature set")
    names = _names("sets", sets)
    with (
        _stage("fuse_features", corpus, progress, stop) as (c, flag),
        progress_phase(progress, f"fuse {name}", unit="photos") as handle,
    ):
        return fuse_feature_sets(c, names, name, progress=handle, stop=flag)


def embed_captions(
    corpus: Corpus | PathLike,
    model: str = "minilm",
    *,
    retrain: bool = False,
    tag_pooling: str = "mean",
    progress: Progress = False,
    stop: StopFlag | None = None,
    **settings: Any,
) -> CaptionEmbeddingReport:
    """Embed the caption of every stored photo lacking a row: ``minilm`` (sentence embeddings),
    ``lda`` or ``word2vec`` (+ ``word2vec-tfidf``; both trained on the corpus's own captions),
    ``minilm-tags`` (each photo's tag list, pooled from per-tag MiniLM vectors as ``tag_pooling`` says:
    ``mean`` or ``joined``), or ``all`` (the caption models: not ``minilm-tags``). ``retrain`` fits the
    LDA/word2vec model again, or drops a ``minilm-tags`` set pooled another way. Settings: the
    ``[featurize]`` table (``threads``, ``dtype``, ``lda_topics``, ``word2vec_dims``, ``text_seed``).
    """
    from photocorpus.api_results import CaptionEmbeddingReport
    from photocorpus.features.text_embed import TAG_POOLINGS
    from photocorpus.features.text_embed import embed_captions as run_embed

    check_type("model", model, str, "minilm, minilm-tags, lda, word2vec, word2vec-tfidf or all")
    check_choice("tag_pooling", tag_pooling, TAG_POOLINGS)
    with (
        _stage("embed_captions", corpus, progress, stop, {"featurize": settings}) as (c, flag),
        progress_phase(progress, f"embed captions ({model})", unit="captions") as handle,
    ):
        cfg = c.settings.featurize  # text_embed takes threads as an argument only, not from the settings
        runs = run_embed(
            c, model, retrain=retrain, threads=cfg.threads or None, tag_pooling=tag_pooling, stop=flag,
            progress=handle,
        )  # fmt: skip
    return CaptionEmbeddingReport(runs=runs, interrupted=any(r.interrupted for r in runs))


# ------------------------------------------------------------------------------------------ enrich
def enrich_flickr(
    corpus: Corpus | PathLike,
    *,
    kinds: str | Sequence[str] = ENRICH_KINDS,
    max_photos: int | None = None,
    api_key: str | Sequence[str] | None = None,
    api_url: str | None = None,
    progress: Progress = False,
    stop: StopFlag | None = None,
    **settings: Any,
) -> EnrichReport:
    """Ask Flickr for each harvested photo's EXIF, notes and views, comments, albums and groups
    (MIRFLICKR-1M's metadata), resumable per (photo, kind).

    ``kinds``: some of ``exif``, ``info``, ``comments``, ``contexts``. ``api_key``: one key or several
    of yours (one rate limit each); default: $FLICKR_API_KEY (comma-separated allowed), then the
    ``[flickr]`` settings, which are this function's settings too. The report's ``plan`` says how
    many calls there were to make and how long they take.
    """
    from photocorpus.enrich.flickr import FlickrEnricher, api_keys_from, parse_kinds, plan
    from photocorpus.flickr_api import FlickrClient

    wanted = parse_kinds(_names("kinds", kinds))
    if max_photos is not None:
        check_range("max_photos", max_photos, 1)
    given = ",".join(_names("api_key", api_key)) if api_key is not None else os.environ.get("FLICKR_API_KEY")
    with _stage("enrich_flickr", corpus, progress, stop, {"flickr": settings}) as (c, flag):
        cfg = c.settings.flickr
        keys = api_keys_from(given, cfg.api_key, cfg.extra_api_keys)
        if not keys:
            raise ConfigError("no Flickr API key: set FLICKR_API_KEY or pass api_key (see the README)")
        todo = plan(c, wanted, len(keys), cfg.calls_per_hour, max_photos)
        url = cfg.endpoint(api_url or os.environ.get("PHOTOCORPUS_FLICKR_API_URL"))  # https, or loopback
        clients = [FlickrClient.from_settings(key, cfg, url) for key in keys]
        try:
            with progress_phase(progress, "enrich", todo.calls, unit="calls") as handle:
                report = FlickrEnricher(c, clients, wanted, stop=flag, progress=handle).run(max_photos)
        finally:
            for client in clients:
                client.close()
    report.plan = todo
    return report


# ----------------------------------------------------------------------------------------- explore
def explore_photos(
    corpus: Corpus | PathLike,
    *,
    features: str | None = None,
    method: str = "tsne",
    k: int | str = "auto",
    color_by: str = "cluster",
    sample: int | None = None,
    seed: int = 0,
    png: bool = False,
    name: str | None = None,
    ontology: str = "seed004",
    compare_raw: bool = True,
    progress: Progress = False,
    stop: StopFlag | None = None,
) -> ExploreResult:
    """Map a feature set to 2-D, cluster it, and write ``reports/<name>/index.html`` (opens from disk).

    ``features`` defaults to the CNN features (computed first if missing); ``method``: ``tsne``,
    ``umap`` or ``pca``; ``k``: a number of clusters or ``"auto"`` (best silhouette over 4..30);
    ``sample`` maps a stable, seeded sample of that many photos; ``png`` also writes map.png and
    clusters.png. Maps, clusters and thumbnails are cached, so a re-run takes seconds. An interrupted
    run stores nothing partial and returns ``interrupted=True`` with ``interruption`` saying where.
    """
    from photocorpus.explore.errors import ExploreInterrupted
    from photocorpus.explore.stage import COLOR_BY, ExploreResult, explore
    from photocorpus.explore.stage import METHODS as MAP_METHODS

    check_choice("method", method, MAP_METHODS)
    check_choice("color_by", color_by, COLOR_BY)
    if k != "auto":
        check_range("k", k, 2)
    if sample is not None:
        check_range("sample", sample, 4)
    with _stage("explore_photos", corpus, progress, stop) as (c, flag):
        # The search box's rankings come from the learn stage's semantic model, when there is one:
        # the two stages meet here, not through each other's modules.
        from photocorpus.learn.report_search import report_search_index

        try:
            return explore(
                c, features=features, method=method, k=k, color_by=color_by, sample=sample, seed=seed,
                png=png, name=name, ontology=ontology, compare_raw=compare_raw, progress=progress, stop=flag,
                search=report_search_index(c), featurizer=_featurize_for_explore,
            )  # fmt: skip
        except ExploreInterrupted as exc:
            return ExploreResult(
                index_html=None, photos=0, features=features or "", compared_with=None, interrupted=True,
                interruption=str(exc),
            )  # fmt: skip


def _featurize_for_explore(
    corpus: Corpus, feature_set: str, progress: Progress, stop: StopFlag | None
) -> bool:
    """The featurize stage run for explore on a corpus without image features (see ``Featurizer``)."""
    from photocorpus.explore.errors import ExploreError, ExploreInterrupted
    from photocorpus.features.pipeline import featurize_images
    from photocorpus.progress import progress_phase

    fetched = corpus.conn.execute("SELECT COUNT(*) FROM files").fetchone()[0]
    if not fetched:
        raise ExploreError(f"{corpus.root} has no stored images to explore; import or fetch photos first")
    with progress_phase(progress, f"featurize {feature_set}", fetched) as bar:
        report = featurize_images(corpus, feature_set, stop=stop, progress=bar)
    if report.interrupted:
        raise ExploreInterrupted("interrupted while computing features; re-run to continue")
    return True


# ------------------------------------------------------------------------------------------- learn
def _label_file(labels: PathLike | LabelFile | None) -> LabelFile | None:
    from photocorpus.learn.dataset import LabelFile, read_label_file

    if labels is None or isinstance(labels, LabelFile):
        return labels
    check_type("labels", labels, (str, os.PathLike), "the path of a label CSV (or a LabelFile)")
    return read_label_file(labels)


def _on_epoch(
    progress: Progress, epochs: int, on_epoch: Callable[[int, float, float], None] | None
) -> contextlib.AbstractContextManager[Callable[[int, float, float], None]]:
    """One ``train`` phase over epochs (early stopping usually ends it before the last), calling the
    caller's own ``on_epoch(epoch, train_loss, val_loss)`` too."""

    @contextlib.contextmanager
    def phase() -> Iterator[Callable[[int, float, float], None]]:
        with progress_phase(progress, "train", epochs, unit="epochs") as advance:

            def each(epoch: int, train_loss: float, val_loss: float) -> None:
                advance(1)
                if on_epoch is not None:
                    on_epoch(epoch, train_loss, val_loss)

            yield each

    return phase()


def train_classifier(
    corpus: Corpus | PathLike,
    target: str = "label",
    *,
    labels: PathLike | LabelFile | None = None,
    head: str = "linear",
    hidden: int = 1024,
    name: str | None = None,
    top_tags: int = 100,
    min_tag_count: int = 5,
    finetune_blocks: int = 0,
    on_epoch: Callable[[int, float, float], None] | None = None,
    progress: Progress = False,
    stop: StopFlag | None = None,
    **settings: Any,
) -> ClassifierReport:
    """Train a classifier on the train split, early-stop on val, report on test, save it in the corpus.

    ``target``: ``label`` (one label per photo, e.g. the city), ``tags`` (the ``top_tags`` most used)
    or ``concepts`` (needs ``labels``, a CSV such as MIRFLICKR's labels.csv). ``head``: ``linear`` or
    ``mlp`` (``hidden`` units); ``finetune_blocks`` also trains the last N EfficientNet blocks.
    ``on_epoch(epoch, train_loss, val_loss)`` is called after each epoch. Settings: the ``[learn]``
    table (``image_features``, ``splits``, ``epochs``, ``patience``, ``learning_rate``, ``seed``...).
    A stopped run saves the best epoch so far and reports ``interrupted``.
    """
    from photocorpus.learn.classifier import train_classifier as run_train

    check_choice("target", target, ("label", "tags", "concepts"))
    check_choice("head", head, ("linear", "mlp"))
    check_range("finetune_blocks", finetune_blocks, 0, 5)
    label_file = _label_file(labels)
    if target == "concepts" and label_file is None:
        raise ParameterError("target='concepts' needs labels (a CSV such as MIRFLICKR's labels.csv)")
    with (
        _stage("train_classifier", corpus, progress, stop, {"learn": settings}) as (c, flag),
        progress_phase(progress if finetune_blocks else False, "reading images") as reading,
        _on_epoch(progress, c.settings.learn.epochs, on_epoch) as each,
    ):
        return run_train(
            c, target, labels=label_file, head=head, hidden=hidden, name=name, top_tags=top_tags,
            min_tag_count=min_tag_count, finetune_blocks=finetune_blocks, on_epoch=each,
            progress=reading, stop=flag,
        )  # fmt: skip


def train_semantic(
    corpus: Corpus | PathLike,
    text: str = "auto",
    *,
    loss: str | None = None,
    head: str | None = None,
    hidden: int = 1024,
    temperature: float | None = None,
    name: str | None = None,
    labels: PathLike | LabelFile | None = None,
    finetune_blocks: int = 0,
    on_epoch: Callable[[int, float, float], None] | None = None,
    progress: Progress = False,
    stop: StopFlag | None = None,
    **settings: Any,
) -> SemanticReport:
    """Learn a map from image features into a caption-embedding space (Gomez et al., ECCV-W 2018), so
    that text queries find photos without captions. Needs :func:`embed_captions` of ``text`` first.

    ``text``: ``auto``, ``minilm``, ``minilm-tags`` (tag lists), ``lda``, ``word2vec`` or
    ``word2vec-tfidf``; ``loss``: ``cosine``, ``sigmoid-ce`` (the paper's), ``infonce``
    (``temperature``) or ``hard-negative``; ``head``: ``linear`` or ``mlp``. Left as ``auto`` /
    ``None``, text, loss, head and temperature are chosen by whether the photos' text is bare tag
    lists or sentences (the README's "Learn and search"). ``labels`` adds the concept mAP to the
    metrics. ``finetune_blocks`` (0-5) also trains the last N EfficientNet-Lite0 blocks on the
    image files, and stores every photo's tuned embedding with the model for search. Settings: the
    ``[learn]`` table, as for :func:`train_classifier`.
    """
    from photocorpus.learn.semantic import LOSSES, TEXT_SPACES
    from photocorpus.learn.semantic import train_semantic as run_train

    check_choice("text", text, ("auto", *TEXT_SPACES))
    if loss is not None:
        check_choice("loss", loss, LOSSES)
    if head is not None:
        check_choice("head", head, ("linear", "mlp"))
    if temperature is not None:
        check_range("temperature", temperature, 1e-6, 10)
    check_range("finetune_blocks", finetune_blocks, 0, 5)
    label_file = _label_file(labels)
    with (
        _stage("train_semantic", corpus, progress, stop, {"learn": settings}) as (c, flag),
        progress_phase(progress if finetune_blocks else False, "reading images") as reading,
        _on_epoch(progress, c.settings.learn.epochs, on_epoch) as each,
    ):
        report = run_train(
            c, text, loss=loss, head=head, hidden=hidden, temperature=temperature, name=name,
            labels=label_file, finetune_blocks=finetune_blocks, on_epoch=each, progress=reading,
            stop=flag,
        )  # fmt: skip
        if not report.interrupted:
            # The search index now, while torch and the weights are loaded anyway: the first search
            # in a fresh process then reads the index and never imports torch (docs/search.md).
            from photocorpus.learn.search import Searcher

            Searcher(c, model=report.name, method="semantic")
        return report


# ------------------------------------------------------------------------------------------ search
def search(
    corpus: Corpus | PathLike,
    query: str | None = None,
    *,
    image: PathLike | None = None,
    k: int = 20,
    model: str | None = None,
    method: str = "auto",
    index: str | None = None,
    rebuild_index: bool = False,
    bridge_weight: float = 0.0,
) -> SearchResults:
    """The ``k`` photos that best match a text ``query`` (``"beach +sunset -people"``) or an example
    ``image`` file, best first. Shows thumbnails in Jupyter; ``.to_frame()`` gives a DataFrame.

    ``method``: ``auto`` (the newest semantic model when there is one, else the caption-free ImageNet
    bridge), ``semantic`` or ``bridge``; ``model`` names a semantic model. ``index``: ``auto``,
    ``flat``, ``ivf`` or ``hnsw`` (default: the ``[learn]`` setting). Search is a query, not a stage:
    it takes no ``progress`` or ``stop``.

    ``bridge_weight`` (0 <= w < 1; 0, the default, is off): rank a text query by
    ``(1 - w) z(semantic) + w z(bridge)``, the semantic model's score blended with the caption-free
    ImageNet bridge's, each standardised over the corpus's photos. On MIRFLICKR w = 0.1-0.2 (chosen
    on labelled validation photos) helped photos without captions most (docs/search.md).
    """
    from photocorpus.api_results import SearchResults
    from photocorpus.learn.score_fusion import check_bridge_weight
    from photocorpus.learn.search import METHODS as SEARCH_METHODS
    from photocorpus.learn.search import Searcher, shared_searcher

    if (query is None) == (image is None):
        raise ParameterError("give a text query or an image file (one of query, image; not both)")
    check_range("k", k, 1, 10_000)
    check_choice("method", method, SEARCH_METHODS)
    check_bridge_weight(bridge_weight)
    if bridge_weight and image is not None:
        raise ParameterError("bridge_weight applies to text queries only; leave it 0 with image=")
    if index is not None:
        check_choice("index", index, ("auto", "flat", "ivf", "hnsw"))
    with _opened(corpus) as c:
        # the default index is kept loaded between calls in this process (a notebook, `serve`)
        searcher = (
            shared_searcher(c, model, method)
            if index is None and not rebuild_index
            else Searcher(c, model=model, method=method, index_kind=index, rebuild_index=rebuild_index)
        )
        hits = (
            searcher.search_text(query, k, corpus=c, bridge_weight=bridge_weight)
            if query is not None
            else searcher.search_image(image, k, corpus=c)  # type: ignore[arg-type]
        )
        paths = c.file_paths([h.photo_id for h in hits])
        locations = dict(zip(paths, c.image_locations(list(paths.values())), strict=True))
        results = SearchResults(
            hits=hits,
            query=query,
            image=None if image is None else str(image),
            method=searcher.method_for(bridge_weight) if query is not None else searcher.method,
            explanation=searcher.explain(query) if query is not None and searcher.uses_bridge else "",
            locations=locations,
        )
        if searcher.index is not None:
            info = searcher.index.info
            results.index_kind, results.index_count = info.kind, info.count
            results.index_action = searcher.index_action
    return results


def evaluate(
    corpus: Corpus | PathLike,
    *,
    labels: PathLike | LabelFile | None = None,
    queries: PathLike | None = None,
    judgments: PathLike | None = None,
    k: int = 5,
    on: str = "test",
    model: str | None = None,
    method: str = "auto",
    unjudged: PathLike | None = None,
    **settings: Any,
) -> EvaluationReport:
    """Retrieval quality: the mAP of label queries (``labels``, a CSV such as MIRFLICKR's; the
    MIRFlickr protocol) or the P@k of free ``queries`` (a file, or ``"instacities"`` for the paper's
    24) against ``judgments`` (CSV query,photo,relevant). ``unjudged`` writes the unjudged top-k
    results as a CSV to fill in. ``on``: the split ranked (``test``, ``val``, ``train`` or ``all``).
    Settings: the ``[learn]`` table (``splits``...).
    """
    from photocorpus.api_results import EvaluationReport
    from photocorpus.learn.evaluate import (
        evaluate_judged_queries,
        evaluate_label_queries,
        read_judgments,
        read_queries,
        write_unjudged,
    )
    from photocorpus.learn.search import Searcher

    if labels is None and queries is None:
        raise ParameterError("give labels (label queries) and/or queries (a file, or 'instacities')")
    check_choice("on", on, ("train", "val", "test", "all"))
    check_range("k", k, 1, 1000)
    label_file = _label_file(labels)
    with _stage("evaluate", corpus, False, None, {"learn": settings}) as (c, _flag):
        searcher = Searcher(c, model=model, method=method)
        specs = read_queries(queries) if queries is not None else None
        if label_file is not None:
            result = evaluate_label_queries(c, searcher, label_file, specs, on=on)
        else:
            assert specs is not None
            judged = read_judgments(judgments) if judgments is not None else {}
            result = evaluate_judged_queries(c, searcher, specs, judged, k=k, on=on)
            if unjudged is not None:
                write_unjudged(unjudged, result["unjudged"])
    return EvaluationReport(result=result)


# ------------------------------------------------------------------------------------------ export
def export_photos(
    corpus: Corpus | PathLike,
    format: str,
    out: PathLike,
    *,
    splits: str | Sequence[str] | None = None,
    size: str | None = None,
    workers: int | None = None,
    embed_provenance: bool = False,
    photo_ids: Sequence[int] | None = None,
    progress: Progress = False,
) -> ExportReport:
    """Write the curated corpus as ``format``: ``instacities``, ``imagefolder``, ``webdataset``
    (images of the photos in a split), ``parquet`` (one metadata row per photo; ``out`` is the file),
    ``mirflickr-json`` and ``mirflickr-images`` (MIRFLICKR-1M's trees, every photo) or
    ``attribution`` (credits of the Creative Commons photos).

    ``splits``: some of ``train``, ``val``, ``test`` (default: all); ``size="300x300"`` resizes to cover
    and centre-crops; ``embed_provenance`` writes each photo's source, owner, title and licence into
    its exported JPEG (image formats only); ``photo_ids`` exports only those photos (a selection, as
    ``photocorpus serve`` makes one; the format's own rules still apply: a training layout writes only
    those in a split). Exports only read the catalog: nothing to stop or resume.
    """
    from photocorpus.api_results import ExportReport
    from photocorpus.export.formats import IMAGE_FORMATS, export_format, photos_to_export
    from photocorpus.export.rows import parse_splits

    check_choice("format", format, EXPORT_FORMATS)
    if embed_provenance and format not in IMAGE_FORMATS:
        raise ParameterError(
            f"{format} holds no images; embed_provenance applies to {', '.join(IMAGE_FORMATS)}"
        )
    wanted = parse_splits(_names("splits", splits))
    dims = check_size("size", size, 20_000) if size is not None else None
    ids = None
    if photo_ids is not None:
        check_type("photo_ids", photo_ids, (list, tuple), "a list of photo ids (or None for every photo)")
        ids = [int(i) for i in photo_ids]
    _check_run(progress, None)
    path = Path(out)
    with _opened(corpus) as c:
        total = photos_to_export(c, format, wanted, ids) if progress else None
        with progress_phase(progress, f"export {format}", total) as advance:
            counts = export_format(
                c, format, path, splits=wanted, photo_ids=ids, size=dims, workers=workers,
                embed_provenance=embed_provenance, advance=advance,
            )  # fmt: skip
    return ExportReport(format=format, out=path, counts=counts)


# ------------------------------------------------------------------------------- human decisions
# Thin adapters over photocorpus.decisions: the corpus first (a Corpus or a path), then what the person
# decided. Each is one short transaction; `request_id` makes a retry return the first decision.
def confirm_group(
    corpus: Corpus | PathLike, photo_ids: Sequence[int], *, reviewer: str | None = None,
    request_id: str | None = None,
) -> Decision:  # fmt: skip
    """A person confirms that these photos are duplicates of one another: every later dedup run keeps
    them in one group (links of method ``human``), whatever its thresholds. See
    :func:`photocorpus.decisions.confirm_group`."""
    from photocorpus import decisions

    with _opened(corpus) as c:
        return decisions.confirm_group(c, photo_ids, reviewer=reviewer, request_id=request_id)


def split_group(
    corpus: Corpus | PathLike, keep_ids: Sequence[int], split_off_ids: Sequence[int], *,
    reviewer: str | None = None, request_id: str | None = None,
) -> Decision:  # fmt: skip
    """A person splits a duplicate group: no photo of ``split_off_ids`` is a duplicate of one of
    ``keep_ids``, now and after every later dedup run, even through a third photo. See
    :func:`photocorpus.decisions.split_group`."""
    from photocorpus import decisions

    with _opened(corpus) as c:
        return decisions.split_group(c, keep_ids, split_off_ids, reviewer=reviewer, request_id=request_id)


def mark_not_duplicate(
    corpus: Corpus | PathLike, a: int, b: int, *, reviewer: str | None = None, request_id: str | None = None
) -> Decision:
    """A person says photos ``a`` and ``b`` are not duplicates: dedup never links them again, not even
    through a third photo. See :func:`photocorpus.decisions.mark_not_duplicate`."""
    from photocorpus import decisions

    with _opened(corpus) as c:
        return decisions.mark_not_duplicate(c, a, b, reviewer=reviewer, request_id=request_id)


def exclude_photos(
    corpus: Corpus | PathLike, photo_ids: Sequence[int], *, reason: str | None = None,
    reviewer: str | None = None, request_id: str | None = None,
) -> Decision:  # fmt: skip
    """A person keeps these photos out of every split (``exclusion = 'human'``), now and after every
    later splits run. See :func:`photocorpus.decisions.exclude_photos`."""
    from photocorpus import decisions

    with _opened(corpus) as c:
        return decisions.exclude_photos(c, photo_ids, reason=reason, reviewer=reviewer, request_id=request_id)


def include_photos(
    corpus: Corpus | PathLike, photo_ids: Sequence[int], *, reviewer: str | None = None,
    request_id: str | None = None,
) -> Decision:  # fmt: skip
    """A person puts these photos back in the splits despite a bot, quality, language or human
    exclusion (never despite being a duplicate). See :func:`photocorpus.decisions.include_photos`."""
    from photocorpus import decisions

    with _opened(corpus) as c:
        return decisions.include_photos(c, photo_ids, reviewer=reviewer, request_id=request_id)


def set_label(
    corpus: Corpus | PathLike, photo_ids: Sequence[int], label: str, *, reviewer: str | None = None,
    request_id: str | None = None,
) -> Decision:  # fmt: skip
    """A person corrects these photos' primary label: exports, classifier training, the splits and
    ``corpus.photos()`` use it from now on. See :func:`photocorpus.decisions.set_label`."""
    from photocorpus import decisions

    with _opened(corpus) as c:
        return decisions.set_label(c, photo_ids, label, reviewer=reviewer, request_id=request_id)


def set_bot(
    corpus: Corpus | PathLike, photo_ids: Sequence[int], is_bot: bool, *, reviewer: str | None = None,
    request_id: str | None = None,
) -> Decision:  # fmt: skip
    """A person's verdict on bot candidates (True: bot, False: not a bot), kept by every later bots
    run. See :func:`photocorpus.decisions.set_bot`."""
    from photocorpus import decisions

    with _opened(corpus) as c:
        return decisions.set_bot(c, photo_ids, is_bot, reviewer=reviewer, request_id=request_id)


def set_quality(
    corpus: Corpus | PathLike, photo_ids: Sequence[int], ok: bool, *, reviewer: str | None = None,
    request_id: str | None = None,
) -> Decision:  # fmt: skip
    """A person's verdict on quality (True: fine despite its flags, False: excluded as
    ``quality:human``). See :func:`photocorpus.decisions.set_quality`."""
    from photocorpus import decisions

    with _opened(corpus) as c:
        return decisions.set_quality(c, photo_ids, ok, reviewer=reviewer, request_id=request_id)


def add_note(
    corpus: Corpus | PathLike, photo_id: int, text: str, *, reviewer: str | None = None,
    request_id: str | None = None,
) -> Decision:  # fmt: skip
    """A person's free-text note on a photo, kept in its decision history; no stage reads it. See
    :func:`photocorpus.decisions.add_note`."""
    from photocorpus import decisions

    with _opened(corpus) as c:
        return decisions.add_note(c, photo_id, text, reviewer=reviewer, request_id=request_id)


def undo_decision(
    corpus: Corpus | PathLike, decision_id: int, *, reviewer: str | None = None, request_id: str | None = None
) -> Decision:
    """Revert exactly one earlier decision (recorded as an ``undo`` decision); undoing it twice is an
    error that says so. See :func:`photocorpus.decisions.undo`."""
    from photocorpus import decisions

    with _opened(corpus) as c:
        return decisions.undo(c, decision_id, reviewer=reviewer, request_id=request_id)


def decision_history(corpus: Corpus | PathLike, photo_id: int | None = None, *, after_id: int = 0,
                     limit: int = 1000) -> list[Decision]:  # fmt: skip
    """The human decisions on one photo, newest first, undone ones included (``undone_by`` set); or,
    without ``photo_id``, the whole audit table oldest first, from the decision after ``after_id``,
    ``limit`` at a time."""
    from photocorpus import decisions

    with _opened(corpus) as c:
        if photo_id is None:
            return decisions.audit(c, after_id=after_id, limit=limit)
        return decisions.history(c, photo_id)


__all__ = [
    "add_note",
    "confirm_group",
    "curate_photos",
    "decision_history",
    "embed_captions",
    "enrich_flickr",
    "evaluate",
    "exclude_photos",
    "explore_photos",
    "export_photos",
    "featurize",
    "fetch_photos",
    "harvest_flickr",
    "harvest_instagram",
    "harvest_urls",
    "import_folder",
    "include_photos",
    "init",
    "mark_not_duplicate",
    "open",
    "search",
    "set_bot",
    "set_label",
    "set_quality",
    "split_group",
    "train_classifier",
    "train_semantic",
    "undo_decision",
]
