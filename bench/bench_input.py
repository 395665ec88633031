#!/usr/bin/env python
"""Input pipeline vs training step: augmented samples/s delivered by ``face3d.prnet.data.make_dataset`` against the
samples/s one training step of resfcn256 consumes (default: the paper's width 16, 256 x 256, batch 16), same run.

Data: ``--train-list`` (a generator output), or else a default set rendered by ``face3d.trainset``'s example
(``examples/9_generate_prnet_trainset.py``) into a temporary folder.

The last line is JSON: ``samples``, ``resolution``, ``batch_size``, ``width``, ``params`` (the model's),
``pipeline_samples_per_s`` and ``step_samples_per_s`` (the two rates) and ``pipeline_over_step`` (their ratio).

    python bench/bench_input.py [--train-list FILE] [--batches 30] [--steps 3] [--width 16] [--batch-size 16]
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import description, rounded  # noqa: E402

from face3d.prnet.data import AugmentConfig, check_samples, make_dataset  # noqa: E402
from face3d.resources import default_uv_data_dir  # noqa: E402
from face3d.trainset.pack import read_label_file  # noqa: E402
from face3d.trainset.uv_layout import load_uv_data  # noqa: E402


def _default_set(folder, count):
    subprocess.run([sys.executable, str(ROOT / "examples" / "9_generate_prnet_trainset.py"), "--output", str(folder),
                    "--synthetic-count", str(count), "--quiet"], check=True, cwd=ROOT)
    return Path(folder) / "trainDataLabel.txt"


def require_two_batches(count, batch_size, source, more_samples):
    """Exits with one line naming ``source`` unless an epoch of ``count`` samples makes at least 2 batches of
    ``batch_size`` (``make_dataset`` drops an incomplete last batch and ``bench_pipeline`` leaves out each epoch's
    first, so with fewer it would time nothing). ``more_samples``: how the user gets more samples."""
    batches = count // batch_size
    if batches < 2:
        smaller = f"--batch-size {count // 2} or less, or " if count >= 2 else ""
        raise SystemExit(f"{source}: {count} samples make {batches} batch(es) of {batch_size} per epoch; the pipeline "
                         f"is timed after each epoch's first batch, so it needs 2: pass {smaller}{more_samples}")


def bench_pipeline(samples, uv, batch_size, batches):
    """Steady-state samples/s of augmented batches over ``batches`` batches, epochs chained. Each epoch's first
    batch (pipeline construction and start-up, negligible in a real epoch of tens of thousands of samples) is
    excluded from both the count and the time, so an epoch must make 2 batches or more (``require_two_batches``)."""
    delivered, epoch, elapsed = 0, 0, 0.0
    while delivered < batches * batch_size:
        start = None
        for images, _, _ in make_dataset(samples, uv, batch_size=batch_size, augment=AugmentConfig(), seed=0,
                                         epoch=epoch):
            if start is None:
                start = time.perf_counter()
                continue
            delivered += int(images.shape[0])
            if delivered >= batches * batch_size:
                break
        elapsed += time.perf_counter() - start
        epoch += 1
    return delivered / elapsed


def bench_step(samples, uv, batch_size, width, steps):
    """Samples/s of ``model.train_on_batch`` at the given width (after one warm-up step)."""
    import keras

    from face3d.prnet.model import build_resfcn256
    model = build_resfcn256(samples.resolution, width)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mean_squared_error", jit_compile=False)
    images, targets, weights = next(iter(make_dataset(samples, uv, batch_size=batch_size, augment=AugmentConfig())))
    model.train_on_batch(images, targets, sample_weight=weights)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(images, targets, sample_weight=weights)
    return steps * batch_size / (time.perf_counter() - start), model.count_params()


def main(argv=None):
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--train-list", help="trainDataLabel.txt (default: render the default set)")
    parser.add_argument("--count", type=int, default=24, help="source samples of the default set (x9 with rotations)")
    parser.add_argument("--batches", type=int, default=30, help="batches timed through the pipeline")
    parser.add_argument("--steps", type=int, default=3, help="training steps timed")
    parser.add_argument("--width", type=int, default=16, help="model base width (16 = the paper)")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory() as tmp:
        label = Path(args.train_list) if args.train_list else _default_set(tmp, args.count)
        samples = check_samples(read_label_file(label))
        if args.train_list:
            require_two_batches(len(samples), args.batch_size, label,
                                f"a label file of {2 * args.batch_size} samples or more")
        else:  # each source sample of the default set gives several (its rotations)
            count = math.ceil(2 * args.batch_size * args.count / len(samples))
            require_two_batches(len(samples), args.batch_size, f"the default set of --count {args.count}",
                                f"--count {count} or more")
        uv_dir = label.resolve().parent / "uv-data"
        uv = load_uv_data(uv_dir if uv_dir.is_dir() else default_uv_data_dir())
        import tensorflow as tf
        gpus = len(tf.config.list_physical_devices("GPU"))
        print(f"{len(samples)} samples at {samples.resolution}x{samples.resolution}, batch {args.batch_size}, "
              f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, GPUs: {gpus}")
        pipeline = bench_pipeline(samples, uv, args.batch_size, args.batches)
        print(f"input pipeline (all augmentations): {pipeline:8.1f} samples/s")
        step, params = bench_step(samples, uv, args.batch_size, args.width, args.steps)
        print(f"training step (width {args.width}, {params:,} parameters): {step:8.2f} samples/s "
              f"({args.batch_size / step:.2f} s per batch of {args.batch_size})")
        print(f"pipeline / step: {pipeline / step:.1f}x ({'not ' if pipeline > step else ''}the bottleneck)")
        print(json.dumps(rounded({"samples": len(samples), "resolution": samples.resolution,
                                  "batch_size": args.batch_size, "width": args.width, "params": params,
                                  "pipeline_samples_per_s": pipeline, "step_samples_per_s": step,
                                  "pipeline_over_step": pipeline / step})))


if __name__ == "__main__":
    main()
