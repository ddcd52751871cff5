"""Repost variants of real photos, for measuring near-duplicate recall on a corpus's own images.

These are the edits that reposters and bots make: a re-encode at low quality, a downscale, a frame, a
brightness change, a small text watermark, a crop and a small rotation. ``photocorpus`` uses them in
its acceptance tests and benchmarks; users can use them to choose thresholds on their own photos.
Every random choice comes from ``seed`` and the photo's index, so a variant set is reproducible.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

SAVE_QUALITY = 90


def _jpeg(im: Image.Image, quality: int = SAVE_QUALITY) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def reencode_q40(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    return im  # the quality is applied when saving (see VARIANT_QUALITY)


def downscale_50(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = im.size
    return im.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.LANCZOS)


def frame_10(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A uniform border 10% of the width on every side, in white, black or a random colour."""
    w, _h = im.size
    colours = [(255, 255, 255), (0, 0, 0), tuple(int(c) for c in rng.integers(0, 256, 3))]
    colour = colours[int(rng.integers(0, len(colours)))]
    return ImageOps.expand(im.convert("RGB"), border=max(1, round(w * 0.10)), fill=colour)


def brightness_25(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """+25% or -25% brightness, chosen at random."""
    factor = 1.25 if rng.random() < 0.5 else 0.75
    return ImageEnhance.Brightness(im.convert("RGB")).enhance(factor)


def watermark_text(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A small '@account' text in a random corner, white with a dark outline, as repost apps add."""
    out = im.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    size = max(8, h // 18)
    text = f"@repost_{int(rng.integers(100, 999))}"
    try:
        from PIL import ImageFont

        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow without scalable default font
        font = None
    box = draw.textbbox((0, 0), text, font=font)
    tw, th = box[2] - box[0], box[3] - box[1]
    margin = max(2, w // 40)
    x = margin if rng.random() < 0.5 else max(0, w - tw - margin)
    y = margin if rng.random() < 0.5 else max(0, h - th - margin)
    draw.text((x, y), text, fill=(255, 255, 255), font=font, stroke_width=1, stroke_fill=(0, 0, 0))
    return out


def crop_10(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Keep 90% of the width and height, at a random offset."""
    w, h = im.size
    cw, ch = round(w * 0.9), round(h * 0.9)
    x = int(rng.integers(0, w - cw + 1))
    y = int(rng.integers(0, h - ch + 1))
    return im.crop((x, y, x + cw, y + ch))


def rotate_5(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Rotate 5 degrees either way about the centre, same canvas, corners filled black."""
    angle = 5.0 if rng.random() < 0.5 else -5.0
    return im.convert("RGB").rotate(angle, resample=Image.Resampling.BICUBIC, expand=False)


VARIANTS: dict[str, Callable[[Image.Image, np.random.Generator], Image.Image]] = {
    "reencode": reencode_q40,
    "downscale": downscale_50,
    "frame": frame_10,
    "brightness": brightness_25,
    "watermark": watermark_text,
    "crop": crop_10,
    "rotation": rotate_5,
}
VARIANT_QUALITY = {"reencode": 40}  # JPEG quality of the saved variant; others use SAVE_QUALITY
HASH_VARIANTS = ("reencode", "downscale", "frame", "brightness", "watermark")  # pHash alone must catch
SEMANTIC_VARIANTS = ("crop", "rotation")  # need the CNN features


def make_variant(data: bytes, kind: str, seed: int, index: int) -> bytes:
    """JPEG bytes of variant ``kind`` of the image ``data``; deterministic in (seed, index, kind)."""
    if kind not in VARIANTS:
        raise ValueError(f"unknown variant {kind!r}; expected one of {', '.join(VARIANTS)}")
    rng = np.random.default_rng([seed, index, list(VARIANTS).index(kind)])
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        out = VARIANTS[kind](ImageOps.exif_transpose(im), rng)
        return _jpeg(out, VARIANT_QUALITY.get(kind, SAVE_QUALITY))
