"""Corpus settings: a pydantic model, read from ``corpus.toml`` and overridable on the command line.

``init`` writes every default out, each with its description as a comment, so a user can see and edit
all knobs in one file without reading the code. Unknown keys are refused rather than ignored: a typo in
``corpus.toml`` must not silently fall back to a default.

A ``corpus.toml`` travels with a shared corpus, so settings are also checked for safety, not only for
type: worker counts are capped to what the machine can run
(:func:`~photocorpus.executors.capped_workers`), a plain-http API endpoint never receives the API key
unless it is loopback or explicitly allowed (:meth:`FlickrSettings.endpoint`), and ``images_url`` may
point outside the corpus only at an object store or with ``[storage] allow_outside_corpus`` (checked
where the corpus root is known: :func:`photocorpus.object_store.check_images_url`).
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
import urllib.parse
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from photocorpus.errors import ConfigError
from photocorpus.worker_counts import capped_workers

CONFIG_FILE = "corpus.toml"
ALLOW_HTTP_API_URL_ENV = "PHOTOCORPUS_ALLOW_HTTP_API_URL"  # "1": a plain-http API endpoint is allowed


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LayoutSettings(_Section):
    """Where and how files are stored."""

    files_per_dir: int = Field(
        1000, ge=1, le=100_000, description="Most images per folder (im2gps used 1000)."
    )


class ImportSettings(_Section):
    """Folder import (``photocorpus import``)."""

    link: bool = Field(
        False,
        description="Hard-link each file (a symlink's target, never the symlink) instead of copying it; "
        "copied where a hard link is impossible (another disk).",
    )
    follow_symlinks: bool = Field(
        False,
        description="Import symlinked files whose target lies outside the imported folder; off, they "
        "fail with symlink_outside_source (a shared folder must not pull in files from elsewhere).",
    )
    max_image_pixels: int = Field(
        178_956_970,
        ge=1,
        description="Refuse images with more pixels than this as decompression bombs (Pillow's default).",
    )
    batch_size: int = Field(256, ge=1, le=100_000, description="Photos per catalog transaction.")
    workers: int = Field(0, ge=0, description="Worker processes for validation; 0 means one per CPU core.")

    @field_validator("workers")
    @classmethod
    def _cap_workers(cls, workers: int) -> int:
        return capped_workers(workers, "[import] workers")


class FlickrSettings(_Section):
    """Flickr harvest (``photocorpus harvest flickr``). Prefer $FLICKR_API_KEY to writing the key here."""

    api_key: str | None = Field(None, description="Flickr API key; $FLICKR_API_KEY takes precedence.")
    api_url: str = Field(
        "https://api.flickr.com/services/rest/",
        description="REST endpoint; $PHOTOCORPUS_FLICKR_API_URL or --api-url override it. Must be https "
        "unless loopback or allow_http_api_url is set (the API key travels in every request).",
    )
    allow_http_api_url: bool = Field(
        False,
        description="Allow a plain-http api_url that is not loopback (a trusted mirror on your network); "
        f"also ${ALLOW_HTTP_API_URL_ENV}=1.",
    )
    calls_per_hour: float = Field(
        3600,
        gt=0,
        description="Call budget per key and hour, shared by every process of this user on this machine "
        "(Flickr's limit; the ledger lives in $PHOTOCORPUS_STATE_DIR, default ~/.local/state/photocorpus).",
    )
    per_page: int = Field(500, ge=1, le=500, description="Results per search page (Flickr allows 500).")
    window_target: int = Field(
        3000, ge=1, le=4000, description="Photos a time window is sized to hold (the hard cap is 4000)."
    )
    max_retries: int = Field(8, ge=0, description="Retries of one call on 429/5xx/timeouts/soft errors.")
    backoff_base_s: float = Field(
        1.0, ge=0, description="First backoff step; doubles per retry, with jitter."
    )
    backoff_cap_s: float = Field(120.0, ge=0, description="Longest single backoff wait.")
    connect_timeout_s: float = Field(10.0, gt=0, description="TCP connect timeout.")
    read_timeout_s: float = Field(30.0, gt=0, description="Read timeout (Flickr's big searches can be slow).")
    extra_api_keys: list[str] = Field(
        [], description="More keys of yours to share `enrich` calls (one rate limit per key)."
    )

    def endpoint(self, override: str | None = None) -> str:
        """The API endpoint to send the key to: ``override`` (--api-url, $PHOTOCORPUS_FLICKR_API_URL)
        or ``api_url``, refused when it is plain http to a host other than loopback.

        Why: the key is a query parameter of every call, so over plain http anyone on the path reads
        it. Checked here, where the key is about to be used, and not when corpus.toml is loaded, so a
        bad endpoint never stops ``status`` or ``verify``.
        """
        url = override or self.api_url
        setting = "--api-url / $PHOTOCORPUS_FLICKR_API_URL" if override else "[flickr] api_url"
        parts = urllib.parse.urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme == "https" and parts.hostname:
            return url
        if scheme != "http" or not parts.hostname:
            raise ConfigError(
                f"{setting} must be an https:// URL, e.g. https://api.flickr.com/services/rest/"
            )
        allowed = self.allow_http_api_url or os.environ.get(ALLOW_HTTP_API_URL_ENV) == "1"
        if not allowed and not _is_loopback(parts.hostname):
            raise ConfigError(
                f"{setting} is plain http to {parts.hostname}: the API key would cross the network "
                f"unencrypted. Use https://, or for a mirror you trust set [flickr] allow_http_api_url = "
                f"true (or ${ALLOW_HTTP_API_URL_ENV}=1)"
            )
        return url


class InstagramSettings(_Section):
    """Instagram harvest (``photocorpus harvest instagram``) through instaloader, which owns rate control."""

    commit_every_posts: int = Field(
        12, ge=1, le=10_000, description="Posts per catalog transaction; a kill -9 loses at most these."
    )
    commit_interval_s: float = Field(
        15.0, gt=0, description="Also commit when this long has passed since the last commit."
    )
    owner_names: bool = Field(
        True,
        description="Look up a post's owner username when the listing lacks it (one request per post).",
    )
    max_connection_attempts: int = Field(
        3, ge=1, le=20, description="instaloader's attempts per request before the harvest stops."
    )
    request_timeout_s: float = Field(300.0, gt=0, description="instaloader's per-request timeout.")


RESIZE_MODES = ("keep_ratio", "squash", "center_crop", "border")


class FetchSettings(_Section):
    """Image download (``photocorpus fetch``): which size, stored geometry, frames, politeness."""

    size_keys: list[str] = Field(
        ["url_l", "url_o"],
        description="Image URL sizes to try first, in order (Flickr: url_l = Large 1024, url_o = original); "
        "with size_policy fallback any other size the source gave is tried after these, largest first.",
    )
    size_policy: str = Field(
        "fallback",
        pattern="^(fallback|strict)$",
        description="fallback: after size_keys, any other size the source gave; strict (im2gps): only "
        "size_keys, and a photo with none of them fails as no_allowed_size.",
    )
    min_preferred_bytes: int = Field(
        5000,
        ge=0,
        description="A download under this many bytes counts as missing (Flickr's 'unavailable' "
        "placeholder) when another size is left to try.",
    )
    default_size_only: bool = Field(
        False,
        description="Fetch only the source's default size (fast, small): the first of default_size_keys "
        "the photo has, else its smallest size. Lower min_side_px to match.",
    )
    default_size_keys: list[str] = Field(
        ["url_m", "url_z", "url", "display"], description="Size keys that count as the default size."
    )
    max_edge_px: int = Field(1024, ge=16, le=65_535, description="Longest stored side when size is unset.")
    size: str | None = Field(
        None,
        pattern=r"^\d{1,5}x\d{1,5}$",
        description='Stored size "WxH" (e.g. "300x300"); unset: max_edge_px.',
    )
    resize_mode: str = Field(
        "keep_ratio",
        pattern="^(" + "|".join(RESIZE_MODES) + ")$",
        description="With size: keep_ratio (fit inside), squash, center_crop or border (fit, pad white).",
    )
    jpeg_quality: int = Field(90, ge=1, le=100, description="JPEG quality of re-encoded images.")
    resample: str = Field(
        "area",
        pattern="^(area|bilinear|bicubic|lanczos)$",
        description="Resize filter (antialiased): area = pixel averaging when shrinking (OpenCV "
        "INTER_AREA, as img2dataset) and bicubic when enlarging; or bilinear, bicubic, lanczos.",
    )
    reencode_unchanged: bool = Field(
        False,
        description="Re-encode JPEGs that need no change; off stores their original bytes (lossless).",
    )
    min_side_px: int = Field(500, ge=0, description="Drop images whose shorter side is smaller (too_small).")
    min_aspect_ratio: float | None = Field(
        None, gt=0, description="Drop images with width/height below this (im2gps: 0.625); unset: off."
    )
    max_aspect_ratio: float | None = Field(
        None, gt=0, description="Drop images with width/height above this (im2gps: 1.6); unset: off."
    )
    remove_frames: bool = Field(True, description="Trim uniform frames around photos (im2gps remove_frame).")
    frame_score_max: float = Field(
        0.005, gt=0, description="A ring is frame if std * min(mean, 1 - mean) is under this."
    )
    frame_margin_px: int = Field(12, ge=0, description="Extra pixels trimmed inside a detected frame.")
    frame_rule: str = Field(
        "edge",
        pattern="^(edge|im2gps)$",
        description="edge: a frame is uniform rings counted from the edge in; im2gps: the widest "
        "qualifying ring anywhere (remove_frame.m), which also trims more unframed photos.",
    )
    max_image_pixels: int = Field(
        178_956_970, ge=1, description="Refuse images with more pixels than this (decompression bombs)."
    )
    embed_provenance: list[str] = Field(
        ["flickr"],
        description="Sources whose stored JPEGs carry every attribute the harvest knows (URL, owner, "
        'title, description, tags, licence, geo, dates, views) as XMP + a JPEG comment, no re-encode; "*" '
        "is every source (also: true), [] none (also: false).",
    )
    workers: int = Field(0, ge=0, description="Worker processes for decoding/resizing; 0: one per core.")
    concurrency: int = Field(64, ge=1, le=4096, description="Downloads in flight at once, all hosts.")
    per_host_connections: int = Field(16, ge=1, le=1024, description="Connections to one host at once.")
    host_rate_per_s: float = Field(
        20.0, ge=0, description="Requests per second to one host; 0: unlimited (local mirrors only)."
    )
    max_inflight_mb: int = Field(
        128, ge=1, description="Downloaded bytes held in memory awaiting processing, at most (roughly)."
    )
    connect_timeout_s: float = Field(10.0, gt=0, description="TCP + TLS connect timeout.")
    read_timeout_s: float = Field(30.0, gt=0, description="Longest wait for the next bytes of a response.")
    total_timeout_s: float = Field(
        120.0, gt=0, description="Longest time for one whole download (stops slow drips)."
    )
    max_response_bytes: int = Field(
        50_000_000, ge=1, description="Refuse responses larger than this (response_too_large)."
    )
    max_retries: int = Field(4, ge=0, le=50, description="Retries on 429/5xx/timeouts/connection errors.")
    backoff_base_s: float = Field(
        1.0, ge=0, description="First backoff step; doubles per retry, with jitter."
    )
    backoff_cap_s: float = Field(60.0, ge=0, description="Longest backoff wait.")
    max_retry_after_s: float = Field(
        300.0, ge=0, description="Longest Retry-After honoured; a longer one fails the photo (retry later)."
    )
    max_redirects: int = Field(5, ge=0, le=30, description="Redirects followed, each re-checked.")
    user_agent: str | None = Field(
        None, description="User-Agent header; unset: photocorpus/<version> (+project URL)."
    )
    respect_x_robots_tag: bool = Field(
        True, description="Refuse images whose X-Robots-Tag forbids AI use (disallowed_by_x_robots_tag)."
    )
    x_robots_disallowed: list[str] = Field(
        ["noai", "noimageai", "noindex", "noimageindex"], description="X-Robots-Tag directives that refuse."
    )
    allow_private_urls: bool = Field(
        False,
        description="Allow private/loopback/link-local destinations (tests, local mirrors); "
        "also $PHOTOCORPUS_ALLOW_PRIVATE_URLS=1.",
    )
    allowed_networks: list[str] = Field(
        [], description='Private networks allowed anyway, e.g. ["10.1.2.3/32"] for a local mirror.'
    )
    url_expiry_age_h: float = Field(
        24.0,
        ge=0,
        description="A 403 on a URL harvested longer ago than this is url_expired (signed CDN URLs).",
    )
    batch_size: int = Field(128, ge=1, le=100_000, description="Photos per catalog transaction.")

    @field_validator("workers")
    @classmethod
    def _cap_workers(cls, workers: int) -> int:
        return capped_workers(workers, "[fetch] workers")

    @field_validator("embed_provenance", mode="before")
    @classmethod
    def _all_or_none(cls, value: Any) -> Any:
        """``embed_provenance=True`` (Python) or ``= true`` (corpus.toml) says every source, as the CLI's
        --embed-provenance does; False none."""
        if isinstance(value, bool):
            return ["*"] if value else []
        return value

    @model_validator(mode="before")
    @classmethod
    def _frame_contiguous_is_frame_rule(cls, data: Any) -> Any:
        """``frame_contiguous = true/false``, which every corpus.toml written before ``frame_rule`` holds,
        still reads: as ``frame_rule = "edge"/"im2gps"``. Both keys, saying different things, are refused
        rather than one silently winning."""
        if not isinstance(data, dict) or "frame_contiguous" not in data:
            return data
        data = dict(data)
        legacy = data.pop("frame_contiguous")
        if not isinstance(legacy, bool):
            raise ValueError(f"frame_contiguous (now frame_rule) must be true or false, not {legacy!r}")
        rule = "edge" if legacy else "im2gps"
        if data.setdefault("frame_rule", rule) != rule:
            raise ValueError(
                f"frame_contiguous = {str(legacy).lower()} and frame_rule = {data['frame_rule']!r} disagree: "
                "keep only frame_rule"
            )
        return data

    @model_validator(mode="after")
    def _one_size_rule(self) -> FetchSettings:
        if self.default_size_only and self.size_policy == "strict":
            raise ValueError(
                "default_size_only and size_policy strict contradict each other (the default size is "
                "neither Large nor Original): choose one"
            )
        return self


# im2gps's download rules (``photocorpus fetch --im2gps``, ``pc.fetch_photos(c, preset="im2gps")``), from
# its README ("Downloading FAQ"): try Flickr's Large size (longest side 1024), failing that the Original,
# and drop the photo when neither exists; an Original larger than 1024 is downsampled to 1024, one under
# 500 on a side is thrown away; frames are removed (remove_frame.m), with the rule this code calls
# im2gps's (the largest qualifying ring anywhere, not only from the edge in: see
# photocorpus.fetch.frames). A download under 5,000 bytes counts as missing (Flickr's "unavailable"
# placeholder), and width/height must lie in 0.625..1.6, as in im2gps's download script. Settings given
# next to the preset still win.
IM2GPS_FETCH_RULES: dict[str, Any] = {
    "size_keys": ["url_l", "url_o"],
    "size_policy": "strict",
    "default_size_only": False,
    "min_preferred_bytes": 5000,
    "size": None,
    "max_edge_px": 1024,
    "resize_mode": "keep_ratio",
    "min_side_px": 500,
    "min_aspect_ratio": 0.625,
    "max_aspect_ratio": 1.6,
    "remove_frames": True,
    "frame_rule": "im2gps",
}
# Named sets of [fetch] settings a run can start from; settings given beside a preset win over it.
FETCH_PRESETS: dict[str, dict[str, Any]] = {"im2gps": IM2GPS_FETCH_RULES}


class FeaturizeSettings(_Section):
    """Image features, ImageNet labels and caption embeddings (``photocorpus featurize``)."""

    batch_size: int = Field(
        32,
        ge=1,
        le=4096,
        description="Images per batch (one inference call on a GPU; one at a time on the CPU).",
    )
    workers: int = Field(
        0,
        ge=0,
        description="Worker processes; 0 means one per CPU core. With onnxruntime on the CPU each decodes "
        "and runs its own model; otherwise they decode and the main process infers.",
    )
    threads: int = Field(
        0, ge=0, description="Inference threads in all (split among model workers); 0 means one per core."
    )
    shard_rows: int = Field(
        4096, ge=1, description="Rows per feature-store shard (one catalog commit each); capped at ~256 MB."
    )
    dtype: str = Field("float16", pattern="^(float16|float32)$", description="Feature storage dtype.")
    backend: str = Field(
        "auto",
        pattern="^(auto|onnx|torch)$",
        description="auto: onnxruntime (CUDA provider when present), else torch CUDA, else onnxruntime CPU.",
    )
    compact: bool = Field(True, description="Merge a set's shards into one after a complete run.")
    ontologies: list[str] = Field(
        [], description="Extra ontology mapping files (JSON) applied besides the coarse and seed004 presets."
    )
    raw_pixels_size: int = Field(
        150, ge=4, le=1024, description="Side of the raw-pixels thumbnail (seed 004)."
    )
    raw_pixels_pca: int = Field(0, ge=0, description="PCA dimensions for raw-pixels; 0 keeps all pixels.")
    lda_topics: int = Field(200, ge=2, le=5000, description="Topics of the caption LDA model.")
    word2vec_dims: int = Field(400, ge=8, le=2000, description="Word2vec vector size for caption embeddings.")
    text_seed: int = Field(0, description="Seed of every random step: raw-pixels PCA, LDA and word2vec.")

    @field_validator("workers")
    @classmethod
    def _cap_workers(cls, workers: int) -> int:
        return capped_workers(workers, "[featurize] workers")


class CurateSettings(_Section):
    """Curate (``photocorpus curate``, ``dedup``, ``quality``, ``split``): duplicates, bots, splits."""

    phash_max_distance: int = Field(
        10, ge=0, le=32, description="Near duplicates: most differing pHash bits (of 64), frame-aware."
    )
    dhash_max_distance: int = Field(
        16, ge=0, le=64, description="A pHash match must also be within this many dHash bits (precision)."
    )
    semantic: bool = Field(True, description="Also match on CNN features when the feature set exists.")
    feature_set: str = Field("efficientnet-lite0", description="Feature set the semantic mode reads.")
    semantic_min_cosine: float = Field(
        0.85, ge=0, le=1, description="Semantic candidates: cosine similarity at least this."
    )
    semantic_neighbors: int = Field(10, ge=1, le=1000, description="Neighbours asked per photo (faiss kNN).")
    semantic_veto_cosine: float = Field(
        0.5, ge=-1, le=1, description="With features, drop pHash matches whose cosine is below this."
    )
    semantic_min_correlation: float = Field(
        0.62, ge=-1, le=1, description="A semantic match must also correlate this well on aligned edges."
    )
    bot_caption_repeats: int = Field(
        5, ge=2, description="Flag a bot when one normalised caption appears on at least this many photos."
    )
    bot_owner_reposts: int = Field(
        3, ge=2, description="Flag an owner with at least this many near-duplicates of their own photos."
    )
    exclude_bots: bool = Field(True, description="Keep bot-flagged photos out of the splits.")
    min_side_px: int = Field(96, ge=1, description="Quality: 'too_small' below this short side.")
    max_aspect_ratio: float = Field(3.0, ge=1, description="Quality: 'extreme_aspect' above this long/short.")
    uniform_max_std: float = Field(6.0, ge=0, description="Quality: 'near_uniform' below this grey std.")
    dark_max_mean: float = Field(35.0, ge=0, le=255, description="Quality: 'too_dark' below this mean luma.")
    bright_min_mean: float = Field(
        225.0, ge=0, le=255, description="Quality: 'too_bright' above this mean luma."
    )
    blur_max_laplacian: float = Field(
        150.0, ge=0, description="Quality: 'blurry' below this variance of Laplacian (128 px short side)."
    )
    grayscale_max_chroma: float = Field(
        3.0, ge=0, description="Quality: 'grayscale' below this mean |chroma|."
    )
    frame_min_fraction: float = Field(
        0.03, ge=0, le=0.5, description="Quality: 'frame' when a uniform border is at least this wide."
    )
    drop_flags: list[str] = Field(
        default_factory=lambda: ["too_small", "extreme_aspect", "near_uniform"],
        description="Quality flags that keep a photo out of the splits.",
    )
    train_fraction: float = Field(0.80, gt=0, lt=1, description="Split: share of each label for train.")
    val_fraction: float = Field(0.05, ge=0, lt=1, description="Split: share for val (test gets the rest).")
    languages: list[str] = Field(
        default_factory=list, description="Split: keep only captions in these languages (empty: all)."
    )


class LearnSettings(_Section):
    """Weak-label classifiers, the semantic image -> text-space model, and search (``train``, ``search``)."""

    image_features: str = Field(
        "efficientnet-lite0", description="Feature set the classifiers and semantic models read."
    )
    splits: str = Field(
        "auto",
        description="auto (curate's splits, else hash:80/5/15), curate, or hash:TRAIN/VAL/TEST percentages.",
    )
    epochs: int = Field(200, ge=1, le=10_000, description="Most training epochs (early stopping ends first).")
    patience: int = Field(10, ge=1, le=1000, description="Epochs without a better val loss before stopping.")
    batch_size: int = Field(256, ge=8, le=65_536, description="Training batch size.")
    learning_rate: float = Field(1e-3, gt=0, le=1.0, description="AdamW learning rate.")
    weight_decay: float = Field(1e-4, ge=0, le=1.0, description="AdamW weight decay.")
    seed: int = Field(0, description="Seed of initialisation, shuffling and the hash split's val carve-out.")
    exact_search_max: int = Field(
        200_000, ge=0, description="Exact (flat) search up to this many photos; an ANN index above."
    )
    index: str = Field(
        "auto", pattern="^(auto|flat|ivf|hnsw)$", description="Search index: auto, flat, ivf or hnsw."
    )


class ExecutorSettings(_Section):
    """Where fetch, dedup hashing and featurize run their shards: this machine, or a Ray cluster."""

    kind: str = Field("local", pattern="^(local|ray)$", description="local (process pool) or ray.")
    ray_address: str = Field(
        "",
        description='Ray cluster: "" starts a private local Ray, "auto" joins the running one, ray://host:port.',
    )
    shard_size: int = Field(64, ge=1, le=100_000, description="Photos per Ray task (fetch, hashing).")
    max_retries: int = Field(3, ge=0, le=100, description="Ray retries of a shard whose worker died.")
    num_cpus: int = Field(0, ge=0, description="CPUs of a private local Ray; 0 means every core.")


class StorageSettings(_Section):
    """Where images live: the corpus folder (default), or an object store through fsspec (docs/scale.md)."""

    images_url: str = Field(
        "",
        pattern=r"^$|^[a-z][a-z0-9+.-]*://.+",
        description='"" keeps images/ in the corpus folder; an fsspec URL (s3://bucket/prefix, '
        "gs://bucket/prefix) holds the images/ tree there instead. Set it before the first fetch.",
    )
    options: dict[str, Any] = Field(
        {},
        repr=False,  # may hold credentials: never in a repr, a log or a report
        description="fsspec storage options (endpoint_url, region...); put credentials in the "
        "provider's environment variables or $PHOTOCORPUS_STORAGE_OPTIONS (JSON), not here.",
    )
    allow_outside_corpus: bool = Field(
        False,
        description="Allow an images_url that is neither an object store (s3, gs, az...) nor a folder "
        "inside the corpus, e.g. file:// on another disk: every stage then writes there and verify lists it.",
    )


class Settings(_Section):
    """All settings of one corpus. Each section is a table in ``corpus.toml``."""

    layout: LayoutSettings = Field(default_factory=LayoutSettings)
    import_: ImportSettings = Field(default_factory=ImportSettings, alias="import")
    flickr: FlickrSettings = Field(default_factory=FlickrSettings)
    instagram: InstagramSettings = Field(default_factory=InstagramSettings)
    fetch: FetchSettings = Field(default_factory=FetchSettings)
    featurize: FeaturizeSettings = Field(default_factory=FeaturizeSettings)
    learn: LearnSettings = Field(default_factory=LearnSettings)
    curate: CurateSettings = Field(default_factory=CurateSettings)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


def _is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(corpus_dir: Path) -> Settings:
    """Read ``corpus.toml``; a missing file means all defaults."""
    path = corpus_dir / CONFIG_FILE
    if not path.exists():
        return Settings()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML: {exc}. Fix the file or delete it to use defaults."
        ) from exc
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path} has invalid settings:\n{exc}") from exc


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table
        return "{" + ", ".join(f"{_toml_value(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def render_settings(settings: Settings) -> str:
    """Render settings as commented TOML: every value written out, every field described."""
    lines = [
        "# photocorpus corpus settings. Every value below is written out; edit and re-run a stage.",
        "# Command-line options override these for one run.",
        "",
    ]
    for name, field in Settings.model_fields.items():
        section: BaseModel = getattr(settings, name)
        table = field.alias or name
        doc = (type(section).__doc__ or "").strip()
        if doc:
            lines.append(f"# {doc}")
        lines.append(f"[{table}]")
        for key, sub in type(section).model_fields.items():
            value = getattr(section, key)
            if value is None:
                lines.append(f"# {key} =  # {sub.description or ''}".rstrip())
                continue
            comment = f"  # {sub.description}" if sub.description else ""
            lines.append(f"{key} = {_toml_value(value)}{comment}")
        lines.append("")
    return "\n".join(lines)


def write_settings(corpus_dir: Path, settings: Settings) -> Path:
    """Write ``corpus.toml`` atomically."""
    path = corpus_dir / CONFIG_FILE
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(render_settings(settings), encoding="utf-8")
    tmp.replace(path)
    return path
