"""Benchmark of the C++ mesh kernels against their numpy twins and, when given, face3d's and Sim3DR's kernels.

Every figure comes from this run: ``rasterize_triangles`` and ``render_colors`` of face3d.mesh (C++), of its numpy
twin and, with ``--face3d DIR`` / ``--sim3dr DIR``, of the built Cython kernels of a checkout of YadiraF/face3d
(``DIR`` = the checkout or its ``face3d/mesh/cython`` folder, ``mesh_core_cython*.so``) and of 3DDFA_V2's Sim3DR
(``DIR`` = the checkout or its ``Sim3DR`` folder, ``Sim3DR_Cython*.so``); nothing of theirs is part of this
project. Their kernels are timed kernel against kernel: each call allocates the output buffers their Python
wrappers allocate (same shapes, types and initial values, filled by ``np.full`` where the wrappers subtract a
constant from ``np.zeros``), and leaves out the wrappers' input copies, which would only add to their time.
face3d's render.py: a float32 image and a float32 depth buffer of -999999; its wrappers copy the vertices and
triangles, and ``render_colors`` the colours too (``astype(np.float32).copy()``, ``astype(np.int32).copy()``), left
out here; its ``rasterize_triangles`` wrapper passes a float64 depth buffer and an (h, w, 3) barycentric buffer,
which its core refuses (it takes float32 and (h * w, 3)), so those are allocated in the core's types. Sim3DR.py:
``rasterize`` (its render_colors) allocates a uint8 image and a float32 depth buffer of -1e8 and converts the
colours only when they are not float32 (they are, so nothing is copied); it has no wrapper for
``rasterize_triangles``, given the same -1e8 depth buffer here.

Meshes: face-like grid surfaces (a displaced ellipsoid cap) of 38,416 vertices / 76,050 triangles and 53,361 /
105,800 (3DDFA's 38,365-vertex and the BFM's 53,215-vertex meshes have 76,073 and 105,840), each projected once to
a face of about 180 x 220 px in a 450 x 450 image and once laid out as a 256 x 256 UV map (z = 0).

Timing: CPU time of this thread (``time.thread_time``; on a shared machine it leaves out the time spent waiting for
a core), the implementations interleaved repetition by repetition in rotating order, median reported. The last line
is JSON: ``numpy_x`` (and ``face3d_x``, ``sim3dr_x``) is the smallest ratio their time / ours over all cases and
both kernels, with every case's ratios under ``cases``.

Usage: python bench/bench_render.py [--repeats N] [--quick] [--face3d DIR] [--sim3dr DIR]
"""
import argparse
import functools
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import description, face3d_render_colors, interleaved, load_face3d_core, load_sim3dr_core

from face3d.mesh import render
from face3d.mesh_numpy import render as render_numpy

GRIDS = {"38k": 196, "53k": 231}


