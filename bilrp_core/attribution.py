"""BiLRP in the factored form of Sec. 3.3: BiLRP(y, x, x') = Σ_m LRP([φ]_m, x) ⊗ LRP([φ]_m, x').

One forward pass per image, then all h output dimensions go through one batched backward (chunked over h to bound
memory), or, where each dimension's relevance covers a small part of the input, through windows around it
(:mod:`bilrp_core.windowed`), or where many dimensions share costly bottom layers, through those layers once per
colour of patches (:mod:`bilrp_core.colored`); the same numbers. Input relevance is summed over channels and
sum-pooled over pool×pool patches *before* the outer product, so Σ of the pair matrix is the explained similarity
and the matrix stays small.
"""

import torch
import torch.nn.functional as F

from . import colored, windowed
from .composite import rules_for
from .model import norm_scale
from .numerics import safe_divide
from .sparse_pair import SparseFactors, SparsePair

#: Largest number of relevance values per layer and chunk when chunk_size is None. On a GPU the budget is memory
#: (2^26 floats = 256 MB per tensor); on a CPU the backward is memory-bandwidth bound and small chunks that stay in
#: cache are fastest (measured by benchmarks/bench_speed.py, see docs/design.md).
CHUNK_ELEMENTS = {"cuda": 2**26, "cpu": 2**21}
#: How factors are computed: chosen per input ("auto"), every dimension over the whole input ("dense"), only
#: through the windows that can receive each dimension's relevance ("windowed"), or the bottom layers once per
#: colour of patches ("colored").
METHODS = ("auto", "dense", "windowed", "colored")


def as_batch_of_one(model, x):
    """``x`` as one input (1, C, H, W) on the model's device; ``ValueError`` for a batch of several."""
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() < 2 or x.shape[0] != 1:
        raise ValueError(f"x must be one input of shape (1, C, H, W) or (C, H, W); got {tuple(x.shape)}")
    return x.to(model.device)


def pool_size(pool):
    """(ph, pw) of a patch size given as an int or a pair; ``ValueError`` below 1."""
    ph, pw = (pool, pool) if isinstance(pool, int) else tuple(pool)
    if ph < 1 or pw < 1:
        raise ValueError(f"pool must be ≥ 1; got {pool}")
    return ph, pw


