#!/usr/bin/env python
"""HTTP serving under load: ``face3d serve`` on loopback, 1 client then N concurrent clients, same server.

The server is started as a subprocess on 127.0.0.1 (a free port) with a dynamic-batch ONNX model: by default the
paper's resfcn256 (``--width 16 --size 256``, untrained weights: speed does not depend on them) built with Keras
and translated by ``face3d.prnet.export``, or ``--model PATH``. Each client posts ``skimage.data.astronaut()``
(512 x 512 PNG) with its face box to ``/v1/reconstruct`` in a loop, for ``--seconds`` per run and at most
``--max-requests`` requests (requests in progress at the deadline are finished and counted). Reported per run:
throughput (answers/s), latency p50/p99, errors, the server's batch sizes (from ``/metrics``), where the server's
time went (the answers' ``timing_ms``, averaged) and its resident memory (VmRSS, sampled every second, after a
warm-up with full batches and as many requests in flight as the largest run), the CPU seconds per answer of the
server and of the clients, and the cores the machine's other processes took meanwhile: throughput can be no more
than the cores left over divided by the CPU seconds per answer, printed as ``throughput_bound`` and, over the
first run's throughput, ``speedup_bound`` (batching raises the bound only where it makes an answer cheaper). The
clients run in this process and share the machine's cores with the server. The last line printed is the JSON
summary.

    python bench/bench_serve.py [--clients 1 32] [--seconds 20] [--width 16] [--size 256] [--max-batch 8]
                                [--max-delay-ms 5] [--threads 2] [--model-threads N] [--model PATH] [--json FILE]
"""
import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import description  # noqa: E402

ASTRONAUT_BOX = "175 76 265 166"  # dlib's HOG detection of the face
CLIENT_TIMEOUT_S = 300  # seconds a request may take, on both sides
SERVER_STEPS = ("decode_and_crop", "queue", "network", "postprocess", "total")  # the answers' timing_ms, averaged


