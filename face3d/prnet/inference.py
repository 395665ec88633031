"""PRNet inference: crop a face, predict its UV position map, bring it back to the image, and read the 3D face.

The API follows PRNet's ``api.PRN`` (Feng et al., ECCV 2018, github.com/YadiraF/PRNet): ``PRN.process`` returns
the position map in original image coordinates, and ``get_landmarks`` / ``get_vertices`` / ``get_colors`` read it.
Everything after the network is numpy + OpenCV + ``face3d.mesh`` (no TensorFlow), so an ONNX Runtime installation
runs the whole path.

Coordinates: image pixels, x right, y down, pixel centres at integers; z towards the viewer (larger is nearer), in
the same pixel units, with an arbitrary origin (the training maps put the face's deepest vertex at 0).

Crop rules (both give a ``face3d.trainset.crop.CropBox``, mapped to the crop by ``crop.crop_matrix``: the box's
corners go to pixels 0 and R - 1):

* from a face detector's box (``box_crop``): PRNet's rule for dlib boxes, centre = box centre moved down by 0.14 x
  the mean side, side = 1.58 x the mean side ``((x1 - x0) + (y1 - y0)) / 2``;
* from 68 landmarks (``landmark_crop``): the generator's training crop, ``crop.keypoint_box`` unperturbed:
  centre of the landmarks' box, side 1.5 x its mean side (``GenerationConfig.crop_scale``; PRNet's demo uses 1.6
  with its own training crop), so a network sees faces framed as in training.

Maps and sizes: the network takes S x S crops and returns S x S maps in [0, 1]; the map in crop pixels is
``output * 1.1 * R`` with R the UV-data resolution (the training normalisation, ``data.POSMAP_SCALE``). When
S < R (a network trained at a reduced input size) the crop is taken straight at S (pixel q of the S crop at
``(R / S) q + (R / S - 1) / 2`` of the R crop, as the training pipeline resamples) and the S map is expanded to
R x R nearest-neighbour, so the keypoints are read exactly where training read them (``uvdata.resize_uv_data``).
Restoring inverts the crop affine ``p' = A p + t``: ``p = A^-1 (p' - t)`` for x, y and ``z = z' / k`` with k the
crop's scale ``sqrt(|det A|)`` (PRNet's ``z / tform.params[0, 0]``).
"""
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from face3d.prnet import metrics
from face3d.prnet.data import POSMAP_SCALE
from face3d.prnet.predictor import load_predictor
from face3d.trainset.crop import CropBox, compose, crop_matrix, keypoint_box
from face3d.trainset.sample import GenerationConfig
from face3d.trainset.uv_data import UVData, load_uv_data

__all__ = ["BOX_SCALE", "BOX_SHIFT", "LANDMARK_SCALE", "DEFAULT_UV_DATA", "FaceCrop", "PoseEstimate", "PRN",
           "as_rgb_uint8", "box_crop", "landmark_crop", "crop_face", "restore_map", "landmarks_from_map",
           "vertices_from_map", "sample_colors", "texture_from_map", "vertex_visibility", "depth_image",
           "canonical_vertices", "estimate_pose", "write_obj", "draw_landmarks", "mesh_overlay"]

BOX_SCALE = 1.58  # PRNet api.process: crop side / mean side of a detector box
BOX_SHIFT = 0.14  # PRNet api.process: the box centre moves down by this x the mean side
LANDMARK_SCALE = GenerationConfig.crop_scale  # the generator's training crop around the 68 keypoints (1.5)
DEFAULT_UV_DATA = Path(__file__).resolve().parents[2] / "Data" / "uv-data"

# iBUG 68 contours drawn by draw_landmarks (PRNet's plot_kpt end_list): jaw, brows, nose bridge, nostrils,
# eyes (closed), outer lips (closed), inner lips (closed)
_CONTOURS = ((0, 17, False), (17, 22, False), (22, 27, False), (27, 31, False), (31, 36, False), (36, 42, True),
             (42, 48, True), (48, 60, True), (60, 68, True))


