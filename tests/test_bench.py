"""The benchmark scripts as a user runs them (subprocesses): their --help text, their refusals of inputs they
cannot measure, and the JSON summary that ends a run (the quick one: bench_fit's); and the order in which their
shared timing loop runs the cases. No timings are checked."""
import ast
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import _prnet_data
import numpy as np
import pytest

from face3d.utils.jpeg_region import region_decoder_available

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "bench").glob("bench_*.py"))


def run_script(script, *args, timeout=120):
    """``python bench/<script> args`` from the repository root with this checkout first on the path."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, str(script), *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_help_shows_the_first_paragraph_of_the_docstring(script):
    first_paragraph = ast.get_docstring(ast.parse(script.read_text())).split("\n\n")[0]
    result = run_script(script, "--help")
    assert result.returncode == 0, result.stderr
    assert " ".join(first_paragraph.split()) in " ".join(result.stdout.split())


@pytest.mark.parametrize("count, batches", [(2, 1), (1, 0)])
def test_bench_input_refuses_an_epoch_of_fewer_than_two_batches(tmp_path, count, batches):
    """Each epoch's first batch is not timed, so an epoch of one batch times nothing (the loop would rebuild the
    pipeline forever) and one of none has no start: the script stops before timing, naming the file."""
    label = _prnet_data.make_dataset(tmp_path, count, resolution=32)
    try:
        result = run_script(REPO / "bench" / "bench_input.py", "--train-list", label, "--batch-size", 2)
    except subprocess.TimeoutExpired:
        pytest.fail(f"bench_input.py with {count} samples in batches of 2 did not stop")
    smaller = "--batch-size 1 or less, or " if count == 2 else ""
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"{label}: {count} samples make {batches} batch(es) of 2 per epoch; the pipeline is timed after each "
        f"epoch's first batch, so it needs 2: pass {smaller}a label file of 4 samples or more")


def load_script(name, monkeypatch):
    """bench/<name>.py as a module, importable as its run does (its folder first on the path, for ``_common``),
    with the thread settings it makes for its own process undone after the test."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(variable, os.environ.get(variable, "1"))
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("count, batch_size", [(4, 2), (5, 2), (2, 1)])
def test_bench_input_accepts_an_epoch_of_exactly_two_batches(monkeypatch, count, batch_size):
    """Two batches are enough: the first is left out, the second is timed, so the check lets them through."""
    bench_input = load_script("bench_input", monkeypatch)
    bench_input.require_two_batches(count, batch_size, "trainDataLabel.txt", "more samples")


def crafted_times(names, rounds=3, seed=0):
    """{clock: {name: [ms, one per round]}} as ``interleaved`` returns them, every figure distinct: each clock's,
    each case's and each round's, so that a figure taken from the wrong clock, case or round shows."""
    rng = np.random.default_rng(seed)
    return {clock: {name: [float(value) for value in rng.uniform(1.0, 20.0, rounds)] for name in names}
            for clock in ("cpu", "kernel", "thread", "wall")}


