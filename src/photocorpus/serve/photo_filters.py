"""The grid's filters as parameterised SQL: a whitelist of names, never a column taken from the URL.

Every filter of the routes contract (``label``, ``source``, ``split``, ``stage``/``status``/``reason``,
``dup``, ``flag``, ``bot``, ``cluster``, ``imagenet``, ``category``, ``license``, ``date_from``/
``date_to``, ``has_caption``, ``excluded``, ``reviewed``, plus ``ids`` from the map's lasso) maps to
one SQL condition over ``p`` (photos) and ``c`` (curation) with its values bound as parameters; an
unknown name or a malformed value raises :class:`FilterError`, which the routes answer with 400 and
the message (what was wrong and what is accepted).

Why EXISTS sub-queries rather than joins: each one probes an index for the page's candidate rows
(``photo_labels_by_label``, ``stages_by_status``, ``clusters_by_cluster``, ``image_labels_by_class``...),
so the count of a filter stays one index-assisted scan at 100,000 photos and no join multiplies rows.
"""

from __future__ import annotations

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
    "date": "COALESCE(p.taken_at, p.uploaded_at) ASC, p.id ASC",
    "-date": "COALESCE(p.taken_at, p.uploaded_at) DESC, p.id DESC",
    # score: the classifier's confidence in its top-1 ImageNet class (the "how sure is the model" order)
    "score": "(SELECT MAX(il.prob) FROM image_labels il WHERE il.photo_id = p.id AND il.rank = 1) DESC, p.id",
    "size": "(SELECT f.width * f.height FROM files f WHERE f.photo_id = p.id) DESC, p.id",
    "id": "p.id ASC",
}
DUP_STATES = {
    "unique": "c.dup_group IS NULL",
    "duplicate": "c.duplicate_of IS NOT NULL",
    "representative": "c.dup_group = p.id",
    "grouped": "c.dup_group IS NOT NULL",
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
        """The SQL condition over ``p`` and ``c`` (``LEFT JOIN curation c``) and its parameters."""
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
    """SQL over ``p`` (photos) and ``c`` (curation) for the filters; each value checked and bound."""
    terms: list[str] = []
    values: list[Any] = []

    def add(sql: str, *bound: Any) -> None:
        terms.append(sql)
        values.extend(bound)

    f = filters
    if "label" in f:
        add(
            "(p.primary_label = ? OR EXISTS (SELECT 1 FROM photo_labels l WHERE l.photo_id = p.id "
            "AND l.label = ?))",
            f["label"],
            f["label"],
        )
    if "source" in f:
        add("p.source = ?", f["source"])
    if "split" in f:
        if f["split"] not in SPLIT_VALUES:
            raise FilterError(f"split must be one of {', '.join(SPLIT_VALUES)}, not {f['split'][:40]!r}")
        if f["split"] == "none":
            add("c.split IS NULL")
        else:
            add("c.split = ?", f["split"])
    if "stage" in f or "status" in f or "reason" in f:
        if "stage" not in f:
            raise FilterError("status and reason need a stage too, e.g. stage=fetch&status=failed")
        status = f.get("status")
        if status is not None and status not in STATUS_VALUES:
            raise FilterError(f"status must be one of {', '.join(STATUS_VALUES)}, not {status[:40]!r}")
        if status == "pending" and "reason" not in f:
            add(
                "COALESCE((SELECT s.status FROM stages s WHERE s.photo_id = p.id AND s.stage = ?), "
                "'pending') = 'pending'",
                f["stage"],
            )
        else:
            sql = "EXISTS (SELECT 1 FROM stages s WHERE s.photo_id = p.id AND s.stage = ?"
            bound: list[Any] = [f["stage"]]
            if status is not None:
                sql += " AND s.status = ?"
                bound.append(status)
            if "reason" in f:
                sql += " AND s.reason = ?"
                bound.append(f["reason"])
            add(sql + ")", *bound)
    if "dup" in f:
        if f["dup"] not in DUP_STATES:
            raise FilterError(f"dup must be one of {', '.join(DUP_STATES)}, not {f['dup'][:40]!r}")
        add(DUP_STATES[f["dup"]])
    if "flag" in f:
        add(
            "EXISTS (SELECT 1 FROM json_each(COALESCE(c.quality_flags, '[]')) j WHERE j.value = ?)", f["flag"]
        )
    if "bot" in f:
        add("COALESCE(c.bot, 0) = ?", int(_flag01("bot", f["bot"])))
    if "cluster" in f:
        run, sep, number = f["cluster"].rpartition(":")
        if not sep or not run:
            raise FilterError("cluster must be RUN:NUMBER, e.g. cluster=efficientnet-lite0/k10:3")
        add(
            "EXISTS (SELECT 1 FROM clusters cl WHERE cl.run = ? AND cl.cluster = ? AND cl.photo_id = p.id)",
            run,
            _int("cluster number", number, 0, 1_000_000),
        )
    if "imagenet" in f:
        add(
            "EXISTS (SELECT 1 FROM image_labels il WHERE il.photo_id = p.id AND il.rank = 1 "
            "AND il.class_name = ?)",
            f["imagenet"],
        )
    if "category" in f:
        add(
            "EXISTS (SELECT 1 FROM image_categories ic WHERE ic.photo_id = p.id AND ic.category = ?)",
            f["category"],
        )
    if "license" in f:
        add("p.license = ?", f["license"])
    for name, op in (("date_from", ">="), ("date_to", "<")):
        if name in f:
            if not _DATE.match(f[name]):
                raise FilterError(f"{name} must be a date as YYYY-MM-DD, not {f[name][:40]!r}")
            # date_to is inclusive: everything before the next day ("2020-01-31" + "~" sorts after the
            # day's timestamps, which continue with "T").
            bound_value = f[name] if op == ">=" else f[name] + "~"
            add(f"COALESCE(p.taken_at, p.uploaded_at) {op} ?", bound_value)
    if "has_caption" in f:
        has = _flag01("has_caption", f["has_caption"])
        add("COALESCE(p.caption, '') != ''" if has else "COALESCE(p.caption, '') = ''")
    if "excluded" in f:
        excluded = _flag01("excluded", f["excluded"])
        add("c.exclusion IS NOT NULL" if excluded else "c.exclusion IS NULL")
    if "reviewed" in f:
        reviewed = _flag01("reviewed", f["reviewed"])
        add(("" if reviewed else "NOT ") + REVIEWED_SQL)
    if "ids" in f:
        ids = parse_ids(f["ids"])
        # one JSON parameter instead of thousands of placeholders
        import json

        add("p.id IN (SELECT value FROM json_each(?))", json.dumps(ids))
    return (" AND ".join(terms) or "1"), values


# A photo a person has decided anything about (an active decision names it); decision_photos is keyed
# on photo_id first, so this is one index probe per row.
REVIEWED_SQL = (
    "EXISTS (SELECT 1 FROM decision_photos x JOIN decisions d ON d.id = x.decision "
    "WHERE x.photo_id = p.id AND d.undone_by IS NULL AND d.kind != 'undo')"
)
