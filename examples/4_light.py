"""Lighting: point lights moved around the face, coloured lights, ambient and specular terms, spherical harmonics.

    python examples/4_light.py [--output DIR] [--size PIXELS]

The default model's mean face (mean colours as albedo) is lit per vertex (Gouraud shading) with
``mesh.light.add_light`` (Lambert + optional ambient and Blinn-Phong specular, lights placed in the world frame:
x right, y up, z towards the viewer) and with ``mesh.light.add_light_sh`` (9 spherical-harmonics coefficients);
``mesh.light.estimate_light`` then recovers SH coefficients from a lit face (printed error). Writes into --output
(default examples/results/light), each a row of --size tiles: ``light_x.jpg`` (a light moving from left to right),
``light_y.jpg`` (bottom to top), ``light_z.jpg`` (from grazing, beside the face, to straight in front),
``light_colors.jpg`` (red, green, blue and two-coloured lights), ``phong.jpg`` (ambient and specular) and
``sh_lighting.jpg`` (constant, from the left, from above, from the front, a mixed environment).
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this source checkout
from _source_checkout import prefer_built_checkout  # noqa: E402

prefer_built_checkout()  # its face3d when its extension is built, else an installed face3d

from face3d import mesh  # noqa: E402  (after the path set-up)
from face3d.cli._common import make_output_folder, os_errors_end_program, positive_int  # noqa: E402
from face3d.morphable_model import MorphableModel  # noqa: E402
from face3d.trainset.outputs import write_image  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results" / "light",
                        help="folder for the pictures (default: %(default)s)")
    parser.add_argument("--size", type=positive_int, default=256,
                        help="side of each tile in pixels (default: %(default)s)")
    args = parser.parse_args(argv)
    make_output_folder(parser, args.output)
    h = w = args.size

    model = MorphableModel()
    triangles = model.triangles
    vertices = model.generate_vertices(model.get_shape_para("zero"), model.get_exp_para("zero"))
    albedo = np.clip(model.generate_colors(model.get_tex_para("zero")) / 255.0, 0.0, 1.0)
    # World frame in pixels: the face 70% of the image high, centred; the lights live in this frame.
    world = mesh.transform.similarity_transform(vertices, 0.7 * h / np.ptp(vertices[:, 1]), np.eye(3), [0, 0, 0])
    image_vertices = mesh.transform.to_image(world, h, w)
    d = float(h)  # light distance from the face, pixels

    def render(colors):
        return mesh.render.render_colors(image_vertices, triangles, colors, h, w)

    def light_test(positions, intensities=(1, 1, 1), **options):
        positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
        intensities = np.broadcast_to(np.asarray(intensities, dtype=np.float64), positions.shape)
        return render(mesh.light.add_light(world, triangles, albedo, positions, intensities, **options))

    steps = np.linspace(-1.0, 1.0, 5)
    write_image(args.output / "light_x.jpg", np.hstack([light_test([a * d, 0, d]) for a in steps]))
    write_image(args.output / "light_y.jpg", np.hstack([light_test([0, a * d, d]) for a in steps]))
    # from beside the face (z = 0, light grazing the cheek) round to straight in front
    write_image(args.output / "light_z.jpg",
                np.hstack([light_test([d * np.cos(a), 0, d * np.sin(a)]) for a in np.deg2rad([0, 22, 45, 67, 90])]))

    front = [0, 0, d]
    colored = [light_test(front, (1, 0.3, 0.3)), light_test(front, (0.3, 1, 0.3)), light_test(front, (0.3, 0.3, 1)),
               light_test([[-d, 0, d], [d, 0, d]], [[1, 0.4, 0.1], [0.1, 0.4, 1]])]
    write_image(args.output / "light_colors.jpg", np.hstack(colored))

    side = [-d, d / 2, d]
    phong = [light_test(side), light_test(side, ambient=0.3),
             light_test(side, ambient=0.3, specular=0.4, shininess=10),
             light_test(side, ambient=0.3, specular=0.8, shininess=40)]
    write_image(args.output / "phong.jpg", np.hstack(phong))

    # -- spherical harmonics: coefficients in sh_basis order [1, y, z, x, xy, yz, 3z^2-1, xz, x^2-y^2]
    sh_sets = {
        "constant": [3.3, 0, 0, 0, 0, 0, 0, 0, 0],
        "left": [2.0, 0, 0.4, -1.6, 0, 0, 0, 0, 0],
        "above": [2.0, 1.6, 0.4, 0, 0, 0, 0, 0, 0],
        "front": [1.2, 0, 1.0, 0, 0, 0, 0.2, 0, 0],
        "mixed": [2.0, 0.5, 0.6, -0.5, 0.2, 0.2, 0.1, -0.2, 0.1],
    }
    lit = {name: mesh.light.add_light_sh(world, triangles, albedo, coeff) for name, coeff in sh_sets.items()}
    write_image(args.output / "sh_lighting.jpg", np.hstack([render(colors) for colors in lit.values()]))

    # -- inverse rendering: estimate the SH lighting back from the lit colours and the albedo
    estimated = mesh.light.estimate_light(world, triangles, albedo, lit["mixed"])
    error = np.abs(estimated - np.asarray(sh_sets["mixed"])[:, None]).max()
    print(f"estimate_light recovers the 'mixed' SH coefficients: max error {error:.2e}")
    print(f"wrote light_x.jpg, light_y.jpg, light_z.jpg, light_colors.jpg, phong.jpg, sh_lighting.jpg "
          f"to {args.output}")


if __name__ == "__main__":
    with os_errors_end_program():  # a failed write (a full disk): one line naming the file, status 2
        main()