def test_bench_generate_divides_each_case_by_its_outputs_and_reports_its_ratios_within_rounds(monkeypatch, capsys):
    """``bench_generate --quick`` (2 faces x 4 views + their _Flip copies = 16 samples; the fork on 4 of them;
    process vs process_many on 8) in this process, its cases run once each, with made-up round times in place of the
    measured ones. Each case is divided by what it makes: a sample, or with the 8 rotations an output (9 per
    sample), so every case that writes position maps writes one per unit. The final JSON holds exactly the figures
    the docstring lists, from the CPU clock: each ratio the median over the rounds of its within-round ratio and its
    range, each case's median and its kernel clock's median, rounded to 3 decimals."""
    bench_generate = load_script("bench_generate", monkeypatch)
    units, maps_per_unit, made_up = {}, {}, {}

    def run_each_case_once(cases, repeats, rotate, warmup=1, limits=None):
        for name, (prepare, run, case_units) in cases.items():
            arg = prepare()
            run(arg)
            units[name] = case_units
            # the prepared folder(s), or the runner's output folder; the generator cases write nothing
            folders = arg if isinstance(arg, list) else [arg] if isinstance(arg, Path) else \
                [Path(arg.output)] if hasattr(arg, "output") else []
            if name != "basis_stream" and folders:
                maps_per_unit[name] = sum(len(list(folder.rglob("*.npy"))) for folder in folders) / case_units
        made_up.update(crafted_times(cases))
        return made_up

    monkeypatch.setattr(bench_generate, "interleaved", run_each_case_once)
    bench_generate.main(["--quick"])
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])

    samples, outputs = 16, 16 * 9
    assert units == {"basis_stream": 8, "fork": 4, "floor_plain": samples, "floor_rotated": outputs,
                     "plain": samples, "plain_distinct": samples, "rotated": outputs, "single": 8, "batched": 8}
    assert maps_per_unit == {name: 1.0 for name in ("fork", "floor_plain", "floor_rotated", "plain",
                                                    "plain_distinct", "rotated")}
    ratios = {"plain_x": ("fork", "plain"), "plain_distinct_x": ("fork", "plain_distinct"),
              "rotated_x": ("fork", "rotated"), "plain_floor_ratio": ("plain", "floor_plain"),
              "rotated_floor_ratio": ("rotated", "floor_rotated"), "single_x": ("single", "batched")}
    cpu, kernel = made_up["cpu"], made_up["kernel"]
    expected = {"single_ms": round(statistics.median(cpu["single"]), 3),
                "batched_ms": round(statistics.median(cpu["batched"]), 3)}
    for key, (numerator, denominator) in ratios.items():
        within = [a / b for a, b in zip(cpu[numerator], cpu[denominator])]
        expected[key] = round(statistics.median(within), 3)
        expected[f"{key}_range"] = [round(min(within), 3), round(max(within), 3)]
    for name in units:
        expected[f"{name}_ms"] = round(statistics.median(cpu[name]), 3)
        expected[f"{name}_kernel_ms"] = round(statistics.median(kernel[name]), 3)
    expected["jpeg_region"] = region_decoder_available()
    assert summary == expected


def test_bench_render_reports_the_smallest_ratio_of_medians_over_its_cases(monkeypatch, capsys):
    """``bench_render --quick`` in this process with made-up round times (each call of the timing loop its own) in
    place of the measured ones: each case's ``numpy_x`` is the numpy twin's median thread-clock time over ours,
    ``ours_ms`` our median, and the top-level ``numpy_x`` the smallest of the cases' ratios."""
    bench_render = load_script("bench_render", monkeypatch)
    calls = []

    def made_up_rounds(cases, repeats, rotate, warmup=1, limits=None):
        calls.append(crafted_times(cases, seed=len(calls)))
        return calls[-1]

    monkeypatch.setattr(bench_render, "interleaved", made_up_rounds)
    bench_render.main(["--quick"])
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])

    names = [f"{mesh} {target} {kernel}" for mesh in ("38k", "53k") for target in ("image 450x450", "uv 256x256")
             for kernel in ("rasterize_triangles", "render_colors")]
    ratios = []
    for times in calls:
        ours, numpy_twin = (statistics.median(times["thread"][name]) for name in ("ours", "numpy"))
        ratios.append(numpy_twin / ours)
    assert summary == {"numpy_x": round(min(ratios), 2), "cases": {
        name: {"ours_ms": round(statistics.median(times["thread"]["ours"]), 3), "numpy_x": round(ratio, 2)}
        for name, times, ratio in zip(names, calls, ratios, strict=True)}}


def test_bench_fit_ends_with_its_json_summary():
    result = run_script(REPO / "bench" / "bench_fit.py", "--faces", 12, "--single", 4, "--rounds", 3)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert (summary["faces"], summary["single"], summary["rounds"]) == (12, 4, 3)
    assert "contour_dense_rmse" in summary["default"] and "contour_dense_rmse" not in summary["bfm_sized"]
    for model in (summary["default"], summary["bfm_sized"]):
        for case in ("single", "batch", "batch_forced"):
            for ratio in (f"{case}_x", f"{case}_cpu_x"):
                assert model[ratio] > 0 and len(model[f"{ratio}_range"]) == 2  # the keys its docstring lists
        assert 0 < model["ours_dense_rmse"] < 5 and 0 < model["face3d_dense_rmse"] < 5


