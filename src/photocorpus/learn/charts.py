"""A classifier's report page and its confusion-matrix PNG.

Drawn with Pillow, which photocorpus already depends on, rather than pulling in matplotlib for one
heat map. Every label in the page is HTML-escaped: class names come from user captions and tags.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CELL_PX = 44
MAX_LABEL_CHARS = 18


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def confusion_png(matrix: np.ndarray, names: list[str], path: Path, title: str = "") -> None:
    """Row-normalised confusion matrix (true rows, predicted columns) with counts in the cells."""
    cm = np.asarray(matrix, dtype=np.float64)
    n = len(names)
    rows = np.maximum(cm.sum(axis=1, keepdims=True), 1)
    share = cm / rows
    font, small = _font(14), _font(11)
    labels = [name if len(name) <= MAX_LABEL_CHARS else name[: MAX_LABEL_CHARS - 1] + "…" for name in names]
    margin_left = 16 + 8 * max((len(s) for s in labels), default=4)
    margin_top = 40 + 8 * max((len(s) for s in labels), default=4)
    width, height = margin_left + n * CELL_PX + 20, margin_top + n * CELL_PX + 50
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    if title:
        draw.text((10, 8), title, fill="black", font=font)
    for i in range(n):
        for j in range(n):
            v = float(share[i, j])
            colour = (
                (int(255 - 200 * v), int(255 - 140 * v), 255)
                if i != j
                else (int(255 - 200 * v), 255, int(255 - 200 * v))
            )
            x0, y0 = margin_left + j * CELL_PX, margin_top + i * CELL_PX
            draw.rectangle([x0, y0, x0 + CELL_PX - 1, y0 + CELL_PX - 1], fill=colour, outline=(210, 210, 210))
            text = str(int(cm[i, j]))
            draw.text((x0 + 4, y0 + 14), text, fill="black", font=small)
    for i, label in enumerate(labels):
        draw.text((8, margin_top + i * CELL_PX + 14), label, fill="black", font=small)
        col = Image.new("RGBA", (8 * len(label) + 8, 16), (255, 255, 255, 0))
        ImageDraw.Draw(col).text((0, 0), label, fill="black", font=small)
        rotated = col.rotate(90, expand=True)
        img.paste(rotated, (margin_left + i * CELL_PX + 14, margin_top - rotated.height - 4), rotated)
    draw.text(
        (margin_left, height - 40),
        "columns: predicted, rows: true (colour: share of the row)",
        fill=(90, 90, 90),
        font=small,
    )
    img.save(path, format="PNG", optimize=True)


def report_html(name: str, info: dict[str, Any], metrics: dict[str, Any], has_confusion: bool) -> str:
    """A standalone page: settings, val/test results, per-class accuracy or per-label AP."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(name)}: classifier report</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:24px;max-width:1100px}"
        "table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ddd;padding:4px 8px;"
        "text-align:left}th{background:#f4f4f4}.n{text-align:right}</style></head><body>",
        f"<h1>{esc(name)}</h1>",
        f"<p>Target <b>{esc(str(info.get('target')))}</b> on <b>{esc(str(info.get('image_features')))}</b>, "
        f"{esc(str(info.get('head', {}).get('kind')))} head, split {esc(str(info.get('split')))}; "
        f"best epoch {esc(str(metrics.get('best_epoch')))} of {esc(str(metrics.get('epochs_run')))}.</p>",
    ]
    for split in ("val", "test"):
        m = metrics.get(split) or {}
        if not m:
            continue
        parts.append(f"<h2>{split}</h2>")
        if "accuracy" in m:
            parts.append(f"<p>accuracy <b>{_fmt(m['accuracy'])}</b> over {esc(str(m.get('n')))} photos</p>")
            parts.append("<table><tr><th>class</th><th>accuracy</th><th>photos</th></tr>")
            for cls, acc in (m.get("per_class_accuracy") or {}).items():
                support = (m.get("support") or {}).get(cls, "")
                parts.append(
                    f"<tr><td>{esc(cls)}</td><td class=n>{_fmt(acc)}</td>"
                    f"<td class=n>{esc(str(support))}</td></tr>"
                )
            parts.append("</table>")
        if "mAP" in m:
            parts.append(f"<p>mAP <b>{_fmt(m['mAP'])}</b> over {esc(str(m.get('n')))} photos</p>")
            parts.append("<table><tr><th>label</th><th>AP</th><th>positives</th></tr>")
            for label, ap in (m.get("per_label_ap") or {}).items():
                pos = (m.get("positives") or {}).get(label, "")
                parts.append(
                    f"<tr><td>{esc(label)}</td><td class=n>{_fmt(ap)}</td>"
                    f"<td class=n>{esc(str(pos))}</td></tr>"
                )
            parts.append("</table>")
    if has_confusion:
        parts.append("<h2>Confusion matrix (test)</h2><img src='confusion.png' alt='confusion matrix'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{float(value):.3f}"
