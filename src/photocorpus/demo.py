"""``photocorpus demo``: a whole corpus, offline, in a few minutes.

The photos are real ones that installed packages ship (scikit-image's sample photographs), plus the
kind of noise social sites are full of, generated from them: re-encoded, downscaled, cropped, framed,
brightened and watermarked reposts, captions with hashtags, emoji, HTML entities and an XSS payload,
and a few broken files. That way every stage has something real to find.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps


@dataclass(frozen=True)
class DemoPhoto:
    name: str
    label: str
    loader: str  # attribute of skimage.data
    caption: str
    meta: dict[str, object]


DEMO_PHOTOS: tuple[DemoPhoto, ...] = (
    DemoPhoto("coffee", "food", "coffee", "Morning espresso ☕ at the corner café #coffee #espresso #NYC",
              {"title": "Espresso", "owner": "barista_jo", "license": "CC BY 2.0", "tags": ["coffee", "cup"]}),
    DemoPhoto("chelsea", "animals", "chelsea", "Chelsea the cat says hi 🐱 #cat #caturday",
              {"title": "Chelsea", "owner": "catlady", "lat": 40.7411, "lon": -73.9897, "accuracy": 16}),
    DemoPhoto("astronaut", "space", "astronaut", "Eileen Collins, first woman to pilot the Space Shuttle #nasa #space",
              {"title": "Astronaut portrait", "owner": "nasa", "license": "Public Domain"}),
    DemoPhoto("rocket", "space", "rocket", "Launch day! &amp; what a day it was #rocket #launch",
              {"title": "Launch", "owner": "nasa", "taken_at": "2009-05-11T18:01:56Z"}),
    DemoPhoto("hubble", "space", "hubble_deep_field", "Hubble deep field: every dot is a galaxy #space #hubble",
              {"title": "Deep field", "owner": "nasa", "license": "Public Domain"}),
    DemoPhoto("motorcycle", "street", "stereo_motorcycle", "New ride 🏍️ #motorcycle #weekend",
              {"title": "Motorcycle", "owner": "rider_99", "tags": ["bike", "motorcycle"]}),
    DemoPhoto("brick", "textures", "brick", "Brick wall texture #texture #architecture", {"owner": "textures_daily"}),
    DemoPhoto("grass", "textures", "grass", "Grass <b>close-up</b> #nature #green", {"owner": "textures_daily"}),
    DemoPhoto("gravel", "textures", "gravel", "Gravel path #texture", {"owner": "textures_daily"}),
    DemoPhoto("immuno", "science", "immunohistochemistry", "Immunohistochemistry stain #science #microscopy",
              {"owner": "lab_pics"}),
    DemoPhoto("retina", "science", "retina", "Retina fundus photo #science #eye", {"owner": "lab_pics"}),
    DemoPhoto("colorwheel", "science", "colorwheel", "Colour wheel #color", {"owner": "lab_pics"}),
    DemoPhoto("camera", "street", "camera", "Cameraman, a classic #blackandwhite #photography",
              {"owner": "classic_bw"}),
    DemoPhoto("clock", "street", "clock", "<img src=x onerror=alert(1)> what time is it? #clock",
              {"title": "<script>alert('xss')</script>", "owner": "<b>mallory</b>"}),
    DemoPhoto("coins", "science", "coins", "Old coins #coins #history", {"owner": "collector"}),
    DemoPhoto("moon", "space", "moon", "Moon surface #moon #space", {"owner": "nasa"}),
)  # fmt: skip

# Repost variants made from the originals: what dedup must find later.
_VARIANT_ORIGINALS = ("coffee", "chelsea", "astronaut", "rocket", "motorcycle", "hubble")


def _load(loader: str) -> Image.Image:
    import skimage.data

    array = getattr(skimage.data, loader)()
    if isinstance(array, tuple):  # stereo pairs
        array = array[0]
    return Image.fromarray(np.asarray(array)).convert("RGB")


def _reencode(im: Image.Image) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=40)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _downscale(im: Image.Image) -> Image.Image:
    return im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS)


def _frame(im: Image.Image) -> Image.Image:
    border = max(4, im.width // 10)
    return ImageOps.expand(im, border=border, fill=(255, 255, 255))


def _crop(im: Image.Image) -> Image.Image:
    dx, dy = im.width // 20, im.height // 20
    return im.crop((dx, dy, im.width - dx, im.height - dy))


def _brighten(im: Image.Image) -> Image.Image:
    return ImageEnhance.Brightness(im).enhance(1.25)


def _watermark(im: Image.Image) -> Image.Image:
    out = im.copy()
    ImageDraw.Draw(out).text((10, out.height - 24), "@repost_bot", fill=(255, 255, 255))
    return out


VARIANTS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "reencode": _reencode,
    "downscale": _downscale,
    "frame": _frame,
    "crop": _crop,
    "brighten": _brighten,
    "watermark": _watermark,
}


def build_demo_source(dest: Path) -> dict[str, int]:
    """Write the demo photos, reposts and broken files under ``dest/<label>/`` with sidecars.

    Returns counts by kind. Idempotent: files are rewritten with identical content.
    """
    dest.mkdir(parents=True, exist_ok=True)
    counts = {"originals": 0, "reposts": 0, "broken": 0}
    originals: dict[str, tuple[Image.Image, DemoPhoto]] = {}
    for photo in DEMO_PHOTOS:
        im = _load(photo.loader)
        folder = dest / photo.label
        folder.mkdir(exist_ok=True)
        im.save(folder / f"{photo.name}.jpg", "JPEG", quality=92)
        (folder / f"{photo.name}.txt").write_text(photo.caption + "\n", encoding="utf-8")
        (folder / f"{photo.name}.json").write_text(
            json.dumps(photo.meta, ensure_ascii=False), encoding="utf-8"
        )
        originals[photo.name] = (im, photo)
        counts["originals"] += 1
    for name in _VARIANT_ORIGINALS:
        im, photo = originals[name]
        folder = dest / photo.label
        for variant, make in VARIANTS.items():
            stem = f"{name}_{variant}"
            make(im).save(folder / f"{stem}.jpg", "JPEG", quality=85)
            (folder / f"{stem}.txt").write_text(
                f"{photo.caption} #repost via @repost_bot\n", encoding="utf-8"
            )
            counts["reposts"] += 1
    broken = dest / "broken"
    broken.mkdir(exist_ok=True)
    (broken / "empty.jpg").write_bytes(b"")
    (broken / "not_really.jpg").write_text("<html><body>404 Not Found</body></html>\n", encoding="utf-8")
    good = (dest / "food" / "coffee.jpg").read_bytes()
    (broken / "truncated.jpg").write_bytes(good[: len(good) // 3])
    counts["broken"] = 3
    return counts
