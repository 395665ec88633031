"""Sample lists, up-front checks, the tf.data pipeline and its augmentation (about 20 s on 2 cores)."""
import logging
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import _prnet_data
import cv2
import numpy as np
import pytest

from face3d.prnet.data import (
    AugmentConfig,
    augment_params,
    check_samples,
    group_key,
    make_dataset,
    open_h5,
    split_train_val,
)
from face3d.prnet.samples import FileSamples
from face3d.prnet.uv_weights import loss_weights
from face3d.trainset.pack import read_label_file
from face3d.trainset.posmap import keypoints_from_map
from face3d.trainset.uv_layout import load_uv_data
from face3d.utils.errors import InputFileError

tf = pytest.importorskip("tensorflow")

R = 32
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prnet_small")
    label = _prnet_data.make_dataset(folder, 6, R, seed=3, angles=(30,))
    return label, check_samples(read_label_file(label)), load_uv_data(folder / "uv-data")


def _ramp_set(folder, n, resolution, seed):
    """PNG crops whose red/green channels are the pixel's own x/y, with maps from the synthetic set."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:resolution, 0:resolution]
    lines = []
    for i in range(n):
        _, posmap = _prnet_data.make_sample(resolution, rng)
        image = np.stack([xs, ys, np.full_like(xs, 128)], axis=-1).astype(np.uint8)  # RGB
        cv2.imwrite(str(folder / f"ramp_{i}.png"), image[..., ::-1])
        np.save(folder / f"ramp_{i}.npy", posmap.astype(np.float32))
        lines.append(f"ramp_{i}.png ramp_{i}.npy")
    (folder / "trainDataLabel.txt").write_text("\n".join(lines) + "\n")
    _prnet_data.write_uv_data(folder / "uv-data", resolution)
    return folder / "trainDataLabel.txt"


def _bilinear(image, x, y):
    x0, y0 = int(math.floor(x)), int(math.floor(y))
    fx, fy = x - x0, y - y0
    return ((1 - fx) * (1 - fy) * image[y0, x0] + fx * (1 - fy) * image[y0, x0 + 1]
            + (1 - fx) * fy * image[y0 + 1, x0] + fx * fy * image[y0 + 1, x0 + 1])


def _one_batch(samples, uv, **kwargs):
    images, targets, weights = next(iter(make_dataset(samples, uv, **kwargs)))
    return images.numpy(), targets.numpy(), weights.numpy()


def test_label_file_relative_paths_become_absolute(tmp_path, monkeypatch):
    label = _prnet_data.make_dataset(tmp_path / "set", 2, 16, rel_paths=True)
    monkeypatch.chdir(tmp_path)
    samples = check_samples(read_label_file(Path("set") / label.name))
    assert samples.images[0] == str(tmp_path / "set" / "sample_000.jpg")
    assert samples.posmaps == (str(tmp_path / "set" / "sample_000.npy"), str(tmp_path / "set" / "sample_001.npy"))


def test_check_shows_its_progress(tmp_path, capsys):
    pairs = read_label_file(_prnet_data.make_dataset(tmp_path, 3, 16))
    check_samples(pairs)
    assert capsys.readouterr().err == ""
    check_samples(pairs, progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("check samples: 3/3 100.0% ")


@pytest.mark.parametrize("damage, reason", [
    ("missing_npy", "file not found"), ("truncated_jpg", "truncated JPEG"), ("garbage_npy", "not a .npy"),
    ("short_npy", "truncated or padded"), ("wrong_shape", "expected \\(R, R, 3\\)"), ("text_image", "not a JPEG"),
    ("bad_jpeg_table", "corrupt image data"), ("flipped_png_byte", "corrupt image data"),
    ("unclosed_npy_header", "the header's brackets do not close"),
])
def test_bad_sample_is_named_or_skipped(tmp_path, caplog, damage, reason):
    label = _prnet_data.make_dataset(tmp_path, 3, 16)
    pairs = read_label_file(label)
    image, posmap = pairs[1]
    if damage == "missing_npy":
        (tmp_path / "sample_001.npy").unlink()
    elif damage == "truncated_jpg":
        data = open(image, "rb").read()
        open(image, "wb").write(data[: len(data) // 2])
    elif damage == "garbage_npy":
        open(posmap, "wb").write(b"not numpy at all" * 10)
    elif damage == "short_npy":
        data = open(posmap, "rb").read()
        open(posmap, "wb").write(data[:-10])
    elif damage == "unclosed_npy_header":
        data = open(posmap, "rb").read()
        open(posmap, "wb").write(data.replace(b"),", b" ,", 1))
    elif damage == "wrong_shape":
        np.save(posmap, np.zeros((16, 16), np.float16))
    elif damage == "text_image":
        open(image, "w").write("hello")
    elif damage == "bad_jpeg_table":  # a quantisation table numbered 15 (JPEG allows 0-3): header and end intact
        data = bytearray(open(image, "rb").read())
        data[data.index(b"\xff\xdb") + 4] = 0x0F
        open(image, "wb").write(data)
    elif damage == "flipped_png_byte":  # one byte of the compressed pixels inverted: header and IEND intact
        image = image[:-len(".jpg")] + ".png"
        data = bytearray(cv2.imencode(".png", cv2.imread(pairs[1][0]))[1].tobytes())
        data[data.index(b"IDAT") + 10] ^= 0xFF
        open(image, "wb").write(data)
        pairs[1] = (image, posmap)
    bad_file = posmap if "npy" in damage or damage == "wrong_shape" else image
    with pytest.raises(InputFileError, match=reason) as info:
        check_samples(pairs)
    assert bad_file in str(info.value)
    with caplog.at_level(logging.WARNING, logger="face3d.prnet.data"):
        samples = check_samples(pairs, skip_bad=True)
    assert len(samples) == 2 and image not in samples.images
    assert bad_file in caplog.text


def test_a_map_padded_by_a_few_bytes_is_refused(tmp_path):
    """A map file longer than its header says is refused like a short one: the loader reads the array from the end
    of the file, so the trailing bytes would shift every value of the map (a silently wrong target)."""
    pairs = read_label_file(_prnet_data.make_dataset(tmp_path, 2, 16))
    posmap = pairs[1][1]
    np.save(posmap, np.ones((16, 16, 3), np.float32))
    with open(posmap, "ab") as padded:
        padded.write(b"\0" * 8)
    # a version 1.0 .npy: a 128-byte header then 16 * 16 * 3 float32 values
    expected = 128 + 16 * 16 * 3 * 4
    with pytest.raises(InputFileError) as refused:
        check_samples(pairs)
    assert str(refused.value) == f"{posmap}: truncated or padded .npy ({expected + 8} bytes, expected {expected})"


def test_the_majority_resolution_wins(tmp_path, caplog):
    """One 32 x 32 sample listed before four 16 x 16 ones: the odd one is named (the error, or the one skipped),
    whatever its place in the list."""
    odd = read_label_file(_prnet_data.make_dataset(tmp_path / "odd", 1, 32, seed=0))
    pairs = odd + read_label_file(_prnet_data.make_dataset(tmp_path / "main", 4, 16, seed=1))
    with pytest.raises(InputFileError) as info:
        check_samples(pairs)
    assert str(info.value) == f"{odd[0][1]}: resolution 32, 4 of 5 samples have 16"
    with caplog.at_level(logging.WARNING, logger="face3d.prnet.samples"):
        samples = check_samples(pairs, skip_bad=True)
    assert samples.resolution == 16 and samples.posmaps == tuple(p for _, p in pairs[1:])
    assert f"skipping bad sample: {odd[0][1]}: resolution 32" in caplog.text


def test_float16_and_float32_maps_mix(tmp_path):
    """Maps written with and without ``face3d generate --float32`` in one list: each is read in its own dtype."""
    label = _prnet_data.make_dataset(tmp_path, 3, 16, seed=2)
    pairs = read_label_file(label)
    wide = np.load(pairs[1][1]).astype(np.float32) + np.float32(1 / 1024)  # not a float16 value
    np.save(pairs[1][1], wide)
    samples = check_samples(pairs)
    assert samples.posmap_dtypes == ("<f2", "<f4", "<f2")
    uv = load_uv_data(tmp_path / "uv-data")
    _, targets, _ = _one_batch(samples, uv, batch_size=3, shuffle=False)
    for target, (_, posmap) in zip(targets, pairs):
        np.testing.assert_allclose(target, np.load(posmap).astype(np.float32) / (1.1 * 16), rtol=1e-6)


def test_half_maps_decode_to_numpys_float32_bit_for_bit(tmp_path):
    """Every float16 bit pattern (signed zeros, subnormals, infinities, NaNs) in a map file loads, in the tf.data
    pipeline as in training, as the float32 bits numpy's conversion gives; NaNs keep their payload and come out
    quiet, as the CPU's conversion makes them (maps holding NaN are refused by check_samples anyway)."""
    bits = np.arange(2 ** 16, dtype=np.uint16)
    expected = bits.view(np.float16).astype(np.float32).view(np.uint32)
    nan = np.isnan(bits.view(np.float16))
    expected[nan] |= np.uint32(1 << 22)  # float32's quiet bit
    assert np.count_nonzero(nan) == 2046
    side = 148  # 148 x 148 x 3 = 65712 values hold every pattern
    values = np.zeros(side * side * 3, np.uint16)
    values[:bits.size] = bits
    np.save(tmp_path / "all.npy", values.view(np.float16).reshape(side, side, 3))
    cv2.imwrite(str(tmp_path / "all.png"), np.zeros((side, side, 3), np.uint8))
    samples = FileSamples((str(tmp_path / "all.png"),), (str(tmp_path / "all.npy"),), side, ("<f2",))
    (_, posmap), = tf.data.Dataset.range(1).map(samples.loader())
    assert posmap.dtype == tf.float32 and posmap.shape == (side, side, 3)
    np.testing.assert_array_equal(posmap.numpy().ravel()[:bits.size].view(np.uint32), expected)


