"""The families of model keys (:mod:`corpus_index.models` has the grammar): one :class:`ModelFamily` entry each in
:data:`FAMILIES`, with its parsing, canonical key, model builder, label and what the explorer offers for it (the
family's option name, layer slider, γ blocks and switches).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from corpus_index.models import (
    DEFAULT_IMAGE_SIZE,
    MAX_IMAGE_SIZE,
    MAX_PROJ_DIM,
    MAX_SEED,
    ModelSpec,
    UnknownModelKeyError,
    bounded_number,
)

if TYPE_CHECKING:  # parsing keys must not wait for torch to import
    import torch


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
        size = bounded_number(key, match["size"], "px", 32, MAX_IMAGE_SIZE) if match["size"] else DEFAULT_IMAGE_SIZE
        if size % 32:
            raise UnknownModelKeyError(key, "the image size must be a multiple of 32 (VGG-16 pools 5 times)")
        return ModelSpec("vgg16", layer=layer, proj_dim=bounded_number(key, match["h"], "h", 1, MAX_PROJ_DIM),
                         seed=bounded_number(key, match["seed"], "seed", 0, MAX_SEED), image_size=size, weights=weights,
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
