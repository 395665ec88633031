#!/usr/bin/env python
"""Inference speed: the whole path (crop, network, restore, landmarks) against the bare network, with TensorFlow
(Keras model in a ``tf.function``) and ONNX Runtime, batch 1, same run.

The network is the paper's resfcn256 (width 16, 256 x 256) with untrained weights (speed does not depend on them),
exported to ONNX with ``face3d.prnet.export``. The image is ``skimage.data.astronaut()`` (512 x 512) with its face
box. Calls alternate between the bare network and the full path so that both see the same machine load; each
figure is the median over ``--repeats`` calls after ``--warmup`` calls. Overhead = full / bare - 1 (target: at
most 15 %), from the medians and from the fastest calls. On a loaded machine that difference of two medians is
noisy, so the post-processing (crop + restore + landmarks without the network) is also timed alone and reported
as a share of the bare network ("post %").

The last line is JSON (``--json FILE`` writes it too): ``image``, ``width``, ``input_size``, ``batch``, ``params``;
per runtime (``tensorflow``, ``onnxruntime``) ``bare_ms``, ``full_ms``, ``post_ms`` (medians), ``bare_min_ms``,
``full_min_ms``, ``bare_images_per_s``, ``full_images_per_s``, ``overhead_percent``, ``overhead_min_percent`` and
``post_percent``; and ``onnxruntime_over_tensorflow``, the ratio of their full-path speeds.

    python bench/bench_infer.py [--repeats 20] [--warmup 3] [--width 16] [--size 256] [--threads N] [--json FILE]
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import description, rounded  # noqa: E402

ASTRONAUT_BOX = (175.0, 76.0, 265.0, 166.0)  # dlib's HOG detection of the face


def _time_pair(bare, full, repeats, warmup):
    """Seconds of ``bare()`` and ``full()`` over ``repeats`` alternate calls: {"bare": [...], "full": [...]}."""
    for _ in range(warmup):
        bare()
        full()
    times = {"bare": [], "full": []}
    for _ in range(repeats):
        for name, call in (("bare", bare), ("full", full)):
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times


def bench_runtime(prn, image, repeats, warmup):
    """Seconds per image (median) of the bare network and of crop + network + restore + landmarks, and of the
    post-processing alone (crop + restore + landmarks, without the network)."""
    crop = prn.crop(image, box=ASTRONAUT_BOX)
    batch = crop.image[None]

    def bare():
        prn.predictor.predict(batch)

    def full():
        prn.get_landmarks(prn.process(image, box=ASTRONAUT_BOX))

    output = prn.predictor.predict(batch)[0]

    def post():
        from face3d.prnet.face_crop import restore_map
        c = prn.crop(image, box=ASTRONAUT_BOX)
        prn.get_landmarks(restore_map(output, c.matrix, c.resolution))

    times = _time_pair(bare, full, repeats, warmup)
    t_bare, t_full = float(np.median(times["bare"])), float(np.median(times["full"]))
    t_post = float(np.median([_timed(post) for _ in range(repeats)]))
    return {"bare_ms": 1e3 * t_bare, "full_ms": 1e3 * t_full, "post_ms": 1e3 * t_post,
            "bare_images_per_s": 1.0 / t_bare, "full_images_per_s": 1.0 / t_full,
            "overhead_percent": 100.0 * (t_full / t_bare - 1.0), "post_percent": 100.0 * t_post / t_bare,
            "bare_min_ms": 1e3 * min(times["bare"]), "full_min_ms": 1e3 * min(times["full"]),
            "overhead_min_percent": 100.0 * (min(times["full"]) / min(times["bare"]) - 1.0)}


def _timed(call):
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=description(__doc__))
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: all cores)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args(argv)

    import keras
    from skimage import data

    from face3d.prnet.export import export_model
    from face3d.prnet.inference import PRN
    from face3d.prnet.model import build_resfcn256
    from face3d.prnet.predictor import KerasPredictor, OnnxPredictor

    keras.utils.set_random_seed(0)
    model = build_resfcn256(args.size, args.width)
    image = data.astronaut()
    results = {"image": list(image.shape), "width": args.width, "input_size": args.size, "batch": 1,
               "params": int(model.count_params())}
    with tempfile.TemporaryDirectory() as folder:
        export_model(model, folder, batch_size=1, onnx=True, run_atc=False)
        runtimes = {"tensorflow": KerasPredictor(model),
                    "onnxruntime": OnnxPredictor(Path(folder) / "prnet.onnx", threads=args.threads)}
        for name, predictor in runtimes.items():
            results[name] = bench_runtime(PRN(predictor), image, args.repeats, args.warmup)
    print(f"resfcn256 width {args.width}, {args.size} x {args.size}, batch 1, image {image.shape[1]}x{image.shape[0]}"
          f", median of {args.repeats} calls")
    print(f"{'runtime':<12} {'bare ms':>9} {'full ms':>9} {'post ms':>8} {'bare img/s':>11} {'full img/s':>11} "
          f"{'overhead':>9} {'post %':>7} {'min bare':>9} {'min full':>9} {'overhead(min)':>14}")
    for name in ("tensorflow", "onnxruntime"):
        r = results[name]
        print(f"{name:<12} {r['bare_ms']:9.1f} {r['full_ms']:9.1f} {r['post_ms']:8.2f} {r['bare_images_per_s']:11.2f} "
              f"{r['full_images_per_s']:11.2f} {r['overhead_percent']:8.1f}% {r['post_percent']:6.2f}% "
              f"{r['bare_min_ms']:9.1f} {r['full_min_ms']:9.1f} {r['overhead_min_percent']:13.1f}%")
    results["onnxruntime_over_tensorflow"] = (results["onnxruntime"]["full_images_per_s"]
                                              / results["tensorflow"]["full_images_per_s"])
    print(f"ONNX Runtime / TensorFlow speed (full path): {results['onnxruntime_over_tensorflow']:.2f}x; "
          "target: overhead <= 15 %")
    summary = rounded(results)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
