"""Outputs named after their input's file stem (the name without its suffix): inputs sharing a stem would write the
same files, so a batch job refuses them, every clash named with its inputs, before it writes anything."""
import os
from pathlib import Path

__all__ = ["refuse_shared_stems"]


def refuse_shared_stems(images, names, folder=None, remedy=None, per_folder=False):
    """Refuse images whose file stems are not unique, where each stem names the outputs ``names`` describes.

    Args:
        images: the image paths (str or Path), in the order the message lists them.
        names: what a stem names, for the message ("the .bin file").
        folder: the folder the images were found in: the message starts with it and gives each path relative to
            it; None: the paths as given.
        remedy: what to do about it, ending the message; None: nothing.
        per_folder: the outputs are named by the image's path without its suffix (relative to ``folder``), so only
            images of one folder can clash (``x/p1.jpg`` and ``x/p1.png``, not ``y/p1.jpg``); the message then
            gives that path in place of the stem.
    Raises:
        ValueError: ``"[<folder>: ]images share a name (file stem), which must be unique as it names <names>:
        <stem>: <path>, <path>[; <stem>: ...][; <remedy>]"``: every shared stem, in the order its first image comes,
        with all of its images.
    """
    by_stem = {}
    for image in images:
        shown = image if folder is None else os.path.relpath(image, folder)
        stem = Path(shown).with_suffix("").as_posix() if per_folder else Path(image).stem
        by_stem.setdefault(stem, []).append(str(shown))
    shared = "; ".join(f"{stem}: {', '.join(paths)}" for stem, paths in by_stem.items() if len(paths) > 1)
    if shared:
        where = "" if folder is None else f"{folder}: "
        advice = "" if remedy is None else f"; {remedy}"
        raise ValueError(f"{where}images share a name (file stem), which must be unique as it names {names}: "
                         f"{shared}{advice}")
