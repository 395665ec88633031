"""HDF5 packing of a label file and its reader (face3d.trainset.pack); budget < 3 s."""
import errno
import io
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from _pack_files import damage_chunk

import face3d.trainset.pack as pack_module
from face3d.cli import main
from face3d.trainset.pack import PackedTrainset, pack_label_file, read_label_file
from face3d.utils.errors import InputFileError

REPO = Path(__file__).resolve().parents[1]
R = 16


def _make_samples(folder, n, seed=0):
    """n (crop, map) pairs on disk; crops are PNG so that what is packed is exactly what was drawn."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    images, maps, lines = [], [], []
    for i in range(n):
        image = rng.integers(0, 256, (R, R, 3), dtype=np.uint8)
        posmap = (rng.random((R, R, 3)) * R).astype(np.float16)
        cv2.imwrite(str(folder / f"s{i}.png"), image[..., ::-1])
        np.save(folder / f"s{i}.npy", posmap)
        images.append(image)
        maps.append(posmap)
        lines.append((f"s{i}.png", f"s{i}.npy"))
    return np.stack(images), np.stack(maps), lines


def test_pack_round_trip_relative_and_absolute_paths(tmp_path):
    images, maps, lines = _make_samples(tmp_path / "data", 5)
    label = tmp_path / "data" / "trainDataLabel.txt"
    # mixed forms: relative to the label's folder, absolute, and a blank line
    text = [f"{a} {b}" for a, b in lines[:3]] + [""]
    text += [f"{tmp_path / 'data' / a} {tmp_path / 'data' / b}" for a, b in lines[3:]]
    label.write_text("\n".join(text) + "\n")
    assert len(read_label_file(label)) == 5

    h5 = tmp_path / "packed" / "train.h5"
    assert pack_label_file(label, h5, progress=False) == 5
    assert not list(h5.parent.glob("*.partial"))
    with PackedTrainset(h5) as ds:
        assert len(ds) == 5 and ds.resolution == R
        assert ds.images.dtype == np.uint8 and ds.posmaps.dtype == np.float16
        assert ds.images.chunks == (1, R, R, 3)
        assert ds.names == [f"s{i}" for i in range(5)]
        image, posmap = ds[2]
        np.testing.assert_array_equal(image, images[2])
        np.testing.assert_array_equal(posmap, maps[2])
        np.testing.assert_array_equal(ds[-1][0], images[4])
        got_images, got_maps = ds[[3, 0, 3]]  # any order, repeats allowed
        np.testing.assert_array_equal(got_images, images[[3, 0, 3]])
        np.testing.assert_array_equal(got_maps, maps[[3, 0, 3]])
        got_images, got_maps = ds[[-1, 0, -5]]  # negative indices count from the end, as numpy's do
        np.testing.assert_array_equal(got_images, images[[4, 0, 0]])
        np.testing.assert_array_equal(got_maps, maps[[4, 0, 0]])
        np.testing.assert_array_equal(ds[1:4][1], maps[1:4])
        mask = np.array([True, False, True, False, True])
        for selected in (mask, list(mask)):  # a boolean mask selects rows, like numpy's
            np.testing.assert_array_equal(ds[selected][0], images[mask])
            np.testing.assert_array_equal(ds[selected][1], maps[mask])
        with pytest.raises(IndexError):
            ds[5]
        with pytest.raises(IndexError, match="indices out of range for 5 samples"):
            ds[[0, -6]]
        with pytest.raises(IndexError, match="boolean mask of 4 values for 5 samples"):
            ds[mask[:4]]


def test_batches_cover_every_sample_once(tmp_path):
    images, maps, lines = _make_samples(tmp_path, 7, seed=1)
    label = tmp_path / "trainDataLabel.txt"
    label.write_text("".join(f"{a} {b}\n" for a, b in lines))
    h5 = tmp_path / "train.h5"
    pack_label_file(label, h5, posmap_dtype="float32", compression="lzf", progress=False)
    with PackedTrainset(h5) as ds:
        assert ds.posmaps.dtype == np.float32
        sizes = [len(b[0]) for b in ds.batches(3)]
        assert sizes == [3, 3, 1]
        assert [len(b[0]) for b in ds.batches(3, drop_last=True)] == [3, 3]
        seen = np.concatenate([b[0] for b in ds.batches(3, shuffle=True, seed=4)])
        # every sample exactly once, in a shuffled order that the seed fixes
        order = [int(np.flatnonzero((images == s).all(axis=(1, 2, 3)))[0]) for s in seen]
        assert sorted(order) == list(range(7)) and order != list(range(7))
        again = np.concatenate([b[0] for b in ds.batches(3, shuffle=True, seed=4)])
        np.testing.assert_array_equal(seen, again)
        first_maps = next(ds.batches(2))[1]
        np.testing.assert_array_equal(first_maps, maps[:2].astype(np.float32))


def test_unreadable_pack_is_named(tmp_path):
    images, _, lines = _make_samples(tmp_path, 4)
    label = tmp_path / "trainDataLabel.txt"
    label.write_text("".join(f"{a} {b}\n" for a, b in lines))
    h5 = tmp_path / "train.h5"
    pack_label_file(label, h5, compression="gzip", progress=False)
    data = h5.read_bytes()
    for name, content in (("half.h5", data[:len(data) // 2]), ("empty.h5", b""), ("text.h5", b"hello\n")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(InputFileError, match=f"^{re.escape(str(tmp_path / name))}: not a readable HDF5 file"):
            PackedTrainset(tmp_path / name)
    damage_chunk(h5, "images", 2)
    with PackedTrainset(h5) as ds:
        np.testing.assert_array_equal(ds[[3, 0, 1]][0], images[[3, 0, 1]])  # the other rows still read
        for index in (2, [1, 2, 3], slice(0, 4)):
            with pytest.raises(InputFileError, match=f"^{re.escape(str(h5))}: row 2 \\(s2\\): unreadable 'images' "
                                                     r"data \(Can't synchronously read data"):
                ds[index]


def test_bad_label_files(tmp_path):
    _make_samples(tmp_path, 2)
    bad = tmp_path / "bad.txt"
    bad.write_text("s0.png s0.npy\nonly_one_path\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected '<image path> <npy path>'"):
        read_label_file(bad)
    with pytest.raises(FileNotFoundError, match="label file not found"):
        read_label_file(tmp_path / "missing.txt")
    np.save(tmp_path / "s1.npy", np.zeros((R + 1, R, 3), np.float16))
    mismatch = tmp_path / "mismatch.txt"
    mismatch.write_text("s0.png s0.npy\ns1.png s1.npy\n")
    with pytest.raises(ValueError, match="must both have shape"):
        pack_label_file(mismatch, tmp_path / "x.h5", progress=False)
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / ".x.h5.partial").exists()
    with pytest.raises(ValueError, match="compression must be one of"):
        pack_label_file(mismatch, tmp_path / "x.h5", compression="zip", progress=False)


def test_a_folder_for_the_label_file_or_the_pack_says_what_to_give(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputFileError, match=f"^{re.escape(str(empty))}: is a folder; give the label file "
                                             r"\(trainDataLabel.txt\) itself$") as info:
        read_label_file(empty)
    assert info.value.path == empty
    (tmp_path / "trainDataLabel.txt").write_text("s0.png s0.npy\n")
    with pytest.raises(InputFileError, match=f"^{re.escape(str(tmp_path))}: is a folder; give "
                                             f"{re.escape(str(tmp_path / 'trainDataLabel.txt'))}$"):
        read_label_file(tmp_path)
    with pytest.raises(InputFileError, match=f"^{re.escape(str(tmp_path))}: is a folder; give the .h5 file "
                                             r"\(face3d pack's output\)$"):
        PackedTrainset(tmp_path)


def test_a_map_out_of_range_is_named_as_such_without_a_cast_warning(tmp_path):
    """70000 is finite but past float16's largest value: it is checked as loaded, not after the cast made it inf."""
    _make_samples(tmp_path, 2)
    posmap = np.load(tmp_path / "s1.npy").astype(np.float32)
    posmap[3, 4, 0] = 70000.0
    np.save(tmp_path / "s1.npy", posmap)
    label = tmp_path / "trainDataLabel.txt"
    label.write_text("s0.png s0.npy\ns1.png s1.npy\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputFileError, match=re.escape(f"{tmp_path / 's1.npy'}: position-map value 70000 outside "
                                                           f"the plausible range [-{R}, {2 * R}]")):
            pack_label_file(label, tmp_path / "x.h5", progress=False)
    assert not (tmp_path / "x.h5").exists()


