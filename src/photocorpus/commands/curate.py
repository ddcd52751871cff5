"""Curate commands: curate (all steps), dedup, quality, split and export: each parses its options,
calls :func:`photocorpus.api.curate_photos` (or ``export_photos``) and prints the report.

Labels come from sources and folder names, so lines that name them print them through
:func:`photocorpus.textsafety.terminal_safe`: a label cannot drive the terminal.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from photocorpus.cli_app import CorpusOption, ExecutorOption, QuietOption, RayAddressOption, app, open_corpus
from photocorpus.textsafety import terminal_safe

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus
    from photocorpus.curate.dedup import DedupReport
    from photocorpus.curate.quality import QualityReport
    from photocorpus.curate.splits import SplitReport
    from photocorpus.curate.stage import CurateReport

WorkersOption = Annotated[int | None, typer.Option(help="Worker processes (default: one per core).")]
RedoOption = Annotated[bool, typer.Option("--redo", help="Recompute for every photo, not only new ones.")]
LanguagesOption = Annotated[
    list[str] | None,
    typer.Option("--languages", help="Keep only captions in these languages in the splits (e.g. en)."),
]


def _run(c: Corpus, quiet: bool, settings: dict[str, Any], **options: Any) -> CurateReport:
    """Run curate through the API; ``[curate]`` settings left as None keep corpus.toml's."""
    from photocorpus.api import curate_photos

    changed = {k: v for k, v in settings.items() if v is not None}
    return curate_photos(c, progress=not quiet, **options, **changed)


def _interrupted() -> None:
    typer.echo("Interrupted: re-run the same command to resume.", err=True)
    raise typer.Exit(130)


def _print_dedup(report: DedupReport, delete: bool) -> None:
    typer.echo(
        f"dedup: {report.hashed} hashed, {report.failed} failed; {report.photos} photos, "
        f"{report.groups} duplicate groups, {report.duplicates} duplicates "
        f"(links: {', '.join(f'{k}={v}' for k, v in report.links.items())}; semantic "
        f"{'on ' + str(report.semantic_photos) + ' photos' if report.semantic_used else 'off: no features'})"
        + (f"; {report.deleted_files} duplicate files deleted" if delete else "")
    )


def _print_quality(report: QualityReport) -> None:
    flags = ", ".join(f"{k}={v}" for k, v in report.flags.items()) or "none"
    typer.echo(f"quality: {report.scored} scored, {report.failed} failed; flags: {flags}")


def _print_split(report: SplitReport) -> None:
    for label, counts in report.per_label.items():
        total = sum(counts.values()) or 1
        shares = ", ".join(f"{terminal_safe(k)} {v} ({100 * v / total:.1f}%)" for k, v in counts.items())
        typer.echo(f"split {terminal_safe(label)}: {shares}")
    excluded = ", ".join(f"{terminal_safe(k)}={v}" for k, v in report.excluded.items()) or "none"
    typer.echo(f"split: {report.newly_assigned} newly assigned; excluded: {excluded}")


def _print_report(report: CurateReport, delete: bool) -> None:
    """Each step's line in curate's order; an interrupted step ends the output and exits 130."""
    if report.dedup is not None:
        if report.dedup.interrupted:
            _interrupted()
        _print_dedup(report.dedup, delete)
    if report.captions is not None:
        if report.captions.interrupted:
            _interrupted()
        captions = report.captions
        langs = ", ".join(f"{terminal_safe(k)}={v}" for k, v in list((captions.languages or {}).items())[:8])
        typer.echo(f"captions: {captions.cleaned} cleaned; languages: {langs or 'none'}")
    if report.bots is not None:
        reasons = ", ".join(f"{k}={v}" for k, v in report.bots.by_reason.items()) or "none"
        typer.echo(f"bots: {report.bots.flagged} photos flagged ({reasons})")
    if report.quality is not None:
        if report.quality.interrupted:
            _interrupted()
        _print_quality(report.quality)
    if report.split is not None:
        _print_split(report.split)


@app.command()
def dedup(
    corpus: CorpusOption = Path("."),
    delete: Annotated[
        bool, typer.Option("--delete", help="Delete the stored files of duplicates (never by default).")
    ] = False,
    threshold: Annotated[
        int | None, typer.Option(help="Most differing pHash bits (default: settings).")
    ] = None,
    semantic: Annotated[
        bool | None, typer.Option("--semantic/--no-semantic", help="Use CNN features when they exist.")
    ] = None,
    workers: WorkersOption = None,
    redo: RedoOption = False,
    executor: ExecutorOption = None,
    ray_address: RayAddressOption = None,
    quiet: QuietOption = False,
) -> None:
    """Find exact and near-duplicate photos; mark all but each group's representative duplicate_of."""
    with open_corpus(corpus) as c:
        report = _run(
            c, quiet, {"phash_max_distance": threshold, "semantic": semantic}, steps=["dedup"],
            workers=workers, redo=redo, delete_duplicates=delete, executor=executor, ray_address=ray_address,
        )  # fmt: skip
    _print_report(report, delete)


