"""Weighted multi-term text queries with negatives, as in the paper: ``beach +sunset -people``.

Grammar (whitespace-separated tokens):

* a token starting with ``+`` or ``-`` starts a new term, added or subtracted;
* other tokens extend the current term, so ``skyline at night`` is one phrase (a sentence encoder
  understands phrases better than a sum of words), and ``yellow car -people`` is two terms;
* ``^W`` at the end of a term's last token weights it: ``beach^2 +sunset -people^0.5``;
* double quotes group words that would otherwise parse as operators: ``"-5 degrees"``.

The query vector is ``sum(sign * weight * unit(embed(term)))``; because every scorer here is an
inner product, that equals adding and subtracting the per-term similarity scores, which is what the
paper's multi-word queries do with word2vec / GloVe vectors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from photocorpus.learn.dataset import LearnError

MAX_QUERY_CHARS = 1000
MAX_TERMS = 32
_WEIGHT = re.compile(r"^(.*?)\^(-?\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class QueryTerm:
    text: str
    weight: float  # signed: negative terms have a negative weight


def _tokens(query: str) -> list[tuple[str, str, bool, float | None]]:
    """(sign, text, quoted, weight) per whitespace-separated token; quotes keep +, - and ^ literal."""
    out: list[tuple[str, str, bool, float | None]] = []
    i, n = 0, len(query)
    while i < n:
        if query[i].isspace():
            i += 1
            continue
        sign = ""
        if query[i] in "+-" and i + 1 < n and not query[i + 1].isspace():
            sign, i = query[i], i + 1
        elif query[i] in "+-":
            raise LearnError(f"dangling {query[i]!r} in query {query!r}: write '+word' or '-word'")
        if query[i] == '"':
            close = query.find('"', i + 1)
            if close < 0:
                raise LearnError(f"unbalanced quote in query {query!r}")
            text, i, quoted = query[i + 1 : close], close + 1, True
            end = i
            while end < n and not query[end].isspace():
                end += 1
            suffix, i = query[i:end], end
        else:
            end = i
            while end < n and not query[end].isspace():
                end += 1
            text, suffix, quoted, i = query[i:end], "", False, end
        weight = None
        match = _WEIGHT.match(suffix if quoted else text)
        if match:
            weight = float(match.group(2))
            if not quoted:
                text = match.group(1)
        elif quoted and suffix:
            raise LearnError(f"unexpected {suffix!r} after a quoted phrase; only ^WEIGHT may follow")
        if weight is not None and weight <= 0:
            raise LearnError(f"term weights must be positive (use '-term' to subtract), got ^{weight:g}")
        out.append((sign, text.strip(), quoted, weight))
    return out


def parse_query(query: str) -> list[QueryTerm]:
    """Split a query into signed, weighted terms; raises :class:`LearnError` with the reason."""
    if not query or not query.strip():
        raise LearnError("empty query; try e.g. 'snow ski' or 'beach +sunset -people'")
    if len(query) > MAX_QUERY_CHARS:
        raise LearnError(f"query longer than {MAX_QUERY_CHARS} characters")
    terms: list[list] = []  # [sign, words, weight]
    for sign, text, _quoted, weight in _tokens(query):
        if sign or not terms:
            terms.append([-1.0 if sign == "-" else 1.0, [text] if text else [], 1.0])
        elif text:
            terms[-1][1].append(text)
        if weight is not None:
            terms[-1][2] = weight
    out = [QueryTerm(" ".join(words), sgn * w) for sgn, words, w in terms if words]
    if not out:
        raise LearnError(f"query {query!r} has no words")
    if len(out) > MAX_TERMS:
        raise LearnError(f"at most {MAX_TERMS} terms per query, got {len(out)}")
    if not any(t.weight > 0 for t in out):
        raise LearnError(f"query {query!r} has only negative terms; add at least one positive term")
    return out


def describe_query(terms: Sequence[QueryTerm]) -> str:
    """A canonical rendering, e.g. ``beach +sunset -people^0.5``."""
    parts = []
    for i, t in enumerate(terms):
        sign = "-" if t.weight < 0 else ("+" if i else "")
        weight = f"^{abs(t.weight):g}" if abs(t.weight) != 1.0 else ""
        parts.append(f"{sign}{t.text}{weight}")
    return " ".join(parts)


def term_vectors(terms: Sequence[QueryTerm], encode: Callable[[Sequence[str]], np.ndarray]) -> np.ndarray:
    """Unit-length embedding of each term (rows), in the encoder's space."""
    vecs = np.asarray(encode([t.text for t in terms]), dtype=np.float32)
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    empty = [t.text for t, n in zip(terms, norms[:, 0], strict=True) if n < 1e-9]
    if empty:
        raise LearnError(f"the text model knows none of the words in {empty}; try other words")
    return vecs / norms


def query_vector(terms: Sequence[QueryTerm], encode: Callable[[Sequence[str]], np.ndarray]) -> np.ndarray:
    """The combined, unit-length query vector."""
    vecs = term_vectors(terms, encode)
    weights = np.array([t.weight for t in terms], dtype=np.float32)
    q = (weights[:, None] * vecs).sum(axis=0)
    norm = float(np.linalg.norm(q))
    if norm < 1e-6:
        raise LearnError("the positive and negative terms cancel out; change a weight")
    return (q / norm).astype(np.float32)
