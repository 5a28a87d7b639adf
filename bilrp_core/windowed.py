"""Windowed (sparse) relevance factors: the backward of :mod:`bilrp_core.attribution`, run only where it is not zero.

The relevance of an output dimension m covers a small part of the input when m is local: a bigram jk of the bigram
network receives relevance only where jk fires in the digit maps, and a spatial feature of a conv net only at its
own position. Below that, each layer spreads relevance no further than its receptive field (kernel, stride,
dilation, padding). So the support of m at the top is covered by tiles, each tile is grown layer by layer to the
window of that layer's input that can receive its relevance, every layer's stored activations and normalisers are
cropped to these windows, the same rules' ``backward`` runs on the crops for a batch of (dimension, tile) pairs,
and the input relevance is summed back into the pooled factors. The rules are linear in the relevance they
receive, so the sum over tiles is the dense result: the same numbers up to the order of floating-point sums.

Crops come from the one full forward pass (:meth:`rule.prepare <bilrp_core.rules.GammaRule.prepare>` on the whole
page), never from a forward pass on a window: the gate of the digit detector and its dilated context see the
whole page, as in the dense path.

Only rules that declare a ``footprint`` (conv, max-pool, elementwise layers; see :mod:`bilrp_core.rules`) and a top
that places each dimension's relevance spatially (a rule with ``window_support``, such as the bigram pooling, or
spatial features without a projection) can be windowed; :func:`plan_windows` returns None otherwise, and
:func:`bilrp_core.relevance_factors` then computes dense factors.
"""

from dataclasses import dataclass

import torch

from .model import norm_scale
from .rules import SAME

#: ``method="auto"`` computes windowed factors when the windows of a dimension cover on average less than this
#: share of the input; above it the crops cost more than they save.
AUTO_SUPPORT = 0.25
#: Tile sides (pixels of the level where windowed relevance starts) from which the cheapest cover is chosen.
TILE_SIDES = (1, 2, 3, 4, 6, 8, 16)
#: Largest number of values of one cropped tensor per batch of (dimension, tile) pairs; small batches that stay
#: in cache are fastest on a CPU, as for the dense chunks.
WINDOW_ELEMENTS = 2**21


