"""UV maps: per-vertex attributes rendered in UV space (texture map, position map), the UV layout, and the
texture read back from an image through the position map.

    python examples/7_uv_map.py [--output DIR] [--size PIXELS] [--seed S]

Every vertex of the model has fixed UV coordinates (``model.uv_coords``, u right, v up, in [0, 1]); placing the
vertices at their UV pixels, x = u (r - 1), y = (r - 1)(1 - v), and rendering an attribute there gives a UV map
that is the same for every face shape (PRNet's representation). For a random, turned face of the default model,
writes into --output (default examples/results/uv_map): ``image.jpg`` (the rendered face), ``uv_texture_map.jpg``
(its colours in UV space), ``uv_position_map.jpg`` and ``.npy`` (its image-space x, y, z in UV space, z shifted to
start at 0; shown divided by the image size), ``uv_coords.jpg`` (the UV layout: the mesh's edges at their UV
coordinates, 4x larger, the 68 keypoints in red), ``uv_texture_map_rec.jpg`` (the texture sampled from
``image.jpg`` at the position map's x, y: the visible half of the face comes back; occluded parts show what hides
them) and ``face.obj`` / ``face.mtl`` / ``face_texture.png`` (the mesh with its texture map, for MeshLab or
Blender).
"""
import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this source checkout
from _source_checkout import prefer_built_checkout  # noqa: E402

prefer_built_checkout()  # its face3d when its extension is built, else an installed face3d

from face3d import mesh  # noqa: E402  (after the path set-up)
from face3d.cli._common import make_output_folder, os_errors_end_program, positive_int  # noqa: E402
from face3d.morphable_model import MorphableModel  # noqa: E402
from face3d.trainset.outputs import write_image  # noqa: E402
from face3d.utils.atomic import atomic_file  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results" / "uv_map",
                        help="folder for the pictures (default: %(default)s)")
    parser.add_argument("--size", type=positive_int, default=256,
                        help="side of the image and of the UV maps in pixels (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random face (default: %(default)s)")
    args = parser.parse_args(argv)
    make_output_folder(parser, args.output)
    h = w = uv_h = uv_w = args.size

    model = MorphableModel()
    rng = np.random.default_rng(args.seed)
    vertices = model.generate_vertices(model.get_shape_para("random", rng), model.get_exp_para("random", rng))
    colors = np.clip(model.generate_colors(model.get_tex_para("random", rng)) / 255.0, 0.0, 1.0)
    # UV maps use all triangles, the mouth's included, so that the map has no hole between the lips.
    triangles = model.full_triangles

    # -- UV coordinates -> UV image pixels (rows down, as every image), z = 0
    uv_vertices = np.c_[model.uv_coords[:, 0] * (uv_w - 1), (1.0 - model.uv_coords[:, 1]) * (uv_h - 1),
                        np.zeros(model.nver)]

    # -- the face in an image: turned 30 degrees, standard camera, orthographic
    s = 0.7 * h / np.ptp(vertices[:, 1])
    image_vertices = mesh.transform.to_image(model.transform(vertices, s, [0, -30, 0], [0, 0, 0]), h, w)
    image = mesh.render.render_colors(image_vertices, triangles, colors, h, w)

    # -- texture map: colours in UV space
    uv_texture_map = mesh.render.render_colors(uv_vertices, triangles, colors, uv_h, uv_w)

    # -- position map: image-space positions in UV space (PRNet's ground truth), z shifted to start at 0
    position = image_vertices.copy()
    position[:, 2] -= position[:, 2].min()
    uv_position_map = mesh.render.render_colors(uv_vertices, triangles, position, uv_h, uv_w)

    # -- the UV layout: the mesh drawn at its UV coordinates, 4x larger so that the triangles can be told apart;
    # the 68 keypoints in red
    zoom = 4
    layout = np.ones((zoom * uv_h, zoom * uv_w, 3), dtype=np.float32)
    polygons = np.round(zoom * uv_vertices[triangles, :2] + (zoom - 1) / 2).astype(np.int32)
    cv2.polylines(layout, list(polygons), isClosed=True, color=(0.55, 0.55, 0.55), thickness=1)
    for x, y in np.round(zoom * uv_vertices[model.kpt_ind, :2] + (zoom - 1) / 2).astype(int):
        cv2.circle(layout, (int(x), int(y)), zoom, (1.0, 0.0, 0.0), -1)

    # -- texture from the image: sample it at the position map's (x, y), where each UV pixel lands in the image
    rec = cv2.remap(image, uv_position_map[..., 0], uv_position_map[..., 1], interpolation=cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    write_image(args.output / "image.jpg", image)
    write_image(args.output / "uv_texture_map.jpg", uv_texture_map)
    with atomic_file(args.output / "uv_position_map.npy") as f:  # a failed write names the file, as write_image's do
        np.save(f, uv_position_map)
    write_image(args.output / "uv_position_map.jpg", uv_position_map / max(h, w))  # only for show
    write_image(args.output / "uv_coords.jpg", layout)
    write_image(args.output / "uv_texture_map_rec.jpg", rec)
    mesh.io.write_obj_with_texture(args.output / "face.obj", vertices, triangles, uv_texture_map, model.uv_coords)
    print(f"wrote image.jpg, uv_texture_map.jpg, uv_position_map.jpg/.npy, uv_coords.jpg, uv_texture_map_rec.jpg, "
          f"face.obj/.mtl/_texture.png to {args.output}")


if __name__ == "__main__":
    with os_errors_end_program():  # a failed write (a full disk): one line naming the file, status 2
        main()
