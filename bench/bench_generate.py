"""Benchmark of the ground-truth generator (face3d.trainset) against the PRNet-fork way, in the same run.

Baseline (PRNet's ``generate_posmap_300WLP.py`` as the forks run it, on face3d's core): skimage ``io.imread`` and
``loadmat``; ``MorphableModel.generate_vertices`` (one matrix-vector product); ``transform_3ddfa``; crop with
``skimage.transform.estimate_transform`` + ``warp``; the UV map with a fresh ``render_colors`` per sample; then
``io.imsave`` of the crop, ``np.save`` of the map and ``io.imsave`` of the map preview (``map / max(h, w)``).

Ours, plain and with the 8 default rotations (9 outputs per sample):
  * ``process`` (one sample per call) and ``process_many`` (chunks sharing one matrix-matrix product): no writes;
  * "runner": ``face3d.trainset.dataset._process_tasks``, the dataset runner's own per-chunk path: generation
    plus every file it writes per sample (crop ``.jpg``, float16 ``.npy``, each through a temporary file and a
    rename, and the done marker).
Generators run with ``cache_size=0`` on distinct parameter sets, so repeats never hit the vertex cache.

Models: a random model of Basel Face Model size (53,361 vertices, 105,800 triangles, 199 + 29 components, a
face-like grid surface with a full-square UV layout) and the embedded default model. Samples: 450x450 JPEGs
(the 300W-LP fixture image when ../shared/fixtures is present) with random parameters placing the face.

Single process, single-threaded BLAS/OpenCV, CPU time of the process (user + system, so the file writes'
kernel time counts; figures per core; wall time on a shared machine mostly measures the neighbours), best of
``--repeats``. Speed-ups are per output against the in-run baseline and against the 48 ms per sample
measured for the PRNet fork on the development machine. ``--workers N`` also runs the runner path on N processes
(wall time, all cores).
Usage: python bench/bench_generate.py [--samples N] [--chunk B] [--workers N] [--quick]
"""
import os

# One core per process, for per-core figures; must be set before numpy loads its BLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import multiprocessing  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import scipy.io as sio  # noqa: E402
import skimage.io  # noqa: E402
import skimage.transform  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from face3d.mesh.render import render_colors  # noqa: E402
from face3d.morphable_model import MorphableModel  # noqa: E402
from face3d.trainset import GenerationConfig, TrainsetGenerator  # noqa: E402
from face3d.trainset.dataset import CHUNK_SIZE, SampleRef, _process_tasks, _RunState  # noqa: E402

