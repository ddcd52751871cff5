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


class ParameterError(ConfigError, ValueError):
    """A function of the Python API was called with a value it cannot use. The message names the
    parameter (``method``, not ``--method``) and the values it takes, as scikit-learn's do.

    Also a ``ValueError``: Python code that validates its own inputs catches bad values that way.
    """


class UnsafePathError(PhotocorpusError):
    """A path would leave the corpus directory."""


class CorpusBusyError(PhotocorpusError):
    """Another process holds the catalog's write lock for longer than we are willing to wait."""


class DecisionError(PhotocorpusError, ValueError):
    """A human decision (:mod:`photocorpus.decisions`) cannot be recorded as asked: unknown photo ids,
    an empty list, a split whose parts overlap or are not one duplicate group, an undo of an unknown
    or already undone decision. Nothing was written; the message says what to send instead.

    Also a ``ValueError``: the web app answers it as a bad request (400), not a server error.
    """


class ImportSourceError(PhotocorpusError):
    """The folder given to ``import`` cannot be read as any known layout."""


class StorageError(PhotocorpusError):
    """Writing to the corpus failed (disk full, permission denied...). Nothing committed is damaged."""


class UntrustedJSONError(PhotocorpusError, ValueError):
    """JSON from outside (a sidecar, a URL list, an API answer) was refused: too large, nested too deep
    or not JSON. ``reason`` is a stable code (``json_too_large``, ``json_too_deep``, ``invalid_json``).

    Also a ``ValueError``, as ``json.JSONDecodeError`` is, so code that already treats unreadable JSON
    as bad input treats a refused document the same way.
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class CatalogCorruptError(PhotocorpusError):
    """``catalog.sqlite`` is damaged (truncated, overwritten, emptied): the command stops before it
    writes more into it, and the message gives the recovery steps (``photocorpus verify``, then
    ``sqlite3 .recover``), because writing on into a damaged SQLite file can spread the damage.
    ``damage`` (what was found) and ``advice`` (what to do) are the message's two parts, for
    ``verify``, which prints them as its finding."""

    def __init__(self, message: str, damage: str = "", advice: str = "") -> None:
        self.damage = damage
        self.advice = advice
        super().__init__(message)
