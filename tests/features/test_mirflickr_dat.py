"""MIRFLICKR-1M s16a .dat reader/writer: exact layout, strict validation, atomic writes."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from photocorpus.features.mirflickr_dat import DatFormatError, dat_size, iter_dat_dir, read_dat, write_dat


def _vectors(seed: int = 0, fc7_dim: int = 4096, fc8_dim: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    fc7 = rng.standard_normal(fc7_dim).astype(np.float32)
    fc8 = rng.standard_normal(fc8_dim).astype(np.float32)
    # values that a lossy or text-based path would mangle
    fc7[:6] = [0.0, -0.0, np.inf, -np.inf, np.float32(1e-45), np.finfo(np.float32).max]
    fc8[0] = np.nan
    return fc7, fc8


def _raw_file(path: Path, fc8_header: int, fc8: np.ndarray, fc7_header: int, fc7: np.ndarray) -> Path:
    path.write_bytes(
        struct.pack("=q", fc8_header)
        + fc8.astype("=f4").tobytes()
        + struct.pack("=q", fc7_header)
        + fc7.astype("=f4").tobytes()
    )
    return path


def test_round_trip_is_bit_exact(tmp_path: Path) -> None:
    fc7, fc8 = _vectors()
    path = tmp_path / "10" / "103169.dat"
    write_dat(path, fc7, fc8)
    got7, got8 = read_dat(path)
    assert got7.dtype == np.float32 and got8.dtype == np.float32
    assert got7.tobytes() == fc7.tobytes()
    assert got8.tobytes() == fc8.tobytes()


def test_on_disk_layout_matches_reference_reader(tmp_path: Path) -> None:
    """Decode the written file the way the MIRFLICKR reference reader does: fc8 block first."""
    fc7, fc8 = _vectors(1)
    path = tmp_path / "x.dat"
    write_dat(path, fc7, fc8)
    data = path.read_bytes()
    assert len(data) == 8 + 4 * 1000 + 8 + 4 * 4096 == 20_400
    (n8,) = struct.unpack("=q", data[:8])
    v8 = np.frombuffer(data[8 : 8 + 4 * n8], dtype="=f4")
    (n7,) = struct.unpack("=q", data[8 + 4 * n8 : 16 + 4 * n8])
    v7 = np.frombuffer(data[16 + 4 * n8 :], dtype="=f4")
    assert (n8, n7) == (1000, 4096)
    assert v8.tobytes() == fc8.tobytes() and v7.tobytes() == fc7.tobytes()
    assert dat_size(4096, 1000) == 20_400


def test_reads_file_written_by_independent_writer(tmp_path: Path) -> None:
    fc7, fc8 = _vectors(2, fc7_dim=7, fc8_dim=3)
    path = _raw_file(tmp_path / "y.dat", 3, fc8, 7, fc7)
    got7, got8 = read_dat(path)
    assert got7.tobytes() == fc7.tobytes() and got8.tobytes() == fc8.tobytes()
    got7[0] = 123.0  # returned arrays are writable copies, not views of a read-only buffer


@pytest.mark.parametrize("fc8_header", [0, -1, 1_000_001, 2**40])
def test_rejects_implausible_fc8_header(tmp_path: Path, fc8_header: int) -> None:
    fc7, fc8 = _vectors(3)
    path = _raw_file(tmp_path / "bad.dat", fc8_header, fc8, 4096, fc7)
    with pytest.raises(DatFormatError, match=r"fc8 length.*1\.\.1000000") as info:
        read_dat(path)
    assert str(path) in str(info.value)


def test_rejects_byte_swapped_header(tmp_path: Path) -> None:
    fc7, fc8 = _vectors(4)
    swapped = struct.unpack("<q", struct.pack(">q", 1000))[0]
    path = _raw_file(tmp_path / "swapped.dat", swapped, fc8, 4096, fc7)
    with pytest.raises(DatFormatError, match="byte order"):
        read_dat(path)


def test_rejects_bad_fc7_header(tmp_path: Path) -> None:
    fc7, fc8 = _vectors(5)
    path = _raw_file(tmp_path / "bad7.dat", 1000, fc8, -4096, fc7)
    with pytest.raises(DatFormatError, match="fc7 length"):
        read_dat(path)


def test_rejects_truncated_and_oversized_files(tmp_path: Path) -> None:
    fc7, fc8 = _vectors(6)
    good = tmp_path / "good.dat"
    write_dat(good, fc7, fc8)
    data = good.read_bytes()

    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(data[:-4])
    with pytest.raises(DatFormatError, match=r"20396 bytes.*exactly 20400 bytes \(truncated\)"):
        read_dat(truncated)

    oversized = tmp_path / "oversized.dat"
    oversized.write_bytes(data + b"\0\0\0\0")
    with pytest.raises(DatFormatError, match=r"exactly 20400 bytes \(trailing data\)"):
        read_dat(oversized)

    cut_in_fc8 = tmp_path / "cut.dat"
    cut_in_fc8.write_bytes(data[:100])
    with pytest.raises(DatFormatError, match="before the fc7 header"):
        read_dat(cut_in_fc8)

    empty = tmp_path / "empty.dat"
    empty.write_bytes(b"")
    with pytest.raises(DatFormatError, match="0 bytes"):
        read_dat(empty)


def test_write_validates_and_casts(tmp_path: Path) -> None:
    with pytest.raises(DatFormatError, match="1-D"):
        write_dat(tmp_path / "a.dat", np.zeros((2, 2), np.float32), np.zeros(3, np.float32))
    with pytest.raises(DatFormatError, match="fc8 has 0 values"):
        write_dat(tmp_path / "a.dat", np.zeros(3, np.float32), np.zeros(0, np.float32))
    with pytest.raises(DatFormatError, match="floating point"):
        write_dat(tmp_path / "a.dat", np.zeros(3, np.int32), np.zeros(3, np.float32))
    assert not (tmp_path / "a.dat").exists()

    fc7 = np.linspace(-1, 1, 5)  # float64 in, float32 on disk
    write_dat(tmp_path / "b.dat", fc7, np.ones(2))
    got7, got8 = read_dat(tmp_path / "b.dat")
    np.testing.assert_array_equal(got7, fc7.astype(np.float32))
    np.testing.assert_array_equal(got8, np.ones(2, np.float32))


def test_write_replaces_atomically_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "z.dat"
    write_dat(path, np.zeros(4, np.float32), np.zeros(2, np.float32))
    write_dat(path, np.ones(8, np.float32), np.ones(3, np.float32))
    got7, got8 = read_dat(path)
    assert got7.shape == (8,) and got8.shape == (3,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["z.dat"]


def test_iter_dat_dir_yields_relative_ids_in_numeric_order(tmp_path: Path) -> None:
    for rel in ["10/103169", "2/25", "2/3", "0/1"]:
        write_dat(tmp_path / f"{rel}.dat", np.zeros(2, np.float32), np.zeros(2, np.float32))
    (tmp_path / "2" / "notes.txt").write_text("not a feature file")
    (tmp_path / "2" / ".7.dat.123.tmp").write_bytes(b"partial")
    (tmp_path / "2" / ".hidden.dat").write_bytes(b"partial")
    (tmp_path / "stray.dat").write_bytes(b"top-level files are not chunks")

    items = list(iter_dat_dir(tmp_path))
    assert [rel for rel, _ in items] == ["0/1", "2/3", "2/25", "10/103169"]
    for rel, path in items:
        assert path == tmp_path / f"{rel}.dat"
        read_dat(path)

    with pytest.raises(NotADirectoryError):
        list(iter_dat_dir(tmp_path / "missing"))
