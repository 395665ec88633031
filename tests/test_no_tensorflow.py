"""mesh, morphable_model and trainset (the generator and its command) work where TensorFlow cannot be imported,
and the light prnet modules do not import it."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Makes `import tensorflow` / `import keras` (and their submodules) fail, as on a machine without them.
BLOCKER = textwrap.dedent("""
    import sys

    class _Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "keras", "tf_keras"):
                raise ImportError(f"{name} is blocked")
            return None

    sys.meta_path.insert(0, _Blocker())
""")


def _python(code, cwd):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_blocker_blocks_tensorflow(tmp_path):
    result = _python(BLOCKER + "import tensorflow\n", tmp_path)
    assert result.returncode != 0 and "ImportError: tensorflow is blocked" in result.stderr


def test_lower_layers_and_the_generator_run_without_tensorflow(tmp_path):
    code = BLOCKER + textwrap.dedent(f"""
        import importlib
        for name in ("face3d.mesh", "face3d.mesh_numpy", "face3d.morphable_model", "face3d.trainset",
                     "face3d.trainset.sample", "face3d.trainset.dataset", "face3d.trainset.pack",
                     "face3d.trainset.synthetic", "face3d.trainset.uv_layout", "face3d.cli"):
            importlib.import_module(name)
        from face3d.cli import main
        code = main(["generate", "--output", {str(tmp_path / "out")!r}, "--synthetic-count", "1", "--resolution",
                     "16", "--angles", "--workers", "1", "--quiet"])
        print("exit", code, "tensorflow" in sys.modules, "keras" in sys.modules)
    """)
    result = _python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-4:] == ["exit", "0", "False", "False"]
    assert (tmp_path / "out" / "trainDataLabel.txt").read_text().count(".npy") == 1


@pytest.mark.parametrize("module", ["face3d.prnet", "face3d.prnet.metrics", "face3d.prnet.uv_weights",
                                    "face3d.prnet.data", "face3d.prnet.training"])
def test_light_prnet_modules_do_not_import_tensorflow(module, tmp_path):
    result = _python(f"import sys, importlib; importlib.import_module({module!r}); print('tensorflow' in sys.modules)",
                     tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
