"""The reconstruction steps around the network, run in worker threads (numpy and OpenCV release the GIL).

``prepare`` finds the face (the request's box, its 68 landmarks, or the detector) and crops it for the network;
``describe`` turns the network's output into the answer: 68 landmarks, head pose, the box, and on request the
dense mesh (OBJ, PLY or PRNet-keras .mat) and the UV texture (PNG). Both use ``face3d.prnet.inference.PRN``.
"""
import base64
import threading
from dataclasses import dataclass

import numpy as np

from face3d.prnet.inference import restore_map
from face3d.prnet.readout import RemapLimitError
from face3d.serve.codecs import MESH_MEDIA_TYPES, encode_mesh, encode_png, keypoint_vertices
from face3d.serve.errors import ApiError

__all__ = ["Detector", "Prepared", "Reconstructor"]


class Detector:
    """A face detector shared by the worker threads (calls are serialised: dlib's detectors keep state).

    Args:
        detector: an object with ``detect(image) -> (boxes (k, 4), scores (k,))``, the most confident first
            (``face3d.prnet.detect.DlibDetector``).
    """

    def __init__(self, detector):
        self._detector, self._lock = detector, threading.Lock()
        self.kind = getattr(detector, "kind", type(detector).__name__)

    def best_box(self, image):
        """The most confident face box (x0, y0, x1, y1), or None when no face is found."""
        with self._lock:
            boxes, _ = self._detector.detect(image)
        return None if not len(boxes) else tuple(float(v) for v in boxes[0])


@dataclass(frozen=True)
class Prepared:
    """A face ready for the network.

    Attributes:
        crop: ``inference.FaceCrop`` (``crop.image`` is the network input).
        box: (x0, y0, x1, y1) image pixels: the request's box, the detector's, or the landmarks' bounding box.
        source: 'box', 'landmarks' or 'detector'.
    """
    crop: object
    box: tuple
    source: str


