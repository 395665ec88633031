"""Rendering: per-vertex colours versus a texture map, nearest versus bilinear texture sampling, backgrounds,
the depth image and the rasterizer's buffers, and the C++ kernels against their numpy twins.

    python examples/5_render.py [--output DIR] [--size PIXELS]

The default model's mean face, turned 20 degrees, is rendered with ``render_colors`` (per-vertex colours
interpolated) and with ``render_texture`` from the face's own texture map (its colours rendered into UV space),
which gives the same picture; a small checkerboard texture shows nearest against bilinear sampling. Prints the
mean difference between the two renderings and the timings of ``face3d.mesh`` (C++) against
``face3d.mesh_numpy``. Writes into --output (default examples/results/render): ``colors.jpg``, ``texture.jpg``,
``texture_map.jpg`` (the texture map used), ``checker_nearest.jpg``, ``checker_bilinear.jpg``, ``background.jpg``
(rendered over an image), ``depth.png`` (nearer is brighter), ``triangles.png`` (the visible triangle's index as
a colour) and ``barycentric.png`` (the three barycentric weights as RGB).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this source checkout
from _source_checkout import prefer_built_checkout  # noqa: E402

prefer_built_checkout()  # its face3d when its extension is built, else an installed face3d

from face3d import mesh, mesh_numpy  # noqa: E402  (after the path set-up)
from face3d.cli._common import make_output_folder, os_errors_end_program, positive_int  # noqa: E402
from face3d.morphable_model import MorphableModel  # noqa: E402
from face3d.trainset.outputs import write_image  # noqa: E402


def best_time(function, repeat=3):
    """Shortest wall time of ``repeat`` calls, in milliseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results" / "render",
                        help="folder for the pictures (default: %(default)s)")
    parser.add_argument("--size", type=positive_int, default=256, help="image side in pixels (default: %(default)s)")
    args = parser.parse_args(argv)
    make_output_folder(parser, args.output)
    h = w = args.size

    model = MorphableModel()
    triangles = model.triangles
    vertices = model.generate_vertices(model.get_shape_para("zero"), model.get_exp_para("zero"))
    colors = np.clip(model.generate_colors(model.get_tex_para("zero")) / 255.0, 0.0, 1.0)
    s = 0.7 * h / np.ptp(vertices[:, 1])
    image_vertices = mesh.transform.to_image(model.transform(vertices, s, [0, 20, 0], [0, 0, 0]), h, w)

    # -- per-vertex colours
    rendering = mesh.render.render_colors(image_vertices, triangles, colors, h, w)
    write_image(args.output / "colors.jpg", rendering)

    # -- texture map: the colours rendered in UV space; texel (x, y) = (u * (T - 1), (T - 1) * (1 - v))
    T = 256
    tex_coords = np.c_[model.uv_coords[:, 0] * (T - 1), (1.0 - model.uv_coords[:, 1]) * (T - 1)]
    uv_vertices = np.c_[tex_coords, np.zeros(model.nver)]
    texture = mesh.render.render_colors(uv_vertices, model.full_triangles, colors, T, T)
    textured = mesh.render.render_texture(image_vertices, triangles, texture, tex_coords, triangles, h, w,
                                          mapping_type="bilinear")
    face = rendering.any(axis=2)
    print(f"colour rendering vs texture rendering: mean |difference| {np.abs(textured - rendering)[face].mean():.4f} "
          f"(colours in [0, 1])")
    write_image(args.output / "texture_map.jpg", texture)
    write_image(args.output / "texture.jpg", textured)

    # -- a coarse 16x16-texel checkerboard: nearest shows the texels, bilinear blends them
    checker = np.kron((np.add.outer(np.arange(4), np.arange(4)) % 2).astype(np.float32), np.ones((4, 4)))
    checker = np.dstack([0.2 + 0.6 * checker, 0.3 + 0.5 * checker, 0.9 - 0.6 * checker])
    checker_coords = tex_coords * (15.0 / (T - 1))
    for mapping in ("nearest", "bilinear"):
        image = mesh.render.render_texture(image_vertices, triangles, checker, checker_coords, triangles, h, w,
                                           mapping_type=mapping)
        write_image(args.output / f"checker_{mapping}.jpg", image)

    # -- any background image (BG): here a vertical gradient
    background = np.dstack(np.broadcast_arrays(np.linspace(0.2, 0.8, h)[:, None], 0.4, np.linspace(0.8, 0.3, w)))
    write_image(args.output / "background.jpg",
                mesh.render.render_colors(image_vertices, triangles, colors, h, w, BG=background.astype(np.float32)))

    # -- the rasterizer's buffers: depth (larger z is nearer), visible triangle, barycentric weights
    depth, triangle_buffer, weights = mesh.render.rasterize_triangles(image_vertices, triangles, h, w)
    z = image_vertices[:, 2]
    write_image(args.output / "depth.png", np.where(face, (depth - z.min()) / np.ptp(z), 0.0))
    palette = np.random.default_rng(0).random((model.ntri + 1, 3))
    palette[-1] = 0  # index -1 (no triangle) is black
    write_image(args.output / "triangles.png", palette[triangle_buffer])
    write_image(args.output / "barycentric.png", weights)

    # -- the same calls through the C++ kernels and their numpy twins
    for name, module in (("face3d.mesh (C++)", mesh), ("face3d.mesh_numpy", mesh_numpy)):
        ms = best_time(lambda render=module.render: render.render_colors(image_vertices, triangles, colors, h, w))
        print(f"{name:18s} render_colors {h}x{w}: {ms:7.2f} ms")
    print("wrote colors.jpg, texture.jpg, texture_map.jpg, checker_nearest.jpg, checker_bilinear.jpg, "
          f"background.jpg, depth.png, triangles.png, barycentric.png to {args.output}")


if __name__ == "__main__":
    with os_errors_end_program():  # a failed write (a full disk): one line naming the file, status 2
        main()
