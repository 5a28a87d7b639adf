"""Model keys and γ schedules as the app offers them (plain Python: no Streamlit, testable on its own).

The model families, their options, labels, layers and γ blocks are the registry's
(:data:`corpus_index.model_families.FAMILIES`). The app composes a model key from a few choices — family, layer,
rotation/flip-max, the family's switches — and keeps h, seed and input size of the configured default model.
γ is chosen as the model's own schedule, one global value, or one value per block of layers; it travels in deep
links as text.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from corpus_index.model_families import FAMILIES
from corpus_index.models import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_MODEL_KEY,
    ModelSpec,
    canonical_key,
    family_of,
    parse_model_key,
)

VGG_WEIGHTS_FILE = "vgg16-397923af.pth"
PROJ_DIMS = (8, 16, 32, 50, 100, 200)  # the h values the model controls offer


def sized_base(*keys: str) -> ModelSpec:
    """The first spec among ``keys`` with h, seed and input size (the controls keep them when the family or layer
    changes); else the default model's spec."""
    for key in keys:
        try:
            spec = parse_model_key(key)
        except ValueError:
            continue
        if spec.proj_dim is not None:
            return spec
    return parse_model_key(DEFAULT_MODEL_KEY)


def compose(prefix: str, base: ModelSpec, layer: int | None = None, rotation_max: bool = False,
            **switches: bool) -> str:
    """The model key the controls stand for: family ``prefix`` (a key of ``FAMILIES``) started from ``base``, with
    the layer (families with layers only), rotation/flip-max and the family's switches (other switches ignored)."""
    family = FAMILIES[prefix]
    fields = {"rotation_max": bool(rotation_max),
              **{s.field: bool(switches[s.field]) for s in family.switches if s.field in switches}}
    if family.layers is not None and layer is not None:
        fields["layer"] = int(layer)
    return dataclasses.replace(family.start(base), **fields).key


def chosen(key: str) -> tuple[str, ModelSpec]:
    """(family prefix, spec) of a model key the controls can show; ValueError for malformed or custom keys."""
    spec = parse_model_key(key)
    family = family_of(spec)
    if family is None:
        raise ValueError(f"model {key!r} is not one the explorer offers ({', '.join(FAMILIES)})")
    return family.prefix, spec


def with_proj_dim(key: str, proj_dim: int) -> str:
    """``key`` with another h (keys without one are returned unchanged)."""
    spec = parse_model_key(key)
    if spec.proj_dim is None or family_of(spec) is None:
        return key
    return dataclasses.replace(spec, proj_dim=int(proj_dim)).key


