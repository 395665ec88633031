"""Generate a PRNet training set from a whole 300W-LP-style folder (``face3d generate``): ``generate_dataset``.

The run is resumable, sharded and multi-process; ``generate_dataset``'s docstring gives its rules (discovery, shards,
seeds, outputs and journal, dead workers, label file, bad samples, summary, memory). Its parts live in ``discovery``
(samples, shards, seeds), ``outputs`` (atomic writes, the journal, resume checks) and ``worker_pool`` (processes);
this module writes uv-data, the label file and the summary.
"""
import collections
import concurrent.futures as cf
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from face3d.morphable_model.morphable_model import model_identity
from face3d.trainset.discovery import (
    KNOWN_300WLP_FOLDERS,
    SampleRef,
    discover_samples,
    label_text_problem,
    parse_shard,
    printable_path,
    sample_seed,
    select_shard,
)
from face3d.trainset.outputs import DONE_DIR, damaged_outputs, done_outputs, earlier_files, is_done, read_journals
from face3d.trainset.sample import angle_name
from face3d.trainset.uv_layout import (
    check_uv_data_fits,
    load_uv_data,
    load_uv_model,
    staged_uv_data,
    write_model_uv_data,
)
from face3d.trainset.worker_pool import (
    RunState,
    SampleTask,
    default_worker_count,
    pool_context,
    run_chunks_in_pool,
    run_tasks,
)
from face3d.utils.atomic import TEMP_SUFFIX, atomic_file, atomic_write_bytes, output_lock
from face3d.utils.errors import InputFileError
from face3d.utils.image_header import IMAGE_SUFFIXES
from face3d.utils.progress import Progress

__all__ = [
    "SampleRef", "discover_samples", "parse_shard", "select_shard", "sample_seed", "label_file_name",
    "summary_file_name", "config_fingerprint", "default_worker_count", "generate_dataset",
    "read_journals", "done_outputs",
    "LABEL_FILE", "SUMMARY_FILE", "DONE_DIR", "UV_DATA_DIR", "TEMP_SUFFIX", "KNOWN_300WLP_FOLDERS",
    "intact_done", "pool_context", "run_chunks_in_pool",
]

logger = logging.getLogger(__name__)

LABEL_FILE = "trainDataLabel.txt"
SUMMARY_FILE = "summary.json"
UV_DATA_DIR = "uv-data"


def _shard_suffix(shard):
    k, n = shard
    return f".part-{k:0{len(str(n))}d}-of-{n}"


def label_file_name(shard=None):
    """``trainDataLabel.txt``, or ``trainDataLabel.part-KK-of-N.txt`` (K zero-padded to N's width) for a shard."""
    return LABEL_FILE if shard is None else f"trainDataLabel{_shard_suffix(shard)}.txt"


def summary_file_name(shard=None):
    """``summary.json``, or ``summary.part-KK-of-N.json`` for a shard."""
    return SUMMARY_FILE if shard is None else f"summary{_shard_suffix(shard)}.json"


# GenerationConfig fields that change no finished sample's bytes, so changing them leaves those samples done:
# allow_short_params and max_pixels decide which samples are refused (refused ones were never done, so a rerun
# retries them anyway), neck_zeroed only uv-data's weight mask (every run writes uv-data anew). FitConfig's
# max_pixels (face3d fit) is left out alike.
UNFINGERPRINTED_FIELDS = ("allow_short_params", "max_pixels", "neck_zeroed")


