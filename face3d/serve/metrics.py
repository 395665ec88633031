"""Counters of the HTTP service, served at ``GET /metrics``.

Requests and error codes are counted since start; latency quantiles are over the most recent reconstructions (a
bounded window, so memory stays flat however long the service runs); batch sizes are counted per size, so the
mean batch and how often batches filled up can be read directly.
"""
import time
from collections import Counter, deque

import numpy as np

__all__ = ["ServiceMetrics", "LATENCY_WINDOW"]

LATENCY_WINDOW = 10_000  # reconstructions whose latency the quantiles cover


class ServiceMetrics:
    """Request, error, latency and batch statistics of one server process (all methods run on the event loop)."""

    def __init__(self, window=LATENCY_WINDOW):
        self.started = time.time()
        self.requests = Counter()  # "POST /v1/reconstruct 200" -> count
        self.errors = Counter()  # error code -> count
        self.latencies = deque(maxlen=int(window))  # seconds, successful reconstructions
        self.batch_sizes = Counter()
        self.network_s = 0.0
        self.in_flight = 0

    def record_request(self, method, path, status):
        """Count one answered request."""
        self.requests[f"{method} {path} {status}"] += 1

    def record_error(self, code):
        """Count one error answer by its code."""
        self.errors[code] += 1

    def record_latency(self, seconds):
        """Latency of one successful reconstruction."""
        self.latencies.append(float(seconds))

    def record_batch(self, size, seconds):
        """One network call on ``size`` inputs that took ``seconds``."""
        self.batch_sizes[int(size)] += 1
        self.network_s += float(seconds)

    def snapshot(self):
        """The statistics as a JSON-ready dict.

        Returns:
            ``uptime_s``; ``requests`` (total and by "METHOD path status"); ``errors`` (total and by code);
            ``in_flight``; ``latency_ms`` (count, mean, p50, p90, p99, max over the last ``window``
            reconstructions); ``batches`` (count, images, mean_size, sizes {size: count}, network_s).
        """
        latencies = np.asarray(self.latencies, dtype=np.float64) * 1e3
        if len(latencies):
            p50, p90, p99 = np.percentile(latencies, [50, 90, 99])
            latency = {"count": len(latencies), "mean": float(latencies.mean()), "p50": float(p50),
                       "p90": float(p90), "p99": float(p99), "max": float(latencies.max())}
        else:
            latency = {"count": 0}
        batches = sum(self.batch_sizes.values())
        images = sum(size * count for size, count in self.batch_sizes.items())
        return {"uptime_s": time.time() - self.started,
                "requests": {"total": sum(self.requests.values()), **dict(sorted(self.requests.items()))},
                "errors": {"total": sum(self.errors.values()), **dict(sorted(self.errors.items()))},
                "in_flight": self.in_flight,
                "latency_ms": latency,
                "batches": {"count": batches, "images": images, "mean_size": images / batches if batches else 0.0,
                            "sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
                            "network_s": self.network_s}}
