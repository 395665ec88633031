"""Face regions (3DDFA ``segbin`` layout) and jaw contour lines (3DDFA ``parallel`` layout)."""
import numpy as np

from . import design as d
from .surface import pchip

# segbin rows as generate.m stores them (load.SEGBIN_ROWS): nose, eyes, mouth, rest.
_NOSE, _EYES, _MOUTH, _REST = range(4)


def segbin(surface):
    """(4, n) bool disjoint per-vertex masks, rows nose, eyes, mouth, rest of the face.

    eyes: an ellipse of radii 17 x 10 mm around each eye centre; nose: within 4 mm of the nose's
    cross-section half-width between the upper lip and the nasion region; mouth: an ellipse of
    radii 36 x 14 mm around the mouth centre; rest: every other vertex.
    """
    x, y = surface.base[:, 0], surface.base[:, 1]
    ex, ey = d.EYE_CENTRE
    eyes = ((np.abs(x) - ex) / 17.0) ** 2 + ((y - ey) / 10.0) ** 2 < 1.0
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
