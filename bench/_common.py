"""What the benchmark scripts share: their ``--help`` text, the loading of an anchor's compiled kernels from a built
checkout, the timing in interleaved rounds of bench_fit, bench_generate, bench_infer, bench_render and bench_export
(ratios taken within a round by the first three); ``rounded`` rounds the JSON summaries of bench_fit, bench_input,
bench_infer and bench_export.

The scripts run as ``python bench/<script>.py``, which puts this folder first on ``sys.path``.
"""
import importlib.util
import resource
import statistics
import time
from pathlib import Path

import numpy as np


def description(doc):
    """A script's ``--help`` description: the first paragraph of its module docstring ``doc``."""
    return doc.strip().split("\n\n")[0]


def load_extension(folder, stem, subfolder):
    """The compiled module ``stem`` (a ``stem*.so`` file) of an anchor, imported by its path (the anchors' package
    names would clash with this project's). ``folder``: the anchor's built checkout, or its ``subfolder`` that holds
    the .so."""
    folder = Path(folder)
    found = sorted(folder.glob(f"{stem}*.so")) or sorted((folder / subfolder).glob(f"{stem}*.so"))
    if not found:
        raise SystemExit(f"{folder}: no {stem}*.so in it or in its {subfolder} (build it there with "
                         "`python setup.py build_ext -i`)")
    spec = importlib.util.spec_from_file_location(stem, found[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_face3d_core(folder):
    """YadiraF/face3d's Cython core ``mesh_core_cython`` from its checkout ``folder`` (or its face3d/mesh/cython)."""
    return load_extension(folder, "mesh_core_cython", Path("face3d", "mesh", "cython"))


def face3d_render_colors(core, copy_inputs):
    """face3d's ``render_colors`` on its core ``core`` (``load_face3d_core``): ``render(vertices, triangles,
    colors, h, w, c=3)`` allocating the (h, w, c) float32 image and the -999999 float32 depth buffer as its
    render.py does; with ``copy_inputs`` also its wrapper's ``astype(...).copy()`` of the three inputs (the fork's
    whole call, bench_generate), without them kernel against kernel (bench_render)."""
    def render(vertices, triangles, colors, h, w, c=3):
        image = np.zeros((h, w, c), dtype=np.float32)
        depth = np.full((h, w), -999999.0, dtype=np.float32)
        if copy_inputs:
            vertices = vertices.astype(np.float32).copy()
            triangles = triangles.astype(np.int32).copy()
            colors = colors.astype(np.float32).copy()
        core.render_colors_core(image, vertices, triangles, colors, depth, vertices.shape[0], triangles.shape[0],
                                h, w, c)
        return image
    return render


def load_sim3dr_core(folder):
    """3DDFA_V2's ``Sim3DR_Cython`` from its checkout ``folder`` (or its Sim3DR folder)."""
    return load_extension(folder, "Sim3DR_Cython", Path("Sim3DR"))


# The clocks (seconds) that ``interleaved`` reads before and after each timed call.
_CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter,
           "kernel": lambda: resource.getrusage(resource.RUSAGE_SELF).ru_stime, "thread": time.thread_time}


def interleaved(cases, repeats, rotate, warmup=1, limits=None):
    """Times per unit of each case {name: (prepare, run, units)} in each of ``repeats`` rounds: in a round every case
    runs once, one after the other (so a change in the machine's load hits them all), ``prepare()`` untimed, then
    ``run(prepared)`` timed. The first ``warmup`` rounds are untimed (imports, page faults, the files' first
    creation, a runtime's first calls). With ``rotate`` round r starts at the r-th case (a case can run faster or
    slower after some cases than after others: each gets each place in turn). ``limits`` {name: n}: the case
    ``name`` runs in the warm-up rounds and the first n timed rounds only (a slow one, as the numpy twin).

    Returns {clock: {name: [ms per unit, one per round it ran]}} for the clocks ``"cpu"`` (this process, user +
    system), ``"kernel"`` (its system time: file creation and writes, mostly), ``"thread"`` (the calling thread's
    CPU time) and ``"wall"``."""
    limits = limits or {}
    times = {clock: {name: [] for name in cases} for clock in _CLOCKS}
    names = list(cases)
    for round_ in range(warmup + repeats):
        shift = round_ % len(names) if rotate else 0
        for name in names[shift:] + names[:shift]:
            if round_ >= warmup + limits.get(name, repeats):
                continue
            prepare, run, units = cases[name]
            arg = prepare()
            start = {clock: read() for clock, read in _CLOCKS.items()}
            run(arg)
            end = {clock: read() for clock, read in _CLOCKS.items()}
            if round_ >= warmup:
                for clock in _CLOCKS:
                    times[clock][name].append((end[clock] - start[clock]) * 1e3 / units)
    return times


def round_ratio(numerator, denominator):
    """Median over the rounds of ``numerator[r] / denominator[r]`` (lists of per-round times), and (min, max)."""
    ratios = [a / b for a, b in zip(numerator, denominator)]
    return statistics.median(ratios), (min(ratios), max(ratios))


def rounded(value, digits=4):
    """``value`` (a JSON-able summary: dicts, lists, numbers) with every float rounded to ``digits`` significant
    digits (a figure of a few ms and a difference of 1e-8 alike)."""
    if isinstance(value, dict):
        return {key: rounded(item, digits) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(item, digits) for item in value]
    return float(f"{value:.{digits}g}") if isinstance(value, float) else value
