"""The rendering pipeline of face3d, one step at a time: mesh -> transform -> light -> camera -> image.

    python examples/1_pipeline.py [--output DIR] [--size PIXELS]

The mesh is the default morphable model's mean face with its mean colours. It is scaled to 70% of the image
height, turned 30 degrees (yaw), lit by a white point light at the lower left, seen by a standard camera
(orthographic, looking down -z) and rasterised. Writes into --output (default examples/results/pipeline):
``pipeline.jpg`` (the mesh as given, transformed, lit: side by side), ``rendering.jpg`` (the final image) and
``face.obj`` (the lit, transformed mesh with per-vertex colours, for MeshLab).
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
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results" / "pipeline",
                        help="folder for the pictures (default: %(default)s)")
    parser.add_argument("--size", type=positive_int, default=256, help="image side in pixels (default: %(default)s)")
    args = parser.parse_args(argv)
    make_output_folder(parser, args.output)
    h = w = args.size

    # 1. the mesh: vertices (n, 3), triangles (ntri, 3) and per-vertex colours in [0, 1]
    model = MorphableModel()
    vertices = model.generate_vertices(model.get_shape_para("zero"), model.get_exp_para("zero"))
    colors = np.clip(model.generate_colors(model.get_tex_para("zero")) / 255.0, 0.0, 1.0)
    triangles = model.triangles

    # 2. place it in the world: scale to 70% of the image height, yaw 30 degrees, centred at the origin
    s = 0.7 * h / np.ptp(vertices[:, 1])
    R = mesh.transform.angle2matrix([0, 30, 0])
    transformed = mesh.transform.similarity_transform(vertices, s, R, [0, 0, 0])

    # 3. light it: a white point light at the lower left, in front of the face (world coordinates)
    light_positions = np.array([[-128, -128, 300]]) * (h / 256.0)
    light_intensities = np.array([[1, 1, 1]])
    lit_colors = mesh.light.add_light(transformed, triangles, colors, light_positions, light_intensities)

    # 4. the camera: a standard one at z = 200 looking at the origin, orthographic projection
    camera_vertices = mesh.transform.lookat_camera(transformed, eye=[0, 0, 200 * h / 256.0], at=[0, 0, 0])
    projected = mesh.transform.orthographic_project(camera_vertices)

    # 5. render: image coordinates (y down), then rasterise with per-vertex colours
    image_vertices = mesh.transform.to_image(projected, h, w)
    rendering = mesh.render.render_colors(image_vertices, triangles, lit_colors, h, w)

    stages = [mesh.transform.to_image(s * vertices, h, w), mesh.transform.to_image(transformed, h, w)]
    strip = [mesh.render.render_colors(v, triangles, colors, h, w) for v in stages] + [rendering]
    write_image(args.output / "pipeline.jpg", np.hstack(strip))
    write_image(args.output / "rendering.jpg", rendering)
    mesh.io.write_obj_with_colors(args.output / "face.obj", transformed, triangles, lit_colors)
    print(f"wrote pipeline.jpg, rendering.jpg and face.obj to {args.output}")


if __name__ == "__main__":
    with os_errors_end_program():  # a failed write (a full disk): one line naming the file, status 2
        main()
