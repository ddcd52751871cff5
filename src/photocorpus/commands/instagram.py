"""``photocorpus harvest instagram``: hashtags and profiles through instaloader, resumable.

A query's detail quotes Instagram's own message, so it and the query are printed through
:func:`photocorpus.textsafety.terminal_safe`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from photocorpus.cli_app import CorpusOption, QuietOption, open_corpus
from photocorpus.commands.harvest import harvest_app
from photocorpus.textsafety import terminal_safe


@harvest_app.command("instagram")
def harvest_instagram_command(
    hashtag: Annotated[
        list[str] | None, typer.Option("--hashtag", "-t", help="Hashtag, without '#' (repeatable).")
    ] = None,
    profile: Annotated[
        list[str] | None, typer.Option("--profile", "-p", help="Profile (username) to harvest (repeatable).")
    ] = None,
    max_posts: Annotated[
        int | None,
        typer.Option("--max", min=1, help="Stop each hashtag/profile after N posts; a larger N continues."),
    ] = None,
    login: Annotated[
        str | None,
        typer.Option(help="Your Instagram username: use instaloader's saved session for it."),
    ] = None,
    session_file: Annotated[
        Path | None,
        typer.Option(help="An instaloader session file (default: instaloader's own for --login)."),
    ] = None,
    owner_names: Annotated[
        bool | None,
        typer.Option(
            "--owner-names/--no-owner-names",
            help="Look up owner usernames that a listing lacks (one request per post).",
        ),
    ] = None,
    fresh: Annotated[
        bool, typer.Option(help="Ignore the saved position: read from the newest post again.")
    ] = False,
    corpus: CorpusOption = Path("."),
    quiet: QuietOption = False,
) -> None:
    """Record Instagram posts (ids, owners, captions, hashtags, dates, likes, location, image URLs).

    Needs a session saved by instaloader (`instaloader --login YOUR_USERNAME`) for hashtags. Sidecars
    become one photo per image; videos are skipped and counted. Ctrl-C, kill -9 or an error from
    Instagram lose nothing committed: run the same command again to resume.
    """
    from photocorpus.api import harvest_instagram
    from photocorpus.errors import ConfigError

    if not hashtag and not profile:
        raise ConfigError("give at least one --hashtag NAME or --profile USERNAME")
    with open_corpus(corpus) as c:
        report = harvest_instagram(
            c, hashtags=hashtag or [], profiles=profile or [], max_posts=max_posts, login=login,
            session_file=session_file, owner_names=owner_names, fresh=fresh, progress=not quiet,
        )  # fmt: skip
    for q in report.queries:
        query = terminal_safe(q.query)
        where = f"{query}: {q.posts} posts read ({q.posts_in_pass} in this pass), {q.photos} photos"
        typer.echo(f"{where}, {q.videos} videos skipped; {q.status.replace('_', ' ')}")
        if q.detail:
            typer.echo(f"  {terminal_safe(q.detail)}", err=True)
    typer.echo(f"{report.photos} photo records from {report.posts} posts")
    if report.interrupted:
        typer.echo("Interrupted: re-run the same command to resume.", err=True)
        raise typer.Exit(130)
    if any(q.detail for q in report.queries):
        raise typer.Exit(1)
