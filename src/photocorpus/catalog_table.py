"""The catalog as one table: one joined, decoded row per photo, in catalog-id order.

Two readers share it, so that they can never drift apart: the exports (:mod:`photocorpus.export`,
whose Parquet table has exactly :func:`photo_schema`'s columns) and :meth:`Corpus.photos
<photocorpus.corpus.Corpus.photos>`, the pandas DataFrame a notebook works with. ``corpus.photos()``
and ``pandas.read_parquet`` of a Parquet export of the same corpus give the same frame.

Reading only: nothing here changes the catalog. The filters are SQL, so a notebook asking for one
label of a million-photo corpus decodes only that label's rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from photocorpus.errors import ParameterError

if TYPE_CHECKING:
    import pyarrow as pa

    from photocorpus.corpus import Corpus

SPLITS = ("train", "val", "test")
STATUSES = ("pending", "done", "failed", "skipped")


@dataclass(slots=True)
class CatalogPhoto:
    """One photo as the exports and ``corpus.photos()`` see it."""

    photo_id: int
    source: str
    source_id: str
    label: str
    labels: list[str]
    title: str | None
    caption_raw: str | None
    caption: str  # the curated caption (title + description + hashtags, cleaned)
    hashtags: list[str]
    tags: list[str]
    owner: str | None
    owner_id: str | None
    license: str | None
    page_url: str | None
    taken_at: str | None
    uploaded_at: str | None
    lat: float | None
    lon: float | None
    path: str | None  # relative to the corpus
    width: int | None
    height: int | None
    bytes: int | None
    sha256: str | None
    format: str | None
    split: str | None
    duplicate_of: str | None  # source_id of the group's representative
    dup_group: int | None
    bot: bool
    bot_reason: str | None
    quality_flags: list[str] = field(default_factory=list)
    quality_scores: dict[str, float] = field(default_factory=dict)
    language: str | None = None
    exclusion: str | None = None
    phash: str | None = None  # 16 hex digits
    image_url: str | None = None  # the http(s) URL the stored image was downloaded from

    def metadata(self) -> dict[str, Any]:
        """Everything but the file path, as JSON-ready values."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "path"}


