"""Evaluation on AFLW2000-3D (or any folder in its format): landmark NME by yaw, CED curves, AUC, reports.

The protocol is PRNet's (Feng et al., ECCV 2018, section 5), which follows 3DDFA's benchmark (Zhu et al., CVPR 2016;
``benchmark_aflw2000.py`` of github.com/cleardusk/3DDFA); README "Evaluation protocol" states it in full.
Points are in image pixels (x right, y down), with z depth in the same units. All NME values are fractions
(0.035 = 3.5 %); the Markdown report prints percentages. Each rule lives where it is applied: ``evaluate_model``
(crop, skipped samples), ``keypoint_nme``, ``summarize_errors`` (yaw buckets, AUC, failures), ``dense_errors``.
"""
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from face3d.prnet import metrics
from face3d.prnet.evaluation_report import is_report_chart, markdown_report, write_reports
from face3d.prnet.metrics import ced
from face3d.prnet.reconstruction import outer_interocular_distance, reconstruction_nme
from face3d.trainset.discovery import listed_images
from face3d.utils.matfile import read_mat

__all__ = ["YAW_BUCKETS", "AUC_LIMITS", "FAILURE_THRESHOLD", "CED_THRESHOLDS", "AFLWSample", "image_mat_pairs",
           "data_images", "find_samples", "listed_pairs", "split_pairs", "sample_name", "read_sample", "keypoint_nme",
           "yaw_bucket", "auc", "failure_rate", "ced", "summarize_errors", "DenseGroundTruth", "dense_errors",
           "evaluate_predictions", "non_finite_map_problem", "counts_line", "evaluate_model",
           "write_reports", "markdown_report"]

logger = logging.getLogger(__name__)

YAW_BUCKETS = ("[0,30]", "(30,60]", "(60,90]")
AUC_LIMITS = (0.07, 0.10)
FAILURE_THRESHOLD = 0.10
_NO_MAT = "no .mat beside it"  # the skipped reason of an image without ground truth
CED_THRESHOLDS = np.round(np.linspace(0.0, 0.10, 101), 6)
_METRIC_LABELS = {
    "nme_2d": "NME 2D (68 landmarks, / sqrt(w*h))",
    "nme_3d": "NME 3D (68 landmarks, / sqrt(w*h))",
    "nme_3d_diagonal": "NME 3D (68 landmarks, / box diagonal)",
    "dense_nme_2d": "dense NME 2D (face vertices, / sqrt(w*h))",
    "dense_nme_3d": "dense NME 3D (face vertices, / sqrt(w*h))",
    "reconstruction_nme_3d": "3D reconstruction NME (face vertices after rigid ICP, symmetric Chamfer distance, "
                             "/ outer interocular distance)",
}
_PROTOCOL = {
    "source": "PRNet (Feng et al., ECCV 2018) on AFLW2000-3D, following 3DDFA's benchmark_aflw2000.py "
              "(Zhu et al., CVPR 2016; github.com/cleardusk/3DDFA)",
    "crop": "from the ground-truth 68 landmarks' box (generator's rule: centre, side 1.5 x mean side)",
    "normaliser": "sqrt(w*h) of the ground-truth 68 landmarks' 2D box; nme_3d_diagonal: sqrt(w^2+h^2)",
    "depth": "3D errors after shifting prediction and ground truth to zero mean depth",
    "yaw_buckets": "|Pose_Para yaw| in degrees: [0,30], (30,60], (60,90]; balanced mean = mean of bucket means",
    "auc": "integral of the CED over [0, T] / T, T = 0.07 and 0.10; failure rate = fraction with NME > 0.10",
    "reconstruction": "dense vertices rigidly aligned to the ground truth by ICP (rotation, translation), "
                      "symmetric mean nearest-point (Chamfer) distance: (mean over predicted vertices of the "
                      "distance to the nearest ground-truth vertex + mean over ground-truth vertices of the "
                      "distance to the nearest predicted vertex) / 2, / 3D outer interocular distance (landmarks "
                      "36, 45), as PRNet's 3D face reconstruction experiment",
    "skipped": "not measured, listed in skipped with the reason: an image without a .mat, a sample whose files "
               "cannot be read, one whose predicted map holds NaN or inf",
}


