"""Decoding only the pixels the crops read (face3d.utils.jpeg_region, crop.source_box): OpenCV's bytes, same refusals.

The region decoder is an optional build (libjpeg-turbo); its tests skip where it was not built.
Budget: < 10 s.
"""
import cv2
import numpy as np
import pytest
import scipy.io as sio

from face3d.morphable_model import MorphableModel
from face3d.trainset import GenerationConfig, TrainsetGenerator, sample_io
from face3d.trainset.crop import CropBox, compose, crop_matrix, rotation_matrix, source_box
from face3d.utils import jpeg_region

built = pytest.mark.skipif(jpeg_region.jpeg_region_rgba is None, reason="built without libjpeg-turbo")
SAMPLINGS = {"4:4:4": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444, "4:2:2": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
             "4:2:0": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420, "4:4:0": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_440,
             "4:1:1": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_411}


def _picture(h, w, seed=0):
    """(h, w, 3) uint8 BGR: smooth shading with noise, so that every block holds detail in every channel."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    smooth = np.stack([x * 255.0 / w, y * 255.0 / h, (x + y) * 127.0 / (w + h)], axis=2)
    return np.clip(smooth + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)


def _jpeg(picture, sampling="4:2:0", progressive=False, quality=92):
    ok, data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                                              SAMPLINGS[sampling], cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])
    assert ok
    return data.reshape(-1)


def _opencv_rgba(data):
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGBA)


@built
@pytest.mark.parametrize("sampling", sorted(SAMPLINGS))
@pytest.mark.parametrize("progressive", [False, True])
def test_a_region_holds_opencvs_pixels(sampling, progressive):
    """Boxes that cut blocks and chroma pairs anywhere, on sizes that are not multiples of a block."""
    rng = np.random.default_rng(sorted(SAMPLINGS).index(sampling) * 2 + progressive)
    for h, w in ((450, 450), (37, 53), (129, 200), (17, 16)):
        data = _jpeg(_picture(h, w, seed=h), sampling, progressive)
        expected = _opencv_rgba(data)
        for _ in range(6):
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
            x1, y1 = int(rng.integers(x0 + 1, w + 1)), int(rng.integers(y0 + 1, h + 1))
            got = jpeg_region.decode_jpeg_region(data, w, h, (x0, x1, y0, y1))
            assert got.shape == (h, w, 4) and got.dtype == np.uint8
            np.testing.assert_array_equal(got[y0:y1, x0:x1], expected[y0:y1, x0:x1],
                                          err_msg=f"{w}x{h} box {(x0, x1, y0, y1)}")


@built
def test_what_opencv_refuses_or_the_decoder_does_not_take_gives_none():
    picture = _picture(160, 120)
    data = _jpeg(picture)
    box = (10, 60, 5, 40)
    assert jpeg_region.decode_jpeg_region(data, 120, 160, box) is not None
    # damage below the box, which only a decoding down to the file's end sees: OpenCV refuses a cut-off file and
    # decodes one whose last rows' data is overwritten (with a warning); both are left to it
    truncated = data[:-20].copy()
    damaged = data.copy()
    damaged[len(data) * 19 // 20:-2] = 0xFF
    assert cv2.imdecode(truncated, cv2.IMREAD_COLOR) is None
    assert cv2.imdecode(damaged, cv2.IMREAD_COLOR) is not None
    for spoilt in (truncated, damaged):
        assert jpeg_region.decode_jpeg_region(spoilt, 120, 160, box) is None
    grey = cv2.imencode(".jpg", cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY))[1].reshape(-1)
    assert jpeg_region.decode_jpeg_region(grey, 120, 160, box) is None  # not a YCbCr colour file
    assert jpeg_region.decode_jpeg_region(data, 121, 160, box) is None  # another size than the file's
    assert jpeg_region.decode_jpeg_region(np.zeros(0, np.uint8), 120, 160, box) is None


@built
@pytest.mark.parametrize("sampling", ["4:4:4", "4:2:0"])
def test_a_progressive_file_short_of_its_last_scans_is_left_to_the_whole_image(sampling):
    """libjpeg smooths the blocks of such a file with their neighbours (and each libjpeg-turbo version otherwise):
    a file cut after its third scan, with its EOI, is decoded whole; the complete file by region."""
    data = _jpeg(_picture(150, 170), sampling, progressive=True)
    scans = np.flatnonzero((data[:-1] == 0xFF) & (data[1:] == 0xDA))
    assert len(scans) > 4
    cut = np.concatenate([data[:scans[3]], np.array([0xFF, 0xD9], np.uint8)])
    assert cv2.imdecode(cut, cv2.IMREAD_COLOR) is not None  # OpenCV decodes it, without a warning
    assert jpeg_region.decode_jpeg_region(cut, 170, 150, (50, 120, 20, 90)) is None
    assert jpeg_region.decode_jpeg_region(data, 170, 150, (50, 120, 20, 90)) is not None


@built
@pytest.mark.parametrize("box", [(0, 0, 0, 10), (5, 4, 0, 10), (0, 121, 0, 10), (-1, 10, 0, 10), (0, 10, 3, 161)])
def test_a_box_that_is_empty_or_outside_the_image_is_refused(box):
    out = np.zeros((160, 120, 4), np.uint8)
    with pytest.raises(ValueError, match="is empty or outside the 120x160 RGBA image"):
        jpeg_region.jpeg_region_rgba(_jpeg(_picture(160, 120)), out, *box)


@built
def test_an_output_without_four_channels_is_refused():
    with pytest.raises(ValueError, match="out must be an \\(h, w, 4\\) RGBA image, got 3 channels"):
        jpeg_region.jpeg_region_rgba(_jpeg(_picture(16, 16)), np.zeros((16, 16, 3), np.uint8), 0, 8, 0, 8)


def test_without_the_decoder_every_region_is_left_to_the_whole_image(monkeypatch):
    monkeypatch.setattr(jpeg_region, "jpeg_region_rgba", None)
    jpeg_region.region_decoder_available.cache_clear()
    try:
        assert jpeg_region.decode_jpeg_region(_jpeg(_picture(40, 30)), 30, 40, (0, 30, 0, 40)) is None
    finally:
        monkeypatch.undo()
        jpeg_region.region_decoder_available.cache_clear()


@built
def test_a_decoder_that_differs_from_opencv_is_not_used(monkeypatch):
    """The once-per-process check compares with OpenCV's decoding: a library that decodes otherwise is left out."""
    real = jpeg_region.jpeg_region_rgba

    def off_by_one(data, out, *box):
        done = real(data, out, *box)
        out[box[2], box[0], 0] ^= 1
        return done
    monkeypatch.setattr(jpeg_region, "jpeg_region_rgba", off_by_one)
    jpeg_region.region_decoder_available.cache_clear()
    try:
        assert not jpeg_region.region_decoder_available()
    finally:
        monkeypatch.undo()
        jpeg_region.region_decoder_available.cache_clear()
    assert jpeg_region.region_decoder_available()


