"""Atomic file writes: a hidden temporary twin in the same folder, renamed onto the target with ``os.replace``.

Readers never see a half-written file. The temporary name is deterministic (``.<name>.partial``, shortened near the
255-byte limit of a file name), so a job killed mid-write and run again removes its leftover and writes the name anew
instead of leaving it behind. Work that processes sharing a folder must do once (a set they all read) runs under
``exclusive_lock``; a run writing an output holds it under ``output_lock``, which refuses a second run of the same
output.
"""
import contextlib
import errno
import fcntl
import glob
import logging
import os
import shutil
import time
import zlib
from pathlib import Path

from face3d.utils.errors import os_error_at

__all__ = ["TEMP_SUFFIX", "temp_name", "temp_file_name", "names_no_file_but", "atomic_file", "atomic_write_bytes",
           "atomic_write_files", "write_file_set", "staging_folder", "exclusive_lock", "output_lock"]

logger = logging.getLogger(__name__)

TEMP_SUFFIX = ".partial"
_NAME_MAX = 255  # the longest file name the common file systems take (bytes on Linux, ext4 and tmpfs among them)
# flock's errors on a file system without locks (NFS without its lock service, Lustre mounted without flock)
_NO_LOCKS = frozenset({errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL})
_UNLOCKED_FOLDERS = set()  # the folders this process has warned run unlocked: one warning each, not one per lock


def temp_name(path) -> Path:
    """The hidden temporary twin of ``path`` in the same folder (``temp_file_name``)."""
    path = Path(path)
    return path.with_name(temp_file_name(path.name))


def temp_file_name(name: str) -> str:
    """The hidden temporary twin of the file name ``name``: ``.<name>.partial``; where that passes the 255 bytes a
    file name may have, ``.<start of name>~<crc32 of name>.partial`` within them (the same twin every time)."""
    twin = f".{name}{TEMP_SUFFIX}"
    if len(os.fsencode(twin)) <= _NAME_MAX:
        return twin
    tag = f"~{zlib.crc32(os.fsencode(name)):08x}{TEMP_SUFFIX}"
    head = name
    while len(os.fsencode(f".{head}{tag}")) > _NAME_MAX:  # whole characters off the end
        head = head[:-1]
    return f".{head}{tag}"


@contextlib.contextmanager
def atomic_file(path):
    """Open the temporary twin of ``path`` for binary writing (creating the folder); on success it replaces
    ``path``, on any error it is removed. An OSError naming no file (a failed write or close: a full disk) or the
    temporary twin (a read-only file system) is raised naming ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        with _new_temp_file(tmp) as f:
            yield f
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):  # a read-only file system refuses even this: the first error is the one
            tmp.unlink(missing_ok=True)
        if names_no_file_but(error, tmp):
            raise os_error_at(error, path) from error
        raise


def _new_temp_file(tmp):
    """The temporary twin ``tmp`` made anew and open for binary writing. A file left at its name (a killed run's) is
    removed, never written through: it may be a hard link to another file (``face3d fit`` links photos into its
    output through such names), which the writes would change."""
    try:
        return open(tmp, "xb")
    except FileExistsError:
        tmp.unlink()
        return open(tmp, "xb")


def names_no_file_but(error, tmp):
    """Whether error is an OSError naming no file (a failed write or close) or only the temporary twin tmp."""
    return isinstance(error, OSError) and error.filename in (None, str(tmp))


def atomic_write_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` through its temporary twin and ``os.replace``."""
    with atomic_file(path) as f:
        f.write(data)


def atomic_write_files(files):
    """Write ``files`` ({path: bytes}) so that they appear together or not at all: each is written to its temporary
    twin, and once all are written the twins are renamed onto their paths in the given order. On any error the twins
    and the files already renamed are removed; an OSError is raised naming the file as ``atomic_file``'s are."""
    paths = [Path(p) for p in files]
    renamed, current = [], None
    try:
        for current, data in zip(paths, files.values()):
            current.parent.mkdir(parents=True, exist_ok=True)
            with _new_temp_file(temp_name(current)) as f:
                f.write(data)
        for current in paths:
            os.replace(temp_name(current), current)
            renamed.append(current)
    except BaseException as error:
        for leftover in [*map(temp_name, paths), *renamed]:
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)
        if current is not None and names_no_file_but(error, temp_name(current)):
            raise os_error_at(error, current) from error
        raise



