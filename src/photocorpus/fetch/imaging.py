"""Decoding, validating and rendering image bytes.

Validation is shared by folder import and fetch: both must turn "these bytes" into either a decodable
image with known dimensions, or a recorded reason (``empty_file``, ``not_an_image``, ``corrupt_image``,
``decompression_bomb``). Fetch then renders the stored image (:func:`render_image`): orientation,
flattening, frame removal, resize, JPEG. Both run in worker processes, so they take and return plain
values.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from photocorpus import reasons
from photocorpus.fetch.frames import image_frame_width, trim_box
from photocorpus.fetch.spec import Geometry, RenderSpec

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
# Other kinds of file, named in a refusal instead of quoting the bytes (see describe_non_image).
_KIND_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "gzip data"),
    (b"\x7fELF", "an ELF executable"),
    (b"-----BEGIN", "a PEM key or certificate"),
    (b"\x00\x00\x00", "binary data"),
)
_BYTES_LITERAL = re.compile(r"""b(['"]).*?(?<!\\)\1""")  # b'...' in a decoder's error message
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


def describe_non_image(data: bytes) -> str:
    """What a refused file is, by its size and kind, without a single byte of its content.

    Why: the detail is stored in the catalog (``stages.detail``), shown by ``status`` and exported.
    It used to quote the first bytes, so a symlinked ``~/.ssh/id_rsa`` or a text file left its first
    line in the catalog.
    """
    head = data[:512].lstrip()
    kind = next((name for magic, name in _KIND_SIGNATURES if head.startswith(magic)), None)
    if kind is None:
        lowered = head[:64].lower()
        if lowered.startswith((b"<!doctype html", b"<html")):
            kind = "an HTML page"
        elif lowered.startswith(b"<?xml") or lowered.startswith(b"<svg"):
            kind = "an XML or SVG document"
        elif head[:1] in (b"{", b"["):
            kind = "JSON or other text"
        else:
            try:
                data[:4096].decode("utf-8")
                kind = "text"
            except UnicodeDecodeError as exc:
                kind = "text" if exc.start >= 4090 else "binary data"  # a character cut at the end
    return f"{len(data)} bytes of {kind}, no image signature"


def decoder_message(exc: BaseException) -> str:
    """A decoder's error as a detail, with any bytes it quotes removed (Pillow's TIFF plugin puts
    the file's header in its message, for one)."""
    return _BYTES_LITERAL.sub("b'…'", f"{type(exc).__name__}: {exc}")[:300]


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
        detail = describe_non_image(data)
        return ImageProbe(False, digest, size, reason=reasons.NOT_AN_IMAGE, detail=detail)
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
    except UnidentifiedImageError:
        detail = f"{size} bytes with a {fmt} signature that no decoder accepts"
        return ImageProbe(False, digest, size, fmt, reason=reasons.CORRUPT_IMAGE, detail=detail)
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
        return ImageProbe(False, digest, size, fmt, reason=reasons.CORRUPT_IMAGE, detail=decoder_message(exc))
    if orientation in _SWAPS_AXES:
        width, height = height, width
    return ImageProbe(True, digest, size, fmt, width, height)


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # a broken EXIF block must not reject an otherwise fine image
        return 1


# ---------------------------------------------------------------------------------------------- render
# What fetch stores: the downloaded bytes decoded (at reduced scale where it can), oriented, flattened to
# RGB or grayscale, de-framed and resized to the corpus geometry, then JPEG-encoded. Workers run this; it
# takes and returns plain values and never raises for bad input.

# (shrinking, enlarging) filters. Pillow antialiases whenever it shrinks, so "area" (its BOX filter when
# shrinking) averages the source pixels under each output pixel, like OpenCV's INTER_AREA.
RESAMPLE_FILTERS = {
    "area": (Image.Resampling.BOX, Image.Resampling.BICUBIC),
    "bilinear": (Image.Resampling.BILINEAR, Image.Resampling.BILINEAR),
    "bicubic": (Image.Resampling.BICUBIC, Image.Resampling.BICUBIC),
    "lanczos": (Image.Resampling.LANCZOS, Image.Resampling.LANCZOS),
}
_REDUCING_GAP = 3.0  # big originals are box-reduced first, then resampled: fast, visually the same
_FRAME_HEADROOM = 4 / 3  # a frame may take up to 1/8 per side: decode that much larger to keep detail
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True, slots=True)
class RenderedImage:
    """The stored JPEG and the facts the catalog records, or a failure reason."""

    ok: bool
    sha256: str  # of the original bytes
    original_bytes: int
    source_format: str | None = None
    original_width: int | None = None  # as displayed, i.e. after EXIF orientation
    original_height: int | None = None
    data: bytes | None = None  # the JPEG to store
    width: int | None = None
    height: int | None = None
    frame_removed: bool = False
    reason: str | None = None
    detail: str | None = None


def render_image(data: bytes, spec: RenderSpec) -> RenderedImage:
    """Validate, orient, de-frame, resize and encode ``data``; a bad image gives a reason, never raises.

    JPEGs that are to be shrunk are decoded at reduced scale (libjpeg DCT scaling via Pillow's
    ``draft``): the decoder still reads every byte, so corruption is caught, at about half the cost of
    a full decode, and the resize then starts from a smaller image.
    """
    digest = hashlib.sha256(data).hexdigest()
    size = len(data)

    def fail(reason: str, detail: str, **known: object) -> RenderedImage:
        return RenderedImage(False, digest, size, reason=reason, detail=detail[:300], **known)  # type: ignore[arg-type]

    if size == 0:
        return fail(reasons.EMPTY_FILE, "zero bytes")
    fmt = sniff_format(data)
    if fmt is None:
        return fail(reasons.NOT_AN_IMAGE, describe_non_image(data))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            raw_w, raw_h = im.size
            if raw_w * raw_h > spec.max_pixels:
                return fail(
                    reasons.DECOMPRESSION_BOMB,
                    f"{raw_w}x{raw_h} exceeds {spec.max_pixels} pixels",
                    source_format=fmt,
                    original_width=raw_w,
                    original_height=raw_h,
                )
            orientation = _orientation(im)
            swap = orientation in _SWAPS_AXES
            ow, oh = (raw_h, raw_w) if swap else (raw_w, raw_h)
            known = {"source_format": fmt, "original_width": ow, "original_height": oh}
            rejection = _size_rejection(ow, oh, spec)
            if rejection is not None:
                return fail(*rejection, **known)
            source_mode = im.mode
            if im.format == "JPEG":
                need_w, need_h = _decode_size_needed(ow, oh, spec)
                if swap:
                    need_w, need_h = need_h, need_w
                if need_w < raw_w and need_h < raw_h:
                    im.draft(im.mode, (max(1, need_w), max(1, need_h)))
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return fail(reasons.DECOMPRESSION_BOMB, str(exc), source_format=fmt)
    except UnidentifiedImageError:
        detail = f"{size} bytes with a {fmt} signature that no decoder accepts"
        return fail(reasons.CORRUPT_IMAGE, detail, source_format=fmt)
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, MemoryError) as exc:
        return fail(reasons.CORRUPT_IMAGE, decoder_message(exc), source_format=fmt)

    try:
        return _finish(im, data, digest, fmt, orientation, source_mode, ow, oh, spec)
    except (OSError, ValueError, MemoryError) as exc:  # e.g. an exotic mode Pillow cannot convert
        return fail(reasons.UNSUPPORTED_FORMAT, decoder_message(exc), **known)


