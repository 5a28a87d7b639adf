"""Coloured relevance factors: the bottom of the network explained once per colour of patches, not once per dimension.

What. Below a split layer k, the LRP backward of every rule is linear in the relevance it receives (the activations,
normalisers z and max-pool indices come from the one forward pass), so the map B_k from the relevance entering
layer k, R_k (C_k×H_k×W_k), to the pooled input relevance (Hp×Wp patches, summed over channels) is a matrix J. J
is sparse: a position e of layer k reaches only the patches its receptive field touches. Colour the patches on a
grid, patch (py, px) getting colour (py mod Sy, px mod Sx), with spacings S so large that no receptive field
touches two patches of one colour. Then the transpose B_k* (each rule's ``adjoint``, a forward-like pass) applied
to the indicator of colour g gives V_g[e] = J[P, e] for the one patch P of colour g that e reaches (Curtis, Powell
and Reid's compression of sparse Jacobians), and for every dimension m

    factor[m, P] = Σ_{e whose colour-g(P) owner is P} V_g(P)[e] · R_k[m, e],

with R_k[m] from the ordinary batched backward through the layers above k only.

Exact. Nothing is approximated: the same products of the same factors, summed in another order (equal to the dense
factors up to floating-point rounding; tested against them).

When it pays. Dense factors cost h backward passes through every layer; coloured factors cost h passes through
the layers above k, S_y·S_x adjoint passes below k, and h·S_y·S_x products at level k. For VGG-16 with h = 100
projected dimensions the bottom layers at full resolution dominate, and a split after the third block's convs needs
far fewer colours than dimensions. :func:`plan_colors` estimates the multiply-adds of every split from the layers'
shapes and keeps the cheapest; :func:`bilrp_core.relevance_factors` uses it when it beats dense factors. A rule
without ``adjoint`` or without a local ``footprint`` (a Linear layer, shifts, the bigram pooling) stops the split:
coloured factors need only the layers below the split to have both.
"""

from dataclasses import dataclass

import torch
from torch import nn

from .rules import ZBoxRule
from .windowed import Window

#: Cost of one multiply-add of the products V_g · R_k at the split relative to one of a conv, for the plan's
#: estimate: the products are many small matrix products, bound by memory where convs are bound by arithmetic
#: (about the ratio of the colour passes' rate to the dimension part's in benchmarks/results/colored.json at L17,
#: where the dimension part is mostly these products).
PRODUCT_WEIGHT = 20
#: Largest number of values of the colour maps V_g (all colours at the split level): they are kept for every chunk of
#: dimensions, so a split whose maps exceed this (large inputs, high splits) is not considered.
MAP_ELEMENTS = 2**26


@dataclass
class ColorPlan:
    """How coloured factors are computed for one input.

    Attributes
    ----------
    split : int
        Layers ``[:split]`` are coloured (adjoint passes), layers ``[split:]`` propagate each dimension densely.
    rules, contexts : list
        The rules below the split and their contexts from the full forward pass.
    spacing : (int, int)
        Colour spacings (Sy, Sx) in patches; there are Sy·Sx colours.
    owners : LongTensor (Sy·Sx, H_k·W_k)
        For each colour, the flat patch index each level-k position reaches, or Hp·Wp (a spare cell) for none.
    input_shape : torch.Size
        (1, C, H, W) of the input.
    pool : (int, int)
        Patch size.
    level_shape : torch.Size
        (1, C_k, H_k, W_k): the shape of the relevance entering layer ``split``.
    cost, dense_cost : float
        Estimated multiply-adds of these coloured factors and of dense factors.
    """

    split: int
    rules: list
    contexts: list
    spacing: tuple
    owners: torch.Tensor
    input_shape: torch.Size
    pool: tuple
    level_shape: torch.Size
    cost: float
    dense_cost: float

    @property
    def colors(self):
        """The number of colours, Sy·Sx (adjoint passes)."""
        return self.spacing[0] * self.spacing[1]


def _numel(shape):
    """Values of one sample of a tensor of this shape (without the batch dimension)."""
    return int(torch.Size(shape[1:]).numel())


def layer_cost(rule, ctx, shape_in, shape_out):
    """Estimated multiply-adds of one relevance sample through a layer; its backward and adjoint cost the same.

    A Conv2d/Linear layer costs one multiply-add per weight and output (three convs for z^B); every layer also
    touches its input and output once (elementwise products, divisions, gathers).
    """
    elementwise = _numel(shape_in) + _numel(shape_out)
    layer = ctx.get("layer") if isinstance(ctx, dict) else None
    if isinstance(layer, nn.Conv2d | nn.Linear):
        passes = 3 if isinstance(rule, ZBoxRule) else 1
        return passes * _numel(shape_out) * layer.weight[0].numel() + elementwise
    return elementwise


