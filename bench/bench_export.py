"""Latency (batch 1) and throughput (batch 16) of the Keras model, the exported frozen .pb and ONNX Runtime; size,
batch-1 latency and accuracy of the TFLite float32 / float16 / int8 and int8 ONNX files.

    python bench/bench_export.py [--width 16] [--size 256] [--batch 16] [--repeats 10] [--threads 0]
                                 [--model MODEL_OR_PREFIX] [--calibration DIR]

Builds the network with random weights (timings do not depend on them; ``--model`` takes a trained model or
PRNet's checkpoint instead), exports it folded at batch 1 with every format (int8 calibrated on ``--calibration``
or 8 photos) and at ``--batch`` (.pb and .onnx), each checked by the exporter, then times the runtimes in the same
process through ``predictor.load_predictor`` (the loader inference uses): median of ``--repeats`` interleaved
calls after two warm-up calls. Prints the runtime table with the ratios against Keras, then per file its size,
batch-1 latency, max |map - float32 map|, keypoint shift and NME against the float32 model on the calibration
images (``export.compare_files``; NME needs a trained model: random weights give a map without a face).

The last line is JSON: ``width``, ``input_size``, ``batch`` (the large one), ``load_average``; per runtime
(``keras``, ``frozen .pb``, ``onnxruntime``) under ``runtimes``: ``batch1_ms`` and ``batch_ms`` (medians),
``batch_images_per_s`` and the speed-ups over Keras ``batch1_x_keras`` and ``batch_x_keras``; per exported file
under ``files``: ``size_mb``, ``x_smaller`` (than the float32 file of its format), ``batch1_ms``, ``max_abs_diff``,
``keypoint_shift_px`` and ``nme_vs_float32`` (null without a face).
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import description, interleaved, rounded  # noqa: E402


def _median_ms(functions, images, repeats):
    """Median wall-clock ms per call of each function on ``images`` over ``repeats`` rounds after two untimed ones
    (``interleaved``: one call of each per round, so that load from other processes on the machine falls on all
    runtimes alike)."""
    cases = {name: (lambda: images, function, 1) for name, function in functions.items()}
    times = interleaved(cases, repeats, rotate=False, warmup=2)["wall"]
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv=None):
    """Run the benchmark; returns 0."""
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--width", type=int, default=16, help="base width (16 = the paper)")
    parser.add_argument("--size", type=int, default=256, help="input side")
    parser.add_argument("--batch", type=int, default=16, help="batch of the throughput test")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls at batch 1 (a third of it, at least 2, "
                                                                "at the large batch)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: all)")
    parser.add_argument("--model", default=None, help="a trained model (.keras or PRNet's checkpoint) instead of "
                                                      "random weights")
    parser.add_argument("--calibration", default=None, help="int8 calibration and comparison images (face crops or "
                                                            "an AFLW2000-3D folder; default: 8 photos)")
    args = parser.parse_args(argv)

    import keras

    from face3d.prnet.export import export_model, reference_images
    from face3d.prnet.model import build_resfcn256
    from face3d.prnet.predictor import load_keras_model, load_predictor

    keras.utils.set_random_seed(0)
    model = build_resfcn256(input_size=args.size, width=args.width) if args.model is None else \
        load_keras_model(args.model)
    args.size = int(model.inputs[0].shape[1])
    calibration = reference_images(args.size, 8) if args.calibration is None else args.calibration
    options = {} if args.threads is None else {"threads": args.threads}
    rows, files = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for batch, repeats in ((1, args.repeats), (args.batch, max(2, args.repeats // 3))):
            start = time.perf_counter()
            folder = Path(scratch) / f"b{batch}"
            result = export_model(model, folder, batch_size=batch, onnx=True, run_atc=False, tflite=batch == 1,
                                  int8=batch == 1, calibration=calibration if batch == 1 else None)
            export_s = time.perf_counter() - start
            images = reference_images(args.size, batch)
            runners = {"keras": load_predictor(model), "frozen .pb": load_predictor(folder / "prnet.pb"),
                       "onnxruntime": load_predictor(folder / "prnet.onnx", **options)}
            if batch == 1:
                files = result.files
                runners.update({name: load_predictor(folder / name, **({} if name.endswith(".tflite") else options))
                                for name in ("prnet.tflite", "prnet_fp16.tflite", "prnet_int8.tflite",
                                             "prnet_int8.onnx")})
            medians = _median_ms({name: runner.predict for name, runner in runners.items()}, images, repeats)
            for name, value in medians.items():
                rows.setdefault(name, {})[batch] = value
            print(f"batch {batch}: export ({', '.join(result.files)}; with checks) {export_s:.1f} s", flush=True)
    big = args.batch
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    weights = f"width {args.width}, random weights" if args.model is None else args.model
    print(f"\nresfcn256 {weights}, input {args.size}; median ms per call "
          f"(interleaved; load average {load:.1f} on {os.cpu_count()} cores)")
    print(f"{'runtime':<12} {'batch 1 ms':>11} {'x keras':>8} {f'batch {big} ms':>13} {'images/s':>9} {'x keras':>8}")
    base1, base16 = rows["keras"][1], rows["keras"][big]
    summary = {"width": args.width, "input_size": args.size, "batch": big, "load_average": load, "runtimes": {},
               "files": {}}
    for name, values in rows.items():
        if big in values:
            print(f"{name:<12} {values[1]:>11.1f} {base1 / values[1]:>8.2f} {values[big]:>13.1f} "
                  f"{1000.0 * big / values[big]:>9.2f} {base16 / values[big]:>8.2f}")
            summary["runtimes"][name] = {"batch1_ms": values[1], "batch1_x_keras": base1 / values[1],
                                         "batch_ms": values[big], "batch_images_per_s": 1000.0 * big / values[big],
                                         "batch_x_keras": base16 / values[big]}
    count = len(calibration) if args.calibration is None else f"the images of {args.calibration}"
    print(f"\nexported files, batch 1; accuracy against the float32 Keras model on {count} images")
    print(f"{'file':<18} {'MB':>7} {'x smaller':>9} {'batch 1 ms':>11} {'max |diff|':>11} {'kpt shift px':>13} "
          f"{'NME vs fp32':>12}")
    reference = {".tflite": files["prnet.tflite"]["size_mb"], ".onnx": files["prnet.onnx"]["size_mb"],
                 ".pb": files["prnet.pb"]["size_mb"]}
    for name, row in files.items():
        nme = "n/a (no face)" if row["nme_vs_float32"] is None else f"{100 * row['nme_vs_float32']:.3f} %"
        ms = rows["frozen .pb" if name == "prnet.pb" else "onnxruntime" if name == "prnet.onnx" else name][1]
        print(f"{name:<18} {row['size_mb']:>7.2f} {reference[Path(name).suffix] / row['size_mb']:>9.2f} "
              f"{ms:>11.1f} {row['max_abs_diff']:>11.2e} {row['keypoint_shift_px']:>13.3f} {nme:>12}")
        summary["files"][name] = {"size_mb": row["size_mb"], "x_smaller": reference[Path(name).suffix] / row["size_mb"],
                                  "batch1_ms": ms, **{key: row[key] for key in ("max_abs_diff", "keypoint_shift_px",
                                                                                "nme_vs_float32")}}
    print(json.dumps(rounded(summary)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