@dataclass(frozen=True, slots=True)
class PhotoFilter:
    """Which photos :func:`iter_catalog_photos` yields; every field left empty lets all through.

    ``labels``: photos carrying any of them; ``splits``: photos in one of them; ``status``: stage ->
    wanted statuses (a photo with no row for the stage counts as ``pending``); ``duplicates``: True
    keeps only photos that are ``duplicate_of`` another, False drops them.
    """

    labels: tuple[str, ...] = ()
    splits: tuple[str, ...] | None = None
    status: tuple[tuple[str, tuple[str, ...]], ...] = ()
    duplicates: bool | None = None
    in_split_only: bool = False
    with_file: bool = False
    photo_ids: tuple[int, ...] | None = None  # only these photos (an app's selection); None: all

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition over ``p`` (photos), ``f`` (files) and ``c`` (curation), and its values."""
        terms: list[str] = []
        values: list[Any] = []
        if self.labels:
            marks = ",".join("?" * len(self.labels))
            terms.append(
                f"(p.primary_label IN ({marks}) OR EXISTS (SELECT 1 FROM photo_labels l "
                f"WHERE l.photo_id = p.id AND l.label IN ({marks})))"
            )
            values += [*self.labels, *self.labels]
        if self.splits is not None:
            terms.append(f"c.split IN ({','.join('?' * len(self.splits))})" if self.splits else "0")
            values += list(self.splits)
        elif self.in_split_only:
            terms.append("c.split IS NOT NULL")
        for stage, statuses in self.status:
            marks = ",".join("?" * len(statuses))
            terms.append(
                "COALESCE((SELECT s.status FROM stages s WHERE s.photo_id = p.id AND s.stage = ?), "
                f"'pending') IN ({marks})"
            )
            values += [stage, *statuses]
        if self.duplicates is not None:
            terms.append("c.duplicate_of IS NOT NULL" if self.duplicates else "c.duplicate_of IS NULL")
        if self.with_file:
            terms.append("f.path IS NOT NULL")
        if self.photo_ids is not None:
            # one JSON parameter, however many ids: no IN list to chunk
            terms.append("p.id IN (SELECT value FROM json_each(?))")
            values.append(json.dumps(list(self.photo_ids)))
        return (" AND ".join(terms) or "1"), values


def photo_filter(
    *,
    label: str | Sequence[str] | None = None,
    split: str | Sequence[str] | None = None,
    status: dict[str, str | Sequence[str]] | None = None,
    duplicates: bool | None = None,
) -> PhotoFilter:
    """A :class:`PhotoFilter` from ``corpus.photos()``'s arguments, each checked and named when wrong."""
    splits = _names(split)
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ParameterError(f"split must be train, val or test (or a list of them), not {unknown[0]!r}")
    wanted: list[tuple[str, tuple[str, ...]]] = []
    if status is not None:
        if not isinstance(status, dict):
            raise ParameterError(
                f'status must be a dict of stage -> status, e.g. {{"fetch": "failed"}}, not {status!r}'
            )
        for stage, value in status.items():
            statuses = _names(value)
            bad = [s for s in statuses if s not in STATUSES] or ([] if statuses else [value])
            if bad:
                raise ParameterError(
                    f"status[{stage!r}] must be one of {', '.join(STATUSES)} (or a list), not {bad[0]!r}"
                )
            wanted.append((str(stage), statuses))
    if duplicates not in (None, True, False):
        raise ParameterError(f"duplicates must be True, False or None, not {duplicates!r}")
    return PhotoFilter(
        labels=_names(label), splits=splits or None, status=tuple(wanted), duplicates=duplicates
    )


def _names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(str(v) for v in value)


def iter_catalog_photos(
    corpus: Corpus,
    *,
    splits: set[str] | None = None,
    in_split_only: bool = False,
    with_file: bool = False,
    only: PhotoFilter | None = None,
    photo_ids: Sequence[int] | None = None,
) -> Iterator[CatalogPhoto]:
    """Photos in catalog order, filtered by split (and to those with a split or a file if asked), and
    by ``only`` (labels, stage statuses, duplicates: see :class:`PhotoFilter`)."""
    base = only or PhotoFilter()
    chosen = PhotoFilter(
        labels=base.labels,
        splits=tuple(sorted(splits)) if splits is not None else base.splits,
        status=base.status,
        duplicates=base.duplicates,
        in_split_only=in_split_only or base.in_split_only,
        with_file=with_file or base.with_file,
        photo_ids=tuple(int(i) for i in photo_ids) if photo_ids is not None else base.photo_ids,
    )
    condition, values = chosen.where()
    query = f"""
        SELECT p.*, f.path, f.width AS f_width, f.height AS f_height, f.bytes AS f_bytes, f.sha256,
               f.format, c.split, c.dup_group, c.duplicate_of, rep.source_id AS rep_source_id, c.bot,
               c.bot_reason, c.quality_flags, c.quality_scores, c.caption_clean, c.language, c.exclusion,
               c.phash, f.origin
        FROM photos p
        LEFT JOIN files f ON f.photo_id = p.id
        LEFT JOIN curation c ON c.photo_id = p.id
        LEFT JOIN photos rep ON rep.id = c.duplicate_of
        WHERE {condition}
        ORDER BY p.id"""
    labels: dict[int, list[str]] = {}
    for pid, label in corpus.conn.execute(
        "SELECT photo_id, label FROM photo_labels ORDER BY photo_id, label"
    ):
        labels.setdefault(int(pid), []).append(label)
    for r in corpus.conn.execute(query, values):
        yield CatalogPhoto(
            photo_id=int(r["id"]),
            source=r["source"],
            source_id=r["source_id"],
            label=r["primary_label"],
            labels=labels.get(int(r["id"]), [r["primary_label"]]),
            title=r["title"],
            caption_raw=r["caption"],
            caption=r["caption_clean"] if r["caption_clean"] is not None else _fallback_caption(r),
            hashtags=json.loads(r["hashtags"] or "[]"),
            tags=json.loads(r["tags"] or "[]"),
            owner=r["owner"],
            owner_id=r["owner_id"],
            license=r["license"],
            page_url=r["page_url"],
            taken_at=r["taken_at"],
            uploaded_at=r["uploaded_at"],
            lat=r["lat"],
            lon=r["lon"],
            path=r["path"],
            width=r["f_width"],
            height=r["f_height"],
            bytes=r["f_bytes"],
            sha256=r["sha256"],
            format=r["format"],
            split=r["split"],
            duplicate_of=r["rep_source_id"],
            dup_group=r["dup_group"],
            bot=bool(r["bot"]),
            bot_reason=r["bot_reason"],
            quality_flags=json.loads(r["quality_flags"] or "[]"),
            quality_scores=json.loads(r["quality_scores"] or "{}"),
            language=r["language"],
            exclusion=r["exclusion"],
            phash=f"{int(r['phash']) & 0xFFFFFFFFFFFFFFFF:016x}" if r["phash"] is not None else None,
            # A local origin is a path on the importing machine: not provenance, and not for export.
            image_url=r["origin"] if str(r["origin"] or "").startswith(("http://", "https://")) else None,
        )