def sum_pool(relevance, pool):
    """Sum relevance (m, C, H, W) over channels and over pool×pool patches -> (m, ceil(H/p), ceil(W/p)).

    Borders that do not fill a whole patch are zero-padded, so the total is kept exactly.
    """
    ph, pw = pool_size(pool)
    r = relevance.sum(dim=1) if relevance.dim() == 4 else relevance
    m, h, w = r.shape
    r = F.pad(r, (0, (-w) % pw, 0, (-h) % ph))
    return r.reshape(m, r.shape[1] // ph, ph, r.shape[2] // pw, pw).sum(dim=(2, 4))


def _forward_and_prepare(model, x, rules, shapes=None):
    """Forward pass recording each rule's per-image context (normalisers z), and each layer's input shape."""
    contexts, a = [], x
    with torch.no_grad():
        for layer, rule in zip(model.layers, rules, strict=True):
            if shapes is not None:
                shapes.append(a.shape)
            if hasattr(rule, "prepare_forward"):  # the context holds the output: one pass, not two
                context, a = rule.prepare_forward(layer, a)
            else:
                context, a = rule.prepare(layer, a), layer(a)
            contexts.append(context)
    return contexts, a


def _top_relevance(model, a_top, dims):
    """Relevance factors at the output of ``layers`` for output dimensions ``dims``.

    The top-layer relevance of y = Σ_m φ_m φ'_m is diagonal, R_mm' = δ_mm' φ_m φ'_m, so the factor of dimension m
    is φ_m placed on output m; the projection passes it down with LRP-0 (R_j = a_j w_mj φ_m / φ_m). With a
    normalised φ the norm is a per-image constant: the seeds are the normalised φ_m, the rules below unchanged.
    """
    feats = a_top.flatten(1)  # (1, D)
    if model.projection is None:
        phi = feats
        seeds = torch.zeros(len(dims), feats.shape[1], dtype=feats.dtype, device=feats.device)
        index = torch.as_tensor(dims, device=feats.device)
        seeds[torch.arange(len(dims)), index] = feats[0, index]
    else:
        phi = model.projection(feats)
        weight = model.projection.weight[dims]  # (m, D)
        part = feats @ weight.T  # (1, m)
        seeds = feats * weight * safe_divide(part, part).T  # LRP-0 through the projection
    if model.normalize:
        seeds = seeds * norm_scale(phi)
    return seeds.reshape(len(dims), *a_top.shape[1:])


def _backward(model, rules, contexts, relevance):
    for rule, ctx in zip(reversed(rules), reversed(contexts), strict=True):
        relevance = rule.backward(ctx, relevance)
    return relevance


def output_dim(model, a_top):
    """h: the number of feature dimensions φ has for this top activation."""
    return model.projection.out_features if model.projection is not None else a_top[0].numel()


def _auto_chunk(contexts, x, h):
    largest = max([x[0].numel()] + [c["a"][0].numel() for c in contexts if "a" in c])
    budget = CHUNK_ELEMENTS["cuda" if x.is_cuda else "cpu"]
    return max(1, min(h, budget // largest))


def relevance_factors(model, x, gamma=None, pool=8, chunk_size=None, dims=None, method="auto", progress=None,
                      return_phi=False):
    """LRP factors R_m(x) of every feature dimension m, summed over channels and sum-pooled.

    One forward pass records every layer's activations and normalisers; then the relevance of each dimension is
    propagated back either over the whole input ("dense") or only through the windows of each layer's input that
    can receive it ("windowed", :mod:`bilrp_core.windowed`): for the bigram network a bigram's relevance starts
    where it fires in the digit maps and grows by each layer's receptive field, a small part of a page. Both give
    the same factors (up to the order of floating-point sums); windowed factors skip the zeros. Coloured factors
    ("colored", :mod:`bilrp_core.colored`) run the bottom layers once per colour of patches instead of once per
    dimension, again the same factors: for VGG's many projected dimensions this saves most of the work.

    Parameters
    ----------
    model : SimilarityModel
    x : Tensor
        One preprocessed input, (1, C, H, W) or (C, H, W).
    gamma : None, float or dict
        γ schedule (see :func:`bilrp_core.composite.resolve_gamma`).
    pool : int or (int, int)
        Patch size of the sum pooling.
    chunk_size : int, optional
        Output dimensions per batched backward; by default as many as fit :data:`CHUNK_ELEMENTS` for the device.
    dims : sequence of int, optional
        Only these output dimensions (default: all h).
    method : {"auto", "dense", "windowed", "colored"}
        "windowed" needs every rule below the features to be local (conv, max-pool, elementwise layers) and
        spatial features without a projection, or a top layer that places each dimension's relevance (the bigram
        pooling); otherwise — e.g. VGG's random projection, or any Linear layer over flattened maps — it falls
        back to dense. "auto" (the default) computes windowed factors when it can and the windows cover on average
        less than :data:`bilrp_core.windowed.AUTO_SUPPORT` of the input; otherwise coloured factors
        (:mod:`bilrp_core.colored`: the layers below a split run once per colour of patches, not once per
        dimension) when their estimated multiply-adds are fewer than dense factors', dense factors otherwise.
        "colored" uses coloured factors whenever the first layer has an adjoint, dense factors otherwise.
        ``chunk_size`` applies to dense factors and to the dense part of coloured ones.
    progress : callable, optional
        ``progress(done, total)`` after each batch of the backward: dimensions done of all non-zero dimensions
        (dense), (dimension, window) pairs done of all pairs (windowed), or colours then dimensions done of
        both (colored). Counts grow and end at ``total``; raising from it stops the computation.

    return_phi : bool
        Also return φ(x) (h,), from the same forward pass (``model.phi_from_top``): no second pass for it.

    Returns
    -------
    Tensor
        (h, ceil(H/pool), ceil(W/pool)); summed over patches, dimension m gives φ_m(x) for bias-free nets. With
        ``return_phi``, the pair (factors, φ).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    x = as_batch_of_one(model, x)
    rules = rules_for(model, gamma)
    shapes = []
    contexts, a_top = _forward_and_prepare(model, x, rules, shapes)
    dims = list(range(output_dim(model, a_top))) if dims is None else list(dims)
    active = _active_dims(model, a_top, dims)
    ph, pw = pool_size(pool)
    out = torch.zeros(len(dims), -(-x.shape[-2] // ph), -(-x.shape[-1] // pw), dtype=x.dtype, device=x.device)
    plan = _windowed_plan(model, rules, contexts, shapes, a_top, [dims[i] for i in active], method)
    if plan is not None:
        with torch.no_grad():
            windowed.run_windows(plan, out, active, (ph, pw), progress)
        return _result(model, out, a_top, return_phi)
    coloured = _colored_plan(rules, contexts, shapes + [a_top.shape], (ph, pw), len(active), method)
    if coloured is not None:
        split = coloured.split

        def relevance_at_split(rows):
            seeds = _top_relevance(model, a_top, [dims[i] for i in rows])
            return _backward(model, rules[split:], contexts[split:], seeds)

        chunk = chunk_size or _auto_chunk(contexts[split:], x.new_empty(coloured.level_shape), len(active))
        with torch.no_grad():
            colored.run_colored(coloured, out, active, relevance_at_split, chunk,
                                CHUNK_ELEMENTS["cuda" if x.is_cuda else "cpu"], progress)
        return _result(model, out, a_top, return_phi)
    chunk = chunk_size or _auto_chunk(contexts, x, max(1, len(active)))
    with torch.no_grad():
        for start in range(0, len(active), chunk):
            rows = active[start:start + chunk]
            seeds = _top_relevance(model, a_top, [dims[i] for i in rows])
            out[rows] = sum_pool(_backward(model, rules, contexts, seeds), pool).to(out.dtype)
            if progress is not None:
                progress(start + len(rows), len(active))
    if progress is not None and not active:  # nothing to propagate: done at once
        progress(0, 0)
    return _result(model, out, a_top, return_phi)


def _result(model, factors, a_top, return_phi):
    if not return_phi:
        return factors
    with torch.no_grad():
        return factors, model.phi_from_top(a_top)[0]


def _windowed_plan(model, rules, contexts, shapes, a_top, dims, method):
    """The windowed plan when ``method`` asks for it (or "auto" finds the support small), else None (dense)."""
    if method in ("dense", "colored"):
        return None
    with torch.no_grad():
        plan = windowed.plan_windows(model, rules, contexts, shapes, a_top, dims)
    if plan is None or (method == "auto" and plan.support >= windowed.AUTO_SUPPORT):
        return None
    return plan


def _colored_plan(rules, contexts, shapes, pool, n_dims, method):
    """The coloured plan when ``method`` is "colored" (and a split exists), or "auto" finds it cheaper than dense."""
    if method not in ("auto", "colored") or not n_dims:
        return None
    plan = colored.plan_colors(rules, contexts, shapes, pool, n_dims)
    if plan is None or (method == "auto" and plan.cost >= plan.dense_cost):
        return None
    return plan


def factor_method(model, x, gamma=None, dims=None, method="auto", pool=8):
    """"windowed", "colored" or "dense": how :func:`relevance_factors` computes the factors of ``x`` with these
    arguments.

    Runs the forward pass; for tests, benchmarks and diagnostics.
    """
    x = as_batch_of_one(model, x)
    rules, shapes = rules_for(model, gamma), []
    contexts, a_top = _forward_and_prepare(model, x, rules, shapes)
    dims = list(range(output_dim(model, a_top))) if dims is None else list(dims)
    chosen = [dims[i] for i in _active_dims(model, a_top, dims)]
    if _windowed_plan(model, rules, contexts, shapes, a_top, chosen, method) is not None:
        return "windowed"
    coloured = _colored_plan(rules, contexts, shapes + [a_top.shape], pool_size(pool), len(chosen), method)
    return "dense" if coloured is None else "colored"


def _active_dims(model, a_top, dims):
    """Positions in ``dims`` whose factor can be non-zero.

    Without a projection the seed of dimension m is φ_m itself, and every LRP rule is linear in the relevance it
    receives, so a dimension with φ_m = 0 has zero relevance everywhere: it is skipped, not computed. The bigram
    network leaves many of its bigrams at zero on any page, so this saves much of the cost of its explanations
    and changes no value.
    """
    if model.projection is not None:
        return list(range(len(dims)))
    phi = a_top.flatten(1)[0]
    return [i for i, d in enumerate(dims) if phi[d] != 0]


def relevance_factors_loop(model, x, gamma=None, pool=8):
    """The same factors computed one output dimension at a time, re-running forward and backward for each.

    This is how per-dimension LRP implementations (e.g. the authors' code) proceed; it exists for tests and for
    the speed benchmark, never for production use.
    """
    x = as_batch_of_one(model, x)
    with torch.no_grad():
        h = model(x).shape[1]
    return torch.cat([relevance_factors(model, x, gamma, pool, dims=[m]) for m in range(h)], dim=0)


def pair_matrix(factors, factors2):
    """BiLRP pair matrix from two images' factors: Σ_m R_m(x) ⊗ R_m(x') -> (H1, W1, H2, W2). A matrix product.

    Dense factors (tensors) give a dense tensor. If either is :class:`~bilrp_core.sparse_pair.SparseFactors`, the
    result is a :class:`~bilrp_core.sparse_pair.SparsePair`: the product R1ᵀ·R2 stays sparse and the whole
    (H1·W1)×(H2·W2) matrix is never formed.
    """
    if isinstance(factors, SparseFactors) or isinstance(factors2, SparseFactors):
        return SparsePair(factors, factors2)
    if factors.shape[0] != factors2.shape[0]:
        raise ValueError(f"factors disagree on h: {factors.shape[0]} vs {factors2.shape[0]} "
                         "(were they computed with the same model?)")
    a = factors.reshape(factors.shape[0], -1)
    b = factors2.reshape(factors2.shape[0], -1).to(a)
    return (a.T @ b).reshape(*factors.shape[1:], *factors2.shape[1:])


def bilrp(model, x, x2, gamma=None, pool=8, chunk_size=None):
    """BiLRP explanation of y(x, x') on pairs of pool×pool patches.

    Returns
    -------
    Tensor
        (H1/pool, W1/pool, H2/pool, W2/pool); its sum is the explained similarity (exactly y(x, x') for
        bias-free ReLU networks, Proposition 1).
    """
    return pair_matrix(relevance_factors(model, x, gamma, pool, chunk_size),
                       relevance_factors(model, x2, gamma, pool, chunk_size))
