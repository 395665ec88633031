"""Benchmark of the C++ mesh kernels against their numpy twins on a mesh of Basel Face Model size.

Builds a synthetic face-like mesh (a displaced ellipsoid cap on a 231 x 231 vertex grid: 53,361 vertices and
105,800 triangles; face3d's BFM has 53,215 and 105,840), projects it once to a face of about 180 x 220 px inside a
450 x 450 image and once lays it out as a 256 x 256 UV map, then prints the median time (ms; wall clock and CPU
time) of rasterize_triangles and render_colors (C++), of the numpy twin and their ratio, the speedup against the
reference figures of face3d's published Cython kernel on this machine (8.9 ms into 450 x 450, 6.1 ms into a
256 x 256 UV map, single thread), and the throughput of 2 threads rendering concurrently against one (the kernels
release the GIL; the ratio is bounded by the free cores, so it is noisy on a shared machine).

Usage: python bench/bench_render.py [--repeats N] [--quick]
"""
import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from face3d.mesh import render  # noqa: E402
from face3d.mesh_numpy import render as render_numpy  # noqa: E402

REFERENCE_MS = {"image 450x450": 8.9, "uv 256x256": 6.1}
GRID = 231


def face_mesh(grid=GRID, seed=0):
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


def median_ms(fn, repeats):
    """Median wall-clock and median CPU time (this thread) of fn in ms. On a shared machine the CPU time is the
    steadier figure: it leaves out the time the thread waited for a core."""
    fn()  # warm-up (page faults, caches)
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.thread_time()
        fn()
        cpu.append((time.thread_time() - c0) * 1e3)
        wall.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(wall), statistics.median(cpu)


def threaded_throughput(fn, repeats, nthreads):
    """Renders per second with nthreads threads each calling fn `repeats` times."""
    def work():
        for _ in range(repeats):
            fn()
    threads = [threading.Thread(target=work) for _ in range(nthreads)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return nthreads * repeats / (time.perf_counter() - t0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50, help="timed repetitions per figure (median reported)")
    parser.add_argument("--quick", action="store_true", help="few repeats, numpy twin timed once")
    args = parser.parse_args(argv)
    repeats = 5 if args.quick else max(1, args.repeats)
    numpy_repeats = 1 if args.quick else 3

    vertices, triangles, params, colors = face_mesh()
    print(f"mesh: {vertices.shape[0]} vertices, {triangles.shape[0]} triangles")
    cases = {"image 450x450": (image_vertices(vertices), 450, 450), "uv 256x256": (uv_vertices(params), 256, 256)}
    for name, (v, h, w) in cases.items():
        span = v.max(0) - v.min(0)
        covered = int((render.rasterize_triangles(v, triangles, h, w)[1] >= 0).sum())
        print(f"\n[{name}] mesh spans {span[0]:.0f} x {span[1]:.0f} px, {covered} pixels covered")
        ref = REFERENCE_MS[name]
        for label, fn_c, fn_np in [
            ("rasterize_triangles", lambda: render.rasterize_triangles(v, triangles, h, w),
             lambda: render_numpy.rasterize_triangles(v, triangles, h, w)),
            ("render_colors", lambda: render.render_colors(v, triangles, colors, h, w),
             lambda: render_numpy.render_colors(v, triangles, colors, h, w)),
        ]:
            t_c, cpu_c = median_ms(fn_c, repeats)
            t_np, cpu_np = median_ms(fn_np, numpy_repeats)
            print(f"  {label:20s} C++ {t_c:6.2f} ms (CPU {cpu_c:5.2f}) | numpy {t_np:7.1f} ms (CPU {cpu_np:6.1f}) | "
                  f"numpy/C++ {t_np / t_c:5.1f}x (CPU {cpu_np / cpu_c:5.1f}x)")
            if label == "render_colors":
                print(f"  {'':20s} reference {ref} ms -> speedup {ref / t_c:.2f}x wall, {ref / cpu_c:.2f}x CPU "
                      "(target >= 2x)")
        fn = lambda: render.render_colors(v, triangles, colors, h, w)  # noqa: E731
        one = threaded_throughput(fn, repeats, 1)
        two = threaded_throughput(fn, repeats, 2)
        print(f"  render_colors threads: 1 -> {one:.0f}/s, 2 -> {two:.0f}/s, ratio {two / one:.2f}x")


if __name__ == "__main__":
    main()
