"""The explore stage end to end on real photos: CLI, report files, escaping, caches, PNGs, errors.

The corpus (a few hundred real InstaNY100K photos, with EfficientNet-Lite0 features computed here
through onnxruntime and tiny raw-pixel vectors) is built once per session by :func:`explore_corpus`,
which the browser tests share.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photocorpus import feature_store
from photocorpus.corpus import Corpus
from photocorpus.explore.errors import ExploreError
from photocorpus.explore.stage import explore, stable_sample
from tests.conftest import run_cli

PHOTOS = 240
INJECTED = {
    "caption": '<img src=x onerror="window.__pwned=1;alert(1)"> <script>window.__pwned=2</script> #x',
    "title": '"><svg onload=alert(3)>',
    "owner": "<b onmouseover=alert(4)>owner</b>",
    "tags": ["</script><script>alert(5)</script>", "pizza"],
}
MARKERS = (
    "<img src=x",
    "<script>window.__pwned",
    "<svg onload",
    "<b onmouseover",
    "</script><script>alert(5)",
)

_BUILT: dict[str, Path] = {}


def explore_corpus(base: Path, images: Path) -> Path:
    """A corpus of real photos, two labels, injected captions on every 10th photo, features stored.

    Built once per test session (the browser tests reuse it).
    """
    if "corpus" in _BUILT:
        return _BUILT["corpus"]
    from photocorpus.backbones.onnx_runtime import OnnxImageModel, ensure_efficientnet_lite0_onnx
    from photocorpus.image_preprocess import preprocess_batch, raw_pixels
    from photocorpus.importing import import_folder

    src = base / "src"
    for i, path in enumerate(sorted(images.glob("*.jpg"))[:PHOTOS]):
        folder = src / ("nyc" if i % 3 else "brooklyn")
        folder.mkdir(parents=True, exist_ok=True)
        os.symlink(path, folder / path.name)
        if i % 10 == 0:
            (folder / f"{path.stem}.json").write_text(json.dumps(INJECTED), encoding="utf-8")
        elif i % 4 == 0:
            (folder / f"{path.stem}.json").write_text(
                json.dumps({"caption": f"photo {i} #nyc", "tags": ["bridge" if i % 8 else "coffee"]})
            )
    root = base / "corpus"
    corpus = Corpus.create(root)
    with corpus:
        # the photos are symlinks into the shared data, outside src: import refuses those unless asked
        report = import_folder(corpus, src, workers=1, follow_symlinks=True)
        assert report.imported == PHOTOS
        rows = corpus.conn.execute("SELECT photo_id, path FROM files ORDER BY photo_id").fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        paths = [str(corpus.abs_path(r[1])) for r in rows]
        model = OnnxImageModel(ensure_efficientnet_lite0_onnx())
        feats, logits = [], []
        for start in range(0, len(paths), 48):
            batch = preprocess_batch(paths[start : start + 48], skip_errors=False)
            f, lg = model.run(batch.pixels)
            feats.append(f)
            logits.append(lg)
        feature_store.append_rows(
            corpus, "efficientnet-lite0", ids, np.concatenate(feats), model_id="efficientnet-lite0"
        )
        feature_store.append_rows(
            corpus, "efficientnet-lite0.logits", ids, np.concatenate(logits), model_id="efficientnet-lite0"
        )
        raw = np.stack([raw_pixels(p, 24) for p in paths])
        feature_store.append_rows(corpus, "raw-pixels", ids, raw, model_id="raw-pixels-24")
    _BUILT["corpus"] = root
    return root


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory, instany_images: Path) -> Path:
    return explore_corpus(tmp_path_factory.mktemp("explore"), instany_images)


def test_cli_builds_a_report_with_both_maps_clusters_thumbnails_and_pngs(corpus_dir: Path) -> None:
    out = run_cli("explore", "-C", str(corpus_dir), "--png", "--json", "--quiet")
    result = json.loads(out.stdout)
    report = corpus_dir / "reports" / "efficientnet-lite0"
    assert Path(result["index_html"]) == report / "index.html"
    assert result["photos"] == PHOTOS and result["compared_with"] == "raw-pixels"
    assert [m["feature_set"] for m in result["maps"]] == ["efficientnet-lite0", "raw-pixels"]
    cnn, raw = result["maps"]
    # CNN features keep neighbourhoods of what they describe better than raw pixels do.
    assert 0.8 < cnn["trustworthiness"] <= 1.0 and cnn["trustworthiness"] > raw["trustworthiness"]

    with Corpus.open(corpus_dir) as corpus:
        sets = {e["name"]: e for e in corpus.feature_sets()}
        assert sets["efficientnet-lite0.map-tsne"]["rows"] == PHOTOS
        assert sets["efficientnet-lite0.map-tsne"]["dims"] == 2
        runs = corpus.conn.execute(
            "SELECT run, feature_set, k, photos FROM cluster_runs ORDER BY run"
        ).fetchall()
        assert {r[1] for r in runs} == {"efficientnet-lite0", "raw-pixels"}
        for run, _fs, k, photos in runs:
            assert photos == PHOTOS and 4 <= k <= 30
            assert (
                corpus.conn.execute("SELECT COUNT(*) FROM clusters WHERE run = ?", (run,)).fetchone()[0]
                == PHOTOS
            )

    thumbs = sorted((report / "thumbs").rglob("*.jpg"))
    assert len(thumbs) == PHOTOS
    with Image.open(thumbs[0]) as im:
        assert max(im.size) == 160
    text_chunks = sorted((report / "data").glob("text-*.js"))
    assert len(text_chunks) == 1
    points = (report / "data" / "points.js").read_text()
    assert points.startswith("window.PHOTOCORPUS_POINTS=")
    payload = json.loads(points[len("window.PHOTOCORPUS_POINTS=") :].rstrip().rstrip(";"))
    assert payload["n"] == PHOTOS and len(payload["maps"]) == 2
    assert {"cluster:efficientnet-lite0", "cluster:raw-pixels", "label", "ontology", "imagenet"} <= {
        f["key"] for f in payload["facets"]
    }
    labels = next(f for f in payload["facets"] if f["key"] == "label")
    assert sorted(labels["categories"]) == ["brooklyn", "nyc"] and sum(labels["counts"]) == PHOTOS
    for name in ("map.png", "clusters.png"):
        with Image.open(report / name) as im:
            assert im.format == "PNG" and im.width > 600 and im.height > 300
            assert len(im.convert("RGB").getcolors(2**24) or []) > 50  # a picture, not a blank canvas


def test_user_text_is_escaped_everywhere(corpus_dir: Path) -> None:
    report = corpus_dir / "reports" / "efficientnet-lite0"
    if not report.exists():
        run_cli("explore", "-C", str(corpus_dir), "--quiet")
    html = (report / "index.html").read_text()
    data = "".join(p.read_text() for p in (report / "data").glob("*.js"))
    for chunk in (report / "data").glob("text-*.js"):  # gzipped JSON in base64
        packed = chunk.read_text().split('"')[1]
        data += gzip.decompress(base64.b64decode(packed)).decode("utf-8")
    for marker in MARKERS:
        assert marker not in html and marker not in data, marker
    # The text is there, escaped: as HTML entities in the page, as \u003c in the data.
    assert "\\u003cimg src=x onerror=" in data
    assert "&lt;/script&gt;&lt;script&gt;alert(5)&lt;/script&gt;" in html  # a tag in a cluster summary


def test_second_run_reuses_the_map_clusters_and_thumbnails(corpus_dir: Path) -> None:
    with Corpus.open(corpus_dir) as corpus:
        first = explore(corpus, name="reuse-a")
        thumb = next((corpus_dir / "reports" / ".thumbs").rglob("*.jpg"))
        inode = thumb.stat().st_ino
        second = explore(corpus, name="reuse-b")
    assert all(m["reused"] for m in second.maps) and all(c["reused"] for c in second.clusters)
    assert second.thumbnails == {"made": 0, "cached": PHOTOS, "failed": 0}
    assert first.clusters[0]["k"] == second.clusters[0]["k"]
    assert thumb.stat().st_ino == inode
    linked = (
        corpus_dir / "reports" / "reuse-b" / "thumbs" / thumb.parent.name / f"{thumb.name.split('-')[0]}.jpg"
    )
    assert linked.stat().st_ino == inode  # hard link: the report costs no second copy


def test_options_sample_method_k_and_color_by(corpus_dir: Path) -> None:
    with Corpus.open(corpus_dir) as corpus:
        result = explore(corpus, method="pca", k=5, sample=100, color_by="label", compare_raw=False)
        assert result.photos == 100 and result.compared_with is None
        assert result.clusters[0]["k"] == 5 and result.maps[0]["method"] == "pca"
        assert result.index_html.parent.name == "efficientnet-lite0-pca-sample100"
        points = (result.index_html.parent / "data" / "points.js").read_text()
        assert '"defaultFacet":"label"' in points
        ids = np.unique(feature_store.open_feature_set(corpus, "efficientnet-lite0").photo_ids())
        np.testing.assert_array_equal(stable_sample(ids, 100, 0), stable_sample(ids, 100, 0))
        assert set(stable_sample(ids, 100, 0)) <= set(ids.tolist())
        # A bigger corpus keeps most of an earlier sample (the sample is a hash order, not a draw).
        grown = np.concatenate([ids, np.arange(10_000, 10_060)])
        kept = len(set(stable_sample(ids, 100, 0)) & set(stable_sample(grown, 100, 0).tolist()))
        assert kept >= 70


def test_clear_errors(corpus_dir: Path, tmp_path: Path) -> None:
    with Corpus.open(corpus_dir) as corpus:
        with pytest.raises(ExploreError, match=r"no split data yet.*photocorpus curate"):
            explore(corpus, color_by="split", name="err")
        with pytest.raises(ExploreError, match="unknown method"):
            explore(corpus, method="mds")
    proc = run_cli("explore", "-C", str(corpus_dir), "--features", "nope", check=False)
    assert (
        proc.returncode == 2
        and "no feature set 'nope'" in proc.stderr
        and "efficientnet-lite0" in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    empty = tmp_path / "empty"
    run_cli("init", str(empty))
    proc = run_cli("explore", "-C", str(empty), check=False)
    assert proc.returncode == 2 and "no stored images" in proc.stderr
    shutil.rmtree(empty)
