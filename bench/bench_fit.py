"""Benchmark: landmark fitting speed and accuracy, ours (single and batch) vs face3d's algorithm.

For each model (the embedded default model, and a random BFM-sized model: 53215 vertices,
199 shape + 29 expression components) it draws N faces with face3d's parameter distributions
(``get_shape_para('random')``, ``get_exp_para('random')``), poses with yaw spread over [-90, 90]
degrees (pitch, roll in [-10, 10]) at face3d's example scale s = 8e-4, projects the 68 keypoints,
adds 1 px Gaussian noise and fits with 4 iterations:

* ``face3d``: a plain per-face numpy transcription of face3d's ``fit_points`` (affine Gold Standard
  pose -> expression alone (lamb 20) -> shape alone (lamb 40), ``np.linalg.inv`` solves), one
  face at a time;
* ``ours single``: ``MorphableModel.fit`` called per face;
* ``ours batch``: ``MorphableModel.fit_batch`` on all N faces at once (tolerance 1e-3 px), and
  ``ours batch, 4 forced`` with tolerance 0 (every face runs the 4 iterations).

Timing: face3d and ours single fit ``--single`` of the faces, the batches all N; the four cases run
one after the other in each of ``--rounds`` rounds (after an untimed warm-up round), the order
rotated by one each round, so that a change in the machine's load hits them all. It prints per face
the median over the rounds of the wall time (and fits per second) and of the process CPU time (the
machine may be shared), and each case's speed-up over face3d, taken within each round: the median
over the rounds and its range. Then per yaw bucket the landmark RMSE (fitted keypoints vs the noisy
input landmarks) and the dense 2D vertex RMSE (all projected vertices, fitted vs true), in pixels, for face3d
on its ``--single`` faces, ours (batch) on the same faces, and ours on all N.
The default model is also fitted in contour-aware mode on 300W-LP-style landmarks (jaw points of the
far side on the silhouette, by the rule of ``face3d.morphable_model.contour``).

The last line is JSON: ``faces``, ``single``, ``rounds`` and per model (``default``, ``bfm_sized``) the
median ms per face ``<case>_ms`` (wall) and ``<case>_cpu_ms`` for the cases ``face3d``, ``single``,
``batch`` and ``batch_forced``; each of ours' speed-up over face3d ``<case>_x`` (wall) and
``<case>_cpu_x`` with their ranges over the rounds (``<case>_x_range``, ``<case>_cpu_x_range``);
``iterations_mean`` (ours batch); and the mean RMSEs ``<fit>_landmark_rmse`` and ``<fit>_dense_rmse`` (px)
for ``face3d`` and ``ours_same_faces`` (its ``--single`` faces), ``ours`` (all N faces), plus ``fixed_index`` and
``contour`` on the default model's 300W-LP-style landmarks.

Usage: python bench/bench_fit.py [--faces 200] [--single 40] [--rounds 5] [--seed 0]
OpenBLAS threads default to 1 (set OPENBLAS_NUM_THREADS to override): per-face work is small and
threads only add contention on a shared machine.
"""
import argparse
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from _common import description, interleaved, round_ratio, rounded  # noqa: E402

from face3d.mesh.transform import P2sRt, angle2matrix, estimate_affine_matrix_3d22d  # noqa: E402
from face3d.morphable_model import MorphableModel  # noqa: E402
from face3d.morphable_model.contour import landmark_vertices  # noqa: E402

SCALE = 8e-4
BUCKETS = ((-90, -60), (-60, -30), (-30, 0), (0, 30), (30, 60), (60, 91))


