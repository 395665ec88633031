"""``face3d serve``: a real uvicorn process on 127.0.0.1 with a tiny ONNX model, every route and error over httpx;
the batcher, the image-header reader and an application whose model fails (Starlette's TestClient) in-process.

The model maps a 32 x 32 crop to ``map + 0.02 x crop`` (a fixed face-like map plus a trace of the input), so its
answers depend on the request and are compared with ``face3d.prnet.inference.PRN`` run here on the same file.
A variant of the model is slow on white crops only, for the processing timeout; another server runs two worker
processes on a small UV layout of its own; two more, with a bad model or UV data, must not start. The servers run
with ``import tensorflow`` and ``import keras`` made to fail. Budget: about a minute on the 2 shared development
cores (two servers started together; the OBJ writer alone takes seconds, the slow model about 4).
"""
import asyncio
import base64
import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from _fake_dlib import CNN_MODEL_FILE, install_fake_dlib
from _image_files import png_header, with_exif_orientation

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from face3d.mesh import io as mesh_io  # noqa: E402
from face3d.serve.batching import BatcherClosed, DynamicBatcher  # noqa: E402
from face3d.serve.codecs import encode_mesh, parse_box  # noqa: E402
from face3d.serve.errors import ApiError  # noqa: E402
from face3d.serve.limits import Limits, check_image, image_header  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32
BOX = (175.0, 76.0, 265.0, 166.0)  # the astronaut's face


# ------------------------------------------------------------------------------------------------ fixtures