def config_fingerprint(config, model_id, seed):
    """sha256 (hex, 16 chars) of the generation settings (less ``UNFINGERPRINTED_FIELDS``), the model identity
    (``morphable_model.model_identity``: its files' content) and the base seed: a journal record counts only when it
    was written under the same fingerprint (so changed settings or model files redo the samples)."""
    fields = {k: v for k, v in dataclasses.asdict(config).items() if k not in UNFINGERPRINTED_FIELDS}
    text = json.dumps({"config": fields, "model": str(model_id), "seed": int(seed)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def default_generator_factory(model_path, config):
    """Build ``TrainsetGenerator(load_uv_model(model_path), config)``, returning its maps in ``config.posmap_dtype``
    (as the run writes them); ``model_path=None`` is the default model."""
    from face3d.trainset.sample import TrainsetGenerator

    return TrainsetGenerator(load_uv_model(model_path), config, posmap_dtype=config.posmap_dtype)


def _write_uv_data(generator, output, config, uv_data=None, model_path=None):
    """Write PRNet's uv-data files for the generator's model into ``output/uv-data``, or copy the files of the
    existing folder ``uv_data`` there after checking that it fits the model and resolution; the set's files
    replace the folder's (``uv_layout.staged_uv_data``: a refused write, as on a full disk, raises an OSError naming
    ``output/uv-data`` and leaves that folder as it was). Building needs the model's regions: a model loaded from
    ``model_path`` (None: the default model) without them is refused (``uv_layout.require_region_labels``)."""
    final = Path(output) / UV_DATA_DIR
    rasterization = getattr(generator, "rasterization", None)  # a generator factory's own class may have none
    if uv_data is None:
        write_model_uv_data(generator.model, final, int(config.resolution), bool(config.neck_zeroed), model_path,
                            rasterization)
    else:
        source = Path(uv_data)
        layout = load_uv_data(source)
        if layout.resolution != int(config.resolution):
            raise InputFileError(source, f"uv-data resolution {layout.resolution} differs from the set's "
                                         f"{config.resolution} (--resolution)")
        check_uv_data_fits(layout, generator.model, str(source), rasterization)
        with staged_uv_data(final) as staging:
            for path in sorted(p for p in source.iterdir() if p.is_file()):
                shutil.copyfile(path, staging / path.name)
    logger.debug("uv-data %s into %s", f"copied from {source}" if uv_data is not None else
                 f"written for the model (neck_zeroed={bool(config.neck_zeroed)})", final)


def _label_lines(output, samples, fingerprint, relative):
    base = Path(output) if relative else Path(os.path.abspath(output))
    latest = read_journals(output, {ref.rel for ref in samples})
    for ref in samples:
        names = done_outputs(latest, ref.rel, fingerprint)
        if names is None:
            continue
        folder = Path(ref.folder) if relative else base / ref.folder
        for name in names:
            yield f"{(folder / f'{name}.jpg').as_posix()} {(folder / f'{name}.npy').as_posix()}\n"


def write_label_file(path, output, samples, fingerprint, relative=False):
    """Write the label file for the done ``samples`` (in the given order), streamed to a temporary file and
    renamed; returns the line count."""
    count = 0
    with atomic_file(path) as f:
        for line in _label_lines(output, samples, fingerprint, relative):
            f.write(line.encode("utf-8"))
            count += 1
    return count


def generate_dataset(root, output, config, model_path=None, workers=None, shard=None, limit=None, seed=0,
                     relative_paths=False, progress=True, generator_factory=None, uv_data=None):
    """Generate the training set for every sample under ``root`` into ``output``; resumable.

    The per-sample work (crop, position map, rotations) is ``face3d.trainset.sample.TrainsetGenerator``; this
    runs it over a dataset and owns everything that makes a long run safe:

    * Discovery (``discover_samples``): a sample is a ``.mat`` parameter file with an image of the same stem
      (``IMAGE_SUFFIXES``: ``.jpg``, ``.jpeg``, ``.png`` or ``.bmp``). In the 300W-LP tree (the root holds ``AFW``,
      ``HELEN``, ``IBUG``, ``LFPW`` or their ``_Flip`` twins) only those folders are walked, so ``landmarks/`` and
      ``Code/`` are never samples;
      any other root is walked whole except ``landmarks/`` folders and hidden folders. Links to folders are
      followed, each folder walked once (``discovery.walk_stems``), and outputs mirror the path through the link.
      Samples are sorted by their relative path (posix separators, no extension), which defines the order of
      everything below.
    * ``--limit L`` keeps the first L samples of that order; ``--shard K/N`` then keeps the K-th of N contiguous,
      near-equal blocks (``select_shard``), so shard label files concatenated in K order are the whole label file:
      with every shard writing to the same output folder, ``cat OUT/trainDataLabel.part-*-of-N.txt >
      OUT/trainDataLabel.txt`` (K is zero-padded, so the shell's sorted glob is K order), or rerun without
      ``--shard`` once all shards are done (every sample is skipped and the whole label file is written).
    * Seeds (``sample_seed``): each sample's seed is a hash of ``--seed`` and its relative path, and the generator's
      batched vertices are bit-identical whatever the batch (``TrainsetGenerator.process_iter``), so outputs do not
      depend on the worker count, the chunking, the order of completion, the shard or what a resumed run had left.
      Bit-identical float32 results also need the same BLAS set-up: the command line runs one BLAS thread per
      process (``OPENBLAS_NUM_THREADS=1`` etc. unless already set), so runs and resumes of the same command match;
      a Python caller should do the same.
    * Outputs mirror the input folders under ``output``: ``<name>.jpg`` (the crop), ``<name>.npy`` (the position map,
      float16 unless float32 is requested) and optionally ``<name>_preview.png``, for the plain sample and each rotation
      ``<stem>_angle_<deg>``. Each file is written under a hidden temporary name in its final folder and
      ``os.replace``-d, so no half-written file is ever visible. A sample is done when its record, holding the output
      names, each file's size and checksum, and a fingerprint of the settings, is in a journal: each process appends one
      line per finished sample, after its files are in place, to its own
      ``<output>/.done/journal.<host>.<pid>.<ns>.txt`` (one ``write``, no extra file per sample; see
      ``outputs.Journal``). A restart (even after SIGKILL) skips done samples whose files are still as written (size,
      and crc32 of the first and last ``CHECKED_BYTES``) and redoes the rest, whose rewrite removes any
      leftover temporary file first; a sample whose redo fails leaves the label file. A redone sample's files of its
      earlier record that the current settings do not write (a preview, an angle no longer asked for) are removed
      before it is journalled, its earlier record's file list being carried by its redo line until then
      (``outputs.earlier_files``, ``outputs.write_sample``; never a name another sample may write).
      ``.uv-data.<host>.<pid>.partial`` folders of killed runs on this host are removed.
    * A worker process that dies (killed, out of memory) fails the sample it was on (``WORKER_DIED``), found by
      running the unfinished samples of the chunks then in flight again, each chunk's first alone; the run goes on.
      This process dying ends the worker processes too (``worker_pool._end_with_parent``).
    * ``trainDataLabel.txt`` (``trainDataLabel.part-KK-of-N.txt`` for a shard) is written at the end from the
      journals in sample order, one ``<image path> <npy path>`` line per output, so an interrupted and resumed run
      gives the same bytes as an uninterrupted one. A run with samples to write first removes the earlier label
      file and summary of its shard (``_remove_run_results``), so a run stopped midway leaves none of its own
      naming files it removed or rewrote (a label file joined from shard parts is the user's); one with nothing to
      write keeps them until its end (the label file's bytes unchanged).
      Paths are absolute by default (``os.path.abspath`` of the output folder), or relative to the output folder.
    * A bad sample (unreadable image, missing keys, NaN parameters, face outside the image) is logged at WARNING
      with its file and reason, counted in the summary and skipped; it leaves no output. So is, up front, a sample
      whose name the label file cannot hold (not UTF-8, or with whitespace), whose image has a suffix not read
      (``x.webp``: ``IMAGE_SUFFIXES`` are read) or that another sample's rotated copy also writes (``a_angle_15``
      beside ``a`` with angle 15: the later in sorted order, ``a_angle_15``, is refused; see
      ``_refused_samples``); a folder that cannot be listed is logged and listed in the summary's
      ``unreadable_folders``.
    * One run at a time writes ``output`` (``utils.atomic.output_lock``, taken before the output is touched: the
      hidden ``.generate.lock`` and, for a shard, ``.generate.shard-K-of-N.lock`` and ``.generate.shards-of-N.lock``
      stay there): a run is refused at once while another writes the whole output, the same shard or shards of
      another N; runs of different shards of one N go on side by side.
    * A write that the file system refuses for good (full, over quota, read-only: ``STORAGE_REFUSED``) stops the
      run at once, since every later sample would fail alike, with an OSError naming the file (or ``uv-data``);
      no summary or label file is written, and a rerun once there is room resumes.
    * ``summary.json`` (``summary.part-KK-of-N.json`` for a shard) records written / skipped / failed counts and
      every failure's reason; ``<output>/uv-data/`` receives PRNet's UV files for the model in use (or a copy of the
      ``uv_data`` folder given, checked against the model).

    Memory: making the samples takes a bounded amount whatever the dataset size: samples go through the generator
    in chunks of at most ``CHUNK_SIZE`` (128) whose vertices share one product (82 MB per process on a BFM-sized
    model, beside the generator's tiled copy of the basis, 146 MB, made before the workers fork and shared by them),
    each sample is written as soon as it is made, workers return only short records, and at most ``4 * workers``
    chunks of tasks are in flight. What grows with the dataset is this process's lists: every sample found (its
    paths, about 0.4 KB; a shard run lists all of them too) and the run's tasks (0.1 KB each), plus, while the
    resume checks run and again while the label file is written, the journal records of the run's samples only
    (``read_journals``, about 1.3 KB a sample with eight angles), let go before the samples are made.

    Args:
        root: input folder (300W-LP tree or image + ``.mat`` pairs); see ``discover_samples``.
        output: output folder (created); its layout is above.
        config: ``GenerationConfig`` (resolution, perturbation, angles, refit, posmap dtype, preview).
        model_path: ``BFM.mat`` of the real model, or None for the embedded default model; ``BFM_UV.mat`` must lie
            beside it, and ``BFM_info.mat`` (its ``segbin`` regions) too unless ``uv_data`` is given (InputFileError
            naming the file).
        workers: worker processes (default ``default_worker_count()``); 1 runs in this process.
        shard: ``(K, N)`` or ``"K/N"`` to run the K-th of N contiguous blocks, or None for all.
        limit: keep only the first ``limit`` samples (before sharding), or None.
        seed: base seed; the per-sample seed is ``sample_seed(seed, rel)``.
        relative_paths: label paths relative to ``output`` instead of absolute.
        progress: show the progress bar on stderr.
        generator_factory: ``f(model_path, config) -> generator`` with ``process_iter(jobs)`` (or
            ``process_many(jobs)``) and ``process(image, mat, seed)`` (default ``default_generator_factory``);
            must be a module-level function where processes spawn.
        uv_data: an existing uv-data folder (e.g. PRNet's) to copy into ``output/uv-data`` instead of building one
            for the model; InputFileError (a ValueError) naming the folder when it does not fit the model
            (``uv_layout.check_uv_data_fits``) or the resolution, or a file of it is unreadable.
    Returns:
        the summary dict, also written to ``output/summary.json`` (or its shard name).
    Raises:
        OSError: naming the file, for a write the file system refuses for good (see above); BlockingIOError naming
            ``output``, when another run writes it (``output_lock``).
    """
    started = time.monotonic()
    shard, workers = _checked_run_arguments(root, output, shard, limit, workers, relative_paths)
    output = Path(output)
    unreadable = []
    discovered, samples = _selected_samples(root, output, limit, shard, unreadable)
    with output_lock(output, "face3d generate", shard):
        factory = default_generator_factory if generator_factory is None else generator_factory
        model_id = "default" if model_path is None else os.path.abspath(model_path)
        fingerprint = config_fingerprint(config, model_identity(model_path), seed)
        logger.debug("settings fingerprint %s (model %s, seed %d)", fingerprint, model_id, seed)
        posmap_dtype = str(np.dtype(config.posmap_dtype))
        generator = factory(model_path, config)
        _write_uv_data(generator, output, config, uv_data, model_path)
        state = RunState(generator, str(output), posmap_dtype, fingerprint)
        refused = _refused_samples(samples, discovered, config.angles)
        refused_rels = {rel for rel, _, _ in refused}
        accepted = [ref for ref in samples if ref.rel not in refused_rels]
        pending = _prepare_resume(output, shard, accepted, discovered, fingerprint, seed, workers, state.journal)
        tally = _Tally(samples, len(samples) - len(pending) - len(refused), progress)
        if refused:
            tally.add(refused)
        run_workers = min(workers, max(len(pending), 1))
        try:
            run_tasks(state, (factory, model_path, config, str(output), posmap_dtype, fingerprint), pending,
                       run_workers, tally.add)
        finally:
            tally.close()
            state.folders.close()
            state.journal.close()
        label_path = output / label_file_name(shard)
        # a refused sample's record from an earlier version's run must not put a second line for its outputs
        n_lines = write_label_file(label_path, output, accepted, fingerprint, relative=relative_paths)
        summary = {
            "root": os.path.abspath(root), "output": os.path.abspath(output), "label_file": os.path.abspath(label_path),
            "label_paths": "relative" if relative_paths else "absolute",
            "model": model_id, "shard": None if shard is None else f"{shard[0]}/{shard[1]}", "limit": limit,
            "seed": int(seed), "workers": run_workers, "fingerprint": fingerprint,
            "config": dataclasses.asdict(config), "samples": len(samples), "label_lines": n_lines,
            "unreadable_folders": unreadable, **tally.summary(time.monotonic() - started),
        }
        atomic_write_bytes(output / summary_file_name(shard),
                           (json.dumps(summary, indent=2, default=str) + "\n").encode("utf-8"))
        return summary


def _prepare_resume(output, shard, accepted, discovered, fingerprint, seed, workers, journal):
    """The ``SampleTask``s of the ``accepted`` samples not done under ``fingerprint`` with their files intact
    (``intact_done``), in order, each replacing the files of its earlier record that another sample of
    ``discovered`` may not write (``_replaced_files``). When there are any, the earlier label file and summary of
    ``shard`` are removed (``_remove_run_results``) and each of those samples with a record gets a redo line in
    ``journal`` (``Journal.mark_redo``): its record must not outlive the rewrite, and its earlier files stay known
    (carried by the redo line) until the rewrite removes those the settings no longer write.

    The journals are read here, for the ``accepted`` samples only, and their records are let go on return: the
    label file reads them again at the end, and the worker processes, forked meanwhile, do not inherit them."""
    latest = read_journals(output, {ref.rel for ref in accepted})
    intact = intact_done(output, accepted, latest, fingerprint, threads=min(32, 4 * workers))
    todo = [ref for ref in accepted if ref.rel not in intact]
    earlier = {ref.rel: earlier_files(latest[ref.rel]) for ref in todo if ref.rel in latest}
    discovered_rels = {ref.rel for ref in discovered} if earlier else set()
    pending = [SampleTask(ref, sample_seed(seed, ref.rel), _replaced_files(ref, earlier[ref.rel], discovered_rels)
                          if ref.rel in earlier else ()) for ref in todo]
    _log_resume(len(intact), pending, latest, fingerprint)
    if pending:
        _remove_run_results(output, shard)
    journal.mark_redo(list(earlier), earlier)
    return pending


def _remove_run_results(output, shard):
    """Remove the label file and summary an earlier run of ``shard`` left in ``output`` (one not there is skipped),
    before this run writes or removes any sample's files: they list the earlier outputs, and a run stopped before
    its end, which writes both again, must leave no label file naming a file it removed or rewrote."""
    for name in (label_file_name(shard), summary_file_name(shard)):
        (output / name).unlink(missing_ok=True)


def _checked_run_arguments(root, output, shard, limit, workers, relative_paths):
    """``generate_dataset``'s arguments checked: returns (shard as (K, N) or None, worker count).

    Raises:
        ValueError: a bad shard, limit or worker count.
        InputFileError: an output folder the label file cannot name (see ``label_text_problem``) or equal to root.
    """
    shard = parse_shard(shard if shard is None or isinstance(shard, str) else f"{shard[0]}/{shard[1]}")
    if limit is not None and int(limit) < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    workers = default_worker_count() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    problem = None if relative_paths else label_text_problem(os.path.abspath(output))
    if problem:
        raise InputFileError(printable_path(os.path.abspath(output)), f"the output path {problem}: give --label-paths "
                                                                  f"relative or another output folder")
    if os.path.realpath(output) == os.path.realpath(root):
        raise InputFileError(output, "the output must be a folder other than root (the crops would replace the "
                                     "input images)")
    return shard, workers


def _selected_samples(root, output, limit, shard, unreadable):
    """``(discovered, samples)``: every sample under ``root`` (the output folder excluded), and the run's ones: the
    first ``limit`` of them, then the shard's block. ``unreadable`` receives the folders that cannot be listed (see
    ``discover_samples``).

    Raises:
        InputFileError: ``root`` holds no sample at all (and no folder that could not be listed).
    """
    discovered = discover_samples(root, exclude=[output], unreadable=unreadable)
    if not discovered and not unreadable:
        raise InputFileError(root, "no samples (an image with a .mat of the same name) in this folder or below")
    samples = discovered if limit is None else discovered[:int(limit)]
    samples = samples if shard is None else select_shard(samples, *shard)
    if logger.isEnabledFor(logging.DEBUG):
        for folder, count in sorted(collections.Counter(ref.folder for ref in discovered).items()):
            logger.debug("%d samples in %s", count, printable_path(str(Path(root, folder))))
        logger.debug("%d samples found under %s; %d of them in this run (--limit %s, --shard %s)", len(discovered),
                     printable_path(str(root)), len(samples), limit, shard and f"{shard[0]}/{shard[1]}")
    return discovered, samples


def _refused_samples(samples, discovered, angles):
    """The ``samples`` refused up front, as failure records ``(rel, "failed", reason)``: a name the label file
    cannot hold (``label_text_problem``), an image file of a suffix not read (``x.webp`` beside ``x.mat``, which
    ``discover_samples`` lists when there is no ``IMAGE_SUFFIXES`` file), or a name that another sample's rotated
    copy also writes.

    A sample writes ``<stem>`` and ``angle_name(stem, deg)`` for each of ``angles`` in the folder mirroring its
    own. Rotated copies of two stems never share a name (the degrees after a name's last ``_angle_`` hold no
    underscore, so the name gives its stem back), so a clash is a sample ``<stem>_angle_<deg>`` beside a sample
    ``<stem>``: the later of the two in sorted order, ``<stem>_angle_<deg>``, is refused. ``<stem>`` is looked for
    among ``discovered`` (every sample, before ``--limit`` and ``--shard``), so that every shard refuses the same
    samples.
    """
    suffixes = {angle_name("", angle) for angle in angles}
    by_rel = {ref.rel: ref for ref in discovered} if suffixes else {}
    refused = []
    for ref in samples:
        mat = printable_path(ref.mat_path)
        base, tag, degrees = ref.rel.rpartition("_angle_")
        first = by_rel.get(base) if tag + degrees in suffixes else None
        if problem := label_text_problem(ref.rel):
            refused.append((ref.rel, "failed", f"{mat}: the name {problem}; rename it"))
        elif Path(ref.image_path).suffix.lower() not in IMAGE_SUFFIXES:
            refused.append((ref.rel, "failed", f"{printable_path(ref.image_path)}: generate reads a sample's image "
                                               f"only from a {'/'.join(IMAGE_SUFFIXES)} file (convert it)"))
        elif first is not None:
            refused.append((ref.rel, "failed", f"{mat}: its output name {ref.rel} is also the name of the "
                                               f"{degrees}-degree copy of sample {printable_path(first.mat_path)}, "
                                               f"which sorts first and is kept; rename one of them"))
    return refused


def _replaced_files(ref, earlier, discovered_rels):
    """The names of ``earlier`` (file names of sample ``ref``'s earlier outputs, ``earlier_files``) that its
    rewrite removes unless it writes them again: all but those another sample of ``discovered_rels`` may write.
    A sample ``s`` writes ``s.jpg``, ``s.npy`` and ``s_preview.png`` only, so a name's possible writers are its
    stem and, for a ``_preview`` stem, that stem without the suffix: ``a_angle_15.jpg``, written as ``a``'s
    15-degree copy by a run that refused the sample ``a_angle_15``, is that sample's crop under other angles."""
    prefix = f"{ref.folder}/" if ref.folder else ""

    def another_sample_may_write(name):
        stem = name.rpartition(".")[0]
        writers = {stem, stem.removesuffix("_preview")}
        return any(prefix + writer != ref.rel and prefix + writer in discovered_rels for writer in writers)

    return tuple(name for name in earlier if not another_sample_may_write(name))


def intact_done(output, samples, latest, fingerprint, threads):
    """The rels of ``samples`` (with ``rel`` and ``folder``) done under ``fingerprint`` according to ``latest``
    (``read_journals``) whose files are still as written (``damaged_outputs``),
    checked on ``threads`` threads, since waiting for the files' ends from disk is what a resume spends its time
    on; a damaged sample is logged. Each record is decoded once, in the thread checking it (``JournalRecords``
    keeps them as lines)."""
    def check(ref):  # (done, its files' problem or None)
        record = latest.get(ref.rel)
        return (True, damaged_outputs(output, ref, record)) if is_done(record, fingerprint) else (False, None)

    with cf.ThreadPoolExecutor(threads) as pool:
        checks = list(pool.map(check, samples))
    for ref, (done, problem) in zip(samples, checks):
        if done and problem:
            logger.warning("redoing sample %s: %s", printable_path(ref.rel), problem)
    return {ref.rel for ref, (done, problem) in zip(samples, checks) if done and problem is None}


def _log_resume(skipped, pending, latest, fingerprint):
    """DEBUG lines of what the journals ``latest`` (``read_journals``) left to do: the count of samples skipped as
    done, and each sample with a record that is redone, with the reason (a damaged one was logged at WARNING by
    ``intact_done``)."""
    if not logger.isEnabledFor(logging.DEBUG):
        return
    logger.debug("%d samples already done under these settings: skipped; %d to write", skipped, len(pending))
    for ref, _, _ in pending:
        record = latest.get(ref.rel)
        if record is None or is_done(record, fingerprint):  # never done, or damaged
            continue
        if record.get("redo"):
            reason = "an earlier run began to rewrite it and did not finish"
        elif record.get("fingerprint") != fingerprint:
            reason = f"done under other settings or another model (fingerprint {record.get('fingerprint')})"
        else:
            reason = "its record holds no file checks (an earlier version's)"
        logger.debug("redoing sample %s: %s", printable_path(ref.rel), reason)


class _Tally:
    """Counts the workers' records (written, failed with the reason logged) and shows them on the progress bar."""

    def __init__(self, samples, skipped, progress):
        self.by_rel = {ref.rel: ref for ref in samples}
        self.skipped, self.written, self.failed, self.outputs_written = skipped, 0, 0, 0
        self.failures = []
        self.bar = Progress(len(samples), desc="generate", enabled=progress, initial=skipped)
        self.bar.postfix = f"{skipped} skipped" if skipped else ""

    def add(self, records):
        for rel, status, detail in records:
            if status == "written":
                self.written += 1
                self.outputs_written += detail
            else:
                self.failed += 1
                ref = self.by_rel[rel]
                image, mat = printable_path(ref.image_path), printable_path(ref.mat_path)
                logger.warning("skipping sample %s (image %s): %s", mat, image, detail)
                self.failures.append({"sample": printable_path(rel), "image": image, "mat": mat, "reason": detail})
        notes = [f"{self.skipped} skipped"] * bool(self.skipped) + [f"{self.failed} failed"] * bool(self.failed)
        self.bar.update(len(records), postfix=", ".join(notes))

    def close(self):
        self.bar.close()

    def summary(self, elapsed):
        """The counts part of the run summary."""
        return {"written": self.written, "skipped": self.skipped, "failed": self.failed,
                "outputs_written": self.outputs_written, "elapsed_s": round(elapsed, 3),
                "samples_per_s": round(self.written / elapsed, 3) if elapsed > 0 else 0.0,
                "failures": sorted(self.failures, key=lambda f: f["sample"])}
