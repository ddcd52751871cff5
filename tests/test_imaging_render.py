"""Rendering downloaded bytes into the stored image: formats, orientation, geometry, bombs, bad bytes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from photocorpus import reasons
from photocorpus.fetch.imaging import render_image
from photocorpus.fetch.spec import Geometry, RenderSpec
from tests.fixtures.image_server import bomb_png, cmyk_jpeg, encode, exif_rotated_jpeg, real_jpeg

DEFAULT = RenderSpec(Geometry(1024, 1024), min_side_px=0)


def _decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


@pytest.fixture(scope="module")
def photo(instany_images: Path) -> Path:
    return sorted(instany_images.glob("*.jpg"))[7]


def test_large_jpeg_is_decoded_at_reduced_scale_yet_matches_a_full_decode(photo: Path) -> None:
    data = real_jpeg(photo, (1024, 768))
    spec = RenderSpec(Geometry(300, 300, "center_crop"), remove_frames=False)
    out = render_image(data, spec)
    assert out.ok and (out.width, out.height) == (300, 300)
    assert (out.original_width, out.original_height) == (1024, 768)
    # reference: full decode, the same centre crop, Pillow's best filter
    full = _decode(data).convert("RGB")
    ref = full.resize((300, 300), Image.Resampling.LANCZOS, box=(128, 0, 896, 768))
    diff = np.abs(np.asarray(_decode(out.data).convert("RGB"), float) - np.asarray(ref, float))
    assert diff.mean() < 4.0, diff.mean()


@pytest.mark.parametrize(
    ("mode", "source", "expected"),
    [
        ("squash", (1000, 500), (300, 300)),
        ("center_crop", (1000, 500), (300, 300)),
        ("border", (1000, 500), (300, 300)),
        ("keep_ratio", (1000, 500), (300, 150)),
        ("keep_ratio", (200, 100), (200, 100)),  # never enlarged
        ("center_crop", (200, 100), (300, 300)),  # training sizes are exact, even if enlarged
    ],
)
def test_resize_modes(photo: Path, mode: str, source: tuple[int, int], expected: tuple[int, int]) -> None:
    out = render_image(real_jpeg(photo, source), RenderSpec(Geometry(300, 300, mode), remove_frames=False))
    assert out.ok and (out.width, out.height) == expected
    assert _decode(out.data).size == expected


def test_border_mode_pads_with_white(photo: Path) -> None:
    out = render_image(
        real_jpeg(photo, (1000, 500)), RenderSpec(Geometry(300, 300, "border"), remove_frames=False)
    )
    arr = np.asarray(_decode(out.data).convert("RGB"), float)
    assert arr[:60].mean() > 245 and arr[-60:].mean() > 245  # 75 px white bands above and below
    assert arr[120:180].std() > 10  # the photo in the middle


def test_default_geometry_keeps_aspect_with_max_edge_1024(photo: Path) -> None:
    out = render_image(real_jpeg(photo, (2048, 1536)), DEFAULT)
    assert (out.width, out.height) == (1024, 768)
    assert (out.original_width, out.original_height) == (2048, 1536)


def test_unchanged_jpeg_is_stored_byte_for_byte(photo: Path) -> None:
    data = real_jpeg(photo, (800, 600))
    out = render_image(data, RenderSpec(Geometry(1024, 1024), remove_frames=True))
    assert out.ok and out.data == data and not out.frame_removed
    reencoded = render_image(data, RenderSpec(Geometry(1024, 1024), reencode_unchanged=True, jpeg_quality=50))
    assert reencoded.data != data and len(reencoded.data) < len(data)


def test_exif_orientation_is_applied(photo: Path) -> None:
    data = exif_rotated_jpeg(photo, orientation=6, size=(800, 600))  # stored landscape, shown portrait
    out = render_image(data, DEFAULT)
    assert (out.original_width, out.original_height) == (600, 800)
    assert (out.width, out.height) == (600, 800)
    shown = np.asarray(_decode(out.data).convert("L"), float)
    upright = np.asarray(ImageOps.exif_transpose(_decode(data)).convert("L"), float)
    assert np.abs(shown - upright).mean() < 3.0


def test_cmyk_jpeg_becomes_rgb(photo: Path) -> None:
    data = cmyk_jpeg(photo)
    out = render_image(data, DEFAULT)
    assert out.ok
    stored = _decode(out.data)
    assert stored.mode == "RGB"
    ref = np.asarray(_decode(data).convert("RGB"), float)
    assert np.abs(np.asarray(stored, float) - ref).mean() < 4.0


def test_alpha_is_composited_onto_white() -> None:
    im = Image.new("RGBA", (600, 600), (255, 0, 0, 0))  # fully transparent red
    im.paste((0, 0, 255, 255), (200, 200, 400, 400))  # an opaque blue square
    out = render_image(encode(im, "PNG"), DEFAULT)
    arr = np.asarray(_decode(out.data).convert("RGB"), int)
    assert tuple(arr[20, 20]) == pytest.approx((255, 255, 255), abs=3)
    assert tuple(arr[300, 300]) == pytest.approx((0, 0, 255), abs=6)


def test_palette_with_transparency_grayscale_and_16_bit() -> None:
    pal = Image.new("P", (600, 600), 0)
    pal.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    pal.paste(1, (100, 100, 500, 500))
    pal.info["transparency"] = 0
    out = render_image(encode(pal, "PNG", transparency=0), DEFAULT)
    arr = np.asarray(_decode(out.data).convert("RGB"), int)
    assert tuple(arr[10, 10]) == pytest.approx((255, 255, 255), abs=6)  # transparent index -> white
    assert tuple(arr[300, 300]) == pytest.approx((0, 200, 0), abs=6)

    gray16 = Image.fromarray(np.tile(np.linspace(0, 65535, 600).astype(np.uint16), (600, 1)))
    out = render_image(encode(gray16, "PNG"), DEFAULT)
    stored = np.asarray(_decode(out.data), float)
    assert _decode(out.data).mode == "L"
    assert stored[:, :20].mean() < 10 and stored[:, -20:].mean() > 245  # scaled, not clipped to white

    gray = Image.fromarray(np.tile(np.arange(600) % 256, (600, 1)).astype(np.uint8), "L")
    out = render_image(encode(gray, "JPEG", progressive=True, quality=90), RenderSpec(Geometry(300, 300)))
    assert out.ok and _decode(out.data).mode == "L" and (out.width, out.height) == (300, 300)


def test_webp_and_animated_gif_first_frame() -> None:
    noise = np.random.default_rng(3).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    webp = Image.fromarray(noise, "RGB")
    out = render_image(encode(webp, "WEBP", quality=90), DEFAULT)
    assert out.ok and (out.width, out.height) == (640, 480)
    frames = [Image.new("P", (640, 480), i) for i in (1, 2)]
    for f in frames:
        f.putpalette([0, 0, 0, 250, 0, 0, 0, 250, 0] + [0] * 759)
        f.paste(0, (0, 0, 640, 240))  # black top half (a flat image would count as all frame)
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    out = render_image(gif.getvalue(), DEFAULT)
    first = np.asarray(_decode(out.data).convert("RGB"), int)[400, 320]
    assert tuple(first) == pytest.approx((250, 0, 0), abs=8)  # frame 1 is red, frame 2 green


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", reasons.EMPTY_FILE),
        (b"<!DOCTYPE html><html><body>Rate limited</body></html>", reasons.NOT_AN_IMAGE),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, reasons.CORRUPT_IMAGE),
    ],
)
def test_bad_bytes_get_a_reason(data: bytes, reason: str) -> None:
    out = render_image(data, DEFAULT)
    assert not out.ok and out.reason == reason and out.data is None


def test_truncated_jpeg_is_corrupt(photo: Path) -> None:
    data = real_jpeg(photo, (1024, 1024))
    out = render_image(data[: len(data) // 2], RenderSpec(Geometry(300, 300, "center_crop")))
    assert out.reason == reasons.CORRUPT_IMAGE


def test_png_bomb_is_refused_without_decoding() -> None:
    out = render_image(bomb_png(30_000, 30_000), DEFAULT)
    assert out.reason == reasons.DECOMPRESSION_BOMB
    small_limit = render_image(bomb_png(3_000, 2_000), RenderSpec(Geometry(1024, 1024), max_pixels=5_000_000))
    assert small_limit.reason == reasons.DECOMPRESSION_BOMB
    assert (small_limit.original_width, small_limit.original_height) == (3000, 2000)


def test_size_and_aspect_rules(photo: Path) -> None:
    spec = RenderSpec(Geometry(1024, 1024), min_side_px=500, min_aspect_ratio=0.625, max_aspect_ratio=1.6)
    assert render_image(real_jpeg(photo, (800, 600)), spec).ok
    small = render_image(real_jpeg(photo, (800, 499)), spec)
    assert small.reason == reasons.TOO_SMALL and (small.original_width, small.original_height) == (800, 499)
    wide = render_image(real_jpeg(photo, (1700, 1000)), spec)
    assert wide.reason == reasons.BAD_ASPECT_RATIO
    tall = render_image(real_jpeg(photo, (600, 1000)), spec)
    assert tall.reason == reasons.BAD_ASPECT_RATIO


def test_content_hash_is_of_the_original_bytes(photo: Path) -> None:
    import hashlib

    data = real_jpeg(photo, (1024, 1024))
    out = render_image(data, RenderSpec(Geometry(300, 300, "squash")))
    assert out.sha256 == hashlib.sha256(data).hexdigest()
    assert out.original_bytes == len(data) and len(out.data) != len(data)
