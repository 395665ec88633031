"""3D face reconstruction over HTTP (``face3d serve``; optional extra: ``pip install -e ".[serve]"``).

Modules: ``config`` (``ServeConfig``), ``app`` (the FastAPI application), ``server`` (uvicorn, workers,
draining), ``batching`` (dynamic batching of concurrent requests), ``pipeline`` (face location, crop and the
answer around the network), ``codecs`` (images, boxes and landmarks in; meshes and textures out), ``limits``
(request bounds, image headers read before decoding), ``errors`` (JSON error answers) and ``metrics``
(``/metrics``). The command line is ``face3d.cli.serve``. Importing this package imports neither FastAPI nor
TensorFlow.
"""
