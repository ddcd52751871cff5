"""Preprocessing: geometry and normalisation vs a naive reference, draft decoding, odd modes, batches."""

from __future__ import annotations

import gc
import io
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
import skimage.data
from PIL import Image, ImageOps

from photocorpus import image_preprocess as pp
from tests.fixtures.image_server import behind_app2_segments


def _reference(img: Image.Image, resize: int = 256, crop: int = 224) -> np.ndarray:
    """torchvision-style Resize(256) + CenterCrop(224) + Normalize(0.5, 0.5), written out longhand."""
    img = img.convert("RGB")
    w, h = img.size
    size = (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
    img = img.resize(size, Image.Resampling.BICUBIC)
    left = round((size[0] - crop) / 2.0)
    top = round((size[1] - crop) / 2.0)
    arr = np.asarray(img.crop((left, top, left + crop, top + crop)), dtype=np.float32) / 255.0
    return ((arr - 0.5) / 0.5).transpose(2, 0, 1)


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    """A 2400x1800 JPEG (upscaled astronaut), large enough for a 1/4-scale draft decode."""
    img = Image.fromarray(skimage.data.astronaut()).resize((2400, 1800), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92)
    return buf.getvalue()


@pytest.mark.parametrize("name", ["coffee", "chelsea", "astronaut"])
def test_matches_naive_resize_crop_normalize(name: str) -> None:
    img = Image.fromarray(getattr(skimage.data, name)())
    got = pp.preprocess(img)
    ref = _reference(img)
    assert got.shape == (3, 224, 224) and got.dtype == np.float32
    assert got.min() >= -1.0 and got.max() <= 1.0
    # box-resampling only the crop differs from resize-then-crop by at most one 8-bit level
    assert np.abs(got - ref).max() <= 2 / 255 + 1e-6
    assert np.abs(got - ref).mean() < 1e-3


def test_portrait_and_landscape_crop_the_centre() -> None:
    """A marker in the centre must survive the crop; markers at the far ends must not."""
    for shape in [(600, 300), (300, 600)]:
        arr = np.zeros((*shape, 3), np.uint8)
        cy, cx = shape[0] // 2, shape[1] // 2
        arr[cy - 20 : cy + 20, cx - 20 : cx + 20] = 255
        arr[:10, :10] = 255
        arr[-10:, -10:] = 255
        out = pp.preprocess(Image.fromarray(arr))
        assert out[:, 112, 112].min() == pytest.approx(1.0)
        assert out[:, :5, :5].max() == pytest.approx(-1.0) and out[:, -5:, -5:].max() == pytest.approx(-1.0)


def test_draft_decode_is_used_for_large_jpegs_and_stays_close(big_jpeg: bytes) -> None:
    drafted = pp.load_rgb(big_jpeg)
    full = pp.load_rgb(big_jpeg, min_side=None)
    assert full.size == (2400, 1800)
    assert drafted.size == (600, 450)  # 1/4 scale: the largest reduction keeping the short side >= 256
    fast = pp.preprocess(big_jpeg)
    slow = pp.normalize(np.asarray(pp.resize_center_crop(full)))
    assert np.abs(fast - slow).mean() < 0.02  # ~2.5 grey levels on average
    assert np.corrcoef(fast.ravel(), slow.ravel())[0, 1] > 0.995


def test_caller_owned_image_is_not_drafted_in_place(big_jpeg: bytes) -> None:
    img = Image.open(io.BytesIO(big_jpeg))
    out = pp.load_rgb(img)
    assert img.size == out.size == (2400, 1800)


# An unclosed file warns from __del__; pytest reports that as PytestUnraisableExceptionWarning.
@pytest.mark.filterwarnings("error::ResourceWarning", "error::pytest.PytestUnraisableExceptionWarning")
def test_multi_frame_files_are_closed(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (300, 300), c) for c in ("red", "blue")]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    out = pp.load_rgb(path)
    assert out.mode == "RGB" and tuple(np.asarray(out)[0, 0]) == (255, 0, 0)  # first frame
    gc.collect()  # an unclosed file would warn here


def test_small_jpeg_is_not_drafted() -> None:
    buf = io.BytesIO()
    Image.fromarray(skimage.data.coffee()).save(buf, "JPEG")
    assert pp.load_rgb(buf.getvalue()).size == (600, 400)


def _pillow_rgb(source: Path | bytes) -> np.ndarray:
    """The decode before the fast path existed: Pillow alone, drafted as ``load_rgb`` drafts, upright
    8-bit RGB."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
        if min(img.size) >= 2 * pp.RESIZE_SIZE:
            img.draft("RGB", (pp.RESIZE_SIZE * img.width // min(img.size), pp.RESIZE_SIZE))
        return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))


@pytest.fixture()
def fast_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the JPEGs decoded by simplejpeg, i.e. not by Pillow (one entry per successful decode)."""
    decoded: list[int] = []
    original = simplejpeg.decode_jpeg

    def counting(*args: object, **kwargs: object) -> np.ndarray:
        out = original(*args, **kwargs)
        decoded.append(1)
        return out

    monkeypatch.setattr(simplejpeg, "decode_jpeg", counting)
    return decoded


