"""Images on an object store: the corpus's ``images/`` tree under an fsspec URL (``s3://``, ``gs://``...).

Why: on a Ray cluster without a shared filesystem, fetch workers put the JPEGs they render straight
into the bucket, and every stage that reads pixels reads them from there. The catalog stays with the
driver and keeps the same corpus-relative paths (``images/<label>/<chunk>/<id>.jpg``): only where the
bytes live changes, so exports and catalogs of a bucket corpus and a local one are identical.

Writes are put-then-commit: an object put is atomic (the key holds the whole object or nothing), so an
image is written once at its final key, after its file intent is committed and before its ``files``
row is; a crash in between leaves an intent whose object the next writer deletes (see
:meth:`photocorpus.corpus.Corpus.resolve_dangling_intents`).

Storage options (endpoint, region, credentials) are held by :class:`StorageOptions`, whose ``repr``
shows no value and whose values are scrubbed from every error message, so they never reach a log, a
report, an exception or the catalog. fsspec is imported only when a store is configured.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from photocorpus.errors import ConfigError, StorageError, UnsafePathError

IMAGES_PREFIX = "images/"
# Protocols that name a bucket of a storage service (memory: this process's RAM, for tests), never a
# folder of this machine: an images_url with one of them may live outside the corpus folder.
OBJECT_STORE_PROTOCOLS = frozenset(
    {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oci", "oss", "memory"}
)
LOCAL_PROTOCOLS = frozenset({"file", "local"})  # fsspec's names for this machine's own disks
OPTIONS_ENV = "PHOTOCORPUS_STORAGE_OPTIONS"  # JSON object merged over [storage] options
UPLOAD_THREADS = 16  # object stores answer one PUT in tens of ms: overlap them
_MIN_SECRET_LEN = 4  # shorter option values (ports, flags) are not scrubbed from messages

_fs_cache: dict[tuple[str, str], Any] = {}  # per process: (url root, options digest) -> filesystem
_fs_lock = threading.Lock()


class StorageOptions:
    """fsspec storage options whose values never show: ``repr`` lists only the keys.

    Equal options compare equal and hash alike (by a digest), so a store pickled to a worker finds
    its cached filesystem there.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self._values = dict(values or {})

    def reveal(self) -> dict[str, Any]:
        """The options themselves, for fsspec only. Never log or store what this returns."""
        return dict(self._values)

    def digest(self) -> str:
        text = json.dumps(self._values, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def scrub(self, text: str) -> str:
        """``text`` with every option value (and every string nested in one) replaced by ``***``."""
        for secret in sorted(_strings(self._values), key=len, reverse=True):
            if len(secret) >= _MIN_SECRET_LEN:
                text = text.replace(secret, "***")
        return text

    def __bool__(self) -> bool:
        return bool(self._values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StorageOptions) and self.digest() == other.digest()

    def __hash__(self) -> int:
        return hash(self.digest())

    def __repr__(self) -> str:
        return f"StorageOptions(keys={sorted(self._values)}, values hidden)"

    def __getstate__(self) -> dict[str, Any]:
        return self._values

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._values = state


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple | set):
        for v in value:
            yield from _strings(v)
    elif value is not None and not isinstance(value, bool | int | float):
        yield str(value)


def options_from_env(base: Mapping[str, Any]) -> StorageOptions:
    """``base`` (the ``[storage] options`` table) with ``$PHOTOCORPUS_STORAGE_OPTIONS`` merged over it."""
    merged = dict(base)
    raw = os.environ.get(OPTIONS_ENV, "").strip()
    if raw:
        try:
            extra = json.loads(raw)
        except json.JSONDecodeError:
            extra = None  # raised below, unchained: the decoder's error quotes the (secret) text
        if extra is None:
            raise StorageError(f"${OPTIONS_ENV} is not valid JSON; set it to a JSON object of fsspec options")
        if not isinstance(extra, dict):
            raise StorageError(f"${OPTIONS_ENV} must be a JSON object of fsspec storage options")
        merged.update(extra)
    _register_secret_values(merged)
    return StorageOptions(merged)


_SECRET_KEY = re.compile(r"key|secret|token|pass|cred|auth|session|signature", re.IGNORECASE)


def _register_secret_values(options: Mapping[str, Any]) -> None:
    """Register credential-like option values with the log redactor, so that a library's own log line
    (botocore, gcsfs) that quotes one is redacted too; error texts are scrubbed separately."""
    from photocorpus.logs import register_secret

    for key, value in options.items():
        if isinstance(value, Mapping):
            _register_secret_values(value)
        elif _SECRET_KEY.search(str(key)):
            for text in _strings(value):
                register_secret(text)


