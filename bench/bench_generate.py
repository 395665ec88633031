"""Benchmark of the ground-truth generator against a transcription of the PRNet fork's per-sample function, and
against the physical floor, all measured in this run.

Anchors (each timed in this process, interleaved with ours repetition by repetition):
  * fork: a TRANSCRIPTION (written here, not imported) of ``run_posmap_300W_LP`` from face3d's
    ``examples/8_generate_posmap_300WLP.py``, the function the PRNet forks run per sample: skimage ``io.imread``
    and ``loadmat``; face3d's vertex formula ``shapeMU + shapePC.dot(sp) + expPC.dot(ep)`` (one matrix-vector
    product); ``transform_3ddfa``; the crop with ``estimate_transform`` + ``warp``; a fresh UV render
    (``render_colors`` of the crop-space positions at the UV pixels); its two writes, ``io.imsave`` of the crop and
    ``np.save`` of the float32 map (its third, "only for show" map picture is left out). The render is face3d's
    Cython kernel with ``--face3d DIR`` (a built checkout of face3d, or its ``face3d/mesh/cython``), else this
    project's kernel, which applies the same pixel rule and is faster (``bench_render.py``), so the anchor is then
    if anything fast.
  * floor: decode the whole 450x450 JPEG (OpenCV; ours decodes only the part its crops read, where the JPEG region
    decoder is built), encode a 256x256 JPEG, write a float16 ``.npy`` (plain sample); with rotations
    the decode is shared by the 9 outputs, so a rotated output's floor is (decode + 9 x (encode + write)) / 9. It
    runs over the same samples as the cases it is compared with, creating as many files per folder as they do
    (creating a file costs the kernel more in a folder of thousands: 2.06 instead of 0.91 ms per rotated output
    once, 256 samples against 12).
Ours: the dataset runner's own per-chunk path (``face3d.trainset.worker_pool._process_tasks``, chunks of 128, every
file it writes) on a BFM-sized model, plain and with the 8 default rotations, and ``TrainsetGenerator.process``
(one sample a call) against ``process_many`` (no writes) on distinct parameter sets, and ``basis_stream``: one
vertex product of one parameter set (``face3d.mesh.linear.combine_basis``), the cost a lone sample cannot share
with others (it reads the whole basis from memory, which a batch reads once for all), to compare with
``single_ms - batched_ms``.

Sets: "300W-LP": faces with ``--views`` profiled views each sharing Shape_Para / Exp_Para (only Pose_Para
differs; ``<name>_1_<view>``) in ``SET/`` and their ``_Flip`` copies (mirrored image, own parameters, yaw and
roll negated, tx mirrored) in ``SET_Flip/``; "distinct": every sample its own parameters (the worst case).

Model: a random morphable model of BFM size (53,361 vertices, 105,800 triangles, 199 + 29 components, face-like
grid surface, full-square UV layout). Images: the 300W-LP fixture picture when ../shared/fixtures is present,
else a textured synthetic picture, 450x450.

Timing: CPU time of this process (user + system, so file writes' kernel time counts), one BLAS / OpenCV thread,
``--repeats`` interleaved repetitions; figures are per core. A ratio is taken within each repetition, where its two
cases ran one after the other, and the median over the repetitions is reported (a load that changes between
repetitions then moves both sides of a ratio), with its smallest and largest value as ``<ratio>_range``. The last
line is JSON: ``plain_x`` / ``plain_distinct_x`` (fork ms per sample / ours per plain sample on the 300W-LP /
distinct set), ``rotated_x`` (fork ms per sample / ours per output with 8 rotations, 300W-LP set),
``plain_floor_ratio`` and ``rotated_floor_ratio`` (ours / floor), ``single_ms`` and ``batched_ms`` (``process`` vs
``process_many`` per sample; ``single_x``: their ratio), plus every case's median time and, as
``<case>_kernel_ms``, the median part of it in the kernel (system time), and ``jpeg_region``: whether ours decoded
JPEGs through the region decoder.
Usage: python bench/bench_generate.py [--faces F] [--views V] [--repeats N] [--face3d DIR] [--quick]
"""
import os

# One core per process, for per-core figures; must be set before numpy loads its BLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import scipy.io as sio
import skimage.io
import skimage.transform
from skimage import img_as_ubyte

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import description, face3d_render_colors, interleaved, load_face3d_core, round_ratio

