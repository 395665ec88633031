"""Rotations, similarity transforms, cameras and projections of mesh vertices.

Vertices are (n, 3) arrays, one point per row; every function returns new arrays. Two Euler-angle conventions,
because the field uses both, each ``[pitch, yaw, roll]`` about x, y, z: face3d's (``angle2matrix``, degrees) and
3DDFA's / 300W-LP's (``angle2matrix_3ddfa``, radians, as in ``Pose_Para[0:3]``), with
``angle2matrix_3ddfa(a) == angle2matrix(rad2deg(a)).T``. Plain numpy (there is no C++ kernel for transforms);
``face3d.mesh_numpy.transform`` re-exports this module.
"""
import numpy as np

from face3d.mesh._checks import as_real, require_finite

__all__ = [
    "angle2matrix", "angle2matrix_3ddfa", "rotate", "similarity_transform", "lookat_camera",
    "orthographic_project", "perspective_project", "to_image", "estimate_affine_matrix_3d22d",
    "P2sRt", "matrix2angle", "matrix2angle_3ddfa",
]


def _angles(angles, name="angles"):
    a = np.asarray(angles, dtype=np.float64).reshape(-1)
    if a.shape != (3,):
        raise ValueError(f"{name} must hold 3 values [pitch, yaw, roll], got shape {np.shape(angles)}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite, got {a.tolist()}")
    return a


def _points(vertices, name="vertices", dim=3):
    v = np.asarray(vertices)
    if v.ndim != 2 or v.shape[1] != dim:
        raise ValueError(f"{name} must have shape (n, {dim}), got {v.shape}")
    if not np.issubdtype(v.dtype, np.floating):
        v = v.astype(np.float64)
    return v


def _elementary_rotations(x, y, z):
    """Right-handed rotations about x, y and z by angles in radians, as (3, 3) float64 arrays."""
    cx, sx, cy, sy, cz, sz = np.cos(x), np.sin(x), np.cos(y), np.sin(y), np.cos(z), np.sin(z)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rx, ry, rz


def angle2matrix(angles):
    """Rotation matrix from face3d Euler angles.

    Args:
        angles: [pitch, yaw, roll] in degrees; pitch about x, yaw about y, roll about z.
    Returns:
        R: (3, 3) float64, ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` (right-handed, applied as ``v @ R.T``).
    """
    rx, ry, rz = _elementary_rotations(*np.deg2rad(_angles(angles)))
    return rz @ ry @ rx


def angle2matrix_3ddfa(angles):
    """Rotation matrix from 300W-LP / 3DDFA pose angles.

    Args:
        angles: [pitch, yaw, roll] in radians, i.e. ``Pose_Para[0:3]`` of a 300W-LP ``.mat``.
    Returns:
        R: (3, 3) float64. 3DDFA writes ``R = Rx @ Ry @ Rz`` with
        ``Rx = [[1,0,0],[0,cos,sin],[0,-sin,cos]]`` and likewise transposed Ry, Rz, which equals
        ``angle2matrix(np.rad2deg(angles)).T``.
    """
    rx, ry, rz = _elementary_rotations(*_angles(angles))
    return rx.T @ ry.T @ rz.T


def rotate(vertices, angles):
    """Rotate vertices about the origin by face3d Euler angles (degrees): ``vertices @ angle2matrix(angles).T``.

    Args:
        vertices: (n, 3). angles: [pitch, yaw, roll] in degrees.
    Returns:
        (n, 3) rotated vertices, dtype of ``vertices`` (float64 for integer input).
    """
    v = _points(vertices)
    return (v @ angle2matrix(angles).T).astype(v.dtype, copy=False)


def as_scale(s, name="s") -> float:
    """A scale given as a number or as any one-element array ((1,), or (1, 1) as scipy.io.loadmat gives it),
    as a Python float; ValueError naming ``name`` for anything else."""
    a = np.asarray(s)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must be a number or a one-element array, got {s!r}")
    if a.size != 1:
        raise ValueError(f"{name} must be a number or a one-element array, got shape {a.shape}")
    return float(a.reshape(()))