def _axis_owners(origin, extent, length, patch):
    """Colour spacing along one axis and, per colour, the patch each position's receptive field reaches (−1: none).

    Position i of the split level reaches the input pixels [origin_i, origin_i + extent − 1] (clipped to the
    input), i.e. the patches lo_i..hi_i. A spacing S ≥ every hi − lo + 1 leaves at most one patch of each colour
    c (patches q ≡ c mod S) in that range: q = lo + (c − lo) mod S if q ≤ hi.
    """
    last = origin + extent - 1
    reach = (last >= 0) & (origin <= length - 1)
    lo = origin.clamp(0, length - 1) // patch
    hi = last.clamp(0, length - 1) // patch
    spans = (hi - lo + 1)[reach]
    spacing = min(int(spans.max()) if len(spans) else 1, -(-length // patch))  # one colour per patch at most
    colours = torch.arange(spacing)[:, None]
    nearest = lo + (colours - lo) % spacing
    return spacing, torch.where((nearest <= hi) & reach, nearest, -1)


def _receptive_fields(rules, contexts, level_shape):
    """Each split-level position's receptive field in the input: origins (n, 2) and size (height, width)."""
    n = max(level_shape[-2:])
    window = Window(torch.arange(n)[:, None].repeat(1, 2), (1, 1))  # position i on both axes at once
    for rule, ctx in zip(reversed(rules), reversed(contexts), strict=True):
        window = window.grown(rule.footprint(ctx))
    return window.origin, window.size


def _geometry(rules, contexts, level_shape, input_shape, pool):
    """(Sy, Sx) and the per-axis owners of the split level (see :func:`_axis_owners`)."""
    origin, size = _receptive_fields(rules, contexts, level_shape)
    axes = [_axis_owners(origin[:level_shape[axis]][:, i], size[i], input_shape[axis], pool[i])
            for i, axis in enumerate((-2, -1))]
    return (axes[0][0], axes[1][0]), (axes[0][1], axes[1][1])


def _owners(rows, cols, cells_w, spare):
    """(Sy·Sx, H_k·W_k) flat patch index owned by each position for colour (cy, cx) = cy·Sx + cx; ``spare`` if none."""
    flat = rows[:, None, :, None] * cells_w + cols[None, :, None, :]  # (Sy, Sx, H_k, W_k)
    valid = (rows[:, None, :, None] >= 0) & (cols[None, :, None, :] >= 0)
    return torch.where(valid, flat, spare).reshape(rows.shape[0] * cols.shape[0], -1)


def _colourable(rule, ctx):
    """Whether coloured factors can go below this rule: it has an adjoint and a local footprint."""
    return hasattr(rule, "adjoint") and getattr(rule, "footprint", lambda ctx: None)(ctx) is not None


def plan_colors(rules, contexts, shapes, pool, n_dims):
    """The cheapest coloured plan for ``n_dims`` dimensions, or None when no split is possible.

    Every split up to the first rule that cannot be coloured is priced (see the module docstring), except splits
    whose colour maps would hold more than :data:`MAP_ELEMENTS` values. None when the first rule cannot be
    coloured or every split's maps are too large.

    Parameters
    ----------
    rules, contexts : list
        One per layer, from the forward pass.
    shapes : list of torch.Size
        The input shape of every layer and, last, the shape of the top activation (len(rules) + 1 shapes).
    pool : (int, int)
        Patch size.
    n_dims : int
        Dimensions whose factors are computed.
    """
    costs = [layer_cost(rule, ctx, shapes[j], shapes[j + 1]) for j, (rule, ctx) in enumerate(zip(rules, contexts,
                                                                                                   strict=True))]
    dense = n_dims * sum(costs)
    best = None
    for split in range(1, len(rules) + 1):
        if not _colourable(rules[split - 1], contexts[split - 1]):
            break
        spacing, _ = _geometry(rules[:split], contexts[:split], shapes[split], shapes[0], pool)
        colours = spacing[0] * spacing[1]
        if colours * _numel(shapes[split]) > MAP_ELEMENTS:
            continue
        cost = (n_dims * sum(costs[split:]) + colours * sum(costs[:split])
                + PRODUCT_WEIGHT * n_dims * colours * _numel(shapes[split]))  # the products V_g · R_k
        if best is None or cost < best[1]:
            best = (split, cost)
    if best is None:
        return None
    split, cost = best
    spacing, (rows, cols) = _geometry(rules[:split], contexts[:split], shapes[split], shapes[0], pool)
    cells_h, cells_w = -(-shapes[0][-2] // pool[0]), -(-shapes[0][-1] // pool[1])
    device = _device(contexts)
    owners = _owners(rows, cols, cells_w, cells_h * cells_w).to(device)
    return ColorPlan(split, list(rules[:split]), list(contexts[:split]), spacing, owners, torch.Size(shapes[0]),
                     tuple(pool), torch.Size(shapes[split]), float(cost), float(dense))


def _device(contexts):
    """The device of the forward pass's tensors (the first context holding one; CPU otherwise)."""
    for ctx in contexts:
        for value in ctx.values():
            if isinstance(value, torch.Tensor):
                return value.device
    return torch.device("cpu")


def colour_indicators(plan, colours, dtype, device):
    """The adjoint of sum-pooling and of the channel sum applied to colour indicators: (n, C, H, W).

    Every pixel of a patch of colour g gets 1 in every input channel; cells of the zero-padded ragged border
    have no pixel, so they get nothing (as :func:`bilrp_core.attribution.sum_pool` drops nothing there).
    """
    (_, channels, height, width), (ph, pw), (sy, sx) = plan.input_shape, plan.pool, plan.spacing
    rows = (torch.arange(height, device=device) // ph) % sy
    cols = (torch.arange(width, device=device) // pw) % sx
    colour = rows[:, None] * sx + cols[None, :]  # (H, W)
    wanted = torch.as_tensor(colours, device=device)[:, None, None]
    return (colour[None] == wanted).to(dtype)[:, None].expand(-1, channels, -1, -1)


def colour_maps(plan, dtype, chunk, progress=None, done=0, total=0):
    """V_g = B_k*(indicator of colour g) for every colour, (Sy·Sx, C_k, H_k·W_k), ``chunk`` colours per pass."""
    device = plan.owners.device
    maps = []
    for start in range(0, plan.colors, chunk):
        colours = list(range(start, min(start + chunk, plan.colors)))
        u = colour_indicators(plan, colours, dtype, device)
        for rule, ctx in zip(plan.rules, plan.contexts, strict=True):
            u = rule.adjoint(ctx, u)
        maps.append(u.flatten(2))
        if progress is not None:
            progress(done + colours[-1] + 1, total)
    return torch.cat(maps)


def run_colored(plan, out, rows, relevance_at_split, chunk, colour_chunk, progress=None):
    """Write the coloured factors of ``plan`` into ``out`` (d_out, Hp, Wp).

    Parameters
    ----------
    rows : sequence of int
        Rows of ``out`` to compute (the non-zero dimensions), in order.
    relevance_at_split : callable
        ``relevance_at_split(rows)`` -> (len(rows), C_k, H_k, W_k): the relevance of those rows entering layer
        ``plan.split``, from the batched backward through the layers above it.
    chunk, colour_chunk : int
        Dimensions per batched backward; colours per adjoint pass.
    progress : callable, optional
        ``progress(done, total)`` after each adjoint pass (colours done) and each chunk of dimensions (colours plus
        dimensions done); total = colours + len(rows).
    """
    rows = list(rows)
    if not rows:  # nothing to propagate: done at once
        if progress is not None:
            progress(0, 0)
        return
    total = plan.colors + len(rows)
    maps = colour_maps(plan, out.dtype, colour_chunk, progress, 0, total)  # (G, C_k, P)
    # Per position p the products are a matrix product (G × C_k)·(C_k × m): one batched product over positions.
    maps = maps.permute(2, 0, 1).contiguous()  # (P, G, C_k)
    index = plan.owners.T.flatten()  # (P·G): the layout of the products below
    cells = out.shape[1] * out.shape[2]
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        relevance = relevance_at_split(part).to(maps.dtype).reshape(len(part) * maps.shape[2], -1)  # (m·C_k, P)
        by_position = relevance.T.contiguous().view(-1, len(part), maps.shape[2])  # (P, m, C_k): one 2-D transpose
        products = torch.bmm(maps, by_position.transpose(1, 2))  # (P, G, m), Σ over channels
        pooled = torch.zeros(cells + 1, len(part), dtype=maps.dtype, device=maps.device)  # + the spare cell
        pooled.index_add_(0, index, products.view(-1, len(part)))
        out[part] = pooled[:cells].T.reshape(len(part), *out.shape[1:]).to(out.dtype)
        if progress is not None:
            progress(plan.colors + start + len(part), total)
