"""Weak-label classifiers on frozen image features (or with the last blocks fine-tuned), and predict.

``train_classifier(corpus, "label")`` learns the photo's primary label (the InstaCities1M city: the
seed's AlexNet reached 26.3 % on 10 cities); ``"tags"`` the most frequent user tags; ``"concepts"``
the columns of a label file. It trains on the train split, keeps the epoch with the best val loss,
and reports on test: accuracy, per-class accuracy and a confusion matrix (PNG + page) for a
multi-class target; per-label AP and mAP for a multi-label one. Everything lands in
``models/<name>/`` and the catalog (:mod:`photocorpus.learn.registry`).

``predict`` labels image files and folders (features computed on the fly with the same ONNX
EfficientNet-Lite0 featurize uses), or the corpus's own photos, whose top labels it stores in the
``model_predictions`` table.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from photocorpus import feature_store
from photocorpus.corpus_files import ImageLocation
from photocorpus.learn import registry
from photocorpus.learn.charts import confusion_png, report_html
from photocorpus.learn.dataset import (
    LabelFile,
    LearnError,
    build_targets,
    feature_rows,
    open_image_features,
    photo_meta,
)
from photocorpus.learn.heads import FeatureHead, FitResult, FitSettings, fit, predict_batched
from photocorpus.learn.metrics import classification_report, multilabel_report
from photocorpus.learn.semantic import file_sha256, jsonable
from photocorpus.learn.splits import assign_splits, resolve_spec
from photocorpus.notebook import HtmlReport
from photocorpus.records import utc_now

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus
    from photocorpus.interrupt import StopFlag

FORMAT_VERSION = 1
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp"})


@dataclass
class ClassifierReport(HtmlReport):
    name: str
    path: str
    metrics: dict[str, Any]
    settings: dict[str, Any]
    fit: FitResult = field(repr=False, default_factory=FitResult)
    model: torch.nn.Module | None = field(repr=False, default=None)  # the trained module, in memory

    @property
    def interrupted(self) -> bool:
        """Stopped early (Ctrl-C or ``stop``): the saved model holds the best epoch so far."""
        return self.fit.interrupted


def _loss(multilabel: bool) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if multilabel:
        return lambda z, y: F.binary_cross_entropy_with_logits(z, y)
    return lambda z, y: F.cross_entropy(z, y)


def _probabilities(logits: np.ndarray, multilabel: bool) -> np.ndarray:
    t = torch.from_numpy(logits)
    return (torch.sigmoid(t) if multilabel else torch.softmax(t, dim=1)).numpy()


def _split_report(probs: np.ndarray, truth: np.ndarray, names: list[str], multilabel: bool) -> dict[str, Any]:
    if len(probs) == 0:
        return {"n": 0}
    if multilabel:
        return multilabel_report(probs, truth, names)
    return classification_report(truth, probs.argmax(axis=1), names)


def train_classifier(
    corpus: Corpus,
    target: str = "label",
    *,
    labels: LabelFile | None = None,
    head: str = "linear",
    hidden: int = 1024,
    dropout: float = 0.2,
    name: str | None = None,
    image_features: str | None = None,
    split: str | None = None,
    fit_settings: FitSettings | None = None,
    top_tags: int = 100,
    min_tag_count: int = 5,
    finetune_blocks: int = 0,
    on_epoch: Any = None,
    progress: Callable[[int], None] | None = None,
    stop: StopFlag | None = None,
) -> ClassifierReport:
    """Train, evaluate and save a classifier; see the module docstring."""
    cfg = corpus.settings.learn
    settings_fit = fit_settings or FitSettings(
        cfg.epochs, cfg.patience, cfg.batch_size, cfg.learning_rate, cfg.weight_decay, cfg.seed
    )
    name = name or f"classifier-{target}"
    image_fs = open_image_features(corpus, image_features)
    ids = np.unique(image_fs.photo_ids())
    meta = photo_meta(corpus, ids.tolist())
    spec = resolve_spec(corpus, split or cfg.splits)
    splits = assign_splits(corpus, ids, spec)
    targets = build_targets(
        target, meta, splits == "train", labels=labels, top_tags=top_tags, min_tag_count=min_tag_count
    )
    usable = targets.has_target & (splits != "")
    if not targets.multilabel:
        usable &= targets.values >= 0
    if finetune_blocks:
        usable &= np.array([p is not None for p in meta.paths])
    masks = {s: usable & (splits == s) for s in ("train", "val", "test")}
    if masks["train"].sum() < 2 or masks["val"].sum() < 1:
        raise LearnError(
            f"need labelled photos in train and val, found train={int(masks['train'].sum())} "
            f"val={int(masks['val'].sum())} (split {spec.describe()})"
        )
    y = targets.values.astype(np.float32) if targets.multilabel else targets.values.astype(np.int64)
    torch.manual_seed(settings_fit.seed)
    head_spec = {
        "kind": head,
        "in_dim": image_fs.dims,
        "out_dim": len(targets.names),
        "hidden": hidden,
        "dropout": dropout,
    }
    module: torch.nn.Module
    finetune_info: dict[str, Any] | None = None
    params = None
    if finetune_blocks:
        from photocorpus.learn.finetune import (
            TailNet,
            load_base,
            param_groups,
            pooled_features,
            trunk_activations,
        )

        base, digest = load_base()
        picked = np.flatnonzero(usable)
        paths = corpus.image_locations([meta.paths[i] for i in picked])  # type: ignore[arg-type]
        acts, ok, _errors = trunk_activations(base, finetune_blocks, paths, progress=progress, stop=stop)
        readable = picked[ok]
        for s in masks:
            masks[s] = np.isin(np.arange(len(ids)), readable) & masks[s]
        x_all = np.zeros((len(ids), *acts.shape[1:]), dtype=np.float16)
        x_all[readable] = acts
        head_spec["in_dim"] = 1280
        tail = TailNet(base, finetune_blocks, FeatureHead.from_spec(head_spec))
        tail.head.fit_standardiser(pooled_features(tail, x_all[masks["train"]]))
        module, params = tail, param_groups(tail, settings_fit.learning_rate)
        finetune_info = {"blocks": finetune_blocks, "weights_sha256": digest, "base": "efficientnet-lite0"}
    else:
        x_all = feature_rows(image_fs, ids)
        feature_head = FeatureHead.from_spec(head_spec)
        feature_head.fit_standardiser(x_all[masks["train"]])
        module = feature_head
    result = fit(
        module,
        _loss(targets.multilabel),
        x_all[masks["train"]],
        y[masks["train"]],
        x_all[masks["val"]],
        y[masks["val"]],
        settings_fit,
        params=params,
        on_epoch=on_epoch,
        stop=stop,
    )
    metrics: dict[str, Any] = result.summary(masks)
    for s in ("val", "test"):
        probs = _probabilities(predict_batched(module, x_all[masks[s]], batch_size=256), targets.multilabel)
        metrics[s] = _split_report(probs, y[masks[s]], targets.names, targets.multilabel)
    settings: dict[str, Any] = {
        "target": target,
        "classes": targets.names,
        "multilabel": targets.multilabel,
        "image_features": image_fs.name,
        "image_model_id": image_fs.model_id,
        "head": head_spec,
        "split": spec.describe(),
        "fit": settings_fit.__dict__,
        "labels_file": labels.path if labels else None,
        "top_tags": top_tags if target == "tags" else None,
        "min_tag_count": min_tag_count if target == "tags" else None,
        "finetune": finetune_info,
    }
    metrics = jsonable(metrics)

    def write(folder: Path) -> None:
        torch.save(module.state_dict(), folder / "model.pt")
        info = {
            "format": FORMAT_VERSION,
            "kind": "classifier",
            **settings,
            "fingerprint": file_sha256(folder / "model.pt"),
        }
        (folder / "model.json").write_text(json.dumps(info, indent=2, sort_keys=True), encoding="utf-8")
        test = metrics.get("test") or {}
        has_cm = "confusion_matrix" in test
        if has_cm:
            confusion_png(
                np.asarray(test["confusion_matrix"]),
                targets.names,
                folder / "confusion.png",
                title=f"{name}: test accuracy {test.get('accuracy', 0):.3f}",
            )
        (folder / "report.html").write_text(report_html(name, info, metrics, has_cm), encoding="utf-8")

    entry = registry.save_model(
        corpus,
        name=name,
        kind="classifier",
        feature_set=image_fs.name,
        settings=settings,
        metrics=metrics,
        write=write,
    )
    return ClassifierReport(
        name=name, path=entry.path, metrics=entry.metrics, settings=settings, fit=result, model=module
    )


# ------------------------------------------------------------------------------------------ loading
@dataclass
class LoadedClassifier:
    entry: registry.ModelEntry
    info: dict[str, Any]
    head: FeatureHead | None  # frozen-feature classifiers
    finetuned: Any = None  # photocorpus.learn.finetune.FinetunedNet for fine-tuned ones
    corpus: Corpus | None = None  # where a fused feature set's inputs are looked up (predict on files)

    @property
    def classes(self) -> list[str]:
        return list(self.info["classes"])

    @property
    def multilabel(self) -> bool:
        return bool(self.info["multilabel"])

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """Probabilities (softmax or sigmoid) for rows of the model's image features."""
        if self.head is None:
            raise LearnError(
                f"{self.entry.name!r} was fine-tuned: it predicts from image files, not stored features"
            )
        return _probabilities(predict_batched(self.head, features), self.multilabel)

    def predict_files(
        self, paths: Sequence[Path | ImageLocation]
    ) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """Probabilities for the readable files (in order) and (position, error) for the others."""
        if self.finetuned is not None:
            logits, _ok, errors = self.finetuned.logits_for_files(paths)
            return _probabilities(logits, self.multilabel), sorted(errors.items())
        from photocorpus.learn.image_file_features import image_files_features

        features, errs = image_files_features(list(paths), self.info["image_features"], corpus=self.corpus)
        return self.predict_features(features), errs