def test_label_file_with_a_byte_order_mark(tmp_path, capsys):
    images, _, lines = _make_samples(tmp_path, 2)
    label = tmp_path / "trainDataLabel.txt"
    label.write_bytes(b"\xef\xbb\xbf" + "".join(f"{a} {b}\n" for a, b in lines).encode("utf-8"))
    assert read_label_file(label) == [(str(tmp_path / a), str(tmp_path / b)) for a, b in lines]
    assert main(["pack", str(label), str(tmp_path / "p.h5"), "--quiet"]) == 0, capsys.readouterr().err
    with PackedTrainset(tmp_path / "p.h5") as ds:
        assert ds.names == ["s0", "s1"]
        np.testing.assert_array_equal(ds[[0, 1]][0], images)


def _huge_header(data):
    """A header declaring a 447 GiB float32 map, then 16 bytes (a damaged header: read before any allocation)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (200000, 200000, 3)})
    return header.getvalue() + bytes(16)


@pytest.mark.parametrize("damage, reason", [
    (lambda data: data[:-10], "truncated: its header declares"),  # cut short while written
    (_huge_header, "truncated: its header declares (200000, 200000, 3) float32, 480000000000 bytes of data, the "
                   "file holds 16)"),
    (lambda data: data[:20], "EOF: reading array header"),
    (lambda data: b"", "EOF: reading magic string, expected 8 bytes got 0"),
    (lambda data: data.replace(b"),", b" ,", 1), "the header's brackets do not close"),
    (lambda data: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + data,  # a JPEG: named as such, not taken for a pickle
     "the magic string is not correct; expected b'\\x93NUMPY', got b'\\xff\\xd8\\xff\\xe0\\x00\\x10'"),
])
def test_damaged_npy_is_one_line_naming_it(tmp_path, capsys, damage, reason):
    _make_samples(tmp_path, 2)
    npy = tmp_path / "s1.npy"
    npy.write_bytes(damage(npy.read_bytes()))
    label = tmp_path / "trainDataLabel.txt"
    label.write_text("s0.png s0.npy\ns1.png s1.npy\n")
    with pytest.raises(InputFileError, match=re.escape(f"{npy}: not a .npy position map ({reason}")) as info:
        pack_label_file(label, tmp_path / "x.h5", progress=False)
    assert info.value.path == str(npy)
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / ".x.h5.partial").exists()
    assert main(["pack", str(label), str(tmp_path / "x.h5"), "--quiet"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"face3d pack: error: {npy}: not a .npy position map ({reason}")


def test_pack_command(tmp_path):
    images, maps, lines = _make_samples(tmp_path / "d", 3)
    label = tmp_path / "d" / "trainDataLabel.txt"
    label.write_text("".join(f"{a} {b}\n" for a, b in lines))
    out = tmp_path / "p.h5"
    result = subprocess.run([sys.executable, "-m", "face3d", "pack", str(label), str(out), "--quiet"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"packed 3 samples into {out}" in result.stdout
    with PackedTrainset(out) as ds:
        np.testing.assert_array_equal(ds[[0, 1, 2]][0], images)
    label.write_text(f"{lines[0][0]}\n")  # one path only: one line naming the file and line, exit 2
    result = subprocess.run([sys.executable, "-m", "face3d", "pack", str(label), str(tmp_path / "q.h5"), "--quiet"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.splitlines() == [
        f"face3d pack: error: {label}:1: expected '<image path> <npy path>', got '{lines[0][0]}'"], result.stderr


def test_output_folder_is_refused_before_any_row_is_read(tmp_path, capsys):
    label = tmp_path / "trainDataLabel.txt"
    label.write_text("missing.png missing.npy\n")  # reading a row would fail first
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(IsADirectoryError) as info:
        pack_label_file(label, folder, progress=False)
    assert info.value.filename == str(folder)
    assert main(["pack", str(label), str(folder), "--quiet"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"face3d pack: error: {folder}: is a folder; give the .h5 file to write"]
    assert sorted(tmp_path.iterdir()) == [folder, label] and not any(folder.iterdir())


def test_write_failure_is_one_line_naming_the_output(tmp_path):
    """A write that the system refuses (here the process's file size limit, as a full disk would) ends with one line
    and status 2 through the command's error path, the partial file removed, whatever HDF5 was flushing."""
    resource = pytest.importorskip("resource")
    _, _, lines = _make_samples(tmp_path / "d", 1)
    label = tmp_path / "d" / "trainDataLabel.txt"
    label.write_text(f"{lines[0][0]} {lines[0][1]}\n" * 200)  # 200 x 2304 bytes of maps and crops
    out = tmp_path / "out" / "train.h5"

    def limit_file_size():  # Python ignores SIGXFSZ: a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    result = subprocess.run([sys.executable, "-m", "face3d", "pack", str(label), str(out), "--quiet"],
                            cwd=REPO, capture_output=True, text=True, timeout=60, preexec_fn=limit_file_size)
    assert result.returncode == 2 and result.stderr.splitlines() == [
        f"face3d pack: error: {out}: File too large"], result.stderr
    assert list(out.parent.iterdir()) == [out.parent / ".train.h5.lock"]  # the run's lock file stays


