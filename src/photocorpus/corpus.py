"""The corpus: a directory with one SQLite catalog that every stage reads and writes.

Why SQLite in WAL mode: readers (``status``, the report) never block the writer, a kill -9 can only lose
the transaction in flight, and anyone can inspect the catalog with ``sqlite3``. Stages write in batched
transactions (``with corpus.transaction():``), so a million photos cost thousands of commits, not a
million.

Files and rows are kept consistent with *file intents*: before a stage renames a file into
``images/``, it commits an intent naming that path; after the rename it commits the ``files`` row and
drops the intent in the same transaction. Whatever is killed in between, the next writer that opens
the corpus finds the dangling intents and deletes their files, so there are never orphan files and
never rows without files.

A damaged catalog stops every command instead of being written on (SQLite's advice: writing into a
corrupt file can spread the damage). :meth:`Corpus.open` reads the schema and, for catalogs up to
:data:`QUICK_CHECK_MAX_BYTES`, runs ``PRAGMA quick_check``; damage found later (a bigger catalog, a
page no check read) surfaces as SQLite's "malformed" error, which leaving ``with corpus:`` turns into
:class:`~photocorpus.errors.CatalogCorruptError`. Both name ``photocorpus verify`` and the recovery
steps (:func:`recovery_steps`). A 0-byte catalog beside a corpus is refused, never re-initialised.

Why this module is longer than our ~600-line guide: :class:`Corpus` is the one data contract between
the stages (the typed queries and batched writes every stage uses), and splitting the class would
scatter that contract. What can stand apart does: the schema and its migrations
(:mod:`photocorpus.catalog_schema`), where files go (:mod:`photocorpus.corpus_paths`), atomic file
writes (:mod:`photocorpus.corpus_files`) and the status block of curate
(:mod:`photocorpus.curate_summary`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from photocorpus import corpus_paths
from photocorpus.catalog_schema import MIGRATIONS, SCHEMA_VERSION, split_sql
from photocorpus.config import CONFIG_FILE, Settings, load_settings, write_settings
from photocorpus.corpus_files import ImageLocation
from photocorpus.curate_summary import curate_summary
from photocorpus.decision_log import human_labelled
from photocorpus.errors import (
    CatalogCorruptError,
    CorpusBusyError,
    CorpusExistsError,
    CorpusNotFoundError,
    PhotocorpusError,
    SchemaVersionError,
    UnsafePathError,
)
from photocorpus.object_store import (
    ObjectStore,
    RemoteImage,
    check_images_url,
    check_relpath,
    options_from_env,
)
from photocorpus.records import ImageURL, PhotoRecord, utc_now

if TYPE_CHECKING:
    import pandas as pd

CATALOG_FILE = "catalog.sqlite"
BUSY_TIMEOUT_S = 30.0
# Catalogs up to this size (with their WAL) get a full PRAGMA quick_check at every open: it reads every
# page, about 4-5 ms per MB (32 MB: ~0.15 s, ~25,000 photos; 743 MB, 1M photos: 3.7 s, too slow for
# `status`). Bigger catalogs get the schema check only and rely on SQLite reporting a damaged page when
# a stage reads it; `photocorpus verify` always runs the full integrity_check.
QUICK_CHECK_MAX_BYTES = 32 * 1024 * 1024
# SQLite's primary result codes that mean "this file is damaged": SQLITE_CORRUPT and SQLITE_NOTADB.
_CORRUPTION_CODES = frozenset({11, 26})

STAGE_STATUSES = ("pending", "done", "failed", "skipped")
IN_CHUNK = 900  # values per IN (...) list: under SQLite's old 999-parameter cap, with room for params
_UNSET = object()  # Corpus.image_store not looked up yet


@dataclass(frozen=True, slots=True)
class StoredFile:
    """What a stage stored for one photo: the file and how it came to be."""

    path: str  # relative to the corpus
    sha256: str  # of the original bytes
    width: int
    height: int
    bytes: int
    format: str
    original_width: int | None = None
    original_height: int | None = None
    original_bytes: int | None = None
    origin: str | None = None
    http_status: int | None = None
    frame_removed: bool = False


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Result of :meth:`Corpus.verify`: the invariants a kill -9 must never break.

    ``integrity`` is ``"ok"`` or SQLite's findings, one per line. ``unsafe_files`` are stored paths
    that are symlinks or resolve outside the corpus: no stage stores one, and every stage refuses to
    read one, so each is named here rather than found one stage failure at a time.
    """

    integrity: str
    orphan_files: list[str]
    missing_files: list[str]
    dangling_intents: int
    unsafe_files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.integrity == "ok"
            and not self.orphan_files
            and not self.missing_files
            and self.dangling_intents == 0
            and not self.unsafe_files
        )


