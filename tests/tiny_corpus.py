"""Shared helpers of the corpus-engine tests: a tiny corpus of noise images and a tiny similarity model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from corpus_index.corpus import Corpus
from corpus_index.models import register_model

TINY_KEY = "tiny-test"
# A real bilrp_core model, small enough for tests: VGG-16 cut at layer 5, h = 8, 32 px, random weights.
SMALL_VGG_KEY = "vgg16-L5-h8-seed0-px32"

# (kind, book, place, printer, year) of the books; 3 items per book alternate kinds.
BOOKS = [("b0", "Venice", "Giunta", 1500), ("b1", "Venice", "Scoto", 1520), ("b2", "Paris", "Cavellat", 1550),
         ("b3", "Lyon", "Giunta", 1580)]


class TinyModel(nn.Module):
    """phi = flatten(avgpool(relu(conv(x)))) on 16 px images: 16 dimensions, deterministic, counts its calls."""

    key = TINY_KEY

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator))
            self.conv.bias.zero_()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.images_seen = 0

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        array = np.asarray(image.convert("RGB").resize((16, 16)), dtype=np.float32) / 255.0
        return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images_seen += x.shape[0]
        return self.pool(torch.relu(self.conv(x))).flatten(1)


_tiny = TinyModel()
register_model(TINY_KEY, lambda: _tiny)


def tiny_model() -> TinyModel:
    """The registered tiny model instance (the one ``load_model(TINY_KEY)`` returns)."""
    return _tiny


def write_source(folder: Path, per_book: int = 3, seed: int = 0) -> Path:
    """Noise images in ``folder/images`` and a demo-style ``metadata.csv``; returns ``folder``."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = ["path,kind,group,book,title,author,printer,place,year,page"]
    for number, (book, place, printer, year) in enumerate(BOOKS):
        for page in range(per_book):
            name = f"{book}_p{page}.png"
            pixels = (rng.random((36, 44, 3)) * 255).astype("uint8")
            Image.fromarray(pixels).save(folder / "images" / name)
            kind = "table" if (number + page) % 2 else "woodcut"
            lines.append(f"images/{name},{kind},g{page},{book},Title {book},Author,{printer},{place},{year},{page}")
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n")
    return folder


def make_corpus(tmp_path: Path, per_book: int = 3, seed: int = 0) -> Corpus:
    """A fresh corpus under ``tmp_path/root`` with ``4 * per_book`` ingested noise images."""
    source = write_source(tmp_path / "source", per_book, seed)
    corpus = Corpus.open(tmp_path / "root", create=True)
    report = corpus.ingest_folder(source, source / "metadata.csv")
    assert len(report.added) == len(BOOKS) * per_book, report.summary()
    return corpus


# -- a corpus with missing metadata ----------------------------------------------------------------------------
SPARSE_FIELDS = ("year", "book", "title", "place", "printer", "page", "kind")
FORMULA_TITLE = '=HYPERLINK("x")'


def _sparse_rows() -> list[dict]:
    """The items of :func:`make_sparse_corpus` as add_item fields, each with a ``label`` naming what it lacks."""
    def complete(number: int, label: str) -> dict:
        return {"label": label, "kind": "table" if number % 2 else "woodcut", "group": f"g{number % 2}",
                "book": f"s{number}", "title": f"Title {label}", "author": "Author", "printer": f"Printer {label}",
                "place": f"Place {label}", "year": 1500 + 10 * number, "page": number + 1}

    rows = [complete(0, "complete-0"), complete(1, "complete-1")]
    for number, name in enumerate(SPARSE_FIELDS, start=2):
        row = complete(number, f"no-{name}")
        row[name] = None
        if name == "book":  # title, printer, place and year describe the book: no book, none of them either
            row.update(title=None, author=None, printer=None, place=None, year=None)
        rows.append(row)
    rows.append({"label": "no-metadata"})  # a scan added without a CSV row and outside any book folder
    formula = complete(len(rows), "formula")
    formula["title"] = FORMULA_TITLE
    rows.append(formula)
    return rows


def make_sparse_corpus(folder: Path, seed: int = 0) -> Corpus:
    """A corpus under ``folder/root`` whose items lack metadata: one item per field of :data:`SPARSE_FIELDS`
    lacking that field (label ``no-<field>``), one lacking everything (``no-metadata``), two complete items
    (``complete-0``, ``complete-1``) and one complete item titled :data:`FORMULA_TITLE` (``formula``).

    Images are 40×52 noise PNGs in ``folder/images``; each item has its own book, so a missing book field is
    missing for that item only. Missing values are stored as NULL, as an ingest without a CSV stores them.
    """
    from corpus_index.ingest.images import open_validated, sha256_file, write_thumbnail

    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    corpus = Corpus.open(folder / "root", create=True)
    for row in _sparse_rows():
        path = folder / "images" / f"{row['label']}.png"
        Image.fromarray((rng.random((52, 40, 3)) * 255).astype("uint8")).save(path)
        digest = sha256_file(path)
        image = open_validated(path)
        thumb = write_thumbnail(corpus.root, image, digest, None)
        fields = {k: v for k, v in row.items() if v is not None}
        corpus.store.add_item(hash=digest, source=str(path), path=str(path), width=image.width,
                              height=image.height, thumb=thumb, **fields)
    return corpus


APP = str(Path(__file__).resolve().parent.parent / "app.py")


def explorer_session(monkeypatch, root, models: str, timeout: float = 120, **params):
    """A fresh AppTest session of the explorer (``app.py``) on the corpus at ``root``, offering ``models``, with
    these query parameters; not run yet. One thread per test process: the suite's pages run side by side."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SPHAERA_ROOT", str(root))
    monkeypatch.setenv("SPHAERA_MODELS", models)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    session = AppTest.from_file(APP, default_timeout=timeout)
    session.query_params.update(params)
    return session
