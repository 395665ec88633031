"""Examples 1-8 run as a user runs them (a subprocess with --output, small --size) and produce the pictures they
promise: files of the right shape that show what the example is about (lit side brighter, outward normals facing
the camera, a fitted face matching the generated one, ...).

Budget: about 25 s on a quiet 2-core machine (nine example runs of 1-3 s each, mostly start-up and imports).
"""
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from _fixtures import fixtures_dir

from face3d import mesh
from face3d.mesh.io import read_obj
from face3d.morphable_model import MorphableModel
from face3d.trainset import (
    GenerationConfig,
    TrainsetGenerator,
    crop_matrix,
    keypoint_box,
    keypoints_from_map,
    read_300wlp_sample,
)
from face3d.utils.atomic import temp_name

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
S = 64  # image side used in the tests


def run_example(script, output, *args, env=None):
    """Runs examples/<script> with --output and --size S; returns its stdout (fails the test on a non-zero exit)."""
    command = [sys.executable, str(EXAMPLES / script), "--output", str(output), "--size", str(S), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env=None if env is None else {**os.environ, **env})
    assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def number_after(text, label):
    """The first number printed after ``label`` in ``text``."""
    match = re.search(re.escape(label) + r"\s*([-+0-9.eE]+)", text)
    assert match, f"'{label}' not found in the output:\n{text}"
    return float(match.group(1))


def image(path, shape):
    """Reads an image as RGB float in [0, 1] (grey stays 2-D) and checks its shape and that it is not constant."""
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert pixels is not None, f"{path} missing or unreadable"
    assert pixels.shape[:2] == shape, f"{path}: shape {pixels.shape}, expected {shape}"
    assert pixels.std() > 5, f"{path} is (nearly) constant"
    if pixels.ndim == 3:
        pixels = pixels[..., ::-1]
    return pixels.astype(np.float64) / 255.0


def tiles(picture, n):
    """Splits a row of n square tiles."""
    return np.split(picture, n, axis=1)


def face_mask(picture):
    """Pixels the face covers in a rendering on black (JPEG noise stays under the threshold)."""
    return (picture if picture.ndim == 2 else picture.max(axis=2)) > 0.1


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("examples")


def test_1_pipeline_renders_lit_transformed_face_and_obj(out):
    stdout = run_example("1_pipeline.py", out / "1")
    assert "pipeline.jpg" in stdout
    _, transformed_tile, lit_tile = tiles(image(out / "1" / "pipeline.jpg", (S, 3 * S)), 3)
    rendering = image(out / "1" / "rendering.jpg", (S, S))
    assert np.abs(rendering - lit_tile).mean() < 0.02  # the last stage is the final rendering
    face = face_mask(transformed_tile)
    assert 0.15 < face.mean() < 0.7 and not face[0, 0]
    # Lit from the front (lower left): most of the face keeps a good part of its albedo. Inverted normals (wrong
    # triangle winding) would leave it nearly black.
    assert lit_tile[face].mean() > 0.4 * transformed_tile[face].mean()
    obj = read_obj(out / "1" / "face.obj")
    n = obj["vertices"].shape[0]
    assert n > 1000 and obj["triangles"].max() < n
    assert obj["colors"].shape == (n, 3) and 0 <= obj["colors"].min() and obj["colors"].max() <= 1


def test_2_3dmm_fit_recovers_the_generated_face(out):
    stdout = run_example("2_3dmm.py", out / "2")
    # the landmarks come from the model itself, so an exact fit exists: the error must be well below a pixel
    assert number_after(stdout, "landmark error after fitting:") < 0.5
    assert number_after(stdout, "vertex error after fitting:") < 0.5
    generated = image(out / "2" / "generated.jpg", (S, S))
    fitted = image(out / "2" / "fitted.jpg", (S, S))
    assert (face_mask(generated) != face_mask(fitted)).mean() < 0.02
    assert np.abs(generated - fitted).mean() < 0.03
    image(out / "2" / "mean_face.jpg", (S, S))
    left, right = tiles(image(out / "2" / "generated_vs_fitted.jpg", (S, 2 * S)), 2)
    assert left[..., 1].max() > 0.9 and right[..., 0].max() > 0.9  # green and red landmarks drawn
    image(out / "2" / "fit_iterations.jpg", (S, 5 * S))