class Reconstructor:
    """Pre- and post-processing of one model (thread-safe: it only reads the PRN's arrays).

    Args:
        prn: ``face3d.prnet.inference.PRN`` (its canonical face is built here, once).
        detector: Detector, or None when none is installed.
        detector_missing: why there is no detector (the 422 message when a request needs one).
    """

    def __init__(self, prn, detector=None, detector_missing="no face detector is installed"):
        self.prn, self.detector, self.detector_missing = prn, detector, detector_missing
        _ = prn.canonical  # the mean face for the pose, built before the first request
        self.kpt_vertices = keypoint_vertices(prn.uv.uv_kpt_ind, prn.uv.face_ind, prn.resolution)

    def prepare(self, image, box=None, landmarks=None):
        """Crop the face of an (h, w, 3) uint8 RGB image from ``box`` (x0, y0, x1, y1), 68 ``landmarks``
        ((68, 2) pixels) or, without either, the detector's best box.

        Returns:
            Prepared.
        Raises:
            ApiError: 422 ``face_locator_missing`` (no box, landmarks nor detector), 422 ``no_face`` (the
                detector found none), 422 ``invalid_box`` / ``invalid_landmarks`` (the box, or the landmarks' box,
                lies outside the image; the landmarks span no area).
        """
        if box is None and landmarks is not None:
            try:
                crop = self.prn.crop(image, landmarks=landmarks)
            except ValueError as exc:  # "landmarks span no area ..." or "landmarks' box: ... lies outside ..."
                raise ApiError(422, "invalid_landmarks", str(exc)) from None
            box = (*np.min(landmarks, axis=0).tolist(), *np.max(landmarks, axis=0).tolist())
            return Prepared(crop, tuple(float(v) for v in box), "landmarks")
        source = "box"
        if box is None:
            if self.detector is None:
                raise ApiError(422, "face_locator_missing", "no face box: send box (x0 y0 x1 y1) or landmarks "
                                                            f"(68 points); {self.detector_missing}")
            box = self.detector.best_box(image)
            if box is None:
                raise ApiError(422, "no_face", f"the {self.detector.kind} face detector found no face in the image; "
                                               "send box or landmarks")
            source = "detector"
        try:
            crop = self.prn.crop(image, box=box)
        except ValueError as exc:  # "box: ... lies outside the W x H image"
            if source == "detector":  # not the client's box
                raise ApiError(422, "no_face", f"the {self.detector.kind} face detector found no usable face "
                                               f"({exc}); send box or landmarks") from None
            raise ApiError(422, "invalid_box", str(exc)) from None
        return Prepared(crop, tuple(float(v) for v in box), source)

    def describe(self, image, prepared, output, mesh=None, texture=False):
        """The answer for one face from the network's normalised output map.

        Args:
            image: (h, w, 3) uint8 RGB. prepared: Prepared. output: (S, S, 3) network output.
            mesh: None, 'obj', 'ply' or 'mat'. texture: add the UV texture as a PNG.
        Returns:
            dict: ``box``, ``box_source``, ``crop`` (centre, size in pixels), ``landmarks`` (68 x [x, y, z]
            image pixels), ``pose`` (``angles`` pitch/yaw/roll degrees, ``angles_3ddfa`` radians, ``camera``
            with ``scale``, ``rotation`` (3 x 3) and ``translation`` (2) such that image (x, -y) = scale x
            rotation @ canonical + translation), or None with ``pose_error`` when the prediction is degenerate;
            ``mesh`` (format, media_type, vertices, triangles, base64) and ``texture`` (format, size, base64)
            when asked.
        Raises:
            ValueError: the network's output holds NaN or inf (the model's failure: answered 500 ``internal``).
            ApiError: 422 ``invalid_box`` / ``invalid_landmarks`` when the map in image pixels is not finite, or
                when a texture is asked for a face wider or taller than the texture read-out takes
                (``readout.RemapLimitError``).
        """
        prn, crop = self.prn, prepared.crop
        if not np.all(np.isfinite(output)):
            raise ValueError("the network's output map holds NaN or inf")
        pos = restore_map(output, crop.matrix, crop.resolution)
        field = "landmarks" if prepared.source == "landmarks" else "box"
        if not np.all(np.isfinite(pos)):  # a face far too large or small for float32 image coordinates
            raise ApiError(422, f"invalid_{field}", f"{field}: the face's position map in image pixels is not finite "
                                                    f"(crop side {crop.box.size:g} pixels); send a face within the "
                                                    "image")
        landmarks = prn.get_landmarks(pos)
        vertices = prn.get_vertices(pos)
        answer = {"box": list(prepared.box), "box_source": prepared.source,
                  "crop": {"center": [crop.box.cx, crop.box.cy], "size": crop.box.size},
                  "landmarks": landmarks.tolist()}
        try:
            pose = prn.estimate_pose(vertices)
            answer["pose"] = {"angles": [float(a) for a in pose.angles], "angles_3ddfa": list(pose.angles_3ddfa),
                              "camera": {"scale": pose.scale, "rotation": pose.R.tolist(),
                                         "translation": pose.t2d.tolist()}}
        except ValueError as exc:  # a collapsed prediction has no pose; the landmarks are still the answer
            answer["pose"], answer["pose_error"] = None, str(exc)
        if mesh is not None:
            colors = prn.get_colors(image, vertices)
            data = encode_mesh(mesh, vertices, prn.triangles, image.shape[0], colors, self.kpt_vertices)
            answer["mesh"] = {"format": mesh, "media_type": MESH_MEDIA_TYPES[mesh], "vertices": len(vertices),
                              "triangles": len(prn.triangles), "base64": base64.b64encode(data).decode("ascii")}
        if texture:
            try:
                png = encode_png(prn.get_texture(image, pos))
            except RemapLimitError as exc:  # the request's face, not the server: OpenCV's remap takes < 32767
                raise ApiError(422, f"invalid_{field}", f"{field}: {exc}") from None
            answer["texture"] = {"format": "png", "size": prn.resolution,
                                 "base64": base64.b64encode(png).decode("ascii")}
        return answer
