"""``photocorpus serve``: the local web app (see :mod:`photocorpus.serve` and docs/serve.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from photocorpus.cli_app import CorpusOption, app


@app.command()
def serve(
    corpus: CorpusOption = Path("."),
    host: Annotated[
        str, typer.Option(help="Address to bind; anything but loopback requires the token for every request.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8765,
    token: Annotated[
        str | None, typer.Option(help="Access token (default: a new random one).", envvar="PHOTOCORPUS_TOKEN")
    ] = None,
    reviewer: Annotated[str | None, typer.Option(help="Name recorded on your decisions.")] = None,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a browser.")] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Server processes; they share the token, jobs and decisions (see docs/serve.md).",
            min=1,
            envvar="PHOTOCORPUS_SERVE_WORKERS",
        ),
    ] = None,
) -> None:
    """Browse, search and correct the corpus in a web browser (prints the URL with its token)."""
    import os

    import uvicorn

    from photocorpus.serve.app import create_app
    from photocorpus.serve.export_jobs import new_server_id
    from photocorpus.serve.security import new_token
    from photocorpus.serve.worker_processes import DEFAULT_WORKERS, SETTINGS_ENV, settings_for_workers
    from photocorpus.worker_counts import capped_workers

    secret = token or new_token()
    processes = capped_workers(workers or DEFAULT_WORKERS, "--workers")
    settings = {
        "token": secret, "reviewer": reviewer, "host": host, "port": port, "server_id": new_server_id(),
    }  # fmt: skip
    # built here even with several workers: a bad folder or reviewer fails before anything starts
    application = create_app(corpus, **settings)  # type: ignore[arg-type]
    shown = "localhost" if host in ("127.0.0.1", "localhost") else host
    url = f"http://{shown if ':' not in shown else f'[{shown}]'}:{port}/?token={secret}"
    typer.echo(f"photocorpus serve: {url}")
    typer.echo("Press Ctrl-C to stop.")
    if not no_browser:
        import webbrowser

        webbrowser.open(url)
    if processes == 1:
        uvicorn.run(application, host=host, port=port, log_level="warning")
        return
    os.environ[SETTINGS_ENV] = settings_for_workers(corpus_path=str(Path(corpus).absolute()), **settings)
    uvicorn.run(
        "photocorpus.serve.worker_processes:app_from_environment",
        factory=True,
        host=host,
        port=port,
        log_level="warning",
        workers=processes,
    )
