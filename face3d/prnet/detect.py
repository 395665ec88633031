"""Optional face detection with dlib (``pip install dlib-bin face_recognition_models``; never downloaded here).

PRNet's demo finds faces with dlib's CNN detector (``mmod_human_face_detector.dat``) and crops with the box rule
in ``inference.box_crop``. This module uses that CNN model when the ``face_recognition_models`` package provides
it, and dlib's built-in HOG frontal-face detector otherwise (no model file needed). Without dlib every entry point
raises an ImportError that names the packages to install. ``DlibLandmarker`` adds dlib's 68-point iBUG shape
predictor (``shape_predictor_68_face_landmarks.dat`` from ``face_recognition_models``) on the best face.
"""
import numpy as np

from face3d.prnet.face_crop import as_rgb_uint8

__all__ = ["DetectorUnavailable", "DlibDetector", "DlibLandmarker", "detector_available"]

# each command adds its own way around a detector (face3d demo: --box or --landmarks; face3d fit: --landmarks)
_INSTALL_HINT = ("face detection needs dlib: pip install dlib-bin (and face_recognition_models for the CNN "
                 "detector PRNet uses)")


class DetectorUnavailable(ImportError):
    """dlib (or the requested detector model) is not installed."""


def detector_available():
    """True when dlib can be imported."""
    try:
        import dlib  # noqa: F401
    except ImportError:
        return False
    return True


def _cnn_model_path():
    try:
        import face_recognition_models
    except ImportError:
        return None
    return face_recognition_models.cnn_face_detector_model_location()


class DlibDetector:
    """dlib face detector returning boxes (x0, y0, x1, y1) in image pixels.

    Args:
        kind: "auto" (CNN when face_recognition_models is installed, else HOG), "cnn" or "hog".
        upsample: times dlib upsamples the image before detecting (finds smaller faces, slower).
    Raises:
        DetectorUnavailable: dlib missing, or kind="cnn" without face_recognition_models.
    """

    def __init__(self, kind="auto", upsample=1):
        if kind not in ("auto", "cnn", "hog"):
            raise ValueError(f"kind must be 'auto', 'cnn' or 'hog', got {kind!r}")
        try:
            import dlib
        except ImportError as exc:
            raise DetectorUnavailable(_INSTALL_HINT) from exc
        cnn_path = _cnn_model_path() if kind in ("auto", "cnn") else None
        if kind == "cnn" and cnn_path is None:
            raise DetectorUnavailable("the CNN detector needs its model from the face_recognition_models package: "
                                      "pip install face_recognition_models")
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
        DetectorUnavailable: dlib or face_recognition_models missing.
    """

    def __init__(self, kind="auto", upsample=1):
        self.detector = DlibDetector(kind, upsample)
        try:
            import face_recognition_models
        except ImportError as exc:
            raise DetectorUnavailable("68-landmark detection needs dlib's shape predictor from the "
                                      "face_recognition_models package: pip install face_recognition_models") from exc
        import dlib

        self._rectangle = dlib.rectangle
        self._predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())

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