# ------------------------------------------------------------------------------------------------ data

@dataclass(frozen=True)
class AFLWSample:
    """Ground truth of one AFLW2000-3D-format sample.

    Attributes:
        name: the image's path relative to the data folder without its suffix, posix separators (``sub/image00050``;
            the plain stem for an image at the top of the folder).
        image_path, mat_path: Paths.
        landmarks: (68, 3) float64 ``pt3d_68`` transposed (x, y image pixels, y down; z depth).
        yaw_deg: float, ``Pose_Para``'s yaw (its second entry, stored in radians) in degrees, sign kept; its |yaw|
            puts the sample in a bucket (``yaw_bucket``).
        pose_para: (7,) float64 or None. shape_para, exp_para: (n, 1) float64 or None (dense ground truth).
    """
    name: str
    image_path: Path
    mat_path: Path
    landmarks: np.ndarray
    yaw_deg: float
    pose_para: np.ndarray = None
    shape_para: np.ndarray = None
    exp_para: np.ndarray = None


def image_mat_pairs(images):
    """(image, mat) for each of ``images`` (Paths), in their order: mat the ``.mat`` of the same stem beside the
    image, None when there is none."""
    return [(image, mat if (mat := image.with_suffix(".mat")).is_file() else None) for image in images]


def data_images(folder):
    """Every image of a data folder: ``discovery.listed_images`` (recursively, links to folders followed, each
    folder once, hidden files and folders left out, sorted by path) but a report's ``ced.png`` (``is_report_chart``:
    a report folder inside the data folder)."""
    return [image for image in listed_images(folder) if not is_report_chart(image)]


def find_samples(folder):
    """Every image under ``folder`` (``data_images``), sorted by path, with its ``.mat``.

    Returns:
        list of (image Path, mat Path, or None for an image without a ``.mat`` beside it: ``split_pairs``).
    Raises:
        FileNotFoundError: the folder does not exist or holds no image with a ``.mat``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder not found: {folder}")
    items = image_mat_pairs(data_images(folder))
    if not any(mat is not None for _, mat in items):
        raise FileNotFoundError(f"{folder}: no image with a .mat beside it (AFLW2000-3D format: image00002.jpg + "
                                "image00002.mat holding pt3d_68)")
    return items


def listed_pairs(folder, limit=None):
    """``split_pairs`` of the first ``limit`` images (all when None) that ``find_samples`` lists in ``folder``."""
    items = find_samples(folder)
    return split_pairs(items if limit is None else items[:int(limit)], folder)


def split_pairs(items, folder):
    """The image + ``.mat`` pairs of ``items`` and a skipped record for each image without a ``.mat``.

    Args:
        items: (image, mat or None) from ``image_mat_pairs`` / ``find_samples``. folder: their folder (for the log).
    Returns:
        (pairs [(image, mat)], skipped [{"image": str, "reason": _NO_MAT}]), both in the order of ``items``; the
        count of images without a ``.mat`` is logged once (a warning), not once per image.
    """
    pairs = [(image, mat) for image, mat in items if mat is not None]
    skipped = [{"image": str(image), "reason": _NO_MAT} for image, mat in items if mat is None]
    if skipped:
        logger.warning("%s: skipping %d of %d images without a .mat beside them (AFLW2000-3D format: image00002.jpg "
                       "+ image00002.mat)", folder, len(skipped), len(items))
    return pairs, skipped


def sample_name(image_path, folder=None):
    """A sample's name in reports: ``image_path`` relative to the data ``folder`` it was found in, without its
    suffix, with ``/`` separators (``indoor/image00050``: two ``image00050.jpg`` in two subfolders stay apart); its
    stem when ``folder`` is None or it lies at the folder's top."""
    image_path = Path(image_path)
    if folder is None:
        return image_path.stem
    return Path(os.path.relpath(os.path.abspath(image_path.with_suffix("")), os.path.abspath(folder))).as_posix()


