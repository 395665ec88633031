"""Image maps: per-vertex attributes (colours, depth, normals, PNCC, UV coordinates, regions) rendered in image space.

    python examples/6_image_map.py [--output DIR] [--size PIXELS] [--seed S]

Any per-vertex attribute can be rendered instead of a colour (``render_colors`` takes any number of channels).
A random face of the default model, turned (pitch 10, yaw 30 degrees), gives: ``colors.jpg`` (its texture),
``depth.png`` (z, nearer is brighter), ``normal.png`` (outward unit normals in the camera frame, (n + 1) / 2 as
RGB), ``pncc.png`` (3DDFA's Projected Normalized Coordinate Code: the mean shape's x, y, z scaled to [0, 1] per
axis, the same for every face, so a pixel's colour tells which point of the face it shows; the model's
``pncc_code.mat`` holds these values), ``uv_coords.png`` (u, v as red, green), ``regions.png`` (the model's region
labels: face, eyes, nose, mouth) and ``mask.png`` (pixels covered by the face), into --output (default
examples/results/image_map).
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
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results" / "image_map",
                        help="folder for the pictures (default: %(default)s)")
    parser.add_argument("--size", type=positive_int, default=256, help="image side in pixels (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random face (default: %(default)s)")
    args = parser.parse_args(argv)
    make_output_folder(parser, args.output)
    h = w = args.size

    model = MorphableModel()
    triangles = model.triangles
    rng = np.random.default_rng(args.seed)
    vertices = model.generate_vertices(model.get_shape_para("random", rng), model.get_exp_para("random", rng))
    colors = np.clip(model.generate_colors(model.get_tex_para("random", rng)) / 255.0, 0.0, 1.0)
    s = 0.7 * h / np.ptp(vertices[:, 1])
    transformed = model.transform(vertices, s, [10, 30, 0], [0, 0, 0])
    image_vertices = mesh.transform.to_image(transformed, h, w)

    def render(attribute):
        attribute = np.asarray(attribute, dtype=np.float32).reshape(model.nver, -1)
        return mesh.render.render_colors(image_vertices, triangles, attribute, h, w, c=attribute.shape[1])

    mask = render(np.ones(model.nver))[..., 0] > 0.5
    write_image(args.output / "mask.png", mask.astype(np.float32))
    write_image(args.output / "colors.jpg", render(colors))

    z = image_vertices[:, 2]
    write_image(args.output / "depth.png", render((z - z.min()) / np.ptp(z))[..., 0])

    # BFM triangles are clockwise seen from outside, so the right-hand vertex normals point into the head.
    normals = -mesh.light.vertex_normals(transformed, triangles)
    write_image(args.output / "normal.png", render((normals + 1.0) / 2.0) * mask[..., None])

    mean_shape = model.model["shapeMU"].reshape(-1, 3)
    pncc = (mean_shape - mean_shape.min(axis=0)) / np.ptp(mean_shape, axis=0)
    write_image(args.output / "pncc.png", render(pncc))

    write_image(args.output / "uv_coords.png", render(np.c_[model.uv_coords, np.zeros(model.nver)]))

    # Labels are rendered as one-hot channels and read back by argmax, so no pixel gets an in-between label.
    one_hot = np.eye(4, dtype=np.float32)[model.region_labels]
    labels = render(one_hot).argmax(axis=2)
    palette = np.array([[0.8, 0.7, 0.6], [0.2, 0.5, 1.0], [1.0, 0.8, 0.1], [0.9, 0.2, 0.3]])
    write_image(args.output / "regions.png", palette[labels] * mask[..., None])
    print(f"wrote mask.png, colors.jpg, depth.png, normal.png, pncc.png, uv_coords.png, regions.png to {args.output}")


if __name__ == "__main__":
    with os_errors_end_program():  # a failed write (a full disk): one line naming the file, status 2
        main()
