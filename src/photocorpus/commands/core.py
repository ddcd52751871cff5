"""Core commands: init, import, status, verify and demo (each parses, calls :mod:`photocorpus.api` or
the corpus, and prints).

Labels, failure reasons, counters and file names shown here are read from the catalog and the disk,
which a shared corpus lets a stranger fill, so each is printed through :func:`terminal_safe` (control
characters escaped) and, in rich tables, also markup-escaped: see :mod:`photocorpus.textsafety`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from photocorpus.cli_app import CorpusOption, QuietOption, app, open_corpus
from photocorpus.textsafety import terminal_safe


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Directory to create the corpus in.")],
) -> None:
    """Create a new, empty corpus: corpus.toml, catalog.sqlite, images/, features/, reports/, exports/."""
    from photocorpus.api import init as init_corpus

    with init_corpus(directory) as corpus:
        typer.echo(f"Created corpus at {corpus.root}")
        typer.echo(f"Settings: {corpus.root / 'corpus.toml'}")


@app.command("import")
def import_(
    directory: Annotated[Path, typer.Argument(help="Folder to import (InstaCities1M, MIRFLICKR or plain).")],
    corpus: CorpusOption = Path("."),
    label: Annotated[
        str | None, typer.Option(help="Label for every photo (default: from the layout).")
    ] = None,
    link: Annotated[
        bool | None,
        typer.Option("--link/--copy", help="Hard-link instead of copying (a copy across disks)."),
    ] = None,
    follow_symlinks: Annotated[
        bool | None,
        typer.Option(
            "--follow-symlinks/--no-follow-symlinks",
            help="Also import symlinked files whose target is outside the folder (default: refused).",
        ),
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: one per core).")] = None,
    quiet: QuietOption = False,
) -> None:
    """Import images (and .txt/.json sidecars) from a local folder. Re-running adds nothing new."""
    from photocorpus.api import import_folder

    with open_corpus(corpus) as c:
        report = import_folder(
            c, directory, label=label, link=link, follow_symlinks=follow_symlinks, workers=workers,
            progress=not quiet,
        )  # fmt: skip
    failures = ", ".join(f"{terminal_safe(k)}={v}" for k, v in sorted(report.failures.items())) or "none"
    typer.echo(
        f"{report.layout}: {report.seen} seen, {report.imported} imported, "
        f"{report.skipped_existing} already in the corpus, {report.failed} failed ({failures})"
    )
    if report.interrupted:
        typer.echo("Interrupted: re-run the same command to resume.", err=True)
        raise typer.Exit(130)


@app.command()
def status(
    corpus: CorpusOption = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """Counts per stage and label, and failures by reason."""
    with open_corpus(corpus) as c:
        summary = c.status_summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    _print_status(summary)


def _cell(value: Any) -> str:
    """Catalog text for a rich table or line: control characters and markup both escaped."""
    from rich.markup import escape

    return escape(terminal_safe(value))


def _print_status(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    files = summary["files"]
    console.print(
        f"[bold]{_cell(summary['corpus'])}[/bold]: {summary['photos']:,} photos, {files['count']:,} files "
        f"({files['bytes'] / 1e6:,.1f} MB)"
    )
    stages = Table(title="Stages", title_justify="left")
    stages.add_column("stage")
    statuses = ["done", "pending", "failed", "skipped"]
    for s in statuses:
        stages.add_column(s, justify="right")
    for stage, counts in sorted(summary["stages"].items()):
        stages.add_row(_cell(stage), *(f"{counts.get(s, 0):,}" for s in statuses))
    console.print(stages)
    labels = Table(title="Labels", title_justify="left")
    labels.add_column("label")
    labels.add_column("photos", justify="right")
    for label, count in list(summary["labels"].items())[:50]:
        labels.add_row(_cell(label), f"{count:,}")
    if len(summary["labels"]) > 50:
        labels.add_row(f"... {len(summary['labels']) - 50} more", "")
    console.print(labels)
    if summary["failures_by_stage"]:
        failures = Table(title="Failures", title_justify="left")
        failures.add_column("stage")
        failures.add_column("reason")
        failures.add_column("photos", justify="right")
        for stage, reasons in sorted(summary["failures_by_stage"].items()):
            for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
                failures.add_row(_cell(stage), _cell(reason), f"{count:,}")
        console.print(failures)
    coverage = summary.get("coverage") or {}
    if any(coverage.values()):
        table = Table(title="Metadata coverage (as MIRFLICKR-1M s16a counts it)", title_justify="left")
        table.add_column("kind")
        table.add_column("photos", justify="right")
        for kind, count in coverage.items():
            table.add_row(_cell(kind), f"{count:,}")
        console.print(table)
    _print_curate(console, summary.get("curate") or {})
    if summary["counters"]:
        counters = Table(title="Counters", title_justify="left")
        counters.add_column("stage")
        counters.add_column("counter")
        counters.add_column("value", justify="right")
        for stage, values in summary["counters"].items():
            for name, value in values.items():
                counters.add_row(_cell(stage), _cell(name), f"{value:,}")
        console.print(counters)


def _print_curate(console: Any, curate: dict[str, Any]) -> None:
    """Unique ratios side by side: InstaCities1M's (width, height, bytes) key, sha256, and ours."""
    from rich.table import Table

    if not curate.get("files"):
        return
    table = Table(title="Uniqueness (of stored files)", title_justify="left")
    table.add_column("key")
    table.add_column("unique ratio", justify="right")

    def pct(value: float | None) -> str:
        return "not run" if value is None else f"{value:.2%}"

    table.add_row("size and weight (InstaCities1M's key)", pct(curate.get("unique_ratio_seed_size_weight")))
    table.add_row("exact content (sha256)", pct(curate.get("unique_ratio_sha256")))
    table.add_row("ours: exact + near duplicates (photocorpus dedup)", pct(curate.get("unique_ratio")))
    console.print(table)
    splits = curate.get("splits") or {}
    if splits or curate.get("excluded"):
        parts = [f"{name} {splits.get(name, 0):,}" for name in ("train", "val", "test")]
        excluded = ", ".join(f"{_cell(k)} {v:,}" for k, v in (curate.get("excluded") or {}).items())
        console.print(f"Splits: {', '.join(parts)}" + (f"; excluded: {excluded}" if excluded else ""))


