"""``photocorpus enrich flickr``: EXIF, notes, comments, albums and groups per photo (s16a)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from photocorpus.cli_app import CorpusOption, QuietOption, app, open_corpus

enrich_app = typer.Typer(help="Add per-photo metadata beyond search results.", no_args_is_help=True)
app.add_typer(enrich_app, name="enrich")


@enrich_app.command("flickr")
def enrich_flickr(
    kinds: Annotated[
        str,
        typer.Option(help="Comma-separated: exif, info (notes, views), comments, contexts (albums, groups)."),
    ] = "exif,info,comments,contexts",
    max_photos: Annotated[int | None, typer.Option("--max", help="Enrich at most this many photos.")] = None,
    api_url: Annotated[
        str | None, typer.Option(envvar="PHOTOCORPUS_FLICKR_API_URL", help="REST endpoint override.")
    ] = None,
    corpus: CorpusOption = Path("."),
    quiet: QuietOption = False,
) -> None:
    """Ask Flickr for each harvested photo's extra metadata; resumable per (photo, kind).

    Several keys of yours share the work when $FLICKR_API_KEY holds them comma-separated (or
    ``extra_api_keys`` is set in corpus.toml): one rate limit per key.
    """
    from photocorpus.api import enrich_flickr as run_enrich

    with open_corpus(corpus) as c:
        report = run_enrich(c, kinds=kinds, max_photos=max_photos, api_url=api_url, progress=not quiet)
        coverage = c.metadata_coverage()
    if report.plan is not None:
        typer.echo(f"Enrichment: {report.plan.describe()}.")
    for kind, by_status in sorted(report.stored.items()):
        typer.echo(f"{kind}: " + ", ".join(f"{s}={n}" for s, n in sorted(by_status.items())))
    typer.echo("coverage: " + ", ".join(f"{k}={v}" for k, v in coverage.items()))
    if report.interrupted:
        typer.echo("Interrupted: re-run the same command to resume.", err=True)
        raise typer.Exit(130)
