"""The baselines of Sec. 4, on the same pooled patch-pair grid as BiLRP.

- Saliency:          R_ii' = (x_i x'_i')²
- Curvature:         R_ii' = ([∇²y(x, x')]_ii')²
- Hessian × Product: R_ii' = x_i x'_i' [∇²y(x, x')]_ii'

Only the cross block of the Hessian pairs features of x with features of x'. For y = Σ_m φ_m(x) φ_m(x') it is
exactly ∂²y/∂x_i∂x'_i' = Σ_m J_mi(x) J_mi'(x'), with J the Jacobian of φ, computed here by autograd in one
batched backward per image (tests check it against torch's full Hessian on a small model).
"""

import torch

from .attribution import as_batch_of_one, pair_matrix, pool_size, sum_pool


def jacobian(model, x):
    """Exact Jacobian of φ at x by autograd: (h, C, H, W)."""
    x = as_batch_of_one(model, x).detach().requires_grad_(True)
    with torch.enable_grad():
        phi = model(x)
        seeds = torch.eye(phi.shape[1], dtype=phi.dtype, device=phi.device).unsqueeze(1)
        (jac,) = torch.autograd.grad(phi, x, seeds, is_grads_batched=True)
    return jac.squeeze(1)


def cross_hessian(model, x, x2):
    """∂²y/∂x∂x' as a dense (d, d') matrix — small models only."""
    j1 = jacobian(model, x).flatten(1)
    j2 = jacobian(model, x2).flatten(1)
    return j1.T @ j2


def hessian_product(model, x, x2, pool=8):
    """Hessian × Product (Eq. 1) pooled to patch pairs: Σ_m (x ⊙ J_m) ⊗ (x' ⊙ J'_m). Equals BiLRP at γ = 0."""
    x, x2 = as_batch_of_one(model, x), as_batch_of_one(model, x2)
    return pair_matrix(sum_pool(x * jacobian(model, x), pool), sum_pool(x2 * jacobian(model, x2), pool))


def saliency(model, x, x2, pool=8):
    """Saliency: Σ over the patch pair of (x_i x'_i')² = (Σ_p x_i²)(Σ_q x'_i'²). Ignores the model by design."""
    x, x2 = as_batch_of_one(model, x), as_batch_of_one(model, x2)
    return pair_matrix(sum_pool(x**2, pool), sum_pool(x2**2, pool))


def curvature(model, x, x2, pool=8, row_chunk=4096):
    """Curvature: Σ over the patch pair of the squared cross-Hessian entries.

    Needs every entry of the d × d' cross Hessian, so it is computed in row chunks; cost O(d·d'·h).
    """
    x, x2 = as_batch_of_one(model, x), as_batch_of_one(model, x2)
    ph, pw = pool_size(pool)
    j1 = jacobian(model, x)  # (h, C, H, W)
    j2 = jacobian(model, x2).flatten(1)  # (h, d')
    h, c, height, width = j1.shape
    out_h, out_w = -(-height // ph), -(-width // pw)
    shape2 = x2.shape[1:]
    result = torch.zeros(out_h, out_w, *sum_pool(x2, pool).shape[1:], dtype=j2.dtype, device=j2.device)
    rows = j1.permute(1, 2, 3, 0).reshape(-1, h)  # (d, h), row i = (channel, y, x)
    ys = torch.arange(height, device=rows.device).repeat_interleave(width).repeat(c) // ph
    xs = torch.arange(width, device=rows.device).repeat(height * c) // pw
    for start in range(0, rows.shape[0], row_chunk):
        block = (rows[start:start + row_chunk] @ j2) ** 2  # (chunk, d')
        pooled = sum_pool(block.reshape(-1, *shape2), pool)  # (chunk, P2h, P2w)
        target = ys[start:start + row_chunk] * out_w + xs[start:start + row_chunk]
        result.view(out_h * out_w, *pooled.shape[1:]).index_add_(0, target, pooled)
    return result
