"""The grid's filters as parameterised SQL: a whitelist of names, never a column taken from the URL.

Every filter of the routes contract (``label``, ``source``, ``split``, ``stage``/``status``/``reason``,
``dup``, ``flag``, ``bot``, ``cluster``, ``imagenet``, ``category``, ``license``, ``date_from``/
``date_to``, ``has_caption``, ``excluded``, ``reviewed``, plus ``ids`` from the map's lasso) maps to
one SQL condition over ``p`` (photos) and ``c`` (curation) with its values bound as parameters; an
unknown name or a malformed value raises :class:`FilterError`, which the routes answer with 400 and
the message (what was wrong and what is accepted).

Each filter is a set of photo ids read from an index (see :func:`photo_condition` for why), so the
count of a filter stays fast at 100,000 photos and no join multiplies rows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from photocorpus.errors import PhotocorpusError

FILTER_NAMES = (
    "label", "source", "split", "stage", "status", "reason", "dup", "flag", "bot", "cluster",
    "imagenet", "category", "license", "date_from", "date_to", "has_caption", "excluded", "reviewed", "ids",
)  # fmt: skip
SORTS = {
    "date": "COALESCE(p.taken_at, p.uploaded_at) ASC, p.id ASC",  # = DATE_SQL: the index photos_by_date
    "-date": "COALESCE(p.taken_at, p.uploaded_at) DESC, p.id DESC",
    # score: the classifier's confidence in its top-1 ImageNet class (the "how sure is the model" order)
    "score": "(SELECT MAX(il.prob) FROM image_labels il WHERE il.photo_id = p.id AND il.rank = 1) DESC, p.id",
    "size": "(SELECT f.width * f.height FROM files f WHERE f.photo_id = p.id) DESC, p.id",
    "id": "p.id ASC",
}
DUP_STATES = {
    "unique": "p.id NOT IN (SELECT photo_id FROM curation WHERE dup_group IS NOT NULL)",
    "duplicate": "p.id IN (SELECT photo_id FROM curation WHERE duplicate_of IS NOT NULL)",
    "representative": "p.id IN (SELECT dup_group FROM curation WHERE dup_group IS NOT NULL)",
    "grouped": "p.id IN (SELECT photo_id FROM curation WHERE dup_group IS NOT NULL)",
}
SPLIT_VALUES = ("train", "val", "test", "none")
STATUS_VALUES = ("pending", "done", "failed", "skipped")
MAX_PER_PAGE = 500
MAX_IDS = 10_000  # a lasso selection handed over in the URL
MAX_VALUE_CHARS = 500
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class FilterError(PhotocorpusError):
    """A grid or search filter the app cannot use; the message says which and what it accepts."""


@dataclass(frozen=True)
class GridQuery:
    """One grid request: the filters (name -> value, as given), the order and the page."""

    filters: dict[str, str] = field(default_factory=dict)
    sort: str = "id"
    page: int = 1
    per_page: int = 60

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition over ``p`` (photos) and its parameters."""
        return photo_condition(self.filters)

    def query_string(self, **changes: Any) -> str:
        """This query's URL parameters with some changed (``page=2``), for paging and sort links."""
        from urllib.parse import urlencode

        values: dict[str, Any] = {
            **self.filters,
            "sort": self.sort,
            "page": self.page,
            "per_page": self.per_page,
        }
        values.update(changes)
        return urlencode({k: v for k, v in values.items() if v not in (None, "")})


