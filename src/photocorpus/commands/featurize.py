"""``photocorpus featurize`` and the ``photocorpus features`` group (list, export, MIRFLICKR .dat ...).

Set names and model ids from the catalog, category names from an ontology file and refusal messages
that quote a .dat file's name are printed through :func:`photocorpus.textsafety.terminal_safe`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from photocorpus.cli_app import CorpusOption, ExecutorOption, QuietOption, RayAddressOption, app, open_corpus
from photocorpus.textsafety import terminal_safe

features_app = typer.Typer(
    help="Feature sets: list, fuse, export (.npz, MIRFLICKR .dat), import MIRFLICKR .dat, compact, remove.",
    no_args_is_help=True,
)
app.add_typer(features_app, name="features")

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@app.command()
def featurize(
    corpus: CorpusOption = Path("."),
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Image model: efficientnet-lite0 (default), efficientnet-lite1 (240 px), "
            "efficientnet-lite2 (260 px), raw-pixels, vgg19, resnet50.",
            show_default=False,
        ),
    ] = None,
    text: Annotated[
        str | None,
        typer.Option(
            help="Caption embeddings: minilm, minilm-tags (the photos' tag lists), lda, "
            "word2vec (+ word2vec-tfidf) or all (every caption model but minilm-tags)."
        ),
    ] = None,
    tag_pooling: Annotated[
        str,
        typer.Option(
            "--tag-pooling",
            help="minilm-tags: how a tag list becomes one vector, mean (of per-tag vectors) or joined.",
        ),
    ] = "mean",
    weights: Annotated[
        Path | None, typer.Option(help="State dict for vgg19/resnet50 (torchvision key format).")
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(min=1, help="Images per batch: one inference call on a GPU; on the CPU, one at a time."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Worker processes (default: one per core; 0: all in the main process). With onnxruntime "
            "on the CPU each decodes and runs its own model; otherwise they decode for the main process.",
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="Inference threads in all (split among model workers).")
    ] = None,
    backend: Annotated[str | None, typer.Option(help="auto, onnx or torch.")] = None,
    dtype: Annotated[str | None, typer.Option(help="float16 (default) or float32.")] = None,
    pca: Annotated[int | None, typer.Option(min=0, help="raw-pixels: keep this many PCA dims.")] = None,
    ontology: Annotated[
        list[Path] | None, typer.Option(help="Extra ontology mapping file (JSON); repeatable.")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=0, help="Do at most this many photos now.")] = None,
    retrain: Annotated[
        bool, typer.Option(help="Text: drop the trained LDA/word2vec model and fit it again.")
    ] = False,
    as_json: JsonOption = False,
    executor: ExecutorOption = None,
    ray_address: RayAddressOption = None,
    quiet: QuietOption = False,
) -> None:
    """Compute features for every fetched photo that lacks them; re-running does only what is left.

    Image models also store each photo's top-5 ImageNet labels and ontology categories. --text adds
    caption embeddings (text.minilm, text.minilm-tags, text.lda, text.word2vec, text.word2vec-tfidf).
    """
    from photocorpus import api
    from photocorpus.features.tag_embed import TAG_POOLINGS
    from photocorpus.params import check_choice

    check_choice("tag_pooling", tag_pooling, TAG_POOLINGS)  # before any image work, not after it
    if model is None and text is None:
        model = "efficientnet-lite0"
    settings = {"batch_size": batch_size, "threads": threads, "backend": backend, "dtype": dtype}
    settings = {k: v for k, v in settings.items() if v is not None}
    results: list[dict[str, Any]] = []
    interrupted = False
    with open_corpus(corpus) as c:
        if model is not None:
            pca_setting = {} if pca is None else {"raw_pixels_pca": pca}
            report = api.featurize(
                c, model, weights=weights, workers=workers, ontologies=ontology or [], limit=limit,
                executor=executor, ray_address=ray_address, progress=not quiet, **settings, **pca_setting,
            )  # fmt: skip
            results.append(report.as_dict())
            interrupted |= report.interrupted
            if not as_json:
                failures = ", ".join(f"{k}={v}" for k, v in sorted(report.failures.items())) or "none"
                typer.echo(
                    f"{report.model}: {report.computed} photos featurized, {report.failed} failed "
                    f"({failures}), {report.images_per_s:,.1f} img/s on {report.backend} -> "
                    f"{', '.join(report.feature_sets)}"
                )
        if text is not None and not interrupted:
            text_settings = {k: v for k, v in settings.items() if k in ("threads", "dtype")}
            embedded = api.embed_captions(
                c, text, retrain=retrain, tag_pooling=tag_pooling, progress=not quiet, **text_settings
            )
            for tr in embedded.runs:
                results.append(tr.as_dict())
                interrupted |= tr.interrupted
                if not as_json:
                    trained = " (model trained)" if tr.trained else ""
                    typer.echo(
                        f"text {tr.model}{trained}: {tr.computed} photos embedded ({tr.empty} without text) "
                        f"-> {', '.join(tr.feature_sets)}"
                    )
    if as_json:
        typer.echo(json.dumps(results if len(results) != 1 else results[0], indent=2))
    if interrupted:
        typer.echo("Interrupted: re-run the same command to resume.", err=True)
        raise typer.Exit(130)


@features_app.command("list")
def list_(corpus: CorpusOption = Path("."), as_json: JsonOption = False) -> None:
    """The feature sets of a corpus: rows, dims, dtype, shards, size."""
    from photocorpus.features.set_maintenance import describe_sets

    with open_corpus(corpus) as c:
        sets = describe_sets(c)
    if as_json:
        typer.echo(json.dumps(sets, indent=2))
        return
    if not sets:
        typer.echo("No feature sets yet; compute some with `photocorpus featurize`.")
        return
    # Plain aligned columns rather than a rich table: names stay whole and greppable in any terminal width.
    names = [terminal_safe(s["name"]) for s in sets]
    width = max(len(name) for name in names)
    typer.echo(f"{'name':<{width}}  {'rows':>10}  {'dims':>6}  {'dtype':<7}  {'shards':>6}  {'MB':>9}  model")
    for name, s in zip(names, sets, strict=True):
        typer.echo(
            f"{name:<{width}}  {s['rows']:>10,}  {s['dims']:>6}  {s['dtype']:<7}  {s['shards']:>6}  "
            f"{s['bytes'] / 1e6:>9,.1f}  {terminal_safe(s['model_id'])}"
        )


@features_app.command("fuse")
def fuse(
    sets: Annotated[list[str], typer.Argument(help="Two or more feature sets to fuse, in block order.")],
    name: Annotated[str, typer.Option("--name", help="Name of the fused feature set.")],
    corpus: CorpusOption = Path("."),
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Write a new feature set of each photo's L2-normalised rows of SETS side by side."""
    from dataclasses import asdict

    from photocorpus.api import fuse_features

    report = fuse_features(corpus, sets, name=name, progress=not quiet)
    if as_json:
        typer.echo(json.dumps(asdict(report), indent=2))
    else:
        typer.echo(
            f"{terminal_safe(name)}: {report.added} photos fused ({report.dims} dims from "
            f"{', '.join(terminal_safe(s) for s in report.inputs)}), {report.already} already there, "
            f"{report.missing} left out (missing from some input)"
        )
    if report.interrupted:
        typer.echo("Interrupted: re-run the same command to resume.", err=True)
        raise typer.Exit(130)


