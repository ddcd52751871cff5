"""Exports: the curated corpus in the layouts other tools read (see docs/formats.md)."""
