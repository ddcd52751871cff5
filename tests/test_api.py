"""The Python API's one convention, as a notebook user meets it: corpus first (object or path),
settings as keywords (checked by name, applied for one call only), ``progress=`` and ``stop=``, a
report with ``.interrupted``; ``corpus.photos()`` as a DataFrame; HTML views that escape what strangers
wrote."""

from __future__ import annotations

import html
import re
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest

import photocorpus as pc
from photocorpus.learn.search import Hit
from photocorpus.progress import ProgressUpdate

PHOTOS = 12


@pytest.fixture(scope="module")
def photo_folder(instany_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 real photos in two labelled folders, plus one file that is not an image."""
    root = tmp_path_factory.mktemp("photos")
    for i, src in enumerate(sorted(instany_images.glob("*.jpg"))[:PHOTOS]):
        folder = root / ("harbour" if i % 2 else "bridge")
        folder.mkdir(exist_ok=True)
        shutil.copy(src, folder / src.name)
    (root / "bridge" / "broken.jpg").write_bytes(b"not a jpeg at all")
    return root


@pytest.fixture(scope="module")
def curated(photo_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A corpus of those photos, imported and curated through the API (by path: opened and closed)."""
    path = tmp_path_factory.mktemp("curated") / "corpus"
    pc.init(path).close()
    assert pc.import_folder(path, photo_folder, workers=1).imported == PHOTOS
    report = pc.curate_photos(path, workers=1, semantic=False)
    assert not report.interrupted and report.split is not None
    return path


def test_settings_keywords_reach_the_stage_for_one_call_only(photo_folder: Path, tmp_path: Path) -> None:
    corpus = pc.init(tmp_path / "c")
    toml = (corpus.root / "corpus.toml").read_text()
    report = pc.import_folder(corpus, photo_folder, workers=1, max_image_pixels=1000)
    assert report.imported == 0 and report.failures == {"decompression_bomb": PHOTOS, "not_an_image": 1}
    assert corpus.settings.import_.max_image_pixels == 178_956_970  # back to corpus.toml's value
    assert (corpus.root / "corpus.toml").read_text() == toml
    corpus.close()


def test_bad_arguments_name_the_parameter_before_any_work(tmp_path: Path) -> None:
    corpus = pc.init(tmp_path / "c")
    with pytest.raises(
        pc.ParameterError, match=r"unknown setting 'jpeg_qualty'; did you mean 'jpeg_quality'"
    ):
        pc.fetch_photos(corpus, jpeg_qualty=95)
    with pytest.raises(ValueError, match=r"dtype must be one of float16, float32, not 'float64'"):
        pc.featurize(corpus, dtype="float64")
    with pytest.raises(pc.ParameterError, match=r"resize_mode must be one of keep_ratio, squash"):
        pc.fetch_photos(corpus, resize_mode="stretch")
    with pytest.raises(pc.ParameterError, match=r"^size must look like 300x300"):
        pc.fetch_photos(corpus, size="300")
    with pytest.raises(pc.ParameterError, match=r"^preset must be one of im2gps, not 'yfcc'"):
        pc.fetch_photos(corpus, preset="yfcc")
    with pytest.raises(pc.ParameterError, match=r"frame_rule must be one of edge, im2gps, not 'inner'"):
        pc.fetch_photos(corpus, frame_rule="inner")
    # a rule over two settings (the preset's strict sizes, the keyword's default size) names both
    with pytest.raises(
        pc.ParameterError, match=r"^fetch_photos\(\): default_size_only and size_policy strict contradict"
    ):
        pc.fetch_photos(corpus, preset="im2gps", default_size_only=True)
    with pytest.raises(pc.ParameterError, match=r"^method must be one of tsne, umap, pca, not 'mds'"):
        pc.explore_photos(corpus, method="mds")
    with pytest.raises(pc.ParameterError, match=r"^steps must name some of dedup"):
        pc.curate_photos(corpus, steps=["dedupe"])
    with pytest.raises(pc.ParameterError, match=r"^stop must be a photocorpus.StopFlag"):
        pc.import_folder(corpus, tmp_path, stop=threading.Event())
    with pytest.raises(pc.ParameterError, match=r"^executor must be one of local, ray"):
        pc.featurize(corpus, executor="spark")
    with pytest.raises(pc.ParameterError, match=r"^raw_pixels_pca only applies to model='raw-pixels'"):
        pc.featurize(corpus, raw_pixels_pca=16)
    with pytest.raises(pc.ParameterError, match=r"^format must be one of instacities"):
        pc.export_photos(corpus, "csv", tmp_path / "out")
    assert corpus.count_photos() == 0
    corpus.close()


def test_progress_callback_and_stop_flag(photo_folder: Path, tmp_path: Path) -> None:
    updates: list[ProgressUpdate] = []
    stop = pc.StopFlag()
    stop.request()
    with pc.open(tmp_path / "c", create=True) as corpus:
        first = pc.import_folder(
            corpus, photo_folder, workers=1, batch_size=4, stop=stop, progress=updates.append
        )
        assert first.interrupted and first.imported == 4
        assert updates and {u.phase for u in updates} == {"import (plain)"}
        assert updates[-1].total == PHOTOS + 1 and updates[-1].done == 4
        assert [u.done for u in updates] == sorted(u.done for u in updates)
        rest = pc.import_folder(corpus, photo_folder, workers=1)  # the same call again resumes
        assert not rest.interrupted and rest.imported == PHOTOS - 4 and rest.skipped_existing == 4


def test_curate_steps_run_alone_and_report_each_step(curated: Path) -> None:
    report = pc.curate_photos(curated, steps="quality", workers=1)
    assert report.quality is not None and report.dedup is None and report.split is None
    assert report.quality.scored == 0  # already scored by the fixture's full run: resumable
    assert report.summary["files"] == PHOTOS


def test_photos_frame_is_the_parquet_export_and_filters(curated: Path, tmp_path: Path) -> None:
    with pc.open(curated) as corpus:
        frame = corpus.photos()
        exported = pc.export_photos(corpus, "parquet", tmp_path / "photos.parquet")
        assert exported.counts == {"rows": PHOTOS + 1}
        pd.testing.assert_frame_equal(frame, pd.read_parquet(tmp_path / "photos.parquet"))
        assert list(frame.columns[:4]) == ["photo_id", "source", "source_id", "label"]

        harbour = corpus.photos(label="harbour")
        assert len(harbour) == PHOTOS // 2 and set(harbour["label"]) == {"harbour"}
        train = corpus.photos(split="train")
        assert len(train) and set(train["split"]) == {"train"}
        assert len(corpus.photos(split=["train", "val", "test"])) == frame["split"].notna().sum()
        failed = corpus.photos(status={"fetch": "failed"})
        assert list(failed["source_id"]) == ["bridge/broken"]
        done = corpus.photos(status={"fetch": ["done"]}, label="bridge")
        assert len(done) == PHOTOS // 2 and "bridge/broken" not in set(done["source_id"])
        dupes, others = corpus.photos(duplicates=True), corpus.photos(duplicates=False)
        assert len(dupes) + len(others) == len(frame) and dupes["duplicate_of"].notna().all()
        with pytest.raises(pc.ParameterError, match=r"^split must be train, val or test"):
            corpus.photos(split="training")
        with pytest.raises(pc.ParameterError, match=r"^status\['fetch'\] must be one of pending, done"):
            corpus.photos(status={"fetch": "ok"})


def test_corpus_and_report_html_escape_what_strangers_wrote(photo_folder: Path, tmp_path: Path) -> None:
    hostile = "<script>alert(1)</script>"
    with pc.init(tmp_path / "c") as corpus:
        report = pc.import_folder(corpus, photo_folder / "harbour", label=hostile, workers=1)
        page = corpus._repr_html_()
        assert f"{PHOTOS // 2} photos" in page and html.escape(hostile) in page and hostile not in page
        shown = report._repr_html_()
        assert "ImportReport" in shown and re.search(r"imported</th><td[^>]*>6<", shown)
        assert "Interrupted" not in shown
        stop = pc.StopFlag()
        stop.request()
        stopped = pc.explore_photos(corpus, stop=stop)
        assert stopped.interrupted and "interrupted while computing features" in stopped.interruption
        assert "Interrupted: run the same call again to resume" in stopped._repr_html_()


def test_search_results_show_thumbnails_and_escaped_captions(instany_images: Path) -> None:
    from photocorpus.api_results import SearchResults

    image = next(instany_images.glob("*.jpg"))
    caption = 'sunset <img src=x onerror="alert(1)"> & "friends"'
    hits = [
        Hit(rank=1, score=0.9, photo_id=7, source_id="a<b", label="nyc", caption=caption, path=str(image),
            method="bridge:x"),
        Hit(rank=2, score=0.5, photo_id=8, source_id="b", label="nyc", caption="no file", path=None,
            method="bridge:x"),
    ]  # fmt: skip
    results = SearchResults(
        hits=hits, query="sunset", image=None, method="bridge:x", locations={7: str(image)}
    )
    page = results._repr_html_()
    assert page.count('<img src="data:image/jpeg;base64,') == 1 and "(no image)" in page
    assert html.escape(caption) in page and "<img src=x" not in page and 'alt="a&lt;b"' in page
    assert len(results) == 2 and results[0].photo_id == 7 and list(results.to_frame()["rank"]) == [1, 2]
