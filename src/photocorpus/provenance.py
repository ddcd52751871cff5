"""Provenance inside JPEG files: XMP plus a JPEG comment, as im2gps's files carried their attributes.

im2gps saved every attribute it knew of a photo (ids, owner, title, tags, licence, geo, dates, views...)
in the comment field of each JPEG it downloaded, so a file copied anywhere still says where it came
from and under which licence. Here ``fetch`` stamps every JPEG it stores (``[fetch] embed_provenance``,
on for Flickr photos), and ``export --embed-provenance`` stamps exported copies, both with
:func:`embed_provenance`; :func:`~photocorpus.catalog_provenance.load_provenance` reads the attributes
from the catalog.

This module is the stamp alone: pure functions of bytes and a :class:`Provenance`, no catalog, so that
fetch's render workers (local processes and Ray tasks), which apply it, import nothing of the catalog.

Two segments, both readable by exiftool, Pillow (``im.getxmp()``, ``im.info["comment"]``) and any XMP
reader:

* an XMP packet (APP1) in standard schemas where one exists: Dublin Core (``dc:source``,
  ``dc:identifier``, ``dc:title``, ``dc:description``, ``dc:creator``, ``dc:rights``, ``dc:subject``),
  ``xmpRights:WebStatement``, ``exif:GPSLatitude``/``GPSLongitude`` and ``exif:DateTimeOriginal``; and
  the rest (upload date, views, owner id, image URL, geo accuracy) in the ``photocorpus`` namespace
  (:data:`PHOTOCORPUS_NS`);
* a JPEG comment (COM) holding the same attributes as one JSON object, im2gps's place for them.

The segments are spliced into the byte stream right after the SOI/APP0 (and EXIF) header, by hand,
because every library that writes XMP or comments (Pillow included) does so by re-encoding the image,
and a provenance stamp must not cost a generation of JPEG loss. Earlier XMP and COM segments are
replaced, so stamping twice never stacks two.

All text is untrusted: characters XML 1.0 forbids (control characters, lone surrogates) are dropped,
the rest is XML-escaped, and fields are clipped until each segment fits JPEG's 64 KiB segment limit,
so no title can break the file or the packet.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any
from xml.sax.saxutils import escape, quoteattr

XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
PHOTOCORPUS_NS = "https://github.com/photocorpus/photocorpus/ns/provenance/1.0/"
MAX_SEGMENT_PAYLOAD = 65533  # 65535 minus the two length bytes
ALL_SOURCES = "*"
_SOI = b"\xff\xd8"
# Characters outside XML 1.0's Char production (plus the discouraged C1 controls): a reader refuses the
# whole packet over one of them, and a lone surrogate cannot even be encoded as UTF-8.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
# Text clip (characters per field) and tag count per attempt: the first that fits is written.
_LEVELS = ((20_000, 500), (4_000, 200), (1_000, 50), (250, 12), (60, 3), (0, 0))
_URL_CLIP = 2_000


class NotAJpegError(ValueError):
    """Provenance can only be embedded into JPEG bytes."""


@dataclass(frozen=True)
class Provenance:
    """Every attribute the harvest knows of one photo; everything but its source and id is optional.

    Dates are UTC ISO-8601 (``2016-05-01T09:15:00Z``), as the catalog stores them.
    """

    source: str
    source_id: str
    page_url: str | None = None
    image_url: str | None = None  # the URL the stored bytes were downloaded from
    owner: str | None = None
    owner_id: str | None = None
    title: str | None = None
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    license: str | None = None
    lat: float | None = None
    lon: float | None = None
    geo_accuracy: int | None = None
    taken_at: str | None = None
    uploaded_at: str | None = None
    views: int | None = None

    @property
    def source_url(self) -> str:
        """Where the photo came from: its page, else its image URL, else ``source:id``."""
        return self.page_url or self.image_url or f"{self.source}:{self.source_id}"

    def downloaded_from(self, url: str) -> Provenance:
        """This provenance with the image URL that the bytes actually came from."""
        return replace(self, image_url=url)

    def as_dict(self) -> dict[str, Any]:
        """The attributes as JSON-ready values, empty ones left out, ``source_url`` included."""
        out: dict[str, Any] = {"source_url": self.source_url}
        for f in fields(self):
            value = getattr(self, f.name)
            if value not in (None, [], ""):
                out[f.name] = value
        return out


# ---------------------------------------------------------------------------------------------- text
def _clean(value: object) -> str:
    return _NOT_XML.sub("", str(value))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def _gps(value: float, positive: str, negative: str) -> str:
    """XMP's GPSCoordinate form ``DDD,MM.mmmmmmk`` (degrees, decimal minutes, hemisphere)."""
    hemisphere = positive if value >= 0 else negative
    minutes = abs(value) * 60
    degrees, minutes = divmod(minutes, 60)
    return f"{int(degrees)},{minutes:.6f}{hemisphere}"


def _clipped(p: Provenance, limit: int, tag_count: int, url_clip: int) -> dict[str, Any]:
    """The attributes, cleaned and clipped for one size attempt."""
    out: dict[str, Any] = {}
    for key, value in p.as_dict().items():
        if isinstance(value, str):
            text = _clean(value)
            if key.endswith("_url"):
                out[key] = _clip(text, url_clip)
            elif key in ("source", "source_id", "taken_at", "uploaded_at"):
                out[key] = _clip(text, 200)  # identifiers and dates: never dropped
            elif limit:
                out[key] = _clip(text, limit)
        elif isinstance(value, list):
            out[key] = [_clip(_clean(v), min(limit, 200)) for v in value[:tag_count]]
        elif isinstance(value, float | int) and not isinstance(value, bool) and math.isfinite(value):
            out[key] = value
    return {k: v for k, v in out.items() if v not in ("", [])}


