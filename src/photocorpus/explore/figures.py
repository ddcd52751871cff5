"""Static images of a report, for papers and for people who would rather look than click.

``map.png``: each map (CNN features, and raw pixels when compared) as a scatter coloured by its own
k-means clusters, with a legend naming each cluster by its most common ImageNet label.
``clusters.png``: a montage, one row per cluster of the main map, of the photos nearest its centre.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from photocorpus.explore.report import Facet, ReportData, facet_colors

__all__ = ["write_pngs"]

MONTAGE_COLUMNS = 8
MONTAGE_TILE_PX = 96


def write_pngs(data: ReportData, out_dir: Path) -> list[Path]:
    """Write ``map.png`` and ``clusters.png`` into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [_map_png(data, out_dir / "map.png")]
    if data.galleries:
        paths.append(_montage_png(data, out_dir / "clusters.png"))
    return paths


def _facet_for(data: ReportData, map_key: str) -> Facet:
    by_key = {f.key: f for f in data.facets}
    return by_key.get(f"cluster:{map_key}") or by_key[data.default_facet]


def _map_png(data: ReportData, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    n = len(data.photo_ids)
    cols = len(data.maps)
    fig, axes = plt.subplots(1, cols, figsize=(7.5 * cols, 7.8), squeeze=False, dpi=110)
    size = 12.0 if n <= 2_000 else 4.0 if n <= 20_000 else 1.0
    for ax, view in zip(axes[0], data.maps, strict=True):
        facet = _facet_for(data, view.key)
        colors = np.array([*facet_colors(facet), "#c8c8c8"])
        codes = np.where(facet.codes < 0, len(facet.categories), facet.codes)
        xy = np.asarray(view.coords, dtype=np.float64)
        ax.scatter(xy[:, 0], xy[:, 1], c=colors[codes], s=size, linewidths=0, rasterized=True)
        ax.set_title(f"{view.title}\n{view.note}", fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal", adjustable="datalim")
        handles = [
            Line2D([], [], marker="o", linestyle="", markersize=7, color=colors[i], label=name)
            for i, name in enumerate(facet.categories[:30])
        ]
        ax.legend(
            handles=handles, loc="upper left", bbox_to_anchor=(0, -0.01), ncol=3, fontsize=8, frameon=False
        )
    fig.suptitle(f"{data.title}: {n:,} photos", fontsize=13)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _montage_png(data: ReportData, path: Path) -> Path:
    from PIL import Image, ImageDraw, ImageFont

    gallery = data.galleries[0]
    thumb_of = dict(
        zip(
            data.photo_ids.tolist(),
            (data.photo_ids if data.thumb_ids is None else data.thumb_ids).tolist(),
            strict=True,
        )
    )
    tile, label_w, pad = MONTAGE_TILE_PX, 230, 4
    rows = gallery.summaries
    width = label_w + MONTAGE_COLUMNS * (tile + pad) + pad
    height = len(rows) * (tile + pad) + pad + 30
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=14)
    small = ImageFont.load_default(size=12)
    draw.text((pad, 6), gallery.title, fill="black", font=font)
    for r, summary in enumerate(rows):
        y = 30 + pad + r * (tile + pad)
        label = summary.top_labels[0][0] if summary.top_labels else ""
        draw.text((pad, y + 4), f"cluster {summary.cluster}", fill="black", font=font)
        draw.text((pad, y + 24), f"{summary.size:,} photos", fill="#555555", font=small)
        if label:
            draw.text((pad, y + 42), label[:30], fill="#555555", font=small)
        for c, pid in enumerate(summary.closest[:MONTAGE_COLUMNS]):
            src = data.thumb_paths.get(thumb_of.get(pid, pid))
            if src is None:
                continue
            with Image.open(src) as im:
                im = im.convert("RGB")
                im.thumbnail((tile, tile))
                x0 = label_w + pad + c * (tile + pad) + (tile - im.width) // 2
                sheet.paste(im, (x0, y + (tile - im.height) // 2))
    sheet.save(path, optimize=True)
    return path
