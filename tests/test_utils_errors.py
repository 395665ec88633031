"""The input-file exception and the one .mat reader."""
import pickle

import numpy as np
import pytest
import scipy.io

from face3d.morphable_model import load
from face3d.utils.errors import InputFileError
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
