"""Enrichment: per-photo metadata beyond search results (MIRFLICKR-1M s16a). Provenance written into
JPEG files lives in :mod:`photocorpus.provenance`, which fetch and export share."""