def _size_rejection(width: int, height: int, spec: RenderSpec) -> tuple[str, str] | None:
    """The too_small / bad_aspect_ratio rules, on the original (displayed) size."""
    if min(width, height) < spec.min_side_px:
        return reasons.TOO_SMALL, f"{width}x{height}: shorter side under {spec.min_side_px} px"
    ratio = width / height
    if spec.min_aspect_ratio is not None and ratio < spec.min_aspect_ratio:
        return reasons.BAD_ASPECT_RATIO, f"{width}x{height}: aspect {ratio:.3f} < {spec.min_aspect_ratio}"
    if spec.max_aspect_ratio is not None and ratio > spec.max_aspect_ratio:
        return reasons.BAD_ASPECT_RATIO, f"{width}x{height}: aspect {ratio:.3f} > {spec.max_aspect_ratio}"
    return None


def _decode_size_needed(width: int, height: int, spec: RenderSpec) -> tuple[int, int]:
    """The smallest decoded size (displayed orientation) that still gives full detail at the output."""
    geo = spec.geometry
    fx, fy = geo.width / width, geo.height / height
    if geo.mode == "squash":
        sx, sy = fx, fy
    elif geo.mode == "center_crop":
        sx = sy = max(fx, fy)
    else:
        sx = sy = min(fx, fy)
    headroom = _FRAME_HEADROOM if spec.remove_frames else 1.0
    return math.ceil(width * sx * headroom), math.ceil(height * sy * headroom)