def imagenet_weights_path() -> Path:
    """Where torchvision looks for the VGG-16 ImageNet weights (nothing is ever downloaded by the app)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / VGG_WEIGHTS_FILE


def imagenet_available() -> bool:
    """Whether VGG-16 ImageNet weights are on this machine."""
    return imagenet_weights_path().is_file()


def weights_missing(prefix: str) -> bool:
    """Whether family ``prefix`` needs weights that are not on this machine (the ImageNet VGG-16)."""
    return FAMILIES[prefix].weights == "imagenet" and not imagenet_available()


def imagenet_help() -> str:
    """How to provide the ImageNet weights offline."""
    return (f"VGG-16 ImageNet weights are not on this machine. To use them, copy `{VGG_WEIGHTS_FILE}` "
            f"(from https://download.pytorch.org/models/{VGG_WEIGHTS_FILE}) to `{imagenet_weights_path()}` "
            "(torchvision's cache; set TORCH_HOME to use another folder) and reload this page. "
            "Until then the untrained VGG-16 shows how the method works, but its similarities mean little.")


# -- γ ------------------------------------------------------------------------------------------------------------
def blocks_for(schedule: dict, key: str) -> list[tuple[str, list[int], float]]:
    """Groups of layers that share one γ slider: the family's γ blocks (``ModelFamily.gamma_blocks``), else one
    group per layer.

    Parameters
    ----------
    schedule : dict
        The model's resolved default schedule {layer index (str or int): γ}.
    key : str
        The model key.

    Returns
    -------
    list of (label, layer indices, default γ)
    """
    layers = sorted(int(i) for i in schedule)

    def value(i: int) -> float:
        return float(schedule[str(i)] if str(i) in schedule else schedule[i])

    try:
        family = family_of(parse_model_key(key))
    except ValueError:
        family = None
    if family is None or family.gamma_blocks is None:
        return [(f"layer {i}", [i], value(i)) for i in layers]
    blocks = []
    for label, low, high in family.gamma_blocks():
        members = [i for i in layers if low <= i <= high]
        if members:
            blocks.append((label, members, value(members[0])))
    return blocks


def schedule_from_blocks(blocks: list[tuple[str, list[int], float]], values: list[float]) -> dict[int, float]:
    """{layer index: γ} from one value per block."""
    return {i: float(v) for (_, members, _), v in zip(blocks, values, strict=True) for i in members}


def encode_gamma(gamma) -> str:
    """γ as deep-link text: ``default``, ``0.25``, or ``2:0.5,5:0.5,…``."""
    if gamma is None:
        return "default"
    if isinstance(gamma, dict):
        return ",".join(f"{int(k)}:{float(v):g}" for k, v in sorted(gamma.items(), key=lambda kv: int(kv[0])))
    return f"{float(gamma):g}"


def parse_gamma(text: str | None):
    """Inverse of :func:`encode_gamma`; raises ValueError naming γ and the bad part (malformed text, or a value
    that is not a finite number ≥ 0: nan, inf and negative γ would silently break the LRP-γ rule)."""
    if text is None or text in ("", "default"):
        return None
    try:
        if ":" not in text:
            values = {None: float(text)}
        else:
            values = {int(k): float(v) for k, v in (part.split(":") for part in text.split(","))}
    except ValueError:
        raise ValueError(f"gamma (γ) {text!r} in the link is not 'default', a number or 'layer:γ,…'") from None
    for value in values.values():
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"gamma (γ) {text!r} in the link is refused: γ must be a finite number ≥ 0, "
                             f"got {value}")
    return values[None] if None in values else values


# -- which model keys the explorer offers -----------------------------------------------------------------------
def _sized_bases(known) -> list[ModelSpec]:
    """The specs whose seed and input size the model controls keep (see :func:`sized_base`)."""
    bases = []
    for key in known:
        try:
            spec = parse_model_key(key)
        except ValueError:
            continue
        if spec.proj_dim is not None and family_of(spec) is not None:
            bases.append(spec)
    return bases or [sized_base()]


def offered(key: str, known) -> bool:
    """Whether the explorer offers model ``key``: one of ``known`` (configured or built models), any variant of a
    family without sizes (the bigram network), or a key the controls compose — any layer, an h of
    :data:`PROJ_DIMS`, the seed and input size of a known model. A key from a link is checked here before anything
    is built: ``-px2048`` would allocate gigabytes."""
    try:
        spec = parse_model_key(key)
        known_keys = {canonical_key(k) for k in known if valid_key(k)}
    except ValueError:
        return False
    if canonical_key(key) in known_keys:
        return True
    if family_of(spec) is None:
        return False
    if spec.proj_dim is None:
        return True
    size = spec.image_size or DEFAULT_IMAGE_SIZE
    return any(spec.seed == (base.seed or 0) and size == (base.image_size or DEFAULT_IMAGE_SIZE)
               and spec.proj_dim in {*PROJ_DIMS, base.proj_dim} for base in _sized_bases(known))


def offered_text(known) -> str:
    """What :func:`offered` accepts, in words, for a message that refuses another key."""
    listed = ", ".join(dict.fromkeys(k for k in (valid_key(k) for k in known) if k))
    variants = sorted({(base.seed or 0, base.image_size or DEFAULT_IMAGE_SIZE) for base in _sized_bases(known)})
    sizes = " or ".join(f"seed {seed} at {size} px" for seed, size in variants)
    by_layers: dict[tuple[int, ...], list[str]] = {}
    for family in FAMILIES.values():
        if family.layers is not None:
            by_layers.setdefault(family.layers(), []).append(f"{family.prefix}-…")
    parts = [f"{' or '.join(prefixes)} at layer {', '.join(map(str, layers))} with h "
             f"{', '.join(map(str, PROJ_DIMS))}, {sizes}" for layers, prefixes in by_layers.items()]
    parts += [family.example for family in FAMILIES.values() if family.layers is None]
    return (f"{listed + ' and their' if listed else 'the'} variants in the model controls: {'; '.join(parts)}; "
            "each with or without rotation/flip-max (-rot)")


def valid_key(key: str | None) -> str | None:
    """The canonical key, or None when ``key`` is missing or malformed."""
    if not key:
        return None
    try:
        return canonical_key(key)
    except ValueError:
        return None


__all__ = ["PROJ_DIMS", "blocks_for", "chosen", "compose", "encode_gamma", "imagenet_available", "imagenet_help",
           "imagenet_weights_path", "offered", "offered_text", "parse_gamma", "schedule_from_blocks", "sized_base",
           "valid_key", "weights_missing", "with_proj_dim"]