def test_interleaved_rotates_the_cases_and_runs_a_limited_one_in_its_first_rounds_only(monkeypatch):
    """Round r (the untimed warm-up is round 0) runs every case once starting at the r-th, each ``prepare()`` just
    before its ``run``; a case limited to 1 round runs in the warm-up and the first timed round only, and each clock
    holds one time per timed run."""
    common = load_script("_common", monkeypatch)
    calls = []
    cases = {name: (lambda name=name: calls.append(("prepare", name)) or name, lambda arg: calls.append(("run", arg)),
                    2) for name in "abc"}
    times = common.interleaved(cases, 3, rotate=True, limits={"b": 1})
    assert calls[0::2] == [("prepare", name) for name in "abcbcacaac"]
    assert calls[1::2] == [("run", name) for name in "abcbcacaac"]
    assert set(times) == {"cpu", "kernel", "thread", "wall"}
    for clock in times.values():
        assert {name: len(values) for name, values in clock.items()} == {"a": 3, "b": 1, "c": 3}


def test_interleaved_times_the_run_alone_per_unit_on_each_clock(monkeypatch):
    """A case whose ``prepare`` sleeps 200 ms and whose ``run`` sleeps 50 ms over 10 units takes about 5 ms of wall
    time per unit: the time is divided by the units and leaves ``prepare`` out (with it: at least 25 ms per unit,
    without the division: at least 50 ms). A sleep uses no CPU, so the process, kernel and thread clocks stay far
    below the wall clock. The bounds are wide: a sleep on a loaded machine may oversleep (here by up to 150 ms),
    never undersleep."""
    common = load_script("_common", monkeypatch)
    cases = {"sleeper": (lambda: time.sleep(0.2), lambda _: time.sleep(0.05), 10)}
    times = common.interleaved(cases, 2, rotate=False)
    for wall_ms in times["wall"]["sleeper"]:
        assert 5.0 <= wall_ms < 20.0
    for clock in ("cpu", "kernel", "thread"):
        assert len(times[clock]["sleeper"]) == 2 and max(times[clock]["sleeper"]) < 2.5, clock


def test_round_ratio_is_the_median_of_the_ratios_within_each_round_with_their_range(monkeypatch):
    """Rounds of 10/5, 20/5 and 40/40 have the ratios 2, 4 and 1: median 2, range (1, 4). The ratio of the medians
    (20 / 5 = 4), an inverted ratio (0.5) or a range given as (max, min) all differ."""
    assert load_script("_common", monkeypatch).round_ratio([10, 20, 40], [5, 5, 40]) == (2.0, (1.0, 4.0))


# a yaw bucket that none of the few faces fitted one by one falls in prints its mean as nan
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_bench_fit_divides_each_case_by_its_faces_and_takes_the_speed_ups_within_rounds(monkeypatch):
    """bench_fit's timing of one model (12 faces, 4 fitted one by one) in this process: the real cases run once
    (their fits are scored), then made-up round times stand in for the measured ones. face3d and ours single are
    divided by the faces fitted one by one, the batches by all faces; the order rotates; each case's ``_ms`` and
    ``_cpu_ms`` are the wall and process-CPU medians, and ``<case>_x`` / ``<case>_cpu_x`` the median over the rounds
    of face3d's time over the case's within the round (wall / CPU clock), with their (min, max) as ranges."""
    bench_fit = load_script("bench_fit", monkeypatch)
    units, made_up, rotated = {}, {}, []
    real_interleaved = bench_fit.interleaved

    def run_once_then_made_up_rounds(cases, repeats, rotate, warmup=1, limits=None):
        real_interleaved(cases, 1, rotate, warmup=0)
        units.update({name: case_units for name, (_, _, case_units) in cases.items()})
        rotated.append(rotate)
        made_up.update(crafted_times(cases))
        return made_up

    monkeypatch.setattr(bench_fit, "interleaved", run_once_then_made_up_rounds)
    summary = bench_fit.run(bench_fit.MorphableModel(), "default model", 12, 4, 3, np.random.default_rng(0),
                            contour_table=False)
    assert units == {"face3d": 4, "single": 4, "batch": 12, "batch_forced": 12} and rotated == [True]
    assert 1 <= summary["iterations_mean"] <= 4
    wall, cpu = made_up["wall"], made_up["cpu"]
    for case in ("face3d", "single", "batch", "batch_forced"):
        assert summary[f"{case}_ms"] == statistics.median(wall[case])
        assert summary[f"{case}_cpu_ms"] == statistics.median(cpu[case])
    for case in ("single", "batch", "batch_forced"):
        for ratio, clock in ((f"{case}_x", wall), (f"{case}_cpu_x", cpu)):
            within = [a / b for a, b in zip(clock["face3d"], clock[case])]
            assert summary[ratio] == statistics.median(within)
            assert summary[f"{ratio}_range"] == [min(within), max(within)]


