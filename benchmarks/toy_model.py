"""The toy similarity task of Sec. 4 of the BiLRP paper, where the true explanation is known.

The hard-coded similarity of two 6-digit sequences d, d' is the number of matches between them. We count *all*
pairs of equal digits, positions anywhere: y*(d, d') = Σ_{i,i'} [d_i = d'_i'], so the ground-truth explanation
is the 6×6 matrix G_ii' = [d_i = d'_i'] and Σ G = y*. (Counting only same-position matches would make the
ground truth diagonal, and the paper's Fig. 4 shows off-diagonal links.)

Each digit is a vector in R^10_+; the vectors share a common component so they are correlated (the paper
does this "to avoid a too simple task"). A sequence is the 6×10 matrix of its digits' vectors, fed to the
network as (1, 6, 10) so that BiLRP's sum pooling with pool=(1, 10) sums each digit's embedding dimensions.
The network is bias-free (two hidden ReLU layers of 100, a 50-dim projection φ) so that Proposition 1 holds:
BiLRP's 6×6 matrix sums to y(x, x') = <φ(x), φ(x')>.

Digits are drawn uniformly from 0-9, as in the paper ("random sequences"): 36 position pairs, each a match
with probability 1/10, give 3.6 matches on average and P(no match) ≈ 0.1, so matches are frequent enough.
"""

import copy
import inspect
import math

import torch
from torch import nn

from bilrp_core import SimilarityModel

SEQUENCE_LENGTH = 6
N_DIGITS = 10
EMBEDDING_DIM = 10


def digit_embeddings(seed=0, noise=0.5):
    """Correlated non-negative digit vectors e_d = relu(base + noise_d), one row per digit.

    Parameters
    ----------
    seed : int
        Seed of the shared base vector and the per-digit noise.
    noise : float
        Standard deviation of the per-digit part; smaller means more correlated vectors.

    Returns
    -------
    Tensor
        (10, 10) float32, every entry ≥ 0.
    """
    generator = torch.Generator().manual_seed(seed)
    base = torch.rand(EMBEDDING_DIM, generator=generator)  # the component every digit shares
    return torch.relu(base + noise * torch.randn(N_DIGITS, EMBEDDING_DIM, generator=generator))


def mean_cosine(embeddings):
    """Mean cosine similarity between the vectors of distinct digits (how correlated the embedding is)."""
    unit = embeddings / embeddings.norm(dim=1, keepdim=True)
    cos = unit @ unit.T
    n = cos.shape[0]
    return float((cos.sum() - cos.diagonal().sum()) / (n * (n - 1)))


def sample_digits(n, generator):
    """n random sequences of 6 digits drawn uniformly from 0-9: (n, 6) int64."""
    return torch.randint(0, N_DIGITS, (n, SEQUENCE_LENGTH), generator=generator)


def encode(digits, embeddings):
    """Digit sequences (n, 6) -> network inputs (n, 1, 6, 10) in R^{6×10}_+."""
    if digits.dim() != 2 or digits.shape[1] != SEQUENCE_LENGTH:
        raise ValueError(f"digits must have shape (n, {SEQUENCE_LENGTH}); got {tuple(digits.shape)}")
    return embeddings[digits].unsqueeze(1)


def match_matrix(digits, digits2):
    """Ground-truth explanation G_ii' = [d_i = d'_i'] for one pair (6,) × (6,), or a batch (n, 6) × (n, 6)."""
    return (digits.unsqueeze(-1) == digits2.unsqueeze(-2)).to(torch.float32)


def match_count(digits, digits2):
    """The hard-coded similarity: the number of pairs of equal digits, positions anywhere."""
    return match_matrix(digits, digits2).sum(dim=(-2, -1))