def test_3_transform_grid_cameras_and_projections(out):
    run_example("3_transform.py", out / "3")
    grid = image(out / "3" / "pose_grid.jpg", (5 * S, 5 * S))
    rows = [tiles(row, 5) for row in np.split(grid, 5, axis=0)]
    frontal = face_mask(rows[2][2])
    assert 0.1 < frontal.mean() < 0.6
    # yaw turns the silhouette: the masks of yaw -60 and +60 differ from the frontal one and from each other
    assert (face_mask(rows[2][0]) != frontal).mean() > 0.05
    assert (face_mask(rows[2][0]) != face_mask(rows[2][4])).mean() > 0.05
    # orbiting the (orthographic) camera by a equals turning the face by -a
    orbit = tiles(image(out / "3" / "camera_orbit.jpg", (S, 5 * S)), 5)
    for i in range(5):
        assert np.abs(orbit[i] - rows[2][4 - i]).mean() < 0.02
    # the face area grows with the square of the scale
    areas = [face_mask(t).sum() for t in tiles(image(out / "3" / "scale.jpg", (S, 4 * S)), 4)]
    assert areas[0] / areas[2] == pytest.approx(0.25, rel=0.2)
    image(out / "3" / "roll.jpg", (S, 5 * S))
    # perspective: a wider field of view makes the face smaller; the dolly keeps its height about constant
    def heights(name):
        return [face_mask(t).any(axis=1).sum() for t in tiles(image(out / "3" / name, (S, 4 * S)), 4)]

    zoom = heights("perspective_fovy.jpg")
    assert zoom == sorted(zoom, reverse=True) and zoom[0] > zoom[-1]
    dolly = heights("perspective_distance.jpg")
    assert max(dolly) - min(dolly) <= 0.15 * max(dolly)


def test_4_light_lit_side_follows_the_light(out):
    stdout = run_example("4_light.py", out / "4")
    assert number_after(stdout, "max error") < 1e-6
    light_x = tiles(image(out / "4" / "light_x.jpg", (S, 5 * S)), 5)
    mask = face_mask(light_x[2])
    cols = np.nonzero(mask.any(axis=0))[0]
    middle = (cols.min() + cols.max()) // 2

    def left_minus_right(tile):
        grey = tile.mean(axis=2)
        return grey[:, :middle][mask[:, :middle]].mean() - grey[:, middle:][mask[:, middle:]].mean()

    assert left_minus_right(light_x[0]) > 0.05  # light on the left (-x): left half brighter
    assert left_minus_right(light_x[4]) < -0.05
    light_y = tiles(image(out / "4" / "light_y.jpg", (S, 5 * S)), 5)
    rows = np.nonzero(mask.any(axis=1))[0]
    centre = (rows.min() + rows.max()) // 2
    top = light_y[4].mean(axis=2)[:centre][mask[:centre]].mean()
    bottom = light_y[4].mean(axis=2)[centre:][mask[centre:]].mean()
    assert top > bottom  # light above (+y): upper half brighter
    for name, n in (("light_z", 5), ("light_colors", 4), ("phong", 4), ("sh_lighting", 5)):
        image(out / "4" / f"{name}.jpg", (S, n * S))
    red, green, blue, _ = tiles(image(out / "4" / "light_colors.jpg", (S, 4 * S)), 4)
    assert red[mask].mean(axis=0).argmax() == 0 and blue[mask].mean(axis=0).argmax() == 2


