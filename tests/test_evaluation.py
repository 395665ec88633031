"""AFLW2000-3D evaluation: metrics against hand-computed values, the report, the real-format fixtures, and the
end-to-end run (train a tiny network on the default set, evaluate it on held-back renders, check the report
against an independent numpy computation).

Budget: about 15 s without the slow test; the slow end-to-end test adds about 40 s on 2 cores.
"""
import json
import os
import shutil
import sys
import weakref
from pathlib import Path

import _inference_helpers as helpers
import cv2
import numpy as np
import pytest
import scipy.io as sio
from _fixtures import fixtures_dir
from _image_files import png_header

from face3d.cli import main as face3d_main
from face3d.prnet import evaluation, metrics
from face3d.prnet.evaluation import auc, ced, failure_rate, keypoint_nme, summarize_errors, yaw_bucket
from face3d.prnet.inference import PRN
from face3d.prnet.reconstruction import outer_interocular_distance, reconstruction_nme
from face3d.resources import default_uv_data_dir
from face3d.trainset.uv_layout import load_uv_data

FIXTURES = fixtures_dir()


def _box_points(width=100.0, height=50.0, seed=0):
    """68 points spanning exactly a width x height box (corners included), with depths."""
    rng = np.random.default_rng(seed)
    pts = np.column_stack([rng.uniform(10, 10 + width, 68), rng.uniform(20, 20 + height, 68), rng.normal(0, 30, 68)])
    pts[:4, :2] = [[10, 20], [10 + width, 20], [10, 20 + height], [10 + width, 20 + height]]
    return pts


# ------------------------------------------------------------------------------------------------ metrics

def test_known_offset_gives_known_nme():
    gt = _box_points()
    pred = gt + [3.0, 4.0, 0.0]  # every landmark 5 pixels off
    assert keypoint_nme(pred, gt, dims=2) == pytest.approx(5.0 / np.sqrt(100 * 50), rel=1e-12)
    assert keypoint_nme(pred, gt, dims=2, normalizer="diagonal") == pytest.approx(5.0 / np.hypot(100, 50), rel=1e-12)
    # a constant depth offset is the arbitrary depth origin: removed
    assert keypoint_nme(pred + [0, 0, 17.0], gt, dims=3) == pytest.approx(5.0 / np.sqrt(5000), rel=1e-12)
    # +12 on half the points, 0 on the others: +-6 around the mean depth -> sqrt(3^2 + 4^2 + 6^2) each
    pred[::2, 2] += 12.0
    assert keypoint_nme(pred, gt, dims=3) == pytest.approx(np.sqrt(61.0) / np.sqrt(5000), rel=1e-12)
    assert keypoint_nme(pred, gt, dims=3, normalizer="diagonal") == pytest.approx(np.sqrt(61) / np.hypot(100, 50))
    batch = keypoint_nme(np.stack([gt, pred]), np.stack([gt, gt]), dims=2)
    np.testing.assert_allclose(batch, [0.0, 5.0 / np.sqrt(5000)])
    with pytest.raises(ValueError, match="normalizer"):
        keypoint_nme(pred, gt, normalizer="iod")


def test_an_image_above_the_pixel_limit_names_the_flag_only_for_a_caller_that_has_one(tmp_path):
    """face3d evaluate and the calibration folders have no --max-pixels: their message names none."""
    image, mat = tmp_path / "phone.png", tmp_path / "phone.mat"
    image.write_bytes(png_header(12000, 9000))  # a 108-megapixel photo's header; no pixel is read
    mat.write_bytes(b"never read")
    with pytest.raises(ValueError) as refused:
        evaluation.read_sample(image, mat)
    assert str(refused.value) == f"{image}: the image is 12000x9000 = 108000000 pixels, above the limit of 100000000"
    with pytest.raises(ValueError) as refused:
        evaluation.read_sample(image, mat, max_pixels=10, limit_flag="--max-pixels")
    assert str(refused.value) == f"{image}: the image is 12000x9000 = 108000000 pixels, above the limit of 10 " \
                                 "(--max-pixels)"


def test_yaw_bucketing():
    yaws = [0.0, 30.0, 30.001, -45.0, 60.0, -60.0, 60.5, 90.0, -90.0, 120.0]
    np.testing.assert_array_equal(yaw_bucket(yaws), [0, 0, 1, 1, 1, 1, 2, 2, 2, 2])


def test_auc_and_failure_of_a_known_ced():
    errors = np.array([0.01, 0.05, 0.2])
    assert auc(errors, 0.10) == pytest.approx((0.9 + 0.5 + 0.0) / 3)
    assert auc(errors, 0.07) == pytest.approx((1 - 1 / 7 + 1 - 5 / 7 + 0) / 3)
    assert failure_rate(errors, 0.10) == pytest.approx(1 / 3)
    np.testing.assert_allclose(ced(errors, [0.0, 0.01, 0.03, 0.05, 0.1, 0.2]), [0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1])
    # the closed form equals the integral of the step-function CED (midpoint rule on a fine grid)
    t = (np.arange(100000) + 0.5) * (0.07 / 100000)
    assert auc(errors, 0.07) == pytest.approx(ced(errors, t).mean(), abs=1e-5)
    with pytest.raises(ValueError):
        auc([], 0.07)


