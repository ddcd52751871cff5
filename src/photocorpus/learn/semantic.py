"""The semantic model: map image features into a caption-embedding space ("learning from web data").

Gomez et al. (*Learning to Learn from Web Data through Deep Semantic Embeddings*, ECCV 2018 MULA)
train a CNN to regress each photo's caption embedding, then rank photos by the similarity of that
regression to a text query embedded the same way. No labels are needed: the captions supervise.

Here the CNN is frozen (featurize's EfficientNet-Lite0 features) and a linear or MLP head learns the
map on the train split, early-stopping on val. Three losses:

* ``sigmoid-ce``: the paper's sigmoid cross-entropy onto the embedding scaled to [0, 1] (per dimension,
  with the train split's min and max; the scaling is saved and inverted, so outputs live in the
  original text space and compare to queries there);
* ``cosine``: the paper's other choice, 1 - cos(prediction, caption embedding);
* ``infonce``: a contrastive loss over the batch (image i should be closer to caption i than to the
  other captions). Photos with identical captions (MIRFlickr's concept lists repeat a lot) are all
  counted as positives of each other instead of as false negatives;
* ``hard-negative``: a contrastive hinge on the *hardest* negative of the batch, both ways (VSE++,
  Faghri et al. 2018): ``max(0, margin - cos(i, t_i) + max_j cos(i, t_j))`` plus the same from the
  caption's side, with identical captions again never counted as negatives. It puts the whole gradient
  on the confusions that matter for ranking, where InfoNCE spreads it over every caption of the batch.

Retrieval uses the cosine between the unit-length prediction and the unit-length query.

``finetune_blocks=N`` also trains the last N blocks of EfficientNet-Lite0 (:mod:`photocorpus.learn.finetune`:
the frozen trunk runs once per photo, the tail and head train on its activations). The stored
features are then not the model's input, so training also embeds every photo with a file through the
tuned network and saves those vectors with the model (``photo_ids.npy``, ``embeddings.npy``): search
indexes them and never re-runs the CNN on corpus photos; only an example image (``search --image``)
goes through the network. Photos added after training are not searchable with such a model until it
is trained again.

Defaults depend on what the photos' text is (:func:`caption_kind`). Sentence captions (Instagram)
train on ``text.minilm`` with the cosine loss and a linear head. Tag lists (Flickr, MIRFLICKR) train on
``text.minilm-tags`` (per-tag MiniLM vectors, pooled) with :data:`TAG_DEFAULTS`: on the shared
MIRFLICKR photos that lifted concept mAP on held-out tagged photos from 0.56 to 0.69, and on
photos without any tags from 0.54 to 0.68 (median of 3 seeds; docs/benchmarks.md, "Learning from web
data").
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from photocorpus import feature_store
from photocorpus.learn import registry
from photocorpus.learn.dataset import (
    LabelFile,
    LearnError,
    common_ids,
    feature_rows,
    open_image_features,
    photo_meta,
)
from photocorpus.learn.heads import FeatureHead, FitResult, FitSettings, fit, predict_batched
from photocorpus.learn.splits import assign_splits, resolve_spec
from photocorpus.learn.text_space import TEXT_SPACES, text_feature_set
from photocorpus.notebook import HtmlReport

if TYPE_CHECKING:
    from photocorpus.backbones.efficientnet_lite import EfficientNetLite0
    from photocorpus.corpus import Corpus
    from photocorpus.corpus_files import ImageLocation
    from photocorpus.interrupt import StopFlag

LOSSES = ("sigmoid-ce", "cosine", "infonce", "hard-negative")
HARD_NEGATIVE_MARGIN = 0.2  # VSE++'s margin on cosine similarities
SENTENCE_DEFAULTS: dict[str, Any] = {
    "text": "minilm",
    "loss": "cosine",
    "head": "linear",
    "temperature": 0.05,
}
# InfoNCE's temperature for tags was chosen on the validation photos (0.02-0.3 tried, 0.1 and 0.2 tie;
# docs/benchmarks.md)
TAG_DEFAULTS: dict[str, Any] = {
    "text": "minilm-tags",
    "loss": "infonce",
    "head": "linear",
    "temperature": 0.1,
}
# Captions "are tags" when at least this share of the photos with any text have a bare tag list.
TAG_CAPTION_SHARE = 0.5
FORMAT_VERSION = registry.SEMANTIC_FORMAT_VERSION
SAME_TEXT_COS = 0.9999  # captions this similar count as the same text (InfoNCE positives, R@k hits)
RETRIEVAL_EVAL_MAX = 2000  # caption -> image recall is measured on at most this many photos per split


class SemanticModel(nn.Module):
    """A head plus, for ``sigmoid-ce``, the [0, 1] scaling of the text space (saved as buffers)."""

    def __init__(self, head_spec: dict[str, Any], loss: str) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise LearnError(f"loss must be one of {', '.join(LOSSES)}, not {loss!r}")
        self.loss_name = loss
        self.head = FeatureHead.from_spec(head_spec)
        dim = int(head_spec["out_dim"])
        self.register_buffer("lo", torch.zeros(dim))
        self.register_buffer("span", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def to_text_space(self, z: torch.Tensor) -> torch.Tensor:
        if self.loss_name == "sigmoid-ce":
            return torch.sigmoid(z) * self.span + self.lo
        return z

    def embed(self, features: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Unit-length joint-space vectors (float32) for rows of image features."""
        self.eval()
        outs: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(features), batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(features[start : start + batch_size], np.float32))
                outs.append(F.normalize(self.to_text_space(self(xb)), dim=1).numpy())
        if not outs:
            return np.zeros((0, int(self.lo.shape[0])), dtype=np.float32)
        return np.concatenate(outs).astype(np.float32, copy=False)