def test_small_real_jpegs_skip_pillows_decoder_with_its_exact_pixels(
    instany_images: Path, mirflickr_images: Path, fast_decodes: list[int]
) -> None:
    paths = sorted(instany_images.glob("*.jpg"))[::15] + sorted(mirflickr_images.glob("*.jpg"))[::25]
    assert len(paths) > 300
    for path in paths:
        expected = _pillow_rgb(path)
        got = pp.load_rgb(path)
        assert got.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(got), expected, err_msg=str(path))
    assert len(fast_decodes) == len(paths)
    np.testing.assert_array_equal(np.asarray(pp.load_rgb(paths[0].read_bytes())), _pillow_rgb(paths[0]))
    assert len(fast_decodes) == len(paths) + 1


def _jpeg(img: Image.Image, **save: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **save)
    return buf.getvalue()


def _with_restart_marker_mid_scan(data: bytes) -> bytes:
    """A stray RST marker in the entropy data: libjpeg warns, Pillow decodes it anyway."""
    mid = len(data) // 2
    return data[:mid] + b"\xff\xd0" + data[mid + 2 :]


_COFFEE = Image.fromarray(skimage.data.coffee())  # 600x400
_EXIF_UPRIGHT = Image.Exif()
_EXIF_UPRIGHT[0x0112] = 1
_EXIF_ROTATED = Image.Exif()
_EXIF_ROTATED[0x0112] = 8


@pytest.mark.parametrize(
    ("case", "data", "fast"),
    [
        ("progressive", _jpeg(_COFFEE, progressive=True), True),
        ("4:4:4", _jpeg(_COFFEE, subsampling=0, quality=95), True),
        ("greyscale", _jpeg(_COFFEE.convert("L")), True),
        ("EXIF, upright", _jpeg(_COFFEE, exif=_EXIF_UPRIGHT.tobytes()), True),
        ("EXIF, rotated", _jpeg(_COFFEE, exif=_EXIF_ROTATED.tobytes()), False),
        (
            "EXIF, rotated, behind 100 kB",
            behind_app2_segments(_jpeg(_COFFEE, exif=_EXIF_ROTATED.tobytes())),
            False,
        ),
        ("CMYK", _jpeg(_COFFEE.convert("CMYK")), False),
        ("libjpeg warning", _with_restart_marker_mid_scan(_jpeg(_COFFEE)), False),
        ("large enough to draft", _jpeg(_COFFEE.resize((1200, 800))), False),
    ],
)
def test_jpegs_the_fast_path_is_unsure_of_still_give_pillows_pixels(
    case: str, data: bytes, fast: bool, fast_decodes: list[int], tmp_path: Path
) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    expected = _pillow_rgb(data)
    for source in (path, data):
        np.testing.assert_array_equal(np.asarray(pp.load_rgb(source)), expected, err_msg=case)
    assert len(fast_decodes) == (2 if fast else 0), case


def test_a_truncated_jpeg_fails_as_pillow_fails(tmp_path: Path, fast_decodes: list[int]) -> None:
    data = _jpeg(_COFFEE)[:20_000]
    path = tmp_path / "cut.jpg"
    path.write_bytes(data)
    for source in (path, data):
        with pytest.raises(OSError, match="truncated"):
            pp.load_rgb(source)
    assert fast_decodes == []
    with pytest.raises(FileNotFoundError):
        pp.load_rgb(tmp_path / "missing.jpg")


def test_path_bytes_and_image_inputs_agree(tmp_path: Path) -> None:
    path = tmp_path / "coffee.png"
    Image.fromarray(skimage.data.coffee()).save(path)
    from_path = pp.preprocess(path)
    np.testing.assert_array_equal(from_path, pp.preprocess(str(path)))
    np.testing.assert_array_equal(from_path, pp.preprocess(path.read_bytes()))
    np.testing.assert_array_equal(from_path, pp.preprocess(Image.open(path)))


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    arr = np.zeros((300, 500, 3), np.uint8)
    arr[:, :250] = 255  # left half white
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif.tobytes(), quality=95)
    upright = pp.load_rgb(path)
    assert upright.size == (300, 500)
    top, bottom = np.asarray(upright)[:50].mean(), np.asarray(upright)[-50:].mean()
    assert top > 200 and bottom < 50  # white half rotated to the top