# ----------------------------------------------------------------------- face3d's algorithm
def _face3d_estimate(x, mu, pc, ev, other, s, R, t2d, lamb):
    """face3d's estimate_shape / estimate_expression: one regularised linear solve.

    x (2, n); mu (3n, 1); pc (3n, k); ev (k, 1); other (3, n) fixed part; returns (k, 1).
    """
    n = x.shape[1]
    A = s * R[:2]
    dof = pc.shape[1]
    pc_2d = (pc.T.reshape(dof, n, 3) @ A.T).reshape(dof, -1).T            # (2n, k)
    b = (A @ (mu.reshape(n, 3).T + other) + t2d[:, None]).T.reshape(-1, 1)
    left = pc_2d.T @ pc_2d + lamb * np.diagflat(1.0 / ev ** 2)
    right = pc_2d.T @ (x.T.reshape(-1, 1) - b)
    return np.linalg.inv(left) @ right


def face3d_fit(x, X_ind, model, max_iter=4):
    """face3d's ``fit_points`` for one face: x (n, 2) -> sp, ep, s, R, t.

    As in face3d, the returned pose is the one estimated at the start of the last iteration."""
    x = x.T
    rows = (3 * np.asarray(X_ind)[:, None] + np.arange(3)).reshape(-1)
    mu = model["shapeMU"][rows].astype(np.float64)
    spc = model["shapePC"][rows].astype(np.float64)
    epc = model["expPC"][rows].astype(np.float64)
    sev = model["shapeEV"].astype(np.float64)
    eev = model["expEV"].astype(np.float64)
    sp = np.zeros((spc.shape[1], 1))
    ep = np.zeros((epc.shape[1], 1))
    for _ in range(max_iter):
        X = (mu + spc @ sp + epc @ ep).reshape(-1, 3)
        s, R, t = P2sRt(estimate_affine_matrix_3d22d(X, x.T))
        shape = (spc @ sp).reshape(-1, 3).T
        ep = _face3d_estimate(x, mu, epc, eev, shape, s, R, t[:2], lamb=20)
        expression = (epc @ ep).reshape(-1, 3).T
        sp = _face3d_estimate(x, mu, spc, sev, expression, s, R, t[:2], lamb=40)
    return sp[:, 0], ep[:, 0], s, R, np.array([t[0], t[1], 0.0])


# ----------------------------------------------------------------------------- test data
def random_bfm_sized_model(rng, nver=53215, n_sp=199, n_ep=29):
    """A random model with BFM sizes and scales: a half-ellipsoid mean (~15 cm wide, micrometres),
    orthonormal random bases with BFM-like standard deviations, random keypoints."""
    u = rng.uniform(-1.3, 1.3, nver)
    v = rng.uniform(-1.2, 1.2, nver)
    mean = np.stack([np.sin(u) * 7e4, v * 9e4, np.cos(u) * np.cos(0.9 * v) * 6e4 + 6e4], axis=1)
    shape_pc = rng.standard_normal((3 * nver, n_sp), dtype=np.float32)
    shape_pc /= np.sqrt(3 * nver)
    exp_pc = rng.standard_normal((3 * nver, n_ep), dtype=np.float32) * np.float32(2e5 / np.sqrt(
        3 * nver))
    model = {
        "shapeMU": mean.reshape(-1, 1).astype(np.float32), "shapePC": shape_pc,
        "shapeEV": (9e5 * np.arange(1, n_sp + 1) ** -0.5)[:, None].astype(np.float32),
        "expPC": exp_pc, "expEV": (2.0 * np.arange(1, n_ep + 1) ** -0.7)[:, None].astype(
            np.float32),
        "texMU": np.full((3 * nver, 1), 128, np.float32), "texPC": np.zeros((3 * nver, 1),
                                                                            np.float32),
        "texEV": np.ones((1, 1), np.float32), "tri": np.array([[0, 1, 2]], np.int32),
        "kpt_ind": rng.choice(nver, 68, replace=False).astype(np.int32),
    }
    return MorphableModel.from_arrays(model)


