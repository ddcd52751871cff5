"""``photocorpus train classifier|semantic``, ``predict``, ``search``, ``evaluate retrieval``, ``models``.

Labels, captions, source ids, file names, query texts and model names shown here are strangers' text
or catalog data, so they are printed through :func:`photocorpus.textsafety.terminal_safe` (and, in
rich tables, markup-escaped as well): none of them can drive the terminal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from photocorpus.cli_app import CorpusOption, QuietOption, app, open_corpus
from photocorpus.textsafety import terminal_safe

train_app = typer.Typer(
    help="Train weak-label classifiers and the semantic (image -> text space) model.", no_args_is_help=True
)
evaluate_app = typer.Typer(
    help="Evaluate retrieval: mAP of label queries, P@k of judged queries.", no_args_is_help=True
)
app.add_typer(train_app, name="train")
app.add_typer(evaluate_app, name="evaluate")

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
NameOption = Annotated[str | None, typer.Option("--name", help="Model name (default: <kind>-<target>).")]
FeaturesOption = Annotated[
    str | None, typer.Option("--features", help="Image feature set (default: [learn] image_features).")
]
SplitOption = Annotated[
    str | None, typer.Option("--split", help="auto, curate, hash:80/5/15 or hash:80/20 (MIRFlickr).")
]
HeadOption = Annotated[str, typer.Option("--head", help="linear or mlp.")]
HiddenOption = Annotated[int, typer.Option("--hidden", min=8, max=16384, help="MLP hidden units.")]
EpochsOption = Annotated[int | None, typer.Option("--epochs", min=1, help="Most epochs.")]
PatienceOption = Annotated[int | None, typer.Option("--patience", min=1, help="Early-stopping patience.")]
LrOption = Annotated[float | None, typer.Option("--lr", min=1e-7, max=1.0, help="Learning rate.")]
BatchOption = Annotated[int | None, typer.Option("--batch-size", min=8, help="Batch size.")]
SeedOption = Annotated[int | None, typer.Option("--seed", help="Random seed.")]
LabelsOption = Annotated[
    Path | None, typer.Option("--labels", help="Label CSV: image,<label>,... with 0/1 values (labels.csv).")
]


def _learn_settings(
    features: str | None,
    split: str | None,
    epochs: int | None,
    patience: int | None,
    lr: float | None,
    batch_size: int | None,
    seed: int | None,
) -> dict[str, Any]:
    """The ``[learn]`` settings that options override for this run (None: keep corpus.toml's)."""
    chosen = {
        "image_features": features,
        "splits": split,
        "epochs": epochs,
        "patience": patience,
        "learning_rate": lr,
        "batch_size": batch_size,
        "seed": seed,
    }
    return {k: v for k, v in chosen.items() if v is not None}


def _print_epochs(quiet: bool) -> Any:
    """An ``on_epoch`` that prints the losses of the first and every tenth epoch (not when quiet)."""
    from photocorpus.progress import stderr_console

    def on_epoch(epoch: int, train_loss: float, val_loss: float) -> None:
        if not quiet and (epoch == 1 or epoch % 10 == 0):
            stderr_console.print(f"epoch {epoch:4d}  train loss {train_loss:.4f}  val loss {val_loss:.4f}")

    return on_epoch


def _print_metrics(report: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "name": report.name,
                    "path": report.path,
                    "metrics": report.metrics,
                    "settings": report.settings,
                },
                indent=2,
            )
        )
        return
    m = report.metrics
    typer.echo(
        f"Saved {terminal_safe(report.name)} to {report.path} "
        f"(best epoch {m['best_epoch']} of {m['epochs_run']}, "
        f"{m['train_seconds']} s; photos {m['photos']})"
    )
    for split in ("val", "test"):
        s = m.get(split) or {}
        parts = []
        for key in ("accuracy", "mAP", "mean_cosine", "R@1", "R@10", "median_rank"):
            if s.get(key) is not None:
                parts.append(f"{key} {s[key]:.3f}")
        if (s.get("concepts") or {}).get("mAP") is not None:
            parts.append(f"concept mAP {s['concepts']['mAP']:.3f}")
        typer.echo(f"  {split}: " + (", ".join(parts) or "no photos"))
    if m.get("interrupted"):
        typer.echo("Interrupted: the model holds the best epoch so far.", err=True)