def _random_crops(rng, shape, count):
    """Crop matrices as the generator makes them: a box around a point of the image, any size, rotated or not."""
    h, w = shape
    for _ in range(count):
        box = CropBox(float(rng.uniform(-0.2 * w, 1.2 * w)), float(rng.uniform(-0.2 * h, 1.2 * h)),
                      float(rng.uniform(3, 1.5 * max(h, w))))
        resolution = int(rng.choice([8, 33, 256]))
        matrix = crop_matrix(box, resolution)
        if rng.random() < 0.6:
            matrix = compose(matrix, rotation_matrix((box.cx, box.cy), float(rng.uniform(-180, 180))))
        yield matrix, resolution


def test_the_crops_read_no_pixel_outside_their_source_box():
    """Pixels outside the box changed at random leave every crop's bytes as they are; a crop whose box is None
    reads no pixel at all (it is all border)."""
    rng = np.random.default_rng(7)
    for shape in ((300, 300), (211, 97)):
        image = rng.integers(0, 256, (*shape, 4), dtype=np.uint8)
        nones = 0
        for matrix, resolution in _random_crops(rng, shape, 300):
            box = source_box([matrix], resolution, shape)
            spoilt = rng.integers(0, 256, image.shape, dtype=np.uint8)
            if box is None:
                nones += 1
            else:
                x0, x1, y0, y1 = box
                assert 0 <= x0 < x1 <= shape[1] and 0 <= y0 < y1 <= shape[0]
                spoilt[y0:y1, x0:x1] = image[y0:y1, x0:x1]
            np.testing.assert_array_equal(
                cv2.warpAffine(spoilt, matrix, (resolution, resolution), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0)),
                cv2.warpAffine(image, matrix, (resolution, resolution), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0)))
        assert 0 < nones < 100  # both kinds of crop were tried


def test_the_source_box_of_several_crops_covers_each_and_is_no_larger_than_their_union():
    matrices = [crop_matrix(CropBox(100.0, 120.0, 80.0), 64), crop_matrix(CropBox(200.0, 60.0, 40.0), 64)]
    union = source_box(matrices, 64, (300, 400))
    boxes = [source_box([m], 64, (300, 400)) for m in matrices]
    assert union == (min(b[0] for b in boxes), max(b[1] for b in boxes), min(b[2] for b in boxes),
                     max(b[3] for b in boxes))
    # the first crop samples x in [60, 140], y in [80, 160]: it reads up to pixel 141 (161), plus the 2-pixel margin
    assert boxes[0] == (58, 144, 78, 164)


