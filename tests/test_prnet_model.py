"""resfcn256: layer layout, parameter count, shapes (about 10 s on 2 cores)."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")

from face3d.prnet.model import build_resfcn256  # noqa: E402


def _expected_params(width):
    """Parameter count of the paper's layout computed by hand (no biases; batch norm: 4 per channel)."""
    total = 4 * 4 * 3 * width + 4 * width
    channels = width
    for factor, stride in zip((2, 2, 4, 4, 8, 8, 16, 16, 32, 32), (2, 1) * 5):
        c, half = factor * width, factor * width // 2
        total += channels * half + 4 * half + 16 * half * half + 4 * half + half * c + 4 * c
        if stride != 1 or channels != c:
            total += channels * c
        channels = c
    for factor in (32, 16, 16, 16, 8, 8, 8, 4, 4, 4, 2, 2, 1, 1, None, None, None):
        c = 3 if factor is None else factor * width
        total += 16 * channels * c + 4 * c
        channels = c
    return total


def test_default_network_matches_the_paper_layout():
    model = build_resfcn256()
    assert model.count_params() == _expected_params(16) == 13_365_508
    assert model.input_shape == (None, 256, 256, 3) and model.output_shape == (None, 256, 256, 3)
    names = [layer.name for layer in model.layers]
    assert names[:4] == ["input", "conv0", "conv0_bn", "conv0_relu"]
    assert sum(n.startswith("deconv") and n[6:].isdigit() for n in names) == 17
    assert sum(n.endswith("_add") for n in names) == 10
    shortcuts = [n for n in names if n.endswith("_shortcut")]
    assert shortcuts == [f"block{i}_shortcut" for i in (1, 3, 5, 7, 9)]
    assert model.get_layer("block10_relu").output.shape == (None, 8, 8, 512)
    assert model.get_layer("deconv17").kernel.shape == (4, 4, 3, 3)
    assert model.layers[-1].name == "output"
    assert not any(getattr(layer, "use_bias", False) for layer in model.layers)


def test_narrow_network_output_range_and_size_checks():
    model = build_resfcn256(input_size=64, width=2)
    assert model.count_params() == _expected_params(2)
    x = np.random.default_rng(0).random((2, 64, 64, 3)).astype(np.float32)
    y = model.predict_on_batch(x)
    assert y.shape == (2, 64, 64, 3) and y.dtype == np.float32
    assert 0 <= y.min() and y.max() <= 1
    with pytest.raises(ValueError, match="multiple of 32"):
        build_resfcn256(input_size=100)
    with pytest.raises(ValueError, match="width"):
        build_resfcn256(width=0)


def test_subsampled_shortcut_equals_strided_convolution():
    model = build_resfcn256(input_size=32, width=2)
    sub = keras.Model(model.get_layer("block1_subsample").input, model.get_layer("block1_shortcut").output)
    kernel = model.get_layer("block1_shortcut").kernel.numpy()  # (1, 1, 2, 4)
    x = np.random.default_rng(1).random((1, 32, 32, 2)).astype(np.float32)
    expected = np.einsum("bhwc,cd->bhwd", x[:, ::2, ::2], kernel[0, 0])
    np.testing.assert_allclose(sub.predict_on_batch(x), expected, rtol=1e-5, atol=1e-6)