class Window:
    """n windows of one size on one level of the network (pixels of that level's maps).

    Parameters
    ----------
    origin : LongTensor (n, 2)
        Top-left (row, column) of each window; windows may reach outside the maps.
    size : (int, int)
        Height and width shared by all windows.
    """

    def __init__(self, origin, size):
        self.origin = origin
        self.size = (int(size[0]), int(size[1]))
        self._split = {}

    def grown(self, footprint):
        """The windows of a layer's input that receive the relevance of these windows of its output.

        An output at o reads the inputs o·stride − padding + dilation·t, t < kernel, per axis.
        """
        if footprint == SAME:
            return self
        kernel, stride, dilation, padding = footprint
        origin = self.origin * torch.tensor(stride) - torch.tensor(padding)
        size = [(n - 1) * s + d * (k - 1) + 1 for n, s, d, k in zip(self.size, stride, dilation, kernel, strict=True)]
        return Window(origin, size)

    def reached(self, footprint, out_size):
        """The windows of a layer's output that read some input of these windows: the forward counterpart of
        :meth:`grown` (used by the coloured factors' cropped passes), kept inside the output maps where they fit.

        An output at o reads the inputs o·stride − padding + dilation·t, t < kernel: it reads some of [lo, hi] when
        ⌈(lo + padding − dilation·(kernel − 1)) / stride⌉ ≤ o ≤ ⌊(hi + padding) / stride⌋. All windows get the
        largest size (one batch); a window that would then leave the maps is moved back inside, still covering its
        outputs.
        """
        if footprint == SAME:
            return self
        kernel, stride, dilation, padding = (torch.tensor(v) for v in footprint)
        bound = torch.tensor(out_size)
        first = (-((dilation * (kernel - 1) - padding - self.origin) // stride)).clamp(min=0)
        last = torch.minimum((self.origin + torch.tensor(self.size) - 1 + padding) // stride, bound - 1)
        size = (last - first + 1).amax(0).clamp(min=1)
        return Window(torch.minimum(first, (bound - size).clamp(min=0)), size.tolist())

    def _grid(self, height, width):
        ys = self.origin[:, :1] + torch.arange(self.size[0])  # (n, h)
        xs = self.origin[:, 1:] + torch.arange(self.size[1])  # (n, w)
        inside = ((ys >= 0) & (ys < height))[:, :, None] & ((xs >= 0) & (xs < width))[:, None, :]
        return ys, xs, inside

    def flat_index(self, height, width):
        """(flat, inside), both (n, h, w): each window pixel's flat index into a (height, width) map (clamped to
        the map's edge where the window reaches outside it) and whether it lies inside the map."""
        ys, xs, inside = self._grid(height, width)
        return ys.clamp(0, height - 1)[:, :, None] * width + xs.clamp(0, width - 1)[:, None, :], inside

    def _parts(self, height, width, device):
        """The windows inside a (height, width) map, and those reaching outside it with their flat pixel indices."""
        key = (height, width, device)
        if key not in self._split:
            (h, w), (top, left) = self.size, self.origin.unbind(1)
            whole = (top >= 0) & (left >= 0) & (top + h <= height) & (left + w <= width)
            inner, outer = whole.nonzero().squeeze(1), (~whole).nonzero().squeeze(1)
            part = Window(self.origin[outer], self.size)
            flat, inside = part.flat_index(height, width)
            self._split[key] = (inner.to(device), top[inner].to(device), left[inner].to(device), outer.to(device),
                                flat.flatten().to(device), inside.to(device))
        return self._split[key]

    def take(self, tensor, fill=0, channel=None):
        """Crops of ``tensor`` to the windows, ``fill`` outside the maps.

        ``tensor`` (1, C, H, W) gives (n, C, h, w); with ``channel`` (n,), ``tensor`` (O, H, W) gives (n, h, w),
        window i cropped from ``tensor[channel[i]]``. Windows inside the maps are strided views copied in one
        copy (whole rows of a window at a time); the few reaching outside are gathered pixel by pixel.
        """
        height, width = tensor.shape[-2:]
        (h, w), n = self.size, len(self.origin)
        inner, top, left, outer, flat, inside = self._parts(height, width, tensor.device)
        maps = tensor[0] if channel is None else tensor  # (C or O, H, W)
        shape = (n, maps.shape[0], h, w) if channel is None else (n, h, w)
        out = torch.empty(shape, dtype=tensor.dtype, device=tensor.device)
        if len(inner):  # slices are views; stacking them copies each window's rows whole
            places = zip(top.tolist(), left.tolist(), strict=True)
            if channel is None:
                crops = [maps[:, y:y + h, x:x + w] for y, x in places]
            else:
                crops = [maps[c, y:y + h, x:x + w] for c, (y, x) in zip(channel[inner].tolist(), places, strict=True)]
            if not len(outer):
                return torch.stack(crops)
            out[inner] = torch.stack(crops)
        if len(outer):
            k = len(outer)
            if channel is None:
                crop = maps.reshape(maps.shape[0], -1).index_select(1, flat).view(-1, k, h, w).transpose(0, 1)
                mask = inside[:, None]
            else:
                offsets = (channel[outer].to(tensor.device) * (height * width)).repeat_interleave(h * w)
                crop, mask = maps.reshape(-1).index_select(0, flat + offsets).view(k, h, w), inside
            out[outer] = torch.where(mask, crop, torch.tensor(fill, dtype=crop.dtype, device=crop.device))
        return out


@dataclass
class WindowPlan:
    """How windowed factors are computed for one input: which rules, which (dimension, tile) pairs.

    Attributes
    ----------
    rules, contexts, footprints : lists
        The local rules from the input up to the level where windowed relevance starts, their contexts from the
        full forward pass and their footprints.
    top, top_context
        The rule placing each dimension's relevance (``window_support``/``window_backward``), or None when the
        features themselves are spatial (relevance starts at the feature's own position).
    seeds : Tensor (d,)
        Relevance of each dimension at the top (φ_m, or the normalised φ_m).
    outputs : LongTensor (d,)
        Each dimension's index among the top rule's outputs (or flat feature index).
    pairs : LongTensor (n, 3)
        (dimension position in ``seeds``, tile row, tile column) for every tile that holds relevance.
    tile : int
        Tile side at the top level.
    sizes : list of (channels, height, width)
        Shape of one pair's relevance at each level, from the input up (for the batch size).
    support : float
        Mean share of the input covered by a dimension's windows (the estimate ``method="auto"`` uses).
    input_shape : torch.Size
        Shape of the input (1, C, H, W).
    channel : LongTensor (d,) or None
        Without a top rule: the feature channel of each dimension.
    """

    rules: list
    contexts: list
    footprints: list
    top: object
    top_context: dict
    seeds: torch.Tensor
    outputs: torch.Tensor
    pairs: torch.Tensor
    tile: int
    sizes: list
    support: float
    input_shape: torch.Size
    channel: torch.Tensor = None


def _level_sizes(footprints, shapes, top_channels, tile):
    """(channels, h, w) of one tile's relevance at each level, from the input up to the top level."""
    window = Window(torch.zeros(1, 2, dtype=torch.long), (tile, tile))
    sizes = [(top_channels, tile, tile)]
    for footprint, shape in zip(reversed(footprints), reversed(shapes), strict=True):
        window = window.grown(footprint)
        sizes.append((shape[1], *window.size))
    return sizes[::-1]


def _tiles(support, tile):
    """(d, ceil(H/tile), ceil(W/tile)) bool: which tiles of each dimension's support hold relevance."""
    height, width = support.shape[-2:]
    padded = torch.nn.functional.pad(support, (0, (-width) % tile, 0, (-height) % tile))
    d, h, w = padded.shape
    return padded.view(d, h // tile, tile, w // tile, tile).any(dim=4).any(dim=2)


def plan_windows(model, rules, contexts, shapes, a_top, dims):
    """The windowed plan for dimensions ``dims`` (all with φ_m ≠ 0), or None when the model cannot be windowed.

    None when the model has a projection (every dimension's relevance covers every feature), when a rule below
    the top is not local (no ``footprint``, or a footprint of None: a Linear layer over flattened maps), or when
    the features are not spatial maps.

    Parameters
    ----------
    shapes : list of torch.Size
        The input shape of every layer in the forward pass.
    """
    if model.projection is not None or not dims:
        return None
    top = rules[-1] if hasattr(rules[-1], "window_support") else None
    if top is None and a_top.dim() != 4:
        return None
    local = rules[:-1] if top is not None else rules
    footprints = [getattr(rule, "footprint", lambda ctx: None)(ctx) for rule, ctx in zip(local, contexts, strict=False)]
    if any(footprint is None for footprint in footprints):
        return None
    features = a_top.flatten(1)
    outputs = torch.as_tensor(dims, device=features.device)
    seeds = features[0, outputs]
    if model.normalize:
        seeds = seeds * norm_scale(features)[0]
    if top is not None:
        support = top.window_support(contexts[-1], outputs).cpu()
        top_channels = shapes[-1][1]
        costs = {}
        for tile in TILE_SIDES:  # the cover whose crops hold the fewest values
            count = int(_tiles(support, tile).sum())
            costs[tile] = count * sum(c * h * w for c, h, w in _level_sizes(footprints, shapes[:-1],
                                                                            top_channels, tile))
        tile = min(costs, key=costs.get)
        pairs, channel = _tiles(support, tile).nonzero(), None
    else:
        tile, top_channels = 1, a_top.shape[1]
        channel, y, x = torch.unravel_index(outputs.cpu(), a_top.shape[1:])
        pairs = torch.stack([torch.arange(len(dims)), y, x], dim=1)
    sizes = _level_sizes(footprints, shapes[:len(local)], top_channels, tile)
    area = shapes[0][-2] * shapes[0][-1]
    support = len(pairs) * sizes[0][1] * sizes[0][2] / (len(dims) * area)
    return WindowPlan(local, list(contexts[:len(local)]), footprints, top, contexts[-1] if top else None, seeds,
                      outputs, pairs, tile, sizes, support, shapes[0], channel)


def _top_windows(plan, pairs, window):
    """Relevance at the top level for a batch of pairs, (n, C, tile, tile)."""
    seeds, outputs = plan.seeds[pairs[:, 0]], plan.outputs[pairs[:, 0]]
    if plan.top is not None:
        return plan.top.window_backward(plan.top_context, seeds, outputs, window)
    relevance = torch.zeros(len(pairs), plan.sizes[-1][0], 1, 1, dtype=seeds.dtype, device=seeds.device)
    index = torch.arange(len(pairs), device=seeds.device), plan.channel[pairs[:, 0]].to(seeds.device)
    relevance[index[0], index[1], 0, 0] = seeds
    return relevance


def run_windows(plan, out, rows, pool, progress=None):
    """Add the windowed factors of ``plan`` to ``out`` (d_out, Ph, Pw), sum-pooled over ``pool`` = (ph, pw).

    ``rows[i]`` is the row of ``out`` of the plan's dimension i. The input relevance of every pair is summed over
    channels and added to the pooled cells its pixels fall in (pixels outside the input hold zero relevance).
    ``progress(done, total)``, if given, is called after each batch with the (dimension, tile) pairs done.
    """
    (ph, pw), (_, cells_h, cells_w) = pool, out.shape
    height, width = plan.input_shape[-2:]
    largest = max(c * h * w for c, h, w in plan.sizes)
    batch = max(1, WINDOW_ELEMENTS // largest)
    rows = torch.as_tensor(rows)
    flat = out.view(-1)
    for start in range(0, len(plan.pairs), batch):
        pairs = plan.pairs[start:start + batch]
        window = Window(pairs[:, 1:] * plan.tile, (plan.tile, plan.tile))
        relevance = _top_windows(plan, pairs, window)
        for rule, ctx, footprint in zip(reversed(plan.rules), reversed(plan.contexts), reversed(plan.footprints),
                                        strict=True):
            below = window.grown(footprint)
            relevance = rule.backward(rule.crop(ctx, below, window), relevance)
            window = below
        ys, xs, inside = window._grid(height, width)
        cell = (rows[pairs[:, 0]][:, None, None] * (cells_h * cells_w)
                + torch.div(ys, ph, rounding_mode="floor")[:, :, None] * cells_w
                + torch.div(xs, pw, rounding_mode="floor")[:, None, :])
        values = relevance.sum(dim=1)
        values = torch.where(inside.to(values.device), values, 0.0)
        flat.index_add_(0, torch.where(inside, cell, 0).flatten().to(flat.device), values.flatten().to(flat.dtype))
        if progress is not None:
            progress(start + len(pairs), len(plan.pairs))
    if progress is not None and not len(plan.pairs):
        progress(0, 0)