def check_relpath(relpath: str) -> str:
    """Refuse a catalog path that is not a plain relative path under ``images/`` (the key guard).

    The object-store twin of :func:`photocorpus.corpus_paths.resolve_inside`: no absolute path, no ``..``,
    no empty component, no backslash, no scheme, so a stored path can never name another key.
    """
    rel = PurePosixPath(relpath)
    bad = (
        not relpath.startswith(IMAGES_PREFIX)
        or rel.is_absolute()
        or len(rel.parts) < 2
        or any(part in ("..", ".", "") for part in relpath.split("/"))
        or "\\" in relpath
        or ":" in relpath
    )
    if bad:
        raise UnsafePathError(f"refusing image path {relpath!r}: it must be a relative path under images/")
    return relpath


def check_images_url(url: str, corpus_root: Path, allow_outside: bool = False) -> None:
    """Refuse an ``images_url`` outside the corpus folder unless it is an object store or allowed.

    Why: ``corpus.toml`` travels with a shared corpus, and ``images_url`` decides where every stage
    writes and what ``verify`` lists. A ``file://`` URL to another folder made ``import`` write there
    and ``verify`` call that folder's own files orphans. So a local URL must name a folder strictly
    inside the corpus (after ``..`` and symlinks are resolved, as fsspec leaves both to the OS), an
    object store is fine anywhere, and anything else (``file://`` elsewhere, ``sftp://``, ``zip://``...)
    needs ``[storage] allow_outside_corpus = true``.
    """
    if allow_outside:
        return
    protocol, _, rest = url.strip().partition("://")
    protocol = protocol.lower()
    if protocol in OBJECT_STORE_PROTOCOLS:
        return
    root = corpus_root.resolve()
    if protocol in LOCAL_PROTOCOLS:
        folder = Path(os.path.expanduser(rest))  # fsspec expands ~ and takes a relative path from cwd
        folder = (folder if folder.is_absolute() else Path.cwd() / folder).resolve()
        if root in folder.parents:
            return
        where = f"the folder {folder}, outside the corpus {root}"
    else:
        where = f"a {protocol}:// location, which is neither an object store nor inside the corpus {root}"
    raise ConfigError(
        f"[storage] images_url names {where}: every stage would write images there and `verify` would "
        "list that folder's files. Use an object store (s3://, gs://, az://...) or a folder inside the "
        "corpus, or, if that place is meant for this corpus's images, set [storage] "
        "allow_outside_corpus = true in corpus.toml"
    )