def read_sample(image_path, mat_path, folder=None, max_pixels=None, limit_flag=None):
    """Read one AFLW2000-3D-format sample.

    Args:
        image_path: the image. mat_path: its ``.mat`` with ``pt3d_68`` (3, 68) and ``Pose_Para`` (1, 7); with
            ``Shape_Para`` and ``Exp_Para`` the sample also has dense ground truth.
        folder: the data folder ``image_path`` lies in, for the sample's name (its path relative to the folder:
            two ``image00050.jpg`` in two subfolders stay apart); None: the image's stem.
        max_pixels: largest image (width * height) decoded (``sample_io.read_image``); None: its default.
        limit_flag: the caller's option that sets ``max_pixels``, named when an image is above it; None: none.
    Returns:
        (image (h, w, 3) uint8 RGB, AFLWSample).
    Raises:
        FileNotFoundError: a file is missing. ValueError: undecodable image, missing or misshaped keys, a value
        that is not finite (NaN, inf) in ``pt3d_68`` or ``Pose_Para``.
    """
    from face3d.trainset.sample_io import DEFAULT_MAX_PIXELS, read_image

    image_path, mat_path = Path(image_path), Path(mat_path)
    for path in (image_path, mat_path):
        if not path.is_file():
            raise FileNotFoundError(f"file not found: {path}")
    image = read_image(image_path, DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels, limit_flag=limit_flag)
    mat = read_mat(mat_path)
    for key in ("pt3d_68", "Pose_Para"):
        if key not in mat:
            raise ValueError(f"{mat_path}: missing key {key!r} (an AFLW2000-3D .mat holds pt3d_68 (3, 68) and "
                             "Pose_Para (1, 7))")
    pt3d = np.asarray(mat["pt3d_68"], dtype=np.float64)
    if pt3d.shape != (3, 68):
        raise ValueError(f"{mat_path}: pt3d_68 must be a (3, 68) array, got {pt3d.shape}")
    non_finite = pt3d.size - int(np.isfinite(pt3d).sum())
    if non_finite:
        raise ValueError(f"{mat_path}: pt3d_68 holds {non_finite} non-finite value{'s' * (non_finite != 1)} (NaN or "
                         "inf)")
    pose = np.asarray(mat["Pose_Para"], dtype=np.float64).reshape(-1)
    if pose.size != 7:
        raise ValueError(f"{mat_path}: Pose_Para must hold 7 values, got {pose.size}")
    if not np.all(np.isfinite(pose)):  # a NaN yaw would land in the (60,90] bucket: NaN <= 30, <= 60 are false
        raise ValueError(f"{mat_path}: Pose_Para must be finite, got {pose.tolist()}")
    shape = mat.get("Shape_Para")
    exp = mat.get("Exp_Para")
    sample = AFLWSample(
        name=sample_name(image_path, folder),
        image_path=image_path, mat_path=mat_path, landmarks=pt3d.T.copy(),
        yaw_deg=float(np.rad2deg(pose[1])), pose_para=pose,
        shape_para=None if shape is None else np.asarray(shape, dtype=np.float64).reshape(-1, 1),
        exp_para=None if exp is None else np.asarray(exp, dtype=np.float64).reshape(-1, 1))
    return image, sample


# ------------------------------------------------------------------------------------------------ metrics