@pytest.fixture(scope="module")
def model():
    return MorphableModel()


def _write_jpeg_sample(folder, name, model, shape, sampling="4:2:0", seed=0, tx=None):
    """A JPEG and its .mat: the model's face placed in an image of ``shape`` (h, w)."""
    h, w = shape
    rng = np.random.default_rng(seed)
    pose = np.array([[0.1, 0.3 * (-1) ** seed, -0.05, w / 2 if tx is None else tx, h / 2 + 5, -40.0, 0.9e-3]])
    params = {"Pose_Para": pose, "Shape_Para": rng.normal(0, 1, (199, 1)) * model.model["shapeEV"][:199] * 0.5,
              "Exp_Para": rng.normal(0, 0.5, (29, 1))}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.jpg").write_bytes(_jpeg(_picture(h, w, seed), sampling).tobytes())
    sio.savemat(folder / f"{name}.mat", params)
    return folder / f"{name}.jpg", folder / f"{name}.mat"


def _whole_image_outputs(generator, jobs, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(sample_io, "decode_jpeg_region", lambda *args: None)
        return generator.process_many(jobs)


@built
@pytest.mark.parametrize("config", [
    GenerationConfig(resolution=48),
    GenerationConfig(resolution=40, angles=(170, -100, 7.5), crop_scale=2.5),
    GenerationConfig(resolution=32, angles=(15, -45), refit=True, refit_max_iter=2, perturb=False),
], ids=["eight-angles", "wide-crops", "refit"])
def test_generated_samples_are_those_of_the_whole_image(model, tmp_path, monkeypatch, config):
    """Faces in the middle and at an edge of images whose sizes cut blocks, in each chroma subsampling: the crops
    (and so the maps) are byte for byte those of a whole-image decoding, and the region decoder was used."""
    jobs = [(*_write_jpeg_sample(tmp_path, f"s{i}", model, shape, sampling, seed=i, tx=tx), i)
            for i, (shape, sampling, tx) in enumerate([((300, 300), "4:2:0", None), ((257, 301), "4:2:2", None),
                                                       ((220, 333), "4:4:4", 30.0), ((301, 250), "4:4:0", 215.0)])]
    generator = TrainsetGenerator(model, config)
    regions = []
    real = sample_io.decode_jpeg_region
    monkeypatch.setattr(sample_io, "decode_jpeg_region", lambda *args: regions.append(real(*args)) or regions[-1])
    got = generator.process_many(jobs)
    assert len(regions) == len(jobs) and all(r is not None for r in regions)
    expected = _whole_image_outputs(generator, jobs, monkeypatch)
    for outputs, whole in zip(got, expected):
        assert [o.name for o in outputs] == [o.name for o in whole] and len(outputs) == 1 + len(config.angles)
        for a, b in zip(outputs, whole):
            np.testing.assert_array_equal(a.image, b.image, err_msg=a.name)
            np.testing.assert_array_equal(a.posmap, b.posmap, err_msg=a.name)


@built
def test_a_jpeg_damaged_below_the_crops_is_treated_as_opencv_treats_it(model, tmp_path, monkeypatch):
    """The region decoder reads the file to its end and leaves damage to OpenCV's whole-image decoding: a cut-off
    file is refused, naming it, also when the face lies outside the image (the image's error comes first, as when
    it was decoded first); overwritten data OpenCV decodes gives OpenCV's crop."""
    generator = TrainsetGenerator(model, GenerationConfig(resolution=32, angles=(30,)))
    image_path, mat_path = _write_jpeg_sample(tmp_path, "s", model, (300, 300))
    whole = np.fromfile(image_path, np.uint8)
    damaged = whole.copy()
    damaged[len(whole) * 19 // 20:-2] = 0xFF  # the coded data of the bottom rows
    image_path.write_bytes(damaged.tobytes())
    got = generator.process(image_path, mat_path, 0)
    expected = _whole_image_outputs(generator, [(image_path, mat_path, 0)], monkeypatch)[0]
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
    image_path.write_bytes(whole[:-20].tobytes())
    with pytest.raises(ValueError, match=r"s\.jpg: cannot decode the image \(corrupt or truncated\)"):
        generator.process(image_path, mat_path, 0)
    params = {k: v for k, v in sio.loadmat(mat_path).items() if not k.startswith("__")}
    params["Pose_Para"][0, 3] = 5000.0  # the face outside the image
    sio.savemat(mat_path, params)
    with pytest.raises(ValueError, match=r"s\.jpg: cannot decode the image"):
        generator.process(image_path, mat_path, 0)
