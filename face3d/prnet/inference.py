"""PRNet inference: crop a face, predict its UV position map, bring it back to the image, and read the 3D face.

The API follows PRNet's ``api.PRN`` (Feng et al., ECCV 2018, github.com/YadiraF/PRNet): ``PRN.process`` returns
the position map in original image coordinates, and ``get_landmarks`` / ``get_vertices`` / ``get_colors`` read it.
Everything after the network is numpy + OpenCV + ``face3d.mesh`` (no TensorFlow). The steps live in ``face_crop``,
``readout``, ``depth``, ``pose``, ``serialization`` and ``drawing``; their names are importable from here too.

Coordinates: image pixels, x right, y down, pixel centres at integers; z towards the viewer (larger is nearer), in
the same pixel units, with an arbitrary origin (the training maps put the face's deepest vertex at 0).
"""
import logging
from pathlib import Path

import numpy as np

from face3d.contract import BOX_SCALE, BOX_SHIFT, LANDMARK_SCALE
from face3d.morphable_model.morphable_model import require_model_file
from face3d.prnet.depth import depth_image, vertex_visibility
from face3d.prnet.drawing import draw_landmarks, mesh_overlay
from face3d.prnet.face_crop import (
    FaceCrop,
    as_rgb_uint8,
    box_crop,
    crop_face,
    face_crop_box,
    landmark_crop,
    restore_map,
)
from face3d.prnet.pose import PoseEstimate, canonical_vertices, estimate_pose
from face3d.prnet.predictor import load_predictor
from face3d.prnet.prnet_checkpoint import uv_data_for_model
from face3d.prnet.readout import map_at_resolution, sample_colors, texture_from_map, vertices_from_map
from face3d.prnet.serialization import write_obj
from face3d.resources import default_uv_data_dir
from face3d.trainset.posmap import keypoints_from_map
from face3d.trainset.uv_layout import UVData, load_uv_data, load_uv_model

__all__ = ["BOX_SCALE", "BOX_SHIFT", "LANDMARK_SCALE", "DEFAULT_UV_DATA", "FaceCrop", "PoseEstimate", "PRN",
           "as_rgb_uint8", "box_crop", "landmark_crop", "face_crop_box", "crop_face", "restore_map",
           "vertices_from_map", "sample_colors", "texture_from_map", "vertex_visibility", "depth_image",
           "canonical_vertices", "estimate_pose", "write_obj", "draw_landmarks", "mesh_overlay"]

DEFAULT_UV_DATA = default_uv_data_dir()  # the packaged uv-data of the embedded default model, at 256

logger = logging.getLogger(__name__)


