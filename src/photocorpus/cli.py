"""The ``photocorpus`` console script: registers every command module, runs the app, and turns our
errors into one clear line and a non-zero exit code.

An error can quote a caption, a file name or a server's message, so it is printed with its control
characters escaped (:func:`photocorpus.textsafety.terminal_safe`): a hostile title must not be able
to drive the terminal through an error line."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from photocorpus import commands
from photocorpus.cli_app import app
from photocorpus.errors import PhotocorpusError
from photocorpus.logs import redact
from photocorpus.textsafety import terminal_safe


def _register_commands() -> None:
    # Each module under photocorpus.commands adds its commands to ``app`` when imported. They import
    # only typer at module level, so this stays fast.
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"{commands.__name__}.{info.name}")


_register_commands()


def main() -> None:
    """Console-script entry point: turn our errors into one clear line and a non-zero exit."""
    try:
        app()
    except PhotocorpusError as exc:
        # Redacted here too: an error can quote a server's message, and a server may echo a secret.
        # Newlines stay: some of our messages list their problems one per line.
        message = terminal_safe(redact(str(exc)), keep_newlines=True)
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.secho("Interrupted: re-run the same command to resume.", fg=typer.colors.YELLOW, err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