def find_corruption(exc: BaseException | None) -> sqlite3.DatabaseError | None:
    """The error in ``exc``'s chain (itself, its cause, what it was raised while handling) that says
    the catalog file is damaged (SQLite's "database disk image is malformed", "file is not a
    database"), or None.

    The chain matters: a failed statement inside :meth:`Corpus.transaction` is followed by a
    ROLLBACK, whose own error can replace the original one on the way out.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, sqlite3.DatabaseError):
            code = getattr(exc, "sqlite_errorcode", None)
            if code is not None and code & 0xFF in _CORRUPTION_CODES:
                return exc
        exc = exc.__cause__ or exc.__context__
    return None


def recovery_steps(root: Path) -> str:
    """What to do about a damaged catalog, as shell commands (SQLite's own ``.recover``).

    The -wal and -shm files move with the catalog: a write-ahead log replayed onto another database
    file is one of the ways SQLite lists to corrupt one (https://www.sqlite.org/howtocorrupt.html).
    """
    catalog = root / CATALOG_FILE
    backup = root.parent / f"{root.name}-damaged-catalog"
    q = shlex.quote
    return (
        "To recover: stop every photocorpus process on this corpus; keep the damaged file and its "
        f"-wal/-shm files together: `mkdir {q(str(backup))} && mv {q(str(catalog))}* {q(str(backup))}/`; "
        f"rebuild the catalog from what is readable: `sqlite3 {q(str(backup / CATALOG_FILE))} .recover "
        f"> recovered.sql && sqlite3 {q(str(catalog))} < recovered.sql` (.recover needs a sqlite3 shell "
        "with the sqlite_dbpage table, as sqlite.org's builds have; Debian's answers 'SQL logic error'); "
        f"then run `photocorpus verify --corpus {q(str(root))}` again (or copy a backup of {CATALOG_FILE} "
        "into place instead). See https://www.sqlite.org/recovery.html"
    )


def corruption_error(root: Path, damage: str) -> CatalogCorruptError:
    """The error every command stops with on a damaged catalog: what is wrong, then what to do."""
    damage = " ".join(damage.split())[:300]
    advice = recovery_steps(root)
    return CatalogCorruptError(
        f"the catalog {root / CATALOG_FILE} is damaged ({damage}); photocorpus stopped without writing "
        f"to it. See what is wrong with `photocorpus verify --corpus {shlex.quote(str(root))}`. {advice}",
        damage=damage,
        advice=advice,
    )


def _refuse_emptied_catalog(root: Path) -> None:
    """Refuse a 0-byte catalog beside a corpus's settings or images: it was emptied, it is not new.

    Why: SQLite takes a 0-byte file for an empty database, so opening it used to write a fresh schema
    and leave every stored image an orphan of an empty catalog. (A 0-byte catalog whose write-ahead
    log has content is left to SQLite: its pages may all be in the log.)
    """
    catalog = root / CATALOG_FILE
    wal = root / f"{CATALOG_FILE}-wal"
    try:
        if catalog.stat().st_size > 0 or (wal.exists() and wal.stat().st_size > 0):
            return
    except OSError:
        return  # gone or unreadable: sqlite3 reports that itself
    holds = [f"{CONFIG_FILE}"] if (root / CONFIG_FILE).exists() else []
    if any(files for _dir, _subdirs, files in os.walk(root / corpus_paths.IMAGES_DIR)):
        holds.append(f"{corpus_paths.IMAGES_DIR}/")
    if not holds:
        return
    damage = f"the catalog {catalog} is empty (0 bytes) but {root} holds a corpus ({', '.join(holds)})"
    advice = (
        "It was truncated, so photocorpus does not start a new, empty catalog over it. Put back a backup "
        f"of {CATALOG_FILE} (with its -wal and -shm files, if any). If this corpus never held any photos "
        f"(an interrupted `init`), delete {catalog} and run `photocorpus init {shlex.quote(str(root))}`."
    )
    raise CatalogCorruptError(f"{damage}. {advice}", damage=damage, advice=advice)


def _catalog_bytes(root: Path) -> int:
    total = 0
    for name in (CATALOG_FILE, f"{CATALOG_FILE}-wal"):
        with contextlib.suppress(OSError):
            total += (root / name).stat().st_size
    return total


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode = WAL")
    # NORMAL is durable against process crashes in WAL mode; only a power cut may lose the last commit.
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class Corpus:
    """A photocorpus directory: settings, catalog and the files it points to.

    Open one with :meth:`open` or create one with :meth:`create`. All writes go through
    :meth:`transaction`; all stages talk to each other only through this object.
    """

    def __init__(self, root: Path, conn: sqlite3.Connection, settings: Settings) -> None:
        self.root = root
        self._root_resolved = root.resolve()  # every abs_path check starts from it
        self.conn = conn
        self.settings = settings
        self._in_transaction = False
        self._image_store: ObjectStore | object | None = _UNSET

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def create(cls, path: str | os.PathLike[str], settings: Settings | None = None) -> Corpus:
        """Create a new corpus directory (it may exist, but must not hold a catalog yet)."""
        root = Path(path).expanduser().absolute()
        if (root / CATALOG_FILE).exists():
            raise CorpusExistsError(f"{root} already holds a corpus; open it instead of creating it")
        root.mkdir(parents=True, exist_ok=True)
        for sub in corpus_paths.CORPUS_SUBDIRS:
            (root / sub).mkdir(exist_ok=True)
        write_settings(root, settings or Settings())
        corpus = cls(root, _connect(root / CATALOG_FILE), settings or Settings())
        corpus._migrate()
        return corpus

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = False, check: bool = True) -> Corpus:
        """Open an existing corpus, migrating its catalog forward if it is older than this code.

        A damaged catalog raises :class:`CatalogCorruptError` (see the module docstring); ``check``
        off skips the quick_check, for :meth:`verify`, which runs the full integrity_check itself.
        """
        root = Path(path).expanduser().absolute()
        catalog = root / CATALOG_FILE
        if not catalog.exists():
            if create:
                return cls.create(root)
            raise CorpusNotFoundError(
                f"{root} is not a photocorpus corpus (no {CATALOG_FILE}). "
                f"Create one with `photocorpus init {root}` or pass --corpus DIR."
            )
        _refuse_emptied_catalog(root)
        settings = load_settings(root)
        conn: sqlite3.Connection | None = None
        try:
            conn = _connect(catalog)
            corpus = cls(root, conn, settings)
            if check:
                corpus._check_catalog()
            corpus._migrate()
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            damage = find_corruption(exc)
            if damage is None:
                raise
            raise corruption_error(root, str(damage)) from exc
        return corpus

    def _check_catalog(self) -> None:
        """The open-time check: the schema always (page 1 and the schema b-tree, which is also where
        SQLite notices a truncated file), every page when the catalog is small enough to be quick."""
        self.conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        if _catalog_bytes(self.root) > QUICK_CHECK_MAX_BYTES:
            return
        findings = [str(row[0]) for row in self.conn.execute("PRAGMA quick_check(5)")]
        if findings != ["ok"]:
            raise corruption_error(self.root, "; ".join(findings))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Corpus:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        """Close; and if a stage stopped on a damaged catalog, say so with the recovery steps instead
        of a raw ``sqlite3.DatabaseError`` (every command works inside ``with corpus:``)."""
        self.close()
        damage = None if isinstance(exc, PhotocorpusError) else find_corruption(exc)
        if damage is not None:
            raise corruption_error(self.root, str(damage)) from exc

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.root} was written by a newer photocorpus (schema {version} > {SCHEMA_VERSION}); "
                "upgrade photocorpus to open it"
            )
        if version == SCHEMA_VERSION:
            return
        with self.transaction():
            # Re-read inside the write lock: another process may have migrated meanwhile.
            version = self.schema_version
            for step in range(version, SCHEMA_VERSION):
                for statement in split_sql(MIGRATIONS[step]):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {step + 1}")

    # ------------------------------------------------------------------ transactions
    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``): all or nothing, even under kill -9.

        Nested use joins the outer transaction. A second process that holds the write lock for longer
        than ``BUSY_TIMEOUT_S`` makes this raise :class:`CorpusBusyError` instead of hanging forever.
        """
        if self._in_transaction:
            yield self.conn
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise CorpusBusyError(
                    f"another photocorpus process is writing to {self.root}; wait for it to finish "
                    "(read-only commands such as `status` work meanwhile)"
                ) from exc
            raise
        self._in_transaction = True
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")
        finally:
            self._in_transaction = False

    # ------------------------------------------------------------------ photos
    def add_photos(self, records: Sequence[PhotoRecord]) -> list[int]:
        """Insert or merge photo records; return their catalog ids in the same order.

        A photo already in the catalog (same source and source_id) keeps its metadata and gains any new
        labels, unless a person set its label (:func:`photocorpus.decisions.set_label`): then its labels
        are theirs, and a re-harvest under the old label must not bring that label back. New candidate
        URLs replace old ones of the same size key (Instagram URLs expire). The
        first label of a new photo becomes its primary label and fixes its folder for good.
        """
        now = utc_now()
        ids: list[int] = []
        with self.transaction() as conn:
            for rec in records:
                row = conn.execute(
                    "SELECT id FROM photos WHERE source = ? AND source_id = ?", (rec.source, rec.source_id)
                ).fetchone()
                if row is None:
                    label = rec.labels[0]
                    seq = self._next_label_seq(label)
                    cur = conn.execute(
                        """INSERT INTO photos (source, source_id, primary_label, label_seq, title, caption,
                               tags, hashtags, owner, owner_id, lat, lon, geo_accuracy, license, taken_at,
                               uploaded_at, page_url, extra, harvested_at)
                           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                        (
                            rec.source,
                            rec.source_id,
                            label,
                            seq,
                            rec.title,
                            rec.caption,
                            json.dumps(rec.tags, ensure_ascii=False),
                            json.dumps(rec.hashtags, ensure_ascii=False),
                            rec.owner,
                            rec.owner_id,
                            rec.lat,
                            rec.lon,
                            rec.geo_accuracy,
                            rec.license,
                            rec.taken_at,
                            rec.uploaded_at,
                            rec.page_url,
                            json.dumps(rec.extra, ensure_ascii=False, sort_keys=True, default=str),
                            now,
                        ),
                    )
                    photo_id = int(cur.lastrowid)  # type: ignore[arg-type]
                else:
                    photo_id = int(row["id"])
                if row is None or not human_labelled(conn, photo_id):
                    conn.executemany(
                        "INSERT OR IGNORE INTO photo_labels (photo_id, label) VALUES (?, ?)",
                        [(photo_id, label) for label in dict.fromkeys(rec.labels)],
                    )
                if rec.urls:
                    self._put_urls(photo_id, rec.urls, now)
                ids.append(photo_id)
        return ids

    def _next_label_seq(self, label: str) -> int:
        row = self.conn.execute("SELECT next_seq FROM label_counters WHERE label = ?", (label,)).fetchone()
        seq = int(row["next_seq"]) if row else 0
        self.conn.execute(
            "INSERT INTO label_counters (label, next_seq) VALUES (?, ?) "
            "ON CONFLICT (label) DO UPDATE SET next_seq = excluded.next_seq",
            (label, seq + 1),
        )
        return seq

    def _put_urls(self, photo_id: int, urls: Iterable[ImageURL], now: str) -> None:
        self.conn.executemany(
            """INSERT INTO image_urls (photo_id, size_key, url, width, height, harvested_at)
               VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT (photo_id, size_key) DO UPDATE SET url = excluded.url, width = excluded.width,
                   height = excluded.height, harvested_at = excluded.harvested_at""",
            [(photo_id, u.size_key, u.url, u.width, u.height, now) for u in urls],
        )

    def select_in(
        self, sql: str, values: Sequence[Any], params: Sequence[Any] = (), *, chunk: int = IN_CHUNK
    ) -> Iterator[sqlite3.Row]:
        """The rows of ``sql`` for every value of ``values``, asked in chunks of ``chunk``.

        ``sql`` holds one ``{marks}`` where the ``IN (...)`` list goes, after the ``params``: for
        example ``"SELECT ... WHERE stage = ? AND photo_id IN ({marks})"`` with ``params=(stage,)``.
        Why chunks: SQLite caps the parameters of one statement (999 before 3.32, and builds may
        lower it), and a million ids in one statement would also build one huge query; one helper
        so that no lookup forgets it (``file_paths`` once did). Rows come chunk by chunk, so an
        ``ORDER BY`` orders within a chunk only.
        """
        for start in range(0, len(values), chunk):
            part = list(values[start : start + chunk])
            marks = ",".join("?" * len(part))
            yield from self.conn.execute(sql.format(marks=marks), (*params, *part))

    def photo_ids(self, source: str, source_ids: Sequence[str]) -> dict[str, int]:
        """Map source ids to catalog ids for those already in the catalog (batched lookup)."""
        sql = "SELECT source_id, id FROM photos WHERE source = ? AND source_id IN ({marks})"
        return {row["source_id"]: int(row["id"]) for row in self.select_in(sql, source_ids, (source,))}

    def photo(self, photo_id: int) -> dict[str, Any] | None:
        """One photo as a dict, with its labels, URLs, stages and file decoded."""
        row = self.conn.execute("SELECT * FROM photos WHERE id = ?", (photo_id,)).fetchone()
        if row is None:
            return None
        out = dict(row)
        out["tags"] = json.loads(out["tags"])
        out["hashtags"] = json.loads(out["hashtags"])
        out["extra"] = json.loads(out["extra"])
        out["labels"] = [
            r[0]
            for r in self.conn.execute(
                "SELECT label FROM photo_labels WHERE photo_id = ? ORDER BY label", (photo_id,)
            )
        ]
        out["urls"] = [
            dict(r)
            for r in self.conn.execute(
                "SELECT size_key, url, width, height, harvested_at FROM image_urls WHERE photo_id = ?",
                (photo_id,),
            )
        ]
        out["stages"] = {
            r["stage"]: {"status": r["status"], "reason": r["reason"], "detail": r["detail"]}
            for r in self.conn.execute(
                "SELECT stage, status, reason, detail FROM stages WHERE photo_id = ?", (photo_id,)
            )
        }
        file_row = self.conn.execute("SELECT * FROM files WHERE photo_id = ?", (photo_id,)).fetchone()
        out["file"] = dict(file_row) if file_row else None
        return out

    def count_photos(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM photos").fetchone()[0])

    # ------------------------------------------------------------------ stages
    def set_stage(
        self,
        photo_id: int,
        stage: str,
        status: str,
        reason: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Record a photo's status for one stage; repeated attempts are counted."""
        self.set_stages([photo_id], stage, status, reason, detail)

    def set_stages(
        self,
        photo_ids: Iterable[int],
        stage: str,
        status: str,
        reason: str | None = None,
        detail: str | None = None,
    ) -> None:
        """:meth:`set_stage` for many photos with the same outcome, in one statement (a featurize
        commit marks thousands of photos done at once)."""
        if status not in STAGE_STATUSES:
            raise ValueError(f"unknown stage status {status!r}; expected one of {STAGE_STATUSES}")
        detail = (detail or None) and detail[:2000]
        now = utc_now()
        with self.transaction() as conn:
            conn.executemany(
                """INSERT INTO stages (photo_id, stage, status, reason, detail, attempts, updated_at)
                   VALUES (?, ?, ?, ?, ?, 1, ?)
                   ON CONFLICT (photo_id, stage) DO UPDATE SET status = excluded.status,
                       reason = excluded.reason, detail = excluded.detail,
                       attempts = stages.attempts + 1, updated_at = excluded.updated_at""",
                [(int(pid), stage, status, reason, detail, now) for pid in photo_ids],
            )

    def stage_status(self, photo_ids: Sequence[int], stage: str) -> dict[int, str]:
        """The status of ``stage`` for each photo that has one (batched lookup)."""
        sql = "SELECT photo_id, status FROM stages WHERE stage = ? AND photo_id IN ({marks})"
        return {int(row["photo_id"]): row["status"] for row in self.select_in(sql, photo_ids, (stage,))}

    def bump_counter(self, stage: str, name: str, by: int = 1) -> None:
        """Add to a named counter (retries, skipped videos...) that ``status`` shows."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO counters (stage, name, value) VALUES (?, ?, ?) "
                "ON CONFLICT (stage, name) DO UPDATE SET value = counters.value + excluded.value",
                (stage, name, by),
            )

    def record_skipped_media(self, stage: str, reason: str, keys: Iterable[tuple[str, str]]) -> int:
        """Remember media that ``stage`` skipped on purpose (``reason`` e.g. ``video``); return how many
        were new, and add exactly that to the ``skipped_<reason>s`` counter.

        Keyed on (stage, source, source_id), so re-runs, resumes and a video seen under two hashtags
        never count twice.
        """
        now = utc_now()
        added = 0
        with self.transaction() as conn:
            for source, source_id in keys:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO skipped_media (stage, source, source_id, reason, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (stage, source, str(source_id), reason, now),
                )
                added += cur.rowcount
            if added:
                self.bump_counter(stage, f"skipped_{reason}s", added)
        return added

    # ------------------------------------------------------------------ files
    def plan_image_path(self, photo_id: int, fmt: str) -> str:
        """Decide (and reserve, with an intent) where a photo's image goes.

        The path is a pure function of the photo's primary label, its label sequence number and its
        source id, so a re-run after a crash picks the same path. If another photo already owns that
        path (two sources with the same id under one label), the catalog id is appended.
        """
        row = self.conn.execute(
            "SELECT source_id, primary_label, label_seq FROM photos WHERE id = ?", (photo_id,)
        ).fetchone()
        if row is None:
            raise KeyError(f"no photo with id {photo_id}")
        per_dir = self.settings.layout.files_per_dir
        path = corpus_paths.image_relpath(
            row["primary_label"], row["label_seq"], row["source_id"], fmt, per_dir
        )
        with self.transaction() as conn:
            owner = conn.execute(
                "SELECT photo_id FROM files WHERE path = ? UNION ALL "
                "SELECT photo_id FROM file_intents WHERE path = ?",
                (path, path),
            ).fetchone()
            if owner is not None and int(owner[0]) != photo_id:
                key = f"{row['source_id']}-p{photo_id}"
                path = corpus_paths.image_relpath(row["primary_label"], row["label_seq"], key, fmt, per_dir)
            conn.execute(
                "INSERT OR REPLACE INTO file_intents (path, photo_id, created_at) VALUES (?, ?, ?)",
                (path, photo_id, utc_now()),
            )
        return path

    def commit_file(self, photo_id: int, stored: StoredFile, stage: str = "fetch") -> None:
        """Record a file that is already in place, mark the stage done and drop its intent."""
        with self.transaction() as conn:
            old = conn.execute("SELECT path FROM files WHERE photo_id = ?", (photo_id,)).fetchone()
            conn.execute(
                """INSERT OR REPLACE INTO files (photo_id, path, sha256, width, height, bytes, format,
                       original_width, original_height, original_bytes, origin, http_status,
                       frame_removed, stored_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    photo_id,
                    stored.path,
                    stored.sha256,
                    stored.width,
                    stored.height,
                    stored.bytes,
                    stored.format,
                    stored.original_width,
                    stored.original_height,
                    stored.original_bytes,
                    stored.origin,
                    stored.http_status,
                    int(stored.frame_removed),
                    utc_now(),
                ),
            )
            conn.execute("DELETE FROM file_intents WHERE path = ?", (stored.path,))
            self.set_stage(photo_id, stage, "done")
            if old is not None and old["path"] != stored.path:
                # The old file is unreferenced from now on; an intent makes sure it is removed.
                conn.execute(
                    "INSERT OR REPLACE INTO file_intents (path, photo_id, created_at) VALUES (?, ?, ?)",
                    (old["path"], photo_id, utc_now()),
                )

    def abs_path(self, relpath: str) -> Path:
        """The absolute path of a corpus-relative path, refusing anything outside the corpus.

        For a stored image, use :meth:`image_location` instead: images may live on an object store.
        """
        return corpus_paths.resolve_inside(self.root, relpath, root_resolved=self._root_resolved)

    @property
    def image_store(self) -> ObjectStore | None:
        """The object store holding ``images/`` (``[storage] images_url``), or None: the corpus folder."""
        if self._image_store is _UNSET:
            cfg = self.settings.storage
            if cfg.images_url:
                check_images_url(cfg.images_url, self.root, cfg.allow_outside_corpus)
            self._image_store = (
                ObjectStore(cfg.images_url, options_from_env(cfg.options)) if cfg.images_url else None
            )
        return self._image_store  # type: ignore[return-value]

    def image_location(self, relpath: str) -> ImageLocation:
        """Where a worker reads a stored image: its local path, or the image on the object store.

        Either way the path is checked first (inside the corpus; under ``images/`` on a store), so a
        catalog path can never name a file or key elsewhere. Read it with
        :func:`photocorpus.corpus_files.open_image_bytes` or :func:`~photocorpus.corpus_files.image_input`.
        """
        store = self.image_store
        if store is None:
            return str(self.abs_path(relpath))
        check_relpath(relpath)
        return RemoteImage(store, relpath)

    def image_locations(self, relpaths: Sequence[str]) -> list[ImageLocation]:
        """:meth:`image_location` of many stored images, checked the same way; on local disk each
        folder is resolved once (:func:`photocorpus.corpus_paths.resolve_many_inside`)."""
        if self.image_store is not None:
            return [self.image_location(relpath) for relpath in relpaths]
        resolved = corpus_paths.resolve_many_inside(self.root, relpaths, root_resolved=self._root_resolved)
        return [str(path) for path in resolved]

    def file_paths(self, photo_ids: Sequence[int]) -> dict[int, str]:
        """Catalog paths of the stored files of ``photo_ids`` (photos without a file are left out)."""
        rows = self.select_in("SELECT photo_id, path FROM files WHERE photo_id IN ({marks})", photo_ids)
        return {int(r[0]): r[1] for r in rows}

    def image_url(self, relpath: str) -> str:
        """A stored image's address for people: its absolute path, or its URL on the object store."""
        store = self.image_store
        return str(self.abs_path(relpath)) if store is None else store.url_of(relpath)

    def _delete_stored(self, relpath: str) -> None:
        store = self.image_store
        if store is not None and relpath.startswith(corpus_paths.IMAGES_DIR + "/"):
            store.delete(relpath)
            return
        with contextlib.suppress(FileNotFoundError):
            self.abs_path(relpath).unlink()

    def resolve_dangling_intents(self) -> int:
        """Delete files left behind by a crash between rename and commit; return how many intents.

        Called by every stage that stores files, before it starts. Safe to call at any time: an intent
        whose path is owned by a committed ``files`` row is simply dropped. On an object store the
        same holds for objects put before their row was committed.
        """
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT i.path FROM file_intents i LEFT JOIN files f ON f.path = i.path WHERE f.path IS NULL"
            ).fetchall()
            for row in rows:
                self._delete_stored(row["path"])
            conn.execute("DELETE FROM file_intents")
        return len(rows)

    def drop_intents(self, paths: Iterable[str]) -> int:
        """Resolve these intents now (a file never stored): delete what may be there, drop the intent.

        For paths reserved ahead of the work (fetch on Ray with an object store) whose photo then
        failed. A path owned by a committed ``files`` row keeps its file. Returns the intents dropped.
        """
        dropped = 0
        with self.transaction() as conn:
            for path in paths:
                owned = conn.execute("SELECT 1 FROM files WHERE path = ?", (path,)).fetchone()
                if owned is None:
                    self._delete_stored(path)
                dropped += conn.execute("DELETE FROM file_intents WHERE path = ?", (path,)).rowcount
        return dropped

    def tmp_dir(self) -> Path:
        """A private scratch folder for this process, on the same file system as ``images/``.

        Files are written here, fsynced, then renamed into place, so a reader never sees half a file.
        Folders of dead processes are swept.
        """
        base = self.root / corpus_paths.TMP_DIR
        base.mkdir(exist_ok=True)
        for stale in base.iterdir():
            pid = stale.name.split("-")[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                _rmtree(stale)
        mine = base / f"{os.getpid()}-{id(self):x}"
        mine.mkdir(exist_ok=True)
        return mine

    # ------------------------------------------------------------------ harvest log
    def log_harvest_page(
        self,
        source: str,
        query: str,
        page: int,
        result_count: int,
        *,
        window_start: str = "",
        window_end: str = "",
        total: int | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        """Mark one (query, window, page) as complete, inside the caller's transaction if any."""
        with self.transaction() as conn:
            conn.execute(
                """INSERT INTO harvest_log (source, query, window_start, window_end, page, result_count,
                       total, state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (source, query, window_start, window_end, page) DO UPDATE SET
                       result_count = excluded.result_count, total = excluded.total,
                       state = excluded.state""",
                (
                    source,
                    query,
                    window_start,
                    window_end,
                    page,
                    result_count,
                    total,
                    json.dumps(state) if state is not None else None,
                    utc_now(),
                ),
            )

    def harvest_pages(self, source: str, query: str) -> list[dict[str, Any]]:
        """All logged pages of one query, oldest first."""
        return [
            dict(r)
            for r in self.conn.execute(
                "SELECT * FROM harvest_log WHERE source = ? AND query = ? ORDER BY id", (source, query)
            )
        ]

    # ------------------------------------------------------------------ feature sets
    def register_feature_set(
        self, name: str, model_id: str, dims: int, dtype: str, path: str, rows: int, params: dict[str, Any]
    ) -> None:
        """Create or update a feature set's registry entry."""
        now = utc_now()
        with self.transaction() as conn:
            conn.execute(
                """INSERT INTO feature_sets (name, model_id, dims, dtype, path, rows, params, created_at,
                       updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (name) DO UPDATE SET model_id = excluded.model_id, dims = excluded.dims,
                       dtype = excluded.dtype, path = excluded.path, rows = excluded.rows,
                       params = excluded.params, updated_at = excluded.updated_at""",
                (name, model_id, dims, dtype, path, rows, json.dumps(params, sort_keys=True), now, now),
            )

    def unregister_feature_set(self, name: str) -> bool:
        """Drop a feature set's registry entry (its files are the caller's to delete, after commit)."""
        with self.transaction() as conn:
            return conn.execute("DELETE FROM feature_sets WHERE name = ?", (name,)).rowcount > 0

    def feature_sets(self) -> list[dict[str, Any]]:
        out = []
        for r in self.conn.execute("SELECT * FROM feature_sets ORDER BY name"):
            d = dict(r)
            d["params"] = json.loads(d["params"])
            out.append(d)
        return out

    # ------------------------------------------------------------------ notebooks
    def photos(
        self,
        *,
        label: str | Sequence[str] | None = None,
        split: str | Sequence[str] | None = None,
        status: dict[str, str | Sequence[str]] | None = None,
        duplicates: bool | None = None,
    ) -> pd.DataFrame:
        """The catalog as a pandas DataFrame: one row per photo, the Parquet export's columns.

        ``label``: photos carrying this label (or any of a list); ``split``: ``"train"``, ``"val"``,
        ``"test"`` or a list; ``status``: stage -> status, e.g. ``{"fetch": "failed"}`` (a photo that a
        stage has not seen yet is ``"pending"``); ``duplicates``: True for the photos that are
        ``duplicate_of`` another, False for the others. ``pandas.read_parquet`` of
        ``photocorpus export parquet`` gives the same frame (see :mod:`photocorpus.catalog_table`).
        """
        from photocorpus.catalog_table import iter_catalog_photos, photo_filter, photo_table

        only = photo_filter(label=label, split=split, status=status, duplicates=duplicates)
        return photo_table(self, iter_catalog_photos(self, only=only)).to_pandas()

    def _repr_html_(self) -> str:
        """Jupyter's view of a corpus: its counts (see :func:`photocorpus.notebook.corpus_html`)."""
        from photocorpus.notebook import corpus_html

        return corpus_html(self)

    def __repr__(self) -> str:
        return f"<Corpus {self.root}>"

    # ------------------------------------------------------------------ status and checks
    def status_summary(self) -> dict[str, Any]:
        """Counts for ``photocorpus status``: photos, labels, per-stage statuses, failure reasons."""
        conn = self.conn
        labels = {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT label, COUNT(*) FROM photo_labels GROUP BY label ORDER BY COUNT(*) DESC, label"
            )
        }
        stages: dict[str, dict[str, int]] = {}
        for r in conn.execute("SELECT stage, status, COUNT(*) FROM stages GROUP BY stage, status"):
            stages.setdefault(r[0], {})[r[1]] = r[2]
        failures: dict[str, int] = {}
        failures_by_stage: dict[str, dict[str, int]] = {}
        for r in conn.execute(
            "SELECT stage, reason, COUNT(*) FROM stages WHERE status = 'failed' GROUP BY stage, reason"
        ):
            reason = r[1] or "unknown"
            failures[reason] = failures.get(reason, 0) + r[2]
            failures_by_stage.setdefault(r[0], {})[reason] = r[2]
        counters: dict[str, dict[str, int]] = {}
        for r in conn.execute("SELECT stage, name, value FROM counters ORDER BY stage, name"):
            counters.setdefault(r[0], {})[r[1]] = r[2]
        files = conn.execute("SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM files").fetchone()
        sources = {r[0]: r[1] for r in conn.execute("SELECT source, COUNT(*) FROM photos GROUP BY source")}
        return {
            "corpus": str(self.root),
            "schema_version": self.schema_version,
            "photos": self.count_photos(),
            "sources": sources,
            "labels": labels,
            "stages": stages,
            "failures": dict(sorted(failures.items(), key=lambda kv: (-kv[1], kv[0]))),
            "failures_by_stage": failures_by_stage,
            "counters": counters,
            "files": {"count": files[0], "bytes": files[1]},
            "coverage": self.metadata_coverage(),
            "feature_sets": [
                {"name": f["name"], "model_id": f["model_id"], "dims": f["dims"], "rows": f["rows"]}
                for f in self.feature_sets()
            ],
            "curate": curate_summary(conn),
        }

    def metadata_coverage(self) -> dict[str, int]:
        """How many photos have each kind of metadata, as MIRFLICKR-1M s16a published it."""
        queries = {
            "title": "SELECT COUNT(*) FROM photos WHERE COALESCE(title, '') != ''",
            "description": "SELECT COUNT(*) FROM photos WHERE COALESCE(caption, '') != ''",
            "tags": "SELECT COUNT(*) FROM photos WHERE tags NOT IN ('[]', '')",
            "exif": "SELECT COUNT(*) FROM photo_exif",
            "geo": "SELECT COUNT(*) FROM photos WHERE lat IS NOT NULL AND lon IS NOT NULL",
            "albums": "SELECT COUNT(DISTINCT photo_id) FROM photo_contexts WHERE kind = 'album'",
            "comments": "SELECT COUNT(*) FROM photo_social WHERE comment_count > 0",
            "notes": "SELECT COUNT(*) FROM photo_social WHERE note_count > 0",
            "groups": "SELECT COUNT(DISTINCT photo_id) FROM photo_contexts WHERE kind = 'group'",
        }
        return {kind: int(self.conn.execute(sql).fetchone()[0]) for kind, sql in queries.items()}

    def verify(self) -> VerifyReport:
        """Check the invariants: SQLite integrity, every file row has its file, no file lacks a row,
        and no stored file is a symlink or resolves outside the corpus.

        A damaged catalog is a finding, not an exception: its ``integrity`` lists SQLite's findings
        and the rows are compared with the files only as far as they can still be read.
        """
        unsafe: set[str] = set()
        try:
            findings = [str(row[0]) for row in self.conn.execute("PRAGMA integrity_check(20)")]
        except sqlite3.DatabaseError as exc:
            if find_corruption(exc) is None:
                raise
            findings = [f"the catalog cannot be read ({exc})"]
        try:
            known = {r[0] for r in self.conn.execute("SELECT path FROM files")}
            dangling = int(self.conn.execute("SELECT COUNT(*) FROM file_intents").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            if find_corruption(exc) is None:
                raise
            findings.append(f"files and rows not compared: the files table cannot be read ({exc})")
            return VerifyReport("\n".join(findings), [], [], 0, sorted(self._scan_images()[1]))
        for path in known:
            try:
                check_relpath(path)  # the key guard: under images/, no "..", no absolute path
            except UnsafePathError:
                unsafe.add(path)
        store = self.image_store
        on_disk: set[str] = set()
        if store is not None:
            # One listing of the bucket answers both questions: no HEAD request per catalog row.
            on_disk = store.list_images()
            missing = sorted(known - on_disk)
        else:
            on_disk, symlinks = self._scan_images()
            missing = sorted(p for p in known if not (self.root / p).exists())
            unsafe |= symlinks
        return VerifyReport(
            integrity="ok" if findings == ["ok"] else "\n".join(findings),
            orphan_files=sorted(on_disk - known),
            missing_files=missing,
            dangling_intents=dangling,
            unsafe_files=sorted(unsafe),
        )

    def _scan_images(self) -> tuple[set[str], set[str]]:
        """The files under ``images/`` and the symlinks among them and their folders (``images``
        itself included), as corpus-relative paths, in one walk that follows no symlinked folder.

        A catalog path can only resolve outside the corpus through a symlink on it, and all its
        folders and files are under ``images/``. Every symlink is reported, even one that points
        inside: no stage stores one (import stores a copy or a hard link), so each came from outside.
        """
        images = self.root / corpus_paths.IMAGES_DIR
        files: set[str] = set()
        symlinks = {corpus_paths.IMAGES_DIR} if images.is_symlink() else set()
        folders = [images] if images.is_dir() else []
        while folders:
            with os.scandir(folders.pop()) as entries:  # DirEntry types come free with the listing
                for entry in entries:
                    rel = Path(entry.path).relative_to(self.root).as_posix()
                    if entry.is_symlink():
                        symlinks.add(rel)
                    if not entry.is_dir():
                        files.add(rel)
                    elif not entry.is_symlink():
                        folders.append(Path(entry.path))
        return files, symlinks


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
