#!/usr/bin/env python
"""Inference speed: the whole path (crop, network, restore, landmarks) against the bare network, with TensorFlow
(Keras model in a ``tf.function``) and ONNX Runtime, batch 1, same run.

The network is the paper's resfcn256 (width 16, 256 x 256) with untrained weights (speed does not depend on them),
exported to ONNX with ``face3d.prnet.export``. The image is ``skimage.data.astronaut()`` (512 x 512) with its face
box. Six calls are timed by wall clock in ``--repeats`` interleaved rounds after ``--warmup`` untimed ones, each
round every call once, starting one call later each round (so that a change in the machine's load hits them all):
per runtime the bare network, the full path, and the post-processing alone (crop + restore + landmarks without
the network). Times are medians over the rounds; overhead = full / bare - 1 (target: at most 15 %), "post %" =
post / bare and the runtimes' full-path speed ratio are medians of per-round ratios; the overhead from the fastest
calls is given too.

The last line is JSON (``--json FILE`` writes it too): ``image``, ``width``, ``input_size``, ``batch``, ``params``;
per runtime (``tensorflow``, ``onnxruntime``) ``bare_ms``, ``full_ms``, ``post_ms`` (medians), ``bare_min_ms``,
``full_min_ms``, ``bare_images_per_s``, ``full_images_per_s``, ``overhead_percent``, ``overhead_min_percent`` and
``post_percent``; and ``onnxruntime_over_tensorflow``, the ratio of their full-path speeds.

    python bench/bench_infer.py [--repeats 20] [--warmup 3] [--width 16] [--size 256] [--threads N] [--json FILE]
"""
import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import description, interleaved, round_ratio, rounded  # noqa: E402

ASTRONAUT_BOX = (175.0, 76.0, 265.0, 166.0)  # dlib's HOG detection of the face


def runtime_calls(prn, image):
    """The three timed calls of one runtime's ``PRN``: the bare network on the crop, the full path (crop, network,
    restore, landmarks) and the post-processing alone (crop, restore, landmarks of a map computed beforehand)."""
    from face3d.prnet.face_crop import restore_map

    batch = prn.crop(image, box=ASTRONAUT_BOX).image[None]
    output = prn.predictor.predict(batch)[0]

    def post():
        crop = prn.crop(image, box=ASTRONAUT_BOX)
        prn.get_landmarks(restore_map(output, crop.matrix, crop.resolution))
    return {"bare": lambda: prn.predictor.predict(batch),
            "full": lambda: prn.get_landmarks(prn.process(image, box=ASTRONAUT_BOX)), "post": post}


def runtime_figures(ms):
    """One runtime's figures from its calls' wall times {"bare" | "full" | "post": [ms per round]}: medians, fastest
    calls, and the overhead and post-processing share as the median of their per-round ratios."""
    overhead, _ = round_ratio(ms["full"], ms["bare"])
    post_share, _ = round_ratio(ms["post"], ms["bare"])
    bare, full = statistics.median(ms["bare"]), statistics.median(ms["full"])
    return {"bare_ms": bare, "full_ms": full, "post_ms": statistics.median(ms["post"]),
            "bare_images_per_s": 1e3 / bare, "full_images_per_s": 1e3 / full,
            "overhead_percent": 100.0 * (overhead - 1.0), "post_percent": 100.0 * post_share,
            "bare_min_ms": min(ms["bare"]), "full_min_ms": min(ms["full"]),
            "overhead_min_percent": 100.0 * (min(ms["full"]) / min(ms["bare"]) - 1.0)}


def main(argv=None):
    p = argparse.ArgumentParser(description=description(__doc__))
    p.add_argument("--repeats", type=int, default=20, help="timed rounds (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds first (default 3)")
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
        cases = {f"{name} {kind}": ((lambda: None), (lambda _, call=call: call()), 1)
                 for name, predictor in runtimes.items()
                 for kind, call in runtime_calls(PRN(predictor), image).items()}
        wall = interleaved(cases, args.repeats, rotate=True, warmup=args.warmup)["wall"]
    for name in runtimes:
        results[name] = runtime_figures({kind: wall[f"{name} {kind}"] for kind in ("bare", "full", "post")})
    speedup, _ = round_ratio(wall["tensorflow full"], wall["onnxruntime full"])
    print(f"resfcn256 width {args.width}, {args.size} x {args.size}, batch 1, image {image.shape[1]}x{image.shape[0]}"
          f", median of {args.repeats} calls")
    print(f"{'runtime':<12} {'bare ms':>9} {'full ms':>9} {'post ms':>8} {'bare img/s':>11} {'full img/s':>11} "
          f"{'overhead':>9} {'post %':>7} {'min bare':>9} {'min full':>9} {'overhead(min)':>14}")
    for name in ("tensorflow", "onnxruntime"):
        r = results[name]
        print(f"{name:<12} {r['bare_ms']:9.1f} {r['full_ms']:9.1f} {r['post_ms']:8.2f} {r['bare_images_per_s']:11.2f} "
              f"{r['full_images_per_s']:11.2f} {r['overhead_percent']:8.1f}% {r['post_percent']:6.2f}% "
              f"{r['bare_min_ms']:9.1f} {r['full_min_ms']:9.1f} {r['overhead_min_percent']:13.1f}%")
    results["onnxruntime_over_tensorflow"] = speedup
    print(f"ONNX Runtime / TensorFlow speed (full path): {results['onnxruntime_over_tensorflow']:.2f}x; "
          "target: overhead <= 15 %")
    summary = rounded(results)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
