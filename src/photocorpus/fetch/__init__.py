"""The fetch stage: download, validate, de-frame and resize images (``photocorpus fetch``)."""
