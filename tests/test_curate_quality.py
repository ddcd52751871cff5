"""Quality flags on real photos and on real photos made bad in known ways."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from photocorpus.config import CurateSettings
from photocorpus.corpus import Corpus
from photocorpus.curate.quality import flags_for, measure, run_quality
from photocorpus.curate.variants import make_variant
from photocorpus.importing import import_folder


def _jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=92)
    return buf.getvalue()


def _clean_base(instany_images: Path) -> Image.Image:
    """A real photo that earns no flag at all: sharp, colourful, mid-bright, unframed."""
    for path in sorted(instany_images.glob("*.jpg"))[:200]:
        data = path.read_bytes()
        scores = measure(data, 300, 300)
        if (
            not flags_for(scores, CurateSettings())
            and scores["laplacian_var"] > 1000
            and scores["chroma"] > 12
        ):
            return Image.open(io.BytesIO(data)).convert("RGB")
    raise AssertionError("no clean photo among the first 200")


def test_each_flag_on_a_photo_made_bad_that_way(tmp_path: Path, instany_images: Path) -> None:
    base = _clean_base(instany_images)
    rng = np.random.default_rng(0)
    blank = Image.fromarray((128 + rng.normal(0, 1.5, (300, 300, 3))).clip(0, 255).astype(np.uint8))
    cases = {
        "clean": base,
        "too_small": base.resize((60, 60), Image.Resampling.LANCZOS),
        "extreme_aspect": base.crop((0, 100, 300, 180)),
        "near_uniform": blank,
        "too_dark": ImageEnhance.Brightness(base).enhance(0.12),
        "too_bright": Image.blend(base, Image.new("RGB", base.size, "white"), 0.85),
        "blurry": base.filter(ImageFilter.GaussianBlur(5)),
        "grayscale": base.convert("L"),
        "frame": Image.open(io.BytesIO(make_variant(_jpeg(base), "frame", 0, 0))),
    }
    src = tmp_path / "src" / "q"
    src.mkdir(parents=True)
    for name, im in cases.items():
        (src / f"{name}.jpg").write_bytes(_jpeg(im))
    with Corpus.create(tmp_path / "c") as corpus:
        import_folder(corpus, tmp_path / "src", workers=1)
        report = run_quality(corpus, workers=1)
        assert report.scored == len(cases) and report.failed == 0
        got = {
            r[0].split("/")[-1]: json.loads(r[1])
            for r in corpus.conn.execute(
                "SELECT p.source_id, c.quality_flags FROM photos p JOIN curation c ON c.photo_id = p.id"
            )
        }
        assert got.pop("clean") == []
        for name, flags in got.items():
            assert name in flags, (name, flags)
        # the flags earned by accident stay few: a bad photo is not flagged for everything
        assert all(len(flags) <= 3 for flags in got.values()), got
        assert "blurry" not in got["near_uniform"]  # blank is not "blurry"

        # thresholds change: flags are re-derived from stored scores, nothing is decoded again
        strict = CurateSettings(min_side_px=400)
        again = run_quality(corpus, strict, workers=1)
        small_before = sum("too_small" in flags for flags in got.values())  # "clean" had no flag
        assert again.scored == 0 and again.reflagged == len(cases) - small_before
        flags = [json.loads(r[0]) for r in corpus.conn.execute("SELECT quality_flags FROM curation")]
        assert all("too_small" in f for f in flags)


def test_a_file_broken_after_import_is_a_recorded_reason(tmp_path: Path, instany_images: Path) -> None:
    src = tmp_path / "src" / "nyc"
    src.mkdir(parents=True)
    paths = sorted(instany_images.glob("*.jpg"))[:5]
    for p in paths:
        (src / p.name).write_bytes(p.read_bytes())
    with Corpus.create(tmp_path / "c") as corpus:
        import_folder(corpus, tmp_path / "src", workers=1)
        rel = corpus.conn.execute("SELECT path FROM files ORDER BY photo_id LIMIT 1").fetchone()[0]
        corpus.abs_path(rel).write_bytes(b"\xff\xd8\xff\xe0garbage")  # disk damage after import
        report = run_quality(corpus, workers=1)
        assert report.scored == 4 and report.failed == 1 and report.failures == {"corrupt_image": 1}
        status = corpus.status_summary()
        assert status["failures_by_stage"]["quality"] == {"corrupt_image": 1}
        # a re-run does not retry the same broken bytes and does not stop on them
        assert run_quality(corpus, workers=1).scored == 0