def test_half_maps_load_without_tensorflow_float16_kernels(tmp_path):
    """Reading float16 maps into a batch logs no oneDNN "supports DT_HALF only on platforms with AVX-512" error
    (TensorFlow's float16 kernels log it on CPUs without AVX-512 half support; elsewhere this passes anyway)."""
    label = _prnet_data.make_dataset(tmp_path, 2, 32)
    code = textwrap.dedent(f"""
        from face3d.prnet.data import check_samples, make_dataset
        from face3d.trainset.pack import read_label_file
        from face3d.trainset.uv_layout import load_uv_data
        samples = check_samples(read_label_file({str(label)!r}))
        batch = next(iter(make_dataset(samples, load_uv_data({str(tmp_path / "uv-data")!r}), batch_size=2)))
        print(batch[1].dtype.name, batch[1].shape)
    """)
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env={**env, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "float32 (2, 32, 32, 3)\n"
    assert "DT_HALF" not in result.stderr


def test_no_usable_sample_names_the_label_file(tmp_path):
    label = _prnet_data.make_dataset(tmp_path, 2, 16)
    for npy in tmp_path.glob("*.npy"):
        npy.unlink()
    with pytest.raises(InputFileError) as info:
        check_samples(read_label_file(label), skip_bad=True, source=label)
    assert str(info.value) == f"{label}: no usable sample among 2"


def test_split_keeps_rotated_copies_together():
    names = [f"s{i}" for i in range(10)] + [f"s{i}_angle_{a}" for i in range(10) for a in (15, -30)]
    assert group_key("AFW_1_0_angle_-45") == "AFW_1"
    train, val = split_train_val(names, 0.2, seed=1)
    assert sorted(train + val) == list(range(30))
    val_groups = {group_key(names[i]) for i in val}
    assert len(val_groups) == 2 and len(val) == 6
    assert not val_groups & {group_key(names[i]) for i in train}
    assert split_train_val(names, 0.2, seed=1) == (train, val)


def test_split_keeps_views_and_flip_copies_with_their_face():
    """The names of a generated 300W-LP-style set: 10 faces x 4 profiled views, each view with a _Flip copy (same
    stem in SYNTH_Flip) and a rotated copy; the user-style names beside them are each their own source."""
    from face3d.trainset.synthetic import sample_names
    faces, images = [], []
    for folder, stem, face, _, _ in sample_names(80, views=4, flip=True):
        for suffix in ("", "_angle_30"):
            images.append(f"/set/{folder}/{stem}{suffix}.jpg")
            faces.append(face)
    users = ["IMG_1234", "IMG_1235", "IMG_1234_angle_-15", "photo_7", "photo_8"]
    images += [f"/set/mine/{name}.jpg" for name in users]
    faces += [100, 101, 100, 102, 103]
    names = FileSamples(tuple(images), tuple(images), 32, ("<f2",) * len(images)).names
    assert names[:4] == ["SYNTH_0000_1_0", "SYNTH_0000_1_0_angle_30", "SYNTH_0000_1_0", "SYNTH_0000_1_0_angle_30"]
    assert [group_key(n) for n in names[:16:2]] == ["SYNTH_0000_1"] * 8
    assert group_key("AFW_134212_1_3_angle_-30") == "AFW_134212_1" != group_key("AFW_134212_2_0")
    assert [group_key(n) for n in users] == ["IMG_1234", "IMG_1235", "IMG_1234", "photo_7", "photo_8"]
    train, val = split_train_val(names, 0.25, seed=0)
    assert sorted(train + val) == list(range(len(names)))
    val_faces = {faces[i] for i in val}
    assert len(val_faces) == 4 and len(val) == sum(faces.count(f) for f in val_faces)
    assert not val_faces & {faces[i] for i in train}


SPLIT_NAMES = [f"IMG_{i}" for i in range(20)]
# default_rng(0).permutation(20) starts 4, 19, 6, 2: the validation faces are those places of the names in sorted
# order (IMG_0, IMG_1, IMG_10, ..., IMG_19, IMG_2, ..., IMG_9), i.e. IMG_12, IMG_9, IMG_14 and IMG_10
SPLIT_VALIDATION = [9, 10, 12, 14]


def test_split_takes_the_validation_faces_from_the_sorted_names():
    """With a fixed seed the validation faces are the seed's permutation applied to the sorted source faces, so the
    same names give the same split in every run."""
    train, val = split_train_val(SPLIT_NAMES, 0.2, seed=0)
    assert val == SPLIT_VALIDATION
    assert train == [i for i in range(20) if i not in SPLIT_VALIDATION]


def test_split_does_not_depend_on_the_string_hash_seed():
    """A resumed run (a new process, so another PYTHONHASHSEED) validates on the same faces as the run it
    continues: the split must not follow the iteration order of a set of names."""
    code = ("from face3d.prnet.samples import split_train_val; "
            f"print(split_train_val({SPLIT_NAMES!r}, 0.2, seed=0)[1])")
    for hash_seed in ("1", "2", "3"):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                                env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": hash_seed})
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"{SPLIT_VALIDATION}\n"


def test_split_of_two_faces_keeps_one_for_training_whatever_the_fraction():
    """However large the validation fraction, training keeps at least one whole source face."""
    names = ["a_1_0", "a_1_1", "b_2_0", "b_2_1"]
    assert split_train_val(names, 0.9, seed=0) == ([2, 3], [0, 1])


def test_pipeline_targets_and_weights_without_augmentation(small_set):
    label, samples, uv = small_set
    images, targets, weights = _one_batch(samples, uv, batch_size=4, shuffle=False)
    first_map = np.load(samples.posmaps[0]).astype(np.float32)
    first_image = cv2.imread(samples.images[0])[..., ::-1]
    np.testing.assert_allclose(targets[0], first_map / (1.1 * R), rtol=1e-6)
    np.testing.assert_array_equal(images[0] * 255, first_image)  # decoded exactly as OpenCV does
    np.testing.assert_array_equal(weights[2], loss_weights(uv))
    assert images.dtype == targets.dtype == weights.dtype == np.float32


def test_pipeline_is_deterministic_per_seed_and_epoch(small_set):
    _, samples, uv = small_set
    kwargs = dict(batch_size=4, augment=AugmentConfig(), seed=5)
    a = _one_batch(samples, uv, epoch=2, **kwargs)
    b = _one_batch(samples, uv, epoch=2, **kwargs)
    c = _one_batch(samples, uv, epoch=3, **kwargs)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_rotated_map_keypoints_land_on_rotated_image_landmarks(tmp_path):
    """Crops whose colour is their own pixel coordinate: after augmentation, the image at each keypoint that the
    augmented map gives must show the coordinate where the original map put that keypoint."""
    res = 64
    label = _ramp_set(tmp_path, 8, res, seed=0)
    samples = check_samples(read_label_file(label))
    uv = load_uv_data(tmp_path / "uv-data")
    originals = keypoints_from_map(np.stack([np.load(p) for p in samples.posmaps]), uv.uv_kpt_ind)
    augment = AugmentConfig(color=False, occlusion=False)
    images, targets, _ = _one_batch(samples, uv, batch_size=8, augment=augment, seed=11, shuffle=False)
    moved = keypoints_from_map(targets * 1.1 * res, uv.uv_kpt_ind)
    checked = 0
    for b in range(8):
        rotation = math.degrees(math.atan2(moved[b, 1, 1] - moved[b, 0, 1], moved[b, 1, 0] - moved[b, 0, 0])
                                - math.atan2(originals[b, 1, 1] - originals[b, 0, 1],
                                             originals[b, 1, 0] - originals[b, 0, 0]))
        assert abs((rotation + 180) % 360 - 180) <= 45.5
        for k in range(68):
            (x, y), (x0, y0) = moved[b, k, :2], originals[b, k, :2]
            if not (1 <= x <= res - 2 and 1 <= y <= res - 2 and 0 <= x0 <= res - 1 and 0 <= y0 <= res - 1):
                continue
            seen = _bilinear(images[b] * 255, x, y)
            np.testing.assert_allclose(seen[:2], (x0, y0), atol=0.05)  # OpenCV: 1/32-pixel bilinear grid
            checked += 1
    assert checked > 300
    # the depth follows the scale: z' / z equals the x-y scale of the transform
    ratio_xy = np.linalg.norm(moved[:, 30, :2] - moved[:, 8, :2], axis=1) / np.linalg.norm(
        originals[:, 30, :2] - originals[:, 8, :2], axis=1)
    np.testing.assert_allclose(moved[:, 30, 2] / originals[:, 30, 2], ratio_xy, rtol=1e-4)
    assert ratio_xy.min() >= 0.9 - 1e-4 and ratio_xy.max() <= 1.2 + 1e-4


def test_each_augmentation_is_switchable(small_set):
    _, samples, uv = small_set
    plain = _one_batch(samples, uv, batch_size=4, shuffle=False)
    centre = (R - 1) / 2
    only = {name: _one_batch(samples, uv, batch_size=4, shuffle=False, seed=2,
                             augment=AugmentConfig(**{k: k == name for k in
                                                      ("rotation", "translation", "scale", "color", "occlusion")},
                                                   occlusion_prob=1.0))
            for name in ("rotation", "translation", "scale", "color", "occlusion")}
    inside = plain[1][..., 0] != 0
    px, py = plain[1][..., 0] * 1.1 * R - centre, plain[1][..., 1] * 1.1 * R - centre
    for name in ("rotation", "translation", "scale"):
        t = only[name][1] * 1.1 * R
        qx, qy = t[..., 0] - centre, t[..., 1] - centre
        for b in range(4):
            m = inside[b]
            if name == "rotation":  # distances to the centre and depth kept, angle changed
                np.testing.assert_allclose(np.hypot(qx[b][m], qy[b][m]), np.hypot(px[b][m], py[b][m]), atol=1e-3)
                np.testing.assert_allclose(t[b][m][:, 2], plain[1][b][m][:, 2] * 1.1 * R, rtol=1e-5)
            elif name == "translation":  # one constant offset of at most 10 % of R
                shift = np.stack([qx[b][m] - px[b][m], qy[b][m] - py[b][m]])
                np.testing.assert_allclose(shift, shift[:, :1].repeat(shift.shape[1], 1), atol=1e-3)
                assert np.abs(shift[:, 0]).max() <= 0.1 * R + 1e-4
            else:  # one scale factor in [0.9, 1.2] for x, y and z
                factor = np.hypot(qx[b][m], qy[b][m]).sum() / np.hypot(px[b][m], py[b][m]).sum()
                assert 0.9 <= factor <= 1.2
                np.testing.assert_allclose(t[b][m][:, 2], factor * plain[1][b][m][:, 2] * 1.1 * R, rtol=1e-4)
        assert not np.array_equal(only[name][0], plain[0])
    for name in ("color", "occlusion"):
        np.testing.assert_array_equal(only[name][1], plain[1])
    # colour alone: each channel times its drawn factor, clipped to 255, over 255 (the factors of sample i are
    # augment_params' for the seed (2, i): epoch 0, unshuffled)
    colour_only = AugmentConfig(**{k: k == "color" for k in ("rotation", "translation", "scale", "color", "occlusion")})
    factors = np.stack([augment_params(tf.constant([2, i], tf.int64), colour_only)["color"].numpy() for i in range(4)])
    assert factors.min() >= 0.6 and factors.max() <= 1.4
    pixels = np.rint(plain[0] * 255).astype(np.float32)  # the decoded uint8 crops
    scaled = pixels * factors[:, None, None, :]
    assert (scaled > 255).any()  # bright pixels brightened: the clip is exercised
    np.testing.assert_allclose(only["color"][0], np.minimum(scaled, 255) / np.float32(255), rtol=0, atol=1e-6)
    assert only["color"][0].max() <= 1.0
    changed = np.any(only["occlusion"][0] != plain[0], axis=-1)
    for b in range(4):
        rows, cols = np.nonzero(changed[b])
        box = changed[b, rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert box.mean() > 0.9 and box.size >= (0.1 * R) ** 2 * 0.5  # one textured rectangle


def test_reduced_input_size_resamples_maps_and_images(small_set):
    _, samples, uv = small_set
    from face3d.prnet.uv_weights import resample_indices, resize_uv_data
    images, targets, weights = _one_batch(samples, uv, batch_size=2, shuffle=False)
    assert images.shape == (2, R, R, 3)
    uv16 = resize_uv_data(uv, 16)
    images16, targets16, weights16 = _one_batch(samples, uv, batch_size=2, input_size=16, shuffle=False)
    index = resample_indices(R, 16)
    away = np.ones((16, 16), bool)
    away[uv16.uv_kpt_ind[1], uv16.uv_kpt_ind[0]] = False  # the keypoint pixels: the test below
    np.testing.assert_allclose(targets16[:, away], targets[:, index][:, :, index][:, away], rtol=1e-6)
    np.testing.assert_array_equal(weights16[0], loss_weights(uv16))
    assert images16.shape == (2, 16, 16, 3)
    np.testing.assert_allclose(images16.mean(axis=(1, 2)), images.mean(axis=(1, 2)), atol=0.03)
    with pytest.raises(ValueError, match="uv data resolution 16 differs from the maps' 32"):
        make_dataset(samples, uv16, batch_size=2, input_size=16)


@pytest.mark.parametrize("size", [32, 16])
def test_reduced_input_image_pixel_centres_keep_their_place(tmp_path, size):
    """At S < R the crop is warped straight to S so that pixel q of the S image covers the k x k pixels of the R crop
    from k q to k q + k - 1 (k = R / S): it reads the R crop at k q + (k - 1) / 2, as ``cv2.resize``'s area
    sampling and ``face_crop.crop_face`` place it. On crops whose red and green are their own x and y, bilinear
    sampling returns that position itself; with k a power of two it lies on OpenCV's 1/32-pixel grid, so the only
    error is float32 rounding (the value is read in 0 .. 255 and scaled by 1 / 255)."""
    res = 64
    label = _ramp_set(tmp_path, 2, res, seed=0)
    samples = check_samples(read_label_file(label))
    images = _one_batch(samples, load_uv_data(tmp_path / "uv-data"), batch_size=2, input_size=size, shuffle=False)[0]
    k = res / size
    centres = k * np.arange(size) + (k - 1) / 2
    for image in images * 255:
        np.testing.assert_allclose(image[..., 0], np.broadcast_to(centres, (size, size)), rtol=0, atol=1e-4)
        np.testing.assert_allclose(image[..., 1], np.broadcast_to(centres[:, None], (size, size)), rtol=0, atol=1e-4)
        np.testing.assert_allclose(image[..., 2], 128, rtol=0, atol=1e-4)


@pytest.mark.parametrize("augment", [None, AugmentConfig(color=False, occlusion=False)],
                         ids=["plain", "geometric"])
def test_reduced_targets_hold_the_keypoints_themselves(small_set, augment):
    """At S < R the training target's keypoint pixels (``resize_uv_data``) hold the keypoints of the R map, with or
    without the geometric augmentation: bit for bit where a keypoint has its S pixel to itself, the mean of the
    keypoints that share one otherwise. Nearest-neighbour alone would hold there a neighbouring UV pixel's values."""
    _, samples, uv = small_set
    from face3d.prnet.uv_weights import resize_uv_data
    full = _one_batch(samples, uv, batch_size=4, augment=augment, seed=1, shuffle=False)[1]
    want = keypoints_from_map(full, uv.uv_kpt_ind)
    for size in (24, 16):
        small_kpt = resize_uv_data(uv, size).uv_kpt_ind
        targets = _one_batch(samples, uv, batch_size=4, input_size=size, augment=augment, seed=1, shuffle=False)[1]
        got = keypoints_from_map(targets, small_kpt)
        pixels = small_kpt[1] * size + small_kpt[0]
        same = pixels[:, None] == pixels[None, :]
        alone = same.sum(axis=1) == 1
        assert alone.sum() > 10
        np.testing.assert_array_equal(got[:, alone], want[:, alone])
        np.testing.assert_allclose(got, _prnet_data.shared_pixel_means(want.astype(np.float64), pixels), rtol=1e-6)


def test_h5_pack_gives_the_same_batches(small_set, tmp_path):
    h5py = pytest.importorskip("h5py")
    _, samples, uv = small_set
    images = np.stack([cv2.imread(p)[..., ::-1] for p in samples.images])
    maps = np.stack([np.load(p) for p in samples.posmaps])
    path = tmp_path / "pack.h5"
    with h5py.File(path, "w") as h5:
        h5["images"], h5["posmaps"] = images, maps
        h5["names"] = np.array([n.encode() for n in samples.names])
    packed = open_h5(path)
    assert packed.names == samples.names and packed.resolution == R
    got_images, got_targets, _ = _one_batch(packed.subset([3, 1]), uv, batch_size=2, shuffle=False)
    np.testing.assert_array_equal(got_images * 255, images[[3, 1]].astype(np.float32))
    np.testing.assert_allclose(got_targets, maps[[3, 1]].astype(np.float32) / (1.1 * R), rtol=1e-6)
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as h5:
        h5["images"] = images
    with pytest.raises(InputFileError, match="bad.h5.*posmaps"):
        open_h5(bad)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5" * 100)
    with pytest.raises(InputFileError, match="junk.h5: not a readable HDF5 file"):
        open_h5(tmp_path / "junk.h5")
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        open_h5(tmp_path / "missing.h5")


def test_generator_pack_is_readable(small_set, tmp_path):
    pack = pytest.importorskip("face3d.trainset.pack")
    label, samples, uv = small_set
    pack.pack_label_file(label, tmp_path / "pack.h5")
    packed = open_h5(tmp_path / "pack.h5")
    assert len(packed) == len(samples) and packed.names == samples.names
    got = _one_batch(packed, uv, batch_size=2, shuffle=False)
    want = _one_batch(samples, uv, batch_size=2, shuffle=False)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-6)
    np.testing.assert_array_equal(got[0], want[0])


def test_a_set_of_one_source_face_cannot_be_split_and_the_message_says_what_to_do():
    names = ["SYNTH_0000_1_0", "SYNTH_0000_1_1", "SYNTH_0000_1_0_angle_15"]
    with pytest.raises(ValueError) as refused:
        split_train_val(names, 0.2, seed=0)
    assert str(refused.value) == ("cannot split 3 samples of 1 source face into train and validation parts (a face's "
                                  "views and copies stay together): train without validation (--val-fraction 0) or "
                                  "give a validation list (--val-list)")
    assert split_train_val(names, 0, seed=0) == ([0, 1, 2], [])
