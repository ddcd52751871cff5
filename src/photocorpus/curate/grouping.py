"""Duplicate groups from links, never joining two photos a person said are different.

Dedup's groups are the connected components of its links. A person's ``different`` verdict
(:func:`photocorpus.decisions.split_group`, :func:`~photocorpus.decisions.mark_not_duplicate`) is a
*cannot-link* constraint: the two photos must end in different groups, even when a third photo links
to both. Dropping the one direct link is not enough for that; a constrained union is.

Why two paths: scipy's connected components label a million photos in well under a second, and
almost every component holds no ``different`` pair. Only the components that do (a few, each as big
as a duplicate group) are rebuilt with a small union-find in Python that takes the links in strength
order (the caller's order: human ``same`` first, then exact, pHash, semantic) and refuses every union
that would put a ``different`` pair in one group. The strongest evidence therefore decides which side
of a split a photo linked to both sides joins.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def connected_groups(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Component label of each of ``n`` positions under the links ``left[i]`` -- ``right[i]``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if n == 0:
        return np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(left.shape[0], dtype=np.int8), (left, right)), shape=(n, n))
    _count, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)


def constrained_groups(
    n: int,
    links: Sequence[tuple[np.ndarray, np.ndarray]],
    different: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """Component labels as :func:`connected_groups` gives them, except that no component holds both
    photos of a ``different`` pair (positions ``different[0][i]``, ``different[1][i]``).

    ``links`` are (left, right) position arrays, strongest first: inside a component that must be cut,
    links are followed in this order and a link that would join a ``different`` pair is skipped.
    """
    empty = np.zeros(0, dtype=np.int64)
    left = np.concatenate([a for a, _ in links]) if links else empty
    right = np.concatenate([b for _, b in links]) if links else empty
    labels = connected_groups(n, left, right)
    da, db = different
    if da.size == 0 or n == 0:
        return labels
    clash = labels[da] == labels[db]
    if not clash.any():
        return labels
    inside = np.isin(labels, np.unique(labels[da[clash]]))
    parent = np.arange(n, dtype=np.int64)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = int(parent[root])
        while parent[x] != root:  # path compression
            parent[x], x = root, int(parent[x])
        return root

    enemies: dict[int, set[int]] = {}
    for a, b in zip(da[clash].tolist(), db[clash].tolist(), strict=True):
        enemies.setdefault(a, set()).add(b)
        enemies.setdefault(b, set()).add(a)
    keep = inside[left]
    for a, b in zip(left[keep].tolist(), right[keep].tolist(), strict=True):
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        small, other = (ra, rb) if len(enemies.get(ra, ())) <= len(enemies.get(rb, ())) else (rb, ra)
        if any(find(e) == other for e in enemies.get(small, ())):
            continue  # a person said some photo on one side differs from one on the other
        parent[small] = other
        if small in enemies:
            enemies.setdefault(other, set()).update(enemies.pop(small))
    members = np.flatnonzero(inside)
    cut = labels.copy()
    cut[members] = int(labels.max()) + 1 + np.asarray([find(int(p)) for p in members], dtype=np.int64)
    return np.unique(cut, return_inverse=True)[1].astype(np.int64)
