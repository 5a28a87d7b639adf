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

Each family of keys is one :class:`ModelFamily` entry of :data:`FAMILIES`: its grammar, parsing, canonical key,
model builder, label and what the explorer offers for it. Adding a family is one new entry plus its model code in
``bilrp_core``. Other single models (plug-ins, tests) are added with :func:`register_model`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # parsing keys (and the command line's usage errors) must not wait for torch to import
    import torch

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
        examples = [family.example for family in FAMILIES.values()]
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


# -- the registry of model families -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Switch:
    """An on/off parameter of a family, offered by the explorer as a checkbox: the :class:`ModelSpec` field it
    sets, the checkbox's label and its help text (what the option does and why one would pick it)."""

    field: str
    label: str
    help: str


@dataclass(frozen=True)
class ModelFamily:
    """One family of model keys, with everything the project does with it.

    Attributes
    ----------
    prefix : str
        The first word of its keys (``vgg16``, ``vgg16in``, ``bigram``); the explorer's name for its option too.
    family, weights : str, str or None
        The :class:`ModelSpec` ``family`` and ``weights`` of its keys: a spec belongs to the entry with both.
    option : str
        How the explorer's model chooser names the family.
    example : str
        Example keys, for the message about a key no family parses.
    pattern : re.Pattern
        Its whole keys, the optional ``-rot`` suffix as the group ``rot``.
    parse : callable (key, match) -> ModelSpec
        The spec of a key ``pattern`` matched; raises :class:`UnknownModelKeyError` for numbers out of bounds.
    key : callable (ModelSpec) -> str
        The canonical key of a spec, without the ``-rot`` suffix (:attr:`ModelSpec.key` adds it).
    build : callable (ModelSpec) -> torch.nn.Module
        The model, without the rotation/flip-max wrapper; imports ``bilrp_core`` itself (parsing never loads torch).
    label : callable (ModelSpec) -> str
        A short human-readable name, without the rotation/flip-max note (:func:`model_label` adds it).
    start : callable (ModelSpec) -> ModelSpec
        The spec the explorer composes when the user picks this family; the argument's h, seed and input size
        (those of the configured default model) are kept where the family has them.
    layers : callable () -> tuple of int, or None
        The layers a user picks among (the explorer's layer slider); None: the architecture is fixed.
    layer_help : str
        Help text of that layer slider.
    gamma_blocks : callable () -> tuple of (label, first index, last index), or None
        Blocks of layers that share one γ (one explorer slider per block); None: one slider per layer.
    switches : tuple of Switch
        The on/off parameters the explorer offers as checkboxes.
    """

    prefix: str
    family: str
    weights: str | None
    option: str
    example: str
    pattern: re.Pattern
    parse: Callable[[str, re.Match], ModelSpec]
    key: Callable[[ModelSpec], str]
    build: Callable[[ModelSpec], torch.nn.Module]
    label: Callable[[ModelSpec], str]
    start: Callable[[ModelSpec], ModelSpec]
    layers: Callable[[], tuple[int, ...]] | None = None
    layer_help: str = ""
    gamma_blocks: Callable[[], tuple[tuple[str, int, int], ...]] | None = None
    switches: tuple[Switch, ...] = ()


def vgg_layers() -> tuple[int, ...]:
    """The layers a VGG-16 key may name: :data:`bilrp_core.vgg.VGG_LAYERS` (loads torch on the first call)."""
    from bilrp_core.vgg import VGG_LAYERS

    return tuple(VGG_LAYERS)


def vgg_gamma_blocks() -> tuple[tuple[str, int, int], ...]:
    """The blocks of VGG-16 feature layers that share one γ in :func:`bilrp_core.vgg.vgg_gamma`, as
    (label, first index, last index): runs of consecutive indices with the same γ (the authors' schedule)."""
    from bilrp_core.vgg import VGG_LAYERS, vgg_gamma

    runs: list[list[int]] = []
    for index in range(max(VGG_LAYERS) + 1):
        if runs and vgg_gamma(index) == vgg_gamma(runs[-1][0]):
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return tuple((f"layers {max(first, 1)}–{last}", first, last) for first, last in runs)


def _vgg_parser(weights: str | None) -> Callable[[str, re.Match], ModelSpec]:
    def parse(key: str, match: re.Match) -> ModelSpec:
        layer = int(match["layer"]) if len(match["layer"]) <= 20 else -1
        if layer not in vgg_layers():
            raise UnknownModelKeyError(key, f"layer must be one of {', '.join(map(str, vgg_layers()))}")
        size = _bounded(key, match["size"], "px", 32, MAX_IMAGE_SIZE) if match["size"] else DEFAULT_IMAGE_SIZE
        if size % 32:
            raise UnknownModelKeyError(key, "the image size must be a multiple of 32 (VGG-16 pools 5 times)")
        return ModelSpec("vgg16", layer=layer, proj_dim=_bounded(key, match["h"], "h", 1, MAX_PROJ_DIM),
                         seed=_bounded(key, match["seed"], "seed", 0, MAX_SEED), image_size=size, weights=weights,
                         rotation_max=bool(match["rot"]))

    return parse