def _fallback_caption(row: Any) -> str:
    # The caption cleaning of uncurated photos. curate.text is plain text code shared by every stage;
    # issue #19 moves it out of the curate package, and then this import follows it.
    from photocorpus.caption_text import curated_caption

    return curated_caption(row["title"], row["caption"], json.loads(row["hashtags"] or "[]"))


def photo_schema() -> pa.Schema:
    """The columns of the photo table, in order: the Parquet export's and ``corpus.photos()``'s."""
    import pyarrow as pa

    text, ints, flt = pa.string(), pa.int64(), pa.float64()
    return pa.schema(
        [
            ("photo_id", ints),
            ("source", text),
            ("source_id", text),
            ("label", text),
            ("labels", pa.list_(text)),
            ("caption", text),
            ("caption_raw", text),
            ("title", text),
            ("hashtags", pa.list_(text)),
            ("tags", pa.list_(text)),
            ("language", text),
            ("owner", text),
            ("owner_id", text),
            ("license", text),
            ("page_url", text),
            ("taken_at", text),
            ("uploaded_at", text),
            ("lat", flt),
            ("lon", flt),
            ("path", text),
            ("width", ints),
            ("height", ints),
            ("bytes", ints),
            ("sha256", text),
            ("phash", text),
            ("duplicate_of", text),
            ("dup_group", ints),
            ("bot", pa.bool_()),
            ("bot_reason", text),
            ("quality_flags", pa.list_(text)),
            ("quality_scores", text),  # JSON object: scores differ by version, so not a struct
            ("split", text),
            ("exclusion", text),
        ]
    )


def photo_table(
    corpus: Corpus, photos: Iterable[CatalogPhoto], advance: Callable[[int], None] | None = None
) -> pa.Table:
    """The photos as an Arrow table of :func:`photo_schema`, stamped with the corpus root."""
    import pyarrow as pa

    schema = photo_schema()
    columns: dict[str, list[Any]] = {name: [] for name in schema.names}
    for photo in photos:
        for name in schema.names:
            value = getattr(photo, name)
            if name == "quality_scores":
                value = json.dumps(value, sort_keys=True)
            columns[name].append(value)
        if advance:
            advance(1)
    return pa.table(columns, schema=schema).replace_schema_metadata(
        {"photocorpus.corpus_root": str(corpus.root), "photocorpus.table": "photos"}
    )
