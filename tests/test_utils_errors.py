"""The input-file exception, a refused write naming its file, and the one .mat reader."""
import contextlib
import errno
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from _fixtures import held_lock

from face3d.morphable_model import load
from face3d.trainset.outputs import _write_file_atomically
from face3d.utils.atomic import (
    atomic_file,
    atomic_write_bytes,
    atomic_write_files,
    exclusive_lock,
    output_lock,
    staging_folder,
    temp_name,
)
from face3d.utils.errors import STORAGE_REFUSED, InputFileError, os_error_at
from face3d.utils.matfile import read_mat


def test_input_file_error_names_the_file_and_survives_pickling():
    error = InputFileError("a/b.jpg", "cannot decode the image")
    assert str(error) == "a/b.jpg: cannot decode the image" and error.path == "a/b.jpg"
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))  # process pools send it back to the parent
    assert type(copy) is InputFileError and str(copy) == str(error) and copy.problem == error.problem
    assert str(InputFileError(None, "no usable sample among 3")) == "no usable sample among 3"


def test_input_file_error_names_the_line():
    error = InputFileError("m.obj", "face has 2 vertices", 7)
    assert str(error) == "m.obj:7: face has 2 vertices" and error.line == 7 and error.path == "m.obj"
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) and copy.line == 7


def test_a_refused_write_names_its_file_and_survives_pickling(tmp_path):
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what a failed write or close raises
    error = os_error_at(full, tmp_path / "a.npy")
    assert (error.errno, error.strerror, error.filename) == (errno.ENOSPC, "No space left on device",
                                                             str(tmp_path / "a.npy"))
    assert error.errno in STORAGE_REFUSED and errno.EACCES not in STORAGE_REFUSED
    assert type(os_error_at(OSError(errno.ENOENT, "gone"), "x")) is FileNotFoundError
    copy = pickle.loads(pickle.dumps(error))  # process pools send it back to the parent
    assert (copy.errno, copy.filename) == (errno.ENOSPC, str(tmp_path / "a.npy"))


def test_atomic_file_names_its_path_in_a_refused_write(tmp_path):
    path = tmp_path / "label.txt"
    with pytest.raises(OSError) as raised, atomic_file(path) as f:
        f.write(b"a line\n")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as the close of a full disk's file does
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, str(path))
    assert not path.exists() and not temp_name(path).exists()
    missing = tmp_path / "missing.mat"
    with pytest.raises(FileNotFoundError) as raised, atomic_file(path):
        open(missing, "rb")  # an error naming its own file keeps it
    assert raised.value.filename == str(missing)


def test_a_file_set_whose_second_rename_fails_leaves_none_of_its_files(tmp_path, monkeypatch):
    """The files of a set appear together or not at all: when the disk refuses the second rename, the first file,
    already in place, is removed with the twins, and the error names the file whose rename failed."""
    paths = [tmp_path / "report.json", tmp_path / "report.csv", tmp_path / "report.txt"]
    real_replace, renames = os.replace, []

    def replace_refusing_the_second(src, dst):
        renames.append(dst)
        if len(renames) == 2:  # as os.replace reports it: both names, the twin first
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src), None, str(dst))
        real_replace(src, dst)
    monkeypatch.setattr(os, "replace", replace_refusing_the_second)
    with pytest.raises(OSError) as raised:
        atomic_write_files({path: path.name.encode() for path in paths})
    assert renames == paths[:2]
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, str(paths[1]))
    assert list(tmp_path.iterdir()) == []


@contextlib.contextmanager
def _atomic_writers(folder):
    """``{kind: write(path)}`` for each atomic writer, writing b"new" into ``folder`` (the per-sample writer through
    the folder's descriptor, closed on exit)."""
    folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield {"atomic_file": lambda path: atomic_write_bytes(path, b"new"),
               "atomic_write_files": lambda path: atomic_write_files({path: b"new"}),
               "per-sample file": lambda path: _write_file_atomically(folder_fd, path.name, [memoryview(b"new")])}
    finally:
        os.close(folder_fd)


def test_a_leftover_twin_linked_to_another_file_is_replaced_not_written_through(tmp_path):
    """A killed run's twin may be a hard link to another file (``face3d fit`` links photos through such names):
    every atomic write removes it and writes a new file, leaving the other file's bytes as they were."""
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"the user's photo")
    out = tmp_path / "out"
    out.mkdir()
    with _atomic_writers(out) as writes:
        for name, write in writes.items():
            path = out / f"{name}.jpg"
            os.link(photo, temp_name(path))
            write(path)
            assert (path.read_bytes(), photo.read_bytes()) == (b"new", b"the user's photo"), name
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{name}.jpg" for name in writes)


