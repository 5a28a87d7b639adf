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

Crops. A colour's indicator is zero outside its patches and each layer spreads it only by its receptive field
(:meth:`Window.reached <bilrp_core.windowed.Window.reached>`), so the lowest layers of a colour pass mostly
multiply zeros. There the adjoints run on crops around each patch (contexts cropped by ``rule.crop`` as for
windowed factors; the convs of crops that hold their border without padding), added into whole maps per colour
where whole maps get cheaper (:data:`CROP_WEIGHT`, :data:`CROP_COPY`). Exact too: the adjoint is linear, so a
colour's pass is the sum of its patches'.
"""

from dataclasses import dataclass

import torch
from torch import nn

from .rules import SAME, ZBoxRule
from .windowed import Window

#: Cost of one multiply-add of the products V_g · R_k at the split relative to one of a conv, for the plan's
#: estimate: the products are many small matrix products, bound by memory where convs are bound by arithmetic
#: (about the ratio of the colour passes' rate to the dimension part's in benchmarks/results/colored.json at L17,
#: where the dimension part is mostly these products).
PRODUCT_WEIGHT = 20
#: Largest number of values of the colour maps V_g (all colours at the split level): they are kept for every chunk of
#: dimensions, so a split whose maps exceed this (large inputs, high splits) is not considered.
MAP_ELEMENTS = 2**26
#: Cost of one multiply-add of an adjoint on crops relative to one on whole maps, for the plan's estimate: many small
#: convs and the copies of crops run slower per multiply-add (see the crop and colour rates in
#: benchmarks/results/colored.json).
CROP_WEIGHT = 2.0
#: Cost of copying one value of a crop (the context's crops and the relevance moved between windows) in
#: multiply-adds, for the plan's estimate: it decides for thin layers, whose few multiply-adds are cheaper than crops.
CROP_COPY = 30


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
    crops : int
        Layers ``[:crops]`` run on crops around each patch (:func:`crop_pass`), those up to the split on whole maps.
    windows, shapes : list
        Each patch's window (row-major; all the patch's indicator reaches) and the maps' shape at the input of
        layers 0..``split`` (so that any ``crops`` can run).
    colour_cost : float
        Estimated multiply-adds of the colour passes (crops and whole maps).
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
    crops: int = 0
    windows: list = None
    shapes: list = None
    colour_cost: float = 0.0

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


def _patches(input_shape, pool, spacing):
    """The windows of all patches (row-major) at the input, and each patch's colour."""
    (ph, pw), (sy, sx) = pool, spacing
    cells_h, cells_w = -(-input_shape[-2] // ph), -(-input_shape[-1] // pw)
    rows, cols = torch.arange(cells_h).repeat_interleave(cells_w), torch.arange(cells_w).repeat(cells_h)
    return Window(torch.stack([rows * ph, cols * pw], 1), (ph, pw)), (rows % sy) * sx + cols % sx


def _patch_levels(rules, contexts, shapes, pool):
    """The patches' windows at the input of every layer (and above the last), and each layer's cost on all patches
    (:func:`layer_cost` of each crop, plus :data:`CROP_COPY` per value copied; independent of the colours)."""
    windows, costs = [_patches(shapes[0], pool, (1, 1))[0]], []
    for j, (rule, ctx) in enumerate(zip(rules, contexts, strict=True)):
        footprint = rule.footprint(ctx)
        above = windows[-1].reached(footprint, shapes[j + 1][-2:])
        below = above.grown(footprint)
        shape_in, shape_out = (1, shapes[j][1], *below.size), (1, shapes[j + 1][1], *above.size)
        copies = CROP_COPY * (_numel(shape_in) + _numel(shape_out)) if footprint != SAME else 0
        costs.append(len(above.origin) * (layer_cost(rule, ctx, shape_in, shape_out) + copies))
        windows.append(above)
    return windows, costs


def plan_colors(rules, contexts, shapes, pool, n_dims):
    """The cheapest coloured plan for ``n_dims`` dimensions, or None when no split is possible.

    Every split up to the first rule that cannot be coloured is priced (see the module docstring), except splits
    whose colour maps would hold more than :data:`MAP_ELEMENTS` values; for each split the number of layers run
    on crops is the cheapest (crops cost :data:`CROP_WEIGHT` times more per multiply-add but are done once per
    patch over the patch's reach, whole maps once per colour). None when the first rule cannot be coloured or
    every split's maps are too large.

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
    colourable = next((j for j, (rule, ctx) in enumerate(zip(rules, contexts, strict=True))
                       if not _colourable(rule, ctx)), len(rules))
    windows, crop_costs = _patch_levels(rules[:colourable], contexts[:colourable], shapes, pool)
    best = None
    for split in range(1, colourable + 1):
        spacing, _ = _geometry(rules[:split], contexts[:split], shapes[split], shapes[0], pool)
        colours = spacing[0] * spacing[1]
        if colours * _numel(shapes[split]) > MAP_ELEMENTS:
            continue
        # the colour passes' estimate, weighted (crops are slower per multiply-add) to choose, plain to report
        weighted, crops = min((CROP_WEIGHT * sum(crop_costs[:n]) + colours * sum(costs[n:split]), n)
                              for n in range(split + 1))
        bottom = sum(crop_costs[:crops]) + colours * sum(costs[crops:split])
        cost = (n_dims * sum(costs[split:]) + weighted
                + PRODUCT_WEIGHT * n_dims * colours * _numel(shapes[split]))  # the products V_g · R_k
        if best is None or cost < best[1]:
            best = (split, cost, crops, bottom)
    if best is None:
        return None
    split, cost, crops, bottom = best
    spacing, (rows, cols) = _geometry(rules[:split], contexts[:split], shapes[split], shapes[0], pool)
    cells_h, cells_w = -(-shapes[0][-2] // pool[0]), -(-shapes[0][-1] // pool[1])
    device = _device(contexts)
    owners = _owners(rows, cols, cells_w, cells_h * cells_w).to(device)
    return ColorPlan(split, list(rules[:split]), list(contexts[:split]), spacing, owners, torch.Size(shapes[0]),
                     tuple(pool), torch.Size(shapes[split]), float(cost), float(dense), crops, windows[:split + 1],
                     [torch.Size(shape) for shape in shapes[:split + 1]], float(bottom))


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


def _rewindow(u, source, target):
    """Values ``u`` on the windows ``source`` moved onto the windows ``target``: zeros where ``source`` has none,
    and values outside ``target`` dropped (the caller's windows hold every value that is read)."""
    if source.size == target.size and torch.equal(source.origin, target.origin):
        return u
    moved = u.new_zeros(*u.shape[:2], *target.size)
    offsets = source.origin - target.origin  # where each source window starts in its target window
    shifts, groups = offsets.unique(dim=0, return_inverse=True)  # patches on one grid: few shifts
    for group, (dy, dx) in enumerate(shifts.tolist()):
        ys = slice(max(0, -dy), min(source.size[0], target.size[0] - dy))
        xs = slice(max(0, -dx), min(source.size[1], target.size[1] - dx))
        into = (slice(ys.start + dy, ys.stop + dy), slice(xs.start + dx, xs.stop + dx))
        index = slice(None) if len(shifts) == 1 else (groups == group).nonzero().squeeze(1).to(u.device)
        moved[index, :, into[0], into[1]] = u[index][:, :, ys, xs]
    return moved


def crop_pass(plan, patches, dtype):
    """The adjoints of the indicators of ``patches`` (LongTensor of row-major patch indices) through layers
    ``[:plan.crops]``, each on crops of its window: (values (n, C, h, w), their windows at level ``plan.crops``).

    Contexts are cropped from the one forward pass (``rule.crop``, as for windowed factors; convs of crops that
    hold the border run without padding) to output windows holding all the patch reaches and input windows grown
    by the receptive field. Pixels of a ragged border patch outside the input get nothing.
    """
    device = plan.owners.device
    window = Window(plan.windows[0].origin[patches], plan.windows[0].size)
    ys, xs, inside = window._grid(*plan.input_shape[-2:])
    u = inside[:, None].to(device=device, dtype=dtype).expand(-1, plan.input_shape[1], -1, -1)
    for j in range(plan.crops):
        rule, ctx = plan.rules[j], plan.contexts[j]
        above = Window(plan.windows[j + 1].origin[patches], plan.windows[j + 1].size)
        below = above.grown(rule.footprint(ctx))
        u = rule.adjoint(rule.crop(ctx, below, above), _rewindow(u, window, below))
        window = above
    return u, window


def _added_into_maps(values, window, colours, n_colours, shape):
    """(n_colours, C, H, W): the crops ``values`` (n, C, h, w) on ``window`` added into the maps of their
    ``colours`` (n,); values outside the maps (where a window reaches beyond them) are dropped."""
    channels, (height, width) = shape[1], shape[-2:]
    flat, inside = window.flat_index(height, width)
    spare = n_colours * height * width
    index = torch.where(inside, colours[:, None, None] * (height * width) + flat, spare).flatten()
    maps = values.new_zeros(channels, spare + 1)
    maps.index_add_(1, index.to(values.device), values.transpose(0, 1).reshape(channels, -1))
    return maps[:, :spare].view(channels, n_colours, height, width).transpose(0, 1).contiguous()


def colour_chunk(plan, budget: int) -> int:
    """Colours per adjoint pass so that one pass holds at most ``budget`` values in any layer: the whole maps from
    level ``plan.crops`` up, and the crops of one colour's patches below it (small batches of crops run slowly,
    so the crops' share of the budget is what matters there)."""
    per_patch = max(shape[1] * window.size[0] * window.size[1]
                    for shape, window in zip(plan.shapes[:plan.crops + 1], plan.windows, strict=False))
    patches = -(-len(plan.windows[0].origin) // plan.colors)
    largest = max([_numel(shape) for shape in plan.shapes[plan.crops:]] + [patches * per_patch])
    return max(1, min(plan.colors, budget // largest))


def colour_maps(plan, dtype, chunk, progress=None, done=0, total=0):
    """V_g = B_k*(indicator of colour g) for every colour, (Sy·Sx, C_k, H_k·W_k), ``chunk`` colours per pass
    (:func:`colour_chunk`).

    The lowest ``plan.crops`` layers run on crops around each patch of the chunk's colours (:func:`crop_pass`),
    added into whole maps per colour above them.
    """
    device = plan.owners.device
    patch_colours = _patches(plan.input_shape, plan.pool, plan.spacing)[1]
    maps = []
    for start in range(0, plan.colors, chunk):
        colours = list(range(start, min(start + chunk, plan.colors)))
        if plan.crops:
            patches = ((patch_colours >= start) & (patch_colours <= colours[-1])).nonzero().squeeze(1)
            values, window = crop_pass(plan, patches, dtype)
            u = _added_into_maps(values, window, patch_colours[patches] - start, len(colours), plan.shapes[plan.crops])
        else:
            u = colour_indicators(plan, colours, dtype, device)
        for rule, ctx in zip(plan.rules[plan.crops:], plan.contexts[plan.crops:], strict=True):
            u = rule.adjoint(ctx, u)
        maps.append(u.flatten(2))
        if progress is not None:
            progress(done + colours[-1] + 1, total)
    return torch.cat(maps)


def run_colored(plan, out, rows, relevance_at_split, chunk, budget, progress=None):
    """Write the coloured factors of ``plan`` into ``out`` (d_out, Hp, Wp).

    Parameters
    ----------
    rows : sequence of int
        Rows of ``out`` to compute (the non-zero dimensions), in order.
    relevance_at_split : callable
        ``relevance_at_split(rows)`` -> (len(rows), C_k, H_k, W_k): the relevance of those rows entering layer
        ``plan.split``, from the batched backward through the layers above it.
    chunk : int
        Dimensions per batched backward.
    budget : int
        Largest number of values per layer of one adjoint pass (:func:`colour_chunk`).
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
    maps = colour_maps(plan, out.dtype, colour_chunk(plan, budget), progress, 0, total)  # (G, C_k, P)
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
