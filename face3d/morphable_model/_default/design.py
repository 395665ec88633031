"""Anthropometric design tables of the default face model.

Millimetres (the builder converts to the BFM's micrometres) in the BFM's axes: x to the viewer's right for a frontal
face, y up, z towards the viewer, origin near the head's centre (face front at z ~ 90..135 mm, the mask's side edges,
in front of the ears, at z ~ 20 mm). The numbers are rounded adult proportions (face width ~ 146 mm at the tragus,
eye-corner distance ~ 88, intercanthal width ~ 38, mouth width ~ 62, nose protrusion ~ 25, nasion-to-chin ~ 111),
chosen so that the iBUG-68 landmarks of the mean face sit where the Basel Face Model's do under 300W-LP poses.
Tables are tuples of (y, value) knots interpolated with monotone cubic (PCHIP) splines (``surface.pchip``).
"""

# Vertical layout: the mouth seam row sits exactly at MOUTH_Y; rows every ROW_STEP mm.
MOUTH_Y = -41.5
ROW_STEP = 1.8
ROWS_BELOW_MOUTH = 25          # bottom row at MOUTH_Y - 25 * ROW_STEP = -86.5 (chin)
ROWS_ABOVE_MOUTH = 74          # top row at MOUTH_Y + 74 * ROW_STEP = 91.7 (upper forehead)

# Outline of the mask: half-width a(y) below the tragus level follows an ellipse that closes at the
# chin (JAW_ELLIPSE = (A, y0, B): a = A * sqrt(1 - ((y - y0) / B)^2)); above it the temples narrow.
JAW_ELLIPSE = (73.0, 15.0, 103.0)
UPPER_HALF_WIDTH = ((15.0, 73.0), (45.0, 71.0), (70.0, 66.5), (92.0, 61.0))

# z of the mask's side edge (in front of the ear): rises towards the chin as the jaw comes forward.
EDGE_Z = ((-87.0, 92.0), (-84.0, 86.0), (-76.0, 70.0), (-68.0, 52.0), (-55.0, 36.0),
          (-39.0, 27.0), (-24.0, 23.0), (-5.0, 20.5), (15.0, 18.0), (45.0, 20.0), (70.0, 26.0),
          (92.0, 36.0))

# z of the face front on the midline before the nose, lips and chin features are added.
FRONT_Z = ((-87.0, 91.0), (-80.0, 97.0), (-70.0, 101.0), (-58.0, 101.5), (-45.0, 105.0),
           (-30.0, 108.0), (-20.0, 109.0), (0.0, 108.5), (15.0, 107.5), (25.0, 107.5),
           (40.0, 106.0), (55.0, 103.5), (70.0, 98.5), (85.0, 91.0), (92.0, 87.0))

# Margin band: the BFM's face region reaches past the jaw line (under the chin, the upper neck, a
# little behind the side contour), so its jaw landmarks are interior vertices and PRNet's UV layout
# has a "neck" below the jaw line.  The mask's side edges and chin row get MARGIN_RINGS rings of
# vertices offset outwards: in 3D backwards (-z) with a small outward spread in the frontal plane
# (MARGIN_SPREAD mm per mm, so the band still faces the viewer a little and the frontal silhouette
# moves by < 1 mm), in the UV unwrap's (arc, height) plane along the outline's outward normal.
# Widths (mm) beside the face and under the chin; the width blends from one to the other between
# the heights of MARGIN_BLEND_Y (side value above the first, chin value below the second).
MARGIN_RINGS = 4
MARGIN_WIDTH = (4.0, 12.0)
MARGIN_UV_WIDTH = (4.0, 14.0)
MARGIN_SPREAD = 0.1
MARGIN_BLEND_Y = (-30.0, -70.0)

# Exponent of the superellipse cross-section |x/a|^p + |(z - edge)/(front - edge)|^p = 1
# (2 = ellipse; larger = flatter front).
SECTION_POWER = ((-87.0, 2.0), (-60.0, 2.1), (-30.0, 2.2), (0.0, 2.15), (30.0, 2.1),
                 (60.0, 2.2), (92.0, 2.4))

