"""Getting scans into a corpus: folders with a metadata CSV (:mod:`.folder`, :mod:`.metadata_csv`) and IIIF
manifests (:mod:`.iiif`, reading them: :mod:`.iiif_manifest`, fetching under a policy: :mod:`.iiif_fetch`), both
through one loop over items (:mod:`.run`: :class:`~corpus_index.ingest.run.IngestRun`, whose
:class:`~corpus_index.ingest.run.IngestReport` says what went in); safe image opening, hashing and thumbnails
(:mod:`.images`). Items already in a corpus get metadata from a CSV through :mod:`.update` (``ingest --update``).

Nothing is imported here, so that the store can use :mod:`.images` without loading the ingest code.
"""
