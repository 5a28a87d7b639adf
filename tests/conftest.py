"""Shared fixtures: small random networks in float64 so the quadratic reference is exact to rounding."""

import sys

import pytest
import torch
from torch import nn

from bilrp_core import SimilarityModel
from bilrp_core.layers import MaxOverAxis, MinOverAxis, MinPool2d, Shift, ShiftedCopies
from corpus_index.storage.store import Store

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(autouse=True)
def _explorer_prefetch_finished():
    """After a test, the explorer's background prefetch (started by AppTest pages in this process) has finished
    its work, so it cannot run a model while a later test counts that model's calls."""
    yield
    prefetch = sys.modules.get("explorer.prefetch")
    if prefetch is not None:
        prefetch.wait_idle(timeout=300)


def small_conv_net(seed=0, bias=True, zb=True, channels=3, proj_dim=6):
    """A conv/ReLU net with max-pool, min-pool, shifts, min over shifted maps and max over alternatives."""
    torch.manual_seed(seed)
    layers = nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1, bias=bias),     # 0: z^B (or γ)
        nn.ReLU(),
        nn.MaxPool2d(2),                                     # 2: 8 -> 4
        nn.Conv2d(4, 5, 3, padding=1, bias=bias),             # 3
        nn.ReLU(),
        Shift(1, -1),                                         # 5
        ShiftedCopies([(0, 0), (0, 1)]),                      # 6: (B, 2, C, H, W)
        MinOverAxis(1),                                       # 7: continuous AND
        nn.Conv2d(5, 4, 3, padding=1, stride=1, bias=bias),   # 8
        nn.ReLU(),
        ShiftedCopies([(0, 0), (1, 0), (0, -1)]),             # 10
        MaxOverAxis(1),                                       # 11: continuous OR
        MinPool2d(2),                                         # 12: 4 -> 2
    )
    bounds = (torch.zeros(1, channels, 1, 1), torch.ones(1, channels, 1, 1))
    with torch.no_grad():
        dim = layers(torch.zeros(1, channels, 8, 8)).numel()
    projection = nn.Linear(dim, proj_dim, bias=False)
    model = SimilarityModel(layers, projection, default_gamma={3: 0.25, 8: 0.1}, zb_index=0 if zb else None,
                            input_bounds=bounds, key=f"small-{seed}")
    if bias:
        for layer in layers:
            if isinstance(layer, nn.Conv2d):
                nn.init.uniform_(layer.bias, -0.05, 0.1)
    return model.double()


@pytest.fixture
def pair():
    """Two 8×8 RGB inputs inside the z^B box [0, 1]."""
    g = torch.Generator().manual_seed(7)
    return (torch.rand(1, 3, 8, 8, generator=g, dtype=torch.float64),
            torch.rand(1, 3, 8, 8, generator=g, dtype=torch.float64))


@pytest.fixture
def store(tmp_path):
    """An empty corpus store under ``tmp_path/root``, closed after the test."""
    store = Store(tmp_path / "root")
    yield store
    store.close()
