"""``photocorpus explore``: 2-D maps, clusters and an interactive report of a feature set.

Feature-set names come from the catalog, so they are printed through
:func:`photocorpus.textsafety.terminal_safe`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from photocorpus.cli_app import CorpusOption, QuietOption, app, open_corpus
from photocorpus.textsafety import terminal_safe


@app.command()
def explore(
    corpus: CorpusOption = Path("."),
    features: Annotated[
        str | None,
        typer.Option(help="Feature set to map (default: efficientnet-lite0, computed if missing)."),
    ] = None,
    method: Annotated[str, typer.Option(help="2-D map: tsne (openTSNE), umap or pca.")] = "tsne",
    k: Annotated[
        str, typer.Option("--k", help="Clusters: a number, or auto (best silhouette over 4..30).")
    ] = "auto",
    color_by: Annotated[
        str, typer.Option(help="Initial colouring: cluster, label, ontology, imagenet, split or quality.")
    ] = "cluster",
    sample: Annotated[
        int | None, typer.Option(help="Map a stable, seeded sample of this many photos.", min=4)
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the PCA, map, sample and k-means.")] = 0,
    png: Annotated[bool, typer.Option("--png", help="Also write map.png and clusters.png.")] = False,
    name: Annotated[
        str | None, typer.Option(help="Report folder under reports/ (default: from options).")
    ] = None,
    ontology: Annotated[
        str, typer.Option(help="Ontology preset or mapping file for the categories.")
    ] = "seed004",
    compare_raw: Annotated[
        bool, typer.Option("--compare-raw/--no-compare-raw", help="Add the raw-pixels map when it exists.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was done as one JSON object.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Map a feature set to 2-D, cluster it, and write reports/<name>/index.html (opens from disk)."""
    from photocorpus.api import explore_photos

    k_value: int | str = int(k) if k.isdigit() else k
    with open_corpus(corpus) as c:
        result = explore_photos(
            c, features=features, method=method, k=k_value, color_by=color_by, sample=sample, seed=seed,
            png=png, name=name, ontology=ontology, compare_raw=compare_raw, progress=not quiet,
        )  # fmt: skip
    if result.interrupted:
        typer.echo(f"Interrupted: {result.interruption}", err=True)
        raise typer.Exit(130)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    for m, cl in zip(result.maps, result.clusters, strict=True):
        map_note = ", reused" if m["reused"] else ""
        k_note = " (reused)" if cl["reused"] else ""
        if cl.get("weak"):  # --k auto found no k that separates the photos well
            from photocorpus.explore.cluster import WEAK_SILHOUETTE

            best = max(cl["silhouettes"].values(), default=0.0)
            k_note += f" (weak choice: best silhouette {best:.3f} < {WEAK_SILHOUETTE}; pass --k N to choose)"
        feature_set = terminal_safe(m["feature_set"])
        typer.echo(
            f"{feature_set}: {m['method']} map (trustworthiness {m['trustworthiness']:.3f}{map_note}), "
            f"k-means k = {cl['k']}{k_note}"
        )
    th = result.thumbnails
    typer.echo(f"Thumbnails: {th['made']} made, {th['cached']} cached, {th['failed']} failed")
    for p in result.pngs:
        typer.echo(f"Wrote {p}")
    typer.echo(f"Report: {result.index_html} ({result.photos:,} photos, {result.seconds:.1f} s)")
