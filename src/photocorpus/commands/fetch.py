"""``photocorpus fetch`` (download, validate, de-frame, resize) and ``photocorpus harvest urls``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from photocorpus.cli_app import CorpusOption, ExecutorOption, QuietOption, RayAddressOption, app, open_corpus
from photocorpus.commands.harvest import harvest_app


@app.command()
def fetch(
    retry_reasons: Annotated[
        list[str] | None,
        typer.Argument(
            help="With --retry-failed: the failure reasons to retry (default: those that could be "
            "transient, e.g. timeout, http_503).",
            show_default=False,
            metavar="[REASON]...",
        ),
    ] = None,
    corpus: CorpusOption = Path("."),
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: one per core).")] = None,
    size: Annotated[
        str | None, typer.Option(help="Stored size WxH, e.g. 300x300 (default: max edge 1024, aspect kept).")
    ] = None,
    resize_mode: Annotated[
        str | None, typer.Option(help="With --size: keep_ratio, squash, center_crop or border.")
    ] = None,
    max_edge: Annotated[
        int | None, typer.Option(help="Longest stored side when --size is not given.")
    ] = None,
    quality: Annotated[int | None, typer.Option(help="JPEG quality of re-encoded images (1-100).")] = None,
    min_side: Annotated[
        int | None, typer.Option(help="Drop images whose shorter side is smaller (default 500).")
    ] = None,
    aspect: Annotated[
        str | None, typer.Option(help="Keep width/height inside MIN:MAX, e.g. 0.625:1.6 (im2gps).")
    ] = None,
    default_size_only: Annotated[
        bool | None,
        typer.Option("--default-size-only/--preferred-sizes", help="Only the source's default size (fast)."),
    ] = None,
    size_policy: Annotated[
        str | None,
        typer.Option(
            help="fallback (default): Large, else Original, else any other size, largest first; strict "
            "(im2gps): Large, else Original, else the photo fails as no_allowed_size.",
        ),
    ] = None,
    frames: Annotated[
        bool | None, typer.Option("--remove-frames/--keep-frames", help="Trim uniform frames (default on).")
    ] = None,
    frame_rule: Annotated[
        str | None,
        typer.Option(
            help="edge (default): a frame is uniform rings from the edge in; im2gps: the widest uniform "
            "ring anywhere (remove_frame.m), which also trims some unframed photos.",
        ),
    ] = None,
    im2gps: Annotated[
        bool,
        typer.Option(
            "--im2gps",
            help="im2gps's rules: Large else Original else drop, longest side 1024, shorter side at least "
            "500, width/height 0.625-1.6, im2gps's frame rule. Options given with it still win.",
        ),
    ] = False,
    provenance: Annotated[
        bool | None,
        typer.Option(
            "--embed-provenance/--no-embed-provenance",
            help="Write what the harvest knows (URL, owner, title, tags, licence, geo, dates, views) into "
            "every stored JPEG as XMP + comment (default: Flickr photos only; [fetch] embed_provenance).",
        ),
    ] = None,
    concurrency: Annotated[int | None, typer.Option(help="Downloads in flight at once.")] = None,
    per_host: Annotated[int | None, typer.Option(help="Connections to one host at once.")] = None,
    host_rate: Annotated[
        float | None, typer.Option(help="Requests per second to one host (0: unlimited, local mirrors).")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Longest time for one download, seconds.")] = None,
    max_retries: Annotated[int | None, typer.Option(help="Retries on 429/5xx/timeouts.")] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Retry failed photos (see REASONS).")
    ] = False,
    allow_private_urls: Annotated[
        bool,
        typer.Option(
            "--allow-private-urls",
            envvar="PHOTOCORPUS_ALLOW_PRIVATE_URLS",
            help="Allow private, loopback and link-local destinations (tests, local mirrors).",
        ),
    ] = False,
    ignore_x_robots_tag: Annotated[
        bool, typer.Option("--ignore-x-robots-tag", help="Fetch even where X-Robots-Tag says noai/noindex.")
    ] = False,
    limit: Annotated[int | None, typer.Option(help="Fetch at most this many photos in this run.")] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log retries, backoff and failures to stderr.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's report as JSON.")] = False,
    executor: ExecutorOption = None,
    ray_address: RayAddressOption = None,
    quiet: QuietOption = False,
) -> None:
    """Download every harvested photo not yet fetched; validate, de-frame, resize and store it.

    Resumable: re-running does only what is left, after Ctrl-C or a kill -9. Settings come from
    the fetch table of corpus.toml; the options here override them for this run.
    """
    from photocorpus.api import fetch_photos
    from photocorpus.errors import ConfigError
    from photocorpus.logs import setup_logging

    if verbose:
        setup_logging(True)
    if retry_reasons and not retry_failed:
        raise ConfigError(
            f"unexpected argument(s) {' '.join(retry_reasons)}: reasons go after --retry-failed"
        )
    overrides: dict[str, Any] = {
        "workers": workers,
        "size": size,
        "resize_mode": resize_mode,
        "max_edge_px": max_edge,
        "jpeg_quality": quality,
        "min_side_px": min_side,
        "default_size_only": default_size_only,
        "size_policy": size_policy,
        "remove_frames": frames,
        "frame_rule": frame_rule,
        "embed_provenance": provenance,  # True: every source, False: none
        "concurrency": concurrency,
        "per_host_connections": per_host,
        "host_rate_per_s": host_rate,
        "total_timeout_s": timeout,
        "max_retries": max_retries,
    }
    if aspect is not None:
        overrides["min_aspect_ratio"], overrides["max_aspect_ratio"] = _parse_aspect(aspect)
    if ignore_x_robots_tag:
        overrides["respect_x_robots_tag"] = False
    if allow_private_urls:
        overrides["allow_private_urls"] = True
    settings = {k: v for k, v in overrides.items() if v is not None}
    with open_corpus(corpus) as c:
        only_default = settings.get("default_size_only", c.settings.fetch.default_size_only)
        min_side_px = settings.get("min_side_px", c.settings.fetch.min_side_px)
        if only_default and min_side_px >= 500 and not im2gps:  # (--im2gps refuses default sizes)
            typer.secho(
                f"note: default-size images are small; --min-side {min_side_px} may drop most",
                fg=typer.colors.YELLOW,
                err=True,
            )
        report = fetch_photos(
            c, retry_failed=(retry_reasons or True) if retry_failed else False, limit=limit,
            preset="im2gps" if im2gps else None, executor=executor, ray_address=ray_address,
            progress=not quiet, **settings,
        )  # fmt: skip
    if as_json:
        from dataclasses import asdict

        typer.echo(json.dumps(asdict(report), indent=2))
    else:
        failures = ", ".join(f"{k}={v}" for k, v in sorted(report.failures.items(), key=lambda kv: -kv[1]))
        rate = report.visited / report.elapsed_s if report.elapsed_s > 0 else 0.0
        typer.echo(
            f"fetch: {report.fetched} fetched, {report.failed} failed ({failures or 'none'}), "
            f"{report.retries} retries, {report.frames_removed} frames removed, "
            f"{report.bytes_downloaded / 1e6:,.1f} MB in {report.elapsed_s:,.1f} s ({rate:,.1f} photos/s)"
        )
    if report.interrupted:
        typer.echo("Interrupted: re-run the same command to resume.", err=True)
        raise typer.Exit(130)


def _parse_aspect(text: str) -> tuple[float, float]:
    from photocorpus.errors import ConfigError

    try:
        low, high = (float(x) for x in text.split(":"))
    except ValueError:
        raise ConfigError(f"--aspect must look like 0.625:1.6 (min:max width/height), not {text!r}") from None
    if not 0 < low <= high:
        raise ConfigError(f"--aspect {text!r}: need 0 < min <= max")
    return low, high


@harvest_app.command("urls")
def harvest_urls(
    file: Annotated[
        Path, typer.Argument(help="URL list: .txt/.csv/.tsv/.json/.jsonl/.parquet, optionally .gz.")
    ],
    corpus: CorpusOption = Path("."),
    url_col: Annotated[str, typer.Option(help="Column holding the image URL.")] = "url",
    caption_col: Annotated[str | None, typer.Option(help="Column holding the caption.")] = None,
    label_col: Annotated[str | None, typer.Option(help="Column holding the label.")] = None,
    label: Annotated[
        str | None, typer.Option(help="Label for rows without one (default: the file name).")
    ] = None,
    input_format: Annotated[
        str | None, typer.Option(help="txt, csv, tsv, json, jsonl or parquet (default: from the extension).")
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Add every URL of a list (img2dataset's input formats) as a photo to fetch later."""
    from photocorpus.api import harvest_urls as run_harvest

    with open_corpus(corpus) as c:
        report = run_harvest(
            c, file, url_col=url_col, caption_col=caption_col, label_col=label_col, label=label,
            input_format=input_format, progress=not quiet,
        )  # fmt: skip
    typer.echo(
        f"{Path(report.file).name} ({report.format}): {report.rows} rows, {report.added} new photos, "
        f"{report.already_present} already in the corpus, {report.skipped_not_http} without an http(s) URL"
        + (f", {report.skipped_batches} batches already harvested" if report.skipped_batches else "")
    )
    if report.interrupted:
        typer.echo("Interrupted: re-run the same command to resume.", err=True)
        raise typer.Exit(130)