class PRN:
    """PRNet's inference object: a network plus the UV data that reads its maps.

    Args:
        model: anything ``predictor.load_predictor`` takes (a ``.keras``/``.h5``/``.pb``/``.onnx`` path, a
            SavedModel folder, a keras.Model, a Predictor).
        uv_data: UV-data folder or UVData; default ``prnet_checkpoint.uv_data_for_model``: PRNet's ``Data/uv-data``
            for PRNet's released checkpoint (an error for a ``.keras`` file converted from it), else
            ``DEFAULT_UV_DATA`` (the packaged uv-data of the embedded default model, at 256).
        bfm: the morphable model whose mean face is the canonical face for ``estimate_pose``: a MorphableModel,
            a ``BFM.mat`` path, or None for the embedded default (loaded once, on first use of ``canonical``; must be
            the model the UV data was built for). Not read when the UV data has its own canonical face
            (``canonical_vertices.npy``): a path is then only checked to be a file, and a warning says it is unused.
        predictor_options: passed to ``load_predictor``.

    Attributes:
        predictor, uv (UVData), resolution (R), input_size (S), triangles ((t, 3) int32 over the vertices).
    """

    def __init__(self, model, uv_data=None, bfm=None, **predictor_options):
        uv_data = uv_data_for_model(model, uv_data)  # before the network: a wrong layout fails fast
        self.uv = uv_data if isinstance(uv_data, UVData) else load_uv_data(uv_data)
        self._uv_source = "uv-data" if isinstance(uv_data, UVData) else str(uv_data)
        if isinstance(bfm, (str, Path)):
            require_model_file(Path(bfm))  # a misspelt path is refused even where it would not be read
            if self.uv.canonical_vertices is not None:
                logger.warning("--bfm %s is not read: %s has its own canonical face for the pose "
                               "(canonical_vertices.npy)", bfm, self._uv_source)
        self.predictor = load_predictor(model, **predictor_options)
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
        """FaceCrop of ``image`` from a detector ``box`` (x0, y0, x1, y1) or from the 68 iBUG ``landmarks`` (one of
        them; ``face_crop.face_crop_box``).

        Raises:
            ValueError: an image ``as_rgb_uint8`` refuses, a box of other than 4 numbers, not 68 landmarks (fewer
            points: give their face's box instead), or a face lying outside the image (its crop would be black).
        """
        image = as_rgb_uint8(image)
        crop_box = face_crop_box(image.shape[1], image.shape[0], box=box, landmarks=landmarks)
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
            image: (h, w, 3) RGB, uint8 or float in [0, 1] (a float image in 0-255, as PRNet's ``process``
                took, is a ValueError: pass uint8 or divide by 255). box: detector box (x0, y0, x1, y1), or
                landmarks: the 68 iBUG landmarks (68, 2|3) / (2|3, 68); either inside the image (``crop``).
        Returns:
            (R, R, 3) float32: image x, y and z of the face surface at every UV pixel.
        """
        return self.predict_crops([self.crop(image, box=box, landmarks=landmarks)])[0]

    # ------------------------------------------------------------------------------------------- reading the map
    def get_landmarks(self, pos):
        """(68, 3) float64 landmarks of an (R, R, 3) position map (``keypoints_from_map`` at ``uv_kpt_ind``);
        ValueError naming R for a map of another shape (``map_at_resolution``)."""
        return keypoints_from_map(map_at_resolution(pos, self.resolution), self.uv.uv_kpt_ind)

    def get_vertices(self, pos):
        """(n, 3) float32 dense vertices of an (R, R, 3) position map (at ``face_ind``); ValueError naming R for a
        map of another shape (``map_at_resolution``)."""
        return vertices_from_map(map_at_resolution(pos, self.resolution), self.uv.face_ind)

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
        """(n, 3) float32 canonical face at ``face_ind``, built on first use: the uv-data's
        ``canonical_vertices.npy`` when present, else the mean face of ``bfm`` (``pose.canonical_vertices``).

        Raises:
            FileNotFoundError / InputFileError (a ValueError): ``bfm`` missing, unreadable, without
            ``BFM_UV.mat``, or not the model the uv-data was built for (the message names the file).
        """
        if self._canonical is None:
            if self.uv.canonical_vertices is None and (self._bfm is None or isinstance(self._bfm, (str, Path))):
                # kept: a model that does not fit the uv-data is not read again on the next call
                self._bfm = load_uv_model(None if self._bfm is None else str(self._bfm))
            self._canonical = canonical_vertices(self._bfm, self.uv, source=self._uv_source)
        return self._canonical

    def estimate_pose(self, vertices):
        """PoseEstimate of dense vertices (``estimate_pose`` against ``canonical``)."""
        return estimate_pose(vertices, self.canonical)

    def save_obj(self, path, vertices, h, colors=None, texture=None):
        """OBJ of the face with per-vertex colours or a texture map (``write_obj``); returns its Path.

        ``colors`` (n, 3) and ``texture`` (R, R, 3) are uint8 or floats in [0, 1]: floats above 1 (0-255) are a
        ValueError and write nothing."""
        return write_obj(path, vertices, self.triangles, h, colors=colors, texture=texture, uv_data=self.uv)
