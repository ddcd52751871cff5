"""Perceptual hashes and multi-index hashing, checked against independent reference computations."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.fft import dctn

from photocorpus.curate.hashing import (
    decode_gray,
    dhash_batch,
    frame_box,
    hash_gray_images,
    hash_image_bytes,
    phash_batch,
)
from photocorpus.curate.mih import as_signed, as_unsigned, hamming_pairs
from photocorpus.curate.variants import make_variant
from tests.fixtures.image_server import behind_app2_segments


def _brute_force_code_pairs(codes: np.ndarray, t: int) -> set[tuple[int, int]]:
    """Every pair of distinct code values within t bits, by comparing all pairs (reference)."""
    u = np.unique(codes)
    x = u[:, None] ^ u[None, :]
    d = np.bitwise_count(x)
    i, j = np.nonzero(np.triu(d <= t, 1))
    return {(int(u[a]), int(u[b])) for a, b in zip(i, j, strict=True)}


def _mih_code_pairs(codes: np.ndarray, t: int) -> set[tuple[int, int]]:
    p = hamming_pairs(codes, t)
    assert np.all(p.left < p.right)
    assert np.array_equal(p.distance, np.bitwise_count(codes[p.left] ^ codes[p.right]).astype(np.int8))
    assert np.all(p.distance <= t)
    out = set()
    for a, b in zip(codes[p.left], codes[p.right], strict=True):
        if a != b:
            out.add((int(min(a, b)), int(max(a, b))))
    return out


def _planted(n: int, pairs: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)
    for k in range(pairs):
        flips = rng.choice(64, size=1 + k % 12, replace=False)
        codes[n - 1 - k] = codes[k] ^ np.bitwise_or.reduce(np.uint64(1) << flips.astype(np.uint64))
    return codes


@pytest.mark.parametrize("t", [0, 1, 3, 6, 8, 10, 12])
def test_mih_finds_exactly_the_pairs_all_pairs_comparison_finds(t: int) -> None:
    codes = _planted(2500, 400, seed=t)
    assert _mih_code_pairs(codes, t) == _brute_force_code_pairs(codes, t)


def test_mih_on_clustered_codes_and_exact_copies_stays_exact_and_linear() -> None:
    rng = np.random.default_rng(5)
    centres = rng.integers(0, 2**64 - 1, size=40, dtype=np.uint64, endpoint=True)
    # 3,000 codes in 40 tight clusters (what bots and blank images look like), a third exact copies
    noise = np.zeros(3000, dtype=np.uint64)
    for k in range(3000):
        for b in rng.choice(64, size=int(rng.integers(0, 6)), replace=False):
            noise[k] |= np.uint64(1) << np.uint64(b)
    codes = centres[rng.integers(0, 40, size=3000)] ^ noise
    codes[::3] = codes[1::3][: codes[::3].shape[0]]
    assert _mih_code_pairs(codes, 8) == _brute_force_code_pairs(codes, 8)
    pairs = hamming_pairs(codes, 8)
    # identical codes are chained to their first row, not paired with each other quadratically
    first = {}
    for row, c in enumerate(codes.tolist()):
        first.setdefault(c, row)
    zero = pairs.distance == 0
    assert zero.sum() == len(codes) - len(first)
    assert all(
        first[int(codes[r])] == int(left) for left, r in zip(pairs.left[zero], pairs.right[zero], strict=True)
    )


def test_mih_finds_planted_pairs_among_200k_random_codes() -> None:
    n, planted = 200_000, 2_000
    rng = np.random.default_rng(11)
    codes = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)
    a = rng.choice(n, size=2 * planted, replace=False)
    src, dst = a[:planted], a[planted:]
    for k in range(planted):
        flips = rng.choice(64, size=1 + k % 8, replace=False).astype(np.uint64)
        codes[dst[k]] = codes[src[k]] ^ np.bitwise_or.reduce(np.uint64(1) << flips)
    p = hamming_pairs(codes, 8)
    found = set(zip(p.left.tolist(), p.right.tolist(), strict=True))
    hits = sum((min(x, y), max(x, y)) in found for x, y in zip(src.tolist(), dst.tolist(), strict=True))
    assert hits == planted


def test_signed_storage_round_trips_every_bit() -> None:
    codes = np.array([0, 1, 2**63, 2**64 - 1, 0xDEADBEEFCAFEBABE], dtype=np.uint64)
    signed = as_signed(codes)
    assert signed.dtype == np.int64 and int(signed[3]) == -1
    assert np.array_equal(as_unsigned(signed), codes)
    with pytest.raises(ValueError, match=r"0\.\.63"):
        hamming_pairs(codes, 64)


def _reference_phash(gray32: np.ndarray) -> int:
    """pHash the textbook way: scipy's orthonormal 2-D DCT, 8x8 low block, median without DC."""
    low = dctn(gray32.astype(np.float64), norm="ortho")[:8, :8].reshape(-1)
    bits = low > np.median(low[1:])
    return int("".join("1" if b else "0" for b in bits), 2)


