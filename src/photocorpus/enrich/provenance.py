"""Provenance inside JPEG files: XMP (Dublin Core) plus a JPEG comment, as im2gps did.

Exported files then carry where they came from (source URL, owner, title, licence, tags) wherever they
are copied. The segments are spliced into the JPEG byte stream right after the SOI/APP0 header, by
hand, because every library that writes XMP or comments (Pillow included) does so by re-encoding the
image, and a provenance stamp must not cost a generation of JPEG loss.

All text is untrusted: XML-escaped in the XMP packet, and truncated so each segment fits JPEG's
64 KiB segment limit.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field
from xml.sax.saxutils import escape, quoteattr

XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
MAX_SEGMENT_PAYLOAD = 65533  # 65535 minus the two length bytes
_SOI = b"\xff\xd8"


class NotAJpegError(ValueError):
    """Provenance can only be embedded into JPEG bytes."""


@dataclass(frozen=True)
class Provenance:
    """Where a photo came from; every field is optional except the source URL."""

    source_url: str
    owner: str | None = None
    title: str | None = None
    license: str | None = None
    tags: list[str] = field(default_factory=list)
    source: str | None = None
    source_id: str | None = None


def _clip(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def _xmp_packet(p: Provenance, budget: int) -> bytes:
    def build(limit: int) -> bytes:
        tags = "".join(f"<rdf:li>{escape(_clip(t, 200) or '')}</rdf:li>" for t in p.tags[:200])
        parts = [
            '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>',
            '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">',
            '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"'
            ' xmlns:xmpRights="http://ns.adobe.com/xap/1.0/rights/"'
            f" xmpRights:WebStatement={quoteattr(_clip(p.source_url, limit) or '')}>",
            f"<dc:source>{escape(_clip(p.source_url, limit) or '')}</dc:source>",
        ]

        def alt(tag: str, value: str) -> str:
            text = escape(_clip(value, limit) or "")
            return f'<dc:{tag}><rdf:Alt><rdf:li xml:lang="x-default">{text}</rdf:li></rdf:Alt></dc:{tag}>'

        if p.title:
            parts.append(alt("title", p.title))
        if p.owner:
            owner = escape(_clip(p.owner, limit) or "")
            parts.append(f"<dc:creator><rdf:Seq><rdf:li>{owner}</rdf:li></rdf:Seq></dc:creator>")
        if p.license:
            parts.append(alt("rights", p.license))
        if tags:
            parts.append(f"<dc:subject><rdf:Bag>{tags}</rdf:Bag></dc:subject>")
        if p.source and p.source_id:
            parts.append(
                f"<dc:identifier>{escape(_clip(f'{p.source}:{p.source_id}', 300) or '')}</dc:identifier>"
            )
        parts.append('</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>')
        return "".join(parts).encode("utf-8")

    limit = 20_000
    packet = build(limit)
    while len(packet) > budget and limit > 50:
        limit //= 2
        packet = build(limit)
    return packet


def _comment(p: Provenance, budget: int) -> bytes:
    data = {k: v for k, v in asdict(p).items() if v not in (None, [], "")}
    text = json.dumps(data, ensure_ascii=False, sort_keys=True).encode("utf-8")
    limit = 20_000
    while len(text) > budget and limit > 50:
        limit //= 2
        clipped = {k: (_clip(v, limit) if isinstance(v, str) else v[:50] if isinstance(v, list) else v)
                   for k, v in data.items()}  # fmt: skip
        text = json.dumps(clipped, ensure_ascii=False, sort_keys=True).encode("utf-8")
    return text


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
    """Return ``jpeg`` with an XMP packet and a JSON comment describing ``provenance`` (no re-encode)."""
    if not jpeg.startswith(_SOI):
        raise NotAJpegError("provenance can only be embedded into JPEG files")
    leading, others, offset = _split_header(jpeg)
    xmp = _segment(0xE1, XMP_HEADER + _xmp_packet(provenance, MAX_SEGMENT_PAYLOAD - len(XMP_HEADER)))
    com = _segment(0xFE, _comment(provenance, MAX_SEGMENT_PAYLOAD))
    return _SOI + leading + xmp + com + others + jpeg[offset:]
