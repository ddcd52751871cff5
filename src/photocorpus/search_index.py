"""The precomputed search box of a static report: queries and the photos a model ranks for each.

A plain value shared by two stages: the learn stage builds it from its semantic model, and the explore
stage writes it into the report. It lives in the core so that neither stage imports the other; the
public API (:func:`photocorpus.api.explore_photos`) hands one to the other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SearchIndex:
    """Precomputed text queries and the photos a semantic model ranks for each, best first."""

    model: str
    queries: dict[str, list[int]]  # query text -> photo ids, best first
