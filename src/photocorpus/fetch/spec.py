"""What a stored image must look like: the geometry and rendering rules fetch hands to its workers.

Kept apart from :mod:`photocorpus.fetch.imaging` so that the driver process, which only downloads and
commits, never imports Pillow or numpy; and light itself (no pydantic at run time), because every
render worker unpickles a :class:`RenderSpec` and so imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from photocorpus.errors import ConfigError

if TYPE_CHECKING:
    from photocorpus.config import FetchSettings

RESIZE_MODES = ("keep_ratio", "squash", "center_crop", "border")
RESAMPLE_NAMES = ("area", "bilinear", "bicubic", "lanczos")


@dataclass(frozen=True, slots=True)
class Geometry:
    """The stored size: fit inside ``width`` x ``height`` (keep_ratio, never enlarged), or exactly
    that size by ``squash``, ``center_crop`` or ``border`` (fit, then pad with white)."""

    width: int
    height: int
    mode: str = "keep_ratio"

    def __post_init__(self) -> None:
        if self.mode not in RESIZE_MODES:
            raise ValueError(f"unknown resize mode {self.mode!r}; expected one of {', '.join(RESIZE_MODES)}")
        if self.width < 1 or self.height < 1:
            raise ValueError("a stored size needs a positive width and height")


@dataclass(frozen=True, slots=True)
class RenderSpec:
    """Everything a worker needs to turn downloaded bytes into the stored image."""

    geometry: Geometry
    jpeg_quality: int = 90
    resample: str = "area"  # one of RESAMPLE_NAMES
    min_side_px: int = 0
    min_aspect_ratio: float | None = None
    max_aspect_ratio: float | None = None
    remove_frames: bool = True
    frame_score_max: float = 0.005
    frame_margin_px: int = 12
    frame_contiguous: bool = True  # frame_rule "edge"; False is im2gps's rule (see .frames)
    max_pixels: int = 178_956_970
    reencode_unchanged: bool = False


def parse_size(text: str) -> tuple[int, int]:
    """``"300x300"`` -> ``(300, 300)``, with a message that says what is expected."""
    try:
        w, h = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ConfigError(
            f"size (--size) must look like 300x300 (width x height in pixels), not {text!r}"
        ) from None
    if not (1 <= w <= 65_535 and 1 <= h <= 65_535):
        raise ConfigError(f"size={text!r} (--size): width and height must be between 1 and 65535")
    return w, h


def render_spec(settings: FetchSettings) -> RenderSpec:
    """The worker-side rendering rules of a settings object."""
    if settings.size:
        width, height = parse_size(settings.size)
    else:
        width = height = settings.max_edge_px
    return RenderSpec(
        geometry=Geometry(width, height, settings.resize_mode),
        jpeg_quality=settings.jpeg_quality,
        resample=settings.resample,
        min_side_px=settings.min_side_px,
        min_aspect_ratio=settings.min_aspect_ratio,
        max_aspect_ratio=settings.max_aspect_ratio,
        remove_frames=settings.remove_frames,
        frame_score_max=settings.frame_score_max,
        frame_margin_px=settings.frame_margin_px,
        frame_contiguous=settings.frame_rule == "edge",
        max_pixels=settings.max_image_pixels,
        reencode_unchanged=settings.reencode_unchanged,
    )
