"""Face regions (3DDFA ``segbin`` layout) and jaw contour lines (3DDFA ``parallel`` layout)."""
import numpy as np

from . import design as d
from .surface import pchip

# segbin rows as generate.m stores them (load.SEGBIN_ROWS): nose, eyes, mouth, rest.
_NOSE, _EYES, _MOUTH, _REST = range(4)
# The eyes region holds the brows and the glabella, as the BFM's does: the union of an ellipse per side (centre x
# mirrored, centre y, radius x, radius y; mm) over the eye socket, lids and the brow's outer end, and a midline
# ellipse (centre y, radius x, radius y) over both brows.  Sized to the BFM's eyes region mapped onto this face by
# an affine fit of the brow, nose and eye keypoints (intersection over union 0.92; 13.4 % of the vertices, the
# BFM's 13.5 %).
EYE_REGION = (38.0, 26.0, 26.0, 22.0)
BROW_REGION = (42.0, 56.0, 10.0)


def segbin(surface):
    """(4, n) bool disjoint per-vertex masks, rows nose, eyes, mouth, rest of the face.

    eyes (with the brows): ((|x| - ex) / erx)^2 + ((y - ey) / ery)^2 < 1 (EYE_REGION) or
    (x / brx)^2 + ((y - by) / bry)^2 < 1 (BROW_REGION), x, y the base surface's (mm); nose: within 4 mm
    of the nose's cross-section half-width between the upper lip and the nasion region, outside the
    eyes; mouth: an ellipse of radii 36 x 14 mm around the mouth centre; rest: every other vertex.
    """
    x, y = surface.base[:, 0], surface.base[:, 1]
    ex, ey, erx, ery = EYE_REGION
    by, brx, bry = BROW_REGION
    eyes = ((np.abs(x) - ex) / erx) ** 2 + ((y - ey) / ery) ** 2 < 1.0
    eyes |= (x / brx) ** 2 + ((y - by) / bry) ** 2 < 1.0
    nose_w = pchip(d.NOSE_HALF_WIDTH)(y) + 4.0
    nose = (np.abs(x) < nose_w) & (y > -25.0) & (y < 30.0) & ~eyes
    mouth = (x / 36.0) ** 2 + ((y - d.MOUTH_Y) / 14.0) ** 2 < 1.0
    nose &= ~mouth
    masks = np.zeros((4, x.size), dtype=bool)
    masks[_NOSE], masks[_EYES], masks[_MOUTH] = nose, eyes, mouth
    masks[_REST] = ~(nose | eyes | mouth)
    return masks


def segbin_tri(masks, tri):
    """(4, ntri) bool per-triangle masks: a triangle is in a region when all three vertices are,
    otherwise in the rest of the face."""
    out = np.all(masks[:, tri], axis=2)
    out[_REST] |= ~out[:_REST].any(axis=0)
    return out


def parallel_lines(surface, kpt_ind):
    """17 int32 arrays: for jaw landmark i, the vertices of its row from the side edge inwards to
    the midline (3DDFA's horizontal candidate lines for landmark marching).  The chin's line is
    its whole row."""
    lines = []
    for i in range(17):
        vertex = int(kpt_ind[i])
        in_row = np.flatnonzero(surface.row == surface.row[vertex])
        in_row = in_row[~np.isin(in_row, surface.seam_lower[1:-1])]  # lower-lip copies
        x = surface.base[in_row, 0]
        if i < 8:
            keep = in_row[x <= 0.0][np.argsort(x[x <= 0.0], kind="stable")]
        elif i > 8:
            keep = in_row[x >= 0.0][np.argsort(-x[x >= 0.0], kind="stable")]
        else:
            keep = in_row[np.argsort(x, kind="stable")]
        lines.append(keep.astype(np.int32))
    return lines