# ---------------------------------------------------------------------------------------------- XMP
def _xmp_packet(a: dict[str, Any]) -> bytes:
    def element(tag: str, value: object) -> str:
        return f"<{tag}>{escape(str(value))}</{tag}>"

    def alt(tag: str, value: str) -> str:
        return f'<{tag}><rdf:Alt><rdf:li xml:lang="x-default">{escape(value)}</rdf:li></rdf:Alt></{tag}>'

    parts = [
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>',
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">',
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"'
        ' xmlns:xmpRights="http://ns.adobe.com/xap/1.0/rights/"'
        ' xmlns:exif="http://ns.adobe.com/exif/1.0/"'
        f' xmlns:photocorpus="{PHOTOCORPUS_NS}"'
        f" xmpRights:WebStatement={quoteattr(a.get('source_url', ''))}>",
        element("dc:source", a.get("source_url", "")),
    ]
    if "source" in a and "source_id" in a:
        parts.append(element("dc:identifier", f"{a['source']}:{a['source_id']}"))
    if "title" in a:
        parts.append(alt("dc:title", a["title"]))
    if "description" in a:
        parts.append(alt("dc:description", a["description"]))
    if "owner" in a:
        parts.append(f"<dc:creator><rdf:Seq><rdf:li>{escape(a['owner'])}</rdf:li></rdf:Seq></dc:creator>")
    if "license" in a:
        parts.append(alt("dc:rights", a["license"]))
    if a.get("tags"):
        items = "".join(f"<rdf:li>{escape(t)}</rdf:li>" for t in a["tags"])
        parts.append(f"<dc:subject><rdf:Bag>{items}</rdf:Bag></dc:subject>")
    if a.get("lat") is not None and a.get("lon") is not None:
        parts.append(element("exif:GPSLatitude", _gps(float(a["lat"]), "N", "S")))
        parts.append(element("exif:GPSLongitude", _gps(float(a["lon"]), "E", "W")))
    if "taken_at" in a:
        parts.append(element("exif:DateTimeOriginal", a["taken_at"]))
    for key, name in (
        ("source", "Source"),
        ("source_id", "SourceID"),
        ("page_url", "PageURL"),
        ("image_url", "ImageURL"),
        ("owner_id", "OwnerID"),
        ("uploaded_at", "UploadDate"),
        ("views", "Views"),
        ("geo_accuracy", "GeoAccuracy"),
    ):
        if key in a:
            parts.append(element(f"photocorpus:{name}", a[key]))
    parts.append('</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>')
    return "".join(parts).encode("utf-8")


def _comment(a: dict[str, Any]) -> bytes:
    return json.dumps(a, ensure_ascii=False, sort_keys=True).encode("utf-8")


def _fitted(p: Provenance, render: Any, budget: int) -> bytes:
    """``render`` of the attributes at the first clip level whose result fits ``budget`` bytes."""
    for limit, tag_count in _LEVELS:
        payload = render(_clipped(p, limit, tag_count, _URL_CLIP))
        if len(payload) <= budget:
            return payload
    # Only absurdly long URLs are left: clip them too (each field is then at most a few hundred bytes).
    return render(_clipped(p, 0, 0, 200))


# ---------------------------------------------------------------------------------------------- JPEG
def _segment(marker: int, payload: bytes) -> bytes:
    if len(payload) > MAX_SEGMENT_PAYLOAD:
        raise ValueError("segment payload too large")
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _split_header(data: bytes) -> tuple[bytes, bytes, int]:
    """Split the segments before the image data into (leading, others, offset of the rest).

    ``leading`` holds APP0 (JFIF) and an EXIF APP1 that open the file: readers expect them first, so
    our segments go after them. Earlier XMP and COM segments are dropped, so re-stamping does not stack.
    """
    pos = 2
    leading, others = bytearray(), bytearray()
    at_start = True
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker in (0xDA, 0xD9) or not (0xC0 <= marker <= 0xFE):
            break
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        segment = data[pos : pos + 2 + length]
        payload = segment[4:]
        is_exif = marker == 0xE1 and payload.startswith(b"Exif\x00\x00")
        if at_start and (marker == 0xE0 or is_exif):
            leading += segment
        else:
            at_start = False
            if not (marker == 0xFE or (marker == 0xE1 and payload.startswith(XMP_HEADER))):
                others += segment
        pos += 2 + length
    return bytes(leading), bytes(others), pos


def embed_provenance(jpeg: bytes, provenance: Provenance) -> bytes:
    """Return ``jpeg`` with an XMP packet and a JSON comment describing ``provenance``.

    A pure function of its inputs: the entropy-coded image data is copied unchanged (no re-encode),
    and any text in ``provenance`` gives a well-formed packet and a valid file.
    """
    if not jpeg.startswith(_SOI):
        raise NotAJpegError("provenance can only be embedded into JPEG files")
    leading, others, offset = _split_header(jpeg)
    xmp = _segment(0xE1, XMP_HEADER + _fitted(provenance, _xmp_packet, MAX_SEGMENT_PAYLOAD - len(XMP_HEADER)))
    com = _segment(0xFE, _fitted(provenance, _comment, MAX_SEGMENT_PAYLOAD))
    return _SOI + leading + xmp + com + others + jpeg[offset:]


# ---------------------------------------------------------------------------------------------- sources
def stamped_sources(sources: Iterable[str], source: str) -> bool:
    """Whether a photo of ``source`` is stamped under a setting such as ``["flickr"]`` or ``["*"]``."""
    wanted = set(sources)
    return ALL_SOURCES in wanted or source in wanted
