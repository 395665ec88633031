"""Float pixel values read as [0, 1]: one refusal for arrays in 0-255 given as floats (images, textures, colours)."""
import numpy as np

__all__ = ["refuse_above_one"]

# float32 rounding of x / 255 may land a hair above 1 for x = 255
UNIT_TOLERANCE = 1e-6


def refuse_above_one(values, what):
    """ValueError ``float <what> must be in [0, 1] (got max M); pass uint8 or divide by 255`` when the largest of
    the float ``values`` is above 1 (+``UNIT_TOLERANCE``), such as an array in 0-255: a reader of [0, 1] would clip
    it to white or write it 255 times too bright. NaN compares as not above 1: callers refuse it on their own.

    Args:
        values: float array, any shape (empty: nothing to refuse).
        what: what they are, for the message ("images", "texture", "colors").
    """
    values = np.asarray(values)
    top = values.max(initial=-np.inf)
    if top > 1.0 + UNIT_TOLERANCE:
        raise ValueError(f"float {what} must be in [0, 1] (got max {top:g}); pass uint8 or divide by 255")
