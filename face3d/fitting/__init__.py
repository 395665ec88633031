"""Your own photos as a training set: 68 landmarks -> a 300W-LP sample per photo (``face3d fit``).

``photos``: the fitting run (contour-aware landmark fit, 300W-LP ``.mat`` writer, resumable parallel batch); its
command line is ``face3d.cli.fit`` and the landmark files are read by ``face3d.trainset.landmark_files``. The
package sits above ``trainset`` (whose runner helpers it reuses) and uses ``face3d.prnet.detect`` for the optional
dlib landmarks; like ``trainset`` it never imports TensorFlow.
"""
