"""Image decoding and ImageNet-style preprocessing tuned for large photo corpora.

Why this is more than ``Image.open(...).resize(...)``: camera originals on photo sites can be tens
of megapixels, and a full JPEG decode of those dominates feature-extraction time. Pillow's
``draft()`` lets libjpeg decode at 1/2, 1/4 or 1/8 scale directly in the DCT domain (about 6x faster
on a 12 MP photo) and is only used when the reduced image is still at least as large as the resize
target, so the model input changes by well under one grey level on average. The bicubic resize
then only computes the 224x224 centre-crop window (``resize(box=...)``) instead of the whole
short-side-256 image.

Small JPEGs (the usual case once fetch has stored 300x300 copies) skip Pillow's decoder: libjpeg-turbo
through simplejpeg, with the same accurate DCT and fancy upsampling, gives Pillow's pixels bit for bit
(checked on the shared InstaNY100K and MIRFLICKR photos) in half the time, mostly because Pillow reads
the file in small chunks and parses every marker in Python. Anything else, or anything the fast path
is unsure of (EXIF rotation, CMYK, a drafted decode, a libjpeg warning), goes through Pillow.

Everything here uses numpy, Pillow and simplejpeg only (no torch), so it runs cheaply in worker processes.
The output convention matches the EfficientNet-Lite0 checkpoint: RGB, short side 256 (bicubic),
centre crop 224, ``x / 255`` normalised with mean = std = 0.5, float32 NCHW. Lite1 and Lite2 crop 240
and 260 from short sides 272 and 292 (:func:`resize_size_for`).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import numpy as np
from PIL import Image, ImageOps

__all__ = [
    "CROP_PADDING",
    "CROP_SIZE",
    "MEAN",
    "RESIZE_SIZE",
    "STD",
    "ImageSource",
    "PreprocessedBatch",
    "load_rgb",
    "normalize",
    "preprocess",
    "preprocess_batch",
    "raw_pixels",
    "resize_center_crop",
    "resize_size_for",
]

ImageSource: TypeAlias = str | os.PathLike[str] | bytes | bytearray | memoryview | Image.Image

CROP_SIZE = 224
# The TF EfficientNet evaluation crop: a centre crop of crop / (crop + 32) of the short side, i.e. short
# side crop + 32 and then the crop. The Lite checkpoints' published accuracies were measured that way.
CROP_PADDING = 32
RESIZE_SIZE = CROP_SIZE + CROP_PADDING  # 256
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)

_WHITE = (255, 255, 255)
_EXIF_ORIENTATION = 0x0112
_JPEG_SOI = b"\xff\xd8\xff"
FAST_JPEG_MAX_BYTES = 16 * 2**20  # larger files are camera originals: Pillow drafts them anyway


def _open(source: str | os.PathLike[str] | bytes | bytearray | memoryview) -> Image.Image:
    if isinstance(source, bytes | bytearray | memoryview):
        return Image.open(io.BytesIO(bytes(source)))
    return Image.open(Path(source))


def _draft_size(width: int, height: int, min_side: int) -> tuple[int, int]:
    """Smallest (w, h) with the original aspect whose short side is still >= ``min_side``."""
    short = min(width, height)
    return max(1, math.ceil(width * min_side / short)), max(1, math.ceil(height * min_side / short))


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB the way a viewer would display it.

    Transparency is composited onto white (not black, Pillow's default for a bare ``convert``),
    because transparent areas in web images are almost always meant as page background.
    16-bit and float greyscale are rescaled rather than clipped so scans and PNG-16s keep contrast.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16"):
            arr = arr / 257.0  # full 16-bit range onto 0..255
        else:
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        grey = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
        return grey.convert("RGB")
    # L, 1, CMYK, YCbCr, LAB, HSV: Pillow's conversions are the right ones.
    return img.convert("RGB")


def load_rgb(source: ImageSource, min_side: int | None = RESIZE_SIZE) -> Image.Image:
    """Open an image (path, bytes or PIL image) as upright 8-bit RGB.

    With ``min_side`` set, JPEGs read from a path or bytes are decoded at the largest DCT reduction
    (1/2, 1/4, 1/8) that keeps the short side >= ``min_side``; ``None`` always decodes at full
    resolution. Image objects passed in are used as they are (never drafted in place). EXIF
    orientation is applied so phone photos are not fed to the model sideways. Animated images use
    their first frame.
    """
    if isinstance(source, Image.Image):
        return _upright_rgb(source, None)  # never draft (i.e. mutate) an image object the caller owns
    data = _jpeg_bytes(source)
    if data is not None:
        pixels = _decode_small_jpeg(data, min_side)
        if pixels is not None:
            return Image.fromarray(pixels, "RGB")
        source = data  # Pillow decides; the file is not read twice
    with _open(source) as img:  # closes the file even for multi-frame images
        return _upright_rgb(img, min_side)


def _jpeg_bytes(source: str | os.PathLike[str] | bytes | bytearray | memoryview) -> bytes | None:
    """The bytes of ``source`` when it is a JPEG small enough for :func:`_decode_small_jpeg`."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        return data if data[:3] == _JPEG_SOI and len(data) <= FAST_JPEG_MAX_BYTES else None
    with open(source, "rb") as file:  # a missing file raises here exactly as Image.open would
        head = file.read(3)
        if head != _JPEG_SOI or os.fstat(file.fileno()).st_size > FAST_JPEG_MAX_BYTES:
            return None
        return head + file.read()


