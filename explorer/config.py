"""Settings of the explorer, from environment variables (read on every call, so tests can set them).

``SPHAERA_ROOT``
    Corpus root folder (default: ``data/`` next to ``app.py``). Built as the demo corpus on first start when it
    holds no corpus yet.
``SPHAERA_MODELS``
    Comma-separated model keys built for the demo corpus on first start; the first is the default model
    (default: the demo keys of :mod:`corpus_index.models`).
``SPHAERA_DEMO_BOOKS``, ``SPHAERA_DEMO_SEED``
    Size and seed of the generated demo corpus (defaults 24 and 0).
"""

from __future__ import annotations

import os
from pathlib import Path

from corpus_index.models import DEFAULT_MODEL_KEY, DEMO_MODEL_KEYS

APP_DIR = Path(__file__).resolve().parent.parent
PAGE_SIZE = 24  # thumbnails per gallery page


def root() -> Path:
    """The corpus root folder."""
    value = os.environ.get("SPHAERA_ROOT", "").strip()
    return Path(value).expanduser().resolve() if value else APP_DIR / "data"


def demo_models() -> tuple[str, ...]:
    """Model keys built on first start (SPHAERA_MODELS)."""
    value = os.environ.get("SPHAERA_MODELS", "")
    keys = tuple(k.strip() for k in value.split(",") if k.strip())
    return keys or tuple(DEMO_MODEL_KEYS)


def default_model() -> str:
    """The model the pages start with: the first VGG key of SPHAERA_MODELS, else the first key."""
    keys = demo_models()
    vgg = [k for k in keys if k.startswith("vgg16")]
    return (vgg or list(keys) or [DEFAULT_MODEL_KEY])[0]


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} must be a whole number") from None


def demo_books() -> int:
    """Number of books of the generated demo corpus (SPHAERA_DEMO_BOOKS)."""
    return _int_env("SPHAERA_DEMO_BOOKS", 24)


def demo_seed() -> int:
    """Seed of the generated demo corpus (SPHAERA_DEMO_SEED)."""
    return _int_env("SPHAERA_DEMO_SEED", 0)
