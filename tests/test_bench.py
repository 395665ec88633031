"""The benchmark scripts as a user runs them (subprocesses): their --help text, and their refusals of inputs they
cannot measure. No timings are checked."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "bench").glob("bench_*.py"))


def run_script(script, *args, timeout=120):
    """``python bench/<script> args`` from the repository root with this checkout first on the path."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, str(script), *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_help_shows_the_first_paragraph_of_the_docstring(script):
    first_paragraph = ast.get_docstring(ast.parse(script.read_text())).split("\n\n")[0]
    result = run_script(script, "--help")
    assert result.returncode == 0, result.stderr
    assert " ".join(first_paragraph.split()) in " ".join(result.stdout.split())
