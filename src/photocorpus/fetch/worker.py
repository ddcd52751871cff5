"""The worker-process half of fetch: downloaded bytes in, rendered files in the scratch folder out.

The driver sends small batches of downloaded images (one call per batch keeps the per-image cost of
the process pool low); a worker renders each (:func:`~photocorpus.fetch.imaging.render_image`) and
writes the JPEG to the corpus's scratch folder itself, so only a short result travels back. The driver
then fsyncs and renames the files into place (or uploads them to the object store) and records them
(see :mod:`photocorpus.fetch.committer`). A Ray task with an object store puts each JPEG straight at its
final key instead, which the driver reserved with a file intent before it sent the task.

This module imports Pillow only inside the workers: the driver imports it just to name the function.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from photocorpus.fetch.spec import RenderSpec

if TYPE_CHECKING:
    from photocorpus.object_store import ObjectStore
    from photocorpus.provenance import Provenance


@dataclass(frozen=True, slots=True)
class RenderResult:
    """A rendered photo waiting in the scratch folder, or a failure reason."""

    ok: bool
    sha256: str
    original_bytes: int
    tmp_path: str | None = None
    width: int | None = None
    height: int | None = None
    stored_bytes: int | None = None
    original_width: int | None = None
    original_height: int | None = None
    frame_removed: bool = False
    reason: str | None = None
    detail: str | None = None
    exif: dict[str, object] | None = None  # camera fields from the original bytes' EXIF (s16a columns)
    stored_path: str | None = None  # already at this catalog path on the object store (put by a worker)


def init_worker() -> None:
    """Pool initializer, after :func:`~photocorpus.executors.worker_setup` (which
    :func:`~photocorpus.executors.spawn_pool` runs first): load the imaging code now, while the first
    downloads are still running."""
    import photocorpus.fetch.imaging  # noqa: F401


def render_batch(
    spec: RenderSpec,
    tmp_dir: str,
    images: list[bytes],
    store: ObjectStore | None = None,
    dest_paths: Sequence[str] | None = None,
    stamps: Sequence[Provenance | None] | None = None,
) -> list[RenderResult]:
    """Render downloaded images and stage the results; bad input gives a reason, never an exception.

    ``stamps`` (one per image, ``None`` for none) is each photo's provenance, embedded into the JPEG as
    it is written (:func:`write_rendered`). The catalog's sha256 stays that of the original downloaded
    bytes, as for every re-encoded file; ``stored_bytes`` is the stamped file's size.

    Files are written without fsync here: the driver fsyncs each commit batch from threads, which keeps
    these processes busy with pixels instead of waiting for the disk. With ``store`` and
    ``dest_paths`` (one reserved catalog path per image) each JPEG is put at its final key instead,
    and ``tmp_dir`` is not used; a failed put raises :class:`~photocorpus.errors.StorageError`.
    """
    if store is not None and (dest_paths is None or len(dest_paths) != len(images)):
        raise ValueError("render_batch with a store needs one destination path per image")
    if stamps is not None and len(stamps) != len(images):
        raise ValueError("render_batch needs one provenance stamp (or None) per image")
    from photocorpus import reasons
    from photocorpus.exif import fields_from_bytes
    from photocorpus.fetch.imaging import render_image

    results = []
    for index, data in enumerate(images):
        out = render_image(data, spec)
        if not out.ok or out.data is None:
            results.append(
                RenderResult(
                    False,
                    out.sha256,
                    out.original_bytes,
                    original_width=out.original_width,
                    original_height=out.original_height,
                    reason=out.reason,
                    detail=out.detail,
                )
            )
            continue
        dest = dest_paths[index] if store is not None and dest_paths is not None else None
        stamp = stamps[index] if stamps is not None else None
        try:
            tmp_path, stored_path, stored_bytes = write_rendered(out.data, tmp_dir, store, dest, stamp)
        except ValueError as exc:  # stamping a rendered JPEG cannot fail; if it does, one photo's reason
            results.append(
                RenderResult(
                    False, out.sha256, out.original_bytes, reason=reasons.INTERNAL_ERROR,
                    detail=f"provenance: {exc}"[:300],
                )
            )  # fmt: skip
            continue
        results.append(
            RenderResult(
                True,
                out.sha256,
                out.original_bytes,
                tmp_path,
                out.width,
                out.height,
                stored_bytes,
                out.original_width,
                out.original_height,
                out.frame_removed,
                # The stored JPEG is re-encoded without EXIF, so the camera fields are read from the
                # original bytes here, where they still are (originals carry them; resized sizes rarely).
                exif=fields_from_bytes(data) or None,
                stored_path=stored_path,
            )
        )
    return results


def write_rendered(
    jpeg: bytes,
    tmp_dir: str,
    store: ObjectStore | None = None,
    dest_path: str | None = None,
    stamp: Provenance | None = None,
) -> tuple[str | None, str | None, int]:
    """The one place where a rendered JPEG's bytes become a stored file.

    Returns ``(tmp_path, stored_path, bytes written)``, one of the paths set. Without a store: a new
    file in the scratch folder (not fsynced: see :func:`render_batch`), which the committer later
    fsyncs and renames into ``images/`` or uploads. With ``store``: put at ``dest_path``, the catalog
    path the driver reserved with a file intent. Every fetched image, local or Ray, passes here, so a
    change to what is stored is made here and nowhere else: with ``stamp``, the photo's provenance is
    spliced in as XMP + a JPEG comment (:func:`~photocorpus.provenance.embed_provenance`, no re-encode)
    right before the bytes are written; stamping raises ``ValueError`` only for bytes that are not a
    JPEG (:class:`~photocorpus.provenance.NotAJpegError`).
    """
    if stamp is not None:
        from photocorpus.provenance import embed_provenance

        jpeg = embed_provenance(jpeg, stamp)
    if store is not None and dest_path is not None:
        store.put(dest_path, jpeg)
        return None, dest_path, len(jpeg)
    from photocorpus import corpus_files

    return str(corpus_files.write_tmp(Path(tmp_dir), jpeg, fsync=False)), None, len(jpeg)