def _reference_dhash(gray9x8: np.ndarray) -> int:
    bits = [gray9x8[r, c + 1] > gray9x8[r, c] for r in range(8) for c in range(8)]
    return int("".join("1" if b else "0" for b in bits), 2)


def test_batched_phash_and_dhash_match_per_image_references(instany_images: Path) -> None:
    grays32, grays9 = [], []
    for path in sorted(instany_images.glob("*.jpg"))[:40]:
        gray = Image.open(path).convert("L")
        grays32.append(np.asarray(gray.resize((32, 32), Image.Resampling.BOX), dtype=np.float32))
        grays9.append(np.asarray(gray.resize((9, 8), Image.Resampling.BOX), dtype=np.int16))
    ours_p = phash_batch(np.stack(grays32))
    ours_d = dhash_batch(np.stack(grays9))
    assert [int(c) for c in ours_p] == [_reference_phash(g) for g in grays32]
    assert [int(c) for c in ours_d] == [_reference_dhash(g) for g in grays9]
    assert len(set(ours_p.tolist())) >= 38  # different photos, different hashes (the data has reposts)


def test_reduced_scale_decode_hashes_like_a_full_decode(instany_images: Path) -> None:
    """The fast path (1/4-scale DCT decode) must give (nearly) the hash of a full decode."""
    for path in sorted(instany_images.glob("*.jpg"))[100:130]:
        fast = hash_image_bytes(path.read_bytes())
        full = hash_gray_images([np.asarray(Image.open(path).convert("L"))])[0]
        assert bin(fast.phash ^ full.phash).count("1") <= 6


def test_frame_is_found_and_cropped_back_to_the_original(instany_images: Path) -> None:
    paths = sorted(instany_images.glob("*.jpg"))[200:260]
    unframed_frames = 0
    for index, path in enumerate(paths):
        data = path.read_bytes()
        original = hash_image_bytes(data)
        framed_bytes = make_variant(data, "frame", seed=3, index=index)
        framed = hash_image_bytes(framed_bytes)
        gray = decode_gray(framed_bytes)
        top, bottom, left, right = frame_box(gray)
        if original.frame == (0, 0, 0, 0):
            unframed_frames += 1
            # 10% of the width on each side of a 120%-wide image: 1/12 of the side, give or take
            assert abs(top / gray.shape[0] - 1 / 12) < 0.03 and top == bottom == left == right
            assert bin(framed.phash_deframed ^ original.phash).count("1") <= 10
        assert bin(framed.phash ^ original.phash).count("1") > 0
    assert unframed_frames >= 40


def test_no_frame_on_a_plain_photo_and_decode_of_other_formats(instany_images: Path) -> None:
    path = sorted(instany_images.glob("*.jpg"))[0]
    im = Image.open(path).convert("RGB")
    # a PNG with transparency decodes on white, and an EXIF-rotated JPEG decodes upright
    rgba = im.convert("RGBA")
    alpha = np.full((im.height, im.width), 255, dtype=np.uint8)
    alpha[:, : im.width // 2] = 0  # left half fully transparent
    rgba.putalpha(Image.fromarray(alpha))
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    gray = decode_gray(buf.getvalue())
    assert gray[:, : gray.shape[1] // 2 - 2].min() == 255
    assert frame_box(np.asarray(im.convert("L"))) == (0, 0, 0, 0)
    rotated = im.rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": undoes the 90 degree CCW rotation above
    buf = io.BytesIO()
    rotated.save(buf, "JPEG", quality=95, exif=exif)
    upright = hash_image_bytes(path.read_bytes())
    assert bin(hash_image_bytes(buf.getvalue()).phash ^ upright.phash).count("1") <= 4
    # the EXIF block behind 120 kB of APP2 segments (as a big ICC profile puts it) still counts
    behind = behind_app2_segments(buf.getvalue(), 120_000)
    assert behind.index(b"Exif\x00\x00") > 65_536
    assert bin(hash_image_bytes(behind).phash ^ upright.phash).count("1") <= 4
    with pytest.raises((OSError, ValueError)):
        decode_gray(b"not an image at all")