SYSTEM_AND_USER_TIME_RUNS = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from _common import interleaved

buffer = bytearray(1 << 20)


def reads_of_dev_zero(_):
    end = time.process_time() + 0.04
    with open("/dev/zero", "rb", buffering=0) as zeros:
        while time.process_time() < end:
            zeros.readinto(buffer)


def python_loop(_):
    end, total = time.process_time() + 0.04, 0
    while time.process_time() < end:
        for i in range(1000):
            total += i


sums = {}
for name, run in (("system calls", reads_of_dev_zero), ("python", python_loop)):
    times = interleaved({name: (lambda: None, run, 1)}, 5, rotate=False)
    sums[name] = {clock: sum(times[clock][name]) for clock in ("kernel", "cpu")}
print(json.dumps(sums))
"""


def test_interleaved_kernel_clock_is_the_system_time_and_the_cpu_clock_holds_both():
    """The ``kernel`` clock is the process's system time: runs spent in reads of /dev/zero (the kernel clears the
    buffer, nearly all of it system time) show most of their CPU time there, pure-Python loops (no system call but
    the process-clock reads that end them) almost none. Each run lasts 40 ms of process CPU time, so the checks are
    about which clock is read, not about speed. The kernel splits a process's CPU time into user and system time by
    sampling at its ticks and never lets either go back, so a process with a long history (this one, after
    TensorFlow) may report a run's system time as user time until its split catches up: the runs are made in a
    fresh process, and the sums over 5 consecutive runs of one case are compared, with room for a few ticks."""
    result = subprocess.run([sys.executable, "-c", SYSTEM_AND_USER_TIME_RUNS, str(REPO / "bench")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    sums = json.loads(result.stdout)
    assert sums["system calls"]["kernel"] > 0.5 * sums["system calls"]["cpu"], sums
    assert sums["python"]["kernel"] < 0.3 * sums["python"]["cpu"], sums


def test_bench_infer_runtime_figures_take_overhead_and_post_share_against_the_bare_network_within_rounds(
        monkeypatch):
    """Two rounds of bare 8 and 10 ms, full 10 and 15 ms, post-processing 1 and 2.5 ms: the full path is 1.25 and
    1.5 times the bare network (median 1.375: overhead 37.5 %), the post-processing 0.125 and 0.25 of it (median
    0.1875: 18.75 %). Medians: 9, 12.5, 1.75 ms; fastest: 8 and 10 ms (overhead 25 %). An overhead taken as bare
    over full, a post share over the full path or a ratio of the medians (12.5 / 9) all differ. Every figure is a
    binary fraction or the same division as the script's, so the comparison is exact."""
    bench_infer = load_script("bench_infer", monkeypatch)
    figures = bench_infer.runtime_figures({"bare": [8.0, 10.0], "full": [10.0, 15.0], "post": [1.0, 2.5]})
    assert figures == {"bare_ms": 9.0, "full_ms": 12.5, "post_ms": 1.75, "bare_images_per_s": 1e3 / 9.0,
                       "full_images_per_s": 80.0, "overhead_percent": 37.5, "post_percent": 18.75,
                       "bare_min_ms": 8.0, "full_min_ms": 10.0, "overhead_min_percent": 25.0}


