"""UV-space data for the model in use (``UVData``: build, write, read), in PRNet's uv-data file names and formats.

r is the resolution (256 for PRNet). UV pixels follow PRNet: x = round(u*(r-1)), y = round((r-1) - v*(r-1)), rows
growing downwards, a map read at ``map[y, x]``, pixel indices row-major ``y*r + x``. ``UVData`` says what each file
holds; ``build_uv_data`` makes it for a model, ``write_uv_data`` and ``load_uv_data`` (which also reads PRNet's own
folder) write and read it. README: "UV data".
"""
from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from face3d.contract import RESOLUTION
from face3d.morphable_model.load import N_KEYPOINTS
from face3d.trainset.posmap import UVRasterization, rasterize_uv, uv_keypoint_pixels, uv_to_pixels
from face3d.utils.atomic import TEMP_SUFFIX
from face3d.utils.errors import InputFileError, os_error_at
from face3d.utils.npyfile import load_npy

__all__ = ["UVData", "build_uv_data", "write_uv_data", "write_model_uv_data", "staged_uv_data", "load_uv_data",
           "load_uv_model", "require_region_labels", "read_uv_kpt_ind", "grid_triangles", "canonical_face",
           "check_uv_data_fits", "UV_DATA_FILES", "CANONICAL_FILE", "KNOWN_UV_DATA_FILES", "WEIGHT_KEYPOINT",
           "WEIGHT_FEATURE", "WEIGHT_REST"]

logger = logging.getLogger(__name__)

UV_DATA_FILES = ("uv_kpt_ind.txt", "face_ind.txt", "triangles.txt", "uv_face_mask.png", "uv_weight_mask.png",
                 "uv_face_eyes.png")
CANONICAL_FILE = "canonical_vertices.npy"
# Every file name of a uv-data folder: ours, and the two only PRNet's Data/uv-data ships (its texture picture, read
# for the eye mask, and its keypoint mask). A generated set's uv-data/ holds of these exactly the ones it was given.
KNOWN_UV_DATA_FILES = (*UV_DATA_FILES, CANONICAL_FILE, "uv_face.png", "uv_kpt_mask.png")
WEIGHT_KEYPOINT, WEIGHT_FEATURE, WEIGHT_REST = 255, 64, 48
_REGION_EYES, _REGION_NOSE, _REGION_MOUTH = 1, 2, 3
_N_JAW = 17
_MASK_FILES = ("uv_face_mask.png", "uv_weight_mask.png", "uv_face_eyes.png")


@dataclass(frozen=True)
class UVData:
    """UV-space masks and indices of a model at one resolution r, one attribute per file of a uv-data folder.

    Attributes:
        uv_kpt_ind: (2, 68) int32 x (row 0), y (row 1) UV pixels of the keypoints (``uv_kpt_ind.txt``; see
            ``uv_keypoint_pixels``).
        face_ind: (m,) int64 row-major indices ``y*r + x`` of the face mask's nonzero pixels, ascending
            (``face_ind.txt``, one per line).
        triangles: (t, 3) int32 indices into ``face_ind`` (``triangles.txt``; see ``grid_triangles``).
        face_mask: (r, r) uint8 {0, 255} (``uv_face_mask.png``): 255 on the face, the UV pixels covered by the
            model and above the jaw line (``build_uv_data``).
        weight_mask: (r, r) uint8 {0, 48, 64, 255} (``uv_weight_mask.png``): loss weights, PRNet's 16 : 4 : 3 : 0
            scaled by 16 (256 clipped to 255): 255 at the 68 keypoint pixels, 64 on eyes, nose and mouth, 48 on
            the rest of the covered UV area (the neck included unless ``neck_zeroed``), 0 outside.
        face_eyes: (r, r) uint8 {0, 255} (``uv_face_eyes.png``): the face mask with the eye regions removed.
        canonical_vertices: (m, 3) float32 canonical face at ``face_ind`` (``canonical_vertices.npy``; position-map
            axes, y down; see ``canonical_face``), or None.
    """

    uv_kpt_ind: np.ndarray
    face_ind: np.ndarray
    triangles: np.ndarray
    face_mask: np.ndarray
    weight_mask: np.ndarray
    face_eyes: np.ndarray
    canonical_vertices: np.ndarray | None = None

    @property
    def resolution(self) -> int:
        """Side r of the UV images."""
        return int(self.face_mask.shape[0])


