"""The 3D morphable model: generate a face from parameters, render it, and fit the model back to its 68 landmarks.

    python examples/2_3dmm.py [--output DIR] [--size PIXELS] [--seed S]

A face is drawn as face3d draws one (random shape, expression and texture parameters), posed with a scale,
angles [pitch, yaw, roll] = [10, 30, 20] degrees and no translation, and rendered with an orthographic camera.
Its 68 projected keypoints are then the only input of ``MorphableModel.fit`` (pose, shape and expression from 2D
landmarks); the fitted face is rendered with the same colours. Prints both poses and the landmark and vertex
errors of the fit in pixels. Writes into --output (default examples/results/3dmm): ``mean_face.jpg`` (zero
parameters), ``generated.jpg``, ``fitted.jpg``, ``generated_vs_fitted.jpg`` (side by side, the input landmarks
in green on the left, the fitted ones in red on the right) and ``fit_iterations.jpg`` (the fitted face after
initialisation and after each iteration).
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


def render(projected, triangles, colors, size):
    """Renders vertices already in the projected frame (pixels, origin at the image centre, y up)."""
    return mesh.render.render_colors(mesh.transform.to_image(projected, size, size), triangles, colors, size, size)


def draw_points(image, projected_points, size, color):
    """Draws points given in the projected frame onto a copy of an RGB float image."""
    out = np.ascontiguousarray(image.copy())
    radius = max(1, size // 128)
    for x, y, _ in mesh.transform.to_image(np.c_[projected_points, np.zeros(len(projected_points))], size, size):
        cv2.circle(out, (int(round(x)), int(round(y))), radius, color, -1)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results" / "3dmm",
                        help="folder for the pictures (default: %(default)s)")
    parser.add_argument("--size", type=positive_int, default=256, help="image side in pixels (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random parameters (default: %(default)s)")
    args = parser.parse_args(argv)
    make_output_folder(parser, args.output)
    size = args.size
    model = MorphableModel()
    print(f"model: {model.nver} vertices, {model.ntri} triangles, {model.n_shape_para} shape, "
          f"{model.n_exp_para} expression, {model.n_tex_para} texture parameters")

    # -- generate: parameters -> vertices (micrometres) and colours (0..255)
    rng = np.random.default_rng(args.seed)
    sp = model.get_shape_para("random", rng)
    ep = model.get_exp_para("random", rng)
    tp = model.get_tex_para("random", rng)
    vertices = model.generate_vertices(sp, ep)
    colors = np.clip(model.generate_colors(tp) / 255.0, 0.0, 1.0)

    # -- pose and project: standard camera, orthographic projection (face3d's s = 8e-4 for a 256 image)
    s = 8e-4 * size / 256.0
    angles = [10, 30, 20]
    t = [0, 0, 0]
    projected = model.transform(vertices, s, angles, t)
    generated = render(projected, model.triangles, colors, size)

    mean_vertices = model.generate_vertices(model.get_shape_para("zero"), model.get_exp_para("zero"))
    mean_colors = np.clip(model.generate_colors(model.get_tex_para("zero")) / 255.0, 0.0, 1.0)
    write_image(args.output / "mean_face.jpg", render(model.transform(mean_vertices, s, [0, 0, 0], t),
                                                      model.triangles, mean_colors, size))

    # -- fit: 68 landmarks (projected frame) -> shape, expression and pose
    x = projected[model.kpt_ind, :2]
    fitted_sp, fitted_ep, fitted_s, fitted_angles, fitted_t = model.fit(x, model.kpt_ind, max_iter=4)
    fitted = model.transform(model.generate_vertices(fitted_sp, fitted_ep), fitted_s, fitted_angles, fitted_t)
    fitted_image = render(fitted, model.triangles, colors, size)

    landmark_error = np.linalg.norm(fitted[model.kpt_ind, :2] - x, axis=1).mean()
    vertex_error = np.linalg.norm(fitted[:, :2] - projected[:, :2], axis=1).mean()
    print(f"pose, ground truth: s = {s:.3e}, angles = {np.round(angles, 2).tolist()} deg, t = {t[:2]}")
    print(f"pose, fitted:       s = {fitted_s:.3e}, angles = {np.round(fitted_angles, 2).tolist()} deg, "
          f"t = {np.round(fitted_t[:2], 2).tolist()}")
    print(f"landmark error after fitting: {landmark_error:.4f} px (mean over the 68 landmarks)")
    print(f"vertex error after fitting: {vertex_error:.4f} px (mean over all vertices, image plane)")

    write_image(args.output / "generated.jpg", generated)
    write_image(args.output / "fitted.jpg", fitted_image)
    write_image(args.output / "generated_vs_fitted.jpg",
                np.hstack([draw_points(generated, x, size, (0, 1, 0)),
                           draw_points(fitted_image, fitted[model.kpt_ind, :2], size, (1, 0, 0))]))

    # -- the fit step by step (face3d's isShow): estimates after initialisation and after each iteration
    sps, eps, ss, angless, ts = model.fit(x, model.kpt_ind, max_iter=4, isShow=True)
    steps = [model.transform(model.generate_vertices(sps[i], eps[i]), ss[i], angless[i], ts[i])
             for i in range(len(ss))]
    errors = [np.linalg.norm(v[model.kpt_ind, :2] - x, axis=1).mean() for v in steps]
    print("landmark error after initialisation and each iteration: "
          + ", ".join(f"{e:.3f}" for e in errors) + " px")
    write_image(args.output / "fit_iterations.jpg", np.hstack([render(v, model.triangles, colors, size)
                                                                for v in steps]))
    print(f"wrote mean_face.jpg, generated.jpg, fitted.jpg, generated_vs_fitted.jpg, fit_iterations.jpg "
          f"to {args.output}")


if __name__ == "__main__":
    with os_errors_end_program():  # a failed write (a full disk): one line naming the file, status 2
        main()
