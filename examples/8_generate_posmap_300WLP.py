"""UV position map of a 300W-LP sample (PRNet's ground truth): image + fitted 3DMM parameters -> face crop + map.

    python examples/8_generate_posmap_300WLP.py [--output DIR] [--image JPG --mat MAT] [--synthetic]
        [--size PIXELS] [--seed S]

Input: the sample given by --image/--mat; else the 300W-LP sample of the project's fixtures (IBUG_image_008_1_0,
the one face3d's example uses), looked up in $FACE3D_FIXTURES or in shared/fixtures beside the repository; else
(or with --synthetic) a sample in the 300W-LP format rendered from the default model and written under
<output>/synthetic_300W_LP. The default model stands in for the BFM the 300W-LP parameters were fitted with.

The steps, as face3d and PRNet take them: vertices from Shape_Para and Exp_Para; placed in the image by Pose_Para
(3DDFA angles, scale, translation; image rows = h - 1 - y); a square crop of 1.5 times the 68 projected keypoints'
box, warped to --size pixels; the crop-space x, y of every vertex, its z scaled like x and y and shifted to start
at 0; those positions rendered in UV space with ``render_colors``. The library's ``TrainsetGenerator`` (what
example 9 runs at dataset scale) computes the same map by interpolating a UV rasterization made once; the
difference is printed. Writes into --output (default examples/results/posmap_300WLP): ``<name>.jpg`` (the crop),
``<name>.npy`` (the map, float32), ``<name>_posmap.jpg`` (map / size, for show), ``<name>_tex.jpg`` (the crop
sampled at the map's x, y: the face's texture in UV space), ``<name>_kpt.jpg`` (the 68 keypoints read from the
map in red, the sample's own pt2d annotation in green) and ``<name>_preview.jpg`` (the generator's preview).
"""
import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this source checkout
from _source_checkout import prefer_built_checkout  # noqa: E402

prefer_built_checkout()  # its face3d when its extension is built, else an installed face3d

from face3d import mesh  # noqa: E402  (after the path set-up)
from face3d.cli._common import (  # noqa: E402
    check_output_folder,
    int_at_least,
    make_output_folder,
    os_errors_end_program,
)
from face3d.morphable_model import MorphableModel  # noqa: E402
from face3d.trainset import (  # noqa: E402
    GenerationConfig,
    TrainsetGenerator,
    apply_affine,
    crop_matrix,
    keypoint_box,
    keypoints_from_map,
    read_300wlp_sample,
    uv_to_pixels,
)
from face3d.trainset.outputs import write_image  # noqa: E402
from face3d.trainset.sample import MIN_RESOLUTION  # noqa: E402
from face3d.trainset.synthetic import synthesize_dataset  # noqa: E402
from face3d.utils.atomic import atomic_file  # noqa: E402
from face3d.utils.errors import InputFileError  # noqa: E402