@pytest.mark.parametrize("length", [246, 247, 250, 255])
def test_a_name_up_to_the_file_systems_limit_is_written_through_a_twin_that_fits(tmp_path, length):
    """The twin ``.<name>.partial`` of a name of 247 to 255 bytes would pass the 255-byte limit: such a name's twin
    is shortened (the same twin every time, so a killed run's leftover is still found), and every write succeeds."""
    out = tmp_path / "out"
    out.mkdir()
    with _atomic_writers(out) as writes:
        for i, (kind, write) in enumerate(writes.items()):
            path = out / (str(i) * (length - 4) + ".jpg")
            twin = temp_name(path)
            assert twin.parent == path.parent and twin.name.startswith(".") and twin.name.endswith(".partial")
            assert len(os.fsencode(twin.name)) <= 255 and temp_name(path) == twin, kind
            if length <= 246:
                assert twin.name == f".{path.name}.partial"
            twin.write_bytes(b"a killed run's leftover")
            write(path)
            assert path.read_bytes() == b"new" and not twin.exists(), kind
    assert len(list(out.iterdir())) == len(writes)


def test_atomic_file_on_a_read_only_file_system_names_its_path(tmp_path, monkeypatch):
    """There even removing the missing temporary twin fails (EROFS, not ENOENT): the first error is the one raised,
    naming the file asked for, not its hidden twin."""
    from pathlib import Path

    path = tmp_path / "label.txt"
    read_only = OSError(errno.EROFS, os.strerror(errno.EROFS))

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(temp_name(path)))
    monkeypatch.setattr("builtins.open", refuse)
    monkeypatch.setattr(Path, "unlink", lambda self, missing_ok=False: (_ for _ in ()).throw(read_only))
    with pytest.raises(OSError) as raised, atomic_file(path):
        pass
    assert (raised.value.errno, raised.value.filename) == (errno.EROFS, str(path))


def test_a_lock_on_a_file_system_without_locks_warns_and_runs_the_block(tmp_path, monkeypatch, caplog):
    """NFS without its lock service, Lustre without flock: the work runs unlocked, with a warning; another error
    of flock names the lock file."""
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    ran = []
    with caplog.at_level("WARNING", logger="face3d.utils.atomic"):
        with exclusive_lock(tmp_path / "set" / ".lock"):
            ran.append(True)
    assert ran == [True]
    assert caplog.messages == [f"{tmp_path / 'set' / '.lock'}: the file system has no locks "
                               f"({os.strerror(errno.ENOLCK)}): processes sharing this folder may not take turns"]

    def broken(fd, operation):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(fcntl, "flock", broken)
    with pytest.raises(OSError) as raised, exclusive_lock(tmp_path / "set" / ".lock"):
        ran.append(False)
    assert (raised.value.errno, raised.value.filename, ran) == (errno.EIO, str(tmp_path / "set" / ".lock"), [True])


