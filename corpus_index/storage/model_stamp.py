"""Which version of a model a corpus's stored features, index and BiLRP factors were computed with.

A model key names a model (``bigram``, ``vgg16-L17-h100-seed0``), not its weights: retrained bigram detector
weights, or a release whose φ has more dimensions, keep the key. So every key's stored data carries a stamp,
``ROOT/stamps/<key>.json``, holding the model's fingerprint (its own key and, for trained weights shipped as a
file, a digest of that file). When a build finds data of another version, it moves it aside to
``ROOT/replaced/<key>-<UTC time>/`` (nothing is deleted) and computes everything afresh.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .atomic import atomic_write
from .layout import Layout


def fingerprint(model) -> str:
    """The model's version: ``model.fingerprint`` if it has one (trained weights files), else ``model.key``."""
    return str(getattr(model, "fingerprint", None) or getattr(model, "key", type(model).__name__))


def read_stamp(root: str | Path, key: str) -> str | None:
    """The fingerprint the stored data of ``key`` was computed with, or None when there is no stamp."""
    path = Layout(root).stamp(key)
    try:
        return str(json.loads(path.read_text())["fingerprint"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return "unreadable stamp"  # treated as another version: the data is set aside, not trusted


def write_stamp(root: str | Path, key: str, model) -> None:
    """Record that the stored data of ``key`` now comes from ``model``."""
    text = json.dumps({"key": key, "fingerprint": fingerprint(model)}, indent=1)
    atomic_write(Layout(root).stamp(key), lambda tmp: Path(tmp).write_text(text))


def stored_paths(root: str | Path, key: str) -> list[Path]:
    """Everything stored for ``key``: its feature batches, index files and cached factors (:class:`Layout`)."""
    return Layout(root).stored_paths(key)


def is_stale(root: str | Path, key: str, model, stored_dim: int | None = None, model_dim=None) -> bool:
    """Whether stored data of ``key`` exists and comes from another version of the model.

    Data without a stamp (written before stamps existed) counts as stale only when its feature dimension
    ``stored_dim`` differs from the model's, ``model_dim()`` (a callable: asked only then).
    """
    if not stored_paths(root, key):
        return False
    stamp = read_stamp(root, key)
    if stamp is None:
        return stored_dim is not None and model_dim is not None and stored_dim != model_dim()
    return stamp != fingerprint(model)


def set_aside(root: str | Path, key: str) -> Path | None:
    """Move the stored data of ``key`` to ``ROOT/replaced/<key>-<time>/`` and drop its stamp; returns the folder."""
    layout = Layout(root)
    paths = layout.stored_paths(key)
    if not paths:
        return None
    target = layout.replaced_folder(key)
    for path in paths:
        shutil.move(str(path), str(target / f"{path.parent.name}-{path.name}"))
    layout.stamp(key).unlink(missing_ok=True)
    return target
