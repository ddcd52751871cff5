"""WebDataset tar shards: one sample per photo with ``jpg`` (image), ``txt`` (clean caption) and
``json`` (all metadata), written with the ``webdataset`` library's ``ShardWriter`` so that any
WebDataset reader streams them. Shards are ``<split>-000000.tar``... (or ``shard-…`` when splits are
mixed), ``samples_per_shard`` samples each. Sample keys are ``<source>_<id>`` made safe (no dots:
WebDataset splits keys from extensions at the first dot).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from photocorpus.catalog_table import SPLITS, CatalogPhoto, iter_catalog_photos
from photocorpus.corpus import Corpus
from photocorpus.corpus_paths import safe_component
from photocorpus.export.attribution import write_attribution
from photocorpus.export.training_folders import images_in_order
from photocorpus.notebook import HtmlReport

SAMPLES_PER_SHARD = 10_000


@dataclass(slots=True)
class WebDatasetReport(HtmlReport):
    samples: int = 0
    shards: list[str] = field(default_factory=list)
    attributed: int = 0


def sample_key(photo: CatalogPhoto) -> str:
    """A WebDataset key: safe, unique per photo, without dots."""
    return safe_component(f"{photo.source}_{photo.source_id}").replace(".", "_") + f"_{photo.photo_id}"


def export_webdataset(
    corpus: Corpus,
    out_dir: Path,
    *,
    splits: set[str] | None = None,
    photo_ids: list[int] | None = None,
    size: tuple[int, int] | None = None,
    samples_per_shard: int = SAMPLES_PER_SHARD,
    workers: int | None = None,
    embed_provenance: bool = False,
    advance: Callable[[int], None] | None = None,
) -> WebDatasetReport:
    """One set of shards per split (``train-000000.tar``...), every photo that is in a split."""
    import webdataset as wds

    out_dir.mkdir(parents=True, exist_ok=True)
    photos = list(
        iter_catalog_photos(corpus, splits=splits, photo_ids=photo_ids, in_split_only=True, with_file=True)
    )
    report = WebDatasetReport()
    credits: list[tuple[CatalogPhoto, str]] = []
    for split in SPLITS:
        chosen = [p for p in photos if p.split == split]
        if not chosen:
            continue
        pattern = str(out_dir / f"{split}-%06d.tar")
        with wds.ShardWriter(pattern, maxcount=samples_per_shard, verbose=0) as sink:
            for photo, data in images_in_order(corpus, chosen, size, workers, provenance=embed_provenance):
                key = sample_key(photo)
                sink.write({"__key__": key, "jpg": data, "txt": photo.caption, "json": photo.metadata()})
                credits.append((photo, f"{key}.jpg"))
                report.samples += 1
                if advance:
                    advance(1)
        report.shards.extend(sorted(p.name for p in out_dir.glob(f"{split}-*.tar")))
    report.attributed = write_attribution(out_dir, credits)
    return report
