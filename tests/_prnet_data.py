"""A tiny synthetic PRNet training set in the generator's exact formats (for tests that must not wait for it).

Each sample's position map is an affine image of a fixed UV "face" (an ellipse with darker eyes and mouth):
crop-space (x, y) = A (u, v) + t, z = a dome scaled with A; the crop is the UV texture warped by the same affine,
so the map can be learnt from the image. Files: ``<name>.jpg`` (R x R crop), ``<name>.npy`` (R, R, 3) float16,
``trainDataLabel.txt`` (absolute paths), ``uv-data/`` (PRNet's six files, written by
``face3d.trainset.uv_layout.write_uv_data``: weight mask 255 : 64 : 48 : 0 for keypoints : eyes and mouth : rest of
the face : outside).
"""
from pathlib import Path

import cv2
import numpy as np

from face3d.prnet.uv_weights import uv_data_from_masks
from face3d.trainset import uv_layout as trainset_uv_layout


def uv_layout(resolution):
    """Face mask (R, R) bool, eyes (R, R) bool, region mask (eyes + mouth) (R, R) bool, keypoints (2, 68) int,
    texture (R, R, 3) uint8."""
    r = resolution
    v, u = np.mgrid[0:r, 0:r].astype(np.float64) / (r - 1)
    face = ((u - 0.5) / 0.42) ** 2 + ((v - 0.5) / 0.48) ** 2 <= 1.0
    eyes = ((((u - 0.32) / 0.09) ** 2 + ((v - 0.4) / 0.05) ** 2 <= 1)
            | (((u - 0.68) / 0.09) ** 2 + ((v - 0.4) / 0.05) ** 2 <= 1))
    mouth = ((u - 0.5) / 0.16) ** 2 + ((v - 0.75) / 0.05) ** 2 <= 1
    region = (eyes | mouth) & face
    # 68 keypoints: 17 on a jaw arc, 51 on an inner grid of the face
    t = np.linspace(-0.8 * np.pi / 2, 0.8 * np.pi / 2, 17)
    jaw = np.stack([0.5 + 0.38 * np.sin(t), 0.5 + 0.42 * np.cos(t)], axis=1)
    gu, gv = np.meshgrid(np.linspace(0.25, 0.75, 17), np.linspace(0.3, 0.7, 3))
    inner = np.stack([gu.ravel(), gv.ravel()], axis=1)
    pts = np.concatenate([jaw, inner])
    kpt = np.rint(pts.T * (r - 1)).astype(np.int64)
    texture = np.zeros((r, r, 3), np.float64)
    texture[face] = (200, 170, 150)
    texture[..., 0] += 40 * u * face
    texture[..., 2] += 40 * v * face
    texture[eyes & face] = (40, 40, 60)
    texture[mouth & face] = (60, 50, 160)
    return face, eyes & face, region, kpt, np.clip(texture, 0, 255).astype(np.uint8)


def shared_pixel_means(values, pixels):
    """Per keypoint, the mean of ``values`` (..., K, C) over the keypoints whose ``pixels`` (K,) equal its own: the
    value a reduced map holds at a pixel that keypoints share (``uv_weights.resample_map``)."""
    same = pixels[:, None] == pixels[None, :]
    return same @ values / same.sum(axis=1, keepdims=True)


def layout_uv_data(resolution):
    """``face3d.trainset.uv_layout.UVData`` of ``uv_layout(resolution)``."""
    face, eyes, region, kpt, _ = uv_layout(resolution)
    weight = np.where(face, np.uint8(48), np.uint8(0))
    weight[region] = 64
    weight[kpt[1], kpt[0]] = 255
    return uv_data_from_masks(kpt, face.astype(np.uint8) * 255, weight, (face & ~eyes).astype(np.uint8) * 255)


def write_uv_data(folder, resolution):
    """Write the uv-data files of ``uv_layout(resolution)``; returns the folder Path."""
    trainset_uv_layout.write_uv_data(layout_uv_data(resolution), folder)
    return Path(folder)


def make_sample(resolution, rng):
    """One (image uint8 (R, R, 3), map float32 (R, R, 3)) pair with a random affine pose."""
    r = resolution
    face, _, _, _, texture = uv_layout(r)
    angle = rng.uniform(-0.5, 0.5)
    scale = rng.uniform(0.7, 0.95)
    aspect = rng.uniform(0.9, 1.1)
    c, s = np.cos(angle), np.sin(angle)
    lin = scale * np.array([[c, -s], [s, c]]) @ np.diag([aspect, 1.0])
    centre = (r - 1) / 2.0
    offset = centre + rng.uniform(-0.06, 0.06, 2) * r - lin @ np.array([centre, centre])
    affine = np.concatenate([lin, offset[:, None]], axis=1)
    background = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
    image = cv2.resize(background, (r, r), interpolation=cv2.INTER_LINEAR)
    warped = cv2.warpAffine(texture, affine, (r, r), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    inside = cv2.warpAffine(face.astype(np.uint8), affine, (r, r), flags=cv2.INTER_NEAREST) > 0
    image[inside] = warped[inside]
    v, u = np.mgrid[0:r, 0:r].astype(np.float64)
    x = affine[0, 0] * u + affine[0, 1] * v + affine[0, 2]
    y = affine[1, 0] * u + affine[1, 1] * v + affine[1, 2]
    dome = np.sqrt(np.clip(1 - ((u - centre) / (0.42 * r)) ** 2 - ((v - centre) / (0.48 * r)) ** 2, 0, 1))
    z = 0.3 * r * scale * dome
    posmap = np.stack([x, y, z], axis=-1) * face[..., None]
    return image, posmap.astype(np.float32)


def make_dataset(folder, n, resolution=64, seed=0, angles=(), rel_paths=False):
    """Write n source samples (plus ``<name>_angle_<deg>`` copies for ``angles``, re-posed) and their label file.

    Returns:
        Path of ``trainDataLabel.txt`` (``uv-data/`` sits beside it).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        for suffix in [""] + [f"_angle_{a}" for a in angles]:
            name = f"sample_{i:03d}{suffix}"
            image, posmap = make_sample(resolution, rng)
            cv2.imwrite(str(folder / f"{name}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            np.save(folder / f"{name}.npy", posmap.astype(np.float16))
            if rel_paths:
                lines.append(f"{name}.jpg {name}.npy")
            else:
                lines.append(f"{folder.resolve() / (name + '.jpg')} {folder.resolve() / (name + '.npy')}")
    label = folder / "trainDataLabel.txt"
    label.write_text("\n".join(lines) + "\n")
    write_uv_data(folder / "uv-data", resolution)
    return label


def tiny_network(input_size=32, width=2, bn_momentum=0.99, name="tiny"):
    """Stands in for ``build_resfcn256`` (same signature) where a test checks training's bookkeeping, not the
    network: two 3x3 convolutions (``width`` channels, then 3 with a sigmoid), a few milliseconds a step."""
    import keras
    inputs = keras.Input((input_size, input_size, 3), name="input")
    hidden = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Conv2D(3, 3, padding="same", activation="sigmoid", name="output")(hidden)
    return keras.Model(inputs, outputs, name=name)
