"""The curate stage: duplicates, bots, caption text, quality flags, splits."""
