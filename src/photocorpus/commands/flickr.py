"""``photocorpus harvest flickr``: keyword search in dynamic upload-date windows.

Query labels may come from a downloaded query file, so they are printed through
:func:`photocorpus.textsafety.terminal_safe`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from photocorpus.cli_app import CorpusOption, QuietOption, open_corpus
from photocorpus.commands.harvest import harvest_app
from photocorpus.textsafety import terminal_safe


@harvest_app.command("flickr")
def harvest_flickr(
    # No short flag: -q is --quiet on every command (scripts rely on it), so `-q cat` would be refused.
    query: Annotated[list[str] | None, typer.Option("--query", help="Search text (repeatable).")] = None,
    queries: Annotated[
        Path | None,
        typer.Option(help="im2gps-style query file: one query per line, '-term' lines are negatives."),
    ] = None,
    min_upload: Annotated[
        str | None, typer.Option(help="Earliest upload date (YYYY-MM-DD or epoch).")
    ] = None,
    max_upload: Annotated[str | None, typer.Option(help="Latest upload date (default: now).")] = None,
    min_taken: Annotated[str | None, typer.Option(help="Earliest taken date (YYYY-MM-DD).")] = None,
    max_taken: Annotated[str | None, typer.Option(help="Latest taken date (YYYY-MM-DD).")] = None,
    geo: Annotated[bool, typer.Option("--geo", help="Only geotagged photos (has_geo).")] = False,
    accuracy: Annotated[int | None, typer.Option(help="Minimum geo accuracy (1 world .. 16 street).")] = None,
    bbox: Annotated[str | None, typer.Option(help="min_lon,min_lat,max_lon,max_lat")] = None,
    license: Annotated[
        list[str] | None, typer.Option("--license", help="Licence ids or names; 'cc' = all Creative Commons.")
    ] = None,
    sort: Annotated[str, typer.Option(help="Flickr sort, e.g. date-posted-asc, interestingness-desc.")] = (
        "date-posted-asc"
    ),
    per_query: Annotated[int | None, typer.Option(help="Stop each query after this many photos.")] = None,
    search_by: Annotated[str, typer.Option(help="Match the query as 'text' or as 'tags'.")] = "text",
    tags_mode: Annotated[str, typer.Option(help="With --search-by tags: 'any' or 'all' tags.")] = "all",
    api_url: Annotated[
        str | None, typer.Option(envvar="PHOTOCORPUS_FLICKR_API_URL", help="REST endpoint override.")
    ] = None,
    refresh: Annotated[
        bool, typer.Option(help="Also walk from the last harvested upload time to now.")
    ] = False,
    corpus: CorpusOption = Path("."),
    quiet: QuietOption = False,
) -> None:
    """Search Flickr and record photos (ids, owners, captions, tags, geo, licences, dates, image URLs)."""
    from photocorpus.api import harvest_flickr as run_harvest
    from photocorpus.errors import ConfigError

    if search_by not in ("text", "tags") or tags_mode not in ("any", "all"):
        raise ConfigError("--search-by takes 'text' or 'tags'; --tags-mode takes 'any' or 'all'")
    if not query and not queries:
        raise ConfigError("give at least one --query TEXT or a --queries FILE")
    with open_corpus(corpus) as c:
        report = run_harvest(
            c, query or [], query_file=queries, min_upload=min_upload, max_upload=max_upload,
            min_taken=min_taken, max_taken=max_taken, has_geo=geo, accuracy=accuracy, bbox=bbox,
            licenses=license or [], sort=sort, search_by=search_by, tags_mode=tags_mode, per_query=per_query,
            refresh=refresh, api_url=api_url, progress=not quiet,
        )  # fmt: skip
    for label, count in report.per_query.items():
        typer.echo(f"{terminal_safe(label)}: {count} photos logged")
    typer.echo(
        f"{report.photos_new} new photos, {report.pages} pages, {report.api_calls} API calls, "
        f"{report.retries} retries"
    )
    if report.interrupted:
        typer.echo("Interrupted: re-run the same command to resume.", err=True)
        raise typer.Exit(130)