def test_a_non_finite_error_is_a_failure_that_adds_nothing_to_the_auc():
    """NaN (a diverged network) and inf (a degenerate box) read as "NME > 10 %": failed, never reached by the CED."""
    errors = np.array([0.02, np.nan, np.inf])
    assert failure_rate(errors, 0.10) == pytest.approx(2 / 3)
    assert auc(errors, 0.10) == pytest.approx(0.8 / 3)
    np.testing.assert_allclose(ced(errors, [0.0, 0.02, 0.1]), [0, 1 / 3, 1 / 3])
    s = summarize_errors(errors, [0.0, 10.0, 20.0])
    assert s["auc_10"] == pytest.approx(0.8 / 3) and s["auc_7"] == pytest.approx((1 - 2 / 7) / 3)
    assert s["failure_rate_10"] == pytest.approx(2 / 3)
    assert np.isnan(s["mean"])  # the mean of a set holding NaN is not a number: not a finite figure to quote


def test_summary_by_bucket_and_balanced_mean():
    errors = np.array([0.01, 0.03, 0.10, 0.20, 0.30, 0.40])
    yaws = np.array([5.0, -20.0, 45.0, 70.0, -80.0, 89.0])
    s = summarize_errors(errors, yaws)
    assert s["buckets"]["[0,30]"] == {"mean": pytest.approx(0.02), "std": pytest.approx(0.01), "count": 2}
    assert s["buckets"]["(30,60]"]["mean"] == pytest.approx(0.10)
    assert s["buckets"]["(60,90]"]["mean"] == pytest.approx(0.30)
    assert s["balanced_mean"] == pytest.approx((0.02 + 0.10 + 0.30) / 3) and s["balanced_buckets"] == 3
    assert s["mean"] == pytest.approx(errors.mean())
    assert s["failure_rate_10"] == pytest.approx(3 / 6)  # 0.10 itself is not a failure
    partial = summarize_errors(errors[:2], yaws[:2])
    assert partial["buckets"]["(60,90]"] == {"mean": None, "std": None, "count": 0}
    assert partial["balanced_mean"] == pytest.approx(0.02) and partial["balanced_buckets"] == 1


def test_report_files(tmp_path):
    """report.json's figures from known errors (NME 2D of 1, 2, 3 and 0 pixels on a 100 x 50 box), report.md's
    tables as formatted (AUC 7 % = 1 - mean / 0.07 and AUC 10 % = 1 - mean / 0.10, every error under both), and
    report.json's ``files``: exactly the files written, no predictions.npz without predictions."""
    gt = np.stack([_box_points(seed=i) for i in range(4)])
    pred = gt + np.array([[1.0, 0, 0], [0, 2.0, 0], [3.0, 0, 0], [0, 0, 4.0]])[:, None, :]
    report = evaluation.evaluate_predictions(pred, gt, [10.0, 40.0, 50.0, 75.0], names=list("abcd"))
    files = evaluation.write_reports(report, tmp_path)
    saved = json.loads(Path(files["json"]).read_text())
    assert saved["samples"] == 4 and not saved["dense"]
    np.testing.assert_allclose([s["nme_2d"] for s in saved["per_sample"]],
                               np.array([1, 2, 3, 0]) / np.sqrt(5000))
    assert saved["nme_2d"] == pytest.approx(6 / 4 / np.sqrt(5000))
    assert saved["yaw_buckets"]["(30,60]"] == pytest.approx({"count": 2, "nme_2d": 2.5 / np.sqrt(5000),
                                                             "nme_3d": 2.5 / np.sqrt(5000),
                                                             "nme_3d_diagonal": 2.5 / np.hypot(100, 50)})
    assert saved["balanced"]["nme_2d"] == pytest.approx((1 + 2.5 + 0) / 3 / np.sqrt(5000))
    assert "sqrt(w*h)" in saved["labels"]["nme_3d"] and "diagonal" in saved["labels"]["nme_3d_diagonal"]
    assert "3DDFA" in saved["protocol"]["source"]
    markdown = Path(files["markdown"]).read_text()
    assert "| NME 2D (68 landmarks, / sqrt(w*h)) | 1.414 | 3.536 | 0.000 | 1.650 | 2.121 |" in markdown
    # mean NME 2D 1.5 / sqrt(5000) = 0.0212132 (3D: the same, depths centred), on the diagonal 1.5 / 111.803
    assert markdown.split("\n\n")[2].splitlines() == [  # title, NME table, AUC table
        "| metric | AUC 7% | AUC 10% | failure rate (NME > 10%) |",
        "| --- | ---: | ---: | ---: |",
        "| NME 2D (68 landmarks, / sqrt(w*h)) | 0.6970 | 0.7879 | 0.00 % |",
        "| NME 3D (68 landmarks, / sqrt(w*h)) | 0.6970 | 0.7879 | 0.00 % |",
        "| NME 3D (68 landmarks, / box diagonal) | 0.8083 | 0.8658 | 0.00 % |"]
    assert cv2.imread(files["ced"]) is not None
    written = {"json": "report.json", "markdown": "report.md", "ced": "ced.png"}
    assert saved["files"] == files == {kind: str(tmp_path / name) for kind, name in written.items()}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(written.values())


def test_report_json_is_strict_json_with_null_for_non_finite_values(tmp_path):
    gt = np.stack([_box_points(seed=i) for i in range(2)])
    pred = gt + [1.0, 0.0, 0.0]
    pred[1, 7] = np.nan
    report = evaluation.evaluate_predictions(pred, gt, [10.0, 40.0], names=["a", "b"])
    files = evaluation.write_reports(report, tmp_path)

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    saved = json.loads(Path(files["json"]).read_text(), parse_constant=refuse)
    # sample b's NaN is a failure and adds 0 to the AUCs: (1 - 0.0141421 / T) / 2
    assert "| NME 2D (68 landmarks, / sqrt(w*h)) | 0.3990 | 0.4293 | 50.00 % |" in Path(files["markdown"]).read_text()
    assert saved["per_sample"][0]["nme_2d"] == pytest.approx(1 / np.sqrt(5000))
    assert saved["per_sample"][1]["nme_2d"] is None and saved["nme_2d"] is None
    assert saved["balanced"]["nme_2d"] is None and saved["yaw_buckets"]["(30,60]"]["nme_2d"] is None
    assert saved["metrics"]["nme_2d"]["failure_rate_10"] == 0.5
    assert saved["metrics"]["nme_2d"]["auc_10"] == pytest.approx((1 - 1 / np.sqrt(5000) / 0.1) / 2)
    assert np.isnan(report["nme_2d"])  # the report in memory keeps the float