def make_faces(mm, n, rng, silhouette=False):
    """n faces: yaw (n,) degrees, projected vertices (n, nver, 2), noisy landmarks (n, 68, 2)."""
    sp = np.stack([mm.get_shape_para("random", rng)[:, 0] for _ in range(n)])
    ep = np.stack([mm.get_exp_para("random", rng)[:, 0] for _ in range(n)])
    yaw = np.linspace(-90, 90, n)
    R = np.stack([angle2matrix([rng.uniform(-10, 10), y, rng.uniform(-10, 10)]) for y in yaw])
    verts = project_all(mm, sp, ep, np.full(n, SCALE), R, np.zeros((n, 3)))
    lms = np.empty((n, 68, 2))
    for i in range(n):
        ind = mm.kpt_ind
        if silhouette:
            v3 = mm.generate_vertices(sp[i], ep[i]).astype(np.float64)
            ind = landmark_vertices(v3, R[i], mm.kpt_ind, mm.contour_lines)
        lms[i] = verts[i, ind]
    return yaw, verts, lms + rng.standard_normal((n, 68, 2))


def project_all(mm, sp, ep, s, R, t):
    """Projected 2D vertices of N faces: (N, nver, 2) float64 (face3d camera, y up)."""
    m = mm.model
    V = (m["shapeMU"] + m["shapePC"] @ sp.T.astype(np.float32)
         + m["expPC"] @ ep.T.astype(np.float32)).T.reshape(len(sp), -1, 3).astype(np.float64)
    return s[:, None, None] * np.einsum("bvc,bac->bva", V, R[:, :2]) + t[:, None, :2]


def report(mm, name, yaw, lms, verts, sp, ep, s, R, t, lmk_vertices):
    """Print landmark RMSE (vs the noisy input) / dense 2D RMSE (vs truth) per yaw bucket, px; returns the means
    over all faces (landmark, dense)."""
    proj = project_all(mm, sp, ep, s, R, t)
    fitted_lms = np.take_along_axis(proj, lmk_vertices[:, :, None].astype(np.int64), axis=1)
    lm = np.sqrt(((fitted_lms - lms) ** 2).sum(-1).mean(1))
    dense = np.sqrt(((proj - verts) ** 2).sum(-1).mean(1))
    cells = []
    for lo, hi in BUCKETS:
        k = (yaw >= lo) & (yaw < hi)
        cells.append(f"{lm[k].mean():5.2f}/{dense[k].mean():5.2f}")
    print(f"  {name:<22} all {lm.mean():5.2f}/{dense.mean():5.2f} | " + "  ".join(cells))
    return float(lm.mean()), float(dense.mean())