def _vector3(value, name):
    """value (three numbers, in any shape) as a (3,) float64 array; ValueError naming it otherwise."""
    a = as_real(value, name).astype(np.float64).reshape(-1)
    if a.shape != (3,):
        raise ValueError(f"{name} must hold 3 values, got shape {np.shape(value)}")
    return a


def similarity_transform(vertices, s, R, t3d):
    """Similarity transform ``s * R @ v + t3d`` applied to every vertex.

    Args:
        vertices: (n, 3). s: scale, a number or a one-element array (``as_scale``). R: (3, 3) rotation.
            t3d: (3,) translation.
    Returns:
        (n, 3) transformed vertices, ``s * vertices @ R.T + t3d``, dtype of ``vertices``
        (float64 for integer input).
    """
    v = _points(vertices)
    R = np.asarray(R, dtype=np.float64)
    if R.shape != (3, 3):
        raise ValueError(f"R must have shape (3, 3), got {R.shape}")
    t = _vector3(t3d, "t3d")
    return (as_scale(s) * (v @ R.T) + t).astype(v.dtype, copy=False)


def _normalize(x):
    norm = np.linalg.norm(x)
    if norm == 0:
        raise ValueError("cannot normalise a zero vector: eye, at and up must not be collinear or equal")
    return x / norm


def lookat_camera(vertices, eye, at=None, up=None):
    """Express world-space vertices in the frame of a camera at ``eye`` looking at ``at``.

    The camera looks along its -z axis (OpenGL convention): z_cam = -normalize(at - eye),
    x_cam = normalize(up x z_cam), y_cam = z_cam x x_cam.

    Args:
        vertices: (n, 3) world coordinates. eye: (3,) camera position. at: (3,) point looked at
            (default origin). up: (3,) approximate up direction (default +y).
    Returns:
        (n, 3) float64 vertices in camera coordinates, ``(vertices - eye) @ [x_cam; y_cam; z_cam].T``.
    Raises:
        ValueError: eye, at or up not 3 numbers (naming it), or eye, at and up collinear or equal.
    """
    v = _points(vertices).astype(np.float64)
    eye = _vector3(eye, "eye")
    at = np.zeros(3) if at is None else _vector3(at, "at")
    up = np.array([0.0, 1.0, 0.0]) if up is None else _vector3(up, "up")
    z_axis = -_normalize(at - eye)
    x_axis = _normalize(np.cross(up, z_axis))
    y_axis = np.cross(z_axis, x_axis)
    return (v - eye) @ np.stack((x_axis, y_axis, z_axis)).T


def orthographic_project(vertices):
    """Orthographic projection onto the xy plane, keeping z for the depth test: a copy of ``vertices``."""
    return _points(vertices).copy()


def perspective_project(vertices, fovy, aspect_ratio=1.0, near=0.1, far=1000.0):
    """Perspective projection of camera-space vertices to normalised device coordinates.

    As in face3d, ``fovy`` (degrees) is used as the half-angle: ``top = near * tan(fovy)``,
    ``right = top * aspect_ratio``, and the OpenGL frustum matrix maps the view volume to [-1, 1]^3.
    z is negated afterwards so that, as everywhere in face3d, larger z is nearer the viewer.

    Args:
        vertices: (n, 3) camera coordinates (camera looking along -z). fovy: degrees, 0 < fovy < 90 (the
            half-angle: tan(fovy) must be finite and positive). aspect_ratio: width / height, > 0.
            near, far: distances of the clipping planes, 0 < near < far (all finite).
    Returns:
        (n, 3) float64: x, y in [-1, 1] inside the frustum, z = -NDC depth.
    Raises:
        ValueError: naming fovy, aspect_ratio, near or far when outside these ranges.
    """
    v = _points(vertices).astype(np.float64)
    fovy, aspect_ratio = as_scale(fovy, "fovy"), as_scale(aspect_ratio, "aspect_ratio")
    near, far = as_scale(near, "near"), as_scale(far, "far")
    if not 0 < fovy < 90:
        raise ValueError(f"fovy must lie strictly between 0 and 90 degrees (it is the half-angle), got {fovy:g}")
    if not 0 < aspect_ratio < np.inf:
        raise ValueError(f"aspect_ratio must be positive and finite, got {aspect_ratio:g}")
    if not 0 < near < np.inf:
        raise ValueError(f"near must be positive and finite, got {near:g}")
    if not near < far < np.inf:
        raise ValueError(f"far must be finite and greater than near ({near:g}), got {far:g}")
    top = near * np.tan(np.deg2rad(fovy))
    right = top * aspect_ratio
    P = np.array([
        [near / right, 0, 0, 0],
        [0, near / top, 0, 0],
        [0, 0, -(far + near) / (far - near), -2 * far * near / (far - near)],
        [0, 0, -1, 0],
    ])
    homo = np.hstack((v, np.ones((len(v), 1)))) @ P.T
    projected = homo[:, :3] / homo[:, 3:]
    projected[:, 2] = -projected[:, 2]
    return projected