def test_read_sample_errors(tmp_path):
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
    sio.savemat(str(tmp_path / "a.mat"), {"Pose_Para": np.zeros((1, 7))})
    with pytest.raises(ValueError, match=r"a\.mat: missing key 'pt3d_68'"):
        evaluation.read_sample(tmp_path / "a.jpg", tmp_path / "a.mat")
    sio.savemat(str(tmp_path / "a.mat"), {"Pose_Para": np.zeros((1, 7)), "pt3d_68": np.zeros((2, 68))})
    with pytest.raises(ValueError) as caught:
        evaluation.read_sample(tmp_path / "a.jpg", tmp_path / "a.mat")
    assert str(caught.value) == f"{tmp_path / 'a.mat'}: pt3d_68 must be a (3, 68) array, got (2, 68)"
    (tmp_path / "a.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"a\.jpg: cannot decode the image"):
        evaluation.read_sample(tmp_path / "a.jpg", tmp_path / "a.mat")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image with a .mat"):
        evaluation.find_samples(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="data folder not found"):
        evaluation.find_samples(tmp_path / "absent")


def test_read_sample_counts_the_non_finite_values_of_pt3d_68(tmp_path):
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
    for values, count in (([np.nan], "1 non-finite value"), ([np.nan, np.inf, -np.inf], "3 non-finite values")):
        pt3d = np.zeros((3, 68))
        pt3d.flat[:len(values)] = values
        sio.savemat(str(tmp_path / "a.mat"), {"Pose_Para": np.zeros((1, 7)), "pt3d_68": pt3d})
        with pytest.raises(ValueError) as caught:
            evaluation.read_sample(tmp_path / "a.jpg", tmp_path / "a.mat")
        assert str(caught.value) == f"{tmp_path / 'a.mat'}: pt3d_68 holds {count} (NaN or inf)"


def test_find_samples_lists_every_image_with_its_mat_or_none_hidden_files_left_out(tmp_path):
    for name in ("a.jpg", "a.mat", "b.png", "._a.jpg", "._a.mat", "sub/c.JPG", "sub/c.mat", "d.txt", "e.mat"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert evaluation.find_samples(tmp_path) == [(tmp_path / "a.jpg", tmp_path / "a.mat"), (tmp_path / "b.png", None),
                                                 (tmp_path / "sub/c.JPG", tmp_path / "sub/c.mat")]
    for name in ("a.mat", "sub/c.mat"):
        (tmp_path / name).unlink()
    with pytest.raises(FileNotFoundError, match="no image with a .mat"):
        evaluation.find_samples(tmp_path)


# ------------------------------------------------------------------------------------------------ with a model

@pytest.fixture(scope="module")
def default_model():
    from face3d.morphable_model import MorphableModel
    return MorphableModel()


def _oracle_set(tmp_path, model, count):
    """``count`` rendered faces in the AFLW2000-3D format and an oracle network returning each crop's true map (the
    generator's, unperturbed). Returns (folder, oracle)."""
    from face3d.trainset.sample import GenerationConfig, TrainsetGenerator
    from face3d.trainset.synthetic import synthesize_dataset
    mats = synthesize_dataset(tmp_path / "synth", count=count, seed=5, size=300, model=model, views=1, flip=False)
    folder = helpers.aflw_from_synthetic(mats, tmp_path / "aflw", model)
    generator = TrainsetGenerator(model, GenerationConfig(resolution=256, angles=(), perturb=False))
    oracle = helpers.OraclePredictor(256)
    for mat in mats:
        sample = generator.process(mat.with_suffix(".jpg"), mat, seed=0)[0]
        oracle.add(sample.image, sample.posmap)
    return folder, oracle


def test_a_perfect_prediction_scores_zero(tmp_path, default_model):
    """An oracle network returning each crop's true map: every NME, dense included, is zero up to float32 rounding,
    so crop, restore, ground truth, depth alignment and dense truth agree."""
    folder, oracle = _oracle_set(tmp_path, default_model, 4)
    report = evaluation.evaluate_model(PRN(oracle), folder, tmp_path / "report", dense_model=default_model)
    assert report["samples"] == 4 and report["dense"]
    for key in ("nme_2d", "nme_3d", "nme_3d_diagonal", "dense_nme_2d", "dense_nme_3d", "reconstruction_nme_3d"):
        assert report[key] < 1e-5, key
    assert report["metrics"]["nme_2d"]["auc_7"] > 0.9999
    assert sum(b["count"] for b in report["yaw_buckets"].values()) == 4
    assert "dense_disabled" not in report

    assert evaluation.evaluate_model(PRN(oracle), folder, limit=2)["samples"] == 2
    with pytest.raises(ValueError, match="limit must be a positive number of samples, got 0"):
        evaluation.evaluate_model(PRN(oracle), folder, limit=0)


@pytest.mark.parametrize("command", [["evaluate", "--model", "m.onnx", "--data", "d", "--output", "o"],
                                     ["offline", "pre_process", "--data", "d", "--output", "o"]])
def test_a_limit_below_one_is_refused(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        face3d_main([*command, "--limit", "-1"])
    assert exit_info.value.code == 2
    assert "--limit: expected an integer >= 1, got '-1'" in capsys.readouterr().err


def test_a_sample_without_parameters_disables_the_dense_metrics_and_says_so(tmp_path, default_model, caplog):
    folder, oracle = _oracle_set(tmp_path, default_model, 2)
    second = sorted(folder.glob("*.mat"))[1]
    kept = {k: v for k, v in sio.loadmat(second).items()
            if not k.startswith("__") and k not in ("Shape_Para", "Exp_Para")}
    sio.savemat(second, kept)
    report = evaluation.evaluate_model(PRN(oracle), folder, dense_model=default_model)
    assert report["samples"] == 2 and not report["dense"] and "dense_nme_2d" not in report
    assert report["dense_disabled"] == f"{second} has no Shape_Para / Exp_Para"
    assert f"no dense metric for the set: {second} has no Shape_Para / Exp_Para" in caplog.text


def test_a_non_finite_map_skips_its_sample_with_the_reason(tmp_path, default_model, caplog):
    """A network answering NaN for one face: that sample is skipped (named, with the reason) before the dense
    metrics and ICP; the others are measured as usual. Answering NaN for every face is an error naming why."""
    folder, oracle = _oracle_set(tmp_path, default_model, 3)
    oracle.maps[0] = np.full_like(oracle.maps[0], np.nan)
    report = evaluation.evaluate_model(PRN(oracle), folder, tmp_path / "report", dense_model=default_model)
    assert report["samples"] == 2 and report["dense"] and len(report["skipped"]) == 1
    skipped = report["skipped"][0]
    reason = f"the network's position map has {256 * 256 * 3} non-finite value(s) (NaN or inf)"
    assert skipped["reason"] == reason
    assert Path(skipped["image"]).stem not in [s["name"] for s in report["per_sample"]]
    assert f"skipping {skipped['image']}: {reason}" in caplog.text
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert f"Skipped 1 image(s), not in the figures above:\n\n* {skipped['image']}: {reason}\n" in markdown
    for key in ("nme_2d", "dense_nme_3d", "reconstruction_nme_3d"):
        assert report[key] < 1e-5, key

    oracle.maps = [np.full_like(m, np.nan) for m in oracle.maps]
    with pytest.raises(ValueError, match=r"no sample could be evaluated \(3 skipped; first: .*\.jpg: the network's "
                                         r"position map has"):
        evaluation.evaluate_model(PRN(oracle), folder, dense_model=default_model)


def _recording_dense_arrays(prn, monkeypatch, record):
    """``record(array)`` of every dense vertex array the run makes: the network's (``prn.get_vertices``) and the
    ground truth's (``DenseGroundTruth.vertices``), in the order made. Returns (predicted records, truth records)."""
    pred_records, truth_records = [], []
    get_vertices, truth_vertices = prn.get_vertices, evaluation.DenseGroundTruth.vertices

    def recorded_pred(pos):
        vertices = get_vertices(pos)
        pred_records.append(record(vertices))
        return vertices

    def recorded_truth(self, sample, height):
        vertices = truth_vertices(self, sample, height)
        truth_records.append(record(vertices))
        return vertices

    monkeypatch.setattr(prn, "get_vertices", recorded_pred)
    monkeypatch.setattr(evaluation.DenseGroundTruth, "vertices", recorded_truth)
    return pred_records, truth_records


def test_dense_errors_measured_batch_by_batch_equal_those_of_the_whole_set(tmp_path, default_model, monkeypatch):
    """Three imperfect faces in batches of 2 (the last one short): every per-sample dense error and every figure
    of the report is bit for bit what the formula gives on the whole set's stacked vertices."""
    folder, oracle = _oracle_set(tmp_path, default_model, 3)
    for i, posmap in enumerate(oracle.maps):  # scaled (no rigid motion undoes it) and deepened: errors above 0
        oracle.maps[i] = posmap * np.float32(1.0 + 0.02 * (i + 1))
        oracle.maps[i][..., 2] *= np.float32(1.1)
    prn = PRN(oracle)
    kept_pred, kept_truth = _recording_dense_arrays(prn, monkeypatch, lambda vertices: vertices)
    report = evaluation.evaluate_model(prn, folder, tmp_path / "report", dense_model=default_model, batch_size=2)
    assert report["samples"] == 3 and len(kept_pred) == len(kept_truth) == 3

    saved = np.load(tmp_path / "report" / "predictions.npz")
    gt = saved["gt"]
    dense_pred, dense_gt = np.asarray(np.stack(kept_pred), dtype=np.float64), np.stack(kept_truth)
    to_landmark_box = metrics.bbox_size(dense_gt) / metrics.bbox_size(gt)
    expected = {"dense_nme_2d": keypoint_nme(dense_pred, dense_gt, dims=2) * to_landmark_box,
                "dense_nme_3d": keypoint_nme(dense_pred, dense_gt, dims=3) * to_landmark_box,
                "reconstruction_nme_3d": reconstruction_nme(dense_pred, dense_gt, outer_interocular_distance(gt))}
    for key, values in expected.items():
        assert [s[key] for s in report["per_sample"]] == values.tolist(), key
        assert values.min() > 1e-3, key
    whole = evaluation.evaluate_predictions(saved["pred"], gt, saved["yaw_deg"], saved["names"], dense=expected)
    assert {key: report[key] for key in whole} == whole


def test_dense_vertices_are_held_for_one_batch_and_measured_before_the_report(tmp_path, default_model, monkeypatch):
    """Five faces in batches of 2: whenever a batch is predicted, and when the report is built, at most one batch
    of dense vertex arrays is alive (memory does not grow with the set), and every sample's reconstruction (its ICP)
    was measured before the report, within the progress bar's loop."""
    folder, oracle = _oracle_set(tmp_path, default_model, 5)
    prn = PRN(oracle)
    pred_refs, truth_refs = _recording_dense_arrays(prn, monkeypatch, weakref.ref)
    alive, reconstructed, reconstructed_before_report = [], [], []

    def count_alive():
        alive.append(sum(ref() is not None for ref in pred_refs + truth_refs))

    predict_crops, build_report = prn.predict_crops, evaluation.evaluate_predictions
    monkeypatch.setattr(prn, "predict_crops", lambda crops: count_alive() or predict_crops(crops))
    measure = evaluation.reconstruction_nme
    monkeypatch.setattr(evaluation, "reconstruction_nme", lambda pred, gt, normalizer: (
        reconstructed.append(len(pred)) or measure(pred, gt, normalizer)))

    def recorded_report(*args, **kwargs):
        count_alive()
        reconstructed_before_report.append(sum(reconstructed))
        return build_report(*args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate_predictions", recorded_report)
    report = evaluation.evaluate_model(prn, folder, dense_model=default_model, batch_size=2)
    assert report["samples"] == 5 and report["dense"] and report["reconstruction_nme_3d"] < 1e-5
    assert len(pred_refs) == len(truth_refs) == 5 and len(alive) == 4  # 3 batches, then the report
    assert max(alive) <= 2, alive
    assert reconstructed_before_report == [5]


def test_an_image_without_a_mat_is_skipped_listed_and_counted_once(tmp_path, default_model, caplog):
    """A stray image is no sample: listed in skipped (the set measured is not the folder), one warning counts such
    images. A hidden file (macOS's ._ companion of a pair) is not an image of the set at all."""
    import shutil
    folder, oracle = _oracle_set(tmp_path, default_model, 2)
    first = sorted(folder.glob("*.jpg"))[0]
    shutil.copy(first, folder / "stray.jpg")
    for suffix in (".jpg", ".mat"):
        (folder / f"._{first.stem}{suffix}").write_bytes(b"\x00\x05\x16\x07Mac OS X" + bytes(100))
    report = evaluation.evaluate_model(PRN(oracle), folder, tmp_path / "report")
    assert report["samples"] == 2 and report["skipped"] == [{"image": str(folder / "stray.jpg"),
                                                             "reason": "no .mat beside it"}]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"{folder}: skipping 1 of 3 images without a .mat beside them (AFLW2000-3D format: "
                        "image00002.jpg + image00002.mat)"]
    assert "stray.jpg: no .mat beside it" in (tmp_path / "report" / "report.md").read_text()
    # --limit counts images: the first one alone is evaluated, the stray one (sorted last) is not reached
    assert evaluation.evaluate_model(PRN(oracle), folder, limit=1)["skipped"] == []


def _constant_face_onnx(path):
    """An ONNX network that always answers with one face-like map (x, y the crop pixel, z 40), written to ``path``."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
    face = np.stack([xx, yy, np.full_like(xx, 40.0)], -1) / np.float32(1.1 * 256)
    return helpers.constant_onnx(path, face)


def test_the_command_counts_the_skipped_images_and_exits_1_when_there_are_any(tmp_path, default_model, capsys):
    import shutil
    folder, _ = _oracle_set(tmp_path, default_model, 2)
    first, second = sorted(folder.glob("*.mat"))
    mat = {k: v for k, v in sio.loadmat(second).items() if not k.startswith("__")}
    sio.savemat(second, {**mat, "pt3d_68": mat["pt3d_68"].T})  # (68, 3): unreadable
    shutil.copy(first.with_suffix(".jpg"), folder / "stray.jpg")
    argv = ["evaluate", "--model", str(_constant_face_onnx(tmp_path / "constant.onnx")), "--data", str(folder),
            "--output", str(tmp_path / "report"), "--uv-data", str(default_uv_data_dir()), "--quiet"]
    assert face3d_main(argv) == 1
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("3 images: 1 evaluated, 2 skipped; NME 2D ") and "% (balanced " in line, line
    assert line.endswith(f"; report in {tmp_path / 'report' / 'report.md'}"), line
    assert len(json.loads((tmp_path / "report" / "report.json").read_text())["skipped"]) == 2
    for path in (folder / "stray.jpg", second, second.with_suffix(".jpg")):
        path.unlink()
    assert face3d_main(argv) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("1 image: 1 evaluated, 0 skipped; NME 2D ")


def test_fixtures_load_and_report(tmp_path, default_model):
    folder = FIXTURES / "AFLW2000"
    if not folder.is_dir():
        pytest.skip(f"real-format fixtures not found at {folder}")
    pairs = evaluation.find_samples(folder)
    assert len(pairs) >= 2
    for image_path, mat_path in pairs:
        image, sample = evaluation.read_sample(image_path, mat_path)
        np.testing.assert_array_equal(sample.landmarks, sio.loadmat(str(mat_path))["pt3d_68"].T)
        assert image.shape == (450, 450, 3) and abs(sample.yaw_deg) <= 90
    # a network that always answers with one face map: the report is built against pt3d_68
    uv = load_uv_data(default_uv_data_dir())
    model = _constant_face_onnx(tmp_path / "constant.onnx")
    report = evaluation.evaluate_model(PRN(model, uv_data=uv), folder, tmp_path / "report")
    assert report["samples"] == len(pairs) and report["skipped"] == []
    saved = np.load(tmp_path / "report" / "predictions.npz")
    for i, (_, mat_path) in enumerate(pairs):
        np.testing.assert_array_equal(saved["gt"][i], sio.loadmat(str(mat_path))["pt3d_68"].T)
    np.testing.assert_allclose([s["nme_2d"] for s in report["per_sample"]],
                               keypoint_nme(saved["pred"], saved["gt"], dims=2))
    assert (tmp_path / "report" / "report.md").is_file() and (tmp_path / "report" / "ced.png").is_file()


# ------------------------------------------------------------------------------------------------ end to end

def _independent_landmarks(model, image, gt, uv_kpt_ind, size, resolution):
    """Landmarks by hand: the generator's crop rule, OpenCV warp, Keras, then the inverse affine in numpy."""
    left, top = gt[:, :2].min(axis=0)
    right, bottom = gt[:, :2].max(axis=0)
    side = 1.5 * ((right - left) + (bottom - top)) / 2
    k = (resolution - 1) / side
    x0, y0 = (left + right) / 2 - side / 2, (top + bottom) / 2 - side / 2
    ks = size / resolution  # S pixel q sits at q / ks + (1 / ks - 1) / 2 in the R crop
    m = np.array([[k * ks, 0, -k * x0 * ks - (0.5 - 0.5 * ks)], [0, k * ks, -k * y0 * ks - (0.5 - 0.5 * ks)]])
    crop = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR).astype(np.float32) / 255
    out = np.asarray(model(crop[None], training=False))[0].astype(np.float64) * 1.1 * resolution
    index = np.clip(np.rint((uv_kpt_ind + 0.5) * size / resolution - 0.5), 0, size - 1).astype(int)
    crop_kpt = out[index[1], index[0]]
    return np.column_stack([crop_kpt[:, 0] / k + x0, crop_kpt[:, 1] / k + y0, crop_kpt[:, 2] / k])


@pytest.mark.slow
def test_end_to_end_train_then_evaluate(tmp_path, default_model):
    """Train a 32 x 32, width-4 network for 4 epochs (eager, 16 steps) on 32 default renders, evaluate it on 8
    held-back renders (AFLW2000-3D format) with face3d evaluate, and recompute the report's numbers independently."""
    pytest.importorskip("tensorflow")
    import keras

    from face3d.prnet.data import AugmentConfig
    from face3d.prnet.training import TrainConfig, train
    from face3d.trainset.dataset import generate_dataset
    from face3d.trainset.sample import GenerationConfig
    from face3d.trainset.synthetic import synthesize_dataset

    mats = synthesize_dataset(tmp_path / "synth", count=40, seed=11, model=default_model, views=1, flip=False)
    train_root = tmp_path / "train_src"
    train_root.mkdir()
    for mat in mats[:32]:
        for suffix in (".jpg", ".mat"):
            os.link(mat.with_suffix(suffix), train_root / mat.with_suffix(suffix).name)
    test_dir = helpers.aflw_from_synthetic(mats[32:], tmp_path / "aflw", default_model)
    generate_dataset(train_root, tmp_path / "set", GenerationConfig(resolution=32, angles=()), workers=1,
                     progress=False)
    train(TrainConfig(train_list=str(tmp_path / "set" / "trainDataLabel.txt"), output=str(tmp_path / "run"),
                      epochs=4, batch_size=8, width=4, lr=3e-3, lr_decay_epochs=1000, bn_momentum=0.9,
                      val_fraction=0.0, seed=0, augment=AugmentConfig.off(), run_eagerly=True, verbose=0))
    model_path = tmp_path / "run" / "checkpoints" / "last.keras"
    uv_dir = tmp_path / "set" / "uv-data"

    assert face3d_main(["evaluate", "--model", str(model_path), "--data", str(test_dir), "--output",
                        str(tmp_path / "rep"), "--uv-data", str(uv_dir), "--dense", "default", "--quiet"]) == 0
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["samples"] == 8 and report["dense"]

    model = keras.models.load_model(model_path, compile=False)
    uv = load_uv_data(uv_dir)
    nme2, nme3, yaws = [], [], []
    for mat_path in sorted(test_dir.glob("*.mat")):
        mat = sio.loadmat(str(mat_path))
        gt = mat["pt3d_68"].T
        image = cv2.cvtColor(cv2.imread(str(mat_path.with_suffix(".jpg"))), cv2.COLOR_BGR2RGB)
        pred = _independent_landmarks(model, image, gt, uv.uv_kpt_ind, 32, 32)
        norm = np.sqrt(np.ptp(gt[:, 0]) * np.ptp(gt[:, 1]))
        nme2.append(np.mean(np.sqrt(((pred[:, :2] - gt[:, :2]) ** 2).sum(1))) / norm)
        dz = (pred[:, 2] - pred[:, 2].mean()) - (gt[:, 2] - gt[:, 2].mean())
        nme3.append(np.mean(np.sqrt(((pred[:, :2] - gt[:, :2]) ** 2).sum(1) + dz ** 2)) / norm)
        yaws.append(abs(np.rad2deg(mat["Pose_Para"][0, 1])))
    nme2, nme3, yaws = map(np.array, (nme2, nme3, yaws))
    np.testing.assert_allclose([s["nme_2d"] for s in report["per_sample"]], nme2, rtol=1e-4)
    assert report["nme_2d"] == pytest.approx(nme2.mean(), rel=1e-4)
    assert report["nme_3d"] == pytest.approx(nme3.mean(), rel=1e-4)
    buckets = [yaws <= 30, (yaws > 30) & (yaws <= 60), yaws > 60]
    means = [nme2[b].mean() for b in buckets if b.any()]
    assert report["balanced"]["nme_2d"] == pytest.approx(np.mean(means), rel=1e-4)
    for label, b in zip(evaluation.YAW_BUCKETS, buckets):
        assert report["yaw_buckets"][label]["count"] == int(b.sum())
    assert report["metrics"]["nme_2d"]["auc_10"] == pytest.approx(np.mean(np.clip(1 - nme2 / 0.1, 0, 1)), abs=1e-6)
    assert np.isfinite(report["dense_nme_3d"]) and (tmp_path / "rep" / "ced.png").is_file()


# ------------------------------------------------------------------------------------------------ report files

class _RecordingPRN:
    """A stand-in PRN on 16-pixel crops: every map is zeros, every face's landmarks the same box; records the crops
    it was asked to predict."""
    input_size = resolution = 16

    def __init__(self):
        self.predicted = []

    def predict_crops(self, crops):
        self.predicted.append(len(crops))
        return [np.zeros((16, 16, 3), np.float32) for _ in crops]

    def get_landmarks(self, pos):
        return _box_points(width=20.0, height=20.0)


def _tiny_set(folder, stems, yaw=0.1):
    """An AFLW2000-3D-format folder: for each stem (a relative path without suffix) a grey 40 x 40 image and a .mat
    with a 20 x 20 landmark box and ``Pose_Para`` yaw ``yaw`` (radians). Returns the folder."""
    for stem in stems:
        path = folder / stem
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path.with_suffix(".jpg")), np.full((40, 40, 3), 128, np.uint8))
        sio.savemat(str(path.with_suffix(".mat")), {"pt3d_68": _box_points(width=20.0, height=20.0).T,
                                                    "Pose_Para": np.array([[0.0, yaw, 0.0, 0.0, 0.0, 0.0, 1.0]])})
    return folder


