"""This release's version and the User-Agent that fetch and harvest send.

A core module of its own, so that stages can name the User-Agent without importing the package root
(whose lazy attributes lead to the public API, a layer above every stage).
"""

from __future__ import annotations

__version__ = "0.1.0"
USER_AGENT = f"photocorpus/{__version__} (+https://github.com/photocorpus/photocorpus)"
