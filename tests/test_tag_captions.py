"""Learning from tag lists: the ``minilm-tags`` caption embedding, "captions are tags" and the defaults
it switches, the hard-negative loss, and seeded determinism of training on tags.

The photos are 40 real MIRFLICKR photos imported from a folder laid out like the MIRFLICKR-25K download
(``meta/tags/tags<N>.txt``) with their real Flickr tags, so tags reach ``photos.tags`` through the
ordinary importer. Image features are seeded random rows written straight into the feature store: what
is under test is how tag text becomes targets and how training on them behaves, not the CNN.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import photocorpus as pc
from photocorpus import feature_store
from photocorpus.corpus import Corpus
from photocorpus.errors import ParameterError
from photocorpus.features.text_embed import TextEmbedError, embed_captions
from photocorpus.importing import import_folder
from photocorpus.learn.dataset import LearnError
from photocorpus.learn.heads import FitSettings
from photocorpus.learn.semantic import (
    SENTENCE_DEFAULTS,
    TAG_DEFAULTS,
    caption_kind,
    hardest_negative_hinge,
    train_semantic,
)
from photocorpus.learn.text_space import minilm_encoder
from photocorpus.records import PhotoRecord
from tests.conftest import run_cli, shared_data

N_PHOTOS = 40
FAST = FitSettings(epochs=8, patience=8, batch_size=16, learning_rate=3e-3, seed=0)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _fake_image_features(corpus: Corpus, seed: int = 7) -> None:
    ids = np.array(sorted(i for (i,) in corpus.conn.execute("SELECT id FROM photos")), dtype=np.int64)
    rows = np.random.default_rng(seed).standard_normal((len(ids), 32)).astype(np.float32)
    feature_store.append_rows(corpus, "efficientnet-lite0", ids, rows, model_id="random rows (test)")


@pytest.fixture(scope="module")
def tagged_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    """A MIRFLICKR-25K-shaped folder of the first tagged photos, and their tags by source id."""
    tags_csv = shared_data("mirflickr25k/tags.csv")
    images = shared_data("mirflickr25k/images")
    with open(tags_csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[:N_PHOTOS]
    folder = tmp_path_factory.mktemp("mir-tags") / "mirflickr"
    (folder / "meta" / "tags").mkdir(parents=True)
    tags: dict[str, list[str]] = {}
    for row in rows:
        number = row["image"][2:-4]
        shutil.copyfile(images / row["image"], folder / row["image"])
        (folder / "meta" / "tags" / f"tags{number}.txt").write_text("\n".join(row["tags"].split()) + "\n")
        tags[number] = row["tags"].split()
    return folder, tags


def _tag_corpus(path: Path, source: Path) -> Corpus:
    corpus = Corpus.create(path)
    assert import_folder(corpus, source, workers=1).imported == N_PHOTOS
    return corpus


def _rows_by_source(corpus: Corpus, name: str) -> dict[str, np.ndarray]:
    fs = feature_store.open_feature_set(corpus, name)
    sources = dict(corpus.conn.execute("SELECT id, source_id FROM photos"))
    matrix = np.asarray(fs.matrix(), dtype=np.float32)
    return {sources[int(pid)]: matrix[i] for i, pid in enumerate(fs.photo_ids())}


# ------------------------------------------------------------------------------ tag list -> one vector
def test_mean_pooling_is_the_unit_mean_of_each_tags_own_minilm_vector(
    tmp_path: Path, tagged_source: tuple[Path, dict[str, list[str]]]
) -> None:
    folder, tags = tagged_source
    with _tag_corpus(tmp_path / "c", folder) as corpus:
        (report,) = embed_captions(corpus, "minilm-tags")
        rows = _rows_by_source(corpus, "text.minilm-tags")
    assert report.computed == N_PHOTOS and report.empty == 0
    encode = minilm_encoder()
    for number in list(tags)[:5]:
        per_tag = np.stack([encode([t])[0] for t in dict.fromkeys(tags[number])])  # one call per tag
        expected = _unit(per_tag.mean(axis=0))
        assert np.allclose(rows[number], expected, atol=2e-3), number  # float16 storage
        assert not np.allclose(rows[number], _unit(encode([" ".join(tags[number])])[0]), atol=2e-2)


def test_joined_pooling_and_a_changed_pooling_needs_retrain(
    tmp_path: Path, tagged_source: tuple[Path, dict[str, list[str]]]
) -> None:
    folder, tags = tagged_source
    number = next(iter(tags))
    with _tag_corpus(tmp_path / "c", folder) as corpus:
        embed_captions(corpus, "minilm-tags", tag_pooling="mean")
        with pytest.raises(TextEmbedError, match=r"pooled by mean.*--retrain"):
            embed_captions(corpus, "minilm-tags", tag_pooling="joined")  # never a silent no-op
        embed_captions(corpus, "minilm-tags", tag_pooling="joined", retrain=True)
        rows = _rows_by_source(corpus, "text.minilm-tags")
    joined = _unit(minilm_encoder()([" ".join(tags[number])])[0])
    assert np.allclose(rows[number], joined, atol=2e-3)


def test_hashtags_stand_in_for_tags_and_photos_without_any_get_a_zero_row(tmp_path: Path) -> None:
    with Corpus.create(tmp_path / "c") as corpus:
        ids = corpus.add_photos(
            [
                PhotoRecord(source="instagram", source_id="1", labels=["x"], caption="#Beach #sunset"),
                PhotoRecord(source="instagram", source_id="2", labels=["x"], hashtags=["beach", "sunset"]),
                PhotoRecord(source="instagram", source_id="3", labels=["x"]),
            ]
        )
        from photocorpus.features.tag_embed import photo_tags

        found = photo_tags(corpus, ids)
    assert found[ids[1]] == ["beach", "sunset"]
    assert found[ids[2]] == []


# ------------------------------------------------------------------------ captions are tags: defaults
def test_caption_kind_reads_the_share_of_bare_tag_lists(tmp_path: Path) -> None:
    def kind(records: list[PhotoRecord]) -> str:
        with Corpus.create(tmp_path / f"c{len(list(tmp_path.iterdir()))}") as corpus:
            corpus.add_photos(records)
            return caption_kind(corpus)

    tags = [
        PhotoRecord(source="flickr", source_id=str(i), labels=["x"], tags=["dog", "park"]) for i in range(3)
    ]
    sentence = [
        PhotoRecord(
            source="instagram", source_id=f"s{i}", labels=["x"], caption="Walking the dog in the park #dog",
            hashtags=["dog"],
        )
        for i in range(4)
    ]  # fmt: skip
    silent = [PhotoRecord(source="flickr", source_id=f"n{i}", labels=["x"]) for i in range(9)]
    assert kind(tags + silent) == "tags"  # photos without text do not count
    assert kind(sentence + silent) == "sentences"
    assert kind(tags + sentence) == "sentences"  # 3 of 7 bare tag lists: under half
    assert kind(tags + sentence[:3]) == "tags"  # 3 of 6: half is enough
    assert kind(silent) == "sentences"


def test_train_semantic_defaults_to_the_tag_space_for_tagged_photos(
    tmp_path: Path, tagged_source: tuple[Path, dict[str, list[str]]]
) -> None:
    folder, _tags = tagged_source
    with _tag_corpus(tmp_path / "c", folder) as corpus:
        _fake_image_features(corpus)
        embed_captions(corpus, "minilm-tags")
        report = train_semantic(corpus, split="hash:60/20/20", fit_settings=FAST)
        with pytest.raises(LearnError, match=r"featurize --text minilm\b"):
            train_semantic(corpus, "minilm", split="hash:60/20/20", fit_settings=FAST)
    assert report.settings["caption_kind"] == "tags"
    chosen = ("text", "loss", "temperature")
    assert {k: report.settings[k] for k in chosen} == {k: TAG_DEFAULTS[k] for k in chosen}
    assert report.settings["head"]["kind"] == TAG_DEFAULTS["head"]
    assert report.settings["text_features"] == "text.minilm-tags"


def test_sentence_captions_keep_the_sentence_defaults(tmp_path: Path) -> None:
    with Corpus.create(tmp_path / "c") as corpus:
        records = [
            PhotoRecord(
                source="instagram", source_id=str(i), labels=["x"], caption=f"Sunset number {i} at the pier"
            )
            for i in range(30)
        ]
        ids = corpus.add_photos(records)
        _fake_image_features(corpus)
        vecs = np.random.default_rng(1).standard_normal((len(ids), 8)).astype(np.float32)
        feature_store.append_rows(corpus, "text.minilm", np.array(ids), vecs, model_id="random (test)")
        report = train_semantic(corpus, split="hash:60/20/20", fit_settings=FAST)
    assert report.settings["caption_kind"] == "sentences"
    assert report.settings["text"] == SENTENCE_DEFAULTS["text"] == "minilm"
    assert report.settings["loss"] == SENTENCE_DEFAULTS["loss"] == "cosine"
    assert report.settings["head"]["kind"] == "linear"


# -------------------------------------------------------------------------------- determinism, loss
def test_training_on_tags_is_deterministic_with_a_seed(
    tmp_path: Path, tagged_source: tuple[Path, dict[str, list[str]]]
) -> None:
    folder, _tags = tagged_source
    with _tag_corpus(tmp_path / "c", folder) as corpus:
        _fake_image_features(corpus)
        embed_captions(corpus, "minilm-tags")
        x = np.random.default_rng(3).standard_normal((10, 32)).astype(np.float32)

        def outputs(seed: int, name: str) -> np.ndarray:
            settings = FitSettings(**{**FAST.__dict__, "seed": seed})
            report = train_semantic(corpus, name=name, split="hash:60/20/20", fit_settings=settings)
            assert report.model is not None
            return report.model.embed(x)

        first, again, other = outputs(0, "a"), outputs(0, "b"), outputs(1, "c")
    assert np.array_equal(first, again)
    assert not np.allclose(first, other, atol=1e-4)


def test_hard_negative_loss_uses_the_hardest_other_caption_and_skips_identical_ones() -> None:
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # captions 1 and 2 are the same text
    z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    # row 0: positive 1, hardest negative max(0, 0) = 0 -> no violation either way
    # row 1: positive 0.8, its only negative is caption 0 (0.6): image side relu(0.2 - 0.8 + 0.6) = 0;
    #        caption 1's negatives are images 0 (0) only -> 0
    # row 2: positive 1, negative caption 0 (0) -> 0; caption 2's hardest negative image 0 -> 0
    # caption 0's side: its hardest negative image is 1 (0.6): relu(0.2 - 1 + 0.6) = 0
    assert float(hardest_negative_hinge(z, y)) == pytest.approx(0.0, abs=1e-6)
    z_bad = torch.tensor([[0.6, 0.8], [0.6, 0.8], [0.0, 1.0]])
    # row 0: positive 0.6, hardest negative caption (1 or 2) 0.8: 0.2 - 0.6 + 0.8 = 0.4; caption 0's
    # hardest negative image: 1 (0.6) -> 0.2 - 0.6 + 0.6 = 0.2. Rows 1, 2: image side relu(0.2-0.8+0.6)=0,
    # relu(0.2-1+0)=0; caption 1 and 2 sides: hardest negative image 0 (0.8): 0.2-0.8+0.8=0.2, 0.2-1+0.8=0
    assert float(hardest_negative_hinge(z_bad, y)) == pytest.approx((0.4 + 0.2 + 0.2) / 3, abs=1e-5)


# ------------------------------------------------------------------------------------- API and CLI
def test_bad_tag_pooling_and_loss_are_refused_before_any_work(
    tmp_path: Path, tagged_source: tuple[Path, dict[str, list[str]]]
) -> None:
    folder, _tags = tagged_source
    with _tag_corpus(tmp_path / "c", folder) as corpus:
        with pytest.raises(ParameterError, match="tag_pooling"):
            pc.embed_captions(corpus, "minilm-tags", tag_pooling="max")
        with pytest.raises(ParameterError, match="loss"):
            pc.train_semantic(corpus, loss="hinge")
        assert not feature_store.has_feature_set(corpus, "text.minilm-tags")
    proc = run_cli(
        "featurize", "-C", str(tmp_path / "c"), "--text", "minilm-tags", "--tag-pooling", "max", check=False
    )
    assert proc.returncode != 0 and "tag_pooling" in proc.stdout + proc.stderr