@train_app.command("classifier")
def train_classifier_cmd(
    corpus: CorpusOption = Path("."),
    target: Annotated[
        str, typer.Option("--target", help="label (city), tags or concepts (--labels).")
    ] = "label",
    labels: LabelsOption = None,
    head: HeadOption = "linear",
    hidden: HiddenOption = 1024,
    name: NameOption = None,
    features: FeaturesOption = None,
    split: SplitOption = None,
    top_tags: Annotated[int, typer.Option("--top-tags", min=2, help="tags: vocabulary size.")] = 100,
    min_tag_count: Annotated[int, typer.Option("--min-tag-count", min=1, help="tags: least uses.")] = 5,
    finetune_blocks: Annotated[
        int,
        typer.Option("--finetune-blocks", min=0, max=5, help="Also train the last N EfficientNet blocks."),
    ] = 0,
    epochs: EpochsOption = None,
    patience: PatienceOption = None,
    lr: LrOption = None,
    batch_size: BatchOption = None,
    seed: SeedOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train a classifier on the train split, early-stop on val, report on test, save it in the corpus."""
    from photocorpus.api import train_classifier

    settings = _learn_settings(features, split, epochs, patience, lr, batch_size, seed)
    with open_corpus(corpus) as c:
        report = train_classifier(
            c, target, labels=labels, head=head, hidden=hidden, name=name, top_tags=top_tags,
            min_tag_count=min_tag_count, finetune_blocks=finetune_blocks,
            on_epoch=_print_epochs(quiet or as_json), progress=not (quiet or as_json), **settings,
        )  # fmt: skip
    _print_metrics(report, as_json)
    if not as_json:
        typer.echo(f"Report: {Path(c.root) / report.path / 'report.html'}")


@train_app.command("semantic")
def train_semantic_cmd(
    corpus: CorpusOption = Path("."),
    text: Annotated[
        str,
        typer.Option(
            "--text",
            help="auto (minilm-tags when the photos' text is mostly bare tag lists, else minilm), "
            "minilm, minilm-tags, lda, word2vec or word2vec-tfidf.",
        ),
    ] = "auto",
    loss: Annotated[
        str | None,
        typer.Option(
            "--loss",
            help="cosine, sigmoid-ce (paper), infonce or hard-negative; default by caption kind (README).",
            show_default=False,
        ),
    ] = None,
    head: Annotated[
        str | None,
        typer.Option("--head", help="linear or mlp; default by caption kind (README).", show_default=False),
    ] = None,
    hidden: HiddenOption = 1024,
    temperature: Annotated[
        float | None,
        typer.Option(
            "--temperature", help="InfoNCE temperature; default by caption kind.", show_default=False
        ),
    ] = None,
    finetune_blocks: Annotated[
        int,
        typer.Option(
            "--finetune-blocks",
            min=0,
            max=5,
            help="Also train the last N EfficientNet-Lite0 blocks (reads the image files; slower).",
        ),
    ] = 0,
    name: NameOption = None,
    features: FeaturesOption = None,
    split: SplitOption = None,
    labels: LabelsOption = None,
    epochs: EpochsOption = None,
    patience: PatienceOption = None,
    lr: LrOption = None,
    batch_size: BatchOption = None,
    seed: SeedOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Learn a map from image features into a caption-embedding space (Gomez et al., ECCV-W 2018)."""
    from photocorpus.api import train_semantic

    settings = _learn_settings(features, split, epochs, patience, lr, batch_size, seed)
    with open_corpus(corpus) as c:
        report = train_semantic(
            c, text, loss=loss, head=head, hidden=hidden, temperature=temperature, name=name, labels=labels,
            finetune_blocks=finetune_blocks,
            on_epoch=_print_epochs(quiet or as_json), progress=not (quiet or as_json), **settings,
        )  # fmt: skip
    _print_metrics(report, as_json)


@app.command()
def predict(
    paths: Annotated[list[Path] | None, typer.Argument(help="Image files or folders to label.")] = None,
    model: Annotated[
        str, typer.Option("--model", "-m", help="Classifier name (see `photocorpus models`).")
    ] = "",
    corpus: CorpusOption = Path("."),
    top: Annotated[int, typer.Option("--top", min=1, max=100, help="Labels per photo.")] = 3,
    corpus_photos: Annotated[
        bool, typer.Option("--corpus-photos", help="Label the corpus's photos and store the labels.")
    ] = False,
    redo: Annotated[bool, typer.Option("--redo", help="With --corpus-photos: predict all again.")] = False,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Label image files and folders, or (--corpus-photos) the corpus's own photos, with a classifier."""
    from photocorpus.learn.dataset import LearnError
    from photocorpus.learn.registry import list_models

    with open_corpus(corpus) as c:
        if not model:
            found = list_models(c, "classifier")
            if not found:
                raise LearnError(
                    "no classifier in this corpus; train one with `photocorpus train classifier`"
                )
            model = found[0].name
        if corpus_photos:
            from photocorpus.interrupt import graceful_interrupt
            from photocorpus.learn.classifier import predict_corpus
            from photocorpus.progress import progress_bar

            with graceful_interrupt() as stop, progress_bar("predict", None, enabled=not quiet) as bar:
                done, left = predict_corpus(c, model, top_k=top, redo=redo, progress=bar, stop=stop)
            result = {"model": model, "predicted": done, "left": left}
            typer.echo(json.dumps(result) if as_json else f"{model}: labelled {done} photos ({left} left)")
            return
        if not paths:
            raise LearnError("give image files or folders to label, or --corpus-photos")
        from photocorpus.learn.classifier import predict_paths

        preds = predict_paths(c, model, paths, top_k=top)
    if as_json:
        typer.echo(json.dumps([p.to_json() for p in preds], indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(terminal_safe(model)))
    table.add_column("file")
    table.add_column("labels")
    for p in preds:
        labels_text = (p.error and f"[red]{escape(terminal_safe(p.error))}[/red]") or ", ".join(
            f"{escape(terminal_safe(lab))} {s:.2f}" for lab, s in p.labels
        )
        table.add_row(escape(terminal_safe(p.key)), labels_text)
    Console().print(table)


@app.command()
def search(
    query: Annotated[
        str | None, typer.Argument(help="Text query, e.g. 'snow ski' or 'beach +sunset -people'.")
    ] = None,
    image: Annotated[Path | None, typer.Option("--image", help="Search by an example image file.")] = None,
    corpus: CorpusOption = Path("."),
    k: Annotated[int, typer.Option("--k", min=1, max=10_000, help="Number of results.")] = 20,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Semantic model (default: newest).")
    ] = None,
    method: Annotated[
        str, typer.Option("--method", help="auto, semantic or bridge (caption-free).")
    ] = "auto",
    index: Annotated[str | None, typer.Option("--index", help="auto, flat, ivf or hnsw.")] = None,
    rebuild_index: Annotated[bool, typer.Option("--rebuild-index", help="Build the index afresh.")] = False,
    bridge_weight: Annotated[
        float,
        typer.Option(
            "--bridge-weight",
            help="Blend the ImageNet bridge into a semantic model's ranking: (1-W) z(semantic) + W "
            "z(bridge), 0 <= W < 1; 0 is off. 0.1-0.2 helped on MIRFLICKR, most on uncaptioned photos.",
        ),
    ] = 0.0,
    html: Annotated[bool, typer.Option("--html", help="Also write a thumbnail gallery page.")] = False,
    html_out: Annotated[Path | None, typer.Option("--html-out", help="Where to write the gallery.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Search the corpus by text (semantic model, or the ImageNet-label bridge) or by example image."""
    from photocorpus.api import search as run_search
    from photocorpus.learn.dataset import LearnError

    if (query is None) == (image is None):
        raise LearnError("give a text QUERY or --image FILE (not both)")
    with open_corpus(corpus) as c:
        results = run_search(
            c, query, image=image, k=k, model=model, method=method, index=index,
            rebuild_index=rebuild_index, bridge_weight=bridge_weight,
        )  # fmt: skip
        if results.index_action and results.index_action != "loaded":
            action, kind, count = results.index_action, results.index_kind, results.index_count
            typer.echo(f"Search index {action}: {kind}, {count} photos", err=True)
        hits = results.hits
        page = None
        if html or html_out:
            from photocorpus.learn.gallery import write_gallery

            label = query if query is not None else f"image {image}"
            page = write_gallery(
                c, hits, query=label, subtitle=results.subtitle, out=html_out, query_image=image
            )
    if as_json:
        typer.echo(json.dumps([h.to_json() for h in hits], indent=2, ensure_ascii=False))
    else:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        title = terminal_safe(query if query is not None else image)
        table = Table(title=f"{escape(title)} — {results.method}")
        for col in ("rank", "score", "id", "label", "caption"):
            table.add_column(col, overflow="fold", max_width=60 if col == "caption" else None)
        for h in hits:
            caption = h.caption if len(h.caption) <= 120 else h.caption[:119] + "…"
            table.add_row(
                str(h.rank),
                f"{h.score:.3f}",
                *(escape(terminal_safe(text)) for text in (h.source_id, h.label, caption)),
            )
        Console().print(table)
    if results.explanation:
        typer.echo(f"Bridge: {terminal_safe(results.explanation)}", err=True)
    if page is not None:
        typer.echo(f"Gallery: {page}", err=as_json)


@evaluate_app.command("retrieval")
def evaluate_retrieval(
    queries: Annotated[
        str | None, typer.Option("--queries", help="Query file, or 'instacities' (the paper's 24 queries).")
    ] = None,
    labels: LabelsOption = None,
    judgments: Annotated[
        Path | None, typer.Option("--judgments", help="CSV query,photo,relevant for P@k of free queries.")
    ] = None,
    corpus: CorpusOption = Path("."),
    k: Annotated[int, typer.Option("--k", min=1, max=1000, help="P@k cut-off.")] = 5,
    on: Annotated[str, typer.Option("--on", help="Rank the photos of: test, val, train or all.")] = "test",
    split: SplitOption = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Semantic model (default: newest).")
    ] = None,
    method: Annotated[str, typer.Option("--method", help="auto, semantic or bridge.")] = "auto",
    unjudged: Annotated[
        Path | None, typer.Option("--unjudged", help="Write unjudged top-k results here to judge.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """mAP of label queries (--labels; MIRFlickr protocol) or P@k of free queries (--judgments)."""
    from photocorpus.api import evaluate
    from photocorpus.learn.dataset import LearnError

    if labels is None and queries is None:
        raise LearnError("give --labels FILE (label queries) and/or --queries FILE|instacities")
    settings = {} if split is None else {"splits": split}
    with open_corpus(corpus) as c:
        report = evaluate(
            c, labels=labels, queries=queries, judgments=judgments, k=k, on=on, model=model, method=method,
            unjudged=unjudged, **settings,
        )  # fmt: skip
    result = report.as_dict()
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    typer.echo(f"{result['method']} on the {result['on']} photos")
    if "mAP" in result:
        for text, r in result["queries"].items():
            ap = "–" if r["ap"] is None else f"{r['ap']:.3f}"
            typer.echo(f"  {terminal_safe(text):<24} AP {ap}  ({r['positives']} relevant)")
        typer.echo(
            f"mAP {result['mAP']:.4f} over {len(result['queries'])} queries, {result['photos']} photos"
        )
    else:
        for text, r in result["queries"].items():
            typer.echo(f"  {terminal_safe(text):<24} P@{k} {r['precision']:.2f}  ({r['unjudged']} unjudged)")
        means = ", ".join(f"{g} {v:.3f}" for g, v in result[f"mean_P@{k}"].items())
        typer.echo(
            f"mean P@{k}: {means}; {len(result['unjudged'])} results unjudged"
            + (f" (written to {unjudged})" if unjudged else "")
        )


@app.command()
def models(corpus: CorpusOption = Path("."), as_json: JsonOption = False) -> None:
    """List the trained models of the corpus with their headline metrics."""
    from photocorpus.learn.registry import list_models

    with open_corpus(corpus) as c:
        entries = list_models(c)
    if as_json:
        typer.echo(json.dumps([e.__dict__ for e in entries], indent=2))
        return
    if not entries:
        typer.echo("No models yet: `photocorpus train classifier` or `photocorpus train semantic`.")
    for e in entries:
        test = e.metrics.get("test") or {}
        headline = next(
            (
                f"{key} {test[key]:.3f}"
                for key in ("accuracy", "mAP", "mean_cosine")
                if test.get(key) is not None
            ),
            "",
        )
        name, feature_set = terminal_safe(e.name), terminal_safe(e.feature_set)
        typer.echo(f"{name:<28} {e.kind:<11} {feature_set:<22} {headline}  ({e.created_at})")
