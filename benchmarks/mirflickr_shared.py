"""The shared MIRFLICKR subset as a benchmark corpus: one place for the paths, the labels, the tags and the
import + featurize step that the MIRFLICKR benchmarks (retrieval, linear probe, web data) all need.

A corpus built here is kept (pass the same folder again and only the missing models are featurized), so
reruns of any benchmark skip the expensive part. Photos are imported as source ``mirflickr`` with source
id ``N`` for ``imN.jpg``.
"""

from __future__ import annotations

import csv
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "mirflickr25k"
LITE_FUSED = "efficientnet-lite1+lite2"


def source_id(image_name: str) -> str:
    """``im123.jpg`` -> ``123``: the importer's source id for a MIRFLICKR file."""
    return image_name[2:-4]


def load_concepts() -> tuple[list[str], dict[str, np.ndarray]]:
    """Concept names and each photo's 0/1 vector, keyed by source id."""
    with open(DATA / "labels.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    concepts = [c for c in rows[0] if c != "image"]
    return concepts, {source_id(r["image"]): np.array([int(r[c]) for c in concepts]) for r in rows}


def load_tags() -> dict[str, list[str]]:
    """The real Flickr user tags of the tagged photos (3,840 of the 5,000), keyed by source id."""
    with open(DATA / "tags.csv", newline="", encoding="utf-8") as fh:
        return {source_id(r["image"]): r["tags"].split() for r in csv.DictReader(fh)}


def staged_with_tags(folder: Path) -> Path:
    """``folder`` laid out as the MIRFLICKR-25K distribution (``im<N>.jpg`` + ``meta/tags/tags<N>.txt``,
    one tag per line), so that the ordinary importer reads the real tags into ``photos.tags`` exactly
    as it would from the original download. Written once; later calls reuse it."""
    import shutil

    done = folder / ".complete"
    if done.exists():
        return folder
    (folder / "meta" / "tags").mkdir(parents=True, exist_ok=True)
    for image in sorted((DATA / "images").glob("im*.jpg")):
        shutil.copyfile(image, folder / image.name)
    for sid, tags in load_tags().items():
        (folder / "meta" / "tags" / f"tags{sid}.txt").write_text("\n".join(tags) + "\n", encoding="utf-8")
    done.write_text("ok\n", encoding="utf-8")
    return folder


def build_corpus(
    path: Path,
    models: Sequence[str] = ("efficientnet-lite0",),
    fuse: bool = False,
    source: Path | None = None,
) -> None:
    """Import the 5,000 photos (from ``source``, default the shared images without tags) into ``path``
    (created if missing) and featurize each of ``models`` (only photos still lacking them); ``fuse`` also
    writes the L2-normalised Lite1+Lite2 fusion."""
    from photocorpus.corpus import Corpus
    from photocorpus.features.fusion import fuse_feature_sets
    from photocorpus.features.pipeline import featurize_images
    from photocorpus.importing import import_folder

    started = time.perf_counter()
    with Corpus.open(path, create=True) as corpus:
        import_folder(corpus, source or DATA / "images")
        needed = list(models) + (["efficientnet-lite1", "efficientnet-lite2"] if fuse else [])
        for model in dict.fromkeys(needed):
            featurize_images(corpus, model)
        if fuse:
            fuse_feature_sets(corpus, ["efficientnet-lite1", "efficientnet-lite2"], LITE_FUSED)
    print(f"corpus ready at {path} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)


def photo_ids_by_source(corpus_path: Path) -> dict[str, int]:
    from photocorpus.corpus import Corpus

    with Corpus.open(corpus_path) as corpus:
        return {
            str(s): int(i)
            for s, i in corpus.conn.execute("SELECT source_id, id FROM photos WHERE source = 'mirflickr'")
        }
