"""Dynamic batching: concurrent requests share one network call.

Requests hand their network input to ``DynamicBatcher.submit`` and await their own output. One collector task
takes the first waiting input, waits up to ``max_delay_s`` for more (but only while other requests announced with
``expect`` are still being prepared, so a lone request never waits for nobody), and runs up to ``max_batch``
inputs as one ``predict`` call on a single model thread, off the event loop. While that call runs, new inputs
queue up for the next one, so batches grow with the load. When a batch fails, its inputs are run one by one, so
a bad input fails only its own request. ``close`` finishes every queued input before it returns.
"""
import asyncio
import contextlib
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

__all__ = ["Prediction", "BatcherClosed", "DynamicBatcher"]


class BatcherClosed(RuntimeError):
    """An input submitted while the batcher is closing (or before it started); a RuntimeError of the model is not
    one."""


@dataclass(frozen=True)
class Prediction:
    """One request's share of a batch.

    Attributes:
        output: the network's output for this input (``predict(inputs)[i]``).
        batch_size: inputs in the network call that produced it.
        queued_s: seconds from ``submit`` to the start of that call.
        network_s: seconds of the call (stacking the inputs included).
    """
    output: np.ndarray
    batch_size: int
    queued_s: float
    network_s: float


@dataclass
class _Job:
    x: np.ndarray
    future: asyncio.Future
    submitted: float


class _Ticket:
    """A request announced to a DynamicBatcher (``DynamicBatcher.expect``)."""

    def __init__(self, batcher):
        self._batcher, self._pending = batcher, True

    def withdraw(self):
        """The request is no longer on its way (submitted, or failed before)."""
        if self._pending:
            self._pending = False
            self._batcher._expected -= 1
            self._batcher._wake.set()

    async def submit(self, x):
        """``DynamicBatcher.submit(x)`` for the announced request."""
        self.withdraw()
        return await self._batcher.submit(x)


class DynamicBatcher:
    """Runs ``predict`` on batches of concurrently submitted inputs (see the module docstring).

    Args:
        predict: callable mapping (B, ...) stacked inputs to (B, ...) outputs; always called from one thread.
        max_batch: largest batch B.
        max_delay_s: longest wait, after the first input of a batch arrives, for more inputs.
        on_batch: optional callable ``(batch_size, seconds)`` called after every successful network call.
    """

    def __init__(self, predict, max_batch=8, max_delay_s=0.005, on_batch=None):
        if int(max_batch) < 1 or not max_delay_s >= 0:
            raise ValueError(f"max_batch must be >= 1 and max_delay_s >= 0, got {max_batch} and {max_delay_s}")
        self.max_batch, self.max_delay_s = int(max_batch), float(max_delay_s)
        self._predict, self._on_batch = predict, on_batch
        self._queue = deque()
        self._expected = 0
        self._closing = False
        self._wake = None
        self._task = None
        self._executor = None

    def start(self):
        """Start the collector task on the running event loop."""
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="face3d-model")
        self._task = asyncio.get_running_loop().create_task(self._collect(), name="face3d-batcher")

    @contextlib.contextmanager
    def expect(self):
        """A ticket for a request that will submit soon (it is still decoding and cropping): while it holds the
        ticket, a batch being collected waits for it, up to ``max_delay_s``. Use ``ticket.submit(x)`` inside the
        block; leaving the block without submitting withdraws the request."""
        ticket = _Ticket(self)
        self._expected += 1
        try:
            yield ticket
        finally:
            ticket.withdraw()

    async def submit(self, x):
        """The Prediction for one input ``x`` (one element of the batch ``predict`` takes).

        Raises:
            BatcherClosed: the batcher is closing. Any exception ``predict`` raised for this input alone.
        """
        if self._closing or self._task is None:
            raise BatcherClosed("the model is shutting down")
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Job(x, future, time.perf_counter()))
        self._wake.set()
        return await future

    async def close(self):
        """Stop taking inputs, run every queued one, stop the model thread."""
        if self._task is None:
            return
        self._closing = True
        self._wake.set()
        await self._task
        self._executor.shutdown(wait=True)
        self._task = None

    async def _wait_for_wake(self, timeout=None):
        self._wake.clear()
        with contextlib.suppress(asyncio.TimeoutError):  # the builtin TimeoutError only from Python 3.11
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _collect(self):
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue and not self._closing:
                await self._wait_for_wake()
            if not self._queue:
                return  # closing, nothing left
            deadline = loop.time() + self.max_delay_s
            while len(self._queue) < self.max_batch and self._expected > 0 and not self._closing:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await self._wait_for_wake(remaining)
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            batch = [job for job in batch if not job.future.done()]  # requests that timed out meanwhile
            if batch:
                await self._run(batch)

    def _stack_and_predict(self, inputs):
        return np.asarray(self._predict(np.stack(inputs)))

    async def _run(self, batch):
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            outputs = await loop.run_in_executor(self._executor, self._stack_and_predict, [job.x for job in batch])
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_exception(exc)
                return
            for job in batch:  # isolate the input that fails from the others
                await self._run([job])
            return
        seconds = time.perf_counter() - started
        if self._on_batch is not None:
            self._on_batch(len(batch), seconds)
        for job, output in zip(batch, outputs):
            if not job.future.done():
                job.future.set_result(Prediction(output, len(batch), started - job.submitted, seconds))
