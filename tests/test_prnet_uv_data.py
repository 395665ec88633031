"""PRNet's shipped uv-data folder, read as it is: its triangles.txt (derived where a copy lacks it), the picture pair's
eye mask, its canonical face for pose, and refusal of a uv-data folder built for another model. No TensorFlow."""
import dataclasses
import logging
import shutil

import numpy as np
import pytest
from _fixtures import fixtures_dir
from _inference_helpers import OraclePredictor

from face3d.mesh.transform import angle2matrix
from face3d.morphable_model import MorphableModel
from face3d.prnet import pose as prnet_pose
from face3d.prnet.evaluation import DenseGroundTruth
from face3d.prnet.inference import PRN
from face3d.resources import default_uv_data_dir
from face3d.trainset.dataset import UV_DATA_DIR, generate_dataset
from face3d.trainset.sample import GenerationConfig
from face3d.trainset.synthetic import synthesize_dataset
from face3d.trainset.uv_layout import (
    CANONICAL_FILE,
    UV_DATA_FILES,
    build_uv_data,
    check_uv_data_fits,
    grid_triangles,
    load_uv_data,
    write_uv_data,
)

PRNET_UV = fixtures_dir() / "prnet" / "uv-data"
needs_prnet_uv = pytest.mark.skipif(not PRNET_UV.is_dir(), reason="PRNet's uv-data not in the fixtures")


@pytest.fixture(scope="module")
def default_model():
    return MorphableModel()


@needs_prnet_uv
def test_prnet_folder_loads_with_derived_triangles_and_eye_mask(caplog):
    with caplog.at_level(logging.INFO, logger="face3d.trainset.uv_layout"):
        uv = load_uv_data(PRNET_UV)
    assert "no triangles.txt; derived" in caplog.text
    assert uv.resolution == 256 and uv.face_ind.shape == (43867,) and uv.uv_kpt_ind.shape == (2, 68)
    np.testing.assert_array_equal(uv.triangles, grid_triangles(uv.face_mask, uv.face_ind))
    assert uv.canonical_vertices.shape == (43867, 3)
    # the eye mask is where the two pictures differ (411 pixels), all inside the face
    eyes = (uv.face_mask > 0) & (uv.face_eyes == 0)
    assert eyes.sum() == 411 and set(np.unique(uv.face_eyes)) == {0, 255}
    assert np.all(uv.face_eyes[uv.face_mask == 0] == 0)
    # the weight mask is read as shipped: 0 only on the first row, anti-aliased edge values kept
    assert np.all(uv.weight_mask[0] == 0) and np.all(uv.weight_mask[1:] > 0)
    assert set(np.unique(uv.weight_mask)) == {0, 48, 53, 58, 64, 117, 122, 128, 255}


@needs_prnet_uv
def test_prnet_folder_with_its_triangles_txt_reads_the_file(tmp_path, caplog):
    """PRNet's repository ships Data/uv-data/triangles.txt (the fixtures' copy lacks it): the file is read, not
    derived. Here the derived triangulation in reverse order and winding, written as PRNet's txt files are."""
    folder = tmp_path / "uv-data"
    shutil.copytree(PRNET_UV, folder)
    derived = load_uv_data(PRNET_UV).triangles
    shipped = derived[::-1, ::-1]
    np.savetxt(folder / "triangles.txt", shipped)  # numpy's default %.18e, as PRNet's other txt files
    with caplog.at_level(logging.INFO, logger="face3d.trainset.uv_layout"):
        uv = load_uv_data(folder)
    assert "no triangles.txt" not in caplog.text
    np.testing.assert_array_equal(uv.triangles, shipped)
    assert uv.triangles.dtype == np.int32


@needs_prnet_uv
def test_prn_estimates_known_angles_on_prnet_canonical_vertices():
    prn = PRN(OraclePredictor(256), uv_data=PRNET_UV)
    canonical = prn.canonical
    # PRNet's file is in position-map axes (y down): the model frame negates y, chin below the brows
    np.testing.assert_array_equal(canonical, np.load(PRNET_UV / CANONICAL_FILE).astype(np.float32) * [1, -1, 1])
    for angles in ([10.0, -35.0, 5.0], [-20.0, 60.0, -12.0], [0.0, 0.0, 0.0]):
        rotated = 0.8 * canonical.astype(np.float64) @ angle2matrix(angles).T + [120.0, 40.0, 7.0]
        image = np.column_stack([rotated[:, 0], 300.0 - rotated[:, 1], rotated[:, 2]])  # image rows point down
        estimate = prn.estimate_pose(image)
        np.testing.assert_allclose(estimate.angles, angles, atol=0.5)


@needs_prnet_uv
def test_prnet_keypoints_that_share_a_reduced_pixel_are_restored_as_their_mean():
    """At S = 64 PRNet's mouth corners 48 and 60, and 54 and 64, fall on one S pixel each: a perfect reduced output
    (``resample_map``) restores to their mean at both; every other keypoint is restored exactly."""
    from face3d.prnet.face_crop import restore_map
    from face3d.prnet.uv_weights import resample_map
    from face3d.trainset.posmap import keypoints_from_map
    kpt = load_uv_data(PRNET_UV).uv_kpt_ind
    posmap = np.random.default_rng(4).random((256, 256, 3)).astype(np.float32)
    identity = np.eye(2, 3)
    full = keypoints_from_map(restore_map(posmap, identity, 256), kpt)
    restored = keypoints_from_map(restore_map(resample_map(posmap, kpt, 64), identity, 256), kpt)
    shared = [48, 60, 54, 64]
    others = np.setdiff1d(np.arange(68), shared)
    np.testing.assert_array_equal(restored[others], full[others])
    for pair in ([48, 60], [54, 64]):
        np.testing.assert_allclose(restored[pair], np.broadcast_to(full[pair].mean(axis=0), (2, 3)), rtol=1e-6)


