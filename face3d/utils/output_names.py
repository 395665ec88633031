"""Outputs named after their input's file stem (the name without its suffix): inputs sharing a stem would write the
same files, so a batch job refuses them, every clash named with its inputs, before it writes anything. An output
folder where a later run would list the outputs as inputs is refused as well."""
import os
from pathlib import Path

from face3d.utils.errors import InputFileError

__all__ = ["refuse_shared_stems", "refuse_output_in"]


def refuse_output_in(output, folder, folder_name, why, inside=True):
    """Refuse an output folder that is ``folder`` or, with ``inside``, lies inside it, judged on real paths (links
    resolved; an output not made yet by its existing part): a listing of ``folder`` would take its outputs as inputs.

    Args:
        output: the output folder. folder: an input folder. folder_name: what ``folder`` is ("the input folder").
        why: what would go wrong, for the message.
        inside: refuse a folder inside ``folder`` too (for a listing that enters subfolders).
    Raises:
        InputFileError: ``"<output>: the output must lie outside <folder_name> <folder> (<why>)"``, without
        ``inside`` ``"<output>: the output must be a folder other than <folder_name> <folder> (<why>)"``.
    """
    out, real = Path(os.path.realpath(output)), Path(os.path.realpath(folder))
    if out == real or (inside and out.is_relative_to(real)):
        where = "lie outside" if inside else "be a folder other than"
        raise InputFileError(output, f"the output must {where} {folder_name} {folder} ({why})")


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
