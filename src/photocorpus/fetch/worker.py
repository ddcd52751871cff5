"""The worker-process half of fetch: downloaded bytes in, rendered files in the scratch folder out.

The driver sends small batches of downloaded images (one call per batch keeps the per-image cost of
the process pool low); a worker renders each (:func:`~photocorpus.fetch.imaging.render_image`) and
writes the JPEG to the corpus's scratch folder itself, so only a short result travels back. The driver
then fsyncs and renames the files into place and records them (see :mod:`photocorpus.fetch.stage`).

This module imports Pillow only inside the workers: the driver imports it just to name the function.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

from photocorpus.fetch.spec import RenderSpec


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


def init_worker() -> None:
    """Pool initializer: ignore Ctrl-C (the driver owns it and stops between batches) and load the
    imaging code now, while the first downloads are still running."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import photocorpus.fetch.imaging  # noqa: F401


def render_batch(spec: RenderSpec, tmp_dir: str, images: list[bytes]) -> list[RenderResult]:
    """Render downloaded images and stage the results; bad input gives a reason, never an exception.

    Files are written without fsync here: the driver fsyncs each commit batch from threads, which keeps
    these processes busy with pixels instead of waiting for the disk.
    """
    from photocorpus import storage
    from photocorpus.enrich.exif import fields_from_bytes
    from photocorpus.fetch.imaging import render_image

    results = []
    for data in images:
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
        path = storage.write_tmp(Path(tmp_dir), out.data, fsync=False)
        results.append(
            RenderResult(
                True,
                out.sha256,
                out.original_bytes,
                str(path),
                out.width,
                out.height,
                len(out.data),
                out.original_width,
                out.original_height,
                out.frame_removed,
                # The stored JPEG is re-encoded without EXIF, so the camera fields are read from the
                # original bytes here, where they still are (originals carry them; resized sizes rarely).
                exif=fields_from_bytes(data) or None,
            )
        )
    return results