def face_mesh(grid, seed=0):
    """Synthetic face-sized mesh: vertices (grid*grid, 3) float32 in a unit-ish frame, triangles (ntri, 3) int32,
    grid parameters (grid*grid, 2) in [0, 1], colors (grid*grid, 3) float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    s, t = np.meshgrid(np.linspace(0, 1, grid), np.linspace(0, 1, grid))
    s, t = s.ravel(), t.ravel()
    theta, phi = (s - 0.5) * 2.2, (t - 0.5) * 2.0
    x = 0.9 * np.sin(theta) * np.cos(phi)
    y = 1.1 * np.sin(phi)
    # A nose-like bump and small noise make the depth (and z-test outcomes) non-trivial.
    z = np.cos(theta) * np.cos(phi) + 0.25 * np.exp(-((theta / 0.25) ** 2 + ((phi + 0.1) / 0.35) ** 2))
    z = z + 0.002 * rng.standard_normal(z.shape)
    vertices = np.stack([x, y, z], axis=1).astype(np.float32)
    idx = np.arange(grid * grid).reshape(grid, grid)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    triangles = np.stack([np.stack([a, b, c], 1), np.stack([b, d, c], 1)], 1).reshape(-1, 3).astype(np.int32)
    colors = rng.uniform(0, 1, (grid * grid, 3)).astype(np.float32)
    return vertices, triangles, np.stack([s, t], 1), colors


def image_vertices(vertices, h=450, w=450, face_w=180, face_h=220):
    """Scales the mesh to a face of face_w x face_h px centred in an h x w image (y down)."""
    v = vertices.astype(np.float64)
    lo, hi = v.min(0), v.max(0)
    out = np.empty_like(v)
    out[:, 0] = (v[:, 0] - lo[0]) / (hi[0] - lo[0]) * face_w + (w - face_w) / 2
    out[:, 1] = (hi[1] - v[:, 1]) / (hi[1] - lo[1]) * face_h + (h - face_h) / 2
    out[:, 2] = v[:, 2] * face_w / (hi[0] - lo[0])
    return out.astype(np.float32)


def uv_vertices(params, size=256):
    """UV layout: grid parameters scaled to texel coordinates of a size x size map, z = 0 (as face3d's process_uv)."""
    out = np.zeros((params.shape[0], 3), dtype=np.float32)
    out[:, 0] = params[:, 0] * (size - 1)
    out[:, 1] = (size - 1) - params[:, 1] * (size - 1)
    return out


def face3d_kernels(core):
    """face3d's rasterize_triangles and render_colors cores with the output buffers its render.py allocates (in the
    core's types: float32 depth, (h * w, 3) barycentric weights), without its wrappers' input copies."""
    def rasterize(v, tri, colors, h, w):
        depth = np.full((h, w), -999999.0, dtype=np.float32)
        tri_buf = np.full((h, w), -1, dtype=np.int32)
        bary = np.zeros((h * w, 3), dtype=np.float32)  # the core takes it 2-D
        core.rasterize_triangles_core(v, tri, depth, tri_buf, bary, v.shape[0], tri.shape[0], h, w)
        return tri_buf

    return rasterize, face3d_render_colors(core, copy_inputs=False)


def sim3dr_kernels(core):
    """Sim3DR's rasterize_triangles and rasterize (its colour renderer, uint8 output) with the buffers Sim3DR.py's
    rasterize allocates (it has no wrapper for rasterize_triangles)."""
    def rasterize(v, tri, colors, h, w):
        depth = np.full((h, w), -1e8, dtype=np.float32)
        tri_buf = np.full((h, w), -1, dtype=np.int32)
        bary = np.zeros((h * w, 3), dtype=np.float32)
        core.rasterize_triangles(v, tri, depth, tri_buf, bary, tri.shape[0], h, w)
        return tri_buf

    def colors_(v, tri, colors, h, w):
        image = np.zeros((h, w, 3), dtype=np.uint8)
        depth = np.full((h, w), -1e8, dtype=np.float32)
        core.rasterize(image, v, tri, colors, depth, tri.shape[0], h, w, 3)
        return image
    return rasterize, colors_


def implementations(args):
    """{name: (rasterize(v, tri, colors, h, w), render_colors(v, tri, colors, h, w))}, ours first."""
    impls = {
        "ours": (lambda v, tri, col, h, w: render.rasterize_triangles(v, tri, h, w),
                 lambda v, tri, col, h, w: render.render_colors(v, tri, col, h, w)),
        "numpy": (lambda v, tri, col, h, w: render_numpy.rasterize_triangles(v, tri, h, w),
                  lambda v, tri, col, h, w: render_numpy.render_colors(v, tri, col, h, w)),
    }
    if args.face3d:
        impls["face3d"] = face3d_kernels(load_face3d_core(args.face3d))
    if args.sim3dr:
        impls["sim3dr"] = sim3dr_kernels(load_sim3dr_core(args.sim3dr))
    return impls


def median_ms(fns, repeats, slow_repeats):
    """Median CPU time (this thread, ms) of each function of ``fns`` {name: fn()}, over ``repeats`` rounds after one
    untimed round (``interleaved``, rotating order: a call runs measurably faster or slower after some than after
    others); the numpy twin, slow, runs in the first ``slow_repeats`` rounds only."""
    cases = {name: (lambda: None, lambda _, fn=fn: fn(), 1) for name, fn in fns.items()}
    times = interleaved(cases, repeats, rotate=True, limits={"numpy": slow_repeats})["thread"]
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--repeats", type=int, default=100, help="interleaved repetitions per figure (median)")
    parser.add_argument("--quick", action="store_true", help="5 repetitions, numpy twin once")
    parser.add_argument("--face3d", metavar="DIR", help="built face3d checkout (or its face3d/mesh/cython folder)")
    parser.add_argument("--sim3dr", metavar="DIR", help="built 3DDFA_V2 checkout (or its Sim3DR folder)")
    args = parser.parse_args(argv)
    repeats = 5 if args.quick else max(1, args.repeats)
    impls = implementations(args)
    others = [name for name in impls if name != "ours"]
    cases, worst = {}, {name: np.inf for name in others}
    for mesh_name, grid in GRIDS.items():
        vertices, triangles, params, colors = face_mesh(grid)
        targets = {"image 450x450": (image_vertices(vertices), 450, 450),
                   "uv 256x256": (uv_vertices(params), 256, 256)}
        for target, (v, h, w) in targets.items():
            covered = int((render.rasterize_triangles(v, triangles, h, w)[1] >= 0).sum())
            print(f"\n[{mesh_name}: {v.shape[0]} vertices, {triangles.shape[0]} triangles -> {target}, "
                  f"{covered} pixels covered] CPU ms, median of {repeats} interleaved")
            for k, kernel in enumerate(("rasterize_triangles", "render_colors")):
                fns = {name: functools.partial(pair[k], v, triangles, colors, h, w) for name, pair in impls.items()}
                ms = median_ms(fns, repeats, slow_repeats=1 if args.quick else 3)
                ratios = {name: ms[name] / ms["ours"] for name in others}
                cases[f"{mesh_name} {target} {kernel}"] = {"ours_ms": round(ms["ours"], 3),
                                                           **{f"{n}_x": round(r, 2) for n, r in ratios.items()}}
                for name, ratio in ratios.items():
                    worst[name] = min(worst[name], ratio)
                print(f"  {kernel:20s} ours {ms['ours']:6.2f} | " + " | ".join(
                    f"{name} {ms[name]:7.2f} ({ratios[name]:5.2f}x)" for name in others))
    print(json.dumps({**{f"{name}_x": round(r, 2) for name, r in worst.items()}, "cases": cases}))


if __name__ == "__main__":
    main()
