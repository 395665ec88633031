"""The README's install instructions agree with pyproject.toml and setup.py, MANIFEST.in puts what setup.py
compiles into an sdist, and the defaults the README states for ``face3d serve`` are the command's. Budget: well under
1 s."""
import re
from pathlib import Path

from _fixtures import subcommands

ROOT = Path(__file__).resolve().parent.parent


def _requirements(pyproject, key):
    """{lower-case name: requirement} of the ``key = [...]`` list (the first one: [build-system] before [project])."""
    listed = re.search(rf"^{key} = \[(.*?)\]", pyproject, re.M | re.S).group(1)
    return {re.split(r"[<>=\[]", req)[0].lower(): req for req in re.findall(r'"([^"]+)"', listed)}


def test_the_rebuild_command_installs_what_setup_py_imports():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    build, runtime = _requirements(pyproject, "requires"), _requirements(pyproject, "dependencies")
    command = re.search(r"`(pip install [^`]*&& python setup\.py build_ext -i)`", (ROOT / "README.md").read_text(
        encoding="utf-8")).group(1)
    installed = {req.split(">=")[0].lower(): req.lower() for req in re.findall(r'"([^"]+)"', command)}
    imported = {name.lower() for name in re.findall(r"^(?:from|import) (\w+)", (ROOT / "setup.py").read_text(
        encoding="utf-8"), re.M)}
    assert sorted(imported) == ["cython", "numpy", "setuptools"]
    for name in imported:
        # a venv made by Python 3.12+ has no setuptools: the command installs each build-only requirement
        assert name in runtime or installed.get(name) == build[name].lower(), (name, command)


def test_the_sdist_holds_every_file_the_extension_compiles(monkeypatch):
    """MANIFEST.in takes setup.py's sources and the local headers they include (a wheel is built from the sdist),
    and leaves out the C++ and C Cython generates from the .pyx files."""
    from setuptools.command.egg_info import FileList
    sources = re.findall(r'"((?:mesh|jpeg)_cython/[^"]+)"', (ROOT / "setup.py").read_text(encoding="utf-8"))
    assert sorted(sources) == ["jpeg_cython/jpeg_encode.c", "jpeg_cython/jpeg_region.c",
                               "jpeg_cython/jpeg_region_cython.pyx", "mesh_cython/mesh_core.cpp",
                               "mesh_cython/mesh_core_cython.pyx"]
    headers = {f"{source.split('/')[0]}/{name}" for source in sources for name in re.findall(
        r'^(?:#include|cdef extern from) "([^"]+)"', (ROOT / source).read_text(encoding="utf-8"), re.M)}
    assert headers == {"mesh_cython/mesh_core.h", "jpeg_cython/jpeg_region.h", "jpeg_cython/jpeg_encode.h",
                       "jpeg_cython/jpeg_errors.h"}
    monkeypatch.chdir(ROOT)
    manifest = FileList()
    manifest.findall()  # every file under the checkout, relative to it
    # setuptools' defaults: the cythonized sources
    manifest.files = sources + ["mesh_cython/mesh_core_cython.cpp", "jpeg_cython/jpeg_region_cython.c"]
    for line in (ROOT / "MANIFEST.in").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            manifest.process_template_line(line)
    assert sorted(set(manifest.files)) == sorted(set(sources) | headers)


def test_the_serve_defaults_the_readme_states_are_the_commands():
    """The README's ``face3d serve`` synopsis shows a default as the value of its option (``[--port 8000]``; a
    metavar, ``[--workers N]``, shows none), and its section says the server binds 127.0.0.1 and calls it at
    127.0.0.1:8000: each is what the command does when not told otherwise."""
    from face3d.cli import build_parser

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Serving over HTTP"):]
    section = section[:section.index("\n## ")]
    synopsis = re.search(r"^\* `face3d serve --model PATH (.*?)`", section, re.M | re.S).group(1)
    actions = {flag: action for action in subcommands(build_parser(["serve"]))["serve"]._actions
               for flag in action.option_strings}
    stated = {flag: value for flag, value in re.findall(r"\[(--[\w-]+)\s+([^\]\s|]+)\]", synopsis)
              if value != actions[flag].metavar}
    assert sorted(stated) == ["--host", "--log-level", "--max-batch", "--max-bytes", "--max-delay-ms",
                              "--max-in-flight", "--max-pixels", "--port", "--threads", "--timeout-s"]
    for flag, value in stated.items():
        action = actions[flag]
        assert (action.type(value) if action.type else value) == action.default, (flag, value, action.default)
    host, port = actions["--host"].default, actions["--port"].default
    assert re.search(rf"face3d serve --model \S+ --port {port} +# binds {re.escape(host)};", section)
    assert set(re.findall(r"http://([^/:\s]+):(\d+)/", section)) == {(host, str(port))}