@dataclass(frozen=True)
class FaceCrop:
    """A face crop ready for the network.

    Attributes:
        image: (S, S, 3) float32 RGB in [0, 1], the network input.
        matrix: (2, 3) float64 affine map from original image pixels to map pixels (the R x R crop the map's
            values refer to).
        box: the CropBox in the original image.
        resolution: R, the side of the crop the map's values refer to (the UV-data resolution).
    """
    image: np.ndarray
    matrix: np.ndarray
    box: CropBox
    resolution: int


@dataclass(frozen=True)
class PoseEstimate:
    """Head pose from dense vertices (``estimate_pose``).

    Attributes:
        angles: (pitch, yaw, roll) in degrees, face3d's convention (``mesh.transform.matrix2angle``).
        angles_3ddfa: (pitch, yaw, roll) in radians, the 300W-LP ``Pose_Para`` convention
            (``mesh.transform.matrix2angle_3ddfa``).
        R: (3, 3) float64 rotation of the canonical face (BFM frame: x right, y up, z to the viewer).
        scale: float, model units to image pixels.
        t2d: (2,) float64 translation of the image x and up-pointing y (``-y_image``).
    """
    angles: tuple
    angles_3ddfa: tuple
    R: np.ndarray
    scale: float
    t2d: np.ndarray


def as_rgb_uint8(image):
    """An image as (h, w, 3) uint8 RGB: greyscale is repeated, alpha dropped, floats in [0, 1] scaled by 255.

    Args:
        image: (h, w), (h, w, 1), (h, w, 3) or (h, w, 4) uint8, or float in [0, 1].
    Returns:
        (h, w, 3) uint8 C-contiguous.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or min(image.shape[:2]) < 1:
        raise ValueError(f"image must have shape (h, w), (h, w, 3) or (h, w, 4), got {image.shape}")
    if image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.floating):
            raise ValueError(f"image must be uint8 or float in [0, 1], got dtype {image.dtype}")
        image = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def box_crop(box):
    """PRNet's crop for a face detector's box (see the module docstring).

    Args:
        box: (x0, y0, x1, y1) image pixels, x1 > x0, y1 > y0.
    Returns:
        CropBox: centre ``((x0 + x1) / 2, (y0 + y1) / 2 + 0.14 m)``, side ``1.58 m``, m the mean side.
    """
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    if not (x1 > x0 and y1 > y0) or not np.all(np.isfinite([x0, y0, x1, y1])):
        raise ValueError(f"box must be finite (x0, y0, x1, y1) with x1 > x0 and y1 > y0, got {box}")
    mean_side = ((x1 - x0) + (y1 - y0)) / 2.0
    return CropBox((x0 + x1) / 2.0, (y0 + y1) / 2.0 + BOX_SHIFT * mean_side, BOX_SCALE * mean_side)


def landmark_crop(landmarks):
    """The generator's crop around 68 landmarks (``crop.keypoint_box`` with scale 1.5, unperturbed).

    Args:
        landmarks: (k, >=2) or (>=2, k) image pixels (x, y); only x and y are used.
    Returns:
        CropBox.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim == 2 and pts.shape[0] in (2, 3) and pts.shape[1] > 3:
        pts = pts.T
    if pts.ndim != 2 or pts.shape[1] < 2 or len(pts) < 2 or not np.all(np.isfinite(pts[:, :2])):
        raise ValueError(f"landmarks must be finite (k, 2) or (2, k) image points, got shape {pts.shape}")
    box = keypoint_box(pts[:, :2], crop_scale=LANDMARK_SCALE)
    if not box.size > 0:
        raise ValueError("landmarks span no area: cannot crop around them")
    return box