def run(mm, label, n_faces, n_single, rounds, rng, contour_table):
    """Time and score face3d's algorithm, our single fits and our batch fits on one model; returns the model's
    part of the JSON summary (keys in the module docstring)."""
    print(f"\n== {label}: {mm.nver} vertices, {mm.n_shape_para}+{mm.n_exp_para} components, "
          f"{n_faces} faces, 68 landmarks, 1 px noise, 4 iterations, s = {SCALE}")
    yaw, verts, lms = make_faces(mm, n_faces, rng)
    kpt = np.broadcast_to(mm.kpt_ind, (n_faces, 68))
    single = np.linspace(0, n_faces - 1, n_single).astype(int)
    mm.fitter()  # per-model precomputation, excluded from the per-face timings

    fits = {}  # each case's fits of its last round (the fits are deterministic): scored below

    def case(name, fit_all, units):
        return (lambda: None), (lambda _: fits.__setitem__(name, fit_all())), units
    cases = {"face3d": case("face3d", lambda: [face3d_fit(lms[i], mm.kpt_ind, mm.model) for i in single], n_single),
             "single": case("single", lambda: [mm.fit(lms[i], mm.kpt_ind, max_iter=4) for i in single], n_single),
             "batch": case("batch", lambda: mm.fit_batch(lms, max_iter=4), n_faces),
             "batch_forced": case("batch_forced", lambda: mm.fit_batch(lms, max_iter=4, tol=0.0), n_faces)}
    times = interleaved(cases, rounds, rotate=True)
    ref, res = fits["face3d"], fits["batch"]
    print(f"  iterations used by ours (tol 1e-3 px): mean {res.n_iter.mean():.2f}, "
          f"max {res.n_iter.max()}")
    print(f"  timing per face, median of {rounds} interleaved rounds; speed-up vs face3d within each round: "
          "median (range)")
    print("  case                   wall ms  (fits/s)   cpu ms   speed-up wall           cpu")
    summary = {"iterations_mean": float(res.n_iter.mean())}
    labels = {"face3d": "face3d (per face)", "single": "ours single", "batch": "ours batch",
              "batch_forced": "ours batch, 4 forced"}
    for name, label in labels.items():
        wall, cpu = statistics.median(times["wall"][name]), statistics.median(times["cpu"][name])
        x_wall, (low_wall, high_wall) = round_ratio(times["wall"]["face3d"], times["wall"][name])
        x_cpu, (low_cpu, high_cpu) = round_ratio(times["cpu"]["face3d"], times["cpu"][name])
        print(f"  {label:<22} {wall:7.3f}  ({1e3 / wall:8.1f})  {cpu:7.3f}   {x_wall:5.1f}x ({low_wall:4.1f}-"
              f"{high_wall:4.1f})  {x_cpu:5.1f}x ({low_cpu:4.1f}-{high_cpu:4.1f})")
        summary.update({f"{name}_ms": wall, f"{name}_cpu_ms": cpu})
        if name != "face3d":
            summary.update({f"{name}_x": x_wall, f"{name}_x_range": [low_wall, high_wall],
                            f"{name}_cpu_x": x_cpu, f"{name}_cpu_x_range": [low_cpu, high_cpu]})
    print("  accuracy, landmark RMSE / dense 2D RMSE (px) per yaw bucket "
          + " ".join(f"[{lo},{min(hi, 90)})" for lo, hi in BUCKETS))
    sp, ep, s, R, t = (np.array(f) for f in zip(*ref))
    rmse = {"face3d": report(mm, "face3d", yaw[single], lms[single], verts[single], sp, ep, s, R, t, kpt[single]),
            "ours_same_faces": report(mm, "ours, face3d's faces", yaw[single], lms[single], verts[single],
                                      res.shape_para[single], res.exp_para[single], res.s[single], res.R[single],
                                      res.t[single], res.landmark_vertices[single]),
            "ours": report(mm, "ours", yaw, lms, verts, res.shape_para, res.exp_para, res.s, res.R, res.t,
                           res.landmark_vertices)}
    if contour_table:
        yaw, verts, lms = make_faces(mm, n_faces, rng, silhouette=True)
        print("  300W-LP-style landmarks (far-side jaw on the silhouette):")
        for contour, name in ((False, "fixed_index"), (True, "contour")):
            r = mm.fit_batch(lms, max_iter=4, contour=contour)
            rmse[name] = report(mm, "ours " + ("contour-aware" if contour else "fixed-index"), yaw, lms, verts,
                                r.shape_para, r.exp_para, r.s, r.R, r.t, r.landmark_vertices)
    for name, (landmark, dense) in rmse.items():
        summary.update({f"{name}_landmark_rmse": landmark, f"{name}_dense_rmse": dense})
    return summary


def main():
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--faces", type=int, default=200, help="faces per batch")
    parser.add_argument("--single", type=int, default=40, help="faces timed one by one")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds, median taken")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}, cpu count {os.cpu_count()}")
    summary = {"faces": args.faces, "single": args.single, "rounds": args.rounds}
    summary["default"] = run(MorphableModel(), "default model", args.faces, args.single, args.rounds, rng,
                             contour_table=True)
    summary["bfm_sized"] = run(random_bfm_sized_model(rng), "random BFM-sized model", args.faces, args.single,
                               args.rounds, rng, contour_table=False)
    print(json.dumps(rounded(summary)))


if __name__ == "__main__":
    main()
