"""iBUG-68 keypoint vertices of the default model, picked from the design targets."""
import numpy as np

from . import design as d


def _nearest(vertices, candidates, xy):
    """Index (into vertices) of the candidate vertex nearest to xy in the frontal (x, y) plane."""
    dist = np.hypot(vertices[candidates, 0] - xy[0], vertices[candidates, 1] - xy[1])
    return int(candidates[np.argmin(dist)])


def _mirror_xy(points):
    return [(-x, y) for x, y in points]


def keypoint_indices(surface):
    """(68,) int32 vertex indices of the iBUG-68 landmarks of ``surface`` (a ``Surface``).

    Jaw 0..16 lie on the mask's side edge (the frontal silhouette; 8 is the chin row's midline
    vertex; the margin band beyond that edge makes them interior vertices), brows 17..26, nose
    27..35, eyes 36..47, outer lips 48..59, inner lips 60..67 (60 / 64 are the slit corners,
    61..63 on the upper and 65..67 on the lower seam polyline).
    """
    v = surface.vertices
    rows = surface.row
    n_rows = int(rows.max()) + 1
    ys = np.array([v[rows == j, 1].mean() for j in range(n_rows)])
    jaw_left, jaw_right = [], []
    for y in d.JAW_Y:
        in_row = np.flatnonzero(rows == int(np.argmin(np.abs(ys - y))))
        jaw_left.append(int(in_row[np.argmin(v[in_row, 0])]))
        jaw_right.append(int(in_row[np.argmax(v[in_row, 0])]))
    bottom = np.flatnonzero(rows == 0)
    chin = int(bottom[np.argmin(np.abs(v[bottom, 0]))])
    jaw = jaw_left + [chin] + jaw_right[::-1]

    lower_only = np.zeros(len(v), dtype=bool)
    lower_only[surface.seam_lower[1:-1]] = True
    front = np.flatnonzero(~lower_only & (rows >= 0))  # not the lower-lip copies nor the margin
    brows = [_nearest(v, front, p) for p in d.BROW_XY]
    brows += [_nearest(v, front, p) for p in _mirror_xy(d.BROW_XY)[::-1]]
    nose = [_nearest(v, front, p) for p in d.NOSE_XY]
    eye_l = [_nearest(v, front, p) for p in d.EYE_XY]
    # Right eye in iBUG order: 42 inner corner, 43/44 upper lid, 45 outer corner, 46/47 lower lid.
    mirrored = _mirror_xy(d.EYE_XY)
    eye_r = [_nearest(v, front, mirrored[i]) for i in (3, 2, 1, 0, 5, 4)]
    outer = [_nearest(v, front, p) for p in d.OUTER_LIP_XY]

    up = surface.seam_upper
    lo = surface.seam_lower
    y_seam = v[up, 1].mean()
    inner_up = [_nearest(v, up[1:-1], (x, y_seam)) for x in d.INNER_LIP_X]
    inner_lo = [_nearest(v, lo[1:-1], (x, y_seam)) for x in d.INNER_LIP_X[::-1]]
    inner = [int(up[0])] + inner_up + [int(up[-1])] + inner_lo
    kpt = np.asarray(jaw + brows + nose + eye_l + eye_r + outer + inner, dtype=np.int32)
    if kpt.size != 68:
        raise ValueError(f"design: expected 68 keypoints, built {kpt.size}")
    return kpt
