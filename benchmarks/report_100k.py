"""The report at scale: size on disk and time to interactive in headless Chromium, and the real 3k build.

Part 1, 100,000 points (default): synthetic CNN-like features (benchmarks/tsne.py's generator) mapped
by our t-SNE path and clustered by faiss k-means; every point shows one of 1,000 real InstaNY100K
thumbnails (reused), with a synthetic caption of realistic length. The report is written with
photocorpus.explore.report.write_report, then opened from file:// in Debian's headless Chromium
(software WebGL), three times: time to interactive = navigation start to the page's ready flag (all
points drawn, hover and legend wired). Then one hover (thumbnail loaded) and one legend toggle are
timed.

Part 2, ``--instany``: the 3,007 real InstaNY100K photos imported into a corpus with their
EfficientNet-Lite0 features computed by the featurize stage (timed apart, as the acceptance says
"features already computed"), then ``explore()`` (map, clusters, thumbnails, report) is timed and the
page opened the same way.

    python benchmarks/report_100k.py                    # part 1
    python benchmarks/report_100k.py --instany          # part 2
    python benchmarks/report_100k.py --work /tmp/x      # where corpora and reports go (kept, reused)
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tsne import synthetic_features

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "instany100k" / "images"
WORDS = [
    "new",
    "york",
    "city",
    "night",
    "light",
    "love",
    "sunday",
    "brunch",
    "coffee",
    "friends",
    "street",
    "art",
    "bridge",
    "brooklyn",
    "manhattan",
    "summer",
    "view",
    "skyline",
    "park",
    "walk",
    "pizza",
    "dinner",
    "happy",
    "weekend",
    "photo",
    "style",
    "fashion",
    "dog",
    "life",
    "sky",
    "sunset",
]


def import_photos(root: Path, count: int) -> Any:
    from photocorpus.corpus import Corpus
    from photocorpus.importing import import_folder

    if (root / "catalog.sqlite").exists():
        return Corpus.open(root)
    src = root.parent / f"{root.name}-src" / "nyc"
    shutil.rmtree(src.parent, ignore_errors=True)
    src.mkdir(parents=True)
    for path in sorted(SHARED.glob("*.jpg"))[:count]:
        os.symlink(path, src / path.name)
    corpus = Corpus.create(root)
    import_folder(corpus, src.parent, follow_symlinks=True)  # the links lead into the shared data
    return corpus


def du_bytes(folder: Path) -> tuple[int, int]:
    """Bytes and files under ``folder``, hard-linked thumbnails counted as if copied."""
    total = files = 0
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            total += os.stat(os.path.join(dirpath, name)).st_size
            files += 1
    return total, files


def open_in_chromium(index: Path, loads: int = 3) -> dict[str, float]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from tests.test_report_browser import start_chromium

    ready: list[float] = []
    out: dict[str, float] = {}
    driver = start_chromium()
    try:
        for _ in range(loads):
            driver.get("about:blank")
            t = time.perf_counter()
            driver.get(index.as_uri())
            while not driver.execute_script("return !!(window.photocorpusReport && photocorpusReport.ready)"):
                if time.perf_counter() - t > 120:
                    raise RuntimeError("report not ready after 120 s")
                time.sleep(0.02)
            ready.append(driver.execute_script("return photocorpusReport.readyMs") / 1000)
            out["wall_to_ready_s"] = time.perf_counter() - t
        out["ready_s_median"] = statistics.median(ready)
        out["ready_s_max"] = max(ready)
        driver.execute_script("window.scrollTo(0, 0)")
        n = driver.execute_script("return photocorpusReport.n")
        for i in range(0, n, max(1, n // 200)):
            pos = driver.execute_script("return photocorpusReport.screenPosition(0, arguments[0])", i)
            if pos and pos[1] < driver.execute_script("return window.innerHeight") - 10:
                t = time.perf_counter()
                action = ActionBuilder(driver)
                action.pointer_action.move_to_location(round(pos[0]), round(pos[1]))
                action.perform()
                deadline = time.perf_counter() + 5
                loaded = False
                while time.perf_counter() < deadline:
                    loaded = driver.execute_script(
                        "var im = document.getElementById('pc-tt-img');"
                        "return photocorpusReport.hovered != null && im.complete && im.naturalWidth > 0"
                    )
                    if loaded:
                        break
                    time.sleep(0.01)
                if loaded:
                    out["hover_to_thumbnail_s"] = time.perf_counter() - t
                    break
        visible = driver.execute_script("return photocorpusReport.visibleCount()")
        t = time.perf_counter()
        driver.find_elements("css selector", "#pc-legend li .pc-legend-toggle")[0].click()
        while driver.execute_script("return photocorpusReport.visibleCount()") == visible:
            time.sleep(0.005)
        out["legend_toggle_s"] = time.perf_counter() - t
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        out["console_errors"] = len(severe)
    finally:
        driver.quit()
    return out


def part_100k(work: Path, points: int, method: str) -> None:
    from photocorpus.explore.cluster import kmeans
    from photocorpus.explore.embed2d import MapParams, embed_2d, reduce_pca
    from photocorpus.explore.report import Gallery, MapView, PointText, ReportData, make_facet, write_report
    from photocorpus.explore.thumbs import ensure_thumbnails

    corpus = import_photos(work / "corpus-1k", 1000)
    real = np.array([r[0] for r in corpus.conn.execute("SELECT photo_id FROM files ORDER BY photo_id")])
    paths = {r[0]: r[1] for r in corpus.conn.execute("SELECT photo_id, path FROM files")}
    thumbs = ensure_thumbnails(corpus, real)
    print(f"1,000 real photos, thumbnails: {thumbs.made} made, {thumbs.cached} cached")

    cache = work / f"map-{points}-{method}.npz"
    x, groups = synthetic_features(points)
    if cache.exists():
        with np.load(cache) as data:
            coords, labels, distances = data["coords"], data["labels"], data["distances"]
        print(f"map and clusters from {cache}")
    else:
        t = time.perf_counter()
        z = reduce_pca(x, 50, seed=0)
        coords = embed_2d(z, MapParams(method=method, seed=0))
        map_s = time.perf_counter() - t
        t = time.perf_counter()
        clusters = kmeans(z, 20, seed=0)
        labels, distances = clusters.labels, clusters.distances
        print(
            f"{points:,}-point map (PCA + {method}): {map_s:.1f} s; "
            f"k-means k=20: {time.perf_counter() - t:.1f} s"
        )
        np.savez(cache, coords=coords, labels=labels, distances=distances)

    n = points
    rng = np.random.default_rng(1)
    ids = np.arange(1, n + 1, dtype=np.int64)
    thumb_ids = real[np.arange(n) % len(real)]
    captions = [
        " ".join(rng.choice(WORDS, size=int(rng.integers(6, 30))))
        + " #"
        + " #".join(rng.choice(WORDS, size=3))
        for _ in range(n)
    ]
    report_dir = work / f"report-{n}"
    rel = os.path.relpath(corpus.root, report_dir)
    links = [f"{rel}/{paths[int(t)]}" for t in thumb_ids]
    cities = np.array(["nyc", "london", "sydney", "chicago", "miami", "toronto", "singapore", "melbourne"])
    classes = np.array([f"class {i}" for i in range(60)])
    facets = [
        make_facet("cluster:synthetic", "cluster (k = 20)", [f"cluster {c}" for c in labels]),
        make_facet("label", "label", cities[groups % len(cities)].tolist()),
        make_facet("imagenet", "top ImageNet label", classes[groups].tolist()),
    ]
    from photocorpus.explore.cluster import summarize_clusters

    data = ReportData(
        title=f"synthetic {n:,} points, 1,000 real thumbnails",
        photo_ids=ids,
        thumb_ids=thumb_ids,
        maps=[MapView("synthetic", f"synthetic CNN-like features, {method}", coords)],
        facets=facets,
        default_facet="cluster:synthetic",
        text=PointText(
            captions=captions, titles=[""] * n, owners=[f"user{i % 5000}" for i in range(n)], links=links
        ),
        thumb_paths={int(t): p for t, p in thumbs.paths.items()},
        tooltip_facets=["label", "cluster:synthetic", "imagenet"],
        galleries=[Gallery("cluster:synthetic", "Clusters", summarize_clusters(labels, distances, ids))],
        stats=[("Points", f"{n:,}"), ("Distinct thumbnails", "1,000")],
        photo_text={int(i): (captions[k], links[k]) for k, i in enumerate(ids)},
    )
    t = time.perf_counter()
    index = write_report(data, report_dir)
    write_s = time.perf_counter() - t
    size, files = du_bytes(report_dir)
    data_size, _ = du_bytes(report_dir / "data")
    print(
        f"report written in {write_s:.1f} s: {size / 1e6:.1f} MB in {files:,} files "
        f"(data/ {data_size / 1e6:.1f} MB)"
    )
    result = open_in_chromium(index)
    print_browser(result)


def print_browser(result: dict[str, float]) -> None:
    print(
        f"headless Chromium: interactive after {result['ready_s_median']:.2f} s (median of 3, max "
        f"{result['ready_s_max']:.2f} s); "
        f"hover -> thumbnail {result.get('hover_to_thumbnail_s', float('nan')):.2f} s; "
        f"legend toggle {result['legend_toggle_s']:.2f} s; console errors {result['console_errors']}"
    )


def part_instany(work: Path) -> None:
    from photocorpus.explore.stage import explore
    from photocorpus.features.pipeline import featurize_images

    corpus = import_photos(work / "corpus-instany", 3007)
    t = time.perf_counter()
    report = featurize_images(corpus, "efficientnet-lite0")
    print(f"featurize: {report.computed} photos in {time.perf_counter() - t:.1f} s (done before explore)")
    for name in ("efficientnet-lite0.map-tsne",):
        from photocorpus.explore.embed2d import _replace_set

        _replace_set(corpus, name)  # time the whole build, not a cached map
    with corpus.transaction() as conn:
        conn.execute("DELETE FROM cluster_runs")
    shutil.rmtree(corpus.root / "reports", ignore_errors=True)
    t = time.perf_counter()
    result = explore(corpus, png=True)
    print(f"explore on {result.photos:,} photos: {time.perf_counter() - t:.1f} s; steps: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in result.steps.items()))  # fmt: skip
    print(f"k = {result.clusters[0]['k']}, trustworthiness {result.maps[0]['trustworthiness']:.3f}")
    size, files = du_bytes(result.index_html.parent)
    print(f"report: {size / 1e6:.1f} MB in {files:,} files")
    print_browser(open_in_chromium(result.index_html))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--instany", action="store_true", help="part 2: the 3,007 real photos")
    parser.add_argument("--map", default="tsne", choices=["tsne", "pca"], help="part 1's layout (pca: quick)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "photocorpus-bench-report")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    if args.instany:
        part_instany(args.work)
    else:
        part_100k(args.work, args.points, args.map)
    print(f"load at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