class FinetunedSemanticModel(SemanticModel):
    """The last ``blocks`` blocks of Lite0 (with its head conv and pooling) before the head: its input
    is the frozen trunk's activations (:func:`photocorpus.learn.finetune.trunk`), not stored features.
    The base network itself is not a submodule: only the tail is trained and saved."""

    def __init__(self, head_spec: dict[str, Any], loss: str, base: EfficientNetLite0, blocks: int) -> None:
        from photocorpus.learn.finetune import TailNet

        super().__init__(head_spec, loss)
        self.tail = TailNet(base, blocks, self.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(x)


def semantic_loss(model: SemanticModel, temperature: float) -> Any:
    """The training loss of ``model``'s loss name, as ``f(prediction, target) -> scalar``."""
    if model.loss_name == "sigmoid-ce":
        return lambda z, t: F.binary_cross_entropy_with_logits(z, t)
    if model.loss_name == "cosine":
        return lambda z, y: (1.0 - F.cosine_similarity(z, y, dim=1)).mean()

    def info_nce(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        zn, yn = F.normalize(z, dim=1), F.normalize(y, dim=1)
        logits = zn @ yn.T / temperature
        same = (yn @ yn.T > SAME_TEXT_COS).float()
        target = same / same.sum(dim=1, keepdim=True)
        image_to_text = -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        text_to_image = -(target * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
        return (image_to_text + text_to_image) / 2

    if model.loss_name == "hard-negative":
        return hardest_negative_hinge
    return info_nce


def hardest_negative_hinge(
    z: torch.Tensor, y: torch.Tensor, margin: float = HARD_NEGATIVE_MARGIN
) -> torch.Tensor:
    """VSE++'s max-violation loss over a batch; rows with the same caption are not negatives."""
    zn, yn = F.normalize(z, dim=1), F.normalize(y, dim=1)
    sims = zn @ yn.T
    positive = sims.diagonal()
    same = yn @ yn.T > SAME_TEXT_COS
    negatives = sims.masked_fill(same, -2.0)  # below any cosine: never the hardest
    image_side = F.relu(margin - positive + negatives.max(dim=1).values)
    text_side = F.relu(margin - positive + negatives.max(dim=0).values)
    return (image_side + text_side).mean()


def caption_kind(corpus: Corpus) -> str:
    """``tags`` when the corpus's text is mostly bare tag lists, else ``sentences``.

    A photo's text is a *bare tag list* when it has tags (``photos.tags``) or hashtags but its caption
    holds no words besides hashtags (the title is not counted: on Flickr it is as often a file name as
    a sentence). The corpus's text is tags when at least :data:`TAG_CAPTION_SHARE` of the photos with
    any text (tags, hashtags or caption words) have a bare tag list. Photos without any text do not
    count either way. MIRFLICKR imports and Flickr harvests of tagged photos without descriptions are
    tags; Instagram captions, which are sentences with hashtags, are sentences.
    """
    from photocorpus.caption_text import caption_description

    with_text = bare = 0
    rows = corpus.conn.execute("SELECT tags, hashtags, caption FROM photos")
    for tags, hashtags, caption in rows:
        has_tags = (tags or "[]").strip() != "[]" or (hashtags or "[]").strip() != "[]"
        has_words = bool(caption_description(caption))
        if has_tags or has_words:
            with_text += 1
            bare += has_tags and not has_words
    return "tags" if with_text and bare >= TAG_CAPTION_SHARE * with_text else "sentences"


def semantic_defaults(corpus: Corpus) -> dict[str, Any]:
    """The text space, loss, head and temperature ``train semantic`` uses when not told: see
    :func:`caption_kind`."""
    return dict(TAG_DEFAULTS if caption_kind(corpus) == "tags" else SENTENCE_DEFAULTS)


@dataclass
class SemanticReport(HtmlReport):
    name: str
    path: str
    metrics: dict[str, Any]
    settings: dict[str, Any]
    fit: FitResult = field(repr=False, default_factory=FitResult)
    model: SemanticModel | None = field(repr=False, default=None)  # the trained module, in memory

    @property
    def interrupted(self) -> bool:
        """Stopped early (Ctrl-C or ``stop``): the saved model holds the best epoch so far."""
        return self.fit.interrupted


def caption_retrieval(
    pred: np.ndarray, text: np.ndarray, ks: tuple[int, ...] = (1, 5, 10)
) -> dict[str, float]:
    """Caption -> image recall@k and median rank: each photo's caption queries all photos' predictions.

    A hit is any photo whose caption equals the query's (MIRFlickr has many identical concept lists).
    """
    p = pred / np.maximum(np.linalg.norm(pred, axis=1, keepdims=True), 1e-12)
    t = text / np.maximum(np.linalg.norm(text, axis=1, keepdims=True), 1e-12)
    sims = t @ p.T  # (queries × photos)
    same = (t @ t.T) > SAME_TEXT_COS
    best_hit = np.where(same, sims, -np.inf).max(axis=1)
    rank = (sims > best_hit[:, None]).sum(axis=1) + 1  # 1-based rank of the best matching photo
    out = {f"R@{k}": float((rank <= k).mean()) for k in ks}
    out["median_rank"] = float(np.median(rank))
    out["photos"] = len(p)
    return out


def _split_metrics(model: SemanticModel, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    if len(x) == 0:
        return {"n": 0}
    with torch.inference_mode():
        pred = model.to_text_space(torch.from_numpy(predict_batched(model, x))).numpy()
    cos = np.sum(pred * y, axis=1) / np.maximum(
        np.linalg.norm(pred, axis=1) * np.linalg.norm(y, axis=1), 1e-12
    )
    sub = slice(0, min(len(x), RETRIEVAL_EVAL_MAX))
    return {"n": len(x), "mean_cosine": float(cos.mean()), **caption_retrieval(pred[sub], y[sub])}


def train_semantic(
    corpus: Corpus,
    text: str = "auto",
    *,
    loss: str | None = None,
    head: str | None = None,
    hidden: int = 1024,
    dropout: float = 0.2,
    temperature: float | None = None,
    name: str | None = None,
    image_features: str | None = None,
    split: str | None = None,
    fit_settings: FitSettings | None = None,
    labels: LabelFile | None = None,
    finetune_blocks: int = 0,
    on_epoch: Any = None,
    progress: Callable[[int], None] | None = None,
    stop: StopFlag | None = None,
) -> SemanticReport:
    """Train, evaluate and save a semantic model; see the module docstring.

    ``text="auto"``, ``loss=None``, ``head=None`` and ``temperature=None`` take
    :func:`semantic_defaults` (by whether the captions are tags or sentences); given values always
    win. ``labels`` (a concept file such as MIRFLICKR's labels.csv) adds the text -> image concept mAP
    on val and test to the metrics, each concept name being its own query. ``finetune_blocks``: see
    the module docstring (``progress`` counts the images read for it).
    """
    chosen = text != "auto" and None not in (loss, head, temperature)
    kind = None if chosen else caption_kind(corpus)
    defaults = TAG_DEFAULTS if kind == "tags" else SENTENCE_DEFAULTS
    text = defaults["text"] if text == "auto" else text
    loss = loss or defaults["loss"]
    head = head or defaults["head"]
    temperature = defaults["temperature"] if temperature is None else temperature
    if text not in TEXT_SPACES:
        raise LearnError(f"text must be one of {', '.join(TEXT_SPACES)}, not {text!r}")
    if loss not in LOSSES:
        raise LearnError(f"loss must be one of {', '.join(LOSSES)}, not {loss!r}")
    if not 0 < temperature <= 10:
        raise LearnError("temperature must be in (0, 10]")
    cfg = corpus.settings.learn
    settings_fit = fit_settings or FitSettings(
        cfg.epochs, cfg.patience, cfg.batch_size, cfg.learning_rate, cfg.weight_decay, cfg.seed
    )
    name = name or f"semantic-{text}"
    image_fs = open_image_features(corpus, image_features)
    text_name = text_feature_set(text)
    if not feature_store.has_feature_set(corpus, text_name):
        raise LearnError(
            f"no caption embeddings {text_name!r}: run "
            f"`photocorpus featurize --text {'word2vec' if text == 'word2vec-tfidf' else text}` first"
        )
    text_fs = feature_store.open_feature_set(corpus, text_name)
    ids = common_ids(image_fs, text_fs)
    y_all = feature_rows(text_fs, ids)
    has_text = np.linalg.norm(y_all, axis=1) > 1e-9
    ids, y_all = ids[has_text], y_all[has_text]
    spec = resolve_spec(corpus, split or cfg.splits)
    finetune_info: dict[str, Any] | None = None
    if finetune_blocks:
        from photocorpus.learn.finetune import MAX_BLOCKS, load_base, trunk_activations

        if not 1 <= finetune_blocks <= MAX_BLOCKS:
            raise LearnError(f"finetune_blocks must be between 0 and {MAX_BLOCKS}, got {finetune_blocks}")
        base, digest = load_base()
        every = np.unique(image_fs.photo_ids())  # every photo search ranks, captioned or not
        meta = photo_meta(corpus, every.tolist())
        with_file = np.flatnonzero([p is not None for p in meta.paths])
        locations = corpus.image_locations([meta.paths[i] for i in with_file])  # type: ignore[misc]
        acts, ok, _errors = trunk_activations(base, finetune_blocks, locations, progress=progress, stop=stop)
        every = every[with_file][ok]  # unreadable files are left out, as featurize left them
        keep = np.isin(ids, every)
        ids, y_all = ids[keep], y_all[keep]
        x_all = acts[np.searchsorted(every, ids)]
        finetune_info = {"blocks": finetune_blocks, "weights_sha256": digest, "base": "efficientnet-lite0"}
    splits = assign_splits(corpus, ids, spec)
    masks = {s: splits == s for s in ("train", "val", "test")}
    if masks["train"].sum() < 2 or masks["val"].sum() < 1:
        raise LearnError(
            f"need captioned photos in train and val, found train={int(masks['train'].sum())} "
            f"val={int(masks['val'].sum())} (split {spec.describe()}); "
            "featurize more photos or change --split"
        )
    torch.manual_seed(settings_fit.seed)
    head_spec = {
        "kind": head,
        "in_dim": 1280 if finetune_blocks else image_fs.dims,
        "out_dim": text_fs.dims,
        "hidden": hidden,
        "dropout": dropout,
    }
    params = None
    if finetune_blocks:
        from photocorpus.learn.finetune import param_groups, pooled_features

        model: SemanticModel = FinetunedSemanticModel(head_spec, loss, base, finetune_blocks)
        model.head.fit_standardiser(pooled_features(model.tail, x_all[masks["train"]]))  # type: ignore[arg-type]
        params = param_groups(model.tail, settings_fit.learning_rate)  # type: ignore[arg-type]
    else:
        x_all = feature_rows(image_fs, ids)
        model = SemanticModel(head_spec, loss)
        model.head.fit_standardiser(x_all[masks["train"]])
    targets = y_all
    if loss == "sigmoid-ce":
        lo = y_all[masks["train"]].min(axis=0)
        span = np.maximum(y_all[masks["train"]].max(axis=0) - lo, 1e-6)
        model.lo.copy_(torch.from_numpy(lo))
        model.span.copy_(torch.from_numpy(span))
        targets = np.clip((y_all - lo) / span, 0.0, 1.0).astype(np.float32)
    result = fit(
        model,
        semantic_loss(model, temperature),
        x_all[masks["train"]],
        targets[masks["train"]],
        x_all[masks["val"]],
        targets[masks["val"]],
        settings_fit,
        params=params,
        on_epoch=on_epoch,
        stop=stop,
    )
    metrics: dict[str, Any] = result.summary(masks)
    for s in ("val", "test"):
        metrics[s] = _split_metrics(model, x_all[masks[s]], y_all[masks[s]])
    if labels is not None:
        from photocorpus.learn.evaluate import concept_map_for_embeddings
        from photocorpus.learn.text_space import query_encoder

        encode = query_encoder(corpus, text)
        for s in ("val", "test"):
            joint = model.embed(x_all[masks[s]])
            metrics[s]["concepts"] = concept_map_for_embeddings(corpus, labels, ids[masks[s]], joint, encode)
    settings: dict[str, Any] = {
        "caption_kind": kind,  # None: every choice was given, the data was not consulted
        "text": text,
        "text_features": text_name,
        "image_features": image_fs.name,
        "loss": loss,
        "head": head_spec,
        "temperature": temperature,
        "split": spec.describe(),
        "fit": settings_fit.__dict__,
        "text_model_id": text_fs.model_id,
        "image_model_id": image_fs.model_id,
        "finetune": finetune_info,
    }
    # a fine-tuned model's photo embeddings, for search (see the module docstring)
    stored = (every, model.embed(acts, batch_size=256)) if finetune_blocks else None

    def write(folder: Path) -> None:
        torch.save(model.state_dict(), folder / "model.pt")
        if stored is not None:
            np.save(folder / registry.PHOTO_IDS_FILE, stored[0].astype(np.int64))
            np.save(folder / registry.EMBEDDINGS_FILE, stored[1].astype(np.float32))
        info = {
            "format": FORMAT_VERSION,
            "kind": "semantic",
            **settings,
            "fingerprint": file_sha256(folder / "model.pt"),
        }
        (folder / "model.json").write_text(json.dumps(info, indent=2, sort_keys=True), encoding="utf-8")

    entry = registry.save_model(
        corpus,
        name=name,
        kind="semantic",
        feature_set=image_fs.name,
        settings=settings,
        metrics=jsonable(metrics),
        write=write,
    )
    return SemanticReport(
        name=name, path=entry.path, metrics=entry.metrics, settings=settings, fit=result, model=model
    )


@dataclass
class LoadedSemantic:
    """A semantic model read back from the corpus, ready to embed image features (or, fine-tuned,
    trunk activations: :meth:`embed_files` runs the whole network on image files)."""

    entry: registry.ModelEntry
    info: dict[str, Any]
    model: SemanticModel
    base: EfficientNetLite0 | None = None  # the frozen trunk of a fine-tuned model

    @property
    def text_space(self) -> str:
        return str(self.info["text"])

    @property
    def fingerprint(self) -> str:
        return str(self.info["fingerprint"])

    def embed(self, features: np.ndarray) -> np.ndarray:
        return self.model.embed(features)

    def embed_files(self, paths: list[Path | ImageLocation]) -> tuple[np.ndarray, np.ndarray]:
        """Joint-space vectors of the readable image files through the fine-tuned network, and a mask
        of which were read."""
        from photocorpus.learn.finetune import trunk_activations

        if self.base is None:
            raise LearnError(f"model {self.entry.name!r} is not fine-tuned: embed its image features")
        acts, ok, _errors = trunk_activations(self.base, int(self.info["finetune"]["blocks"]), paths)
        return self.embed(acts), ok


def load_semantic(corpus: Corpus, name: str | None = None) -> LoadedSemantic:
    """Load a semantic model by name, or the newest one."""
    if name is None:
        found = registry.list_models(corpus, "semantic")
        if not found:
            raise LearnError("no semantic model in this corpus; train one with `photocorpus train semantic`")
        entry = found[0]
    else:
        entry = registry.get_model(corpus, name)
    info, state = registry.load_saved(corpus, entry, "semantic", FORMAT_VERSION)
    base = None
    if info.get("finetune"):
        from photocorpus.learn.finetune import load_base

        base, digest = load_base()
        if digest != info["finetune"]["weights_sha256"]:
            raise LearnError(
                "the packaged EfficientNet-Lite0 weights changed since this semantic model was "
                f"fine-tuned; train {entry.name!r} again"
            )
        model: SemanticModel = FinetunedSemanticModel(
            info["head"], info["loss"], base, int(info["finetune"]["blocks"])
        )
    else:
        model = SemanticModel(info["head"], info["loss"])
    model.load_state_dict(state, strict=True)
    model.eval()
    return LoadedSemantic(entry=entry, info=info, model=model, base=base)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def jsonable(value: Any) -> Any:
    """NaN/inf become None so metrics stay valid JSON."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
