"""PRNet (Feng et al., ECCV 2018) on the position maps of face3d.trainset: train, evaluate, run and export it.

Training: ``model`` (resfcn256), ``data`` (sample lists, checks, ``tf.data`` pipeline, augmentation), ``training``
(``TrainConfig``, ``train``), ``uv_weights`` (loss weights, reduced-size UV data), ``metrics`` (68-landmark NME).
Use: ``inference`` (``PRN``: crop, predict, read the 3D face), ``predictor`` (Keras, SavedModel, GraphDef, ONNX,
TFLite), ``prnet_checkpoint`` (PRNet's TF1 checkpoint as our Keras model), ``detect`` (optional dlib face and
landmark detector), ``evaluation`` (AFLW2000-3D NME, CED, reports), ``reconstruction`` (dense NME after rigid ICP).
Deployment: ``export`` (``.pb`` and ONNX for Huawei ATC; ``tflite``, ``quantize``: TFLite, int8), ``offline`` (the
``.om`` pre/run/post flow). TensorFlow (the ``train`` extra) is imported only to build or load a model or pipeline.
"""
