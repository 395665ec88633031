"""PRNet (Feng et al., ECCV 2018) on the position maps of face3d.trainset: train, evaluate, run and export it.

Training: ``model`` (resfcn256), ``data`` (sample lists, checks, ``tf.data`` pipeline, augmentation), ``training``
(``TrainConfig``, ``train``), ``uv_weights`` (loss weights, reduced-size UV data), ``metrics`` (68-landmark NME).
Use: ``inference`` (``PRN``: crop, predict, read the 3D face), ``predictor`` (Keras, SavedModel, GraphDef, ONNX or
TFLite), ``prnet_checkpoint`` (PRNet's released TF1 checkpoint as our Keras model), ``detect`` (optional dlib face
and landmark detector), ``evaluation`` (AFLW2000-3D NME, CED, reports), ``reconstruction`` (dense NME after rigid
ICP).
Deployment: ``export`` (frozen ``.pb`` and ONNX for Huawei ATC, with ``tflite`` and ``quantize`` for TFLite and int8),
``offline`` (the ``.om`` pre/run/post flow).
TensorFlow (``pip install -e .[train]``) is imported only when a model or pipeline is built or loaded.
"""
