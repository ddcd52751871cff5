"""Curate commands: curate (all steps), dedup, quality, split and export.

Labels come from sources and folder names, so lines that name them print them through
:func:`photocorpus.textsafety.terminal_safe`: a label cannot drive the terminal.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from photocorpus.cli_app import (
    CorpusOption,
    ExecutorOption,
    QuietOption,
    RayAddressOption,
    app,
    open_corpus,
    use_executor,
)
from photocorpus.textsafety import terminal_safe

if TYPE_CHECKING:
    from photocorpus.config import CurateSettings
    from photocorpus.corpus import Corpus

WorkersOption = Annotated[int | None, typer.Option(help="Worker processes (default: one per core).")]
RedoOption = Annotated[bool, typer.Option("--redo", help="Recompute for every photo, not only new ones.")]
LanguagesOption = Annotated[
    list[str] | None,
    typer.Option("--languages", help="Keep only captions in these languages in the splits (e.g. en)."),
]


def _settings(
    corpus: Corpus,
    *,
    threshold: int | None = None,
    semantic: bool | None = None,
    keep_bots: bool | None = None,
) -> CurateSettings:
    s = corpus.settings.curate.model_copy()
    if threshold is not None:
        s.phash_max_distance = threshold
    if semantic is not None:
        s.semantic = semantic
    if keep_bots is not None:
        s.exclude_bots = not keep_bots
    return s


def _dedup(
    c: Corpus, s: CurateSettings, *, workers: int | None, redo: bool, delete: bool, quiet: bool
) -> dict[str, Any]:
    from photocorpus.curate.dedup import find_duplicates, hash_photos, pending_hash_count
    from photocorpus.interrupt import graceful_interrupt
    from photocorpus.progress import progress_bar

    c.resolve_dangling_intents()
    total = pending_hash_count(c, redo)
    with graceful_interrupt() as stop, progress_bar("hash", total, enabled=not quiet) as adv:
        report = hash_photos(c, workers=workers, redo=redo, stop=stop, advance=adv)
    if report.interrupted:
        typer.echo("Interrupted: re-run the same command to resume.", err=True)
        raise typer.Exit(130)
    with progress_bar("verify semantic pairs", None, unit="pairs", enabled=not quiet) as adv:
        find_duplicates(c, s, report=report, advance=adv, workers=workers)
    if delete:
        from photocorpus.curate.dedup import delete_duplicate_files

        delete_duplicate_files(c, report)
    typer.echo(
        f"dedup: {report.hashed} hashed, {report.failed} failed; {report.photos} photos, "
        f"{report.groups} duplicate groups, {report.duplicates} duplicates "
        f"(links: {', '.join(f'{k}={v}' for k, v in report.links.items())}; semantic "
        f"{'on ' + str(report.semantic_photos) + ' photos' if report.semantic_used else 'off: no features'})"
        + (f"; {report.deleted_files} duplicate files deleted" if delete else "")
    )
    return {"dedup": report}


def _quality(c: Corpus, s: CurateSettings, *, workers: int | None, redo: bool, quiet: bool) -> dict[str, Any]:
    from photocorpus.curate.quality import pending_quality, run_quality
    from photocorpus.interrupt import graceful_interrupt
    from photocorpus.progress import progress_bar

    total = len(pending_quality(c, redo))
    with graceful_interrupt() as stop, progress_bar("quality", total, enabled=not quiet) as adv:
        report = run_quality(c, s, workers=workers, redo=redo, stop=stop, advance=adv)
    if report.interrupted:
        typer.echo("Interrupted: re-run the same command to resume.", err=True)
        raise typer.Exit(130)
    flags = ", ".join(f"{k}={v}" for k, v in report.flags.items()) or "none"
    typer.echo(f"quality: {report.scored} scored, {report.failed} failed; flags: {flags}")
    return {"quality": report}


def _split(c: Corpus, s: CurateSettings, languages: list[str] | None) -> dict[str, Any]:
    from photocorpus.curate.splits import run_splits

    report = run_splits(c, s, languages=languages)
    for label, counts in report.per_label.items():
        total = sum(counts.values()) or 1
        shares = ", ".join(f"{terminal_safe(k)} {v} ({100 * v / total:.1f}%)" for k, v in counts.items())
        typer.echo(f"split {terminal_safe(label)}: {shares}")
    excluded = ", ".join(f"{terminal_safe(k)}={v}" for k, v in report.excluded.items()) or "none"
    typer.echo(f"split: {report.newly_assigned} newly assigned; excluded: {excluded}")
    return {"split": report}


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
        use_executor(c, executor, ray_address)
        _dedup(c, _settings(c, threshold=threshold, semantic=semantic), workers=workers, redo=redo,
               delete=delete, quiet=quiet)  # fmt: skip


@app.command()
def quality(
    corpus: CorpusOption = Path("."),
    workers: WorkersOption = None,
    redo: RedoOption = False,
    quiet: QuietOption = False,
) -> None:
    """Score every image (size, aspect, blank, dark/bright, blur, grayscale, frame) and flag it."""
    with open_corpus(corpus) as c:
        _quality(c, _settings(c), workers=workers, redo=redo, quiet=quiet)


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
        _split(c, _settings(c, keep_bots=keep_bots or None), languages)


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
    from photocorpus.curate.bots import run_bots
    from photocorpus.curate.captions import pending_captions, run_captions
    from photocorpus.interrupt import graceful_interrupt
    from photocorpus.progress import progress_bar

    with open_corpus(corpus) as c:
        use_executor(c, executor, ray_address)
        s = _settings(c, semantic=semantic, keep_bots=keep_bots or None)
        _dedup(c, s, workers=workers, redo=redo, delete=delete, quiet=quiet)
        total = len(pending_captions(c, redo))
        with graceful_interrupt() as stop, progress_bar("captions", total, enabled=not quiet) as adv:
            captions = run_captions(c, redo=redo, stop=stop, advance=adv)
        if captions.interrupted:
            typer.echo("Interrupted: re-run the same command to resume.", err=True)
            raise typer.Exit(130)
        langs = ", ".join(f"{terminal_safe(k)}={v}" for k, v in list((captions.languages or {}).items())[:8])
        typer.echo(f"captions: {captions.cleaned} cleaned; languages: {langs or 'none'}")
        bots = run_bots(c, s)
        reasons = ", ".join(f"{k}={v}" for k, v in bots.by_reason.items()) or "none"
        typer.echo(f"bots: {bots.flagged} photos flagged ({reasons})")
        _quality(c, s, workers=workers, redo=redo, quiet=quiet)
        _split(c, s, languages)
        summary = c.status_summary()["curate"]
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
    from photocorpus.export.rows import iter_photos, parse_size, parse_splits
    from photocorpus.progress import progress_bar

    splits = parse_splits(split_)
    dims = parse_size(size)
    training_layout = fmt in (ExportFormat.instacities, ExportFormat.imagefolder, ExportFormat.webdataset)
    image_format = training_layout or fmt is ExportFormat.mirflickr_images
    if embed_provenance and not image_format:
        raise typer.BadParameter(
            f"{fmt.value} holds no images; --embed-provenance applies to instacities, imagefolder, "
            "webdataset and mirflickr-images",
            param_hint="--embed-provenance",
        )
    with open_corpus(corpus) as c:
        total = sum(
            1 for _ in iter_photos(c, splits=splits, in_split_only=training_layout, with_file=image_format)
        )
        with progress_bar(f"export {fmt.value}", total, enabled=not quiet) as adv:
            result = _run_export(c, fmt, out, splits, dims, workers, adv, embed_provenance)
    typer.echo(f"export {fmt.value}: {json.dumps(result)} -> {out}")


def _run_export(c, fmt, out, splits, dims, workers, adv, stamp=False) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    if fmt is ExportFormat.instacities:
        from photocorpus.export.layouts import export_instacities

        r = export_instacities(
            c, out, splits=splits, size=dims, workers=workers, embed_provenance=stamp, advance=adv
        )
        return {"images": r.images, "per_split": r.per_split, "attributed": r.attributed}
    if fmt is ExportFormat.imagefolder:
        from photocorpus.export.layouts import export_imagefolder

        r = export_imagefolder(
            c, out, splits=splits, size=dims, workers=workers, embed_provenance=stamp, advance=adv
        )
        return {"images": r.images, "per_split": r.per_split, "attributed": r.attributed}
    if fmt is ExportFormat.webdataset:
        from photocorpus.export.webdataset import export_webdataset

        w = export_webdataset(
            c, out, splits=splits, size=dims, workers=workers, embed_provenance=stamp, advance=adv
        )
        return {"samples": w.samples, "shards": len(w.shards), "attributed": w.attributed}
    if fmt is ExportFormat.parquet:
        from photocorpus.export.parquet import export_parquet

        return {"rows": export_parquet(c, out, splits=splits, advance=adv)}
    if fmt is ExportFormat.mirflickr_json:
        from photocorpus.export.mirflickr_json import export_mirflickr_json

        return {"files": export_mirflickr_json(c, out, splits=splits, advance=adv)}
    if fmt is ExportFormat.mirflickr_images:
        from photocorpus.export.mirflickr_images import export_mirflickr_images

        r = export_mirflickr_images(
            c, out, splits=splits, size=dims, workers=workers, embed_provenance=stamp, advance=adv
        )
        return {"images": r.images, "per_split": r.per_split, "attributed": r.attributed}
    from photocorpus.export.attribution import write_attribution
    from photocorpus.export.rows import iter_photos

    photos = [(p, p.path) for p in iter_photos(c, splits=splits)]
    adv(len(photos))
    return {"attributed": write_attribution(out, photos)}
