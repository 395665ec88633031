"""The evaluation's report files: ``report.md`` (NME per yaw bucket, AUC, failure rate, the protocol),
``ced.png`` (every metric's cumulative error distribution), ``report.json`` and ``predictions.npz``."""
import json
import logging
import math
from pathlib import Path

import numpy as np

from face3d.prnet.metrics import ced

__all__ = ["markdown_report", "plot_ced", "write_reports"]

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


def plot_ced(report, path, max_error=0.10):
    """Write the CED curves (fraction of samples vs NME, one curve per metric, AUC@7% in the legend) as a PNG.

    Uses matplotlib (imported here, Agg canvas); returns the Path, or None with a warning when matplotlib is
    missing.
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
    path = Path(path)
    figure.savefig(path)
    return path


def write_reports(report, output_dir, predictions=None):
    """Write ``report.json`` (the report dict, strict JSON: a non-finite value such as a diverged network's NaN NME
    is null), ``report.md`` (``markdown_report``), ``ced.png`` (``plot_ced``) and, given (pred, gt) landmark arrays,
    ``predictions.npz`` (names, yaw_deg, pred, gt) into ``output_dir``.

    Returns:
        dict of the written file paths (strings).
    """
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    files = {"json": str(output / "report.json"), "markdown": str(output / "report.md")}
    ced_path = plot_ced(report, output / "ced.png")
    if ced_path is not None:
        files["ced"] = str(ced_path)
    if predictions is not None:
        pred, gt = predictions
        np.savez(output / "predictions.npz", names=np.array([s["name"] for s in report["per_sample"]]),
                 yaw_deg=np.array([s["yaw_deg"] for s in report["per_sample"]]), pred=pred, gt=gt)
        files["predictions"] = str(output / "predictions.npz")
    Path(files["markdown"]).write_text(markdown_report(report), encoding="utf-8")
    Path(files["json"]).write_text(json.dumps(_finite_or_null({**report, "files": files}), indent=2, allow_nan=False)
                                   + "\n", encoding="utf-8")
    return files
