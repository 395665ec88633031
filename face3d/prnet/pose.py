"""Head pose of a reconstructed face: the canonical face at the UV data's face pixels, and the affine camera that
maps it to the image (PRNet's ``estimate_pose``).
"""
from dataclasses import dataclass

import numpy as np

from face3d.mesh import transform
from face3d.trainset.posmap import rasterize_uv
from face3d.trainset.uv_layout import canonical_face, check_uv_data_fits

__all__ = ["PoseEstimate", "canonical_vertices", "estimate_pose"]


@dataclass(frozen=True)
class PoseEstimate:
    """Head pose from dense vertices (``estimate_pose``).

    Attributes:
        angles: (pitch, yaw, roll) in degrees, face3d's convention (``mesh.transform.matrix2angle``): positive when
            the face looks down, turns to the image's right, tilts counter-clockwise on the image.
        angles_3ddfa: (pitch, yaw, roll) in radians, the 300W-LP ``Pose_Para`` convention
            (``mesh.transform.matrix2angle_3ddfa``): negative for those.
        R: (3, 3) float64 rotation of the canonical face (BFM frame: x right, y up, z to the viewer).
        scale: float, model units to image pixels.
        t2d: (2,) float64 translation of the image x and up-pointing y (``-y_image``).
    """
    angles: tuple
    angles_3ddfa: tuple
    R: np.ndarray
    scale: float
    t2d: np.ndarray


def canonical_vertices(model, uv_data, source="uv-data"):
    """The canonical face for ``estimate_pose``, in the model's frame (x right, y up, z to the viewer).

    The UV data's own ``canonical_vertices.npy`` when it has one (PRNet's, or the one ``face3d uv-data`` writes;
    position-map axes, so y is negated here), else the model's mean face at the UV data's face pixels
    (``uv_layout.canonical_face``), after checking that the UV data was built for that model.

    Args:
        model: MorphableModel (``model['shapeMU']`` (3n, 1), ``uv_coords``, ``full_triangles``, ``kpt_ind``), or
            None when ``uv_data`` has canonical vertices.
        uv_data: UVData (``face_ind``, ``resolution``, ``canonical_vertices``).
        source: the uv-data's folder, for the message when it does not fit the model.
    Returns:
        (m, 3) float32, order of ``face_ind`` (units of the source: model units or PRNet's pixels).
    Raises:
        ValueError: the UV data does not fit the model (``uv_layout.check_uv_data_fits``), or no canonical face.
    """
    flip = np.array([1, -1, 1], dtype=np.float32)
    if uv_data.canonical_vertices is not None:
        return np.asarray(uv_data.canonical_vertices, dtype=np.float32) * flip
    if model is None or getattr(model, "uv_coords", None) is None:
        raise ValueError("no canonical face: the uv-data has no canonical_vertices.npy and the model no UV coordinates")
    rasterization = rasterize_uv(model.uv_coords, model.full_triangles, uv_data.resolution)
    check_uv_data_fits(uv_data, model, source=source, rasterization=rasterization)
    face = canonical_face(model, rasterization, uv_data.face_ind)
    if face is None:
        raise ValueError("no canonical face: the model has no mean shape (shapeMU)")
    return face * flip


def estimate_pose(vertices, canonical):
    """Head pose of dense image-space vertices against the canonical face (PRNet's ``estimate_pose``).

    The affine camera mapping the canonical vertices to the image points (x, -y) is found with the Gold Standard
    algorithm (``mesh.transform.estimate_affine_matrix_3d22d``), split into scale, rotation and translation
    (``P2sRt``), and the rotation turned into angles (``matrix2angle``, ``matrix2angle_3ddfa``). The image y is
    negated so that the rotation is that of the BFM frame (y up), the 300W-LP convention.

    Args:
        vertices: (n, >=2) image coordinates (x right, y down). canonical: (n, 3) the same points on the
            canonical face (``canonical_vertices``).
    Returns:
        PoseEstimate.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    canonical = np.asarray(canonical, dtype=np.float64)
    if vertices.ndim != 2 or canonical.shape != (len(vertices), 3):
        raise ValueError(f"vertices (n, 3) and canonical (n, 3) must match, got {vertices.shape} and "
                         f"{canonical.shape}")
    if not np.all(np.isfinite(vertices[:, :2])) or np.ptp(vertices[:, :2], axis=0).min() <= 0:
        raise ValueError("vertices are degenerate (not finite, or no extent in x or y): no pose to estimate")
    image_up = np.column_stack([vertices[:, 0], -vertices[:, 1]])
    P = transform.estimate_affine_matrix_3d22d(canonical, image_up)
    s, R, t = transform.P2sRt(P)
    return PoseEstimate(angles=tuple(transform.matrix2angle(R)),
                        angles_3ddfa=tuple(float(a) for a in transform.matrix2angle_3ddfa(R)),
                        R=R, scale=float(s), t2d=np.asarray(t[:2], dtype=np.float64))
