"""What a corpus keeps on disk under its root: the paths (:mod:`.layout`), the SQLite store of items
(:mod:`.store`, its schema steps :mod:`.store_migrations`, its feature marks :mod:`.store_features`), feature
batches (:mod:`.features`), FAISS indexes (:mod:`.faiss_index`), cached BiLRP factors (:mod:`.factor_cache`), the
model version stored data came from (:mod:`.model_stamp`), and keeping all of it true to the scans: atomic writes
and locks (:mod:`.atomic`), content tags and setting damaged files aside (:mod:`.integrity`), re-hashing scans
replaced in place (:mod:`.rehash`).

Nothing is imported here: each module is imported where it is used.
"""
