"""3D face reconstruction over HTTP (``face3d serve``; optional extra: ``pip install -e ".[serve]"``).

Modules: ``app`` (the FastAPI application and its config), ``batching`` (dynamic batching of concurrent
requests), ``pipeline`` (face location, crop and the answer around the network), ``codecs`` (images, boxes and
landmarks in; meshes and textures out), ``limits`` (request bounds, image headers read before decoding),
``errors`` (JSON error answers), ``metrics`` (``/metrics``) and ``cli`` (the command). Importing this package
imports neither FastAPI nor TensorFlow.
"""