def test_a_read_only_file_system_is_named_at_the_output(tmp_path, monkeypatch, capsys):
    """There even removing the temporary file fails: the error of the write is the one reported."""
    import h5py

    _, _, lines = _make_samples(tmp_path, 1)
    label = tmp_path / "trainDataLabel.txt"
    label.write_text(f"{lines[0][0]} {lines[0][1]}\n")
    out = tmp_path / "out.h5"

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr(h5py, "File", refuse)
    monkeypatch.setattr(Path, "unlink", lambda self, missing_ok=False: refuse())
    assert main(["pack", str(label), str(out), "--quiet"]) == 2
    assert capsys.readouterr().err.splitlines() == [f"face3d pack: error: {out}: Read-only file system"]


def test_too_little_free_space_is_refused_before_writing(tmp_path, monkeypatch, capsys):
    _, _, lines = _make_samples(tmp_path, 2)
    label = tmp_path / "trainDataLabel.txt"
    label.write_text("".join(f"{a} {b}\n" for a, b in lines))
    needed = 2 * R * R * 3 * (1 + 2)  # uint8 crops and float16 maps, uncompressed
    free = needed - 1
    monkeypatch.setattr(pack_module.shutil, "disk_usage", lambda folder: SimpleNamespace(free=free))
    out = tmp_path / "out" / "train.h5"
    assert main(["pack", str(label), str(out), "--quiet"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"face3d pack: error: {out}: 2 samples need at least {needed} bytes uncompressed; the disk has {free} bytes "
        f"free"]
    assert list(out.parent.iterdir()) == []
    # compressed rows take an unknown size: the disk full, if it comes, is the write's error
    assert main(["pack", str(label), str(out), "--quiet", "--compression", "lzf"]) == 0
    monkeypatch.setattr(pack_module.shutil, "disk_usage", lambda folder: SimpleNamespace(free=needed))
    assert main(["pack", str(label), str(out), "--quiet"]) == 0