def _vgg_key(prefix: str) -> Callable[[ModelSpec], str]:
    def key(spec: ModelSpec) -> str:
        size = "" if spec.image_size == DEFAULT_IMAGE_SIZE else f"-px{spec.image_size}"
        return f"{prefix}-L{spec.layer}-h{spec.proj_dim}-seed{spec.seed}{size}"

    return key


def _vgg_start(weights: str | None) -> Callable[[ModelSpec], ModelSpec]:
    return lambda base: ModelSpec("vgg16", layer=base.layer or 17, proj_dim=base.proj_dim or 100,
                                  seed=base.seed or 0, image_size=base.image_size or DEFAULT_IMAGE_SIZE,
                                  weights=weights)


def _build_vgg(spec: ModelSpec) -> torch.nn.Module:
    import bilrp_core  # imported late: listing and parsing keys must not pay for torchvision

    return bilrp_core.vgg16_similarity(layer=spec.layer, proj_dim=spec.proj_dim, weights=spec.weights,
                                       seed=spec.seed, image_size=spec.image_size)


def _vgg_label(spec: ModelSpec) -> str:
    weights = "ImageNet" if spec.weights == "imagenet" else "untrained"
    return f"VGG-16 {weights}, layer {spec.layer}, h = {spec.proj_dim}, {spec.image_size} px"


def _build_bigram(spec: ModelSpec) -> torch.nn.Module:
    from bilrp_core.bigram import BigramOptions, bigram_network

    return bigram_network(BigramOptions(aligned=spec.aligned, sqrt=spec.sqrt), pretrained=True)


def _bigram_label(spec: ModelSpec) -> str:
    return f"Bigram network{'' if spec.sqrt else ', plain sums'}{', aligned routing' if spec.aligned else ''}"


def _vgg_family(prefix: str, weights: str | None, option: str, example: str) -> ModelFamily:
    pattern = re.compile(rf"^{prefix}-L(?P<layer>\d+)-h(?P<h>\d+)-seed(?P<seed>\d+)"
                         r"(?:-px(?P<size>\d+))?(?P<rot>-rot)?$")
    return ModelFamily(prefix, "vgg16", weights, option, example, pattern, _vgg_parser(weights), _vgg_key(prefix),
                       _build_vgg, _vgg_label, _vgg_start(weights), layers=vgg_layers,
                       layer_help="Similarity on the features after this max-pooling layer of VGG-16.",
                       gamma_blocks=vgg_gamma_blocks)


#: The model families by key prefix, in the order the explorer offers them.
FAMILIES: dict[str, ModelFamily] = {family.prefix: family for family in (
    ModelFamily(
        "bigram", "bigram", None, "Bigram network (digit pairs in tables)",
        "'bigram' (optionally 'bigram-sums', 'bigram-aligned', and '-rot')",
        re.compile(r"^bigram(?P<sums>-sums)?(?P<aligned>-aligned)?(?P<rot>-rot)?$"),
        lambda key, match: ModelSpec("bigram", rotation_max=bool(match["rot"]), aligned=bool(match["aligned"]),
                                     sqrt=not match["sums"]),
        lambda spec: "bigram" + ("" if spec.sqrt else "-sums") + ("-aligned" if spec.aligned else ""),
        _build_bigram,
        _bigram_label,
        lambda base: ModelSpec("bigram"),
        switches=(
            Switch("aligned", "Aligned digit routing",
                   "The same similarities; the explanation links first digits of a bigram to first digits and "
                   "second to second (more faithful), but takes twice as long."),
            Switch("sqrt", "Square roots of bigram counts",
                   "Compare tables on the square roots of their digit-pair counts, so that the rarer pairs in "
                   "which near-identical tables differ count (better retrieval). Unticked: the paper's plain "
                   "counts, whose explanations put slightly more relevance on matching digits."),
        )),
    _vgg_family("vgg16in", "imagenet", "VGG-16, ImageNet weights",
                "'vgg16in-L17-h100-seed0' (ImageNet weights; optional '-px128' and '-rot' suffixes)"),
    _vgg_family("vgg16", None, "Untrained VGG-16 (demonstration)",
                "'vgg16-L17-h100-seed0' (random weights; optional '-px128' and '-rot' suffixes)"),
)}


def family_of(spec: ModelSpec) -> ModelFamily | None:
    """The registry entry a spec belongs to (None for custom models)."""
    return next((f for f in FAMILIES.values() if (f.family, f.weights) == (spec.family, spec.weights)), None)


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
    for family in FAMILIES.values():
        match = family.pattern.match(key)
        if match:
            return family.parse(key, match)
    raise UnknownModelKeyError(key)


def _bounded(key: str, digits: str, name: str, low: int, high: int) -> int:
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
    vectors of every item and a query searches with all 8 of its own (:mod:`corpus_index.faiss_index`).
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

