"""Sparse BiLRP pairs: Σ_m R_m(x) ⊗ R_m(x') kept sparse when the factors are.

The bigram network's factors are over 99 % zeros (a bigram's relevance lies where it fires), yet the dense pair
matrix of two real-size table pages holds (H1·W1)·(H2·W2) values — about 2 GB in float32 at pool 8 — of which
a tiny share is not zero. Here the factors R(x) are a CSR matrix h × (H·W) (:class:`SparseFactors`) and the pair
is the sparse product R1ᵀ·R2 (:class:`SparsePair`): only pairs of patches that share a dimension are stored. Every
question the explorer asks of a pair — the strongest pairs, each image's relevance map, Σ — is answered from the
stored entries; ``numpy.asarray(pair)`` still gives the dense 4-d array when a caller asks for it.

numpy and scipy only (no torch), so :mod:`bilrp_core.render` can use it cheaply.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

#: A sparse pair is worth it when its entries (at most Σ_m nnz(R_m(x))·nnz(R_m(x'))) are fewer than this share of
#: the dense matrix: a stored entry costs three times a dense one (value, row and column index).
SPARSE_PAIR_SHARE = 0.2


class SparseFactors:
    """Factors R(x) (h, H, W) held as a CSR matrix h × (H·W), float32.

    Parameters
    ----------
    matrix : scipy.sparse matrix or array (h, H·W)
    grid : (int, int)
        (H, W), the patch grid.
    """

    def __init__(self, matrix, grid):
        self.grid = (int(grid[0]), int(grid[1]))
        self.matrix = sp.csr_matrix(matrix, dtype=np.float32)
        if self.matrix.shape[1] != self.grid[0] * self.grid[1]:
            raise ValueError(f"factors have {self.matrix.shape[1]} cells per dimension, the grid {self.grid} "
                             f"has {self.grid[0] * self.grid[1]}")
        self.matrix.eliminate_zeros()
        self.matrix.sort_indices()

    @classmethod
    def from_dense(cls, factors) -> SparseFactors:
        """The sparse form of dense factors (h, H, W) (numpy array or torch tensor)."""
        if hasattr(factors, "detach"):
            factors = factors.detach().cpu().numpy()
        factors = np.asarray(factors, dtype=np.float32)
        if factors.ndim != 3:
            raise ValueError(f"factors must have 3 dimensions (h, H, W); got shape {factors.shape}")
        return cls(sp.csr_matrix(factors.reshape(factors.shape[0], -1)), factors.shape[1:])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(h, H, W), as the dense factors."""
        return (self.matrix.shape[0], *self.grid)

    @property
    def nnz(self) -> int:
        """Number of stored (non-zero) entries."""
        return int(self.matrix.nnz)

    def toarray(self) -> np.ndarray:
        """The dense factors (h, H, W) float32."""
        return self.matrix.toarray().reshape(self.shape)


def as_sparse_factors(factors) -> SparseFactors:
    """``factors`` as :class:`SparseFactors` (already sparse, or dense numpy/torch (h, H, W))."""
    return factors if isinstance(factors, SparseFactors) else SparseFactors.from_dense(factors)


def sparse_pair_pays(factors1, factors2, share: float = SPARSE_PAIR_SHARE) -> bool:
    """Whether the pair of these factors (sparse or dense) is cheaper kept sparse than dense.

    The bound Σ_m nnz(R_m(x))·nnz(R_m(x')) on the pair's entries is compared with ``share`` of the dense size;
    dense factors are counted without converting them (VGG's factors have no zeros and stay dense).
    """
    counts = []
    for factors in (factors1, factors2):
        if isinstance(factors, SparseFactors):
            counts.append(np.diff(factors.matrix.indptr))
        else:
            array = factors.detach().cpu().numpy() if hasattr(factors, "detach") else np.asarray(factors)
            counts.append(np.count_nonzero(array.reshape(array.shape[0], -1), axis=1))
    cells = [int(np.prod(f.shape[1:])) for f in (factors1, factors2)]
    bound = float(np.dot(counts[0].astype(np.float64), counts[1].astype(np.float64)))
    return bound < share * cells[0] * cells[1]