def _above_jaw(uv_kpt_xy: np.ndarray, resolution: int) -> np.ndarray:
    """(r, r) bool: pixels on the forehead side of the jaw polyline (keypoints 0..16 extended sideways)."""
    jaw = uv_kpt_xy[:, :_N_JAW].T.astype(np.float64)
    far = 4.0 * resolution
    brows_y = uv_kpt_xy[1, _N_JAW:27].mean() if uv_kpt_xy.shape[1] >= 27 else uv_kpt_xy[1].mean()
    top = -far if brows_y < jaw[8, 1] else resolution + far
    side = np.sign(jaw[-1, 0] - jaw[0, 0]) or 1.0
    polygon = np.vstack([jaw, [[jaw[-1, 0] + side * far, jaw[-1, 1]], [jaw[-1, 0] + side * far, top],
                               [jaw[0, 0] - side * far, top], [jaw[0, 0] - side * far, jaw[0, 1]]]])
    mask = np.zeros((resolution, resolution), dtype=np.uint8)
    shift = 4  # fillPoly takes fixed-point vertices; 4 fractional bits keep sub-pixel jaw positions
    cv2.fillPoly(mask, [np.round(polygon * (1 << shift)).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=shift)
    return mask.astype(bool)


def grid_triangles(face_mask: np.ndarray, face_ind: np.ndarray) -> np.ndarray:
    """The ``triangles.txt`` ``build_uv_data`` writes and ``load_uv_data`` derives for a folder without one: a
    triangulation of the UV pixel grid over the face.

    Args:
        face_mask: (r, r) array, nonzero on the face.
        face_ind: (k,) row-major indices ``y*r + x`` of the face pixels (``flatnonzero(face_mask)``).
    Returns:
        (t, 3) int32 indices into ``face_ind``: two triangles per 2x2 pixel block whose four corners are all in
        the face, clockwise for a frontal face with y up, i.e. seen from outside, as the BFM's triangles.
    """
    r = face_mask.shape[0]
    inside = face_mask > 0
    lookup = np.full(r * r, -1, dtype=np.int64)
    lookup[face_ind] = np.arange(face_ind.size)
    lookup = lookup.reshape(r, r)
    a, b = lookup[:-1, :-1], lookup[:-1, 1:]
    c, d = lookup[1:, :-1], lookup[1:, 1:]
    ia, ib, ic, id_ = inside[:-1, :-1], inside[:-1, 1:], inside[1:, :-1], inside[1:, 1:]
    first = np.stack([a, b, c], axis=-1)[ia & ic & ib]
    second = np.stack([b, d, c], axis=-1)[ib & ic & id_]
    return np.concatenate([first, second]).astype(np.int32)


def load_uv_model(model_path=None):
    """``MorphableModel(model_path)`` (None: the embedded default model), which must have UV coordinates.

    Raises:
        FileNotFoundError: ``model_path`` does not exist.
        InputFileError: a model file that is not what it should be (``MorphableModel``'s, naming the file), or
            ``BFM_UV.mat`` missing beside ``model_path`` (face3d's generate.m writes it there).
    """
    from face3d.morphable_model import MorphableModel

    model = MorphableModel(model_path)
    if model.uv_coords is None:
        raise InputFileError(Path(model_path).parent / "BFM_UV.mat", "not found: the UV coordinates of the model "
                                                                     "(written by face3d's generate.m) must lie "
                                                                     "beside BFM.mat")
    return model


def require_region_labels(model, model_path=None) -> None:
    """Refuse to build uv-data (``build_uv_data``) for a model without eye / nose / mouth regions: its weight mask
    would lack the 64 band and its eye mask would remove no pixel.

    Args:
        model: MorphableModel (``region_labels`` (n,) or None). model_path: the ``BFM.mat`` it was loaded from
            (None: the embedded default model, or a model made in memory).
    Raises:
        InputFileError: naming the ``BFM_info.mat`` beside ``model_path`` (missing, or without ``segbin``).
    """
    if getattr(model, "region_labels", None) is not None:
        return
    info = None if model_path is None else Path(model_path).parent / "BFM_info.mat"
    problem = "not found" if info is not None and not info.is_file() else "no 'segbin'"
    raise InputFileError(info, f"{problem}: its segbin regions give uv-data's eyes/nose/mouth weights and eye mask "
                               f"(Data/BFM/convert.py and face3d's generate.m write it beside BFM.mat)")


def build_uv_data(model, resolution: int = RESOLUTION, neck_zeroed: bool = False,
                  rasterization: UVRasterization | None = None) -> UVData:
    """Build PRNet's UV-space data for a morphable model.

    Args:
        model: MorphableModel (uses ``uv_coords`` (n, 2), ``region_labels`` (n,) 0 rest / 1 eyes / 2 nose /
            3 mouth (None: all rest; ``require_region_labels`` refuses a model file without them), ``kpt_ind``
            (68,) and ``full_triangles``).
        resolution: side r of the UV images (PRNet: 256).
        neck_zeroed: False (default) weights the neck 48 like the rest of the covered UV area; True zeroes it as
            in the paper. (PRNet's shipped mask is neither: 0 only on its first row, anti-aliased at region edges.)
            The neck is where the model's region labels cannot help (they only split the face into eyes, nose,
            mouth and rest): the covered UV area below the polyline through the jaw keypoints 0..16, extended
            sideways from keypoints 0 and 16 (``_above_jaw``).
        rasterization: a ``rasterize_uv(model.uv_coords, model.full_triangles, resolution)`` already at hand.
    Returns:
        UVData. A pixel's region is that of its triangle's vertex with the largest barycentric weight.
    """
    uv = getattr(model, "uv_coords", None)
    if uv is None:
        raise ValueError("model.uv_coords is None: the model has no UV coordinates (BFM_UV.mat)")
    r = int(resolution)
    ras = _uv_rasterization(model, r, rasterization)
    covered = ras.covered
    uv_kpt_ind = uv_keypoint_pixels(uv, model.kpt_ind, r, covered)

    labels = getattr(model, "region_labels", None)
    labels = np.zeros(len(uv), dtype=np.uint8) if labels is None else np.asarray(labels)
    nearest = ras.vertex_ids[np.arange(ras.vertex_ids.shape[0]), np.argmax(ras.weights, axis=1)]
    region = np.zeros(r * r, dtype=np.uint8)
    region[ras.pixel_index] = labels[nearest]
    region = region.reshape(r, r)

    face = covered & _above_jaw(uv_to_pixels(uv[np.asarray(model.kpt_ind)], r)[:, :2].T, r)
    face_mask = np.where(face, 255, 0).astype(np.uint8)
    face_ind = np.flatnonzero(face_mask).astype(np.int64)

    weight = np.zeros((r, r), dtype=np.uint8)
    weight[covered if not neck_zeroed else face] = WEIGHT_REST
    features = np.isin(region, (_REGION_EYES, _REGION_NOSE, _REGION_MOUTH)) & covered
    weight[features] = WEIGHT_FEATURE
    weight[uv_kpt_ind[1], uv_kpt_ind[0]] = WEIGHT_KEYPOINT

    face_eyes = np.where(face & (region != _REGION_EYES), 255, 0).astype(np.uint8)
    return UVData(uv_kpt_ind=uv_kpt_ind, face_ind=face_ind, triangles=grid_triangles(face_mask, face_ind),
                  face_mask=face_mask, weight_mask=weight, face_eyes=face_eyes,
                  canonical_vertices=canonical_face(model, ras, face_ind))


def canonical_face(model, rasterization: UVRasterization, face_ind: np.ndarray) -> np.ndarray | None:
    """PRNet's ``canonical_vertices.npy`` for a model: the mean face at the face pixels in position-map axes.

    Args:
        model: MorphableModel (``model['shapeMU']`` (3n, 1); None is returned for a model without one).
        rasterization: ``rasterize_uv`` of the model's UV layout. face_ind: (m,) face pixel indices.
    Returns:
        (m, 3) float32 (x, -y, z) of the mean shape interpolated at the pixels (model units, y down as in a
        position map), or None.
    """
    parameters = getattr(model, "model", None)
    if not isinstance(parameters, dict) or "shapeMU" not in parameters:
        return None
    mean = np.asarray(parameters["shapeMU"], dtype=np.float32).reshape(-1, 3)
    vertices = rasterization.interpolate(mean)[np.asarray(face_ind)]
    return (vertices * np.array([1, -1, 1], dtype=np.float32)).astype(np.float32)


def _uv_rasterization(model, resolution: int, rasterization: UVRasterization | None) -> UVRasterization:
    """``rasterization`` when given (checked to be at ``resolution``), else ``rasterize_uv`` of the model's UV
    layout at ``resolution``."""
    if rasterization is None:
        return rasterize_uv(model.uv_coords, model.full_triangles, resolution)
    if rasterization.resolution != resolution:
        raise ValueError(f"rasterization has resolution {rasterization.resolution}, expected {resolution}")
    return rasterization


def check_uv_data_fits(uv_data: UVData, model, source="uv-data",
                       rasterization: UVRasterization | None = None) -> None:
    """Refuse UV data built for another morphable model than ``model`` (its face pixels would read garbage).

    The UV data fits when its 68 keypoint pixels are those of the model's keypoint vertices (within one pixel)
    and the model's UV layout covers its face pixels (all but 1 %).

    Args:
        uv_data: UVData. model: MorphableModel (``uv_coords``, ``kpt_ind``, ``full_triangles``).
        source: the folder's name, for the message.
        rasterization: a ``rasterize_uv(model.uv_coords, model.full_triangles, uv_data.resolution)`` already at hand.
    Raises:
        InputFileError (a ValueError) naming ``source`` and saying which test failed and by how much; ValueError
        for a model without UV coordinates.
    """
    uv = getattr(model, "uv_coords", None)
    if uv is None:
        raise ValueError(f"{source}: the model has no UV coordinates to check the uv-data against")
    r = uv_data.resolution
    ras = _uv_rasterization(model, r, rasterization)
    expected = uv_keypoint_pixels(uv, model.kpt_ind, r, ras.covered).astype(np.int64)
    shift = np.abs(expected - np.asarray(uv_data.uv_kpt_ind, dtype=np.int64)).max()
    outside = np.count_nonzero(~ras.covered.reshape(-1)[np.asarray(uv_data.face_ind)])
    hint = "it was built for another morphable model; give the model it was made for, or write one for this " \
           "model with face3d uv-data"
    if shift > 1:
        raise InputFileError(source, f"uv-data does not fit the model: its keypoint pixels lie up to {shift} px "
                                     f"from the model's keypoint vertices ({hint})")
    if outside > 0.01 * len(uv_data.face_ind):
        raise InputFileError(source, f"uv-data does not fit the model: {outside} of its {len(uv_data.face_ind)} "
                                     f"face pixels lie outside the model's UV layout ({hint})")


def _write_png(path: Path, image: np.ndarray) -> None:
    # encoded here and written by Python: cv2.imwrite reports success when a full disk took the file's bytes
    ok, png = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"{path}: OpenCV could not encode an image of shape {image.shape} as PNG")
    path.write_bytes(png)


