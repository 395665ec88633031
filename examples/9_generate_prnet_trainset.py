"""Generate a PRNet training set: crops and UV position maps (256x256 by default), rotated copies, trainDataLabel.txt.

    python examples/9_generate_prnet_trainset.py [--root DIR] [--bfm BFM.mat] [--output DIR]
        [--angles 15 -15 ...] [--workers N] [--shard K/N] [--limit N] [--seed S] [--refit] [--preview]
        [--no-perturb] [--float32] [--resolution R] [--label-paths absolute|relative] [--synthetic-count N]

With no ``--root`` it first renders the embedded sample set (24 samples in the 300W-LP format and structure, from
the default model) into ``<output>/synthetic_300W_LP`` and generates from it, rotations included. With ``--root``
pointing at 300W-LP (and ``--bfm`` at the real BFM.mat) it produces the full set; rerunning the same command resumes an
interrupted run. This script is ``face3d generate`` (same words, same code); see ``face3d generate --help``.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this source checkout
from _source_checkout import prefer_built_checkout  # noqa: E402

prefer_built_checkout()  # its face3d when its extension is built, else an installed face3d

from face3d.cli import generate_main  # noqa: E402  (after the path set-up)

if __name__ == "__main__":
    sys.exit(generate_main(sys.argv[1:], prog=Path(__file__).name))
