"""``photocorpus enrich flickr``: EXIF, notes, comments, albums and groups per photo (s16a)."""

from __future__ import annotations

import os
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
    from photocorpus.enrich.flickr import FlickrEnricher, api_keys_from, parse_kinds, plan
    from photocorpus.errors import ConfigError
    from photocorpus.interrupt import graceful_interrupt
    from photocorpus.progress import progress_bar
    from photocorpus.sources.flickr_api import FlickrClient

    wanted = parse_kinds(kinds)
    with open_corpus(corpus) as c:
        settings = c.settings.flickr
        keys = api_keys_from(os.environ.get("FLICKR_API_KEY"), settings.api_key, settings.extra_api_keys)
        if not keys:
            raise ConfigError("no Flickr API key: set FLICKR_API_KEY (see the README)")
        todo = plan(c, wanted, len(keys), settings.calls_per_hour, max_photos)
        typer.echo(f"Enrichment: {todo.describe()}.")
        endpoint = settings.endpoint(api_url)  # never the key over plain http (see FlickrSettings)
        clients = [FlickrClient.from_settings(key, settings, endpoint) for key in keys]
        try:
            with graceful_interrupt() as stop, progress_bar("enrich", todo.calls, "calls", not quiet) as bar:
                report = FlickrEnricher(c, clients, wanted, stop=stop, progress=bar).run(max_photos)
        finally:
            for client in clients:
                client.close()
        coverage = c.metadata_coverage()
    for kind, by_status in sorted(report.stored.items()):
        typer.echo(f"{kind}: " + ", ".join(f"{s}={n}" for s, n in sorted(by_status.items())))
    typer.echo("coverage: " + ", ".join(f"{k}={v}" for k, v in coverage.items()))
    if report.interrupted:
        typer.echo("Interrupted: re-run the same command to resume.", err=True)
        raise typer.Exit(130)