def keypoint_nme(pred, gt, dims=2, normalizer="box"):
    """Per-sample NME of point sets, computed by ``metrics.nme`` (the points laid out as a 1 x K map).

    ``mean_k ||p_k - g_k|| / sqrt(w * h)`` with w, h the width and height of gt's 2D box (3DDFA's ``calc_nme``).

    Args:
        pred, gt: (N, K, 3) or (K, 3) points (x, y image pixels, z depth).
        dims: 2 (x, y) or 3 (x, y, z). In 3D the depth origin is arbitrary (``pt3d_68`` carries the fitted tz,
            PRNet's maps put the deepest vertex at 0), so both sets are first shifted to zero mean depth.
        normalizer: "box" for sqrt(w * h) of gt's 2D box (the protocol), "diagonal" for sqrt(w^2 + h^2) (reported
            too for 3D, since published 3D numbers differ on the normaliser; every value is labelled).
    Returns:
        (N,) float64 (a float64 scalar for (K, 3) input).
    """
    if normalizer not in ("box", "diagonal"):
        raise ValueError(f"normalizer must be 'box' or 'diagonal', got {normalizer!r}")
    pred = np.array(pred, dtype=np.float64)
    gt = np.array(gt, dtype=np.float64)
    single = pred.ndim == 2
    if single:
        pred, gt = pred[None], gt[None]
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[2] != 3:
        raise ValueError(f"pred and gt must both be (N, K, 3), got {pred.shape} and {gt.shape}")
    if dims == 3:
        pred[..., 2] -= pred[..., 2].mean(axis=1, keepdims=True)
        gt[..., 2] -= gt[..., 2].mean(axis=1, keepdims=True)
    k = pred.shape[1]
    index = np.stack([np.arange(k), np.zeros(k, dtype=np.int64)])
    errors = metrics.nme(pred[:, None], gt[:, None], index, dims=dims)
    if normalizer == "diagonal":
        extent = np.ptp(gt[..., :2], axis=1)
        errors = errors * metrics.bbox_size(gt) / np.hypot(extent[:, 0], extent[:, 1])
    return errors[0] if single else errors


def yaw_bucket(yaw_deg):
    """Bucket index of each yaw: 0 for |yaw| <= 30, 1 for 30 < |yaw| <= 60, 2 above, beyond 90 too (degrees).

    Returns:
        (N,) int64 (a scalar array for scalar input).
    """
    a = np.abs(np.asarray(yaw_deg, dtype=np.float64))
    return np.where(a <= 30.0, 0, np.where(a <= 60.0, 1, 2)).astype(np.int64)


def auc(errors, limit):
    """Area under the CED curve on [0, limit], divided by limit: exactly ``mean(max(0, 1 - e / limit))``.

    A non-finite error (inf from a degenerate ground-truth box, NaN from non-finite values) is never reached by the CED
    (``metrics.ced``) and adds 0, as an error above ``limit`` does.

    Returns:
        float in [0, 1] (1: every error is 0).
    """
    errors = np.asarray(errors, dtype=np.float64)
    if errors.size == 0 or not limit > 0:
        raise ValueError(f"auc needs errors and a positive limit, got {errors.size} errors and limit {limit}")
    area = np.clip(1.0 - errors / limit, 0.0, 1.0)
    return float(np.mean(np.where(np.isfinite(errors), area, 0.0)))


def failure_rate(errors, threshold=FAILURE_THRESHOLD):
    """Fraction of errors strictly above ``threshold``; a non-finite error (NaN, inf) is a failure."""
    errors = np.asarray(errors, dtype=np.float64)
    if errors.size == 0:
        raise ValueError("failure_rate needs at least one error")
    return float(np.mean(~(np.isfinite(errors) & (errors <= threshold))))