def test_an_output_lock_refuses_another_holder_and_nests_in_its_own(tmp_path, monkeypatch, caplog):
    """The lock of an output file lies beside it; one this process holds is taken again inside the hold (face3d
    generate holds its output while it renders the default set there, then generate_dataset takes it); on a file
    system without locks the run goes on, with exclusive_lock's warning."""
    import fcntl

    h5 = tmp_path / "packs" / "train.h5"
    ran = []
    with held_lock(tmp_path / "packs" / ".train.h5.lock"):
        with pytest.raises(BlockingIOError) as raised, output_lock(h5, "face3d pack", option="output file",
                                                                   output_is_file=True):
            ran.append("beside a holder")
    assert (raised.value.errno, raised.value.filename, raised.value.strerror) == (
        errno.EWOULDBLOCK, str(h5), "another face3d pack run is writing it; wait for it to end or use another output "
                                    "file")
    out = tmp_path / "out"
    with output_lock(out, "face3d generate", (1, 2)), output_lock(out, "face3d generate", (1, 2)):
        ran.append("nested")
        with pytest.raises(BlockingIOError), held_lock(out / ".generate.shard-1-of-2.lock"):
            pass
    with held_lock(out / ".generate.shard-1-of-2.lock"):  # released at the end of the outer hold
        ran.append("released")
    assert ran == ["nested", "released"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == [".generate.lock", ".generate.shard-1-of-2.lock",
                                                           ".generate.shards-of-2.lock", ".train.h5.lock", "out",
                                                           "packs"]

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with caplog.at_level("WARNING", logger="face3d.utils.atomic"), output_lock(out, "face3d fit"):
        ran.append("unlocked")
    assert ran[-1] == "unlocked" and caplog.messages == [
        f"{out / '.fit.lock'}: the file system has no locks ({os.strerror(errno.ENOLCK)}): processes sharing this "
        f"folder may not take turns"]


def test_a_shard_run_without_locks_warns_once(tmp_path, monkeypatch, caplog):
    """A shard run takes three lock files and probes the other shard counts' files: on a file system without locks
    that is one warning for the folder, not one per file."""
    import fcntl

    out = tmp_path / "out"
    out.mkdir()
    (out / ".generate.shards-of-3.lock").touch()

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with caplog.at_level("WARNING", logger="face3d.utils.atomic"):
        with output_lock(out, "face3d generate", (1, 2)):
            pass
        with output_lock(out, "face3d generate", (2, 2)):
            pass
    assert caplog.messages == [f"{out / '.generate.lock'}: the file system has no locks ({os.strerror(errno.ENOLCK)})"
                               f": processes sharing this folder may not take turns"]


def test_a_read_only_lock_file_on_nfs_is_refused_naming_it_and_the_remedy(tmp_path, monkeypatch):
    """NFS locks a file exclusively only through a descriptor open for writing (flock becomes a POSIX lock there,
    EBADF otherwise); another user's lock file (0644) opens read-only. The run stops, naming the file and what to do,
    instead of an unexplained 'Bad file descriptor'. A shared lock on it is taken as before."""
    import fcntl

    out = tmp_path / "out"
    lock = out / ".generate.lock"
    out.mkdir()
    lock.touch()
    real_open, real_flock = os.open, fcntl.flock

    def open_as_another_user(path, flags, *args, **kwargs):
        if str(path) == str(lock) and flags & os.O_ACCMODE != os.O_RDONLY:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    def nfs_flock(fd, operation):
        if operation & fcntl.LOCK_EX and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return real_flock(fd, operation)

    monkeypatch.setattr(os, "open", open_as_another_user)
    monkeypatch.setattr(fcntl, "flock", nfs_flock)
    with pytest.raises(PermissionError) as raised, output_lock(out, "face3d generate"):
        pass
    assert (raised.value.errno, raised.value.filename, raised.value.strerror) == (
        errno.EACCES, str(lock), "another user's lock file, read-only to you, and this file system locks only files "
                                 "open for writing (NFS does): give it group write access (chmod g+w) or remove it")
    with output_lock(out, "face3d generate", (1, 2)):  # shares the read-only file, locks its own shard files
        pass


def test_a_shard_run_is_refused_while_shards_of_another_count_write_the_output(tmp_path):
    """Shards of another N are other blocks of the same samples: a run of shard 1/2 is refused while a run of
    shards of 3 holds the output, and goes on once that run has ended (its lock file left behind) or beside a run of
    another shard of 2; a run of shards of 3 is then refused in turn. A file of the pattern whose N is not a number
    (here a superscript digit, which str.isdigit accepts and int refuses) is no run's and is passed over."""
    out = tmp_path / "out"
    out.mkdir()
    (out / ".generate.shards-of-\u00b2.lock").touch()
    refused = "another face3d generate run is writing it{}; wait for it to end or use another --output"
    with held_lock(out / ".generate.lock", shared=True), held_lock(out / ".generate.shards-of-3.lock", shared=True):
        with pytest.raises(BlockingIOError) as raised, output_lock(out, "face3d generate", (1, 2)):
            pass
        assert (raised.value.filename, raised.value.strerror) == (str(out), refused.format(" (shards of 3)"))
    with held_lock(out / ".generate.shards-of-2.lock"):  # held alone by a run of another N checking for shards of 2
        with pytest.raises(BlockingIOError) as raised, output_lock(out, "face3d generate", (1, 2)):
            pass
        assert raised.value.strerror == refused.format(" (shards of another N)")
    ran = []
    with output_lock(out, "face3d generate", (1, 2)), output_lock(out, "face3d generate", (2, 2)):
        ran.append("shards of 2")
        with pytest.raises(BlockingIOError) as raised, output_lock(out, "face3d generate", (1, 3)):
            pass
        assert raised.value.strerror == refused.format(" (shards of 2)")
    assert ran == ["shards of 2"]


def test_a_shard_run_is_not_refused_by_another_run_checking_the_shard_counts_for_a_moment(tmp_path, monkeypatch):
    """A run checking for shards of another N holds their lock file exclusively for a moment: a run starting then
    tries again and goes on (here its first attempt at each shard-count file meets such a check)."""
    import fcntl

    from face3d.utils import atomic

    out = tmp_path / "out"
    (out / ".generate.shards-of-3.lock").parent.mkdir(parents=True)
    (out / ".generate.shards-of-3.lock").touch()  # a finished run's
    flock, open_lock_file, names, met, pauses = fcntl.flock, atomic._open_lock_file, {}, set(), []

    def opened(path):  # the lock files' names by descriptor, for the flock below
        fd = open_lock_file(path)
        names[fd] = Path(path).name
        return fd

    def checked_for_a_moment(fd, operation):
        name = names[fd]
        if ".shards-of-" in name and name not in met:
            met.add(name)
            raise BlockingIOError(errno.EWOULDBLOCK, os.strerror(errno.EWOULDBLOCK))
        return flock(fd, operation)

    monkeypatch.setattr(atomic, "_open_lock_file", opened)
    monkeypatch.setattr(fcntl, "flock", checked_for_a_moment)
    monkeypatch.setattr(atomic.time, "sleep", pauses.append)
    with output_lock(out, "face3d generate", (1, 2)):
        assert met == {".generate.shards-of-2.lock", ".generate.shards-of-3.lock"}
    assert pauses == [0.02, 0.02]


def test_an_output_lock_file_another_user_made_is_locked_read_only(tmp_path, monkeypatch):
    """Another user's lock file (0644 under the usual umask) cannot be opened for writing, yet in a group-writable
    output folder this user may replace every file: the lock is taken on a read-only descriptor, and still refuses
    a second run."""
    out = tmp_path / "shared"
    out.mkdir()
    (out / ".generate.lock").touch()
    opened, os_open = [], os.open

    def as_another_user(path, flags, *args, **kwargs):
        if Path(path).name.endswith(".lock") and flags & os.O_ACCMODE != os.O_RDONLY:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        opened.append(flags & os.O_ACCMODE)
        return os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", as_another_user)
    with output_lock(out, "face3d generate"):
        monkeypatch.undo()  # the second run: a user who may write the lock file
        with pytest.raises(BlockingIOError), held_lock(out / ".generate.lock"):
            pass
    assert opened == [os.O_RDONLY]


def test_a_signal_handled_as_the_staging_folder_is_made_leaves_no_folder(tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM (face3d.cli) arriving during the mkdir is raised as the call returns, the folder made."""
    from pathlib import Path

    mkdir = Path.mkdir

    def made_then_interrupted(self, *args, **kwargs):
        mkdir(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "mkdir", made_then_interrupted)
    with pytest.raises(KeyboardInterrupt), staging_folder(tmp_path / "export"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_read_mat_round_trip_and_errors(tmp_path):
    good = tmp_path / "good.mat"
    scipy.io.savemat(good, {"x": np.arange(3.0)})
    assert np.array_equal(read_mat(good)["x"], [[0.0, 1.0, 2.0]])
    assert load.read_mat is read_mat
    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(InputFileError, match=r"bad\.mat: not a readable MATLAB \.mat file") as info:
        read_mat(bad)
    assert info.value.path == bad
    with pytest.raises(FileNotFoundError, match=r"missing\.mat: file not found"):
        read_mat(tmp_path / "missing.mat")


def test_read_mat_names_hdf5_files_and_pickles(tmp_path):
    """An HDF5 file (its signature at byte 0, or after a 512-byte user block) or a pickle is named as what it is, with
    the caller's hint; a MATLAB v7.3 file (HDF5 after MATLAB's header) keeps its own message."""
    import h5py

    plain, blocked, v73 = tmp_path / "plain.h5", tmp_path / "blocked.h5", tmp_path / "v73.mat"
    for path, userblock in ((plain, 0), (blocked, 512), (v73, 512)):
        with h5py.File(path, "w", userblock_size=userblock) as f:
            f["x"] = np.zeros(3)
    with open(v73, "r+b") as f:  # MATLAB's 128-byte header in the user block: text, subsystem offset, version, 'IM'
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116, b" ") + bytes(8) + b"\x00\x02IM")
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(pickle.dumps({"u": np.zeros(3)}, protocol=4))
    for path, kind in ((plain, "an HDF5 file"), (blocked, "an HDF5 file"), (pickled, "a Python pickle")):
        with pytest.raises(InputFileError) as plain_error:
            read_mat(path)
        assert str(plain_error.value) == f"{path}: {kind}, not a MATLAB .mat file"
        with pytest.raises(InputFileError) as hinted:
            read_mat(path, other_format_hint="convert it")
        assert str(hinted.value) == f"{path}: {kind}, not a MATLAB .mat file: convert it"
    with pytest.raises(InputFileError, match=r"^.*v73\.mat: MATLAB v7\.3 \(HDF5\) files are not supported; re-save it "
                                             r"in MATLAB with save\(\.\.\., '-v7'\)"):
        read_mat(v73, other_format_hint="convert it")


def test_read_mat_gives_the_storage_type_or_the_matlab_class(tmp_path):
    path = tmp_path / "logical.mat"
    scipy.io.savemat(path, {"mask": np.array([[True, False]])})  # a MATLAB logical, stored as uint8
    assert read_mat(path)["mask"].dtype == np.uint8  # the default, which every reader but the BFM converter uses
    mask = read_mat(path, mat_dtype=True)["mask"]
    assert mask.dtype == np.bool_ and mask.tolist() == [[True, False]]