def _evaluate_argv(data, output, *extra):
    return ["evaluate", "--model", "m.onnx", "--data", str(data), "--output", str(output), "--quiet", *extra]


def test_uv_data_masks_at_another_resolution_than_its_indices_end_in_one_line(tmp_path, capsys):
    """The masks of the packaged uv-data enlarged to 512: its face_ind.txt no longer lists the face mask's pixels,
    and the landmarks would be read at other pixels. Refused as the uv-data loads, before the model."""
    uv_dir = tmp_path / "uv-data"
    shutil.copytree(default_uv_data_dir(), uv_dir)
    for name in ("uv_face_mask.png", "uv_weight_mask.png", "uv_face_eyes.png"):
        image = cv2.imread(str(uv_dir / name), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(uv_dir / name), cv2.resize(image, (512, 512), interpolation=cv2.INTER_NEAREST))
    data, output = _tiny_set(tmp_path / "data", ["a"]), tmp_path / "report"
    assert face3d_main(_evaluate_argv(data, output, "--uv-data", str(uv_dir))) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"face3d evaluate: error: {uv_dir / 'face_ind.txt'}: not the face pixels of uv_face_mask.png (512x512, "
        f"row-major y*512 + x, ascending): it holds 45496 indices for the mask's 181984 face pixels; the two are "
        f"from different uv-data sets or resolutions"]
    assert not output.exists()


