"""The ``harvest`` command group: collect photo records from a source (no images are downloaded)."""

from __future__ import annotations

import typer

from photocorpus.cli_app import app

harvest_app = typer.Typer(
    help="Collect photo records from a source (no images are downloaded; that is `fetch`).",
    no_args_is_help=True,
)
app.add_typer(harvest_app, name="harvest")
