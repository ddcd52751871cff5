"""photocorpus: turn social photo sites into research-grade image datasets.

The public entry point is :class:`photocorpus.corpus.Corpus`; every pipeline stage is a function of a
corpus directory, so anything the CLI does is reachable from Python too. This module stays import-light
on purpose: ``photocorpus --help`` must answer in well under a second.
"""

from __future__ import annotations

__version__ = "0.1.0"
USER_AGENT = f"photocorpus/{__version__} (+https://github.com/photocorpus/photocorpus)"

__all__ = ["USER_AGENT", "__version__"]