def test_dense_model_without_uv_coordinates_is_named_as_by_the_other_commands(tmp_path, monkeypatch, capsys):
    """--dense BFM.mat without BFM_UV.mat beside it: the message of generate, uv-data and demo."""
    from face3d.morphable_model.default_model import default_model_dir

    monkeypatch.setattr("face3d.prnet.inference.PRN", lambda *args, **kwargs: _RecordingPRN())
    bfm = tmp_path / "bfm" / "BFM.mat"
    bfm.parent.mkdir()
    bfm.symlink_to(default_model_dir() / "BFM.mat")
    data, output = _tiny_set(tmp_path / "data", ["a"]), tmp_path / "report"
    assert face3d_main(_evaluate_argv(data, output, "--dense", str(bfm))) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"face3d evaluate: error: {bfm.parent / 'BFM_UV.mat'}: not found: the UV coordinates of the model (written "
        f"by face3d's generate.m) must lie beside BFM.mat"]
    assert not output.exists()


def test_a_full_disk_leaves_the_earlier_report_and_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    """The second run's disk refuses predictions.npz (ENOSPC on write, naming no file, as a full disk does): the
    first run's four files stay as they were, no temporary is left, and the command says which file in one line."""
    import builtins
    import errno
    import io

    prn = _RecordingPRN()
    monkeypatch.setattr("face3d.prnet.inference.PRN", lambda *args, **kwargs: prn)
    data, output = _tiny_set(tmp_path / "data", ["a", "b"]), tmp_path / "report"
    assert face3d_main(_evaluate_argv(data, output, "--limit", "1")) == 0
    earlier = {path.name: path.read_bytes() for path in output.iterdir()}
    assert set(earlier) == {"ced.png", "predictions.npz", "report.md", "report.json"}
    capsys.readouterr()

    class FullDisk(io.BytesIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    real_open = io.open

    def open_on_a_full_disk(file, mode="r", *args, **kwargs):
        if "predictions.npz" in os.fspath(file) and set(mode) & set("wax"):
            return FullDisk()
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(io, "open", open_on_a_full_disk)
    monkeypatch.setattr(builtins, "open", open_on_a_full_disk)
    status = face3d_main(_evaluate_argv(data, output))
    monkeypatch.undo()
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and err[0].endswith(f"error: {output / 'predictions.npz'}: {os.strerror(errno.ENOSPC)}"), err
    assert {path.name: path.read_bytes() for path in output.iterdir()} == earlier


def test_an_output_that_is_a_file_fails_before_any_prediction(tmp_path, monkeypatch, capsys):
    prn = _RecordingPRN()
    monkeypatch.setattr("face3d.prnet.inference.PRN", lambda *args, **kwargs: prn)
    data, output = _tiny_set(tmp_path / "data", ["a"]), tmp_path / "report"
    output.write_text("not a folder")
    assert face3d_main(_evaluate_argv(data, output)) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"face3d evaluate: error: {output}: is a file, not a "
                                                            "folder"]
    with pytest.raises(FileExistsError):
        evaluation.evaluate_model(prn, data, output)
    assert prn.predicted == [] and output.read_text() == "not a folder"