def to_image(vertices, h, w, is_perspective=False):
    """Map projected vertices (origin at the image centre, y up) to image coordinates (y down).

    ``x_img = x + w/2``, ``y_img = h - 1 - (y + h/2)``; with ``is_perspective`` the NDC values are first
    scaled by w/2 and h/2. z is kept. Pixel (x, y) has its centre at integer coordinates.

    Note: 300W-LP poses already place vertices in pixels with the origin at the image corner; for them flip
    only the rows: ``y_img = h - 1 - y`` (see ``face3d.morphable_model``).

    Args:
        vertices: (n, 3). h, w: image height and width in pixels.
    Returns:
        (n, 3) image-space vertices, float dtype of ``vertices``.
    """
    image_vertices = _points(vertices).copy()
    if is_perspective:
        image_vertices[:, 0] *= w / 2
        image_vertices[:, 1] *= h / 2
    image_vertices[:, 0] += w / 2
    image_vertices[:, 1] = h - 1 - (image_vertices[:, 1] + h / 2)
    return image_vertices


def _centroid_and_spread(points, name):
    """Centroid and mean distance to it of (n, d) float64 points; ValueError naming them when they all coincide
    (no spread to normalise by)."""
    centroid = points.mean(axis=0)
    spread = np.mean(np.linalg.norm(points - centroid, axis=1))
    if not spread > 0:
        raise ValueError(f"{name} must be spread out, found all {len(points)} points equal (no camera fits them)")
    return centroid, spread


def estimate_affine_matrix_3d22d(X, x):
    """Affine camera from 3D-2D correspondences by the Gold Standard algorithm.

    Hartley & Zisserman, Multiple View Geometry (2nd ed.), Algorithm 7.2: normalise the 2D points to
    centroid 0 and mean distance sqrt(2), the 3D points to centroid 0 and mean distance sqrt(3), solve the
    8 unknowns of the affine camera by linear least squares, then undo the normalisations.

    Args:
        X: (n, 3) model points, n >= 4. x: (n, 2) image points. Both finite.
    Returns:
        P: (3, 4) float64 affine camera with last row [0, 0, 0, 1]: ``x ~ P @ [X, 1]``.
    Raises:
        ValueError: a shape other than these, fewer than 4 points, a NaN or infinite coordinate, or all points of
            X or of x coinciding (naming X or x).
    """
    X = _points(X, "X").astype(np.float64)
    x = _points(x, "x", dim=2).astype(np.float64)
    require_finite(X, "X")
    require_finite(x, "x")
    n = len(X)
    if len(x) != n:
        raise ValueError(f"X and x must have the same number of points, got {n} and {len(x)}")
    if n < 4:
        raise ValueError(f"need at least 4 correspondences to estimate an affine camera, got {n}")

    mean2, spread2 = _centroid_and_spread(x, "x")
    scale2 = np.sqrt(2) / spread2
    T = np.array([[scale2, 0, -scale2 * mean2[0]], [0, scale2, -scale2 * mean2[1]], [0, 0, 1]])
    mean3, spread3 = _centroid_and_spread(X, "X")
    scale3 = np.sqrt(3) / spread3
    U = np.eye(4)
    U[:3, :3] *= scale3
    U[:3, 3] = -scale3 * mean3

    Xn = np.hstack((scale3 * (X - mean3), np.ones((n, 1))))
    xn = scale2 * (x - mean2)
    # The two image rows share no unknowns, so each is its own 4-parameter least-squares problem.
    rows, *_ = np.linalg.lstsq(Xn, xn, rcond=None)
    P = np.zeros((3, 4))
    P[:2] = rows.T
    P[2, 3] = 1.0
    return np.linalg.inv(T) @ P @ U


