"""The shared typer app and the options every command uses.

Commands live in :mod:`photocorpus.commands` (one module per stage) and register themselves on
:data:`app`. Kept import-light on purpose: ``--help`` and ``status`` must answer in well under a
second, so heavy libraries are imported inside the commands that need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from photocorpus.version import __version__

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus

app = typer.Typer(
    name="photocorpus",
    help="Turn social photo sites and local folders into research-grade image datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

CorpusOption = Annotated[
    Path,
    typer.Option(
        "--corpus",
        "-C",
        envvar="PHOTOCORPUS_CORPUS",
        help="Corpus directory (default: the current directory, or $PHOTOCORPUS_CORPUS).",
        show_default=False,
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
ExecutorOption = Annotated[
    str | None,
    typer.Option(
        "--executor",
        help="local (process pool) or ray (a Ray cluster); default: the executor table of corpus.toml.",
    ),
]
RayAddressOption = Annotated[
    str | None,
    typer.Option(
        help='With --executor ray: "auto" (the running cluster) or ray://HOST:PORT; default: a new local Ray.'
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"photocorpus {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log what happens (retries, backoff, skips) to stderr.")
    ] = False,
) -> None:
    """photocorpus: harvest, fetch, curate, featurize, explore and search photo corpora."""
    from photocorpus.logs import setup_logging

    setup_logging(verbose)


def open_corpus(corpus: Path) -> Corpus:
    """Open the corpus a command was pointed at (imported lazily to keep start-up fast)."""
    from photocorpus.corpus import Corpus

    return Corpus.open(corpus)
