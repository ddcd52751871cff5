"""EXIF in structured columns, from Flickr's ``getExif`` answer or from the image bytes themselves.

Both paths produce the same field names, so ``photo_exif`` can say, column by column, whether a value
came from the API or the file (originals carry EXIF; Flickr's resized sizes usually do not).
"""

from __future__ import annotations

import io
import json
import re
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from photocorpus.records import utc_iso

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus

EXIF_COLUMNS = ("make", "model", "lens", "focal_length_mm", "exposure_s", "f_number", "iso", "taken_at")
# Where a value came from: Flickr's API, the image file's own EXIF block, or a dataset's metadata file
# (MIRFLICKR's exif/<N>.txt, an s16a JSON), which is neither the photo's bytes nor our API call.
EXIF_SOURCES = ("api", "file", "dataset")
# A dataset's tag names, normalised (lower case, letters and digits only) -> column, best name first.
_NAMED_TAGS = {
    "make": ("make",),
    "model": ("model",),
    "lens": ("lensmodel", "lens"),
    "focal_length_mm": ("focallength",),
    "exposure_s": ("exposuretime", "exposure"),
    "f_number": ("fnumber", "aperture"),
    "iso": ("iso", "isospeed", "isospeedratings", "photographicsensitivity"),
    "taken_at": ("datetimeoriginal", "dateandtimeoriginal", "createdate"),
}

# Pillow tag ids: IFD0 and the Exif sub-IFD.
_TAG_MAKE, _TAG_MODEL = 0x010F, 0x0110
_TAG_EXIF_IFD = 0x8769
_TAG_EXPOSURE, _TAG_FNUMBER, _TAG_ISO = 0x829A, 0x829D, 0x8827
_TAG_DATETIME_ORIGINAL, _TAG_FOCAL, _TAG_LENS = 0x9003, 0x920A, 0xA434