def test_5_render_colors_texture_depth_and_buffers(out):
    stdout = run_example("5_render.py", out / "5")
    assert number_after(stdout, "mean |difference|") < 0.03
    assert "face3d.mesh_numpy" in stdout
    colors = image(out / "5" / "colors.jpg", (S, S))
    texture = image(out / "5" / "texture.jpg", (S, S))
    assert np.abs(colors - texture).mean() < 0.03
    image(out / "5" / "texture_map.jpg", (256, 256))
    image(out / "5" / "checker_nearest.jpg", (S, S))
    image(out / "5" / "checker_bilinear.jpg", (S, S))
    background = image(out / "5" / "background.jpg", (S, S))
    assert colors[0, 0].max() < 0.05 and background[0, 0].max() > 0.15
    depth = image(out / "5" / "depth.png", (S, S))
    face = face_mask(colors)
    assert depth[~face].max() == 0 and depth[face].mean() > 0.3
    triangles = image(out / "5" / "triangles.png", (S, S))
    assert len(np.unique(triangles[face].reshape(-1, 3), axis=0)) > 100  # many distinct triangles
    weights = image(out / "5" / "barycentric.png", (S, S))
    assert np.allclose(weights[face].sum(axis=1), 1.0, atol=0.02)  # barycentric weights sum to 1


def test_6_image_maps(out):
    run_example("6_image_map.py", out / "6")
    mask = image(out / "6" / "mask.png", (S, S))
    face = mask > 0.5
    assert set(np.unique(mask)) <= {0.0, 1.0} and 0.1 < face.mean() < 0.7
    colors = image(out / "6" / "colors.jpg", (S, S))
    assert (face_mask(colors) != face).mean() < 0.03
    depth = image(out / "6" / "depth.png", (S, S))
    assert depth[~face].max() == 0 and depth[face].min() >= 0
    normal = image(out / "6" / "normal.png", (S, S))
    # outward normals of a face turned towards the camera: z (blue) > 0 on average, i.e. above mid-grey
    assert normal[face][:, 2].mean() > 0.6
    pncc = image(out / "6" / "pncc.png", (S, S))
    uv = image(out / "6" / "uv_coords.png", (S, S))
    columns = np.broadcast_to(np.arange(S), (S, S))[face]
    rows = np.broadcast_to(np.arange(S)[:, None], (S, S))[face]
    # PNCC's x (red) and u grow to the image right, PNCC's y (green) and v upwards
    assert np.corrcoef(columns, pncc[face][:, 0])[0, 1] > 0.8 and np.corrcoef(rows, pncc[face][:, 1])[0, 1] < -0.8
    assert np.corrcoef(columns, uv[face][:, 0])[0, 1] > 0.8 and np.corrcoef(rows, uv[face][:, 1])[0, 1] < -0.8
    regions = image(out / "6" / "regions.png", (S, S))
    assert len(np.unique(regions[face].reshape(-1, 3), axis=0)) == 4  # face, eyes, nose, mouth


