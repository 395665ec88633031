"""The face3d command line (face3d.cli, example 9, the root scripts) and the progress bar (face3d.utils.progress)."""
import dataclasses
import errno
import importlib.metadata
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import _prnet_data
import cv2
import numpy as np
import pytest
from _fixtures import CTRL_C_RAISES, ctrl_c_raises, held_lock, subcommands

import face3d
from face3d.cli import build_generate_parser, build_parser, main
from face3d.cli._common import setup_logging, write_item_lines
from face3d.cli.generate import generation_config
from face3d.cli.train import train_config
from face3d.prnet.data import AugmentConfig
from face3d.prnet.training import TrainConfig
from face3d.trainset.sample import GenerationConfig
from face3d.trainset.synthetic import synthesize_dataset
from face3d.utils.progress import Progress, format_duration

REPO = Path(__file__).resolve().parents[1]
GENERATE_FLAGS = ("--root", "--bfm", "--output", "--angles", "--workers", "--shard", "--limit", "--seed", "--refit",
                  "--preview", "--no-perturb", "--float32", "--resolution", "--label-paths", "--neck-zeroed",
                  "--synthetic-count", "--quiet")


def _run(*args):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command, words", [
    ("generate", GENERATE_FLAGS),
    ("pack", ("label", "output", "--base-dir", "--compression", "--float32")),
    ("preview", ("npy", "--image", "--uv-data", "--output")),
    ("synthesize", ("--output", "--count", "--seed", "--size", "--bfm", "--views", "--no-flip")),
    ("uv-data", ("--output", "--bfm", "--resolution", "--neck-zeroed")),
    ("train", ("--train-list", "--h5", "--val-list", "--epochs", "--lr-decay-epochs", "--no-augment", "--no-occlusion",
               "--resume", "--run-eagerly", "--verbose", "--init-from")),
    ("evaluate", ("--model", "--data", "--output", "--uv-data", "--dense", "--batch-size", "--limit", "--quiet")),
    ("demo", ("--input", "--output", "--model", "--uv-data", "--bfm", "--box", "--landmarks", "--texture",
              "--detector", "--max-pixels")),
    ("export", ("--model", "--output", "--batch", "--no-fold-bn", "--onnx", "--opset", "--soc-version",
                "--precision-mode", "--tolerance", "--no-atc", "--tflite", "--int8", "--calibration")),
    ("offline", ("pre_process", "run", "post_process")),
    ("import-prnet", ("--checkpoint", "--output", "--input-size")),
    ("fit", ("--images", "--landmarks", "--detect", "--output", "--bfm", "--workers", "--max-fit-error",
             "--landmark-noise", "--max-pixels", "(default: 0.05)", "(default: 2.0, a detector's)")),
    ("serve", ("--model", "--uv-data", "--host", "--port", "--workers", "--max-batch", "--max-delay-ms",
               "--max-bytes", "--max-pixels", "--timeout-s", "--max-in-flight", "--model-threads")),
])
def test_subcommand_help(command, words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # whatever the line wrapping
    assert text.startswith(f"usage: face3d {command}")
    for word in words:
        assert word in text, word


def _help_entries(parser):
    """Each argument's entry of ``parser``'s help, its wrapped lines joined: {first word: text}."""
    entries, current = {}, None
    for line in parser.format_help().splitlines():
        if line.startswith("  ") and not line.startswith("   "):  # an argument's first line
            current = line.split()[0].rstrip(",")
            entries[current] = line
        elif current is not None and line.startswith("   "):
            entries[current] += line
        else:
            current = None
    return {name: " ".join(text.split()) for name, text in entries.items()}


def test_every_help_states_each_default_once_and_never_none():
    commands = subcommands(build_parser())
    assert len(commands) == 13
    for command, parser in commands.items():
        for text in _help_entries(parser).values():
            assert text.lower().count("default:") <= 1, (command, text)
            assert "(default: None)" not in text and "(default: False)" not in text, (command, text)
    train, export = _help_entries(commands["train"]), _help_entries(commands["export"])
    assert train["--val-list"] == ("--val-list FILE validation label file or HDF5 pack, told apart by the file's "
                                   "contents (default: a split of the training data, see --val-fraction)")
    assert train["--epochs"] == "--epochs N total number of epochs (default: 30)"
    assert train["--no-augment"] == "--no-augment disable every augmentation"
    assert export["--model"].endswith("(prefix, .index or folder)")


def test_every_command_running_a_model_names_every_model_type_it_takes():
    """demo, evaluate and serve all load --model with load_predictor: their help lists every type it takes, and
    demo's description names TFLite too."""
    commands = subcommands(build_parser())
    types = (".keras/.h5", "PRNet's TF1 checkpoint (prefix, .index or folder)", "SavedModel folder", "frozen .pb",
             ".onnx", ".tflite")
    for command in ("demo", "evaluate", "serve"):
        model_help = _help_entries(commands[command])["--model"]
        assert all(kind in model_help for kind in types), (command, model_help)
    description = " ".join(commands["demo"].description.split())
    assert all(kind in description for kind in types), description


def test_every_flag_the_readme_gives_a_command_is_one_of_its_options():
    """Each ``face3d <command> ...`` the README shows (a code line, or a synopsis in backticks, optional groups and
    placeholders included) names only flags that command has: a renamed or removed option cannot stay documented."""
    text = (REPO / "README.md").read_text(encoding="utf-8").replace("\\\n", " ")
    shown = re.findall(r"`((?:python -m )?face3d [^`]+)`", re.sub(r"\s*\n\s*", " ", text))
    for line in text.splitlines():
        if line.startswith("    "):  # an indented code line; the text after `#` is a comment
            shown += re.findall(r"(?:python -m )?face3d [^#;&|>]*", line)
    checked = set()
    for command_line in shown:
        words = command_line.removeprefix("python -m ").split()[1:]
        parser, names = build_parser(), []
        while words and words[0] in subcommands(parser):
            names.append(words.pop(0))
            parser = subcommands(parser)[names[-1]]
        if not names:
            continue
        options = {flag for action in parser._actions for flag in action.option_strings}
        for word in words:
            flag = re.match(r"\[?(--?[A-Za-z][\w-]*)", word)
            if flag:
                assert flag.group(1) in options, (" ".join(names), flag.group(1), command_line)
                checked.add((" ".join(names), flag.group(1)))
    commands = {name for name, _ in checked}
    assert len(checked) >= 80 and {"generate", "train", "evaluate", "serve", "offline run"} <= commands, checked


def test_console_entry_points_help():
    top = _run("-m", "face3d", "--help")
    assert top.returncode == 0
    for command in ("generate", "pack", "preview", "synthesize"):
        assert command in top.stdout
    example = _run("examples/9_generate_prnet_trainset.py", "--help")
    assert example.returncode == 0 and example.stdout.startswith("usage: 9_generate_prnet_trainset.py")
    for flag in GENERATE_FLAGS:
        assert flag in example.stdout, flag
    # the example and `face3d generate` share one parser: identical option help
    generate = _run("-m", "face3d", "generate", "--help")
    assert example.stdout.split("options:")[1] == generate.stdout.split("options:")[1]


def test_generate_arguments():
    args = build_generate_parser().parse_args([])
    assert args.root is None and args.output == "prnet_trainset" and args.angles == list(GenerationConfig().angles)
    assert args.workers is None and args.shard is None and args.seed == 0 and args.resolution == 256
    args = build_parser().parse_args(["generate", "--angles", "7.5", "-20", "--shard", "2/3", "--limit", "0",
                                      "--float32", "--no-perturb", "--label-paths", "relative"])
    assert args.angles == [7.5, -20] and isinstance(args.angles[1], int)
    assert args.shard == (2, 3) and args.limit == 0 and args.posmap_dtype == "float32" and not args.perturb
    assert build_parser().parse_args(["generate", "--angles"]).angles == []


@pytest.mark.parametrize("argv, message", [
    (["--shard", "3/2"], "shard must be 'K/N' with integers 1 <= K <= N, got '3/2'"),
    (["--shard", "a/b"], "shard must be 'K/N'"),
    (["--workers", "0"], "expected an integer >= 1, got '0'"),
    (["--limit", "-1"], "expected an integer >= 0, got '-1'"),
    (["--angles", "15", "nan"], "argument --angles: expected a finite number of degrees, got 'nan'"),
    (["--angles", "inf"], "argument --angles: expected a finite number of degrees, got 'inf'"),
    (["--angles", "1e400"], "argument --angles: expected a finite number of degrees, got '1e400'"),
])
def test_generate_argument_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_generate_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["export", "--model", "m.keras", "--output", "out", "--bogus", "1"],
                                  ["offline", "run", "--model", "m.onnx", "--input", "in", "--output", "out", "--bogus",
                                   "1"]])