def _decode_small_jpeg(data: bytes, min_side: int | None) -> np.ndarray | None:
    """RGB pixels of a JPEG that Pillow would decode at full size and show as stored, else ``None``.

    ``None`` hands the image to Pillow, which then gives the same result or error as without this
    path: a JPEG Pillow would draft (short side >= 2 * ``min_side``), one over Pillow's pixel limit,
    CMYK/YCCK/RGB-coded data, an EXIF orientation other than upright (or an EXIF block Pillow cannot
    read), and any libjpeg warning (``strict``: Pillow decides whether the data is usable).
    """
    import simplejpeg

    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if colorspace not in ("YCbCr", "Gray"):
        return None
    if Image.MAX_IMAGE_PIXELS is not None and width * height > Image.MAX_IMAGE_PIXELS:
        return None  # Pillow warns or refuses (decompression bomb)
    if min_side is not None and min(width, height) >= 2 * min_side:
        return None
    if jpeg_exif_orientation(data) not in (0, 1):  # rotated, or an EXIF block Pillow cannot read
        return None
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=False, fastupsample=False)
    except ValueError:
        return None


def jpeg_exif_orientation(data: bytes) -> int | None:
    """The EXIF orientation of JPEG bytes as Pillow reads it: 1 without an EXIF block, ``None`` when
    the block is there but Pillow cannot read it (each caller decides what that means).

    Shared by the featurize and dedup fast paths. Most stored copies have no EXIF, so Pillow's header
    parse runs only when the marker is there. It is looked for in the whole file, not its first 64 kB:
    ICC profiles or other APPn segments may come first. A chance match in the image data costs one parse.
    """
    if b"Exif\x00\x00" not in data:
        return 1
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:
        return None


def _upright_rgb(img: Image.Image, min_side: int | None) -> Image.Image:
    if min_side is not None and img.format == "JPEG":
        width, height = img.size
        if min(width, height) >= 2 * min_side:  # draft can only halve; below that it is a no-op
            img.draft("RGB", _draft_size(width, height, min_side))
    if img.getexif().get(_EXIF_ORIENTATION, 1) not in (0, 1):
        img = ImageOps.exif_transpose(img)  # copies, so only when actually rotated/flipped
    img.load()
    return _to_rgb(img)


def resize_size_for(crop_size: int) -> int:
    """The short side a photo is resized to before its centre ``crop_size`` crop (256 for 224)."""
    return crop_size + CROP_PADDING


def resize_center_crop(
    img: Image.Image, resize_size: int = RESIZE_SIZE, crop_size: int = CROP_SIZE
) -> Image.Image:
    """Short side to ``resize_size`` (bicubic), then centre crop ``crop_size`` square.

    Geometry follows torchvision's ``Resize(int)`` + ``CenterCrop`` (long side truncated, crop
    offset rounded) so features match models evaluated with the usual ImageNet pipeline. Only the
    crop window is resampled: Pillow's ``box`` argument keeps the filter support reaching outside
    the box, so the result matches resize-then-crop without resampling pixels that are cropped away.
    """
    width, height = img.size
    if width <= height:
        new_w, new_h = resize_size, int(resize_size * height / width)
    else:
        new_w, new_h = int(resize_size * width / height), resize_size
    if crop_size > min(new_w, new_h):
        raise ValueError(f"crop_size {crop_size} is larger than the resized image {new_w}x{new_h}")
    left = round((new_w - crop_size) / 2.0)
    top = round((new_h - crop_size) / 2.0)
    sx, sy = width / new_w, height / new_h
    box = (left * sx, top * sy, (left + crop_size) * sx, (top + crop_size) * sy)
    return img.resize((crop_size, crop_size), Image.Resampling.BICUBIC, box=box)


