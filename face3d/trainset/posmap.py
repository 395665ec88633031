"""UV-space rasterization of a morphable model, computed once, and position maps by interpolation.

A model's UV layout never changes, so which triangle covers each UV pixel, with which barycentric weights, is
computed once (``rasterize_uv``); every position map is then one sparse matrix product
(``UVRasterization.interpolate``), equal to a fresh ``face3d.mesh.render.render_colors`` of the vertex positions in
UV space. ``keypoints_from_map`` reads the keypoints a map encodes, for the generator, training, evaluation and
inference alike. UV pixels follow PRNet's ``process_uv`` (``uv_to_pixels``): centres at integer coordinates, rows
growing downwards.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from face3d.mesh import _checks
from face3d.mesh.render import rasterize_triangles
from face3d.utils.npyfile import load_npy

__all__ = ["UVRasterization", "uv_to_pixels", "uv_keypoint_pixels", "rasterize_uv", "keypoints_from_map",
           "PLAUSIBLE_RANGE", "posmap_value_problem", "load_posmap"]

# Crop-space values of a position map, in units of the crop side R: the face lies in the crop (x, y in [0, R)) and
# is about as deep as it is wide, so even a rotated, shifted copy stays far inside [-R, 2R]; a value beyond it is a
# broken file or a broken fit, not a face.
PLAUSIBLE_RANGE = (-1.0, 2.0)


def uv_to_pixels(uv_coords, resolution: int) -> np.ndarray:
    """UV coordinates to UV-image pixel coordinates (PRNet's ``process_uv``).

    Args:
        uv_coords: (n, 2) u, v in [0, 1] (v up).
        resolution: side r of the square UV image in pixels.
    Returns:
        (n, 3) float32: x = u*(r-1), y = (r-1) - v*(r-1) (rows down), z = 0.
    """
    uv = np.asarray(uv_coords, dtype=np.float64)
    if uv.ndim != 2 or uv.shape[1] != 2:
        raise ValueError(f"uv_coords must have shape (n, 2), got {uv.shape}")
    _checks.require_finite(uv, "uv_coords")
    r1 = float(resolution - 1)
    out = np.zeros((uv.shape[0], 3), dtype=np.float32)
    out[:, 0] = uv[:, 0] * r1
    out[:, 1] = r1 - uv[:, 1] * r1
    return out


def uv_keypoint_pixels(uv_coords, kpt_ind, resolution: int, covered=None) -> np.ndarray:
    """UV pixel of each keypoint vertex, PRNet's ``uv_kpt_ind`` layout.

    Args:
        uv_coords: (n, 2) u, v in [0, 1]. kpt_ind: (k,) vertex indices. resolution: r.
        covered: optional (r, r) bool mask of the UV pixels the model's triangles cover. A keypoint whose
            rounded pixel is not covered (a vertex on the border of the mesh, as the jaw of a model without a
            neck) then takes the nearest covered pixel, so the position map is never read in the empty
            background there; keypoints with covered pixels are unaffected.
    Returns:
        (2, k) int32: row 0 x = round(u*(r-1)), row 1 y = round((r-1) - v*(r-1)), rounding halves away
        from zero like MATLAB's ``round``; a map is read at ``map[y, x]``.
    """
    pix = uv_to_pixels(np.asarray(uv_coords)[np.asarray(kpt_ind)], resolution).astype(np.float64)
    xy = np.clip(np.floor(pix[:, :2] + 0.5).astype(np.int32), 0, resolution - 1)
    if covered is not None:
        covered = np.asarray(covered, dtype=bool)
        outside = ~covered[xy[:, 1], xy[:, 0]]
        if np.any(outside) and covered.any():
            cy, cx = np.nonzero(covered)
            for i in np.flatnonzero(outside):
                nearest = np.argmin((cx - pix[i, 0]) ** 2 + (cy - pix[i, 1]) ** 2)
                xy[i] = cx[nearest], cy[nearest]
    return xy.T.copy()


@dataclass(frozen=True)
class UVRasterization:
    """Coverage of the UV image by a model's triangles, for interpolating per-vertex attributes.

    Attributes:
        resolution: side r of the UV image.
        pixel_index: (p,) int64 row-major indices (y*r + x) of the covered UV pixels, increasing.
        triangle_index: (p,) int32 triangle covering each of those pixels.
        vertex_ids: (p, 3) int32 the triangle's vertices.
        weights: (p, 3) float32 barycentric weights (sum 1) of those vertices at the pixel centre.
        matrix: (r*r, n) float32 scipy.sparse CSR matrix holding ``weights`` at ``(pixel, vertex_ids)``, rows of
            uncovered pixels empty: ``matrix @ attributes`` is the rendered UV image, row-major.
    """

    resolution: int
    pixel_index: np.ndarray
    triangle_index: np.ndarray
    vertex_ids: np.ndarray
    weights: np.ndarray
    matrix: sparse.csr_matrix = field(repr=False)

    @property
    def covered(self) -> np.ndarray:
        """(r, r) bool mask of the UV pixels covered by a triangle."""
        mask = np.zeros(self.resolution * self.resolution, dtype=bool)
        mask[self.pixel_index] = True
        return mask.reshape(self.resolution, self.resolution)

    def interpolate(self, attributes) -> np.ndarray:
        """Per-vertex attributes interpolated at every UV pixel.

        Args:
            attributes: (n, c) per-vertex values (float).
        Returns:
            (r*r, c) float32, row-major pixels: ``sum_k weights[:, k] * attributes[vertex_ids[:, k]]`` at covered
            pixels, 0 elsewhere.
        """
        return np.asarray(self.matrix @ np.asarray(attributes, dtype=np.float32))

    def render(self, attributes, background: float = 0.0) -> np.ndarray:
        """UV image of per-vertex attributes, what ``render_colors(uv_to_pixels(uv, r), triangles, attributes,
        r, r, c)`` returns (BG filled with ``background``): (r, r, c) float32."""
        values = self.interpolate(attributes)
        r = self.resolution
        if background != 0:
            values[~self.covered.reshape(-1)] = background
        return values.reshape(r, r, values.shape[1])


def rasterize_uv(uv_coords, triangles, resolution: int) -> UVRasterization:
    """Rasterize a model's UV layout once with ``face3d.mesh.render.rasterize_triangles``.

    Args:
        uv_coords: (n, 2) u, v in [0, 1]. triangles: (ntri, 3) vertex indices (PRNet uses tri + tri_mouth).
        resolution: side r of the UV image.
    Returns:
        UVRasterization of the covered pixels (all UV depths are 0, so where triangles overlap the
        rasterizer's own tie rule decides, exactly as in ``render_colors``).
    """
    r = _checks.as_size(resolution, "resolution")
    if r < 2:
        raise ValueError(f"resolution must be at least 2, got {r}")
    pix = uv_to_pixels(uv_coords, r)
    tri = _checks.as_indices(triangles, pix.shape[0], "triangles", "uv_coords")
    _, triangle_buffer, barycentric = rasterize_triangles(pix, tri, r, r)
    triangle_buffer = np.asarray(triangle_buffer).reshape(-1)
    index = np.flatnonzero(triangle_buffer >= 0)
    tri_index = triangle_buffer[index].astype(np.int32)
    weights = np.ascontiguousarray(np.asarray(barycentric, dtype=np.float32).reshape(-1, 3)[index])
    vertex_ids = tri[tri_index]
    row_start = np.zeros(r * r + 1, dtype=np.int64)
    row_start[index + 1] = 3
    matrix = sparse.csr_matrix((weights.reshape(-1), vertex_ids.reshape(-1), np.cumsum(row_start)),
                               shape=(r * r, pix.shape[0]))
    return UVRasterization(resolution=r, pixel_index=index.astype(np.int64), triangle_index=tri_index,
                           vertex_ids=vertex_ids, weights=weights, matrix=matrix)


def keypoints_from_map(posmap, uv_kpt_ind) -> np.ndarray:
    """The keypoints one or many position maps encode: ``posmap[..., y_k, x_k, :]``, read at PRNet's ``uv_kpt_ind``.

    Args:
        posmap: (H, W, 3) or (N, H, W, 3) position map(s), any dtype (crop- or image-space x, y, z in pixels).
        uv_kpt_ind: (2, K) keypoint UV pixels, row 0 = x (column), row 1 = y (row).
    Returns:
        (K, 3) or (N, K, 3) float64.
    Raises:
        ValueError: a map or ``uv_kpt_ind`` of the wrong shape, or a keypoint outside the map.
    """
    posmap = np.asarray(posmap)
    if posmap.ndim not in (3, 4) or posmap.shape[-1] != 3:
        raise ValueError(f"posmap must have shape (H, W, 3) or (N, H, W, 3), got {posmap.shape}")
    kpt = np.asarray(uv_kpt_ind)
    if kpt.ndim != 2 or kpt.shape[0] != 2:
        raise ValueError(f"uv_kpt_ind must have shape (2, K) (row 0 x, row 1 y), got {kpt.shape}")
    kpt = np.rint(kpt).astype(np.int64)
    height, width = posmap.shape[-3:-1]
    if kpt.min() < 0 or kpt[0].max() >= width or kpt[1].max() >= height:
        raise ValueError(f"uv_kpt_ind indices must lie inside the {height}x{width} map")
    return posmap[..., kpt[1], kpt[0], :].astype(np.float64)


def posmap_value_problem(posmap, resolution: int):
    """What is wrong with a crop-space position map's values, or None when they are usable.

    Args:
        posmap: (R, R, 3) array (any float dtype), crop-space x, y, z in pixels.
        resolution: R, the crop side in pixels.
    Returns:
        None, or a one-line problem: non-finite values (NaN / inf, with their count), or values outside
        ``PLAUSIBLE_RANGE`` x R (with the extreme value).
    """
    values = np.asarray(posmap)
    finite = np.isfinite(values)
    if not finite.all():
        return f"{values.size - int(finite.sum())} non-finite value(s) (NaN or inf) in the position map"
    low, high = (bound * resolution for bound in PLAUSIBLE_RANGE)
    lowest, highest = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    if lowest < low or highest > high:
        extreme = lowest if lowest < low else highest
        return (f"position-map value {extreme:g} outside the plausible range [{low:g}, {high:g}] of a "
                f"{resolution} x {resolution} crop")
    return None


def load_posmap(path) -> np.ndarray:
    """A position map ``.npy`` file as stored (``generate`` writes (R, R, 3) float16 or float32), never unpickled.

    Raises:
        as ``face3d.utils.npyfile.load_npy``: FileNotFoundError; InputFileError (a ValueError) naming the file,
            "not a .npy position map" and the reason (not a .npy file, empty, damaged header, shorter than its
            header declares, pickled).
    """
    return load_npy(path, "position map")