def _finish(
    im: Image.Image,
    data: bytes,
    digest: str,
    fmt: str,
    orientation: int,
    source_mode: str,
    ow: int,
    oh: int,
    spec: RenderSpec,
) -> RenderedImage:
    reduced = im.size != (ow, oh) and im.size != (oh, ow)
    if orientation in _TRANSPOSE:
        im = im.transpose(_TRANSPOSE[orientation])
    im = flatten(im)
    decode_scale = ow / im.width  # > 1 when libjpeg decoded at reduced scale
    frame_removed = False
    if spec.remove_frames:
        width_px = image_frame_width(im, spec.frame_score_max, contiguous=spec.frame_contiguous)
        # the margin is in original pixels; the working image may be a reduced decode
        margin = round(spec.frame_margin_px * im.width / ow)
        box = trim_box(im.width, im.height, width_px, margin)
        if box is not None:
            im = im.crop(box)
            frame_removed = True
    out = _resize(im, spec.geometry, RESAMPLE_FILTERS[spec.resample], decode_scale if reduced else 1.0)
    unchanged = (
        out is im
        and not frame_removed
        and not reduced
        and orientation in (0, 1)
        and fmt == "JPEG"
        and source_mode in ("RGB", "L")
    )
    if unchanged and not spec.reencode_unchanged:
        encoded = data
    else:
        buf = io.BytesIO()
        out.save(buf, "JPEG", quality=spec.jpeg_quality)
        encoded = buf.getvalue()
    return RenderedImage(
        True,
        digest,
        len(data),
        fmt,
        ow,
        oh,
        encoded,
        out.width,
        out.height,
        frame_removed,
    )


def flatten(im: Image.Image) -> Image.Image:
    """Any Pillow mode as 8-bit RGB or L: alpha composited onto white, 16-bit scaled, CMYK converted."""
    mode = im.mode
    if mode in ("RGB", "L") and "transparency" not in im.info:
        return im
    if mode == "1":
        return im.convert("L")
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im).astype(np.uint32)
        if mode == "I" and arr.size and int(arr.max()) <= 255:
            return Image.fromarray(arr.astype(np.uint8), "L")
        return Image.fromarray((np.clip(arr, 0, 65535) // 257).astype(np.uint8), "L")
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        if arr.size and float(np.nanmax(arr)) <= 1.0:
            arr = arr * 255.0
        return Image.fromarray(np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8), "L")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if has_alpha:
        gray = mode in ("LA", "La") or (mode == "L")
        rgba = im.convert("LA" if gray else "RGBA")
        background = Image.new("L" if gray else "RGB", rgba.size, 255 if gray else (255, 255, 255))
        background.paste(rgba.convert("L" if gray else "RGB"), mask=rgba.getchannel("A"))
        return background
    return im.convert("RGB")


def _resize(
    im: Image.Image, geo: Geometry, filters: tuple[Image.Resampling, Image.Resampling], max_scale: float
) -> Image.Image:
    """Resize to the geometry. ``keep_ratio`` never enlarges beyond the original resolution."""
    w, h = im.size

    def resized(size: tuple[int, int], box: tuple[float, float, float, float] | None = None) -> Image.Image:
        src_w, src_h = (box[2] - box[0], box[3] - box[1]) if box else (w, h)
        shrinking = size[0] <= src_w and size[1] <= src_h
        return im.resize(size, filters[0] if shrinking else filters[1], box=box, reducing_gap=_REDUCING_GAP)

    if geo.mode == "squash":
        return im if (w, h) == (geo.width, geo.height) else resized((geo.width, geo.height))
    if geo.mode == "center_crop":
        if (w, h) == (geo.width, geo.height):
            return im
        f = max(geo.width / w, geo.height / h)
        bw, bh = min(w, geo.width / f), min(h, geo.height / f)  # min(): float rounding
        return resized((geo.width, geo.height), ((w - bw) / 2, (h - bh) / 2, (w + bw) / 2, (h + bh) / 2))
    f = min(geo.width / w, geo.height / h)
    if geo.mode == "keep_ratio":
        f = min(f, max_scale)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    fitted = im if size == (w, h) else resized(size)
    if geo.mode == "keep_ratio" or size == (geo.width, geo.height):
        return fitted
    canvas = Image.new(fitted.mode, (geo.width, geo.height), 255 if fitted.mode == "L" else (255, 255, 255))
    canvas.paste(fitted, ((geo.width - size[0]) // 2, (geo.height - size[1]) // 2))
    return canvas
