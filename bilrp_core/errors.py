"""User-facing errors of :mod:`bilrp_core`: each says what went wrong and what to do about it."""


class UnsupportedLayerError(TypeError):
    """A layer has no LRP rule: explaining through it would give a silently wrong answer."""

    def __init__(self, index, layer):
        self.index = index
        self.layer = layer
        super().__init__(
            f"layer {index} ({layer!r}) of type {type(layer).__name__} has no BiLRP rule; supported are "
            "Conv2d/Linear (LRP-gamma, z^B), ReLU, Dropout/Identity, Flatten, and positively homogeneous "
            "layers (max/avg/sum pooling, min over maps, shifts, max over alternatives)"
        )


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be obtained (e.g. offline, or a bad weights file)."""