@app.command()
def verify(corpus: CorpusOption = Path(".")) -> None:
    """Check the catalog's integrity and that files and rows match (no orphans, nothing missing)."""
    from photocorpus.corpus import Corpus, recovery_steps
    from photocorpus.errors import CatalogCorruptError

    try:
        with Corpus.open(corpus, check=False) as c:  # no quick_check: integrity_check does it all
            report = c.verify()
    except CatalogCorruptError as exc:  # so damaged it cannot even be opened
        typer.echo(f"integrity_check: {terminal_safe(exc.damage)}")
        typer.echo(terminal_safe(exc.advice))
        raise typer.Exit(1) from None
    typer.echo(f"integrity_check: {report.integrity}")
    typer.echo(f"orphan files: {len(report.orphan_files)}")
    for path in report.orphan_files[:20]:
        typer.echo(f"  {terminal_safe(path)}")
    typer.echo(f"rows without files: {len(report.missing_files)}")
    for path in report.missing_files[:20]:
        typer.echo(f"  {terminal_safe(path)}")
    typer.echo(f"dangling file intents: {report.dangling_intents} (cleaned by the next writing stage)")
    typer.echo(f"symlinks or paths outside the corpus: {len(report.unsafe_files)}")
    for path in report.unsafe_files[:20]:
        typer.echo(f"  {terminal_safe(path)} (replace it with a copy of its file, or delete it)")
    if report.integrity != "ok":
        typer.echo(recovery_steps(c.root))
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def demo(
    directory: Annotated[Path, typer.Argument(help="Where to build the demo corpus.")] = Path(
        "photocorpus-demo"
    ),
    flickr: Annotated[
        bool,
        typer.Option("--flickr", help="Also harvest real Flickr photos for three cities ($FLICKR_API_KEY)."),
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Build a demo corpus offline from real sample photos plus generated reposts and broken files."""
    from photocorpus import api
    from photocorpus.commands.curate import print_curate
    from photocorpus.demo import build_demo_source

    with api.open(directory, create=True) as corpus:
        source = corpus.root / "sources" / "demo"
        counts = build_demo_source(source)
        typer.echo(
            f"Demo photos: {counts['originals']} originals, {counts['reposts']} reposts, "
            f"{counts['broken']} broken files in {source}"
        )
        report = api.import_folder(corpus, source, progress=not quiet)
        typer.echo(
            f"Imported {report.imported}, failed {report.failed}, already present {report.skipped_existing}"
        )
        featurized = api.featurize(corpus, progress=not quiet)
        typer.echo(f"Featurized {featurized.computed} photos with efficientnet-lite0 ({featurized.backend})")
        # Curate after featurize, so that dedup also uses the CNN features (crops, frames, rotations).
        print_curate(api.curate_photos(corpus, progress=not quiet))
        if flickr:
            _demo_flickr(corpus, quiet)
        explored = api.explore_photos(corpus, progress=not quiet)
        if explored.interrupted:
            typer.echo(f"Interrupted: {explored.interruption}", err=True)
            raise typer.Exit(130)
        typer.echo(f"Report: {explored.index_html} (open it in a browser; it needs no server)")
        _print_status(corpus.status_summary())
    typer.echo(f"\nDone. Explore it with: photocorpus status --corpus {directory}")


DEMO_CITIES = ("london", "newyork", "sydney")


def _demo_flickr(corpus: Any, quiet: bool) -> None:
    """Harvest a few hundred real, Creative Commons Flickr photos for three InstaCities1M cities."""
    import os

    from photocorpus.api import harvest_flickr
    from photocorpus.errors import ConfigError

    api_key = os.environ.get("FLICKR_API_KEY") or corpus.settings.flickr.api_key
    if not api_key:
        raise ConfigError("demo --flickr needs a Flickr API key in $FLICKR_API_KEY (see the README)")
    report = harvest_flickr(
        corpus, list(DEMO_CITIES), licenses="cc", sort="interestingness-desc", per_query=100, api_key=api_key,
        per_page=100, progress=not quiet,
    )  # fmt: skip
    typer.echo(f"Flickr: {report.photos_new} new photo records for {', '.join(DEMO_CITIES)}")