def P2sRt(P):
    """Decompose an affine camera into scale, rotation and translation.

    The first two rows of ``P[:, :3]`` are ``s * r1`` and ``s * r2`` for orthonormal r1, r2; noise makes them
    only approximately so. s is the mean of the two row norms and R the rotation nearest (in Frobenius norm,
    via SVD) to ``[r1; r2; r1 x r2]``, which keeps R a proper rotation.

    Args:
        P: (3, 4) affine camera, finite.
    Returns:
        s: float scale. R: (3, 3) float64 rotation. t: (3,) float64, ``P[:, 3]`` (use ``t[:2]``: an affine
        camera has no depth translation; ``t[2]`` is the homogeneous 1).
    """
    P = np.asarray(P, dtype=np.float64)
    if P.shape != (3, 4):
        raise ValueError(f"P must have shape (3, 4), got {P.shape}")
    require_finite(P, "P")
    n1, n2 = np.linalg.norm(P[0, :3]), np.linalg.norm(P[1, :3])
    if n1 == 0 or n2 == 0:
        raise ValueError("P is degenerate: a row of its 3x3 part is zero")
    r1, r2 = P[0, :3] / n1, P[1, :3] / n2
    u, _, vt = np.linalg.svd(np.stack((r1, r2, np.cross(r1, r2))))
    R = u @ vt
    if np.linalg.det(R) < 0:
        R = u @ np.diag([1.0, 1.0, -1.0]) @ vt
    return (n1 + n2) / 2, R, P[:, 3].copy()


def matrix2angle(R):
    """face3d Euler angles of a rotation matrix, the inverse of ``angle2matrix``.

    For ``R = Rz(z) Ry(y) Rx(x)``: ``x = atan2(R21, R22)``, ``y = atan2(-R20, sqrt(R00^2 + R10^2))``,
    ``z = atan2(R10, R00)``; at gimbal lock (cos y ~ 0) roll is set to 0.

    Args:
        R: (3, 3) rotation matrix, finite.
    Returns:
        (pitch, yaw, roll) in degrees, floats.
    """
    R = np.asarray(R, dtype=np.float64)
    if R.shape != (3, 3):
        raise ValueError(f"R must have shape (3, 3), got {R.shape}")
    require_finite(R, "R")
    sy = np.hypot(R[0, 0], R[1, 0])
    if sy > 1e-6:
        x = np.arctan2(R[2, 1], R[2, 2])
        z = np.arctan2(R[1, 0], R[0, 0])
    else:
        x = np.arctan2(-R[1, 2], R[1, 1])
        z = 0.0
    y = np.arctan2(-R[2, 0], sy)
    return float(np.rad2deg(x)), float(np.rad2deg(y)), float(np.rad2deg(z))


def matrix2angle_3ddfa(R):
    """300W-LP / 3DDFA angles of a rotation matrix, the inverse of ``angle2matrix_3ddfa``.

    Args:
        R: (3, 3) rotation matrix, finite.
    Returns:
        (3,) float64 [pitch, yaw, roll] in radians, as stored in ``Pose_Para[0:3]``.
    """
    return np.deg2rad(matrix2angle(np.asarray(R, dtype=np.float64).T))
