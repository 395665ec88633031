"""Counters of the HTTP service, served at ``GET /metrics`` (JSON, or Prometheus' text format).

Requests, error codes and reconstructions (their count and total latency) are counted since start; the latency's
mean, maximum and quantiles are over the most recent reconstructions (a bounded window, so memory stays flat however
long the service runs); batch sizes are counted per size, so the mean batch and how often batches filled up can be
read directly.
"""
import time
from collections import Counter, deque

import numpy as np

__all__ = ["ServiceMetrics", "LATENCY_WINDOW", "QUANTILES"]

LATENCY_WINDOW = 10_000  # reconstructions whose latency the quantiles cover
QUANTILES = (0.5, 0.9, 0.99)


class ServiceMetrics:
    """Request, error, latency and batch statistics of one server process (all methods run on the event loop)."""

    def __init__(self, window=LATENCY_WINDOW):
        self.started = time.time()
        self.requests = Counter()  # (method, path, status) -> count
        self.errors = Counter()  # error code -> count
        self.latencies = deque(maxlen=int(window))  # seconds, the most recent successful reconstructions
        self.reconstructions = 0  # successful reconstructions since start
        self.latency_total_s = 0.0  # and the sum of their latencies
        self.batch_sizes = Counter()
        self.network_s = 0.0
        self.in_flight = 0

    def record_request(self, method, path, status):
        """Count one answered request."""
        self.requests[(method, path, int(status))] += 1

    def record_error(self, code):
        """Count one error answer by its code."""
        self.errors[code] += 1

    def record_latency(self, seconds):
        """Latency of one successful reconstruction."""
        self.latencies.append(float(seconds))
        self.reconstructions += 1
        self.latency_total_s += float(seconds)

    def record_batch(self, size, seconds):
        """One network call on ``size`` inputs that took ``seconds``."""
        self.batch_sizes[int(size)] += 1
        self.network_s += float(seconds)

    def snapshot(self):
        """The statistics as a JSON-ready dict.

        Returns:
            ``uptime_s``; ``requests`` (total and by "METHOD path status"); ``errors`` (total and by code);
            ``in_flight``; ``latency_ms`` (count: reconstructions since start; window: how many of the most
            recent ones mean, p50, p90, p99 and max cover); ``batches`` (count, images, mean_size,
            sizes {size: count}, network_s).
        """
        latency = {"count": self.reconstructions, "window": len(self.latencies)}
        if self.latencies:
            seconds = np.asarray(self.latencies, dtype=np.float64)
            latency["mean"], latency["max"] = float(seconds.mean()) * 1e3, float(seconds.max()) * 1e3
            latency.update({f"p{round(q * 100)}": v * 1e3 for q, v in self._latency_quantiles(seconds).items()})
        batches = sum(self.batch_sizes.values())
        images = sum(size * count for size, count in self.batch_sizes.items())
        return {"uptime_s": time.time() - self.started,
                "requests": {"total": sum(self.requests.values()),
                             **{f"{m} {p} {s}": n for (m, p, s), n in sorted(self.requests.items())}},
                "errors": {"total": sum(self.errors.values()), **dict(sorted(self.errors.items()))},
                "in_flight": self.in_flight,
                "latency_ms": latency,
                "batches": {"count": batches, "images": images, "mean_size": images / batches if batches else 0.0,
                            "sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
                            "network_s": self.network_s}}

    @staticmethod
    def _latency_quantiles(seconds):
        """{q: the q-quantile of ``seconds``} for q in ``QUANTILES`` (linear interpolation)."""
        return dict(zip(QUANTILES, np.quantile(seconds, QUANTILES).tolist()))

    def prometheus(self):
        """The statistics in Prometheus' text exposition format (version 0.0.4), metric names ``face3d_*``:
        requests and errors (counters), requests in flight (gauge), reconstruction latency (summary, seconds:
        quantiles over the window, sum and count since start), network calls by batch size and network seconds
        (counters), uptime (gauge)."""
        def sample(name, value, **labels):
            inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
            return f"{name}{{{inner}}} {value!r}" if labels else f"{name} {value!r}"

        lines = ["# HELP face3d_requests_total Answered HTTP requests.", "# TYPE face3d_requests_total counter"]
        lines += [sample("face3d_requests_total", n, method=m, path=p, status=s)
                  for (m, p, s), n in sorted(self.requests.items())]
        lines += ["# HELP face3d_errors_total Error answers by code.", "# TYPE face3d_errors_total counter"]
        lines += [sample("face3d_errors_total", n, code=code) for code, n in sorted(self.errors.items())]
        lines += ["# HELP face3d_in_flight Reconstructions in progress.", "# TYPE face3d_in_flight gauge",
                  sample("face3d_in_flight", self.in_flight)]
        lines += ["# HELP face3d_latency_seconds Reconstruction latency (quantiles over the recent window).",
                  "# TYPE face3d_latency_seconds summary"]
        if self.latencies:
            latencies = np.asarray(self.latencies, dtype=np.float64)
            lines += [sample("face3d_latency_seconds", value, quantile=q)
                      for q, value in self._latency_quantiles(latencies).items()]
        lines += [sample("face3d_latency_seconds_sum", self.latency_total_s),
                  sample("face3d_latency_seconds_count", self.reconstructions)]
        lines += ["# HELP face3d_batches_total Network calls by batch size.", "# TYPE face3d_batches_total counter"]
        lines += [sample("face3d_batches_total", n, size=size) for size, n in sorted(self.batch_sizes.items())]
        lines += ["# HELP face3d_network_seconds_total Seconds spent in network calls.",
                  "# TYPE face3d_network_seconds_total counter", sample("face3d_network_seconds_total", self.network_s),
                  "# HELP face3d_uptime_seconds Seconds since the service started.",
                  "# TYPE face3d_uptime_seconds gauge", sample("face3d_uptime_seconds", time.time() - self.started)]
        return "\n".join(lines) + "\n"