@needs_prnet_uv
def test_uv_data_of_another_model_is_refused(default_model, tmp_path):
    prnet_uv = load_uv_data(PRNET_UV)
    with pytest.raises(ValueError, match="uv-data does not fit the model: its keypoint pixels lie up to"):
        DenseGroundTruth(default_model, prnet_uv)
    folder = tmp_path / "no-canonical"
    shutil.copytree(PRNET_UV, folder)
    (folder / CANONICAL_FILE).unlink()
    prn = PRN(OraclePredictor(256), uv_data=folder)
    with pytest.raises(ValueError, match="does not fit the model"):
        prn.canonical  # noqa: B018 (the property builds it)
    np.save(folder / CANONICAL_FILE, np.zeros((10, 3)))
    with pytest.raises(ValueError, match=r"canonical_vertices.npy: shape \(10, 3\) does not fit the 43867 face"):
        load_uv_data(folder)
    synthesize_dataset(tmp_path / "root", count=1, seed=3)
    with pytest.raises(ValueError, match="does not fit the model"):
        generate_dataset(tmp_path / "root", tmp_path / "set", GenerationConfig(angles=()), uv_data=PRNET_UV,
                         workers=1, progress=False)


def test_written_canonical_vertices_are_the_models_mean_face(default_model, tmp_path):
    uv = build_uv_data(default_model, 64)
    paths = write_uv_data(uv, tmp_path / "uv-data")
    assert paths[-1].name == CANONICAL_FILE
    back = load_uv_data(tmp_path / "uv-data")
    np.testing.assert_array_equal(back.canonical_vertices, uv.canonical_vertices)
    # PRNet's convention on disk (y down); the pose frame's canonical face is the model's mean face (y up)
    without = load_uv_data(default_uv_data_dir())
    assert without.canonical_vertices is None
    from_model = prnet_pose.canonical_vertices(default_model, dataclasses.replace(uv, canonical_vertices=None))
    np.testing.assert_array_equal(prnet_pose.canonical_vertices(None, back), from_model)
    # the mean face's nose tip (the vertex nearest the viewer) is about the canonical face's nearest point (64 px grid)
    mean = np.asarray(default_model.model["shapeMU"], np.float32).reshape(-1, 3)
    assert abs(from_model[:, 2].max() - mean[:, 2].max()) < 0.02 * np.ptp(mean[:, 2])
    check_uv_data_fits(uv, default_model)


def test_generate_on_an_existing_uv_data_copies_it(tmp_path):
    root = tmp_path / "root"
    synthesize_dataset(root, count=1, seed=3)
    summary = generate_dataset(root, tmp_path / "set", GenerationConfig(angles=()), uv_data=default_uv_data_dir(),
                               workers=1, progress=False)
    assert summary["written"] == 1
    copied = sorted(p.name for p in (tmp_path / "set" / UV_DATA_DIR).iterdir())
    assert copied == sorted(p.name for p in default_uv_data_dir().iterdir())
    for name in copied:
        assert (tmp_path / "set" / UV_DATA_DIR / name).read_bytes() == (default_uv_data_dir() / name).read_bytes()


def test_output_uv_data_holds_exactly_the_given_set(default_model, tmp_path):
    """A rerun on a folder of PRNet's files without triangles.txt and canonical face keeps no file of the earlier
    run's set, a run without one drops PRNet's extra files; other files in OUTPUT/uv-data are the user's."""
    root, output = tmp_path / "root", tmp_path / "set"
    synthesize_dataset(root, count=1, seed=3, size=64)

    def run(uv_data=None):
        generate_dataset(root, output, GenerationConfig(resolution=16, angles=()), uv_data=uv_data, workers=1,
                         progress=False)
        return {p.name: p.read_bytes() for p in (output / UV_DATA_DIR).iterdir()}

    written = run()
    assert sorted(written) == sorted([*UV_DATA_FILES, CANONICAL_FILE])
    (output / UV_DATA_DIR / "notes.txt").write_text("mine")
    source = tmp_path / "prnet-layout"
    write_uv_data(build_uv_data(default_model, 16), source)
    (source / "triangles.txt").unlink()
    (source / CANONICAL_FILE).unlink()
    shutil.copyfile(source / "uv_face_mask.png", source / "uv_kpt_mask.png")  # a file only PRNet's folder has
    given = {p.name: p.read_bytes() for p in source.iterdir()}
    assert run(source) == {**given, "notes.txt": b"mine"}
    loaded, expected = load_uv_data(output / UV_DATA_DIR), load_uv_data(source)
    assert loaded.canonical_vertices is None and expected.canonical_vertices is None
    for field in ("uv_kpt_ind", "face_ind", "triangles", "face_mask", "weight_mask", "face_eyes"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(expected, field), err_msg=field)
    assert run() == {**written, "notes.txt": b"mine"}