def write_file_set(paths, contents):
    """Write a set of files that belong together, such as a report's: ``contents[kind]`` (bytes) to
    ``paths[kind]`` for every kind whose content is not None, together (``atomic_write_files``, renamed in the
    order of ``contents``), then remove the file of every kind whose content is None, which an earlier run may have
    left and would not match. Returns ``{kind: str(path)}`` of the files written, in the order of ``paths``."""
    atomic_write_files({paths[kind]: data for kind, data in contents.items() if data is not None})
    for kind, data in contents.items():
        if data is None:
            paths[kind].unlink(missing_ok=True)
    return {kind: str(path) for kind, path in paths.items() if contents[kind] is not None}

@contextlib.contextmanager
def staging_folder(path):
    """A fresh hidden folder ``temp_name(path)`` (a killed run's leftover cleared first) for files that must appear
    together or not at all: the caller moves them out into ``path``'s folder, and the staging folder is removed
    afterwards whatever happened. An OSError naming a file of the staging folder is raised naming that file where
    it was to go, in ``path``'s folder."""
    staging = temp_name(path)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()  # inside: a signal handled as the call returns (Ctrl-C, SIGTERM) then removes the folder
        yield staging
    except OSError as error:
        if error.filename is not None and Path(error.filename).parent == staging:
            raise os_error_at(error, Path(path).parent / Path(error.filename).name) from error
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def exclusive_lock(path):
    """Hold an exclusive ``fcntl.flock`` lock on the file ``path`` (created empty, with its folder, if missing) for
    the block, waiting while another process holds it, so that processes sharing a folder do a piece of work one at
    a time. The kernel releases the lock when its holder closes the file or dies, so a killed holder never blocks
    the others. The file stays: a waiting process would lock a removed file while a newcomer locked a new one.
    A wait is logged (INFO); on a file system without locks the block runs unlocked, with a warning."""
    fd = _open_lock_file(path)
    try:
        if not _try_lock(fd, path, fcntl.LOCK_EX):
            logger.info("waiting for %s: another process holds it", path)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


# The output locks this process holds (the real paths of their last lock files): taking one again is the same run's
# (face3d generate holds its output while it renders the default set there, then runs generate_dataset)
_HELD_OUTPUT_LOCKS = set()


@contextlib.contextmanager
def output_lock(output, command, shard=None, option="--output", output_is_file=False):
    """Hold ``output``, written by one run of ``command`` (``"face3d generate"``), for the block, refusing at once
    (not waiting) when another run holds it: two runs writing one output remove, rewrite and rename each other's
    files. The lock is an ``fcntl.flock`` lock on a hidden file that stays (see ``exclusive_lock``):
    ``<output>/.<word>.lock``, ``<word>`` the command's last word, in an output folder (made with its parents if
    missing), or ``.<name>.lock`` beside an output file (``output_is_file``). A run of shard ``(K, N)`` holds that
    file shared and ``.<word>.shard-K-of-N.lock`` exclusively, so that runs of the other shards write the output
    beside it while a second run of its shard, or a run of the whole output, is refused. It also holds
    ``.<word>.shards-of-N.lock`` shared and refuses while a run holds that file of another ``N``: shards of another
    ``N`` are other blocks of the same samples. (Each run takes its own ``N``'s file before it tries the others', so
    of two runs starting together at least one is refused.) Taking a lock this process holds already runs the block
    in that hold. On a file system without locks the block runs unlocked, with ``exclusive_lock``'s warning.

    Raises:
        BlockingIOError naming ``output``, whose message is ``"another <command> run is writing it[ (shard K/N)| (shards
        of M)| (shards of another N)]; wait for it to end or use another <option>"`` (``face3d.cli`` prints
        ``<prog>: error: <output>: <message>`` and exits with status 2), when another process holds the output, the
        shard, shards of ``M``, or this run's ``shards-of-N`` file alone (a run of another N checking it).
    """
    output = Path(output)
    base = output.with_name(f".{output.name}") if output_is_file else output / f".{command.split()[-1]}"
    locks = [(Path(f"{base}.lock"), fcntl.LOCK_EX if shard is None else fcntl.LOCK_SH, "", _try_lock)]
    if shard is not None:
        k, n = shard
        locks.append((Path(f"{base}.shards-of-{n}.lock"), fcntl.LOCK_SH, " (shards of another N)",
                      _try_lock_past_probes))
        locks.append((Path(f"{base}.shard-{k}-of-{n}.lock"), fcntl.LOCK_EX, f" (shard {k}/{n})", _try_lock))
    held = os.path.realpath(locks[-1][0])
    if held in _HELD_OUTPUT_LOCKS:
        yield
        return

    def refuse(which):
        return BlockingIOError(errno.EWOULDBLOCK, f"another {command} run is writing it{which}; wait for it to end or "
                                                  f"use another {option}", str(output))
    with contextlib.ExitStack() as stack:
        for path, operation, which, take in locks:
            fd = _open_lock_file(path)
            stack.callback(os.close, fd)  # releases the lock
            if not take(fd, path, operation):
                raise refuse(which)
        if shard is not None:
            other = _other_shard_count_held(base, shard[1])
            if other is not None:
                raise refuse(f" (shards of {other})")
        _HELD_OUTPUT_LOCKS.add(held)
        stack.callback(_HELD_OUTPUT_LOCKS.discard, held)
        yield


