"""A photo's stable place in [0, 1), from which every split is cut.

Curate's train/val/test splits and learn's hash splits both derive from it, so it lives in the core
where both can reach it. A hash of the photo's source and id, never of its catalog row, so adding
photos never moves old ones (the seeds' leak-free splits).
"""

from __future__ import annotations

import hashlib


def split_position(source: str, source_id: str) -> float:
    """A photo's stable position in [0, 1): BLAKE2b of its source and id, as a 64-bit fraction."""
    digest = hashlib.blake2b(f"{source}\x1f{source_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64