def summarize_errors(errors, yaw_deg=None):
    """Mean, std, per-yaw-bucket and balanced means, AUCs and failure rate of per-sample errors.

    The balanced mean is the mean of the bucket means (3DDFA's ``ana`` and the papers' tables), taken over the
    non-empty buckets when one is empty. AUCs are ``auc`` at T = 7 % and 10 %; the failure rate is the fraction with
    NME > 10 %. A non-finite NME counts as a failure and 0 in the AUC; the means holding it stay non-finite.

    Args:
        errors: (N,) NME values. yaw_deg: (N,) yaws in degrees, or None (no buckets).
    Returns:
        dict: ``mean``, ``std``, ``count``, ``auc_7``, ``auc_10``, ``failure_rate_10`` and, with yaws,
        ``buckets`` ({label: {"mean", "std", "count"}}, mean None when empty), ``balanced_mean`` and
        ``balanced_buckets`` (how many non-empty buckets it averages).
    """
    errors = np.asarray(errors, dtype=np.float64)
    if errors.ndim != 1 or errors.size == 0:
        raise ValueError(f"errors must be a non-empty 1-D array, got shape {errors.shape}")
    out = {"mean": float(errors.mean()), "std": float(errors.std()), "count": int(errors.size)}
    for limit in AUC_LIMITS:
        out[f"auc_{round(limit * 100)}"] = auc(errors, limit)
    out[f"failure_rate_{round(FAILURE_THRESHOLD * 100)}"] = failure_rate(errors, FAILURE_THRESHOLD)
    if yaw_deg is not None:
        bucket = yaw_bucket(yaw_deg)
        if bucket.shape != errors.shape:
            raise ValueError(f"yaw_deg must match errors, got {bucket.shape} and {errors.shape}")
        buckets = {}
        for i, label in enumerate(YAW_BUCKETS):
            values = errors[bucket == i]
            buckets[label] = {"mean": float(values.mean()) if values.size else None,
                              "std": float(values.std()) if values.size else None, "count": int(values.size)}
        present = [b["mean"] for b in buckets.values() if b["mean"] is not None]
        out["buckets"] = buckets
        out["balanced_mean"] = float(np.mean(present))
        out["balanced_buckets"] = len(present)
    return out


# ------------------------------------------------------------------------------------------------ dense truth

class DenseGroundTruth:
    """Dense ground truth from 300W-LP-style parameters and the morphable model they were fitted with.

    The model's vertices ``shapeMU + shapePC @ Shape_Para + expPC @ Exp_Para`` are placed in the image by the
    pose (``TrainsetGenerator.image_pose``) and read at the UV data's face pixels through the model's UV
    rasterization, exactly as the generator builds position maps.

    Args:
        model: MorphableModel. uv_data: UVData built for it (else ValueError, ``uv_layout.check_uv_data_fits``).
    """

    def __init__(self, model, uv_data):
        from face3d.trainset.sample import GenerationConfig, TrainsetGenerator
        from face3d.trainset.uv_layout import check_uv_data_fits

        check_uv_data_fits(uv_data, model)
        self._generator = TrainsetGenerator(model, GenerationConfig(resolution=uv_data.resolution, angles=()))
        self._face_ind = np.asarray(uv_data.face_ind)

    def vertices(self, sample, height):
        """(m, 3) float64 image-space surface points at ``face_ind`` for an AFLWSample, or None without
        Shape_Para / Exp_Para."""
        if sample.shape_para is None or sample.exp_para is None:
            return None
        model_vertices = self._generator.vertices(sample.shape_para, sample.exp_para).astype(np.float64)
        A, b = self._generator.image_pose(sample.pose_para, int(height))
        placed = model_vertices @ A.T + b
        return self._generator.rasterization.interpolate(placed)[self._face_ind].astype(np.float64)


# ------------------------------------------------------------------------------------------------ evaluation