def test_greyscale_palette_and_cmyk_become_rgb() -> None:
    grey = Image.fromarray(skimage.data.camera())
    out = pp.preprocess(grey)
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[0], out[2])

    rgb = Image.fromarray(skimage.data.coffee())
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE)
    np.testing.assert_array_equal(pp.preprocess(pal), pp.preprocess(pal.convert("RGB")))
    assert np.abs(pp.preprocess(pal) - pp.preprocess(rgb)).mean() < 0.05  # palette, not garbage
    cmyk = rgb.convert("CMYK")
    np.testing.assert_array_equal(pp.preprocess(cmyk), pp.preprocess(cmyk.convert("RGB")))


def test_transparency_is_composited_onto_white() -> None:
    rgba = np.zeros((300, 300, 4), np.uint8)
    rgba[..., 0] = 255  # red, but only opaque in the left third
    rgba[:, :100, 3] = 255
    out = np.asarray(pp.load_rgb(Image.fromarray(rgba, "RGBA")))
    assert tuple(out[150, 50]) == (255, 0, 0)
    assert tuple(out[150, 250]) == (255, 255, 255)

    pal = Image.new("P", (300, 300), 0)
    pal.putpalette([0, 0, 0, 0, 255, 0])
    pal.paste(1, (0, 0, 150, 300))
    pal.info["transparency"] = 0  # index 0 (black) is transparent
    out = np.asarray(pp.load_rgb(pal))
    assert tuple(out[10, 10]) == (0, 255, 0) and tuple(out[10, 290]) == (255, 255, 255)

    la = Image.fromarray(np.stack([np.zeros((300, 300), np.uint8), np.zeros((300, 300), np.uint8)], -1), "LA")
    assert np.asarray(pp.load_rgb(la)).min() == 255


def test_sixteen_bit_greyscale_is_rescaled_not_clipped() -> None:
    ramp = np.tile(np.linspace(0, 65535, 300).astype(np.uint16), (300, 1))
    img = Image.fromarray(ramp)
    assert img.mode.startswith("I;16")
    out = np.asarray(pp.load_rgb(img))
    assert out[0, 0, 0] == 0 and out[0, -1, 0] == 255
    assert 120 <= out[0, 150, 0] <= 135


def test_normalize_supports_model_specific_statistics() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    got = pp.normalize(pixels, mean, std)
    ref = ((pixels / 255.0 - np.array(mean)) / np.array(std)).transpose(0, 3, 1, 2)
    assert got.shape == (2, 3, 8, 8) and got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pp.normalize(pixels[0]), pixels[0].transpose(2, 0, 1) / 127.5 - 1, atol=1e-6)
    with pytest.raises(TypeError):
        pp.normalize(pixels.astype(np.float32))


def _write_inputs(tmp_path: Path) -> list[Path]:
    paths = []
    for name in ["coffee", "chelsea", "astronaut"]:
        path = tmp_path / f"{name}.jpg"
        Image.fromarray(getattr(skimage.data, name)()).save(path, quality=90)
        paths.append(path)
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    paths.insert(1, bad)
    return paths


def test_preprocess_batch_skips_unreadable_files(tmp_path: Path) -> None:
    paths = _write_inputs(tmp_path)
    batch = pp.preprocess_batch(paths)
    assert batch.pixels.shape == (3, 3, 224, 224)
    assert batch.indices == [0, 2, 3]
    assert list(batch.errors) == [1] and batch.errors[1].startswith(("OSError", "UnidentifiedImageError"))
    np.testing.assert_array_equal(batch.pixels[1], pp.preprocess(paths[2]))
    with pytest.raises(OSError):
        pp.preprocess_batch(paths, skip_errors=False)
    empty = pp.preprocess_batch([paths[1]])
    assert empty.pixels.shape == (0, 3, 224, 224) and empty.indices == []


def test_preprocess_batch_runs_in_worker_processes(tmp_path: Path) -> None:
    paths = _write_inputs(tmp_path)
    chunks = [paths[:2], paths[2:]]
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(pp.preprocess_batch, chunks))
    merged = np.concatenate([r.pixels for r in results])
    np.testing.assert_array_equal(merged, pp.preprocess_batch(paths).pixels)


def test_raw_pixels_squashes_whole_image() -> None:
    img = Image.fromarray(skimage.data.coffee())
    vec = pp.raw_pixels(img)
    assert vec.shape == (150 * 150 * 3,) and vec.dtype == np.float32
    assert vec.min() >= 0.0 and vec.max() <= 1.0
    ref = np.asarray(img.resize((150, 150), Image.Resampling.BICUBIC), dtype=np.float32).reshape(-1) / 255
    np.testing.assert_allclose(vec, ref, atol=1e-7)
    assert pp.raw_pixels(img, size=32).shape == (32 * 32 * 3,)
