"""One 300W-LP sample to PRNet training pairs: a 256x256 face crop and its UV position map, plus rotated copies.

``TrainsetGenerator`` (its docstring gives the steps) makes ``GeneratedSample`` pairs under a ``GenerationConfig``.
Reading a sample (``sample_io``) and the preview image (``preview``) are re-exported here.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from face3d.contract import LANDMARK_SCALE, RESOLUTION
from face3d.mesh.affine import affine_points
from face3d.mesh.float16 import to_float16
from face3d.mesh.linear import combine_basis, tile_basis
from face3d.mesh.transform import angle2matrix, angle2matrix_3ddfa
from face3d.trainset.crop import (
    apply_affine,
    compose,
    crop_matrices,
    crop_scales,
    keypoint_box,
    keypoint_boxes,
    rotation_matrix,
    source_box,
)
from face3d.trainset.posmap import rasterize_uv, uv_keypoint_pixels
from face3d.trainset.preview import draw_preview
from face3d.trainset.sample_io import (
    DEFAULT_MAX_PIXELS,
    generation_params,
    image_size,
    open_image,
    read_300wlp_sample,
    read_image,
    read_params,
    require_image_file,
    require_rgb_image,
)
from face3d.utils.errors import InputFileError

__all__ = ["read_image", "image_size", "read_300wlp_sample", "GenerationConfig", "GeneratedSample",
           "TrainsetGenerator", "check_face_inside", "angle_name", "draw_preview", "DEFAULT_MAX_PIXELS",
           "MAX_DEPTH_SHIFT", "MIN_RESOLUTION"]

_FLIP_Y = np.diag([1.0, -1.0, 1.0])
# z is measured from the lowest vertex, (z + tz) - (z_min + tz) in float64: beyond 2**32 pixels the rounding of
# tz (2**-20 px) starts to show in the maps, and no image has a depth offset of that size.
MAX_DEPTH_SHIFT = 2.0 ** 32
# Smallest crop and map side in pixels that GenerationConfig accepts (face3d generate checks it while parsing).
MIN_RESOLUTION = 8


@dataclass(frozen=True)
class GenerationConfig:
    """Options of the ground-truth generator.

    Attributes:
        resolution: side of the crop and of the UV position map in pixels (PRNet: 256).
        crop_scale: crop side / mean side of the keypoint box (1.5).
        perturb: random crop shift and scale (seeded per sample); False gives the centred crop.
        max_shift: largest centre shift as a fraction of the keypoint box's mean side (0.1).
        scale_range: (low, high) factor on the crop side (0.9, 1.1).
        angles: in-plane rotations in degrees (counter-clockwise on screen for positive angles) of the rotated
            copies; () for none.
        refit: build rotated copies by fitting the model to the rotated keypoints instead of composing the
            rotation into the pose.
        refit_max_iter: iterations of ``model.fit`` in refit mode.
        posmap_dtype: dtype the writer stores maps in, 'float16' (default) or 'float32'; the generator returns
            float32 unless built with ``TrainsetGenerator(..., posmap_dtype=...)``, as a run's generator is.
        preview: also draw a preview image per output.
        neck_zeroed: which weight mask goes with the data set: False (default) the neck weighted 48 like the rest
            of the covered UV area, True the paper's variant with the neck at 0 (see ``uv_layout``).
        min_visible_keypoints: a sample whose projected keypoints lie inside the image fewer times than this
            is rejected as "face outside the image".
        allow_short_params: zero-pad ``Shape_Para`` / ``Exp_Para`` shorter than the model's bases (a data set
            that truncates them on purpose); by default such a sample is refused, as a 300W-LP file has them all.
        max_pixels: largest image (width * height) decoded; a larger one is refused from its header.
    """

    resolution: int = RESOLUTION
    crop_scale: float = LANDMARK_SCALE
    perturb: bool = True
    max_shift: float = 0.1
    scale_range: tuple[float, float] = (0.9, 1.1)
    angles: tuple[float, ...] = (15, -15, 30, -30, 45, -45, 60, -60)
    refit: bool = False
    refit_max_iter: int = 4
    posmap_dtype: str = "float16"
    preview: bool = False
    neck_zeroed: bool = False
    min_visible_keypoints: int = 34
    allow_short_params: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self):
        if int(self.resolution) < MIN_RESOLUTION:
            raise ValueError(f"resolution must be at least {MIN_RESOLUTION} pixels, got {self.resolution}")
        if not self.crop_scale > 0:
            raise ValueError(f"crop_scale must be positive, got {self.crop_scale}")
        if not 0 <= self.max_shift < 1:
            raise ValueError(f"max_shift must be in [0, 1), got {self.max_shift}")
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {self.scale_range}")
        if self.posmap_dtype not in ("float16", "float32"):
            raise ValueError(f"posmap_dtype must be 'float16' or 'float32', got {self.posmap_dtype!r}")
        if int(self.max_pixels) < 1:
            raise ValueError(f"max_pixels must be at least 1, got {self.max_pixels}")
        if not np.all(np.isfinite(np.asarray(self.angles, dtype=np.float64))):
            raise ValueError(f"angles must be finite degrees, got {tuple(self.angles)}")
        if len({angle_name("", a) for a in self.angles}) != len(self.angles):
            raise ValueError(f"angles must have distinct names (each names its outputs <stem>_angle_<deg>, the "
                             f"degrees in shortest form), got {self.angles}")
        object.__setattr__(self, "angles", tuple(self.angles))
        object.__setattr__(self, "scale_range", (float(low), float(high)))


@dataclass
class GeneratedSample:
    """One training pair.

    Attributes:
        name: output stem, ``<image stem>`` or ``<image stem>_angle_<deg>``.
        image: (r, r, 3) uint8 RGB crop (a view of the warped RGBA crop: not C-contiguous).
        posmap: (r, r, 3) UV position map (crop-space x, y in pixels; z in crop pixels, min 0), float32, or float16
            from a generator built with ``posmap_dtype=np.float16``.
        preview: (r, 2r, 3) uint8 RGB preview (``draw_preview``) or None.
        crop_matrix: (2, 3) float64 affine map from the source image's pixels to the crop's
            (for rotated copies it includes the rotation).
    """

    name: str
    image: np.ndarray
    posmap: np.ndarray
    preview: np.ndarray | None = None
    crop_matrix: np.ndarray | None = field(default=None, repr=False)


def angle_name(stem: str, angle: float) -> str:
    """Name of a rotated copy: ``<stem>_angle_<deg>`` with the angle in shortest form (15, -15, 7.5)."""
    return f"{stem}_angle_{float(angle):g}"


@dataclass
class _Geometry:
    """What every output of one parameter set shares (300W-LP's views of a face share Shape and Exp).

    Attributes:
        vertices: (n, 3) float32 model-space vertices.
        uv_points: (r, r, 3) float32 the vertices interpolated at the UV pixels (0 where uncovered), filled in by
            ``TrainsetGenerator._uv_points`` when first needed.
    """

    vertices: np.ndarray
    uv_points: np.ndarray | None = None


class _InMemory:
    """An (h, w, 4) uint8 RGBA image already in memory, with ``StoredImage``'s size attributes and ``rgba``."""

    def __init__(self, rgba: np.ndarray):
        self._rgba = rgba
        self.height, self.width = rgba.shape[:2]

    def rgba(self, box=None) -> np.ndarray:
        return self._rgba


def check_face_inside(points, shape, minimum, where, what):
    """Refuse a face whose points lie off the image: fewer than ``min(minimum, N)`` of the (N, >=2) x, y
    ``points`` (image pixels, y down) inside ``[0, w - 1] x [0, h - 1]`` of an image of ``shape`` (h, w, ...).

    Raises:
        InputFileError naming ``where``: "face outside the image: K of N <what> lie inside the WxH image".
    """
    h, w = shape[:2]
    points = np.asarray(points, dtype=np.float64)
    inside = (points[:, 0] >= 0) & (points[:, 0] <= w - 1) & (points[:, 1] >= 0) & (points[:, 1] <= h - 1)
    if int(inside.sum()) < min(minimum, len(points)):
        raise InputFileError(where, f"face outside the image: {int(inside.sum())} of {len(points)} {what} lie "
                                    f"inside the {w}x{h} image")


class TrainsetGenerator:
    """Per-process generator of PRNet training pairs for one morphable model; per sample:

    1. Read the ``.mat`` (``read_params``), then the image's file and header (``open_image``); a missing image is
       reported before the ``.mat`` is read. The image is decoded once every crop is planned (step 4), of a JPEG
       only the part the crops read (``StoredImage.rgba``, ``crop.source_box``).
    2. Vertices ``V = shapeMU + shapePC @ Shape_Para + expPC @ Exp_Para`` in float32.  On a BFM-sized model this
       product dominates; one product for many samples (``process_iter`` / ``process_many``) reads the basis once
       for all of them, and results are bit-identical whatever the batching (see ``_vertex_product``). What the
       outputs of one parameter set share (``_Geometry``: the vertices and their UV interpolation) is computed once
       and kept for recently seen sets (300W-LP's profiled views of a face share Shape and Exp).
    3. Pose: ``s * V @ R.T + t`` with ``R = angle2matrix_3ddfa(Pose_Para[0:3])``, ``s = Pose_Para[6]``,
       ``t = Pose_Para[3:6]``, then image rows ``y = h - 1 - y``.  Written as one linear map ``V @ A.T + b``.
    4. Crop: PRNet's square around the 68 projected keypoints (``crop.keypoint_box``), perturbed by a generator
       seeded with ``seed`` (one per sample: the plain crop's three draws, then each rotated copy's, in the order
       of ``angles``); image warped with ``cv2.warpAffine`` (bilinear, black outside).
    5. Position map: at each UV pixel the crop-space x, y of the surface point and its z scaled by the crop scale k
       and shifted by ``-k * min z`` over all vertices (PRNet's ``position[:, 2] -= min``).  Pose and crop make one
       3x4 map of model space (``_placement``).  The model-space vertices are interpolated once per parameter set
       with the once-rasterized UV layout (``posmap.UVRasterization``) and each output's map is the placement of
       those UV points (``face3d.mesh.affine.affine_points``): interpolation commutes with the affine map because
       barycentric weights sum to 1, so this equals ``render_colors`` of the crop-space vertices in UV space (up to
       float32 rounding).
       Uncovered UV pixels are 0.

    Rotation augmentation: an in-plane rotation by theta about the face centre (the unperturbed keypoint box
    centre), composed into the pose exactly: rotated image positions are ``Rot @ (x, y)`` with z unchanged, the crop
    box is taken around the rotated keypoints, and the image is warped once from the original with
    ``crop o Rot`` (so no corner of the rotated picture is lost to an intermediate canvas).  The vertices and their
    UV points are shared with the plain sample; each rotated copy costs one warp and one 3x4 map of the UV points.
    With ``refit=True`` the model is instead fitted (``model.fit``) to the rotated projected keypoints and the map
    comes from the fitted shape, expression and pose, as earlier forks built 300W-LP-Rotate; the crop is the same
    as in the exact mode, so the two label sets can be compared pixel for pixel.

    Building it rasterizes the model's UV layout once (``posmap.rasterize_uv``); ``process``, ``process_iter``
    and ``process_many`` are pure computations (no file writing), deterministic in their ``seed``.

    Args:
        model: MorphableModel (uses ``model`` dict ``shapeMU``, ``shapePC``, ``expPC``; ``uv_coords``,
            ``full_triangles``, ``kpt_ind``; ``fit`` and ``generate_vertices`` in refit mode).
        config: GenerationConfig.
        cache_size: parameter sets whose vertices and UV points are kept (least recently used dropped).
        posmap_dtype: dtype of the maps it returns, float32 (default) or float16 (the values a float16 file
            stores: a run's generator, ``dataset.default_generator_factory``, returns its maps as it writes them,
            rounded in the pass that places them).
    """

    def __init__(self, model, config: GenerationConfig = GenerationConfig(), cache_size: int = 8,
                 posmap_dtype=np.float32):
        if getattr(model, "uv_coords", None) is None:
            raise ValueError("model.uv_coords is None: the generator needs the model's UV coordinates (BFM_UV.mat)")
        self.model = model
        self.config = config
        self.posmap_dtype = np.dtype(posmap_dtype)
        if self.posmap_dtype not in (np.float32, np.float16):
            raise ValueError(f"posmap_dtype must be float32 or float16, got {self.posmap_dtype}")
        r = int(config.resolution)
        self.rasterization = rasterize_uv(model.uv_coords, model.full_triangles, r)
        self.kpt_ind = np.asarray(model.kpt_ind, dtype=np.int64)
        self.uv_kpt_ind = uv_keypoint_pixels(model.uv_coords, self.kpt_ind, r, self.rasterization.covered)
        m = model.model
        self._n_shape, self._n_exp = m["shapePC"].shape[1], m["expPC"].shape[1]
        self._n_coordinates = np.size(m["shapeMU"])
        # The shape and expression bases side by side in the kernel's tiled layout: one copy of the basis
        # (146 MB on the BFM) made once per generator, shared copy-on-write by forked workers.
        self._mean, self._basis_tiles = tile_basis(m["shapeMU"], m["shapePC"], m["expPC"])
        self._cache: OrderedDict[bytes, _Geometry] = OrderedDict()
        self._cache_size = int(cache_size)

    # ------------------------------------------------------------------ vertices
    def _padded(self, params: dict, where: str, allow_short: bool) -> np.ndarray:
        """Shape and expression parameters as one float32 vector (n_shape + n_exp,), zero-padded when
        ``allow_short``, else a shorter vector than the model's basis is refused."""
        ns, ne = self._n_shape, self._n_exp
        sp = params["Shape_Para"].reshape(-1)
        ep = params["Exp_Para"].reshape(-1)
        for key, value, n in (("Shape_Para", sp, ns), ("Exp_Para", ep, ne)):
            if value.size > n and np.any(value[n:] != 0):
                raise InputFileError(where, f"{key} has {value.size} entries, nonzero beyond the model's {n} "
                                  f"components")
            if value.size < n and not allow_short:
                raise InputFileError(where, f"{key} has {value.size} entries where the model has {n} (a 300W-LP "
                                            f"file has them all; --allow-short-params if the data set truncates "
                                            f"them on purpose)")
        out = np.zeros(ns + ne, dtype=np.float32)
        out[:min(sp.size, ns)] = sp[:ns]
        out[ns:ns + min(ep.size, ne)] = ep[:ne]
        return out

    def _geometry_batch(self, coefficients: list[np.ndarray]) -> list[_Geometry]:
        """The ``_Geometry`` of each coefficient vector: from the cache, or with vertices (n, 3) float32
        C-contiguous from one product shared by the vectors not in the cache."""
        keys = [c.tobytes() for c in coefficients]
        todo = list(dict.fromkeys(k for k in keys if k not in self._cache))
        fresh = dict(zip(todo, self._vertex_product(todo))) if todo else {}
        result = []
        for k in keys:
            if k in fresh:
                geometry = self._cache[k] = _Geometry(fresh.pop(k))
            else:
                geometry = self._cache[k]
            self._cache.move_to_end(k)
            result.append(geometry)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        for geometry in self._cache.values():
            if geometry.vertices.base is not None:  # a cached row must not keep the whole batch alive
                geometry.vertices = geometry.vertices.copy()
        return result

    def _vertex_product(self, keys: list[bytes]) -> list[np.ndarray]:
        """Vertices ``shapeMU + shapePC @ sp + expPC @ ep`` (n, 3) float32 per coefficient vector (given as
        float32 bytes), rows of one product. ``face3d.mesh.linear.combine_basis`` sums every element in one fixed
        order, so a sample's vertices are bit-identical whether it is computed alone or in any batch (resumed,
        sharded or differently chunked runs reproduce bytes), on any CPU; a batch reads the basis once."""
        coef = np.stack([np.frombuffer(k, dtype=np.float32) for k in keys])
        flat = combine_basis(self._mean, self._basis_tiles, coef)
        return [flat[i, :self._n_coordinates].reshape(-1, 3) for i in range(len(keys))]

    def _uv_points(self, geometry: _Geometry) -> np.ndarray:
        """``geometry.uv_points``, interpolated (one sparse product) on first use."""
        if geometry.uv_points is None:
            r = self.config.resolution
            geometry.uv_points = np.asarray(self.rasterization.matrix @ geometry.vertices).reshape(r, r, 3)
        return geometry.uv_points

    def vertices(self, shape_para, exp_para) -> np.ndarray:
        """Model-space vertices ``shapeMU + shapePC @ shape_para + expPC @ exp_para``, (n, 3) float32; vectors
        shorter than the bases are zero-padded."""
        coef = self._padded({"Shape_Para": np.asarray(shape_para, dtype=np.float64),
                             "Exp_Para": np.asarray(exp_para, dtype=np.float64)}, "vertices()", allow_short=True)
        return self._geometry_batch([coef])[0].vertices.copy()

    # ------------------------------------------------------------------ one sample
    @staticmethod
    def image_pose(pose_para, height: int) -> tuple[np.ndarray, np.ndarray]:
        """300W-LP pose as the map from model-space vertices to image pixels (x right, y down, z towards the
        viewer): ``image = V @ A.T + b`` with ``A = diag(1, -1, 1) @ (s R)``, ``b = (tx, h - 1 - ty, tz)``.

        Returns:
            A (3, 3) float64, b (3,) float64.
        """
        pose = np.asarray(pose_para, dtype=np.float64).reshape(-1)
        A = _FLIP_Y @ (pose[6] * angle2matrix_3ddfa(pose[:3]))
        b = np.array([pose[3], height - 1 - pose[4], pose[5]])
        return A, b

    def _refit_pose(self, keypoints_xy: np.ndarray, height: int):
        """Fit the model to image keypoints; returns (vertices (n, 3) float32, A, b), A and b as in ``image_pose``."""
        x = np.column_stack([keypoints_xy[:, 0], height - 1 - keypoints_xy[:, 1]])
        sp, ep, s, angles, t = self.model.fit(x, self.kpt_ind, max_iter=self.config.refit_max_iter)
        vertices = np.asarray(self.model.generate_vertices(sp, ep), dtype=np.float32)
        t3 = np.zeros(3)
        t_flat = np.asarray(t, dtype=np.float64).reshape(-1)
        t3[:t_flat.size] = t_flat[:3]
        A = _FLIP_Y @ (float(s) * angle2matrix(angles))
        b = np.array([t3[0], height - 1 - t3[1], t3[2]])
        return vertices, A, b

    @staticmethod
    def _placement(A: np.ndarray, b: np.ndarray, z_min: float, matrix: np.ndarray, k: float) -> np.ndarray:
        """The (3, 4) float32 map ``M`` from model-space points to crop space, ``crop = M @ [v, 1]``: image
        positions ``v @ A.T + b`` taken to the crop by the (2, 3) ``matrix`` in x, y and by its scale ``k``
        (``crop.crop_scales``) in z, with ``z - z_min``."""
        lin = np.zeros((3, 3))
        lin[:2, :2] = matrix[:, :2]
        lin[2, 2] = k
        placement = np.empty((3, 4), dtype=np.float32)
        placement[:, :3] = lin @ A
        placement[:2, 3] = matrix[:, :2] @ b[:2] + matrix[:, 2]
        placement[2, 3] = k * (b[2] - z_min)
        return placement

    @staticmethod
    def _z_min(vertices: np.ndarray, A: np.ndarray, b: np.ndarray) -> float:
        """Smallest image-space z over all vertices: PRNet shifts by the vertices' minimum, not the map's.
        z is linear in the vertex, so this is one matrix-vector product, not a transform of every vertex."""
        return float((vertices @ A[2].astype(np.float32)).min()) + float(b[2])

    def _placed_posmap(self, vertices: np.ndarray, A: np.ndarray, b: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """Position map (r, r, 3) float32 of one output: the vertices placed in the crop (``_placement``), then
        interpolated at the UV pixels (``UVRasterization.interpolate``); uncovered pixels 0."""
        placement = self._placement(A, b, self._z_min(vertices, A, b), matrix, crop_scales(matrix[None])[0])
        placed = affine_points(vertices, placement)
        r = self.config.resolution
        return np.asarray(self.rasterization.matrix @ placed).reshape(r, r, 3)

    def _shared_posmap(self, uv_points: np.ndarray, A: np.ndarray, b: np.ndarray, z_min: float,
                       matrix: np.ndarray, k: float) -> np.ndarray:
        """Position map (r, r, 3) from the model-space UV points (r, r, 3) that several outputs share:
        interpolation commutes with the affine ``_placement`` (``k``: the crop's scale) because barycentric weights
        sum to 1, so the map is the placement of the interpolated points, with uncovered pixels set back to 0.
        float16 straight from the placement when that is the generator's ``posmap_dtype`` and no preview needs the
        float32 map, else float32."""
        placement = self._placement(A, b, z_min, matrix, k)
        dtype = np.float16 if self.posmap_dtype == np.float16 and not self.config.preview else np.float32
        return affine_points(uv_points, placement, self.rasterization.covered, dtype)

    def _output(self, name, rgba, matrix_img, posmap) -> GeneratedSample:
        """One output: the (h, w, 4) uint8 RGBA source warped by ``matrix_img`` (OpenCV's bilinear warp is about
        twice as fast on 4 channels as on 3 and interpolates each channel alike, so the RGB crop is the same), the
        crop the RGB view of the warp; the preview drawn from the float32 map, which is then given in
        ``posmap_dtype``."""
        r = self.config.resolution
        crop = cv2.warpAffine(rgba, matrix_img, (r, r), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=(0, 0, 0, 0))[..., :3]  # a view: the writer encodes it in place
        preview = draw_preview(crop, posmap, self.uv_kpt_ind) if self.config.preview else None
        if posmap.dtype != self.posmap_dtype:
            posmap = to_float16(posmap)
        return GeneratedSample(name=name, image=crop, posmap=posmap, preview=preview, crop_matrix=matrix_img)

    def _projected_keypoints(self, vertices, A, b, shape, where) -> np.ndarray:
        """Image positions (68, 3) float64 of the keypoint vertices; InputFileError when the depth offset is beyond
        ``MAX_DEPTH_SHIFT``, the projection is not finite, the face lies outside the image or the pose is
        degenerate."""
        h, w = shape
        if not abs(b[2]) <= MAX_DEPTH_SHIFT:
            raise InputFileError(where, f"Pose_Para tz = {b[2]:g} is beyond +-{MAX_DEPTH_SHIFT:g} pixels: depths "
                                        f"measured from the lowest vertex would lose their precision")
        with np.errstate(over="ignore", invalid="ignore"):  # reported just below, naming the file
            kpt = vertices[self.kpt_ind].astype(np.float64) @ A.T + b
        if not np.all(np.isfinite(kpt)):
            raise InputFileError(where, "Pose_Para projects the keypoints to non-finite positions")
        check_face_inside(kpt, shape, self.config.min_visible_keypoints, where, "projected keypoints")
        box_size = np.ptp(kpt[:, :2], axis=0)
        if not box_size.sum() / 2.0 >= 1.0:
            raise InputFileError(where, f"projected keypoints span {box_size.tolist()} pixels; the pose is degenerate")
        return kpt

    def _generate(self, source, params, stem, seed, where, geometry: _Geometry) -> list[GeneratedSample]:
        """The outputs of one sample: every map is one 3x4 placement of the parameter set's shared UV points
        (``_shared_posmap``), except refitted rotations, which have their own vertices.

        ``source``: a ``StoredImage``, or an ``_InMemory`` image; its ``rgba(box)`` is asked, once every crop is
        known, for the pixels the crops read (``source_box``). An image that does not decode is reported before
        what the crops' planning found wrong, as when the whole image was decoded first.
        """
        cfg = self.config
        shape = (source.height, source.width)
        try:
            A, b = self.image_pose(params["Pose_Para"], source.height)
            kpt = self._projected_keypoints(geometry.vertices, A, b, shape, where)
        except InputFileError:
            source.rgba()
            raise
        rng = np.random.default_rng(seed) if cfg.perturb else None

        def crops(points_xy):  # (m, k, 2) keypoint sets -> (m, 2, 3) crop matrices, drawing as cfg says
            return crop_matrices(keypoint_boxes(points_xy, cfg.crop_scale, rng, cfg.max_shift, cfg.scale_range),
                                 cfg.resolution)

        plain = crops(kpt[None, :, :2])
        names, matrices = [stem], plain
        if cfg.angles:
            face = keypoint_box(kpt[:, :2])
            rotations = np.stack([rotation_matrix((face.cx, face.cy), angle) for angle in cfg.angles])
            rotated_kpt = apply_affine(rotations, kpt[:, :2])
            crops_rotated = crops(rotated_kpt)
            names += [angle_name(stem, angle) for angle in cfg.angles]
            matrices = np.concatenate([plain, compose(crops_rotated, rotations)])
        rgba = source.rgba(source_box(matrices, cfg.resolution, shape))
        uv_points, z_min = self._uv_points(geometry), self._z_min(geometry.vertices, A, b)
        scales = crop_scales(matrices)
        outputs = []
        for i, (name, matrix_img) in enumerate(zip(names, matrices)):
            if cfg.refit and i > 0:
                # The fitted pose already places the face in the rotated frame: only the crop remains.
                fitted, A_fit, b_fit = self._refit_pose(rotated_kpt[i - 1], source.height)
                posmap = self._placed_posmap(fitted, A_fit, b_fit, crops_rotated[i - 1])
            else:
                posmap = self._shared_posmap(uv_points, A, b, z_min, matrix_img, scales[i])
            outputs.append(self._output(name, rgba, matrix_img, posmap))
        return outputs

    def generate(self, image, params: dict, stem: str, seed: int) -> list[GeneratedSample]:
        """Training pairs from an image and parameters already in memory (as ``read_300wlp_sample`` returns).

        Args:
            image: (h, w, 3) uint8 RGB. params: dict with Pose_Para (7,), Shape_Para (n, 1), Exp_Para (m, 1).
            stem: output name of the plain sample. seed: seed of the crop perturbation.
        Returns:
            [plain sample, then one rotated copy per ``config.angles`` entry].
        Raises:
            InputFileError (a ValueError) naming ``stem``: an image that is not (h, w, 3) uint8
                (``require_rgb_image``), parameters ``read_params`` would refuse in a file (``generation_params``),
                too many parameters for the model (or too few without ``allow_short_params``), face outside the
                image, a depth offset beyond ``MAX_DEPTH_SHIFT``, non-finite or degenerate projection.
        """
        require_rgb_image(image, stem)
        params = generation_params(stem, params)
        coef = self._padded(params, stem, self.config.allow_short_params)
        return self._generate(_InMemory(cv2.cvtColor(image, cv2.COLOR_RGB2RGBA)), params, stem, seed, stem,
                              self._geometry_batch([coef])[0])

    def process(self, image_path, mat_path, seed: int) -> list[GeneratedSample]:
        """Training pairs of one 300W-LP sample (plain first, then ``<stem>_angle_<deg>`` copies).

        Raises:
            InputFileError: see ``read_params``, ``read_image`` and ``generate``.
        """
        result = next(self.process_iter([(image_path, mat_path, seed)]))
        if isinstance(result, InputFileError):
            raise result
        return result

    def process_iter(self, jobs: Sequence[tuple]) -> Iterator[list[GeneratedSample] | InputFileError]:
        """``process`` for several samples with one product for all their vertices (reading the basis once:
        several times faster per sample than one product each on a BFM-sized model), yielding each sample's
        result as soon as it is made, so that a caller can write it before the next image is decoded.

        All ``.mat`` files are read first (the product needs every parameter set); each image is decoded when
        its turn comes. A missing image is reported before the ``.mat`` is read. ``process`` is this for one job.

        Args:
            jobs: sequence of (image_path, mat_path, seed).
        Yields:
            per job, in order, its list of GeneratedSample or the InputFileError it raised.
        Memory: the batch's vertices, 12 bytes per vertex per sample (about 0.64 MB on a BFM-sized model),
        plus one decoded image at a time.
        """
        read: list = []
        for image_path, mat_path, _seed in jobs:
            try:
                require_image_file(image_path)
                params = read_params(mat_path)
                read.append((params, self._padded(params, str(mat_path), self.config.allow_short_params)))
            except InputFileError as exc:
                read.append(exc)
        # popped one by one, so that a sample's UV points are freed with it unless the cache keeps them
        geometries = self._geometry_batch([d[1] for d in read if not isinstance(d, InputFileError)])[::-1]
        for (image_path, mat_path, seed), d in zip(jobs, read):
            if isinstance(d, InputFileError):
                yield d
                continue
            geometry = geometries.pop()
            try:
                image = open_image(image_path, self.config.max_pixels, limit_flag="--max-pixels")
                stem = os.path.splitext(os.path.basename(image_path))[0]
                yield self._generate(image, d[0], stem, seed, str(mat_path), geometry)
            except InputFileError as exc:
                yield exc

    def process_many(self, jobs: Sequence[tuple]) -> list[list[GeneratedSample] | InputFileError]:
        """``process_iter`` collected into a list: per job, in order, its outputs or its InputFileError."""
        return list(self.process_iter(jobs))
