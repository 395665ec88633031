"""Transforms and cameras: scale, rotations (pitch, yaw, roll), orthographic and perspective cameras.

    python examples/3_transform.py [--output DIR] [--size PIXELS]

The object is the default model's mean face, transformed by ``similarity_transform`` with face3d's Euler angles
(degrees, R = Rz(roll) Ry(yaw) Rx(pitch)), then seen by a look-at camera and projected orthographically or in
perspective. Writes into --output (default examples/results/transform), each picture a row or grid of
--size x --size tiles:
``pose_grid.jpg`` (rows: pitch -30..30, columns: yaw -60..60 degrees), ``roll.jpg`` (roll -60..60),
``scale.jpg`` (0.5x..1.25x), ``camera_orbit.jpg`` (an orthographic camera moving around the face, the mirror of
turning the face), ``perspective_distance.jpg`` (a perspective camera from near to far with the field of view
narrowed to keep the face's size: up close the nose looks larger) and ``perspective_fovy.jpg`` (fixed camera,
field of view widening).
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


def transform_test(vertices, triangles, colors, obj, camera, h, w):
    """Renders a mesh after an object transform and a camera (face3d's transform_test).

    Args:
        vertices: (n, 3) model vertices; triangles: (ntri, 3); colors: (n, 3) in [0, 1].
        obj: dict with 's' (scale), 'angles' ([pitch, yaw, roll], degrees) and 't' ((3,) translation).
        camera: dict with 'proj_type' ('orthographic' or 'perspective'), 'eye', 'at', 'up' (look-at camera) and,
            for perspective, 'fovy' (degrees, face3d's half-angle convention).
        h, w: image size in pixels.
    Returns:
        (h, w, 3) float32 image.
    """
    R = mesh.transform.angle2matrix(obj["angles"])
    transformed = mesh.transform.similarity_transform(vertices, obj["s"], R, obj["t"])
    camera_vertices = mesh.transform.lookat_camera(transformed, camera["eye"], camera["at"], camera["up"])
    if camera["proj_type"] == "orthographic":
        image_vertices = mesh.transform.to_image(mesh.transform.orthographic_project(camera_vertices), h, w)
    else:
        projected = mesh.transform.perspective_project(camera_vertices, camera["fovy"], near=1.0, far=10000.0)
        image_vertices = mesh.transform.to_image(projected, h, w, is_perspective=True)
    return mesh.render.render_colors(image_vertices, triangles, colors, h, w)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results" / "transform",
                        help="folder for the pictures (default: %(default)s)")
    parser.add_argument("--size", type=positive_int, default=256,
                        help="side of each tile in pixels (default: %(default)s)")
    args = parser.parse_args(argv)
    make_output_folder(parser, args.output)
    h = w = args.size

    model = MorphableModel()
    vertices = model.generate_vertices(model.get_shape_para("zero"), model.get_exp_para("zero"))
    colors = np.clip(model.generate_colors(model.get_tex_para("zero")) / 255.0, 0.0, 1.0)

    # Orthographic units are pixels: the face is 60% of the tile high at s = 1.
    unit = 0.6 * h / np.ptp(vertices[:, 1])

    def render(s=1.0, angles=(0, 0, 0), **camera_changes):
        obj = {"s": s * unit, "angles": angles, "t": [0, 0, 0]}
        camera = {"proj_type": "orthographic", "eye": [0, 0, h], "at": [0, 0, 0], "up": [0, 1, 0]}
        camera.update(camera_changes)
        return transform_test(vertices, model.triangles, colors, obj, camera, h, w)

    # -- object transforms, standard camera
    yaws, pitches = [-60, -30, 0, 30, 60], [-30, -15, 0, 15, 30]
    grid = np.vstack([np.hstack([render(angles=(pitch, yaw, 0)) for yaw in yaws]) for pitch in pitches])
    write_image(args.output / "pose_grid.jpg", grid)
    write_image(args.output / "roll.jpg", np.hstack([render(angles=(0, 0, roll)) for roll in [-60, -30, 0, 30, 60]]))
    write_image(args.output / "scale.jpg", np.hstack([render(s=s) for s in [0.5, 0.75, 1.0, 1.25]]))

    # -- camera moving on a circle around the face (orthographic): the mirror image of turning the face
    orbit = [render(eye=[h * np.sin(np.deg2rad(a)), 0, h * np.cos(np.deg2rad(a))]) for a in yaws]
    write_image(args.output / "camera_orbit.jpg", np.hstack(orbit))

    # -- perspective camera. The face is 0.6*h high, its top and bottom at depth z_edge; at distance D the view's
    # half-height is D * tan(fovy) (face3d's fovy is a half-angle), so fovy = atan(0.5 * h / D) keeps the face
    # filling 60% of the tile (a "dolly zoom").
    z_edge = unit * vertices[[np.argmin(vertices[:, 1]), np.argmax(vertices[:, 1])], 2].mean()
    distances = np.array([1.0, 1.5, 2.5, 5.0]) * h
    dolly = [render(proj_type="perspective", eye=[0, 0, d], fovy=np.rad2deg(np.arctan(0.5 * h / (d - z_edge))))
             for d in distances]
    write_image(args.output / "perspective_distance.jpg", np.hstack(dolly))
    zoom = [render(proj_type="perspective", eye=[0, 0, 2.0 * h], fovy=fovy) for fovy in [10, 15, 20, 30]]
    write_image(args.output / "perspective_fovy.jpg", np.hstack(zoom))
    print(f"wrote pose_grid.jpg, roll.jpg, scale.jpg, camera_orbit.jpg, perspective_distance.jpg, "
          f"perspective_fovy.jpg to {args.output}")


if __name__ == "__main__":
    with os_errors_end_program():  # a failed write (a full disk): one line naming the file, status 2
        main()
