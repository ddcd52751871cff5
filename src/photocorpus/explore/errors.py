"""Errors of the explore stage (one module, so that every explore module can raise them)."""

from __future__ import annotations

from photocorpus.errors import PhotocorpusError


class ExploreError(PhotocorpusError):
    """The explore stage cannot run as asked (no features, a bad option, nothing to map...)."""


class ExploreInterrupted(ExploreError):
    """Ctrl-C during a long step: nothing partial was stored; the next run redoes that step only."""