@features_app.command("export")
def export(
    name: Annotated[str, typer.Argument(help="Feature set, e.g. efficientnet-lite0.")],
    out: Annotated[Path, typer.Argument(help="Output .npz file.")],
    corpus: CorpusOption = Path("."),
) -> None:
    """Write a feature set as .npz: source_id (strings), source, photo_id and features (float32)."""
    from photocorpus.features.exchange import export_npz

    with open_corpus(corpus) as c:
        rows = export_npz(c, name, out)
    typer.echo(f"Wrote {rows} rows of {name} to {out}")


@features_app.command("import-mirflickr")
def import_mirflickr_(
    directory: Annotated[Path, typer.Argument(help="Root of the NN/<id>.dat tree.")],
    corpus: CorpusOption = Path("."),
    prefix: Annotated[
        str, typer.Option(help="Feature sets are <prefix>.fc7 and <prefix>.fc8.")
    ] = "mirflickr",
    dtype: Annotated[
        str, typer.Option(help="float32 keeps the files bit-exact; float16 halves the size.")
    ] = ("float32"),
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Load MIRFLICKR-1M s16a .dat files (fc7 + fc8 per photo) as two feature sets."""
    from photocorpus.features.exchange import import_mirflickr
    from photocorpus.features.mirflickr_dat import iter_dat_dir
    from photocorpus.interrupt import graceful_interrupt
    from photocorpus.progress import progress_bar

    if not directory.is_dir():
        from photocorpus.features.exchange import ExchangeError

        raise ExchangeError(f"{directory} is not a folder; pass the root of the NN/<id>.dat tree")
    total = sum(1 for _ in iter_dat_dir(directory))
    with (
        open_corpus(corpus) as c,
        graceful_interrupt() as stop,
        progress_bar("import .dat", total, unit="files", enabled=not quiet) as bar,
    ):
        report = import_mirflickr(c, directory, prefix=prefix, dtype=dtype, stop=stop, advance=bar)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        typer.echo(
            f"{report.files} .dat files: {report.imported} imported, {report.already} already present, "
            f"{report.unmatched} match no photo, {report.refused} refused "
            f"(fc7 {report.fc7_dim}, fc8 {report.fc8_dim}) -> {', '.join(report.feature_sets)}"
        )
        for message in report.refusals[:10]:
            typer.echo(f"  refused: {terminal_safe(message)}", err=True)
    if report.interrupted:
        raise typer.Exit(130)


@features_app.command("export-mirflickr")
def export_mirflickr_(
    directory: Annotated[Path, typer.Argument(help="Output folder (NN/<id>.dat + index.csv).")],
    corpus: CorpusOption = Path("."),
    fc7: Annotated[str, typer.Option(help="Set written in the fc7 slot.")] = "efficientnet-lite0",
    fc8: Annotated[str, typer.Option(help="Set written in the fc8 slot.")] = "efficientnet-lite0.logits",
    quiet: QuietOption = False,
) -> None:
    """Write two feature sets in the MIRFLICKR s16a .dat layout, with our dims in the headers."""
    from photocorpus.features.exchange import export_mirflickr
    from photocorpus.progress import progress_bar

    with open_corpus(corpus) as c, progress_bar("export .dat", None, unit="files", enabled=not quiet) as bar:
        report = export_mirflickr(c, directory, fc7_set=fc7, fc8_set=fc8, advance=bar)
    typer.echo(
        f"Wrote {report.written} .dat files (fc7 {report.fc7_dim}, fc8 {report.fc8_dim}, named by "
        f"{report.naming}) to {directory}; {report.skipped} photos lacked one of the two sets"
    )


@features_app.command("compact")
def compact_(
    names: Annotated[list[str] | None, typer.Argument(help="Sets to compact (default: all).")] = None,
    corpus: CorpusOption = Path("."),
) -> None:
    """Merge each set's shards into one, so that loading it is a single memory map."""
    from photocorpus import feature_store

    with open_corpus(corpus) as c:
        for name in names or [s["name"] for s in c.feature_sets()]:
            before = len(feature_store.open_feature_set(c, name).shards)
            feature_store.compact(c, name)
            shown = terminal_safe(name)
            typer.echo(f"{shown}: {before} shard(s) -> 1" if before > 1 else f"{shown}: already one shard")


@features_app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="Feature set to delete.")],
    corpus: CorpusOption = Path("."),
) -> None:
    """Delete a feature set (files and registry entry; for a primary set also its labels and statuses)."""
    from photocorpus.features.set_maintenance import remove_feature_set

    with open_corpus(corpus) as c:
        remove_feature_set(c, name)
    typer.echo(f"Removed {name}")


