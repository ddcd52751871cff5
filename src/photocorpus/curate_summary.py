"""The ``curate`` block of ``photocorpus status``: unique ratios (ours and the seed's), splits, bots.

InstaCities1M judged uniqueness by (width, height, file size) and found 98.3% of its photos unique;
status shows that key's ratio next to the exact (sha256) one and to ours (exact + near duplicates), so
the difference is visible on every corpus. Plain SQL, no heavy imports: ``status`` must stay instant.
A core module (not part of the curate package) because the catalog's status reads it: the core may not
depend on a stage.
"""

from __future__ import annotations

import sqlite3
from typing import Any


def curate_summary(conn: sqlite3.Connection) -> dict[str, Any]:
    """Counts and ratios over stored files and curated photos."""
    files = int(conn.execute("SELECT COUNT(*) FROM files").fetchone()[0])
    out: dict[str, Any] = {"files": files}
    if files:
        sha = int(conn.execute("SELECT COUNT(DISTINCT sha256) FROM files").fetchone()[0])
        seed = int(
            conn.execute(
                "SELECT COUNT(*) FROM (SELECT 1 FROM files GROUP BY width, height, bytes)"
            ).fetchone()[0]
        )
        out["unique_ratio_seed_size_weight"] = round(seed / files, 4)
        out["unique_ratio_sha256"] = round(sha / files, 4)
    hashed, duplicates, groups = conn.execute(
        "SELECT COUNT(*), COUNT(duplicate_of), COUNT(DISTINCT dup_group) FROM curation "
        "WHERE phash IS NOT NULL"
    ).fetchone()
    out["hashed"] = int(hashed)
    out["duplicates"] = int(duplicates)
    out["duplicate_groups"] = int(groups)
    out["unique_ratio"] = round((hashed - duplicates) / hashed, 4) if hashed else None
    out["bots"] = int(conn.execute("SELECT COUNT(*) FROM curation WHERE bot = 1").fetchone()[0])
    out["splits"] = {
        r[0]: int(r[1])
        for r in conn.execute("SELECT split, COUNT(*) FROM curation WHERE split IS NOT NULL GROUP BY split")
    }
    out["excluded"] = {
        r[0]: int(r[1])
        for r in conn.execute(
            "SELECT exclusion, COUNT(*) FROM curation WHERE exclusion IS NOT NULL GROUP BY exclusion "
            "ORDER BY COUNT(*) DESC"
        )
    }
    return out
