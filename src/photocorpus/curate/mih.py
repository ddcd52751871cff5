"""Near-duplicate search over 64-bit hashes by multi-index hashing (Norouzi, Punjani & Fleet, 2012).

Why not compare all pairs: a million photos are 5·10¹¹ pairs, which is what makes pairwise tools give
up at 60k-130k images. Multi-index hashing splits each code into ``m`` bands. If two codes differ in at
most ``t`` bits, then by the pigeonhole principle at least one band differs in at most ``t // m`` bits.
So for every band we look up each code's band value, plus the band values within ``t // m`` bit flips,
in a table of the other codes' band values, and only those candidates are verified with a full Hamming
distance. With ``m ≈ 64 / log2(N)`` bands the tables are about as large as the data, each probe finds
about one candidate, and time and memory grow about linearly with N. The search is exact: every pair
within ``t`` is found.

Written with numpy rather than taken from a library because the one library that has it (faiss'
``IndexBinaryMultiHash``) answers queries against an index, one query at a time, while a corpus needs
the self-join; here each band and flip mask is one vectorised pass over all codes, and identical codes
are collapsed first so that a bot posting one image ten thousand times costs nothing quadratic.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numba
import numpy as np

CODE_BITS = 64
_MAX_TABLE_BITS = 24  # bands up to this width use a dense count table (16 M entries); wider ones search


@dataclass(frozen=True, slots=True)
class HammingPairs:
    """Pairs ``(left[k], right[k])`` of row indices with ``left < right`` and their Hamming ``distance``."""

    left: np.ndarray  # int64
    right: np.ndarray  # int64
    distance: np.ndarray  # int8

    def __len__(self) -> int:
        return int(self.left.shape[0])


def as_signed(codes: np.ndarray) -> np.ndarray:
    """Codes as int64 (the same 64 bits), the form SQLite stores them in."""
    arr = np.asarray(codes)
    return arr if arr.dtype == np.int64 else arr.astype(np.uint64).view(np.int64)


def as_unsigned(codes: np.ndarray) -> np.ndarray:
    """Codes as uint64 (the same 64 bits), e.g. int64 values read back from SQLite."""
    arr = np.asarray(codes)
    return arr.view(np.uint64) if arr.dtype == np.int64 else arr.astype(np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise Hamming distance between two arrays of 64-bit codes."""
    return np.bitwise_count(as_unsigned(a) ^ as_unsigned(b)).astype(np.int8)


def choose_bands(n_codes: int, max_distance: int) -> int:
    """Number of bands: ``64 / log2(N)`` (tables about as large as the data), at most ``t + 1``."""
    if n_codes < 2:
        return 1
    m = round(CODE_BITS / max(1.0, math.log2(n_codes)))
    return int(min(max(m, 1), max_distance + 1, 16))


def _band_layout(m: int) -> list[tuple[int, int]]:
    """(shift, width) of ``m`` bands that cover all 64 bits, as even as possible."""
    base, extra = divmod(CODE_BITS, m)
    out, shift = [], 0
    for i in range(m):
        width = base + (1 if i < extra else 0)
        out.append((shift, width))
        shift += width
    return out


def _flip_masks(width: int, radius: int) -> np.ndarray:
    """All band values with at most ``radius`` bits set, as XOR masks (0 first)."""
    masks = [0]
    for r in range(1, radius + 1):
        for bits in itertools.combinations(range(width), r):
            masks.append(sum(1 << b for b in bits))
    return np.asarray(masks, dtype=np.int64)


