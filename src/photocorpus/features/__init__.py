"""Image features: pretrained CNN embeddings and ImageNet labels, raw pixels, MIRFLICKR feature files.

The driver is :mod:`.pipeline`; each concern it uses has its own module (:mod:`.model_registry`,
:mod:`.decode`, :mod:`.runners`, :mod:`.shard_writer`...). What other stages share with this one
lives in core modules: the feature store (``photocorpus.feature_store``), ImageNet labels and
ontologies (``photocorpus.imagenet_labels``), preprocessing (``photocorpus.image_preprocess``), the
networks (``photocorpus.backbones``) and the caption encoders (``photocorpus.text_encoders``).
Submodules are imported explicitly, so that light users never pay for torch or onnxruntime just by
importing this package.
"""
