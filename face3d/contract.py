"""The model contract: the facts the ground-truth generator (``face3d.trainset``) and PRNet (``face3d.prnet``) share.

A leaf module with no imports, so every layer reads the same numbers: the crop and map side, the crop rules that
frame a face as the network saw it in training, and the map normalisation of PRNet's official model (the network
ends in a sigmoid; its output times 1.1 x R is a position map in crop pixels, x, y, z up to 1.1 R). R is the side
of the crop the map's values refer to (the UV-data resolution), S <= R the network's input side.
"""

__all__ = ["RESOLUTION", "INPUT_SIZE", "POSMAP_SCALE", "LANDMARK_SCALE", "BOX_SCALE", "BOX_SHIFT", "map_scale",
           "check_input_size"]

RESOLUTION = 256  # R: PRNet's crop, position-map and UV-data side in pixels
INPUT_SIZE = 256  # S: PRNet's network input side (smaller networks, a multiple of 32, read the R crop resampled)
POSMAP_SCALE = 1.1  # the official model's normalisation: position map / (1.1 x R)
LANDMARK_SCALE = 1.5  # training crop: side = 1.5 x the mean side of the 68 keypoints' box, centred on the box
BOX_SCALE = 1.58  # PRNet api.process: crop side / mean side of a face detector's box
BOX_SHIFT = 0.14  # PRNet api.process: the detector box's centre moves down by this x its mean side


def map_scale(resolution):
    """Crop pixels per unit of a normalised map: ``POSMAP_SCALE * R`` (float; 281.6 at R = 256).

    The network's target is ``posmap / map_scale(R)`` and its output times ``map_scale(R)`` is a position map in
    crop pixels.
    """
    return POSMAP_SCALE * resolution


def check_input_size(size):
    """``size`` as an int when it is a network input side S that resfcn256 takes: a positive multiple of 32 (its
    encoder halves the side five times); else ValueError."""
    if int(size) != size or size < 32 or size % 32:
        raise ValueError(f"input_size must be a positive multiple of 32, got {size}")
    return int(size)
