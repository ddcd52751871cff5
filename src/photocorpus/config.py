"""Corpus settings: a pydantic model, read from ``corpus.toml`` and overridable on the command line.

``init`` writes every default out, each with its description as a comment, so a user can see and edit
all knobs in one file without reading the code. Unknown keys are refused rather than ignored: a typo in
``corpus.toml`` must not silently fall back to a default.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from photocorpus.errors import ConfigError

CONFIG_FILE = "corpus.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LayoutSettings(_Section):
    """Where and how files are stored."""

    files_per_dir: int = Field(
        1000, ge=1, le=100_000, description="Most images per folder (im2gps used 1000)."
    )


class ImportSettings(_Section):
    """Folder import (``photocorpus import``)."""

    link: bool = Field(False, description="Hard-link (or symlink across devices) instead of copying files.")
    max_image_pixels: int = Field(
        178_956_970,
        ge=1,
        description="Refuse images with more pixels than this as decompression bombs (Pillow's default).",
    )
    batch_size: int = Field(256, ge=1, le=100_000, description="Photos per catalog transaction.")
    workers: int = Field(0, ge=0, description="Worker processes for validation; 0 means one per CPU core.")


class FlickrSettings(_Section):
    """Flickr harvest (``photocorpus harvest flickr``). Prefer $FLICKR_API_KEY to writing the key here."""

    api_key: str | None = Field(None, description="Flickr API key; $FLICKR_API_KEY takes precedence.")
    api_url: str = Field(
        "https://api.flickr.com/services/rest/",
        description="REST endpoint; $PHOTOCORPUS_FLICKR_API_URL or --api-url override it.",
    )
    calls_per_hour: float = Field(
        3600, gt=0, description="Process-wide call budget per key (Flickr's limit)."
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


class Settings(_Section):
    """All settings of one corpus. Each section is a table in ``corpus.toml``."""

    layout: LayoutSettings = Field(default_factory=LayoutSettings)
    import_: ImportSettings = Field(default_factory=ImportSettings, alias="import")
    flickr: FlickrSettings = Field(default_factory=FlickrSettings)
    instagram: InstagramSettings = Field(default_factory=InstagramSettings)

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


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