def test_7_uv_maps_and_textured_obj(out):
    run_example("7_uv_map.py", out / "7")
    face_image = image(out / "7" / "image.jpg", (S, S))
    texture_map = image(out / "7" / "uv_texture_map.jpg", (S, S))
    image(out / "7" / "uv_position_map.jpg", (S, S))
    image(out / "7" / "uv_coords.jpg", (4 * S, 4 * S))
    rec = image(out / "7" / "uv_texture_map_rec.jpg", (S, S))
    posmap = np.load(out / "7" / "uv_position_map.npy")
    assert posmap.shape == (S, S, 3) and posmap.dtype == np.float32
    covered = np.any(posmap != 0, axis=2)
    assert 0.3 < covered.mean() < 0.95
    # the map's x, y land on the face in the image (within a pixel of it: the silhouette's pixel centres may be
    # just outside)
    xy = np.round(posmap[covered][:, :2]).astype(int)
    assert xy.min() >= 0 and xy.max() < S
    near_face = cv2.dilate(face_mask(face_image).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert near_face[xy[:, 1], xy[:, 0]].mean() > 0.99
    # the texture sampled from the image matches the texture map where the face is seen frontally (the centre)
    centre = (slice(S // 2 - S // 8, S // 2 + S // 8),) * 2
    assert np.abs(rec[centre] - texture_map[centre]).mean() < 0.06
    obj = read_obj(out / "7" / "face.obj")
    assert obj["uv_coords"].shape == (obj["vertices"].shape[0], 2)
    assert obj["texture_path"] is not None and obj["texture_path"].is_file()
    # The texture map is the model's colours rendered at their UV pixels, x = u (S - 1), y = (1 - v)(S - 1) (v up,
    # rows down): built here from the random face of --seed 0 (shape, expression, then texture drawn from one
    # generator), whose vertices are face.obj's.
    model = MorphableModel()
    rng = np.random.default_rng(0)
    shape, expression = model.get_shape_para("random", rng), model.get_exp_para("random", rng)
    np.testing.assert_allclose(obj["vertices"], model.generate_vertices(shape, expression), atol=1e-3)
    colors = np.clip(model.generate_colors(model.get_tex_para("random", rng)) / 255.0, 0.0, 1.0)
    u, v = model.uv_coords[:, 0], model.uv_coords[:, 1]
    uv_pixels = np.c_[u * (S - 1), (1.0 - v) * (S - 1), np.zeros(model.nver)]
    expected = mesh.render.render_colors(uv_pixels, model.full_triangles, colors, S, S)
    lossless = cv2.imread(str(obj["texture_path"]))[..., ::-1] / 255.0  # the same map as PNG: 8-bit rounding
    assert np.abs(lossless - expected).max() <= 0.5 / 255 + 1e-9
    assert np.abs(texture_map - expected).mean() < 0.02  # JPEG


def crop_offset_in_source_pixels(crop, sample_jpg):
    """The (x, y) offset, in source-image pixels on a 0.1-pixel grid within 2 pixels, at which the source sample
    best explains ``crop`` (RGB float in [0, 1]): the crop compared with the source warped by the crop matrix of
    the sample's projected keypoints (image rows = h - 1 - y, computed here from the .mat) moved by each offset."""
    source, params = read_300wlp_sample(sample_jpg, sample_jpg.with_suffix(".mat"))
    model, pose = MorphableModel(), params["Pose_Para"]
    vertices = model.generate_vertices(params["Shape_Para"], params["Exp_Para"])
    keypoints = model.transform_3ddfa(vertices, pose[6], pose[:3], pose[3:6])[model.kpt_ind, :2].astype(np.float64)
    keypoints[:, 1] = source.shape[0] - 1 - keypoints[:, 1]
    matrix = crop_matrix(keypoint_box(keypoints), crop.shape[0])
    offsets = np.round(np.arange(-2.0, 2.05, 0.1), 1)
    errors = {}
    for dx in offsets:
        for dy in offsets:
            moved = matrix.copy()
            moved[:, 2] -= matrix[:, :2] @ (dx, dy)  # crop pixel p shows the source at M^-1 p + (dx, dy)
            warped = cv2.warpAffine(source, moved, crop.shape[1::-1], flags=cv2.INTER_LINEAR) / 255.0
            errors[dx, dy] = np.abs(warped - crop).mean()
    return min(errors, key=errors.get)


def check_posmap_outputs(folder, name, stdout, sample_jpg):
    assert number_after(stdout, "max |map difference|") < 1e-3  # generator == render_colors in UV space
    assert number_after(stdout, "projected keypoints: mean") < 1.0
    crop = image(folder / f"{name}.jpg", (S, S))
    # the crop is the source under the projected keypoints: a vertex one row off (image rows = h - y) moves the
    # keypoints' box and so the crop by a source pixel, while the map (crop-space positions) stays the same
    offset = crop_offset_in_source_pixels(crop, sample_jpg)
    assert max(abs(offset[0]), abs(offset[1])) < 0.5, offset
    posmap = np.load(folder / f"{name}.npy")
    assert posmap.shape == (S, S, 3) and posmap.dtype == np.float32
    covered = np.any(posmap != 0, axis=2)
    assert covered.mean() > 0.3 and posmap[..., 2].min() == 0
    assert -0.5 * S < posmap[covered][:, :2].min() and posmap[covered][:, :2].max() < 1.5 * S
    image(folder / f"{name}_posmap.jpg", (S, S))
    # the texture is the crop sampled at the map's x, y (the crop sampled here is the saved JPEG)
    texture = image(folder / f"{name}_tex.jpg", (S, S))
    expected = cv2.remap(crop, posmap[..., 0], posmap[..., 1], interpolation=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    assert np.abs(texture - expected).mean() < 0.03  # x and y swapped: about 0.1
    kpt = image(folder / f"{name}_kpt.jpg", (S, S))
    assert np.abs(kpt - crop).max() > 0.3  # keypoints drawn
    # a red ring (radius 2) around each keypoint the map holds: red well above green and blue within 3.5 pixels
    # of it (JPEG's halved colour resolution blurs a ring crossing a green pt2d disc to about 0.2; rings drawn at
    # transposed keypoints leave some keypoints with none)
    uv_kpt_ind = TrainsetGenerator(MorphableModel(), GenerationConfig(resolution=S)).uv_kpt_ind
    redness = kpt[..., 0] - kpt[..., 1:].max(axis=2)
    rows, columns = np.ogrid[:S, :S]
    for x, y, _ in keypoints_from_map(posmap, uv_kpt_ind):
        assert redness[np.hypot(columns - x, rows - y) < 3.5].max() > 0.1, (x, y)
    image(folder / f"{name}_preview.jpg", (S, 2 * S))


def test_8_posmap_from_synthetic_sample(out, tmp_path):
    # no fixtures (as on a fresh clone): the example renders its own 300W-LP-format sample
    stdout = run_example("8_generate_posmap_300WLP.py", out / "8s", env={"FACE3D_FIXTURES": str(tmp_path)})
    mat = out / "8s" / "synthetic_300W_LP" / "SYNTH" / "SYNTH_0000_1_0.mat"
    assert mat.is_file() and mat.with_suffix(".jpg").is_file()
    check_posmap_outputs(out / "8s", "SYNTH_0000_1_0", stdout, mat.with_suffix(".jpg"))


def test_8_posmap_from_300wlp_fixture(out):
    fixtures = fixtures_dir()
    jpgs = sorted((fixtures / "300W_LP").glob("*.jpg"))
    if not jpgs:
        pytest.skip(f"no 300W-LP fixture under {fixtures}")
    # with no arguments the example finds the fixture itself
    stdout = run_example("8_generate_posmap_300WLP.py", out / "8f", env={"FACE3D_FIXTURES": str(fixtures)})
    assert f"sample: {jpgs[0]}" in stdout
    check_posmap_outputs(out / "8f", jpgs[0].stem, stdout, jpgs[0])
    assert not (out / "8f" / "synthetic_300W_LP").exists()


def run_main(monkeypatch, script, *args):
    """Runs examples/<script>'s main(args) in this process, as ``python examples/<script>`` (the parser's errors
    come before any work); returns its SystemExit code."""
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / script)])  # the program name of usage and error lines
    spec = importlib.util.spec_from_file_location(Path(script).stem, EXAMPLES / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exit_info:
        module.main([*map(str, args)])
    return exit_info.value.code


@pytest.mark.parametrize("script, size, message", [
    *[(script, "0", "expected an integer >= 1, got '0'") for script in (
        "1_pipeline.py", "2_3dmm.py", "3_transform.py", "4_light.py", "5_render.py", "6_image_map.py", "7_uv_map.py")],
    ("8_generate_posmap_300WLP.py", "7", "expected an integer >= 8 (pixels), got '7'"),  # the generator's least map
])
def test_a_size_too_small_is_refused_naming_size(script, size, message, tmp_path, capsys, monkeypatch):
    assert run_main(monkeypatch, script, "--output", tmp_path, "--size", size) == 2
    errors = capsys.readouterr().err.splitlines()
    assert errors[-1] == f"{script}: error: argument --size: {message}", errors
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("script", ["1_pipeline.py", "2_3dmm.py", "3_transform.py", "4_light.py", "5_render.py",
                                    "6_image_map.py", "7_uv_map.py", "8_generate_posmap_300WLP.py"])
def test_an_output_that_is_a_file_is_refused_before_any_work(script, tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "a_file"
    a_file.write_bytes(b"")
    for output in (a_file, a_file / "sub"):  # the folder itself, or where it would be made
        assert run_main(monkeypatch, script, "--output", output, "--size", "16") == 2
        errors = capsys.readouterr().err.splitlines()
        assert errors[-1] == f"{script}: error: {a_file}: is a file, not a folder", errors
    assert [p.name for p in tmp_path.iterdir()] == ["a_file"] and a_file.read_bytes() == b""


def test_8_missing_sample_file_is_one_line(tmp_path, capsys, monkeypatch):
    mat = tmp_path / "a.mat"
    mat.write_bytes(b"")
    assert run_main(monkeypatch, "8_generate_posmap_300WLP.py", "--output", tmp_path / "o",
                    "--image", tmp_path / "a.jpg", "--mat", mat) == 2
    errors = capsys.readouterr().err.splitlines()
    assert errors[-1] == f"8_generate_posmap_300WLP.py: error: {tmp_path / 'a.jpg'}: image file not found", errors
    assert not (tmp_path / "o").exists()  # a refused input leaves no output folder
    # a folder for the image: said so
    assert run_main(monkeypatch, "8_generate_posmap_300WLP.py", "--output", tmp_path / "o",
                    "--image", tmp_path, "--mat", mat) == 2
    errors = capsys.readouterr().err.splitlines()
    assert errors[-1] == f"8_generate_posmap_300WLP.py: error: {tmp_path}: is a folder; give the image file in it"


# Runs the example named by its second argument (with the arguments after it) where the temporary twin named by its
# first argument, once made, is a link to /dev/full, which refuses every write as a full disk does (ENOSPC). Atomic
# writes remove a twin left before them and make it anew, so the link is made as the twin is opened.
FULL_DISK_RUNNER = """
import builtins, os, runpy, sys
twin, opened = sys.argv[1], builtins.open

def open_twin_on_dev_full(file, mode="r", *args, **kwargs):
    if isinstance(file, (str, os.PathLike)) and os.fspath(file) == twin:
        os.symlink("/dev/full", twin)
        return opened(twin, "wb")
    return opened(file, mode, *args, **kwargs)

builtins.open = open_twin_on_dev_full
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full, a device refusing every write (ENOSPC)")
@pytest.mark.parametrize("script, name, args", [
    ("1_pipeline.py", "rendering.jpg", ()), ("2_3dmm.py", "fitted.jpg", ()), ("3_transform.py", "roll.jpg", ()),
    ("4_light.py", "light_y.jpg", ()), ("5_render.py", "depth.png", ()), ("6_image_map.py", "mask.png", ()),
    ("7_uv_map.py", "uv_position_map.npy", ()), ("8_generate_posmap_300WLP.py", "SYNTH_0000_1_0.npy", ("--synthetic",)),
])
def test_a_full_disk_ends_an_example_with_one_line_naming_the_file(script, name, args, tmp_path):
    """The temporary twin of a file the example writes mid-run is a link to /dev/full (``FULL_DISK_RUNNER``): the
    example ends with one line naming the file and status 2, not a traceback, and leaves neither the file nor its
    twin."""
    output = tmp_path / "out"
    output.mkdir()
    twin = temp_name(output / name)
    result = subprocess.run([sys.executable, "-c", FULL_DISK_RUNNER, str(twin), str(EXAMPLES / script), "--output",
                             str(output), "--size", str(S), *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [f"{script}: error: {output / name}: No space left on device"]
    assert not (output / name).exists() and not twin.is_symlink()


def test_a_folder_in_the_way_of_an_image_ends_the_example_with_one_line_naming_it(tmp_path):
    """A folder where example 1 writes rendering.jpg, after pipeline.jpg: one line naming it and status 2."""
    output = tmp_path / "out"
    (output / "rendering.jpg").mkdir(parents=True)
    result = subprocess.run([sys.executable, str(EXAMPLES / "1_pipeline.py"), "--output", str(output), "--size",
                             str(S)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [f"1_pipeline.py: error: {output / 'rendering.jpg'}: Is a directory"]
    assert sorted(p.name for p in output.iterdir()) == ["pipeline.jpg", "rendering.jpg"]
