"""Sample discovery for ``face3d generate``: the samples of a 300W-LP-style folder, their shard and seeds.

A sample is a ``.mat`` parameter file with an image of the same stem; samples are sorted by their relative path
(posix separators, no extension), which defines the order of everything the runner does. ``--shard K/N`` keeps the
K-th of N contiguous blocks, and each sample's seed is a hash of the base seed and its relative path.
"""
import hashlib
import logging
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from face3d.utils.image_header import IMAGE_SUFFIXES, UNREAD_IMAGE_SUFFIXES, is_listed_image

__all__ = ["SampleRef", "discover_samples", "walk_stems", "listed_images", "parse_shard", "select_shard",
           "sample_seed", "printable_path", "label_text_problem", "KNOWN_300WLP_FOLDERS"]

logger = logging.getLogger(__name__)

KNOWN_300WLP_FOLDERS = ("AFW", "HELEN", "IBUG", "LFPW", "AFW_Flip", "HELEN_Flip", "IBUG_Flip", "LFPW_Flip")


@dataclass(frozen=True)
class SampleRef:
    """One input sample.

    Attributes:
        rel: relative path of the sample from the root, posix separators, no extension ("AFW/AFW_134212_1_0").
        image_path: the image file (may not exist: the sample then fails with that reason).
        mat_path: the ``.mat`` parameter file.
    """
    rel: str
    image_path: str
    mat_path: str

    @property
    def stem(self):
        """File name of the sample without folder and extension."""
        return self.rel.rsplit("/", 1)[-1]

    @property
    def folder(self):
        """Relative folder of the sample ("" at the root)."""
        return self.rel.rsplit("/", 1)[0] if "/" in self.rel else ""


def _is_excluded_dir(name):
    return name.startswith(".") or name.lower() == "landmarks"


def printable_path(path):
    """``path`` (str) as text any stream can print: the bytes of a name that is not UTF-8 as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def label_text_problem(text):
    """Why ``text`` cannot go into a label line (``<image path> <npy path>``, UTF-8), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8, which the label file is written in"
    if any(c.isspace() for c in text):
        return "contains whitespace, which separates the two paths of a label line"
    return None


def walk_stems(root, tops, exclude=(), skip_dir=_is_excluded_dir, unreadable=None):
    """The files under the folders ``tops`` (``root`` or folders inside it), grouped by stem, in a fixed order.

    Links to folders are followed, but each folder (by its real path) is walked once: first every folder reached
    without a link, then the links in the order they are found, so a folder that is also reached through a link
    keeps its own path, and a link back to an ancestor or to a folder walked already is skipped (logged at
    WARNING). Relative paths are the paths as seen through the links.

    Args:
        root: the folder relative paths start from. tops: the folders walked.
        exclude: folders never walked; skip_dir: ``skip_dir(name)`` true for folder names never walked.
        unreadable: optional list receiving ``{"folder": path, "reason": "<error type>: <message>"}`` for each
            folder that cannot be listed (permission denied ...); each is also logged at WARNING.
    Yields:
        (dirpath, rel, names) per stem not starting with a dot: ``rel`` the posix path of ``dirpath/stem`` relative
        to ``root``, ``names`` the file names with that stem.
    """
    excluded = {os.path.realpath(p) for p in exclude}
    walked = {}  # real path -> the path it is walked as

    def on_error(error):
        folder, reason = printable_path(error.filename), f"{type(error).__name__}: {error.strerror or error}"
        logger.warning("cannot list folder %s: %s", folder, reason)
        if unreadable is not None:
            unreadable.append({"folder": folder, "reason": reason})

    def first_visit(path):
        real = os.path.realpath(path)
        if real in walked:
            logger.warning("skipping folder %s: it is %s, walked already as %s", printable_path(path),
                           printable_path(real), printable_path(walked[real]))
            return False
        walked[real] = path
        return True

    pending = deque([str(t) for t in tops if not os.path.islink(t)] + [str(t) for t in tops if os.path.islink(t)])
    while pending:
        top = pending.popleft()
        if not first_visit(top):
            continue
        # os.walk lists a link to a folder among the folders without entering it: it is queued instead
        for dirpath, dirnames, filenames in os.walk(top, onerror=on_error):
            kept = []
            for name in sorted(dirnames):
                path = os.path.join(dirpath, name)
                if skip_dir(name) or os.path.realpath(path) in excluded:
                    continue
                if os.path.islink(path):
                    pending.append(path)
                elif first_visit(path):
                    kept.append(name)
            dirnames[:] = kept
            by_stem = {}
            for name in filenames:
                stem = os.path.splitext(name)[0]
                if not stem.startswith("."):
                    by_stem.setdefault(stem, []).append(name)
            for stem, names in by_stem.items():
                yield dirpath, Path(os.path.relpath(os.path.join(dirpath, stem), root)).as_posix(), names


