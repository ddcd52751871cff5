"""``photocorpus curate`` / ``dedup --delete`` / ``status`` as a user runs them, on real photos."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from PIL import Image

from photocorpus.curate.variants import make_variant
from tests.conftest import run_cli


def _rows(corpus: Path) -> dict[str, dict]:
    conn = sqlite3.connect(corpus / "catalog.sqlite")
    conn.row_factory = sqlite3.Row
    try:
        return {
            r["source_id"]: dict(r)
            for r in conn.execute(
                "SELECT p.id, p.source_id, c.duplicate_of, c.dup_group, c.dup_method, c.split, c.exclusion, "
                "f.path FROM photos p LEFT JOIN curation c ON c.photo_id = p.id "
                "LEFT JOIN files f ON f.photo_id = p.id"
            )
        }
    finally:
        conn.close()


def test_curate_groups_reposts_picks_representatives_and_status_reports_ratios(
    tmp_path: Path, instany_images: Path
) -> None:
    src = tmp_path / "src" / "nyc"
    src.mkdir(parents=True)
    photos = sorted(instany_images.glob("*.jpg"))[500:540]
    for p in photos:
        (src / p.name).write_bytes(p.read_bytes())
    a, b, c = photos[0], photos[1], photos[2]
    # two exact copies of a, uploaded at different times: the earliest upload represents them
    (src / "copy-late.jpg").write_bytes(a.read_bytes())
    (src / "copy-late.json").write_text(json.dumps({"uploaded_at": "2017-03-02T10:00:00Z"}))
    (src / "copy-early.jpg").write_bytes(a.read_bytes())
    (src / "copy-early.json").write_text(json.dumps({"uploaded_at": "2017-03-01T10:00:00Z"}))
    (src / f"{a.stem}.json").write_text(json.dumps({"uploaded_at": "2017-03-05T10:00:00Z"}))
    # b reposted twice as large: the largest resolution represents the group
    Image.open(b).resize((600, 600), Image.Resampling.LANCZOS).save(src / "b-large.jpg", quality=92)
    # c reposted with a frame and re-encoded at q40
    (src / "c-framed.jpg").write_bytes(make_variant(c.read_bytes(), "frame", 1, 0))
    (src / "c-q40.jpg").write_bytes(make_variant(c.read_bytes(), "reencode", 1, 1))
    corpus = tmp_path / "corpus"
    run_cli("init", str(corpus))
    run_cli("import", str(tmp_path / "src"), "--corpus", str(corpus), "--quiet")

    out = run_cli("curate", "--corpus", str(corpus), "--quiet").stdout
    assert "dedup:" in out and "split nyc:" in out and "unique:" in out
    rows = _rows(corpus)
    sid = {p.stem: f"nyc/{p.stem}" for p in photos}
    early, late, orig_a = rows["nyc/copy-early"], rows["nyc/copy-late"], rows[sid[a.stem]]
    assert early["duplicate_of"] is None and early["dup_group"] == early["id"]
    assert late["duplicate_of"] == early["id"] and orig_a["duplicate_of"] == early["id"]
    assert late["dup_method"] == "exact"
    large, orig_b = rows["nyc/b-large"], rows[sid[b.stem]]
    assert large["duplicate_of"] is None and orig_b["duplicate_of"] == large["id"]
    assert orig_b["dup_method"] == "phash"
    framed, q40, orig_c = rows["nyc/c-framed"], rows["nyc/c-q40"], rows[sid[c.stem]]
    # c-framed is the largest (a frame adds pixels), so it represents; all three share one group
    assert framed["dup_group"] == q40["dup_group"] == orig_c["dup_group"] is not None
    for r in rows.values():
        assert (r["split"] is None) == (r["exclusion"] is not None)
        if r["duplicate_of"] is not None:
            assert r["exclusion"] == "duplicate"

    status = json.loads(run_cli("status", "--json", "--corpus", str(corpus)).stdout)["curate"]
    files = len(photos) + 5
    assert status["files"] == files and status["hashed"] == files
    assert status["duplicates"] == 2 + 1 + 2 + _extra_duplicates(rows, photos)
    assert status["unique_ratio"] == round((files - status["duplicates"]) / files, 4)
    assert status["unique_ratio_sha256"] == round((files - 2) / files, 4)
    assert 0 < status["unique_ratio_seed_size_weight"] <= 1
    assert sum(status["splits"].values()) == files - sum(status["excluded"].values())
    table = run_cli("status", "--corpus", str(corpus), env={"COLUMNS": "200"}).stdout
    assert "dedup" in table and "quality" in table
    # The plain table shows the three unique ratios, each as the JSON has it.
    for key, value in (
        ("InstaCities1M's key", status["unique_ratio_seed_size_weight"]),
        ("sha256", status["unique_ratio_sha256"]),
        ("near duplicates", status["unique_ratio"]),
    ):
        line = next(line for line in table.splitlines() if key in line)
        assert f"{value:.2%}" in line, line

    # --delete removes the duplicates' files, crash-safely, and the catalog stays consistent
    out = run_cli("dedup", "--delete", "--corpus", str(corpus), "--quiet").stdout
    assert f"{status['duplicates']} duplicate files deleted" in out
    after = _rows(corpus)
    for key, r in after.items():
        assert (r["path"] is None) == (r["duplicate_of"] is not None), key
        assert r["dup_group"] == rows[key]["dup_group"]
    assert "integrity_check: ok" in run_cli("verify", "--corpus", str(corpus)).stdout
    assert len(list((corpus / "images").rglob("*.jpg"))) == files - status["duplicates"]


def _extra_duplicates(rows: dict[str, dict], photos: list[Path]) -> int:
    """Duplicates the real photos already had among themselves (reposts in InstaNY100K)."""
    planted = {"nyc/copy-late", "nyc/copy-early", "nyc/b-large", "nyc/c-framed", "nyc/c-q40"}
    planted |= {f"nyc/{p.stem}" for p in photos[:3]}
    return sum(1 for k, r in rows.items() if k not in planted and r["duplicate_of"] is not None)