def _number(value: Any) -> float | None:
    """Parse '1/125', '2.8', 'f/2.8', '50 mm', '0.008 sec (1/125)' or a rational into a float."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if hasattr(value, "numerator") and hasattr(value, "denominator"):
        return float(value.numerator) / float(value.denominator) if value.denominator else None
    text = str(value).strip()
    match = re.search(r"(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)", text)
    if match and not re.match(r"^f/", text):
        num, den = float(match.group(1)), float(match.group(2))
        return num / den if den else None
    match = re.search(r"\d+(?:\.\d+)?", text)
    return float(match.group(0)) if match else None


def _exif_date(value: Any) -> str | None:
    """EXIF dates look like ``2008:04:26 21:06:26``; they carry no zone, so they are stored as UTC."""
    if not value:
        return None
    text = str(value).strip()
    text = re.sub(r"^(\d{4}):(\d{2}):(\d{2})", r"\1-\2-\3", text)
    return utc_iso(text)


def _clean_text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).replace("\x00", "").strip()
    return text or None


def fields_from_api(payload: dict[str, Any]) -> dict[str, Any]:
    """Structured fields from a ``flickr.photos.getExif`` answer (``{"photo": {"exif": [...]}}``)."""
    tags: dict[str, Any] = {}
    for item in (payload.get("photo") or {}).get("exif") or []:
        if not isinstance(item, dict):
            continue
        raw = item.get("raw")
        raw = raw.get("_content") if isinstance(raw, dict) else raw
        tags.setdefault(str(item.get("tag")), raw)
    iso = _number(tags.get("ISO") or tags.get("ISOSpeedRatings") or tags.get("ISOSpeed"))
    return _drop_none(
        {
            "make": _clean_text(tags.get("Make")),
            "model": _clean_text(tags.get("Model")),
            "lens": _clean_text(tags.get("LensModel") or tags.get("Lens")),
            "focal_length_mm": _number(tags.get("FocalLength")),
            "exposure_s": _number(tags.get("ExposureTime")),
            "f_number": _number(tags.get("FNumber")),
            "iso": int(iso) if iso is not None else None,
            "taken_at": _exif_date(tags.get("DateTimeOriginal") or tags.get("CreateDate")),
        }
    )


def fields_from_tags(tags: dict[str, str]) -> dict[str, Any]:
    """Structured fields from a name -> value table such as MIRFLICKR's EXIF files.

    Those files name tags as Flickr shows them (``Exposure``, ``Aperture``, ``ISO Speed``) or as EXIF
    does (``ExposureTime``, ``FNumber``); names are compared without case, spaces or punctuation so
    both spellings land in the same column. ``Aperture`` is Flickr's label for the f-number
    (``f/2.8``); EXIF's APEX ``ApertureValue`` is a different quantity and is not read.
    """
    normalised: dict[str, str] = {}
    for name, value in tags.items():
        normalised.setdefault(re.sub(r"[^a-z0-9]", "", str(name).lower()), value)

    def pick(column: str) -> Any:
        return next((normalised[n] for n in _NAMED_TAGS[column] if normalised.get(n) not in (None, "")), None)

    iso = _number(pick("iso"))
    return _drop_none(
        {
            "make": _clean_text(pick("make")),
            "model": _clean_text(pick("model")),
            "lens": _clean_text(pick("lens")),
            "focal_length_mm": _number(pick("focal_length_mm")),
            "exposure_s": _number(pick("exposure_s")),
            "f_number": _number(pick("f_number")),
            "iso": int(iso) if iso is not None else None,
            "taken_at": _exif_date(pick("taken_at")),
        }
    )


def fields_from_bytes(data: bytes) -> dict[str, Any]:
    """Structured fields from the EXIF block of image bytes (empty when there is none)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            exif = im.getexif()
            sub = exif.get_ifd(_TAG_EXIF_IFD) if exif else {}
    except Exception:  # unreadable EXIF never fails a photo; it only means no fields
        return {}
    if not exif:
        return {}
    iso = sub.get(_TAG_ISO)
    if isinstance(iso, tuple | list):
        iso = iso[0] if iso else None
    return _drop_none(
        {
            "make": _clean_text(exif.get(_TAG_MAKE)),
            "model": _clean_text(exif.get(_TAG_MODEL)),
            "lens": _clean_text(sub.get(_TAG_LENS)),
            "focal_length_mm": _number(sub.get(_TAG_FOCAL)),
            "exposure_s": _number(sub.get(_TAG_EXPOSURE)),
            "f_number": _number(sub.get(_TAG_FNUMBER)),
            "iso": int(iso) if isinstance(iso, int | float | Fraction) else None,
            "taken_at": _exif_date(sub.get(_TAG_DATETIME_ORIGINAL)),
        }
    )


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def store_exif(corpus: Corpus, photo_id: int, fields: dict[str, Any], source: str) -> None:
    """Merge fields into ``photo_exif``; a value already there (from either source) is kept.

    ``source`` is one of :data:`EXIF_SOURCES`; each column's origin lands in the ``sources`` JSON.
    """
    if source not in EXIF_SOURCES:
        raise ValueError(f"source must be one of {', '.join(EXIF_SOURCES)}, not {source!r}")
    fields = {k: v for k, v in fields.items() if k in EXIF_COLUMNS}
    if not fields:
        return
    with corpus.transaction() as conn:
        row = conn.execute("SELECT * FROM photo_exif WHERE photo_id = ?", (photo_id,)).fetchone()
        current = dict(row) if row else {}
        sources = json.loads(current.get("sources") or "{}")
        merged = {col: current.get(col) for col in EXIF_COLUMNS}
        for col, value in fields.items():
            if merged.get(col) is None:
                merged[col] = value
                sources[col] = source
        conn.execute(
            f"INSERT OR REPLACE INTO photo_exif (photo_id, {', '.join(EXIF_COLUMNS)}, sources) "
            f"VALUES (?, {', '.join('?' * len(EXIF_COLUMNS))}, ?)",
            (photo_id, *(merged[c] for c in EXIF_COLUMNS), json.dumps(sources, sort_keys=True)),
        )
