"""Exact and near-duplicate removal: hash every stored image, link duplicates, group, pick representatives.

Two phases, both resumable:

1. **Hashing** (per photo, sharded over worker processes): pHash, dHash and their de-framed twins of
   every stored file not hashed yet (or whose file changed since), committed batch by batch with a
   ``dedup`` stage row. A photo that cannot be decoded gets a recorded reason, never an exception.
2. **Grouping** (whole corpus, seconds per million): links are
   * *human*: pairs a person confirmed as duplicates (:func:`photocorpus.decisions.confirm_group`),
     followed whatever the thresholds say;
   * *exact*: the same sha256 of the original bytes;
   * *phash*: pHash within ``phash_max_distance`` bits, comparing every framing (as stored, frame
     cropped) of both photos, confirmed by the dHash of the same framing (multi-index hashing, see
     :mod:`photocorpus.curate.mih`: never all pairs);
   * *semantic*: once the feature set exists, cosine >= ``semantic_min_cosine`` among faiss kNN,
     confirmed by an aligned edge correlation (see :mod:`photocorpus.curate.cnn_near_duplicates`); the
     features also veto pHash links between photos whose cosine is below ``semantic_veto_cosine``.
   Groups are the connected components of these links (scipy's union-find-style labelling, linear
   in the number of links), except that no group ever holds two photos a person said are different,
   not even through a third photo (:mod:`photocorpus.curate.grouping`). The representative of a
   group is chosen by a fixed rule: **largest resolution (original pixels), then earliest upload,
   then lowest catalog id**. Every other member gets ``duplicate_of`` = the representative. Files
   are never deleted unless asked (``delete=True``), and then through file
   intents, so a kill -9 cannot leave a row without its file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from photocorpus import reasons
from photocorpus.config import CurateSettings, ExecutorSettings
from photocorpus.corpus import Corpus
from photocorpus.corpus_files import ImageLocation, open_image_bytes
from photocorpus.curate.grouping import constrained_groups
from photocorpus.curate.hashing import PhotoHashes, decode_gray, hash_gray_images
from photocorpus.curate.mih import as_signed, as_unsigned, hamming, hamming_pairs
from photocorpus.decision_effects import NEVER_UPLOADED
from photocorpus.decisions import overrides
from photocorpus.executors import open_executor
from photocorpus.interrupt import StopFlag
from photocorpus.notebook import HtmlReport
from photocorpus.progress import Advance
from photocorpus.records import utc_now

STAGE = "dedup"
HASH_SHARD = 128  # images per worker call: one batched DCT each
HASH_BATCH = 2048  # images per catalog transaction
METHOD_RANK = {"human": 0, "exact": 1, "phash": 2, "semantic": 3}


@dataclass(slots=True)
class DedupReport(HtmlReport):
    """What one dedup run did."""

    hashed: int = 0
    failed: int = 0
    photos: int = 0  # photos that took part in grouping
    links: dict[str, int] = field(default_factory=dict)  # method -> links found
    groups: int = 0  # groups with more than one member
    duplicates: int = 0  # photos that are duplicate_of another
    semantic_used: bool = False
    semantic_photos: int = 0
    vetoed: int = 0  # pHash links dropped because the photos' features disagree
    refused: int = 0  # links not followed: they would join photos a person said are different
    deleted_files: int = 0
    interrupted: bool = False
    failures: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _HashResult:
    photo_id: int
    sha256: str
    hashes: PhotoHashes | None = None
    reason: str | None = None
    detail: str | None = None


def _hash_shard(items: Sequence[tuple[int, ImageLocation, str]]) -> list[_HashResult]:
    """Worker: decode a shard of (photo id, location, sha256) small and grey, hash them with one DCT."""
    grays, ok, out = [], [], []
    for photo_id, location, sha in items:
        try:
            data = open_image_bytes(location)
        except OSError as exc:
            out.append(_HashResult(photo_id, sha, reason=reasons.READ_ERROR, detail=str(exc)[:300]))
            continue
        try:
            grays.append(decode_gray(data))
            ok.append((photo_id, sha))
        except Exception as exc:  # any decoder failure is this photo's problem, not the run's
            detail = f"{type(exc).__name__}: {exc}"[:300]
            out.append(_HashResult(photo_id, sha, reason=reasons.CORRUPT_IMAGE, detail=detail))
    for (photo_id, sha), hashes in zip(ok, hash_gray_images(grays), strict=True):
        out.append(_HashResult(photo_id, sha, hashes=hashes))
    return out


def _pending_hash_rows(corpus: Corpus, redo: bool) -> list[tuple[int, str, str]]:
    """(photo id, relative path, sha256) of stored files whose hashes are missing or stale."""
    where = "" if redo else "WHERE c.hashed_sha256 IS NULL OR c.hashed_sha256 != f.sha256"
    rows = corpus.conn.execute(
        f"SELECT f.photo_id, f.path, f.sha256 FROM files f LEFT JOIN curation c ON c.photo_id = f.photo_id "
        f"{where} ORDER BY f.photo_id"
    ).fetchall()
    if not redo:
        # a photo whose hashing failed on these very bytes is not retried (the bytes will not change)
        failed = {
            int(r[0])
            for r in corpus.conn.execute(
                "SELECT photo_id FROM stages WHERE stage = ? AND status = 'failed'", (STAGE,)
            )
        }
        rows = [r for r in rows if int(r[0]) not in failed]
    return [(int(r[0]), r[1], r[2]) for r in rows]


def hash_photos(
    corpus: Corpus,
    *,
    workers: int | None = None,
    redo: bool = False,
    stop: StopFlag | None = None,
    advance: Advance | None = None,
    report: DedupReport | None = None,
    executor: ExecutorSettings | None = None,
) -> DedupReport:
    """Phase 1: hash every stored image that has no (current) hashes. Resumable batch by batch.

    ``executor`` (default: the corpus's ``[executor]``) may run the shards on Ray; the driver commits.
    """
    report = report or DedupReport()
    todo = _pending_hash_rows(corpus, redo)

    def batches() -> Iterator[list[list[tuple[int, ImageLocation, str]]]]:
        for lo in range(0, len(todo), HASH_BATCH):
            part = todo[lo : lo + HASH_BATCH]
            locations = corpus.image_locations([rel for _pid, rel, _sha in part])
            chunk = [(pid, loc, sha) for (pid, _rel, sha), loc in zip(part, locations, strict=True)]
            yield [chunk[i : i + HASH_SHARD] for i in range(0, len(chunk), HASH_SHARD)]
            if stop:
                return

    with open_executor(executor or corpus.settings.executor, workers or 0) as pool:
        for _shards, results in pool.map_batches(_hash_shard, batches(), shard_size=1):
            flat = [r for shard in results for r in shard]
            _commit_hashes(corpus, flat, report)
            if advance:
                advance(len(flat))
            if stop:
                report.interrupted = True
                break
    return report


def _commit_hashes(corpus: Corpus, results: list[_HashResult], report: DedupReport) -> None:
    now = utc_now()
    with corpus.transaction() as conn:
        for r in results:
            if r.hashes is None:
                corpus.set_stage(r.photo_id, STAGE, "failed", r.reason, r.detail)
                report.failed += 1
                key = r.reason or "unknown"
                report.failures[key] = report.failures.get(key, 0) + 1
                continue
            h = r.hashes
            conn.execute(
                """INSERT INTO curation (photo_id, hashed_sha256, phash, dhash, phash_deframed,
                       dhash_deframed, frame, hash_degenerate, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (photo_id) DO UPDATE SET hashed_sha256 = excluded.hashed_sha256,
                       phash = excluded.phash, dhash = excluded.dhash,
                       phash_deframed = excluded.phash_deframed, dhash_deframed = excluded.dhash_deframed,
                       frame = excluded.frame, hash_degenerate = excluded.hash_degenerate,
                       updated_at = excluded.updated_at""",
                (
                    r.photo_id,
                    r.sha256,
                    int(as_signed(np.uint64(h.phash))),
                    int(as_signed(np.uint64(h.dhash))),
                    int(as_signed(np.uint64(h.phash_deframed))),
                    int(as_signed(np.uint64(h.dhash_deframed))),
                    json.dumps(list(h.frame)),
                    int(h.degenerate),
                    now,
                ),
            )
            corpus.set_stage(r.photo_id, STAGE, "done")
            report.hashed += 1


# ------------------------------------------------------------------------------------------- grouping
@dataclass(frozen=True, slots=True)
class _Catalog:
    """The hashed photos, as arrays indexed by position."""

    photo_id: np.ndarray
    sha256: list[str | None]
    phash: np.ndarray  # uint64
    dhash: np.ndarray
    phash_deframed: np.ndarray
    dhash_deframed: np.ndarray
    degenerate: np.ndarray  # bool
    pixels: np.ndarray  # int64, 0 when the file is gone
    uploaded: list[str | None]
    path: list[str | None]


def _load_hashed(corpus: Corpus) -> _Catalog:
    """Every hashed photo as column arrays (plain tuples from SQLite: a million rows stay ~300 MB)."""
    cursor = corpus.conn.cursor()
    cursor.row_factory = None
    cols: list[list] = [[] for _ in range(10)]
    for row in cursor.execute(
        """SELECT c.photo_id, c.hashed_sha256, c.phash, c.dhash, c.phash_deframed, c.dhash_deframed,
                  c.hash_degenerate, f.path,
                  COALESCE(f.original_width, f.width, 0) * COALESCE(f.original_height, f.height, 0),
                  p.uploaded_at
           FROM curation c JOIN photos p ON p.id = c.photo_id LEFT JOIN files f ON f.photo_id = c.photo_id
           WHERE c.phash IS NOT NULL ORDER BY c.photo_id"""
    ):
        for col, value in zip(cols, row, strict=True):
            col.append(value)
    pid, sha, ph, dh, phd, dhd, degenerate, path, pixels, uploaded = cols

    def codes(values: list[int]) -> np.ndarray:
        return as_unsigned(np.asarray(values, dtype=np.int64))

    return _Catalog(
        photo_id=np.asarray(pid, dtype=np.int64),
        sha256=sha,
        phash=codes(ph),
        dhash=codes(dh),
        phash_deframed=codes(phd),
        dhash_deframed=codes(dhd),
        degenerate=np.asarray(degenerate, dtype=bool),
        pixels=np.asarray([p or 0 for p in pixels], dtype=np.int64),
        uploaded=uploaded,
        path=path,
    )


def exact_links(cat: _Catalog) -> tuple[np.ndarray, np.ndarray]:
    """Positions with the same sha256, linked as chains to the first holder of each digest."""
    first: dict[str, int] = {}
    left, right = [], []
    for pos, digest in enumerate(cat.sha256):
        if digest is None:
            continue
        owner = first.setdefault(digest, pos)
        if owner != pos:
            left.append(owner)
            right.append(pos)
    return np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)


def phash_links(cat: _Catalog, phash_max: int, dhash_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions linked by pHash (any framing of either photo) and confirmed by the matching dHash."""
    usable = np.flatnonzero(~cat.degenerate)
    framed = usable[cat.phash_deframed[usable] != cat.phash[usable]]
    rows_pos = np.concatenate([usable, framed])
    rows_p = np.concatenate([cat.phash[usable], cat.phash_deframed[framed]])
    rows_d = np.concatenate([cat.dhash[usable], cat.dhash_deframed[framed]])
    pairs = hamming_pairs(rows_p, phash_max)
    a, b = rows_pos[pairs.left], rows_pos[pairs.right]
    keep = (a != b) & (hamming(rows_d[pairs.left], rows_d[pairs.right]) <= dhash_max)
    a, b = a[keep], b[keep]
    return np.minimum(a, b), np.maximum(a, b)


def _load_features(corpus: Corpus, cat: _Catalog, settings: CurateSettings) -> tuple[np.ndarray, np.ndarray]:
    """(positions that have features, their L2-normalised rows); empty when semantic mode is off."""
    from photocorpus.feature_store import has_feature_set, open_feature_set

    none = (np.zeros(0, dtype=np.int64), np.zeros((0, 1), dtype=np.float32))
    if not settings.semantic or not has_feature_set(corpus, settings.feature_set):
        return none
    fs = open_feature_set(corpus, settings.feature_set)
    rows = fs.rows_for(cat.photo_id)
    has = np.flatnonzero(rows >= 0)
    if has.size == 0:
        return none
    return has, fs.normalized(rows[has])


def veto_unlike(
    left: np.ndarray, right: np.ndarray, has: np.ndarray, vectors: np.ndarray, n: int, min_cosine: float
) -> np.ndarray:
    """Mask of hash links to keep: a link between two photos whose CNN features disagree (cosine
    below ``min_cosine``) is dropped. Different white-background product shots can share a pHash;
    their features tell a pot from a jacket. Links with a photo that has no features are kept."""
    row_of = np.full(n, -1, dtype=np.int64)
    row_of[has] = np.arange(has.shape[0])
    ra, rb = row_of[left], row_of[right]
    both = (ra >= 0) & (rb >= 0)
    keep = np.ones(left.shape[0], dtype=bool)
    if both.any():
        cos = np.einsum("ij,ij->i", vectors[ra[both]], vectors[rb[both]])
        keep[np.flatnonzero(both)] = cos >= min_cosine
    return keep


def semantic_links(
    corpus: Corpus,
    cat: _Catalog,
    settings: CurateSettings,
    linked: np.ndarray,
    features: tuple[np.ndarray, np.ndarray],
    advance: Advance | None = None,
    workers: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Positions linked by CNN-feature cosine and confirmed by aligned edge correlation.

    ``linked`` holds each position's component label from the exact and hash links: candidates that
    are already in one group need no verification.
    """
    from photocorpus.curate.cnn_near_duplicates import similar_pairs, verify_pairs

    empty = np.zeros(0, dtype=np.int64)
    has, vectors = features
    if has.size < 2:
        return empty, empty
    found = similar_pairs(vectors, settings.semantic_min_cosine, settings.semantic_neighbors)
    a, b = has[found.left], has[found.right]
    todo = np.flatnonzero(linked[a] != linked[b])
    a, b = a[todo], b[todo]
    stored = [p for p in np.unique(np.concatenate([a, b])) if cat.path[p]]
    locations = corpus.image_locations([cat.path[p] for p in stored])
    paths = {int(cat.photo_id[p]): loc for p, loc in zip(stored, locations, strict=True)}
    corr = verify_pairs(
        [(int(cat.photo_id[x]), int(cat.photo_id[y])) for x, y in zip(a, b, strict=True)],
        paths,
        settings.semantic_min_correlation,
        workers=workers,
        advance=advance,
    )
    keep = corr >= settings.semantic_min_correlation
    return a[keep], b[keep]


def _positions(cat: _Catalog, pairs: set[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """The (left, right) positions of photo-id pairs whose photos are both hashed."""
    if not pairs or cat.photo_id.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    ids = np.asarray(sorted(pairs), dtype=np.int64)
    pos = np.searchsorted(cat.photo_id, ids).clip(0, cat.photo_id.size - 1)  # photo_id is sorted
    both = (cat.photo_id[pos] == ids).all(axis=1)
    return pos[both, 0].astype(np.int64), pos[both, 1].astype(np.int64)


def representative_order(cat: _Catalog) -> np.ndarray:
    """Positions sorted by the representative rule: most pixels, earliest upload, lowest photo id."""
    uploaded = np.asarray([u or NEVER_UPLOADED for u in cat.uploaded])  # unknown sorts last
    return np.lexsort((cat.photo_id, uploaded, -cat.pixels))


def find_duplicates(
    corpus: Corpus,
    settings: CurateSettings | None = None,
    *,
    report: DedupReport | None = None,
    advance: Advance | None = None,
    workers: int | None = None,
) -> DedupReport:
    """Phase 2: link, group and choose representatives over every hashed photo; write the catalog."""
    settings = settings or corpus.settings.curate
    report = report or DedupReport()
    cat = _load_hashed(corpus)
    n = cat.photo_id.shape[0]
    report.photos = n
    human = overrides(corpus)
    el, er = exact_links(cat)
    pl, pr = phash_links(cat, settings.phash_max_distance, settings.dhash_max_distance)
    features = _load_features(corpus, cat, settings)
    if features[0].size:
        report.semantic_used = True
        report.semantic_photos = int(features[0].size)
        keep = veto_unlike(pl, pr, *features, n, settings.semantic_veto_cosine)
        report.vetoed = int((~keep).sum())
        pl, pr = pl[keep], pr[keep]
    hl, hr = _positions(cat, human.same_pairs)
    labels = constrained_groups(n, [(hl, hr), (el, er), (pl, pr)], _positions(cat, human.different_pairs))
    sl, sr = semantic_links(corpus, cat, settings, labels, features, advance, workers)
    machine = [("exact", el, er), ("phash", pl, pr), ("semantic", sl, sr)]
    now = utc_now()
    with corpus.transaction() as conn:
        # The verdicts again, under the write lock: a decision made while the links were computed (a
        # person working in `serve` during this run) is grouped by, not overwritten.
        human = overrides(corpus)
        links = [("human", *_positions(cat, human.same_pairs)), *machine]
        report.links = {name: int(left.shape[0]) for name, left, _ in links}
        updates = _group_rows(cat, links, _positions(cat, human.different_pairs), report)
        conn.executemany(
            "UPDATE curation SET dup_group = ?, duplicate_of = ?, dup_method = ?, updated_at = '"
            + now
            + "' WHERE photo_id = ?",
            updates,
        )
    return report


def _group_rows(
    cat: _Catalog,
    links: list[tuple[str, np.ndarray, np.ndarray]],
    different: tuple[np.ndarray, np.ndarray],
    report: DedupReport,
) -> list[tuple[int | None, int | None, str | None, int]]:
    """(dup_group, duplicate_of, dup_method, photo_id) of every hashed photo: the groups of ``links``
    (strongest first) that hold no ``different`` pair, each represented by the representative rule."""
    n = cat.photo_id.shape[0]
    labels = constrained_groups(n, [(a, b) for _, a, b in links], different)
    # strongest followed link of each photo (human beats exact beats phash beats semantic)
    method = np.full(n, len(METHOD_RANK), dtype=np.int64)
    report.refused = 0
    for name, left, right in links:
        followed = labels[left] == labels[right]
        report.refused += int((~followed).sum())
        for side in (left[followed], right[followed]):
            np.minimum.at(method, side, METHOD_RANK[name])
    names = {rank: name for name, rank in METHOD_RANK.items()}

    # representative of each component: the first member in representative order
    order = representative_order(cat)
    rep_of_label: dict[int, int] = {}
    for pos in order:
        rep_of_label.setdefault(int(labels[pos]), int(pos))
    sizes = np.bincount(labels, minlength=int(labels.max()) + 1 if n else 0)
    updates: list[tuple[int | None, int | None, str | None, int]] = []
    for pos in range(n):
        lab = int(labels[pos])
        if sizes[lab] < 2:
            updates.append((None, None, None, int(cat.photo_id[pos])))
            continue
        rep = int(cat.photo_id[rep_of_label[lab]])
        me = int(cat.photo_id[pos])
        dup_of = None if rep == me else rep
        updates.append((rep, dup_of, names.get(int(method[pos])), me))
    report.groups = int((sizes >= 2).sum()) if n else 0
    report.duplicates = sum(1 for u in updates if u[1] is not None)
    return updates


def delete_duplicate_files(corpus: Corpus, report: DedupReport | None = None) -> DedupReport:
    """Remove the stored files of photos that are ``duplicate_of`` another (``--delete``).

    Crash-safe through file intents: one transaction drops the ``files`` rows and records an intent for
    each path; :meth:`Corpus.resolve_dangling_intents` then deletes exactly those files. Killed in
    between, the next writer finishes the job. Hashes stay, so the photos stay in their groups.
    """
    report = report or DedupReport()
    now = utc_now()
    with corpus.transaction() as conn:
        rows = conn.execute(
            "SELECT f.photo_id, f.path, c.duplicate_of FROM files f "
            "JOIN curation c ON c.photo_id = f.photo_id WHERE c.duplicate_of IS NOT NULL"
        ).fetchall()
        for row in rows:
            conn.execute(
                "INSERT OR REPLACE INTO file_intents (path, photo_id, created_at) VALUES (?, ?, ?)",
                (row["path"], row["photo_id"], now),
            )
            conn.execute("DELETE FROM files WHERE photo_id = ?", (row["photo_id"],))
            corpus.set_stage(
                int(row["photo_id"]),
                STAGE,
                "done",
                "duplicate_deleted",
                f"file deleted by dedup --delete; duplicate of photo {row['duplicate_of']}",
            )
        if rows:
            corpus.bump_counter(STAGE, "deleted_files", len(rows))
    corpus.resolve_dangling_intents()
    report.deleted_files += len(rows)
    return report


def run_dedup(
    corpus: Corpus,
    settings: CurateSettings | None = None,
    *,
    workers: int | None = None,
    redo: bool = False,
    delete: bool = False,
    stop: StopFlag | None = None,
    advance: Advance | None = None,
) -> DedupReport:
    """Hash what is new, then regroup the whole corpus (and delete duplicate files if asked)."""
    settings = settings or corpus.settings.curate
    corpus.resolve_dangling_intents()
    report = hash_photos(corpus, workers=workers, redo=redo, stop=stop, advance=advance)
    if report.interrupted:
        return report
    find_duplicates(corpus, settings, report=report, workers=workers)
    if delete:
        delete_duplicate_files(corpus, report)
    return report


def pending_hash_count(corpus: Corpus, redo: bool = False) -> int:
    """How many photos phase 1 would hash (for a progress bar's total)."""
    return len(_pending_hash_rows(corpus, redo))