@numba.njit(cache=True, inline="always")
def _popcount(x: np.uint64) -> int:  # pragma: no cover - compiled
    # SWAR popcount: numba exposes no intrinsic for it
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return int((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@numba.njit(cache=True)
def _band_join(
    codes: np.ndarray,
    keys: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    masks: np.ndarray,
    max_distance: int,
    radius: int,
    earlier_shifts: np.ndarray,
    earlier_masks: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Pairs (p, q), p < q, of positions in key-sorted order found through one band, each once.

    ``codes`` and ``keys`` are sorted by key, so a bucket is a contiguous run of positions. The mask
    loop is outside the row loop: for one mask, consecutive rows probe nearby buckets, so the count
    table and the codes are read almost sequentially instead of at random (that is most of the speed).
    A pair that an earlier band also finds is left to that band.
    """
    n = codes.shape[0]
    cap = 1024
    out_p = np.empty(cap, dtype=np.int64)
    out_q = np.empty(cap, dtype=np.int64)
    out_d = np.empty(cap, dtype=np.int8)
    size = 0
    for m in masks:
        for p in range(n):
            k = keys[p] ^ m
            c = counts[k]
            if c == 0:
                continue
            s = starts[k]
            if s + c <= p + 1:
                continue
            cp = codes[p]
            for q in range(max(s, p + 1), s + c):
                x = cp ^ codes[q]
                d = _popcount(x)
                if d > max_distance:
                    continue
                dup = False
                for b in range(earlier_shifts.shape[0]):
                    if _popcount((x >> earlier_shifts[b]) & earlier_masks[b]) <= radius:
                        dup = True
                        break
                if dup:
                    continue
                if size == cap:
                    cap *= 2
                    out_p = _grow(out_p, cap)
                    out_q = _grow(out_q, cap)
                    out_d = _grow(out_d, cap)
                out_p[size] = p
                out_q[size] = q
                out_d[size] = d
                size += 1
    return out_p[:size], out_q[:size], out_d[:size]


@numba.njit(cache=True)
def _grow(arr: np.ndarray, cap: int) -> np.ndarray:  # pragma: no cover - compiled
    out = np.empty(cap, dtype=arr.dtype)
    out[: arr.shape[0]] = arr
    return out


def _distinct_code_pairs(unique: np.ndarray, max_distance: int, bands: int) -> HammingPairs:
    """All pairs of distinct codes within ``max_distance``, each exactly once (indices into ``unique``)."""
    layout = _band_layout(bands)
    radius = max_distance // bands
    lefts, rights, dists = [], [], []
    for b, (shift, width) in enumerate(layout):
        keys = ((unique >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.int64)
        if width > _MAX_TABLE_BITS:
            if radius > 0:
                raise ValueError(f"{bands} bands are too few for distance {max_distance}; use more bands")
            # only exact band matches: compress the key space to the values present
            _values, keys = np.unique(keys, return_inverse=True)
            table = int(keys.max()) + 1
        else:
            table = 1 << width
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order].astype(np.int32 if table <= 1 << 31 else np.int64)
        counts = np.bincount(sorted_keys, minlength=table).astype(np.int32)
        starts = (np.cumsum(counts, dtype=np.int64) - counts).astype(np.int32)
        earlier = layout[:b]
        p, q, d = _band_join(
            unique[order],
            sorted_keys,
            starts,
            counts,
            _flip_masks(width, radius).astype(sorted_keys.dtype),
            max_distance,
            radius,
            np.asarray([s for s, _ in earlier], dtype=np.uint64),
            np.asarray([(1 << w) - 1 for _, w in earlier], dtype=np.uint64),
        )
        i, j = order[p], order[q]
        lefts.append(np.minimum(i, j))
        rights.append(np.maximum(i, j))
        dists.append(d)
    return HammingPairs(np.concatenate(lefts), np.concatenate(rights), np.concatenate(dists))


def hamming_pairs(codes: np.ndarray, max_distance: int, *, bands: int | None = None) -> HammingPairs:
    """Every pair of rows whose 64-bit codes differ in at most ``max_distance`` bits (exact).

    Identical codes are collapsed before the search; rows that share a code are returned as a chain
    (each linked to the first row with that code, distance 0), which is all that connected components
    need and keeps a million copies of one image linear. Pairs between distinct codes link the first
    row of each code.
    """
    if not 0 <= max_distance < CODE_BITS:
        raise ValueError(f"max_distance must be in 0..63, not {max_distance}")
    raw = as_unsigned(np.asarray(codes).reshape(-1))
    empty = np.zeros(0, dtype=np.int64)
    if raw.shape[0] < 2:
        return HammingPairs(empty, empty, np.zeros(0, dtype=np.int8))
    unique, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
    # exact copies: link each row to the first row holding its code
    same_left = first[inverse]
    copy_rows = np.flatnonzero(same_left != np.arange(raw.shape[0]))
    lefts = [same_left[copy_rows]]
    rights = [copy_rows]
    dists = [np.zeros(copy_rows.shape[0], dtype=np.int8)]
    if max_distance > 0 and unique.shape[0] > 1:
        m = bands or choose_bands(int(unique.shape[0]), max_distance)
        found = _distinct_code_pairs(unique, max_distance, m)
        a, b = first[found.left], first[found.right]
        lefts.append(np.minimum(a, b))
        rights.append(np.maximum(a, b))
        dists.append(found.distance)
    return HammingPairs(
        np.concatenate(lefts).astype(np.int64),
        np.concatenate(rights).astype(np.int64),
        np.concatenate(dists).astype(np.int8),
    )