def dynamic_batch_onnx(path, size, width):
    """Write an untrained resfcn256 (batch norms folded) as an ONNX model whose batch dimension is free ('N'), so
    the server can run any batch (``export_model`` fixes it for Ascend)."""
    import keras

    from face3d.prnet.export import build_onnx_model, fold_batch_norms, model_to_nodes
    from face3d.prnet.model import build_resfcn256

    keras.utils.set_random_seed(0)
    nodes, input_name, output_name = model_to_nodes(build_resfcn256(size, width))
    nodes, output_name = fold_batch_norms(nodes, output_name)
    Path(path).write_bytes(build_onnx_model(nodes, input_name, output_name, batch_size="N").SerializeToString())
    return Path(path)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """CPU seconds (user + system) a process has used, from /proc (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds():
    """CPU seconds every process on the machine has used (all cores, idle and I/O wait excluded), from /proc."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid):
    """Resident memory of a process (MiB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def start_server(model, args, log):
    port = free_port()
    command = [sys.executable, "-m", "face3d.serve", "--model", str(model), "--host", "127.0.0.1", "--port",
               str(port), "--max-batch", str(args.max_batch), "--max-delay-ms", str(args.max_delay_ms),
               "--threads", str(args.threads), "--max-in-flight", str(max(64, max(args.clients))),
               "--timeout-s", str(CLIENT_TIMEOUT_S)]  # a loaded 2-core machine queues N clients for N answers
    if args.model_threads:
        command += ["--model-threads", str(args.model_threads)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}"


def wait_ready(httpx, process, url, seconds=180):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")
        try:
            return httpx.get(f"{url}/health", timeout=5).json()
        except httpx.TransportError:
            time.sleep(0.5)
    raise RuntimeError(f"the server did not answer /health within {seconds} s")


async def load(httpx, url, png, clients, seconds, max_requests, pid):
    """``clients`` concurrent loops of POST /v1/reconstruct for ``seconds`` (at most ``max_requests`` in all).

    Returns:
        dict: latencies (s) and server timings (``timing_ms``) of the answers with status 200, statuses
        {status: count}, elapsed s, rss samples.
    """
    latencies, timings, statuses, rss = [], [], {}, []
    budget = [max_requests]
    deadline = time.perf_counter() + seconds

    async def client(http):
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            started = time.perf_counter()
            try:
                response = await http.post("/v1/reconstruct", files={"image": ("astronaut.png", png, "image/png")},
                                           data={"box": ASTRONAUT_BOX})
                status = response.status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200:
                latencies.append(time.perf_counter() - started)
                timings.append(response.json()["timing_ms"])

    async def sample_memory():
        while time.perf_counter() < deadline:
            rss.append(rss_mib(pid))
            await asyncio.sleep(1.0)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT_S, limits=limits) as http:
        cpu = (cpu_seconds(pid), time.process_time(), machine_busy_seconds())
        started = time.perf_counter()
        sampler = asyncio.ensure_future(sample_memory())
        await asyncio.gather(*[client(http) for _ in range(clients)])
        elapsed = time.perf_counter() - started
        sampler.cancel()
        server_cpu, client_cpu = cpu_seconds(pid) - cpu[0], time.process_time() - cpu[1]
        other_cpu = machine_busy_seconds() - cpu[2] - server_cpu - client_cpu
    rss.append(rss_mib(pid))
    return {"latencies": latencies, "timings": timings, "statuses": statuses, "elapsed": elapsed, "rss": rss,
            "cpu_s": {"server": server_cpu, "clients": client_cpu, "other_processes": max(0.0, other_cpu)}}


def batch_sizes(httpx, url):
    return {int(k): v for k, v in httpx.get(f"{url}/metrics", timeout=30).json()["batches"]["sizes"].items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=description(__doc__))
    p.add_argument("--clients", type=int, nargs="+", default=[1, 32], help="concurrent clients of each run")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each run")
    p.add_argument("--max-requests", type=int, default=20000, help="requests per run at most")
    p.add_argument("--warmup", type=int, default=32,
                   help="requests before the runs, as many at once as the largest run's clients")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--model", help="serve this model instead of building resfcn256")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--max-delay-ms", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=2, help="server's pre/post-processing threads")
    p.add_argument("--model-threads", type=int, help="the network's threads (default: the server's, all cores)")
    p.add_argument("--json", metavar="FILE", help="also write the summary here")
    args = p.parse_args(argv)
    if args.seconds > 120 or max(args.clients) > 256:
        p.error("keep the load bounded: --seconds <= 120 and at most 256 clients")

    import cv2
    import httpx
    from skimage import data

    png = cv2.imencode(".png", data.astronaut()[..., ::-1])[1].tobytes()
    with tempfile.TemporaryDirectory() as folder:
        model = Path(args.model) if args.model else dynamic_batch_onnx(Path(folder) / "prnet.onnx", args.size,
                                                                       args.width)
        with open(Path(folder) / "server.log", "wb") as log:
            process, url = start_server(model, args, log)
            try:
                health = wait_ready(httpx, process, url)
                # warm-up: full batches and the largest run's requests in flight at once, so the runtime's memory
                # arena and the buffers of the requests in flight have their working size before RSS is watched
                warmup = asyncio.run(load(httpx, url, png, max(args.clients), 1.0, args.warmup, process.pid))
                if set(warmup["statuses"]) != {200}:
                    raise RuntimeError(f"warm-up requests failed: {warmup['statuses']}")
                runs = []
                for clients in args.clients:
                    before = batch_sizes(httpx, url)
                    result = asyncio.run(load(httpx, url, png, clients, args.seconds, args.max_requests, process.pid))
                    after = batch_sizes(httpx, url)
                    sizes = {k: after.get(k, 0) - before.get(k, 0) for k in sorted(after) if after[k] != before.get(k)}
                    lat = np.asarray(result["latencies"]) * 1e3
                    half = max(1, len(result["rss"]) // 2)
                    answered = len(lat)
                    runs.append({
                        "clients": clients, "seconds": round(result["elapsed"], 2), "answered": answered,
                        "errors": sum(n for s, n in result["statuses"].items() if s != 200),
                        "statuses": {str(k): v for k, v in result["statuses"].items()},
                        "throughput": answered / result["elapsed"],
                        "p50_ms": float(np.percentile(lat, 50)) if answered else None,
                        "p99_ms": float(np.percentile(lat, 99)) if answered else None,
                        "batch_sizes": {str(k): v for k, v in sizes.items()},
                        "mean_batch": (sum(k * v for k, v in sizes.items()) / max(1, sum(sizes.values()))),
                        "server_ms": {key: float(np.mean([t[key] for t in result["timings"]])) if answered else None
                                      for key in SERVER_STEPS},
                        # where the cores went: CPU ms per answer of the server and of the clients, and the cores
                        # the rest of the machine took meanwhile; cores / CPU per answer bounds the throughput
                        "cpu_ms_per_answer": {k: 1e3 * result["cpu_s"][k] / max(1, answered)
                                              for k in ("server", "clients")},
                        "other_processes_cores": result["cpu_s"]["other_processes"] / result["elapsed"],
                        "rss_mib_start": result["rss"][0], "rss_mib_end": result["rss"][-1],
                        "rss_mib_max": max(result["rss"]),
                        # flat memory: the second half of the run holds no more than the first half's peak
                        "rss_mib_max_first_half": max(result["rss"][:half]), "rss_mib_max_second_half":
                            max(result["rss"][half:]), "rss_mib_samples": [round(v) for v in result["rss"]]})
            finally:
                process.send_signal(signal.SIGTERM)
                exit_status = process.wait(CLIENT_TIMEOUT_S)
        server_log = (Path(folder) / "server.log").read_text()

    load_average = os.getloadavg()
    print(f"face3d serve, {health['backend']} resfcn256 input {health['input_size']} "
          f"({'--model ' + str(args.model) if args.model else f'width {args.width}'}), max batch {args.max_batch}, "
          f"max delay {args.max_delay_ms} ms, {args.threads} threads, model threads {args.model_threads or 'all'}, "
          f"{os.cpu_count()} cores, "
          f"load average {load_average[0]:.1f}")
    print(f"{'clients':>7} {'answers':>8} {'errors':>6} {'answers/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'mean batch':>10}  RSS MiB start/end, max 1st/2nd half")
    for r in runs:
        print(f"{r['clients']:>7} {r['answered']:>8} {r['errors']:>6} {r['throughput']:>10.2f} "
              f"{r['p50_ms'] or 0:>8.1f} {r['p99_ms'] or 0:>8.1f} {r['mean_batch']:>10.2f}  "
              f"{r['rss_mib_start']:.0f}/{r['rss_mib_end']:.0f}, {r['rss_mib_max_first_half']:.0f}/"
              f"{r['rss_mib_max_second_half']:.0f}")
    print("server time per answer (mean ms): " + "; ".join(
        f"{r['clients']} clients: " + ", ".join(f"{k} {v:.1f}" for k, v in r["server_ms"].items() if v is not None)
        for r in runs))
    print("CPU per answer (ms, server + clients) and cores other processes used: " + "; ".join(
        f"{r['clients']} clients: {r['cpu_ms_per_answer']['server']:.0f} + {r['cpu_ms_per_answer']['clients']:.0f}, "
        f"{r['other_processes_cores']:.2f} cores" for r in runs))
    speedup = runs[-1]["throughput"] / runs[0]["throughput"] if len(runs) > 1 and runs[0]["throughput"] else None
    # the most the last run could answer: the cores the rest of the machine left, each answer costing its CPU
    last = runs[-1]
    cpu_per_answer_s = sum(last["cpu_ms_per_answer"].values()) / 1e3
    throughput_bound = (os.cpu_count() - last["other_processes_cores"]) / cpu_per_answer_s if last["answered"] else None
    speedup_bound = throughput_bound / runs[0]["throughput"] if speedup is not None and throughput_bound else None
    if speedup is not None:
        print(f"throughput {last['clients']} clients / {runs[0]['clients']} client: {speedup:.2f}x; at most "
              f"{throughput_bound:.2f} answers/s ({speedup_bound:.2f}x) with {last['clients']} clients' CPU per answer "
              f"on the cores left")
    summary = {"bench": "serve", "backend": health["backend"], "input_size": health["input_size"],
               "width": None if args.model else args.width, "max_batch": args.max_batch,
               "max_delay_ms": args.max_delay_ms, "threads": args.threads, "model_threads": args.model_threads,
               "cores": os.cpu_count(),
               "load_average": [round(v, 2) for v in load_average], "runs": runs,
               "speedup": speedup, "throughput_bound": throughput_bound, "speedup_bound": speedup_bound,
               "errors": sum(r["errors"] for r in runs), "server_exit_status": exit_status,
               "drained": "drained:" in server_log}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    return 0 if summary["errors"] == 0 and exit_status == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
