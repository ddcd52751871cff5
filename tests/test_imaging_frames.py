"""Frame removal (im2gps remove_frame.m) on real photos: framed ones trimmed, unframed ones untouched."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from photocorpus.fetch.frames import frame_width, ring_scores, trim_box
from photocorpus.fetch.imaging import render_image
from photocorpus.fetch.spec import Geometry, RenderSpec

SPEC = RenderSpec(Geometry(2048, 2048), min_side_px=0)  # no resize: stored size = content after trim
MARGIN = 12
TOLERANCE = 16


def _naive_scores(gray: np.ndarray, max_width: int) -> np.ndarray:
    g = gray.astype(np.float64) / 255
    h, w = g.shape
    out = []
    for k in range(max_width):
        ring = np.concatenate(
            [
                g[k, k : w - k],
                g[h - 1 - k, k : w - k],
                g[k + 1 : h - 1 - k, k],
                g[k + 1 : h - 1 - k, w - 1 - k],
            ]
        )
        out.append(ring.std() * min(ring.mean(), 1 - ring.mean()))
    return np.array(out)


@pytest.mark.parametrize("shape", [(512, 512), (300, 701), (97, 33)])
def test_ring_scores_match_the_definition(shape: tuple[int, int]) -> None:
    gray = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    m = min(max(shape) // 8, (min(shape) - 1) // 2)
    np.testing.assert_allclose(ring_scores(gray, m), _naive_scores(gray, m), atol=1e-12)


def test_frame_width_rules() -> None:
    gray = np.full((400, 400), 128, np.uint8)
    gray[30:370, 30:370] = np.random.default_rng(1).integers(0, 256, (340, 340))
    assert frame_width(gray) == 30
    flat = np.full((400, 400), 90, np.uint8)
    assert frame_width(flat) == 0  # every ring qualifies up to 1/8 of the side: no content edge found
    assert frame_width(flat, contiguous=False) == 50  # im2gps: the largest qualifying width
    assert trim_box(400, 400, 50, 150) is None  # trimming would leave almost nothing: not a frame
    assert trim_box(400, 300, 20, 12) == (32, 32, 368, 268)
    # a uniform ring deep inside, with textured edges, is not a frame (unless im2gps's literal rule)
    inner = np.random.default_rng(2).integers(0, 256, (400, 400)).astype(np.uint8)
    inner[40, 40:360] = inner[359, 40:360] = 0
    inner[40:360, 40] = inner[40:360, 359] = 0
    assert frame_width(inner) == 0
    assert frame_width(inner, contiguous=False) == 41


def _textured_edges(im: Image.Image) -> bool:
    """Independent of the code under test: each 10 px edge band varies (std of luma > 20)."""
    g = np.asarray(im.convert("L"), float)
    return all(band.std() > 20 for band in (g[:10], g[-10:], g[:, :10], g[:, -10:]))


def _photos(instany_images: Path, count: int) -> list[Image.Image]:
    out = []
    for path in sorted(instany_images.glob("*.jpg"))[:400]:
        with Image.open(path) as im:
            crop = im.convert("RGB").crop((20, 20, 280, 280)).resize((780, 780), Image.Resampling.BICUBIC)
        if _textured_edges(crop):
            out.append(crop)
        if len(out) == count:
            break
    assert len(out) == count
    return out


def _jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


FRAMES = {
    "black": lambda im: ImageOps.expand(im, border=40, fill=(0, 0, 0)),
    "white": lambda im: ImageOps.expand(im, border=25, fill=(255, 255, 255)),
    "double": lambda im: ImageOps.expand(ImageOps.expand(im, 10, (0, 0, 0)), 30, (255, 255, 255)),
    "uneven_grey": lambda im: ImageOps.expand(im, border=(20, 20, 20, 20), fill=(128, 128, 128)),
}
WIDTH = {"black": 40, "white": 25, "double": 40, "uneven_grey": 20}


@pytest.mark.parametrize("kind", list(FRAMES))
def test_framed_real_photos_are_trimmed_to_the_content(instany_images: Path, kind: str) -> None:
    for photo in _photos(instany_images, 12):
        framed = FRAMES[kind](photo)
        out = render_image(_jpeg(framed), SPEC)
        assert out.ok and out.frame_removed, kind
        # the stored image is the content box less the 12 px margin: every side within 16 px of the box
        content = photo.size[0]
        assert abs(out.width - content) <= 2 * TOLERANCE and abs(out.height - content) <= 2 * TOLERANCE
        trimmed_per_side = (framed.size[0] - out.width) / 2
        assert abs(trimmed_per_side - WIDTH[kind]) <= TOLERANCE, (kind, trimmed_per_side)


def test_framed_photo_in_the_training_geometry(instany_images: Path) -> None:
    photo = _photos(instany_images, 1)[0].resize((1000, 1000))
    framed = ImageOps.expand(photo, border=60, fill=(0, 0, 0))
    out = render_image(_jpeg(framed), RenderSpec(Geometry(300, 300, "center_crop")))
    assert out.frame_removed and (out.width, out.height) == (300, 300)
    edge = np.asarray(Image.open(io.BytesIO(out.data)).convert("L"), float)[:3]
    assert edge.mean() > 15  # no black band left along the top


def test_unframed_real_photos_are_left_untouched(instany_images: Path) -> None:
    photos = _photos(instany_images, 40)
    for photo in photos:
        data = _jpeg(photo)
        out = render_image(data, SPEC)
        assert out.ok and not out.frame_removed
        assert out.data == data  # not even re-encoded
