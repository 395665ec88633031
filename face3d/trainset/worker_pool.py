"""The worker processes of ``face3d generate``: chunks of samples through the generator, on a process pool.

``run_chunks_in_pool`` keeps at most ``4 * workers`` chunks in flight, survives a worker process that dies
(killed, out of memory) when given ``on_broken``, and ends its processes when their parent dies;
``run_journaled_chunks`` (shared with the photo fitter) then fails the item the dead worker was on, found through
the journals. The generator is built once per worker process and kept in ``_WORKER_STATE``, so the functions the
pool runs are module-level ones of this module.
"""
import concurrent.futures as cf
import ctypes
import dataclasses
import functools
import itertools
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple

from face3d.trainset.discovery import SampleRef
from face3d.trainset.outputs import Journal, OutputFolders, done_outputs, input_checks, read_journals, write_sample
from face3d.utils.errors import InputFileError, refuses_storage

__all__ = ["RunState", "SampleTask", "run_tasks", "run_chunks_in_pool", "run_journaled_chunks", "pool_context",
           "default_worker_count", "CHUNK_SIZE", "WORKER_DIED"]

logger = logging.getLogger(__name__)


def default_worker_count():
    """CPUs this process may use: ``os.sched_getaffinity`` (respects cluster CPU sets), else ``os.cpu_count()``."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return max(os.cpu_count() or 1, 1)


@dataclass(frozen=True)
class RunState:
    """What one process needs to run chunks: the generator, the output folder, the map dtype and the settings'
    fingerprint, with the output folders and the journal it opens on first use."""
    generator: object
    output: str
    posmap_dtype: str
    fingerprint: str
    folders: OutputFolders = dataclasses.field(default_factory=OutputFolders, compare=False)
    journal: Journal = None

    def __post_init__(self):
        if self.journal is None:
            object.__setattr__(self, "journal", Journal(self.output))


class SampleTask(NamedTuple):
    """One sample to write: its ``SampleRef``, its seed (``discovery.sample_seed``) and the files of its earlier
    outputs that writing it replaces (``write_sample``'s ``replaces``; empty for a sample never done)."""
    ref: SampleRef
    seed: int
    replaces: tuple = ()

    @property
    def rel(self):
        """The sample's relative path (``SampleRef.rel``), the key of its journal records."""
        return self.ref.rel


# Samples per generator call: their vertices come from one product that reads the basis from memory once for the
# whole batch (on a BFM-sized model a lone sample streams 146 MB; in a batch of 128 the arithmetic dominates),
# while the batch's vertices take 0.64 MB per sample there (82 MB at 128), whatever the dataset size.
CHUNK_SIZE = 128


def _generated_results(generator, jobs):
    """Each job's result from ``generator.process_iter`` as it is made (``process_many`` for generators without
    it); should the batch fail unexpectedly, the samples not yet done are run one by one with ``process``, so
    that one sample cannot fail its neighbours."""
    done = 0
    try:
        stream = generator.process_iter(jobs) if hasattr(generator, "process_iter") else \
            iter(generator.process_many(jobs))
        for result in stream:
            done += 1
            yield result
    except Exception:  # noqa: BLE001 - fall back to isolating the sample that broke the batch
        for image_path, mat_path, seed in jobs[done:]:
            try:
                yield generator.process(image_path, mat_path, seed)
            except Exception as exc:  # noqa: BLE001 - one sample must never end a day-long run
                yield exc


def _process_tasks(state, tasks):
    """Run the generator on ``tasks`` [SampleTask] and write each sample's outputs as soon as it is made, removing
    the files of its earlier outputs that it no longer writes (``write_sample``) before it is journalled.

    The chunk goes through ``generator.process_iter``, whose one product for all vertices reads the basis once
    (several times faster per sample than a product each on a BFM-sized model), and whose bytes do not depend
    on the batch (so not on the worker count or on what a resumed run has left).
    Returns:
        one short record per task: ``(rel, "written", n_outputs)`` or ``(rel, "failed", reason)``.
    Raises:
        OSError: naming the file, when the file system refuses the bytes of a sample (full, over quota, read-only:
            ``STORAGE_REFUSED``) or of the journal.
    """
    records = []
    jobs = [(task.ref.image_path, task.ref.mat_path, task.seed) for task in tasks]
    inputs = [input_checks(task.ref) for task in tasks]  # before the generator reads them
    for (ref, _, replaces), checked_inputs, generated in zip(tasks, inputs, _generated_results(state.generator, jobs)):
        if isinstance(generated, Exception):
            reason = str(generated) if isinstance(generated, InputFileError) else \
                f"unexpected {type(generated).__name__}: {generated}"
            records.append((ref.rel, "failed", reason))
            continue
        try:
            names, checks = write_sample(state.output, ref, generated, state.posmap_dtype, state.folders, replaces)
        except (OSError, ValueError) as exc:
            if refuses_storage(exc):
                raise  # every later sample would fail alike: the run stops, to be resumed once there is room
            records.append((ref.rel, "failed", f"cannot write the outputs: {type(exc).__name__}: {exc}"))
            continue
        state.journal.append([{"sample": ref.rel, "fingerprint": state.fingerprint, "outputs": names,
                               "files": checks, "inputs": checked_inputs}])
        records.append((ref.rel, "written", len(names)))
    return records


# Set once per worker process by the pool initializer: the generator must be built once per process, not
# once per sample, and a process pool offers no other place to keep it.
_WORKER_STATE = None


def _init_worker(state, factory_args):
    global _WORKER_STATE
    if state is None:
        factory, model_path, config, output, posmap_dtype, fingerprint = factory_args
        state = RunState(factory(model_path, config), output, posmap_dtype, fingerprint)
    _WORKER_STATE = state


def _worker_chunk(tasks):
    return _process_tasks(_WORKER_STATE, tasks)


# <linux/prctl.h>: the signal the kernel sends this process when the thread that forked it ends
_PR_SET_PDEATHSIG = 1


def _end_with_parent():
    """Make this pool process end as soon as its parent does (``kill -9``, the OOM killer), instead of finishing
    its queued chunks (outputs and journal lines a rerun would race with) and then waiting for work forever,
    holding its memory and the caller's pipes.

    On Linux the kernel sends it SIGKILL then (``prctl(PR_SET_PDEATHSIG)``); a parent that died before that call
    is seen as a changed ``os.getppid()`` (the orphan was adopted by another process), and this process exits at
    once. Elsewhere a daemon thread compares ``os.getppid()`` once a second. The kernel's signal comes when the
    *thread* that forked this process ends: ``ProcessPoolExecutor`` forks (or spawns) its processes in the thread
    that submits to it, here the one running ``run_chunks_in_pool``, which outlives the pool.
    """
    parent = multiprocessing.parent_process().pid  # taken by the parent before it started this process
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:
            os._exit(1)
    else:
        threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()


def _exit_when_orphaned(parent):
    """End this process once its parent is no longer ``parent`` (pid), checking once a second."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _start_worker(initializer, initargs):
    """The initializer of ``run_chunks_in_pool``'s processes: the SIGTERM handler ``_stop_worker`` (first: the
    handler this process inherited is its parent's) and SIGINT ignored (Ctrl-C is handled by the parent, which stops
    the pool), ``_end_with_parent``, then the caller's."""
    signal.signal(signal.SIGTERM, _stop_worker)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _end_with_parent()
    if initializer is not None:
        initializer(*initargs)


