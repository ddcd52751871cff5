"""Learn and search: weak-label classifiers, the semantic image -> caption-embedding model, search.

The pieces, one module each:

* :mod:`.splits` and :mod:`.dataset`: which photos train, validate and test, with which targets;
* :mod:`.heads`: linear / MLP heads in torch and one early-stopping loop (``fit``);
* :mod:`.classifier`: ``train classifier`` (city, tags, concepts) and ``predict``;
* :mod:`.finetune`: the same classifier with the last EfficientNet-Lite0 blocks trained too;
* :mod:`.semantic`: ``train semantic``, the paper's regression onto caption embeddings (Gomez et al.,
  *Learning to Learn from Web Data through Deep Semantic Embeddings*, ECCV 2018 MULA workshop);
* :mod:`.registry`: models saved under ``models/<name>/`` and registered in the catalog;
* :mod:`.index`, :mod:`.query`, :mod:`.bridge`, :mod:`.search`: the faiss index, weighted queries,
  the caption-free ImageNet-label bridge and the one entry point :func:`.search.search_text`;
* :mod:`.evaluate`: mAP against a label file and P@k against judgments.

Submodules are imported explicitly: torch, faiss and sentence-transformers load only when used.
"""
