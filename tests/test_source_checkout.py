"""Which face3d a source checkout's scripts import (_source_checkout.py), and what importing a checkout whose C++
extension was never built says. Copies of the checkout in tmp_path stand in for a fresh clone; this checkout (built)
on PYTHONPATH stands in for an installed face3d. Budget: about 5 s."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("_source_checkout.py", "demo.py", "examples/9_generate_prnet_trainset.py")


def _checkout(folder, built):
    """A copy of face3d/ (with the extension only when ``built``) and of SCRIPTS in ``folder``; its path."""
    ignored = ("__pycache__",) if built else ("__pycache__", "_mesh_core*")
    shutil.copytree(ROOT / "face3d", folder / "face3d", ignore=shutil.ignore_patterns(*ignored))
    for script in SCRIPTS:
        (folder / script).parent.mkdir(exist_ok=True)
        shutil.copy(ROOT / script, folder / script)
    return folder


def _python(folder, *args, installed=None):
    """``python ARGS`` run in ``folder``, with ``installed`` (a folder holding face3d) as the only PYTHONPATH."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    if installed is not None:
        env["PYTHONPATH"] = str(installed)
    return subprocess.run([sys.executable, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=120)


def test_an_unbuilt_extension_says_where_and_how_to_build_it(tmp_path):
    checkout = _checkout(tmp_path, built=False)
    result = _python(checkout, "-c", "import face3d.mesh")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"ImportError: face3d's C++ extension (_mesh_core) is not built in {checkout / 'face3d' / 'mesh'}: run "
        f"`pip install -e .` or `python setup.py build_ext -i` in {checkout}")


@pytest.mark.parametrize("script", ["demo.py", "examples/9_generate_prnet_trainset.py"])
def test_the_scripts_of_an_unbuilt_checkout_run_the_installed_face3d(tmp_path, script):
    checkout = _checkout(tmp_path, built=False)
    result = _python(checkout, script, "--help", installed=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {Path(script).name}")


@pytest.mark.parametrize("built", [True, False])
def test_a_built_checkout_comes_before_an_installed_face3d(tmp_path, built):
    checkout = _checkout(tmp_path, built)
    probe = ("import sys; sys.path.insert(0, '.'); from _source_checkout import prefer_built_checkout; "
             "prefer_built_checkout(); import face3d.mesh; print(face3d.__file__)")
    result = _python(checkout, "-c", probe, installed=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str((checkout if built else ROOT) / "face3d" / "__init__.py")