class _WorkerStopped(BaseException):
    """Raised in a pool process by SIGTERM while it runs a chunk (``_stop_worker``)."""


# Whether this pool process is running a chunk: SIGTERM (the parent ending its pool on Ctrl-C or an error, or a
# scheduler's signal to the whole process group) then unwinds the chunk, whose atomic writes remove their temporary
# files (``face3d.utils.atomic``); a process waiting for work has nothing to unwind.
_IN_CHUNK = False


def _stop_worker(signum, frame):
    """SIGTERM handler of a pool process: unwind the running chunk (``_run_chunk`` then exits), else exit now. A
    further SIGTERM (one to the process group, then the parent's own) is ignored, not raised again inside the
    unwinding."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if _IN_CHUNK:
        raise _WorkerStopped
    os._exit(128 + signum)


def _run_chunk(worker, chunk):
    """``worker(chunk)`` in a pool process; a SIGTERM meanwhile ends the process once the chunk has unwound (the
    pool would otherwise send the exception back as the chunk's result and wait for the next one): ``_stop_worker``
    has set SIGTERM to be ignored, whether its ``_WorkerStopped`` unwound the chunk or was lost (in a ``__del__``)."""
    global _IN_CHUNK
    try:
        _IN_CHUNK = True
        return worker(chunk)
    finally:  # also after a chunk that raised: the process then waits for work, with nothing to unwind
        _IN_CHUNK = False
        if signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:  # stopped
            os._exit(128 + signal.SIGTERM)


def _chunked(items, size):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def pool_context():
    """The multiprocessing context of the runners: fork where available (workers share the parent's model pages
    copy-on-write, and the initializer's arguments are not pickled), else spawn."""
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def run_chunks_in_pool(worker, chunks, workers, on_result, initializer=None, initargs=(), context=None,
                       on_broken=None):
    """Run ``worker(chunk)`` for every chunk on a process pool and pass each result to ``on_result`` in the parent.

    At most ``4 * workers`` chunks are in flight, so the task list of a huge dataset is never materialised in the
    pool; results arrive in order of completion. On an error or interrupt the worker processes are ended at once
    (SIGTERM: each unwinds the write it is in, removing its temporary file, and exits, ``_stop_worker``; work is
    resumable: what they had not finished is redone by the next run), but on a write the file system refuses for
    good (``STORAGE_REFUSED``) the running chunks end on their own, at their next refused write. Should this process
    die, they end too (``_end_with_parent``).

    Args:
        worker: module-level function of one chunk (picklable where processes spawn).
        chunks: iterable of chunks. workers: pool size (>= 1). on_result: called with each ``worker`` result.
        initializer, initargs: run once per worker process (``ProcessPoolExecutor``'s). context: multiprocessing
            context (default ``pool_context()``).
        on_broken: when a worker process dies (killed, out of memory) the pool breaks and the results of the
            chunks then in flight are lost: ``on_broken(those chunks)`` returns the chunks to run again, which a
            new pool runs before the rest. Without it the pool's ``BrokenProcessPool`` is raised.
    """
    chunks = iter(chunks)
    context = pool_context() if context is None else context
    while True:
        lost = _run_until_broken(worker, chunks, workers, on_result, initializer, initargs, context,
                                 on_broken is not None)
        if not lost:
            return
        chunks = itertools.chain(on_broken(lost), chunks)


def _run_until_broken(worker, chunks, workers, on_result, initializer, initargs, context, survive_broken):
    """``run_chunks_in_pool`` on one pool: returns [] when ``chunks`` ran out, or, with ``survive_broken``, the
    chunks in flight when a worker process died."""
    with cf.ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                initargs=(initializer, initargs)) as pool:
        in_flight = {}
        try:
            while True:
                while len(in_flight) < 4 * workers:
                    chunk = next(chunks, None)
                    if chunk is None:
                        break
                    in_flight[pool.submit(_run_chunk, worker, chunk)] = chunk
                if not in_flight:
                    return []
                finished, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
                lost = []
                for future in finished:
                    chunk = in_flight.pop(future)
                    if survive_broken and isinstance(future.exception(), cf.process.BrokenProcessPool):
                        lost.append(chunk)
                    else:
                        on_result(future.result())
                if lost:
                    return lost + list(in_flight.values())
        except BaseException as error:
            if refuses_storage(error):
                # The file system refuses bytes: each running worker stops at its own next write, removing its
                # temporary file, which ending it inside that write would leave behind.
                pool.shutdown(cancel_futures=True)
            else:
                # Stop now rather than after the running chunks: the executor has no public way to, so end its
                # processes.
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.terminate()
            raise


WORKER_DIED = "the worker process died on this sample (killed, or out of memory)"


def run_journaled_chunks(worker, chunks, workers, on_records, initializer, initargs, context, output, finished,
                         died, requeue_singly=False):
    """``run_chunks_in_pool`` for a worker that returns one record per item of its chunk and journals the items it
    finishes (``outputs.Journal`` under ``output``), surviving the death of a worker process (killed, out of memory).

    Such a death breaks the pool and loses the chunks then in flight. Of those, the items the journals hold as
    finished are passed on as such; of the others, the first of each chunk (the one a dead worker was on, for a
    worker that journals item by item) runs alone in a fresh process, where dying again fails it (``died``), and
    the rest run again on a new pool.

    Args:
        worker, chunks, workers, initializer, initargs, context: as for ``run_chunks_in_pool``; the chunks are lists
            of items with a ``rel``, the key of their journal records.
        on_records: called with each list of records.
        output: the folder of the journals (``read_journals``).
        finished: ``f(latest, item)``: the record of an item that the journals' ``latest`` records hold as
            finished by this run (items redone carry a redo line, ``Journal.mark_redo``), else None.
        died: ``f(item)``: the record failing an item whose worker process died on it alone.
        requeue_singly: for a worker that works on its whole chunk before it journals any item (a batched fit): a
            lost chunk need not show the item its worker died on, so its unfinished items but the first go back one
            per chunk, for the next death to show it.
    """
    def on_broken(lost):
        latest = read_journals(output, {item.rel for chunk in lost for item in chunk})
        again, n_finished, alone = [], 0, 0
        logger.debug("a worker process died with %d chunks (%d samples) in flight", len(lost), sum(map(len, lost)))
        for chunk in lost:
            records = [finished(latest, item) for item in chunk]
            on_records([record for record in records if record is not None])
            unfinished = [item for item, record in zip(chunk, records) if record is None]
            n_finished += len(chunk) - len(unfinished)
            if unfinished:
                alone += 1
                on_records(_run_alone(worker, unfinished[0], initializer, initargs, context, died))
            if unfinished[1:]:
                again += [[item] for item in unfinished[1:]] if requeue_singly else [unfinished[1:]]
        logger.debug("of those, %d had finished and %d ran alone in a fresh process; %d go to a new pool of %d "
                     "worker processes", n_finished, alone, sum(map(len, again)), workers)
        return again

    run_chunks_in_pool(worker, chunks, workers, on_records, initializer, initargs, context, on_broken)


def _run_alone(worker, item, initializer, initargs, context, died):
    """The records of one item run in a fresh one-process pool, or ``[died(item)]`` when that process dies."""
    records = []
    try:
        run_chunks_in_pool(worker, [[item]], 1, records.extend, initializer, initargs, context)
    except cf.process.BrokenProcessPool:
        return [died(item)]
    return records


def _journaled_task(state, latest, task):
    """The record of a ``SampleTask`` the journals' ``latest`` records hold as written, or None."""
    names = done_outputs(latest, task.ref.rel, state.fingerprint)
    return None if names is None else (task.ref.rel, "written", len(names))


def _run_pool(state, factory_args, pending, workers, on_records):
    """Run ``pending`` tasks on a process pool (``run_journaled_chunks``: a worker process that dies fails the
    sample it was on, ``WORKER_DIED``); each worker builds its generator once."""
    ctx = pool_context()
    initargs = (state, None) if ctx.get_start_method() == "fork" else (None, factory_args)
    # Large chunks for the matrix product, yet at least 8 per worker so that the last ones finish together.
    chunk = max(1, min(CHUNK_SIZE, len(pending) // (workers * 8)))
    logger.debug("%d samples to write on %d worker processes (%s), in chunks of %d", len(pending), workers,
                 ctx.get_start_method(), chunk)
    run_journaled_chunks(_worker_chunk, _chunked(pending, chunk), workers, on_records, _init_worker, initargs, ctx,
                         state.output, functools.partial(_journaled_task, state),
                         lambda task: (task.ref.rel, "failed", WORKER_DIED))


def run_tasks(state, factory_args, pending, workers, on_records):
    """Run the pending tasks in this process (one worker) or on a pool, passing each chunk's records on."""
    if workers == 1:
        logger.debug("%d samples to write in this process, in chunks of %d", len(pending), CHUNK_SIZE)
        for tasks in _chunked(pending, CHUNK_SIZE):
            on_records(_process_tasks(state, tasks))
    else:
        _run_pool(state, factory_args, pending, workers, on_records)