def _int(name: str, value: str, lo: int, hi: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise FilterError(f"{name} must be a whole number from {lo} to {hi}, not {value[:40]!r}") from None
    if not lo <= number <= hi:
        raise FilterError(f"{name} must be from {lo} to {hi}, not {number}")
    return number


def _flag01(name: str, value: str) -> bool:
    if value not in ("0", "1"):
        raise FilterError(f"{name} must be 0 or 1, not {value[:40]!r}")
    return value == "1"


def parse_grid_query(params: Mapping[str, str]) -> GridQuery:
    """A :class:`GridQuery` from URL parameters; empty values are ignored, unknown names refused."""
    filters: dict[str, str] = {}
    for name, value in params.items():
        if name in ("sort", "page", "per_page", "q", "k", "like", "features", "token", "order", "format"):
            continue
        if name not in FILTER_NAMES:
            raise FilterError(
                f"unknown filter {name[:40]!r}; the grid filters are: {', '.join(FILTER_NAMES)}"
            )
        if value == "":
            continue
        if len(value) > (MAX_IDS * 12 if name == "ids" else MAX_VALUE_CHARS):
            raise FilterError(f"the value of {name} is too long")
        filters[name] = value
    sort = params.get("sort") or "id"
    if sort not in SORTS:
        raise FilterError(f"sort must be one of {', '.join(SORTS)}, not {sort[:40]!r}")
    page = _int("page", params.get("page") or "1", 1, 10_000_000)
    per_page = _int("per_page", params.get("per_page") or "60", 1, MAX_PER_PAGE)
    query = GridQuery(filters, sort, page, per_page)
    query.where()  # every value checked now, before any SQL runs
    return query


def parse_ids(value: str) -> list[int]:
    """``"3,5,8"`` as ids (the map's lasso selection); at most :data:`MAX_IDS`."""
    parts = [p for p in value.split(",") if p.strip()]
    if len(parts) > MAX_IDS:
        raise FilterError(f"ids holds {len(parts)} photo ids; select at most {MAX_IDS}")
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise FilterError("ids must be photo ids separated by commas, e.g. ids=3,5,8") from None


def photo_condition(filters: Mapping[str, str]) -> tuple[str, list[Any]]:
    """SQL over ``p`` (photos) alone for the filters; each value checked and bound.

    Why every term is ``p.id IN (...)`` or ``p.id NOT IN (...)`` over a narrow, indexed table rather
    than a join: the photos rows are wide (captions, tags, JSON), and at 100,000 photos scanning them
    once costs a third of a second. An ``IN`` set is built from an index and the photos are then found
    by id, and ``COUNT(*)`` of a ``NOT IN`` reads the narrowest index of photos, not its rows. A
    photo without a curation row counts as unique, not a bot, not excluded and in no split.
    """
    terms: list[str] = []
    values: list[Any] = []

    def add(sql: str, *bound: Any) -> None:
        terms.append(sql)
        values.extend(bound)

    f = filters
    if "label" in f:
        # photo_labels holds every label of a photo, its primary one included (import writes it
        # there, and a person's corrected label is written to both)
        add("p.id IN (SELECT photo_id FROM photo_labels WHERE label = ?)", f["label"])
    if "source" in f:
        add("p.id IN (SELECT id FROM photos WHERE source = ?)", f["source"])
    if "split" in f:
        if f["split"] not in SPLIT_VALUES:
            raise FilterError(f"split must be one of {', '.join(SPLIT_VALUES)}, not {f['split'][:40]!r}")
        if f["split"] == "none":
            add("p.id NOT IN (SELECT photo_id FROM curation WHERE split IS NOT NULL)")
        else:
            add("p.id IN (SELECT photo_id FROM curation WHERE split = ?)", f["split"])
    if "stage" in f or "status" in f or "reason" in f:
        if "stage" not in f:
            raise FilterError("status and reason need a stage too, e.g. stage=fetch&status=failed")
        status = f.get("status")
        if status is not None and status not in STATUS_VALUES:
            raise FilterError(f"status must be one of {', '.join(STATUS_VALUES)}, not {status[:40]!r}")
        if status == "pending" and "reason" not in f:
            # a photo the stage has not seen yet is pending too
            add(
                "p.id NOT IN (SELECT photo_id FROM stages WHERE stage = ? AND status != 'pending')",
                f["stage"],
            )
        else:
            sql = "p.id IN (SELECT photo_id FROM stages WHERE stage = ?"
            bound: list[Any] = [f["stage"]]
            if status is not None:
                sql += " AND status = ?"
                bound.append(status)
            if "reason" in f:
                sql += " AND reason = ?"
                bound.append(f["reason"])
            add(sql + ")", *bound)
    if "dup" in f:
        if f["dup"] not in DUP_STATES:
            raise FilterError(f"dup must be one of {', '.join(DUP_STATES)}, not {f['dup'][:40]!r}")
        add(DUP_STATES[f["dup"]])
    if "flag" in f:
        add(
            "p.id IN (SELECT c.photo_id FROM curation c, json_each(c.quality_flags) j "
            "WHERE c.quality_flags IS NOT NULL AND c.quality_flags != '[]' AND j.value = ?)",
            f["flag"],
        )
    if "bot" in f:
        bot = _flag01("bot", f["bot"])
        add(("" if bot else "NOT ") + "p.id IN (SELECT photo_id FROM curation WHERE bot = 1)")
    if "cluster" in f:
        run, sep, number = f["cluster"].rpartition(":")
        if not sep or not run:
            raise FilterError("cluster must be RUN:NUMBER, e.g. cluster=efficientnet-lite0/k10:3")
        add(
            "p.id IN (SELECT photo_id FROM clusters WHERE run = ? AND cluster = ?)",
            run,
            _int("cluster number", number, 0, 1_000_000),
        )
    if "imagenet" in f:
        add("p.id IN (SELECT photo_id FROM image_labels WHERE class_name = ? AND rank = 1)", f["imagenet"])
    if "category" in f:
        add("p.id IN (SELECT photo_id FROM image_categories WHERE category = ?)", f["category"])
    if "license" in f:
        add("p.license = ?", f["license"])
    for name, op in (("date_from", ">="), ("date_to", "<")):
        if name in f:
            if not _DATE.match(f[name]):
                raise FilterError(f"{name} must be a date as YYYY-MM-DD, not {f[name][:40]!r}")
            # date_to is inclusive: everything before the next day ("2020-01-31" + "~" sorts after the
            # day's timestamps, which continue with "T" or " ").
            bound_value = f[name] if op == ">=" else f[name] + "~"
            add(f"{DATE_SQL} {op} ?", bound_value)
    if "has_caption" in f:
        has = _flag01("has_caption", f["has_caption"])
        add(("" if has else "NOT ") + f"p.id IN (SELECT id FROM photos WHERE {HAS_CAPTION_SQL})")
    if "excluded" in f:
        excluded = _flag01("excluded", f["excluded"])
        add(
            ("" if excluded else "NOT ")
            + "p.id IN (SELECT photo_id FROM curation WHERE exclusion IS NOT NULL)"
        )
    if "reviewed" in f:
        reviewed = _flag01("reviewed", f["reviewed"])
        add(("" if reviewed else "NOT ") + REVIEWED_SQL)
    if "ids" in f:
        # one JSON parameter instead of thousands of placeholders
        add("p.id IN (SELECT value FROM json_each(?))", json.dumps(parse_ids(f["ids"])))
    return (" AND ".join(terms) or "1"), values


# The expressions the indexes of migration 11 are built on (catalog_schema.py): a query uses an
# expression index only when it spells the expression the same way.
DATE_SQL = "COALESCE(p.taken_at, p.uploaded_at)"
HAS_CAPTION_SQL = "COALESCE(caption, '') != ''"


# A photo a person has decided anything about (an active decision names it).
REVIEWED_SQL = (
    "p.id IN (SELECT x.photo_id FROM decision_photos x JOIN decisions d ON d.id = x.decision "
    "WHERE d.undone_by IS NULL AND d.kind != 'undo')"
)
