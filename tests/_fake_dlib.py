"""Stand-ins for dlib and the face_recognition_models package, to test the detector paths of ``face3d.prnet.detect``
where neither is installed (dlib-bin has no wheel for every platform)."""
import sys
import types

CNN_MODEL_FILE = "mmod_human_face_detector.dat"  # the package's files that face3d.prnet.detect looks for
SHAPE_PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
# face_recognition_models 0.3.0's __init__ imports pkg_resources, which setuptools >= 82 and Python 3.12+ venvs lack
_INIT_WITHOUT_PKG_RESOURCES = "raise ModuleNotFoundError(\"No module named 'pkg_resources'\", name='pkg_resources')\n"


def install_fake_dlib(monkeypatch):
    """Put a dlib stand-in into ``sys.modules``: its detectors find no face. Returns the list it appends
    (constructor name, model file) to as a detector or shape predictor is built."""
    built = []

    def cnn_face_detection_model_v1(path):
        built.append(("cnn_face_detection_model_v1", path))
        return lambda image, upsample: []

    def shape_predictor(path):
        built.append(("shape_predictor", path))
        return lambda image, rectangle: None

    def get_frontal_face_detector():
        built.append(("get_frontal_face_detector", None))
        return types.SimpleNamespace(run=lambda image, upsample, threshold: ([], [], []))

    dlib = types.SimpleNamespace(cnn_face_detection_model_v1=cnn_face_detection_model_v1,
                                 shape_predictor=shape_predictor, get_frontal_face_detector=get_frontal_face_detector,
                                 rectangle=lambda *corners: corners)
    monkeypatch.setitem(sys.modules, "dlib", dlib)
    return built


def install_models_package(monkeypatch, folder, files=(CNN_MODEL_FILE, SHAPE_PREDICTOR_FILE)):
    """Make ``folder/face_recognition_models`` the importable face_recognition_models: its ``__init__`` fails as
    0.3.0's does without pkg_resources, its ``models/`` folder holds ``files`` (empty). Returns that folder."""
    models = folder / "face_recognition_models" / "models"
    models.mkdir(parents=True)
    (models.parent / "__init__.py").write_text(_INIT_WITHOUT_PKG_RESOURCES)
    for name in files:
        (models / name).write_bytes(b"")
    monkeypatch.delitem(sys.modules, "face_recognition_models", raising=False)
    monkeypatch.syspath_prepend(str(folder))
    return models
