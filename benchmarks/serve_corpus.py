"""A 100,000-photo corpus for the `photocorpus serve` load benchmark, built once and cached.

    python benchmarks/serve_corpus.py [--work /work/bench/serve100k] [--photos 100000]

Why not import 100,000 photos: the shared data holds 8,007 real ones, and featurizing 100k images on
two cores takes an hour. So the real photos go through the real stages once, and the catalog is then
grown by copying what those stages wrote under new ids. Steps:

1. *base*: the 5,000 MIRFLICKR photos (folder = their first concept from ``labels.csv``, caption =
   their real Flickr tags from ``tags.csv`` where they have any) and the 3,007 InstaNY100K photos
   (folder ``newyork``, no caption) are imported with ``pc.import_folder``; then ``pc.featurize``
   (EfficientNet-Lite0: features, ImageNet top-5, ontology), ``pc.embed_captions`` (MiniLM),
   ``pc.train_semantic`` (so text search uses a trained model) and ``pc.curate_photos``.
2. *grow*: copy ``k`` of every base photo (source id ``<id>#copy<k>``, a new ``label_seq`` after its
   label's last one, so its image path is the one ``Corpus.plan_image_path`` would pick) with every
   per-photo row the stages wrote (labels, stage statuses, EXIF, ImageNet labels, categories, curation
   hashes and quality scores; not the duplicate groups or splits, which curate recomputes), and its
   stored file as a *hard link* to the original's (``files.path`` is unique: every photo owns its
   file; the sha256 is the same, so dedup links the copies as exact duplicates). Feature sets get the
   original's rows appended under the copies' ids. Then curate runs once on the whole catalog
   (hashes and quality scores are current, so it only groups, flags and splits).
3. The grown corpus is built under ``<work>/building`` and renamed to ``<work>/pristine`` when
   ``photocorpus verify`` passes, so a killed build never leaves a half corpus in the cache.

:func:`fresh_copy` gives each benchmark run its own corpus: the catalog is copied, images, features
and models are hard-linked (no stage writes a stored file in place: every write is a new file and a
rename), so a run takes seconds and never changes the cache.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = ROOT.parent / "shared" / "data"
MIRFLICKR = DATA / "mirflickr25k"
INSTANY = DATA / "instany100k" / "images"
DEFAULT_WORK = Path("/work/bench/serve100k")
IMAGE_SET = "efficientnet-lite0"
SEMANTIC = "semantic-minilm"
# Per-photo tables copied verbatim for each copy (photo_id remapped). files, curation and photos have
# their own rules below; tables a build does not fill are copied anyway (zero rows, no cost).
COPIED_TABLES = (
    "photo_labels",
    "stages",
    "fetch_log",
    "enrichment",
    "photo_exif",
    "photo_social",
    "photo_contexts",
    "photo_comments",
    "image_labels",
    "image_categories",
    "model_predictions",
)
# curation columns a copy keeps (hashes and scores of the same bytes); the rest is curate's to decide
CURATION_KEPT = (
    "hashed_sha256",
    "phash",
    "dhash",
    "phash_deframed",
    "dhash_deframed",
    "frame",
    "hash_degenerate",
    "quality_sha256",
    "quality_scores",
    "quality_flags",
    "caption_clean",
    "language",
    "language_score",
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def stage_sources(staging: Path) -> tuple[Path, Path]:
    """Copy the shared photos into import-ready folders: MIRFLICKR by first concept with tag captions.

    Copies (not links): the shared files belong to someone else, and hard links to them need
    ownership on a protected_hardlinks system. 8,007 small JPEGs are ~60 MB.
    """
    mir, ny = staging / "mirflickr", staging / "instany" / "newyork"
    if (staging / "done").exists():
        return mir, ny.parent
    shutil.rmtree(staging, ignore_errors=True)
    with open(MIRFLICKR / "labels.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    names = rows[0][1:]
    with open(MIRFLICKR / "tags.csv", newline="", encoding="utf-8") as fh:
        tags = {r[0]: r[1] for r in csv.reader(fh) if r and r[0] != "image"}
    for r in rows[1:]:
        concepts = [n for n, v in zip(names, r[1:], strict=True) if v == "1"]
        folder = mir / (concepts[0] if concepts else "unlabelled")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(MIRFLICKR / "images" / r[0], folder / r[0])
        if r[0] in tags:
            (folder / f"{Path(r[0]).stem}.txt").write_text(tags[r[0]], encoding="utf-8")
    ny.mkdir(parents=True, exist_ok=True)
    for src in sorted(INSTANY.glob("*.jpg")):
        shutil.copyfile(src, ny / src.name)
    (staging / "done").write_text("ok")
    return mir, ny.parent


def build_base(path: Path, staging: Path) -> None:
    """The real photos through the real stages (each resumes, so a killed build continues)."""
    import photocorpus as pc
    from photocorpus import feature_store

    mir, ny = stage_sources(staging)
    corpus = pc.open(path, create=True)
    with corpus:
        t = time.perf_counter()
        pc.import_folder(corpus, mir)
        pc.import_folder(corpus, ny)
        log(f"imported {corpus.count_photos():,} photos ({time.perf_counter() - t:.0f} s)")
        t = time.perf_counter()
        pc.featurize(corpus, IMAGE_SET)
        log(f"featurized ({time.perf_counter() - t:.0f} s)")
        if not feature_store.has_feature_set(corpus, "text.minilm"):
            pc.embed_captions(corpus, "minilm")
        if not corpus.conn.execute("SELECT 1 FROM models WHERE name = ?", (SEMANTIC,)).fetchone():
            t = time.perf_counter()
            pc.train_semantic(corpus, "minilm", name=SEMANTIC)
            log(f"trained {SEMANTIC} ({time.perf_counter() - t:.0f} s)")
        t = time.perf_counter()
        pc.curate_photos(corpus)
        log(f"curated the base ({time.perf_counter() - t:.0f} s)")


def _columns(conn: object, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]  # type: ignore[attr-defined]


def grow(path: Path, target: int) -> int:
    """Copy the base photos under new ids until the catalog holds ``target`` photos (see the module
    docstring); returns the number of copies made. One transaction per copy round, files linked
    before their rows commit; a build killed midway is thrown away whole (see :func:`build`)."""
    import photocorpus as pc
    from photocorpus import corpus_paths, feature_store
    from photocorpus.stable_split import split_position

    corpus = pc.open(path)
    made = 0
    with corpus:
        conn = corpus.conn
        per_dir = corpus.settings.layout.files_per_dir
        base = conn.execute(
            "SELECT p.id, p.source, p.source_id, p.primary_label, p.label_seq, f.path FROM photos p "
            "JOIN files f ON f.photo_id = p.id ORDER BY p.id"
        ).fetchall()
        if corpus.count_photos() != len(base):
            raise SystemExit(f"{path} is not a freshly built base (photos without files, or grown already)")
        stride = int(base[-1][0])  # copy k of photo i gets id i + k * stride
        photo_cols = [c for c in _columns(conn, "photos") if c not in ("id", "source_id", "label_seq")]
        sets = [fs["name"] for fs in corpus.feature_sets()]
        vectors = {name: feature_store.open_feature_set(corpus, name) for name in sets}
        round_no = 0
        while corpus.count_photos() < target:
            round_no += 1
            todo = base[: target - corpus.count_photos()]
            next_seq = dict(conn.execute("SELECT label, next_seq FROM label_counters"))
            mapping: list[tuple[int, int, str, int, str]] = []  # old id, new id, source id, seq, path
            for pid, _source, sid, label, _seq, old_path in todo:
                new_sid = f"{sid}#copy{round_no}"
                new_seq = next_seq[label]
                next_seq[label] = new_seq + 1
                fmt = Path(old_path).suffix.lstrip(".").upper().replace("JPG", "JPEG")
                new_path = corpus_paths.image_relpath(label, new_seq, new_sid, fmt, per_dir)
                target_file = corpus.abs_path(new_path)
                target_file.parent.mkdir(parents=True, exist_ok=True)
                if not target_file.exists():
                    os.link(corpus.abs_path(old_path), target_file)
                mapping.append((pid, pid + round_no * stride, new_sid, new_seq, new_path))
            with corpus.transaction():
                conn.execute("CREATE TEMP TABLE IF NOT EXISTS idmap (old INTEGER, new INTEGER PRIMARY KEY)")
                conn.execute("DELETE FROM idmap")
                conn.executemany("INSERT INTO idmap VALUES (?, ?)", [(m[0], m[1]) for m in mapping])
                cols = ", ".join(photo_cols)
                conn.executemany(
                    f"INSERT INTO photos (id, source_id, label_seq, {cols}) "
                    f"SELECT ?, ?, ?, {cols} FROM photos WHERE id = ?",
                    [(new, new_sid, seq, old) for old, new, new_sid, seq, _ in mapping],
                )
                conn.executemany(
                    "INSERT INTO label_counters (label, next_seq) VALUES (?, ?) "
                    "ON CONFLICT (label) DO UPDATE SET next_seq = excluded.next_seq",
                    list(next_seq.items()),
                )
                file_cols = [c for c in _columns(conn, "files") if c not in ("photo_id", "path")]
                fc = ", ".join(file_cols)
                conn.executemany(
                    f"INSERT INTO files (photo_id, path, {fc}) "
                    f"SELECT ?, ?, {fc} FROM files WHERE photo_id = ?",
                    [(new, new_path, old) for old, new, _, _, new_path in mapping],
                )
                for table in COPIED_TABLES:
                    rest = [c for c in _columns(conn, table) if c != "photo_id"]
                    rc = ", ".join(f"t.{c}" for c in rest)
                    conn.execute(
                        f"INSERT INTO {table} (photo_id, {', '.join(rest)}) "
                        f"SELECT m.new, {rc} FROM {table} t JOIN idmap m ON m.old = t.photo_id"
                    )
                kept = ", ".join(CURATION_KEPT)
                conn.execute(
                    f"INSERT INTO curation (photo_id, {kept}, updated_at) "
                    f"SELECT m.new, {', '.join('c.' + k for k in CURATION_KEPT)}, c.updated_at "
                    "FROM curation c JOIN idmap m ON m.old = c.photo_id"
                )
                sources = dict(
                    conn.execute("SELECT id, source FROM photos WHERE id IN (SELECT new FROM idmap)")
                )
                conn.executemany(
                    "UPDATE curation SET split_position = ? WHERE photo_id = ?",
                    [(split_position(sources[new], new_sid), new) for _, new, new_sid, _, _ in mapping],
                )
            for name, fs in vectors.items():
                have = set(fs.photo_ids().tolist())
                old_ids = np.array([m[0] for m in mapping if m[0] in have], dtype=np.int64)
                if not len(old_ids):
                    continue
                rows = np.asarray(fs.matrix()[fs.rows_for(old_ids.tolist())])
                new_ids = old_ids + round_no * stride
                feature_store.append_rows(corpus, name, new_ids, rows, model_id=fs.model_id, dtype=fs.dtype)
            made += len(mapping)
            log(f"copy round {round_no}: {corpus.count_photos():,} photos")
        for name in sets:
            feature_store.compact(corpus, name)
    return made


def build(work: Path, photos: int) -> Path:
    """The cached corpus at ``<work>/pristine`` (built when missing); see the module docstring."""
    import photocorpus as pc

    pristine = work / "pristine"
    if pristine.exists():
        with pc.open(pristine) as corpus:
            have = corpus.count_photos()
        if have == photos:
            return pristine
        raise SystemExit(f"{pristine} holds {have:,} photos, not {photos:,}: remove it to rebuild")
    base, building = work / "base", work / "building"
    build_base(base, work / "staging")
    shutil.rmtree(building, ignore_errors=True)
    log("copying the base")
    _copy_corpus(base, building, link_files=False)
    t = time.perf_counter()
    grow(building, photos)
    log(f"grown to {photos:,} photos ({time.perf_counter() - t:.0f} s)")
    t = time.perf_counter()
    with pc.open(building) as corpus:
        pc.curate_photos(corpus)
        log(f"curated {photos:,} photos ({time.perf_counter() - t:.0f} s)")
        report = corpus.verify()
        if not report.ok:
            raise SystemExit(f"verify failed on the grown corpus: {report}")
        corpus.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    building.rename(pristine)
    log(f"ready: {pristine}")
    return pristine


def _copy_corpus(src: Path, dst: Path, *, link_files: bool) -> None:
    """Copy a closed corpus: the catalog (after a checkpoint) for real, the rest linked or copied."""
    import sqlite3

    with sqlite3.connect(src / "catalog.sqlite") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    copy = os.link if link_files else shutil.copy2
    shutil.copytree(src, dst, copy_function=copy, ignore=shutil.ignore_patterns("catalog.sqlite*"))
    shutil.copy2(src / "catalog.sqlite", dst / "catalog.sqlite")


def fresh_copy(pristine: Path, run_dir: Path) -> Path:
    """A throwaway corpus for one benchmark run: real catalog copy, every other file hard-linked."""
    shutil.rmtree(run_dir, ignore_errors=True)
    _copy_corpus(pristine, run_dir, link_files=True)
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="cache folder (outside the repo)")
    parser.add_argument("--photos", type=int, default=100_000)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(build(args.work, args.photos))


if __name__ == "__main__":
    main()
