"""Model keys and γ schedules as the app offers them (plain Python: no Streamlit, testable on its own).

The app composes a model key (:mod:`corpus_index.models` grammar) from a few choices — family, VGG layer,
rotation/flip-max — and keeps h, seed and input size of the configured default model. γ is chosen as the model's
own schedule, one global value, or one value per block of layers; it travels in deep links as text.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from corpus_index.models import DEFAULT_IMAGE_SIZE, VGG_LAYERS, ModelSpec, canonical_key, parse_model_key

BIGRAM = "bigram"
FAMILIES = {
    "bigram": "Bigram network (digit pairs in tables)",
    "vgg16in": "VGG-16, ImageNet weights",
    "vgg16": "Untrained VGG-16 (demonstration)",
}
VGG_WEIGHTS_FILE = "vgg16-397923af.pth"
# The authors' blocks of VGG-16 feature layers and their γ (bilrp_core.vgg.vgg_gamma).
PROJ_DIMS = (8, 16, 32, 50, 100, 200)  # the h values the model controls offer
VGG_BLOCKS = ((0, 10, "layers 1–10"), (11, 17, "layers 11–17"), (18, 24, "layers 18–24"), (25, 31, "layers 25–31"))


@dataclass(frozen=True)
class ModelChoice:
    """What the user picked: family ('bigram', 'vgg16' or 'vgg16in'), VGG layer, rotation/flip-max and, for the
    bigram network, aligned routing and square roots of the bigram sums."""

    family: str
    layer: int | None = None
    rotation_max: bool = False
    aligned: bool = False
    root: bool = True

    def key(self, base: ModelSpec) -> str:
        """The model key of this choice, with h / seed / input size taken from ``base`` (a VGG spec)."""
        if self.family == BIGRAM:
            return ModelSpec("bigram", rotation_max=self.rotation_max, aligned=self.aligned, root=self.root).key
        weights = "imagenet" if self.family == "vgg16in" else None
        return ModelSpec("vgg16", layer=self.layer, proj_dim=base.proj_dim or 100, seed=base.seed or 0,
                         image_size=base.image_size or 128, weights=weights, rotation_max=self.rotation_max).key


def choice_of(key: str) -> ModelChoice:
    """The :class:`ModelChoice` a model key stands for."""
    spec = parse_model_key(key)
    if spec.family == "bigram":
        return ModelChoice(BIGRAM, None, spec.rotation_max, spec.aligned, spec.root)
    if spec.family != "vgg16":
        raise ValueError(f"model {key!r} is not one the explorer offers (bigram or VGG-16)")
    return ModelChoice("vgg16in" if spec.weights == "imagenet" else "vgg16", spec.layer, spec.rotation_max)


def vgg_base(*keys: str) -> ModelSpec:
    """The first VGG spec among ``keys`` (its h, seed and size are kept when the layer changes)."""
    for key in keys:
        try:
            spec = parse_model_key(key)
        except ValueError:
            continue
        if spec.family == "vgg16":
            return spec
    return ModelSpec("vgg16", layer=17, proj_dim=100, seed=0, image_size=128)


def with_proj_dim(key: str, proj_dim: int) -> str:
    """``key`` with another h (VGG only; other keys are returned unchanged)."""
    spec = parse_model_key(key)
    if spec.family != "vgg16":
        return key
    return dataclasses.replace(spec, proj_dim=int(proj_dim)).key


def imagenet_weights_path() -> Path:
    """Where torchvision looks for the VGG-16 ImageNet weights (nothing is ever downloaded by the app)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / VGG_WEIGHTS_FILE


def imagenet_available() -> bool:
    """Whether VGG-16 ImageNet weights are on this machine."""
    return imagenet_weights_path().is_file()


def imagenet_help() -> str:
    """How to provide the ImageNet weights offline."""
    return (f"VGG-16 ImageNet weights are not on this machine. To use them, copy `{VGG_WEIGHTS_FILE}` "
            f"(from https://download.pytorch.org/models/{VGG_WEIGHTS_FILE}) to `{imagenet_weights_path()}` "
            "(torchvision's cache; set TORCH_HOME to use another folder) and reload this page. "
            "Until then the untrained VGG-16 shows how the method works, but its similarities mean little.")


