"""Numpy twin of face3d.mesh.linear: the same layout and the same float32 summation order, bit for bit."""
import numpy as np

from face3d.mesh.linear import TILE, tile_basis

__all__ = ["TILE", "tile_basis", "combine_basis"]


def combine_basis(mean, tiles, coefficients) -> np.ndarray:
    """``mean + basis @ c`` per row c of ``coefficients``, term by term in float32 (face3d.mesh.linear)."""
    coef = np.asarray(coefficients, dtype=np.float32)
    ntiles, ncols, tile = tiles.shape
    basis = tiles.transpose(0, 2, 1).reshape(ntiles * tile, ncols)  # explicit shape: there may be no column
    acc = np.zeros((coef.shape[0], basis.shape[0]), dtype=np.float32)
    for k in range(basis.shape[1]):
        acc = acc + basis[None, :, k] * coef[:, k:k + 1]
    return mean[None, :] + acc