def crop_face(image, box, input_size, resolution):
    """Warp the face in ``box`` to the network's input.

    Args:
        image: (h, w, 3) uint8 RGB (anything ``as_rgb_uint8`` accepts).
        box: CropBox.
        input_size: S, the network's input side.
        resolution: R, the map resolution (the UV data's); S <= R.
    Returns:
        FaceCrop (bilinear warp, black outside the image).
    """
    s, r = int(input_size), int(resolution)
    if not 1 <= s <= r:
        raise ValueError(f"input_size must be in [1, resolution={r}], got {s}")
    to_map = crop_matrix(box, r)
    to_input = to_map
    if s != r:
        k = r / s
        offset = (0.5 * k - 0.5) / k
        to_input = compose(np.array([[1.0 / k, 0.0, -offset], [0.0, 1.0 / k, -offset]]), to_map)
    warped = cv2.warpAffine(as_rgb_uint8(image), to_input, (s, s), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return FaceCrop(warped.astype(np.float32) * np.float32(1.0 / 255.0), to_map, box, r)


def restore_map(output, matrix, resolution):
    """A network output back in original image coordinates (see the module docstring).

    Args:
        output: (S, S, 3) normalised map in [0, 1].
        matrix: (2, 3) image -> map-pixel affine of the crop (``FaceCrop.matrix``).
        resolution: R.
    Returns:
        (R, R, 3) float32 position map: image x, y (pixels) and z (pixels, arbitrary origin).
    """
    output = np.asarray(output, dtype=np.float32)
    r = int(resolution)
    s = output.shape[0]
    if output.ndim != 3 or output.shape != (s, s, 3) or s > r:
        raise ValueError(f"output must be an (S, S, 3) map with S <= {r}, got {output.shape}")
    if s != r:
        index = np.clip(np.rint((np.arange(r) + 0.5) * s / r - 0.5), 0, s - 1).astype(np.int64)
        output = output[np.ix_(index, index)]
    m = np.asarray(matrix, dtype=np.float64)
    inverse = np.linalg.inv(m[:, :2])
    k = np.sqrt(abs(np.linalg.det(m[:, :2])))
    scale = POSMAP_SCALE * r  # normalised map -> crop pixels, folded into the one affine map below
    affine = np.zeros((3, 4))
    affine[:2, :2] = inverse * scale
    affine[2, 2] = scale / k
    affine[:2, 3] = -inverse @ m[:, 2]
    # cv2.transform applies a 3x4 map per pixel (in double, SIMD), far faster than a numpy (R*R, 3) x (3, 3) product
    return cv2.transform(np.ascontiguousarray(output), affine)


def landmarks_from_map(pos, uv_kpt_ind):
    """The 68 landmarks of a position map: ``pos[uv_kpt_ind[1], uv_kpt_ind[0]]`` (``metrics.keypoints_from_map``).

    Returns:
        (68, 3) float64 (x, y, z); for maps in image coordinates, image pixels.
    """
    return metrics.keypoints_from_map(pos, uv_kpt_ind)


def vertices_from_map(pos, face_ind):
    """The dense face vertices of a position map: its pixels at ``face_ind`` (row-major y * R + x).

    Returns:
        (n, 3) float32, in the order of ``face_ind`` (the UV data's ``triangles`` index them).
    """
    pos = np.asarray(pos)
    if pos.ndim != 3 or pos.shape[2] != 3:
        raise ValueError(f"pos must be an (R, R, 3) position map, got {pos.shape}")
    return np.asarray(pos, dtype=np.float32).reshape(-1, 3)[np.asarray(face_ind)]


def sample_colors(image, vertices):
    """Per-vertex colours read from the image at each vertex's rounded (x, y), clipped to the image
    (PRNet's ``get_colors``).

    Args:
        image: (h, w, 3) uint8 RGB (or float in [0, 1]). vertices: (n, >=2) image pixels.
    Returns:
        (n, 3) float32 RGB in [0, 1].
    """
    image = as_rgb_uint8(image)
    h, w = image.shape[:2]
    xy = np.rint(np.asarray(vertices, dtype=np.float64)[:, :2])
    x = np.clip(xy[:, 0], 0, w - 1).astype(np.int64)
    y = np.clip(xy[:, 1], 0, h - 1).astype(np.int64)
    return image[y, x].astype(np.float32) * np.float32(1.0 / 255.0)


def texture_from_map(image, pos):
    """The face's UV texture: the image sampled at each map pixel's (x, y) (bilinear, black outside the image;
    PRNet's ``cv2.remap`` of the position map).

    Args:
        image: (h, w, 3) uint8 RGB. pos: (R, R, 3) position map in image coordinates.
    Returns:
        (R, R, 3) uint8 RGB texture, row 0 = v 1 (the top of the UV layout).
    """
    pos = np.asarray(pos, dtype=np.float32)
    return cv2.remap(as_rgb_uint8(image), np.ascontiguousarray(pos[..., 0]), np.ascontiguousarray(pos[..., 1]),
                     interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def vertex_visibility(vertices, triangles, h, w, tolerance=1.0, dilate=2):
    """Which vertices the camera sees (PRNet's ``get_visibility``, on ``face3d.mesh.render``'s depth buffer).

    A vertex is visible when it projects inside the image and its z is at least the depth buffer's value at its
    rounded pixel minus ``tolerance`` (pixels; larger z is nearer). Then, ``dilate`` times, every vertex of a
    triangle with a visible vertex becomes visible (PRNet's two passes: they close the one-pixel gaps the
    rounding leaves along silhouettes).

    Args:
        vertices: (n, 3) image coordinates. triangles: (t, 3) int indices. h, w: image size.
    Returns:
        (n,) bool.
    """
    from face3d.mesh import render

    v = np.ascontiguousarray(vertices, dtype=np.float32)
    tri = np.ascontiguousarray(triangles, dtype=np.int32)
    depth, _, _ = render.rasterize_triangles(v, tri, int(h), int(w))
    xy = np.rint(v[:, :2].astype(np.float64))
    inside = (xy[:, 0] >= 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= h - 1)
    visible = np.zeros(len(v), dtype=bool)
    ix = xy[inside].astype(np.int64)
    visible[inside] = v[inside, 2] >= depth[ix[:, 1], ix[:, 0]] - tolerance
    for _ in range(int(dilate)):
        seen = visible[tri].any(axis=1)
        visible[tri[seen].reshape(-1)] = True
    return visible


def depth_image(vertices, triangles, h, w):
    """Depth of the face as an image (PRNet's ``get_depth_image``): z shifted to start at 0 and divided by its
    range, rendered with ``face3d.mesh.render.render_colors``.

    Returns:
        (h, w) float32 in [0, 1]: 1 at the nearest vertex, 0 at the farthest and on the background.
    """
    from face3d.mesh import render

    v = np.ascontiguousarray(vertices, dtype=np.float32)
    z = v[:, 2:3].astype(np.float64)
    z = z - z.min()
    span = z.max()
    z = z / span if span > 0 else np.zeros_like(z)
    out = render.render_colors(v, np.ascontiguousarray(triangles, dtype=np.int32), z.astype(np.float32),
                               int(h), int(w), c=1)
    return np.asarray(out, dtype=np.float32).reshape(int(h), int(w))


def canonical_vertices(model, uv_data):
    """The model's mean face at the UV data's face pixels: the canonical face for ``estimate_pose``.

    Args:
        model: MorphableModel (``model['shapeMU']`` (3n, 1), ``uv_coords``, ``full_triangles``); the UV data must
            have been built for this model (``face3d uv-data`` / the generator's ``uv-data``).
        uv_data: UVData (``face_ind``, ``resolution``).
    Returns:
        (m, 3) float32 in the model's frame (x right, y up, z to the viewer, model units), order of ``face_ind``.
    """
    from face3d.trainset.posmap import rasterize_uv

    if getattr(model, "uv_coords", None) is None:
        raise ValueError("model.uv_coords is None: the canonical face needs the model's UV coordinates")
    mean = np.asarray(model.model["shapeMU"], dtype=np.float32).reshape(-1, 3)
    layout = rasterize_uv(model.uv_coords, model.full_triangles, uv_data.resolution)
    return layout.interpolate(mean)[np.asarray(uv_data.face_ind)]


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
    from face3d.mesh import transform

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


def write_obj(path, vertices, triangles, h, colors=None, texture=None, uv_data=None):
    """Write the face as an OBJ with per-vertex colours or with a texture map (``face3d.mesh.io``).

    Vertices are stored with y flipped to point up (``h - 1 - y``, as PRNet saves them), so viewers show the face
    upright and the UV data's triangles (BFM winding, clockwise seen from outside with y up) face outwards.

    Args:
        path: the ``.obj`` path. vertices: (n, 3) image coordinates. triangles: (t, 3) indices.
        h: image height (pixels). colors: (n, 3) floats in [0, 1] (per-vertex colours).
        texture: (R, R, 3) uint8 RGB UV texture (``texture_from_map``); then ``uv_data`` gives each vertex's
            texture coordinate (u = x / (R - 1), v = 1 - y / (R - 1) of its ``face_ind`` pixel) and the files
            ``<name>.mtl`` and ``<name>_texture.png`` are written too.
    Returns:
        Path of the OBJ.
    """
    from face3d.mesh import io as mesh_io

    v = np.array(vertices, dtype=np.float64)
    v[:, 1] = h - 1 - v[:, 1]
    if texture is None:
        if colors is None:
            raise ValueError("write_obj needs colors (per-vertex) or texture (with uv_data)")
        return mesh_io.write_obj_with_colors(path, v, triangles, np.asarray(colors, dtype=np.float64))
    if uv_data is None:
        raise ValueError("write_obj with a texture needs uv_data (the texture coordinates come from face_ind)")
    r = uv_data.resolution
    face_ind = np.asarray(uv_data.face_ind)
    uv = np.column_stack([(face_ind % r) / (r - 1.0), 1.0 - (face_ind // r) / (r - 1.0)])
    return mesh_io.write_obj_with_texture(path, v, triangles, texture, uv, colors=colors)


def draw_landmarks(image, landmarks, color=(0, 255, 0), radius=2):
    """The image with the 68 landmarks drawn as dots joined along the iBUG contours.

    Args:
        image: (h, w, 3) uint8 RGB. landmarks: (68, >=2) image pixels. color: RGB.
    Returns:
        (h, w, 3) uint8 RGB copy.
    """
    out = as_rgb_uint8(image).copy()
    pts = np.asarray(landmarks, dtype=np.float64)[:, :2]
    if pts.shape[0] != 68 or not np.all(np.isfinite(pts)):
        raise ValueError(f"landmarks must be 68 finite points, got shape {np.shape(landmarks)}")
    ipts = np.rint(pts).astype(np.int32)
    lines = tuple(int(c) // 2 + 64 for c in color)
    for start, stop, closed in _CONTOURS:
        cv2.polylines(out, [ipts[start:stop].reshape(-1, 1, 2)], closed, lines, 1, cv2.LINE_AA)
    for x, y in ipts:
        cv2.circle(out, (int(x), int(y)), int(radius), tuple(int(c) for c in color), -1, cv2.LINE_AA)
    return out


def mesh_overlay(image, vertices, triangles, alpha=0.6):
    """The image with the mesh rendered over it, shaded by |normal z| (a headlight, independent of the winding).

    Args:
        image: (h, w, 3) uint8 RGB. vertices: (n, 3) image coordinates. triangles: (t, 3). alpha: mesh opacity.
    Returns:
        (h, w, 3) uint8 RGB.
    """
    from face3d.mesh import light, render

    base = as_rgb_uint8(image)
    h, w = base.shape[:2]
    v = np.ascontiguousarray(vertices, dtype=np.float32)
    tri = np.ascontiguousarray(triangles, dtype=np.int32)
    normals = np.asarray(light.vertex_normals(v, tri), dtype=np.float64)
    shade = 0.25 + 0.75 * np.abs(normals[:, 2:3])
    colors = np.repeat(shade, 3, axis=1) * np.array([0.75, 0.85, 1.0])
    rendered = np.asarray(render.render_colors(v, tri, colors.astype(np.float32), h, w, c=3), dtype=np.float32)
    depth, _, _ = render.rasterize_triangles(v, tri, h, w)
    covered = np.isfinite(np.asarray(depth))[..., None]
    out = base.astype(np.float32) / 255.0
    out = np.where(covered, (1 - alpha) * out + alpha * rendered, out)
    return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)


class PRN:
    """PRNet's inference object: a network plus the UV data that reads its maps.

    Args:
        model: anything ``predictor.load_predictor`` takes (a ``.keras``/``.h5``/``.pb``/``.onnx`` path, a
            SavedModel folder, a keras.Model, a Predictor).
        uv_data: UV-data folder or UVData (default ``Data/uv-data``: the embedded default model's, at 256).
        bfm: the morphable model whose mean face is the canonical face for ``estimate_pose``: a MorphableModel,
            a ``BFM.mat`` path, or None for the embedded default (loaded on first use; must be the model the UV
            data was built for).
        predictor_options: passed to ``load_predictor``.

    Attributes:
        predictor, uv (UVData), resolution (R), input_size (S), triangles ((t, 3) int32 over the vertices).
    """

    def __init__(self, model, uv_data=None, bfm=None, **predictor_options):
        self.predictor = load_predictor(model, **predictor_options)
        self.uv = uv_data if isinstance(uv_data, UVData) else load_uv_data(DEFAULT_UV_DATA if uv_data is None
                                                                           else uv_data)
        self.resolution = self.uv.resolution
        self.input_size = self.predictor.input_size
        if self.input_size > self.resolution:
            raise ValueError(f"the network's input size {self.input_size} exceeds the UV data's resolution "
                             f"{self.resolution}: give the uv-data the network was trained with")
        self.triangles = np.ascontiguousarray(self.uv.triangles, dtype=np.int32)
        self._bfm = bfm
        self._canonical = None

    # ------------------------------------------------------------------------------------------- crop + network
    def crop(self, image, box=None, landmarks=None):
        """FaceCrop of ``image`` from a detector ``box`` (x0, y0, x1, y1) or from 68 ``landmarks`` (one of them)."""
        if (box is None) == (landmarks is None):
            raise ValueError("give exactly one of box (x0, y0, x1, y1) and landmarks (68 points)")
        crop_box = box_crop(box) if box is not None else landmark_crop(landmarks)
        return crop_face(image, crop_box, self.input_size, self.resolution)

    def predict_crops(self, crops):
        """Position maps in image coordinates for a list of FaceCrops (one batched network call).

        Returns:
            list of (R, R, 3) float32.
        """
        if not crops:
            return []
        outputs = self.predictor.predict(np.stack([c.image for c in crops]))
        return [restore_map(o, c.matrix, c.resolution) for o, c in zip(outputs, crops)]

    def process(self, image, box=None, landmarks=None):
        """The face's position map in original image coordinates (PRNet's ``process``).

        Args:
            image: (h, w, 3) uint8 RGB. box: detector box (x0, y0, x1, y1), or landmarks: (68, 2) / (2, 68).
        Returns:
            (R, R, 3) float32: image x, y and z of the face surface at every UV pixel.
        """
        return self.predict_crops([self.crop(image, box=box, landmarks=landmarks)])[0]

    # ------------------------------------------------------------------------------------------- reading the map
    def get_landmarks(self, pos):
        """(68, 3) float64 landmarks of a position map (at ``uv_kpt_ind``)."""
        return landmarks_from_map(pos, self.uv.uv_kpt_ind)

    def get_vertices(self, pos):
        """(n, 3) float32 dense vertices of a position map (at ``face_ind``)."""
        return vertices_from_map(pos, self.uv.face_ind)

    def get_colors(self, image, vertices):
        """(n, 3) float32 RGB in [0, 1] of each vertex (``sample_colors``)."""
        return sample_colors(image, vertices)

    def get_texture(self, image, pos):
        """(R, R, 3) uint8 UV texture (``texture_from_map``)."""
        return texture_from_map(image, pos)

    def get_visibility(self, vertices, h, w, **options):
        """(n,) bool visibility of the vertices (``vertex_visibility``)."""
        return vertex_visibility(vertices, self.triangles, h, w, **options)

    def get_depth_image(self, vertices, h, w):
        """(h, w) float32 depth image in [0, 1] (``depth_image``)."""
        return depth_image(vertices, self.triangles, h, w)

    @property
    def canonical(self):
        """(n, 3) float32 canonical face at ``face_ind`` (``canonical_vertices`` of ``bfm``), built on first use."""
        if self._canonical is None:
            model = self._bfm
            if model is None or isinstance(model, (str, Path)):
                from face3d.morphable_model import MorphableModel
                model = MorphableModel(None if model is None else str(model))
            self._canonical = canonical_vertices(model, self.uv)
        return self._canonical

    def estimate_pose(self, vertices):
        """PoseEstimate of dense vertices (``estimate_pose`` against ``canonical``)."""
        return estimate_pose(vertices, self.canonical)

    def save_obj(self, path, vertices, h, colors=None, texture=None):
        """OBJ of the face with per-vertex colours or a texture map (``write_obj``); returns its Path."""
        return write_obj(path, vertices, self.triangles, h, colors=colors, texture=texture, uv_data=self.uv)
