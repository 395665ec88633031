"""Linear combinations of a basis, ``mean + basis @ coefficients``, with the C++ kernel of face3d.mesh._mesh_core.

Every element is summed in one fixed order in float32 (``acc = 0``, ``acc = acc + basis[i, k] * c[k]`` for
k = 0, 1, ..., then ``mean[i] + acc``: the terms before the large mean, for accuracy), so a combination's bits
never depend on how many are computed together, on its place in the batch or on the CPU's instruction set (a BLAS
matrix product picks its kernels by all three). The basis is stored in tiles of ``TILE`` rows (``tile_basis``),
so that the kernel reads memory in order: one combination streams the basis once, a batch reuses each tile from
cache. face3d.mesh_numpy.linear is the numpy twin.
"""
import numpy as np

from face3d.mesh import _mesh_core

__all__ = ["TILE", "tile_basis", "combine_basis"]

TILE = 32


def tile_basis(mean, *bases) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's layout of a basis given as one or more blocks of columns (no joined copy is made).

    Args:
        mean: (m,) values. bases: (m, k_b) columns each; the basis is their columns side by side, k = sum of k_b.
    Returns:
        mean (p,) float32 and tiles (p / TILE, k, TILE) float32 with ``tiles[t, k, r] = basis[t * TILE + r, k]``,
        p = m rounded up to a multiple of TILE, rows beyond m zero.
    """
    mean = np.asarray(mean, dtype=np.float32).reshape(-1)
    m, k = mean.size, sum(np.shape(b)[1] for b in bases)
    padded = -(-m // TILE) * TILE
    mean_p = np.zeros(padded, dtype=np.float32)
    mean_p[:m] = mean
    tiles = np.zeros((padded // TILE, k, TILE), dtype=np.float32)
    rows = tiles.transpose(0, 2, 1)  # a view: (p / TILE, TILE, k)
    full, start = m // TILE, 0
    for b in bases:
        b = np.asarray(b)
        rows[:full, :, start:start + b.shape[1]] = b[:full * TILE].reshape(full, TILE, b.shape[1])
        if m > full * TILE:  # the last, partial tile
            rows[full, :m - full * TILE, start:start + b.shape[1]] = b[full * TILE:]
        start += b.shape[1]
    return mean_p, tiles


def combine_basis(mean, tiles, coefficients) -> np.ndarray:
    """``mean + basis @ c`` for each row c of ``coefficients`` (module docstring for the summation order).

    Args:
        mean: (p,) float32 and tiles: (p / TILE, k, TILE) float32, as ``tile_basis`` returns them.
        coefficients: (batch, k) values (converted to float32).
    Returns:
        (batch, p) float32; row j holds combination j (the first m entries are the basis' rows).
    """
    coef = np.require(coefficients, np.float32, ["C", "A"])  # the kernel takes aligned float32 only
    if coef.ndim != 2 or coef.shape[1] != tiles.shape[1]:
        raise ValueError(f"coefficients must have shape (batch, {tiles.shape[1]}), got {coef.shape}")
    out = np.empty((coef.shape[0], mean.shape[0]), dtype=np.float32)
    status = _mesh_core.combine_basis(mean, tiles, coef, out)
    if status != 0:
        raise RuntimeError(f"combine_basis kernel failed with status {status}")
    return out
