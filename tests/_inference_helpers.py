"""Shared pieces of the inference and evaluation tests: models with known outputs and AFLW2000-3D-format samples
rendered from the embedded default model."""
import shutil
from pathlib import Path

import cv2
import numpy as np
import scipy.io as sio

from face3d.contract import POSMAP_SCALE
from face3d.prnet.predictor import Predictor

ASTRONAUT_BOX = (175.0, 76.0, 265.0, 166.0)  # dlib's HOG detection of the face in skimage.data.astronaut()


def randomize_batch_norms(model, seed=0):
    """Give every batch norm random statistics, scale and offset (an untrained resfcn256 outputs 0.5 everywhere,
    which would hide most errors)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n).astype(np.float32), rng.normal(0, 0.3, n).astype(np.float32),
                               rng.normal(0, 0.1, n).astype(np.float32), rng.uniform(0.5, 2.0, n).astype(np.float32)])
    return model


def constant_onnx(path, normalised_map):
    """Write an ONNX model whose output is ``normalised_map`` (S, S, 3) for every input image:
    ``output = input * 0 + map`` (input ``input`` [N, S, S, 3], output ``output``)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    s = normalised_map.shape[0]
    graph = helper.make_graph(
        [helper.make_node("Mul", ["input", "zero"], ["zeroed"]),
         helper.make_node("Add", ["zeroed", "map"], ["output"])],
        "constant_map",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", s, s, 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", s, s, 3])],
        [numpy_helper.from_array(np.zeros((), np.float32), "zero"),
         numpy_helper.from_array(np.asarray(normalised_map, np.float32)[None], "map")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return Path(path)


class OraclePredictor(Predictor):
    """Returns the ground-truth map of the known crop nearest to each input (mean absolute difference): the crops
    a test registers with ``add`` and those evaluation takes agree to about one grey level, not bit for bit."""

    backend = "oracle"

    def __init__(self, resolution):
        super().__init__(resolution)
        self.crops, self.maps = [], []

    def add(self, crop_uint8, posmap):
        self.crops.append(np.asarray(crop_uint8, np.float32) / np.float32(255))
        self.maps.append(np.asarray(posmap, np.float32) / np.float32(POSMAP_SCALE * self.input_size))

    def _run(self, images):
        out = []
        for image in images:
            distance = [np.abs(image - crop).mean() for crop in self.crops]
            nearest = int(np.argmin(distance))
            if distance[nearest] > 2.0 / 255:
                raise AssertionError(f"no registered crop matches (nearest differs by {distance[nearest]:.4f})")
            out.append(self.maps[nearest])
        return np.stack(out)


def aflw_from_synthetic(mats, folder, model):
    """Copy synthetic 300W-LP samples into ``folder`` in the AFLW2000-3D format: the ``.mat`` gains ``pt3d_68``
    (3, 68), the model's 68 keypoint vertices placed by Pose_Para (image x, y (y down), z). Returns the folder."""
    from face3d.trainset.sample import TrainsetGenerator

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for mat_path in mats:
        mat_path = Path(mat_path)
        mat = {k: v for k, v in sio.loadmat(str(mat_path)).items() if not k.startswith("__")}
        image = mat_path.with_suffix(".jpg")
        h = cv2.imread(str(image)).shape[0]
        vertices = model.generate_vertices(mat["Shape_Para"], mat["Exp_Para"]).astype(np.float64)
        A, b = TrainsetGenerator.image_pose(mat["Pose_Para"], h)
        mat["pt3d_68"] = (vertices[np.asarray(model.kpt_ind)] @ A.T + b).T
        sio.savemat(str(folder / mat_path.name), mat)
        shutil.copy(image, folder / image.name)
    return folder