def write_uv_data(uv_data: UVData, folder) -> list[Path]:
    """Write ``uv_data`` into ``folder`` (created if missing) under PRNet's file names, file by file in place (into
    the folder of ``staged_uv_data`` to replace a folder's set all at once).

    Text files hold integers separated by spaces (``numpy.loadtxt`` reads them, as PRNet does); PNGs are
    8-bit single-channel; ``canonical_vertices.npy`` is written when the UVData has one.
    Returns:
        the paths written, in ``UV_DATA_FILES`` order (then ``CANONICAL_FILE``).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name in UV_DATA_FILES]
    np.savetxt(paths[0], uv_data.uv_kpt_ind, fmt="%d")
    np.savetxt(paths[1], uv_data.face_ind.reshape(-1, 1), fmt="%d")
    np.savetxt(paths[2], uv_data.triangles.reshape(-1, 3), fmt="%d")
    _write_png(paths[3], uv_data.face_mask)
    _write_png(paths[4], uv_data.weight_mask)
    _write_png(paths[5], uv_data.face_eyes)
    if uv_data.canonical_vertices is not None:
        paths.append(folder / CANONICAL_FILE)
        np.save(paths[-1], np.asarray(uv_data.canonical_vertices, dtype=np.float32))
    return paths


def write_model_uv_data(model, folder, resolution: int = RESOLUTION, neck_zeroed: bool = False, model_path=None,
                        rasterization: UVRasterization | None = None) -> None:
    """Build a model's uv-data (``build_uv_data``, its arguments) and write it into ``folder`` as a whole
    (``staged_uv_data``), once ``require_region_labels`` has checked that the model loaded from ``model_path`` has
    the regions its masks need."""
    require_region_labels(model, model_path)
    uv_data = build_uv_data(model, resolution, neck_zeroed=neck_zeroed, rasterization=rasterization)
    with staged_uv_data(folder) as staging:
        write_uv_data(uv_data, staging)


@contextlib.contextmanager
def staged_uv_data(folder):
    """Replace the uv-data set of ``folder`` all at once: yields an empty hidden staging folder for the caller to
    fill (``write_uv_data``, or copies of another set's files); when the block ends without error its files are
    moved into ``folder`` (created if missing) with ``os.replace``, one by one since concurrent ``generate`` shards
    may write the same folder, and the ``KNOWN_UV_DATA_FILES`` the new set lacks are removed there, so the folder
    reads as the set given (other files are left alone). On an error ``folder`` is untouched.

    The staging folder ``.<name>.<host>.<pid>.partial`` lies beside ``folder`` (one per process); those that runs
    killed on this host left (their pid no longer runs) are removed first, and this one always at the end.

    Raises:
        OSError: naming ``folder`` for an error that names no file or one in the staging folder (a full disk, a
            read-only file system); other errors as raised.
    """
    folder = Path(folder)
    beside = Path(os.path.abspath(folder))
    _remove_stale_stagings(beside)
    staging = beside.parent / f".{beside.name}.{socket.gethostname()}.{os.getpid()}{TEMP_SUFFIX}"
    try:
        staging.mkdir(parents=True, exist_ok=True)
        yield staging
        folder.mkdir(parents=True, exist_ok=True)
        given = sorted(staging.iterdir())
        for path in given:
            os.replace(path, folder / path.name)
        for name in set(KNOWN_UV_DATA_FILES) - {path.name for path in given}:
            (folder / name).unlink(missing_ok=True)
    except OSError as error:
        if error.filename is None or staging in (Path(error.filename), Path(error.filename).parent):
            raise os_error_at(error, folder) from error
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _process_exists(pid: int) -> bool:
    """Whether process ``pid`` (> 0) runs on this host, whoever's it is."""
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user
        return True


def _remove_stale_stagings(folder: Path) -> None:
    """Remove the staging folders ``.<name>.<host>.<pid>.partial`` (and ``.<name>.<pid>.partial`` of earlier
    versions) of absolute ``folder`` that a run killed while writing left on this host: its pid no longer runs.
    Another host's are left alone, since its processes cannot be seen from here."""
    prefix, host = f".{folder.name}.", socket.gethostname()
    for path in folder.parent.glob(f"{glob.escape(prefix)}*{TEMP_SUFFIX}"):
        owner, _, pid = path.name[len(prefix):-len(TEMP_SUFFIX)].rpartition(".")
        if owner in ("", host) and pid.isdigit() and int(pid) > 0 and not _process_exists(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _read_png(path: Path, flags=cv2.IMREAD_GRAYSCALE) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    image = cv2.imread(str(path), flags)
    if image is None:
        raise InputFileError(path, "not a readable PNG image")
    return image


def _read_ints(path: Path, ndmin: int) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        values = np.loadtxt(path, ndmin=ndmin)
    except ValueError as exc:
        raise InputFileError(path, f"expected whitespace-separated integers ({exc})") from exc
    if values.size and not np.all(values == np.round(values)):
        raise InputFileError(path, "expected integers")
    return values.astype(np.int64)


def read_uv_kpt_ind(path) -> np.ndarray:
    """The keypoints' UV pixels of a ``uv_kpt_ind.txt``: (2, 68) int64, x row then y row (PRNet's layout).

    Raises:
        FileNotFoundError: no such file. InputFileError: not whole numbers, or not 2 rows of 68 values.
    """
    path = Path(path)
    kpt = _read_ints(path, 2)
    if kpt.shape != (2, N_KEYPOINTS):
        got = kpt.shape[1] if kpt.shape[0] == 2 else f"shape {kpt.shape}"
        raise InputFileError(path, f"expected {N_KEYPOINTS} keypoints (2 x {N_KEYPOINTS} values), got {got}")
    return kpt


def _face_eyes(folder: Path, image: np.ndarray, face_mask: np.ndarray) -> np.ndarray:
    """The face-without-eyes mask of ``uv_face_eyes.png`` (read unchanged as ``image``, the size of ``face_mask``):
    the file itself when it is a mask (one channel), else PRNet's pictures: the face mask minus the pixels where
    ``uv_face_eyes.png`` (RGBA) and ``uv_face.png`` (RGB) differ in colour (PRNet's texture-editing eye mask)."""
    path = folder / "uv_face_eyes.png"
    if image.ndim == 2:
        return image
    picture = folder / "uv_face.png"
    if not picture.is_file():
        raise FileNotFoundError(f"{path} is a picture ({image.shape[2]} channels), not a mask: its eye mask needs "
                                f"PRNet's uv_face.png beside it")
    face = _read_png(picture, cv2.IMREAD_COLOR)
    if face.shape[:2] != image.shape[:2]:
        raise InputFileError(picture, f"shape {face.shape[:2]} differs from uv_face_eyes.png's {image.shape[:2]}")
    eyes = np.any(face[..., :3] != image[..., :3], axis=-1)
    return np.where((face_mask > 0) & ~eyes, 255, 0).astype(np.uint8)


def _require_one_mask_size(folder: Path, masks: dict, face_ind: np.ndarray) -> None:
    """Refuse masks that are not square or not all of one size (r, r).

    Args:
        folder: the uv-data folder, for the message. masks: ``_MASK_FILES`` name -> image as read, (h, w) or
            (h, w, c). face_ind: (m,) ``face_ind.txt``.
    Raises:
        InputFileError: naming the image that is not square, or the folder, with the masks' sizes listed odd ones
        first. The index files have no size of their own: theirs is the face mask's when ``face_ind.txt`` lists
        its pixels, else the size the two other masks share.
    """
    for name, image in masks.items():
        if image.shape[0] != image.shape[1]:
            raise InputFileError(folder / name, f"expected a square image, got {image.shape[1]}x{image.shape[0]}")
    sides = {name: image.shape[0] for name, image in masks.items()}
    if len(set(sides.values())) == 1:
        return
    face_side, *other_sides = sides.values()
    if _lists_face_pixels(face_ind, masks["uv_face_mask.png"]):
        index_side = face_side
    else:
        index_side = other_sides[0] if len(set(other_sides)) == 1 else None
    groups = {}
    for name, side in sorted(sides.items(), key=lambda item: item[1] == index_side):
        groups.setdefault(side, []).append(name)
    sizes = ", ".join(f"{' and '.join(names)} {'is' if len(names) == 1 else 'are'} {side}x{side}"
                      for side, names in groups.items())
    raise InputFileError(folder, f"masks of different sizes: {sizes}; all three must be at the resolution of "
                                 f"face_ind.txt and uv_kpt_ind.txt")


def _lists_face_pixels(face_ind: np.ndarray, face_mask: np.ndarray) -> bool:
    """Whether ``face_ind`` (m,) is ``flatnonzero(face_mask)``: the face mask's nonzero pixels y*r + x, ascending."""
    return np.array_equal(face_ind, np.flatnonzero(face_mask))


def _require_face_ind_of_face_mask(folder: Path, face_ind: np.ndarray, face_mask: np.ndarray) -> None:
    """Refuse a ``face_ind.txt`` (m,) that is not ``flatnonzero`` of the (r, r) face mask beside it: its vertices
    would be read at other pixels than the face (a mask of another resolution or another uv-data set).

    Raises:
        InputFileError naming ``face_ind.txt`` and saying how far it is from the mask's pixels.
    """
    if _lists_face_pixels(face_ind, face_mask):
        return
    r, expected = face_mask.shape[0], np.flatnonzero(face_mask)
    if face_ind.size != expected.size:
        differs = f"it holds {face_ind.size} indices for the mask's {expected.size} face pixels"
    else:
        differs = f"they differ at {np.count_nonzero(face_ind != expected)} of its {face_ind.size} indices"
    raise InputFileError(folder / "face_ind.txt", f"not the face pixels of uv_face_mask.png ({r}x{r}, row-major "
                                                  f"y*{r} + x, ascending): {differs}; the two are from different "
                                                  f"uv-data sets or resolutions")


def load_uv_data(folder) -> UVData:
    """Read the files ``write_uv_data`` (or PRNet) wrote in ``folder`` back into a UVData.

    PRNet's folder is read as it is: its ``triangles.txt`` as ours, derived from ``face_ind`` where a copy lacks it
    (``grid_triangles``, logged); ``uv_face_eyes.png`` / ``uv_face.png`` pictures give the eye mask;
    ``canonical_vertices.npy`` is read when present.

    Raises:
        FileNotFoundError: a file is missing. InputFileError (a ValueError): a file has the wrong shape or
            content, or the files disagree: masks of different sizes, a ``face_ind.txt`` that is not
            ``flatnonzero`` of the face mask (masks of another resolution than the index files); the message names
            the file, or the folder and the masks' sizes.
    """
    folder = Path(folder)
    kpt = read_uv_kpt_ind(folder / "uv_kpt_ind.txt")
    face_ind = _read_ints(folder / "face_ind.txt", 1).reshape(-1)
    masks = {name: _read_png(folder / name, cv2.IMREAD_UNCHANGED if name == "uv_face_eyes.png" else
                             cv2.IMREAD_GRAYSCALE) for name in _MASK_FILES}
    face_mask, weight_mask = masks["uv_face_mask.png"], masks["uv_weight_mask.png"]
    _require_one_mask_size(folder, masks, face_ind)
    _require_face_ind_of_face_mask(folder, face_ind, face_mask)
    r = face_mask.shape[0]
    if kpt.min() < 0 or kpt.max() >= r:
        raise InputFileError(folder / "uv_kpt_ind.txt", f"pixel coordinates outside 0..{r - 1}")
    face_eyes = _face_eyes(folder, masks["uv_face_eyes.png"], face_mask)
    if (folder / "triangles.txt").is_file():
        triangles = _read_ints(folder / "triangles.txt", 2)
        if triangles.size == 0:
            triangles = triangles.reshape(0, 3)
        if triangles.shape[1] != 3:
            raise InputFileError(folder / "triangles.txt", f"expected 3 columns, got shape {triangles.shape}")
    else:
        triangles = grid_triangles(face_mask, face_ind)
        logger.info("%s: no triangles.txt; derived %d triangles of the UV grid from face_ind.txt", folder,
                    len(triangles))
    if triangles.size and (triangles.min() < 0 or triangles.max() >= face_ind.size):
        raise InputFileError(folder / "triangles.txt", f"indices outside 0..{face_ind.size - 1}")
    canonical = None
    if (folder / CANONICAL_FILE).is_file():
        canonical = load_npy(folder / CANONICAL_FILE, "array of canonical vertices")
        if canonical.shape != (face_ind.size, 3):
            raise InputFileError(folder / CANONICAL_FILE, f"shape {canonical.shape} does not fit the "
                                                          f"{face_ind.size} face pixels of face_ind.txt: expected one "
                                                          "(x, y, z) per face pixel")
        canonical = canonical.astype(np.float32)
    return UVData(uv_kpt_ind=kpt.astype(np.int32), face_ind=face_ind, triangles=triangles.astype(np.int32),
                  face_mask=face_mask, weight_mask=weight_mask, face_eyes=face_eyes, canonical_vertices=canonical)