def listed_images(folder):
    """Every image under ``folder`` (``is_listed_image``: an ``IMAGE_SUFFIXES`` suffix, hidden files left out),
    sorted by path: links to folders followed, each folder walked once (``walk_stems``); hidden folders are not
    walked, and a folder that cannot be listed is logged at WARNING.

    Returns:
        list of Paths, as seen through the links.
    """
    return sorted(Path(dirpath, name)
                  for dirpath, _, names in walk_stems(folder, [folder], skip_dir=lambda n: n.startswith("."))
                  for name in names if is_listed_image(name))


def discover_samples(root, exclude=(), unreadable=None):
    """List the samples under ``root``, sorted by relative path.

    Args:
        root: folder of the 300W-LP tree or of any image + ``.mat`` pairs (nested folders and links to folders
            allowed, each folder walked once: see ``walk_stems``).
        exclude: folders never walked (e.g. the output folder when it lies inside ``root``).
        unreadable: optional list receiving the folders that cannot be listed, whose samples are then missing
            (see ``walk_stems``).
    Returns:
        list of ``SampleRef`` sorted by ``rel``; the image is the first of ``IMAGE_SUFFIXES`` present. A ``.mat``
        file without such an image is still listed, so the run reports it instead of silently dropping it: with
        the first file of its stem with an image suffix not read (``x.webp``, refused by the run), else with the
        ``.jpg`` name its image should have.
    Raises:
        FileNotFoundError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"root must be a folder of 300W-LP-style samples, got {str(root)!r}")
    known = [name for name in KNOWN_300WLP_FOLDERS if (root / name).is_dir()]
    tops = [root / name for name in known] if known else [root]
    samples = []
    for dirpath, rel, names in walk_stems(root, tops, exclude, unreadable=unreadable):
        exts = {os.path.splitext(name)[1].lower(): name for name in names}
        if ".mat" in exts:
            image = next((exts[e] for e in IMAGE_SUFFIXES if e in exts), None)
            if image is None:  # the run names the image file of another format, or the image it misses
                image = min((name for ext, name in exts.items() if ext in UNREAD_IMAGE_SUFFIXES),
                            default=rel.rsplit("/", 1)[-1] + ".jpg")
            samples.append(SampleRef(rel, os.path.join(dirpath, image), os.path.join(dirpath, exts[".mat"])))
    samples.sort(key=lambda s: s.rel)
    return samples


def parse_shard(text):
    """Parse ``"K/N"`` (1 <= K <= N) into ``(K, N)``; None stays None.

    Raises:
        ValueError: the text is not two positive integers ``K/N`` with ``K <= N``.
    """
    if text is None:
        return None
    try:
        k, n = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise ValueError(f"shard must be 'K/N' with integers 1 <= K <= N, got {text!r}") from None
    if not 1 <= k <= n:
        raise ValueError(f"shard must be 'K/N' with integers 1 <= K <= N, got {text!r}")
    return k, n


def select_shard(samples, k, n):
    """The K-th of N contiguous blocks of ``samples`` (1-based K).

    Block K holds indices ``[floor((K-1) M / N), floor(K M / N))`` of the M samples: the blocks are disjoint,
    cover the list, differ in size by at most one and, concatenated in K order, give the list back.
    """
    m = len(samples)
    return samples[(k - 1) * m // n: k * m // n]


def sample_seed(base_seed, rel):
    """Per-sample seed: the first 8 bytes of ``sha256(f"{base_seed}:{rel}")`` as an int in [0, 2**63), the text
    encoded as the file system's bytes (UTF-8, and the raw bytes of a name that is not UTF-8)."""
    digest = hashlib.sha256(f"{int(base_seed)}:{rel}".encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "little") & (2 ** 63 - 1)

