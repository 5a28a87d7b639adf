"""corpus_index — ingest, metadata store, features, FAISS search and cached BiLRP factors for page corpora.

``from corpus_index import Corpus`` is resolved lazily so that light users (the demo generator, the store) do not
import torch and faiss.
"""


def __getattr__(name):
    if name == "Corpus":
        from .corpus import Corpus

        return Corpus
    raise AttributeError(f"module 'corpus_index' has no attribute {name!r}")
