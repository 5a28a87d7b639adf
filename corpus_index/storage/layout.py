"""Every path under a corpus root, named in one place.

::

    ROOT/corpus.sqlite (+ -wal, -shm)          the metadata store (:mod:`corpus_index.storage.store`)
    ROOT/.corpus.sqlite.create.lock             held while a store is created
    ROOT/thumbs/<aa>/<hash>[-region].jpg        thumbnails (paths stored relative to ROOT)
    ROOT/images/<aa>/<hash>.{jpg,png}           copies of fetched IIIF images (relative to ROOT)
    ROOT/features/<key>/batch_*.npz             feature batches; ROOT/features/.<key>.lock
    ROOT/indexes/<key><suffix>                  FAISS index per kind, + <file>.hashes.npz (content tags);
                                                ROOT/indexes/.<key>.<kind>.lock
    ROOT/factors/<key>/<γ-hash>-p<pool>/<id>[-t<τ>].npy   cached BiLRP factors (+ spec.json per folder)
    ROOT/stamps/<key>.json                      the model version the key's stored data came from
    ROOT/editions/<key>-<all|kind-K>.npz        cached k-nearest-neighbour graph (:mod:`corpus_index.editions`)
    ROOT/replaced/<key>-<UTC time>/             stored data set aside (nothing is deleted)
    ROOT/demo-source/                           the generated demo corpus (images/, metadata.csv)

Modules ask a :class:`Layout` for their paths rather than spelling them out, so what belongs to a model key
(:meth:`Layout.stored_paths`, moved aside as a whole when the model changes) follows from the same names.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

DB_NAME = "corpus.sqlite"
THUMBS = "thumbs"
IMAGES = "images"
DEMO_SOURCE = "demo-source"
#: File name suffix of each FAISS index kind (exact first: the one searched by default).
INDEX_SUFFIXES = {"flat": ".faiss", "hnsw": ".hnsw.faiss", "ivfpq": ".ivfpq.faiss"}
INDEX_TAGS_SUFFIX = ".hashes.npz"


@dataclass(frozen=True)
class Layout:
    """The paths of one corpus root.

    Parameters
    ----------
    root : Path
        The corpus root folder (not required to exist).
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # -- the store ---------------------------------------------------------------------------------------------
    @property
    def db(self) -> Path:
        """The SQLite store."""
        return self.root / DB_NAME

    @property
    def db_create_lock(self) -> Path:
        """Held while a new store is created, so an empty file is never taken for one in progress."""
        return self.root / f".{DB_NAME}.create.lock"

    def db_files(self) -> list[Path]:
        """The store and every file SQLite or its creation leaves beside it (removed together)."""
        return [self.db, self.root / f"{DB_NAME}-wal", self.root / f"{DB_NAME}-shm", self.db_create_lock]

    # -- images ------------------------------------------------------------------------------------------------
    @property
    def thumbs(self) -> Path:
        """Thumbnails (never ingested as scans)."""
        return self.root / THUMBS

    @staticmethod
    def thumb_relpath(digest: str, suffix: str = "") -> str:
        """Where a thumbnail lives relative to the root (stored in the item row)."""
        return f"{THUMBS}/{digest[:2]}/{digest[:24]}{suffix}.jpg"

    @staticmethod
    def image_relpath(digest: str, suffix: str) -> str:
        """Where a fetched image is kept relative to the root (stored in the item row)."""
        return f"{IMAGES}/{digest[:2]}/{digest}{suffix}"

    @property
    def demo_source(self) -> Path:
        """The generated demo corpus (scans and metadata.csv) of a demo root."""
        return self.root / DEMO_SOURCE

    # -- per model key -----------------------------------------------------------------------------------------
    def features(self, key: str) -> Path:
        """The feature batches of ``key``."""
        return self.root / "features" / key

    def features_lock(self, key: str) -> Path:
        """Held by a feature build of ``key``."""
        return self.root / "features" / f".{key}.lock"

    @property
    def indexes(self) -> Path:
        """The folder of every index."""
        return self.root / "indexes"

    def index(self, key: str, kind: str) -> Path:
        """The FAISS index file of ``key`` and ``kind``."""
        return self.indexes / f"{key}{INDEX_SUFFIXES[kind]}"

    def index_tags(self, key: str, kind: str) -> Path:
        """The sidecar with the row ids and content tags the index was built from."""
        index = self.index(key, kind)
        return index.with_name(index.name + INDEX_TAGS_SUFFIX)

    def index_lock(self, key: str, kind: str) -> Path:
        """Held while the index of ``key`` and ``kind`` is written."""
        return self.indexes / f".{key}.{kind}.lock"

    def indexed_keys(self) -> list[str]:
        """Model keys that have an index of some kind, sorted."""
        if not self.indexes.is_dir():
            return []
        suffixes = tuple(INDEX_SUFFIXES.values())
        return sorted({p.name.split(".")[0] for p in self.indexes.iterdir()
                       if p.name.endswith(suffixes) and not p.name.startswith(".")})

    @property
    def factors(self) -> Path:
        """The folder of every cached factor."""
        return self.root / "factors"

    def factor_folder(self, key: str, setting: str) -> Path:
        """Cached factors of ``key`` for one setting (``<γ-hash>-p<pool>``, see
        :mod:`corpus_index.storage.factor_cache`)."""
        return self.factors / key / setting

    @staticmethod
    def factor_name(item_id: int, transform: int | None = None) -> str:
        """``<id>.npy``, or ``<id>-t<transform>.npy`` for one flip/rotation of a rotation-max model."""
        return f"{int(item_id)}.npy" if transform is None else f"{int(item_id)}-t{int(transform)}.npy"

    def stamp(self, key: str) -> Path:
        """The version stamp of the stored data of ``key``."""
        return self.root / "stamps" / f"{key}.json"

    def editions_graph(self, key: str, name: str) -> Path:
        """The cached k-nearest-neighbour graph of ``key`` over the items ``name`` stands for (a kind, or all)."""
        return self.root / "editions" / f"{key}-{name}.npz"

    def stored_paths(self, key: str) -> list[Path]:
        """Everything stored for ``key`` that exists: feature batches, index files (with sidecars), factors."""
        paths = [self.features(key), self.factors / key]
        for kind in INDEX_SUFFIXES:
            paths += [self.index(key, kind), self.index_tags(key, kind)]
        return [p for p in paths if p.exists()]

    # -- set aside ---------------------------------------------------------------------------------------------
    @property
    def replaced(self) -> Path:
        """Where damaged or outdated stored data is moved (nothing is deleted)."""
        return self.root / "replaced"

    def replaced_folder(self, key: str) -> Path:
        """A fresh ``replaced/<key>-<UTC time>/`` folder (created)."""
        folder = self.replaced / f"{key}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