@features_app.command("categorize")
def categorize(
    ontology: Annotated[Path, typer.Argument(help="Mapping file (JSON: {wnid or class name: category}).")],
    corpus: CorpusOption = Path("."),
    model: Annotated[str, typer.Option(help="Classifier whose stored logits to use.")] = "efficientnet-lite0",
) -> None:
    """Assign every photo a category of your own ontology from the stored logits (no CNN run)."""
    from photocorpus.features.label_rows import assign_categories

    with open_corpus(corpus) as c:
        n = assign_categories(c, str(ontology), model=model)
    typer.echo(f"Categorised {n} photos with {ontology.stem}")


@features_app.command("labels")
def labels(
    corpus: CorpusOption = Path("."),
    model: Annotated[str, typer.Option(help="Classifier.")] = "efficientnet-lite0",
    ontology: Annotated[str, typer.Option(help="Ontology to count categories of.")] = "seed004",
    top: Annotated[int, typer.Option(min=1, help="How many top-1 classes to show.")] = 15,
    as_json: JsonOption = False,
) -> None:
    """Photos per ontology category and the most frequent top-1 ImageNet classes."""
    with open_corpus(corpus) as c:
        categories = {
            r[0]: r[1]
            for r in c.conn.execute(
                "SELECT category, COUNT(*) FROM image_categories WHERE model = ? AND ontology = ? "
                "GROUP BY category ORDER BY COUNT(*) DESC, category",
                (model, ontology),
            )
        }
        classes = {
            r[0]: r[1]
            for r in c.conn.execute(
                "SELECT class_name, COUNT(*) FROM image_labels WHERE model = ? AND rank = 1 "
                "GROUP BY class_name ORDER BY COUNT(*) DESC, class_name LIMIT ?",
                (model, top),
            )
        }
    if as_json:
        typer.echo(json.dumps({"categories": categories, "top1_classes": classes}, indent=2))
        return
    typer.echo(f"{ontology} categories ({model}):")
    for name, count in categories.items():
        typer.echo(f"  {count:>7,}  {terminal_safe(name)}")
    typer.echo("top-1 ImageNet classes:")
    for name, count in classes.items():
        typer.echo(f"  {count:>7,}  {terminal_safe(name)}")