class SparsePair:
    """A BiLRP pair (H1, W1, H2, W2) as the sparse matrix R1ᵀ·R2 of shape (H1·W1) × (H2·W2).

    Reads like the dense pair where it is cheap: ``shape``, ``ndim``, ``sum()``, ``pair[r1, c1, r2, c2]``,
    :meth:`marginal` and :meth:`entries` (what :mod:`bilrp_core.render` draws and tabulates); ``np.asarray(pair)``
    or :meth:`toarray` builds the dense array (large for real pages).

    Parameters
    ----------
    factors1, factors2 : SparseFactors or dense (h, H, W)
        The two images' factors; they must agree on h.
    """

    ndim = 4
    dtype = np.dtype(np.float32)

    def __init__(self, factors1, factors2):
        first, second = as_sparse_factors(factors1), as_sparse_factors(factors2)
        if first.shape[0] != second.shape[0]:
            raise ValueError(f"factors disagree on h: {first.shape[0]} vs {second.shape[0]} "
                             "(were they computed with the same model?)")
        self.shape = (*first.grid, *second.grid)
        matrix = (first.matrix.T.tocsr() @ second.matrix).tocsr()
        matrix.eliminate_zeros()
        matrix.sort_indices()
        if not np.all(np.isfinite(matrix.data)):
            raise ValueError("the pair contains NaN or infinite values")
        self.matrix = matrix

    @property
    def size(self) -> int:
        """Number of patch pairs (of the dense matrix)."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nnz(self) -> int:
        """Number of stored (non-zero) pairs."""
        return int(self.matrix.nnz)

    @property
    def nbytes(self) -> int:
        """Bytes held by the sparse matrix (values and indices)."""
        return int(self.matrix.data.nbytes + self.matrix.indices.nbytes + self.matrix.indptr.nbytes)

    def sum(self, axis=None, dtype=None) -> float:
        """Σ of all pair relevances (the explained similarity), accumulated in float64 (``dtype`` is ignored)."""
        if axis is not None:
            raise ValueError("SparsePair.sum sums every pair; use marginal(axis) for one image's map")
        return float(self.matrix.data.sum(dtype=np.float64))

    def marginal(self, axis: int = 0) -> np.ndarray:
        """Relevance map of image ``axis`` (0: (H1, W1), 1: (H2, W2)), summed over the other image's patches."""
        if axis not in (0, 1):
            raise ValueError(f"axis must be 0 (first image) or 1 (second image), got {axis!r}")
        sums = np.asarray(self.matrix.sum(axis=1 - axis, dtype=np.float64)).reshape(-1)
        return sums.reshape(self.shape[:2] if axis == 0 else self.shape[2:])

    def entries(self) -> tuple[np.ndarray, np.ndarray]:
        """(flat indices into the dense (H1, W1, H2, W2) array, values) of every stored pair, ascending."""
        rows = np.repeat(np.arange(self.matrix.shape[0], dtype=np.int64), np.diff(self.matrix.indptr))
        return rows * self.matrix.shape[1] + self.matrix.indices, self.matrix.data

    def __getitem__(self, index):
        """One pair's relevance, ``pair[r1, c1, r2, c2]`` (whole integers only; the rest needs the dense array)."""
        if not (isinstance(index, tuple) and len(index) == 4 and all(np.ndim(i) == 0 for i in index)):
            raise TypeError("a SparsePair is indexed by one (row1, col1, row2, col2); use toarray() for slices")
        r1, c1, r2, c2 = (int(i) for i in index)
        return self.dtype.type(self.matrix[r1 * self.shape[1] + c1, r2 * self.shape[3] + c2])

    def toarray(self) -> np.ndarray:
        """The dense pair matrix (H1, W1, H2, W2) float32."""
        return self.matrix.toarray().reshape(self.shape)

    def __array__(self, dtype=None, copy=None):
        dense = self.toarray()
        return dense if dtype is None else dense.astype(dtype)

    def __repr__(self) -> str:
        return f"SparsePair(shape={self.shape}, nnz={self.nnz})"
