"""What a stored image must look like: the geometry and rendering rules fetch hands to its workers.

Kept apart from :mod:`photocorpus.fetch.imaging` so that the driver process, which only downloads and
commits, never imports Pillow or numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    frame_contiguous: bool = True
    max_pixels: int = 178_956_970
    reencode_unchanged: bool = False
