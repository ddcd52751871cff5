"""Folder layouts: InstaCities1M (``img_resized/<label>/<id>.jpg`` + ``captions/<label>/<id>.txt`` +
split lists) and ImageFolder (``<split>/<label>/<id>.jpg``), as torchvision and most trainers read.

Images are the stored bytes when they are JPEGs and no ``size`` is asked; otherwise they are decoded
and re-encoded in worker processes (scaled to cover ``size`` and centre-cropped, as InstaCities1M's
300x300). With ``embed_provenance`` each JPEG also carries every attribute the catalog knows of the
photo (source URL, owner, title, description, licence, tags, geo, dates, views) as XMP and a JPEG
comment (as im2gps's files did), spliced in without re-encoding (:mod:`photocorpus.provenance`, the
same stamp that fetch writes). Re-running an export over the same folder rewrites the same files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from photocorpus.catalog_table import SPLITS, CatalogPhoto, iter_catalog_photos
from photocorpus.corpus import Corpus
from photocorpus.corpus_files import ImageLocation
from photocorpus.corpus_paths import safe_component
from photocorpus.executors import LocalExecutor
from photocorpus.export.attribution import write_attribution
from photocorpus.export.rows import UniqueNames, image_jpeg, jpeg_from_file, write_bytes
from photocorpus.notebook import HtmlReport

BATCH = 256


@dataclass(slots=True)
class LayoutReport(HtmlReport):
    images: int = 0
    per_split: dict[str, int] = field(default_factory=dict)
    attributed: int = 0


def _encode(task: tuple[ImageLocation, str | None, tuple[int, int] | None]) -> bytes:
    """Worker: one image file's JPEG bytes."""
    return jpeg_from_file(*task)


def images_in_order(
    corpus: Corpus,
    photos: list[CatalogPhoto],
    size: tuple[int, int] | None,
    workers: int | None,
    *,
    provenance: bool = False,
) -> Iterator[tuple[CatalogPhoto, bytes]]:
    """(photo, JPEG bytes) in order, provenance stamped if asked; re-encoding runs in a process pool,
    plain copies in-process."""
    from photocorpus.catalog_provenance import load_provenance
    from photocorpus.provenance import Provenance, embed_provenance

    stamps: dict[int, Provenance] = {}
    for n, (photo, data) in enumerate(_jpegs_in_order(corpus, photos, size, workers)):
        if not provenance:
            yield photo, data
            continue
        if photo.photo_id not in stamps:  # read a batch ahead: a million stamps never sit in memory
            stamps = load_provenance(corpus, [p.photo_id for p in photos[n : n + BATCH]] + [photo.photo_id])
        stamp = stamps.get(photo.photo_id)
        yield photo, embed_provenance(data, stamp) if stamp is not None else data


def _jpegs_in_order(
    corpus: Corpus, photos: list[CatalogPhoto], size: tuple[int, int] | None, workers: int | None
) -> Iterator[tuple[CatalogPhoto, bytes]]:
    if size is None and all((p.format or "").upper() == "JPEG" for p in photos):
        for photo in photos:
            yield photo, image_jpeg(corpus, photo, None)
        return
    stored = [p for p in photos if p.path]
    locations = corpus.image_locations([p.path for p in stored])  # type: ignore[arg-type]
    tasks = [(loc, p.format, size) for p, loc in zip(stored, locations, strict=True)]
    batches = (tasks[i : i + BATCH] for i in range(0, len(tasks), BATCH))
    done = 0
    with LocalExecutor(workers or 0) as pool:
        for _batch, results in pool.map_batches(_encode, batches):
            for data in results:
                yield photos[done], data
                done += 1


def export_instacities(
    corpus: Corpus,
    out_dir: Path,
    *,
    splits: set[str] | None = None,
    photo_ids: list[int] | None = None,
    size: tuple[int, int] | None = None,
    workers: int | None = None,
    embed_provenance: bool = False,
    advance: Callable[[int], None] | None = None,
) -> LayoutReport:
    """``img_resized/<label>/<id>.jpg``, ``captions/<label>/<id>.txt`` (the cleaned caption), and
    ``train.txt``/``val.txt``/``test.txt`` listing ``<label>/<id>`` per line."""
    out_dir.mkdir(parents=True, exist_ok=True)
    photos = list(
        iter_catalog_photos(corpus, splits=splits, photo_ids=photo_ids, in_split_only=True, with_file=True)
    )
    names = UniqueNames()
    lists: dict[str, list[str]] = {s: [] for s in SPLITS}
    report = LayoutReport()
    credits: list[tuple[CatalogPhoto, str]] = []
    for photo, data in images_in_order(corpus, photos, size, workers, provenance=embed_provenance):
        label = safe_component(photo.label)
        stem = names.stem(label, photo)
        write_bytes(out_dir / "img_resized" / label / f"{stem}.jpg", data)
        write_bytes(out_dir / "captions" / label / f"{stem}.txt", (photo.caption + "\n").encode("utf-8"))
        lists[photo.split or "train"].append(f"{label}/{stem}")
        credits.append((photo, f"img_resized/{label}/{stem}.jpg"))
        report.images += 1
        if advance:
            advance(1)
    for split, entries in lists.items():
        (out_dir / f"{split}.txt").write_text("".join(f"{e}\n" for e in entries), encoding="utf-8")
    report.per_split = {s: len(v) for s, v in lists.items()}
    report.attributed = write_attribution(out_dir, credits)
    return report


def export_imagefolder(
    corpus: Corpus,
    out_dir: Path,
    *,
    splits: set[str] | None = None,
    photo_ids: list[int] | None = None,
    size: tuple[int, int] | None = None,
    workers: int | None = None,
    embed_provenance: bool = False,
    advance: Callable[[int], None] | None = None,
) -> LayoutReport:
    """``<split>/<label>/<id>.jpg`` for every photo in a split."""
    out_dir.mkdir(parents=True, exist_ok=True)
    photos = list(
        iter_catalog_photos(corpus, splits=splits, photo_ids=photo_ids, in_split_only=True, with_file=True)
    )
    names = UniqueNames()
    report = LayoutReport()
    credits: list[tuple[CatalogPhoto, str]] = []
    for photo, data in images_in_order(corpus, photos, size, workers, provenance=embed_provenance):
        split = photo.split or "train"
        folder = f"{split}/{safe_component(photo.label)}"
        rel = f"{folder}/{names.stem(folder, photo)}.jpg"
        write_bytes(out_dir / rel, data)
        credits.append((photo, rel))
        report.per_split[split] = report.per_split.get(split, 0) + 1
        report.images += 1
        if advance:
            advance(1)
    report.attributed = write_attribution(out_dir, credits)
    return report
