"""Optional face detection with dlib (``pip install 'face3d[detect]'``; never downloaded here).

PRNet's demo finds faces with dlib's CNN detector (``mmod_human_face_detector.dat``) and crops with the box rule
in ``inference.box_crop``. This module uses that CNN model when the ``face_recognition_models`` package provides
it, and dlib's built-in HOG frontal-face detector otherwise (no model file needed). ``DlibLandmarker`` adds dlib's
68-point iBUG shape predictor (``shape_predictor_68_face_landmarks.dat``) on the best face. The model files are
found in the package's folder without importing it: its ``__init__`` imports ``pkg_resources``, which setuptools
>= 82 and Python 3.12+ venvs lack. What cannot be built raises ``DetectorUnavailable`` naming the cause.
"""
import importlib.util
import logging
from pathlib import Path

import numpy as np

from face3d.prnet.face_crop import as_rgb_uint8
from face3d.utils.errors import install_command

__all__ = ["DetectorUnavailable", "DlibDetector", "DlibLandmarker"]

logger = logging.getLogger(__name__)

_INSTALL_HINT = install_command("detect")  # dlib-bin and face_recognition_models
MODELS_PACKAGE = "face_recognition_models"
CNN_MODEL_FILE = "mmod_human_face_detector.dat"
SHAPE_PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


class DetectorUnavailable(ImportError):
    """dlib or the requested detector model cannot be used; the message says why and what to install."""


def _import_dlib():
    """The ``dlib`` module; DetectorUnavailable naming why it cannot be imported."""
    try:
        import dlib
    except ImportError as exc:
        missing = isinstance(exc, ModuleNotFoundError) and exc.name == "dlib"
        cause = "not installed" if missing else f"it fails to import: {exc}"
        raise DetectorUnavailable(f"face detection needs dlib ({cause}): {_INSTALL_HINT}") from exc
    return dlib


def _model_file(name, needed_by):
    """Path of dlib model file ``name`` in the ``models/`` folder of the ``face_recognition_models`` package, found
    through the package's import spec without running its ``__init__``.

    Raises:
        DetectorUnavailable: "<needed_by> needs <name> from the face_recognition_models package (<cause>): <install
            hint>", the cause being that the package is not installed or that its ``models/`` folder lacks ``name``.
    """
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    folders = [Path(folder) / "models" for folder in (spec.submodule_search_locations or [])] if spec else []
    for path in (folder / name for folder in folders):
        if path.is_file():
            return str(path)
    cause = f"not in {', '.join(map(str, folders))}" if folders else "not installed"
    raise DetectorUnavailable(f"{needed_by} needs {name} from the {MODELS_PACKAGE} package ({cause}): {_INSTALL_HINT}")


class DlibDetector:
    """dlib face detector returning boxes (x0, y0, x1, y1) in image pixels.

    Args:
        kind: "auto" (CNN when face_recognition_models is installed, else HOG), "cnn" or "hog".
        upsample: times dlib upsamples the image before detecting (finds smaller faces, slower).
    Raises:
        DetectorUnavailable: dlib missing, or kind="cnn" and the CNN model file not found (``_model_file``).
    """

    def __init__(self, kind="auto", upsample=1):
        if kind not in ("auto", "cnn", "hog"):
            raise ValueError(f"kind must be 'auto', 'cnn' or 'hog', got {kind!r}")
        dlib = _import_dlib()
        cnn_path = None
        if kind in ("auto", "cnn"):
            try:
                cnn_path = _model_file(CNN_MODEL_FILE, "the CNN detector")
            except DetectorUnavailable as exc:
                if kind == "cnn":
                    raise
                logger.info("dlib's HOG face detector, not the CNN: %s", exc)
        self.kind = "cnn" if cnn_path is not None else "hog"
        self.upsample = int(upsample)
        self._detector = (dlib.cnn_face_detection_model_v1(cnn_path) if self.kind == "cnn"
                          else dlib.get_frontal_face_detector())

    def detect(self, image):
        """Faces in an image, the most confident first.

        Args:
            image: (h, w, 3) RGB, uint8 or float in [0, 1] (or grey, or RGBA: ``face_crop.as_rgb_uint8``).
        Returns:
            (boxes (k, 4) float64 (x0, y0, x1, y1), scores (k,) float64 detector confidences); k = 0 when no face
            is found.
        """
        image = as_rgb_uint8(image)
        if self.kind == "cnn":
            found = self._detector(image, self.upsample)
            rects, scores = [d.rect for d in found], [d.confidence for d in found]
        else:
            rects, scores, _ = self._detector.run(image, self.upsample, 0.0)
        boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], dtype=np.float64)
        scores = np.asarray(scores, dtype=np.float64)
        if not len(boxes):
            return np.zeros((0, 4), dtype=np.float64), np.zeros(0, dtype=np.float64)
        order = np.argsort(-scores, kind="stable")
        return boxes[order], scores[order]


class DlibLandmarker:
    """The 68 iBUG landmarks of the most confident face: ``DlibDetector`` boxes, then dlib's 68-point shape
    predictor (the model file of the ``face_recognition_models`` package).

    Args:
        kind, upsample: of the ``DlibDetector``.
    Raises:
        DetectorUnavailable: dlib missing, or the shape predictor's model file not found (``_model_file``).
    """

    def __init__(self, kind="auto", upsample=1):
        self.detector = DlibDetector(kind, upsample)
        predictor_path = _model_file(SHAPE_PREDICTOR_FILE, "68-landmark detection (dlib's shape predictor)")
        import dlib  # DlibDetector has imported it

        self._rectangle = dlib.rectangle
        self._predictor = dlib.shape_predictor(predictor_path)

    def landmarks(self, image):
        """The 68 landmarks of the most confident face in an (h, w, 3) RGB image, uint8 or float in [0, 1] (as
        ``DlibDetector.detect`` takes).

        Returns:
            (68, 2) float64 x, y image pixels (y down), or None when no face is found.
        """
        image = as_rgb_uint8(image)
        boxes, _ = self.detector.detect(image)
        if not len(boxes):
            return None
        x0, y0, x1, y1 = (int(round(v)) for v in boxes[0])
        shape = self._predictor(image, self._rectangle(x0, y0, x1, y1))
        return np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], dtype=np.float64)