def dense_errors(dense_pred, dense_gt, gt_landmarks):
    """Per-sample dense errors of a batch of samples: dense alignment and 3D reconstruction.

    Dense alignment: ``keypoint_nme`` over every face vertex (2D, and 3D with mean depth aligned), normalised like
    the landmarks by the 68 points' box. 3D reconstruction (PRNet's "3D Face Reconstruction"):
    ``reconstruction.reconstruction_nme``, the symmetric Chamfer distance after rigid ICP (rotation and translation,
    no scale) divided by the outer interocular distance of the ground truth's 3D landmarks 36 and 45.

    Args:
        dense_pred, dense_gt: (N, m, 3) predicted and ground-truth dense vertices (image space, same m per sample).
        gt_landmarks: (N, 68, 3) ground-truth landmarks: their 2D box normalises the dense NMEs, their outer
            interocular distance the reconstruction NME.
    Returns:
        {"dense_nme_2d", "dense_nme_3d", "reconstruction_nme_3d": (N,) float64}.
    """
    dense_pred = np.asarray(dense_pred, dtype=np.float64)
    dense_gt = np.asarray(dense_gt, dtype=np.float64)
    gt = np.asarray(gt_landmarks, dtype=np.float64)
    # metrics.nme normalises by the dense points' own box; the protocol's normaliser is the 68 landmarks' box
    to_landmark_box = metrics.bbox_size(dense_gt) / metrics.bbox_size(gt)
    return {"dense_nme_2d": keypoint_nme(dense_pred, dense_gt, dims=2) * to_landmark_box,
            "dense_nme_3d": keypoint_nme(dense_pred, dense_gt, dims=3) * to_landmark_box,
            "reconstruction_nme_3d": reconstruction_nme(dense_pred, dense_gt, outer_interocular_distance(gt))}


def evaluate_predictions(pred_landmarks, gt_landmarks, yaw_deg, names=None, dense=None):
    """The evaluation report of predicted landmarks (and optionally their dense errors) against ground truth.

    Args:
        pred_landmarks, gt_landmarks: (N, 68, 3) image-space points. yaw_deg: (N,) degrees.
        names: N sample names (default "0", "1", ...).
        dense: the samples' dense errors, ``dense_errors``'s dict of (N,) arrays (computed batch by batch, so that
            no set's worth of dense vertices is held), or None.
    Returns:
        dict (see ``write_reports``): ``samples``, ``nme_2d``, ``nme_3d``, ``nme_3d_diagonal`` (overall means),
        ``balanced`` ({metric: balanced mean}), ``yaw_buckets`` ({label: {"count", metric: mean}}),
        ``metrics`` ({metric: ``summarize_errors``}), ``per_sample`` (list of dicts), ``labels``, ``protocol``,
        ``ced`` ({"thresholds": t = 0, 0.001, ..., 0.1 (``CED_THRESHOLDS``), metric: fraction of samples with
        NME <= each}).
    """
    pred = np.asarray(pred_landmarks, dtype=np.float64)
    gt = np.asarray(gt_landmarks, dtype=np.float64)
    yaw = np.asarray(yaw_deg, dtype=np.float64).reshape(-1)
    if pred.shape != gt.shape or pred.ndim != 3 or len(yaw) != len(pred) or len(pred) == 0:
        raise ValueError(f"pred_landmarks, gt_landmarks (N, 68, 3) and yaw_deg (N,) must match, got "
                         f"{pred.shape}, {gt.shape}, {yaw.shape}")
    names = [str(i) for i in range(len(pred))] if names is None else [str(n) for n in names]
    errors = {
        "nme_2d": keypoint_nme(pred, gt, dims=2),
        "nme_3d": keypoint_nme(pred, gt, dims=3),
        "nme_3d_diagonal": keypoint_nme(pred, gt, dims=3, normalizer="diagonal"),
    }
    if dense is not None:
        for key, value in dense.items():
            value = np.asarray(value, dtype=np.float64).reshape(-1)
            if len(value) != len(pred):
                raise ValueError(f"dense errors {key!r} must hold one value per sample ({len(pred)}), got {len(value)}")
            errors[key] = value
    summaries = {key: summarize_errors(value, yaw) for key, value in errors.items()}
    buckets = {label: {"count": summaries["nme_2d"]["buckets"][label]["count"]} for label in YAW_BUCKETS}
    for key, summary in summaries.items():
        for label in YAW_BUCKETS:
            buckets[label][key] = summary["buckets"][label]["mean"]
    per_sample = [{"name": names[i], "yaw_deg": float(yaw[i]), "yaw_bucket": YAW_BUCKETS[int(yaw_bucket(yaw[i]))],
                   **{key: float(value[i]) for key, value in errors.items()}} for i in range(len(pred))]
    report = {"samples": int(len(pred))}
    report.update({key: summaries[key]["mean"] for key in errors})
    report["balanced"] = {key: summaries[key]["balanced_mean"] for key in errors}
    report["balanced_buckets"] = summaries["nme_2d"]["balanced_buckets"]
    report["yaw_buckets"] = buckets
    report["metrics"] = summaries
    report["dense"] = "dense_nme_2d" in errors
    report["labels"] = {key: _METRIC_LABELS[key] for key in errors}
    report["ced"] = {"thresholds": CED_THRESHOLDS.tolist(),
                     **{key: ced(value, CED_THRESHOLDS).tolist() for key, value in errors.items()}}
    report["protocol"] = dict(_PROTOCOL)
    report["per_sample"] = per_sample
    return report


