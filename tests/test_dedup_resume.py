"""An interrupted dedup resumes where it stopped and ends exactly where an uninterrupted one does."""

from __future__ import annotations

from pathlib import Path

import pytest

from photocorpus.config import CurateSettings
from photocorpus.corpus import Corpus
from photocorpus.curate import dedup
from photocorpus.curate.variants import make_variant
from photocorpus.importing import import_folder
from photocorpus.interrupt import StopFlag


def _curation(corpus: Corpus) -> list[tuple]:
    return corpus.conn.execute(
        "SELECT photo_id, hashed_sha256, phash, dhash, phash_deframed, dhash_deframed, frame, "
        "hash_degenerate, dup_group, duplicate_of, dup_method FROM curation ORDER BY photo_id"
    ).fetchall()


def test_stop_after_a_batch_then_resume_equals_one_run(
    tmp_path: Path, instany_images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src" / "nyc"
    src.mkdir(parents=True)
    for i, p in enumerate(sorted(instany_images.glob("*.jpg"))[700:730]):
        (src / p.name).write_bytes(p.read_bytes())
        if i % 5 == 0:
            (src / f"{p.stem}-q40.jpg").write_bytes(make_variant(p.read_bytes(), "reencode", 0, i))
    monkeypatch.setattr(dedup, "HASH_BATCH", 8)
    settings = CurateSettings(semantic=False)
    dumps = []
    for name, interrupt in (("whole", False), ("resumed", True)):
        with Corpus.create(tmp_path / name) as corpus:
            import_folder(corpus, tmp_path / "src", workers=1)
            if interrupt:
                stop = StopFlag()

                def advance(n: int, stop: StopFlag = stop) -> None:
                    stop.requested = True  # as Ctrl-C during the first batch

                first = dedup.run_dedup(corpus, settings, workers=1, stop=stop, advance=advance)
                assert first.interrupted and first.hashed == 8
                assert corpus.conn.execute("SELECT COUNT(duplicate_of) FROM curation").fetchone()[0] == 0
                second = dedup.run_dedup(corpus, settings, workers=1)
                assert second.hashed == 36 - 8 and not second.interrupted
            else:
                dedup.run_dedup(corpus, settings, workers=1)
            dumps.append(_curation(corpus))
            assert dedup.run_dedup(corpus, settings, workers=1).hashed == 0  # nothing left to do
    assert dumps[0] == dumps[1]
    assert sum(1 for row in dumps[0] if row[9] is not None) >= 6  # the six q40 reposts at least