def fixture_sample():
    """(jpg, mat) of the 300W-LP fixture, or None when the fixtures are absent."""
    root = Path(os.environ.get("FACE3D_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))
    images = sorted((root / "300W_LP").glob("*.jpg"))
    pairs = [(jpg, jpg.with_suffix(".mat")) for jpg in images if jpg.with_suffix(".mat").is_file()]
    return pairs[0] if pairs else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path,
                        default=Path(__file__).resolve().parent / "results" / "posmap_300WLP",
                        help="folder for the outputs (default: %(default)s)")
    parser.add_argument("--image", type=Path, help="a 300W-LP image (with --mat)")
    parser.add_argument("--mat", type=Path, help="its .mat (Pose_Para, Shape_Para, Exp_Para, pt2d)")
    parser.add_argument("--synthetic", action="store_true", help="use a synthetic sample even if the fixture exists")
    parser.add_argument("--size", type=int_at_least(MIN_RESOLUTION, "pixels"), default=256,
                        help="side of the crop and of the map (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic sample (default: %(default)s)")
    args = parser.parse_args(argv)
    if (args.image is None) != (args.mat is None):
        parser.error("--image and --mat go together")
    check_output_folder(parser, args.output)
    r = args.size
    model = MorphableModel()

    if args.image is not None:
        image_path, mat_path = args.image, args.mat
    elif not args.synthetic and fixture_sample() is not None:
        image_path, mat_path = fixture_sample()
    else:
        mat_path = synthesize_dataset(args.output / "synthetic_300W_LP", count=1, seed=args.seed, model=model)[0]
        image_path = mat_path.with_suffix(".jpg")
    print(f"sample: {image_path}")
    try:
        image, params = read_300wlp_sample(image_path, mat_path)  # RGB uint8; Pose_Para (7,)
    except InputFileError as error:  # missing, unreadable or not a 300W-LP sample: one line naming the file
        parser.error(str(error))
    make_output_folder(parser, args.output)  # after the sample is read: a bad one leaves no empty folder
    name = image_path.stem
    h = image.shape[0]

    # 1. vertices and their image positions (x right, y down; z towards the viewer)
    pose = params["Pose_Para"]
    vertices = model.generate_vertices(params["Shape_Para"], params["Exp_Para"])
    image_vertices = model.transform_3ddfa(vertices, pose[6], pose[:3], pose[3:6]).astype(np.float64)
    image_vertices[:, 1] = h - 1 - image_vertices[:, 1]

    # 2. crop: 1.5 x the keypoints' box, mapped to r x r pixels by the affine matrix M (image -> crop)
    M = crop_matrix(keypoint_box(image_vertices[model.kpt_ind, :2]), r)
    cropped = cv2.warpAffine(image, M, (r, r), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

    # 3. crop-space positions: x, y through M, z scaled by M's scale and shifted to start at 0
    position = np.empty_like(image_vertices)
    position[:, :2] = apply_affine(M, image_vertices[:, :2])
    position[:, 2] = image_vertices[:, 2] * M[0, 0]
    position[:, 2] -= position[:, 2].min()

    # 4. the position map: positions rendered in UV space (all triangles: no hole at the mouth)
    uv_vertices = uv_to_pixels(model.uv_coords, r)
    posmap = mesh.render.render_colors(uv_vertices, model.full_triangles, position, r, r)

    # -- the library's generator, as example 9 uses it (no random crop perturbation, no rotated copies here)
    generator = TrainsetGenerator(model, GenerationConfig(resolution=r, perturb=False, angles=(), preview=True))
    sample = generator.generate(image, params, name, seed=0)[0]
    print(f"TrainsetGenerator vs render_colors: max |map difference| {np.abs(sample.posmap - posmap).max():.2e} px")

    # The map read at the keypoints' UV pixels: the keypoints in crop space (up to the UV pixel grid's rounding)
    keypoints = keypoints_from_map(posmap, generator.uv_kpt_ind)
    error = np.linalg.norm(keypoints[:, :2] - position[model.kpt_ind, :2], axis=1)
    print(f"keypoints read from the map vs projected keypoints: mean {error.mean():.3f} px, max {error.max():.3f} px "
          f"(in the {r}x{r} crop)")

    # -- outputs
    write_image(args.output / f"{name}.jpg", cropped)
    with atomic_file(args.output / f"{name}.npy") as f:  # a failed write names the file, as write_image's do
        np.save(f, posmap)
    write_image(args.output / f"{name}_posmap.jpg", posmap / r)  # only for show
    texture = cv2.remap(cropped, posmap[..., 0], posmap[..., 1], interpolation=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    write_image(args.output / f"{name}_tex.jpg", texture)
    marked = np.ascontiguousarray(cropped.copy())
    radius = max(2, r // 100)
    if "pt2d" in params and params["pt2d"].shape[1] == 68:
        for x, y in apply_affine(M, params["pt2d"].T):
            cv2.circle(marked, (int(round(x)), int(round(y))), radius, (0, 255, 0), -1)
    for x, y, _ in keypoints:
        cv2.circle(marked, (int(round(x)), int(round(y))), radius, (255, 0, 0), 1)
    write_image(args.output / f"{name}_kpt.jpg", marked)
    write_image(args.output / f"{name}_preview.jpg", sample.preview)
    print(f"wrote {name}.jpg, {name}.npy, {name}_posmap.jpg, {name}_tex.jpg, {name}_kpt.jpg, {name}_preview.jpg "
          f"to {args.output}")


if __name__ == "__main__":
    with os_errors_end_program():  # a failed write (a full disk): one line naming the file, status 2
        main()
