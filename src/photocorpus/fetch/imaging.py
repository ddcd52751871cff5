"""Decoding and validating image bytes.

Validation is shared by folder import and fetch: both must turn "these bytes" into either a decodable
image with known dimensions, or a recorded reason (``empty_file``, ``not_an_image``, ``corrupt_image``,
``decompression_bomb``). It runs in worker processes, so it takes and returns plain values.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from dataclasses import dataclass

from PIL import Image, ImageFile, UnidentifiedImageError

from photocorpus import reasons

# Magic numbers of the formats we accept. Checked before Pillow so an HTML error page or a text file
# is reported as not_an_image rather than as a broken image.
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"WEBP", 8, "WEBP"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
    (b"BM", 0, "BMP"),
)
_ORIENTATION_TAG = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}  # EXIF orientations that rotate by 90 degrees


@dataclass(frozen=True, slots=True)
class ImageProbe:
    """What validation learned about some bytes: either a format and size, or a failure reason."""

    ok: bool
    sha256: str
    bytes: int
    format: str | None = None
    width: int | None = None  # as displayed, i.e. after EXIF orientation
    height: int | None = None
    reason: str | None = None
    detail: str | None = None


def sniff_format(data: bytes) -> str | None:
    """The image format named by the leading magic bytes, or ``None``."""
    for magic, offset, fmt in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            if fmt == "WEBP" and data[:4] != b"RIFF":
                continue
            return fmt
    return None


def probe_image(data: bytes, max_pixels: int) -> ImageProbe:
    """Validate image bytes fully (every byte of compressed data is decoded) and measure them.

    JPEGs are decoded with libjpeg's DCT scaling (``draft``) at 1/8 size: that still walks the whole
    entropy-coded stream, so truncation and corruption are caught, at a fraction of a full decode.
    """
    digest = hashlib.sha256(data).hexdigest()
    size = len(data)
    if size == 0:
        return ImageProbe(False, digest, 0, reason=reasons.EMPTY_FILE, detail="zero bytes")
    fmt = sniff_format(data)
    if fmt is None:
        head = data[:16].decode("ascii", "replace").strip()
        return ImageProbe(False, digest, size, reason=reasons.NOT_AN_IMAGE, detail=f"starts with {head!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            width, height = im.size
            if width * height > max_pixels:
                return ImageProbe(
                    False,
                    digest,
                    size,
                    fmt,
                    width,
                    height,
                    reasons.DECOMPRESSION_BOMB,
                    f"{width}x{height} exceeds {max_pixels} pixels",
                )
            orientation = _orientation(im)
            if im.format == "JPEG":
                im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return ImageProbe(False, digest, size, fmt, reason=reasons.DECOMPRESSION_BOMB, detail=str(exc)[:300])
    except UnidentifiedImageError as exc:
        return ImageProbe(False, digest, size, fmt, reason=reasons.CORRUPT_IMAGE, detail=str(exc)[:300])
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
        return ImageProbe(
            False,
            digest,
            size,
            fmt,
            reason=reasons.CORRUPT_IMAGE,
            detail=f"{type(exc).__name__}: {exc}"[:300],
        )
    if orientation in _SWAPS_AXES:
        width, height = height, width
    return ImageProbe(True, digest, size, fmt, width, height)


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # a broken EXIF block must not reject an otherwise fine image
        return 1