# Nose: ridge height above the base surface and half-width of its cross-section along y.
NOSE_HEIGHT = ((-29.0, 0.0), (-25.0, 1.5), (-21.5, 5.0), (-18.5, 10.5), (-15.5, 17.0),
               (-12.0, 22.5), (-9.0, 24.5), (-5.0, 24.0), (0.0, 22.0), (13.0, 14.0),
               (24.0, 5.5), (32.0, 2.0), (42.0, 0.0))
NOSE_HALF_WIDTH = ((-29.0, 15.0), (-21.0, 15.0), (-15.0, 13.0), (-9.0, 10.5), (0.0, 8.5),
                   (13.0, 8.0), (24.0, 9.5), (42.0, 13.0))
# Alae (nose wings): (x, y, height, radius x, radius y), mirrored.
NOSE_ALA = (15.5, -15.5, 6.0, 6.0, 5.0)

# Eyes, per side (mirrored): socket depression and lid/eyeball bulge, as
# (centre x, centre y, amplitude, radius x, radius y).
EYE_CENTRE = (31.5, 25.0)
EYE_SOCKET = (27.0, 26.0, -12.0, 17.0, 12.0)
EYE_BULGE = (32.0, 25.0, 8.5, 13.0, 7.0)
EYE_RADIUS = 5.5                 # iris radius for the mean texture
# Brow ridge: (y, amplitude, radius y, inner x, outer x).
BROW_RIDGE = (41.0, 5.5, 7.0, 10.0, 60.0)
CHEEKBONE = (47.0, 6.0, 4.5, 17.0, 13.0)
TEMPLE = (62.0, 40.0, -3.0, 10.0, 14.0)

# Lips and chin (mirrored where x != 0): (x, y, amplitude, radius x, radius y).
UPPER_LIP = (0.0, -37.0, 6.0, 19.0, 5.5)
LOWER_LIP = (0.0, -47.0, 5.0, 16.0, 5.5)
MOUTH_CORNER = (30.5, -41.0, -6.0, 7.0, 5.5)
LABIOMENTAL = (0.0, -57.0, -2.5, 16.0, 4.5)
CHIN = (0.0, -73.0, 4.0, 17.0, 9.0)

# Mouth slit: half-width (corners), gap of the mean mouth at the centre (mm) and the vertical
# fall-off of the lip-separating displacement.
MOUTH_HALF_WIDTH = 29.0
MOUTH_GAP = 1.2
LIP_FALLOFF = 7.0

# Jaw hinge (y, z) for the jaw-opening expression.
JAW_HINGE = (12.0, 20.0)

# iBUG-68 landmark targets (x, y) on the frontal projection of the mean face.  Jaw landmarks
# 0..16 are snapped to the mask's side edge at their y (the frontal silhouette); 8 is the chin.
JAW_Y = (15.0, -4.0, -22.0, -38.0, -54.0, -67.0, -76.0, -83.0)
BROW_XY = ((-56.0, 37.0), (-48.0, 42.0), (-38.0, 44.0), (-28.0, 43.5), (-19.0, 41.5))
NOSE_XY = ((0.0, 24.0), (0.0, 12.5), (0.0, 1.0), (0.0, -9.5),
           (-14.0, -18.0), (-8.0, -20.0), (0.0, -21.0), (8.0, -20.0), (14.0, -18.0))
EYE_XY = ((-44.0, 24.0), (-37.0, 28.5), (-28.0, 28.5), (-19.0, 23.5), (-27.5, 21.5), (-37.0, 21.5))
OUTER_LIP_XY = ((-31.0, -40.0), (-20.0, -36.5), (-6.5, -35.0), (0.0, -36.0), (6.5, -35.0),
                (20.0, -36.5), (31.0, -40.0), (20.0, -46.0), (10.0, -49.5), (0.0, -50.5),
                (-10.0, -49.5), (-20.0, -46.0))
INNER_LIP_X = (-9.0, 0.0, 9.0)   # 61, 62, 63 on the upper lip; 67, 66, 65 below them