from face3d.mesh.linear import combine_basis, tile_basis
from face3d.mesh.render import render_colors
from face3d.mesh.transform import angle2matrix_3ddfa
from face3d.morphable_model import MorphableModel
from face3d.trainset import GenerationConfig, TrainsetGenerator
from face3d.trainset.discovery import discover_samples, sample_seed
from face3d.trainset.posmap import uv_to_pixels
from face3d.trainset.worker_pool import CHUNK_SIZE, RunState, SampleTask, _process_tasks
from face3d.utils.jpeg_region import region_decoder_available

FIXTURE = Path(os.environ.get("FACE3D_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))
GRID = 231
IMAGE_SIZE = 450
RESOLUTION = 256


def bfm_sized_model(seed=0):
    """Random morphable model of BFM size (GRID^2 vertices): a face-like cap about 150 x 190 mm in micrometres,
    shapePC / expPC with BFM-like magnitudes, 68 keypoints on a face layout, UV = the grid."""
    rng = np.random.default_rng(seed)
    s, t = np.meshgrid(np.linspace(0, 1, GRID), np.linspace(0, 1, GRID))
    s, t = s.ravel(), t.ravel()
    theta, phi = (s - 0.5) * 2.2, (t - 0.5) * 2.0
    x = 80000 * np.sin(theta) * np.cos(phi)
    y = 100000 * np.sin(phi)
    z = 80000 * np.cos(theta) * np.cos(phi) + 25000 * np.exp(-((theta / 0.25) ** 2 + ((phi + 0.1) / 0.35) ** 2))
    n = GRID * GRID
    idx = np.arange(n).reshape(GRID, GRID)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    tri = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([b, d, c], -1).reshape(-1, 3)])

    def basis(k, amplitude):  # smooth random deformation fields (unit parameters move vertices by ~1..10 mm)
        freq = rng.normal(0, 3, (k, 2))
        phase = rng.uniform(0, 2 * np.pi, (k, 3))
        fields = np.sin(np.einsum("kc,nc->nk", freq, np.column_stack([theta, phi]))[:, None, :] + phase.T[None])
        return (amplitude * fields).reshape(3 * n, k).astype(np.float32)
    jaw = [(0.5 + 0.4 * np.cos(np.pi * (1 - i / 16)), 0.55 - 0.4 * np.sin(np.pi * (1 - i / 16))) for i in range(17)]
    inner = [(0.3 + 0.4 * (i % 17) / 16, 0.3 + 0.35 * (i // 17) / 2) for i in range(51)]
    kpt = np.array([idx[round((1 - v) * (GRID - 1)), round(u * (GRID - 1))] for u, v in jaw + inner])
    model = {
        "shapeMU": np.column_stack([x, y, z]).reshape(-1, 1).astype(np.float32),
        "shapePC": basis(199, 1.0 / np.sqrt(3 * n)), "shapeEV": np.full((199, 1), 1e5, np.float32),
        "expPC": basis(29, 1000.0), "expEV": np.ones((29, 1), np.float32),
        "texMU": np.full((3 * n, 1), 128, np.float32), "texPC": np.zeros((3 * n, 1), np.float32),
        "texEV": np.ones((1, 1), np.float32), "tri": tri.astype(np.int32), "kpt_ind": kpt.astype(np.int32),
    }
    uv = np.column_stack([0.02 + 0.96 * s, 0.02 + 0.96 * (1 - t)]).astype(np.float32)
    return MorphableModel.from_arrays(model, uv_coords=uv)


# ----------------------------------------------------------------------------------------------- input sets

def source_picture(rng):
    """(450, 450, 3) uint8 BGR: the 300W-LP fixture picture, or a textured synthetic one."""
    fixture = FIXTURE / "300W_LP" / "IBUG_image_008_1_0.jpg"
    if fixture.is_file():
        return cv2.imread(str(fixture))
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
    picture = np.dstack([xx * 0.5, yy * 0.5, 128 + 60 * np.sin(xx / 17.0) * np.cos(yy / 23.0)])
    return (picture + rng.normal(0, 8, picture.shape)).clip(0, 255).astype(np.uint8)


def random_face(model, rng):
    """Shape_Para (199, 1) and Exp_Para (29, 1) float64 of a random face."""
    return rng.normal(0, 1, (199, 1)) * model.model["shapeEV"][:199] * 0.5, rng.normal(0, 0.5, (29, 1))


def random_pose(model, rng, yaw):
    """Pose_Para (7,) placing the face about the image centre at the given yaw (radians)."""
    scale = 190.0 / np.ptp(model.model["shapeMU"].reshape(-1, 3)[:, 1])
    return np.array([rng.uniform(-0.3, 0.3), yaw, rng.uniform(-0.3, 0.3),
                     225 + rng.uniform(-20, 20), 225 + rng.uniform(-20, 20), 0.0, scale])


def mirrored_pose(pose):
    """The pose of a horizontally mirrored picture: yaw and roll negated, tx mirrored."""
    out = pose.copy()
    out[1], out[2], out[3] = -pose[1], -pose[2], IMAGE_SIZE - 1 - pose[3]
    return out


def write_sample(stem, picture, pose, face):
    cv2.imwrite(f"{stem}.jpg", picture)
    sio.savemat(f"{stem}.mat", {"Pose_Para": pose[None].astype(np.float32), "Shape_Para": face[0],
                                "Exp_Para": face[1]})


def write_300wlp_set(root, model, faces, views, seed=0):
    """``faces`` faces of ``views`` views each in ``root/SET`` (shared Shape/Exp, yaw growing with the view) and
    their ``_Flip`` copies in ``root/SET_Flip`` (own parameters, mirrored picture and pose)."""
    rng = np.random.default_rng(seed)
    picture = source_picture(rng)
    for folder in ("SET", "SET_Flip"):
        (root / folder).mkdir(parents=True)
    for f in range(faces):
        face, flipped_face = random_face(model, rng), random_face(model, rng)
        shifted = np.roll(picture, 7 * f, axis=1)
        for v in range(views):
            pose = random_pose(model, rng, yaw=0.8 * v / max(views - 1, 1) * (-1) ** f)
            write_sample(root / "SET" / f"SET_{f:04d}_1_{v}", shifted, pose, face)
            write_sample(root / "SET_Flip" / f"SET_{f:04d}_1_{v}", shifted[:, ::-1], mirrored_pose(pose),
                         flipped_face)


def write_distinct_set(root, model, count, seed=1):
    """``count`` samples in ``root/SET``, every one with its own parameters."""
    rng = np.random.default_rng(seed)
    picture = source_picture(rng)
    (root / "SET").mkdir(parents=True)
    for i in range(count):
        pose = random_pose(model, rng, yaw=rng.uniform(-0.8, 0.8))
        write_sample(root / "SET" / f"SET_{i:04d}_1_0", np.roll(picture, 7 * i, axis=1), pose,
                     random_face(model, rng))


# ----------------------------------------------------------------------------------------------- anchors

def load_face3d_render(folder):
    """face3d's ``render_colors`` over its built Cython core in ``folder`` (the checkout or its
    ``face3d/mesh/cython``), allocating and copying as its render.py does."""
    return face3d_render_colors(load_face3d_core(folder), copy_inputs=True)


def fork_sample(model, uv_pixels, render, image_path, mat_path, out_folder, r=RESOLUTION):
    """TRANSCRIPTION of the PRNet fork's ``run_posmap_300W_LP`` (see the module docstring), step by step with the
    same library calls; files go to ``out_folder``."""
    image = skimage.io.imread(image_path) / 255.
    h = image.shape[0]
    info = sio.loadmat(mat_path)
    pose_para = info["Pose_Para"].T.astype(np.float32)
    shape_para = info["Shape_Para"].astype(np.float32)
    exp_para = info["Exp_Para"].astype(np.float32)
    m = model.model  # face3d's MorphabelModel.generate_vertices
    vertices = m["shapeMU"] + m["shapePC"].dot(shape_para) + m["expPC"].dot(exp_para)
    vertices = np.reshape(vertices, [3, len(vertices) // 3], "F").T
    s, angles, t = pose_para[-1, 0], pose_para[:3, 0], pose_para[3:6, 0]  # face3d's transform_3ddfa
    transformed = s * vertices.dot(angle2matrix_3ddfa(angles).T) + np.squeeze(np.array(t, dtype=np.float32))
    image_vertices = transformed.copy()
    image_vertices[:, 1] = h - image_vertices[:, 1] - 1
    kpt = image_vertices[model.kpt_ind, :].astype(np.int32)
    left, right, top, bottom = np.min(kpt[:, 0]), np.max(kpt[:, 0]), np.min(kpt[:, 1]), np.max(kpt[:, 1])
    center = np.array([right - (right - left) / 2.0, bottom - (bottom - top) / 2.0])
    old_size = (right - left + bottom - top) / 2
    size = int(old_size * 1.5)
    marg = old_size * 0.1
    center[0] += np.random.rand() * marg * 2 - marg
    center[1] += np.random.rand() * marg * 2 - marg
    size = size * (np.random.rand() * 0.2 + 0.9)
    src_pts = np.array([[center[0] - size / 2, center[1] - size / 2], [center[0] - size / 2, center[1] + size / 2],
                        [center[0] + size / 2, center[1] - size / 2]])
    dst_pts = np.array([[0, 0], [0, r - 1], [r - 1, 0]])
    tform = skimage.transform.estimate_transform("similarity", src_pts, dst_pts)
    cropped_image = skimage.transform.warp(image, tform.inverse, output_shape=(r, r))
    position = image_vertices.copy()
    position[:, 2] = 1
    position = np.dot(position, tform.params.T)
    position[:, 2] = image_vertices[:, 2] * tform.params[0, 0]
    position[:, 2] = position[:, 2] - np.min(position[:, 2])
    uv_position_map = render(uv_pixels, model.full_triangles, position, r, r, c=3)
    name = Path(image_path).name
    # old skimage's imsave converted a float image with img_as_ubyte itself; current versions need it explicit
    skimage.io.imsave(str(out_folder / name), img_as_ubyte(np.squeeze(cropped_image)), check_contrast=False)
    np.save(out_folder / name.replace("jpg", "npy"), uv_position_map)


def floor_sample(image_path, out_folder, outputs):
    """The physical floor of one sample with ``outputs`` outputs: decode its JPEG once, then per output encode a
    256x256 JPEG and write a float16 ``.npy`` as a new file (as a run creates them)."""
    image = cv2.imdecode(np.fromfile(image_path, dtype=np.uint8), cv2.IMREAD_COLOR)
    crop = np.ascontiguousarray(image[:RESOLUTION, :RESOLUTION])
    posmap = np.zeros((RESOLUTION, RESOLUTION, 3), dtype=np.float16)
    stem = Path(image_path).parent.name + Path(image_path).stem
    for k in range(outputs):
        cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
        with open(out_folder / f"{stem}_{k}.npy", "wb") as f:
            np.save(f, posmap)


def fresh_folder(folder):
    """``folder``, emptied (untimed): every case writes new files each repetition, as a first run does."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


# ----------------------------------------------------------------------------------------------- timing

def runner_case(model, root, out, angles):
    """A case timing the runner over every sample under ``root``: (prepare, run, samples)."""
    refs = [SampleTask(ref, sample_seed(0, ref.rel)) for ref in discover_samples(root)]
    chunks = [refs[i:i + CHUNK_SIZE] for i in range(0, len(refs), CHUNK_SIZE)]

    config = GenerationConfig(angles=angles)

    def prepare():  # a fresh generator and folder each repetition: nothing cached or overwritten
        generator = TrainsetGenerator(model, config, posmap_dtype=config.posmap_dtype)  # as the runner builds it
        return RunState(generator, str(fresh_folder(out)), config.posmap_dtype, "bench")

    def run(state):
        for chunk in chunks:
            _process_tasks(state, chunk)
    return prepare, run, len(refs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--faces", type=int, default=8, help="faces of the 300W-LP set (default 8)")
    parser.add_argument("--views", type=int, default=16, help="profiled views per face (default 16)")
    parser.add_argument("--fork-samples", type=int, default=24, help="samples the fork transcription runs (24)")
    parser.add_argument("--single-samples", type=int, default=24, help="samples of process vs process_many (24)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions, median taken (5)")
    parser.add_argument("--face3d", metavar="DIR", help="built face3d checkout (or its face3d/mesh/cython folder)")
    parser.add_argument("--quick", action="store_true", help="2 faces of 4 views, 1 repetition")
    args = parser.parse_args(argv)
    if args.quick:
        args.faces, args.views, args.fork_samples, args.single_samples, args.repeats = 2, 4, 4, 8, 1
    cv2.setNumThreads(1)
    np.random.seed(0)
    model = bfm_sized_model()
    render = load_face3d_render(args.face3d) if args.face3d else render_colors
    uv_pixels = uv_to_pixels(model.uv_coords, RESOLUTION)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_300wlp_set(tmp / "lp", model, args.faces, args.views)
        n_lp = 2 * args.faces * args.views
        write_distinct_set(tmp / "distinct", model, n_lp)
        lp_jobs = [(r.image_path, r.mat_path, 0) for r in discover_samples(tmp / "lp")]
        distinct_jobs = [(r.image_path, r.mat_path, 0) for r in discover_samples(tmp / "distinct")]
        fork_jobs = lp_jobs[:: max(1, len(lp_jobs) // args.fork_samples)][:args.fork_samples]
        fork_sets = sorted({Path(image_path).parent.name for image_path, _, _ in fork_jobs})
        single_jobs = distinct_jobs[:args.single_samples]
        angles = GenerationConfig().angles

        def fixed(run, units, folder):
            return (lambda: fresh_folder(folder)), (lambda _: run()), units

        def generator_case(method):
            def run(generator):
                if method == "process":
                    for job in single_jobs:
                        generator.process(*job)
                else:
                    generator.process_many(single_jobs)
            return (lambda: TrainsetGenerator(model, GenerationConfig(angles=()))), run, len(single_jobs)

        # the one part of a lone sample that a batch shares out: the vertex product streaming the whole basis
        mean, tiles = tile_basis(model.model["shapeMU"], model.model["shapePC"], model.model["expPC"])
        coefficients = np.random.default_rng(2).normal(0, 1, (len(single_jobs), 1, tiles.shape[1]))

        cases = {
            "basis_stream": fixed(lambda: [combine_basis(mean, tiles, c) for c in coefficients], len(single_jobs),
                                  tmp / "unused"),
            # a sample and its _Flip copy share a file name: each set's outputs go to a folder of its own, so that
            # every write creates a new file, as the other cases' writes do
            "fork": ((lambda: [fresh_folder(tmp / "fork" / name) for name in fork_sets]),
                     (lambda _: [fork_sample(model, uv_pixels, render, i, m, tmp / "fork" / Path(i).parent.name)
                                 for i, m, _ in fork_jobs]),
                     len(fork_jobs)),
            "floor_plain": fixed(lambda: [floor_sample(i, tmp / "floor", 1) for i, _, _ in lp_jobs],
                                 len(lp_jobs), tmp / "floor"),
            "floor_rotated": fixed(lambda: [floor_sample(i, tmp / "floor", 1 + len(angles)) for i, _, _ in lp_jobs],
                                   len(lp_jobs) * (1 + len(angles)), tmp / "floor"),
            "plain": runner_case(model, tmp / "lp", tmp / "out" / "plain", ()),
            "plain_distinct": runner_case(model, tmp / "distinct", tmp / "out" / "distinct", ()),
            "rotated": runner_case(model, tmp / "lp", tmp / "out" / "rotated", angles),
            "single": generator_case("process"),
            "batched": generator_case("process_many"),
        }
        rotated_prepare, rotated_run, rotated_samples = cases["rotated"]
        cases["rotated"] = rotated_prepare, rotated_run, rotated_samples * (1 + len(angles))  # per output
        times = interleaved(cases, args.repeats, rotate=False)  # the order of the README's runs
        rounds, kernel_rounds = times["cpu"], times["kernel"]
    ms = {name: statistics.median(t) for name, t in rounds.items()}
    kernel_ms = {name: statistics.median(t) for name, t in kernel_rounds.items()}
    print(f"BFM-sized model ({model.nver} vertices, {model.full_triangles.shape[0]} triangles); 300W-LP set: "
          f"{args.faces} faces x {args.views} views + _Flip = {n_lp} samples; distinct set: {n_lp} samples; "
          f"fork transcription on {len(fork_jobs)} samples ({'face3d' if args.face3d else 'our'} render kernel); "
          f"CPU ms, median of {args.repeats} interleaved repetitions; JPEG region decoder "
          f"{'used' if region_decoder_available() else 'not built: whole images decoded'}")
    for name, value in ms.items():
        unit = "output" if name in ("rotated", "floor_rotated") else "sample"
        print(f"  {name:16s} {value:8.2f} ms per {unit} (in the kernel {kernel_ms[name]:.2f}; rounds "
              f"{min(rounds[name]):.2f}-{max(rounds[name]):.2f})")
    print(f"a lone sample's vertex product reads the whole {tiles.nbytes / 1e6:.0f} MB basis: {ms['basis_stream']:.2f} "
          f"ms, where a batch shares one pass (single - batched: {ms['single'] - ms['batched']:.2f} ms)")
    ratios = {"plain_x": ("fork", "plain"), "plain_distinct_x": ("fork", "plain_distinct"),
              "rotated_x": ("fork", "rotated"), "plain_floor_ratio": ("plain", "floor_plain"),
              "rotated_floor_ratio": ("rotated", "floor_rotated"), "single_x": ("single", "batched")}
    result, ranges = {}, {}
    for key, (numerator, denominator) in ratios.items():
        result[key], (low, high) = round_ratio(rounds[numerator], rounds[denominator])
        ranges[f"{key}_range"] = [round(low, 3), round(high, 3)]
        print(f"  {key:20s} {result[key]:7.2f}  (rounds {low:.2f}-{high:.2f})")
    result = {
        **result, "single_ms": ms["single"], "batched_ms": ms["batched"],
        **{f"{name}_ms": value for name, value in ms.items()},
        **{f"{name}_kernel_ms": value for name, value in kernel_ms.items()},
    }
    print(json.dumps({**{key: round(value, 3) for key, value in result.items()}, **ranges,
                      "jpeg_region": region_decoder_available()}))


if __name__ == "__main__":
    main()