def test_bench_infer_reports_each_runtime_from_its_own_rounds_and_onnxruntime_over_tensorflow(monkeypatch, capsys):
    """``bench_infer`` in this process with stand-ins for the network, its export and the runtimes, and made-up
    round times in place of the measured ones: each runtime's figures come from its own three calls' rounds, and
    ``onnxruntime_over_tensorflow`` is the median over the rounds of TensorFlow's full-path time over ONNX
    Runtime's (the speed-up of ONNX Runtime: above 1 when it is faster)."""
    import face3d.prnet.export
    import face3d.prnet.inference
    import face3d.prnet.model
    import face3d.prnet.predictor

    bench_infer = load_script("bench_infer", monkeypatch)
    made_up = {}

    def made_up_rounds(cases, repeats, rotate, warmup=1):
        made_up.update(crafted_times(cases))
        return made_up

    monkeypatch.setattr(face3d.prnet.model, "build_resfcn256", lambda size, width: SimpleNamespace(
        count_params=lambda: 1234))
    monkeypatch.setattr(face3d.prnet.export, "export_model", lambda *args, **kwargs: None)
    monkeypatch.setattr(face3d.prnet.predictor, "KerasPredictor", lambda model: "tensorflow")
    monkeypatch.setattr(face3d.prnet.predictor, "OnnxPredictor", lambda path, threads: "onnxruntime")
    monkeypatch.setattr(face3d.prnet.inference, "PRN", lambda predictor: predictor)
    monkeypatch.setattr(bench_infer, "runtime_calls", lambda prn, image: {
        kind: (lambda: None) for kind in ("bare", "full", "post")})
    monkeypatch.setattr(bench_infer, "interleaved", made_up_rounds)
    assert bench_infer.main(["--repeats", "3"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])

    wall = made_up["wall"]
    for runtime in ("tensorflow", "onnxruntime"):
        own_rounds = {kind: wall[f"{runtime} {kind}"] for kind in ("bare", "full", "post")}
        assert summary[runtime] == bench_infer.rounded(bench_infer.runtime_figures(own_rounds))
    within = [tf / ort for tf, ort in zip(wall["tensorflow full"], wall["onnxruntime full"])]
    assert summary["onnxruntime_over_tensorflow"] == bench_infer.rounded(statistics.median(within))
    assert summary["params"] == 1234


