"""examples/quickstart.ipynb runs green through a real Jupyter kernel, and shows what it promises:
the corpus's counts, a DataFrame of the train split, and search results as thumbnails with their
(escaped) captions."""

from __future__ import annotations

import csv
import html
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT, shared_data

NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"


def _outputs(cell: dict) -> tuple[str, str]:
    """(all text/html, all stream and text/plain text) of a code cell's outputs."""
    htmls, texts = [], []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            texts.append(out["text"])
        elif out["output_type"] in ("execute_result", "display_data"):
            htmls.append(out["data"].get("text/html", ""))
            texts.append(out["data"].get("text/plain", ""))
        elif out["output_type"] == "error":
            raise AssertionError(f"{out['ename']}: {out['evalue']}")
    return "".join(htmls), "".join(texts)


def test_quickstart_notebook_runs_and_shows_counts_frames_and_thumbnails() -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    data = shared_data("mirflickr25k")  # what the notebook reads; skipped (or failed in CI) without it
    with open(data / "tags.csv", encoding="utf-8") as fh:
        tags = {Path(row["image"]).stem: row["tags"] for row in csv.DictReader(fh)}

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "ship it without outputs"
    nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    by_source = {c.source.splitlines()[0]: _outputs(c) for c in nb.cells if c.cell_type == "code"}

    _, copied = by_source["import csv"]
    assert copied.startswith("60 photos in ")
    imported, _ = by_source['corpus = pc.init(work / "corpus")']
    assert "ImportReport" in imported and re.search(r"imported</th><td[^>]*>60<", imported)
    counts, _ = by_source["corpus"]
    assert "60 photos, 60 stored files" in counts and "mirflickr" in counts
    frame, _ = by_source['train = corpus.photos(split="train")']
    assert 'class="dataframe"' in frame and "<th>caption</th>" in frame

    results, _ = by_source['results = pc.search(corpus, "flower", k=8)']
    assert results.startswith("<div><strong>Search: flower</strong>")
    assert results.count('<img src="data:image/jpeg;base64,') == 8
    _, best = by_source["best = results[0]"]
    match = re.match(r"best match: mirflickr/(im\d+) \(score [-\d.]+\): (.*)\n", best)
    assert match, best
    stem, caption = match.groups()
    # the caption is the photo's own Flickr tags, cleaned, and the results show it escaped
    assert set(caption.split()) <= set(tags[stem].lower().split()) and caption
    assert html.escape(caption) in results
