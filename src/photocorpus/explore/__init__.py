"""The explore stage: 2-D maps, k-means clusters and a static report with hover thumbnails.

Entry point: :func:`photocorpus.explore.stage.explore` (``photocorpus explore``). Modules:
:mod:`~photocorpus.explore.embed2d` (PCA, t-SNE/UMAP, stored maps), :mod:`~photocorpus.explore.cluster`
(k-means, choice of k, catalog tables, summaries), :mod:`~photocorpus.explore.thumbs` (thumbnail
cache), :mod:`~photocorpus.explore.report` (the HTML report) and :mod:`~photocorpus.explore.figures`
(static PNGs). Heavy libraries are imported inside functions, so importing this package is cheap.
"""
