"""Image features: pretrained CNN embeddings and ImageNet labels, raw pixels, MIRFLICKR feature files.

Submodules are imported explicitly (``photocorpus.image_preprocess``, ``.labels``,
``.models.efficientnet_lite`` ...) so that light users such as the catalog never pay for torch or
onnxruntime just by importing this package.
"""