def test_an_unknown_argument_is_the_subcommands_error_with_its_usage(argv, capsys):
    prog = "face3d " + " ".join(argv[:2] if argv[0] == "offline" else argv[:1])
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.splitlines()
    assert exit_info.value.code == 2 and err[0].startswith(f"usage: {prog} ")
    assert err[-1] == f"{prog}: error: unrecognized arguments: --bogus 1"


def test_generate_without_root_synthesizes_the_default_set(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["generate", "--output", str(out), "--synthetic-count", "2", "--resolution", "16", "--angles", "10",
                 "--workers", "1", "--label-paths", "relative", "--quiet"]) == 0
    assert "samples 2: written 2, skipped 0 (already done), failed 0; 4 label lines" in capsys.readouterr().out
    assert sorted((out / "synthetic_300W_LP").glob("*/*.mat")) == [  # a face's first view and its _Flip copy
        out / "synthetic_300W_LP" / folder / "SYNTH_0000_1_0.mat" for folder in ("SYNTH", "SYNTH_Flip")]
    assert (out / "trainDataLabel.txt").read_text().splitlines()[1] == \
        "SYNTH/SYNTH_0000_1_0_angle_10.jpg SYNTH/SYNTH_0000_1_0_angle_10.npy"


@pytest.mark.parametrize("phase", ["synthesize_dataset", "generate_dataset"])
@pytest.mark.parametrize("signal_name, status, word", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_generate_stopped_in_either_phase_says_a_rerun_resumes(phase, signal_name, status, word, tmp_path, capsys,
                                                              monkeypatch):
    """Ctrl-C (SIGINT) or SIGTERM while the synthetic set is rendered (no --root) or while the training set is
    written: one line saying that a rerun resumes, and 128 + the signal."""
    import face3d.trainset.dataset
    import face3d.trainset.synthetic

    def stopped(*args, **kwargs):
        os.kill(os.getpid(), getattr(signal, signal_name))

    module = face3d.trainset.synthetic if phase == "synthesize_dataset" else face3d.trainset.dataset
    monkeypatch.setattr(module, phase, stopped)
    if phase == "generate_dataset":  # a set already rendered: synthesis is not the step stopped
        monkeypatch.setattr(face3d.trainset.synthetic, "synthesize_dataset", lambda *args, **kwargs: [])
    with ctrl_c_raises():
        assert main(["generate", "--output", str(tmp_path / "out"), "--quiet"]) == status
    captured = capsys.readouterr()
    assert captured.err == f"face3d generate: {word}; finished samples are kept: rerun the same command to resume\n"
    assert captured.out == ""


def _tree(folder):
    """{relative path: bytes, or None for a folder} of everything under ``folder``."""
    return {path.relative_to(folder): None if path.is_dir() else path.read_bytes() for path in folder.rglob("*")}


@pytest.mark.parametrize("command", ["generate", "fit", "pack", "offline pre_process"])
def test_a_run_into_an_output_another_run_writes_is_refused_in_one_line_leaving_it_untouched(command, tmp_path,
                                                                                            capsys):
    """Two runs writing one output remove, rewrite and rename each other's files: the second is refused at once,
    with status 2, before it touches the output. The first run's lock is held here through an open file description
    of its own, as another process holds it."""
    out, photos = tmp_path / "out", tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.jpg"), np.full((64, 64, 3), 128, np.uint8))
    (tmp_path / "boxes.txt").write_text("a.jpg 8 8 56 56\n")
    written, option, prog = out, "--output", f"face3d {command}"
    if command == "generate":
        synthesize_dataset(tmp_path / "root", count=1, size=64, flip=False)
        argv = ["generate", "--root", tmp_path / "root", "--output", out, "--quiet"]
    elif command == "fit":
        argv = ["fit", "--images", photos, "--output", out, "--quiet"]
    elif command == "pack":
        written, option = out / "train.h5", "output file"
        argv = ["pack", _prnet_data.make_dataset(tmp_path / "set", 2, 32), written, "--quiet"]
    else:
        prog = "face3d offline"
        argv = ["offline", "pre_process", "--data", photos, "--boxes", tmp_path / "boxes.txt", "--output", out]
    out.mkdir()
    (out / "earlier.txt").write_text("an earlier run's file\n")
    lock = out / (".train.h5.lock" if command == "pack" else f".{command.split()[-1]}.lock")
    with held_lock(lock):
        before = _tree(out)
        assert main([str(word) for word in argv]) == 2
        assert _tree(out) == before
    assert capsys.readouterr().err == (f"{prog}: error: {written}: another face3d {command} run is writing it; wait "
                                       f"for it to end or use another {option}\n")


def test_generate_runs_of_different_shards_write_one_output_side_by_side(tmp_path, capsys):
    """A shard's run holds the output shared and its shard alone: the other shard's run goes on beside it, while a
    second run of its shard or a run of the whole output is refused (their files are the same; shards of another N:
    test_utils_errors)."""
    synthesize_dataset(tmp_path / "root", count=2, size=64, flip=False)
    out = tmp_path / "out"
    argv = ["generate", "--root", str(tmp_path / "root"), "--output", str(out), "--angles", "--resolution", "16",
            "--workers", "1", "--label-paths", "relative", "--quiet"]
    refused = f"face3d generate: error: {out}: another face3d generate run is writing it{{}}; wait for it to end or " \
              f"use another --output\n"
    with held_lock(out / ".generate.lock", shared=True), held_lock(out / ".generate.shard-1-of-2.lock"):
        assert main([*argv, "--shard", "2/2"]) == 0
        assert capsys.readouterr().out.startswith("samples 1: written 1, skipped 0 (already done), failed 0; 1 label")
        assert main([*argv, "--shard", "1/2"]) == 2
        assert capsys.readouterr().err == refused.format(" (shard 1/2)")
        assert main(argv) == 2
        assert capsys.readouterr().err == refused.format("")
    assert (out / "trainDataLabel.part-2-of-2.txt").read_text() == "SYNTH/SYNTH_0000_1_1.jpg SYNTH/SYNTH_0000_1_1.npy\n"
    assert main([*argv, "--shard", "1/2"]) == 0  # the other run over
    assert (out / "trainDataLabel.part-1-of-2.txt").read_text() == "SYNTH/SYNTH_0000_1_0.jpg SYNTH/SYNTH_0000_1_0.npy\n"


# Runs `python -m face3d ARGS` and sends itself the signal named by its first argument just before its first
# temporary file (`.<name>.partial`) is renamed onto its target, after printing that file's path: the signal
# arrives while the file exists, at the same point on every run.
SIGNALLING_RUNNER = """
import os, runpy, signal, sys
replace, sent, signum = os.replace, [], getattr(signal, sys.argv[1])

def signal_then_replace(source, target, **kwargs):
    if str(source).endswith(".partial") and not sent:
        sent.append(source)
        print(source, flush=True)
        os.kill(os.getpid(), signum)
    return replace(source, target, **kwargs)

os.replace = signal_then_replace
sys.argv = ["face3d", *sys.argv[2:]]
runpy.run_module("face3d", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("command", ["synthesize", "pack"])
@pytest.mark.parametrize("signal_name, status, word", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_ctrl_c_or_sigterm_ends_a_command_in_one_line_leaving_no_partial_file(command, signal_name, status, word,
                                                                              tmp_path):
    """Ctrl-C (SIGINT) and a scheduler's, ``timeout``'s or ``kill``'s SIGTERM unwind the command, which removes its
    temporary file (a pack's is the size of the whole pack), then end it with one line and 128 + the signal."""
    out = tmp_path / "out"
    if command == "synthesize":
        args = ["synthesize", "--output", str(out), "--count", "1", "--size", "64"]
    else:
        label = _prnet_data.make_dataset(tmp_path / "set", 2, 32)
        args = ["pack", str(label), str(out / "train.h5"), "--quiet"]
    run = subprocess.run([sys.executable, "-c", CTRL_C_RAISES + SIGNALLING_RUNNER, signal_name, *args], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    (partial,) = run.stdout.splitlines()
    assert Path(partial).is_relative_to(out) and Path(partial).name.endswith(".partial")
    assert (run.returncode, run.stderr) == (status, f"face3d {command}: {word}\n")
    assert not list(out.rglob("*.partial"))


def test_synthesize_prints_its_output_folder_in_its_own_characters(tmp_path, capsys, monkeypatch):
    """Not as JSON's \\uXXXX escapes; a name that is not UTF-8 has its bytes as \\xNN, as in generate's messages."""
    import face3d.trainset.synthetic

    monkeypatch.setattr(face3d.trainset.synthetic, "synthesize_dataset", lambda *args, **kwargs: ["a.mat", "b.mat"])
    out = tmp_path / "syn 中文 #%"
    assert main(["synthesize", "--output", str(out)]) == 0
    assert capsys.readouterr().out == f'{{"output": "{out}", "samples": 2}}\n'
    out = tmp_path / os.fsdecode(b"syn \xff")
    assert main(["synthesize", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed == f'{{"output": "{tmp_path}/syn \\\\xff", "samples": 2}}\n'
    assert json.loads(printed)["output"] == f"{tmp_path}/syn \\xff"


def test_a_keyboard_interrupt_tensorflow_wraps_in_a_system_error_is_an_interrupt(tmp_path, capsys, monkeypatch):
    """Ctrl-C inside a TensorFlow call comes out as a SystemError raised from the KeyboardInterrupt."""
    import face3d.trainset.synthetic

    def inside_a_library(stop):
        """A call in whose C++ ``stop()`` raised: the exception comes out as a SystemError raised from it."""
        def call(*args, **kwargs):
            try:
                stop()
            except BaseException as error:
                raise SystemError("<built-in function TFE_Py_Execute> returned a result with an exception set") \
                    from error
        return call

    def ctrl_c():
        raise KeyboardInterrupt

    for stop, status, word in ((ctrl_c, 130, "interrupted"),
                               (lambda: os.kill(os.getpid(), signal.SIGTERM), 143, "terminated")):
        monkeypatch.setattr(face3d.trainset.synthetic, "synthesize_dataset", inside_a_library(stop))
        assert main(["synthesize", "--output", str(tmp_path)]) == status
        assert capsys.readouterr().err == f"face3d synthesize: {word}\n"

    def failed_inside_a_library(*args, **kwargs):
        raise SystemError("a library's own bug")

    monkeypatch.setattr(face3d.trainset.synthetic, "synthesize_dataset", failed_inside_a_library)
    with pytest.raises(SystemError, match="a library's own bug"):
        main(["synthesize", "--output", str(tmp_path)])


def test_the_sigterm_handler_is_the_commands_only_while_it_runs(tmp_path, monkeypatch, capsys):
    """A program calling main many times (the tests) gets its own SIGTERM handler back each time; while the
    command unwinds from a SIGTERM, a second one would end the process at once (the default action)."""
    import face3d.trainset.synthetic

    handlers = []

    def terminated(*args, **kwargs):
        handlers.append(signal.getsignal(signal.SIGTERM))
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        finally:
            handlers.append(signal.getsignal(signal.SIGTERM))
        return []  # an ignored signal: no sample written

    def own(signum, frame):
        pass

    monkeypatch.setattr(face3d.trainset.synthetic, "synthesize_dataset", terminated)
    previous = signal.signal(signal.SIGTERM, own)
    try:
        assert main(["synthesize", "--output", str(tmp_path)]) == 143
        assert signal.getsignal(signal.SIGTERM) is own
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert capsys.readouterr().err == "face3d synthesize: terminated\n"
    assert handlers[0] not in (own, signal.SIG_DFL, signal.SIG_IGN) and handlers[1] is signal.SIG_DFL
    handlers.clear()
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as under `nohup`-like parents: a choice kept
    try:
        assert main(["synthesize", "--output", str(tmp_path)]) == 0  # the signal is ignored: the command ends
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert handlers == [signal.SIG_IGN, signal.SIG_IGN]


def test_synthesize_command(tmp_path, capsys):
    assert main(["synthesize", "--output", str(tmp_path), "--count", "1", "--size", "128", "--seed", "5"]) == 0
    assert '"samples": 1' in capsys.readouterr().out
    assert cv2.imread(str(tmp_path / "SYNTH" / "SYNTH_0000_1_0.jpg")).shape == (128, 128, 3)


def _preview_sample(tmp_path, r=32):
    """``AFW/a.npy`` (an (r, r, 3) float16 map, zero but for three keypoint pixels), its black crop ``AFW/a.jpg``
    and ``uv-data/uv_kpt_ind.txt`` of 68 keypoints at those three pixels (the last one 66 times); returns the map's
    path and the crop pixels (x, y) the three map to."""
    uv_dir = tmp_path / "uv-data"
    uv_dir.mkdir()
    kpt = np.array([[3, 10, 20], [5, 12, 25]])  # (2, k): x row, y row
    np.savetxt(uv_dir / "uv_kpt_ind.txt", np.column_stack([kpt, np.repeat(kpt[:, 2:], 65, axis=1)]), fmt="%d")
    posmap = np.zeros((r, r, 3), np.float16)
    targets = [(4, 4), (16, 8), (27, 27)]  # crop pixels (x, y) the keypoints map to
    for (u, v), (x, y) in zip(kpt.T, targets):
        posmap[v, u, :2] = (x, y)
    sub = tmp_path / "AFW"
    sub.mkdir()
    np.save(sub / "a.npy", posmap)
    cv2.imwrite(str(sub / "a.jpg"), np.zeros((r, r, 3), np.uint8))
    return sub / "a.npy", targets


def test_preview_command(tmp_path):
    """Keypoints are green in the crop half; a map point on the sparse grid (UV pixels every 6th row and column) is
    cyan at its crop pixel (x, y): image row y, column x, and nothing at the transposed pixel."""
    r = 32
    npy, targets = _preview_sample(tmp_path, r)
    sub = npy.parent
    posmap = np.load(npy)
    posmap[6, 12, :2] = (20, 5)  # UV pixel (u 12, v 6), on the grid, to crop pixel x 20, y 5
    np.save(npy, posmap)
    result = _run("-m", "face3d", "preview", str(sub / "a.npy"))  # finds ../uv-data by itself
    assert result.returncode == 0, result.stderr
    picture = cv2.imread(str(sub / "a_preview.png"))
    assert picture.shape == (r, 2 * r, 3)  # crop | map
    for x, y in targets:
        assert tuple(picture[y, x]) == (0, 255, 0)  # green keypoint centre
    assert tuple(picture[16, 0]) == (0, 0, 0)
    cyan = np.all(picture[:, :r] == (255, 255, 0), axis=-1)  # BGR
    assert np.argwhere(cyan).tolist() == [[5, 20]] and tuple(picture[20, 5]) == (0, 0, 0)  # (row, column)
    missing = _run("-m", "face3d", "preview", str(sub / "a.npy"), "--uv-data", str(tmp_path / "nowhere"))
    assert missing.returncode != 0 and "uv_kpt_ind.txt" in missing.stderr


def test_preview_of_a_map_with_non_finite_values_draws_its_finite_part(tmp_path, caplog):
    r = 32
    npy, targets = _preview_sample(tmp_path, r)
    posmap = np.load(npy).astype(np.float32)
    posmap[:8] = np.nan  # UV rows 0-7: the first keypoint (u 3, v 5) among them
    posmap[12, 10, 0] = 1e30  # finite but far outside the crop: the second keypoint, not drawn either
    np.save(npy, posmap)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no NaN cast to an integer on the way
        assert main(["preview", str(npy)]) == 0
    picture = cv2.imread(str(npy.with_name("a_preview.png")))
    green_y, green_x = np.nonzero(np.all(picture[:, :r] == (0, 255, 0), axis=-1))
    assert tuple(picture[targets[2][1], targets[2][0]]) == (0, 255, 0)  # the finite keypoint, drawn
    assert np.abs(green_x - targets[2][0]).max() <= 1 and np.abs(green_y - targets[2][1]).max() <= 1  # alone
    assert np.all(picture[:8, r:] == (255, 0, 255))  # non-finite map pixels in magenta (BGR)
    assert not np.any(np.all(picture[8:, r:] == (255, 0, 255), axis=-1))
    assert [record.getMessage() for record in caplog.records if record.levelname == "WARNING"] == [
        f"{npy}: {8 * r * 3} non-finite value(s) (NaN or inf) in the position map; previewed anyway: map pixels "
        f"with NaN or inf in magenta, 2 of 68 keypoints not drawn"]


def test_preview_of_a_finite_implausible_map_warns_without_the_drawing_notes(tmp_path, caplog):
    """Nothing is magenta and every keypoint is drawn: the warning says only what pack would refuse."""
    from face3d.trainset.posmap import posmap_value_problem

    r = 32
    npy, _ = _preview_sample(tmp_path, r)
    posmap = np.load(npy).astype(np.float32)
    posmap[30, 30, 2] = 10000.0  # no keypoint's pixel
    np.save(npy, posmap)
    assert main(["preview", str(npy)]) == 0
    assert [record.getMessage() for record in caplog.records if record.levelname == "WARNING"] == [
        f"{npy}: {posmap_value_problem(posmap, r)}; previewed anyway"]


def test_preview_inputs_that_do_not_fit_the_map_are_one_line(tmp_path, capsys):
    npy, _ = _preview_sample(tmp_path, 32)
    image = tmp_path / "big.png"
    cv2.imwrite(str(image), np.zeros((40, 48, 3), np.uint8))
    other = tmp_path / "uv-data-256"
    other.mkdir()
    np.savetxt(other / "uv_kpt_ind.txt", np.tile([[3, 200], [5, 40]], 34), fmt="%d")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_row = tmp_path / "one-row"
    one_row.mkdir()
    (one_row / "uv_kpt_ind.txt").write_text("3 10 20\n")
    sixty = tmp_path / "sixty"
    sixty.mkdir()
    np.savetxt(sixty / "uv_kpt_ind.txt", np.ones((2, 60)), fmt="%d")
    fractional = tmp_path / "fractional"
    fractional.mkdir()
    (fractional / "uv_kpt_ind.txt").write_text("3.5 10\n5 8\n")  # a pixel index, not a position: refused
    for args, line in [
        (["--image", image], f"{image}: the image is 48x40, the map {npy} is 32x32: give the crop it was made from"),
        (["--uv-data", other], f"{other / 'uv_kpt_ind.txt'}: keypoint pixels 3..200 do not fit the 32x32 map "
                               f"{npy}: give the uv-data folder of its resolution"),
        (["--uv-data", empty], f"{empty / 'uv_kpt_ind.txt'}: file not found"),
        (["--uv-data", one_row], f"{one_row / 'uv_kpt_ind.txt'}: expected 68 keypoints (2 x 68 values), got "
                                 f"shape (1, 3)"),
        (["--uv-data", sixty], f"{sixty / 'uv_kpt_ind.txt'}: expected 68 keypoints (2 x 68 values), got 60"),
        (["--uv-data", fractional], f"{fractional / 'uv_kpt_ind.txt'}: expected integers"),
    ]:
        assert main(["preview", str(npy), *map(str, args)]) == 2
        assert capsys.readouterr().err.splitlines() == [f"face3d preview: error: {line}"]
    assert not npy.with_name("a_preview.png").exists()


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_plain_lines_with_rate_and_eta():
    stream, clock = io.StringIO(), _Clock()
    bar = Progress(100, desc="gen", stream=stream, line_interval_s=10.0, clock=clock, initial=20)
    clock.now = 4.0
    bar.update(20)
    assert stream.getvalue() == ""  # not a TTY: nothing before one interval
    clock.now = 10.0
    bar.update(10, postfix="1 failed")  # 30 items in 10 s: 3/s, 50 left: ETA 17 s
    assert stream.getvalue() == "gen: 50/100  50.0% 3.00/s elapsed 0:10 ETA 0:17 1 failed\n"
    clock.now = 12.0
    bar.update(1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].startswith("gen: 51/100  51.0% 2.58/s elapsed 0:12")
    bar.close()
    assert len(stream.getvalue().splitlines()) == 2


def test_progress_tty_redraws_in_place():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream, clock = Tty(), _Clock()
    with Progress(4, stream=stream, width=4, clock=clock) as bar:
        clock.now = 1.0
        bar.update(2)
        clock.now = 2.0
        bar.update(2)
    text = stream.getvalue()
    assert text.startswith("\r[##..] 2/4  50.0% 2.00/s elapsed 0:01 ETA 0:01")
    assert text.endswith("\r[####] 4/4 100.0% 2.00/s elapsed 0:02 ETA 0:00\n")
    silent = io.StringIO()
    with Progress(3, stream=silent, enabled=False) as bar:
        bar.update(3)
    assert silent.getvalue() == ""


def test_format_duration():
    assert format_duration(None) == "?" and format_duration(float("inf")) == "?"
    assert format_duration(59.6) == "1:00" and format_duration(3725) == "1:02:05"
    with pytest.raises(ValueError, match="total must be >= 0"):
        Progress(-1)


def test_uv_data_command_writes_prnet_files(tmp_path):
    from face3d.morphable_model import MorphableModel
    from face3d.trainset.uv_layout import build_uv_data, load_uv_data

    assert main(["uv-data", "--output", str(tmp_path), "--resolution", "64"]) == 0
    written = load_uv_data(tmp_path)
    expected = build_uv_data(MorphableModel(), resolution=64)
    np.testing.assert_array_equal(written.uv_kpt_ind, expected.uv_kpt_ind)
    np.testing.assert_array_equal(written.face_ind, expected.face_ind)
    assert written.uv_kpt_ind.shape == (2, 68) and written.uv_kpt_ind.max() <= 63
    assert set(np.unique(written.weight_mask).tolist()) == {0, 48, 64, 255}


def test_uv_data_command_leaves_the_folder_as_it_was_when_a_write_is_refused(tmp_path, capsys, monkeypatch):
    """A full disk refusing the third file (an OSError naming no file, as a failed write raises): one line naming
    the folder, status 2, the earlier set byte for byte, no temporary left."""
    folder = tmp_path / "uv-data"
    assert main(["uv-data", "--output", str(folder), "--resolution", "16"]) == 0
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    savetxt, written = np.savetxt, []

    def full_at_the_third_file(path, *args, **kwargs):
        written.append(Path(path).name)
        if len(written) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return savetxt(path, *args, **kwargs)

    monkeypatch.setattr(np, "savetxt", full_at_the_third_file)
    capsys.readouterr()
    assert main(["uv-data", "--output", str(folder), "--resolution", "8"]) == 2
    assert written == ["uv_kpt_ind.txt", "face_ind.txt", "triangles.txt"]
    assert capsys.readouterr().err == f"face3d uv-data: error: {folder}: No space left on device\n"
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before
    assert [path.name for path in tmp_path.iterdir()] == ["uv-data"]


def test_uv_data_command_refuses_a_model_without_bfm_info(tmp_path, capsys):
    """Without BFM_info.mat the model has no eyes, nose or mouth: no weight mask without its 64 band is written."""
    from face3d.morphable_model.default_model import default_model_dir

    bfm = tmp_path / "bfm"
    bfm.mkdir()
    (bfm / "BFM.mat").symlink_to(default_model_dir() / "BFM.mat")
    (bfm / "BFM_UV.mat").write_bytes((default_model_dir() / "BFM_UV.mat").read_bytes())
    output = tmp_path / "uv-data"
    assert main(["uv-data", "--bfm", str(bfm / "BFM.mat"), "--output", str(output), "--resolution", "16"]) == 2
    assert capsys.readouterr().err == (
        f"face3d uv-data: error: {bfm / 'BFM_info.mat'}: not found: its segbin regions give uv-data's eyes/nose/mouth "
        f"weights and eye mask (Data/BFM/convert.py and face3d's generate.m write it beside BFM.mat)\n")
    assert not output.exists()


# ---------------------------------------------------------------------------------------------- PRNet commands

def test_version_is_the_installed_metadata_version():
    try:
        expected = importlib.metadata.version("face3d")
    except importlib.metadata.PackageNotFoundError:
        expected = "0+unknown"
    assert face3d.__version__ == expected
    result = _run("-m", "face3d", "--version")
    assert result.returncode == 0 and result.stdout == f"face3d {expected}\n"


def test_help_never_imports_tensorflow():
    code = ("import sys\nfrom face3d.cli import main\n"
            "for argv in ([], ['--help'], ['generate', '--help'], ['train', '--help'], ['offline', 'run', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('loaded:', sorted(m for m in ('tensorflow', 'keras', 'onnx') if m in sys.modules))\n")
    result = _run("-c", code)
    assert "usage: face3d train" in result.stdout and "usage: face3d offline run" in result.stdout
    assert result.stdout.splitlines()[-1] == "loaded: []", result.stderr


def test_train_without_tensorflow_names_the_extra(tmp_path):
    label = _prnet_data.make_dataset(tmp_path / "data", 2, 32)
    code = ("import sys\nsys.modules['tensorflow'] = sys.modules['keras'] = None  # as if not installed\n"
            "from face3d.cli import main\n"
            f"sys.exit(main(['train', '--train-list', r'{label}', '--output', r'{tmp_path / 'out'}', "
            "'--batch-size', '1']))\n")
    result = _run("-c", code)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == \
        "face3d train: error: keras is not installed: pip install 'face3d[train]'"
    assert "Traceback" not in result.stderr


def test_flag_defaults_are_the_config_defaults(capsys):
    """Parsing no optional flag gives exactly the dataclass defaults (every field), so flags cannot drift."""
    assert train_config(build_parser().parse_args(["train", "--train-list", "x.txt"])) == TrainConfig(
        train_list="x.txt")
    assert generation_config(build_parser().parse_args(["generate"])) == GenerationConfig()
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = capsys.readouterr().out
    for field in dataclasses.fields(TrainConfig):
        if field.name != "augment":
            assert "--" + field.name.replace("_", "-") in help_text, field.name


def test_serve_listens_on_this_machine_at_port_8000_and_runs_the_config_defaults(monkeypatch):
    """``face3d serve --model M`` alone binds 127.0.0.1 (this machine only, as the README promises; serving the
    network takes --host 0.0.0.0) on port 8000, one worker, and runs exactly ServeConfig(M) with its Limits."""
    from face3d.serve import server
    from face3d.serve.config import ServeConfig
    from face3d.serve.limits import Limits

    calls = []
    monkeypatch.setattr(server, "run_server", lambda config, **options: calls.append((config, options)) or 0)
    assert main(["serve", "--model", "model.onnx"]) == 0
    [(config, options)] = calls
    assert options == {"host": "127.0.0.1", "port": 8000, "workers": 1, "log_level": "info", "access_log": False}
    assert config == ServeConfig("model.onnx")
    assert config.limits == Limits(max_bytes=16 * 2 ** 20, max_pixels=25_000_000, timeout_s=30.0, max_in_flight=64)


def test_flags_set_their_config_fields():
    args = build_parser().parse_args(["train", "--h5", "p.h5", "--epochs", "3", "--lr", "0.002", "--input-size",
                                      "64", "--no-rotation", "--no-color", "--resume", "--verbose", "2"])
    assert train_config(args) == TrainConfig(h5="p.h5", epochs=3, lr=0.002, input_size=64, resume=True, verbose=2,
                                             augment=AugmentConfig(rotation=False, color=False))
    assert train_config(build_parser().parse_args(["train", "--h5", "p.h5", "--no-augment"])).augment == \
        AugmentConfig.off()
    args = build_parser().parse_args(["generate", "--angles", "10", "--refit", "--preview", "--no-perturb",
                                      "--float32", "--resolution", "64", "--neck-zeroed"])
    assert generation_config(args) == GenerationConfig(angles=(10,), refit=True, preview=True, perturb=False,
                                                       posmap_dtype="float32", resolution=64, neck_zeroed=True)


@pytest.mark.parametrize("script, flag", [("train.py", "--train-list"), ("evaluate.py", "--dense"),
                                          ("demo.py", "--landmarks"), ("export.py", "--soc-version")])
def test_root_scripts_run_the_commands(script, flag):
    result = _run(script, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {script}") and flag in result.stdout


def test_root_demo_takes_face3d_flags_not_prnets():
    """The README's word: demo.py takes face3d demo's flags; PRNet's --isDlib/--isKpt are unknown (status 2)."""
    result = _run("demo.py", "-i", "photos", "-o", "out", "--isDlib", "False", "--isKpt", "True")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == "demo.py: error: unrecognized arguments: --isDlib False --isKpt True"


def test_item_lines_under_a_summary_stop_at_20_and_name_the_summary_file():
    """generate and fit name each failure as it happens and again under their summary line, there at most 20."""
    for count, more in ((20, []), (21, ["  ... and 1 more: see /out/summary.json"]),
                        (300, ["  ... and 280 more: see /out/summary.json"])):
        stream = io.StringIO()
        write_item_lines(stream, [f"failed s{k}: bad" for k in range(count)], "/out/summary.json")
        assert stream.getvalue().splitlines() == [f"  failed s{k}: bad" for k in range(20)] + more


def test_offline_command_names_a_missing_manifest():
    result = _run("-m", "face3d", "offline", "post_process", "--help")
    assert result.returncode == 0, result.stderr
    assert "--manifest" in result.stdout
    missing = _run("-m", "face3d", "offline", "post", "--result", "nowhere", "--manifest", "nowhere/manifest.json",
                   "--output", "report")
    assert missing.returncode == 2
    assert missing.stderr.strip() == "post_process failed: manifest not found: nowhere/manifest.json"


def test_verbose_logging_ends_with_the_call_that_asked_for_it():
    """A program calling main twice gets face3d's debug records only from the run given --verbose."""
    face3d_logger = logging.getLogger("face3d")
    try:
        setup_logging(verbose=True)
        assert face3d_logger.isEnabledFor(logging.DEBUG)
        setup_logging(verbose=False)
        assert face3d_logger.level == logging.INFO
    finally:
        face3d_logger.setLevel(logging.NOTSET)


# what a command sets where unset while it runs: one BLAS thread per process, TensorFlow's C++ INFO lines off
ENVIRONMENT_DEFAULTS = {**dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "1"),
                        "TF_CPP_MIN_LOG_LEVEL": "1"}


@pytest.mark.parametrize("entry", ["main", "command_main"])
def test_a_program_calling_main_keeps_its_environment_and_its_logging(entry, tmp_path, monkeypatch):
    """The command's one BLAS thread per process and its stderr log handler last only while it runs: afterwards the
    calling program's environment (inherited by its later child processes) and root logger are as they were."""
    import face3d.trainset.uv_layout
    from face3d.cli.dataset import UV_DATA

    for name in ENVIRONMENT_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    root, face3d_logger = logging.getLogger(), logging.getLogger("face3d")
    # a program with no handler (pytest's capture handlers aside) that wants only errors
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", logging.ERROR)
    monkeypatch.setattr(face3d_logger, "level", logging.NOTSET)
    during = {}
    write = face3d.trainset.uv_layout.write_model_uv_data

    def watched(*args, **kwargs):
        during.update(environment={name: os.environ.get(name) for name in ENVIRONMENT_DEFAULTS},
                      handlers=len(root.handlers), level=root.level, face3d_level=face3d_logger.level)
        return write(*args, **kwargs)

    monkeypatch.setattr(face3d.trainset.uv_layout, "write_model_uv_data", watched)
    argv = ["--output", str(tmp_path / "uv"), "--resolution", "16"]
    assert (main(["uv-data", *argv]) if entry == "main" else UV_DATA.main(argv, prog="uv-data")) == 0
    assert during == {"environment": ENVIRONMENT_DEFAULTS, "handlers": 1,
                      "level": logging.WARNING, "face3d_level": logging.INFO}
    assert [name for name in ENVIRONMENT_DEFAULTS if name in os.environ] == []
    assert (root.handlers, root.level, face3d_logger.level) == ([], logging.ERROR, logging.NOTSET)


@pytest.mark.parametrize("verbose", [False, True])
def test_a_command_logs_face3d_records_and_other_libraries_warnings_only(verbose, tmp_path, monkeypatch, capsys):
    """Another library's INFO and DEBUG records (TensorFlow's "Assets written to: <temporary folder>") stay off a
    command's stderr; its warnings and face3d's own INFO lines (DEBUG too with --verbose) reach it."""
    import face3d.trainset.uv_layout

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # a program that set no logging up (pytest's capture handlers aside)
    monkeypatch.setattr(root, "level", logging.WARNING)
    write = face3d.trainset.uv_layout.write_model_uv_data

    def logging_write(*args, **kwargs):
        library, ours = logging.getLogger("tensorflow"), logging.getLogger("face3d.trainset.uv_layout")
        library.debug("library debug")
        library.info("Assets written to: /tmp/tmp1234/assets")
        library.warning("library warning")
        ours.debug("face3d debug")
        ours.info("face3d info")
        return write(*args, **kwargs)

    monkeypatch.setattr(face3d.trainset.uv_layout, "write_model_uv_data", logging_write)
    assert main(["uv-data", "--output", str(tmp_path / "uv"), "--resolution", "16"] + ["--verbose"] * verbose) == 0
    assert capsys.readouterr().err.splitlines() == [
        "WARNING tensorflow: library warning",
        *["DEBUG face3d.trainset.uv_layout: face3d debug"] * verbose,
        "INFO face3d.trainset.uv_layout: face3d info",
    ]


def test_a_reader_closing_the_output_pipe_ends_the_command_without_a_traceback(tmp_path):
    """``face3d ... | head -1``: the reader goes before the command's last line; the command stops as SIGPIPE ends
    other programs (status 141), with nothing on stderr."""
    run = subprocess.Popen([sys.executable, "-m", "face3d", "uv-data", "--output", str(tmp_path / "uv"), "--resolution",
                            "16"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run.stdout.close()  # before the command prints its line
    assert (run.wait(timeout=120), run.stderr.read()) == (141, b"")
    run.stderr.close()
    assert sorted(p.name for p in (tmp_path / "uv").iterdir())  # the command's work is done


def test_a_failure_the_command_reported_outlives_its_readers_going(tmp_path):
    """The reader goes before the command's lines leave (they are written at its end): the failure status the
    command returned is kept, not replaced by SIGPIPE's."""
    code = ("import argparse, sys\nfrom face3d.cli._common import run_parsed\n"
            "sys.exit(run_parsed(argparse.Namespace(prog='face3d x', run=lambda args: print('1 failed') or 1)))")
    buffered = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}  # as by default
    run = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=buffered)
    run.stdout.close()
    assert (run.wait(timeout=120), run.stderr.read()) == (1, b"")
    run.stderr.close()


def test_a_command_started_without_a_standard_output_does_its_work(tmp_path):
    """A service or ``>&-`` starts Python without file descriptor 1 (sys.stdout is None)."""
    run = subprocess.run([sys.executable, "-m", "face3d", "uv-data", "--output", str(tmp_path / "uv"), "--resolution",
                          "16"], cwd=REPO, stderr=subprocess.PIPE, preexec_fn=lambda: os.close(1), timeout=120)
    assert (run.returncode, run.stderr) == (0, b"")
    assert sorted(p.name for p in (tmp_path / "uv").iterdir())


def test_a_broken_pipe_other_than_the_output_is_no_quiet_stop(tmp_path, monkeypatch):
    """A worker's or a child's pipe breaking is an error as any other, not the reader of the output gone."""
    import face3d.trainset.uv_layout

    def broken(*args, **kwargs):
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    monkeypatch.setattr(face3d.trainset.uv_layout, "write_model_uv_data", broken)
    with pytest.raises(BrokenPipeError):
        main(["uv-data", "--output", str(tmp_path / "uv"), "--resolution", "16"])


def test_a_users_tensorflow_log_level_is_kept(tmp_path, monkeypatch):
    """A command sets TF_CPP_MIN_LOG_LEVEL=1 only where it is unset (ENVIRONMENT_DEFAULTS, checked with the other
    defaults by test_a_program_calling_main_keeps_its_environment_and_its_logging): a user's own value is kept."""
    import face3d.trainset.uv_layout

    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    seen = []
    write = face3d.trainset.uv_layout.write_model_uv_data
    monkeypatch.setattr(face3d.trainset.uv_layout, "write_model_uv_data",
                        lambda *args, **kwargs: seen.append(os.environ.get("TF_CPP_MIN_LOG_LEVEL")) or
                        write(*args, **kwargs))
    assert main(["uv-data", "--output", str(tmp_path / "uv"), "--resolution", "16"]) == 0
    assert seen == ["0"] and os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0"