FIXTURE = Path(os.environ.get("FACE3D_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))
GRID = 231
IMAGE_SIZE = 450


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
    # smooth random deformation fields as components (unit parameters move vertices by ~1..10 mm)
    def basis(k, amplitude):
        freq = rng.normal(0, 3, (k, 2))
        phase = rng.uniform(0, 2 * np.pi, (k, 3))
        fields = np.sin(np.einsum("kc,nc->nk", freq, np.column_stack([theta, phi]))[:, None, :] + phase.T[None])
        return (amplitude * fields).reshape(3 * n, k).astype(np.float32)
    jaw = [(0.5 + 0.4 * np.cos(np.pi * (1 - i / 16)), 0.55 - 0.4 * np.sin(np.pi * (1 - i / 16))) for i in range(17)]
    inner = [(0.3 + 0.4 * (i % 17) / 16, 0.3 + 0.35 * (i // 17) / 2) for i in range(51)]
    kpt = np.array([idx[int(round((1 - v) * (GRID - 1))), int(round(u * (GRID - 1)))] for u, v in jaw + inner])
    model = {
        "shapeMU": np.column_stack([x, y, z]).reshape(-1, 1).astype(np.float32),
        "shapePC": basis(199, 1.0 / np.sqrt(3 * n)), "shapeEV": np.full((199, 1), 1e5, np.float32),
        "expPC": basis(29, 1000.0), "expEV": np.ones((29, 1), np.float32),
        "texMU": np.full((3 * n, 1), 128, np.float32), "texPC": np.zeros((3 * n, 1), np.float32),
        "texEV": np.ones((1, 1), np.float32), "tri": tri.astype(np.int32), "kpt_ind": kpt.astype(np.int32),
    }
    uv = np.column_stack([0.02 + 0.96 * s, 0.02 + 0.96 * (1 - t)]).astype(np.float32)
    return MorphableModel.from_arrays(model, uv_coords=uv)


def write_samples(folder, model, count, seed=0):
    """``count`` image + .mat pairs (450x450 JPEG) with random parameters; returns [(image, mat, seed)]."""
    rng = np.random.default_rng(seed)
    fixture = FIXTURE / "300W_LP" / "IBUG_image_008_1_0.jpg"
    if fixture.is_file():
        picture = cv2.imread(str(fixture))
    else:
        yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
        picture = np.dstack([xx * 0.5, yy * 0.5, 128 + 60 * np.sin(xx / 17.0) * np.cos(yy / 23.0)])
        picture = (picture + rng.normal(0, 8, picture.shape)).clip(0, 255).astype(np.uint8)
    scale = 190.0 / np.ptp(model.model["shapeMU"].reshape(-1, 3)[:, 1])
    jobs = []
    for i in range(count):
        stem = folder / f"sample_{i:04d}"
        cv2.imwrite(f"{stem}.jpg", np.roll(picture, 7 * i, axis=1))
        pose = np.array([rng.uniform(-0.3, 0.3), rng.uniform(-0.8, 0.8), rng.uniform(-0.3, 0.3),
                         225 + rng.uniform(-20, 20), 225 + rng.uniform(-20, 20), 0.0, scale])
        sio.savemat(f"{stem}.mat", {"Pose_Para": pose[None].astype(np.float32),
                                    "Shape_Para": rng.normal(0, 1, (199, 1)) * model.model["shapeEV"][:199] * 0.5,
                                    "Exp_Para": rng.normal(0, 0.5, (29, 1))})
        jobs.append((f"{stem}.jpg", f"{stem}.mat", i))
    return jobs


def baseline_sample(model, uv_pixels, image_path, mat_path, out_folder, r=256):
    """One sample the PRNet-fork way (see the module docstring), files written to ``out_folder``."""
    image = skimage.io.imread(image_path) / 255.0
    h = image.shape[0]
    info = sio.loadmat(mat_path)
    pose = info["Pose_Para"].T.astype(np.float32)
    vertices = model.generate_vertices(info["Shape_Para"].astype(np.float32), info["Exp_Para"].astype(np.float32))
    projected = model.transform_3ddfa(vertices, pose[-1, 0], pose[:3, 0], pose[3:6, 0])
    image_vertices = projected.copy()
    image_vertices[:, 1] = h - image_vertices[:, 1] - 1
    kpt = image_vertices[model.kpt_ind, :].astype(np.int32)
    left, right, top, bottom = kpt[:, 0].min(), kpt[:, 0].max(), kpt[:, 1].min(), kpt[:, 1].max()
    center = np.array([right - (right - left) / 2.0, bottom - (bottom - top) / 2.0])
    old_size = (right - left + bottom - top) / 2
    size = int(old_size * 1.5)
    marg = old_size * 0.1
    center += np.random.rand(2) * marg * 2 - marg
    size = size * (np.random.rand() * 0.2 + 0.9)
    src = np.array([[center[0] - size / 2, center[1] - size / 2], [center[0] - size / 2, center[1] + size / 2],
                    [center[0] + size / 2, center[1] - size / 2]])
    dst = np.array([[0, 0], [0, r - 1], [r - 1, 0]])
    tform = skimage.transform.estimate_transform("similarity", src, dst)
    cropped = skimage.transform.warp(image, tform.inverse, output_shape=(r, r))
    position = image_vertices.copy()
    position[:, 2] = 1
    position = np.dot(position, tform.params.T)
    position[:, 2] = image_vertices[:, 2] * tform.params[0, 0]
    position[:, 2] = position[:, 2] - np.min(position[:, 2])
    uv_map = render_colors(uv_pixels, model.full_triangles, position.astype(np.float32), r, r, c=3)
    name = Path(image_path).name
    skimage.io.imsave(str(out_folder / name), (cropped * 255).astype(np.uint8), check_contrast=False)
    np.save(out_folder / name.replace(".jpg", ".npy"), uv_map)
    skimage.io.imsave(str(out_folder / name.replace(".jpg", "_posmap.jpg")),
                      (np.clip(uv_map / max(h, image.shape[1]), 0, 1) * 255).astype(np.uint8), check_contrast=False)


def timed(fn, repeats):
    """Best of ``repeats`` CPU times (``time.process_time``, this process; BLAS and OpenCV are single-threaded)
    of ``fn()`` in seconds: on a shared machine CPU time is far steadier than wall time, and per core is what
    the targets are stated in."""
    best = np.inf
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


REFERENCE_MS = 48.0  # the PRNet fork's per-sample time measured on the development machine (BFM, one core)


def _runner_state(generator, output):
    return _RunState(generator, str(output), "float16", "bench")


def _refs(jobs):
    """The runner's task list for bench jobs: (SampleRef, seed), all in one folder."""
    return [(SampleRef(f"bench/{Path(image).stem}", image, mat), seed) for image, mat, seed in jobs]


def _worker_init(model_kind, angles, output):
    global _STATE  # noqa: PLW0603 -- one generator per worker process, built once
    model = bfm_sized_model() if model_kind == "bfm-sized" else MorphableModel()
    _STATE = _runner_state(TrainsetGenerator(model, GenerationConfig(angles=angles), cache_size=0), output)


def _worker_chunk(tasks):
    return sum(n for _, status, n in _process_tasks(_STATE, tasks) if status == "written")


def bench_model(kind, model, jobs, args, tmp):
    from face3d.trainset.posmap import uv_to_pixels
    n = len(jobs)
    chunks = [jobs[i:i + args.chunk] for i in range(0, n, args.chunk)]
    uv_pixels = uv_to_pixels(model.uv_coords, 256)
    out = Path(tmp) / f"out_{kind}"
    out.mkdir(exist_ok=True)
    rows = []  # (label, seconds per sample, outputs per sample)

    base_jobs = jobs[:args.single_samples]
    t = timed(lambda: [baseline_sample(model, uv_pixels, i, m, out) for i, m, _ in base_jobs], args.repeats)
    base_per_sample = t / len(base_jobs)
    rows.append(("baseline (PRNet fork, with its 3 file writes)", base_per_sample, 1))

    for label, angles, outputs_per in (("plain", (), 1), ("8 rotations", GenerationConfig().angles, 9)):
        generator = TrainsetGenerator(model, GenerationConfig(angles=angles), cache_size=0)
        state = _runner_state(generator, out / label.replace(" ", "_"))
        t = timed(lambda: [generator.process(*job) for job in base_jobs], args.repeats)
        rows.append((f"process, {label}, no writes", t / len(base_jobs), outputs_per))
        t = timed(lambda: [generator.process_many(c) for c in chunks], args.repeats)
        rows.append((f"process_many({args.chunk}), {label}, no writes", t / n, outputs_per))
        t = timed(lambda: [_process_tasks(state, _refs(c)) for c in chunks], args.repeats)
        rows.append((f"runner chunk {args.chunk}, {label}, with writes", t / n, outputs_per))
    if args.workers > 1:
        for label, angles, outputs_per in (("plain", (), 1), ("8 rotations", GenerationConfig().angles, 9)):
            folder = out / f"pool_{label.replace(' ', '_')}"
            tasks = [_refs(c) for c in chunks]
            with multiprocessing.get_context("fork").Pool(args.workers, _worker_init, (kind, angles, folder)) as pool:
                pool.map(_worker_chunk, tasks[:args.workers])  # warm-up: workers built
                start = time.perf_counter()
                produced = sum(pool.map(_worker_chunk, tasks * 2, chunksize=1))
                t = time.perf_counter() - start
            rows.append((f"{args.workers} workers (wall), runner, {label}, with writes",
                         t * outputs_per / produced, outputs_per))

    print(f"\n{kind}: {model.nver} vertices, {model.full_triangles.shape[0]} triangles, "
          f"{model.n_shape_para}+{model.n_exp_para} components, {n} samples ({len(base_jobs)} for the baseline "
          f"and process), "
          f"CPU time, best of {args.repeats}")
    print(f"  {'':54s} {'ms/sample':>9s} {'ms/output':>9s} {'samples/s':>9s} {'outputs/s':>9s} "
          f"{'x baseline':>10s} {'x 48 ms':>8s}")
    for label, per_sample, outputs_per in rows:
        per_output = per_sample / outputs_per
        print(f"  {label:54s} {1000 * per_sample:9.2f} {1000 * per_output:9.2f} {1 / per_sample:9.1f} "
              f"{1 / per_output:9.1f} {base_per_sample / per_output:10.1f} {REFERENCE_MS / 1000 / per_output:8.1f}")
    print("  (x baseline, x 48 ms: outputs per second against the in-run baseline and the fork's 48 ms reference; "
          "targets: x10 plain, x20 per output with rotations)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=256, help="samples per model (default 256)")
    parser.add_argument("--single-samples", type=int, default=16,
                        help="of which the baseline and one-sample-per-call process run (default 16)")
    parser.add_argument("--chunk", type=int, default=CHUNK_SIZE,
                        help=f"samples per process_many call / runner chunk (default {CHUNK_SIZE}, the runner's)")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions, best taken (default 3)")
    parser.add_argument("--workers", type=int, default=1, help="also run this many worker processes (default 1)")
    parser.add_argument("--quick", action="store_true", help="8 samples, 1 repeat, default model only")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.single_samples, args.repeats = 8, 4, 1
    cv2.setNumThreads(1)
    np.random.seed(0)
    models = [("default", MorphableModel)] if args.quick else [("bfm-sized", bfm_sized_model),
                                                                ("default", MorphableModel)]
    with tempfile.TemporaryDirectory() as tmp:
        for kind, build in models:
            model = build()
            jobs = write_samples(Path(tmp), model, args.samples)
            bench_model(kind, model, jobs, args, tmp)


if __name__ == "__main__":
    main()
