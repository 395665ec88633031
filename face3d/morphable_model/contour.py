"""Jaw landmarks of a turned face on its silhouette (300W-LP's landmark marching).

In 300W-LP (3DDFA), when a face is turned more than 10 degrees, the jaw landmarks of the side turned away from the
camera sit on the visible outline instead of on their frontal vertices: each takes, among the candidate vertices of
its contour line (BFM_info's ``parallel``), the one outermost in the image. The synthetic set's renderer and the
landmark fitter share this one rule, so fitted parameters reproduce rendered landmarks.
"""
import numpy as np

from face3d.mesh.transform import matrix2angle_3ddfa

__all__ = ["JAW_RIGHT", "JAW_LEFT", "MARCHING", "MIN_YAW_DEG", "line_table", "yaw_3ddfa", "silhouette_vertices",
           "landmark_vertices"]

JAW_RIGHT = np.arange(0, 8)   # iBUG 0-7: the subject's right jaw (model -x)
JAW_LEFT = np.arange(9, 17)   # iBUG 9-16: the subject's left jaw (model +x); 8, the chin, never marches
MARCHING = np.concatenate([JAW_RIGHT, JAW_LEFT])
MIN_YAW_DEG = 10.0


def line_table(contour_lines, vertex_ids=None):
    """The candidate lines of the 16 marching landmarks as one padded table.

    Args:
        contour_lines: 17 int arrays of vertex indices, one per iBUG jaw landmark 0..16, none empty.
        vertex_ids: optional sorted (V,) vertex indices holding every candidate: the table then gives positions
            into it (``np.searchsorted``) instead of vertex indices.
    Returns:
        (16, W) int64, row r = the candidates of landmark ``MARCHING[r]``, a short row padded by repeating its
        first candidate (which leaves every maximum unchanged).
    """
    rows = [np.asarray(contour_lines[p], dtype=np.int64).reshape(-1) for p in MARCHING]
    for p, row in zip(MARCHING, rows):
        if row.size == 0:
            raise ValueError(f"contour line {p} is empty")
    if vertex_ids is not None:
        rows = [np.searchsorted(vertex_ids, row) for row in rows]
    width = max(row.size for row in rows)
    return np.stack([np.concatenate([row, np.full(width - row.size, row[0])]) for row in rows])


def yaw_3ddfa(R):
    """(N,) float64 300W-LP yaw in radians (``Pose_Para[1]``) of N rotations R (N, 3, 3), applied as ``R @ X``."""
    return np.array([matrix2angle_3ddfa(r)[1] for r in np.asarray(R, dtype=np.float64)], dtype=np.float64)


def silhouette_vertices(camera, table, frontal, yaw):
    """Which vertex each marching jaw landmark of N faces takes.

    Far side: the jaw half whose frontal vertices lie further from the viewer (smaller mean camera z). There, when
    ``|yaw| > MIN_YAW_DEG``, landmark ``MARCHING[r]`` takes the candidate of row r with the smallest camera x on
    the right jaw (0-7) and the largest on the left jaw (9-16); every other landmark keeps its frontal vertex.

    Args:
        camera: (N, V, 3) float vertices in the camera frame (``X @ R.T``: x right, y up, z towards the viewer).
        table: (16, W) int positions into V, from :func:`line_table`.
        frontal: (16,) int positions into V of the landmarks' frontal vertices (``kpt_ind[MARCHING]``).
        yaw: (N,) float 300W-LP yaw in radians.
    Returns:
        (N, 16) int64 positions into V.
    """
    camera = np.asarray(camera)
    frontal = np.asarray(frontal, dtype=np.int64)
    outward = np.where(MARCHING >= 9, 1.0, -1.0)
    per_line = camera[:, table, 0] * outward[None, :, None]                         # (N, 16, W)
    best = table[np.arange(len(MARCHING))[None, :], np.argmax(per_line, axis=2)]   # (N, 16)
    depth = camera[:, frontal, 2]
    right_jaw = MARCHING < 8
    left_is_far = depth[:, ~right_jaw].mean(axis=1) < depth[:, right_jaw].mean(axis=1)
    far = np.where(left_is_far[:, None], ~right_jaw[None], right_jaw[None])
    far &= (np.abs(np.asarray(yaw, dtype=np.float64)) > np.deg2rad(MIN_YAW_DEG))[:, None]
    return np.where(far, best, frontal[None]).astype(np.int64)


def landmark_vertices(vertices, R, kpt_ind, contour_lines):
    """The 68 landmark vertices of one face as 300W-LP places its landmarks.

    Args:
        vertices: (nver, 3) model-space vertices; R: (3, 3) rotation applied as ``vertices @ R.T``.
        kpt_ind: (68,) frontal landmark vertex indices; contour_lines: the 17 jaw candidate lines.
    Returns:
        (68,) int64 vertex indices: ``kpt_ind`` with the marching jaw landmarks of :func:`silhouette_vertices`.
    """
    R = np.asarray(R, dtype=np.float64)
    kpt = np.array(kpt_ind, dtype=np.int64)
    camera = (np.asarray(vertices, dtype=np.float64) @ R.T)[None]
    kpt[MARCHING] = silhouette_vertices(camera, line_table(contour_lines), kpt[MARCHING], yaw_3ddfa(R[None]))[0]
    return kpt
