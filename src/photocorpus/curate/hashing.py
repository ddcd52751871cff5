"""Perceptual hashes (64-bit DCT pHash and dHash) computed fast, plus a de-framed pHash.

Why fast matters: at a million photos, decoding dominates. A JPEG is decoded straight to a small
grayscale image with libjpeg-turbo's DCT scaling (simplejpeg, 1/2 to 1/8 scale: the full-size image is
never built), and the pHash DCT runs batched as two matrix products over a whole stack of 32x32
images instead of one scipy call per image.

pHash follows the usual definition (as imagehash and imagededup compute it): 32x32 grayscale, 2-D
DCT-II, the top-left 8x8 block of low frequencies, each bit set when its coefficient is above the
median of the block without the DC term. dHash compares horizontally adjacent pixels of a 9x8 image.
Bit 63 is the first coefficient (row-major), so hashes print and compare like imagehash's hex strings.

De-framing: reposters add borders ("artsy" frames, letterboxing to a square). A uniform border on
both opposite sides is detected on the small grayscale image and cropped before a second pHash is
taken, so a framed repost still meets its original in the hash index.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from photocorpus.image_preprocess import jpeg_exif_orientation

HASH_SIZE = 8  # 8x8 = 64 bits
PHASH_IMAGE = 32  # pHash input side (4x the hash side, as in imagehash)
DECODE_MIN_SIDE = 64  # decode at the largest DCT reduction keeping both sides >= this (frame precision)

# A border line is "uniform" when its pixels stay this close (grey levels, 0-255) to the border colour.
FRAME_TOLERANCE = 14.0
FRAME_MIN_FRACTION = 0.03  # a frame narrower than 3% of the side is an edge, not a frame
FRAME_MAX_FRACTION = 0.35  # never crop more than 35% per side
# The pHash of an image with less contrast than this (std of the 32x32 grey levels) is noise.
DEGENERATE_STD = 2.0


@dataclass(frozen=True, slots=True)
class PhotoHashes:
    """The hashes of one image (codes as unsigned 64-bit ints) and what was seen while computing them."""

    phash: int
    dhash: int
    phash_deframed: int  # equals phash when no frame was found
    dhash_deframed: int
    frame: tuple[int, int, int, int]  # top, bottom, left, right border, as fractions x 1000
    degenerate: bool  # too little contrast for the hash to mean anything


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix C, so that C @ X @ C.T is the 2-D DCT of X (as scipy's norm='ortho')."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    c = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    c[0] /= np.sqrt(2.0)
    return c.astype(np.float32)


_DCT = _dct_matrix(PHASH_IMAGE)
_DCT_LOW = np.ascontiguousarray(_DCT[:HASH_SIZE])  # only the 8 lowest frequencies are ever needed


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """(N, 64) booleans -> N uint64 codes, first bit most significant."""
    packed = np.packbits(np.asarray(bits, dtype=bool).reshape(-1, 64), axis=1, bitorder="big")
    return packed.view(">u8").reshape(-1).astype(np.uint64)


def phash_batch(gray32: np.ndarray) -> np.ndarray:
    """pHash of a stack of (N, 32, 32) grayscale images (any real dtype) -> N uint64 codes."""
    x = np.asarray(gray32, dtype=np.float32).reshape(-1, PHASH_IMAGE, PHASH_IMAGE)
    low = _DCT_LOW @ x @ _DCT_LOW.T  # (N, 8, 8): the low-frequency block of the 2-D DCT
    flat = low.reshape(-1, 64)
    median = np.median(flat[:, 1:], axis=1, keepdims=True)
    return pack_bits(flat > median)


def dhash_batch(gray9x8: np.ndarray) -> np.ndarray:
    """dHash of a stack of (N, 8, 9) grayscale images (8 rows of 9 pixels) -> N uint64 codes."""
    x = np.asarray(gray9x8, dtype=np.int16).reshape(-1, HASH_SIZE, HASH_SIZE + 1)
    return pack_bits((x[:, :, 1:] > x[:, :, :-1]).reshape(-1, 64))


def decode_gray(data: bytes, min_side: int = DECODE_MIN_SIDE) -> np.ndarray:
    """Decode image bytes to a small upright uint8 grayscale array (short side >= ``min_side`` if it can).

    JPEGs go through libjpeg-turbo's scaled decode (no full-size image). Other formats, and JPEGs with
    an EXIF rotation, go through Pillow. Raises ``ValueError``/``OSError`` for undecodable bytes.
    """
    if data[:3] == b"\xff\xd8\xff" and not _has_exif_rotation(data):
        import simplejpeg

        try:
            arr = simplejpeg.decode_jpeg(
                data,
                colorspace="GRAY",
                fastdct=True,
                fastupsample=True,
                min_height=min_side,
                min_width=min_side,
                min_factor=1,
            )
            return arr[:, :, 0]
        except ValueError:
            pass  # progressive/CMYK oddities simplejpeg refuses: let Pillow try
    im = Image.open(io.BytesIO(data))
    if im.format == "JPEG":
        im.draft("L", (min_side, min_side))
    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)  # transparency is page background: white
    im.thumbnail((max(min_side * 4, 256), max(min_side * 4, 256)), Image.Resampling.BOX)
    return np.asarray(im.convert("L"))


def _has_exif_rotation(data: bytes) -> bool:
    """An EXIF orientation other than upright (an unreadable EXIF block: we cannot know, decode as stored)."""
    orientation = jpeg_exif_orientation(data)
    return orientation is not None and orientation not in (0, 1)


def frame_box(gray: np.ndarray, tolerance: float = FRAME_TOLERANCE) -> tuple[int, int, int, int]:
    """Uniform border widths (top, bottom, left, right) in pixels, or zeros when there is no frame.

    A side's border is the run of outer lines whose pixels all stay within ``tolerance`` of that side's
    outermost line. It counts as a frame only when both opposite sides have one (a frame or a
    letterbox, not a plain sky) of at least :data:`FRAME_MIN_FRACTION` of the side.
    """
    h, w = gray.shape
    if h < 8 or w < 8:
        return (0, 0, 0, 0)
    g = gray.astype(np.int16)
    min_h, min_w = max(1, round(h * FRAME_MIN_FRACTION)), max(1, round(w * FRAME_MIN_FRACTION))
    lim_h, lim_w = int(h * FRAME_MAX_FRACTION), int(w * FRAME_MAX_FRACTION)

    def run(lines: np.ndarray, needed: int, limit: int) -> int:
        # lines: (L, K) from the outside in; colour = median of the outermost line. Most photos have
        # no frame, so the first ``needed`` lines are checked alone before the whole run is measured.
        colour = np.median(lines[0])
        if np.abs(lines[:needed] - colour).max() > tolerance:
            return 0
        dev = np.abs(lines[:limit] - colour).max(axis=1)
        bad = np.flatnonzero(dev > tolerance)
        return int(bad[0]) if bad.size else limit

    top = run(g, min_h, lim_h)
    bottom = run(g[::-1], min_h, lim_h) if top else 0
    left = run(g.T, min_w, lim_w)
    right = run(g.T[::-1], min_w, lim_w) if left else 0
    vertical = top >= min_h and bottom >= min_h
    horizontal = left >= min_w and right >= min_w
    # Frames and letterboxes are symmetric; a longer run on one side is content of the frame's colour
    # (a white wall inside a white frame), so every framed side is cropped by the narrowest run.
    if vertical and horizontal:
        top = bottom = left = right = min(top, bottom, left, right)
    elif vertical:
        top = bottom = min(top, bottom)
        left = right = 0
    elif horizontal:
        left = right = min(left, right)
        top = bottom = 0
    else:
        return (0, 0, 0, 0)
    return (top, bottom, left, right)


def _resize(gray: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-average resize to (width, height) as float32 (Pillow's BOX filter on 8-bit grey)."""
    return np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.BOX), dtype=np.float32)