def test_without_matplotlib_an_earlier_ced_plot_is_removed(tmp_path, monkeypatch):
    gt = np.stack([_box_points(seed=i) for i in range(3)])
    report = evaluation.evaluate_predictions(gt + 1.0, gt, [0.0, 10.0, 40.0])
    assert "ced" in evaluation.write_reports(report, tmp_path)
    for module in ("matplotlib.backends.backend_agg", "matplotlib.figure"):
        monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    files = evaluation.write_reports(evaluation.evaluate_predictions(gt[:2] + 5.0, gt[:2], [0.0, 10.0]), tmp_path)
    assert "ced" not in files and sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.md"]
    assert json.loads((tmp_path / "report.json").read_text())["samples"] == 2


def test_same_named_images_in_two_subfolders_keep_their_relative_paths_as_names(tmp_path):
    data = _tiny_set(tmp_path / "data", ["image00001", "indoor/image00050", "outdoor/image00050"])
    report = evaluation.evaluate_model(_RecordingPRN(), data, tmp_path / "report")
    names = ["image00001", "indoor/image00050", "outdoor/image00050"]
    assert [s["name"] for s in report["per_sample"]] == names
    assert list(np.load(tmp_path / "report" / "predictions.npz")["names"]) == names


def test_a_non_finite_pose_para_is_refused_and_its_sample_skipped_naming_the_mat(tmp_path):
    """A NaN yaw is no yaw: the sample is skipped (not put into the (60,90] bucket) with a reason naming the .mat."""
    data = _tiny_set(tmp_path / "data", ["a"])
    _tiny_set(data, ["b"], yaw=np.nan)
    with pytest.raises(ValueError, match=r"b\.mat: Pose_Para must be finite, got \[0\.0, nan, "):
        evaluation.read_sample(data / "b.jpg", data / "b.mat")
    report = evaluation.evaluate_model(_RecordingPRN(), data)
    assert [s["name"] for s in report["per_sample"]] == ["a"]
    assert report["skipped"] == [{"image": str(data / "b.jpg"),
                                  "reason": f"{data / 'b.mat'}: Pose_Para must be finite, got "
                                            "[0.0, nan, 0.0, 0.0, 0.0, 0.0, 1.0]"}]
    assert [bucket["count"] for bucket in report["yaw_buckets"].values()] == [1, 0, 0]


