"""The 24 text queries Gomez et al. evaluate P@5 on InstaCities1M with (12 simple, 12 complex).

Source: the authors' own code, github.com/gombru/LearnFromWebData, ``retrieval/retrieve_topN.py``
(commit b99dfa6794854cba1a1dbaf00741dcb7a3b4472c), which lists them in this order as its default
queries; the paper (*Learning to Learn from Web Data through Deep Semantic Embeddings*, ECCV 2018
MULA workshop, arXiv:1808.06368) reports mean P@5 over them (up to 0.47 over all 24, 0.82 over the
12 simple ones). Relevance was judged by hand, so evaluating them here needs a judgments file.
"""

from __future__ import annotations

SOURCE = (
    "github.com/gombru/LearnFromWebData retrieval/retrieve_topN.py "
    "(commit b99dfa6794854cba1a1dbaf00741dcb7a3b4472c)"
)

SIMPLE: tuple[str, ...] = (
    "car",
    "skyline",
    "bike",
    "sunrise",
    "snow",
    "rain",
    "icecream",
    "cake",
    "pizza",
    "woman",
    "man",
    "kid",
)

COMPLEX: tuple[str, ...] = (
    "yellow car",
    "skyline night",
    "bike park",
    "sunrise beach",
    "snow ski",
    "rain umbrella",
    "icecream beach",
    "chocolate cake",
    "pizza wine",
    "woman bag",
    "man boat",
    "kid dog",
)

QUERIES: tuple[tuple[str, str], ...] = tuple(("simple", q) for q in SIMPLE) + tuple(
    ("complex", q) for q in COMPLEX
)