@dataclass(frozen=True)
class ObjectStore:
    """The corpus's ``images/`` tree at ``url``; ``images/a/00000/x.jpg`` is ``{url}/a/00000/x.jpg``.

    Picklable (workers and Ray tasks get a copy); the filesystem itself is made once per process.
    """

    url: str
    options: StorageOptions = field(default_factory=StorageOptions, repr=False)

    def __post_init__(self) -> None:
        url = self.url.strip().rstrip("/")
        if "://" not in url or url.split("://", 1)[1] == "":
            raise StorageError(
                f"[storage] images_url {url!r} must be an fsspec URL with a path, e.g. "
                "s3://bucket/prefix or gs://bucket/prefix"
            )
        object.__setattr__(self, "url", url)

    @property
    def protocol(self) -> str:
        return self.url.split("://", 1)[0]

    # ------------------------------------------------------------------ filesystem
    @property
    def fs(self) -> Any:
        """The fsspec filesystem, made on first use in this process."""
        return self._fs_and_root()[0]

    @property
    def root(self) -> str:
        """The store's root as the filesystem names paths (no protocol)."""
        return self._fs_and_root()[1]

    def _fs_and_root(self) -> tuple[Any, str]:
        key = (self.url, self.options.digest())
        with _fs_lock:
            hit = _fs_cache.get(key)
            if hit is None:
                try:
                    from fsspec.core import url_to_fs

                    fs, root = url_to_fs(self.url, **self.options.reveal())
                except ImportError as exc:
                    error = StorageError(
                        f"images_url {self.url} needs the fsspec driver for {self.protocol}:// "
                        f"({self._scrub(exc)}); e.g. pip install s3fs (s3://) or gcsfs (gs://)"
                    )
                except Exception as exc:  # a bad option, an unknown protocol: say so, without secrets
                    error = StorageError(
                        f"cannot open images_url {self.url}: {self._scrub(exc)} (check [storage] in "
                        f"corpus.toml and ${OPTIONS_ENV})"
                    )
                else:
                    hit = _fs_cache[key] = (fs, root.rstrip("/"))
                if hit is None:
                    raise error  # outside the except blocks: the original is not chained
            return hit

    def key(self, relpath: str) -> str:
        """The filesystem path of a catalog path (``images/...``), after the key guard."""
        rel = check_relpath(relpath)
        return f"{self.root}/{rel[len(IMAGES_PREFIX) :]}"

    def url_of(self, relpath: str) -> str:
        """The URL of a catalog path, for people (reports, messages): no options in it."""
        rel = check_relpath(relpath)
        return f"{self.url}/{rel[len(IMAGES_PREFIX) :]}"

    def browser_url(self, relpath: str) -> str | None:
        """An https address a browser can open for the image, or None when there is none to give.

        http(s) stores link as they are; ``s3://`` (AWS, no custom endpoint) and ``gs://`` map to the
        providers' public https forms, which open for public objects (GCS: or for a signed-in user).
        Anything else (memory://, file://, a custom S3 endpoint) has none: reports show the thumbnail.
        """
        scheme, _, rest = self.url_of(relpath).partition("://")
        bucket, _, key = rest.partition("/")
        quoted = urllib.parse.quote(key)
        if scheme in ("http", "https"):
            return f"{scheme}://{bucket}/{quoted}"
        options = self.options.reveal()
        custom_endpoint = "endpoint_url" in options or "endpoint_url" in (options.get("client_kwargs") or {})
        if scheme in ("s3", "s3a") and not custom_endpoint:
            return f"https://{bucket}.s3.amazonaws.com/{quoted}"
        if scheme in ("gs", "gcs"):
            return f"https://storage.googleapis.com/{bucket}/{quoted}"
        return None

    # ------------------------------------------------------------------ writes
    def put(self, relpath: str, data: bytes) -> None:
        """Write ``data`` at the image's final key in one put (atomic on an object store)."""
        key = self.key(relpath)
        self._call("write", relpath, self._makedirs, key)
        self._call("write", relpath, self.fs.pipe_file, key, data)

    def put_file(self, relpath: str, local_path: str) -> None:
        """Upload a finished scratch file to the image's final key."""
        key = self.key(relpath)
        self._call("write", relpath, self._makedirs, key)
        self._call("write", relpath, self.fs.put_file, local_path, key)

    def put_files(self, pairs: Iterable[tuple[str, str]], threads: int = UPLOAD_THREADS) -> None:
        """Upload many ``(relpath, local_path)`` at once; the first failure is raised after all end."""
        items = list(pairs)
        if len(items) <= 1 or threads <= 1:
            for rel, local in items:
                self.put_file(rel, local)
            return
        with ThreadPoolExecutor(min(threads, len(items)), thread_name_prefix="put") as pool:
            for fut in [pool.submit(self.put_file, rel, local) for rel, local in items]:
                fut.result()

    def delete(self, relpath: str) -> bool:
        """Remove an image's object; False when it was not there."""
        key = self.key(relpath)
        try:
            self._call("delete", relpath, self.fs.rm_file, key)
        except FileNotFoundError:
            return False
        return True

    def _makedirs(self, key: str) -> None:
        # Object stores have no folders (a no-op there); file:// and memory:// need the parent.
        if self.protocol in ("file", "local", "memory"):
            self.fs.makedirs(key.rpartition("/")[0], exist_ok=True)

    # ------------------------------------------------------------------ reads
    def read(self, relpath: str) -> bytes:
        """The object's bytes; FileNotFoundError (an OSError, as for a local file) when it is not there."""
        return bytes(self._call("read", relpath, self.fs.cat_file, self.key(relpath)))

    def list_images(self) -> set[str]:
        """Every object under the store, as catalog paths (``images/...``)."""
        root = self.root
        if not self._call("list", IMAGES_PREFIX, self.fs.exists, root):
            return set()
        found = self._call("list", IMAGES_PREFIX, self.fs.find, root)
        prefix = root + "/"
        return {IMAGES_PREFIX + p[len(prefix) :] for p in found if p.startswith(prefix)}

    # ------------------------------------------------------------------ errors
    def _call(self, verb: str, relpath: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, with any failure but a missing object turned into a scrubbed StorageError.

        The error is raised outside the ``except`` block on purpose: the driver's exception (whose text
        may quote an option) is then not even chained to it as ``__context__``.
        """
        try:
            return fn(*args)
        except FileNotFoundError:
            raise
        except Exception as exc:
            error = self._error(verb, relpath, exc)
        raise error

    def _scrub(self, exc: BaseException | str) -> str:
        text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        return self.options.scrub(text)[:300]

    def _error(self, verb: str, relpath: str, exc: BaseException) -> StorageError:
        inside = relpath.startswith(IMAGES_PREFIX)
        where = f"{self.url}/{relpath[len(IMAGES_PREFIX) :]}" if inside else self.url
        return StorageError(
            f"cannot {verb} {where}: {self._scrub(exc)} (check the store's credentials and permissions; "
            "re-run the same command to resume once fixed)"
        )


@dataclass(frozen=True)
class RemoteImage:
    """A stored image on an :class:`ObjectStore`: what a worker gets instead of a local path."""

    store: ObjectStore
    relpath: str

    def __str__(self) -> str:
        return self.store.url_of(self.relpath)

    def read(self) -> bytes:
        return self.store.read(self.relpath)