def model_label(key: str) -> str:
    """A short human-readable name of a model key."""
    try:
        spec = parse_model_key(key)
    except ValueError:
        return key
    rot = " + rotation/flip-max" if spec.rotation_max else ""
    if spec.family == "bigram":
        sums = "" if spec.root else ", plain sums"
        return f"Bigram network{sums}{', aligned routing' if spec.aligned else ''}{rot}"
    if spec.family != "vgg16":
        return key
    weights = "ImageNet" if spec.weights == "imagenet" else "untrained"
    return f"VGG-16 {weights}, layer {spec.layer}, h = {spec.proj_dim}, {spec.image_size} px{rot}"


# -- γ ------------------------------------------------------------------------------------------------------------
def blocks_for(schedule: dict, key: str) -> list[tuple[str, list[int], float]]:
    """Groups of layers that share one γ slider: VGG blocks, else one group per layer.

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
    try:
        vgg = parse_model_key(key).family == "vgg16"
    except ValueError:
        vgg = False
    if not vgg:
        return [(f"layer {i}", [i], float(schedule[str(i)] if str(i) in schedule else schedule[i])) for i in layers]
    blocks = []
    for low, high, label in VGG_BLOCKS:
        members = [i for i in layers if low <= i <= high]
        if members:
            value = schedule[str(members[0])] if str(members[0]) in schedule else schedule[members[0]]
            blocks.append((label, members, float(value)))
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
def _vgg_bases(known) -> list[ModelSpec]:
    """The VGG specs whose seed and input size the model controls keep (see :func:`vgg_base`)."""
    bases = []
    for key in known:
        try:
            spec = parse_model_key(key)
        except ValueError:
            continue
        if spec.family == "vgg16":
            bases.append(spec)
    return bases or [vgg_base()]


def offered(key: str, known) -> bool:
    """Whether the explorer offers model ``key``: one of ``known`` (configured or built models), a bigram variant,
    or a VGG-16 key its controls compose — any layer, an h of :data:`PROJ_DIMS`, the seed and input size of a
    known VGG model. A key from a link is checked here before anything is built: ``-px2048`` would allocate
    gigabytes."""
    try:
        spec = parse_model_key(key)
        known_keys = {canonical_key(k) for k in known if valid_key(k)}
    except ValueError:
        return False
    if canonical_key(key) in known_keys or spec.family == "bigram":
        return True
    if spec.family != "vgg16":
        return False
    size = spec.image_size or DEFAULT_IMAGE_SIZE
    return any(spec.seed == (base.seed or 0) and size == (base.image_size or DEFAULT_IMAGE_SIZE)
               and spec.proj_dim in {*PROJ_DIMS, base.proj_dim} for base in _vgg_bases(known))


def offered_text(known) -> str:
    """What :func:`offered` accepts, in words, for a message that refuses another key."""
    listed = ", ".join(dict.fromkeys(k for k in (valid_key(k) for k in known) if k))
    variants = sorted({(base.seed or 0, base.image_size or DEFAULT_IMAGE_SIZE) for base in _vgg_bases(known)})
    vgg = " or ".join(f"seed {seed} at {size} px" for seed, size in variants)
    return (f"{listed + ' and their' if listed else 'the'} variants in the model controls: VGG-16 (vgg16-… or "
            f"vgg16in-…) at layer {', '.join(map(str, VGG_LAYERS))} with h {', '.join(map(str, PROJ_DIMS))}, {vgg}, "
            "with or without rotation/flip-max (-rot); the bigram network (bigram[-sums][-aligned][-rot])")


def valid_key(key: str | None) -> str | None:
    """The canonical key, or None when ``key`` is missing or malformed."""
    if not key:
        return None
    try:
        return canonical_key(key)
    except ValueError:
        return None


__all__ = ["BIGRAM", "FAMILIES", "PROJ_DIMS", "VGG_LAYERS", "ModelChoice", "blocks_for", "choice_of", "encode_gamma",
           "imagenet_available", "imagenet_help", "imagenet_weights_path", "model_label", "offered", "offered_text",
           "parse_gamma",
           "schedule_from_blocks", "valid_key", "vgg_base", "with_proj_dim"]
