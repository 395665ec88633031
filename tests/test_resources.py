"""Packaged uv-data (face3d.resources) and the model contract (face3d.contract): found from any working directory,
used by the generator, training and inference alike. Budget: about 2 s."""
import shutil
from pathlib import Path

import _prnet_data

import face3d
from face3d import contract
from face3d.prnet import inference
from face3d.prnet.training import TrainConfig, load_samples
from face3d.resources import default_uv_data_dir
from face3d.trainset.sample import GenerationConfig
from face3d.trainset.uv_layout import UV_DATA_FILES, load_uv_data


def test_default_uv_data_is_package_data_with_prnet_files():
    folder = default_uv_data_dir()
    assert folder == Path(face3d.__file__).resolve().parent / "data" / "uv-data"
    assert sorted(p.name for p in folder.iterdir()) == sorted(UV_DATA_FILES)
    uv = load_uv_data(folder)
    assert uv.resolution == contract.RESOLUTION == 256
    assert uv.uv_kpt_ind.shape == (2, 68)
    assert inference.DEFAULT_UV_DATA == folder


def test_training_falls_back_to_the_packaged_uv_data_from_any_directory(tmp_path, monkeypatch):
    label = _prnet_data.make_dataset(tmp_path / "set", 2, resolution=32)
    beside = label.parent / "uv-data"
    config = TrainConfig(train_list=str(label), val_fraction=0.0, batch_size=1)
    assert load_samples(config)[2] == beside
    shutil.rmtree(beside)
    monkeypatch.chdir(tmp_path)
    assert load_samples(config)[2] == default_uv_data_dir()


def test_generator_and_inference_share_the_contract():
    config = GenerationConfig()
    assert (config.resolution, config.crop_scale) == (contract.RESOLUTION, contract.LANDMARK_SCALE) == (256, 1.5)
    assert (inference.LANDMARK_SCALE, inference.BOX_SCALE, inference.BOX_SHIFT) == (1.5, 1.58, 0.14)
    assert contract.map_scale(256) == 1.1 * 256  # crop pixels per unit of the network's sigmoid output