def non_finite_map_problem(pos):
    """Why a predicted position map (any shape, e.g. (R, R, 3)) gives no face to measure, or None when every value
    is finite: ``"the network's position map has <n> non-finite value(s) (NaN or inf)"`` (a diverged network), the
    reason a skipped sample is listed with."""
    non_finite = pos.size - int(np.isfinite(pos).sum())
    return f"the network's position map has {non_finite} non-finite value(s) (NaN or inf)" if non_finite else None


def counts_line(report):
    """One line of a report's counts and figures (``evaluate_predictions`` plus its ``skipped``): ``3 images: 2
    evaluated, 1 skipped; NME 2D 3.210 % (balanced 3.456 %), NME 3D 4.321 % (balanced 4.567 %)``."""
    balanced, skipped = report["balanced"], len(report["skipped"])
    count = report["samples"] + skipped
    return (f"{count} image{'s' * (count != 1)}: {report['samples']} evaluated, {skipped} skipped; NME 2D "
            f"{100 * report['nme_2d']:.3f} % (balanced {100 * balanced['nme_2d']:.3f} %), NME 3D "
            f"{100 * report['nme_3d']:.3f} % (balanced {100 * balanced['nme_3d']:.3f} %)")


def evaluate_model(prn, data_dir, output_dir=None, dense_model=None, batch_size=8, limit=None, progress=False):
    """Run a PRN on every sample of an AFLW2000-3D-format folder and build (and optionally write) the report.

    Each face is cropped from its ground-truth landmarks' box (``face_crop.landmark_crop``: the generator's training
    crop, side 1.5 x the box's mean side, where PRNet's demo takes ``int(1.6 x)`` with its own training crop), so
    detection failures do not enter the metric.

    Args:
        prn: ``inference.PRN``.
        data_dir: folder of image + ``.mat`` pairs (``find_samples``; an image without a ``.mat`` is skipped).
        output_dir: where ``write_reports`` puts report.json, report.md, ced.png and predictions.npz (None: no
            files); made before any image is predicted. Inside ``data_dir`` its ``ced.png`` is no image of the set
            (``data_images``).
        dense_model: MorphableModel for dense ground truth (``DenseGroundTruth``; the UV data of ``prn`` must be
            this model's), or None for landmarks only. Each batch's dense errors (ICP included) are measured as it
            is predicted, under the progress bar, and only those numbers are kept: memory does not grow with the
            set's dense vertices (about 45k points a sample).
        batch_size: crops per network call.
        limit: evaluate only the first ``limit`` images (sorted order; one without a ``.mat`` is skipped).
        progress: show a progress bar on stderr.
    Returns:
        the report dict (``evaluate_predictions``) with ``data``, ``skipped`` (images without a ``.mat``, samples
        that could not be read, or whose predicted map holds NaN or inf: a diverged network measures no face; each
        with the reason), ``dense_disabled`` (why there is no dense metric although ``dense_model`` was given: a
        sample without Shape_Para / Exp_Para) and, when written, ``files``.
    """
    from face3d.prnet.face_crop import crop_face, landmark_crop
    from face3d.utils.progress import Progress

    if limit is not None and int(limit) < 1:
        raise ValueError(f"limit must be a positive number of samples, got {limit}")
    pairs, skipped = listed_pairs(data_dir, limit)
    dense = None if dense_model is None else DenseGroundTruth(dense_model, prn.uv)
    if output_dir is not None:  # a folder that cannot be made fails here, not after every image is predicted
        Path(output_dir).mkdir(parents=True, exist_ok=True)
    names, yaws, preds, gts = [], [], [], []
    dense_values = {}  # metric -> each sample's dense error; dense vertices are held for one batch only
    dense_disabled = None
    batch = []

    def skip(image_path, reason):
        logger.warning("skipping %s: %s", image_path, reason)
        skipped.append({"image": str(image_path), "reason": reason})

    def flush():
        maps = prn.predict_crops([crop for crop, _, _ in batch])
        dense_preds, dense_gts, dense_landmarks = [], [], []
        for pos, (_, sample, dense_truth) in zip(maps, batch):
            problem = non_finite_map_problem(pos)
            if problem is not None:  # a diverged network: no face to measure (and no motion for ICP to fit)
                skip(sample.image_path, problem)
                continue
            names.append(sample.name)
            yaws.append(sample.yaw_deg)
            preds.append(prn.get_landmarks(pos))
            gts.append(sample.landmarks)
            if dense is not None:
                dense_preds.append(prn.get_vertices(pos))
                dense_gts.append(dense_truth)
                dense_landmarks.append(sample.landmarks)
        batch.clear()
        if dense_preds:  # measured here, under the progress bar, and the batch's dense vertices dropped
            errors = dense_errors(np.stack(dense_preds), np.stack(dense_gts), np.stack(dense_landmarks))
            for key, value in errors.items():
                dense_values.setdefault(key, []).extend(value.tolist())

    with Progress(len(pairs), desc="evaluate", enabled=progress) as bar:
        for image_path, mat_path in pairs:
            try:
                image, sample = read_sample(image_path, mat_path, data_dir)
                crop = crop_face(image, landmark_crop(sample.landmarks), prn.input_size, prn.resolution)
                dense_truth = None if dense is None else dense.vertices(sample, image.shape[0])
            except (OSError, ValueError) as exc:
                skip(image_path, str(exc))
                bar.update(1)
                continue
            if dense is not None and dense_truth is None:
                # one sample without parameters: no dense metric for the set, said in the log and the report
                dense_disabled = f"{mat_path} has no Shape_Para / Exp_Para"
                logger.warning("no dense metric for the set: %s", dense_disabled)
                dense = None
                dense_values.clear()
            batch.append((crop, sample, dense_truth))
            if len(batch) >= batch_size:
                flush()
            bar.update(1)
        if batch:
            flush()
    if not preds:
        raise ValueError(f"{data_dir}: no sample could be evaluated ({len(skipped)} skipped; first: "
                         f"{skipped[0]['image']}: {skipped[0]['reason']})")
    report = evaluate_predictions(np.stack(preds), np.stack(gts), np.array(yaws), names,
                                  dense_values if dense is not None else None)
    report["data"] = str(Path(data_dir).resolve())
    report["skipped"] = skipped
    if dense_disabled is not None:
        report["dense_disabled"] = dense_disabled
    if output_dir is not None:
        report["files"] = write_reports(report, output_dir, predictions=(np.stack(preds), np.stack(gts)))
    return report
