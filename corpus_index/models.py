"""Similarity models by key: one string names a model and all its parameters.

A model key is the unit everything on disk is filed under (features, indexes, cached factors), so it must name
*every* parameter that changes phi(x). The grammar:

``vgg16-L{layer}-h{h}-seed{seed}[-px{size}][-rot]``
    VGG-16 cut after max-pooling layer ``layer`` (one of :data:`bilrp_core.vgg.VGG_LAYERS`), a random projection to
    ``h`` dimensions drawn with ``seed``, **untrained random weights** (built offline, deterministic from ``seed``).
``vgg16in-L{layer}-h{h}-seed{seed}[-px{size}][-rot]``
    The same on **ImageNet weights** (only when torchvision's weights are already on disk: nothing downloads).
``bigram[-sums][-aligned][-rot]``
    The bigram network of the paper (digit pairs in tables), :func:`bilrp_core.bigram_network`; φ holds the
    square roots of the bigram sums (better retrieval), ``-sums`` the plain sums of the paper (slightly more
    faithful explanations); ``-aligned`` selects its aligned pooling (explanations link first digits to first
    digits and second to second: more faithful, twice the cost; same similarity scores).

``-px{size}`` is the model's input size in pixels (default 128, then left out of the canonical key); ``-rot``
wraps the model in :class:`bilrp_core.RotationMax` (similarity = max over the 8 flips/rotations).

Every number has bounds (:data:`MAX_IMAGE_SIZE`, :data:`MAX_PROJ_DIM`, :data:`MAX_SEED`): a key is a user's input,
and a size or dimension without a limit lets one typo allocate more memory than the machine has.
Examples: ``vgg16-L17-h100-seed0``, ``vgg16in-L31-h100-seed0-rot``, ``vgg16-L5-h8-seed0-px32``, ``bigram``.

Each family of keys is one :class:`~corpus_index.model_families.ModelFamily` entry of
:data:`corpus_index.model_families.FAMILIES`: its grammar, parsing, canonical key, model builder, label and what
the explorer offers for it. Adding a family is one new entry there plus its model code in ``bilrp_core``. Other
single models (plug-ins, tests) are added with :func:`register_model`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # parsing keys (and the command line's usage errors) must not wait for torch to import
    import torch

    from corpus_index.model_families import ModelFamily

DEFAULT_IMAGE_SIZE = 128
DEFAULT_MODEL_KEY = "vgg16-L17-h100-seed0"
# Built by `python -m corpus_index demo`: a general picture model (VGG-16) and a table model (bigram).
DEMO_MODEL_KEYS = (DEFAULT_MODEL_KEY, "bigram")
MAX_IMAGE_SIZE = 1024  # -px: the model input (and every factor and explanation map) grows with its square
MAX_PROJ_DIM = 4096  # -h: features, indexes and cached factors grow with it
MAX_SEED = 2**31 - 1
#: The bounds in words, for ``--help`` and error messages.
KEY_LIMITS = f"h from 1 to {MAX_PROJ_DIM}, seed from 0 to {MAX_SEED}, px a multiple of 32 from 32 to {MAX_IMAGE_SIZE}"

# Keys become folder and file names: keep them to a safe alphabet (no dots, no slashes).
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")

_registry: dict[str, Callable[[], torch.nn.Module]] = {}  # single models added with register_model
_cache: dict[str, torch.nn.Module] = {}
_lock = threading.Lock()


class UnknownModelKeyError(ValueError):
    """A model key that does not follow the grammar of :mod:`corpus_index.models`."""

    def __init__(self, key: str, reason: str = ""):
        self.key = key
        detail = f" ({reason})" if reason else ""
        shown = key if len(key) <= 80 else key[:77] + "..."  # a pasted page of text stays a one-line error
        examples = [family.example for family in families().values()]
        super().__init__(f"unknown model key {shown!r}{detail}; expected e.g. {', '.join(examples[:-1])}, "
                         f"or {examples[-1]}")


@dataclass(frozen=True)
class ModelSpec:
    """The parameters a model key stands for.

    Attributes
    ----------
    family : str
        ``"vgg16"``, ``"bigram"`` or ``"custom"``.
    layer, proj_dim, seed, image_size : int or None
        VGG-16 parameters (None for the other families).
    weights : str or None
        ``None`` for random weights, ``"imagenet"`` for torchvision's ImageNet weights.
    rotation_max : bool
        Whether the model takes the max over the 8 flips/rotations.
    aligned : bool
        Bigram network only: aligned pooling (see :func:`bilrp_core.bigram_network`).
    sqrt : bool
        Bigram network only: φ holds the square roots of the bigram sums (False: the sums, key ``-sums``).
    """

    family: str
    layer: int | None = None
    proj_dim: int | None = None
    seed: int | None = None
    image_size: int | None = None
    weights: str | None = None
    rotation_max: bool = False
    aligned: bool = False
    sqrt: bool = True

    @property
    def key(self) -> str:
        """The canonical spelling of this spec (what folders are named after)."""
        entry = family_of(self)
        if entry is None:
            raise ValueError(f"no model family holds {self!r} (custom keys are their own canonical spelling)")
        return entry.key(self) + ("-rot" if self.rotation_max else "")


def families() -> dict[str, ModelFamily]:
    """:data:`corpus_index.model_families.FAMILIES` (imported on first use: its entries are built on this module's
    :class:`ModelSpec` and :class:`UnknownModelKeyError`)."""
    from corpus_index.model_families import FAMILIES

    return FAMILIES


def family_of(spec: ModelSpec) -> ModelFamily | None:
    """The registry entry a spec belongs to (None for custom models)."""
    return next((f for f in families().values() if (f.family, f.weights) == (spec.family, spec.weights)), None)


def model_label(key: str) -> str:
    """A short human-readable name of a model key (the key itself for custom or malformed keys)."""
    try:
        spec = parse_model_key(key)
    except ValueError:
        return key
    entry = family_of(spec)
    if entry is None:
        return key
    return entry.label(spec) + (" + rotation/flip-max" if spec.rotation_max else "")


#: The mark every output of a network with random weights carries (picture, caption, export).
UNTRAINED_MARK = "untrained network — not meaningful for research"


def is_untrained(key: str) -> bool:
    """Whether the model of ``key`` has random (untrained) weights: VGG-16 without ImageNet weights. Its
    similarities and explanations show what the architecture alone does, nothing a historian can rely on."""
    try:
        spec = parse_model_key(key)
    except ValueError:
        return False
    return spec.family == "vgg16" and spec.weights is None


def parse_model_key(key: str) -> ModelSpec:
    """Parse a model key into a :class:`ModelSpec`.

    Parameters
    ----------
    key : str
        A key following the grammar in the module docstring, or a key added with :func:`register_model`.

    Returns
    -------
    ModelSpec

    Raises
    ------
    UnknownModelKeyError
        If the key is malformed or names an unsupported layer.
    """
    if not isinstance(key, str):
        raise UnknownModelKeyError(repr(key), "a model key is a string")
    if key in _registry:
        return ModelSpec(family="custom")
    for family in families().values():
        match = family.pattern.match(key)
        if match:
            return family.parse(key, match)
    raise UnknownModelKeyError(key)


def bounded_number(key: str, digits: str, name: str, low: int, high: int) -> int:
    """The number ``digits`` of a key; :class:`UnknownModelKeyError` naming the bounds unless low ≤ it ≤ high."""
    # Very long digit strings are out of range anyway (and int() refuses the longest ones with its own error).
    value = int(digits) if len(digits) <= 20 else high + 1
    if not low <= value <= high:
        raise UnknownModelKeyError(key, f"{name} must be from {low} to {high}; limits: {KEY_LIMITS}")
    return value


def canonical_key(key: str) -> str:
    """Return the canonical spelling of ``key`` (e.g. drops ``-px128``); raise if it is unknown."""
    spec = parse_model_key(key)
    return key if spec.family == "custom" else spec.key


def register_model(key: str, factory: Callable[[], torch.nn.Module]) -> None:
    """Make ``key`` loadable by :func:`load_model` through ``factory()``.

    Parameters
    ----------
    key : str
        Letters, digits, ``_`` and ``-`` only: it names folders on disk.
    factory : callable
        Returns a module with ``preprocess(pil) -> (1, C, H, W)`` and ``forward(x) -> (B, h)``.
    """
    if not _SAFE_KEY.match(key):
        raise UnknownModelKeyError(key, "custom keys may use letters, digits, '_' and '-' only")
    with _lock:
        _registry[key] = factory
        _cache.pop(key, None)


def _build(spec: ModelSpec, key: str) -> torch.nn.Module:
    if spec.family == "custom":
        return _registry[key]()
    model = family_of(spec).build(spec)
    if spec.rotation_max:
        import bilrp_core

        if not hasattr(bilrp_core, "RotationMax"):
            raise UnknownModelKeyError(key, "this version of bilrp_core has no RotationMax")
        model = bilrp_core.RotationMax(model)
    return model


def load_model(key: str) -> torch.nn.Module:
    """Build (once per process) and return the model a key names, in eval mode.

    Parameters
    ----------
    key : str
        A model key (see the module docstring).

    Returns
    -------
    torch.nn.Module
        The similarity model; ``model.preprocess(pil)`` gives its input, ``model(x)`` gives phi(x).

    Raises
    ------
    UnknownModelKeyError
        If the key is malformed.
    bilrp_core.WeightsUnavailableError
        If the key asks for ImageNet weights that are not on this machine.
    """
    spec = parse_model_key(key)
    canonical = key if spec.family == "custom" else spec.key
    with _lock:
        model = _cache.get(canonical)
        if model is None:
            model = _build(spec, canonical)
            if hasattr(model, "eval"):  # RotationMax is a plain wrapper; its inner model is already in eval mode
                model.eval()
            _cache[canonical] = model
    return model


def transform_count(model) -> int:
    """How many vectors phi(tau x) a model gives per image: 8 for rotation-max models (one per flip/rotation), else 1.

    A rotation-max similarity is max over tau, tau' of <phi(tau x), phi(tau' x')>, so the index holds all 8
    vectors of every item and a query searches with all 8 of its own (:mod:`corpus_index.storage.faiss_index`).
    """
    return 8 if callable(getattr(model, "transformed_features", None)) else 1


def key_transform_count(key: str) -> int:
    """:func:`transform_count` of the model a key names, without building it (except for custom keys)."""
    spec = parse_model_key(key)
    if spec.family == "custom":
        return transform_count(load_model(key))
    return 8 if spec.rotation_max else 1


def embed(model, x: torch.Tensor) -> torch.Tensor:
    """Features of a batch as one row per image: phi(x) (B, h), or for rotation-max models the 8 phi(tau x)
    concatenated (B, 8 h) in the order of ``bilrp_core.rotation.TRANSFORMS``."""
    group = transform_count(model)
    if group == 1:
        return model(x)
    stacked = model.transformed_features(x)  # (8 B, h), transform-major
    return stacked.reshape(group, x.shape[0], -1).transpose(0, 1).reshape(x.shape[0], -1)