def _tiny_onnx(path, slow_products=0):
    """An ONNX model (input/output [N, 32, 32, 3]): output = map + 0.02 x input, the map a tilted bump.

    With ``slow_products`` > 0, a batch of all-white crops (every input value 1) first runs that many products
    of 512 x 512 matrices (a Loop whose trip count is floor(min(input)) x slow_products; its result, bounded by
    tanh, enters the output multiplied by 0): a model that is slow on one kind of request only.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    bump = np.clip(1 - ((xs - 15.5) ** 2 + (ys - 15.5) ** 2) / 16 ** 2, 0, 1)
    face = np.stack([(xs + 0.5) / SIZE * 0.7 + 0.1, (ys + 0.5) / SIZE * 0.7 + 0.1 + 0.02 * xs / SIZE, 0.2 * bump], -1)
    nodes = [helper.make_node("Mul", ["input", "gain"], ["scaled"])]
    initializers = [numpy_helper.from_array(np.full((), 0.02, np.float32), "gain"),
                    numpy_helper.from_array(face[None].astype(np.float32), "map")]
    if slow_products:
        body = helper.make_graph(
            [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
             helper.make_node("MatMul", ["state_in", "weights"], ["product"]),
             helper.make_node("Tanh", ["product"], ["state_out"])], "slow_body",
            [helper.make_tensor_value_info("i", TensorProto.INT64, []),
             helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
             helper.make_tensor_value_info("state_in", TensorProto.FLOAT, [512, 512])],
            [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
             helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [512, 512])])
        nodes += [helper.make_node("ReduceMin", ["input"], ["lowest"], keepdims=0),
                  helper.make_node("Floor", ["lowest"], ["white"]),
                  helper.make_node("Mul", ["white", "products"], ["trips_float"]),
                  helper.make_node("Cast", ["trips_float"], ["trips"], to=TensorProto.INT64),
                  helper.make_node("Loop", ["trips", "", "state"], ["looped"], body=body),
                  helper.make_node("ReduceSum", ["looped"], ["total"], keepdims=0),
                  helper.make_node("Mul", ["total", "zero"], ["nothing"]),
                  helper.make_node("Add", ["map", "nothing"], ["slow_map"])]
        rng = np.random.default_rng(0)
        initializers += [numpy_helper.from_array(np.full((), slow_products, np.float32), "products"),
                         numpy_helper.from_array(np.zeros((), np.float32), "zero"),
                         numpy_helper.from_array(rng.normal(0, 0.05, (512, 512)).astype(np.float32), "weights"),
                         numpy_helper.from_array(rng.normal(0, 1, (512, 512)).astype(np.float32), "state")]
    nodes.append(helper.make_node("Add", ["scaled", "slow_map" if slow_products else "map"], ["output"]))
    graph = helper.make_graph(
        nodes, "tiny_face", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", SIZE, SIZE, 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", SIZE, SIZE, 3])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A ``python -m face3d.serve`` process on 127.0.0.1 with TensorFlow and Keras unimportable (``wait`` until it
    serves)."""

    def __init__(self, folder, model, *options):
        blockers = folder / "no_tensorflow"
        for name in ("tensorflow", "keras"):
            (blockers / name).mkdir(parents=True, exist_ok=True)
            (blockers / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked in this test')\n")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blockers), str(ROOT)])}
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / f"server-{self.port}.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "face3d.serve", "--model", str(model), "--host", "127.0.0.1",
                 "--port", str(self.port), *map(str, options)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait(self, seconds=120):
        """Return once ``/health`` answers (the model is loaded); fail with the log after ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError(f"the server did not start in {seconds} s:\n{self.log.read_text()}")

    def stop(self):
        """SIGTERM, then the exit status (killed after 30 s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return _tiny_onnx(tmp_path_factory.mktemp("serve") / "tiny.onnx")


@pytest.fixture(scope="module")
def servers(tmp_path_factory, model_path, request):
    """The main server and one with a 2 s timeout and one request in flight at most, started together (the
    reference PRN loads here meanwhile)."""
    folder = tmp_path_factory.mktemp("server")
    main = Server(folder, model_path, "--max-batch", 4, "--max-delay-ms", 500, "--max-bytes", 1_000_000,
                  "--max-pixels", 1_000_000, "--timeout-s", 60)
    strict = Server(folder, model_path, "--timeout-s", 2, "--max-in-flight", 1)
    try:
        request.getfixturevalue("prn")
        yield {"main": main.wait(), "strict": strict.wait()}
    finally:
        codes = main.stop(), strict.stop()
    assert codes == (0, 0), main.log.read_text() + strict.log.read_text()


@pytest.fixture(scope="module")
def server(servers):
    return servers["main"]


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def prn(model_path):
    from face3d.prnet.inference import PRN
    return PRN(model_path)


@pytest.fixture(scope="module")
def photo():
    """skimage's astronaut (512 x 512 RGB) and its PNG bytes."""
    from skimage import data
    image = data.astronaut()
    return image, cv2.imencode(".png", image[..., ::-1])[1].tobytes()


def _post(client, image_bytes, query="", **fields):
    return client.post(f"/v1/reconstruct{query}", files={"image": ("face.png", image_bytes, "image/png")},
                       data={k: v for k, v in fields.items()})


def _expect_error(response, status, code, *words):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code, body
    for word in words:
        assert word in body["detail"], body


# ------------------------------------------------------------------------------------------------ routes

def test_health_metrics_and_docs(client):
    health = client.get("/health").json()
    assert (health["backend"], health["input_size"], health["resolution"], health["model_batch_size"]) == \
        ("onnx", SIZE, 256, None)
    assert health["model"].endswith("tiny.onnx") and health["status"] == "ok"
    assert health["max_batch"] == 4 and health["limits"]["max_pixels"] == 1_000_000
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/reconstruct"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
    assert {"requests", "errors", "latency_ms", "batches", "in_flight"} <= set(client.get("/metrics").json())


def test_reconstruct_matches_the_library(client, prn, photo):
    from face3d.prnet.inference import box_crop
    image, png = photo
    answer = _post(client, png, box=" ".join(map(str, BOX))).json()
    pos = prn.process(image, box=BOX)
    np.testing.assert_allclose(answer["landmarks"], prn.get_landmarks(pos), atol=1e-4)
    pose = prn.estimate_pose(prn.get_vertices(pos))
    np.testing.assert_allclose(answer["pose"]["angles"], pose.angles, atol=1e-6)
    np.testing.assert_allclose(answer["pose"]["angles_3ddfa"], pose.angles_3ddfa, atol=1e-8)
    np.testing.assert_allclose(answer["pose"]["camera"]["rotation"], pose.R, atol=1e-8)
    assert answer["pose"]["camera"]["scale"] == pytest.approx(pose.scale, rel=1e-8)
    np.testing.assert_allclose(answer["pose"]["camera"]["translation"], pose.t2d, rtol=1e-8)
    crop = box_crop(BOX)
    assert answer["box"] == list(BOX) and answer["box_source"] == "box"
    assert answer["crop"] == {"center": [crop.cx, crop.cy], "size": crop.size}
    assert answer["image"] == {"width": 512, "height": 512}
    assert answer["timing_ms"]["batch_size"] == 1  # alone: the batcher waits for nobody
    assert "mesh" not in answer and "texture" not in answer
    _check_timing(answer["timing_ms"])


def _check_timing(timing):
    """The steps of an answer's ``timing_ms`` are spans of its total, none negative: read + decode_and_crop +
    queue + network + postprocess <= total, queue + network lying between the hand-over of the crop to the
    batcher and the prediction's return (equal up to those hand-overs). Each is 1e3 x the difference of two
    perf_counter readings, exact in seconds, so the sum of five may exceed the total by rounding alone: ~1e-13 ms."""
    steps = [timing[name] for name in ("read", "decode_and_crop", "queue", "network", "postprocess")]
    assert min(steps) >= 0, timing
    assert sum(steps) <= timing["total"] + 1e-9, timing


def test_json_body_and_landmarks(client, prn, photo):
    image, png = photo
    landmarks = prn.get_landmarks(prn.process(image, box=BOX))[:, :2]
    expected = prn.get_landmarks(prn.process(image, landmarks=landmarks))
    as_json = client.post("/v1/reconstruct", json={"image": base64.b64encode(png).decode(),
                                                   "landmarks": landmarks.tolist()})
    assert as_json.status_code == 200, as_json.text
    np.testing.assert_allclose(as_json.json()["landmarks"], expected, atol=1e-4)
    assert as_json.json()["box_source"] == "landmarks"
    np.testing.assert_allclose(as_json.json()["box"], [*landmarks.min(0), *landmarks.max(0)])
    text = io.StringIO()
    np.savetxt(text, landmarks)  # the demo's _kpt.txt layout
    as_form = _post(client, png, landmarks=text.getvalue())
    np.testing.assert_allclose(as_form.json()["landmarks"], expected, atol=1e-4)
    for rows in (landmarks.T, np.vstack([landmarks.T, np.ones(68)])):  # 2 or 3 lines of 68, as read_landmarks reads
        text = io.StringIO()
        np.savetxt(text, rows)
        as_rows = _post(client, png, landmarks=text.getvalue())
        assert as_rows.status_code == 200, as_rows.text
        np.testing.assert_allclose(as_rows.json()["landmarks"], expected, atol=1e-4)
    box_json = client.post("/v1/reconstruct", json={"image": "data:image/png;base64," + base64.b64encode(png).decode(),
                                                    "box": list(BOX)})
    np.testing.assert_allclose(box_json.json()["landmarks"], prn.get_landmarks(prn.process(image, box=BOX)),
                               atol=1e-4)
    wrapped = client.post("/v1/reconstruct", json={"image": base64.encodebytes(png).decode(), "box": list(BOX)})
    assert wrapped.status_code == 200, wrapped.text  # lines of 76 characters, as the base64 command writes them
    assert wrapped.json()["landmarks"] == box_json.json()["landmarks"]


def test_a_phone_photo_is_read_as_stored_whatever_its_exif_orientation(client, prn, photo, tmp_path):
    """The box, the landmarks and ``face3d demo``'s _kpt.txt are in the stored pixels' frame, as everywhere in
    face3d: an Orientation tag (6: turn 90 degrees for display) must not turn the image. The mesh of this photo,
    taller than wide, is flipped to y up about its height: y' = 511 - y."""
    image, _ = photo
    plain = cv2.imencode(".jpg", np.ascontiguousarray(image[:, :400, ::-1]))[1].tobytes()  # 400 wide, 512 high
    stored = cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    response = client.post("/v1/reconstruct?mesh=ply", files={"image": ("phone.jpg", with_exif_orientation(plain, 6),
                                                                        "image/jpeg")},
                           data={"box": " ".join(map(str, BOX))})
    assert response.status_code == 200, response.text
    assert response.json()["image"] == {"width": 400, "height": 512}
    pos = prn.process(stored, box=BOX)
    np.testing.assert_allclose(response.json()["landmarks"], prn.get_landmarks(pos), atol=1e-4)
    path = tmp_path / "phone.ply"
    path.write_bytes(base64.b64decode(response.json()["mesh"]["base64"]))
    vertices = prn.get_vertices(pos).astype(np.float64)
    y_up = mesh_io.read_ply(path)["vertices"]
    np.testing.assert_allclose(y_up[:, [0, 2]], vertices[:, [0, 2]], atol=1e-4)
    np.testing.assert_allclose(y_up[:, 1], 511 - vertices[:, 1], atol=1e-4)


def test_meshes_and_texture(client, prn, photo, tmp_path):
    from scipy.io import loadmat
    image, png = photo
    pos = prn.process(image, box=BOX)
    vertices = prn.get_vertices(pos)
    colors = prn.get_colors(image, vertices)
    y_up = vertices.astype(np.float64)
    y_up[:, 1] = 511 - y_up[:, 1]
    box = " ".join(map(str, BOX))

    answers = {}

    def mesh_file(fmt, query=""):
        answers[fmt] = _post(client, png, f"?mesh={fmt}{query}", box=box).json()
        mesh = answers[fmt]["mesh"]
        assert (mesh["format"], mesh["vertices"], mesh["triangles"]) == (fmt, len(vertices), len(prn.triangles))
        path = tmp_path / f"face.{fmt}"
        path.write_bytes(base64.b64decode(mesh["base64"]))
        return path

    ply = mesh_io.read_ply(mesh_file("ply", "&texture=1"))
    np.testing.assert_allclose(ply["vertices"], y_up, atol=1e-4)
    np.testing.assert_array_equal(ply["triangles"], prn.triangles)
    np.testing.assert_array_equal(ply["colors"], np.round(colors * 255).astype(np.uint8))
    obj = mesh_io.read_obj(mesh_file("obj"))
    np.testing.assert_allclose(obj["vertices"], y_up, atol=1e-4)
    np.testing.assert_array_equal(obj["triangles"], prn.triangles)
    mat = loadmat(mesh_file("mat"))
    assert {"vertices", "colors", "full_triangles", "vertex_normals", "kptIdxs", "bounding_box"} <= set(mat)
    np.testing.assert_allclose(mat["vertices"], y_up, atol=1e-4)
    np.testing.assert_array_equal(mat["full_triangles"], prn.triangles)
    kpt = mat["vertices"][mat["kptIdxs"].ravel()]  # the 68 landmarks among the vertices (y up)
    landmarks = prn.get_landmarks(pos)
    np.testing.assert_allclose(kpt[:, [0, 2]], landmarks[:, [0, 2]], atol=1e-4)
    np.testing.assert_allclose(kpt[:, 1], 511 - landmarks[:, 1], atol=1e-4)
    normals = mat["vertex_normals"]
    length = np.linalg.norm(normals, axis=1)
    # the 32 x 32 map is expanded to 256 x 256 by repeating pixels: only vertices on the block edges have area
    edge = length > 0
    assert edge.sum() > 1000
    np.testing.assert_allclose(length[edge], 1, atol=1e-5)
    assert normals[edge, 2].mean() > 0.5  # outward: towards the viewer on a face seen from the front
    np.testing.assert_allclose(mat["bounding_box"].ravel(), [*y_up.min(0), *y_up.max(0)], atol=1e-4)
    texture = answers["ply"]["texture"]
    assert "texture" not in answers["mat"]
    decoded = cv2.imdecode(np.frombuffer(base64.b64decode(texture["base64"]), np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(decoded[..., ::-1], prn.get_texture(image, pos))


def test_ply_colours_are_the_nearest_byte_of_the_colours_clipped_to_0_1(tmp_path):
    """The PLY answer stores colours in [0, 1] as uchar round(255 c) (0.5 -> 127.5 -> 128, 0.999 -> 254.7 -> 255,
    where truncation would give 127 and 254), out-of-range colours clipped first."""
    colors = np.array([[0.5, 0.999, 0.0], [0.01, 0.998, 1.0], [0.25, 0.75, 0.6], [-0.2, 1.3, 0.004]])
    vertices = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 0.0, 1.0], [2.0, 9.0, 0.5]])
    path = tmp_path / "face.ply"
    path.write_bytes(encode_mesh("ply", vertices, np.array([[0, 1, 2], [0, 2, 3]]), 10, colors, None))
    ply = mesh_io.read_ply(path)
    assert ply["colors"].dtype == np.uint8
    np.testing.assert_array_equal(ply["colors"], [[128, 255, 0], [3, 254, 255], [64, 191, 153], [0, 255, 1]])
    np.testing.assert_array_equal(ply["vertices"], np.column_stack([vertices[:, 0], 9 - vertices[:, 1],
                                                                    vertices[:, 2]]))


def test_concurrent_requests_are_batched_and_kept_apart(server, prn, photo):
    image, png = photo
    boxes = [(175.0 + 3 * k, 76.0 + 2 * k, 265.0 + k, 166.0 + 3 * k) for k in range(8)]

    async def run():
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
            def post(data, box):
                return c.post("/v1/reconstruct", files={"image": ("f.png", data, "image/png")}, data={"box": box})
            good = [post(png, " ".join(map(str, b))) for b in boxes]
            bad = [post(png[:300], "175 76 265 166"), post(png, "1 2 3"), post(b"GIF89a", "175 76 265 166")]
            answers = await asyncio.gather(*(good[:4] + bad + good[4:]))
            return answers[:4] + answers[7:], answers[4:7]

    answers, failures = asyncio.run(run())
    assert [r.status_code for r in failures] == [400, 422, 415]  # among them, without harm to the others
    for box, response in zip(boxes, answers):
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(response.json()["landmarks"], prn.get_landmarks(prn.process(image, box=box)),
                                   atol=1e-4)
        _check_timing(response.json()["timing_ms"])
    assert max(r.json()["timing_ms"]["batch_size"] for r in answers) >= 2
    sizes = httpx.get(f"{server.url}/metrics").json()["batches"]["sizes"]
    assert max(map(int, sizes)) >= 2 and max(map(int, sizes)) <= 4


# ------------------------------------------------------------------------------------------------ errors

def test_every_bad_request_gets_its_json_error(client, photo):
    _, png = photo
    box = " ".join(map(str, BOX))
    no_locator = _post(client, png)
    if no_locator.status_code == 422:  # without dlib on the server
        _expect_error(no_locator, 422, "face_locator_missing", "box", "landmarks", "dlib")
    else:  # dlib finds the astronaut's face
        assert no_locator.status_code == 200 and no_locator.json()["box_source"] == "detector", no_locator.text
        (x0, y0, x1, y1), (a0, b0, a1, b1) = no_locator.json()["box"], BOX
        overlap = max(0, min(x1, a1) - max(x0, a0)) * max(0, min(y1, b1) - max(y0, b0))
        assert overlap > 0.5 * (a1 - a0) * (b1 - b0), no_locator.json()["box"]
    _expect_error(_post(client, png, box="1 2 3"), 422, "invalid_box", "4 finite numbers")
    _expect_error(_post(client, png, box="10 10 5 5"), 422, "invalid_box", "x1 > x0")
    _expect_error(_post(client, png, box="600 600 700 700"), 422, "invalid_box", "outside the 512 x 512 image")
    _expect_error(_post(client, png, box="a b c d"), 422, "invalid_box", "numbers")
    _expect_error(_post(client, png, box=box, landmarks="1 2"), 422, "invalid_parameter", "not both")
    _expect_error(_post(client, png, landmarks="1 2 3 4"), 422, "invalid_landmarks",
                  "68 landmarks as (68, 2|3) or (2|3, 68)", "(1, 4)")
    _expect_error(_post(client, png, landmarks="\n".join(["5 5"] * 68)), 422, "invalid_landmarks", "no area")
    _expect_error(_post(client, png, "?mesh=stl", box=box), 422, "invalid_parameter", "mesh")
    _expect_error(_post(client, png, "?texture=maybe", box=box), 422, "invalid_parameter", "texture")
    _expect_error(_post(client, png[:200], box=box), 400, "bad_image", "could not be decoded")
    _expect_error(_post(client, b"", box=box), 400, "bad_image", "empty")
    _expect_error(_post(client, b"hello, not an image", box=box), 415, "unsupported_image", "PNG")
    # a 33-byte file declaring 2000 x 2000 pixels: refused on its header, never decoded
    _expect_error(_post(client, png_header(2000, 2000), box=box), 413, "too_many_pixels", "2000 x 2000",
                  "1000000")
    _expect_error(_post(client, b"\x00" * 1_100_000, box=box), 413, "too_large", "1000000")

    def chunks():  # no Content-Length: the limit is enforced while the body arrives
        for _ in range(12):
            yield b"\x00" * 100_000

    _expect_error(client.post("/v1/reconstruct", content=chunks(), headers={"content-type": "application/json"}),
                  413, "too_large")
    _expect_error(client.post("/v1/reconstruct", content=b"{nope", headers={"content-type": "application/json"}),
                  400, "bad_request", "JSON")
    _expect_error(client.post("/v1/reconstruct", json={"image": "***"}), 400, "bad_request", "base64")
    _expect_error(client.post("/v1/reconstruct", json={"box": list(BOX)}), 400, "bad_request", "image: missing")
    _expect_error(client.post("/v1/reconstruct", json={"image": "", "bbox": []}), 422, "invalid_parameter", "bbox")
    _expect_error(client.post("/v1/reconstruct", json=[1, 2]), 400, "bad_request", "JSON object")
    _expect_error(client.post("/v1/reconstruct", content=b"x", headers={"content-type": "text/plain"}), 415,
                  "unsupported_media_type", "multipart/form-data")
    _expect_error(client.post("/v1/reconstruct", data={"box": box}, files={"other": ("a", b"b")}), 422,
                  "invalid_parameter", "other")
    _expect_error(client.post("/v1/reconstruct", files={"landmarks": ("a", b"1 2")}, data={"box": box}), 400,
                  "bad_request", "image: missing")
    _expect_error(client.get("/v1/reconstruct"), 405, "method_not_allowed")
    _expect_error(client.get("/v2/nothing"), 404, "not_found")
    # the server is unharmed: a good request right after
    assert _post(client, png, box=box).status_code == 200
    metrics = client.get("/metrics").json()
    assert metrics["errors"]["too_large"] >= 2 and metrics["errors"]["invalid_box"] >= 4
    assert metrics["requests"]["GET other 404"] >= 1 and metrics["in_flight"] == 0
    text = client.get("/metrics", params={"format": "prometheus"}).text
    assert f'face3d_errors_total{{code="too_large"}} {metrics["errors"]["too_large"]}' in text
    assert 'face3d_requests_total{method="GET",path="other",status="404"}' in text
    assert 'face3d_latency_seconds{quantile="0.99"}' in text and "face3d_in_flight 0" in text


def test_unknown_query_parameters_answer_422_naming_them(client, photo):
    """A misspelt option (``format`` for ``mesh``) must not silently drop what it asked for."""
    _, png = photo
    box = " ".join(map(str, BOX))
    _expect_error(_post(client, png, "?format=ply", box=box), 422, "invalid_parameter",
                  "unknown query parameter 'format' (expected ('mesh', 'texture'))")
    _expect_error(_post(client, png, "?mesh=ply&textures=1&meshes=obj", box=box), 422, "invalid_parameter",
                  "unknown query parameters 'meshes', 'textures' (expected")
    assert _post(client, png, "?mesh=ply&texture=0", box=box).status_code == 200


def test_deeply_nested_json_answers_400(client):
    body = b'{"image": "AAAA", "box": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"  # 200 kB, under --max-bytes
    _expect_error(client.post("/v1/reconstruct", content=body, headers={"content-type": "application/json"}),
                  400, "bad_request", "body: not valid JSON (nested too deeply)")


def test_an_image_sent_as_a_text_field_is_told_to_be_uploaded_as_a_file(client, model_path, reconstructor):
    """``curl -F image=<photo.jpg`` sends the file's bytes as a text field (no filename), as large as --max-bytes
    allows (beyond Starlette's own 1 MiB limit on a text field)."""
    from fastapi.testclient import TestClient

    from face3d.serve.app import create_app
    from face3d.serve.config import ServeConfig

    message = "image: sent as a text field; upload it as a file (curl -F image=@photo.jpg)"
    _expect_error(client.post("/v1/reconstruct", files={"image": (None, "\xff\xd8 not a file"),
                                                        "box": (None, "1 2 3 4")}),
                  400, "bad_request", message)
    app = create_app(ServeConfig(str(model_path), model_threads=1, limits=Limits(max_bytes=2_000_000)), reconstructor)
    with TestClient(app, raise_server_exceptions=False) as in_process:
        _expect_error(in_process.post("/v1/reconstruct", files={"image": (None, b"\xff\xd8" + bytes(1_500_000)),
                                                                "box": (None, "1 2 3 4")}),
                      400, "bad_request", message)


def test_absurd_boxes_and_landmarks_answer_422_naming_the_problem(client, prn, photo):
    """Finite numbers that no face has: beyond 100 x the image's side from it, under a pixel, beyond float64, or a
    landmark text laid out in neither 68 rows nor 2-3 lines of 68."""
    image, png = photo
    far = "farther than 100 x 512 pixels from the 512 x 512 image"
    _expect_error(_post(client, png, box="0 0 1e40 1e40"), 422, "invalid_box", far)
    _expect_error(_post(client, png, box="-1e308 -1e308 1e308 1e308"), 422, "invalid_box", far)
    _expect_error(_post(client, png, box="200 200 200.5 200.5"), 422, "invalid_box", "0.5 pixels, under 1")
    _expect_error(client.post("/v1/reconstruct", json={"image": base64.b64encode(png).decode(),
                                                       "box": [0, 0, 10 ** 400, 10 ** 400]}),
                  422, "invalid_box", "too large for a float64")
    landmarks = prn.get_landmarks(prn.process(image, box=BOX))[:, :2]
    _expect_error(client.post("/v1/reconstruct", json={"image": base64.b64encode(png).decode(),
                                                       "landmarks": (landmarks * 1e300).tolist()}),
                  422, "invalid_landmarks", far)
    _expect_error(client.post("/v1/reconstruct", json={"image": base64.b64encode(png).decode(),
                                                       "landmarks": [[10 ** 400, 1]] * 68}),
                  422, "invalid_landmarks", "too large for a float64")
    _expect_error(_post(client, png, landmarks="\n".join([" ".join(["5"] * 34)] * 4)), 422, "invalid_landmarks",
                  "got shape (4, 34)")
    _expect_error(_post(client, png, landmarks="1 2\n3 4 5"), 422, "invalid_landmarks", "as many numbers")
    assert _post(client, png, box=" ".join(map(str, BOX))).status_code == 200


# a box on a 100 x 60 image may reach 100 x 100 pixels past each side: x0, y0 >= -10000, x1 <= 99 + 10000 and
# y1 <= 59 + 10000; each coordinate at its bound, then one pixel past it
REACH_BOUNDS = {"x0": (0, -10000, -10001), "y0": (1, -10000, -10001), "x1": (2, 10099, 10100), "y1": (3, 10059, 10060)}


@pytest.mark.parametrize("index, bound, beyond", REACH_BOUNDS.values(), ids=REACH_BOUNDS.keys())
def test_a_box_reaching_past_the_bound_on_any_one_side_is_refused(index, bound, beyond):
    """Each side's reach is checked on its own (the image's width for x, its height for y): a box at the bound
    on one side is accepted as given, one pixel farther is refused naming the box and the bound."""
    within = [10.0, 10.0, 20.0, 20.0]
    within[index] = float(bound)
    assert parse_box(within, 100, 60) == tuple(within)
    beyond_box = list(within)
    beyond_box[index] = float(beyond)
    with pytest.raises(ApiError) as error:
        parse_box(beyond_box, 100, 60)
    assert (error.value.status, error.value.code) == (422, "invalid_box")
    assert error.value.detail == (f"box: {' '.join(f'{v:g}' for v in beyond_box)} reaches farther than 100 x 100 "
                                  "pixels from the 100 x 60 image")


def test_landmarks_outside_the_image_or_fewer_than_68_answer_422(client, prn, photo):
    """Landmarks whose box misses the image would be cropped all black; 5 points (a detector's) would be cropped
    tighter than training: both 422, the latter saying to send the face's box."""
    image, png = photo
    landmarks = prn.get_landmarks(prn.process(image, box=BOX))[:, :2]
    shifted = np.column_stack([np.linspace(600, 700, 68), np.linspace(10, 20, 68)])
    _expect_error(client.post("/v1/reconstruct", json={"image": base64.b64encode(png).decode(),
                                                       "landmarks": shifted.tolist()}),
                  422, "invalid_landmarks", "landmarks' box: 600 10 700 20 lies outside the 512 x 512 image")
    five = "\n".join(f"{x} {y}" for x, y in landmarks[[36, 45, 30, 48, 54]])
    response = _post(client, png, landmarks=five)
    _expect_error(response, 422, "invalid_landmarks")
    assert response.json()["detail"] == ("landmarks: expected 68 landmarks as (68, 2|3) or (2|3, 68), in iBUG "
                                         "order, got shape (5, 2); for fewer points (a detector's 5) send the "
                                         "face's box instead")


def test_a_detector_box_the_crop_refuses_is_no_usable_face_not_the_clients_box(prn, photo):
    """The client sent no box: a detector's box outside the image is the detector's failure to find a face."""
    from face3d.serve.pipeline import Detector, Reconstructor

    class Outside:
        kind = "stub"

        def detect(self, image):
            return np.array([[600.0, 600.0, 700.0, 700.0]]), np.array([0.9])

    image, _ = photo
    h, w = image.shape[:2]
    with pytest.raises(ApiError) as error:
        Reconstructor(prn, Detector(Outside())).prepare(image)
    assert (error.value.status, error.value.code) == (422, "no_face")
    assert error.value.detail == (f"the stub face detector found no usable face (box: 600 600 700 700 lies outside "
                                  f"the {w} x {h} image); send box or landmarks")


def test_a_map_beyond_float32_answers_422_not_500(prn, photo):
    """The last guard: a crop whose map in image pixels overflows float32 (parse_box refuses such boxes first)."""
    from face3d.serve.pipeline import Prepared, Reconstructor
    image, _ = photo
    box = (0.0, 0.0, 1e40, 1e40)
    prepared = Prepared(prn.crop(image, box=box), box, "box")
    with pytest.raises(ApiError) as error:
        Reconstructor(prn).describe(image, prepared, np.full((SIZE, SIZE, 3), 0.5, np.float32))
    assert (error.value.status, error.value.code) == (422, "invalid_box") and "not finite" in error.value.detail


def test_a_network_output_with_nan_is_the_models_failure_not_the_box(prn, photo):
    """A NaN map is not blamed on the client's box: it fails as the model's error (answered 500 internal)."""
    from face3d.serve.pipeline import Prepared, Reconstructor
    image, _ = photo
    box = (5.0, 5.0, 35.0, 35.0)
    prepared = Prepared(prn.crop(image, box=box), box, "box")
    with pytest.raises(ValueError, match="network's output map holds NaN or inf"):
        Reconstructor(prn).describe(image, prepared, np.full((SIZE, SIZE, 3), np.nan, np.float32))


def _stalled_request(port, png, box, send_first):
    """A raw HTTP/1.1 multipart request whose first ``send_first`` body bytes are sent; returns (socket, rest)."""
    boundary = "face3dtestboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"box\"\r\n\r\n{box}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"f.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--\r\n".encode()
    head = (f"POST /v1/reconstruct HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nConnection: close\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(head + body[:send_first])
    return sock, body[send_first:]


def _read_response(sock):
    """(status, JSON body) of a raw HTTP/1.1 response read until the server closes."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_timeouts_busy_and_graceful_shutdown(servers, photo):
    _, png = photo
    box = " ".join(map(str, BOX))
    server = servers["strict"]
    stalled, _ = _stalled_request(server.port, png, box, 100)  # never finished: times out after 2 s
    time.sleep(0.5)
    _expect_error(httpx.post(f"{server.url}/v1/reconstruct", files={"image": ("f.png", png)}, data={"box": box},
                             timeout=30), 503, "busy", "--max-in-flight")
    status, body = _read_response(stalled)
    assert (status, body["error"]) == (408, "timeout") and "2 s" in body["detail"]
    # drain: a request in progress when SIGTERM arrives is answered, new connections are refused
    draining, rest = _stalled_request(server.port, png, box, 100)
    time.sleep(0.3)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/health", timeout=5)
    draining.sendall(rest)
    status, body = _read_response(draining)
    assert status == 200 and len(body["landmarks"]) == 68
    assert server.stop() == 0, server.log.read_text()
    assert "drained: 1 reconstructions answered" in server.log.read_text()


def _wait_for_batches(url, count, seconds=120):
    """Return once the server's /metrics counts ``count`` network calls (fail after ``seconds``)."""
    deadline = time.monotonic() + seconds
    while httpx.get(f"{url}/metrics", timeout=30).json()["batches"]["count"] < count:
        assert time.monotonic() < deadline, f"fewer than {count} network calls after {seconds} s"
        time.sleep(0.2)


def test_processing_timeout_answers_504_and_the_service_goes_on(tmp_path, photo):
    # a white image makes the model run 1000 products of 512 x 512 matrices on one thread (about 4 s on the
    # development machine), far beyond the 1 s limit; any other image takes it microseconds
    slow = Server(tmp_path, _tiny_onnx(tmp_path / "slow.onnx", slow_products=1000), "--timeout-s", 1,
                  "--model-threads", 1).wait()
    try:
        white = cv2.imencode(".png", np.full((256, 256, 3), 255, np.uint8))[1].tobytes()  # the crop is white too
        with httpx.Client(base_url=slow.url, timeout=60) as client:
            _expect_error(_post(client, white, box="100 100 150 150"), 504, "timeout",
                          "reconstruction took longer than 1 s")
            # answered at the limit: the model still runs the white batch, and the event loop answers meanwhile
            busy = client.get("/metrics").json()
            assert busy["batches"]["count"] == 0 and busy["in_flight"] == 0
            assert client.get("/health").json()["status"] == "ok"
            _wait_for_batches(slow.url, 1)  # the model thread is free again
            _, png = photo
            answer = _post(client, png, box=" ".join(map(str, BOX)))
            assert answer.status_code == 200, answer.text
            assert len(answer.json()["landmarks"]) == 68 and answer.json()["timing_ms"]["batch_size"] == 1
            metrics = client.get("/metrics").json()
        assert metrics["errors"] == {"total": 1, "timeout": 1}
        assert metrics["requests"]["POST /v1/reconstruct 504"] == 1
        assert metrics["requests"]["POST /v1/reconstruct 200"] == 1
        assert metrics["batches"]["count"] == 2 and metrics["in_flight"] == 0
        assert metrics["latency_ms"]["count"] == 1  # the quantiles cover answered reconstructions only
        assert metrics["latency_ms"]["p99"] == pytest.approx(answer.json()["timing_ms"]["total"], rel=1e-9)
    finally:
        assert slow.stop() == 0, slow.log.read_text()


def _uv_data_with_canonical_face(folder):
    """Write a 64 x 64 UV layout with its own canonical face (a tilted plane) into ``folder``; returns its UVData."""
    import dataclasses

    from _prnet_data import layout_uv_data

    from face3d.trainset.uv_layout import write_uv_data

    layout = layout_uv_data(64)
    u, v = layout.face_ind % 64, layout.face_ind // 64
    canonical = np.column_stack([u, v, 0.3 * u + 0.1 * v]).astype(np.float32)
    write_uv_data(dataclasses.replace(layout, canonical_vertices=canonical), folder)
    return layout


def test_workers_and_uv_data(tmp_path, model_path, photo):
    """Two workers on a UV layout of its own instead of the packaged 256 one; its canonical face leaves --bfm (an
    empty file: never read) unread, which one warning says, not one per process."""
    from face3d.prnet.inference import PRN

    uv_folder = tmp_path / "uv-data"
    layout = _uv_data_with_canonical_face(uv_folder)
    bfm = tmp_path / "BFM.mat"
    bfm.write_bytes(b"")
    server = Server(tmp_path, model_path, "--workers", 2, "--uv-data", uv_folder, "--bfm", bfm)
    try:
        server.wait()
        health = httpx.get(f"{server.url}/health", timeout=30).json()
        assert (health["resolution"], health["vertices"], health["model"]) == (64, len(layout.face_ind),
                                                                               str(model_path))
        image, png = photo
        answer = httpx.post(f"{server.url}/v1/reconstruct", files={"image": ("f.png", png)},
                            data={"box": " ".join(map(str, BOX))}, timeout=60)
        assert answer.status_code == 200, answer.text
        prn = PRN(model_path, uv_data=uv_folder)
        np.testing.assert_allclose(answer.json()["landmarks"], prn.get_landmarks(prn.process(image, box=BOX)),
                                   atol=1e-4)
    finally:
        status = server.stop()
    log = server.log.read_text()
    assert status == 0, log
    # uvicorn's supervisor started two processes, each of which loaded the model and drained on SIGTERM
    assert log.count("Started server process") == 2 and log.count("serving ") == 2, log
    assert log.count("drained: ") == 2, log
    assert log.count(f"WARNING face3d.prnet.inference: --bfm {bfm} is not read: {uv_folder} has its own canonical "
                     "face for the pose (canonical_vertices.npy)\n") == 1, log


def test_workers_with_a_bad_model_or_uv_data_exit_2_with_one_line(tmp_path, model_path):
    """The model is loaded once before the worker processes start, so a load error is the command's error."""
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    bad_model = Server(tmp_path, bad, "--workers", 2)
    bad_uv = Server(tmp_path, model_path, "--workers", 2, "--uv-data", tmp_path / "no-uv-data")
    for server, message in ((bad_model, f"{bad}: not a loadable ONNX model"),
                            (bad_uv, f"{tmp_path / 'no-uv-data'}")):
        try:
            status = server.process.wait(120)
        finally:
            server.stop()
        log = server.log.read_text()
        assert status == 2, log
        assert "Traceback" not in log and "Started" not in log, log
        assert log.strip().splitlines()[-1].startswith(f"python -m face3d.serve: error: {message}"), log


# ------------------------------------------------------------------------------------------------ in-process

def test_a_bfm_the_uv_data_leaves_unread_is_still_checked(tmp_path, model_path, capsys, caplog, monkeypatch):
    """The uv-data's own canonical face leaves --bfm unread: a missing one is still one line and status 2 before
    the server starts, an existing one (an empty file: never read) a warning saying so."""
    import uvicorn

    from face3d.cli import main
    from face3d.serve.app import load_reconstructor
    from face3d.serve.config import ServeConfig

    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: pytest.fail("the server started"))
    uv_folder = tmp_path / "uv-data"
    _uv_data_with_canonical_face(uv_folder)
    bfm = tmp_path / "BFM.mat"
    assert main(["serve", "--model", str(model_path), "--uv-data", str(uv_folder), "--bfm", str(bfm)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"face3d serve: error: {bfm}: BFM model file not found"]
    bfm.write_bytes(b"")
    caplog.clear()
    load_reconstructor(ServeConfig(str(model_path), uv_data=str(uv_folder), bfm=str(bfm)))
    assert [record.getMessage() for record in caplog.records
            if record.levelname == "WARNING" and record.name == "face3d.prnet.inference"] == [
        f"--bfm {bfm} is not read: {uv_folder} has its own canonical face for the pose (canonical_vertices.npy)"]


def test_the_model_threads_sleep_follow_model_threads_and_keep_no_plan_per_batch_size(model_path):
    from face3d.serve.app import load_reconstructor
    from face3d.serve.config import ServeConfig

    # the network shares the cores with decoding and post-processing: its idle threads must not spin
    options = load_reconstructor(ServeConfig(str(model_path), model_threads=1)).prn.predictor._session \
        .get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert not options.enable_mem_pattern  # a plan per batch size would grow the server's memory with each size


def test_a_detector_asked_for_that_cannot_be_built_stops_the_server_auto_serves_without(model_path, monkeypatch,
                                                                                         caplog, capsys):
    """--detector cnn without the CNN's model file is one line and status 2 before the port opens, as a bad model
    is; 'auto' without dlib serves requests that bring a box or landmarks and warns why there is no detector."""
    import uvicorn

    from face3d.cli import main
    from face3d.prnet.detect import DetectorUnavailable
    from face3d.serve.app import load_reconstructor
    from face3d.serve.config import ServeConfig

    install_fake_dlib(monkeypatch)
    monkeypatch.setitem(sys.modules, "face_recognition_models", None)  # as if not installed
    missing = (f"the CNN detector needs {CNN_MODEL_FILE} from the face_recognition_models package (not installed): "
               "pip install 'face3d[detect]'")
    with pytest.raises(DetectorUnavailable, match=re.escape(missing)):
        load_reconstructor(ServeConfig(str(model_path), model_threads=1, detector="cnn"))
    assert load_reconstructor(ServeConfig(str(model_path), model_threads=1, detector="hog")).detector.kind == "hog"
    monkeypatch.setattr(uvicorn, "run", lambda *args, **options: pytest.fail("the server started"))
    assert main(["serve", "--model", str(model_path), "--detector", "cnn"]) == 2
    assert capsys.readouterr().err.splitlines() == [f"face3d serve: error: {missing}"]

    monkeypatch.setitem(sys.modules, "dlib", None)  # as if not installed
    with caplog.at_level(logging.WARNING, logger="face3d.serve"):
        reconstructor = load_reconstructor(ServeConfig(str(model_path), model_threads=1))
    no_dlib = "face detection needs dlib (not installed): pip install 'face3d[detect]'"
    assert reconstructor.detector is None
    assert caplog.messages == [f"no face detector, requests need a box or landmarks: {no_dlib}"]
    with pytest.raises(ApiError) as error:
        reconstructor.prepare(np.zeros((40, 40, 3), np.uint8))
    assert (error.value.status, error.value.code) == (422, "face_locator_missing")
    assert error.value.detail.endswith(f"the server has no face detector: {no_dlib}"), error.value.detail


def test_metrics_quantiles_agree_between_json_and_prometheus():
    from face3d.serve.metrics import ServiceMetrics

    metrics = ServiceMetrics(window=100)
    for ms in range(1, 151):  # the window keeps the last 100: 51..150 ms
        metrics.record_latency(ms / 1e3)
    latency = metrics.snapshot()["latency_ms"]
    # linear interpolation over 51..150: the q-quantile is 51 + 99 q
    assert latency["count"] == 150 and latency["window"] == 100 and latency["max"] == pytest.approx(150.0)
    assert latency["mean"] == pytest.approx(100.5)
    assert (latency["p50"], latency["p90"], latency["p99"]) == pytest.approx((100.5, 140.1, 149.01))
    text = metrics.prometheus()
    for q, ms in ((0.5, 100.5), (0.9, 140.1), (0.99, 149.01)):
        line = next(line for line in text.splitlines() if line.startswith(f'face3d_latency_seconds{{quantile="{q}"}}'))
        assert float(line.split()[-1]) == pytest.approx(ms / 1e3)
    assert "face3d_latency_seconds_count 150" in text


def test_prometheus_latency_sum_and_count_cover_every_reconstruction():
    """A summary's _sum and _count only grow (Prometheus takes a drop for a restart); the quantiles stay windowed."""
    from face3d.serve.metrics import ServiceMetrics

    metrics = ServiceMetrics(window=100)
    assert "face3d_latency_seconds_count 0\n" in metrics.prometheus()
    for ms in range(1, 151):
        metrics.record_latency(ms / 1e3)

    def sample(name):
        return float(next(line for line in metrics.prometheus().splitlines() if line.startswith(name + " ")).split()[1])

    assert sample("face3d_latency_seconds_count") == 150
    assert sample("face3d_latency_seconds_sum") == pytest.approx(sum(range(1, 151)) / 1e3)  # 11.325 s
    assert metrics.snapshot()["latency_ms"]["count"] == 150 and metrics.snapshot()["latency_ms"]["window"] == 100
    for _ in range(100):  # a whole window of faster answers: the totals still grow
        metrics.record_latency(0.001)
    assert sample("face3d_latency_seconds_count") == 250
    assert sample("face3d_latency_seconds_sum") == pytest.approx(11.325 + 0.1)
    assert sample('face3d_latency_seconds{quantile="0.99"}') == pytest.approx(0.001)


@pytest.fixture(scope="module")
def reconstructor(model_path):
    """The tiny model loaded in-process, for applications run by Starlette's TestClient."""
    from face3d.serve.app import load_reconstructor
    from face3d.serve.config import ServeConfig
    return load_reconstructor(ServeConfig(str(model_path), model_threads=1))


@pytest.mark.parametrize("failure", [RuntimeError("tensorflow/lite/kernels/conv.cc Node number 3 (CONV_2D) failed "
                                                  "to invoke"), ValueError("a broken model")],
                         ids=["RuntimeError", "ValueError"])
def test_a_failing_model_answers_500_internal_and_is_counted(model_path, reconstructor, photo, monkeypatch, failure):
    """TFLite's invoke raises RuntimeError when an op fails: that is the model's failure (500), not a shutdown. The
    500 answer is written outside the application's middleware, yet it is counted among the requests."""
    from fastapi.testclient import TestClient

    from face3d.serve.app import create_app
    from face3d.serve.config import ServeConfig

    def failing(batch):
        raise failure

    monkeypatch.setattr(reconstructor.prn.predictor, "predict", failing)
    _, png = photo
    app = create_app(ServeConfig(str(model_path), model_threads=1), reconstructor)
    with TestClient(app, raise_server_exceptions=False) as client:
        _expect_error(_post(client, png, box=" ".join(map(str, BOX))), 500, "internal",
                      f"{type(failure).__name__}: {failure}")
        metrics = client.get("/metrics").json()
        text = client.get("/metrics", params={"format": "prometheus"}).text
    assert metrics["errors"] == {"total": 1, "internal": 1}
    assert metrics["requests"] == {"total": 1, "POST /v1/reconstruct 500": 1}  # the GET answering is counted next
    assert 'face3d_requests_total{method="POST",path="/v1/reconstruct",status="500"} 1' in text


def test_a_texture_of_a_face_wider_than_the_read_out_takes_is_422(model_path, reconstructor, monkeypatch):
    """OpenCV's remap takes sources under 32767 pixels a side: a face spanning a 60000-pixel panorama is the
    request's limit (422 naming the box), not the server's failure, and the rest of the answer still works."""
    from fastapi.testclient import TestClient

    from face3d.serve.app import create_app
    from face3d.serve.config import ServeConfig

    real_predict = reconstructor.prn.predictor.predict

    def spread(batch):  # a map spanning its crop from side to side
        maps = np.array(real_predict(batch))
        maps[..., 0] = np.linspace(0.0, 0.9, maps.shape[2], dtype=np.float32)
        return maps

    monkeypatch.setattr(reconstructor.prn.predictor, "predict", spread)
    png = cv2.imencode(".png", np.full((16, 60000, 3), 90, np.uint8))[1].tobytes()
    app = create_app(ServeConfig(str(model_path), model_threads=1), reconstructor)
    with TestClient(app, raise_server_exceptions=False) as client:
        _expect_error(_post(client, png, "?texture=1", box="0 0 59999 15"), 422, "invalid_box",
                      "box: the face covers", "at most 32766 pixels a side")
        assert _post(client, png, box="0 0 59999 15").status_code == 200
        assert client.get("/metrics").json()["errors"] == {"total": 1, "invalid_box": 1}


async def _asgi(app, method, path, body=b"", headers=(), leave=None, whole=True):
    """(status, JSON body) of one request handed to the ASGI ``app`` in-process, ``body`` in one message, or a list
    of chunks in one message each (the whole body, or with ``whole=False`` only its start); the connection then
    stays open until the asyncio.Event ``leave`` is set (never when None)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80), "headers": [(k.lower().encode(), v.encode()) for k, v in headers]}
    chunks = [body] if isinstance(body, bytes) else list(body)
    messages = [{"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks]
    messages[-1]["more_body"] = not whole
    leave = leave or asyncio.Event()
    sent = []

    async def receive():
        if messages:
            return messages.pop(0)
        await leave.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))


def _form(png):
    """(body, headers) of a multipart request with ``png`` as the image and the astronaut's box."""
    form = httpx.Request("POST", "http://face3d/", files={"image": ("f.png", png, "image/png")},
                         data={"box": " ".join(map(str, BOX))})
    return form.read(), [("content-type", form.headers["content-type"])]


def test_the_body_limit_takes_a_body_of_exactly_max_bytes_declared_or_streamed(model_path, reconstructor):
    """--max-bytes is the largest body taken: one of exactly max_bytes is read (here, not being JSON, it is 400
    bad_request), one byte more is 413 too_large, whether its Content-Length declares it (refused before it is
    read) or it arrives in chunks without one (refused once the chunks add up past the limit)."""
    from face3d.serve.app import create_app
    from face3d.serve.config import ServeConfig

    app = create_app(ServeConfig(str(model_path), model_threads=1, limits=Limits(max_bytes=1000)), reconstructor)
    json_type = ("content-type", "application/json")

    async def run():
        answers = {}
        async with app.router.lifespan_context(app):
            for size in (1000, 1001):
                body = b"x" * size
                answers["declared", size] = await _asgi(app, "POST", "/v1/reconstruct", body,
                                                        [json_type, ("content-length", str(size))])
                answers["streamed", size] = await _asgi(app, "POST", "/v1/reconstruct",
                                                        [body[:400], body[400:800], body[800:]], [json_type])
        return answers

    answers = asyncio.run(run())
    for way in ("declared", "streamed"):
        status, answer = answers[way, 1000]
        assert (status, answer["error"]) == (400, "bad_request") and "not valid JSON" in answer["detail"], answer
    assert answers["declared", 1001] == (413, {"error": "too_large", "detail": "request body: 1001 bytes, the limit "
                                                                               "is 1000 (--max-bytes)"})
    assert answers["streamed", 1001] == (413, {"error": "too_large", "detail": "request body: more than 1000 bytes, "
                                                                               "the limit is 1000 (--max-bytes)"})


def test_a_client_that_leaves_during_its_body_is_counted_499(model_path, reconstructor, photo):
    from face3d.serve.app import create_app
    from face3d.serve.config import ServeConfig

    body, headers = _form(photo[1])
    app = create_app(ServeConfig(str(model_path), model_threads=1), reconstructor)

    async def run():
        async with app.router.lifespan_context(app):
            gone = asyncio.Event()
            gone.set()
            half = await _asgi(app, "POST", "/v1/reconstruct", body[:len(body) // 2], headers, gone, whole=False)
            return half, await _asgi(app, "GET", "/metrics")

    (status, answer), (_, metrics) = asyncio.run(run())
    assert (status, answer) == (499, {"error": "client_closed",
                                      "detail": "the client disconnected before sending the whole body"})
    assert metrics["requests"] == {"total": 1, "POST /v1/reconstruct 499": 1}  # the GET answering is counted next
    assert metrics["errors"] == {"total": 1, "client_closed": 1} and metrics["in_flight"] == 0


def test_a_client_that_leaves_frees_its_slot_at_once_and_is_counted_499(model_path, reconstructor, photo,
                                                                         monkeypatch, caplog):
    """A client that disconnects after sending its whole body: its work is cancelled and its --max-in-flight slot
    freed at once, while its post-processing, already running in a pool thread, runs on there with its result
    dropped. /metrics counts it as 499 client_closed with no latency; the drain line does not count it."""
    from face3d.serve.app import create_app
    from face3d.serve.config import ServeConfig

    running, release = threading.Event(), threading.Event()
    real_describe = reconstructor.describe

    def describe(*args):  # the first request's post-processing holds its pool thread until released
        if not running.is_set():
            running.set()
            release.wait(60)
        return real_describe(*args)

    monkeypatch.setattr(reconstructor, "describe", describe)
    caplog.set_level("INFO", logger="face3d.serve")
    body, headers = _form(photo[1])
    limits = Limits(max_in_flight=1, timeout_s=600)  # no timeout before the bound on a hang below
    app = create_app(ServeConfig(str(model_path), model_threads=1, threads=2, limits=limits), reconstructor)

    async def run():
        async with app.router.lifespan_context(app):  # its shutdown waits for the pool's threads
            try:
                leave = asyncio.Event()
                leaving = asyncio.create_task(_asgi(app, "POST", "/v1/reconstruct", body, headers, leave))
                assert await asyncio.to_thread(running.wait, 60)
                leave.set()
                await asyncio.wait([leaving], timeout=30)  # a bound on a hang, not a timing
                assert leaving.done(), "the request of a client that left still holds its slot"
                staying = await _asgi(app, "POST", "/v1/reconstruct", body, headers)  # the one slot is free again
                during = await _asgi(app, "GET", "/metrics")
            finally:
                release.set()
        return leaving.result(), staying, during, await _asgi(app, "GET", "/metrics")

    (left_status, left), (status, answer), (_, during), (_, after) = asyncio.run(run())
    assert (left_status, left["error"]) == (499, "client_closed") and "disconnected" in left["detail"], left
    assert status == 200 and len(answer["landmarks"]) == 68, answer
    for metrics in (during, after):  # the dropped result, done once released, counts nowhere
        assert metrics["requests"]["POST /v1/reconstruct 499"] == 1 and metrics["errors"] == {"total": 1,
                                                                                               "client_closed": 1}
        assert metrics["requests"]["POST /v1/reconstruct 200"] == 1 and metrics["latency_ms"]["count"] == 1
        assert metrics["in_flight"] == 0
    assert "drained: 1 reconstructions answered" in caplog.text


def test_batcher_isolates_a_failing_input_and_drains_on_close():
    calls = []

    def predict(batch):
        calls.append(len(batch))
        if (batch < 0).any():
            raise ValueError("negative input")
        return batch * 2

    async def run():
        batcher = DynamicBatcher(predict, max_batch=8, max_delay_s=5.0)
        batcher.start()

        async def request(x):
            with batcher.expect() as ticket:
                await asyncio.sleep(0.01)  # decoding
                return await ticket.submit(np.full(3, x, np.float32))

        results = await asyncio.gather(*[request(x) for x in (1, -1, 2, 3)], return_exceptions=True)
        lone = await asyncio.wait_for(request(7), 4.0)  # nobody else expected: no 5 s wait
        queued = [asyncio.ensure_future(batcher.submit(np.full(3, x, np.float32))) for x in (4, 5)]
        await asyncio.sleep(0)
        await batcher.close()  # runs the queued inputs first
        with pytest.raises(BatcherClosed, match="shutting down"):
            await batcher.submit(np.zeros(3, np.float32))
        return results, lone, [q.result() for q in queued]

    results, lone, drained = asyncio.run(run())
    assert isinstance(results[1], ValueError)
    for x, result in zip((1, 2, 3), (results[0], results[2], results[3])):
        np.testing.assert_array_equal(result.output, np.full(3, 2 * x))
    assert calls[:5] == [4, 1, 1, 1, 1]  # one batch of 4 fails, then each input alone
    assert lone.batch_size == 1 and np.all(lone.output == 14)
    assert [d.output[0] for d in drained] == [8, 10]


def test_batcher_splits_a_queue_longer_than_max_batch_and_times_each_batch(monkeypatch):
    """Inputs queued while the model is busy run max_batch at a time, in submission order: 1 input, then 4 queued
    behind it at max_batch 2 make batches of 1, 2 and 2. A request's queued_s runs from its submit to the start of
    its batch and network_s is its batch's call, read on a clock the test moves: the first call is held until the 4
    are queued, and every call moves the clock 2 s on."""
    from types import SimpleNamespace

    from face3d.serve import batching

    now = [100.0]
    monkeypatch.setattr(batching, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    calling, release = threading.Event(), threading.Event()
    sizes = []

    def predict(batch):
        sizes.append(len(batch))
        if len(sizes) == 1:
            calling.set()
            assert release.wait(60), "the first call was never released"
        now[0] += 2.0
        return batch * 10

    async def run():
        batcher = DynamicBatcher(predict, max_batch=2, max_delay_s=0.0)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(np.full(3, 0, np.float32)))  # submitted at 100 s
        assert await asyncio.to_thread(calling.wait, 60)  # the model is busy with it
        now[0] = 103.0
        queued = [asyncio.ensure_future(batcher.submit(np.full(3, x, np.float32))) for x in (1, 2, 3, 4)]
        await asyncio.sleep(0)  # the 4 submits run to their queue (submitted at 103 s)
        release.set()
        predictions = [await first] + [await q for q in queued]
        await batcher.close()
        return predictions

    predictions = asyncio.run(run())
    assert sizes == [1, 2, 2]
    assert [p.output[0] for p in predictions] == [0, 10, 20, 30, 40]
    assert [p.batch_size for p in predictions] == [1, 2, 2, 2, 2]
    # batches start at 100, 105 and 107 s (the first call ends at 105: the clock was set to 103, then moved 2 on)
    assert [p.queued_s for p in predictions] == [0.0, 2.0, 2.0, 4.0, 4.0]
    assert [p.network_s for p in predictions] == [5.0, 2.0, 2.0, 2.0, 2.0]


def test_image_headers_are_read_without_decoding():
    for ext, fmt in ((".png", "png"), (".jpg", "jpeg"), (".bmp", "bmp"), (".webp", "webp")):
        data = cv2.imencode(ext, np.zeros((37, 53, 3), np.uint8))[1].tobytes()
        header = image_header(data)
        assert (header.format, header.width, header.height) == (fmt, 53, 37), ext
    jpeg = cv2.imencode(".jpg", np.zeros((37, 53, 3), np.uint8))[1].tobytes()
    app15 = b"\xff\xef" + (65535).to_bytes(2, "big") + bytes(65533)  # two full metadata segments before the frame
    assert image_header(jpeg[:2] + 2 * app15 + jpeg[2:]).width == 53
    lossy = cv2.imencode(".webp", np.zeros((37, 53, 3), np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 80])[1].tobytes()
    assert (image_header(lossy).width, image_header(lossy).height) == (53, 37)
    assert check_image(png_header(1000, 1000), Limits(max_pixels=10 ** 6)).width == 1000
    with pytest.raises(ApiError, match="1001 x 1000") as error:
        check_image(png_header(1001, 1000), Limits(max_pixels=10 ** 6))
    assert (error.value.status, error.value.code) == (413, "too_many_pixels")
    for bad, status in ((b"\xff\xd8\xff\xe0\x00\x10JFIF", 400), (png_header(0, 5), 400), (b"GIF89a....", 415)):
        with pytest.raises(ApiError) as error:
            image_header(bad)
        assert error.value.status == status, bad


def test_command_line(capsys, tmp_path):
    from face3d.cli import main  # its --help: tests/test_cli.py
    assert main(["serve", "--model", str(tmp_path / "none.onnx")]) == 2
    assert "model not found" in capsys.readouterr().err
    for timeout in ("inf", "nan", "0"):
        with pytest.raises(SystemExit) as exit_info:
            main(["serve", "--model", str(tmp_path / "none.onnx"), "--timeout-s", timeout])
        assert exit_info.value.code == 2
        errors = capsys.readouterr().err.strip().splitlines()
        assert errors[-1].endswith(f"argument --timeout-s: expected a finite number > 0, got '{timeout}'"), errors
    with pytest.raises(ValueError, match="timeout_s finite"):
        Limits(timeout_s=float("inf"))
    for delay in ("inf", "-1"):  # an endless wait for a batch to fill would hang every request
        with pytest.raises(SystemExit) as exit_info:
            main(["serve", "--model", str(tmp_path / "none.onnx"), "--max-delay-ms", delay])
        assert exit_info.value.code == 2
        errors = capsys.readouterr().err.strip().splitlines()
        assert errors[-1].endswith(f"argument --max-delay-ms: expected a finite number >= 0, got '{delay}'"), errors
    for port in ("70000", "-1"):  # refused before the model loads, not by bind() after it
        with pytest.raises(SystemExit) as exit_info:
            main(["serve", "--model", str(tmp_path / "none.onnx"), "--port", port])
        assert exit_info.value.code == 2
        errors = capsys.readouterr().err.strip().splitlines()
        assert errors[-1].endswith(f"argument --port: expected an integer from 0 to 65535, got '{port}'"), errors