def test_a_linked_subfolder_is_evaluated_once_and_hidden_folders_and_link_loops_are_not(tmp_path, caplog):
    """Links to folders are followed as face3d generate and fit follow them (each folder once, named as seen through
    the link); a link back to an ancestor is skipped with a warning; a hidden folder holds no image of the set."""
    data = _tiny_set(tmp_path / "data", ["plain/image00050", ".partial/image00003"])
    (data / "linked").symlink_to(_tiny_set(tmp_path / "elsewhere", ["image00081"]), target_is_directory=True)
    (data / "plain" / "loop").symlink_to(data, target_is_directory=True)
    assert evaluation.find_samples(data) == [(data / "linked/image00081.jpg", data / "linked/image00081.mat"),
                                             (data / "plain/image00050.jpg", data / "plain/image00050.mat")]
    caplog.clear()
    report = evaluation.evaluate_model(_RecordingPRN(), data, tmp_path / "report")
    assert [s["name"] for s in report["per_sample"]] == ["linked/image00081", "plain/image00050"]
    assert report["skipped"] == []
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"skipping folder {data / 'plain' / 'loop'}: it is {data}, walked already as {data}"]


def test_a_reports_chart_is_no_image_of_the_data_folder(tmp_path, monkeypatch, capsys):
    """A report's ced.png (beside its report.json) would be an image without a .mat: no later run lists it, whatever
    --output it writes to, the data folder itself included; a ced.png without a report.json is an image as any."""
    prn = _RecordingPRN()
    monkeypatch.setattr("face3d.prnet.inference.PRN", lambda *args, **kwargs: prn)
    data = _tiny_set(tmp_path / "data", ["image00050"])
    for output in (data / "report", data / "report", data / "other", data):
        assert face3d_main(_evaluate_argv(data, output)) == 0
        assert capsys.readouterr().out.startswith("1 image: 1 evaluated, 0 skipped; NME 2D ")
    assert all((folder / "ced.png").is_file() for folder in (data / "report", data / "other", data))
    assert evaluation.data_images(data) == [data / "image00050.jpg"]
    (data / "report" / "report.json").unlink()
    assert evaluation.data_images(data) == [data / "image00050.jpg", data / "report" / "ced.png"]


def test_an_evaluation_into_an_offline_report_folder_leaves_none_of_its_files(tmp_path, monkeypatch, capsys):
    """An offline run's latency table or --boxes landmarks in the folder would not match the new report."""
    monkeypatch.setattr("face3d.prnet.inference.PRN", lambda *args, **kwargs: _RecordingPRN())
    data = _tiny_set(tmp_path / "data", ["image00050"])
    report = tmp_path / "report"
    report.mkdir()
    for name in ("latency.md", "landmarks.npz", "landmarks.json", "notes.txt"):
        (report / name).write_text("an earlier run's\n")
    assert face3d_main(_evaluate_argv(data, report)) == 0
    capsys.readouterr()
    assert sorted(p.name for p in report.iterdir()) == ["ced.png", "notes.txt", "predictions.npz", "report.json",
                                                        "report.md"]
    written = {"json": "report.json", "markdown": "report.md", "ced": "ced.png", "predictions": "predictions.npz"}
    assert json.loads((report / "report.json").read_text())["files"] == {
        kind: str(report / name) for kind, name in written.items()}  # none of the removed files listed
