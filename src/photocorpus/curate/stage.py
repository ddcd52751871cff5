"""The curate stage in one call: dedup -> caption text -> bots -> quality -> split.

:func:`curate` is what ``photocorpus curate`` (and ``dedup``, ``quality``, ``split``, each one step)
and ``pc.curate_photos`` run. The order is the data flow: bots are found from clean captions and
duplicate groups, and splits leave out duplicates, bots and photos with a dropping quality flag, so
each step reads what the steps before it wrote.

Each step resumes on its own. The first interrupted step ends the run and the report says so: the
steps after it would work on a half-done catalog, and a re-run redoes only what is left anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from photocorpus.curate.bots import BotReport, run_bots
from photocorpus.curate.captions import CaptionReport, pending_captions, run_captions
from photocorpus.curate.dedup import (
    DedupReport,
    delete_duplicate_files,
    find_duplicates,
    hash_photos,
    pending_hash_count,
)
from photocorpus.curate.quality import QualityReport, pending_quality, run_quality
from photocorpus.curate.splits import SplitReport, run_splits
from photocorpus.curate_summary import curate_summary
from photocorpus.errors import ParameterError
from photocorpus.notebook import HtmlReport
from photocorpus.progress import Progress, progress_phase

if TYPE_CHECKING:
    from photocorpus.config import CurateSettings
    from photocorpus.corpus import Corpus
    from photocorpus.interrupt import StopFlag

STEPS = ("dedup", "captions", "bots", "quality", "split")


@dataclass
class CurateReport(HtmlReport):
    """What each step of one curate run did (``None``: the step was not asked for, or not reached)."""

    dedup: DedupReport | None = None
    captions: CaptionReport | None = None
    bots: BotReport | None = None
    quality: QualityReport | None = None
    split: SplitReport | None = None
    summary: dict[str, Any] = field(default_factory=dict)  # the catalog's curate numbers afterwards
    interrupted: bool = False


def check_steps(steps: Sequence[str]) -> tuple[str, ...]:
    """``steps`` in curate's own order, each checked (a typo must not silently skip a step)."""
    if isinstance(steps, str):
        steps = [steps]
    unknown = [s for s in steps if s not in STEPS]
    if unknown or not steps:
        raise ParameterError(f"steps must name some of {', '.join(STEPS)}, not {unknown or list(steps)!r}")
    return tuple(s for s in STEPS if s in steps)


def curate(
    corpus: Corpus,
    settings: CurateSettings | None = None,
    *,
    steps: Sequence[str] = STEPS,
    languages: list[str] | None = None,
    delete_duplicates: bool = False,
    redo: bool = False,
    workers: int | None = None,
    stop: StopFlag | None = None,
    progress: Progress = False,
) -> CurateReport:
    """Run ``steps`` (default: all) in curate's order; see the module docstring.

    ``delete_duplicates`` removes the stored files of duplicates after dedup (never by default);
    ``languages`` keeps only captions in these languages in the splits; ``redo`` recomputes hashes,
    captions and quality scores for every photo, not only new ones.
    """
    settings = settings or corpus.settings.curate
    wanted = check_steps(steps)
    report = CurateReport()
    if "dedup" in wanted:
        corpus.resolve_dangling_intents()
        total = pending_hash_count(corpus, redo)
        with progress_phase(progress, "hash", total) as advance:
            report.dedup = hash_photos(corpus, workers=workers, redo=redo, stop=stop, advance=advance)
        if report.dedup.interrupted:
            report.interrupted = True
            return report
        with progress_phase(progress, "verify semantic pairs", None, unit="pairs") as advance:
            find_duplicates(corpus, settings, report=report.dedup, advance=advance, workers=workers)
        if delete_duplicates:
            delete_duplicate_files(corpus, report.dedup)
    if "captions" in wanted:
        total = len(pending_captions(corpus, redo))
        with progress_phase(progress, "captions", total) as advance:
            report.captions = run_captions(corpus, redo=redo, stop=stop, advance=advance)
        if report.captions.interrupted:
            report.interrupted = True
            return report
    if "bots" in wanted:
        report.bots = run_bots(corpus, settings)
    if "quality" in wanted:
        total = len(pending_quality(corpus, redo))
        with progress_phase(progress, "quality", total) as advance:
            report.quality = run_quality(
                corpus, settings, workers=workers, redo=redo, stop=stop, advance=advance
            )
        if report.quality.interrupted:
            report.interrupted = True
            return report
    if "split" in wanted:
        report.split = run_splits(corpus, settings, languages=languages)
    report.summary = curate_summary(corpus.conn)
    return report