def normalize(pixels: np.ndarray, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> np.ndarray:
    """uint8 RGB HWC / NHWC -> float32 CHW / NCHW: ``(x / 255 - mean) / std`` per channel.

    The default mean = std = 0.5 (EfficientNet-Lite0, i.e. ``x * 2 / 255 - 1``); pass a model's
    ``input_mean``/``input_std`` for torchvision-style models (VGG19, ResNet50).
    """
    if pixels.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {pixels.dtype}")
    if pixels.ndim == 3:
        return normalize(pixels[None], mean, std)[0]
    if pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) uint8 pixels, got shape {pixels.shape}")
    # Fold /255, -mean and /std into one multiply-add per channel, written straight into the NCHW
    # result: one strided read of the uint8 pixels and one in-place add, no float temporaries or
    # transposing copy (5x faster than astype-multiply-add-transpose, bit for bit the same; on a
    # 2-core featurize this was 1.3 ms of CPU per image).
    scale = (1.0 / (255.0 * np.asarray(std, dtype=np.float64))).astype(np.float32)[:, None, None]
    shift = (-np.asarray(mean, dtype=np.float64) / np.asarray(std, dtype=np.float64)).astype(np.float32)
    n, h, w, _ = pixels.shape
    x = np.empty((n, 3, h, w), dtype=np.float32)
    np.multiply(pixels.transpose(0, 3, 1, 2), scale, out=x, casting="unsafe")
    x += shift[:, None, None]
    return x


def preprocess(
    source: ImageSource,
    resize_size: int = RESIZE_SIZE,
    crop_size: int = CROP_SIZE,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
) -> np.ndarray:
    """One image -> normalised float32 array of shape (3, crop_size, crop_size)."""
    img = resize_center_crop(load_rgb(source, min_side=resize_size), resize_size, crop_size)
    return normalize(np.asarray(img, dtype=np.uint8), mean, std)


@dataclass
class PreprocessedBatch:
    """Result of :func:`preprocess_batch`; plain numpy + builtins so it pickles between processes.

    ``pixels[i]`` belongs to ``sources[indices[i]]``. Unreadable inputs are reported in ``errors``
    (input position -> message) instead of aborting the batch: one corrupt file in a million-photo
    crawl should cost one row, not a worker.
    """

    pixels: np.ndarray
    indices: list[int]
    errors: dict[int, str] = field(default_factory=dict)


def preprocess_batch(
    sources: Sequence[ImageSource] | Iterable[ImageSource],
    resize_size: int = RESIZE_SIZE,
    crop_size: int = CROP_SIZE,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
    skip_errors: bool = True,
) -> PreprocessedBatch:
    """Preprocess many images into one (N, 3, crop, crop) float32 batch.

    A module-level function of picklable arguments, so it can be handed straight to
    ``ProcessPoolExecutor.map`` with chunks of paths. With ``skip_errors=False`` the first failure
    propagates instead.
    """
    arrays: list[np.ndarray] = []
    indices: list[int] = []
    errors: dict[int, str] = {}
    for i, source in enumerate(sources):
        try:
            arrays.append(preprocess(source, resize_size, crop_size, mean, std))
        except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
            # OSError covers truncated/unidentified images; SyntaxError is raised by some plugins.
            if not skip_errors:
                raise
            errors[i] = f"{type(exc).__name__}: {exc}"
            continue
        indices.append(i)
    empty = np.empty((0, 3, crop_size, crop_size), dtype=np.float32)
    pixels = np.stack(arrays) if arrays else empty
    return PreprocessedBatch(pixels=pixels, indices=indices, errors=errors)


def raw_pixels(source: ImageSource, size: int = 150) -> np.ndarray:
    """The "raw-pixels" baseline feature of seed 004: whole image squashed to size x size RGB.

    Aspect ratio is deliberately not preserved (no crop) so the vector sees the entire frame.
    Returns float32 of length ``size * size * 3`` in [0, 1], flattened in HWC order.
    """
    img = load_rgb(source, min_side=size)
    small = img.resize((size, size), Image.Resampling.BICUBIC)
    return (np.asarray(small, dtype=np.float32) / np.float32(255.0)).reshape(-1)
