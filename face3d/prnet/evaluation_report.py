"""The evaluation's report files: ``report.md`` (NME per yaw bucket, AUC, failure rate, the protocol),
``ced.png`` (every metric's cumulative error distribution), ``report.json`` and ``predictions.npz``, written
together or not at all (``face3d.utils.atomic.write_file_set``)."""
import io
import json
import logging
import math
from pathlib import Path

import numpy as np

from face3d.prnet.metrics import ced
from face3d.utils.atomic import write_file_set

__all__ = ["REPORT_FILES", "OFFLINE_FILES", "markdown_report", "ced_png", "write_reports", "is_report_chart"]

# The files of a report (``write_reports``), by kind
REPORT_FILES = {"json": "report.json", "markdown": "report.md", "ced": "ced.png", "predictions": "predictions.npz"}
# The files ``face3d offline post_process`` writes in a report folder beside a report (its latency table) or instead of
# one (a --boxes run's landmarks), by kind
OFFLINE_FILES = {"latency": "latency.md", "landmarks": "landmarks.npz", "landmarks_json": "landmarks.json"}

logger = logging.getLogger(__name__)


def _percent(value):
    return "-" if value is None else f"{100.0 * value:.3f}"


def _finite_or_null(value):
    """``value`` (a JSON-like tree) with every non-finite float (NaN, inf) replaced by None: strict JSON's null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(item) for item in value]
    return value


def markdown_report(report):
    """The report as Markdown: a table of NME (%) per yaw bucket, balanced and overall, then AUC and failures."""
    keys = list(report["labels"])
    lines = [f"# AFLW2000-3D-protocol evaluation ({report['samples']} samples)", ""]
    counts = " | ".join(f"{label} (n={report['yaw_buckets'][label]['count']})" for label in report['yaw_buckets'])
    lines += [f"| metric (%) | {counts} | balanced | all |", "| --- |" + " ---: |" * 5]
    for key in keys:
        cells = [_percent(report["yaw_buckets"][label][key]) for label in report["yaw_buckets"]]
        lines.append(f"| {report['labels'][key]} | {' | '.join(cells)} | {_percent(report['balanced'][key])} | "
                     f"{_percent(report[key])} |")
    if report.get("balanced_buckets", 3) < 3:
        lines += ["", f"Balanced means average the {report['balanced_buckets']} non-empty buckets only."]
    lines += ["", "| metric | AUC 7% | AUC 10% | failure rate (NME > 10%) |", "| --- | ---: | ---: | ---: |"]
    for key in keys:
        m = report["metrics"][key]
        lines.append(f"| {report['labels'][key]} | {m['auc_7']:.4f} | {m['auc_10']:.4f} | "
                     f"{100.0 * m['failure_rate_10']:.2f} % |")
    lines += ["", "Protocol:", ""] + [f"* {k}: {v}" for k, v in report["protocol"].items()]
    if report.get("skipped"):
        lines += ["", f"Skipped {len(report['skipped'])} image(s), not in the figures above:", ""]
        lines += [f"* {s['image']}: {s['reason']}" for s in report["skipped"]]
    return "\n".join(lines) + "\n"


def ced_png(report, max_error=0.10):
    """The CED curves (fraction of samples vs NME, one curve per metric, AUC@7% in the legend) as PNG bytes.

    Uses matplotlib (imported here, Agg canvas); returns None with a warning when matplotlib is missing.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        logger.warning("matplotlib is not installed: no CED plot (pip install matplotlib)")
        return None
    thresholds = np.linspace(0.0, max_error, 201)
    figure = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for key, label in report["labels"].items():
        errors = [s[key] for s in report["per_sample"]]
        axes.plot(100.0 * thresholds, 100.0 * ced(errors, thresholds),
                  label=f"{label}: AUC@7% {report['metrics'][key]['auc_7']:.3f}")
    axes.set_xlim(0.0, 100.0 * max_error)
    axes.set_ylim(0.0, 100.0)
    axes.set_xlabel("NME (%)")
    axes.set_ylabel("images (%)")
    axes.set_title(f"CED, {report['samples']} samples")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right", fontsize=7)
    png = io.BytesIO()
    figure.savefig(png, format="png")
    return png.getvalue()


def write_reports(report, output_dir, predictions=None, extra=None):
    """Write ``report.json`` (the report dict, strict JSON: a non-finite value such as a diverged network's NaN NME
    is null), ``report.md`` (``markdown_report``), ``ced.png`` (``ced_png``) and, given (pred, gt) landmark arrays,
    ``predictions.npz`` (names, yaw_deg, pred, gt) into ``output_dir`` (created); ``extra``: {kind: (file name,
    bytes or None)}, a caller's own files to write with them (listed in ``files`` under their kind), among them
    ``OFFLINE_FILES``' kinds.

    The files appear together or not at all (``write_file_set``, report.json renamed last): a failed write
    (a full disk) leaves an earlier run's files as they were and raises an OSError naming the file. An earlier
    run's ``ced.png``, ``predictions.npz``, ``extra`` or ``OFFLINE_FILES`` file that this call does not write (no
    matplotlib, no predictions, None; an offline run's latency table in the folder of an evaluate run) is removed
    afterwards: it would not match the report.

    Returns:
        dict of the written file paths (strings).
    """
    output = Path(output_dir)
    extra = {**{kind: (name, None) for kind, name in OFFLINE_FILES.items()}, **(extra or {})}
    paths = {**{kind: output / name for kind, name in REPORT_FILES.items()},
             **{kind: output / name for kind, (name, _) in extra.items()}}
    contents = {"ced": ced_png(report), "predictions": None if predictions is None else _npz(report, *predictions),
                "markdown": markdown_report(report).encode("utf-8"),
                **{kind: data for kind, (_, data) in extra.items()}}
    files = {kind: str(path) for kind, path in paths.items() if kind == "json" or contents[kind] is not None}
    contents["json"] = (json.dumps(_finite_or_null({**report, "files": files}), indent=2, allow_nan=False)
                        + "\n").encode("utf-8")
    return write_file_set(paths, contents)


def _npz(report, pred, gt):
    """``predictions.npz``'s bytes: names and yaw_deg of ``report``'s samples, pred and gt (N, 68, 3) landmarks."""
    npz = io.BytesIO()
    np.savez(npz, names=np.array([s["name"] for s in report["per_sample"]]),
             yaw_deg=np.array([s["yaw_deg"] for s in report["per_sample"]]), pred=pred, gt=gt)
    return npz.getvalue()


def is_report_chart(path):
    """Whether the image ``path`` is a report's ``ced.png`` (``write_reports``: beside its ``report.json``), which a
    listing of a data folder holding the report (``--output`` inside ``--data``) takes for no image of the set."""
    path = Path(path)
    return path.name == REPORT_FILES["ced"] and path.with_name(REPORT_FILES["json"]).is_file()