@app.command()
def quality(
    corpus: CorpusOption = Path("."),
    workers: WorkersOption = None,
    redo: RedoOption = False,
    quiet: QuietOption = False,
) -> None:
    """Score every image (size, aspect, blank, dark/bright, blur, grayscale, frame) and flag it."""
    with open_corpus(corpus) as c:
        report = _run(c, quiet, {}, steps=["quality"], workers=workers, redo=redo)
    _print_report(report, False)


@app.command()
def split(
    corpus: CorpusOption = Path("."),
    languages: LanguagesOption = None,
    keep_bots: Annotated[
        bool, typer.Option("--keep-bots", help="Let bot-flagged photos into splits.")
    ] = False,
) -> None:
    """Assign train/val/test per label (stable, leak-free); excluded photos get no split."""
    with open_corpus(corpus) as c:
        report = _run(
            c, True, {"exclude_bots": False if keep_bots else None}, steps=["split"], languages=languages
        )
    _print_report(report, False)


@app.command()
def curate(
    corpus: CorpusOption = Path("."),
    languages: LanguagesOption = None,
    delete: Annotated[bool, typer.Option("--delete", help="Delete the stored files of duplicates.")] = False,
    semantic: Annotated[
        bool | None, typer.Option("--semantic/--no-semantic", help="Use CNN features when they exist.")
    ] = None,
    keep_bots: Annotated[
        bool, typer.Option("--keep-bots", help="Let bot-flagged photos into splits.")
    ] = False,
    workers: WorkersOption = None,
    redo: RedoOption = False,
    executor: ExecutorOption = None,
    ray_address: RayAddressOption = None,
    quiet: QuietOption = False,
) -> None:
    """Run every curate step: dedup, caption text, bots, quality, split."""
    with open_corpus(corpus) as c:
        report = _run(
            c, quiet, {"semantic": semantic, "exclude_bots": False if keep_bots else None},
            languages=languages, delete_duplicates=delete, workers=workers, redo=redo, executor=executor,
            ray_address=ray_address,
        )  # fmt: skip
    print_curate(report, delete)


def print_curate(report: CurateReport, delete: bool = False) -> None:
    """A whole curate run's lines (also the demo's): each step, then the unique ratios."""
    _print_report(report, delete)
    summary = report.summary
    typer.echo(
        f"unique: {100 * (summary['unique_ratio'] or 0):.2f}% (ours: exact + near duplicates); "
        f"{100 * summary.get('unique_ratio_sha256', 0):.2f}% by sha256; "
        f"{100 * summary.get('unique_ratio_seed_size_weight', 0):.2f}% by (width, height, file size)"
    )


class ExportFormat(StrEnum):
    instacities = "instacities"
    imagefolder = "imagefolder"
    webdataset = "webdataset"
    parquet = "parquet"
    mirflickr_json = "mirflickr-json"
    mirflickr_images = "mirflickr-images"
    attribution = "attribution"


@app.command("export")
def export_(
    fmt: Annotated[ExportFormat, typer.Argument(metavar="FORMAT", help="Export format.")],
    out: Annotated[Path, typer.Argument(metavar="DIR", help="Output folder (a .parquet file for parquet).")],
    corpus: CorpusOption = Path("."),
    split_: Annotated[
        list[str] | None,
        typer.Option("--split", help="Only these splits (train, val, test; repeat or comma-separate; all)."),
    ] = None,
    size: Annotated[
        str | None, typer.Option(help="Resize images to cover WxH, centre-cropped (300x300).")
    ] = None,
    workers: WorkersOption = None,
    embed_provenance: Annotated[
        bool,
        typer.Option(
            "--embed-provenance",
            help="Write each photo's source URL, owner, title, licence and tags into its exported JPEG "
            "(XMP + JPEG comment, no re-encode). Image formats only.",
        ),
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Write the curated corpus as FORMAT: instacities, imagefolder, webdataset, parquet, mirflickr-json,
    mirflickr-images (MIRFLICKR-1M's <N // 10000>/<N>.jpg), or attribution (credits for Creative Commons
    photos)."""
    from photocorpus.api import export_photos

    training_layout = fmt in (ExportFormat.instacities, ExportFormat.imagefolder, ExportFormat.webdataset)
    image_format = training_layout or fmt is ExportFormat.mirflickr_images
    if embed_provenance and not image_format:
        raise typer.BadParameter(
            f"{fmt.value} holds no images; --embed-provenance applies to instacities, imagefolder, "
            "webdataset and mirflickr-images",
            param_hint="--embed-provenance",
        )
    with open_corpus(corpus) as c:
        report = export_photos(
            c, fmt.value, out, splits=split_ or None, size=size, workers=workers,
            embed_provenance=embed_provenance, progress=not quiet,
        )  # fmt: skip
    typer.echo(f"export {fmt.value}: {json.dumps(report.counts)} -> {out}")
