"""Latency (batch 1) and throughput (batch 16) of the Keras model, the exported frozen .pb and ONNX Runtime.

    python bench/bench_export.py [--width 16] [--size 256] [--batch 16] [--repeats 10] [--threads 0]

Builds the network with random weights (timings do not depend on them), exports it folded at batch 1 and at
``--batch`` (.pb and .onnx, each checked against Keras by the exporter), then times the three runtimes in the same
process through ``predictor.load_predictor`` (the loader inference uses): median of ``--repeats`` interleaved
calls after two warm-up calls. Prints a table and the ratios against Keras.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _median_ms(functions, images, repeats):
    """Median ms per call of each function; the calls are interleaved (one of each per round) so that load from
    other processes on the machine falls on all runtimes alike."""
    for function in functions.values():
        for _ in range(2):
            function(images)
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function(images)
            times[name].append((time.perf_counter() - start) * 1000.0)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv=None):
    """Run the benchmark; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=16, help="base width (16 = the paper)")
    parser.add_argument("--size", type=int, default=256, help="input side")
    parser.add_argument("--batch", type=int, default=16, help="batch of the throughput test")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls at batch 1 (a third of it, at least 2, "
                                                                "at the large batch)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: all)")
    args = parser.parse_args(argv)

    import keras

    from face3d.prnet.export import export_model, reference_images
    from face3d.prnet.model import build_resfcn256
    from face3d.prnet.predictor import load_predictor

    keras.utils.set_random_seed(0)
    model = build_resfcn256(input_size=args.size, width=args.width)
    options = {} if args.threads is None else {"threads": args.threads}
    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        for batch, repeats in ((1, args.repeats), (args.batch, max(2, args.repeats // 3))):
            start = time.perf_counter()
            export_model(model, Path(scratch) / f"b{batch}", batch_size=batch, onnx=True, run_atc=False)
            export_s = time.perf_counter() - start
            images = reference_images(args.size, batch)
            runners = {"keras": load_predictor(model),
                       "frozen .pb": load_predictor(Path(scratch) / f"b{batch}" / "prnet.pb"),
                       "onnxruntime": load_predictor(Path(scratch) / f"b{batch}" / "prnet.onnx", **options)}
            medians = _median_ms({name: runner.predict for name, runner in runners.items()}, images, repeats)
            for name, value in medians.items():
                rows.setdefault(name, {})[batch] = value
            print(f"batch {batch}: export (both formats, with checks) {export_s:.1f} s", flush=True)
    big = args.batch
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nresfcn256 width {args.width}, input {args.size}, random weights; median ms per call "
          f"(interleaved; load average {load:.1f} on {os.cpu_count()} cores)")
    print(f"{'runtime':<12} {'batch 1 ms':>11} {'x keras':>8} {f'batch {big} ms':>13} {'images/s':>9} {'x keras':>8}")
    base1, base16 = rows["keras"][1], rows["keras"][big]
    for name, values in rows.items():
        print(f"{name:<12} {values[1]:>11.1f} {base1 / values[1]:>8.2f} {values[big]:>13.1f} "
              f"{1000.0 * big / values[big]:>9.2f} {base16 / values[big]:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
