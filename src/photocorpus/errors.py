"""Exceptions raised by photocorpus.

One base class, so callers can catch everything of ours with one ``except``. Messages tell the user the
next step. A failure that concerns one photo is *not* an exception: it is a recorded reason on that
photo's stage row (see :mod:`photocorpus.reasons`), so one bad photo never stops a run.
"""

from __future__ import annotations


class PhotocorpusError(Exception):
    """Base class of every error photocorpus raises on purpose."""


class CorpusNotFoundError(PhotocorpusError):
    """The directory is not a corpus (no ``catalog.sqlite``)."""


class CorpusExistsError(PhotocorpusError):
    """``init`` was asked to create a corpus where one already exists."""


class SchemaVersionError(PhotocorpusError):
    """The catalog was written by a newer photocorpus than this one."""


class ConfigError(PhotocorpusError):
    """``corpus.toml`` or a command-line setting is invalid."""


class UnsafePathError(PhotocorpusError):
    """A path would leave the corpus directory."""


class CorpusBusyError(PhotocorpusError):
    """Another process holds the catalog's write lock for longer than we are willing to wait."""


class ImportSourceError(PhotocorpusError):
    """The folder given to ``import`` cannot be read as any known layout."""


class StorageError(PhotocorpusError):
    """Writing to the corpus failed (disk full, permission denied...). Nothing committed is damaged."""