def build_model(seed=0):
    """The bias-free 60-100-100-50 ReLU feature map φ as a :class:`bilrp_core.SimilarityModel`."""
    torch.manual_seed(seed)
    layers = nn.Sequential(
        nn.Flatten(),
        nn.Linear(SEQUENCE_LENGTH * EMBEDDING_DIM, 100, bias=False),
        nn.ReLU(),
        nn.Linear(100, 100, bias=False),
        nn.ReLU(),
    )
    projection = nn.Linear(100, 50, bias=False)
    # He initialisation keeps the activations' scale through the bias-free ReLU layers; torch's default
    # shrinks it by ~√3 per layer, and y is a product of two 3-layer outputs, so training started near y ≡ 0
    # and stalled.
    for layer in [layers[1], layers[3]]:
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    nn.init.kaiming_normal_(projection.weight, nonlinearity="linear")
    return SimilarityModel(layers, projection, zb_index=None, key=f"toy-digits-seed{seed}")


def predict(model, x, x2):
    """y(x, x') = <φ(x), φ(x')> for a batch of pairs: (n,)."""
    return (model(x) * model(x2)).sum(dim=1)


def pair_mse(model, embeddings, digits, digits2):
    """Mean squared error of the model's similarity against the match count on the given pairs."""
    with torch.no_grad():
        pred = predict(model, encode(digits, embeddings), encode(digits2, embeddings))
    return float(((pred - match_count(digits, digits2)) ** 2).mean())


#: Pairs of the fixed validation set that :func:`train` checks every ``every`` steps; drawn from their own
#: generator, so they are neither training pairs nor the held-out pairs the benchmark reports its MSE on.
VALIDATION_PAIRS = 10000


def validation_set(seed, n=VALIDATION_PAIRS):
    """The digit pairs (n, 6), (n, 6) that :func:`train` selects and rolls back on, for training seed ``seed``."""
    generator = torch.Generator().manual_seed(30_000 + seed)
    return sample_digits(n, generator), sample_digits(n, generator)


