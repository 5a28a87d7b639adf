"""The digit detector of the bigram network: conv/ReLU layers that map a page to ten digit maps a_0..a_9.

Two forms. The plain stack (``gated=False``) ends in conv/ReLU layers only. The gated form (the default for new
training) splits the last layer in two: a *signal* conv that sees about two digit heights of print and says which
digit is here, and a *gate* that sees wider context (neighbouring figures, letters, rules) and may shut the
signal off (a '1' beside letters is an 'l'): a_j = ReLU(signal_j) · sigmoid(gate_j).

Why the gate: LRP explains what a layer's output is made of, so a detector that uses its neighbours to decide
spreads a digit's relevance onto them, and BiLRP then links a '2' in one table to the '3' beside a '2' in the
other; a detector without context avoids that but finds digits worse. The gate keeps the context for the
decision and, by the signal-take-all convention for multiplicative gates (Arras et al., 2017, LRP for LSTMs),
gives all relevance to the signal: the explanation says which print the detected digit is made of, and the gate
decides only whether it counts. The gate receives no relevance, so it may have biases, and since it costs an
explanation nothing it can afford more context (the shipped detector has three dilated layers in it). The
measurements behind these choices are in ``docs/bigram-network.md``.
"""

import torch
from torch import nn

from .rules import SignalTakeAllRule

#: Detector output stride: maps a_j are at 1/4 of the normalised page resolution.
MAP_STRIDE = 4


class GatedDigitMaps(nn.Module):
    """Features (B, C, H, W) -> digit maps ReLU(signal(f)) · sigmoid(gate(f)), (B, 10, H, W).

    ``signal`` is one bias-free 3x3 conv (explained with LRP-γ); ``gate`` is ``context`` dilated 3x3 conv/ReLU
    layers and a 3x3 conv to 10 logits (with biases: it carries no relevance). The γ of the signal conv is set
    by the model's γ schedule like any conv layer's (``takes_gamma``).
    """

    takes_gamma = True

    def __init__(self, channels, context=1, bias=False):
        super().__init__()
        self.signal = nn.Conv2d(channels, 10, 3, padding=1, bias=bias)
        gate = []
        for _ in range(context):
            gate += [nn.Conv2d(channels, channels, 3, padding=2, dilation=2), nn.ReLU()]
        self.gate = nn.Sequential(*gate, nn.Conv2d(channels, 10, 3, padding=1))

    def forward(self, f):
        return torch.relu(self.signal(f)) * torch.sigmoid(self.gate(f))

    def lrp_rule(self, gamma=0.0):
        return SignalTakeAllRule(gamma)


def digit_detector(width=16, bias=False, context=0, gated=False):
    """Conv/ReLU stack: grey ink (B, 1, H, W) -> 10 digit maps (B, 10, H/4, W/4).

    Kept light (~1.2 GFLOP on a normalised page without context layers): BiLRP costs about one backward pass of
    it per non-zero bigram of a page. Receptive field 28 px, about two digit heights at the normalised print
    size; each of the ``context`` dilated 3x3 layers widens it by 16 px, so that a figure is told from a
    look-alike letter (1 and I or l, 0 and o) by its neighbours. With ``gated`` the context layers feed a gate
    (:class:`GatedDigitMaps`) instead of the maps, so explanations stay on the digit itself. Bias-free by
    default: blank paper is zero ink and gives zero maps anyway, and without biases BiLRP is conservative
    (Proposition 1), so the explanation accounts for the whole similarity score (with biases it explained about
    half).
    """
    layers = [
        nn.Conv2d(1, width, 5, padding=2, bias=bias), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=bias), nn.ReLU(),
    ]
    if gated:
        return nn.Sequential(*layers, GatedDigitMaps(2 * width, context, bias))
    for _ in range(context):
        layers += [nn.Conv2d(2 * width, 2 * width, 3, padding=2, dilation=2, bias=bias), nn.ReLU()]
    return nn.Sequential(*layers, nn.Conv2d(2 * width, 10, 3, padding=1, bias=bias), nn.ReLU())