def test_bench_export_reports_each_runtimes_speed_ups_over_keras_and_images_per_second(monkeypatch, capsys):
    """``bench_export --batch 4`` in this process with stand-ins for the network, its export and the runtimes, and
    made-up median times: Keras 12 ms at batch 1 and 100 ms at batch 4, the frozen .pb 8 and 50 ms, ONNX Runtime 6
    and 40 ms. Each speed-up over Keras is Keras's time over the runtime's at the same batch (.pb: 1.5 and 2,
    ONNX Runtime: 2 and 2.5) and the images per second count the batch's 4 images (.pb: 80). A speed-up inverted,
    a batch-4 speed-up against Keras's batch-1 time, or one image per batch all differ. Files timed at batch 1 only
    (the TFLite ones) have no runtime row."""
    import face3d.prnet.export
    import face3d.prnet.model
    import face3d.prnet.predictor

    bench_export = load_script("bench_export", monkeypatch)
    made_up_ms = {"keras": {1: 12.0, 4: 100.0}, "frozen .pb": {1: 8.0, 4: 50.0}, "onnxruntime": {1: 6.0, 4: 40.0},
                  "prnet.tflite": {1: 5.0}, "prnet_fp16.tflite": {1: 5.5}, "prnet_int8.tflite": {1: 4.0},
                  "prnet_int8.onnx": {1: 3.0}}
    files = {name: {"size_mb": 1.0, "max_abs_diff": 0.0, "keypoint_shift_px": 0.0, "nme_vs_float32": None}
             for name in ("prnet.pb", "prnet.onnx", "prnet.tflite", "prnet_fp16.tflite", "prnet_int8.tflite",
                          "prnet_int8.onnx")}

    def made_up_medians(functions, images, repeats):
        return {name: made_up_ms[name][len(images)] for name in functions}

    monkeypatch.setattr(face3d.prnet.model, "build_resfcn256", lambda input_size, width: SimpleNamespace(
        inputs=[SimpleNamespace(shape=(None, input_size, input_size, 3))]))
    monkeypatch.setattr(face3d.prnet.export, "reference_images", lambda size, count: [None] * count)
    monkeypatch.setattr(face3d.prnet.export, "export_model", lambda *args, **kwargs: SimpleNamespace(files=files))
    monkeypatch.setattr(face3d.prnet.predictor, "load_predictor", lambda *args, **kwargs: SimpleNamespace(
        predict=None))
    monkeypatch.setattr(bench_export, "_median_ms", made_up_medians)
    assert bench_export.main(["--batch", "4"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])

    assert summary["batch"] == 4
    assert summary["runtimes"] == {
        "keras": {"batch1_ms": 12.0, "batch1_x_keras": 1.0, "batch_ms": 100.0, "batch_images_per_s": 40.0,
                  "batch_x_keras": 1.0},
        "frozen .pb": {"batch1_ms": 8.0, "batch1_x_keras": 1.5, "batch_ms": 50.0, "batch_images_per_s": 80.0,
                       "batch_x_keras": 2.0},
        "onnxruntime": {"batch1_ms": 6.0, "batch1_x_keras": 2.0, "batch_ms": 40.0, "batch_images_per_s": 100.0,
                        "batch_x_keras": 2.5}}


def test_bench_input_times_the_steady_pipeline_and_the_steps_after_warm_up(monkeypatch, tmp_path, capsys):
    """``bench_input`` on 4 samples in batches of 2 (2 batches per epoch), 3 batches and 3 steps timed, in this
    process with a made-up clock: each epoch's first batch takes 100 s (the pipeline's start-up), every other 0.25 s;
    the training step's warm-up takes 50 s, every later step 0.5 s. The pipeline's rate leaves each epoch's first
    batch out of both the count and the time (3 batches of 2 in 0.75 s: 8 samples/s; counted but not timed: 16),
    the step's leaves the warm-up out (6 samples in 1.5 s: 4 samples/s), and ``pipeline_over_step`` is the first
    over the second (2)."""
    import face3d.prnet.model

    bench_input = load_script("bench_input", monkeypatch)
    clock = SimpleNamespace(now=0.0)

    def batches_taking_made_up_times(samples, uv, batch_size, augment, seed=0, epoch=0):
        for index in range(len(samples) // batch_size):
            clock.now += 100.0 if index == 0 else 0.25
            yield np.zeros((batch_size, 1)), None, None

    def train_on_batch(images, targets, sample_weight):
        clock.now += 50.0 if model.steps == 0 else 0.5
        model.steps += 1

    model = SimpleNamespace(steps=0, compile=lambda **options: None, train_on_batch=train_on_batch,
                            count_params=lambda: 1234)
    monkeypatch.setattr(bench_input, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    monkeypatch.setattr(bench_input, "make_dataset", batches_taking_made_up_times)
    monkeypatch.setattr(bench_input, "load_uv_data", lambda folder: None)
    monkeypatch.setattr(face3d.prnet.model, "build_resfcn256", lambda resolution, width: model)
    label = _prnet_data.make_dataset(tmp_path, 4, resolution=32)
    bench_input.main(["--train-list", str(label), "--batch-size", "2", "--batches", "3", "--steps", "3"])
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])

    assert model.steps == 1 + 3
    assert summary == {"samples": 4, "resolution": 32, "batch_size": 2, "width": 16, "params": 1234,
                       "pipeline_samples_per_s": 8.0, "step_samples_per_s": 4.0, "pipeline_over_step": 2.0}
