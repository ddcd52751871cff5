"""Enrichment: per-photo metadata beyond search results (MIRFLICKR-1M s16a), and provenance in files."""