def hash_gray_images(grays: Sequence[np.ndarray]) -> list[PhotoHashes]:
    """Hashes of many small grayscale images: resizes per image, then one batched DCT for all."""
    n = len(grays)
    if n == 0:
        return []
    stack = np.empty((2 * n, PHASH_IMAGE, PHASH_IMAGE), dtype=np.float32)
    small = np.empty((2 * n, HASH_SIZE, HASH_SIZE + 1), dtype=np.float32)
    frames: list[tuple[int, int, int, int]] = []
    for k, gray in enumerate(grays):
        stack[k] = _resize(gray, (PHASH_IMAGE, PHASH_IMAGE))
        small[k] = _resize(gray, (HASH_SIZE + 1, HASH_SIZE))
        top, bottom, left, right = frame_box(gray)
        h, w = gray.shape
        if top or bottom or left or right:
            inner = np.ascontiguousarray(gray[top : h - bottom, left : w - right])
            stack[n + k] = _resize(inner, (PHASH_IMAGE, PHASH_IMAGE))
            small[n + k] = _resize(inner, (HASH_SIZE + 1, HASH_SIZE))
        else:
            stack[n + k] = stack[k]
            small[n + k] = small[k]
        frames.append(
            (round(1000 * top / h), round(1000 * bottom / h), round(1000 * left / w), round(1000 * right / w))
        )
    codes = phash_batch(stack)
    dcodes = dhash_batch(small)
    std = stack[:n].reshape(n, -1).std(axis=1)
    return [
        PhotoHashes(
            phash=int(codes[k]),
            dhash=int(dcodes[k]),
            phash_deframed=int(codes[n + k]),
            dhash_deframed=int(dcodes[n + k]),
            frame=frames[k],
            degenerate=bool(std[k] < DEGENERATE_STD),
        )
        for k in range(n)
    ]


def hash_image_bytes(data: bytes) -> PhotoHashes:
    """Decode and hash one image (see :func:`hash_gray_images` for many)."""
    return hash_gray_images([decode_gray(data)])[0]