def train(model, embeddings, steps=20000, batch_size=256, lr=3e-3, final_lr=1e-5, seed=0, every=1000,
          rollback_factor=5.0, progress=None):
    """Fit y(x, x') to the match count by Adam on fresh random pairs each step (MSE loss, cosine lr decay).

    Every step draws new pairs from the whole input domain, so there is no training set to overfit; the MSE
    reported by the caller is measured on separate held-out pairs. The keyword defaults are the settings the
    shipped ``benchmarks/results/toy_model.pt`` was trained with (:func:`training_defaults`).

    Every ``every`` steps the MSE on a fixed validation set (:func:`validation_set`) is measured. The best
    state so far (weights and Adam's moments) is kept; when the validation MSE exceeds ``rollback_factor``
    times the best (or is not finite), training returns to that state and continues with the learning rate
    halved, and the model returned is the best validated state.

    Why this guard and not gradient-norm clipping: y = <φ(x), φ(x')> is a product of two 3-layer outputs, so
    y is of degree 6 in the weights and a step that is stable at one point can throw training off at
    the next (with the same settings and other rounding, a run on another machine spiked and never recovered).
    Adam divides each step by the running RMS of the gradient, so clipping the gradient norm neither bounds
    the step nor catches this instability, and its threshold would need tuning. A spike always shows in the
    validation MSE, whatever its cause; returning to the last good state and lowering the step size is the
    usual remedy for a step size past the stable limit. When no spike happens nothing changes: the weights are
    those of plain Adam, bit for bit (the validation pass runs without gradients and uses its own generator).

    Parameters
    ----------
    model : SimilarityModel
        From :func:`build_model`; trained in place and left in eval mode.
    embeddings : Tensor
        (10, 10) digit vectors from :func:`digit_embeddings`.
    steps, batch_size, lr, final_lr : int, int, float, float
        Adam steps, pairs per step, and start/end learning rate of the cosine schedule.
    seed : int
        Seed of the pair sampler and of the validation set (training is deterministic for a given seed and
        thread count).
    every : int
        Steps between validation checks, training-loss records and ``progress`` calls.
    rollback_factor : float
        Roll back when the validation MSE exceeds this multiple of the best so far. The default leaves room for
        the ups and downs of a healthy run's validation MSE while the learning rate is high (the shipped run's
        history in ``toy_model.pt`` shows them) and is still far below the jump of a spike.
    progress : callable, optional
        ``progress(done, total, message)`` every ``every`` steps, message holding the running loss.

    Returns
    -------
    dict
        ``history``: list of (step, mean training loss over the last ``every`` steps, validation MSE);
        ``best_step`` and ``validation_mse`` of the state returned; ``rollbacks``: the steps at which training
        went back to the best state.
    """
    if steps < 1 or batch_size < 1 or every < 1:
        raise ValueError(f"steps, batch_size and every must be ≥ 1; got steps={steps}, batch_size={batch_size}, "
                         f"every={every}")
    if rollback_factor <= 1:
        raise ValueError(f"rollback_factor must be > 1; got {rollback_factor}")
    generator = torch.Generator().manual_seed(seed + 1)
    validation = validation_set(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    best = {"step": 0, "mse": pair_mse(model, embeddings, *validation), "model": copy.deepcopy(model.state_dict()),
            "optimizer": copy.deepcopy(optimizer.state_dict())}
    history, rollbacks, running, lr_scale = [], [], 0.0, 1.0
    model.train()
    for step in range(1, steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = lr_scale * (final_lr + 0.5 * (lr - final_lr) * (1 + math.cos(math.pi * (step - 1) / steps)))
        digits, digits2 = sample_digits(batch_size, generator), sample_digits(batch_size, generator)
        pred = predict(model, encode(digits, embeddings), encode(digits2, embeddings))
        loss = ((pred - match_count(digits, digits2)) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running += loss.item()
        if step % every == 0 or step == steps:
            n = every if step % every == 0 else step % every
            mse = pair_mse(model, embeddings, *validation)
            history.append((step, running / n, mse))
            message = f"train loss {running / n:.4g}, validation MSE {mse:.4g}"
            if mse < best["mse"]:
                best = {"step": step, "mse": mse, "model": copy.deepcopy(model.state_dict()),
                        "optimizer": copy.deepcopy(optimizer.state_dict())}
            elif not math.isfinite(mse) or mse > rollback_factor * best["mse"]:
                model.load_state_dict(best["model"])
                optimizer.load_state_dict(copy.deepcopy(best["optimizer"]))
                lr_scale /= 2
                rollbacks.append(step)
                message += f" > {rollback_factor:g} × best {best['mse']:.4g}: back to step {best['step']}, lr halved"
            if progress is not None:
                progress(step, steps, message)
            running = 0.0
    if best["step"] != steps:
        model.load_state_dict(best["model"])
    model.eval()
    return {"history": history, "best_step": best["step"], "validation_mse": best["mse"], "rollbacks": rollbacks}


def training_defaults():
    """:func:`train`'s settings with their defaults, the one place they are stated.

    The benchmark's flags read them, and the shipped checkpoint records the settings it was trained with, which
    a test holds equal to these.
    """
    return {name: p.default for name, p in inspect.signature(train).parameters.items()
            if p.default is not inspect.Parameter.empty and name != "progress"}


def cosine(explanation, truth):
    """Cosine similarity of two explanations, flattened; 0 when either is all zeros."""
    a, b = explanation.flatten().double(), truth.flatten().double()
    norm = a.norm() * b.norm()
    return float(a @ b / norm) if norm > 0 else 0.0


def average_cosine_similarity(explanations, truths):
    """ACS: the mean cosine similarity between each explanation and its ground truth (1.0 = perfect)."""
    if len(explanations) != len(truths) or not explanations:
        raise ValueError(f"need as many explanations as ground truths, at least one; got {len(explanations)} "
                         f"and {len(truths)}")
    return sum(cosine(e, t) for e, t in zip(explanations, truths, strict=True)) / len(explanations)
