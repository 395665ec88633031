"""Private helpers of :mod:`face3d.morphable_model.default_model` (the embedded default face model).

``design``     anthropometric design tables (millimetres, BFM axes),
``surface``    the mean face surface, its triangulation, mouth triangles and UV unwrap,
``landmarks``  the 68 iBUG keypoint vertices,
``regions``    segbin face regions and the jaw contour ("parallel") lines,
``bases``      shape, expression and texture bases and the mean texture.
"""