def _other_shard_count_held(base, n):
    """The ``M`` of a ``<base>.shards-of-M.lock`` file, M other than ``n``, that another run holds (found by taking
    it exclusively for a moment, ``_try_lock_past_probes``), or None."""
    prefix = f"{base.name}.shards-of-"
    for path in sorted(base.parent.glob(f"{glob.escape(prefix)}*.lock")):
        m = path.name[len(prefix):-len(".lock")]
        if not (m.isascii() and m.isdigit()) or int(m) == n:
            continue
        fd = _open_lock_file(path)
        try:
            if not _try_lock_past_probes(fd, path, fcntl.LOCK_EX):
                return int(m)
        finally:
            os.close(fd)  # releases the moment's lock
    return None


def _try_lock_past_probes(fd, path, operation, tries=5, pause=0.02):
    """``_try_lock``, tried ``tries`` times ``pause`` seconds apart: a run probing a shard-count lock holds it
    exclusively for microseconds (``_other_shard_count_held``), which must not refuse another run starting then."""
    for _ in range(tries - 1):
        if _try_lock(fd, path, operation):
            return True
        time.sleep(pause)
    return _try_lock(fd, path, operation)


def _open_lock_file(path):
    """A descriptor of the lock file ``path``, created empty (with its folder) if missing. One made by another user
    (mode 0644 under the usual umask) is opened read-only: flock needs no write access, and a shared output folder
    lets every user of the group replace its files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        return os.open(path, os.O_RDONLY)


def _try_lock(fd, path, operation):
    """Whether the ``fcntl.flock`` lock ``operation`` (LOCK_EX or LOCK_SH) is taken, without waiting, on the lock
    file ``path`` open as ``fd``: False when another process holds a lock in the way. True as well on a file system
    without locks, with a warning (once per folder and process; the work runs unlocked). A read-only lock file (made
    by another user, ``_open_lock_file``) that the file system will not lock exclusively (NFS locks only files open
    for writing) raises a PermissionError naming ``path`` and the remedy; another error of flock is raised naming
    ``path``."""
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as error:
        if error.errno == errno.EBADF and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            raise PermissionError(errno.EACCES, "another user's lock file, read-only to you, and this file system "
                                                "locks only files open for writing (NFS does): give it group write "
                                                "access (chmod g+w) or remove it", str(path)) from error
        if error.errno not in _NO_LOCKS:
            raise os_error_at(error, path) from error
        folder = os.path.dirname(os.path.abspath(path))
        if folder not in _UNLOCKED_FOLDERS:
            _UNLOCKED_FOLDERS.add(folder)
            logger.warning("%s: the file system has no locks (%s): processes sharing this folder may not take turns",
                           path, error.strerror)
    return True