def load_classifier(corpus: Corpus, name: str) -> LoadedClassifier:
    entry = registry.get_model(corpus, name)
    info, state = registry.load_saved(corpus, entry, "classifier", FORMAT_VERSION)
    if info.get("finetune"):
        from photocorpus.learn.finetune import FinetunedNet

        return LoadedClassifier(entry, info, None, FinetunedNet(info, state), corpus)
    head = FeatureHead.from_spec(info["head"])
    head.load_state_dict(state, strict=True)
    head.eval()
    return LoadedClassifier(entry, info, head, corpus=corpus)


# ------------------------------------------------------------------------------------------ predict
@dataclass(frozen=True)
class Prediction:
    """Top labels of one photo or file; ``error`` instead when it could not be read."""

    key: str  # file path, or the photo's source id
    photo_id: int | None
    labels: list[tuple[str, float]]
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "photo_id": self.photo_id,
            "labels": [{"label": lab, "score": round(s, 6)} for lab, s in self.labels],
            "error": self.error,
        }


def expand_image_paths(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files as given, and the images inside folders (recursively, sorted; hidden entries skipped)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                out.extend(
                    Path(dirpath, f)
                    for f in sorted(filenames)
                    if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTENSIONS
                )
        else:
            out.append(p)
    return out


def _top(probs: np.ndarray, names: list[str], k: int) -> list[tuple[str, float]]:
    order = np.lexsort((np.arange(len(probs)), -probs))[:k]
    return [(names[i], float(probs[i])) for i in order]


def predict_paths(
    corpus: Corpus, name: str, paths: Sequence[str | os.PathLike[str]], *, top_k: int = 3
) -> list[Prediction]:
    """Label image files and folders; an unreadable file gets an ``error``, never stops the run."""
    model = load_classifier(corpus, name)
    files = expand_image_paths(paths)
    if not files:
        raise LearnError("no image files found in the given paths")
    out: list[Prediction] = []
    for start in range(0, len(files), 256):
        chunk = files[start : start + 256]
        probs, errors = model.predict_files(chunk)
        bad = dict(errors)
        row = 0
        for i, path in enumerate(chunk):
            if i in bad:
                out.append(Prediction(str(path), None, [], error=bad[i]))
                continue
            out.append(Prediction(str(path), None, _top(probs[row], model.classes, top_k)))
            row += 1
    return out


def predict_corpus(
    corpus: Corpus,
    name: str,
    *,
    top_k: int = 3,
    redo: bool = False,
    progress: Callable[[int], None] | None = None,
    stop: StopFlag | None = None,
) -> tuple[int, int]:
    """Store the top labels of every featurized photo without predictions yet; returns (done, pending)."""
    model = load_classifier(corpus, name)
    if redo:
        with corpus.transaction() as conn:
            conn.execute("DELETE FROM model_predictions WHERE model = ?", (name,))
    done_ids = {
        r[0]
        for r in corpus.conn.execute(
            "SELECT DISTINCT photo_id FROM model_predictions WHERE model = ?", (name,)
        )
    }
    if model.finetuned is None:
        fs = feature_store.open_feature_set(corpus, model.info["image_features"])
        candidates = np.unique(fs.photo_ids())
    else:
        candidates = np.array(
            sorted(r[0] for r in corpus.conn.execute("SELECT photo_id FROM files")), dtype=np.int64
        )
    todo = np.array([i for i in candidates.tolist() if i not in done_ids], dtype=np.int64)
    done = 0
    for start in range(0, len(todo), 1024):
        chunk = todo[start : start + 1024]
        if model.finetuned is None:
            probs = model.predict_features(feature_rows(fs, chunk))
            kept = chunk
        else:
            meta = photo_meta(corpus, chunk.tolist())
            paths = corpus.image_locations([p for p in meta.paths if p])
            with_file = np.array([p is not None for p in meta.paths])
            probs, errors = model.predict_files(paths)
            bad = {e[0] for e in errors}
            kept = chunk[with_file][[i for i in range(len(paths)) if i not in bad]]
        now = utc_now()
        rows = [
            (int(pid), name, rank, label, float(score), now)
            for pid, p in zip(kept.tolist(), probs, strict=True)
            for rank, (label, score) in enumerate(_top(p, model.classes, top_k), start=1)
        ]
        with corpus.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO model_predictions (photo_id, model, rank, label, score, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        done += len(kept)
        if progress is not None:
            progress(len(chunk))
        if stop:
            break
    return done, len(todo) - done
